"""The notifier's pure core: trading-state changes and Alertmanager alerts in, chat messages out.

Why a core of its own: what gets said, how often and how it is batched is policy worth testing
without a network. ``handle(event, now_ms)`` queues lines; a ``Tick`` sends them as one message when
``min_interval_ms`` has passed since the last one, so a flapping state or an alert storm becomes a
few messages, never a flood (chat APIs rate-limit and operators mute noisy bots). Nothing here
knows the URL: the secret stays in the shell.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

from shared.schemas import RiskState

Level = Literal["info", "warning", "failure"]
RANK: dict[str, int] = {"info": 0, "warning": 1, "failure": 2}
STATE_LEVEL: dict[str, Level] = {"ACTIVE": "info", "REDUCING": "warning", "HALTED": "failure"}
SEVERITY_LEVEL: dict[str, Level] = {"critical": "failure", "warning": "warning", "info": "info"}


@dataclass(frozen=True, slots=True)
class Alerts:
    """One Alertmanager webhook body (version 4): ``{"alerts": [{"status", "labels", "annotations"}, ...]}``."""
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Tick:
    pass


Event = Union[RiskState, Alerts, Tick]


@dataclass(frozen=True, slots=True)
class Send:
    title: str
    body: str
    level: Level


@dataclass(slots=True)
class NotifierCore:
    min_interval_ms: int = 10_000
    max_lines: int = 20
    states: bool = True
    alerts: bool = True
    last_state: str | None = None
    queued: list[tuple[Level, str]] = field(default_factory=list)
    last_sent_ms: int | None = None
    sent: int = 0
    bad: int = 0   # webhook bodies that were not Alertmanager's (counted; the shell answers 400)

    def handle(self, event: Event, now_ms: int) -> list[Send]:
        if isinstance(event, RiskState):
            self._state(event)
        elif isinstance(event, Alerts):
            self._alerts(event.payload)
        return self._flush(now_ms)

    def _state(self, ev: RiskState) -> None:
        if not self.states or ev.state == self.last_state:
            return
        was, self.last_state = self.last_state, ev.state
        head = f"{ev.state}" if was is None else f"{was} -> {ev.state}"
        why = ev.reason or ", ".join(f"{k}: {v}" for k, v in ev.triggers.items())
        self.queued.append((STATE_LEVEL.get(ev.state, "warning"), f"trading {head}" + (f": {why}" if why else "")))

    def _alerts(self, payload: dict[str, Any]) -> None:
        alerts = payload.get("alerts") if isinstance(payload, dict) else None
        if not isinstance(alerts, list):
            self.bad += 1
            raise ValueError("not an Alertmanager webhook body: no 'alerts' list")
        if not self.alerts:
            return
        for a in alerts:
            if not isinstance(a, dict):
                self.bad += 1
                continue
            labels, notes = a.get("labels"), a.get("annotations")
            labels, notes = (labels if isinstance(labels, dict) else {}), (notes if isinstance(notes, dict) else {})
            status = str(a.get("status") or payload.get("status") or "firing")
            level: Level = "info" if status == "resolved" else SEVERITY_LEVEL.get(str(labels.get("severity")), "warning")
            name = str(labels.get("alertname") or "alert")
            text = str(notes.get("summary") or notes.get("description") or "")
            self.queued.append((level, f"[{status.upper()}] {name}" + (f": {text}" if text else "")))

    def _flush(self, now_ms: int) -> list[Send]:
        if not self.queued:
            return []
        if self.last_sent_ms is not None and now_ms - self.last_sent_ms < self.min_interval_ms:
            return []
        lines, self.queued = self.queued, []
        level = max((lv for lv, _ in lines), key=RANK.__getitem__)
        shown = [t for _, t in lines[: self.max_lines]]
        if len(lines) > self.max_lines:
            shown.append(f"and {len(lines) - self.max_lines} more")
        first = lines[0][1]
        title = "lighter-bot: " + (first if len(lines) == 1 else f"{len(lines)} events, the first: {first}")
        self.last_sent_ms, self.sent = now_ms, self.sent + 1
        return [Send(title[:200], "\n".join(shown), level)]
