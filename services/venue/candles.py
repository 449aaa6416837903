"""Per-market trade statistics: 1-minute candles (integer ticks/lots) and rolling 24 h stats."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .engine import Trade

MINUTE_MS = 60_000
RESOLUTIONS_MS: dict[str, int] = {
    "1m": MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS, "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS, "4h": 240 * MINUTE_MS, "12h": 720 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS, "1w": 10080 * MINUTE_MS,
}


@dataclass(slots=True)
class Bar:
    t: int
    o: int
    h: int
    l: int  # noqa: E741
    c: int
    v: int  # lots
    q: int  # micro-USDC
    last_id: int
    n: int = 0


class TradeStats:
    """1m bars kept for `max_minutes`; higher resolutions are aggregated on request."""

    def __init__(self, max_minutes: int = 20_160) -> None:
        self.bars: OrderedDict[int, Bar] = OrderedDict()
        self.max_minutes = max_minutes

    def on_trade(self, t: Trade) -> None:
        key = t.timestamp_ms - t.timestamp_ms % MINUTE_MS
        b = self.bars.get(key)
        if b is None:
            b = self.bars[key] = Bar(key, t.price, t.price, t.price, t.price, 0, 0, t.trade_id)
            while len(self.bars) > self.max_minutes:
                self.bars.popitem(last=False)
        else:
            if t.price > b.h:
                b.h = t.price
            if t.price < b.l:
                b.l = t.price
            b.c = t.price
        b.v += t.size
        b.q += t.usd_amount
        b.last_id = t.trade_id
        b.n += 1

    def candles(self, res_ms: int, start_ms: int, end_ms: int, count_back: int) -> list[Bar]:
        out: dict[int, Bar] = {}
        for key, b in self.bars.items():
            k = key - key % res_ms
            if k > end_ms or k + res_ms <= start_ms:
                continue
            a = out.get(k)
            if a is None:
                out[k] = Bar(k, b.o, b.h, b.l, b.c, b.v, b.q, b.last_id, b.n)
            else:
                a.h, a.l, a.c = max(a.h, b.h), min(a.l, b.l), b.c
                a.v += b.v
                a.q += b.q
                a.last_id = b.last_id
                a.n += b.n
        bars = [out[k] for k in sorted(out)]
        return bars[-count_back:] if count_back > 0 else bars

    def daily(self, now_ms: int) -> tuple[int, int, int, int | None, int | None, int | None, int | None]:
        """(trades, base lots, quote micro, low, high, first open, last close) over 24 h."""
        since = now_ms - 1440 * MINUTE_MS
        n = v = q = 0
        low = high = first = last = None
        for key, b in self.bars.items():
            if key < since:
                continue
            n += b.n
            v += b.v
            q += b.q
            low = b.l if low is None else min(low, b.l)
            high = b.h if high is None else max(high, b.h)
            if first is None:
                first = b.o
            last = b.c
        return n, v, q, low, high, first, last
