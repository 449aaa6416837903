"""Risk triggers and the trading state they decide (pure bookkeeping, times passed in).

Each trigger is fed its *condition* (a reason string while it holds, ``None`` when it does not).
It trips at once when the condition appears. It clears with hysteresis: only after the condition
has been absent for ``resume_after_ms``, and only if it is ``auto_resume``; otherwise it stays
latched until an operator resumes (``risk:resume``). The reason kept is the one at the trip, so a
drifting number (position 0.25, 0.26 ...) does not make a new state event every tick.

The state is the worst action among the active triggers: any ``HALTED`` trigger -> ``HALTED``,
else any ``REDUCING`` -> ``REDUCING``, else ``ACTIVE``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import TriggerConfig
from shared.schemas import TradingState

SEVERITY: dict[TradingState, int] = {"ACTIVE": 0, "REDUCING": 1, "HALTED": 2}
# Manual switches and the flag's readability are triggers too, always on, cleared only by the operator.
MANUAL: dict[str, TradingState] = {"kill": "HALTED", "unreadable": "HALTED", "manual": "REDUCING"}


@dataclass(slots=True)
class Trigger:
    name: str
    action: TradingState
    auto_resume: bool = True
    resume_after_ms: int = 0
    enabled: bool = True
    reason: str | None = None           # set while tripped
    clear_since_ms: int | None = None   # the condition has been absent since (while tripped)
    trips: int = 0

    @classmethod
    def from_config(cls, name: str, cfg: TriggerConfig) -> "Trigger":
        return cls(name, cfg.action, cfg.auto_resume, int(cfg.resume_after_s * 1000), cfg.enabled)

    @property
    def active(self) -> bool:
        return self.reason is not None

    def observe(self, condition: str | None, now_ms: int) -> bool:
        """Feed the current condition; True when the trigger tripped or cleared."""
        if not self.enabled:
            return False
        if condition is not None:
            self.clear_since_ms = None
            if self.reason is None:
                self.reason, self.trips = condition, self.trips + 1
                return True
            return False
        if self.reason is None:
            return False
        if self.clear_since_ms is None:
            self.clear_since_ms = now_ms
        if self.auto_resume and now_ms - self.clear_since_ms >= self.resume_after_ms:
            self.reason = self.clear_since_ms = None
            return True
        return False

    def resume(self) -> bool:
        """Operator resume: a latched trigger whose condition is gone clears now."""
        if self.reason is not None and self.clear_since_ms is not None:
            self.reason = self.clear_since_ms = None
            return True
        return False


@dataclass(slots=True)
class Triggers:
    items: dict[str, Trigger] = field(default_factory=dict)

    def add(self, t: Trigger) -> None:
        self.items[t.name] = t

    def active(self) -> dict[str, Trigger]:
        return {n: t for n, t in self.items.items() if t.active}

    def state(self) -> tuple[TradingState, str, dict[str, str]]:
        """(state, deciding reason, every active trigger's reason)."""
        act = self.active()
        if not act:
            return "ACTIVE", "", {}
        worst = max(act.values(), key=lambda t: SEVERITY[t.action])
        return worst.action, f"{worst.name}: {worst.reason}", {n: str(t.reason) for n, t in act.items()}
