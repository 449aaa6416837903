"""Trading fees in micro-USDC, rounded exactly as the venue's matching engine rounds them.

``services/venue/engine.py`` (``Engine._fill``) charges, per fill and per side::

    notional = Market.notional(price, lots)        # micro-USDC, floored when the decimals need it
    fee      = notional * rate // FEE_SCALE        # rate in 1e-6 of notional; floored (toward -inf)

so a fee is ``floor(floor(price * size * 1e6) * rate / 1e6)`` micro-USDC. The functions here are that
computation, once, as pure integer arithmetic: the venue's engine charges ``fee_of_notional``, the feed's
and the gateway's trade normalisation (``shared.lighter_wire.fee_micro``), ``scripts/fetch_trades.py`` and
the metrics call ``fee_micro``, so all of them agree to the micro-USDC.
Totals are sums of these per-fill integers, never a rate times a summed notional.
"""
from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

FEE_SCALE = 1_000_000   # fee rates are in 1e-6 of notional (Lighter's ``maker_fee``/``taker_fee`` ints)
USDC_DECIMALS = 6       # collateral and fees are micro-USDC


def notional_micro(price: int, size: int, price_decimals: int, size_decimals: int) -> int:
    """Notional of ``size`` lots at ``price`` ticks in micro-USDC, floored (the venue's ``Market.notional``)."""
    exp = USDC_DECIMALS - price_decimals - size_decimals
    v = price * size
    return v * 10**exp if exp >= 0 else v // 10 ** (-exp)


def fee_of_notional(notional: int, rate: int) -> int:
    """The venue's fee on a notional (micro-USDC) at ``rate`` (1e-6): floored, so a rebate rounds away from 0."""
    return notional * rate // FEE_SCALE


def fee_micro(price: int, size: int, rate: int, price_decimals: int, size_decimals: int) -> int:
    """Fee of one fill in micro-USDC (positive = paid, negative = rebate), exactly the venue's rounding."""
    return fee_of_notional(notional_micro(price, size, price_decimals, size_decimals), rate)


def fee_micro_decimal(price: Decimal | str, size: Decimal | str, rate: int) -> int:
    """``fee_micro`` from human decimal strings (``"140.125"``, ``"0.050"``), for callers without a MarketSpec.

    ``price * size * 1e6`` is exact in ``Decimal`` (the product of two short decimals), then floored to
    whole micro-USDC like ``notional_micro``: the same integer for any decimals the strings are written in.
    """
    notional = (Decimal(price) * Decimal(size)).scaleb(USDC_DECIMALS)
    return fee_of_notional(int(notional.to_integral_value(rounding=ROUND_FLOOR)), rate)


def micro_to_decimal(micro: int) -> Decimal:
    """Exact USD ``Decimal`` of an integer micro-USDC amount (6 decimals)."""
    return Decimal(micro).scaleb(-USDC_DECIMALS)
