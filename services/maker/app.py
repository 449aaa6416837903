"""Maker service shell: ``QuotingShell`` around ``MakerCore`` plus the maker's gauges."""
from __future__ import annotations

from shared.cli import fail
from shared.config import Settings

from services.maker.core import MODES, MakerCore
from shared.quoting_metrics import MAKER_MODE, TREND_BPS, VOL_BPS, position_lots
from shared.quoting_shell import QuotingShell


class MakerService(QuotingShell):
    core: MakerCore

    def __init__(self, settings: Settings, timer_s: float = 0.1) -> None:
        m = settings.maker
        super().__init__("maker", settings, MakerCore.from_settings(settings), m.quote_ttl_ms, m.dry_run, timer_s)

    def observe(self) -> None:
        c = self.core
        for m in MODES:
            MAKER_MODE.labels(m).set(1 if c.mode == m else 0)
        market = str(c.market_id)
        VOL_BPS.labels(market).set(c.vol.value)
        TREND_BPS.labels(market).set(c.trend.value)
        position_lots().labels(market).set(c.position)


def build(settings: Settings) -> MakerService:
    if settings.env.account_index is None:
        fail("python -m services.maker", "LIGHTER_ACCOUNT_INDEX is not set (orders and position come from acct:<index>)")
    return MakerService(settings)
