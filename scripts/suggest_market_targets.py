#!/usr/bin/env python3
"""Rank the venue's markets for market making with a given balance; or inspect one market.

    python scripts/suggest_market_targets.py --top 10 [--target-symbol SYMBOL] [--balance-usd 30]

Data: ``/api/v1/orderBookDetails`` (decimals, minimums, last price, 24 h volume) and
``/api/v1/exchangeStats`` (24 h quote volume and trade count per symbol; preferred when present);
the live spread comes from ``/api/v1/orderBookOrders`` for the markets shown only (one call each).

Ranking: a market is *eligible* when the inventory cap set_market.py derives from the balance
(1.15 x balance) holds at least two quotes of k x the minimum order (min order notional =
max(min quote, min base x price)): one fill on each side before the guard steps in.
Eligible markets come first, each group by 24 h USD volume (more volume, more fills). The tick in
bps (the narrowest possible spread) and the live spread are shown to judge the edge per fill.
"""
from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python scripts/x.py` puts only scripts/ on the path
from scripts import _venv  # noqa: E402,F401 - first: re-runs under .venv when the packages are missing

from scripts._common import (
    count_arg,
    MarketInfo,
    Rest,
    VenueError,
    decimal_arg,
    default_base_url,
    fetch_markets,
    fetch_top_of_book,
    find_symbol,
    fmt_dec,
    inventory_cap,
    parser,
    rest,
    run,
    to_decimal,
)

PROG = "suggest_market_targets.py"


@dataclass(frozen=True)
class Candidate:
    market: MarketInfo
    daily_usd_volume: Decimal
    daily_trades: int
    min_order_usd: Decimal | None
    tick_bps: float | None  # statistics, not order path: float is fine
    eligible: bool
    quotes_funded: int  # how many minimum-size quotes (x multiplier) the inventory cap holds


def volumes_by_symbol(stats: list[dict[str, object]]) -> dict[str, tuple[Decimal, int]]:
    out: dict[str, tuple[Decimal, int]] = {}
    for s in stats:
        sym = str(s.get("symbol") or "")
        vol = to_decimal(s.get("daily_quote_token_volume"))
        if sym and vol is not None:
            out[sym.upper()] = (vol, int(s.get("daily_trades_count") or 0))  # type: ignore[call-overload]
    return out


def evaluate(m: MarketInfo, stats: dict[str, tuple[Decimal, int]], balance: Decimal, multiplier: Decimal) -> Candidate:
    vol, trades = stats.get(m.symbol.upper(), (m.daily_quote_volume, m.daily_trades))
    price = m.last_price
    min_usd = m.min_order_notional(price) if price else None
    per_quote = min_usd * multiplier if min_usd else None
    funded = int(inventory_cap(balance) / per_quote) if per_quote else 0
    tick_bps = float(m.tick / price * 10_000) if price else None
    return Candidate(market=m, daily_usd_volume=vol, daily_trades=trades, min_order_usd=min_usd, tick_bps=tick_bps,
                     eligible=m.active and funded >= 2, quotes_funded=funded)


def rank(cands: list[Candidate]) -> list[Candidate]:
    return sorted(cands, key=lambda c: (not c.eligible, -c.daily_usd_volume, c.market.market_id))


async def _book(client: Rest, market_id: int) -> tuple[Decimal | None, Decimal | None]:
    """Top of book, or nothing when the venue refuses this one market (the table still prints)."""
    try:
        return await fetch_top_of_book(client, market_id)
    except VenueError:
        return None, None


def _spread_bps(bid: Decimal | None, ask: Decimal | None) -> float | None:
    if bid is None or ask is None or bid <= 0 or ask <= bid:
        return None
    return float((ask - bid) / ((ask + bid) / 2) * 10_000)


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def table(rows: list[tuple[Candidate, float | None]]) -> str:
    head = (f"{'#':>3} {'symbol':<10} {'id':>4} {'24h vol USD':>16} {'trades':>8} {'last':>14} "
            f"{'tick bps':>9} {'spread bps':>10} {'min order':>10} {'quotes':>6} eligible")
    out = [head]
    for i, (c, spread) in enumerate(rows, 1):
        m = c.market
        out.append(f"{i:>3} {m.symbol:<10} {m.market_id:>4} {fmt_dec(c.daily_usd_volume.quantize(Decimal(1))):>16} "
                   f"{c.daily_trades:>8} {fmt_dec(m.last_price) if m.last_price else '-':>14} {_f(c.tick_bps):>9} "
                   f"{_f(spread):>10} {fmt_dec(c.min_order_usd.quantize(Decimal('0.01'))) if c.min_order_usd else '-':>10} "
                   f"{c.quotes_funded:>6} {'yes' if c.eligible else 'no'}")
    return "\n".join(out)


def details(c: Candidate, bid: Decimal | None, ask: Decimal | None, balance: Decimal, multiplier: Decimal) -> str:
    m = c.market
    raw = m.raw
    spread = _spread_bps(bid, ask)
    lines = [
        f"{m.symbol} (market {m.market_id}, {m.market_type}, {m.status or 'status unknown'})",
        f"  decimals: price {m.price_decimals} (tick {fmt_dec(m.tick)}), size {m.size_decimals} (lot {fmt_dec(m.lot)})",
        f"  minimums: base {fmt_dec(m.min_base)}, quote {fmt_dec(m.min_quote)} USDC"
        + (f"; smallest order now {fmt_dec(c.min_order_usd.quantize(Decimal('0.01')))} USD" if c.min_order_usd else ""),
        f"  fees (market base rate, %): maker {m.maker_fee}, taker {m.taker_fee}",
        f"  last price {fmt_dec(m.last_price) if m.last_price else '-'}; 24 h: volume {fmt_dec(c.daily_usd_volume)} USD, "
        f"{c.daily_trades} trades, change {raw.get('daily_price_change', '-')}",
        f"  book: bid {fmt_dec(bid) if bid else '-'}, ask {fmt_dec(ask) if ask else '-'}, spread {_f(spread)} bps, "
        f"tick {_f(c.tick_bps)} bps",
        f"  margin fractions (1e-4): initial {raw.get('default_initial_margin_fraction', '-')}, "
        f"min initial {raw.get('min_initial_margin_fraction', '-')}, maintenance {raw.get('maintenance_margin_fraction', '-')}",
        f"  balance {fmt_dec(balance)} USD: inventory cap {fmt_dec(inventory_cap(balance))} USD holds {c.quotes_funded} "
        f"quotes at {fmt_dec(multiplier)} x the minimum: " + ("eligible" if c.eligible else "NOT eligible (needs 2)"),
        f"  next: python scripts/set_market.py --symbol {m.symbol} --balance-usd {fmt_dec(balance)} "
        f"--sizing-multiplier {fmt_dec(multiplier)} --profile-out profiles/market_{m.market_id}.yaml --activate",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = parser(PROG, "Rank the venue's markets for market making with a given balance.")
    p.add_argument("--top", type=count_arg, default=10, help="how many markets to list (default 10)")
    p.add_argument("--target-symbol", help="print one market's details instead of the ranking")
    p.add_argument("--balance-usd", type=decimal_arg, default=Decimal("30"), help="balance to size for (default 30)")
    p.add_argument("--sizing-multiplier", type=decimal_arg, default=Decimal("1.1"),
                   help="headroom over the minimum order (default 1.1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--base-url", default=default_base_url(),
                   help="Lighter REST base URL (default $LIGHTER_BASE_URL or the local venue)")
    a = p.parse_args(argv)
    if not 1 <= a.top <= 500:
        p.error(f"--top must be within 1..500, got {a.top}")
    if a.balance_usd <= 0 or a.sizing_multiplier < 1:
        p.error("--balance-usd must be positive and --sizing-multiplier at least 1")

    async def go() -> int:
        async with rest(a.base_url) as client:
            markets = [m for m in await fetch_markets(client) if m.market_type != "spot"]
            st = await client.get("exchangeStats")
            stats = volumes_by_symbol(list(st.get("order_book_stats") or []))
            if a.target_symbol:
                c = evaluate(find_symbol(markets, a.target_symbol), stats, a.balance_usd, a.sizing_multiplier)
                bid, ask = await _book(client, c.market.market_id)
                if a.json:
                    print(json.dumps(_json(c, _spread_bps(bid, ask)), indent=2))
                else:
                    print(details(c, bid, ask, a.balance_usd, a.sizing_multiplier))
                return 0
            ranked = rank([evaluate(m, stats, a.balance_usd, a.sizing_multiplier) for m in markets])[: a.top]
            books = await asyncio.gather(*(_book(client, c.market.market_id) for c in ranked))
        rows = [(c, _spread_bps(*b)) for c, b in zip(ranked, books, strict=True)]
        if a.json:
            print(json.dumps([_json(c, s) for c, s in rows], indent=2))
        else:
            print(f"markets on {a.base_url} for a {fmt_dec(a.balance_usd)} USD balance "
                  f"(eligible: its inventory cap {fmt_dec(inventory_cap(a.balance_usd))} USD holds 2 quotes "
                  f"at {fmt_dec(a.sizing_multiplier)} x the minimum order)")
            print(table(rows))
        return 0

    run(PROG, go, a.base_url)


def _json(c: Candidate, spread: float | None) -> dict[str, object]:
    m = c.market
    return {"symbol": m.symbol, "market_id": m.market_id, "status": m.status, "daily_usd_volume": fmt_dec(c.daily_usd_volume),
            "daily_trades": c.daily_trades, "last_price": fmt_dec(m.last_price) if m.last_price else None,
            "price_decimals": m.price_decimals, "size_decimals": m.size_decimals, "min_base": fmt_dec(m.min_base),
            "min_quote": fmt_dec(m.min_quote), "min_order_usd": fmt_dec(c.min_order_usd) if c.min_order_usd else None,
            # statistics, rounded for people: a thousandth of a bp is below any decision made from them
            "tick_bps": None if c.tick_bps is None else round(c.tick_bps, 3),
            "spread_bps": None if spread is None else round(spread, 3),
            "quotes_funded": c.quotes_funded, "eligible": c.eligible}


if __name__ == "__main__":
    main()
