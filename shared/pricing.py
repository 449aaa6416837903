"""Exact quote sizes and prices in integer lots/ticks (rationals, never floats).

Notional clamp: the configured size is raised until the order meets both the venue's minimum base
amount and the minimum notional *at the order's own price*. When that minimum exceeds
``size_max`` we still quote the minimum: an order below it would be refused by the exchange, so
the exchange minimum wins over the configured band (the guard's notional limit still applies).
"""
from __future__ import annotations

import functools
from decimal import Decimal
from fractions import Fraction

from shared.config import MakerConfig
from shared.markets import MarketSpec, round_down, round_up

BPS = 10_000


def config_size_lots(cfg: MakerConfig, spec: MarketSpec) -> int:
    """``maker.size`` clamped to [size_min, size_max], in lots rounded down."""
    size = min(max(cfg.size, cfg.size_min), cfg.size_max)
    return round_down(size, spec.size_decimals)


def min_notional_micro(exchange_min_notional: Decimal, spec: MarketSpec) -> int:
    """The stricter of our configured exchange minimum and the venue's ``min_quote_amount``."""
    return max(round_up(exchange_min_notional, 6), spec.min_quote_micro)


@functools.lru_cache(maxsize=4096)   # pure, and asked four times per quote decision at a handful of prices
def min_lots_at(spec: MarketSpec, price: int, min_notional: int) -> int:
    """Smallest size (lots) the venue accepts at ``price``: ``notional_micro(price, lots) >= min_notional``.

    ``notional_micro`` floors, and floor(x) >= N iff x >= N for an integer N, so the bound is an
    exact ceiling division.
    """
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    num = min_notional * spec.price_scale * spec.size_scale
    return max(spec.min_base, -(-num // (price * 1_000_000)))


def clamp_size(base_lots: int, spec: MarketSpec, price: int, min_notional: int) -> int:
    """The notional clamp: ``base_lots`` raised to the venue minimums at ``price`` (never lowered)."""
    return max(base_lots, min_lots_at(spec, price, min_notional))


def mid_of(best_bid: int, best_ask: int) -> Fraction:
    """Exact mid in ticks (may be a half tick)."""
    return Fraction(best_bid + best_ask, 2)


def quote_prices(best_bid: int, best_ask: int, half_spread_bps: Fraction, skew_ticks: Fraction) -> tuple[int, int]:
    """Bid/ask ticks at ``mid * (1 -/+ half_spread)`` shifted down by ``skew_ticks``.

    The bid rounds down and the ask up (never tighter than asked); both are then kept on their
    own side of the book so a post-only quote cannot cross: bid < best ask, ask > best bid.
    Exact in integers (one common denominator; this runs on every book and timer tick):
    ``mid - off - skew = (s·hd·B·kd − s·hn·kd − 2·hd·B·kn) / (2·hd·B·kd)`` with ``s = bid + ask``.
    """
    s = best_bid + best_ask
    hn, hd = half_spread_bps.numerator, half_spread_bps.denominator
    kn, kd = skew_ticks.numerator, skew_ticks.denominator
    den = 2 * hd * BPS * kd
    centre, off, skew = s * hd * BPS * kd, s * hn * kd, 2 * hd * BPS * kn
    bid = (centre - off - skew) // den
    ask = -((skew - centre - off) // den)   # ceil((centre + off - skew) / den)
    bid = max(1, min(bid, best_ask - 1))
    ask = max(ask, best_bid + 1, bid + 1)
    return bid, ask


def moved_less_than(old: int, new: int, best_bid: int, best_ask: int, bps: Fraction) -> bool:
    """``moved_bps(old, new, mid) < bps`` in integers: |new − old|·B·2·d < n·(bid + ask)."""
    return abs(new - old) * BPS * 2 * bps.denominator < bps.numerator * (best_bid + best_ask)


def moved_bps(old: int, new: int, mid: Fraction) -> Fraction:
    """Distance between two prices in bps of ``mid``."""
    return Fraction(abs(new - old) * BPS) / mid


@functools.lru_cache(maxsize=256)
def frac(d: Decimal | int) -> Fraction:
    """Exact rational from a config Decimal (cached: the same few config values on every decision)."""
    return Fraction(d)
