"""Maker service shell: ``QuotingShell`` around ``MakerCore`` plus the maker's gauges."""
from __future__ import annotations

import asyncio

from shared.cli import fail
from shared.config import Settings
from shared.runtime import Runtime
from shared.schemas import Msg, OrderIntent
from shared.session_metrics import LiveSession, export

from services.maker.core import MODES, MakerCore
from shared.quoting_metrics import CALIBRATION, HALF_SPREAD_BPS, MAKER_MODE, MARKOUT_BPS, TREND_BPS, VOL_BPS, position_lots
from shared.quoting_shell import QuotingShell


class MakerService(QuotingShell):
    """Also exports the trader's metrics (``mm_session_*``) from what it sees: ``shared.session_metrics``."""

    core: MakerCore
    SESSION_EVERY_S = 10.0
    wants_trades = True   # the live calibration (A, k) reads the public tape

    def __init__(self, settings: Settings, timer_s: float = 0.1) -> None:
        m = settings.maker
        super().__init__("maker", settings, MakerCore.from_settings(settings), m.quote_ttl_ms, m.dry_run, timer_s)
        self.session = LiveSession(settings.market_spec, settings.env.account_index)

    def on_input(self, msg: Msg, now_ms: int) -> None:
        self.session.feed(msg, now_ms)

    def on_intent(self, intent: OrderIntent, now_ms: int) -> None:
        self.session.feed_intent(intent, now_ms)

    async def run(self, rt: Runtime) -> None:
        await asyncio.gather(super().run(rt), rt.loop(self._session_step, idle_s=self.SESSION_EVERY_S))

    async def _session_step(self) -> None:
        data = self.session.snapshot()   # frozen here; summarised in a worker thread (quoting goes on)
        export(await asyncio.to_thread(LiveSession.summary, data))

    def observe(self) -> None:
        c = self.core
        for m in MODES:
            MAKER_MODE.labels(m).set(1 if c.mode == m else 0)
        market = str(c.market_id)
        VOL_BPS.labels(market).set(c.vol.value)
        TREND_BPS.labels(market).set(c.trend.value)
        position_lots().labels(market).set(c.position)
        q = c.quote
        if q is not None:
            for side, d in (("bid", q.bid_bps), ("ask", q.ask_bps)):
                HALF_SPREAD_BPS.labels(market, side).set(float("nan") if d is None else float(d))
        for name, value in c.calibration().items():
            if name.startswith("markout_"):
                if value is not None:
                    MARKOUT_BPS.labels(market, name.removeprefix("markout_")).set(value)
            elif value is not None:
                CALIBRATION.labels(market, name).set(value)


def build(settings: Settings) -> MakerService:
    if settings.env.account_index is None:
        fail("python -m services.maker", "LIGHTER_ACCOUNT_INDEX is not set (orders and position come from acct:<index>)")
    return MakerService(settings)
