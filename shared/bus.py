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


def _s(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


class Bus:
    """Publishing side plus dead-lettering; one per service process."""

    def __init__(self, redis: Redis, service: str) -> None:
        self.redis = redis
        self.service = service

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
        minid = f"{max(0, now_ms - keys.ORDER_STREAM_RETENTION_MS)}-0"
        return _s(await self.redis.xadd(stream, encode(msg), minid=minid, approximate=True))  # type: ignore[arg-type]

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
        self._pending_done: set[str] = set()

    async def ensure_groups(self, start: str = "$") -> None:
        for s in self.streams:
            try:
                await self.bus.redis.xgroup_create(s, self.group, id=start, mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    async def read(self) -> list[Entry]:
        r = self.bus.redis
        ids = {s: ("0" if s not in self._pending_done else ">") for s in self.streams}
        try:
            resp = await r.xreadgroup(self.group, self.consumer, ids, count=self.count,  # type: ignore[arg-type]
                                      block=None if "0" in ids.values() else self.block_ms)
        except ResponseError as e:
            if "NOGROUP" in str(e):  # somebody flushed Redis: recreate and carry on
                await self.ensure_groups("0")
                return []
            raise
        out: list[Entry] = []
        seen: set[str] = set()
        for stream_b, entries in resp or []:
            stream = _s(stream_b)
            seen.add(stream)
            if ids[stream] == "0" and not entries:
                self._pending_done.add(stream)
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
            if i == "0" and s not in seen:
                self._pending_done.add(s)
        return out

    async def ack(self, stream: str, entry_id: str) -> None:
        await self.bus.redis.xack(stream, self.group, entry_id)

    async def claim_idle(self) -> list[Entry]:
        """XAUTOCLAIM entries idle longer than ``min_idle_ms`` (their consumer died) into this consumer."""
        out: list[Entry] = []
        for s in self.streams:
            start = "0-0"
            while True:
                res = await self.bus.redis.xautoclaim(s, self.group, self.consumer, self.min_idle_ms, start, count=self.count)
                start, claimed = _s(res[0]), res[1]
                for eid_b, fields in claimed:
                    eid = _s(eid_b)
                    if not fields:
                        await self.ack(s, eid)
                        continue
                    try:
                        out.append(Entry(s, eid, decode(fields)))
                    except DecodeError as e:
                        await self.bus.dead_letter(s, eid, fields, str(e))
                        await self.ack(s, eid)
                if start == "0-0":
                    break
        return out
