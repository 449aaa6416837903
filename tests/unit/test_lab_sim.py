"""The lab's simulated-time runner: deterministic, the real cores trading against the venue core."""
from __future__ import annotations

from collections import Counter

import pytest

from lab.latency import Latency, LatencyError
from lab.sim import Sim, claim_verdict
from shared.config import load_settings


def _run(seed: int, seconds: int = 240, model: str = "as", latency: Latency | None = None) -> Sim:
    sim = Sim(load_settings(), model=model, seed=seed, latency=latency)
    sim.run(sim.start_ms + seconds * 1000)
    return sim


def test_the_same_seed_gives_bit_identical_intents_events_and_books() -> None:
    a, b = _run(3), _run(3)
    assert a.rec.intents and a.rec.events
    assert [i.model_dump_json() for i in a.rec.intents] == [i.model_dump_json() for i in b.rec.intents]
    assert [e.model_dump_json() for e in a.rec.events] == [e.model_dump_json() for e in b.rec.events]
    assert [m.model_dump_json() for m in a.rec.account] == [m.model_dump_json() for m in b.rec.account]
    assert a.rec.digest() == b.rec.digest() and a.events_run == b.events_run


def test_another_seed_gives_another_session() -> None:
    assert _run(3, 120).rec.digest() != _run(4, 120).rec.digest()


def test_the_cores_trade_end_to_end_in_simulated_time() -> None:
    sim = _run(1, 300)
    kinds = Counter(e.kind for e in sim.rec.events)
    assert kinds["ack"] > 10                                   # the gateway's batches reached the venue core
    assert sim.risk_state == "ACTIVE"                           # the guard's trigger rules ran, nothing tripped
    assert any(m.type == "fill" for m in sim.rec.account)      # the venue's takers hit our quotes
    assert sim.feed.private_active                              # auth token → private channels, as live
    assert any(getattr(m, "status", "") == "open" for m in sim.rec.account)   # our quotes rested at the venue


def test_the_kill_flag_cancels_every_order_at_the_venue() -> None:
    sim = _run(1, 10)   # (later on this model the standard tier's 32 maker requests a minute can run out)
    assert sim.venue.engine.account_orders.get(100)
    sim.set_kill("operator")
    sim.run(sim.now + 3_000)
    assert not sim.venue.engine.account_orders.get(100)
    assert sim.risk_state == "HALTED"


def test_latency_shifts_decisions_but_stays_deterministic() -> None:
    slow = Latency.parse("constant:ws=5,bus=3,rest=20")
    a, b = _run(2, 120, latency=slow), _run(2, 120, latency=Latency.parse("constant:ws=5,bus=3,rest=20"))
    assert a.rec.digest() == b.rec.digest()
    assert a.rec.digest() != _run(2, 120).rec.digest()


def test_bad_latency_specs_are_named() -> None:
    for spec, word in (("constant:wss=1", "wss"), ("constant:ws=x", "ws"), ("gauss", "gauss"),
                       ("empirical:/nonexistent", "nonexistent")):
        with pytest.raises(LatencyError, match=word):
            Latency.parse(spec)


def test_the_claim_stops_places_when_killed_halted_or_adding_while_reducing() -> None:
    assert claim_verdict("op", "ACTIVE", "1") == "killed"
    assert claim_verdict("op", "ACTIVE", "0") == "ok"           # cancels always go
    assert claim_verdict(None, None, "2") == "killed"           # no risk state: fail closed
    assert claim_verdict(None, "REDUCING", "1") == "reducing"
    assert claim_verdict(None, "REDUCING", "2") == "ok"
    assert claim_verdict(None, "ACTIVE", "1") == "ok"
    assert claim_verdict(None, "HALTED", "2") == "killed" and claim_verdict(None, "bogus", "2") == "killed"


def test_the_session_does_not_depend_on_the_process_hash_seed() -> None:
    """Two processes with different PYTHONHASHSEED: a set of strings iterated anywhere on the path
    (the venue's account channels did) would reorder frames and change the session."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO
    code = ("from lab.sim import Sim; from shared.config import load_settings; "
            "s = Sim(load_settings(), model='as', seed=7); s.run(s.start_ms + 150_000); print(s.rec.digest())")
    out = {subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONHASHSEED": h}).stdout for h in ("1", "2")}
    assert len(out) == 1 and len(next(iter(out)).strip()) == 64, out


def test_empirical_latency_draws_the_recorded_samples_reproducibly(tmp_path) -> None:
    import orjson

    from lab.latency import hops_from_traces
    traces = [{"venue": 0, "feed": 2_000_000, "maker": 3_000_000, "guard": 4_500_000, "signed": 5_000_000,
               "sent": 9_000_000}, {"venue": 0, "feed": 1_000_000, "maker": 1_000_000, "guard": 1_700_000,
                                    "signed": 2_000_000, "sent": 4_000_000}]
    hops = hops_from_traces(traces)
    assert hops == {"ws": [2.0, 1.0], "bus": [1.5, 0.7], "rest": [2.0, 1.0]}   # rest: half the signed→sent round trip
    path = tmp_path / "hops.json"
    path.write_bytes(orjson.dumps(hops))
    a, b = Latency.parse(f"empirical:{path}"), Latency.parse(f"empirical:{path}")
    a.seed(4)
    b.seed(4)
    draws = [a.draw("bus") for _ in range(50)]
    assert draws == [b.draw("bus") for _ in range(50)] and set(draws) == {1, 2}   # 0.7 → 1, 1.5 → 2 ms
    assert _run(2, 60, latency=a).rec.intents                                      # a session runs on it
