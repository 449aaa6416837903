"""aiohttp shell: owns the clock and the event loop, serves REST under /api/v1 and WS at /stream.

The core (core.Venue) is called synchronously from handlers and from one scheduler task that
wakes at the core's next due time (sequencer latency, synthetic steps, expiries, funding) and
every 50 ms to flush order-book diffs to WebSocket subscribers.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from . import errors as E
from . import wire
from .auth import check_token
from .config import VenueConfig
from . import txlog
from .core import BLOCK_MS, Accepted, Venue
from .faults import Faults
from .flow import TapeEvent, parse_tape
from shared.tiers import TIERS

from .ledger import Account
from .limits import Limiter, ratelimit_message
from .markets import USDC_SCALE, fmt_usdc, parse_fixed
from .stream import Hub
from .txlog import TxRecord
from .txs import Tx, parse_batch, parse_tx

log = logging.getLogger("venue")
JSON = "application/json"


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def jresp(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=JSON)


def eresp(e: E.VenueError) -> web.Response:
    return jresp(e.body(), e.status)


try:  # yarl's C unquoter is ~25x faster than urllib's pure-Python parse_qsl on big tx_infos
    from yarl._quoting_c import _Unquoter as _YarlUnquoter
    _unquote = _YarlUnquoter(qs=False)
except ImportError:  # pragma: no cover - pure-Python yarl
    _unquote = None


def parse_form(text: str) -> dict[str, str]:
    """application/x-www-form-urlencoded -> dict (same result as dict(parse_qsl(text)))."""
    if _unquote is None:
        return dict(parse_qsl(text, keep_blank_values=True))
    out: dict[str, str] = {}
    for part in text.split("&"):
        if part:
            k, _, v = part.partition("=")
            out[_unquote(k.replace("+", " "))] = _unquote(v.replace("+", " "))
    return out


def _page_limit(request: web.Request, most: int = 100) -> int:
    """``limit`` of a paged read: required, 1..``most`` as the SDK declares it."""
    limit = _q_int(request, "limit", required=True) or 0
    if not 1 <= limit <= most:
        raise E.err(E.INVALID_PARAM, "invalid param : limit")
    return limit


def _q_int(request: web.Request, key: str, default: int | None = None, required: bool = False) -> int | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        if required:
            raise E.err(E.INVALID_PARAM, f"invalid param : {key} is required")
        return default
    try:
        return int(raw)
    except ValueError:
        raise E.err(E.INVALID_PARAM, f"invalid param : {key}") from None


def _q_bool(request: web.Request, key: str) -> bool:
    return request.query.get(key, "").lower() in ("1", "true", "yes")



def _paged(key: str, out: list[Any], limit: int, to_json: Callable[[Any], Any], cursor: Callable[[Any], int]) -> web.Response:
    """A page of ``limit`` items; ``out`` holds up to ``limit + 1`` so the extra one tells there is more,
    and ``next_cursor`` is then the last returned item's id (Lighter's cursor pagination)."""
    page = out[:limit]
    resp: dict[str, Any] = {"code": 200, key: [to_json(x) for x in page]}
    if len(out) > limit and page:
        resp["next_cursor"] = str(cursor(page[-1]))
    return jresp(resp)

class VenueServer:
    """Wires the core, the limiter, the faults and the WS hub into one aiohttp application."""

    def __init__(self, cfg: VenueConfig, clock: Callable[[], int] = wall_ms) -> None:
        self.cfg = cfg
        self._base_clock = clock
        self.clock_offset_ms = 0  # POST /admin/clock moves the venue's time forward (never back)
        tapes: dict[int, list[TapeEvent]] = {}
        if cfg.tape_path:
            with open(cfg.tape_path, "rb") as fh:
                from .markets import default_markets
                tapes = parse_tape(fh, {m: mk for m, mk in default_markets().items() if m in cfg.markets})
        self.venue = Venue(cfg, random.Random(cfg.seed), self.clock(), tapes)
        self.limiter = Limiter(cfg.rate_limit, cfg.free_tx_every_ms)
        self.faults = Faults()
        self.hub = Hub(self)
        self.wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started_ms = self.clock()
        for spec in cfg.accounts:
            self.venue.register_account(spec.index, spec.api_key_index, spec.public_key,
                                        parse_fixed(spec.collateral_usdc, 6), self.clock())
        self.app = self._build_app()

    # -- app ------------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        r = app.router
        r.add_get("/", self.h_root)
        r.add_get("/health", self.h_health)
        r.add_get("/info", self.h_info)
        r.add_get("/stream", self.hub.handle)
        get = {
            "orderBooks": self.h_order_books, "orderBookDetails": self.h_order_book_details,
            "orderBookOrders": self.h_order_book_orders, "recentTrades": self.h_recent_trades,
            "trades": self.h_trades, "accountActiveOrders": self.h_active_orders,
            "accountInactiveOrders": self.h_inactive_orders, "accountOrders": self.h_account_orders,
            "account": self.h_account, "accountsByL1Address": self.h_accounts_by_l1,
            "apikeys": self.h_apikeys, "nextNonce": self.h_next_nonce, "exchangeStats": self.h_exchange_stats,
            "candles": self.h_candles, "candlesticks": self.h_candles, "fundings": self.h_fundings,
            "accountLimits": self.h_account_limits, "currentHeight": self.h_height,
            "feeTiers": self.h_fee_tiers, "positionFunding": self.h_position_funding,
            "funding-rates": self.h_funding_rates, "getMakerOnlyApiKeys": self.h_get_maker_only,
            "tx": self.h_tx, "txs": self.h_txs, "blockTxs": self.h_block_txs, "block": self.h_block,
            "blocks": self.h_blocks,
        }
        for name, h in get.items():
            r.add_get(f"/api/v1/{name}", h)
        r.add_post("/api/v1/sendTx", self.h_send_tx)
        r.add_post("/api/v1/sendTxBatch", self.h_send_tx_batch)
        r.add_post("/api/v1/setMakerOnlyApiKeys", self.h_set_maker_only)
        from .admin import add_admin_routes
        add_admin_routes(self, app)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._tasks.append(asyncio.create_task(self._scheduler()))
        self._tasks.append(asyncio.create_task(self.hub.keepalive_loop()))

    async def _on_shutdown(self, app: web.Application) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        await self.hub.close_all(1001, "server shutdown")

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        path = request.path
        if path.startswith("/api/"):
            status = self.faults.take_http(path)
            if status:
                if status == 429:
                    return jresp({"code": E.TOO_MANY_REQUESTS, "message": "Too Many Requests!"}, 429)
                return jresp({"code": E.INTERNAL, "message": "internal server error (injected)"}, status)
        try:
            return await handler(request)
        except E.VenueError as e:
            return eresp(e)
        except web.HTTPNotFound:   # Lighter answers an unknown path in JSON, as every other error
            return jresp({"code": E.NOT_FOUND, "message": f"not found: {path}"}, 404)
        except web.HTTPMethodNotAllowed as e:
            return jresp({"code": E.NOT_FOUND, "message": f"method {e.method} not allowed on {path}"}, 405)

    # -- clock and core driving ----------------------------------------------------------------
    def clock(self) -> int:
        """The venue's time in ms: the injected clock plus the admin offset. Everything that reads time
        (core, REST timestamps, auth deadlines, rate limits, WS frames) goes through here."""
        return self._base_clock() + self.clock_offset_ms

    def now(self) -> int:
        return self.clock()

    def advance_clock(self, ms: int) -> tuple[int, int]:
        """Move the clock forward by ``ms`` and run everything that fell due in order (GTT expiries,
        scheduled cancel-alls, pending txs, funding), pushing the results to WS subscribers. Synthetic
        market steps inside the jump are dropped, as after a stall. Returns (now, steps skipped)."""
        if ms < 0:
            raise ValueError("the venue clock never goes backwards")
        self.clock_offset_ms += ms
        now = self.clock()
        skipped = self.venue.skip_to(now)
        self.run_core(now)
        self.hub.flush_books(now)
        self.wake.set()  # the scheduler recomputes its next wake-up on the new clock
        return now, skipped

    def run_core(self, now_ms: int | None = None) -> None:
        """Advance the core to now and push resulting events to WS subscribers."""
        self.venue.advance(self.clock() if now_ms is None else now_ms)
        self.hub.dispatch()

    async def _scheduler(self) -> None:
        flush_every = self.cfg.book_flush_ms
        next_flush = self.clock() + flush_every
        while True:
            try:
                now = self.clock()
                if now - self.venue.next_step_ms > 60_000:
                    skipped = self.venue.skip_to(now)
                    log.warning("event loop stalled: skipped %d synthetic steps", skipped)
                self.run_core(now)
                if now >= next_flush:
                    self.hub.flush_books(now)
                    next_flush = now + flush_every
                wake_at = min(self.venue.next_wakeup_ms(), next_flush)
                delay = max(0.0, (wake_at - self.clock()) / 1000.0)
                self.wake.clear()
                if delay > 0:
                    try:
                        await asyncio.wait_for(self.wake.wait(), timeout=delay)
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the venue alive; a bug here must not kill the loop
                log.exception("scheduler error")
                await asyncio.sleep(0.05)

    # -- helpers ---------------------------------------------------------------------------
    def rest_limit(self, request: web.Request, endpoint: str, account: int | None = None) -> None:
        if not self.limiter.enabled:
            return
        acct = self.venue.account(account) if account is not None else None
        if acct is not None:
            self.limiter.check_rest(("a", acct.index), acct.tier, endpoint, self.clock())
        else:
            peer = request.remote or "?"
            self.limiter.check_rest(("ip", peer), self.venue.default_tier, endpoint, self.clock())

    def auth_token(self, request: web.Request) -> str | None:
        return request.headers.get("authorization") or request.query.get("auth") or None

    def require_auth(self, request: web.Request, account: int | None) -> None:
        check_token(self.venue, self.auth_token(request), self.clock(),
                    max_ttl_s=self.cfg.max_auth_ttl_s, account=account)

    def market_or_error(self, market_id: int | None):
        m = self.venue.markets.get(market_id) if market_id is not None else None
        if m is None:
            raise E.err(E.INVALID_MARKET)
        return m

    # -- tx submission (shared by REST and WS) ------------------------------------------------
    async def submit(self, txs: list[Tx], endpoint: str, request: web.Request | None) -> tuple[list[Accepted], str, int]:
        """Faults, limits, core acceptance; returns (accepted, ratelimit message, quota left)."""
        now = self.clock()
        acct_i = txs[0].account
        if request is not None:
            self.rest_limit(request, endpoint, acct_i)
        delay = self.faults.take_delay()
        if delay:
            await asyncio.sleep(delay / 1000.0)
            now = self.clock()
        rej = self.faults.take_reject()
        if rej is not None:
            raise rej
        acct = self.venue.account(acct_i)
        if acct is None:
            raise E.err(E.ACCOUNT_NOT_FOUND)
        plan = self.limiter.plan_tx(acct, txs, now)
        accepted = self.venue.submit(txs, now)
        self.limiter.commit_tx(plan, len(txs), now)
        if any(a.exec_ms <= now for a in accepted):
            self.run_core(now)
        else:
            self.hub.dispatch()
            self.wake.set()
        return accepted, plan.message, acct.volume_quota

    # -- REST handlers -------------------------------------------------------------------------
    async def h_root(self, request: web.Request) -> web.Response:
        return jresp({"status": 1, "network_id": 304, "timestamp": self.clock() // 1000})

    async def h_health(self, request: web.Request) -> web.Response:
        v = self.venue
        return jresp({"status": "ok", "uptime_s": (self.clock() - self.started_ms) / 1000.0,
                      "markets": sorted(v.markets), "model": self.cfg.model, "tier": self.cfg.tier,
                      "rate_limit": self.cfg.rate_limit, "txs": v.tx_count,
                      "ws_sessions": len(self.hub.sessions)})

    async def h_info(self, request: web.Request) -> web.Response:
        return jresp({"contract_address": "0x" + "0" * 40})

    # -- tx history and blocks (services/venue/txlog.py) -------------------------------------------
    def _tx_json(self, r: TxRecord) -> dict[str, Any]:
        acct = self.venue.engine.accounts.get(r.tx.account)
        return txlog.tx_json(r, acct.l1_address if acct is not None else "")

    def _block_json(self, height: int) -> dict[str, Any]:
        v = self.venue
        return txlog.block_json(height, v.genesis_ms + height * BLOCK_MS,
                                [self._tx_json(r) for r in v.txlog.block(height)])

    def _height_of(self, by: str, value: str) -> int:
        """A block named by height or commitment; ``tx not found``-style 400 when there is none."""
        h = self.venue.engine.height
        if by in ("height", "block_height"):
            try:
                n = int(value)
            except ValueError:
                raise E.err(E.INVALID_PARAM, "invalid param : value") from None
            if 1 <= n <= h:
                return n
        elif by in ("commitment", "block_commitment"):
            for n in range(h, max(h - 100_000, 0), -1):   # recent blocks only
                if txlog.block_commitment(n) == value:
                    return n
        else:
            raise E.err(E.INVALID_PARAM, "invalid param : by")
        raise E.err(E.NOT_FOUND, "block not found")

    async def h_tx(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "tx")
        self.run_core()
        by, value = request.query.get("by", ""), request.query.get("value", "")
        log = self.venue.txlog
        if by == "hash":
            r = log.get(value.removeprefix("0x"))
        elif by == "sequence_index":
            r = log.by_sequence(int(value)) if value.isdigit() else None
        else:
            raise E.err(E.INVALID_PARAM, "invalid param : by")
        if r is None:
            raise E.err(E.NOT_FOUND, "tx not found")
        return jresp({"code": 200, **self._tx_json(r), "committed_at": r.executed_ms, "verified_at": r.executed_ms})

    async def h_txs(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "txs")
        limit = _page_limit(request)
        self.run_core()
        rows = self.venue.txlog.page(_q_int(request, "index", 0) or 0, limit)
        return jresp({"code": 200, "txs": [self._tx_json(r) for r in rows]})

    async def h_block_txs(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "blockTxs")
        self.run_core()
        h = self._height_of(request.query.get("by", ""), request.query.get("value", ""))
        return jresp({"code": 200, "txs": [self._tx_json(r) for r in self.venue.txlog.block(h)]})

    async def h_block(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "block")
        self.run_core()
        h = self._height_of(request.query.get("by", ""), request.query.get("value", ""))
        return jresp({"code": 200, "total": 1, "blocks": [self._block_json(h)]})

    async def h_blocks(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "blocks")
        limit = _page_limit(request)
        self.run_core()
        h = self.venue.engine.height
        desc = request.query.get("sort", "asc") == "desc"
        start = _q_int(request, "index")
        if desc:
            top = min(h, start if start is not None else h)
            heights = list(range(top, max(top - limit, 0), -1))
        else:
            first = max(start if start is not None else 1, 1)
            heights = list(range(first, min(first + limit, h + 1)))
        return jresp({"code": 200, "total": h, "blocks": [self._block_json(n) for n in heights]})

    async def h_height(self, request: web.Request) -> web.Response:
        self.run_core()
        return jresp({"code": 200, "height": self.venue.engine.height})

    async def h_order_books(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "orderBooks")
        mid = _q_int(request, "market_id")
        v = self.venue
        rows = [wire.market_row(v, m) for k, m in sorted(v.markets.items()) if mid is None or mid == 255 or k == mid]
        if mid is not None and mid != 255 and not rows:
            raise E.err(E.INVALID_MARKET)
        return jresp({"code": 200, "order_books": rows})

    async def h_order_book_details(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "orderBookDetails")
        mid = _q_int(request, "market_id")
        flt = request.query.get("filter", "all")
        self.run_core()
        v = self.venue
        rows = [wire.market_detail(v, m) for k, m in sorted(v.markets.items()) if mid is None or mid == 255 or k == mid]
        if mid is not None and mid != 255 and not rows:
            raise E.err(E.INVALID_MARKET)
        if flt == "spot":
            rows = []
        return jresp({"code": 200, "order_book_details": rows, "spot_order_book_details": []})

    async def h_order_book_orders(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "orderBookOrders")
        m = self.market_or_error(_q_int(request, "market_id", required=True))
        limit = _page_limit(request, 250)
        self.run_core()
        book = self.venue.engine.books[m.market_id]
        asks = book.orders_from_best(True, limit)
        bids = book.orders_from_best(False, limit)
        return jresp({"code": 200, "total_asks": len(asks), "asks": [wire.simple_order_json(o, m) for o in asks],
                      "total_bids": len(bids), "bids": [wire.simple_order_json(o, m) for o in bids]})

    async def h_recent_trades(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "recentTrades")
        m = self.market_or_error(_q_int(request, "market_id", required=True))
        limit = _page_limit(request)
        self.run_core()
        trades = list(self.venue.engine.trades[m.market_id])[-limit:][::-1]
        return jresp({"code": 200, "trades": [wire.trade_json(t, m) for t in trades]})

    async def h_trades(self, request: web.Request) -> web.Response:
        """Account fills (auth), newest first by default, cursor = last trade_id returned."""
        acct_i = _q_int(request, "account_index")
        self.rest_limit(request, "trades", acct_i)
        limit = _page_limit(request)
        if request.query.get("sort_by") is None:
            raise E.err(E.INVALID_PARAM, "invalid param : sort_by is required")
        mid = _q_int(request, "market_id")
        if mid == 255:
            mid = None
        order_index = _q_int(request, "order_index")
        if request.query.get("order_index_str"):
            order_index = int(request.query["order_index_str"])
        desc = request.query.get("sort_dir", "desc") != "asc"
        cursor = request.query.get("cursor")
        frm = _q_int(request, "from")
        role = request.query.get("role", "all")
        ask_filter = _q_int(request, "ask_filter")
        self.run_core()
        v = self.venue
        if acct_i is not None:
            self.require_auth(request, acct_i)
            if v.account(acct_i) is None:
                raise E.err(E.ACCOUNT_NOT_FOUND)
            source = list(v.engine.account_trades.get(acct_i, ()))
        else:
            source = [t for mk in sorted(v.markets) for t in v.engine.trades[mk]]
            source.sort(key=lambda t: t.trade_id)
        out = []
        for t in (reversed(source) if desc else source):
            if mid is not None and t.market_id != mid:
                continue
            if order_index is not None and order_index not in (t.ask_id, t.bid_id):
                continue
            if cursor is not None and (t.trade_id >= int(cursor) if desc else t.trade_id <= int(cursor)):
                continue
            if frm is not None and (t.timestamp_ms > frm if desc else t.timestamp_ms < frm):
                continue
            if acct_i is not None and role != "all":
                maker = (t.ask_account if t.is_maker_ask else t.bid_account) == acct_i
                if (role == "maker") != maker:
                    continue
            if acct_i is not None and ask_filter in (0, 1):
                is_ask_side = t.ask_account == acct_i
                if is_ask_side != bool(ask_filter):
                    continue
            out.append(t)
            if len(out) > limit:
                break
        return _paged("trades", out, limit, lambda t: wire.trade_json(t, v.markets[t.market_id]), lambda t: t.trade_id)

    async def h_active_orders(self, request: web.Request) -> web.Response:
        acct_i = _q_int(request, "account_index", required=True)
        self.rest_limit(request, "accountActiveOrders", acct_i)
        self.require_auth(request, acct_i)
        mid = _q_int(request, "market_id")
        if mid == 255:
            mid = None
        self.run_core()
        v = self.venue
        orders = [o for o in v.engine.account_orders.get(acct_i, {}).values() if mid is None or o.market_id == mid]
        orders.sort(key=lambda o: o.order_index)
        return jresp({"code": 200, "orders": [wire.order_json(o, v.markets[o.market_id]) for o in orders]})

    async def h_inactive_orders(self, request: web.Request) -> web.Response:
        acct_i = _q_int(request, "account_index", required=True)
        self.rest_limit(request, "accountInactiveOrders", acct_i)
        self.require_auth(request, acct_i)
        limit = _page_limit(request)
        mid = _q_int(request, "market_id")
        if mid == 255:
            mid = None
        ask_filter = _q_int(request, "ask_filter")
        cursor = request.query.get("cursor")
        between = request.query.get("between_timestamps")
        lo = hi = None
        if between:
            try:
                a, b = between.split("-")
                lo, hi = int(a), int(b)
            except ValueError:
                raise E.err(E.INVALID_PARAM, "invalid param : between_timestamps") from None
        self.run_core()
        v = self.venue
        out = []
        for o in reversed(v.engine.history.get(acct_i, ())):
            if mid is not None and o.market_id != mid:
                continue
            if ask_filter in (0, 1) and o.is_ask != bool(ask_filter):
                continue
            if cursor is not None and o.order_index >= int(cursor):
                continue
            if lo is not None and not (lo <= o.updated_ms // 1000 <= hi):
                continue
            out.append(o)
            if len(out) > limit:
                break
        return _paged("orders", out, limit, lambda o: wire.order_json(o, v.markets[o.market_id]), lambda o: o.order_index)

    async def h_account_orders(self, request: web.Request) -> web.Response:
        acct_i = _q_int(request, "account_index")
        self.rest_limit(request, "accountOrders", acct_i)
        token = self.auth_token(request)
        info = check_token(self.venue, token, self.clock(), max_ttl_s=self.cfg.max_auth_ttl_s, account=acct_i)
        acct_i = info.account
        raw = request.query.get("client_order_indexes", "")
        try:
            cois = [int(x) for x in raw.split(",") if x.strip()]
        except ValueError:
            raise E.err(E.INVALID_PARAM, "invalid param : client_order_indexes") from None
        if not cois or len(cois) > 20:
            raise E.err(E.INVALID_PARAM, "invalid param : client_order_indexes")
        self.run_core()
        v = self.venue
        want = set(cois)
        found: dict[int, Any] = {}
        for o in v.engine.account_orders.get(acct_i, {}).values():
            if o.client_order_index in want:
                found[o.order_index] = o
        for o in v.engine.history.get(acct_i, ()):
            if o.client_order_index in want:
                found[o.order_index] = o
        orders = sorted(found.values(), key=lambda o: o.order_index)
        return jresp({"code": 200, "orders": [wire.order_json(o, v.markets[o.market_id]) for o in orders]})

    def _account_by(self, by: str, value: str) -> list[Account]:
        v = self.venue
        if by == "index":
            try:
                a = v.account(int(value))
            except ValueError:
                raise E.err(E.INVALID_PARAM, "invalid param : value") from None
            return [a] if a is not None else []
        if by == "l1_address":
            value = value.lower()
            return [a for a in v.engine.accounts.values() if not a.synthetic and a.l1_address == value]
        raise E.err(E.INVALID_PARAM, "invalid param : by")

    async def h_account(self, request: web.Request) -> web.Response:
        by = request.query.get("by", "")
        value = request.query.get("value", "")
        accts = self._account_by(by, value)
        self.rest_limit(request, "account", accts[0].index if accts else None)
        if not accts:
            raise E.err(E.ACCOUNT_NOT_FOUND)
        self.run_core()
        return jresp({"code": 200, "total": len(accts), "next_cursor": "",
                      "accounts": [wire.detailed_account_json(self.venue, a) for a in accts]})

    async def h_accounts_by_l1(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "accountsByL1Address")
        l1 = request.query.get("l1_address", "")
        accts = self._account_by("l1_address", l1)
        if not accts:
            raise E.err(E.ACCOUNT_NOT_FOUND)
        return jresp({"code": 200, "l1_address": l1.lower(),
                      "sub_accounts": [wire.account_base_json(self.venue, a) for a in accts]})

    async def h_apikeys(self, request: web.Request) -> web.Response:
        acct_i = _q_int(request, "account_index", required=True)
        key = _q_int(request, "api_key_index", 255)
        self.rest_limit(request, "apikeys", acct_i)
        a = self.venue.account(acct_i or 0)
        if a is None:
            raise E.err(E.ACCOUNT_NOT_FOUND)
        keys = [{"account_index": a.index, "api_key_index": k, "nonce": a.nonces.get(k, 1),
                 "public_key": pk, "transaction_time": a.created_ms * 1000}
                for k, pk in sorted(a.api_keys.items()) if key == 255 or k == key]
        return jresp({"code": 200, "api_keys": keys})

    def _private_account(self, request: web.Request, endpoint: str) -> Account:
        """``account_index`` of an auth-gated read: rate-limited, token checked, the account known."""
        acct_i = _q_int(request, "account_index", required=True)
        self.rest_limit(request, endpoint, acct_i)
        self.require_auth(request, acct_i)
        a = self.venue.account(acct_i or 0)
        if a is None:
            raise E.err(E.ACCOUNT_NOT_FOUND)
        return a

    async def h_get_maker_only(self, request: web.Request) -> web.Response:
        a = self._private_account(request, "getMakerOnlyApiKeys")
        return jresp({"code": 200, "api_key_indexes": sorted(a.maker_only_keys)})

    async def h_set_maker_only(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        try:
            acct_i = int(form.get("account_index", ""))
        except ValueError:
            raise E.err(E.INVALID_PARAM, "invalid param : account_index") from None
        self.rest_limit(request, "setMakerOnlyApiKeys", acct_i)
        info = check_token(self.venue, self.auth_token(request), self.clock(),
                           max_ttl_s=self.cfg.max_auth_ttl_s, account=acct_i)
        if info.read_only:
            raise E.err(E.INVALID_AUTH, "invalid auth: a read-only token cannot change api keys", 401)
        try:
            keys = orjson.loads(form.get("api_key_indexes", ""))
        except orjson.JSONDecodeError:
            keys = None
        if not isinstance(keys, list) or not all(type(k) is int for k in keys):
            raise E.err(E.INVALID_PARAM, "invalid param : api_key_indexes (a JSON array of key indexes, e.g. [4,5])")
        self.venue.set_maker_only_keys(acct_i, keys, self.clock())
        return jresp({"code": 200, "message": "ok"})

    async def h_next_nonce(self, request: web.Request) -> web.Response:
        acct_i = _q_int(request, "account_index", required=True)
        key = _q_int(request, "api_key_index", required=True)
        self.rest_limit(request, "nextNonce", acct_i)
        a = self.venue.account(acct_i or 0)
        if a is None:
            raise E.err(E.ACCOUNT_NOT_FOUND)
        if key not in a.api_keys:
            raise E.err(E.API_KEY_NOT_FOUND)
        return jresp({"code": 200, "nonce": a.nonces.get(key, 1)})

    async def _form(self, request: web.Request) -> dict[str, str]:
        ctype = request.content_type
        body = await request.read()
        if ctype == "application/json":
            try:
                obj = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise E.err(E.INVALID_PARAM, "invalid param : body") from None
            return {k: (v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in obj.items()}
        if ctype.startswith("multipart/"):
            form = await request.post()
            return {k: str(v) for k, v in form.items()}
        return parse_form(body.decode())

    async def h_send_tx(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        try:
            tx_type = int(form.get("tx_type", ""))
        except ValueError:
            raise E.err(E.INVALID_PARAM, "invalid param : tx_type") from None
        info = form.get("tx_info")
        if not info:
            raise E.err(E.INVALID_PARAM, "invalid param : tx_info")
        tx = parse_tx(tx_type, info)
        accepted, msg, quota = await self.submit([tx], "sendTx", request)
        a = accepted[0]
        return jresp({"code": 200, "message": ratelimit_message(msg),
                      "tx_hash": a.tx_hash, "predicted_execution_time_ms": a.exec_ms,
                      "volume_quota_remaining": quota})

    async def h_send_tx_batch(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        txs = parse_batch(form.get("tx_types", ""), form.get("tx_infos", ""), self.cfg.max_batch)
        accepted, msg, quota = await self.submit(txs, "sendTxBatch", request)
        return jresp({"code": 200, "message": ratelimit_message(msg),
                      "tx_hash": [a.tx_hash for a in accepted],
                      "predicted_execution_time_ms": max(a.exec_ms for a in accepted),
                      "volume_quota_remaining": quota})

    async def h_exchange_stats(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "exchangeStats")
        self.run_core()
        v = self.venue
        rows, usd, n = [], 0.0, 0
        for _, m in sorted(v.markets.items()):
            st = wire.daily(v, m)
            rows.append({"symbol": m.symbol, "last_trade_price": st["last"], "daily_trades_count": st["n"],
                         "daily_base_token_volume": st["base"], "daily_quote_token_volume": st["quote"],
                         "daily_price_change": st["change"]})
            usd += st["quote"]
            n += st["n"]
        return jresp({"code": 200, "total": len(rows), "order_book_stats": rows,
                      "daily_usd_volume": usd, "daily_trades_count": n})

    async def h_candles(self, request: web.Request) -> web.Response:
        from .candles import RESOLUTIONS_MS
        self.rest_limit(request, "candles")
        m = self.market_or_error(_q_int(request, "market_id", required=True))
        res = request.query.get("resolution", "")
        if res not in RESOLUTIONS_MS:
            raise E.err(E.INVALID_PARAM, "invalid param : resolution")
        start = _q_int(request, "start_timestamp", required=True) or 0
        end = _q_int(request, "end_timestamp", required=True) or 0
        count = _q_int(request, "count_back", required=True) or 0
        to_end = _q_bool(request, "set_timestamp_to_end")
        self.run_core()
        res_ms = RESOLUTIONS_MS[res]
        bars = self.venue.stats[m.market_id].candles(res_ms, start, end, min(max(count, 0), 500) or 500)
        pf, sf = m.price_float, m.size_float
        c = []
        for b in bars:
            d: dict[str, Any] = {"t": b.t + (res_ms if to_end else 0), "o": pf(b.o), "h": pf(b.h), "l": pf(b.l),
                                 "c": pf(b.c), "v": sf(b.v), "V": b.q / USDC_SCALE, "i": b.last_id}
            c.append(d)
        return jresp({"code": 200, "r": res, "c": c})

    async def h_fundings(self, request: web.Request) -> web.Response:
        self.rest_limit(request, "fundings")
        m = self.market_or_error(_q_int(request, "market_id", required=True))
        res = request.query.get("resolution", "1h")
        start = _q_int(request, "start_timestamp", required=True) or 0
        end = _q_int(request, "end_timestamp", required=True) or 0
        count = _q_int(request, "count_back", required=True) or 0
        self.run_core()
        # timestamps may be given in seconds or ms; compare in ms
        if end < 10**11:
            start, end = start * 1000, end * 1000
        recs = [r for r in self.venue.fundings[m.market_id] if start <= r.timestamp_ms <= end]
        if count > 0:
            recs = recs[-count:]
        out = [{"timestamp": r.timestamp_ms // 1000, "value": m.fmt_price(r.mark * abs(r.rate_ppm) // 1_000_000),
                "rate": wire.fmt_fixed(abs(r.rate_ppm), 4), "direction": "long" if r.rate_ppm >= 0 else "short"}
               for r in recs]
        return jresp({"code": 200, "resolution": res, "fundings": out})

    async def h_funding_rates(self, request: web.Request) -> web.Response:
        v = self.venue
        rows = [{"market_id": k, "exchange": "lighter", "symbol": m.symbol,
                 "rate": v.current_funding_ppm[k] / 1e6} for k, m in sorted(v.markets.items())]
        return jresp({"code": 200, "funding_rates": rows})

    async def h_position_funding(self, request: web.Request) -> web.Response:
        acct_i = _q_int(request, "account_index", required=True)
        self.rest_limit(request, "positionFunding", acct_i)
        self.require_auth(request, acct_i)
        limit = _q_int(request, "limit", required=True) or 0
        v = self.venue
        recs = list(v.position_fundings.get(acct_i or 0, ()))[::-1][: max(1, min(limit, 100))]
        return jresp({"code": 200, "position_fundings": [
            {"timestamp": r.timestamp_ms // 1000, "market_id": r.market_id, "funding_id": r.funding_id,
             "change": fmt_usdc(r.change), "rate": wire.fmt_fixed(r.rate_ppm, 4),
             "position_size": v.markets[r.market_id].fmt_size(r.position_size),
             "position_side": r.side, "discount": "0"} for r in recs]})

    async def h_account_limits(self, request: web.Request) -> web.Response:
        a = self._private_account(request, "accountLimits")
        return jresp({"code": 200, "max_llp_percentage": 0, "user_tier": a.tier.name,
                      "can_create_public_pool": False, "max_llp_amount": "0",
                      "current_maker_fee_tick": a.tier.maker_fee, "current_taker_fee_tick": a.tier.taker_fee,
                      "effective_lit_stakes": "0", "leased_lit": "0", "user_tier_name": a.tier.name,
                      "bo_user_tier_name": "", "bo_fee_rate": 1.0})

    async def h_fee_tiers(self, request: web.Request) -> web.Response:
        tiers = [{"name": t.name, "level": i, "maker_fee_ticks": t.maker_fee, "taker_fee_ticks": t.taker_fee,
                  "required_lit_stakes": 0, "required_volume": 0} for i, t in enumerate(TIERS.values())]
        return jresp({"user_tiers": tiers, "bo_tiers": [], "staking_tiers": []})


def make_app(cfg: VenueConfig, clock: Callable[[], int] = wall_ms) -> tuple[web.Application, VenueServer]:
    srv = VenueServer(cfg, clock)
    return srv.app, srv
