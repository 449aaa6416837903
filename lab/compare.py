"""``lighter-bot compare``: every quoting engine against the fixed-spread baseline, model by model.

For each market model (and a recorded tape) and each engine, ``seeds`` backtests of ``hours``
simulated hours on one account tier; each row is the mean over the seeds of the trader's metrics
(``analytics.session``): Sharpe of the equity's changes over ``sharpe.interval_s`` (60 s, per
interval, not annualised), PnL, max |inventory|, fills, two-sided uptime, markout at 5 s. The
baseline is the plain fixed-spread maker with no pause, trend, skew or hedging; the others run at
the profile's settings plus the engine's own overrides (``--set`` applies to every run,
``--engine NAME:KEY=V,...`` adds or changes an engine, e.g. the best point a sweep found).
"""
from __future__ import annotations

import math
import statistics
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from shared.config import Settings

from lab.backtest import Run, backtest
from lab.overrides import apply_overrides

ENGINES: dict[str, dict[str, str]] = {
    "baseline": {"maker.engine": "fixed", "hedger.dry_run": "true"},
    "adaptive": {"maker.engine": "adaptive"},
    "avellaneda_stoikov": {"maker.engine": "avellaneda_stoikov"},
    "glft": {"maker.engine": "glft"},
}
MODELS = ("calm", "burst", "trend", "informed", "as", "sol")
METRICS = ("sharpe", "pnl_usd", "max_abs_inventory", "fills_maker", "fills_hedger", "two_sided_uptime", "markout_5s_bps",
           "fees_usd")


def metrics_of(summary: dict[str, Any], spec_size_scale: int) -> dict[str, float | None]:
    """The comparison's numbers from one backtest summary."""
    mk = ((summary.get("markout_bps") or {}).get("maker") or {}).get("5000ms") or {}
    pos = summary.get("max_abs_position") or {}
    return {"sharpe": (summary.get("sharpe") or {}).get("value"),
            "pnl_usd": float(summary["pnl_usd"]),
            "max_abs_inventory": None if not pos else pos.get("lots", 0) / spec_size_scale,
            "fills_maker": float(summary.get("fills_maker", 0)), "fills_hedger": float(summary.get("fills_hedger", 0)),
            "two_sided_uptime": summary.get("two_sided_uptime"), "markout_5s_bps": mk.get("bps"),
            "fees_usd": float(summary.get("fees_usd") or 0)}


def _job(args: tuple[Settings, Run]) -> dict[str, float | None]:
    settings, run = args
    return metrics_of(backtest(settings, run, charts=False), settings.market_spec.size_scale)


def _mean(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.fmean(v) if v else None


def _sd(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return statistics.stdev(v) if len(v) > 1 else None


def compare(base: Settings, models: tuple[str, ...], engines: dict[str, dict[str, str]], seeds: int, hours: float,
            tier: str | None = None, tape: str | None = None, workers: int = 1) -> list[dict[str, Any]]:
    settings = {name: apply_overrides(base, over, f"--engine {name}") for name, over in engines.items()}
    keys: list[tuple[str, str, int]] = []
    jobs: list[tuple[Settings, Run]] = []
    for model in models:
        for name in engines:
            for seed in range(1, seeds + 1):
                run = Run(model="replay" if model == "tape" else model, seed=seed, hours=hours, tier=tier,
                          tape=tape if model == "tape" else None)
                keys.append((model, name, seed))
                jobs.append((settings[name], run))
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            results = list(ex.map(_job, jobs, chunksize=1))
    else:
        results = [_job(j) for j in jobs]
    grouped: dict[tuple[str, str], list[dict[str, float | None]]] = {}
    for (model, name, _), res in zip(keys, results):
        grouped.setdefault((model, name), []).append(res)
    rows = []
    for model in models:
        for name in engines:
            runs = grouped[(model, name)]
            row: dict[str, Any] = {"model": model, "engine": name, "tier": tier or base.tier, "seeds": len(runs),
                                   "hours": hours, "overrides": engines[name]}
            for m in METRICS:
                row[m] = _mean([r[m] for r in runs])
            row["sharpe_sd"] = _sd([r["sharpe"] for r in runs])
            row["sharpe_seeds"] = sum(1 for r in runs if r["sharpe"] is not None)
            row["pnl_usd_sd"] = _sd([r["pnl_usd"] for r in runs])
            rows.append(row)
    return rows


MIN_FILLS_PER_HOUR = 10


def _eligible(r: dict[str, Any]) -> bool:
    fills = (r.get("fills_maker") or 0) / max(r.get("hours") or 1.0, 1e-9)
    seeds = r.get("sharpe_seeds", r.get("seeds", 0))
    return fills >= MIN_FILLS_PER_HOUR and 2 * seeds > (r.get("seeds") or 0)


def verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: the best engine by mean Sharpe, and whether it beats the baseline on Sharpe and max |inventory|."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        base = next((r for r in mine if r["engine"] == "baseline"), None)
        others = [r for r in mine if r["engine"] != "baseline"]
        if base is None or not others:
            continue
        # an engine that barely trades wins a Sharpe race by luck (one seed, one fill): it must trade
        # (MIN_FILLS_PER_HOUR maker fills) and have a Sharpe on most seeds to be the best
        rated = [r for r in others if r["sharpe"] is not None and _eligible(r)]
        if not rated:
            out.append({"model": model, "best": None, "sharpe": None, "baseline_sharpe": base["sharpe"],
                        "max_abs_inventory": None, "baseline_max_abs_inventory": base["max_abs_inventory"],
                        "higher_sharpe": None, "lower_inventory": None})
            continue
        best = max(rated, key=lambda r: r["sharpe"])
        out.append({"model": model, "best": best["engine"], "sharpe": best["sharpe"], "baseline_sharpe": base["sharpe"],
                    "max_abs_inventory": best["max_abs_inventory"], "baseline_max_abs_inventory": base["max_abs_inventory"],
                    "higher_sharpe": None if best["sharpe"] is None else (base["sharpe"] is None or best["sharpe"] > base["sharpe"]),
                    "lower_inventory": (best["max_abs_inventory"] or 0) < (base["max_abs_inventory"] or 0)})
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    def f(x: Any, nd: int = 3) -> str:
        return "–" if x is None else f"{x:.{nd}f}"
    lines = ["| model | engine | Sharpe (60 s) | ± sd | PnL USD | max abs inv | maker fills | hedger fills | uptime | markout 5 s bps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['engine']} | {f(r['sharpe'])} | {f(r['sharpe_sd'])} | {f(r['pnl_usd'], 4)} | "
                     f"{f(r['max_abs_inventory'])} | {f(r['fills_maker'], 0)} | {f(r['fills_hedger'], 0)} | "
                     f"{f(r['two_sided_uptime'], 2)} | {f(r['markout_5s_bps'], 2)} |")
    return "\n".join(lines) + "\n"
