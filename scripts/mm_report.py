"""Trading-quality report of a session from the Redis streams (metrics as defined in metrics.md).

    python scripts/mm_report.py [--redis-url URL] [--account N] [--since-s SECONDS] [--json]
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis  # noqa: E402

from analytics.mm_metrics import MidSeries, report  # noqa: E402
from analytics.streams import load_session  # noqa: E402
from shared.cli import Parser  # noqa: E402
from shared.config import ConfigError, load_settings  # noqa: E402


def _fmt(x: float) -> str:
    return "n/a" if isinstance(x, float) and math.isnan(x) else f"{x:.6g}"


async def run(url: str, account: int, since_ms: int, config: str | None, as_json: bool) -> int:
    try:
        settings = load_settings(config)
    except ConfigError as e:
        sys.stderr.write(f"mm_report: config error: {e}\n")
        return 2
    spec = settings.market_spec
    r = Redis.from_url(url)
    try:
        s = await load_session(r, spec, account, since_ms)
    finally:
        await r.aclose()
    if not s.mids:
        print("no book data in the streams for this market", file=sys.stderr)
        return 1
    rep = report(s.fills, MidSeries(s.mids), s.start_ms, s.end_ms, submitted_size=s.submitted,
                 quoted_half_spread=float(settings.maker.spread_bps) / 1e4 * s.mids[-1][1], spans=s.spans,
                 final_half_spread=s.half_spread_final)
    if as_json:
        print(json.dumps(asdict(rep), default=str, indent=2))
        return 0
    print(f"{spec.symbol} (market {spec.market_id}), {(s.end_ms - s.start_ms) / 1000:.0f} s, {rep.fills} fills, "
          f"volume {_fmt(rep.volume)} {spec.symbol}")
    for k in ("pnl", "liquidation_pnl", "spread_capture", "inventory_pnl", "fees", "max_drawdown", "return_over_mdd",
              "sharpe", "sortino", "inv_tw_std", "inv_mean_abs", "inv_max_abs", "fill_ratio", "capture_per_unit"):
        print(f"  {k:<18} {_fmt(getattr(rep, k))}")
    print(f"  sharpe interval    {rep.sharpe_interval_s:g} s (annualised with 365 d)")
    for h, v in rep.markouts.items():
        print(f"  markout {h:<10} n={v.get('n')} per_unit={_fmt(v.get('per_unit', math.nan))} bps={_fmt(v.get('bps', math.nan))}")
    for k, v in rep.uptime.items():
        print(f"  uptime {k:<11} {v:.1%}")
    return 0


def main() -> None:
    p = Parser(prog="mm_report.py", description=__doc__.splitlines()[0])
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6399/0"))
    p.add_argument("--account", type=int, default=int(os.environ.get("LIGHTER_ACCOUNT_INDEX", "100")))
    p.add_argument("--since-s", type=float, default=0.0, help="only the last N seconds (default: everything)")
    p.add_argument("--config", default=None)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    since = int((time.time() - a.since_s) * 1000) if a.since_s > 0 else 0
    raise SystemExit(asyncio.run(run(a.redis_url, a.account, since, a.config, a.json)))


if __name__ == "__main__":
    main()
