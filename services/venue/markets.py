"""Market definitions and exact integer <-> decimal-string conversion.

Prices are integer ticks (10^-price_decimals), sizes integer lots (10^-size_decimals) and
money is integer micro-USDC (10^-6). Nothing on the order path uses floats; the wire prints
every number with exactly the market's decimals, as Lighter does (the SDK's get_best_price
strips the "." to recover the integer).
"""
from __future__ import annotations

from dataclasses import dataclass, field

USDC_DECIMALS = 6
USDC_SCALE = 10**USDC_DECIMALS
USDC_ASSET_ID = 3


def fmt_fixed(value: int, decimals: int) -> str:
    """Integer `value` scaled by 10^-decimals -> decimal string with exactly `decimals` digits."""
    if decimals == 0:
        return str(value)
    neg = value < 0
    s = str(-value if neg else value).rjust(decimals + 1, "0")
    out = f"{s[:-decimals]}.{s[-decimals:]}"
    return "-" + out if neg else out


def parse_fixed(text: str, decimals: int) -> int:
    """Decimal string -> integer scaled by 10^decimals; raises ValueError on excess precision."""
    text = text.strip()
    neg = text.startswith("-")
    if neg or text.startswith("+"):
        text = text[1:]
    whole, _, frac = text.partition(".")
    if not (whole or frac) or not (whole + frac).isdigit():
        raise ValueError(f"not a decimal: {text!r}")
    frac = frac.rstrip("0")
    if len(frac) > decimals:
        raise ValueError(f"too many decimals in {text!r} (max {decimals})")
    value = int(whole or "0") * 10**decimals + int((frac or "0").ljust(decimals, "0")[:decimals] or "0")
    return -value if neg else value


@dataclass(slots=True)
class Market:
    """Static market configuration (defaults follow Lighter mainnet rows)."""

    market_id: int
    symbol: str
    price_decimals: int
    size_decimals: int
    min_base: int  # lots
    min_quote: int  # micro-USDC notional
    start_mid: int  # ticks
    default_imf: int = 500  # initial margin fraction, 1e-4 units (500 = 5% = 20x)
    min_imf: int = 200
    maintenance_mf: int = 120
    closeout_mf: int = 80
    order_quote_limit: int = 281_474_976_710_655  # micro-USDC
    created_at: str = "1737098461100"
    # quote conversion: micro-USDC = ticks * lots * 10^quote_exp (exp may be negative)
    quote_exp: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.quote_exp = USDC_DECIMALS - self.price_decimals - self.size_decimals

    def notional(self, price: int, lots: int) -> int:
        """Exact micro-USDC notional of `lots` at `price` ticks (floored when exp < 0)."""
        v = price * lots
        return v * 10**self.quote_exp if self.quote_exp >= 0 else v // 10 ** (-self.quote_exp)

    def fmt_price(self, ticks: int) -> str:
        return fmt_fixed(ticks, self.price_decimals)

    def fmt_size(self, lots: int) -> str:
        return fmt_fixed(lots, self.size_decimals)

    def price_float(self, ticks: int) -> float:
        """Only for model fields typed float by the SDK (daily stats); never on the order path."""
        return ticks / 10**self.price_decimals

    def size_float(self, lots: int) -> float:
        return lots / 10**self.size_decimals


def fmt_usdc(micro: int) -> str:
    return fmt_fixed(micro, USDC_DECIMALS)


def default_markets() -> dict[int, Market]:
    """ETH=0, BTC=1, SOL=2 with Lighter's decimals and minimums (docs/venue-contract.md)."""
    return {
        0: Market(0, "ETH", 2, 4, min_base=50, min_quote=10 * USDC_SCALE, start_mid=300_000,
                  default_imf=500, min_imf=200, maintenance_mf=120, closeout_mf=80),
        1: Market(1, "BTC", 1, 5, min_base=20, min_quote=10 * USDC_SCALE, start_mid=900_000,
                  default_imf=500, min_imf=200, maintenance_mf=120, closeout_mf=80,
                  created_at="1737098461200"),
        2: Market(2, "SOL", 3, 3, min_base=50, min_quote=10 * USDC_SCALE, start_mid=140_000,
                  default_imf=1000, min_imf=400, maintenance_mf=240, closeout_mf=160,
                  created_at="1737098461300"),
    }
