"""``lighter-bot paper as2008`` reduced: Avellaneda & Stoikov (2008)'s gamma = 0.1 row through the lab
(the venue's as model in the paper's scheme, the avellaneda_stoikov engine in the real maker core).
The full 1000-path table is in BENCHMARKS.md."""
from __future__ import annotations

import math

from lab import paper


def test_the_gamma_01_rows_match_the_published_table_within_sampling_error() -> None:
    rows = paper.as2008(24, (0.1,), workers=2, chunk=12)
    assert [(r["gamma"], r["strategy"], r["paths"]) for r in rows] == [(0.1, "inventory", 24), (0.1, "symmetric", 24)]
    inv, sym = rows
    for r in rows:
        ok = paper.within_sampling_error(r)
        assert all(ok.values()), (r, ok)
    # the paper's point: the inventory strategy holds far less inventory and risk for a similar profit
    assert inv["final_q_std"] < sym["final_q_std"] / 2 and inv["profit_std"] < sym["profit_std"]
    expected = 0.1 * 4 / 2 + 2 / 0.1 * math.log(1 + 0.1 / 1.5)   # the average spread, a closed form
    assert abs(inv["spread"] - expected) < 0.005


def test_the_paper_mapping_is_the_papers_setting() -> None:
    p = paper.VENUE_PARAMS
    assert p["as_paper"] == 1.0 and p["start_price"] == 100.0
    assert p["as_A"] * paper.T_SECONDS == 140.0                     # A = 140 per unit of paper time
    assert abs(p["as_k"] - 1.5 * 100 / 1e4) < 1e-12                 # k = 1.5 per USD at S0 = 100, per bp
    assert abs(p["sigma_bps"] * 100 / 1e4 * math.sqrt(paper.T_SECONDS) - 2.0) < 1e-12   # sigma = 2 per sqrt(T)
    assert paper.STEP_MS / 1000 / paper.T_SECONDS == 0.005          # dt
