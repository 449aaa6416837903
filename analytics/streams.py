"""Read a session's fills, mids, quote lifetimes and submissions back from the Redis streams."""
from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from analytics.mm_metrics import FillRec, QuoteSpan
from shared import keys
from shared.markets import MarketSpec
from shared.schemas import BookTop, DecodeError, Fill, OrderIntent, OrderUpdate, decode

TERMINAL_PREFIXES = ("filled", "canceled")


@dataclass
class Session:
    fills: list[FillRec]
    mids: list[tuple[int, float]]
    spans: list[QuoteSpan]
    submitted: float
    half_spread_final: float
    start_ms: int
    end_ms: int


async def _entries(r: Redis, stream: str, since_ms: int) -> list[tuple[int, object]]:
    out: list[tuple[int, object]] = []
    start = f"{since_ms}-0"
    while True:
        batch = await r.xrange(stream, min=start, count=5000)
        if not batch:
            return out
        for eid, fields in batch:
            try:
                out.append((int(eid.decode().split("-")[0]), decode(fields)))
            except DecodeError:
                continue
        last = batch[-1][0].decode()
        ms, seq = last.split("-")
        start = f"{ms}-{int(seq) + 1}"


async def load_session(r: Redis, spec: MarketSpec, account_index: int, since_ms: int = 0) -> Session:
    ps, ss = spec.price_scale, spec.size_scale
    mids: list[tuple[int, float]] = []
    half = 0.0
    for t, m in await _entries(r, keys.md_book(spec.market_id), since_ms):
        if isinstance(m, BookTop) and m.bids and m.asks:
            mids.append((t, (m.bids[0][0] + m.asks[0][0]) / 2 / ps))
            half = (m.asks[0][0] - m.bids[0][0]) / 2 / ps
    fills: list[FillRec] = []
    opened: dict[int, tuple[bool, int]] = {}
    spans: list[QuoteSpan] = []
    for t, m in await _entries(r, keys.acct(account_index), since_ms):
        if isinstance(m, Fill) and m.market_id == spec.market_id:
            fills.append(FillRec(t, -1 if m.is_ask else 1, m.price / ps, m.size / ss, m.fee / 1e6))
        elif isinstance(m, OrderUpdate) and m.market_id == spec.market_id:
            if m.status == "open" and m.order_index not in opened:
                opened[m.order_index] = (m.is_ask, t)
            elif m.status.startswith(TERMINAL_PREFIXES) and m.order_index in opened:
                is_ask, t0 = opened.pop(m.order_index)
                spans.append(QuoteSpan(is_ask, t0, t))
    submitted = 0.0
    for _, m in await _entries(r, keys.ORDERS_INTENTS, since_ms):
        if isinstance(m, OrderIntent) and m.action == "place" and m.source == "maker":
            submitted += m.size / ss
    start = mids[0][0] if mids else since_ms
    end = mids[-1][0] if mids else since_ms
    for is_ask, t0 in opened.values():
        spans.append(QuoteSpan(is_ask, t0, end))
    return Session(fills, mids, spans, submitted, half, start, end)
