"""The metrics' defining identities and hand-computed cases.

``analytics.mm_metrics`` (floats, one time grid) was replaced by ``analytics.session`` (exact, exchange
time): these are its original cases, now fed as bus messages to the one implementation every report
uses. The defects it had are pinned down in ``test_session_metrics.py``.
"""
from __future__ import annotations

import random
from fractions import Fraction

import pytest

from analytics.session import attribution, build_session, summarize
from shared.ids import IdMint
from shared.markets import MarketSpec
from shared.schemas import BookTop, Fill, OrderIntent, OrderUpdate

SOL = MarketSpec(2, "SOL", 3, 3, 50, 10_000_000)
T0 = 1_700_000_000_000
MINT = IdMint("maker")


def mid(t: int, m: int, half: int = 10) -> BookTop:
    """A book whose mid is ``m`` ticks, ``half`` ticks either side."""
    return BookTop(market_id=2, seq=t, venue_ts_ms=T0 + t, bids=[(m - half, 1000)], asks=[(m + half, 1000)])


def fill(t: int, bought: bool, price: int, lots: int, tid: int, fee: int = 0, coi: int | None = None) -> Fill:
    return Fill(market_id=2, trade_id=tid, order_index=tid, client_order_index=coi or MINT.next_coi(T0),
                is_ask=not bought, is_maker=True, price=price, size=lots, fee=fee, ts_ms=T0 + t)


def test_round_trip_capture_and_markout_by_hand() -> None:
    msgs = [mid(0, 100_000), mid(1000, 100_000), mid(2000, 101_000), mid(10_000, 101_000),
            fill(500, True, 99_900, 2000, 1), fill(1500, False, 100_100, 2000, 2)]
    b = build_session(msgs, SOL)
    a = attribution(b)
    # bought 2 @ 99.9 and sold 2 @ 100.1 around a mid of 100: 0.2 + 0.2; flat over the move to 101
    assert (a.spread_capture, a.inventory_pnl, a.fees) == (Fraction(4, 10), 0, 0)
    mk = summarize(b, horizons_ms=(1000,))["markout_bps"]["maker"]
    # bought 99.9, mid 1 s later 100 -> +0.1; sold 100.1, mid 1 s later 101 -> -0.9; size-weighted per unit
    assert mk["1000ms"]["per_unit_usd"] == pytest.approx((2 * 0.1 + 2 * (100.1 - 101.0)) / 4)
    assert mk["1000ms"]["bps"] == pytest.approx((0.1 / 100 + (100.1 - 101.0) / 100) / 2 * 1e4)
    assert mk["0ms"]["per_unit_usd"] == pytest.approx(0.1)


def test_attribution_identity_holds_exactly_on_random_sessions() -> None:
    rng = random.Random(7)
    for _ in range(20):
        t, m, msgs = 0, 100_000, [mid(0, 100_000)]
        for _ in range(300):
            t += rng.randint(1, 400)
            m += rng.randint(-50, 50)
            msgs.append(mid(t, m, rng.randint(1, 20)))
        msgs += [fill(rng.randint(1, t), rng.random() < 0.5, 100_000 + rng.randint(-300, 300), rng.randint(100, 1000),
                      i + 1, fee=rng.randint(-10, 10)) for i in range(40)]
        a = attribution(build_session(msgs, SOL))
        assert a.pnl + a.fees == a.spread_capture + a.inventory_pnl   # exactly, not isclose


def test_uptime_bid_ask_both() -> None:
    bid, ask = MINT.next_coi(T0), MINT.next_coi(T0)

    def upd(t: int, oi: int, coi: int, is_ask: bool, status: str) -> OrderUpdate:
        return OrderUpdate(market_id=2, order_index=oi, client_order_index=coi, is_ask=is_ask, price=100_000,
                           initial_size=100, remaining_size=100, filled_size=0, status=status, ts_ms=T0 + t)

    msgs = [mid(0, 100_000), upd(0, 1, bid, False, "open"), upd(300, 2, ask, True, "open"),
            upd(600, 1, bid, False, "canceled"), mid(1000, 100_000)]
    up = summarize(build_session(msgs, SOL))["uptime_maker"]
    assert {k: up[k] for k in ("bid", "ask", "both")} == {"bid": 0.6, "ask": 0.7, "both": 0.3}


def test_report_inventory_drawdown_and_fill_ratio() -> None:
    coi = MINT.next_coi(T0)
    msgs = [mid(0, 100_000, 50), mid(5000, 98_000, 50), mid(10_000, 98_000, 50),
            OrderIntent(intent_id="maker-1", source="maker", action="place", market_id=2, client_order_index=coi,
                        price=100_000, size=4000, created_ms=T0 + 900),
            fill(1000, True, 100_000, 1000, 1, coi=coi)]
    s = summarize(build_session(msgs, SOL))
    assert s["pnl_usd"] == "-2.000000" and s["max_drawdown_usd"] == "2.000000"
    assert s["liquidation_pnl_usd"] == "-2.050000"     # long 1 marked at the bid, 0.05 under the mid
    inv = s["inventory"]
    assert inv["max_abs_base"] == "1.000" and inv["tw_mean_abs_base"] == pytest.approx(0.9)
    assert s["fill_ratio_maker"] == 0.25
