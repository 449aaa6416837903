"""Per-hop latency from the traces the intents carry.

Every maker intent carries ``trace`` stamps (``time.time_ns()``): ``venue`` (the venue's frame
timestamp, ms resolution), ``feed`` (publish), ``maker`` (decision), ``guard`` (verdict),
``signed`` and ``sent`` (gateway, after the venue answered). The gateway copies the trace into its
``ack`` events on ``orders:events``; this module turns them into p50/p99 per hop.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

HOPS = (("venue", "feed"), ("feed", "maker"), ("maker", "guard"), ("guard", "signed"), ("signed", "sent"))


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def hop_table(traces: Iterable[dict[str, int]]) -> dict[str, dict[str, float]]:
    """``{hop: {n, p50_ms, p99_ms}}`` for each hop and ``total`` (venue → sent)."""
    samples: dict[str, list[float]] = {f"{a}→{b}": [] for a, b in HOPS}
    samples["total venue→sent"] = []
    samples["internal feed→sent"] = []
    for t in traces:
        if not all(k in t for k in ("venue", "feed", "maker", "guard", "signed", "sent")):
            continue
        for a, b in HOPS:
            samples[f"{a}→{b}"].append((t[b] - t[a]) / 1e6)
        samples["total venue→sent"].append((t["sent"] - t["venue"]) / 1e6)
        samples["internal feed→sent"].append((t["sent"] - t["feed"]) / 1e6)
    out: dict[str, dict[str, float]] = {}
    for hop, vals in samples.items():
        vals.sort()
        out[hop] = {"n": len(vals), "p50_ms": percentile(vals, 50), "p99_ms": percentile(vals, 99)}
    return out


def markdown(table: dict[str, dict[str, float]]) -> str:
    lines = ["| hop | n | p50 (ms) | p99 (ms) |", "|---|---:|---:|---:|"]
    for hop, r in table.items():
        lines.append(f"| {hop} | {int(r['n'])} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    return "\n".join(lines)
