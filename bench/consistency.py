"""Does the lab agree with the live system? ``python -m bench.consistency`` (``make consistency``).

Method: one live ``core.main`` session on the local venue (model ``--model``, venue seed ``--seed``)
quotes for ``--minutes`` once healthy; its streams are read back and summarised by the same metrics
(``analytics.session``). Then the lab runs the same config and model for the same span on
``--seeds`` seeds. The live figures should fall inside the seed-to-seed spread of the backtests
(min..max, and the z-score against their mean and sample std is printed). Writes
``bench-results/consistency.json``; the table goes to BENCHMARKS.md.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from redis.asyncio import Redis

from analytics.session import summarize
from analytics.streams import load_builder
from bench.__main__ import REPO, machine, wait_healthy
from lab.backtest import Run, backtest
from shared.cli import Parser
from shared.config import load_settings

METRICS = ("fills_maker", "fills_hedger", "pnl_usd", "fees_usd", "two_sided_uptime")


def live(model: str, seed: int, minutes: float, offset: int) -> dict[str, object]:
    env_file = REPO / "var" / f"consistency-{offset}.env"
    env_file.parent.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "core.main", "--port-offset", str(offset), "--env-file", str(env_file),
                             "--model", model, "--seed", str(seed)], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_healthy(8000 + offset, 90):
            raise SystemExit("consistency: the system did not become healthy within 90 s")
        t0 = int(time.time() * 1000)
        time.sleep(minutes * 60)
        t1 = int(time.time() * 1000)
        account = int(dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                           if "=" in line and not line.startswith("#"))["LIGHTER_ACCOUNT_INDEX"])

        async def read() -> dict[str, object]:
            r = Redis.from_url(f"redis://127.0.0.1:{6399 + offset}/0")
            try:
                b = await load_builder(r, load_settings().market_spec, account, t0, t1)
            finally:
                await r.aclose()
            return summarize(b, start_ms=t0, end_ms=t1)
        return asyncio.run(read())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def num(v: object) -> float:
    return float(Decimal(v)) if isinstance(v, str) else float(v)  # type: ignore[arg-type]


def main() -> None:
    p = Parser(prog="python -m bench.consistency", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="as")
    p.add_argument("--seed", type=int, default=1, help="the live venue's seed (the lab's seeds are 1..N)")
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--port-offset", type=int, default=320)
    a = p.parse_args()
    print(f"machine: {machine()}")
    live_s = live(a.model, a.seed, a.minutes, a.port_offset)
    settings = load_settings()
    runs = [backtest(settings, Run(a.model, s, a.minutes / 60), charts=False) for s in range(1, a.seeds + 1)]
    rows = []
    for k in METRICS:
        xs = [num(r[k]) for r in runs if r.get(k) is not None]
        lv = live_s.get(k)
        mean, sd = statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0
        lvf = None if lv is None else num(lv)
        z = None if lvf is None or sd == 0 else (lvf - mean) / sd
        inside = lvf is not None and min(xs) <= lvf <= max(xs)
        rows.append({"metric": k, "live": lvf, "lab_mean": mean, "lab_sd": sd, "lab_min": min(xs), "lab_max": max(xs),
                     "z": z, "inside": inside})
    print(f"\nLive {a.minutes:g} min ({a.model}, venue seed {a.seed}) against {a.seeds} lab seeds of the same span:\n")
    print("| metric | live | lab mean | lab sd | lab min..max | z | inside |\n|---|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        z = "n/a" if r["z"] is None else f"{r['z']:+.2f}"
        print(f"| {r['metric']} | {r['live']:.6g} | {r['lab_mean']:.6g} | {r['lab_sd']:.3g} | "
              f"{r['lab_min']:.6g}..{r['lab_max']:.6g} | {z} | {'yes' if r['inside'] else 'NO'} |")
    out = {"machine": machine(), "model": a.model, "minutes": a.minutes, "seeds": a.seeds, "rows": rows,
           "live": {k: live_s.get(k) for k in METRICS}, "ts": int(time.time())}
    Path(REPO / "bench-results").mkdir(exist_ok=True)
    (REPO / "bench-results" / "consistency.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
