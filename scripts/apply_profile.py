#!/usr/bin/env python3
"""Check a market profile against the config and the venue, save the venue's metadata, activate it.

    python scripts/apply_profile.py --profile profiles/market_<id>.yaml --config config.yaml \\
        --metadata-out data/instruments/market_<id>.json

1. The profile merged with the config must load through ``shared.config.load_settings`` exactly as
   the services load it (an error names file, key and problem; exit 2).
2. The venue's ``/api/v1/orderBookDetails`` row for the profile's market is written to the metadata
   file (``<id>`` in the path becomes the market id; ``<id>`` in ``--profile`` means the market of
   the config's currently active profile, so the runbook's literal command re-applies it).
3. The profile's symbol, decimals and minimums must equal the venue's, and its sizes must clear
   the venue's minimums (exit 2 listing every mismatch, nothing activated).
4. ``config.yaml``'s ``profile:`` line is pointed at the profile (``--no-activate`` skips this).
"""
from __future__ import annotations

import json
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python scripts/x.py` puts only scripts/ on the path
from scripts import _venv  # noqa: E402,F401 - first: re-runs under .venv when the packages are missing

from scripts._common import (
    ID_PLACEHOLDER,
    MarketInfo,
    ScriptError,
    UsageError,
    activate_profile,
    default_base_url,
    fetch_markets,
    fmt_dec,
    parser,
    rest,
    run,
    substitute_id,
)
from shared.config import ConfigError, Settings, load_settings

PROG = "apply_profile.py"


def check_profile(s: Settings, m: MarketInfo) -> tuple[list[str], list[str]]:
    """(problems, notes): problems block activation; notes depend on the current price only."""
    problems: list[str] = []
    notes: list[str] = []
    mk, mc = s.maker, s.market
    if mc.symbol.upper() != m.symbol.upper():
        problems.append(f"market.symbol is {mc.symbol}, venue market {m.market_id} is {m.symbol}")
    if mc.price_decimals != m.price_decimals:
        problems.append(f"market.price_decimals is {mc.price_decimals}, venue has {m.price_decimals}")
    if mc.size_decimals != m.size_decimals:
        problems.append(f"market.size_decimals is {mc.size_decimals}, venue has {m.size_decimals}")
    if mc.min_base_amount != m.min_base:
        problems.append(f"market.min_base_amount is {fmt_dec(mc.min_base_amount)}, venue has {fmt_dec(m.min_base)}")
    if mc.min_quote_amount != m.min_quote:
        problems.append(f"market.min_quote_amount is {fmt_dec(mc.min_quote_amount)}, venue has {fmt_dec(m.min_quote)}")
    if mk.size_min < m.min_base:
        problems.append(f"maker.size_min {fmt_dec(mk.size_min)} is below the venue's min base {fmt_dec(m.min_base)}")
    if mk.exchange_min_notional < m.min_quote:
        problems.append(f"maker.exchange_min_notional {fmt_dec(mk.exchange_min_notional)} is below the venue's "
                        f"min quote {fmt_dec(m.min_quote)}")
    for key, v in (("maker.size", mk.size), ("maker.size_min", mk.size_min), ("maker.size_max", mk.size_max),
                   ("hedger.max_clip_units", s.hedger.max_clip_units)):
        if v.scaleb(m.size_decimals) != v.scaleb(m.size_decimals).to_integral_value():  # finer than one lot
            problems.append(f"{key} {fmt_dec(v)} has more than {m.size_decimals} decimals")
    if not m.active:
        problems.append(f"venue market {m.market_id} is {m.status}")
    if m.last_price is not None:
        floor = m.min_order_notional(m.last_price)
        notional = mk.size * m.last_price
        if notional < floor:
            notes.append(f"at the last price {fmt_dec(m.last_price)} maker.size {fmt_dec(mk.size)} is "
                         f"{fmt_dec(notional.quantize(Decimal('0.01')))} USD, under the venue's minimum "
                         f"{fmt_dec(floor)}: the maker raises it to exchange_min_notional")
        cap = s.guard.max_position_units * m.last_price
        notes.append(f"guard.max_position_units {fmt_dec(s.guard.max_position_units)} is "
                     f"{fmt_dec(cap.quantize(Decimal('0.01')))} USD at the last price "
                     f"(max_inventory_notional {fmt_dec(s.guard.max_inventory_notional)})")
    return problems, notes


def metadata_doc(m: MarketInfo, base_url: str, now_s: float) -> dict[str, object]:
    return {
        "market_id": m.market_id,
        "symbol": m.symbol,
        "source": f"{base_url}/api/v1/orderBookDetails?market_id={m.market_id}",
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s)),
        "order_book_detail": m.raw,
    }


def main(argv: list[str] | None = None) -> None:
    p = parser(PROG, "Check a profile against the config and the venue, save the metadata, activate it.")
    p.add_argument("--profile", required=True, help="the market profile, e.g. profiles/market_2.yaml")
    p.add_argument("--config", default="config.yaml", help="config file (default config.yaml)")
    p.add_argument("--metadata-out", default="data/instruments/market_<id>.json",
                   help="where to write the venue's market metadata (default data/instruments/market_<id>.json)")
    p.add_argument("--no-activate", action="store_true", help="check and save metadata only; leave config.yaml alone")
    p.add_argument("--base-url", default=default_base_url(),
                   help="Lighter REST base URL (default $LIGHTER_BASE_URL or the local venue)")
    a = p.parse_args(argv)
    config = Path(a.config)
    if not config.is_file():
        p.error(f"config file not found: {config}")
    profile = Path(a.profile)
    if ID_PLACEHOLDER in a.profile:  # the runbook's literal text: the market of the config's active profile
        try:
            active = load_settings(config, env={}).market.market_id
        except ConfigError as e:
            p.error(f"--profile {a.profile}: cannot tell the market id from {config} ({e})")
        profile = substitute_id(a.profile, active)
        print(f"{ID_PLACEHOLDER} = {active} (the market of {config}'s active profile): {profile}")
    if not profile.is_file():
        p.error(f"profile not found: {profile}")
    try:
        settings = load_settings(config, profile.resolve(), env={})
    except ConfigError as e:
        p.error(f"config error: {e}")

    async def go() -> int:
        mid = settings.market.market_id
        async with rest(a.base_url) as client:
            hits = [m for m in await fetch_markets(client, mid) if m.market_id == mid]
        if not hits:
            raise UsageError(f"market {mid} ({settings.market.symbol}) does not exist on {a.base_url}")
        m = hits[0]
        out = substitute_id(a.metadata_out, mid)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(metadata_doc(m, a.base_url, time.time()), indent=2, sort_keys=True) + "\n")
        except OSError as e:
            raise ScriptError(f"cannot write {out}: {e.strerror}") from None
        print(f"wrote {out} ({m.symbol}, market {mid})")
        problems, notes = check_profile(settings, m)
        for n in notes:
            print(f"note: {n}")
        if problems:
            raise UsageError(f"{profile} does not match the venue: " + "; ".join(problems))
        print(f"{profile} matches the venue: {m.symbol} decimals price {m.price_decimals} / size {m.size_decimals}, "
              f"min base {fmt_dec(m.min_base)}, min quote {fmt_dec(m.min_quote)}")
        if not a.no_activate:
            ref = activate_profile(config, profile)
            print(f"activated in {config} (profile: {ref}); restart the services to use it")
        return 0

    run(PROG, go, a.base_url)


if __name__ == "__main__":
    main()
