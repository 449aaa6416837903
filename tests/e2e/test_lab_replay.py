"""Live-replay parity: a live ``core.main`` session with the core tap on, recorded with ``lighter-bot
record``, replays to exactly the intents the live maker and hedger published and the verdicts the
live guard gave (``lighter-bot replay``). The session has fills (a taker hits our quotes), hedges
(the position passes the hedger's trigger) and requote storms (price jumps move the whole book).
"""
from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from lab import recording
from tests.chaos.harness import REPO, Observer, System, Taker, configured_system, two_sided, until

pytestmark = pytest.mark.e2e

SESSION_S = 30
CONFIG = {"venue": {"tier": "premium"},   # the raised rate below is within premium's budget only
          "hedger": {"trigger_units": 0.02, "max_clip_units": 0.02},
          "guard": {"rate": {"requests_per_min": 600, "reserved_per_min": 20, "hedge_reserved_per_min": 8}}}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    d = tmp_path_factory.mktemp("lab")
    # the session's 25 bps jumps are there to re-price every quote; under the volatility pause the
    # maker would stop deciding anything after the first few (the pause has its own tests)
    overrides = {**CONFIG, "maker": {"volatility": {"pause_bps": 10000, "resume_bps": 9000}}}
    with configured_system(d, overrides, model="as", seed=5, extra_env={"LIGHTER_TAP_DIR": str(d / "tap")}) as sysm:
        yield sysm


def lighter_bot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


async def test_a_recorded_live_session_replays_to_the_same_intents_and_verdicts(system: System, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as s:
        obs = Observer(system, s)
        await obs.wait_healthy()
        await two_sided(obs)
        taker = await Taker.create(obs)
        rng = random.Random(3)
        t_end = time.monotonic() + SESSION_S
        jumps = 0
        try:
            while time.monotonic() < t_end:
                st = await obs.state()
                quotes = [o for o in obs.resting(st) if o.get("client_order_index")]
                if quotes:
                    await taker.hit(rng.choice(quotes))
                if rng.random() < 0.3:   # the whole book moves: every quote is re-priced at once
                    await obs.fault(kind="price_jump", market_id=2, bps=rng.choice((-25, 25)))
                    jumps += 1
                await asyncio.sleep(1.5)
        finally:
            await taker.close()
        await until("the hedger hedged", lambda: _hedged(system), 20)
        await obs.close()
    out = tmp_path / "session.rec.gz"
    r = lighter_bot("record", "--out", str(out), "--redis-url", system.redis_url, "--tap-dir", str(system.dir / "tap"),
                    "--account", str(system.account), "--config", str(system.dir / "config.yaml"))
    assert r.returncode == 0, r.stderr
    rec = recording.read(out)
    intents = Counter((m.source, m.action) for _, m in rec.stream("orders:intents"))
    fills = [m for _, m in rec.stream(f"acct:{system.account}") if m.type == "fill"]
    assert fills, "the session had no fill"
    assert intents[("hedger", "place")] >= 1, intents
    assert jumps >= 3 and intents[("maker", "modify")] + intents[("maker", "place")] >= 10, intents
    r = lighter_bot("replay", str(out), "--json")
    doc = orjson.loads(r.stdout)
    assert r.returncode == 0 and doc["ok"], doc
    assert doc["compared"]["maker"] == sum(n for (src, _), n in intents.items() if src == "maker")
    assert doc["compared"]["hedger"] >= 1 and doc["compared"]["guard"] >= doc["compared"]["maker"]
    # a changed input is found: move every book the maker saw in the second half by 30 bps; its
    # next decision prices from a different mid, and the replay must say where it first differs
    lines = rec.taps["maker"]
    for ln in lines[len(lines) // 2:]:
        d = ln.get("e", {}).get("d", {}) if ln.get("k") == "h" else {}
        if d.get("type") == "book":
            for side in ("bids", "asks"):
                d[side] = [[p + p * 30 // 10_000, q] for p, q in d[side]]
    first = recording.replay(rec).first
    assert "maker" in first and first["maker"].index < doc["compared"]["maker"], first


async def _hedged(system: System) -> bool:
    from redis.asyncio import Redis
    r = Redis.from_url(system.redis_url)
    try:
        rows = await r.xrange("orders:intents", count=100000)
    finally:
        await r.aclose()
    return any(b'"source":"hedger"' in f.get(b"d", b"") for _, f in rows)
