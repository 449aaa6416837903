"""Chaos: SIGKILL a random service at a random moment, again and again, while our quotes are traded.

The whole system runs as ``make run`` starts it (``python -m core.main``, the local venue with its
admin API, ``--max-restarts 1000`` so the supervisor keeps restarting). An independent taker
account (official SDK) crosses our quotes every ~1.5 s; the venue's own takers trade too. Each
cycle kills one of feed, maker, hedger, guard, gateway; some gateway kills land while a tx is in
flight (the venue's ``delay_tx`` fault holds it for 2-4 s). After the victim is back and healthy,
within 10 s:

- no client_order_index was booked twice at the venue (every order it ever booked for us);
- no orphan: every order of ours resting at the venue is the maker's quote or the hedger's clip;
- the venue's position equals ``ledger.position`` in the maker, hedger, guard and gateway;
- and after that, no veto storm (fewer than 5 vetoes on ``orders:events`` in the quiet window).

The account is on the premium tier: an independent taker every 1.5 s, the venue's takers and a restart
every few seconds ask more than the standard tier's 60 requests a minute (cancels and reads included),
and what is measured here is crash safety, not the budget (the gateway's risk-first order on a spent
budget has its unit tests; CI once saw a start-up reconcile wait 45 s behind 429s on the standard tier).

``CHAOS_CYCLES`` (default 6; ``make chaos`` runs 200) and ``CHAOS_SEED`` (default: random, printed)
drive it. The counts go to ``bench-results/chaos-*.json`` (for BENCHMARKS.md) and one summary line.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.chaos.harness import (REPO, SERVICES, Observer, System, Taker, configured_system, converge, now_ms,
                                 taker_loop, two_sided)

pytestmark = pytest.mark.e2e

CYCLES = int(os.environ.get("CHAOS_CYCLES") or 6)
DEADLINE_S = 10.0          # after the victim is healthy again, the invariants must hold within this
RECOVER_S = 30.0           # past the deadline, keep looking this long to report when (if) it converged
HEALTHY_TIMEOUT_S = 90.0
VETO_LIMIT = 5             # vetoes in the quiet window after convergence (at most 5 s long)
VETO_WINDOW_S = 5.0
MID_SEND_P = 0.6           # share of gateway kills aimed at a tx in flight


async def _wait_back(obs: Observer, sysm: System, name: str, old_pid: int) -> float:
    """Seconds until a new process runs ``name`` and its /health is 200 with state ok."""
    t0 = time.monotonic()
    while True:
        pid = sysm.children().get(name)
        if pid is not None and pid != old_pid and (await obs.health(name)).ok:
            return time.monotonic() - t0
        if time.monotonic() - t0 > HEALTHY_TIMEOUT_S or sysm.proc.poll() is not None:
            h = await obs.health(name)
            raise AssertionError(f"{name} not back and healthy after {HEALTHY_TIMEOUT_S} s: {h.status} "
                                 f"{h.body.get('state')} {h.body.get('reason')}\n{sysm.tail()}")
        await asyncio.sleep(0.1)


async def _in_flight(obs: Observer) -> bool:
    lanes = (await obs.health("gateway", timeout=1.0)).body.get("lanes") or []
    return any(lane.get("in_flight") for lane in lanes)


async def _aim_at_send(obs: Observer, rng: random.Random, delay_ms: int) -> bool:
    """Arm ``delay_tx`` and make the maker requote (a small mid jump); True once the gateway's tx
    is held at the venue (its lane shows a batch in flight)."""
    await obs.fault(kind="delay_tx", ms=delay_ms, count=1)
    for _ in range(4):
        await obs.fault(kind="price_jump", market_id=2, bps=rng.choice((-1, 1)) * rng.uniform(4, 6))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            if await _in_flight(obs):
                return True
            await asyncio.sleep(0.03)
    return False


def _write(report: dict[str, Any]) -> Path:
    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    path = out / f"chaos-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{report['cycles']}c-seed{report['seed']}.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path


@pytest.mark.timeout(120 + CYCLES * 25)
async def test_random_kills_keep_orders_positions_and_quotes_true(tmp_path: Path) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or time.time_ns() % 2**31)
    print(f"\nchaos: seed {seed}, {CYCLES} cycles (CHAOS_SEED={seed} CHAOS_CYCLES={CYCLES} to repeat)")
    rng = random.Random(seed)
    t_start = time.monotonic()
    sysm = configured_system(tmp_path, {"venue": {"tier": "premium"}}, seed=seed % 1000 + 1)
    cycles: list[dict[str, Any]] = []
    report: dict[str, Any] = {"seed": seed, "cycles": CYCLES}
    failures: list[str] = []
    async with aiohttp.ClientSession() as session:
        obs = Observer(sysm, session)
        taker: Taker | None = None
        task: asyncio.Task[None] | None = None
        try:
            await obs.wait_healthy(timeout=HEALTHY_TIMEOUT_S)
            await obs.thin_ladder()
            await two_sided(obs)
            taker = await Taker.create(obs)
            paused = asyncio.Event()
            task = asyncio.create_task(taker_loop(obs, taker, random.Random(seed + 1), paused))
            report["startup_s"] = round(time.monotonic() - t_start, 1)
            await _converge_or_report(obs, failures, "start")
            dups_seen: dict[int, list[int]] = {}
            for i in range(CYCLES):
                victim = rng.choice(SERVICES)
                dwell = rng.uniform(0.5, 3.5)
                aim = victim == "gateway" and rng.random() < MID_SEND_P
                delay_ms = rng.randint(2000, 4000) if aim else 0
                kill_after = rng.uniform(0.05, min(delay_ms / 1000 - 0.3, 2.9)) if aim else 0.0
                await asyncio.sleep(dwell)   # the random moment (not a synchronisation)
                rec: dict[str, Any] = {"cycle": i + 1, "victim": victim, "dwell_s": round(dwell, 2)}
                if aim:
                    paused.set()   # the taker's own tx must not take the delay
                    rec["delay_ms"] = delay_ms
                    held = await _aim_at_send(obs, rng, delay_ms)
                    if held:
                        await asyncio.sleep(kill_after)
                    rec["mid_send"] = held and await _in_flight(obs)
                if cycles:
                    cycles[-1]["next_kill_ms"] = now_ms()
                old_pid = sysm.signal(victim, signal.SIGKILL)
                t_kill = time.monotonic()
                if aim:
                    await obs.clear_faults()   # an unused delay must not hit the next tx
                    paused.clear()
                rec["restart_s"] = round(await _wait_back(obs, sysm, victim, old_pid), 2)
                c, conv_s, seen = await _converge_or_report(obs, failures, f"cycle {i + 1} ({victim})")
                rec["converged_ms"] = now_ms()
                new_dups = {coi: sorted(ois) for coi, ois in obs.duplicates().items() if coi not in dups_seen}
                if new_dups:
                    dups_seen.update(new_dups)
                    failures.append(f"cycle {i + 1} ({victim}): client_order_index booked twice at the venue: {new_dups}")
                rec.update(converge_s=round(conv_s, 2), kill_to_converged_s=round(time.monotonic() - t_kill, 2),
                           converged=c.ok, orphans_seen=len(seen), orphans_left=len(c.orphans),
                           orphans=[o for o in seen.values() if o["last_s"] - o["first_s"] >= 2.0],
                           duplicates=len(new_dups), position_mismatch=bool(c.mismatched),
                           position=c.venue_position)
                cycles.append(rec)
                print(f"chaos: {json.dumps(rec, sort_keys=True)}", flush=True)
            # the last quiet window is a full one
            end = time.monotonic() + VETO_WINDOW_S
            while time.monotonic() < end:
                await asyncio.sleep(0.2)
            await _count_vetoes(obs, cycles, failures)
            t_q = time.monotonic()
            await two_sided(obs)   # and it keeps quoting
            report["two_sided_after_s"] = round(time.monotonic() - t_q, 2)
            st = await obs.state()
            report["fills"] = len(obs.our_trades(st))
            report["taker_fills"] = sum(1 for t in obs.our_trades(st) if taker.account in (t["ask_account_id"], t["bid_account_id"]))
            report["taker_orders"] = taker.sent
            report["taker_errors"] = Counter(e.split(":")[0][:60] for e in taker.errors).most_common(5)
            report["orders_booked"] = len(obs.booked)
            report["supervisor_alive"] = sysm.proc.poll() is None
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if taker is not None:
                await taker.close()
            await obs.close()
            rc = sysm.stop()
            report["stop_rc"] = rc
            report["per_cycle"] = cycles
            report.update(_summary(cycles, obs, failures, time.monotonic() - t_start))
            path = _write(report)
            s = report["summary"]
            print(f"chaos summary: seed {seed}, {s['cycles_done']}/{CYCLES} cycles in {s['wall_s']} s, kills {s['kills']}, "
                  f"mid-send gateway kills {s['mid_send_kills']}, duplicates {s['duplicates']}, orphans left "
                  f"{s['orphans_left']} (transient {s['orphans_seen']}), position mismatches {s['position_mismatches']}, "
                  f"max restart {s['max_restart_s']} s, max converge {s['max_converge_s']} s "
                  f"(kill->converged max {s['max_kill_to_converged_s']} s), vetoes after recovery max "
                  f"{s['max_vetoes_after']} (in any 5 s after convergence {s['max_vetoes_5s']}) total {s['vetoes_after_total']}, fills {report.get('fills')}; {path}")
    assert not failures, "\n".join(failures[:20]) + f"\nlog tail:\n{sysm.tail(4000)}"
    assert len(cycles) == CYCLES


async def _converge_or_report(obs: Observer, failures: list[str], what: str) -> tuple[Any, float, dict[int, Any]]:
    c, t, seen = await converge(obs, DEADLINE_S)
    if not c.ok:
        late, t2, seen2 = await converge(obs, RECOVER_S)
        failures.append(f"{what}: not converged {DEADLINE_S:.0f} s after the restart: {c.why()} "
                        f"{[seen.get(coi) for coi in c.orphans]}"
                        f" ({'converged after ' + format(t + t2, '.1f') + ' s' if late.ok else 'still: ' + late.why()})")
        for coi, rec in seen2.items():
            seen.setdefault(coi, rec)
    return c, t, seen


async def _count_vetoes(obs: Observer, cycles: list[dict[str, Any]], failures: list[str]) -> None:
    """Vetoes in the quiet window after each convergence: VETO_WINDOW_S long, cut short by the next
    kill (``vetoes_after``, judged), and the whole VETO_WINDOW_S regardless (``vetoes_5s``, reported)."""
    for c in cycles:
        start = c["converged_ms"]
        end = min(start + int(VETO_WINDOW_S * 1000), c.get("next_kill_ms", start + int(VETO_WINDOW_S * 1000)))
        quiet = await obs.vetoes(start, end)
        c["quiet_window_s"] = round((end - start) / 1000, 2)
        c["vetoes_after"] = len(quiet)
        c["vetoes_5s"] = len(await obs.vetoes(start, start + int(VETO_WINDOW_S * 1000)))
        if len(quiet) >= VETO_LIMIT:
            failures.append(f"cycle {c['cycle']} ({c['victim']}): veto storm after recovery: {len(quiet)} vetoes in "
                            f"{c['quiet_window_s']} s: {[v.get('message') for v in quiet[:5]]}")


def _summary(cycles: list[dict[str, Any]], obs: Observer, failures: list[str], wall: float) -> dict[str, Any]:
    def mx(key: str) -> float | None:
        vals = [c[key] for c in cycles if c.get(key) is not None]
        return max(vals) if vals else None

    conv = [c["kill_to_converged_s"] for c in cycles]
    return {"summary": {
        "cycles_done": len(cycles),
        "wall_s": round(wall, 1),
        "kills": dict(Counter(c["victim"] for c in cycles)),
        "mid_send_kills": sum(1 for c in cycles if c.get("mid_send")),
        "aimed_gateway_kills": sum(1 for c in cycles if "delay_ms" in c),
        "duplicates": len(obs.duplicates()),
        "duplicate_cois": sorted(obs.duplicates()),
        "orphans_left": sum(c["orphans_left"] for c in cycles),
        "orphans_seen": sum(c["orphans_seen"] for c in cycles),
        "position_mismatches": sum(1 for c in cycles if c["position_mismatch"]),
        "not_converged": sum(1 for c in cycles if not c["converged"]),
        "max_restart_s": mx("restart_s"),
        "max_converge_s": mx("converge_s"),
        "max_kill_to_converged_s": mx("kill_to_converged_s"),
        "median_kill_to_converged_s": round(statistics.median(conv), 2) if conv else None,
        "max_vetoes_after": mx("vetoes_after"),
        "vetoes_after_total": sum(c.get("vetoes_after", 0) for c in cycles),
        "max_vetoes_5s": mx("vetoes_5s"),
        "mean_quiet_window_s": round(statistics.mean(c["quiet_window_s"] for c in cycles if "quiet_window_s" in c), 2)
        if any("quiet_window_s" in c for c in cycles) else None,
        "failures": failures,
    }}
