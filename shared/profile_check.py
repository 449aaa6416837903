"""Settings that contradict the market: found with the numbers, before they silently misbehave.

Pure: the settings and a mid (ticks) in, one line per contradiction out. The maker runs it on its
first book (the minimum order size depends on the price) and logs each line as a warning; the lab
prints them with a backtest. The bot-state packet's own profile trips three of them at SOL ≈ 140:
the 10.5 USD minimum notional forces 0.075 SOL per order, above ``maker.size_max`` (0.072), above
``hedger.max_clip_units`` (0.04) and above ``hedger.trigger_units`` (0.07), so every maker fill is
hedged, mostly as a taker.
"""
from __future__ import annotations

from shared.config import Settings
from shared.markets import round_down
from shared.pricing import config_size_lots, min_lots_at, min_notional_micro


def contradictions(settings: Settings, mid_ticks: int) -> list[str]:
    spec, m, h = settings.market_spec, settings.maker, settings.hedger
    if mid_ticks <= 0:
        return []
    d = spec.size_decimals
    floor = min_lots_at(spec, mid_ticks, min_notional_micro(m.exchange_min_notional, spec))
    size = config_size_lots(m, spec)
    human = spec.size_str
    px = spec.price_str(mid_ticks)
    out: list[str] = []
    size_max = round_down(m.size_max, d)
    if floor > size_max:
        out.append(f"maker.size_max {human(size_max)} {spec.symbol} is below the venue's minimum order at {px} "
                   f"({human(floor)} {spec.symbol} for maker.exchange_min_notional {m.exchange_min_notional} USD): "
                   f"every quote is raised to {human(floor)}")
    quote = max(size, floor)
    clip = round_down(h.max_clip_units, d)
    if floor > clip:
        out.append(f"hedger.max_clip_units {human(clip)} is below the minimum order at {px} ({human(floor)}): every "
                   f"clip is raised to {human(floor)}, beyond its limit")
    trigger = round_down(h.trigger_units, d)
    if quote > trigger and not h.dry_run:
        out.append(f"one maker fill ({human(quote)} {spec.symbol}) exceeds hedger.trigger_units {human(trigger)}: "
                   f"every fill is hedged (mostly as a taker, paying the taker fee and the spread)")
    return out
