"""Hedger service shell: ``QuotingShell`` around ``HedgerCore`` plus the hedger's gauges."""
from __future__ import annotations

from shared.cli import fail
from shared.config import Settings

from services.hedger.core import HEDGE_TTL_MS, MODES, HedgerCore
from shared.quoting_metrics import HEDGER_MODE, position_lots
from shared.quoting_shell import QuotingShell


class HedgerService(QuotingShell):
    core: HedgerCore

    def __init__(self, settings: Settings, timer_s: float = 0.1) -> None:
        super().__init__("hedger", settings, HedgerCore.from_settings(settings), HEDGE_TTL_MS, settings.hedger.dry_run,
                         timer_s)

    def observe(self) -> None:
        c = self.core
        for m in MODES:
            HEDGER_MODE.labels(m).set(1 if c.mode == m else 0)
        if c.position is not None:
            position_lots().labels(str(c.market_id)).set(c.position)


def build(settings: Settings) -> HedgerService:
    if settings.env.account_index is None:
        fail("python -m services.hedger", "LIGHTER_ACCOUNT_INDEX is not set (the position comes from acct:<index>)")
    return HedgerService(settings)
