"""Pure pre-trade rules of the guard: self-trade, worst-case exposure, exact notional.

Everything is integer ticks, lots and micro-USDC. A mid can fall on half a tick, so prices here
are passed *doubled* (``px2`` = 2 x price in ticks): the notional stays exact without floats.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from shared.markets import MarketSpec, to_str


@dataclass(frozen=True, slots=True)
class OwnOrder:
    """One of our orders that is (or is about to be) on the book."""

    client_order_index: int
    is_ask: bool
    price: int  # ticks
    size: int   # lots still open


def self_trade_conflict(is_ask: bool, price: int, own: Iterable[OwnOrder]) -> OwnOrder | None:
    """The first of our orders on the other side that an order at ``price`` would trade against.

    A bid crosses our ask when ``bid >= ask``; an ask crosses our bid when ``ask <= bid``.
    """
    for o in own:
        if o.is_ask == is_ask:
            continue
        if (not is_ask and price >= o.price) or (is_ask and price <= o.price):
            return o
    return None


def would_self_trade(is_ask: bool, price: int, own: Iterable[OwnOrder]) -> bool:
    """True when an order at ``price`` on side ``is_ask`` would cross one of ``own``."""
    return self_trade_conflict(is_ask, price, own) is not None


def worst_long(position: int, bids_open: int, bid: int = 0) -> int:
    """Position if every open bid (resting + in flight) and this bid fill, in lots."""
    return position + bids_open + bid


def worst_short(position: int, asks_open: int, ask: int = 0) -> int:
    """Position if every open ask (resting + in flight) and this ask fill, in lots (negative = short)."""
    return position - asks_open - ask


def notional2_micro(spec: MarketSpec, px2: int, lots: int) -> int:
    """Twice the notional of ``lots`` at the doubled price ``px2``, in micro-USDC (floored).

    Compare it with ``2 * limit_micro``: exact to half a micro-USDC with an integer half-tick mid.
    """
    return spec.notional_micro(px2, abs(lots))


def human(value: int, decimals: int) -> str:
    """Integer units -> shortest decimal string: ``250`` lots at 3 dp -> ``"0.25"``."""
    s = to_str(value, decimals)
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def human_dec(value: Decimal) -> str:
    """A config Decimal in the same short form (``Decimal("35.0")`` -> ``"35"``)."""
    s = format(value, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def human_px2(px2: int, decimals: int) -> str:
    """A doubled price as a human string (``350001`` at 3 dp -> ``"175.0005"``)."""
    return human(px2 * 5, decimals + 1)
