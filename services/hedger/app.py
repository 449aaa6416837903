"""Hedger service shell: ``QuotingShell`` around ``HedgerCore`` plus the hedger's gauges."""
from __future__ import annotations

from shared.cli import fail
from shared.config import Settings

from services.hedger.core import HEDGE_TTL_MS, MODES, HedgerCore
from shared.quoting_metrics import (
    HEDGER_CLIP_COST,
    HEDGER_CLIPS,
    HEDGER_LAST_CLIP_BPS,
    HEDGER_MODE,
    HEDGER_SIGMA_BPS,
    HEDGER_SKIPS,
    position_lots,
)
from shared.quoting_shell import QuotingShell

CLIP_COUNTS = {"passive": "passive", "aggressive": "aggressive"}   # core count -> phase label
SKIP_COUNTS = {"self_cross_avoided": "self_cross", "deferred": "cost", "position_held": "position_hold",
               "skipped": "min_size"}                               # core count -> reason label


class HedgerService(QuotingShell):
    core: HedgerCore

    def __init__(self, settings: Settings, timer_s: float = 0.1) -> None:
        super().__init__("hedger", settings, HedgerCore.from_settings(settings), HEDGE_TTL_MS, settings.hedger.dry_run,
                         timer_s)
        self._exported: dict[str, int] = {}

    def _export(self, key: str, counter: object, label: str) -> None:
        n = self.core.counts.get(key, 0)
        delta = n - self._exported.get(key, 0)
        if delta > 0:
            counter.labels(label).inc(delta)  # type: ignore[attr-defined]
        self._exported[key] = n

    def observe(self) -> None:
        c = self.core
        for m in MODES:
            HEDGER_MODE.labels(m).set(1 if c.mode == m else 0)
        if c.position is not None:
            position_lots().labels(str(c.market_id)).set(c.position)
        for key, phase in CLIP_COUNTS.items():
            self._export(key, HEDGER_CLIPS, phase)
        for key, reason in SKIP_COUNTS.items():
            self._export(key, HEDGER_SKIPS, reason)
        HEDGER_CLIP_COST.labels("slippage").set(c.cost_totals["slippage_usd"])
        HEDGER_CLIP_COST.labels("fees").set(c.cost_totals["fees_usd"])
        if c.last_clip_cost is not None:
            HEDGER_LAST_CLIP_BPS.set(c.last_clip_cost["slippage_bps"])
        sigma = c.sigma
        HEDGER_SIGMA_BPS.labels(str(c.market_id)).set(-1 if sigma is None else sigma * 10_000)


def build(settings: Settings) -> HedgerService:
    if settings.env.account_index is None:
        fail("python -m services.hedger", "LIGHTER_ACCOUNT_INDEX is not set (the position comes from acct:<index>)")
    return HedgerService(settings)
