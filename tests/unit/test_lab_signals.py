"""The seed's volatility thresholds on the calibrated models, through the lab (the real cores, simulated time):
the 1-minute sigma's pause at 30 fires within 10 s of a stressed regime starting, and never on calm."""
from __future__ import annotations

import pytest

from lab.sim import Sim
from shared.config import load_settings


def _modes(model: str, seed: int, minutes: int) -> tuple[Sim, list[tuple[int, str, float]]]:
    sim = Sim(load_settings(), model=model, seed=seed)
    seen: list[tuple[int, str, float]] = []

    def poll() -> None:
        seen.append((sim.now, sim.maker.mode, sim.maker.vol.value))
        sim.at(sim.now + 100, poll)

    sim.at(sim.start_ms + 100, poll)
    sim.run(sim.start_ms + minutes * 60_000)
    return sim, seen


@pytest.mark.parametrize("model,seed,minutes", [("burst", 1, 25), ("burst", 2, 25), ("sol", 3, 30)])
def test_the_pause_fires_within_10_s_of_a_burst_starting(model: str, seed: int, minutes: int) -> None:
    sim, seen = _modes(model, seed, minutes)
    regime = sim.venue.flow[sim.mid].regime
    starts = [t for t in regime.starts if sim.start_ms + 60_000 < t < seen[-1][0] - 30_000]
    assert starts, "no burst in the window: pick another seed"
    checked = 0
    for t0 in starts:
        before = [m for t, m, _ in seen if t0 - 1_000 <= t < t0]
        if not before or before[-1] == "paused":   # still paused from the previous burst
            continue
        after = [(t, m) for t, m, _ in seen if t0 <= t <= t0 + 10_000]
        assert any(m == "paused" for _, m in after), (model, seed, t0 - sim.start_ms)
        checked += 1
    assert checked


@pytest.mark.parametrize("seed", [1, 2])
def test_calm_never_reaches_the_pause_and_stays_below_the_resume(seed: int) -> None:
    _, seen = _modes("calm", seed, 10)
    vols = [v for t, _, v in seen[600:]]   # after the first minute
    assert max(vols) < 18 and all(m != "paused" for _, m, _ in seen)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_new_users_first_run_fills_within_a_minute(seed: int) -> None:
    """make run's default: the packet's profile on the realistic mix (sol), the standard tier."""
    from shared.schemas import Fill
    s = load_settings()
    assert s.venue.model == "sol" and s.tier == "standard" and s.maker.engine == "adaptive"
    sim = Sim(s, model=s.venue.model, seed=seed)
    sim.run(sim.start_ms + 75_000)
    t0 = sim.maker.engine_t0_ms
    assert t0 is not None and t0 - sim.start_ms < 15_000   # quoting starts within seconds
    fills = [m.ts_ms for m in sim.rec.account if isinstance(m, Fill)]
    assert fills and min(fills) - t0 <= 60_000, (seed, [(f - t0) / 1000 for f in fills[:3]])
