"""analytics.session: hand-computed sessions, one per defect the old reports had, plus the exact identity.

Prices are SOL ticks (3 decimals: 100_000 = 100.000 USD), sizes lots (3 decimals: 100 = 0.100 SOL),
fees micro-USDC. Every expected number below is worked out by hand in the comment next to it.
"""
from __future__ import annotations

import json
import random
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pytest

from shared.fees import fee_micro, fee_micro_decimal, notional_micro
from analytics.session import (
    SessionBuilder,
    SessionFill,
    attribution,
    build_session,
    curves,
    exact_decimal,
    read_messages,
    summarize,
    write_messages,
)
from scripts.fetch_trades import fills_from_trade
from services.venue.engine import Engine
from services.venue.ledger import Account
from shared.tiers import FEE_SCALE, TIERS
from services.venue.markets import Market, default_markets
from services.venue.txs import ORDER_LIMIT, TIF_GTT, TIF_IOC
from shared.ids import IdMint
from shared.markets import MarketSpec
from shared.schemas import BookTop, Fill, OrderIntent, OrderUpdate, Position, Reconcile, Trade

SOL = MarketSpec(2, "SOL", 3, 3, 50, 10_000_000)
T0 = 1_700_000_000_000


class Ids:
    def __init__(self) -> None:
        self.maker, self.hedger = IdMint("maker"), IdMint("hedger")
        self.trade = 0

    def m(self) -> int:
        return self.maker.next_coi(T0)

    def h(self) -> int:
        return self.hedger.next_coi(T0)

    def tid(self) -> int:
        self.trade += 1
        return self.trade


def book(t: int, bid: int, ask: int) -> BookTop:
    return BookTop(market_id=2, seq=t - T0, venue_ts_ms=t, bids=[(bid, 1000)], asks=[(ask, 1000)])


def fill(t: int, coi: int, is_ask: bool, price: int, size: int, fee: int = 0, tid: int = 0, maker: bool = True,
         oi: int = 0) -> Fill:
    return Fill(market_id=2, trade_id=tid, order_index=oi, client_order_index=coi, is_ask=is_ask, is_maker=maker,
                price=price, size=size, fee=fee, ts_ms=t)


def order(t: int, oi: int, coi: int, is_ask: bool, price: int, status: str, size: int = 100) -> OrderUpdate:
    return OrderUpdate(market_id=2, order_index=oi, client_order_index=coi, is_ask=is_ask, price=price,
                       initial_size=size, remaining_size=size, filled_size=0, status=status, ts_ms=t)


def intent(t: int, coi: int, is_ask: bool, price: int, size: int, source: str = "maker", action: str = "place",
           tif: str = "post_only") -> OrderIntent:
    return OrderIntent(intent_id=f"{source}-{coi}", source=source, action=action, market_id=2,  # type: ignore[arg-type]
                       client_order_index=coi, is_ask=is_ask, price=price, size=size, tif=tif,  # type: ignore[arg-type]
                       created_ms=t)


def D(s: str) -> Decimal:
    return Decimal(s)


# --------------------------------------------------------------------------------------------- maker vs hedger
def _maker_and_hedger() -> list:
    ids = Ids()
    m1, m2, h1 = ids.m(), ids.m(), ids.h()
    return [
        book(T0, 99_990, 100_010),                                   # mid 100.000
        intent(T0 + 10, m1, False, 99_995, 100),                     # maker submits 0.100 + 0.100
        intent(T0 + 10, m2, True, 100_005, 100),
        intent(T0 + 20, h1, True, 99_000, 300, "hedger", tif="ioc"),  # hedger submits 0.300 (not the maker's)
        fill(T0 + 100, m1, False, 99_995, 100, fee=4, tid=1),        # maker bought 0.1 @ 99.995: edge +0.005
        fill(T0 + 200, h1, True, 99_990, 300, fee=84, tid=2, maker=False),  # hedger sold 0.3 @ 99.990: edge -0.010
        book(T0 + 1_000, 99_990, 100_010),
        book(T0 + 2_000, 99_980, 100_000),                           # mid 99.990
    ]


def test_fill_ratio_counts_only_the_makers_fills_against_the_makers_submissions() -> None:
    s = summarize(build_session(_maker_and_hedger(), SOL))
    assert s["fill_ratio_maker"] == 0.5          # 100 maker lots filled / 200 maker lots submitted
    assert (s["filled_lots_maker"], s["submitted_lots_maker"], s["orders_placed_maker"]) == (100, 200, 2)
    # the old report divided every fill by the maker's submissions: (100 + 300) / 200 = 2.0
    assert (s["fills_maker"], s["fills_hedger"], s["fills"]) == (1, 1, 2)
    assert (s["volume_maker"], s["volume_hedger"]) == ("0.100", "0.300")
    assert s["by_source"]["maker"]["fees_micro"] == 4 and s["by_source"]["hedger"]["fees_micro"] == 84


def test_markouts_are_per_source() -> None:
    s = summarize(build_session(_maker_and_hedger(), SOL), horizons_ms=(100, 1000))
    mk, hd = s["markout_bps"]["maker"], s["markout_bps"]["hedger"]
    # maker: bought 0.1 @ 99.995 with mid 100.000: +0.005 = +0.5 bps; 100 ms later mid still 100.000
    assert mk["0ms"]["n"] == 1 and mk["0ms"]["bps"] == pytest.approx(0.5)
    assert mk["100ms"]["bps"] == pytest.approx(0.5) and mk["100ms"]["per_unit_usd"] == pytest.approx(0.005)
    # ... and 1 s later (t = 1100) the mid is still 100.000 (it moves to 99.990 at 2000)
    assert mk["1000ms"]["n"] == 1 and mk["1000ms"]["bps"] == pytest.approx(0.5)
    # hedger: sold 0.3 @ 99.990 into mid 100.000: -0.010 = -1 bps; never mixed into the maker's
    assert hd["0ms"]["n"] == 1 and hd["0ms"]["bps"] == pytest.approx(-1.0)
    assert hd["1000ms"]["bps"] == pytest.approx(-1.0)
    # mixed (the old report): (0.1 * 0.5 + 0.3 * -1) / 0.4 = -0.625 bps
    assert s["markout_bps"]["other"]["0ms"]["n"] == 0
    # spread capture splits by source the same way and adds up to the total
    assert s["by_source"]["maker"]["spread_capture_usd"] == "0.000500"
    assert s["by_source"]["hedger"]["spread_capture_usd"] == "-0.003000"
    assert s["spread_capture_usd"] == "-0.002500"


# --------------------------------------------------------------------------------------------- horizons
def test_each_horizon_uses_every_fill_it_can_observe() -> None:
    ids = Ids()
    c1, c2, c3 = ids.m(), ids.m(), ids.m()
    msgs = [book(T0, 99_990, 100_010),                          # mid 100.000
            fill(T0 + 1_000, c1, False, 99_990, 100, tid=1),   # each bought 0.1 @ 99.990: edge +0.010 = 1 bps
            fill(T0 + 56_000, c2, False, 99_990, 100, tid=2),
            fill(T0 + 60_500, c3, False, 99_990, 100, tid=3),
            book(T0 + 60_550, 100_090, 100_110),               # mid 100.100: +0.110 vs the fills = 11 bps
            book(T0 + 61_000, 100_090, 100_110)]               # the end
    s = summarize(build_session(msgs, SOL))
    assert (s["start_ms"], s["end_ms"]) == (T0, T0 + 61_000)
    mk = s["markout_bps"]["maker"]
    got = {h: (v["n"], v["bps"]) for h, v in mk.items()}
    # 100 ms: all three (60 500 + 100 <= 61 000); mids 100.000, 100.000, 100.100 -> (1 + 1 + 11) / 3
    assert got["100ms"][0] == 3 and got["100ms"][1] == pytest.approx(13 / 3)
    # 1 s: the last fill is 500 ms before the end, so two fills, both still at 100.000
    assert got["1000ms"][0] == 2 and got["1000ms"][1] == pytest.approx(1.0)
    # 5 s: fill 1 (at 6 000: 1 bps) and fill 2 (at 61 000: 11 bps)
    assert got["5000ms"][0] == 2 and got["5000ms"][1] == pytest.approx(6.0)
    # 30 s and 60 s: only fill 1 (at 31 000: 1 bps; at 61 000: 11 bps)
    assert got["30000ms"] == (1, pytest.approx(1.0)) and got["60000ms"] == (1, pytest.approx(11.0))
    assert got["0ms"][0] == 3 and got["0ms"][1] == pytest.approx(1.0)
    # the one common fill set (observable at 60 s) is fill 1 alone, at every horizon
    assert {h: v["n"] for h, v in s["markout_common_bps"]["maker"].items()} == dict.fromkeys(mk, 1)
    assert s["markout_common_bps"]["maker"]["100ms"]["bps"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------- exchange time
def _quoting_session() -> tuple[list, list[int]]:
    ids = Ids()
    bid, ask = ids.m(), ids.m()
    msgs = [book(T0, 99_990, 100_010),
            order(T0 + 1_000, 7, bid, False, 99_995, "open"),
            order(T0 + 2_000, 8, ask, True, 100_005, "open"),
            order(T0 + 3_000, 7, bid, False, 99_995, "canceled"),
            fill(T0 + 4_000, ask, True, 100_005, 100, tid=1, oi=8),     # sold 0.1 @ 100.005 into mid 100.000
            order(T0 + 4_000, 8, ask, True, 100_005, "filled"),
            book(T0 + 4_050, 100_000, 100_020),                          # mid 100.010 50 ms after the fill
            book(T0 + 8_000, 100_000, 100_020)]
    return msgs, [bid, ask]


def test_uptime_and_markouts_use_exchange_time_not_arrival_time() -> None:
    msgs, _ = _quoting_session()
    # everything arrives late and in a burst, one stream after the other (each stream keeps its own order)
    books_first = sorted(msgs, key=lambda m: not isinstance(m, BookTop))
    account_first = sorted(msgs, key=lambda m: isinstance(m, BookTop))
    late = [[(T0 + 7_000 + i, m) for i, m in enumerate(order)] for order in (books_first, account_first)]
    for items in (msgs, *late):
        s = summarize(build_session(items, SOL), horizons_ms=(100,))
        # bid rests 1 000..3 000, ask 2 000..4 000, window 0..8 000
        assert s["uptime_maker"] == {"bid": 0.25, "ask": 0.25, "both": 0.125, "any": 0.375}
        assert s["two_sided_uptime"] == 0.125
        # edge: -(100.000 - 100.005) = +0.005 = 0.5 bps; 100 ms later (4 100) the mid is 100.010: -0.5 bps
        mk = s["markout_bps"]["maker"]
        assert mk["0ms"]["bps"] == pytest.approx(0.5) and mk["100ms"]["bps"] == pytest.approx(-0.5)
        assert (s["start_ms"], s["end_ms"]) == (T0, T0 + 8_000)


def test_order_updates_stamped_with_the_orders_creation_time_end_when_the_account_stream_says() -> None:
    """The feed dates every update of an order with its creation ``transaction_time`` (what the venue sends)."""
    ids = Ids()
    bid, ask = ids.m(), ids.m()
    msgs = [book(T0, 99_990, 100_010),
            order(T0 + 1_000, 7, bid, False, 99_995, "open"),
            order(T0 + 1_000, 8, ask, True, 100_005, "open"),
            Position(market_id=2, position=0, ts_ms=T0 + 3_000),       # the venue's clock, on the account stream
            order(T0 + 1_000, 7, bid, False, 99_995, "canceled"),      # stamped 1 000, seen after 3 000
            order(T0 + 1_000, 8, ask, True, 100_005, "filled"),        # its fill comes next, at 3 500
            fill(T0 + 3_500, ask, True, 100_005, 100, tid=1, oi=8),
            Position(market_id=2, position=-100, ts_ms=T0 + 3_600),
            book(T0 + 5_000, 99_990, 100_010)]
    up = summarize(build_session(msgs, SOL))["uptime_maker"]
    # bid 1 000..3 000, ask 1 000..3 500 (its last fill), window 0..5 000
    assert up == {"bid": 0.4, "ask": 0.5, "both": 0.4, "any": 0.5}


def test_a_modify_moves_the_quote_and_counts_its_new_remaining_size_once() -> None:
    ids = Ids()
    c = ids.m()
    msgs = [book(T0, 99_990, 100_010),
            intent(T0 + 1, c, False, 99_995, 100),
            order(T0 + 2, 7, c, False, 99_995, "open"),
            fill(T0 + 10, c, False, 99_995, 40, tid=1, oi=7),
            intent(T0 + 20, c, False, 99_996, 100, action="modify"),   # new total 100: 60 more offered
            order(T0 + 22, 7, c, False, 99_996, "open"),
            fill(T0 + 35, c, False, 99_996, 60, tid=2, oi=7),
            order(T0 + 35, 7, c, False, 99_996, "filled"),
            book(T0 + 100, 99_990, 100_010)]
    s = summarize(build_session(msgs, SOL))
    assert (s["submitted_lots_maker"], s["filled_lots_maker"], s["fill_ratio_maker"]) == (160, 100, 100 / 160)
    assert (s["orders_placed_maker"], s["orders_modified_maker"]) == (1, 1)
    # the same whatever order the streams are fed in (intents after the account stream, as the lab does)
    again = build_session([m for m in msgs if not isinstance(m, OrderIntent)] +
                          [m for m in msgs if isinstance(m, OrderIntent)], SOL)
    assert summarize(again)["submitted_lots_maker"] == 160
    c2 = curves(build_session(msgs, SOL), 10)
    assert [r[2] for r in c2["quotes"]][:5] == [None, 99.995, 99.995, 99.996, None]


# --------------------------------------------------------------------------------------------- exact PnL at the end
def test_pnl_is_evaluated_at_the_exact_end_and_the_identity_holds_exactly() -> None:
    ids = Ids()
    c = ids.m()
    msgs = [book(T0, 99_990, 100_010),                        # mid 100.000
            fill(T0 + 500, c, False, 99_995, 100, fee=4, tid=1),
            book(T0 + 2_400, 100_040, 100_060)]               # mid 100.050, 400 ms after the last whole second
    b = build_session(msgs, SOL)
    s = summarize(b, end_ms=T0 + 2_500)
    # capture 0.1 x (100.000 - 99.995) = 0.0005; inventory 0.1 x 0.050 = 0.005; fees 4 micro
    assert (s["spread_capture_usd"], s["inventory_pnl_usd"], s["fees_usd"]) == ("0.000500", "0.005000", "0.000004")
    assert s["pnl_usd"] == "0.005496"      # a 1 s grid would stop at 2 000: 0.000496
    assert s["liquidation_pnl_usd"] == "0.004496"    # long 0.1 marked at the bid 100.040: 0.1 x 0.010 less
    a = attribution(b, end_ms=T0 + 2_500)
    assert a.pnl == a.spread_capture + a.inventory_pnl - a.fees == Fraction(5496, 10**6)
    assert Decimal(s["pnl_usd"]) == Decimal(s["spread_capture_usd"]) + Decimal(s["inventory_pnl_usd"]) - Decimal(s["fees_usd"])
    # the last curve row is the exact end, equal to the summary
    c2 = curves(b, 1_000, end_ms=T0 + 2_500)
    assert c2["equity"][-1] == [T0 + 2_500, 0.005496, 0.0005, 0.005, 0.000004]
    assert [r[0] - T0 for r in c2["equity"]] == [0, 1_000, 2_000, 2_500]


def test_half_tick_mids_stay_exact() -> None:
    ids = Ids()
    c = ids.h()
    msgs = [book(T0, 100_000, 100_001),                           # mid 100.0005
            fill(T0 + 10, c, True, 100_000, 1, fee=1, tid=1, maker=False),  # sold 0.001 @ 100.000
            book(T0 + 20, 100_001, 100_004)]                      # mid 100.0025
    s = summarize(build_session(msgs, SOL))
    # capture -0.001 x (100.0005 - 100.000) = -0.0000005; inventory -0.001 x 0.002 = -0.000002
    assert (s["spread_capture_usd"], s["inventory_pnl_usd"], s["pnl_usd"]) == ("-0.0000005", "-0.000002", "-0.0000035")
    with localcontext() as ctx:
        ctx.prec = 50
        assert Decimal(s["pnl_usd"]) == Decimal(s["spread_capture_usd"]) + Decimal(s["inventory_pnl_usd"]) - Decimal(s["fees_usd"])


def _naive_equity(fills: list[Fill], books: list[BookTop], t: int, q0: int = 0) -> Fraction:
    """E(t) = X + q m - F from scratch: everything stamped at or before t (no event order involved)."""
    x = Fraction(0)
    q = q0
    fees = 0
    for f in fills:
        if f.ts_ms <= t:
            s = -1 if f.is_ask else 1
            x -= Fraction(s * f.size * f.price, 10**6)
            q += s * f.size
            fees += f.fee
    last = [b for b in books if b.venue_ts_ms <= t][-1]   # books are in stream order (non-decreasing time)
    m = Fraction(last.bids[0][0] + last.asks[0][0], 2 * 1000)
    return x + Fraction(q, 1000) * m - Fraction(fees, 10**6)


def test_identity_and_pnl_exact_on_random_sessions() -> None:
    rng = random.Random(11)
    for _ in range(40):
        ids = Ids()
        books, fills, t, bid = [book(T0, 99_990, 100_010)], [], T0, 99_990
        for _ in range(rng.randint(5, 80)):
            t += rng.choice((0, 1, 7, 250, 1_000))       # same-millisecond events included
            bid += rng.randint(-5, 5)
            books.append(book(t, bid, bid + rng.randint(1, 9)))
        for _ in range(rng.randint(0, 40)):
            ft = rng.choice([b.venue_ts_ms for b in books] + [rng.randint(T0, t)])  # also on a book's millisecond
            coi = rng.choice((ids.m, ids.h))()
            fills.append(fill(ft, coi, rng.random() < 0.5, rng.randint(99_900, 100_100), rng.randint(1, 300),
                              fee=rng.randint(-30, 300), tid=ids.tid(), maker=rng.random() < 0.5))
        msgs: list = list(books)
        for f in fills:   # fills land anywhere among the books (another stream); each stream keeps its order
            msgs.insert(rng.randint(0, len(msgs)), f)
        b = build_session(msgs, SOL)
        end = t + rng.randint(0, 1_500)
        a = attribution(b, end_ms=end)
        assert a.pnl == a.spread_capture + a.inventory_pnl - a.fees
        assert a.pnl == _naive_equity(fills, books, end) - _naive_equity(fills, books, T0)
        s = summarize(b, end_ms=end)
        assert Fraction(Decimal(s["pnl_usd"])) == a.pnl and s["fees_micro"] == sum(f.fee for f in fills if f.ts_ms > T0)
        # a window inside the session: inventory held at its start is marked from there
        mid_t = rng.randint(T0, t)
        w = attribution(b, start_ms=mid_t, end_ms=end)
        assert w.pnl == w.spread_capture + w.inventory_pnl - w.fees
        assert w.pnl == _naive_equity(fills, books, end) - _naive_equity(fills, books, mid_t)


# --------------------------------------------------------------------------------------------- fees
def test_fees_are_the_sum_of_the_per_fill_integers() -> None:
    ids = Ids()
    c = ids.m()
    fees = [3, -1, 7, 2, 0, 561]
    msgs = [book(T0, 99_990, 100_010)] + [fill(T0 + 1 + i, c, i % 2 == 1, 100_000, 100, fee=f, tid=i + 1)
                                           for i, f in enumerate(fees)] + [book(T0 + 100, 99_990, 100_010)]
    s = summarize(build_session(msgs, SOL))
    assert s["fees_micro"] == 572 and s["fees_usd"] == "0.000572"


def test_the_fee_function_is_the_venues_rounding() -> None:
    """shared.fees.fee_micro against the venue's own engine: the fee it books on real fills."""
    rng = random.Random(5)
    markets = default_markets()
    e = Engine(markets)
    for idx in (10, 11):
        e.add_account(Account(idx, f"0x{idx:040x}", 10**15, TIERS["premium"]))   # maker 40, taker 280 ppm
    checked = 0
    for _ in range(60):
        mid = rng.choice(sorted(markets))
        m = markets[mid]
        price = m.start_mid + rng.randint(-5_000, 5_000)
        lots = rng.randint(m.min_base, 40 * m.min_base) + rng.randint(0, 9)
        if m.notional(price, lots) < m.min_quote:
            continue
        e.events.clear()
        e.create_order(10, mid, 0, True, price, lots, ORDER_LIMIT, TIF_GTT, False, T0 + 3_600_000, T0)
        e.create_order(11, mid, 0, False, price, lots, ORDER_LIMIT, TIF_IOC, False, 0, T0)
        (t,) = [ev[1] for ev in e.events if ev[0] == "trade"]
        assert t.maker_fee_paid == fee_micro(price, lots, 40, m.price_decimals, m.size_decimals)
        assert t.taker_fee_paid == fee_micro(price, lots, 280, m.price_decimals, m.size_decimals)
        assert t.taker_fee_paid == fee_micro_decimal(m.fmt_price(price), m.fmt_size(lots), 280)
        checked += 1
    assert checked > 30
    # decimals finer than micro-USDC (the venue floors the notional first), and rebates
    fine = Market(9, "FINE", 4, 4, 1, 1, 10_000)
    for _ in range(200):
        p, v, rate = rng.randint(1, 10**7), rng.randint(1, 10**6), rng.randint(-300, 300)
        assert fee_micro(p, v, rate, 4, 4) == fine.notional(p, v) * rate // FEE_SCALE
        assert notional_micro(p, v, 4, 4) == fine.notional(p, v)
        assert fee_micro_decimal(fine.fmt_price(p), fine.fmt_size(v), rate) == fee_micro(p, v, rate, 4, 4)
    assert fee_micro(140_125, 50, -28, 3, 3) == -197   # 7.00625 USD x -28 ppm = -196.175: floored like the venue


def test_fetch_trades_fee_uses_the_venue_rounding() -> None:
    t = {"trade_id": 1, "market_id": 2, "price": "140.123", "size": "0.100", "bid_account_id": 7, "ask_account_id": 9,
         "is_maker_ask": True, "timestamp": 1, "maker_fee": 40, "taker_fee": 280, "bid_client_id": 0}
    (f,) = fills_from_trade(t, 7)   # we bought from a resting ask: taker, 14.0123 USD x 280 ppm = 3923.444 micro
    assert f.fee_micro == 3923 and f.fee == Decimal("0.003923")


# --------------------------------------------------------------------------------------------- Sharpe
def _drifting(seconds: int) -> SessionBuilder:
    """Long 1.000 SOL from the start; the mid steps by +0.010, +0.020, +0.010, ... every 60 s."""
    ids = Ids()
    msgs = [book(T0, 99_990, 100_010), fill(T0 + 1, ids.m(), False, 100_000, 1_000, tid=1)]
    bid = 99_990
    for k in range(1, seconds // 60 + 1):
        bid += 10 if k % 2 else 20
        msgs.append(book(T0 + k * 60_000 - 30_000, bid, bid + 20))
    msgs.append(book(T0 + seconds * 1000, bid, bid + 20))
    return build_session(msgs, SOL)


def test_sharpe_is_absent_with_too_few_intervals() -> None:
    s = summarize(_drifting(120))
    sh = s["sharpe"]
    assert sh["value"] is None and sh["samples"] == 2 and sh["interval_s"] == 60
    assert "2 complete 60 s intervals" in sh["reason"] and "30" in sh["reason"]
    assert s["sortino"]["value"] is None
    # 1 s buckets of the same 2 minutes: 120 samples, enough, but stated as per 1 s, not annualised
    sh1 = summarize(_drifting(120), sharpe_interval_s=1)["sharpe"]
    assert sh1["samples"] == 120 and sh1["scaling"] == "per interval, not annualised"


def test_sharpe_per_interval_by_hand() -> None:
    s = summarize(_drifting(1_860))      # 31 minutes: 31 intervals of 60 s
    sh = s["sharpe"]
    # each interval's dE = 1.000 SOL x the mid step: 0.01, 0.02, 0.01, ... (16 of 0.01, 15 of 0.02)
    d = [0.01 if k % 2 else 0.02 for k in range(1, 32)]
    mean = sum(d) / 31
    std = (sum((x - mean) ** 2 for x in d) / 30) ** 0.5
    assert sh["samples"] == 31 and sh["value"] == pytest.approx(mean / std) and sh["reason"] == ""
    assert s["sortino"]["value"] is None and s["sortino"]["reason"] == "no losing interval"


# --------------------------------------------------------------------------------------------- inputs
def test_duplicate_fills_from_a_reconcile_count_once_and_position_recovers_the_start() -> None:
    ids = Ids()
    c = ids.m()
    f1 = fill(T0 + 10, c, False, 99_995, 100, fee=4, tid=1)
    f2 = fill(T0 + 20, c, False, 99_995, 50, fee=2, tid=2)
    msgs = [Position(market_id=2, position=300, ts_ms=T0 - 5),   # the venue says 0.300 long before our fills
            book(T0, 99_990, 100_010), f1,
            Reconcile(reason="gap", as_of_ms=T0 + 30, fills=[f1, f2], ts_ms=T0 + 30), f2,
            Trade(market_id=2, trade_id=9, price=1, size=1, taker_is_ask=True, ts_ms=T0),  # ignored
            book(T0 + 1_000, 100_000, 100_020)]                 # mid +0.010
    s = summarize(build_session(msgs, SOL))
    assert (s["fills"], s["duplicate_fills"], s["fees_micro"]) == (2, 2, 6)
    assert (s["position_start_lots"], s["position_end_lots"], s["venue_position_lots"]) == (300, 450, 300)
    # inventory: 0.450 SOL over +0.010 = 0.0045; capture 0.150 x 0.005 = 0.00075
    assert (s["inventory_pnl_usd"], s["spread_capture_usd"]) == ("0.004500", "0.000750")
    assert s["max_abs_position"] == {"lots": 450, "base": "0.450"}


def test_a_recorded_file_gives_the_same_summary(tmp_path: Path) -> None:
    msgs = _maker_and_hedger()
    path = tmp_path / "session.jsonl"
    with path.open("w") as fh:
        assert write_messages(msgs, fh) == len(msgs)
    again = list(read_messages(path))
    assert again == msgs
    assert summarize(build_session(again, SOL)) == summarize(build_session(msgs, SOL))
    summary = summarize(build_session(again, SOL))
    json.dumps(summary, allow_nan=False)  # JSON-ready: no NaN, no Fraction
    json.dumps(curves(build_session(again, SOL), 500), allow_nan=False)


def test_curves_shapes() -> None:
    c = curves(build_session(_maker_and_hedger(), SOL), 1_000)
    assert [r[0] - T0 for r in c["equity"]] == [0, 1_000, 2_000]
    for t, pnl, cap, inv, fees in c["equity"]:
        assert pnl == pytest.approx(cap + inv - fees)
    assert c["inventory"][-1] == [T0 + 2_000, -0.2]
    assert c["quotes"][0] == [T0, 100.0, None, None] and c["book"][-1] == [T0 + 2_000, 99.98, 100.0]
    assert dict(c["markouts"]["hedger"])[0] == pytest.approx(-1.0)
    assert c["fills"] == [[T0 + 100, "maker", 1, 99.995, 0.1], [T0 + 200, "hedger", -1, 99.99, 0.3]]


def test_session_fills_added_directly_and_exact_decimal() -> None:
    b = SessionBuilder(SOL)
    b.feed(book(T0, 99_990, 100_010))
    assert b.add_fill(SessionFill(T0 + 5, 2, "maker", False, True, 99_995, 100, 4, 1))
    assert not b.add_fill(SessionFill(T0 + 5, 2, "maker", False, True, 99_995, 100, 4, 1))
    assert not b.add_fill(SessionFill(T0 + 5, 3, "maker", False, True, 99_995, 100, 4, 2))   # another market
    assert summarize(b, end_ms=T0 + 10)["pnl_usd"] == "0.000496"
    assert exact_decimal(Fraction(-1, 8)) == "-0.125000" and exact_decimal(Fraction(3, 2 * 10**7)) == "0.00000015"
    with pytest.raises(ValueError):
        exact_decimal(Fraction(1, 3))
