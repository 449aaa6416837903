"""The venue core: API-level tx acceptance, the sequencer queue, synthetic flow, funding.

Pure and deterministic: `now_ms` is always passed in and all randomness comes from the injected
`random.Random`. The aiohttp shell (server.py) owns the clock and calls `submit` / `advance`,
then drains `engine.events` and the books' dirty sets into WebSocket frames.

API-level failures raise VenueError and consume no nonce; once a tx is accepted (code 200) its
nonce is consumed even if the sequencer later cancels the order (Lighter's documented rule).
A batch is all-or-nothing at the API level.
"""
from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from . import errors as E
from .book import COI_LIMIT
from .candles import TradeStats
from .config import VenueConfig
from .engine import Engine
from .flow import Params, SyntheticMarket, TapeEvent, bind_liquidity, make_regime
from shared.tiers import TIERS, Tier

from .ledger import Account, l1_address_for, order_margin_ok
from .markets import USDC_SCALE, Market, default_markets
from .txlog import TxLog
from .txs import (
    ATTR_CANCEL_ALL_MARKET,
    ATTR_ORDER_VERSION,
    ATTR_STP_MODE,
    CANCEL_ALL_ABORT,
    CANCEL_ALL_IMMEDIATE,
    CANCEL_ALL_SCHEDULED,
    NIL_MARKET,
    ORDER_LIMIT,
    ORDER_MARKET,
    TIF_GTT,
    TIF_IOC,
    TIF_POST_ONLY,
    TX_CANCEL_ALL,
    TX_CANCEL_ORDER,
    TX_CREATE_ORDER,
    TX_MODIFY_ORDER,
    TX_UPDATE_LEVERAGE,
    Tx,
)

MIN_ORDER_EXPIRY_MS = 5 * 60_000
MAX_ORDER_EXPIRY_MS = 30 * 86_400_000
MIN_CANCEL_ALL_MS = 5 * 60_000
MAX_CANCEL_ALL_MS = 15 * 86_400_000
MAX_PRICE = (1 << 32) - 1
MAX_BASE = (1 << 48) - 1
PRICE_BAND = 2  # limit price must be within [mark / 2, mark * 2] (fat-finger guard, 21734)
BLOCK_MS = 100
INF = 1 << 62
MAKER_ONLY_MIN_KEY = 4            # "Indexes must be >= 4" (the SDK's get_set_maker_only_api_keys example)
MAKER_ONLY_MAX_KEYS = 200         # per account index [DOCS api-keys]
MAKER_ONLY_EVERY_MS = 3_600_000   # "you can call this endpoint only once per hour" (same example)


def _maker_only_allows(tx: Tx) -> bool:
    """A maker-only key may rest liquidity and take it back: post-only limit orders, modifies, cancels."""
    if tx.tx_type == TX_CREATE_ORDER:
        return tx.f["TimeInForce"] == TIF_POST_ONLY and tx.f["Type"] == ORDER_LIMIT
    return tx.tx_type in (TX_MODIFY_ORDER, TX_CANCEL_ORDER, TX_CANCEL_ALL)


@dataclass(slots=True)
class Pending:
    exec_ms: int
    seq: int
    tx: Tx
    accepted_ms: int
    reserved: int = 0
    is_ask: bool = False


@dataclass(slots=True)
class Accepted:
    tx_hash: str
    exec_ms: int
    tx: Tx


@dataclass(slots=True)
class FundingRecord:
    timestamp_ms: int
    market_id: int
    rate_ppm: int  # 1e-6 per interval; > 0: longs pay shorts
    mark: int


@dataclass(slots=True)
class PositionFundingRecord:
    timestamp_ms: int
    market_id: int
    funding_id: int
    change: int  # micro-USDC received (negative = paid)
    rate_ppm: int
    position_size: int  # lots, unsigned
    side: str


@dataclass(slots=True)
class FaultHooks:
    """Core-level fault state (the HTTP/WS faults live in faults.py)."""

    drop_reduce_only: int = 0


class Venue:
    """Everything that is not I/O."""

    def __init__(self, cfg: VenueConfig, rng: random.Random, now_ms: int,
                 tapes: dict[int, list[TapeEvent]] | None = None,
                 markets: dict[int, Market] | None = None) -> None:
        self.cfg = cfg
        allm = markets or default_markets()
        self.markets: dict[int, Market] = {m: allm[m] for m in cfg.markets}
        self.engine = Engine(self.markets, quota_usd_per_tx=cfg.quota_usd_per_tx)
        self.genesis_ms = now_ms
        self.now_ms = now_ms
        self.default_tier: Tier = TIERS[cfg.tier]
        self.params = Params().update(cfg.model_params)
        self.tapes = tapes or {}
        self.faults = FaultHooks()
        big = 10**15 * USDC_SCALE
        for idx in (cfg.mm_account, cfg.taker_account):
            self.engine.add_account(Account(idx, l1_address_for(idx), big, TIERS["premium"],
                                            synthetic=True, created_ms=now_ms))
        self.rng = rng
        self.flow: dict[int, SyntheticMarket] = {}
        for mid, m in self.markets.items():
            child = random.Random(rng.getrandbits(64))
            spec = cfg.model
            if mid not in self.tapes or not self.tapes[mid]:
                spec = ",".join(n if n.strip() != "replay" else "calm" for n in spec.split(","))
            regime = make_regime(spec, self.params, self.tapes.get(mid))
            sm = SyntheticMarket(m, regime, child, cfg.mm_account, cfg.taker_account, self.params)
            bind_liquidity(sm, self.engine)
            self.flow[mid] = sm
        self.funding_rng = random.Random(rng.getrandbits(64))
        self.stats: dict[int, TradeStats] = {m: TradeStats() for m in self.markets}
        self.engine.trade_listeners.append(lambda t: self.stats[t.market_id].on_trade(t))
        self.next_step_ms = now_ms
        self.pending: list[tuple[int, int, Pending]] = []
        self.pending_seq = 0
        self.pending_market: dict[tuple[int, int], int] = {}
        self.pending_account: dict[int, int] = {}
        self.pending_coi: dict[tuple[int, int], int] = {}
        self.cancel_all_heap: list[tuple[int, int]] = []
        fi = cfg.funding_interval_s * 1000
        self.next_funding_ms = (now_ms // fi + 1) * fi if fi > 0 else INF
        self.fundings: dict[int, deque[FundingRecord]] = {m: deque(maxlen=5000) for m in self.markets}
        self.position_fundings: dict[int, deque[PositionFundingRecord]] = {}
        self.funding_seq = 0
        self.current_funding_ppm: dict[int, int] = {m: 0 for m in self.markets}
        self.tx_count = 0
        self.txlog = TxLog()
        # warm the synthetic book so the first snapshot has liquidity
        self.advance(now_ms)

    # -- accounts -----------------------------------------------------------------------------
    def set_maker_only_keys(self, account: int, keys: list[int], now_ms: int) -> None:
        """setMakerOnlyApiKeys: replace the account's maker-only key set (``[]`` clears it). Premium
        accounts only, keys 4..254 the account has, at most 200, once an hour."""
        acct = self.account(account)
        if acct is None:
            raise E.err(E.ACCOUNT_NOT_FOUND)
        if acct.tier.name == "standard":
            raise E.err(E.INVALID_PARAM, "invalid param : maker-only api keys need a premium account")
        if len(keys) > MAKER_ONLY_MAX_KEYS or len(set(keys)) != len(keys):
            raise E.err(E.INVALID_PARAM, f"invalid param : api_key_indexes (at most {MAKER_ONLY_MAX_KEYS}, no repeats)")
        for k in keys:
            if not MAKER_ONLY_MIN_KEY <= k <= 254:
                raise E.err(E.INVALID_PARAM, f"invalid param : api key index {k} (maker-only keys are 4..254)")
            if k not in acct.api_keys:
                raise E.err(E.API_KEY_NOT_FOUND)
        if acct.maker_only_set_ms is not None and now_ms - acct.maker_only_set_ms < MAKER_ONLY_EVERY_MS:
            raise E.err(E.TOO_MANY_REQUESTS, "Too Many Requests!: maker-only api keys may be set once an hour", 429)
        acct.maker_only_keys = frozenset(keys)
        acct.maker_only_set_ms = now_ms

    def register_account(self, index: int, api_key_index: int | None, public_key: str | None,
                         collateral_micro: int | None, now_ms: int, tier: str | None = None) -> Account:
        """Create a funded account or add a key to an existing one (admin/CLI/env)."""
        if index <= 0 or index in (self.cfg.mm_account, self.cfg.taker_account):
            raise E.err(E.ACCOUNT_NOT_FOUND, "invalid account index")
        acct = self.engine.accounts.get(index)
        if acct is None:
            acct = Account(index, l1_address_for(index), collateral_micro or 0,
                           TIERS[tier] if tier else self.default_tier,
                           volume_quota=self.cfg.volume_quota_start, created_ms=now_ms)
            self.engine.add_account(acct)
        elif collateral_micro is not None:
            acct.collateral = collateral_micro
        if tier:
            acct.tier = TIERS[tier]
        if api_key_index is not None and public_key is not None:
            pk = public_key.lower()
            pk = pk[2:] if pk.startswith("0x") else pk
            acct.api_keys[api_key_index] = pk
            acct.nonces.setdefault(api_key_index, 1)
        self.engine.events.append(("account", index))
        return acct

    def account(self, index: int) -> Account | None:
        a = self.engine.accounts.get(index)
        return None if a is None or a.synthetic else a

    def next_nonce(self, account: int, api_key: int) -> int:
        a = self.account(account)
        if a is None or api_key not in a.api_keys:
            return 0
        return a.nonces.get(api_key, 1)

    # -- tx acceptance (API level) -----------------------------------------------------------
    def submit(self, txs: list[Tx], now_ms: int) -> list[Accepted]:
        """Accept a tx or a batch atomically, or raise VenueError (no nonce consumed)."""
        self.advance(now_ms)
        if len(txs) > 1:
            first = txs[0]
            for tx in txs[1:]:
                if tx.account != first.account or tx.api_key != first.api_key:
                    raise E.err(E.BATCH_DIFFERENT_OWNERS)
            for a, b in zip(txs, txs[1:], strict=False):
                if b.nonce <= a.nonce:
                    raise E.err(E.NONCE_NOT_INCREASING)
        undo: list[Callable[[], None]] = []
        out: list[Accepted] = []
        try:
            for tx in txs:
                out.append(self._accept(tx, now_ms, undo))
        except E.VenueError:
            for fn in reversed(undo):
                fn()
            raise
        self.tx_count += len(out)
        for a in out:
            self.txlog.accepted(a.tx, now_ms)
        return out

    def _latency(self, acct: Account, tx: Tx) -> int:
        if not self.cfg.latency:
            return 0
        if tx.tx_type == TX_CREATE_ORDER and (tx.f["TimeInForce"] == TIF_IOC or tx.f["Type"] == ORDER_MARKET):
            return acct.tier.taker_latency_ms
        return acct.tier.maker_latency_ms

    def _accept(self, tx: Tx, now_ms: int, undo: list[Callable[[], None]]) -> Accepted:
        acct = self.account(tx.account)
        if acct is None:
            raise E.err(E.ACCOUNT_NOT_FOUND)
        if tx.api_key not in acct.api_keys:
            raise E.err(E.API_KEY_NOT_FOUND)
        if tx.api_key in acct.maker_only_keys and not _maker_only_allows(tx):
            raise E.err(E.MAKER_ONLY_API_KEY)
        expected = acct.nonces.get(tx.api_key, 1)
        if tx.nonce != expected and not (tx.skip_nonce and tx.nonce > expected):
            raise E.err(E.INVALID_NONCE)
        if tx.expired_at < now_ms:
            raise E.err(E.TX_EXPIRED)
        reserved, is_ask, drop = 0, False, False
        t = tx.tx_type
        f = tx.f
        if t == TX_CREATE_ORDER:
            reserved, is_ask = self._check_create(acct, tx, now_ms)
            if f["ReduceOnly"] and self.faults.drop_reduce_only > 0:
                self.faults.drop_reduce_only -= 1
                drop = True
        elif t == TX_CANCEL_ORDER:
            self._check_market(f["MarketIndex"])
            if not self._order_known(acct.index, f["MarketIndex"], f["Index"]):
                raise E.err(E.NOT_ACTIVE_ORDER)
        elif t == TX_MODIFY_ORDER:
            self._check_modify(acct, tx)
        elif t == TX_CANCEL_ALL:
            tif, when = f["TimeInForce"], f["Time"]
            mk = tx.attrs.get(ATTR_CANCEL_ALL_MARKET, NIL_MARKET)
            if tif == CANCEL_ALL_IMMEDIATE:
                if when != 0:
                    raise E.err(E.INVALID_CANCEL_ALL)
                if mk != NIL_MARKET:
                    self._check_market(mk)
            elif tif == CANCEL_ALL_SCHEDULED:
                if mk != NIL_MARKET or not MIN_CANCEL_ALL_MS <= when - now_ms <= MAX_CANCEL_ALL_MS:
                    raise E.err(E.INVALID_CANCEL_ALL)
            elif tif == CANCEL_ALL_ABORT:
                if when != 0 or mk != NIL_MARKET:
                    raise E.err(E.INVALID_CANCEL_ALL)
            else:
                raise E.err(E.INVALID_TIME_IN_FORCE)
        elif t == TX_UPDATE_LEVERAGE:
            m = self._check_market(f["MarketIndex"])
            if not m.min_imf <= f["InitialMarginFraction"] <= 10_000 or f["MarginMode"] not in (0, 1):
                raise E.err(E.INVALID_LEVERAGE)
        else:
            raise E.err(E.INVALID_TX_TYPE)
        # -- accepted: consume the nonce, reserve exposure, queue for the sequencer ----------
        prev_nonce = expected
        acct.nonces[tx.api_key] = tx.nonce + 1
        undo.append(lambda: acct.nonces.__setitem__(tx.api_key, prev_nonce))
        exec_ms = now_ms + self._latency(acct, tx)
        if drop:
            return Accepted(tx.tx_hash, exec_ms, tx)
        if t == TX_CREATE_ORDER:
            mid, coi = f["MarketIndex"], f["ClientOrderIndex"]
            self.engine.reserve(acct, mid, is_ask, reserved)
            self._count_pending(acct.index, mid, coi, +1)

            def _undo_create() -> None:
                self.engine.reserve(acct, mid, is_ask, -reserved)
                self._count_pending(acct.index, mid, coi, -1)
            undo.append(_undo_create)
        self.pending_seq += 1
        p = Pending(exec_ms, self.pending_seq, tx, now_ms, reserved, is_ask)
        entry = (exec_ms, self.pending_seq, p)
        heapq.heappush(self.pending, entry)

        def _undo_queue() -> None:
            self.pending.remove(entry)
            heapq.heapify(self.pending)
        undo.append(_undo_queue)
        return Accepted(tx.tx_hash, exec_ms, tx)

    def _count_pending(self, account: int, market_id: int, coi: int, d: int) -> None:
        k = (account, market_id)
        self.pending_market[k] = self.pending_market.get(k, 0) + d
        self.pending_account[account] = self.pending_account.get(account, 0) + d
        if coi:
            kc = (account, coi)
            v = self.pending_coi.get(kc, 0) + d
            if v:
                self.pending_coi[kc] = v
            else:
                self.pending_coi.pop(kc, None)

    def _check_market(self, market_id: int) -> Market:
        m = self.markets.get(market_id)
        if m is None:
            raise E.err(E.INVALID_MARKET)
        return m

    def _order_known(self, account: int, market_id: int, index: int) -> bool:
        if self.engine.find_order(account, market_id, index) is not None:
            return True
        return index < COI_LIMIT and (account, index) in self.pending_coi

    def _check_amounts(self, m: Market, base: int, price: int, reduce_only: bool, is_market: bool) -> None:
        if not 1 <= price <= MAX_PRICE:
            raise E.err(E.INVALID_PRICE)
        if base < 0 or base > MAX_BASE or (base == 0 and not reduce_only):
            raise E.err(E.INVALID_BASE_AMOUNT)
        if base and (base < m.min_base or m.notional(price, base) < m.min_quote):
            raise E.err(E.INVALID_BASE_OR_QUOTE)
        if m.notional(price, base) > m.order_quote_limit:
            raise E.err(E.INVALID_BASE_OR_QUOTE)
        mark = self.engine.marks[m.market_id]
        if not is_market and not mark // PRICE_BAND <= price <= mark * PRICE_BAND:
            raise E.err(E.PRICE_TOO_FAR)

    def _check_create(self, acct: Account, tx: Tx, now_ms: int) -> tuple[int, bool]:
        f = tx.f
        m = self._check_market(f["MarketIndex"])
        otype, tif, expiry = f["Type"], f["TimeInForce"], f["OrderExpiry"]
        if otype not in (ORDER_LIMIT, ORDER_MARKET) or f["TriggerPrice"] != 0:
            raise E.err(E.INVALID_ORDER_TYPE)
        if tif not in (TIF_IOC, TIF_GTT, TIF_POST_ONLY) or (otype == ORDER_MARKET and tif != TIF_IOC):
            raise E.err(E.INVALID_TIME_IN_FORCE)
        if f["IsAsk"] not in (0, 1) or f["ReduceOnly"] not in (0, 1):
            raise E.err(E.INVALID_TX_INFO, "invalid tx info: IsAsk/ReduceOnly must be 0 or 1")
        if tif == TIF_IOC:
            if expiry != 0:
                raise E.err(E.INVALID_EXPIRY)
        elif not MIN_ORDER_EXPIRY_MS <= expiry - now_ms <= MAX_ORDER_EXPIRY_MS:
            raise E.err(E.INVALID_EXPIRY)
        coi = f["ClientOrderIndex"]
        if not 0 <= coi < COI_LIMIT:
            raise E.err(E.INVALID_COI)
        if coi and ((acct.index, coi) in self.engine.by_coi or (acct.index, coi) in self.pending_coi):
            raise E.err(E.DUPLICATE_COI)
        base, price, ro = f["BaseAmount"], f["Price"], bool(f["ReduceOnly"])
        self._check_amounts(m, base, price, ro, otype == ORDER_MARKET)
        mid = m.market_id
        cfg = self.cfg
        n_active_m = self.engine.active_count.get((acct.index, mid), 0)
        if len(self.engine.account_orders[acct.index]) >= cfg.active_per_account:
            raise E.err(E.MAX_ACTIVE_ORDERS)
        if n_active_m >= cfg.active_per_market:
            raise E.err(E.MAX_ACTIVE_ORDERS_MARKET)
        if self.pending_account.get(acct.index, 0) >= cfg.pending_per_account:
            raise E.err(E.MAX_PENDING_ORDERS)
        if self.pending_market.get((acct.index, mid), 0) >= cfg.pending_per_market:
            raise E.err(E.MAX_PENDING_ORDERS_MARKET)
        is_ask = bool(f["IsAsk"])
        lots = base if base else abs(acct.pos(mid).size)
        if tif != TIF_IOC and not ro and not order_margin_ok(acct, self.markets, self.engine.marks, mid, is_ask, lots):
            raise E.err(E.NOT_ENOUGH_MARGIN)
        return lots, is_ask

    def _check_modify(self, acct: Account, tx: Tx) -> None:
        f = tx.f
        m = self._check_market(f["MarketIndex"])
        o = self.engine.find_order(acct.index, m.market_id, f["Index"])
        if o is None:
            if f["Index"] < COI_LIMIT and (acct.index, f["Index"]) in self.pending_coi:
                return
            raise E.err(E.NOT_ACTIVE_LIMIT_ORDER)
        if f["TriggerPrice"] != 0:
            raise E.err(E.INVALID_ORDER_TYPE)
        want = tx.attrs.get(ATTR_ORDER_VERSION, 0)
        if want and want != o.version:
            raise E.err(E.STALE_ORDER_VERSION, f"{E.MESSAGES[E.STALE_ORDER_VERSION]} (version {o.version}, tx names {want})")
        base, price = f["BaseAmount"], f["Price"]
        self._check_amounts(m, base, price, o.reduce_only, False)
        if base <= o.filled_base:
            raise E.err(E.INVALID_BASE_AMOUNT)
        extra = base - o.filled_base - o.remaining
        if extra > 0 and not o.reduce_only and not order_margin_ok(
                acct, self.markets, self.engine.marks, m.market_id, o.is_ask, extra):
            raise E.err(E.NOT_ENOUGH_MARGIN)

    # -- sequencer ------------------------------------------------------------------------------
    def _execute(self, p: Pending, now_ms: int) -> None:
        tx, f, eng = p.tx, p.tx.f, self.engine
        t = tx.tx_type
        if t == TX_CREATE_ORDER:
            self._count_pending(tx.account, f["MarketIndex"], f["ClientOrderIndex"], -1)
            if now_ms > tx.expired_at:
                eng.reserve(eng.accounts[tx.account], f["MarketIndex"], p.is_ask, -p.reserved)
                return
            eng.create_order(tx.account, f["MarketIndex"], f["ClientOrderIndex"], p.is_ask, f["Price"],
                             f["BaseAmount"], f["Type"], f["TimeInForce"], bool(f["ReduceOnly"]),
                             f["OrderExpiry"], now_ms, stp_mode=tx.attrs.get(ATTR_STP_MODE, 0),
                             api_key=tx.api_key, reserved=p.reserved, tx_hash=tx.tx_hash)
            return
        if now_ms > tx.expired_at:
            return
        if t == TX_CANCEL_ORDER:
            eng.cancel(tx.account, f["MarketIndex"], f["Index"], now_ms)
        elif t == TX_MODIFY_ORDER:
            want = tx.attrs.get(ATTR_ORDER_VERSION, 0)
            o = eng.find_order(tx.account, f["MarketIndex"], f["Index"]) if want else None
            if o is None or o.version == want:   # another modify executed first: a versioned one is void
                eng.modify(tx.account, f["MarketIndex"], f["Index"], f["BaseAmount"], f["Price"], now_ms, tx.tx_hash)
        elif t == TX_CANCEL_ALL:
            acct = eng.accounts[tx.account]
            tif = f["TimeInForce"]
            if tif == CANCEL_ALL_IMMEDIATE:
                mk = tx.attrs.get(ATTR_CANCEL_ALL_MARKET, NIL_MARKET)
                eng.cancel_all(tx.account, now_ms, None if mk == NIL_MARKET else mk)
            elif tif == CANCEL_ALL_SCHEDULED:
                acct.cancel_all_time = f["Time"]
                heapq.heappush(self.cancel_all_heap, (f["Time"], tx.account))
            else:
                acct.cancel_all_time = 0
            eng.events.append(("account", tx.account))
        elif t == TX_UPDATE_LEVERAGE:
            acct = eng.accounts[tx.account]
            pos = acct.pos(f["MarketIndex"])
            pos.imf = f["InitialMarginFraction"]
            pos.margin_mode = f["MarginMode"]
            eng.events.append(("account", tx.account))

    # -- time ------------------------------------------------------------------------------------
    def next_wakeup_ms(self) -> int:
        t = min(self.next_step_ms, self.next_funding_ms)
        if self.pending:
            t = min(t, self.pending[0][0])
        e = self.engine.next_expiry()
        if e is not None:
            t = min(t, e)
        if self.cancel_all_heap:
            t = min(t, self.cancel_all_heap[0][0])
        return t

    def advance(self, now_ms: int) -> None:
        """Run everything scheduled up to `now_ms`, in time order (call-pattern independent)."""
        eng = self.engine
        step = self.cfg.step_ms
        while True:
            t_exp = eng.next_expiry()
            t_exp = INF if t_exp is None else t_exp
            t_ca = self.cancel_all_heap[0][0] if self.cancel_all_heap else INF
            t_pend = self.pending[0][0] if self.pending else INF
            t = min(t_exp, t_ca, t_pend, self.next_funding_ms, self.next_step_ms)
            if t > now_ms:
                break
            eng.height = 1 + (t - self.genesis_ms) // BLOCK_MS
            if t == t_exp:
                eng.expire(t)
            elif t == t_ca:
                when, idx = heapq.heappop(self.cancel_all_heap)
                acct = eng.accounts[idx]
                if acct.cancel_all_time == when:
                    acct.cancel_all_time = 0
                    eng.cancel_all(idx, t)
                    eng.events.append(("account", idx))
            elif t == t_pend:
                _, _, p = heapq.heappop(self.pending)
                self._execute(p, t)
                self.txlog.executed(p.tx, t, eng.height, ok=t <= p.tx.expired_at)
            elif t == self.next_funding_ms:
                self._funding(t)
                self.next_funding_ms += self.cfg.funding_interval_s * 1000
            else:
                dt = step / 1000.0
                for sm in self.flow.values():
                    sm.step(eng, t, dt)
                self.next_step_ms += step
        self.now_ms = max(self.now_ms, now_ms)
        eng.height = 1 + (self.now_ms - self.genesis_ms) // BLOCK_MS

    def skip_to(self, now_ms: int) -> int:
        """After a stall (process paused, laptop asleep) drop the synthetic steps in the gap instead
        of replaying them all; orders, expiries and funding still run. Returns steps skipped."""
        step = self.cfg.step_ms
        if now_ms - self.next_step_ms <= step:
            return 0
        skipped = (now_ms - self.next_step_ms) // step
        self.next_step_ms += skipped * step
        return skipped

    def _funding(self, now_ms: int) -> None:
        """Hourly funding: longs pay shorts when the rate is positive (rate in 1e-6)."""
        eng = self.engine
        for mid, m in self.markets.items():
            rate = max(-5000, min(5000, int(round(self.funding_rng.gauss(10.0, 30.0)))))
            mark = eng.marks[mid]
            self.fundings[mid].append(FundingRecord(now_ms, mid, rate, mark))
            self.current_funding_ppm[mid] = rate
            self.funding_seq += 1
            for acct in eng.accounts.values():
                if acct.synthetic:
                    continue
                pos = acct.positions.get(mid)
                if pos is None or pos.size == 0:
                    continue
                value = m.notional(mark, abs(pos.size))
                pay = value * rate // 1_000_000
                change = -pay if pos.size > 0 else pay
                acct.collateral += change
                pos.funding_paid -= change
                rec = PositionFundingRecord(now_ms, mid, self.funding_seq, change, rate, abs(pos.size),
                                            "long" if pos.size > 0 else "short")
                self.position_fundings.setdefault(acct.index, deque(maxlen=5000)).append(rec)
                eng.events.append(("account", acct.index))
                eng.events.append(("funding", acct.index, rec))

    # -- model control ------------------------------------------------------------------------
    def set_model(self, market_id: int, spec: str, params: dict[str, float] | None = None) -> str:
        sm = self.flow.get(market_id)
        if sm is None:
            raise E.err(E.INVALID_MARKET)
        p = self.params.update(params or {})  # configured defaults + these overrides
        regime = make_regime(spec, p, self.tapes.get(market_id))
        sm.regime = regime
        sm.p = p
        return regime.name

    def price_jump(self, market_id: int, bps: float) -> None:
        sm = self.flow.get(market_id)
        if sm is None:
            raise E.err(E.INVALID_MARKET)
        sm.mid = max(1.0, sm.mid * (1.0 + bps / 1e4))
        self.engine.set_mark(market_id, sm.mark())
