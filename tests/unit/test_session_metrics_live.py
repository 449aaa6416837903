"""Live /metrics: the mm_session_* gauges are the one metrics implementation's figures."""
from __future__ import annotations

from decimal import Decimal

from prometheus_client import REGISTRY

from analytics.session import summarize
from shared.config import load_settings
from shared.schemas import BookTop, Fill, OrderIntent, Position
from shared.session_metrics import LiveSession, export

COI = (1_767_225_600_000 << 7) | 1   # a maker client order index (shared/ids.py)


def _msgs(t0: int) -> list:
    b = lambda t, bid, ask: BookTop(market_id=2, seq=t, venue_ts_ms=t, bids=[(bid, 100)], asks=[(ask, 100)])  # noqa: E731
    return [Position(market_id=2, position=0, ts_ms=t0), b(t0, 139_990, 140_010),
            OrderIntent(intent_id=f"maker-{COI}", source="maker", action="place", market_id=2, client_order_index=COI,
                        is_ask=False, price=139_995, size=100, created_ms=t0 + 1),
            Fill(market_id=2, trade_id=1, order_index=9, client_order_index=COI, is_ask=False, is_maker=True,
                 price=139_995, size=75, fee=0, ts_ms=t0 + 500),
            b(t0 + 1_000, 140_010, 140_030), b(t0 + 2_000, 140_020, 140_040)]


def test_the_gauges_are_the_summary_of_what_the_maker_saw() -> None:
    spec = load_settings().market_spec
    live = LiveSession(spec, 100)
    t0 = 1_796_000_000_000
    for m in _msgs(t0):
        live.feed(m, getattr(m, "ts_ms", getattr(m, "venue_ts_ms", getattr(m, "created_ms", t0))))
    s = LiveSession.summary(live.snapshot())
    assert s == summarize(live.builder) and s["fills_maker"] == 1
    export(s)
    got = REGISTRY.get_sample_value("mm_session_pnl_usd")
    assert got == float(Decimal(s["pnl_usd"])) and got > 0       # bought 0.075 at 139.995, mid now 140.030
    assert REGISTRY.get_sample_value("mm_session_fills", {"source": "maker"}) == 1
    assert REGISTRY.get_sample_value("mm_session_fill_ratio_maker") == 0.75
    assert REGISTRY.get_sample_value("mm_portfolio_markout_bps", {"source": "maker", "horizon": "1000ms"}) is not None


def test_the_window_restarts_carrying_the_position() -> None:
    spec = load_settings().market_spec
    live = LiveSession(spec, 100, window_s=1.0)
    t0 = 1_796_000_000_000
    for m in _msgs(t0):
        live.feed(m, getattr(m, "ts_ms", getattr(m, "venue_ts_ms", getattr(m, "created_ms", t0))))
    live.feed(Position(market_id=2, position=75, ts_ms=t0 + 2_500), t0 + 2_500)
    first = live.builder
    live.feed(BookTop(market_id=2, seq=9, venue_ts_ms=t0 + 3_000, bids=[(140_000, 1)], asks=[(140_020, 1)]), t0 + 3_000)
    assert live.builder is not first and live.builder.initial_position == 75
    assert LiveSession.summary(LiveSession(spec, 100).snapshot()) is None     # nothing before the first book
