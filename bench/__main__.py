"""``python -m bench``: run the whole system on the local venue, collect traces, print tables.

Method: start ``core.main`` on a port offset (its own Redis, venue and services), let the maker
quote for ``--seconds``, then read every maker place/modify ``ack`` on ``orders:events`` and compute per-hop
p50/p99 from the carried traces. Then run the venue's own throughput benchmark. Results go to
``bench-results/latest.json`` and stdout (markdown, ready for BENCHMARKS.md).
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import yaml
from redis.asyncio import Redis

from bench import budget, floor
from bench.lab import lab_speed
from bench.lab import markdown as lab_markdown
from bench.latency import hop_table, markdown, percentile
from lab.latency import hops_from_traces
from services.venue.bench import machine as venue_machine
from shared import keys
from shared.cli import Parser

REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    """The venue bench's description of this box, plus the kernel."""
    return f"{venue_machine()}, {platform.system()} {platform.release()}"


async def collect(redis_url: str, since_ns: int) -> list[dict[str, int]]:
    r = Redis.from_url(redis_url)
    traces: list[dict[str, int]] = []
    for _, f in await r.xrange(keys.ORDERS_EVENTS):
        d = orjson.loads(f[b"d"])
        if d.get("kind") == "ack" and d.get("source") == "maker" and d.get("action") in ("place", "modify"):
            trace = d.get("trace", {})
            if trace.get("maker", 0) >= since_ns:  # decisions made once every service was healthy
                traces.append(trace)
    await r.aclose()
    return traces


# Requote more eagerly than production so a one-minute run yields hundreds of samples; the hops
# measured (stream hand-offs, verdict, signing, sendTx) do not depend on how often the maker moves.
# The local venue runs the premium tier, so the guard's request budget is set to premium's 4 000 tx a
# minute here (the shipped default is the standard tier's 60 requests, which would cap the samples).
BENCH_OVERRIDES = {"maker": {"requote_bps": 0.5, "min_requote_interval_s": 0.2},
                   "guard": {"rate": {"requests_per_min": 4000, "reserved_per_min": 100, "hedge_reserved_per_min": 100}}}


def bench_config() -> Path:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for section, values in BENCH_OVERRIDES.items():
        cfg.setdefault(section, {}).update(values)
    cfg["profile"] = str(REPO / cfg.get("profile", "profiles/market_2.yaml"))
    path = REPO / "var" / "bench-config.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def wait_healthy(port: int, timeout: float) -> bool:
    """Warm-up excluded: samples count only once the aggregate /health is 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


async def kill_to_flat(redis_url: str, account: int) -> float | None:
    """SET risk:kill, then ms until every order open at that moment is reported terminal on acct:{n}.

    Open orders are rebuilt from the account stream's OrderUpdates; the end time is the stream entry
    of the last terminal update (venue → feed → Redis included), so the figure is an upper bound.
    """
    r = Redis.from_url(redis_url)
    try:
        stream = keys.acct(account)
        status: dict[int, str] = {}
        for _, f in await r.xrange(stream):
            d = orjson.loads(f[b"d"])
            if d.get("type") == "order":
                status[d["order_index"]] = d["status"]
        open_now = {i for i, st in status.items() if st == "open"}
        if not open_now:
            return None
        t0 = time.time()
        await r.set(keys.RISK_KILL, "bench")
        await asyncio.sleep(3)
        last = None
        for eid, f in await r.xrange(stream, min=f"{int(t0 * 1000)}-0"):
            d = orjson.loads(f[b"d"])
            if d.get("type") == "order" and d["order_index"] in open_now and d["status"] != "open":
                open_now.discard(d["order_index"])
                last = int(eid.decode().split("-")[0]) / 1000
        await r.delete(keys.RISK_KILL)
        return None if open_now or last is None else (last - t0) * 1000
    finally:
        await r.aclose()


def run_system(seconds: float, offset: int) -> tuple[list[dict[str, int]], list[float]]:
    env = dict(os.environ)
    env_file = REPO / "var" / f"bench-{offset}.env"
    env_file.parent.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "core.main", "--port-offset", str(offset), "--env-file", str(env_file),
                             "--config", str(bench_config())],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_healthy(8000 + offset, 90):
            raise SystemExit("bench: the system did not become healthy within 90 s")
        since_ns = time.time_ns()
        time.sleep(seconds)
        url = f"redis://127.0.0.1:{6399 + offset}/0"
        traces = asyncio.run(collect(url, since_ns))
        account = int(dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                           if "=" in line and not line.startswith("#"))["LIGHTER_ACCOUNT_INDEX"])
        flats: list[float] = []
        for _ in range(5):  # a few kills, quoting resumes in between
            time.sleep(3)
            ms = asyncio.run(kill_to_flat(url, account))
            if ms is not None:
                flats.append(ms)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return traces, flats


def isolated_redis_parts() -> dict[str, dict[str, float]]:
    """Redis RTT and stream hand-off on a redis-server of their own (idle: nothing else on it)."""
    import shutil
    port = floor._free_port()
    d = REPO / "var" / "bench-redis"
    d.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(d), "--appendonly", "yes", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        return asyncio.run(floor.redis_parts(f"redis://127.0.0.1:{port}/0"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    p = Parser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long the system quotes (default 60)")
    p.add_argument("--port-offset", type=int, default=300, help="port offset for the bench system (default 300)")
    p.add_argument("--skip-venue", action="store_true", help="skip the venue throughput benchmark")
    a = p.parse_args()
    print(f"machine: {machine()}")
    traces, flats = run_system(a.seconds, a.port_offset)
    table = hop_table(traces)
    print(f"\nEnd-to-end latency, {len(traces)} maker place intents over {a.seconds:.0f} s:\n")
    print(markdown(table))
    print(f"\nSET risk:kill → last open order reported cancelled (ms, {len(flats)} kills): "
          + ", ".join(f"{x:.0f}" for x in sorted(flats)))
    req = floor.requotes(traces)
    live = {"n": len(req), "p50_ms": percentile(req, 50), "p99_ms": percentile(req, 99)}
    parts = {**isolated_redis_parts(), **asyncio.run(floor.sign_and_batch())}
    floor_row = floor.floor_table(parts, table["venue→feed"]["p50_ms"])
    print(f"\nRequote floor (each part in isolation) and venue frame → requote sent ({len(req)} frame-driven requotes):\n")
    print(floor.markdown(floor_row, live))
    print("\nParts: " + ", ".join(f"{k} p50 {v['p50_ms']:.3f} / p99 {v['p99_ms']:.3f} ms" for k, v in parts.items()))
    rows = budget.budget()
    print("\nSustainable requotes per minute by tier (fixed load: " + str(rows[0]["fixed_load"]) + "):\n")
    print(budget.markdown(rows))
    results: dict[str, object] = {"machine": machine(), "latency": table, "kill_to_flat_ms": flats, "ts": int(time.time()),
                                  "requote": live, "floor": floor_row, "floor_parts": parts, "budget": rows}
    lab = lab_speed()
    print("\nStrategy lab, one simulated hour (lighter-bot backtest without the report):\n")
    print(lab_markdown(lab))
    results["lab"] = lab
    hops = hops_from_traces(traces)
    Path(REPO / "bench-results").mkdir(exist_ok=True)
    (REPO / "bench-results" / "hops.json").write_text(json.dumps(hops))   # lighter-bot --latency empirical:FILE
    if not a.skip_venue:
        out = subprocess.run([sys.executable, "-m", "services.venue.bench"], cwd=REPO, capture_output=True, text=True)
        print("\nVenue throughput:\n" + out.stdout)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
        results["venue"] = out.stdout
    Path(REPO / "bench-results").mkdir(exist_ok=True)
    (REPO / "bench-results" / "latest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
