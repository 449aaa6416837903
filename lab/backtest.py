"""One backtest: settings + model + seed + hours → the simulated session, its summary and its charts."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from analytics.session import SessionBuilder, curves, summarize
from shared.config import Settings
from shared.profile_check import contradictions

from lab.latency import Latency
from lab.sim import ACCOUNT, Recorder, Sim, fast_gc
from lab.tape import load_tape


@dataclass(frozen=True)
class Run:
    model: str = "calm"
    seed: int = 1
    hours: float = 1.0
    tape: str | None = None
    latency: str = "constant"
    tier: str | None = None
    params: tuple[tuple[str, float], ...] = ()   # the venue's market-model parameters (services/venue/flow.py Params)


def tapes_from(path: str | None, market_id: int) -> dict[int, Any] | None:
    return load_tape(path, market_id) if path else None


def simulate(settings: Settings, run: Run, progress: Callable[[int], None] | None = None) -> tuple[Sim, float]:
    """Run the session; returns the finished simulation and its wall-clock seconds."""
    model = run.model if not run.tape else "replay"
    sim = Sim(settings, model=model, seed=run.seed, latency=Latency.parse(run.latency),
              tapes=tapes_from(run.tape, settings.market_spec.market_id), venue_tier=run.tier, record=Recorder(),
              model_params=dict(run.params))
    t0 = time.perf_counter()
    end = sim.start_ms + int(run.hours * 3_600_000)
    with fast_gc():
        sim.run(end, progress)
        sim.stop()
        sim.run(end + 2_000)   # the stop's cancels reach the venue (the session is judged at ``end``)
    return sim, time.perf_counter() - t0


def session_of(sim: Sim, settings: Settings) -> SessionBuilder:
    b = SessionBuilder(settings.market_spec, ACCOUNT)
    for m in sim.rec.books:
        b.feed(m)
    for m in sim.rec.account:
        b.feed(m)
    for m in sim.rec.intents:
        b.feed(m)
    return b


def backtest(settings: Settings, run: Run, out: Path | None = None, overrides: dict[str, str] | None = None,
             progress: Callable[[int], None] | None = None, charts: bool = True) -> dict[str, Any]:
    sim, wall = simulate(settings, run, progress)
    end = sim.start_ms + int(run.hours * 3_600_000)
    session = session_of(sim, settings)
    summary = summarize(session, start_ms=sim.start_ms, end_ms=end)
    summary["window_seconds"] = summary["sim_seconds"]   # the metrics' window: from the first book to the end
    first = next((b for b in sim.rec.books if b.bids and b.asks), None)
    summary["profile_warnings"] = ([] if first is None else
                                   contradictions(settings, (first.bids[0][0] + first.asks[0][0]) // 2))
    summary.update({"sim_seconds": (end - sim.start_ms) / 1000, "wall_seconds": round(wall, 3), "events": sim.events_run,
                    "sim_per_wall": round((end - sim.start_ms) / 1000 / wall, 1) if wall > 0 else None,
                    "model": sim.vcfg.model, "seed": run.seed, "hours": run.hours, "latency": sim.latency.spec,
                    "tape": run.tape, "model_params": dict(run.params), "profile": settings.profile, "overrides": overrides or {},
                    "intents": len(sim.rec.intents), "intent_digest": sim.rec.digest()})
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        if charts:
            from lab.report import write_report
            write_report(out, summary, curves(session, 1_000, start_ms=sim.start_ms, end_ms=end),
                         f"{settings.market_spec.symbol} backtest: {sim.vcfg.model}, seed {run.seed}, {run.hours:g} h")
    return summary


def progress_printer(start_ms: int, end_ms: int, label: str = "") -> Callable[[int], None]:
    t0 = time.perf_counter()

    def show(t: int) -> None:
        done = (t - start_ms) / max(1, end_ms - start_ms)
        wall = time.perf_counter() - t0
        eta = wall / done - wall if done > 0 else 0.0
        sys.stderr.write(f"\r{label}{done:6.1%} simulated ({(t - start_ms) / 1000:,.0f} s) in {wall:5.1f} s, "
                         f"eta {eta:4.0f} s ")
        sys.stderr.flush()
    return show
