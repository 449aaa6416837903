"""Start-up check that the configured market decimals match the venue's (pure).

Every price and size the feed publishes is an integer scaled by the configured decimals. If the
venue uses other decimals, every number would be off by a power of ten, so the feed refuses to
publish and stays unhealthy instead.
"""
from __future__ import annotations

from typing import Any

from shared.markets import MarketSpec


def check_decimals(spec: MarketSpec, payload: Any) -> str | None:
    """``None`` if ``GET /api/v1/orderBooks`` agrees with ``spec``, else the problem in one sentence."""
    if not isinstance(payload, dict) or not isinstance(payload.get("order_books"), list):
        return "orderBooks response has no 'order_books' list"
    for row in payload["order_books"]:
        if not isinstance(row, dict) or row.get("market_id") != spec.market_id:
            continue
        venue = (row.get("supported_price_decimals"), row.get("supported_size_decimals"))
        ours = (spec.price_decimals, spec.size_decimals)
        if venue != ours:
            return (f"market {spec.market_id} ({spec.symbol}): venue has price/size decimals {venue[0]}/{venue[1]}, "
                    f"config has {ours[0]}/{ours[1]}; fix market.price_decimals/size_decimals in the profile")
        return None
    return f"market {spec.market_id} ({spec.symbol}) is not listed by the venue's orderBooks"
