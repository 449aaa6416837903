"""Market metadata and exact conversions between Lighter's decimal strings and integer ticks/lots."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """What a core needs to know about a market; every amount is an integer in venue units.

    ``min_base`` is in lots; ``min_quote_micro`` is the minimum notional in micro-USDC.
    """

    market_id: int
    symbol: str
    price_decimals: int
    size_decimals: int
    min_base: int
    min_quote_micro: int

    @property
    def price_scale(self) -> int:
        return 10**self.price_decimals

    @property
    def size_scale(self) -> int:
        return 10**self.size_decimals

    def notional_micro(self, price: int, size: int) -> int:
        """Exact notional of ``size`` lots at ``price`` ticks, in micro-USDC (floored)."""
        return price * size * 1_000_000 // (self.price_scale * self.size_scale)

    def price_ticks(self, human: Decimal | str) -> int:
        return to_int(human, self.price_decimals)

    def size_lots(self, human: Decimal | str) -> int:
        return to_int(human, self.size_decimals)

    def price_str(self, ticks: int) -> str:
        return to_str(ticks, self.price_decimals)

    def size_str(self, lots: int) -> str:
        return to_str(lots, self.size_decimals)


def to_int(human: Decimal | str, decimals: int) -> int:
    """``"140.125"`` with 3 decimals -> ``140125``; refuses values finer than the market allows."""
    try:
        d = Decimal(human)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {human!r}") from None
    scaled = d.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{human} has more than {decimals} decimals")
    return int(scaled)


def to_str(value: int, decimals: int) -> str:
    """``140125`` with 3 decimals -> ``"140.125"`` (Lighter prints exactly ``decimals`` digits)."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    if decimals == 0:
        return f"{sign}{v}"
    s = str(v).rjust(decimals + 1, "0")
    return f"{sign}{s[:-decimals]}.{s[-decimals:]}"


def round_down(human: Decimal, decimals: int) -> int:
    """Human amount -> integer units, rounded toward zero (for sizes derived from config)."""
    return int(human.scaleb(decimals).to_integral_value(rounding="ROUND_DOWN"))


def round_up(human: Decimal, decimals: int) -> int:
    """Human amount -> integer units, rounded away from zero (for minimums)."""
    return int(human.scaleb(decimals).to_integral_value(rounding="ROUND_UP"))
