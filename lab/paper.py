"""``lighter-bot paper as2008``: Avellaneda & Stoikov (2008)'s simulation, run through the lab.

Not a formula script: each path is a lab session (``lab.sim.Sim``) in which the venue's ``as``
market model, in the paper's discrete scheme (``as_paper``: binomial mid, one Bernoulli taker per
side per step reaching d* with P(d* >= delta) = min(1, A*exp(-k*delta)*dt)), trades against the
``avellaneda_stoikov`` engine running inside the real maker core, through the guard and the gateway.

The paper's setting is mapped onto the venue's units: one unit of paper time T = 1 is
``T_SECONDS`` (20 s) of simulated time, so dt = 0.005 is the venue's 100 ms step; S0 = 100 USD;
sigma = 2 per sqrt(T) is 2/sqrt(20) USD per sqrt(s); A = 140 per T is 7 per second per side; k =
1.5 per USD is 0.015 per bps at 100 USD. Every order is one unit, so q counts fills as in the
paper. What the paper leaves out is switched off: fees (standard tier), sequencer latency and the
request limits (premium budget, guard rate unbounded), hedging, the pause and trend modes.

A path starts when the maker first quotes (its engine clock) and ends T_SECONDS later; profit is
cash + q * S_T with S_T the model's mid at that instant, from the venue's own fills.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from shared.config import Settings, load_settings
from shared.schemas import Fill

from lab.overrides import apply_overrides
from lab.sim import Sim, fast_gc

T_SECONDS = 20.0
STEP_MS = 100                       # dt = 0.005 of T
S0, SIGMA, A, K = 100.0, 2.0, 140.0, 1.5
GAMMAS = (0.1, 0.01, 1.0)

# The published table (Quantitative Finance 8(3), 2008, tables 1-3), for the comparison.
PUBLISHED: dict[tuple[float, str], dict[str, float]] = {
    (0.1, "inventory"): {"spread": 1.49, "profit_mean": 65.0, "profit_std": 6.6, "final_q_mean": 0.08, "final_q_std": 2.9},
    (0.1, "symmetric"): {"spread": 1.49, "profit_mean": 68.4, "profit_std": 12.7, "final_q_mean": 0.26, "final_q_std": 8.4},
    (0.01, "inventory"): {"spread": 1.35, "profit_mean": 68.6, "profit_std": 8.7, "final_q_mean": 0.12, "final_q_std": 5.1},
    (0.01, "symmetric"): {"spread": 1.35, "profit_mean": 68.8, "profit_std": 12.8, "final_q_mean": 0.09, "final_q_std": 8.7},
    (1.0, "inventory"): {"spread": 3.02, "profit_mean": 31.4, "profit_std": 5.0, "final_q_mean": 0.02, "final_q_std": 1.7},
    (1.0, "symmetric"): {"spread": 3.02, "profit_mean": 44.0, "profit_std": 11.0, "final_q_mean": 0.00, "final_q_std": 5.1},
}


def paper_settings(base: Settings, gamma: float, symmetric: bool) -> Settings:
    sigma_s = SIGMA / math.sqrt(T_SECONDS)
    return apply_overrides(base, {
        "maker.engine": "avellaneda_stoikov", "maker.size": "1", "maker.size_min": "1", "maker.size_max": "1",
        "maker.exchange_min_notional": "0", "maker.requote_bps": "0.0001", "maker.min_requote_interval_s": "0.001",
        "maker.volatility.enabled": "false", "maker.trend.enabled": "false",
        "maker.avellaneda_stoikov.gamma": repr(gamma), "maker.avellaneda_stoikov.k": repr(K),
        "maker.avellaneda_stoikov.sigma": repr(sigma_s), "maker.avellaneda_stoikov.horizon_s": repr(T_SECONDS),
        "maker.avellaneda_stoikov.symmetric": "true" if symmetric else "false",
        "hedger.dry_run": "true",
        "guard.max_position_units": "1000", "guard.max_inventory_notional": "1000000",
        "guard.max_price_deviation_bps": "5000", "guard.rate.requests_per_min": "1000000",
        "guard.triggers.drawdown.enabled": "false", "guard.triggers.inventory.enabled": "false",
        "guard.triggers.reject_storm.enabled": "false", "account.tier": "standard",
    }, "paper")


VENUE_PARAMS = {"as_paper": 1.0, "as_A": A / T_SECONDS, "as_k": K * S0 / 1e4,
                "sigma_bps": SIGMA / math.sqrt(T_SECONDS) / S0 * 1e4, "start_price": S0,
                "half_spread_bps": 0.5, "level_step_bps": 0.2, "levels": 5, "level_notional_usd": 100_000.0}


@dataclass(frozen=True)
class Path:
    profit: float
    final_q: float
    spread: float


def run_path(settings: Settings, seed: int) -> Path:
    """One path: a fresh lab session; its fills, the model's mid at T and the engine's mean spread."""
    sim = Sim(settings, model="as", seed=seed, model_params=VENUE_PARAMS,
              venue_options={"latency": False, "rate_limit": False, "step_ms": STEP_MS},
              collateral_micro=10**15)
    sm = sim.venue.flow[sim.mid]
    spreads: list[float] = []
    t = sim.start_ms
    with fast_gc():
        while sim.maker.engine_t0_ms is None:   # until the maker's first quote decision
            t += STEP_MS
            sim.run(t)
            if t - sim.start_ms > 60_000:
                raise RuntimeError("the maker never quoted")
        t0 = sim.maker.engine_t0_ms
        end = t0 + int(T_SECONDS * 1000)
        t = t0
        while t < end:   # sample the engine's spread once per step (the paper's average spread)
            t = min(t + STEP_MS, end)
            sim.run(t)
            q = sim.maker.quote
            if q is not None:
                spreads.append(float(q.bid_bps + q.ask_bps) * sm.mid / sm.tick_value / 1e4)
        s_end = sm.mid / sm.tick_value
    cash = q = 0.0
    for m in sim.rec.account:
        if isinstance(m, Fill) and m.market_id == sim.mid and t0 <= m.ts_ms <= end:
            px, size = m.price / sm.tick_value, m.size / sm.lot_value
            cash += px * size if m.is_ask else -px * size
            q += -size if m.is_ask else size
    return Path(cash + q * s_end, q, statistics.fmean(spreads) if spreads else 0.0)


def row(gamma: float, strategy: str, paths: list[Path]) -> dict[str, Any]:
    prof = [p.profit for p in paths]
    qs = [p.final_q for p in paths]
    sd = statistics.stdev if len(paths) > 1 else (lambda _: 0.0)
    return {"gamma": gamma, "strategy": strategy, "spread": round(statistics.fmean(p.spread for p in paths), 4),
            "profit_mean": round(statistics.fmean(prof), 4), "profit_std": round(sd(prof), 4),
            "final_q_mean": round(statistics.fmean(qs), 4), "final_q_std": round(sd(qs), 4), "paths": len(paths)}


def _job(args: tuple[Settings, int, int]) -> list[Path]:
    settings, first, n = args
    return [run_path(settings, seed) for seed in range(first, first + n)]


def as2008(paths: int, gammas: tuple[float, ...] = GAMMAS, config: str | None = None, workers: int = 1,
           chunk: int = 25) -> list[dict[str, Any]]:
    """The paper's table: for each gamma, the inventory strategy and its symmetric benchmark, on the
    same seeds (the same mid paths and taker draws, as the paper compares them)."""
    base = load_settings(config)   # read once: every job runs on the same settings, whatever happens to the files
    runs = {(g, sym): paper_settings(base, g, sym) for g in gammas for sym in (False, True)}
    keys = [(g, sym, first) for g in gammas for sym in (False, True) for first in range(1, paths + 1, chunk)]
    jobs = [(runs[(g, sym)], first, min(chunk, paths - first + 1)) for g, sym, first in keys]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers) as ex:
            results = list(ex.map(_job, jobs))
    else:
        results = [_job(j) for j in jobs]
    grouped: dict[tuple[float, bool], list[Path]] = {}
    for (g, sym, _), res in zip(keys, results):
        grouped.setdefault((g, sym), []).extend(res)
    return [row(g, "symmetric" if sym else "inventory", grouped[(g, sym)]) for g in gammas for sym in (False, True)]


def within_sampling_error(r: dict[str, Any], z: float = 3.0) -> dict[str, bool]:
    """Each of our numbers against the published one: |ours - theirs| <= z standard errors (the
    spread, a deterministic function of the model, within 1 %)."""
    pub = PUBLISHED[(r["gamma"], r["strategy"])]
    n = r["paths"]
    out = {"spread": abs(r["spread"] - pub["spread"]) <= 0.01 * pub["spread"] + 0.005}
    for mean, std in (("profit_mean", "profit_std"), ("final_q_mean", "final_q_std")):
        se = max(r[std], pub[std]) / math.sqrt(n)
        out[mean] = abs(r[mean] - pub[mean]) <= z * se
        # the std of a near-normal sample has standard error ~ std / sqrt(2 (n - 1))
        out[std] = abs(r[std] - pub[std]) <= z * max(r[std], pub[std]) / math.sqrt(2 * max(n - 1, 1))
    return out
