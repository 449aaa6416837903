"""Lighter's account tiers (../research lighter-api.md §6): fees, sequencer latencies, request limits.

One table for everything that needs it: the local venue applies it, the profile check compares the
settings with it (a guard budget above the venue's, a spread inside the round-trip fee), the lab
runs both tiers.
"""
from __future__ import annotations

from dataclasses import dataclass

FEE_SCALE = 1_000_000  # fee ticks are in 1e-6 of notional


@dataclass(frozen=True, slots=True)
class Tier:
    """Account tier: fees (1e-6 ticks), latencies (ms) and transaction limits."""

    name: str
    maker_fee: int
    taker_fee: int
    maker_latency_ms: int   # also cancels
    taker_latency_ms: int
    tx_per_min: int  # sendTx bucket (each tx of a batch counts)
    rest_weight_per_min: int  # weighted REST budget
    rest_unweighted: bool  # standard: every request weighs 1
    volume_quota: bool

    @property
    def maker_fee_bps(self) -> float:
        return self.maker_fee / FEE_SCALE * 1e4

    @property
    def taker_fee_bps(self) -> float:
        return self.taker_fee / FEE_SCALE * 1e4

    @property
    def requests_per_min(self) -> int:
        """What the whole account may send a minute (standard: 60, reads included)."""
        return min(self.tx_per_min, self.rest_weight_per_min)


TIERS: dict[str, Tier] = {
    "standard": Tier("standard", 0, 0, 200, 300, 60, 60, True, False),
    "premium": Tier("premium", 40, 280, 0, 200, 4_000, 24_000, False, True),
}
