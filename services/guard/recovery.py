"""Start-up recovery: rebuild the guard's memory from the streams after a restart.

The guard's state (position, resting orders, places in flight) lives in memory, and its consumer
group cursor has moved past the account events it saw before. So at start it replays, merged in
stream-id order (= arrival order at Redis, each at its own timestamp):
- ``acct:{account}`` for the last ``order_expiry_s`` + 1 min (older orders have expired at the
  venue), plus the newest ``Position`` of the market before that window if the window has none;
- ``orders:approved`` and ``orders:events`` since the oldest intent still pending for the group
  (at least the last 2 min): approved places in flight, and which intents already got a verdict.
That last set lets a guard that crashed between publishing a verdict and its XACK skip the
redelivered intent instead of judging it twice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from shared import keys
from shared.schemas import DecodeError, Msg, OrderEvent, OrderIntent, Position, decode

from services.guard.core import Event, Replayed

log = logging.getLogger("guard.recovery")

PAGE = 1000
VERDICT_WINDOW_MS = 120_000


def id_key(entry_id: str | bytes) -> tuple[int, int]:
    """Stream id ``"1700000000000-3"`` -> ``(1700000000000, 3)`` for ordering."""
    s = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


@dataclass(slots=True)
class Recovery:
    events: list[tuple[int, Event]] = field(default_factory=list)  # (event time ms, event) in arrival order
    last_ids: dict[str, tuple[int, int]] = field(default_factory=dict)  # newest replayed id per state stream
    known_verdicts: frozenset[str] = frozenset()


async def _scan(redis: Redis, stream: str, start: str) -> list[tuple[str, dict[Any, Any]]]:
    out: list[tuple[str, dict[Any, Any]]] = []
    lo = start
    while True:
        page = await redis.xrange(stream, min=lo, max="+", count=PAGE)
        for eid, fields in page or []:
            out.append((eid.decode() if isinstance(eid, bytes) else eid, fields))
        if not page or len(page) < PAGE:
            return out
        lo = "(" + out[-1][0]


def _decode(stream: str, eid: str, fields: dict[Any, Any]) -> Msg | None:
    try:
        return decode(fields)
    except DecodeError as e:  # dead-lettered when it was (or will be) consumed; replay just skips it
        log.debug("replay skips %s %s: %s", stream, eid, e)
        return None


async def _latest_position(redis: Redis, stream: str, before: str, market_id: int) -> tuple[str, Position] | None:
    """The newest Position of ``market_id`` older than ``before`` (backwards, page by page)."""
    hi = "(" + before
    while True:
        page = await redis.xrevrange(stream, max=hi, min="-", count=PAGE)
        for eid_b, fields in page or []:
            eid = eid_b.decode() if isinstance(eid_b, bytes) else eid_b
            t = fields.get(b"type", fields.get("type"))
            if t not in (b"position", "position"):
                continue
            msg = _decode(stream, eid, fields)
            if isinstance(msg, Position) and msg.market_id == market_id:
                return eid, msg
        if not page or len(page) < PAGE:
            return None
        last = page[-1][0]
        hi = "(" + (last.decode() if isinstance(last, bytes) else last)


async def recover(redis: Redis, acct_stream: str, market_id: int, now_ms: int, acct_window_ms: int,
                  verdict_window_ms: int = VERDICT_WINDOW_MS) -> Recovery:
    """Read what the guard needs to resume; the caller feeds ``events`` to the core in order."""
    verdict_from = now_ms - verdict_window_ms
    pend = await redis.xpending(keys.ORDERS_INTENTS, keys.GROUP_GUARD)
    if pend and pend.get("pending") and pend.get("min"):
        verdict_from = min(verdict_from, id_key(pend["min"])[0] - 1_000)
    acct_from = f"{max(0, now_ms - acct_window_ms)}-0"
    merged: list[tuple[tuple[int, int], Event]] = []
    rec = Recovery()

    acct = await _scan(redis, acct_stream, acct_from)
    has_position = False
    for eid, fields in acct:
        msg = _decode(acct_stream, eid, fields)
        if msg is not None:
            merged.append((id_key(eid), msg))
            has_position = has_position or (isinstance(msg, Position) and msg.market_id == market_id)
    if acct:
        rec.last_ids[acct_stream] = id_key(acct[-1][0])
    if not has_position:
        found = await _latest_position(redis, acct_stream, acct_from, market_id)
        if found is not None:
            merged.append((id_key(found[0]), found[1]))

    known: set[str] = set()
    for eid, fields in await _scan(redis, keys.ORDERS_APPROVED, f"{max(0, verdict_from)}-0"):
        msg = _decode(keys.ORDERS_APPROVED, eid, fields)
        if isinstance(msg, OrderIntent):
            known.add(msg.intent_id)
            merged.append((id_key(eid), Replayed(msg)))
    events = await _scan(redis, keys.ORDERS_EVENTS, f"{max(0, verdict_from)}-0")
    for eid, fields in events:
        msg = _decode(keys.ORDERS_EVENTS, eid, fields)
        if isinstance(msg, OrderEvent):
            if msg.kind == "veto" and msg.intent_id:
                known.add(msg.intent_id)
            merged.append((id_key(eid), msg))
    if events:
        rec.last_ids[keys.ORDERS_EVENTS] = id_key(events[-1][0])

    merged.sort(key=lambda x: x[0])
    rec.events = [(k[0], ev) for k, ev in merged]
    rec.known_verdicts = frozenset(known)
    log.info("recovered %d events (%d account entries), %d known verdicts", len(rec.events), len(acct), len(known))
    return rec
