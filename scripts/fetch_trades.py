#!/usr/bin/env python3
"""Fetch an account's fills on one market and compute its PnL (definitions: research metrics.md §5.1).

    python scripts/fetch_trades.py --base-url https://mainnet.zklighter.elliot.ai --account 366110 \\
        --market-id 102 --limit 200 --mark-mid <mid> --token <bearer>

Pages ``GET /api/v1/trades`` (newest first, 100 per page, following ``next_cursor``; the auth
token goes raw in the ``authorization`` header, as the lighter-sdk sends it; ``--token`` falls back
to ``$LIGHTER_API_BEARER``). Over the fetched window, starting flat
at its first fill, with side s = +1 for our buys and -1 for our sells:

- cash X = sum(-s * p * v), position q = sum(s * v), fees F = the sum of each fill's integer micro-USDC
  fee, computed from the trade's ``maker_fee``/``taker_fee`` rate (millionths of notional, absent = 0)
  exactly as the venue rounds it (``shared.fees.fee_micro``: floored notional, floored fee);
- equity (mark-to-mid) E = X + q * mid - F, with mid = ``--mark-mid`` (else the venue's current mid);
  split into round trips (matched size x (avg sell - avg buy)) and the open inventory marked at mid;
- spread capture sum(v * s * (mid_at_fill - p)) when every fill carries the mid at its time (Lighter's
  trades do not: then it is reported as unavailable);
- volume in base units and USD, maker/taker counts, fills per source (maker / hedger / other, from the
  client order index: ``shared.ids.source_of``).
Cash, position, fees and equity come from ``analytics.session`` (the metrics every report shares), in
integer ticks/lots/micro-USDC, then exact ``Decimal``; the table rounds for display only.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python scripts/x.py` puts only scripts/ on the path
from scripts import _venv  # noqa: E402,F401 - first: re-runs under .venv when the packages are missing

from scripts._common import (
    count_arg,
    Rest,
    ScriptError,
    decimal_arg,
    default_base_url,
    fetch_markets,
    fetch_top_of_book,
    fmt_dec,
    parser,
    rest,
    run,
    to_decimal,
)
from shared.fees import fee_micro_decimal, micro_to_decimal  # noqa: E402
from analytics.session import (  # noqa: E402
    SOURCES,
    SessionFill,
    equity_usd,
    exact_decimal,
    fill_source,
    fill_totals,
    spread_capture_usd,
    usd_of_tl,
)
from shared.logs import register_secret  # noqa: E402
from shared.markets import MarketSpec  # noqa: E402

PROG = "fetch_trades.py"
PAGE = 100  # the API's maximum page size


@dataclass(frozen=True)
class Fill:
    """One of our executions; ``side`` +1 = we bought, -1 = we sold; ``fee`` in USD (negative = rebate),
    ``fee_micro`` the same in integer micro-USDC (None: derived from ``fee``, which must be whole micro-USDC)."""

    trade_id: int
    timestamp_ms: int
    market_id: int
    side: int
    price: Decimal
    size: Decimal
    fee: Decimal
    maker: bool
    mid: Decimal | None = None
    source: str = "other"
    fee_micro: int | None = None

    def micro(self) -> int:
        if self.fee_micro is not None:
            return self.fee_micro
        m = self.fee.scaleb(6)
        if m != m.to_integral_value():
            raise ValueError(f"trade {self.trade_id}: fee {self.fee} is not a whole micro-USDC amount")
        return int(m)


@dataclass(frozen=True)
class PnL:
    fills: int
    maker_fills: int
    taker_fills: int
    bought: Decimal
    sold: Decimal
    avg_buy: Decimal | None
    avg_sell: Decimal | None
    position: Decimal
    cash: Decimal
    fees: Decimal
    volume_base: Decimal
    volume_usd: Decimal
    mark_mid: Decimal
    equity: Decimal
    round_trip_size: Decimal
    round_trip_pnl: Decimal
    inventory_pnl: Decimal
    spread_capture: Decimal | None
    first_ms: int | None
    last_ms: int | None
    fees_micro: int = 0
    fills_by_source: dict[str, int] = field(default_factory=dict)


def _rate(v: Any, trade_id: Any) -> int:
    """A fee rate in millionths of notional (Lighter sends an int; absent = 0)."""
    d = to_decimal(v) or Decimal(0)
    if d != d.to_integral_value():
        raise ValueError(f"trade {trade_id}: fee rate {v!r} is not an integer number of millionths")
    return int(d)


def fills_from_trade(t: dict[str, Any], account: int) -> list[Fill]:
    """Our side(s) of one venue trade (two fills for a self-trade, none if the account is not in it)."""
    price, size = to_decimal(t.get("price")), to_decimal(t.get("size"))
    if price is None or size is None:
        raise ValueError(f"trade {t.get('trade_id')}: no price/size")
    out: list[Fill] = []
    is_maker_ask = bool(t.get("is_maker_ask"))
    mid = to_decimal(t.get("mid_price"))
    for side, acct_key in ((1, "bid_account_id"), (-1, "ask_account_id")):
        if t.get(acct_key) != account:
            continue
        maker = is_maker_ask == (side == -1)
        rate = _rate(t.get("maker_fee" if maker else "taker_fee"), t.get("trade_id"))
        micro = fee_micro_decimal(price, size, rate)
        coi = int(t.get("bid_client_id" if side > 0 else "ask_client_id") or 0)
        out.append(Fill(trade_id=int(t.get("trade_id") or 0), timestamp_ms=int(t.get("timestamp") or 0),
                        market_id=int(t.get("market_id") or 0), side=side, price=price, size=size,
                        fee=micro_to_decimal(micro), maker=maker, mid=mid, source=fill_source(coi), fee_micro=micro))
    return out


def _decimals(values: list[Decimal]) -> int:
    return max([0, *(-int(v.as_tuple().exponent) for v in values if v.is_finite())])


def spec_for(fills: list[Fill], market_id: int = 0) -> MarketSpec:
    """The coarsest integer grid that holds every fill's price and size exactly (when the market's is unknown)."""
    return MarketSpec(market_id, "", _decimals([f.price for f in fills]), _decimals([f.size for f in fills]), 0, 0)


def session_fills(fills: list[Fill], spec: MarketSpec) -> list[SessionFill]:
    """``fills`` as ``analytics.session`` fills (integer ticks, lots, micro-USDC)."""
    return [SessionFill(f.timestamp_ms, spec.market_id, f.source, f.side < 0, f.maker, spec.price_ticks(f.price),
                        spec.size_lots(f.size), f.micro(), f.trade_id) for f in fills]


def _dec(x: Fraction) -> Decimal:
    return Decimal(exact_decimal(x, 0))


def compute_pnl(fills: list[Fill], mark_mid: Decimal, spec: MarketSpec | None = None) -> PnL:
    """Window PnL of ``fills`` (any order), flat before the first one, marked at ``mark_mid``.

    ``spec``: the market's decimals (default: the coarsest grid holding every price and size exactly).
    """
    if spec is None:
        spec = spec_for(fills, fills[0].market_id if fills else 0)
    sf = session_fills(fills, spec)
    tot = fill_totals(sf)
    bought = Decimal(tot.bought_lots).scaleb(-spec.size_decimals)
    sold = Decimal(tot.sold_lots).scaleb(-spec.size_decimals)
    buy_usd = _dec(usd_of_tl(tot.bought_tl, spec))
    sell_usd = _dec(usd_of_tl(tot.sold_tl, spec))
    avg_buy = buy_usd / bought if bought else None
    avg_sell = sell_usd / sold if sold else None
    position = bought - sold
    cash = _dec(usd_of_tl(tot.cash_tl, spec))
    fees = micro_to_decimal(tot.fees_micro)
    equity = _dec(equity_usd(tot, spec, Fraction(mark_mid)))
    rt = min(bought, sold)
    # averages are not finite decimals in general: round them for people (4 digits finer than the tick) and
    # the round-trip PnL to the micro-USDC, the venue's own unit; the inventory PnL below keeps the identity
    tick = Decimal(1).scaleb(-(spec.price_decimals + 4))
    avg_buy = avg_buy.quantize(tick) if avg_buy is not None else None
    avg_sell = avg_sell.quantize(tick) if avg_sell is not None else None
    rt_pnl = ((Fraction(sell_usd) * Fraction(rt) / Fraction(sold) - Fraction(buy_usd) * Fraction(rt) / Fraction(bought))
              if rt else Fraction(0))
    rt_pnl = Decimal(rt_pnl.numerator) / Decimal(rt_pnl.denominator)
    rt_pnl = rt_pnl.quantize(Decimal("0.000001")) if rt else Decimal(0)
    # the rest of the gross (cash + q * mid, exact) is the open inventory marked at mid, i.e.
    # q * (mid - average opening price); taking the difference keeps the attribution identity exact
    inv_pnl = (equity + fees) - rt_pnl
    capture = (_dec(spread_capture_usd([(f, Fraction(x.mid)) for f, x in zip(sf, fills)], spec))  # type: ignore[arg-type]
               if fills and all(f.mid is not None for f in fills) else None)
    return PnL(fills=tot.fills, maker_fills=tot.maker_fills, taker_fills=tot.taker_fills,
               bought=bought, sold=sold, avg_buy=avg_buy, avg_sell=avg_sell, position=position, cash=cash, fees=fees,
               volume_base=bought + sold, volume_usd=buy_usd + sell_usd, mark_mid=mark_mid, equity=equity,
               round_trip_size=rt, round_trip_pnl=rt_pnl, inventory_pnl=inv_pnl, spread_capture=capture,
               first_ms=tot.first_ms, last_ms=tot.last_ms, fees_micro=tot.fees_micro,
               fills_by_source={s: sum(1 for f in sf if f.source == s) for s in SOURCES})


def _q(d: Decimal | None, places: str = "0.0001") -> str:
    return "n/a" if d is None else fmt_dec(d.quantize(Decimal(places)))


def _ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def render(fills: list[Fill], pnl: PnL, *, account: int, market: str, mid_source: str) -> str:
    lines = [f"fills of account {account} on {market}: {pnl.fills} (oldest {_ts(pnl.first_ms)}, newest {_ts(pnl.last_ms)})",
             f"{'time':<25} {'trade_id':>12} {'side':<4} {'role':<5} {'source':<6} {'price':>14} {'size':>12} "
             f"{'usd':>12} {'fee':>10}"]
    for f in fills:
        lines.append(f"{_ts(f.timestamp_ms):<25} {f.trade_id:>12} {'BUY' if f.side > 0 else 'SELL':<4} "
                     f"{'maker' if f.maker else 'taker':<5} {f.source:<6} {fmt_dec(f.price):>14} {fmt_dec(f.size):>12} "
                     f"{_q(f.price * f.size, '0.01'):>12} {_q(f.fee, '0.000001'):>10}")
    lines += [
        "",
        f"volume: {fmt_dec(pnl.volume_base)} base, {_q(pnl.volume_usd, '0.01')} USD "
        f"({pnl.maker_fills} maker, {pnl.taker_fills} taker; by source "
        + ", ".join(f"{k} {v}" for k, v in pnl.fills_by_source.items()) + ")",
        f"bought {fmt_dec(pnl.bought)} @ {_q(pnl.avg_buy)}, sold {fmt_dec(pnl.sold)} @ {_q(pnl.avg_sell)}",
        f"position {pnl.position:+f}, cash {_q(pnl.cash)} USD, fees {_q(pnl.fees, '0.000001')} USD "
        f"({pnl.fees_micro} micro-USDC, the sum of the per-fill venue fees)",
        f"mark-to-mid at {fmt_dec(pnl.mark_mid)} ({mid_source}): PnL {_q(pnl.equity)} USD",
        f"  round trips {fmt_dec(pnl.round_trip_size)} x (avg sell - avg buy) = {_q(pnl.round_trip_pnl)} USD",
        f"  open inventory {pnl.position:+f} marked at mid = {_q(pnl.inventory_pnl)} USD",
        f"  fees -{_q(pnl.fees, '0.000001')} USD",
        "spread capture vs mid: " + (f"{_q(pnl.spread_capture)} USD" if pnl.spread_capture is not None
                                     else "n/a (the venue's trades carry no mid at fill time)"),
        "(window PnL: assumes the account was flat before the oldest fill fetched)",
    ]
    return "\n".join(lines)


def curve(fills: list[Fill]) -> tuple[list[int], list[Decimal], list[Decimal]]:
    """(time ms, PnL after fees marked at the fill's own price, position) after each fill, flat at the first."""
    ts: list[int] = []
    pnl: list[Decimal] = []
    pos: list[Decimal] = []
    cash = q = Decimal(0)
    for f in sorted(fills, key=lambda f: (f.timestamp_ms, f.trade_id)):
        cash += -f.side * f.price * f.size - f.fee
        q += f.side * f.size
        ts.append(f.timestamp_ms)
        pnl.append(cash + q * f.price)
        pos.append(q)
    return ts, pnl, pos


def draw_chart(fills: list[Fill], out: Path, *, title: str) -> None:
    """PnL and inventory over time, one PNG (matplotlib, installed by make setup)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from datetime import datetime, timezone
    ts, pnl, pos = curve(fills)
    when = [datetime.fromtimestamp(t / 1000, tz=timezone.utc) for t in ts]
    fig, (a1, a2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    a1.step(when, [float(v) for v in pnl], where="post", color="tab:blue")
    a1.set_ylabel("PnL (USD, at fill prices)")
    a1.axhline(0, color="grey", lw=0.5)
    a2.step(when, [float(v) for v in pos], where="post", color="tab:orange")
    a2.set_ylabel("position (base)")
    a2.axhline(0, color="grey", lw=0.5)
    a2.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=timezone.utc))
    a2.set_xlabel("UTC")
    fig.suptitle(f"{title}: {len(fills)} fills")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def to_json(fills: list[Fill], pnl: PnL, *, account: int, market_id: int, mid_source: str) -> str:
    def conv(v: Any) -> Any:
        return fmt_dec(v) if isinstance(v, Decimal) else v
    return json.dumps({"account": account, "market_id": market_id, "mid_source": mid_source,
                       "pnl": {k: conv(v) for k, v in asdict(pnl).items()},
                       "fills": [{k: conv(v) for k, v in asdict(f).items()} for f in fills]}, indent=2)


async def fetch_fills(client: Rest, *, account: int, market_id: int, limit: int) -> list[Fill]:
    """Newest ``limit`` trades' fills, following ``next_cursor`` page by page; oldest first."""
    fills: dict[tuple[int, int], Fill] = {}
    cursor: str | None = None
    seen_cursors: set[str] = set()
    trades_seen = pages = 0
    while trades_seen < limit:
        page = await client.get("trades", sort_by="timestamp", limit=min(PAGE, limit - trades_seen),
                                account_index=account, market_id=market_id, sort_dir="desc", cursor=cursor)
        batch = page.get("trades") or []
        for t in batch:
            try:
                for f in fills_from_trade(t, account):
                    fills[(f.trade_id, f.side)] = f
            except (ValueError, TypeError, AttributeError) as e:
                sys.stderr.write(f"warning: skipped a malformed trade: {e}\n")
        trades_seen += len(batch)
        pages += 1
        if pages > 1 and sys.stderr.isatty():   # progress for long histories, never into a pipe or a file
            sys.stderr.write(f"\r{PROG}: page {pages}, {trades_seen} of at most {limit} trades")
            sys.stderr.flush()
        cursor = page.get("next_cursor") or None
        if not batch or cursor is None or cursor in seen_cursors:
            break
        seen_cursors.add(cursor)
    if pages > 1 and sys.stderr.isatty():
        sys.stderr.write("\n")
    return sorted(fills.values(), key=lambda f: (f.timestamp_ms, f.trade_id, f.side))


def main(argv: list[str] | None = None) -> None:
    p = parser(PROG, "Fetch an account's fills on one market and compute its PnL.")
    p.add_argument("--base-url", default=default_base_url(),
                   help="Lighter REST base URL (default $LIGHTER_BASE_URL or the local venue)")
    p.add_argument("--account", type=int, default=None, help="account index (default $LIGHTER_ACCOUNT_INDEX)")
    p.add_argument("--market-id", type=int, required=True, help="market id, e.g. 2 (SOL)")
    p.add_argument("--limit", type=count_arg, default=200, help="how many of the newest trades to fetch (default 200)")
    p.add_argument("--mark-mid", type=decimal_arg, help="mid to mark the position at (default: the venue's current mid)")
    p.add_argument("--token", default=None, help="auth token for /api/v1/trades (default $LIGHTER_API_BEARER)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--chart", default=None, metavar="FILE.png",
                   help="also draw the PnL (marked at each fill's price) and the inventory over time as a PNG")
    a = p.parse_args(argv)
    if a.chart is not None and not a.chart.lower().endswith(".png"):
        p.error(f"--chart: the file must end in .png, got {a.chart!r}")
    account = a.account
    if account is None:
        raw = os.environ.get("LIGHTER_ACCOUNT_INDEX", "")
        if not raw.isdigit():
            p.error("--account is required (or set LIGHTER_ACCOUNT_INDEX)")
        account = int(raw)
    if account < 0 or a.market_id < 0:
        p.error("--account and --market-id must be non-negative")
    if not 1 <= a.limit <= 100_000:
        p.error(f"--limit must be within 1..100000, got {a.limit}")
    if a.mark_mid is not None and a.mark_mid <= 0:
        p.error(f"--mark-mid must be positive, got {a.mark_mid}")
    token = a.token or os.environ.get("LIGHTER_API_BEARER")
    if not token:
        p.error("no auth token: pass --token or set LIGHTER_API_BEARER (scripts/refresh_ws_token.py mints one)")
    register_secret(token)

    async def go() -> int:
        async with rest(a.base_url, token) as client:
            fills = await fetch_fills(client, account=account, market_id=a.market_id, limit=a.limit)
            market = f"market {a.market_id}"
            markets = [m for m in await fetch_markets(client, a.market_id) if m.market_id == a.market_id]
            if markets:
                market = f"{markets[0].symbol} (market {a.market_id})"
            spec = (MarketSpec(a.market_id, markets[0].symbol, markets[0].price_decimals, markets[0].size_decimals, 0, 0)
                    if markets else None)
            mid, source = a.mark_mid, "--mark-mid"
            if mid is None:
                bid, ask = await fetch_top_of_book(client, a.market_id)
                if bid is not None and ask is not None:
                    mid, source = (bid + ask) / 2, "venue mid now"
                elif markets and markets[0].last_price is not None:
                    mid, source = markets[0].last_price, "venue last trade price"
            if mid is None:
                raise ScriptError("no mid to mark at: the book is empty; pass --mark-mid")
        try:
            pnl = compute_pnl(fills, mid, spec)
        except ValueError:  # a fill finer than the market's decimals: fall back to the fills' own grid
            pnl = compute_pnl(fills, mid)
        if a.chart is not None:
            try:
                draw_chart(fills, Path(a.chart), title=f"{market}, account {account}")
            except ImportError:
                raise ScriptError("--chart needs matplotlib: `make setup` installs it (or pip install matplotlib)") from None
            except OSError as e:
                raise ScriptError(f"cannot write {a.chart}: {e.strerror}") from None
        if a.json:
            print(to_json(fills, pnl, account=account, market_id=a.market_id, mid_source=source))
        else:
            print(render(fills, pnl, account=account, market=market, mid_source=source))
        return 0

    run(PROG, go, a.base_url)


if __name__ == "__main__":
    main()
