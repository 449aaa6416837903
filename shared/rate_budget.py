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
from shared.schemas import OrderEvent

WINDOW_MS = 60_000


@dataclass(slots=True)
class RateBudget:
    """The maker may use ``cap("maker")`` a window and never what is left of the whole budget; the hedger
    (and operators) only the whole. Counting the maker's own intents apart is what makes the maker's
    count of itself agree with the guard's: a hedge no longer uses up the maker's share (the lab
    showed it did: 16 "rate" vetoes per 10 minutes on the AS model while the maker was within its own)."""

    limit_per_min: int
    reserved: int
    hedge_reserved: int
    window_ms: int = WINDOW_MS
    _stamps: deque[int] = field(default_factory=deque)
    _maker: deque[int] = field(default_factory=deque)

    @classmethod
    def from_config(cls, cfg: RateConfig) -> "RateBudget":
        return cls(cfg.requests_per_min, cfg.reserved_per_min, cfg.hedge_reserved_per_min)

    def cap(self, source: str) -> int:
        """Places/modifies per window ``source`` may use."""
        cap = self.limit_per_min - self.reserved
        return cap - self.hedge_reserved if source == "maker" else cap

    def _trim(self, now_ms: int) -> None:
        for q in (self._stamps, self._maker):
            while q and q[0] <= now_ms - self.window_ms:
                q.popleft()

    def used(self, now_ms: int, source: str | None = None) -> int:
        """Places/modifies in the window: everyone's, or the maker's own (``source="maker"``)."""
        self._trim(now_ms)
        return len(self._maker if source == "maker" else self._stamps)

    def room(self, source: str, now_ms: int) -> int:
        whole = self.cap("hedger") - self.used(now_ms)
        if source != "maker":
            return whole
        return min(self.cap("maker") - self.used(now_ms, "maker"), whole)

    def take(self, now_ms: int, n: int = 1, source: str = "maker") -> None:
        self._stamps.extend([now_ms] * n)
        if source == "maker":
            self._maker.extend([now_ms] * n)

    def next_room_ms(self, source: str, now_ms: int, n: int = 1) -> int:
        """Earliest time ``source`` has room for ``n`` more (``now_ms`` if it has now)."""
        t = self._free_at(self._stamps, self.cap("hedger"), now_ms, n)
        return max(t, self._free_at(self._maker, self.cap("maker"), now_ms, n)) if source == "maker" else t

    def _free_at(self, q: deque[int], cap: int, now_ms: int, n: int) -> int:
        self._trim(now_ms)
        need = len(q) + n - cap
        if need <= 0:
            return now_ms
        if need > len(q):
            return now_ms + self.window_ms
        return q[need - 1] + self.window_ms


RATE_BACKOFF_MS = 2_000       # after a "rate" veto, no new place/modify for this long, doubling up to the max
RATE_BACKOFF_MAX_MS = 30_000
_NEVER = -(10**18)


@dataclass(slots=True)
class BudgetWatch:
    """What a producer (maker or hedger) learns about the shared budget from ``orders:events``.

    A "rate" veto of its own place/modify means the guard counted more than it did (a previous run,
    another producer, a hand-made intent): no new one until ``hold_until_ms``, the wait doubling up
    to ``RATE_BACKOFF_MAX_MS`` and reset by an ack. The other producer's acked places/modifies are
    taken from the whole budget, as the guard counts them."""

    source: str
    budget: RateBudget | None
    backoff_ms: int = 0
    hold_until_ms: int = _NEVER

    def observe(self, event: object, now_ms: int) -> None:
        if not isinstance(event, OrderEvent) or event.action not in ("place", "modify"):
            return
        if event.source == self.source:
            if event.kind == "veto" and event.message.startswith("rate:"):
                self.backoff_ms = min(max(2 * self.backoff_ms, RATE_BACKOFF_MS), RATE_BACKOFF_MAX_MS)
                self.hold_until_ms = now_ms + self.backoff_ms
            elif event.kind == "ack":
                self.backoff_ms = 0
        elif event.source in ("maker", "hedger") and event.kind == "ack" and self.budget is not None:
            self.budget.take(now_ms, source=event.source)

    def holding(self, now_ms: int) -> bool:
        return now_ms < self.hold_until_ms
