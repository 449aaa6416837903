"""Redis Streams bus over redis-py asyncio.

Three traffic patterns (see README "Streams"):
- market data: ``publish_md`` (XADD MAXLEN ~) + plain ``TailReader`` (XREAD, no group);
- account events and order flow: ``publish`` (XADD MINID ~ now-24h, never trimming recent pending
  entries) + ``GroupConsumer`` (XREADGROUP, own pending entries first after a restart, XACK,
  XAUTOCLAIM of a dead consumer's entries);
- malformed entries: counted, logged and copied to ``dlq:{service}``, then acknowledged, so a
  poison message never blocks a service.
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from shared import keys
from shared.schemas import DecodeError, Msg, decode, encode

log = logging.getLogger("bus")

DEAD_LETTERS = Counter("mm_dead_letters_total", "Malformed stream entries dead-lettered", ["service", "stream"])


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str
    id: str
    msg: Msg


# KEYS[1] stream; ARGV: minid, n, then n entries of 3 field/value pairs (type, v, d)
_PUBLISH_MANY = """
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  local b = 3 + i * 6
  redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[1], '*', ARGV[b], ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4], ARGV[b+5])
end
return n
"""
# KEYS[1] stream, KEYS[2] acked stream; ARGV: minid, group, entry id, 3 field/value pairs
_PUBLISH_AND_ACK = """
redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[1], '*', ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
"""


# KEYS[1] acked stream, KEYS[2..] each message's target stream; ARGV: minid, group, n acks, the ack ids,
# then 3 field/value pairs per message. Every verdict of a batch and every XACK in one round trip.
_PUBLISH_ALL_AND_ACK = """
local nack = tonumber(ARGV[3])
local base = 4 + nack
for k = 2, #KEYS do
  local b = base + (k - 2) * 6
  redis.call('XADD', KEYS[k], 'MINID', '~', ARGV[1], '*', ARGV[b], ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4], ARGV[b+5])
end
if nack == 0 then return 0 end
local ids = {}
for i = 1, nack do ids[i] = ARGV[3 + i] end
return redis.call('XACK', KEYS[1], ARGV[2], unpack(ids))
"""


def _minid(now_ms: int) -> str:
    return f"{max(0, now_ms - keys.ORDER_STREAM_RETENTION_MS)}-0"


def _flat(fields: dict[str, str]) -> list[str]:
    assert list(fields) == ["type", "v", "d"]  # the scripts expect exactly these three fields
    return [x for kv in fields.items() for x in kv]


def _s(x: bytes | str) -> str:
    return x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else x


class Bus:
    """Publishing side plus dead-lettering; one per service process."""

    def __init__(self, redis: Redis, service: str) -> None:
        self.redis = redis
        self.service = service
        self._scripts: dict[str, AsyncScript] = {}

    async def publish_md(self, stream: str, msg: Msg, latest_key: str | None = None) -> str:
        """Market data: approximate MAXLEN; optionally mirror into a latest-value key in one round trip."""
        fields = encode(msg)
        if latest_key is None:
            return _s(await self.redis.xadd(stream, fields, maxlen=keys.MD_MAXLEN, approximate=True))  # type: ignore[arg-type]
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(stream, fields, maxlen=keys.MD_MAXLEN, approximate=True)  # type: ignore[arg-type]
        pipe.set(latest_key, fields["d"])
        res = await pipe.execute()
        return _s(res[0])

    async def publish(self, stream: str, msg: Msg, now_ms: int | None = None) -> str:
        """Grouped streams: trim by time so an entry still pending is never trimmed away."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return _s(await self.redis.xadd(stream, encode(msg), minid=_minid(now_ms), approximate=True))  # type: ignore[arg-type]

    async def publish_many(self, stream: str, msgs: list[Msg], now_ms: int | None = None) -> None:
        """Several messages of one decision in one round trip, in order (a failure stops the rest)."""
        if not msgs:
            return
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        args: list[str] = [_minid(now_ms), str(len(msgs))]
        for m in msgs:
            args += _flat(encode(m))
        await self._script("many", _PUBLISH_MANY)(keys=[stream], args=args)

    async def publish_and_ack(self, stream: str, msg: Msg, acked_stream: str, group: str, entry_id: str,
                              now_ms: int | None = None) -> None:
        """Publish the outcome of a consumed entry and acknowledge that entry in one round trip.

        A Lua script, not MULTI: inside MULTI a failing XADD would not stop the XACK (Redis does not
        roll back), acknowledging an entry whose outcome was never published.
        """
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        await self._script("ack", _PUBLISH_AND_ACK)(keys=[stream, acked_stream],
                                                     args=[_minid(now_ms), group, entry_id, *_flat(encode(msg))])

    async def publish_all_and_ack(self, out: list[tuple[str, Msg]], acked_stream: str, group: str,
                                  entry_ids: list[str], now_ms: int | None = None) -> None:
        """Messages to one or more streams, in order, plus the XACK of the entries they answer, in one
        Lua call. The XACK comes last: a failing XADD acks nothing, so the entries are read again and
        their (kept) verdicts resent; consumers dedupe by intent id."""
        if not out and not entry_ids:
            return
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        args: list[str] = [_minid(now_ms), group, str(len(entry_ids)), *entry_ids]
        for _, m in out:
            args += _flat(encode(m))
        await self._script("all", _PUBLISH_ALL_AND_ACK)(keys=[acked_stream, *(stream for stream, _ in out)], args=args)

    def _script(self, name: str, body: str) -> AsyncScript:
        if name not in self._scripts:
            self._scripts[name] = self.redis.register_script(body)
        return self._scripts[name]

    async def dead_letter(self, stream: str, entry_id: str, fields: dict[Any, Any], error: str) -> None:
        DEAD_LETTERS.labels(self.service, stream).inc()
        log.warning("dead-lettered %s %s: %s", stream, entry_id, error)
        raw = orjson.dumps({_s(k): _s(v) for k, v in fields.items()}).decode()
        await self.redis.xadd(keys.dead_letter(self.service), {"stream": stream, "id": entry_id, "error": error, "raw": raw},
                              maxlen=keys.MD_MAXLEN, approximate=True)


class TailReader:
    """Plain XREAD over market-data streams from ``$`` (or given ids); with ``conflate`` only the
    newest entry per stream of each batch is yielded, so a lagging consumer skips stale books."""

    def __init__(self, bus: Bus, streams: list[str], start: str = "$", block_ms: int = 1000,
                 count: int = 100, conflate: bool = False) -> None:
        self.bus = bus
        self.ids: dict[str, str] = {s: start for s in streams}
        self.block_ms, self.count, self.conflate = block_ms, count, conflate

    async def read(self) -> list[Entry]:
        resp = await self.bus.redis.xread(self.ids, count=self.count, block=self.block_ms)  # type: ignore[arg-type]
        out: list[Entry] = []
        for stream_b, entries in resp or []:
            stream = _s(stream_b)
            if not entries:
                continue
            self.ids[stream] = _s(entries[-1][0])
            chosen = entries[-1:] if self.conflate else entries
            for eid_b, fields in chosen:
                eid = _s(eid_b)
                try:
                    out.append(Entry(stream, eid, decode(fields)))
                except DecodeError as e:
                    await self.bus.dead_letter(stream, eid, fields, str(e))
        return out

    async def __aiter__(self) -> AsyncIterator[Entry]:  # pragma: no cover - thin loop
        while True:
            for e in await self.read():
                yield e


class GroupConsumer:
    """At-least-once consumption of one or more streams through a consumer group.

    After a restart the consumer first re-reads its own pending entries (id ``0``), then new ones
    (``>``). ``claim_idle`` takes over entries another consumer left pending for longer than
    ``min_idle_ms`` (a crashed instance). Call ``ack`` once an entry is fully handled.
    """

    def __init__(self, bus: Bus, streams: list[str], group: str, consumer: str, block_ms: int = 1000,
                 count: int = 100, min_idle_ms: int = 30_000) -> None:
        self.bus, self.streams, self.group, self.consumer = bus, streams, group, consumer
        self.block_ms, self.count, self.min_idle_ms = block_ms, count, min_idle_ms
        self._history: dict[str, str] = {s: "0" for s in streams}  # cursor through our own pending entries

    async def ensure_groups(self, start: str = "$") -> None:
        for s in self.streams:
            try:
                await self.bus.redis.xgroup_create(s, self.group, id=start, mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    async def read(self) -> list[Entry]:
        """Own pending entries first (each returned once, cursor advancing), then new ones (``>``)."""
        r = self.bus.redis
        ids = {s: self._history.get(s, ">") for s in self.streams}
        recovering = any(i != ">" for i in ids.values())
        try:
            resp = await r.xreadgroup(self.group, self.consumer, ids, count=self.count,  # type: ignore[arg-type]
                                      block=None if recovering else self.block_ms)
        except ResponseError as e:
            if "NOGROUP" in str(e):  # somebody flushed Redis: recreate and carry on
                await self.ensure_groups("0")
                return []
            raise
        out: list[Entry] = []
        seen: set[str] = set()
        for stream_b, entries in resp or []:
            stream = _s(stream_b)
            if ids[stream] != ">":
                if entries:
                    seen.add(stream)
                    self._history[stream] = _s(entries[-1][0])
            for eid_b, fields in entries:
                eid = _s(eid_b)
                if not fields:  # pending entry whose payload was trimmed away
                    await self.ack(stream, eid)
                    continue
                try:
                    out.append(Entry(stream, eid, decode(fields)))
                except DecodeError as e:
                    await self.bus.dead_letter(stream, eid, fields, str(e))
                    await self.ack(stream, eid)
        for s, i in ids.items():
            if i != ">" and s not in seen:  # history exhausted: from now on only new entries
                self._history.pop(s, None)
        return out

    async def ack(self, stream: str, entry_id: str) -> None:
        await self.bus.redis.xack(stream, self.group, entry_id)

    def rewind(self) -> None:
        """Re-read our own pending entries from the start at the next ``read`` (after a handling
        failure left one unacknowledged); consumers must tolerate seeing an entry again."""
        self._history = {s: "0" for s in self.streams}

    async def claim_idle(self) -> int:
        """XAUTOCLAIM entries idle longer than ``min_idle_ms`` (their consumer died) into this consumer.

        They join our pending list, so the next ``read`` returns them, once each (the pending
        history is re-read from the start); the count is for logs.
        """
        n = 0
        for s in self.streams:
            start = "0-0"
            while True:
                res = await self.bus.redis.xautoclaim(s, self.group, self.consumer, self.min_idle_ms, start, count=self.count)
                start, claimed = _s(res[0]), res[1]
                n += len(claimed)
                if start == "0-0":
                    break
        self.rewind()
        return n
