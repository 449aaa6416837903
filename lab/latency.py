"""Delays between the parts of the simulated system, per hop.

Hops: ``ws`` (venue ↔ feed, one way), ``bus`` (a Redis stream hop between two services, one way),
``rest`` (gateway ↔ venue, one way). A model is constant (``constant:ws=1,bus=0.5,rest=1``, in ms)
or empirical: samples per hop, drawn with a seeded RNG, from the per-hop traces ``make bench``
records live (``bench-results/hops.json``, see bench/__main__.py). Integer milliseconds, because
the simulated clock is.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import orjson

HOPS = ("ws", "bus", "rest")
DEFAULT_MS = {"ws": 1.0, "bus": 1.0, "rest": 1.0}
# which live trace spans measure which lab hop (bench.latency.HOPS): venue→feed is a WS hop plus the
# feed's parse; feed→maker and maker→guard are bus hops; signed→sent is a REST round trip
TRACE_HOPS = {"ws": ("venue", "feed"), "bus": ("maker", "guard"), "rest": ("signed", "sent")}


class LatencyError(ValueError):
    """A latency spec that cannot be read (named in the message)."""


@dataclass
class Latency:
    constant_ms: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MS))
    samples_ms: dict[str, list[float]] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    spec: str = "constant"

    @classmethod
    def constant(cls, **ms: float) -> "Latency":
        return cls({**DEFAULT_MS, **ms}, spec="constant:" + ",".join(f"{k}={v:g}" for k, v in {**DEFAULT_MS, **ms}.items()))

    @classmethod
    def parse(cls, text: str) -> "Latency":
        """``constant[:hop=ms,...]`` or ``empirical:FILE`` (hop samples in ms, JSON ``{hop: [ms, ...]}``)."""
        kind, _, rest = text.partition(":")
        if kind == "constant":
            ms: dict[str, float] = {}
            for part in filter(None, rest.split(",")):
                hop, _, v = part.partition("=")
                if hop not in HOPS:
                    raise LatencyError(f"unknown hop {hop!r} (hops: {', '.join(HOPS)})")
                try:
                    ms[hop] = float(v)
                except ValueError:
                    raise LatencyError(f"{hop}: not a number: {v!r}") from None
                if not 0 <= ms[hop] < 60_000:   # NaN fails this too
                    raise LatencyError(f"{hop}: must be 0 .. 60000 ms, got {v}")
            return cls.constant(**ms)
        if kind == "empirical":
            path = Path(rest)
            try:
                doc = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as e:
                raise LatencyError(f"{path}: cannot read hop samples ({type(e).__name__})") from None
            if not isinstance(doc, dict):
                raise LatencyError(f"{path}: expected {{hop: [ms, ...]}}")
            try:
                samples = {h: [float(x) for x in doc.get(h, [])] for h in HOPS}
            except (TypeError, ValueError):
                raise LatencyError(f"{path}: samples must be numbers (ms)") from None
            if any(not 0 <= x < 60_000 for v in samples.values() for x in v):
                raise LatencyError(f"{path}: samples must be 0 .. 60000 ms")
            if not any(samples.values()):
                raise LatencyError(f"{path}: no samples for any hop ({', '.join(HOPS)})")
            return cls(dict(DEFAULT_MS), {h: s for h, s in samples.items() if s}, spec=f"empirical:{path}")
        raise LatencyError(f"unknown latency model {kind!r} (constant or empirical)")

    def seed(self, seed: int) -> None:
        self.rng = random.Random(seed * 7919 + 17)

    def draw(self, hop: str) -> int:
        s = self.samples_ms.get(hop)
        ms = s[self.rng.randrange(len(s))] if s else self.constant_ms[hop]
        return int(round(ms))


def hops_from_traces(traces: list[dict[str, int]]) -> dict[str, list[float]]:
    """Per lab hop, the live samples in ms (what ``make bench`` writes to bench-results/hops.json)."""
    out: dict[str, list[float]] = {h: [] for h in HOPS}
    for t in traces:
        for hop, (a, b) in TRACE_HOPS.items():
            if a in t and b in t and t[b] >= t[a]:
                ms = (t[b] - t[a]) / 1e6
                out[hop].append(ms / 2 if hop == "rest" else ms)
    return out
