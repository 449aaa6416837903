"""Trading-quality report of a session from the Redis streams (metrics as defined in metrics.md).

    python scripts/mm_report.py [--redis-url URL] [--account N] [--since-s SECONDS] [--until-s SECONDS]
                                [--sharpe-interval-s 60] [--curves FILE] [--json]

Reads every entry of ``md:book:<market>``, ``acct:<account>`` and ``orders:intents`` (optionally only
those of the last ``--since-s`` seconds, up to ``--until-s`` seconds ago) into ``analytics.session``
and prints its summary: the same numbers the strategy lab and ``fetch_trades.py`` compute. Money is
exact (the JSON's ``*_usd`` strings); times are the venue's.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts import _venv  # noqa: E402,F401 - first: re-runs under .venv when the packages are missing

from redis.asyncio import Redis  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402

from analytics.session import NoBookData, curves, summarize  # noqa: E402
from analytics.streams import load_builder  # noqa: E402
from shared.cli import Parser  # noqa: E402
from shared.config import ConfigError, load_settings  # noqa: E402

from scripts._common import count_arg, seconds_arg  # noqa: E402


def _f(x: Any, fmt: str = ".6g") -> str:
    return "n/a" if x is None else format(x, fmt)


def render(s: dict[str, Any], spread_bps: float | None = None) -> str:
    lines = [f"{s['symbol']} (market {s['market_id']}), {s['sim_seconds']:.0f} s of exchange time, {s['fills']} fills "
             f"(maker {s['fills_maker']}, hedger {s['fills_hedger']}, other {s['fills_other']}), "
             f"volume maker {s['volume_maker']} / hedger {s['volume_hedger']} {s['symbol']}"]
    for k in ("pnl_usd", "spread_capture_usd", "inventory_pnl_usd", "fees_usd", "liquidation_pnl_usd",
              "max_drawdown_usd"):
        lines.append(f"  {k:<22} {s[k]}")
    lines.append(f"  {'return_over_mdd':<22} {_f(s['return_over_mdd'])}")
    sh = s["sharpe"]
    lines.append(f"  {'sharpe':<22} {_f(sh['value'], '.3f')} ({sh['interval_s']} s intervals, n={sh['samples']}, "
                 f"{sh['scaling']}{'; ' + sh['reason'] if sh['reason'] else ''})")
    lines.append(f"  {'sortino':<22} {_f(s['sortino']['value'], '.3f')}")
    inv = s["inventory"]
    lines.append(f"  {'position':<22} start {s['position_start_lots']} lots, end {inv['final_base']}, "
                 f"max |q| {inv['max_abs_base']}, tw mean |q| {_f(inv['tw_mean_abs_base'])}, tw std {_f(inv['tw_std_base'])}")
    lines.append(f"  {'fill_ratio_maker':<22} {_f(s['fill_ratio_maker'])} ({s['filled_lots_maker']} of "
                 f"{s['submitted_lots_maker']} lots; {s['orders_placed_maker']} places, {s['orders_modified_maker']} modifies)")
    up = s["uptime_maker"]
    if up:
        lines.append(f"  {'uptime (maker)':<22} bid {up['bid']:.1%}  ask {up['ask']:.1%}  two-sided {up['both']:.1%}")
    for src in ("maker", "hedger"):
        per = s["markout_bps"][src]
        cells = "  ".join(f"{h} {_f(v['bps'], '+.2f')} (n={v['n']})" for h, v in per.items())
        lines.append(f"  markout {src:<7} bps  {cells}")
    edge = s["markout_bps"]["maker"]["0ms"]["bps"]
    if spread_bps and edge is not None:
        lines.append(f"  {'capture ratio (maker)':<22} {edge / spread_bps:.3g} (edge {edge:.2f} bps / quoted half-spread "
                     f"{spread_bps:g} bps)")
    lines.append(f"  ({s['markout_reference']}; fills before the first book: {s['fills_before_start']}, "
                 f"duplicates dropped: {s['duplicate_fills']})")
    return "\n".join(lines)


async def run(url: str, account: int, since_ms: int, until_ms: int | None, config: str | None, as_json: bool,
              sharpe_interval_s: int = 60, curves_path: str | None = None, curves_step_ms: int = 1000) -> int:
    try:
        settings = load_settings(config)
    except ConfigError as e:
        sys.stderr.write(f"mm_report: config error: {e}\n")
        return 2
    spec = settings.market_spec
    r = Redis.from_url(url)
    try:
        b = await load_builder(r, spec, account, since_ms, until_ms)
    except RedisError as e:
        where = urlsplit(url)
        sys.stderr.write(f"mm_report: redis at {where.hostname}:{where.port}: {e}\n")  # never the URL's password
        return 1
    finally:
        await r.aclose()
    try:
        s = summarize(b, sharpe_interval_s=sharpe_interval_s)
    except NoBookData:
        print("no book data in the streams for this market", file=sys.stderr)
        return 1
    if curves_path:
        Path(curves_path).write_text(json.dumps(curves(b, curves_step_ms)))
    if as_json:
        print(json.dumps(s, indent=2))
    else:
        print(render(s, float(settings.maker.spread_bps)))
    return 0


def main() -> None:
    p = Parser(prog="mm_report.py", description=__doc__.splitlines()[0])
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6399/0"))
    p.add_argument("--account", type=int, default=int(os.environ.get("LIGHTER_ACCOUNT_INDEX", "100")))
    p.add_argument("--since-s", type=seconds_arg, default=0.0, help="only the last N seconds (default: everything)")
    p.add_argument("--until-s", type=seconds_arg, default=0.0, help="stop N seconds ago (default: now)")
    p.add_argument("--sharpe-interval-s", type=count_arg, default=60, help="Sharpe on equity changes over this interval")
    p.add_argument("--curves", default=None, help="also write the time series (analytics.session.curves) to FILE")
    p.add_argument("--config", default=None)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.sharpe_interval_s <= 0:
        p.error("--sharpe-interval-s must be positive")
    now = time.time()
    since = int((now - a.since_s) * 1000) if a.since_s > 0 else 0
    until = int((now - a.until_s) * 1000) if a.until_s > 0 else None
    raise SystemExit(asyncio.run(run(a.redis_url, a.account, since, until, a.config, a.json, a.sharpe_interval_s,
                                     a.curves)))


if __name__ == "__main__":
    main()
