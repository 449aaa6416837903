"""Quoting engines (pure): where the bid and the ask go, as distances from the mid.

Every engine answers one question: given the market (mid, volatility, trade intensity), our
inventory and the time, how far below the mid is the bid and how far above it the ask. The maker
core does the rest for all of them alike: integer prices (``shared.pricing.quote_prices``), sizes
and the minimum-notional clamp, the guard's trading states, pause/trend modes and the requote
discipline. So a comparison between engines compares quoting only.

- ``fixed``: ``spread_bps`` either side, nothing else (the baseline of every comparison).
- ``adaptive``: the seed's engine: ``spread_bps`` + ``volatility.spread_multiplier`` x the
  1-minute sigma, x ``trend.widen_factor`` in a trend, shifted by ``skew.price_bps_per_unit``
  per unit of inventory (capped at the guard's position limit).
- ``avellaneda_stoikov``: Avellaneda & Stoikov (2008). Finite horizon (``horizon_s`` > 0, from
  the first book): reservation price r = s - q*gamma*sigma^2*(T-t), total spread
  gamma*sigma^2*(T-t) + (2/gamma)*ln(1 + gamma/k). Infinite horizon (``horizon_s`` = 0): the
  paper's stationary reservation prices with omega = gamma^2*sigma^2*(q_max+1)^2/2, each side
  plus (1/gamma)*ln(1 + gamma/k). ``symmetric``: the same spread centred on the mid.
- ``glft``: the asymptotic closed form of Gueant, Lehalle & Fernandez-Tapia (2013):
  c1 = ln(1 + xi/k)/xi, c2 = sqrt(gamma/(2*A*k) * (1 + xi/k)^(k/xi + 1)); half-spread
  c1 + sigma*c2/2, skew sigma*c2 per order of inventory (bid at half + skew*q, ask at half - skew*q).

Units of the model engines (as in the papers): prices in quote currency (USD), time in seconds,
sigma in USD per sqrt(second), k per USD of depth, A arrivals per second per side, gamma per USD,
and q the inventory in orders (position / order size), so each fill moves q by one. Floats are
used for the model arithmetic; the distances leave as exact ``Fraction`` bps rounded to 1e-6 bps,
and only ``quote_prices`` turns them into integer ticks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from shared.config import MakerConfig

BPS = 10_000
RESOLUTION = 10**6   # distances are rounded to 1e-6 bps before they become exact


@dataclass(frozen=True, slots=True)
class Market:
    """What an engine sees. ``sigma`` (USD/sqrt(s)), ``A`` and ``k`` are the configured values or,
    where the config says 0, the live estimates (``shared.calibration``)."""

    mid_usd: float
    vol_1m_bps: float        # the 1-minute sigma (the volatility signal), bps
    sigma: float             # USD per sqrt(s)
    A: float                 # per second per side
    k: float                 # per USD
    q: float                 # inventory in orders (position / order size)
    q_units: float           # inventory in base units
    max_units: float         # the guard's position limit, base units
    max_orders: float        # the same limit in orders
    elapsed_s: float         # since the first book
    trending: bool


@dataclass(frozen=True, slots=True)
class Quote:
    """Distances from the mid, bps (positive = away from the mid on the quote's own side); None:
    that side is not quoted (infinite-horizon A-S at its inventory bound)."""

    bid_bps: Fraction | None
    ask_bps: Fraction | None

    def _both(self) -> tuple[Fraction, Fraction]:
        b, a = self.bid_bps, self.ask_bps
        assert b is not None or a is not None
        return (b if b is not None else a), (a if a is not None else b)  # type: ignore[return-value]

    @property
    def half_spread_bps(self) -> Fraction:
        b, a = self._both()
        return (b + a) / 2

    def skew_ticks(self, mid_ticks: Fraction) -> Fraction:
        """``shared.pricing.quote_prices``'s skew: how far both quotes move down from symmetric."""
        b, a = self._both()
        return mid_ticks * (b - a) / (2 * BPS)

    def quotes(self, is_ask: bool) -> bool:
        return (self.ask_bps if is_ask else self.bid_bps) is not None


def exact(bps: float) -> Fraction:
    return Fraction(round(bps * RESOLUTION), RESOLUTION)


def usd_to_bps(usd: float, mid_usd: float) -> float:
    return usd / mid_usd * BPS


def fixed(cfg: MakerConfig, m: Market) -> Quote:
    hs = Fraction(cfg.spread_bps)
    return Quote(hs, hs)


def adaptive(cfg: MakerConfig, m: Market) -> Quote:
    v, t = cfg.volatility, cfg.trend
    hs = Fraction(cfg.spread_bps)
    if v.enabled and v.spread_multiplier:
        hs += Fraction(v.spread_multiplier) * exact(m.vol_1m_bps)
    if m.trending:
        hs *= Fraction(t.widen_factor)
    q = max(-m.max_units, min(m.q_units, m.max_units)) if m.max_units > 0 else m.q_units
    skew = Fraction(cfg.skew.price_bps_per_unit) * exact(q)   # bps both quotes move down
    return Quote(hs + skew, hs - skew)


def avellaneda_stoikov(cfg: MakerConfig, m: Market) -> Quote:
    p = cfg.avellaneda_stoikov
    g, sigma, k = float(p.gamma), float(p.sigma) or m.sigma, float(p.k) or m.k
    s2 = sigma * sigma
    base = math.log1p(g / k) / g              # (1/gamma) ln(1 + gamma/k): each side's part of the spread
    horizon = float(p.horizon_s)
    if horizon > 0:
        tau = max(horizon - m.elapsed_s, 0.0)
        shift = m.q * g * s2 * tau             # s - r
        half = g * s2 * tau / 2 + base
        if p.symmetric:   # the paper's benchmark: the inventory strategy's time-average spread, around the mid
            shift, half = 0.0, g * s2 * horizon / 4 + base
        bid, ask = half + shift, half - shift
    else:
        q_max = float(p.q_max) or max(m.max_orders, 1.0)
        q = max(-q_max, min(m.q, q_max))
        if s2 > 0:
            # omega = gamma^2 sigma^2 (q_max+1)^2 / 2, so 2*omega - gamma^2 q^2 sigma^2 = gamma^2 sigma^2 ((q_max+1)^2 - q^2)
            den = (q_max + 1) ** 2 - q * q
            x_a, x_b = (1 - 2 * q) / den, (-1 - 2 * q) / den
            if x_b <= -1 or x_a <= -1:   # at the bound: the side that would add has no finite price
                side = _as_quote(m, None if x_b <= -1 else -math.log1p(x_b) / g + base,
                                 None if x_a <= -1 else math.log1p(x_a) / g + base)
                return side
            r_a, r_b = math.log1p(x_a) / g, math.log1p(x_b) / g
        else:
            r_a = r_b = 0.0
        ask, bid = r_a + base, -r_b + base
        if p.symmetric:
            ask = bid = (ask + bid) / 2
    return _as_quote(m, bid, ask)


def _as_quote(m: Market, bid: float | None, ask: float | None) -> Quote:
    return Quote(None if bid is None else exact(usd_to_bps(bid, m.mid_usd)),
                 None if ask is None else exact(usd_to_bps(ask, m.mid_usd)))


def glft_terms(gamma: float, xi: float, A: float, k: float, sigma: float) -> tuple[float, float]:
    """(half-spread, skew per order of inventory), USD: Gueant-Lehalle-Fernandez-Tapia's closed form."""
    c1 = math.log1p(xi / k) / xi
    c2 = math.sqrt(gamma / (2 * A * k) * (1 + xi / k) ** (k / xi + 1))
    return c1 + sigma * c2 / 2, sigma * c2


def glft(cfg: MakerConfig, m: Market) -> Quote:
    p = cfg.glft
    g = float(p.gamma)
    half, skew = glft_terms(g, float(p.xi) or g, float(p.A) or m.A, float(p.k) or m.k, float(p.sigma) or m.sigma)
    return _as_quote(m, half + skew * m.q, half - skew * m.q)


ENGINES = {"fixed": fixed, "adaptive": adaptive, "avellaneda_stoikov": avellaneda_stoikov, "glft": glft}
