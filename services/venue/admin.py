"""/admin routes: funded accounts, state dump, fault injection, model switching, clock advance.

Off unless --admin / VENUE_ADMIN=1 (404), and only for loopback peers (403).
"""
from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from . import errors as E
from . import wire
from .faults import apply_fault
from shared.tiers import TIERS
from .markets import fmt_usdc, parse_fixed

if TYPE_CHECKING:
    from .server import VenueServer

MAX_ADVANCE_MS = 366 * 86_400_000  # a year: more is a unit mistake (seconds or microseconds)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def _loopback(request: web.Request) -> bool:
    peer = request.remote
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        return False


def add_admin_routes(srv: VenueServer, app: web.Application) -> None:
    def guard(h: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            if not srv.cfg.admin:
                return _json({"code": 404, "message": "not found"}, 404)
            if not _loopback(request):
                return _json({"code": 403, "message": "admin is loopback only"}, 403)
            try:
                return await h(request)
            except (ValueError, KeyError, TypeError) as e:
                return _json({"code": 400, "message": str(e)}, 400)
            except E.VenueError as e:
                return _json(e.body(), e.status)
        return wrapped

    async def body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        obj = orjson.loads(raw) if raw else {}
        if not isinstance(obj, dict):
            raise ValueError("body must be a JSON object")
        return obj

    async def accounts(request: web.Request) -> web.Response:
        b = await body(request)
        v = srv.venue
        idx = b.get("account_index")
        if idx is None:
            used = [a for a in v.engine.accounts if a >= 100]
            idx = max(used, default=99) + 1
        idx = int(idx)
        key = int(b["api_key_index"])
        if not 0 <= key <= 254:
            raise ValueError("api_key_index must be 0..254")
        pk = str(b["public_key"]).lower()
        pk = pk[2:] if pk.startswith("0x") else pk
        if not pk or any(c not in "0123456789abcdef" for c in pk):
            raise ValueError("public_key must be hex")
        coll = b.get("collateral")
        tier = b.get("tier")
        if tier is not None and tier not in TIERS:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}")
        acct = v.register_account(idx, key, pk, parse_fixed(str(coll), 6) if coll is not None else
                                  (None if idx in v.engine.accounts else 1000 * 10**6), srv.clock(), tier)
        srv.hub.dispatch()
        return _json({"account_index": acct.index, "l1_address": acct.l1_address})

    async def state(request: web.Request) -> web.Response:
        srv.run_core()
        v = srv.venue
        eng = v.engine
        orders = []
        for idx, acct in sorted(eng.accounts.items()):
            if acct.synthetic:
                continue
            seen = {}
            for o in eng.history.get(idx, ()):
                seen[o.order_index] = o
            for o in eng.account_orders.get(idx, {}).values():
                seen[o.order_index] = o
            orders.extend(wire.order_json(o, v.markets[o.market_id]) for o in sorted(seen.values(), key=lambda o: o.order_index))
        trades = []
        seen_t: set[int] = set()
        for dq in eng.account_trades.values():
            for t in dq:
                if t.trade_id not in seen_t:
                    seen_t.add(t.trade_id)
                    trades.append(t)
        trades.sort(key=lambda t: t.trade_id)
        accounts = {}
        nonces = {}
        for idx, acct in sorted(eng.accounts.items()):
            if acct.synthetic:
                continue
            accounts[str(idx)] = {
                "collateral": fmt_usdc(acct.collateral), "tier": acct.tier.name, "l1_address": acct.l1_address,
                "volume_quota": acct.volume_quota,
                "positions": {str(m): {"size": v.markets[m].fmt_size(p.size), "entry_quote": fmt_usdc(p.entry_quote),
                                       "realized_pnl": fmt_usdc(p.realized_pnl)}
                              for m, p in sorted(acct.positions.items()) if m in v.markets},
            }
            for k, n in sorted(acct.nonces.items()):
                nonces[f"{idx}:{k}"] = n
        models = {str(m): {"model": sm.regime.name, "mid": v.markets[m].fmt_price(sm.mark())}
                  for m, sm in sorted(v.flow.items())}
        return _json({"orders": orders, "trades": [wire.trade_json(t, v.markets[t.market_id]) for t in trades],
                      "accounts": accounts, "nonces": nonces, "models": models, "now_ms": v.now_ms,
                      "height": eng.height, "tx_count": v.tx_count})

    async def fault_post(request: web.Request) -> web.Response:
        b = await body(request)
        kind = b.get("kind")
        now = srv.clock()
        if kind == "drop_ws":
            n = await srv.hub.close_all(1011, "injected drop")
            return _json({"kind": kind, "closed": n})
        if kind == "drop_reduce_only":
            srv.venue.faults.drop_reduce_only += int(b.get("count", 1))
            return _json({"kind": kind})
        if kind == "price_jump":
            srv.run_core(now)
            srv.venue.price_jump(int(b["market_id"]), float(b["bps"]))
            return _json({"kind": kind})
        if kind == "cross_book":   # a phantom bid at the best ask, withdrawn after `seconds`
            mid = int(b["market_id"])
            srv.run_core(now)
            srv.hub.flush_books(now)
            ask = srv.venue.engine.books[mid].best_ask_level()
            if ask is None:
                raise ValueError("no ask to cross")
            price = ask.price
            if not srv.hub.inject_levels(mid, now, [(price, 1)], []):
                raise ValueError(f"nobody subscribes to order_book/{mid}")
            asyncio.get_running_loop().call_later(float(b.get("seconds", 2)), lambda: srv.hub.inject_levels(
                mid, srv.clock(), [(price, 0)], []))
            return _json({"kind": kind, "price": srv.venue.markets[mid].fmt_price(price)})
        return _json(apply_fault(srv.faults, b, now))

    async def fault_delete(request: web.Request) -> web.Response:
        srv.faults.clear()
        srv.venue.faults.drop_reduce_only = 0
        return _json({"cleared": True})

    async def model(request: web.Request) -> web.Response:
        b = await body(request)
        name = str(b.pop("model"))
        mids = [int(b.pop("market_id"))] if "market_id" in b else sorted(srv.venue.markets)
        srv.run_core()
        params = {k: float(x) for k, x in b.items() if isinstance(x, (int, float)) and not isinstance(x, bool)}
        out = {str(m): srv.venue.set_model(m, name, params) for m in mids}
        return _json({"models": out})

    async def model_get(request: web.Request) -> web.Response:
        v = srv.venue
        return _json({"models": {str(m): {"model": sm.regime.name, "params": {k: getattr(sm.p, k) for k in sm.p.__slots__}}
                                 for m, sm in sorted(v.flow.items())}})

    async def clock_get(request: web.Request) -> web.Response:
        return _json({"now_ms": srv.clock(), "offset_ms": srv.clock_offset_ms})

    async def clock_post(request: web.Request) -> web.Response:
        b = await body(request)
        ms = b.get("advance_ms")
        if isinstance(ms, bool) or not isinstance(ms, int):
            raise ValueError("advance_ms must be an integer number of milliseconds")
        if not 0 <= ms <= MAX_ADVANCE_MS:
            raise ValueError(f"advance_ms must be 0..{MAX_ADVANCE_MS} (the clock never goes backwards)")
        now, skipped = srv.advance_clock(ms)
        return _json({"now_ms": now, "offset_ms": srv.clock_offset_ms, "advanced_ms": ms, "skipped_steps": skipped})

    r = app.router
    r.add_post("/admin/accounts", guard(accounts))
    r.add_get("/admin/state", guard(state))
    r.add_post("/admin/fault", guard(fault_post))
    r.add_delete("/admin/fault", guard(fault_delete))
    r.add_post("/admin/model", guard(model))
    r.add_get("/admin/model", guard(model_get))
    r.add_get("/admin/clock", guard(clock_get))
    r.add_post("/admin/clock", guard(clock_post))
