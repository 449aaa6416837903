"""Follow the guard's trading state from Redis (the maker, the hedger and the gateway use it).

The truth is ``risk:state`` (a missing or unknown value counts as ``HALTED``); ``risk:events``
carries each change with its reason and wakes followers at once. A follower reads both at start,
then tails the stream, and re-reads the key every ``RECHECK_S`` so a deleted key halts too.
"""
from __future__ import annotations

import time

from redis.asyncio import Redis

from shared import keys
from shared.bus import Bus, TailReader
from shared.schemas import DecodeError, RiskState, decode

RECHECK_S = 1.0
STATES = ("ACTIVE", "REDUCING", "HALTED")


def text(raw: object) -> str | None:
    """A Redis reply as text (None stays None)."""
    if raw is None:
        return None
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def from_key(value: str | None, last: RiskState | None, now_ms: int) -> RiskState:
    """The state the key says, with the last event's reason when the event agrees with it."""
    if value is None:
        return RiskState(state="HALTED", reason="risk:state missing (no guard has published a state)", ts_ms=now_ms)
    if value not in STATES:
        return RiskState(state="HALTED", reason=f"risk:state holds {value[:40]!r}, not a trading state", ts_ms=now_ms)
    if last is not None and last.state == value:
        return last
    return RiskState(state=value, reason="risk:state", ts_ms=now_ms)  # type: ignore[arg-type]


def newest_state(newest: list | None) -> RiskState | None:
    """The ``RiskState`` of an ``XREVRANGE risk:events + - COUNT 1`` reply (None: none, or unreadable)."""
    if not newest:
        return None
    try:
        msg = decode(newest[0][1])
    except DecodeError:
        return None
    return msg if isinstance(msg, RiskState) else None


def trading_view(state: object, newest: list | None, now_ms: int) -> dict[str, str]:
    """``{state, reason}`` for ``/health`` from a ``GET risk:state`` and an ``XREVRANGE risk:events COUNT 1``."""
    st = from_key(text(state), newest_state(newest), now_ms)
    return {"state": st.state, "reason": st.reason}


class RiskFollower:
    """Yields a ``RiskState`` whenever the trading state (or its reason) changes."""

    def __init__(self, bus: Bus, block_ms: int = 1000) -> None:
        self.bus, self.block_ms = bus, block_ms
        self.current: RiskState | None = None
        self.tail: TailReader | None = None
        self._checked = 0.0

    @property
    def redis(self) -> Redis:
        return self.bus.redis

    async def start(self, now_ms: int) -> RiskState:
        value = text(await self.redis.get(keys.RISK_STATE))
        newest = await self.redis.xrevrange(keys.RISK_EVENTS, count=1)
        start = (text(newest[0][0]) or "0-0") if newest else "0-0"
        self.tail = TailReader(self.bus, [keys.RISK_EVENTS], start=start, block_ms=self.block_ms)
        self.current = from_key(value, newest_state(newest), now_ms)
        self._checked = time.monotonic()
        return self.current

    async def step(self, now_ms: int) -> list[RiskState]:
        """One blocking read of ``risk:events`` (plus the periodic key check): the changes, in order."""
        assert self.tail is not None
        out: list[RiskState] = []
        for e in await self.tail.read():
            if isinstance(e.msg, RiskState):
                out.append(e.msg)
            else:
                await self.bus.dead_letter(e.stream, e.id, {"type": e.msg.type}, f"unexpected {e.msg.type} on {e.stream}")
        if out:
            self.current = out[-1]
        if time.monotonic() - self._checked >= RECHECK_S:
            self._checked = time.monotonic()
            keyed = from_key(text(await self.redis.get(keys.RISK_STATE)), self.current, now_ms)
            if self.current is None or keyed.state != self.current.state:
                self.current = keyed
                out.append(keyed)
        return out
