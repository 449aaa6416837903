"""Settings that contradict the market or the account's tier: found with the numbers, before they
silently misbehave.

Pure: the settings and a mid (ticks, or None where no price is known) in, one ``Finding`` per
contradiction out. Two levels:

- ``error``: the system would misbehave (the maker could never quote, the guard would veto every
  quote, the venue would refuse the guard's budget). ``load_settings`` refuses a profile with one
  (exit 2), at ``market.reference_price`` for the price-dependent checks; the maker logs them as
  errors on its first book (the guard still vetoes what they would break).
- ``warning``: it works, but not as the keys say (every clip raised beyond its limit, every maker
  fill hedged, a spread inside the round-trip fee).

The bot-state packet's own profile shows why: generated at SOL ~ 164, at SOL ~ 140 the 10.5 USD
minimum notional forces 0.075 SOL per order, above ``maker.size_max`` (0.072) and
``hedger.trigger_units`` (0.07), so every maker fill is hedged; its ``hedger.max_clip_units``
(0.04) is below the venue's 0.05 minimum at any price. ``scripts/set_market.py`` proposes
values that are consistent and prints what this check finds in them.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from shared.config import Settings
from shared.markets import round_down, round_up
from shared.pricing import config_size_lots, min_lots_at, min_notional_micro
from shared.tiers import TIERS


@dataclass(frozen=True, slots=True)
class Finding:
    level: Literal["error", "warning"]
    key: str
    text: str

    def __str__(self) -> str:
        return f"{self.key}: {self.text}" if self.level == "warning" else f"error: {self.key}: {self.text}"


def check(settings: Settings, mid_ticks: int | None) -> list[Finding]:
    spec, m, h, g = settings.market_spec, settings.maker, settings.hedger, settings.guard
    tier = TIERS[settings.tier]
    out: list[Finding] = []
    d = spec.size_decimals
    human = spec.size_str
    size = config_size_lots(m, spec)
    # -- the tier ------------------------------------------------------------------------------
    if g.rate.requests_per_min > tier.requests_per_min:
        out.append(Finding("error", "guard.rate.requests_per_min",
                           f"{g.rate.requests_per_min} a minute is above the {tier.name} tier's {tier.requests_per_min}: "
                           "the venue would refuse the excess (429s, a reject storm, a halt)"))
    round_trip = 2 * tier.maker_fee_bps
    if m.engine in ("fixed", "adaptive") and 2 * float(m.spread_bps) <= round_trip:
        out.append(Finding("warning", "maker.spread_bps",
                           f"a spread of {2 * m.spread_bps} bps is inside the {tier.name} tier's round-trip maker fee "
                           f"({round_trip:g} bps): every round trip loses"))
    if abs(float(h.taker_fee_bps) - tier.taker_fee_bps) > 1e-9:
        out.append(Finding("warning", "hedger.taker_fee_bps",
                           f"{h.taker_fee_bps} bps, but the {tier.name} tier's taker fee is {tier.taker_fee_bps:g} bps: "
                           "the hedger's cost estimate is off"))
    if m.engine in ("fixed", "adaptive") and m.spread_bps >= g.max_price_deviation_bps:
        out.append(Finding("error", "guard.max_price_deviation_bps",
                           f"{g.max_price_deviation_bps} bps is inside the maker's half-spread ({m.spread_bps} bps): "
                           "the guard would veto every quote"))
    # -- the market's minimums at a price --------------------------------------------------------
    if mid_ticks is None or mid_ticks <= 0:
        floor = max(size, spec.min_base)
        px = None
    else:
        floor = min_lots_at(spec, mid_ticks, min_notional_micro(m.exchange_min_notional, spec))
        px = spec.price_str(mid_ticks)
    at = f" at {px}" if px else ""
    quote = max(size, floor)
    max_pos = round_down(g.max_position_units, d)
    if quote > max_pos:
        out.append(Finding("error", "guard.max_position_units",
                           f"{human(max_pos)} {spec.symbol} is below one maker order{at} ({human(quote)}): "
                           "the maker could never quote"))
    if px is not None:
        notional = Decimal(quote) / spec.size_scale * Decimal(mid_ticks or 0) / spec.price_scale
        if notional > g.max_inventory_notional:
            out.append(Finding("error", "guard.max_inventory_notional",
                               f"{g.max_inventory_notional} USD is below one maker order{at} ({notional:.2f} USD): "
                               "the maker could never quote"))
    size_max = round_down(m.size_max, d)
    if floor > size_max:
        out.append(Finding("warning", "maker.size_max",
                           f"{human(size_max)} {spec.symbol} is below the venue's minimum order{at} ({human(floor)} "
                           f"{spec.symbol} for maker.exchange_min_notional {m.exchange_min_notional} USD): every quote "
                           f"is raised to {human(floor)}"))
    clip = round_down(h.max_clip_units, d)
    if floor > clip and not h.dry_run:
        out.append(Finding("warning", "hedger.max_clip_units",
                           f"{human(clip)} is below the minimum order{at} ({human(floor)}): every clip is raised to "
                           f"{human(floor)}, beyond its limit"))
    trigger = round_down(h.trigger_units, d)
    if quote > trigger and not h.dry_run:
        out.append(Finding("warning", "hedger.trigger_units",
                           f"{human(trigger)} is below one maker fill{at} ({human(quote)} {spec.symbol}): every fill "
                           "is hedged (mostly as a taker, paying the taker fee and the spread)"))
    return out


def contradictions(settings: Settings, mid_ticks: int | None) -> list[str]:
    """Every finding as one line (errors say so)."""
    return [str(f) for f in check(settings, mid_ticks)]


def reference_mid(settings: Settings) -> int | None:
    """``market.reference_price`` in ticks (None when unset: the price-dependent checks wait for a book)."""
    ref = settings.market.reference_price
    return round_up(ref, settings.market.price_decimals) if ref > 0 else None
