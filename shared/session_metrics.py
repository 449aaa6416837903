"""The trader's metrics on live ``/metrics``, from the one implementation (``analytics.session``).

The maker's shell feeds every message its core handles (books, account, order events) and its own
intents to a ``LiveSession``; every ``every_s`` it summarises the current window in a worker thread
(the event loop keeps quoting) and sets the ``mm_session_*`` gauges. The window restarts every
``window_s`` (default one hour) carrying the position, so memory and the summary's cost stay bounded
and the figures read "this hour so far". Money is exact in the summary; a Prometheus gauge is a
float, which is fine for a dashboard (the exact figures are in ``mm_report`` and the lab).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from prometheus_client import Gauge

from analytics.session import NoBookData, SessionBuilder, summarize
from shared.markets import MarketSpec
from shared.metrics import metric
from shared.schemas import Msg, OrderIntent

MONEY = ("pnl_usd", "spread_capture_usd", "inventory_pnl_usd", "fees_usd", "max_drawdown_usd")
SOURCES = ("maker", "hedger")

PNL = {k: metric(Gauge, f"mm_session_{k}", f"This window's {k.removesuffix('_usd').replace('_', ' ')} (USD)", [])
       for k in MONEY}
FILLS = metric(Gauge, "mm_session_fills", "Fills in this window, by source", ["source"])
MARKOUT = metric(Gauge, "mm_portfolio_markout_bps", "Size-weighted markout in the maker's session window (bps)", ["source", "horizon"])
FILL_RATIO = metric(Gauge, "mm_session_fill_ratio_maker", "Maker lots filled / maker lots submitted, this window", [])
UPTIME = metric(Gauge, "mm_portfolio_quote_uptime_ratio", "Fraction of the maker's session window with our bid and ask both resting", [])
MAX_POS = metric(Gauge, "mm_session_max_abs_position", "Largest |position| in this window (base units)", [])
WINDOW = metric(Gauge, "mm_session_window_seconds", "Length of the window the mm_session_* figures cover", [])


def _num(v: Any) -> float | None:
    if v is None:
        return None
    return float(Decimal(v)) if isinstance(v, str) else float(v)


class LiveSession:
    """A rolling session window for one market."""

    def __init__(self, spec: MarketSpec, account_index: int | None, window_s: float = 3600.0) -> None:
        self.spec, self.account_index, self.window_ms = spec, account_index, int(window_s * 1000)
        self.builder = SessionBuilder(spec, account_index)
        self.started_ms: int | None = None

    def feed(self, msg: Msg, now_ms: int) -> None:
        if self.started_ms is None:
            self.started_ms = now_ms
        elif now_ms - self.started_ms >= self.window_ms and self.builder.last_position is not None:
            self.builder = SessionBuilder(self.spec, self.account_index, initial_position=self.builder.last_position)
            self.started_ms = now_ms
        self.builder.feed(msg)

    def feed_intent(self, it: OrderIntent, now_ms: int) -> None:
        self.feed(it, now_ms)

    def snapshot(self) -> Any:
        """A frozen copy to summarise off the event loop."""
        return self.builder.freeze()

    @staticmethod
    def summary(data: Any) -> dict[str, Any] | None:
        try:
            return summarize(data)
        except NoBookData:
            return None


def export(s: dict[str, Any] | None) -> None:
    """Set the gauges from a summary (nothing before the first book)."""
    if s is None:
        return
    for k in MONEY:
        v = _num(s.get(k))
        if v is not None:
            PNL[k].set(v)
    FILLS.labels("maker").set(s.get("fills_maker", 0))
    FILLS.labels("hedger").set(s.get("fills_hedger", 0))
    for src in SOURCES:
        for h, cell in (s.get("markout_bps", {}).get(src) or {}).items():
            if isinstance(cell, dict) and cell.get("bps") is not None:
                MARKOUT.labels(src, h).set(cell["bps"])
    for gauge, key in ((FILL_RATIO, "fill_ratio_maker"), (UPTIME, "two_sided_uptime"), (WINDOW, "sim_seconds")):
        v = _num(s.get(key))
        if v is not None:
            gauge.set(v)
    mp = s.get("max_abs_position")
    if isinstance(mp, dict) and mp.get("base") is not None:
        MAX_POS.set(_num(mp["base"]) or 0.0)
