"""The account tier's request budget for places and modifies (pure: times are passed in).

Lighter's standard tier allows 60 requests per rolling minute, reads included. Cancels, the kill
path, reconcile reads and dead-man re-arms live in a fixed reserve and are never counted here, so
they never wait behind quoting. Places and modifies share the rest; the maker leaves
``hedge_reserved`` of it to hedges and operators, so a hedge always finds room. The guard enforces
this budget; the maker keeps the same count of its own intents so it does not propose what the
guard would refuse.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from shared.config import RateConfig

WINDOW_MS = 60_000


@dataclass(slots=True)
class RateBudget:
    limit_per_min: int
    reserved: int
    hedge_reserved: int
    window_ms: int = WINDOW_MS
    _stamps: deque[int] = field(default_factory=deque)

    @classmethod
    def from_config(cls, cfg: RateConfig) -> "RateBudget":
        return cls(cfg.requests_per_min, cfg.reserved_per_min, cfg.hedge_reserved_per_min)

    def cap(self, source: str) -> int:
        """Places/modifies per window ``source`` may use."""
        cap = self.limit_per_min - self.reserved
        return cap - self.hedge_reserved if source == "maker" else cap

    def used(self, now_ms: int) -> int:
        while self._stamps and self._stamps[0] <= now_ms - self.window_ms:
            self._stamps.popleft()
        return len(self._stamps)

    def room(self, source: str, now_ms: int) -> int:
        return self.cap(source) - self.used(now_ms)

    def take(self, now_ms: int, n: int = 1) -> None:
        self._stamps.extend([now_ms] * n)

    def next_room_ms(self, source: str, now_ms: int, n: int = 1) -> int:
        """Earliest time ``source`` has room for ``n`` more (``now_ms`` if it has now)."""
        need = self.used(now_ms) + n - self.cap(source)
        if need <= 0:
            return now_ms
        if need > len(self._stamps):
            return now_ms + self.window_ms
        return self._stamps[need - 1] + self.window_ms
