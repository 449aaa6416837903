"""The metrics' defining identities and hand-computed cases."""
from __future__ import annotations

import math
import random

from analytics.mm_metrics import FillRec, MidSeries, QuoteSpan, attribution, equity_curve, markouts, report, uptime


def test_round_trip_capture_and_markout_by_hand() -> None:
    mids = MidSeries([(0, 100.0), (1000, 100.0), (2000, 101.0), (10_000, 101.0)])
    fills = [FillRec(500, +1, 99.9, 2.0), FillRec(1500, -1, 100.1, 2.0)]
    cap, inv, fees = attribution(fills, mids, 0, 10_000)
    assert math.isclose(cap, 2 * 0.1 + 2 * 0.1) and inv == 0.0 and fees == 0.0
    mk = markouts(fills, mids, [1000], 10_000)
    # bought 99.9, mid 1 s later 100 -> +0.1; sold 100.1, mid 1 s later 101 -> -0.9 ; size-weighted per unit
    assert math.isclose(mk["1000ms"]["per_unit"], (2 * 0.1 + 2 * (100.1 - 101.0)) / 4)
    assert math.isclose(mk["edge"]["per_unit"], 0.1)


def test_attribution_identity_holds_on_random_sessions() -> None:
    rng = random.Random(7)
    for _ in range(20):
        t, m, pts = 0, 100.0, []
        for _ in range(300):
            t += rng.randint(1, 400)
            m += rng.gauss(0, 0.05)
            pts.append((t, m))
        mids = MidSeries([(0, 100.0), *pts])
        fills = [FillRec(rng.randint(1, t), rng.choice((1, -1)), 100 + rng.gauss(0, 0.3), rng.uniform(0.1, 1), rng.uniform(-0.01, 0.01))
                 for _ in range(40)]
        cap, inv, fees = attribution(fills, mids, 0, t)
        eq = equity_curve(fills, mids, 0, t, max(1, t))  # two samples: start and end
        assert math.isclose(eq[-1] - eq[0] + fees, cap + inv, abs_tol=1e-6)


def test_uptime_bid_ask_both() -> None:
    spans = [QuoteSpan(False, 0, 600), QuoteSpan(True, 300, 1000)]
    assert uptime(spans, 0, 1000) == {"bid": 0.6, "ask": 0.7, "both": 0.3}


def test_report_inventory_drawdown_and_fill_ratio() -> None:
    mids = MidSeries([(0, 100.0), (5000, 98.0)])
    r = report([FillRec(1000, +1, 100.0, 1.0)], mids, 0, 10_000, submitted_size=4.0, final_half_spread=0.05)
    assert math.isclose(r.pnl, -2.0) and math.isclose(r.max_drawdown, 2.0) and math.isclose(r.liquidation_pnl, -2.05)
    assert r.inv_max_abs == 1.0 and math.isclose(r.inv_mean_abs, 0.9) and r.fill_ratio == 0.25
