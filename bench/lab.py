"""The lab's speed: simulated seconds per wall second and events per second (``make bench``, BENCHMARKS.md).

The seed profile (profiles/market_2.yaml) on the calm model, one core, the default constant
latency; the run is what ``lighter-bot backtest`` runs without the report.
"""
from __future__ import annotations

import time

from lab.sim import Sim, fast_gc
from shared.config import load_settings


def lab_speed(hours: float = 1.0, model: str = "calm", seed: int = 1) -> dict[str, float]:
    sim = Sim(load_settings(), model=model, seed=seed)
    t0 = time.perf_counter()
    with fast_gc():
        sim.run(sim.start_ms + int(hours * 3_600_000))
    wall = time.perf_counter() - t0
    sim_s = hours * 3600
    return {"hours": hours, "model": model, "wall_s": round(wall, 2), "sim_per_wall": round(sim_s / wall, 1),
            "events_per_s": round(sim.events_run / wall), "events": sim.events_run, "intents": len(sim.rec.intents)}


def markdown(r: dict[str, float]) -> str:
    return ("| run | wall (s) | simulated s / wall s | events / s | events | intents |\n|---|---:|---:|---:|---:|---:|\n"
            f"| {r['hours']:g} h, {r['model']}, seed profile | {r['wall_s']} | {r['sim_per_wall']} | {r['events_per_s']:,} "
            f"| {r['events']:,} | {r['intents']:,} |")


if __name__ == "__main__":
    print(markdown(lab_speed()))
