"""Sequencer-level matching engine: price-time priority, STP, post-only, IOC/market, reduce-only.

Pure: every method takes `now_ms`; no clock, no asyncio, no randomness. State changes are
reported as events appended to `self.events`:

- ("order", Order, status, remaining, filled_base): an order's state after an operation (real accounts only)
  (only for accounts with history, i.e. not the synthetic liquidity accounts);
- ("trade", Trade): a fill;
- ("account", account_index): collateral/position changed.

Book level changes are tracked by each Book itself (nonce + dirty prices) for the WS diff.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from shared.fees import fee_of_notional

from .book import COI_LIMIT, Book, Order
from .ledger import Account, apply_fill, margin_summary, worst_exposure
from .markets import Market
from .txs import ORDER_MARKET, STP_EXPIRE_BOTH, STP_EXPIRE_MAKER, STP_EXPIRE_TAKER, STP_REDUCE, TIF_IOC, TIF_POST_ONLY

ORDER_INDEX_BASE = 1 << 48


@dataclass(slots=True, eq=False)
class Trade:
    trade_id: int
    market_id: int
    price: int
    size: int
    usd_amount: int  # micro-USDC
    ask_id: int
    bid_id: int
    ask_account: int
    bid_account: int
    ask_coi: int
    bid_coi: int
    is_maker_ask: bool
    timestamp_ms: int
    tx_time_us: int
    block_height: int
    taker_fee: int  # fee rate ticks (1e-6)
    maker_fee: int
    tx_hash: str
    taker_size_before: int
    taker_entry_before: int
    taker_imf_before: int
    taker_sign_changed: bool
    maker_size_before: int
    maker_entry_before: int
    maker_imf_before: int
    maker_sign_changed: bool
    bid_pnl: int
    ask_pnl: int
    taker_fee_paid: int = 0  # micro-USDC
    maker_fee_paid: int = 0
    type: str = "trade"


class Engine:
    """All books, accounts and orders of the venue, mutated only through these methods."""

    def __init__(self, markets: dict[int, Market], *, history_per_account: int = 2000,
                 trades_per_market: int = 2000, trades_per_account: int = 5000,
                 quota_usd_per_tx: int = 5) -> None:
        self.markets = markets
        self.books: dict[int, Book] = {m: Book(m) for m in markets}
        self.accounts: dict[int, Account] = {}
        self.orders: dict[int, Order] = {}  # active (resting) orders
        self.account_orders: dict[int, dict[int, Order]] = {}  # account -> active orders
        self.by_coi: dict[tuple[int, int], Order] = {}  # (account, coi) -> active order
        self.active_count: dict[tuple[int, int], int] = {}  # (account, market) -> resting orders
        self.history: dict[int, deque[Order]] = {}
        self.trades: dict[int, deque[Trade]] = {m: deque(maxlen=trades_per_market) for m in markets}
        self.account_trades: dict[int, deque[Trade]] = {}
        self.marks: dict[int, int] = {m: mk.start_mid for m, mk in markets.items()}
        self.last_trade_price: dict[int, int] = {m: mk.start_mid for m, mk in markets.items()}
        self.events: list[tuple] = []
        self._synthetic: set[int] = set()
        self._touched: dict[int, Order] = {}
        self._expiries: list[tuple[int, int]] = []
        self.next_order_index = ORDER_INDEX_BASE
        self.order_seq = 0
        self.trade_seq = 0
        self.height = 1
        self.history_per_account = history_per_account
        self.trades_per_account = trades_per_account
        self.quota_unit = quota_usd_per_tx * 1_000_000
        self.trade_listeners: list = []  # callables(Trade) used by the candle/stat aggregator

    # -- accounts -----------------------------------------------------------------------
    def add_account(self, acct: Account) -> None:
        self.accounts[acct.index] = acct
        if acct.synthetic:
            self._synthetic.add(acct.index)
        self.account_orders.setdefault(acct.index, {})
        if not acct.synthetic:
            self.history.setdefault(acct.index, deque(maxlen=self.history_per_account))
            self.account_trades.setdefault(acct.index, deque(maxlen=self.trades_per_account))

    def reserve(self, acct: Account, market_id: int, is_ask: bool, lots: int) -> None:
        d = acct.reserved_ask if is_ask else acct.reserved_bid
        d[market_id] = d.get(market_id, 0) + lots

    def find_order(self, account: int, market_id: int, index: int) -> Order | None:
        """Active order by venue order_index or by client_order_index (the ranges are disjoint)."""
        o = self.orders.get(index) if index >= COI_LIMIT else self.by_coi.get((account, index))
        if o is None or o.account != account or o.market_id != market_id:
            return None
        return o

    # -- internal helpers ---------------------------------------------------------------
    def _touch(self, o: Order) -> None:
        if o.account not in self._synthetic:   # nobody subscribes to the synthetic ladder's order events
            self._touched[o.order_index] = o

    def _flush(self) -> None:
        if self._touched:
            ev = self.events
            for o in self._touched.values():
                ev.append(("order", o, o.status, o.remaining, o.filled_base))
            self._touched = {}

    def _release(self, o: Order) -> None:
        if o.reserved:
            acct = self.accounts[o.account]
            d = acct.reserved_ask if o.is_ask else acct.reserved_bid
            d[o.market_id] -= o.reserved
            o.reserved = 0

    def _finish(self, o: Order, status: str, now_ms: int) -> None:
        """Terminal transition: leave the active indexes, release exposure, keep history."""
        self._release(o)
        o.status = status
        o.updated_ms = now_ms
        o.tx_time_us = max(o.tx_time_us + 1, now_ms * 1000)   # the tx that changed it (Lighter orders updates by it)
        if self.orders.pop(o.order_index, None) is not None:
            self.account_orders[o.account].pop(o.order_index, None)
            self.active_count[(o.account, o.market_id)] -= 1
            if o.client_order_index:
                self.by_coi.pop((o.account, o.client_order_index), None)
        acct = self.accounts[o.account]
        if not acct.synthetic:
            self.history[o.account].append(o)
            self._touch(o)

    def _rest(self, o: Order) -> None:
        self.books[o.market_id].add(o)
        self.orders[o.order_index] = o
        self.account_orders[o.account][o.order_index] = o
        k = (o.account, o.market_id)
        self.active_count[k] = self.active_count.get(k, 0) + 1
        if o.client_order_index:
            self.by_coi[(o.account, o.client_order_index)] = o
        if o.expiry_ms:
            heapq.heappush(self._expiries, (o.expiry_ms, o.order_index))
            if len(self._expiries) > 4096 and len(self._expiries) > 4 * len(self.orders):
                # lazy deletion leaves canceled orders in the heap until their (28-day) expiry: compact
                self._expiries = [(x.expiry_ms, x.order_index) for x in self.orders.values() if x.expiry_ms]
                heapq.heapify(self._expiries)

    # -- order entry ----------------------------------------------------------------------
    def create_order(self, account: int, market_id: int, coi: int, is_ask: bool, price: int,
                     base: int, order_type: int, tif: int, reduce_only: bool, expiry_ms: int,
                     now_ms: int, *, stp_mode: int = STP_EXPIRE_MAKER, api_key: int = 0,
                     reserved: int = -1, tx_hash: str = "", margin_check: bool = True) -> Order:
        """Execute a CreateOrder at the sequencer. `reserved` = lots already reserved at the API
        (-1: reserve now). Returns the order in its final state for this operation."""
        acct = self.accounts[account]
        self.order_seq += 1
        oi = self.next_order_index
        self.next_order_index += 1
        o = Order(oi, coi, market_id, account, is_ask, price, base, base, order_type, tif,
                  reduce_only, expiry_ms if tif != TIF_IOC else 0, self.order_seq, now_ms, now_ms,
                  now_ms * 1000 + self.order_seq % 1000, api_key, stp_mode,
                  block_height=self.height)
        if reserved < 0:
            self.reserve(acct, market_id, is_ask, base)
            reserved = base
        o.reserved = reserved
        if not acct.synthetic:
            acct.total_order_count += 1
        book = self.books[market_id]
        if reduce_only:
            size = acct.pos(market_id).size
            if size == 0 or (size > 0) == (not is_ask):
                self._finish(o, "canceled-reduce-only", now_ms)
                self._flush()
                return o
            cap = abs(size)
            if base == 0 or o.remaining > cap:
                o.remaining = cap
                if base == 0:
                    o.initial = cap
                self._set_reserved(o, o.remaining)
        if o.remaining <= 0:
            self._finish(o, "canceled", now_ms)
            self._flush()
            return o
        crosses = (book.bid_prices and book.bid_prices[-1] >= price) if is_ask else \
                  (book.ask_prices and book.ask_prices[0] <= price)
        if tif == TIF_POST_ONLY and crosses:
            self._finish(o, "canceled-post-only", now_ms)
            self._flush()
            return o
        if margin_check and not acct.synthetic and not self._margin_ok(acct, o):
            self._finish(o, "canceled-margin-not-allowed", now_ms)
            self._flush()
            return o
        if crosses:
            self._match(o, acct, now_ms, tx_hash)
        if o.status == "open" and o.remaining > 0:
            if tif == TIF_IOC or order_type == ORDER_MARKET:
                if order_type == ORDER_MARKET:
                    opp = book.bid_prices if is_ask else book.ask_prices
                    status = "canceled-too-much-slippage" if opp else "canceled-not-enough-liquidity"
                else:
                    status = "canceled"
                self._finish(o, status, now_ms)
            else:
                self._rest(o)
                if not acct.synthetic:
                    self._touch(o)
        elif o.status == "open":
            self._finish(o, "filled", now_ms)
        self._flush()
        return o

    def _set_reserved(self, o: Order, lots: int) -> None:
        acct = self.accounts[o.account]
        d = acct.reserved_ask if o.is_ask else acct.reserved_bid
        d[o.market_id] = d.get(o.market_id, 0) + lots - o.reserved
        o.reserved = lots

    def _margin_ok(self, acct: Account, o: Order) -> bool:
        """Equity covers initial margin with this order reserved, unless it reduces risk."""
        with_order = worst_exposure(acct, o.market_id)
        if o.is_ask:
            without = worst_exposure(acct, o.market_id, 0, -o.reserved)
        else:
            without = worst_exposure(acct, o.market_id, -o.reserved, 0)
        if with_order <= without:
            return True
        equity, im, _, _ = margin_summary(acct, self.markets, self.marks)
        return equity >= im

    def _match(self, taker: Order, tacct: Account, now_ms: int, tx_hash: str) -> None:
        book = self.books[taker.market_id]
        is_ask = taker.is_ask
        side = book.bids if is_ask else book.asks
        prices = book.bid_prices if is_ask else book.ask_prices
        limit = taker.price
        while taker.remaining > 0 and prices:
            p = prices[-1] if is_ask else prices[0]
            if (p < limit) if is_ask else (p > limit):
                break
            lv = side[p]
            while taker.remaining > 0 and lv.orders:
                maker = next(iter(lv.orders.values()))
                if maker.account == taker.account:
                    mode = taker.stp_mode
                    if mode == STP_EXPIRE_MAKER or mode == STP_EXPIRE_BOTH:
                        book.remove(maker)
                        self._finish(maker, "canceled-self-trade", now_ms)
                    if mode == STP_EXPIRE_TAKER or mode == STP_EXPIRE_BOTH:
                        taker.status = "canceled-self-trade"
                        self._finish(taker, "canceled-self-trade", now_ms)
                        return
                    if mode == STP_REDUCE:
                        q = min(maker.remaining, taker.remaining)
                        self._shrink_maker(maker, q, book, now_ms)
                        taker.remaining -= q
                        self._set_reserved(taker, taker.reserved - q)
                        if taker.remaining == 0:
                            self._finish(taker, "canceled-self-trade", now_ms)
                            return
                    continue
                q = maker.remaining if maker.remaining < taker.remaining else taker.remaining
                self._fill(maker, taker, q, p, now_ms, tx_hash, book)
            # the level disappears from `prices` when emptied by book.remove

    def _shrink_maker(self, maker: Order, q: int, book: Book, now_ms: int) -> None:
        if q >= maker.remaining:
            book.remove(maker)
            self._finish(maker, "canceled-self-trade", now_ms)
        else:
            maker.remaining -= q
            book.reduce(maker, q)
            self._set_reserved(maker, maker.reserved - q)
            maker.updated_ms = now_ms
            maker.tx_time_us = max(maker.tx_time_us + 1, now_ms * 1000)   # the tx that changed it (Lighter orders updates by it)
            self._touch(maker)

    def _fill(self, maker: Order, taker: Order, q: int, price: int, now_ms: int, tx_hash: str,
              book: Book) -> None:
        m = self.markets[maker.market_id]
        macct = self.accounts[maker.account]
        tacct = self.accounts[taker.account]
        notional = m.notional(price, q)
        if q == maker.remaining:
            book.remove(maker)
            maker.remaining = 0
        else:
            maker.remaining -= q
            book.reduce(maker, q)
        taker.remaining -= q
        for o in (maker, taker):
            o.filled_base += q
            o.filled_quote += notional
            o.updated_ms = now_ms
            o.tx_time_us = max(o.tx_time_us + 1, now_ms * 1000)   # the tx that changed it (Lighter orders updates by it)
            d = self.accounts[o.account].reserved_ask if o.is_ask else self.accounts[o.account].reserved_bid
            r = q if q < o.reserved else o.reserved
            d[o.market_id] -= r
            o.reserved -= r
        mfee_rate = 0 if macct.synthetic else macct.tier.maker_fee
        tfee_rate = 0 if tacct.synthetic else tacct.tier.taker_fee
        mfee = fee_of_notional(notional, mfee_rate)
        tfee = fee_of_notional(notional, tfee_rate)
        m_imf = macct.positions[m.market_id].imf if m.market_id in macct.positions else 0
        t_imf = tacct.positions[m.market_id].imf if m.market_id in tacct.positions else 0
        msb, meb, mpnl, msc = apply_fill(macct, m, not maker.is_ask, q, price, mfee)
        tsb, teb, tpnl, tsc = apply_fill(tacct, m, not taker.is_ask, q, price, tfee)
        self.trade_seq += 1
        ask, bid = (maker, taker) if maker.is_ask else (taker, maker)
        t = Trade(self.trade_seq, m.market_id, price, q, notional, ask.order_index, bid.order_index,
                  ask.account, bid.account, ask.client_order_index, bid.client_order_index,
                  maker.is_ask, now_ms, now_ms * 1000 + self.trade_seq % 1000, self.height,
                  tfee_rate, mfee_rate, tx_hash, tsb, teb, t_imf or m.default_imf, tsc,
                  msb, meb, m_imf or m.default_imf, msc,
                  mpnl if not maker.is_ask else tpnl, mpnl if maker.is_ask else tpnl, tfee, mfee)
        self.trades[m.market_id].append(t)
        self.last_trade_price[m.market_id] = price
        self.events.append(("trade", t))
        for acct, o in ((macct, maker), (tacct, taker)):
            if acct.synthetic:
                continue
            acct.trade_count += 1
            acct.volume_micro += notional
            self.account_trades[acct.index].append(t)
            if acct.tier.volume_quota:
                acct.quota_earn_micro += notional
                if acct.quota_earn_micro >= self.quota_unit:
                    acct.volume_quota += acct.quota_earn_micro // self.quota_unit
                    acct.quota_earn_micro %= self.quota_unit
            self.events.append(("account", acct.index))
            self._touch(o)
        if maker.remaining == 0:
            self._finish(maker, "filled", now_ms)
        for listener in self.trade_listeners:
            listener(t)
        if not macct.synthetic:
            self._enforce_reduce_only(macct, m.market_id, now_ms)
        if not tacct.synthetic:
            self._enforce_reduce_only(tacct, m.market_id, now_ms, skip=taker)

    def _enforce_reduce_only(self, acct: Account, market_id: int, now_ms: int,
                             skip: Order | None = None) -> None:
        """Resting reduce-only orders may never exceed (or flip) the position."""
        size = acct.positions[market_id].size if market_id in acct.positions else 0
        for o in list(self.account_orders[acct.index].values()):
            if not o.reduce_only or o.market_id != market_id or o is skip:
                continue
            if size == 0 or (size > 0) != o.is_ask:
                self.books[market_id].remove(o)
                self._finish(o, "canceled-reduce-only", now_ms)
            elif o.remaining > abs(size):
                cut = o.remaining - abs(size)
                o.remaining -= cut
                self.books[market_id].reduce(o, cut)
                self._set_reserved(o, o.remaining)
                o.updated_ms = now_ms
                o.tx_time_us = max(o.tx_time_us + 1, now_ms * 1000)   # the tx that changed it (Lighter orders updates by it)
                self._touch(o)

    def shrink(self, o: Order, lots: int, now_ms: int) -> None:
        """Take ``lots`` off a resting order in place (it keeps its queue priority); nothing left: cancelled."""
        if lots >= o.remaining:
            self.cancel_order(o, now_ms)
            return
        o.remaining -= lots
        self.books[o.market_id].reduce(o, lots)
        self._set_reserved(o, min(o.reserved, o.remaining))
        o.updated_ms = now_ms
        o.tx_time_us = max(o.tx_time_us + 1, now_ms * 1000)
        self._touch(o)
        self._flush()

    # -- cancel / modify ------------------------------------------------------------------
    def cancel(self, account: int, market_id: int, index: int, now_ms: int,
               status: str = "canceled") -> Order | None:
        o = self.find_order(account, market_id, index)
        if o is None:
            return None
        self.books[market_id].remove(o)
        self._finish(o, status, now_ms)
        self._flush()
        return o

    def cancel_order(self, o: Order, now_ms: int, status: str = "canceled") -> None:
        """Cancel a known active order (used by the synthetic market maker)."""
        self.books[o.market_id].remove(o)
        self._finish(o, status, now_ms)
        self._flush()

    def cancel_all(self, account: int, now_ms: int, market_id: int | None = None) -> int:
        n = 0
        for o in list(self.account_orders.get(account, {}).values()):
            if market_id is None or o.market_id == market_id:
                self.books[o.market_id].remove(o)
                self._finish(o, "canceled", now_ms)
                n += 1
        self._flush()
        return n

    def modify(self, account: int, market_id: int, index: int, base: int, price: int,
               now_ms: int, tx_hash: str = "") -> Order | None:
        """ModifyOrder: `base` is the new total size. Price change or size increase loses priority."""
        o = self.find_order(account, market_id, index)
        if o is None:
            return None
        acct = self.accounts[account]
        book = self.books[market_id]
        new_remaining = base - o.filled_base
        o.version += 1
        o.updated_ms = now_ms
        o.tx_time_us = max(o.tx_time_us + 1, now_ms * 1000)   # the tx that changed it (Lighter orders updates by it)
        if new_remaining <= 0:
            book.remove(o)
            self._finish(o, "canceled", now_ms)
            self._flush()
            return o
        if price == o.price and new_remaining <= o.remaining:
            cut = o.remaining - new_remaining
            if cut:
                o.remaining = new_remaining
                book.reduce(o, cut)
            o.initial = base
            self._set_reserved(o, new_remaining)
            self._touch(o)
            self._flush()
            return o
        book.remove(o)
        self.orders.pop(o.order_index, None)
        self.account_orders[account].pop(o.order_index, None)
        self.active_count[(account, market_id)] -= 1
        if o.client_order_index:
            self.by_coi.pop((account, o.client_order_index), None)
        o.price, o.initial, o.remaining = price, base, new_remaining
        self._set_reserved(o, new_remaining)
        crosses = (book.bid_prices and book.bid_prices[-1] >= price) if o.is_ask else \
                  (book.ask_prices and book.ask_prices[0] <= price)
        if crosses and o.tif == TIF_POST_ONLY:
            self._finish(o, "canceled-post-only", now_ms)
            self._flush()
            return o
        if not acct.synthetic and not self._margin_ok(acct, o):
            self._finish(o, "canceled-margin-not-allowed", now_ms)
            self._flush()
            return o
        if crosses:
            self._match(o, acct, now_ms, tx_hash)
        if o.status == "open":
            if o.remaining > 0:
                self._rest(o)
                self._touch(o)
            else:
                self._finish(o, "filled", now_ms)
        self._flush()
        return o

    # -- time -----------------------------------------------------------------------------
    def next_expiry(self) -> int | None:
        while self._expiries:
            t, oi = self._expiries[0]
            o = self.orders.get(oi)
            if o is not None and o.expiry_ms == t:
                return t
            heapq.heappop(self._expiries)
        return None

    def expire(self, now_ms: int) -> int:
        n = 0
        while self._expiries and self._expiries[0][0] <= now_ms:
            t, oi = heapq.heappop(self._expiries)
            o = self.orders.get(oi)
            if o is not None and o.expiry_ms == t:
                self.books[o.market_id].remove(o)
                self._finish(o, "canceled-expired", now_ms)
                n += 1
        self._flush()
        return n

    def set_mark(self, market_id: int, mark: int) -> None:
        self.marks[market_id] = mark
