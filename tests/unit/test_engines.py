"""Quoting engines against their papers' closed forms, and the shared rules every engine obeys."""
from __future__ import annotations

import math

import pytest

from shared.config import MakerConfig
from services.maker.engines import Market, avellaneda_stoikov, fixed, glft

MID = 100.0


def market(**kw: float) -> Market:
    base = dict(mid_usd=MID, vol_1m_bps=10.0, sigma=2.0, A=140.0, k=1.5, q=0.0, q_units=0.0, max_units=1000.0,
                max_orders=1000.0, elapsed_s=0.0, trending=False)
    base.update(kw)
    return Market(**base)  # type: ignore[arg-type]


def usd(bps: object) -> float:
    return float(bps) * MID / 1e4  # type: ignore[arg-type]


# Gueant, Lehalle & Fernandez-Tapia (2013), section 6's example: sigma = 0.3 tick/sqrt(s), A = 0.9 /s,
# k = 0.3 /tick, gamma = 0.01 /tick (one tick = one price unit here).
GLFT_PUBLISHED = {"sigma": 0.3, "A": 0.9, "k": 0.3, "gamma": 0.01}


def glft_closed_form(q: int, sigma: float, A: float, k: float, gamma: float) -> tuple[float, float]:
    """delta_b(q), delta_a(q) ~ (1/g) ln(1 + g/k) +/- (2q +/- 1)/2 * sqrt(s^2 g / (2kA) * (1 + g/k)^(1 + k/g))."""
    c = math.sqrt(sigma**2 * gamma / (2 * k * A) * (1 + gamma / k) ** (1 + k / gamma))
    base = math.log(1 + gamma / k) / gamma
    return base + (2 * q + 1) / 2 * c, base - (2 * q - 1) / 2 * c


@pytest.mark.parametrize("q", [-5, -2, -1, 0, 1, 2, 5])
def test_glft_matches_the_closed_form_at_the_published_parameters(q: int) -> None:
    p = GLFT_PUBLISHED
    cfg = MakerConfig(engine="glft", glft={"gamma": p["gamma"]})
    quote = glft(cfg, market(sigma=p["sigma"], A=p["A"], k=p["k"], q=float(q)))
    bid, ask = glft_closed_form(q, p["sigma"], p["A"], p["k"], p["gamma"])
    assert usd(quote.bid_bps) == pytest.approx(bid, abs=1e-6)
    assert usd(quote.ask_bps) == pytest.approx(ask, abs=1e-6)


def test_glft_half_spread_and_skew_values() -> None:
    """The published example's numbers, written out: half-spread ~3.41 ticks + 0.5 c, skew c per unit."""
    p = GLFT_PUBLISHED
    cfg = MakerConfig(engine="glft", glft={"gamma": p["gamma"]})
    q0, q1 = (glft(cfg, market(sigma=p["sigma"], A=p["A"], k=p["k"], q=float(q))) for q in (0, 1))
    c = math.sqrt(0.09 * 0.01 / (2 * 0.3 * 0.9) * (1 + 0.01 / 0.3) ** (1 + 30))
    assert usd(q0.half_spread_bps) == pytest.approx(100 * math.log(1 + 1 / 30) + c / 2, abs=1e-6)
    assert usd(q1.bid_bps - q0.bid_bps) == pytest.approx(c, abs=1e-6)          # skew: c per unit of inventory
    assert usd(q0.ask_bps - q1.ask_bps) == pytest.approx(c, abs=1e-6)
    assert usd(q1.half_spread_bps) == pytest.approx(usd(q0.half_spread_bps), abs=1e-6)   # the spread ignores q


def test_avellaneda_stoikov_finite_horizon_reservation_price_and_spread() -> None:
    """r = s - q g s^2 (T - t); spread = g s^2 (T - t) + (2/g) ln(1 + g/k) (the paper's eq. 29-30)."""
    cfg = MakerConfig(engine="avellaneda_stoikov", avellaneda_stoikov={"gamma": 0.1, "k": 1.5, "sigma": 2, "horizon_s": 1})
    for q, t in ((0, 0.0), (3, 0.25), (-2, 0.5), (1, 1.0), (1, 2.0)):
        quote = avellaneda_stoikov(cfg, market(q=float(q), elapsed_s=t))
        tau = max(1 - t, 0.0)
        spread = 0.1 * 4 * tau + 2 / 0.1 * math.log(1 + 0.1 / 1.5)
        r = MID - q * 0.1 * 4 * tau
        bid, ask = MID - usd(quote.bid_bps), MID + usd(quote.ask_bps)
        assert ask - bid == pytest.approx(spread, abs=1e-6)
        assert (ask + bid) / 2 == pytest.approx(r, abs=1e-6)


def test_avellaneda_stoikov_symmetric_benchmark_is_the_average_spread_around_the_mid() -> None:
    cfg = MakerConfig(engine="avellaneda_stoikov",
                      avellaneda_stoikov={"gamma": 0.1, "k": 1.5, "sigma": 2, "horizon_s": 1, "symmetric": True})
    for q, t in ((0, 0.0), (5, 0.3), (-4, 0.9)):
        quote = avellaneda_stoikov(cfg, market(q=float(q), elapsed_s=t))
        assert quote.bid_bps == quote.ask_bps
        assert usd(quote.bid_bps + quote.ask_bps) == pytest.approx(0.1 * 4 / 2 + 20 * math.log(1 + 0.1 / 1.5), abs=1e-6)


def test_avellaneda_stoikov_infinite_horizon_leans_against_inventory() -> None:
    cfg = MakerConfig(engine="avellaneda_stoikov", avellaneda_stoikov={"gamma": 0.1, "k": 1.5, "sigma": 2, "q_max": 10})
    flat = avellaneda_stoikov(cfg, market(q=0.0))
    assert flat.bid_bps > 0 and abs(flat.bid_bps - flat.ask_bps) < flat.ask_bps / 100   # near-symmetric when flat
    long = avellaneda_stoikov(cfg, market(q=3.0))
    short = avellaneda_stoikov(cfg, market(q=-3.0))
    assert long.bid_bps > flat.bid_bps and long.ask_bps < flat.ask_bps      # long: buy less eagerly, sell more
    assert short.bid_bps < flat.bid_bps and short.ask_bps > flat.ask_bps
    # the paper's stationary prices: r_a - s = (1/g) ln(1 + (1 - 2q) g^2 s^2 / (2w - g^2 q^2 s^2)), w = g^2 s^2 (q_max+1)^2 / 2
    w = 0.01 * 4 * 121 / 2
    r_a = math.log(1 + (1 - 6) * 0.01 * 4 / (2 * w - 0.01 * 9 * 4)) / 0.1
    r_b = math.log(1 + (-1 - 6) * 0.01 * 4 / (2 * w - 0.01 * 9 * 4)) / 0.1
    assert usd(long.ask_bps) == pytest.approx(r_a + math.log(1 + 0.1 / 1.5) / 0.1, abs=1e-6)
    assert usd(long.bid_bps) == pytest.approx(-r_b + math.log(1 + 0.1 / 1.5) / 0.1, abs=1e-6)
    at_bound = avellaneda_stoikov(cfg, market(q=10.0))
    assert at_bound.bid_bps is None and at_bound.ask_bps is not None      # at q_max: no more buying
    assert avellaneda_stoikov(cfg, market(q=50.0)) == at_bound
    assert avellaneda_stoikov(cfg, market(q=-10.0)).ask_bps > short.ask_bps   # short: selling ever less eagerly


def test_fixed_is_a_plain_spread_whatever_the_market() -> None:
    cfg = MakerConfig(engine="fixed", spread_bps=2)
    for m in (market(), market(q=7.0, vol_1m_bps=80.0, trending=True)):
        q = fixed(cfg, m)
        assert q.bid_bps == q.ask_bps == 2
