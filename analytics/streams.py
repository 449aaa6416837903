"""Read a session back from the Redis streams into ``analytics.session.SessionBuilder``.

Three streams feed it: ``md:book:<market>`` (mids), ``acct:<account>`` (fills, order updates,
positions, reconciles) and ``orders:intents`` (what the producers submitted). Every entry in
``[since_ms, until_ms]`` (Redis entry ids, i.e. arrival time) is read, page by page, whatever the
session's length; the three are merged in entry-id order and fed with the entry's millisecond as
the arrival time. The metrics themselves use the messages' exchange times (see ``analytics.session``).

The book stream is trimmed (``MAXLEN ~ keys.MD_MAXLEN``) while the account stream is not: fills older
than the oldest book left are inventory held at the start (``summary["fills_before_start"]``).
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable

from redis.asyncio import Redis

from analytics.session import SessionBuilder
from shared import keys
from shared.markets import MarketSpec
from shared.schemas import DecodeError, Msg, decode

PAGE = 5000


async def read_stream(r: Redis, stream: str, since_ms: int = 0, until_ms: int | None = None,
                      page: int = PAGE) -> tuple[list[tuple[int, int, Msg]], int]:
    """``([(entry_ms, entry_seq, message), ...], undecodable)`` for every entry of ``stream`` in the range."""
    out: list[tuple[int, int, Msg]] = []
    bad = 0
    lo = f"{max(0, since_ms)}-0"
    hi = "+" if until_ms is None else str(until_ms)
    while True:
        batch = await r.xrange(stream, min=lo, max=hi, count=page)
        if not batch:
            return out, bad
        for eid, fields in batch:
            ms, seq = (int(x) for x in (eid.decode() if isinstance(eid, bytes) else eid).split("-"))
            try:
                out.append((ms, seq, decode(fields)))
            except DecodeError:
                bad += 1
        if len(batch) < page:
            return out, bad
        last = batch[-1][0]
        ms, seq = (last.decode() if isinstance(last, bytes) else last).split("-")
        lo = f"{ms}-{int(seq) + 1}"


def session_streams(spec: MarketSpec, account_index: int) -> list[str]:
    return [keys.md_book(spec.market_id), keys.acct(account_index), keys.ORDERS_INTENTS]


async def load_builder(r: Redis, spec: MarketSpec, account_index: int, since_ms: int = 0, until_ms: int | None = None,
                       builder: SessionBuilder | None = None) -> SessionBuilder:
    """A builder fed with every entry of the session's streams in ``[since_ms, until_ms]`` (entry ids)."""
    b = builder if builder is not None else SessionBuilder(spec, account_index)
    parts: list[Iterable[tuple[int, int, Msg]]] = []
    bad = 0
    for stream in session_streams(spec, account_index):
        entries, n = await read_stream(r, stream, since_ms, until_ms)
        parts.append(entries)
        bad += n
    for ms, _seq, msg in heapq.merge(*parts, key=lambda e: (e[0], e[1])):
        b.feed(msg, ms)
    b.undecodable += bad
    return b
