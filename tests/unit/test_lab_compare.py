"""lab.compare's verdict: the best engine must trade and have a Sharpe on most seeds."""
from __future__ import annotations

from lab.compare import verdicts


def row(engine: str, sharpe: float | None, fills: float, sharpe_seeds: int = 5, inv: float = 0.1) -> dict:
    return {"model": "calm", "engine": engine, "seeds": 5, "hours": 1.0, "sharpe": sharpe, "sharpe_seeds": sharpe_seeds,
            "fills_maker": fills, "max_abs_inventory": inv, "pnl_usd": 0.0}


def test_an_engine_that_barely_trades_cannot_win_on_one_lucky_seed() -> None:
    rows = [row("baseline", -0.1, 600, inv=0.17), row("idle", 0.13, 0.4, sharpe_seeds=1, inv=0.015),
            row("wide", 0.05, 40, inv=0.06)]
    (v,) = verdicts(rows)
    assert v["best"] == "wide" and v["higher_sharpe"] and v["lower_inventory"]


def test_no_eligible_engine_is_no_verdict() -> None:
    (v,) = verdicts([row("baseline", 3.0, 1600), row("idle", 0.13, 0.4, sharpe_seeds=1)])
    assert v["best"] is None and v["higher_sharpe"] is None
