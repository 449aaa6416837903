"""``lighter-bot status``: a live terminal view of a running system, read-only.

It reads Redis (``risk:state``, ``risk:kill``, ``book:{m}``, the account stream) and each service's
``/health`` and the maker's ``/metrics``; it writes nothing and holds no secret. Gathering (``gather``,
I/O) and drawing (``render``, pure: a snapshot and a clock in, a rich renderable out) are apart, so the
screen is tested from a snapshot as well as live under tmux. A part that does not answer is drawn as
DOWN with the error, never hidden and never a traceback.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from shared import keys
from shared.ids import source_of
from shared.markets import MarketSpec
from shared.risk_watch import text
from shared.schemas import DecodeError, Fill, decode

SERVICES = ("feed", "maker", "hedger", "guard", "gateway")
LAST_FILLS = 8


@dataclass
class Snapshot:
    """Everything one frame shows, as read (``None`` / an ``errors`` entry where a part did not answer)."""

    at_ms: int
    health: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    risk_state: str | None = None
    kill: str | None = None
    book: dict[str, Any] | None = None
    fills: list[Fill] = field(default_factory=list)
    session: dict[str, float] = field(default_factory=dict)        # mm_session_* / mm_portfolio_* of the maker
    markouts: dict[tuple[str, str], float] = field(default_factory=dict)


async def _health(s: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with s.get(url, timeout=aiohttp.ClientTimeout(total=1.5)) as r:
        body = await r.json(content_type=None)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return {**body, "_http": r.status}


async def gather(redis: Any, http: aiohttp.ClientSession, ports: dict[str, int], host: str, spec: MarketSpec,
                 account: int | None, now_ms: int) -> Snapshot:
    snap = Snapshot(now_ms)
    for name in SERVICES:
        try:
            snap.health[name] = await _health(http, f"http://{host}:{ports[name]}/health")
        except Exception as e:   # noqa: BLE001 - a down service is a row on the screen, not a crash
            snap.health[name] = None
            snap.errors[name] = _why(e)
    if account is None:
        feed = snap.health.get("feed") or {}
        account = (feed.get("account") or {}).get("index")
    try:
        pipe = redis.pipeline(transaction=False)
        pipe.get(keys.RISK_STATE)
        pipe.get(keys.RISK_KILL)
        pipe.get(keys.book_latest(spec.market_id))
        if account is not None:
            pipe.xrevrange(keys.acct(int(account)), count=500)
        res = await asyncio.wait_for(pipe.execute(), 2.0)
        snap.risk_state = text(res[0])
        snap.kill = text(res[1])
        if res[2]:
            snap.book = orjson.loads(res[2])
        if account is not None:
            snap.fills = _fills(res[3], spec.market_id)[:LAST_FILLS]
    except Exception as e:   # noqa: BLE001
        snap.errors["redis"] = _why(e)
    try:
        async with http.get(f"http://{host}:{ports['maker']}/metrics", timeout=aiohttp.ClientTimeout(total=1.5)) as r:
            exposition = await r.text()
        for fam in text_string_to_metric_families(exposition):
            for smp in fam.samples:
                if smp.name.startswith("mm_session_") and not smp.labels:
                    snap.session[smp.name.removeprefix("mm_session_")] = smp.value
                elif smp.name == "mm_portfolio_quote_uptime_ratio":
                    snap.session["quote_uptime"] = smp.value
                elif smp.name == "mm_portfolio_markout_bps":
                    snap.markouts[(smp.labels.get("source", ""), smp.labels.get("horizon", ""))] = smp.value
    except Exception as e:   # noqa: BLE001
        snap.errors.setdefault("maker_metrics", _why(e))
    return snap


def _why(e: BaseException) -> str:
    """One short line: what did not answer and how."""
    if isinstance(e, aiohttp.ClientConnectorError):
        return f"no answer on {e.host}:{e.port} (connection refused)"
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    text = str(e).split(". ")[0].removesuffix(".")
    return (f"{type(e).__name__}: {text}" if text else type(e).__name__)[:90]


def _fills(rows: list[Any], market_id: int) -> list[Fill]:
    """The account stream's fills on this market, newest first (an entry that does not decode is skipped)."""
    out = []
    for _id, fields in rows:
        try:
            msg = decode(fields)
        except DecodeError:
            continue
        if isinstance(msg, Fill) and msg.market_id == market_id:
            out.append(msg)
    return out


# --- drawing -------------------------------------------------------------------------------------------
def _px(spec: MarketSpec, ticks: int | float | None) -> str:
    return "-" if ticks is None else f"{Decimal(int(ticks)).scaleb(-spec.price_decimals):f}"


def _sz(spec: MarketSpec, lots: int | None) -> str:
    return "-" if lots is None else f"{Decimal(int(lots)).scaleb(-spec.size_decimals):f}"


def _usd(v: Any) -> str:
    if v is None:
        return "-"
    return f"{float(v):+,.4f} USD"


def _age(s: float | None) -> str:
    return "-" if s is None else (f"{s:.1f}s" if s < 120 else f"{s / 60:.0f}m")


STATE_STYLE = {"ACTIVE": "bold green", "REDUCING": "bold yellow", "HALTED": "bold red"}


def render(snap: Snapshot, spec: MarketSpec) -> Group:
    """The whole screen from one snapshot (pure)."""
    return Group(_risk(snap), _services(snap), _money(snap, spec), _quotes(snap, spec), _fills_table(snap, spec),
                 _venue(snap))


def _risk(snap: Snapshot) -> Panel:
    st = snap.risk_state
    t = Text("RISK  ")
    if "redis" in snap.errors:
        t.append("UNKNOWN (redis down: " + snap.errors["redis"] + ")", style="bold red")
    else:
        t.append(st or "HALTED (risk:state missing)", style=STATE_STYLE.get(st or "HALTED", "bold red"))
        guard = snap.health.get("guard") or {}
        reason = (guard.get("trading") or {}).get("reason") or ""
        if reason:
            t.append(f"  {reason}")
        t.append("   kill: ")
        t.append(f"SET ({snap.kill})" if snap.kill is not None else "clear", style="bold red" if snap.kill else "green")
    return Panel(t, title="lighter-bot status", subtitle=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(snap.at_ms / 1000)))


def _services(snap: Snapshot) -> Panel:
    tab = Table("service", "state", "reason", box=None, expand=True)
    for name in SERVICES:
        h = snap.health.get(name)
        if h is None:
            tab.add_row(name, Text("DOWN", style="bold red"), snap.errors.get(name, "no answer"))
            continue
        state = str(h.get("state") or ("ok" if h.get("_http") == 200 else "unhealthy"))
        style = "green" if state == "ok" else ("yellow" if state in ("degraded", "reducing", "starting") else "red")
        tab.add_row(name, Text(state.upper() if state != "ok" else "ok", style=style), str(h.get("reason") or ""))
    return Panel(tab, title="services")


def _money(snap: Snapshot, spec: MarketSpec) -> Panel:
    g = snap.health.get("guard") or {}
    p = g.get("portfolio") or {}
    pos = (g.get("position") or {})
    tab = Table(box=None, expand=True, show_header=False)
    tab.add_row("position", f"{pos.get('units', '-')} {spec.symbol}" if pos else "- (guard down)",
                "inventory", _usd(p.get("inventory_usd")))
    tab.add_row("PnL session", _usd(p.get("pnl_usd")), "PnL today", _usd(p.get("pnl_today_usd")))
    tab.add_row("realised", _usd(p.get("realised_usd")), "unrealised", _usd(p.get("unrealised_usd")))
    tab.add_row("fees", _usd(p.get("fees_usd")), "drawdown", f"{(g.get('risk') or {}).get('drawdown_usdc') or '-'} USD")
    s = snap.session
    if s:
        win = s.get("window_seconds")
        tab.add_row(f"attribution ({_age(win)} window)", f"spread {_usd(s.get('spread_capture_usd'))}",
                    "inventory", _usd(s.get("inventory_pnl_usd")))
        up = s.get("quote_uptime")
        mk = ", ".join(f"{h} {v:+.2f}" for (src, h), v in sorted(snap.markouts.items(), key=lambda kv: _ms(kv[0][1]))
                       if src == "maker")
        tab.add_row("two-sided uptime", "-" if up is None else f"{up:.1%}", "maker markout bps", mk or "-")
    by = p.get("by_source") or {}
    if by:
        tab.add_row("fills by source", ", ".join(f"{k} {v['fills']}" for k, v in by.items()),
                    "volume", ", ".join(f"{k} {v['volume_usd']:,.2f} USD" for k, v in by.items()))
    return Panel(tab, title="position and PnL")


def _ms(h: str) -> int:
    return int(h.removesuffix("ms")) if h.removesuffix("ms").isdigit() else 0


def _quotes(snap: Snapshot, spec: MarketSpec) -> Panel:
    m = snap.health.get("maker")
    tab = Table("side", "price", "size", "state", "age", "vs best", box=None, expand=True)
    book = snap.book or {}
    best = {"bid": (book.get("bids") or [[None]])[0][0], "ask": (book.get("asks") or [[None]])[0][0]}
    if m is None:
        return Panel(Text("maker DOWN: no quotes known", style="bold red"), title="our quotes")
    for q in sorted(m.get("quotes") or [], key=lambda q: q.get("side") != "ask"):
        b = best.get(q.get("side") or "")
        vs = "-" if b is None or q.get("price") is None else f"{(q['price'] - b) / b * 1e4:+.1f} bps"
        placed = q.get("placed_ms")
        tab.add_row(q.get("side", "?"), _px(spec, q.get("price")), _sz(spec, q.get("size")), str(q.get("state")),
                    _age(None if not placed else (snap.at_ms - placed) / 1000), vs)
    title = (f"our quotes   book {_px(spec, best['bid'])} / {_px(spec, best['ask'])}   "
             f"mode {m.get('mode', '?')}  engine {m.get('engine', '?')}  vol {m.get('vol_bps', '-')} bps")
    if not m.get("quotes"):
        tab.add_row("-", "no quote resting", "", "", "", "")
    return Panel(tab, title=title)


def _fills_table(snap: Snapshot, spec: MarketSpec) -> Panel:
    tab = Table("age", "source", "side", "price", "size", "fee", "markout now", box=None, expand=True)
    book = snap.book or {}
    bid, ask = (book.get("bids") or [[None]])[0][0], (book.get("asks") or [[None]])[0][0]
    mid = None if bid is None or ask is None else (bid + ask) / 2
    for f in snap.fills:
        px = f.price
        mo = "-" if mid is None else f"{((mid - px) if not f.is_ask else (px - mid)) / px * 1e4:+.1f} bps"
        tab.add_row(_age((snap.at_ms - f.ts_ms) / 1000), source_of(f.client_order_index) or "other",
                    "sell" if f.is_ask else "buy", _px(spec, px), _sz(spec, f.size), f"{f.fee / 1e6:.6f}", mo)
    if not snap.fills:
        tab.add_row("-", "no fill yet" if "redis" not in snap.errors else "redis down", "", "", "", "", "")
    return Panel(tab, title="last fills")


def _venue(snap: Snapshot) -> Panel:
    gw = snap.health.get("gateway") or {}
    feed = snap.health.get("feed") or {}
    t = Text()
    rejects = gw.get("rejects") or {}
    t.append("rejects by code: " + (", ".join(f"{k}: {v}" for k, v in sorted(rejects.items())) or "none"))
    q = gw.get("volume_quota_remaining")
    t.append(f"   volume quota left: {'-' if q is None else q}")
    t.append(f"   last send {gw.get('last_send_latency_ms', '-')} ms" if gw else "   gateway DOWN")
    t.append("\nfeed: ")
    if not feed:
        t.append("DOWN", style="bold red")
    else:
        t.append(f"book {_age(feed.get('book_age_s'))} old, trades {_age(feed.get('trade_age_s'))}")
        acct = feed.get("account") or {}
        ages = acct.get("channel_age_s") or {}
        for ch, st in (acct.get("channels") or {}).items():
            t.append(f"  {ch.split(':')[0]} {st} {_age(ages.get(ch))}",
                     style=None if st == "active" else "bold yellow")
    return Panel(t, title="venue and feed")


# --- the command ---------------------------------------------------------------------------------------
async def watch(settings: Any, *, host: str, offset: int, redis_url: str | None, once: bool, interval_s: float,
                account: int | None) -> int:
    """Draw a frame every ``interval_s`` until Ctrl-C (or one frame with ``once``)."""
    from redis.asyncio import Redis
    from rich.console import Console
    from rich.live import Live

    spec = settings.market_spec
    ports = {n: getattr(settings.ports, n) + offset for n in SERVICES}
    url = redis_url or _offset_redis(settings.env.redis_url, offset)
    redis = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)
    console = Console()
    try:
        async with aiohttp.ClientSession() as http:
            async def frame() -> Group:
                return render(await gather(redis, http, ports, host, spec, account, int(time.time() * 1000)), spec)
            if once:
                console.print(await frame())
                return 0
            with Live(await frame(), console=console, screen=False, auto_refresh=False) as live:
                while True:
                    await asyncio.sleep(interval_s)
                    live.update(await frame(), refresh=True)
    finally:
        await redis.aclose()


def _offset_redis(url: str, offset: int) -> str:
    """``make run --port-offset N`` puts Redis on 6399 + N: follow it when the URL is the default one."""
    default = "redis://127.0.0.1:6399/0"
    return url if offset == 0 or url != default else f"redis://127.0.0.1:{6399 + offset}/0"
