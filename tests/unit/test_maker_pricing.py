"""Maker sizing (notional clamp) and quote prices: exact integer ticks/lots, the user's SOL numbers."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from shared.config import MakerConfig, Settings
from shared.markets import MarketSpec
from shared.pricing import (clamp_size, config_size_lots, min_lots_at, min_notional_micro, moved_bps,
                                    quote_prices)

SPEC = Settings().market_spec  # SOL: price 3 dp, size 3 dp, min base 0.050, min quote 10
MIN_NOTIONAL = min_notional_micro(Decimal("10.5"), SPEC)


def test_spec_and_configured_size() -> None:
    assert (SPEC.price_decimals, SPEC.size_decimals, SPEC.min_base, SPEC.min_quote_micro) == (3, 3, 50, 10_000_000)
    assert MIN_NOTIONAL == 10_500_000  # 10.5 USDC beats the venue's 10
    assert config_size_lots(MakerConfig(), SPEC) == 64
    assert config_size_lots(MakerConfig(size=Decimal("0.0649")), SPEC) == 64  # rounded down, never up


def test_user_example_size_0064_becomes_0075_at_140() -> None:
    assert clamp_size(64, SPEC, SPEC.price_ticks("140.000"), MIN_NOTIONAL) == 75
    assert SPEC.notional_micro(140_000, 75) == 10_500_000
    assert SPEC.notional_micro(140_000, 74) < 10_500_000


def test_clamp_is_computed_at_the_quote_price() -> None:
    # a bid at 139.860 needs 76 lots: 75 x 139.860 = 10.4895 < 10.5
    assert clamp_size(64, SPEC, 139_860, MIN_NOTIONAL) == 76
    assert SPEC.notional_micro(139_860, 75) == 10_489_500
    assert clamp_size(64, SPEC, 140_140, MIN_NOTIONAL) == 75


def test_size_not_raised_when_already_above_minimums_and_min_base_applies() -> None:
    assert clamp_size(64, SPEC, 200_000, MIN_NOTIONAL) == 64          # 0.0525 needed, 0.064 kept
    assert min_lots_at(SPEC, 1_000_000, MIN_NOTIONAL) == 50           # notional needs 11 lots, min base 50
    assert clamp_size(40, SPEC, 1_000_000, MIN_NOTIONAL) == 50


def test_exchange_minimum_wins_over_size_max() -> None:
    size = clamp_size(64, SPEC, 100_000, MIN_NOTIONAL)  # 10.5 / 100 = 0.105 > size_max 0.072
    assert size == 105 and size > config_size_lots(MakerConfig(), SPEC)


@pytest.mark.parametrize("price", [1, 7, 999, 33_333, 99_999, 139_861, 140_001, 5_000_000, 123_456_789])
def test_min_lots_is_the_exact_minimum(price: int) -> None:
    lots = min_lots_at(SPEC, price, MIN_NOTIONAL)
    assert lots >= SPEC.min_base and SPEC.notional_micro(price, lots) >= MIN_NOTIONAL
    if lots > SPEC.min_base:
        assert SPEC.notional_micro(price, lots - 1) < MIN_NOTIONAL


def test_other_decimals() -> None:
    eth = MarketSpec(0, "ETH", 2, 4, 50, 10_000_000)
    assert min_lots_at(eth, 300_000, 10_500_000) == 50   # 10.5 / 3000 = 0.0035 ETH, below min base 0.0050
    assert min_lots_at(eth, 100_000, 10_500_000) == 105  # 10.5 / 1000 = 0.0105 ETH
    with pytest.raises(ValueError):
        min_lots_at(eth, 0, 10_500_000)


def test_quote_prices_around_mid() -> None:
    assert quote_prices(139_990, 140_010, Fraction(10), Fraction(0)) == (139_860, 140_140)
    # half-tick mid 139.9925: bid rounds down, ask rounds up
    assert quote_prices(139_990, 139_995, Fraction(10), Fraction(0)) == (139_852, 140_133)


def test_quote_prices_never_cross_the_bbo() -> None:
    bid, ask = quote_prices(100_000, 100_001, Fraction(0), Fraction(0))
    assert bid < 100_001 and ask > 100_000 and bid < ask
    # a large upward shift would put the bid through the ask: clamped to one tick below it
    bid, ask = quote_prices(139_990, 140_010, Fraction(10), Fraction(-500))
    assert bid == 140_009 and ask > 139_990
    bid, ask = quote_prices(139_990, 140_010, Fraction(10), Fraction(500))
    assert ask == 139_991 and bid < 140_010


def test_adaptive_skew_has_its_own_key_per_unit_capped_at_the_limit() -> None:
    """maker.skew.price_bps_per_unit, not the guard's limit, sets the skew; the guard's limit caps it."""
    from services.maker.engines import Market, adaptive
    cfg = MakerConfig(spread_bps=3, skew={"price_bps_per_unit": 20}, volatility={"enabled": False})

    def quote(q_units: float) -> tuple[Fraction, Fraction]:
        m = Market(mid_usd=140.0, vol_1m_bps=0.0, sigma=0.0, A=1.0, k=1.0, q=0.0, q_units=q_units, max_units=0.2,
                   max_orders=3.0, elapsed_s=0.0, trending=False)
        qt = adaptive(cfg, m)
        return qt.bid_bps, qt.ask_bps

    assert quote(0.0) == (3, 3)
    assert quote(0.1) == (5, 1)            # 0.1 unit long: 2 bps down on both sides
    assert quote(-0.1) == (1, 5)
    assert quote(0.5) == quote(0.2) == (7, -1)   # capped at the guard's 0.2
    unskewed = MakerConfig(spread_bps=3, skew={"price_bps_per_unit": 0}, volatility={"enabled": False})
    m = Market(140.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.1, 0.2, 3.0, 0.0, False)
    assert adaptive(unskewed, m).bid_bps == adaptive(unskewed, m).ask_bps == 3


def test_moved_bps() -> None:
    assert moved_bps(140_000, 140_042, Fraction(140_000)) == 3
    assert moved_bps(140_042, 140_000, Fraction(140_000)) == 3


def test_integer_quote_prices_and_requote_test_equal_the_rational_definitions() -> None:
    """The hot-path integer forms are the exact rational ones (floor/ceil of mid ∓ off − skew; moved < bps)."""
    import math
    import random

    from shared.pricing import moved_less_than, quote_prices

    rng = random.Random(11)
    for _ in range(5000):
        bid = rng.randrange(1, 2_000_000)
        ask = bid + rng.randrange(1, 500)
        hs = Fraction(rng.randrange(0, 5000), rng.choice((1, 2, 3, 7, 100)))
        skew = Fraction(rng.randrange(-3000, 3000), rng.choice((1, 3, 8, 1000)))
        mid = Fraction(bid + ask, 2)
        off = mid * hs / 10_000
        want_bid = max(1, min(math.floor(mid - off - skew), ask - 1))
        want_ask = max(math.ceil(mid + off - skew), bid + 1, want_bid + 1)
        assert quote_prices(bid, ask, hs, skew) == (want_bid, want_ask)
        old, new = rng.randrange(1, 2_000_000), rng.randrange(1, 2_000_000)
        bps = Fraction(rng.randrange(0, 200), rng.choice((1, 2, 10)))
        assert moved_less_than(old, new, bid, ask, bps) == (moved_bps(old, new, mid) < bps)
