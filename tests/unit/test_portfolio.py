"""shared.portfolio: exact PnL since the baseline, split into realised, unrealised and fees."""
from __future__ import annotations

import random
from fractions import Fraction

from shared.markets import MarketSpec
from shared.portfolio import Portfolio

SOL = MarketSpec(market_id=2, symbol="SOL", price_decimals=3, size_decimals=3, min_base=50, min_quote_micro=10_000_000)
U = 2 * 10**6   # 2 x micro-USDC per USD


def test_a_round_trip_realises_its_edge_and_pays_its_fees() -> None:
    p = Portfolio(SOL)
    p.start(0, 2 * 140_000)
    p.on_fill(False, 140_000, 100, 0, "maker")          # bought 0.1 at 140.000
    p.on_fill(True, 140_050, 100, 1_401, "hedger")      # sold 0.1 at 140.050, fee 0.001401
    assert p.position == 0 and p.basis2 == 0
    assert p.realised2 == 2 * 5_000                     # 0.05 x 0.1 = 0.005 USD
    assert p.pnl2(2 * 150_000) == 2 * (5_000 - 1_401)   # flat: the mark does not matter
    assert p.by_source["maker"].fills == 1 and p.by_source["hedger"].fees == 1_401
    assert p.by_source["hedger"].notional2 == 2 * 14_005_000


def test_the_baseline_position_counts_as_bought_at_the_mid_then() -> None:
    p = Portfolio(SOL)
    p.on_fill(False, 100_000, 100, 0, "maker")          # before the baseline: already in the position below
    assert p.by_source["maker"].fills == 0
    p.start(-200, 2 * 140_000)                          # short 0.2 when first seen
    assert p.pnl2(2 * 140_000) == 0
    assert p.pnl2(2 * 139_000) == 2 * 200_000           # the short gained 1 x 0.2
    p.on_fill(False, 139_000, 300, 0, "hedger")         # bought 0.3: closes the short, opens 0.1 long
    assert p.position == 100
    assert p.realised2 == 2 * 200_000 and p.basis2 == 2 * 13_900_000
    assert p.unrealised2(2 * 139_500) == 2 * 50_000


def test_pnl_is_always_realised_plus_unrealised_minus_fees() -> None:
    rng = random.Random(4)
    p = Portfolio(SOL)
    p.start(rng.randint(-300, 300), 2 * 140_000)
    for _ in range(500):
        px = 140_000 + rng.randint(-2_000, 2_000)
        p.on_fill(rng.random() < 0.5, px, rng.randint(1, 200), rng.randint(-50, 300), rng.choice(("maker", "hedger", None)))
        mid2 = 2 * px + rng.choice((-1, 0, 1))
        assert Fraction(p.pnl2(mid2)) == p.realised2 + p.unrealised2(mid2) - 2 * p.fees
    assert sum(t.fills for t in p.by_source.values()) == 500 and p.by_source["other"].fills > 0


def test_todays_pnl_starts_at_the_first_roll_of_each_utc_day() -> None:
    p = Portfolio(SOL)
    p.start(0, 2 * 140_000)
    p.roll_day(20_000, 2 * 140_000)                      # the baseline's day: today counts from the baseline
    p.on_fill(False, 140_000, 100, 0, "maker")
    assert p.view(2 * 141_000)["pnl_today_usd"] == 0.1
    p.roll_day(20_001, 2 * 141_000)                      # midnight: 0.1 made yesterday
    assert p.view(2 * 141_000)["pnl_today_usd"] == 0.0 and p.view(2 * 142_000)["pnl_today_usd"] == 0.1
    p.roll_day(20_001, 2 * 150_000)                      # the same day again: nothing moves
    assert p.view(2 * 142_000)["pnl_today_usd"] == 0.1


def test_a_fill_stamped_before_the_baseline_position_is_in_it_already() -> None:
    p = Portfolio(SOL)
    p.start(75, 2 * 140_000, as_of_ms=1_000)          # the venue's position at t=1000 includes fills up to then
    p.on_fill(False, 140_000, 75, 0, "maker", ts_ms=900)   # its fill arrives after (another channel)
    assert p.position == 75 and p.by_source["maker"].fills == 0
    p.on_fill(True, 140_010, 75, 0, "hedger", ts_ms=1_200)
    assert p.position == 0 and p.by_source["hedger"].fills == 1
