"""A bot that looks alive but does not trade: every order refused for a while, nothing of ours resting.

Pure (``now_ms`` passed in). The maker and the guard each keep one and report ``degraded`` with its
reason in ``/health`` (and 503 on ``/ready``) once it has lasted ``after_ms``: the order-truth issue
saw a guard veto every quote for minutes while the venue held nothing of ours, every health "ok".
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Starvation:
    after_ms: int
    since_ms: int | None = None
    refusals: int = 0
    last_reason: str = ""

    def refused(self, now_ms: int, reason: str) -> None:
        if self.since_ms is None:
            self.since_ms, self.refusals = now_ms, 0
        self.refusals += 1
        self.last_reason = reason

    def trading(self) -> None:
        """Something of ours rests or was accepted: the streak ends."""
        self.since_ms, self.refusals = None, 0

    def problem(self, now_ms: int) -> str | None:
        if self.since_ms is None or now_ms - self.since_ms < self.after_ms:
            return None
        return (f"{self.refusals} order(s) refused in {(now_ms - self.since_ms) / 1000:.0f} s with nothing of ours "
                f"resting (last: {self.last_reason[:120]})")
