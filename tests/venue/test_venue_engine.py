"""Pure matching engine: price-time priority, STP, post-only, IOC/market, reduce-only, modify, expiry."""
from __future__ import annotations

import pytest

from services.venue.engine import Engine
from services.venue.ledger import Account
from shared.tiers import TIERS
from services.venue.markets import default_markets
from services.venue.txs import (
    ORDER_LIMIT,
    ORDER_MARKET,
    STP_EXPIRE_BOTH,
    STP_EXPIRE_TAKER,
    STP_REDUCE,
    TIF_GTT,
    TIF_IOC,
    TIF_POST_ONLY,
)

T0 = 1_700_000_000_000
EXP = T0 + 3_600_000


def engine(tier: str = "standard") -> Engine:
    e = Engine(default_markets())
    for idx in (10, 11, 12, 13):
        e.add_account(Account(idx, f"0x{idx:040x}", 10**12, TIERS[tier]))
    return e


def limit(e: Engine, acct: int, is_ask: bool, price: int, size: int, tif: int = TIF_GTT, **kw):
    return e.create_order(acct, 0, kw.pop("coi", 0), is_ask, price, size, ORDER_LIMIT, tif,
                          kw.pop("reduce_only", False), EXP if tif != TIF_IOC else 0, kw.pop("now", T0), **kw)


def test_price_time_priority_and_partial_fill() -> None:
    e = engine()
    a1 = limit(e, 10, True, 300_000, 100)
    a2 = limit(e, 11, True, 300_000, 100)
    a0 = limit(e, 12, True, 299_900, 50)  # better price, later time
    taker = limit(e, 13, False, 300_000, 120, TIF_IOC)
    # better price first, then FIFO at 3000.00: a1 before a2
    assert (a0.status, a0.remaining) == ("filled", 0)
    assert (a1.status, a1.remaining) == ("open", 30)
    assert (a2.status, a2.remaining) == ("open", 100)
    assert taker.status == "filled" and taker.filled_base == 120
    trades = [ev[1] for ev in e.events if ev[0] == "trade"]
    assert [(t.price, t.size, t.ask_id) for t in trades] == [(299_900, 50, a0.order_index), (300_000, 70, a1.order_index)]
    assert e.books[0].level_size(True, 300_000) == 130


def test_fills_move_positions_collateral_and_fees_exactly() -> None:
    e = engine("premium")  # maker 40 / taker 280 ppm
    limit(e, 10, True, 300_000, 1_0000)  # 1 ETH @ 3000.00
    limit(e, 11, False, 300_000, 1_0000, TIF_IOC)
    notional = 3000 * 10**6
    assert e.accounts[10].positions[0].size == -1_0000
    assert e.accounts[11].positions[0].size == 1_0000
    assert e.accounts[10].collateral == 10**12 - notional * 40 // 10**6
    assert e.accounts[11].collateral == 10**12 - notional * 280 // 10**6
    # close the long higher: realized pnl 10 USDC minus taker fee
    limit(e, 12, False, 301_000, 1_0000)
    limit(e, 11, True, 301_000, 1_0000, TIF_IOC)
    p = e.accounts[11].positions[0]
    assert p.size == 0 and p.entry_quote == 0 and p.realized_pnl == 10 * 10**6


def test_post_only_that_would_cross_is_canceled_not_booked() -> None:
    e = engine()
    limit(e, 10, True, 300_000, 100)
    po = limit(e, 11, False, 300_000, 100, TIF_POST_ONLY)
    assert po.status == "canceled-post-only"
    assert e.books[0].best_bid() is None
    assert not any(ev[0] == "trade" for ev in e.events)
    ok = limit(e, 11, False, 299_999, 100, TIF_POST_ONLY)
    assert ok.status == "open" and e.books[0].best_bid() == 299_999


def test_market_order_statuses() -> None:
    e = engine()
    limit(e, 10, True, 300_000, 100)
    limit(e, 10, True, 301_000, 100)
    m = e.create_order(11, 0, 0, False, 300_500, 300, ORDER_MARKET, TIF_IOC, False, 0, T0)
    assert m.status == "canceled-too-much-slippage" and m.filled_base == 100
    m2 = e.create_order(11, 0, 0, False, 310_000, 300, ORDER_MARKET, TIF_IOC, False, 0, T0)
    assert m2.status == "canceled-not-enough-liquidity" and m2.filled_base == 100
    assert e.books[0].best_ask() is None


@pytest.mark.parametrize("mode,maker_status,taker_status,trades", [
    (0, "canceled-self-trade", "filled", 1),          # expire maker (default): then trades with next maker
    (STP_EXPIRE_TAKER, "open", "canceled-self-trade", 0),
    (STP_EXPIRE_BOTH, "canceled-self-trade", "canceled-self-trade", 0),
])
def test_self_trade_prevention(mode: int, maker_status: str, taker_status: str, trades: int) -> None:
    e = engine()
    own = limit(e, 10, True, 300_000, 100)
    limit(e, 11, True, 300_000, 100)
    t = limit(e, 10, False, 300_000, 100, TIF_IOC, stp_mode=mode)
    assert own.status == maker_status
    assert t.status == taker_status
    assert sum(1 for ev in e.events if ev[0] == "trade") == trades


def test_self_trade_reduce_mode_shrinks_both_without_trading() -> None:
    e = engine()
    own = limit(e, 10, True, 300_000, 100)
    t = limit(e, 10, False, 300_000, 60, TIF_IOC, stp_mode=STP_REDUCE)
    assert own.remaining == 40 and own.status == "open"
    assert t.status == "canceled-self-trade"
    assert not any(ev[0] == "trade" for ev in e.events)
    assert e.books[0].level_size(True, 300_000) == 40


def test_reduce_only_rules() -> None:
    e = engine()
    ro = limit(e, 10, True, 300_000, 100, reduce_only=True)
    assert ro.status == "canceled-reduce-only"  # no position
    limit(e, 11, True, 300_000, 100)
    limit(e, 10, False, 300_000, 100, TIF_IOC)  # account 10 long 100
    ro2 = limit(e, 10, True, 310_000, 500, reduce_only=True)
    assert ro2.status == "open" and ro2.remaining == 100  # capped at the position
    # position goes to zero through another order -> resting reduce-only is canceled
    limit(e, 12, False, 305_000, 100)
    limit(e, 10, True, 305_000, 100, TIF_IOC)
    assert ro2.status == "canceled-reduce-only"
    assert e.accounts[10].reserved_ask.get(0, 0) == 0


def test_cancel_by_client_order_index_and_modify_priority() -> None:
    e = engine()
    a = limit(e, 10, True, 300_000, 100, coi=7)
    b = limit(e, 11, True, 300_000, 100)
    # shrinking keeps priority
    e.modify(10, 0, 7, 80, 300_000, T0)
    assert a.remaining == 80 and list(e.books[0].asks[300_000].orders) == [a.order_index, b.order_index]
    # growing loses it
    e.modify(10, 0, a.order_index, 150, 300_000, T0)
    assert list(e.books[0].asks[300_000].orders) == [b.order_index, a.order_index]
    assert e.books[0].level_size(True, 300_000) == 250
    assert e.cancel(10, 0, 7, T0) is a and a.status == "canceled"
    assert e.cancel(10, 0, 7, T0) is None
    assert e.books[0].level_size(True, 300_000) == 100


def test_modify_that_crosses_trades_as_taker() -> None:
    e = engine()
    limit(e, 10, True, 300_000, 100)
    bid = limit(e, 11, False, 299_000, 100, coi=3)
    e.modify(11, 0, 3, 100, 300_000, T0)
    assert bid.status == "filled" and e.books[0].best_ask() is None


def test_expiry_and_reservations_return_to_zero() -> None:
    e = engine()
    o = e.create_order(10, 0, 0, False, 299_000, 100, ORDER_LIMIT, TIF_GTT, False, T0 + 10_000, T0)
    assert e.accounts[10].reserved_bid[0] == 100
    assert e.next_expiry() == T0 + 10_000
    e.expire(T0 + 9_999)
    assert o.status == "open"
    e.expire(T0 + 10_000)
    assert o.status == "canceled-expired" and e.accounts[10].reserved_bid[0] == 0
    assert e.books[0].best_bid() is None


def test_cancel_all_one_market_only() -> None:
    e = engine()
    limit(e, 10, True, 300_000, 100)
    x = e.create_order(10, 1, 0, True, 900_000, 100, ORDER_LIMIT, TIF_GTT, False, EXP, T0)
    assert e.cancel_all(10, T0, market_id=0) == 1
    assert x.status == "open" and e.books[0].best_ask() is None


def test_book_nonce_and_dirty_levels_describe_every_change() -> None:
    e = engine()
    b = e.books[0]
    n0 = b.nonce
    o = limit(e, 10, True, 300_000, 100)
    limit(e, 11, True, 300_100, 100)
    asks, bids = b.take_dirty()
    assert asks == [(300_000, 100), (300_100, 100)] and bids == []
    e.cancel_order(o, T0)
    assert b.take_dirty() == ([(300_000, 0)], [])
    assert b.nonce == n0 + 3


def check_invariants(e: Engine) -> None:
    """Book levels, indexes and exposure reservations all agree with the resting orders."""
    for book in e.books.values():
        for side, prices, is_ask in ((book.asks, book.ask_prices, True), (book.bids, book.bid_prices, False)):
            assert sorted(side) == prices
            for p, lv in side.items():
                assert lv.orders and lv.size == sum(o.remaining for o in lv.orders.values())
                for o in lv.orders.values():
                    assert e.orders[o.order_index] is o and o.is_ask == is_ask and o.price == p and o.remaining > 0
    for idx, acct in e.accounts.items():
        mine = e.account_orders[idx].values()
        for mid in e.markets:
            bid = sum(o.reserved for o in mine if o.market_id == mid and not o.is_ask)
            ask = sum(o.reserved for o in mine if o.market_id == mid and o.is_ask)
            assert acct.reserved_bid.get(mid, 0) == bid and acct.reserved_ask.get(mid, 0) == ask
            assert e.active_count.get((idx, mid), 0) == sum(1 for o in mine if o.market_id == mid)
    assert all(e.by_coi[(o.account, o.client_order_index)] is o for o in e.orders.values() if o.client_order_index)


def test_invariants_hold_under_random_operations() -> None:
    import random
    rng = random.Random(5)
    e = engine("premium")
    for i in range(3000):
        acct = rng.choice((10, 11, 12, 13))
        op = rng.random()
        live = list(e.account_orders[acct].values())
        if op < 0.55 or not live:
            tif = rng.choice((TIF_GTT, TIF_GTT, TIF_POST_ONLY, TIF_IOC))
            limit(e, acct, rng.random() < 0.5, 300_000 + rng.randint(-20, 20), rng.randint(1, 300), tif,
                  coi=i + 1, reduce_only=rng.random() < 0.1, stp_mode=rng.choice((0, 1, 2, 3)))
        elif op < 0.75:
            o = rng.choice(live)
            e.modify(acct, 0, o.order_index, o.filled_base + rng.randint(1, 300), 300_000 + rng.randint(-20, 20), T0)
        elif op < 0.95:
            e.cancel(acct, 0, rng.choice(live).order_index, T0)
        else:
            e.cancel_all(acct, T0)
        if i % 100 == 0:
            check_invariants(e)
    check_invariants(e)
    assert sum(a.positions[0].size for a in e.accounts.values() if 0 in a.positions) == 0
