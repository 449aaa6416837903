"""WebSocket /stream: sessions, subscriptions, Lighter frame shapes and fan-out.

Subscriptions use "/" (order_book/0, account_orders/0/123); frames carry ":" (order_book:0,
account_orders:0). Each session has an outbound queue drained by its own writer task, so a slow
reader never blocks the venue; a reader more than `MAX_QUEUE` frames behind is disconnected.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from . import errors as E
from . import wire
from .auth import check_token
from .limits import ratelimit_message
from .txs import parse_batch, parse_tx

if TYPE_CHECKING:
    from .server import VenueServer

log = logging.getLogger("venue.ws")
MAX_QUEUE = 5000
MAX_SUBS_PER_CONN = 100  # Lighter docs (rate-limits page)
MAX_MSGS_PER_MIN = 200  # client messages per minute, jsonapi/sendtx excluded
PUBLIC_MARKET = ("order_book", "ticker", "trade", "market_stats")
ACCOUNT_PRIVATE = ("account_all_orders", "account_all_trades", "account_all_positions", "account_all_assets",
                   "account_orders", "account_tx")
ACCOUNT_PUBLIC = ("account_all", "user_stats")


@dataclass(eq=False)
class Session:
    ws: web.WebSocketResponse
    sid: str
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    subs: set[str] = field(default_factory=set)
    last_recv: float = field(default_factory=time.monotonic)  # transport idle timer: real time, not venue time
    msg_times: deque[int] = field(default_factory=deque)  # venue ms of recent client messages
    writer: asyncio.Task[None] | None = None

    overflow: bool = False

    def send(self, text: str) -> None:
        if self.overflow:
            return
        if self.queue.qsize() >= MAX_QUEUE:  # slow reader: Lighter disconnects these too
            self.overflow = True
            asyncio.get_running_loop().create_task(self.ws.close(code=1008, message=b"slow reader"))
            return
        self.queue.put_nowait(text)


@dataclass(slots=True)
class Channel:
    key: str  # normalized subscription key, e.g. "account_orders/0/5"
    kind: str
    frame: str  # channel name in frames, e.g. "account_orders:0"
    market: int | None = None
    account: int | None = None


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class Hub:
    def __init__(self, srv: VenueServer) -> None:
        self.srv = srv
        self.sessions: set[Session] = set()
        self.channels: dict[str, set[Session]] = {}
        self.by_account: dict[int, set[str]] = {}  # account -> subscribed channel keys
        self.offset = 1000
        self.sent_nonce: dict[int, int] = {}
        self.last_bbo: dict[int, tuple] = {}
        self.last_height = 0
        self.last_stats_ms = 0

    # -- channel parsing ------------------------------------------------------------------
    def parse_channel(self, raw: Any) -> Channel:
        if not isinstance(raw, str) or not raw:
            raise E.err(E.WS_INVALID_CHANNEL, f"Invalid Channel:  ({raw})")
        parts = raw.replace(":", "/").split("/")
        kind, args = parts[0], parts[1:]
        v = self.srv.venue
        bad = E.err(E.WS_INVALID_CHANNEL, f"Invalid Channel:  ({raw})")
        try:
            nums = [int(a) for a in args if a != "all"]
        except ValueError:
            raise bad from None
        if kind == "height" and not args:
            return Channel("height", kind, "height")
        if kind == "market_stats" and args == ["all"]:
            return Channel("market_stats/all", kind, "market_stats:all")
        if kind in PUBLIC_MARKET and len(nums) == 1 and len(args) == 1:
            if nums[0] not in v.markets:
                raise bad
            return Channel(f"{kind}/{nums[0]}", kind, f"{kind}:{nums[0]}", market=nums[0])
        if kind in ACCOUNT_PRIVATE + ACCOUNT_PUBLIC and kind != "account_orders" and len(nums) == 1 and len(args) == 1:
            return Channel(f"{kind}/{nums[0]}", kind, f"{kind}:{nums[0]}", account=nums[0])
        if kind == "account_orders" and len(nums) == 2 and len(args) == 2:
            if nums[0] not in v.markets:
                raise bad
            return Channel(f"account_orders/{nums[0]}/{nums[1]}", kind, f"account_orders:{nums[0]}",
                           market=nums[0], account=nums[1])
        raise bad

    # -- connection -----------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False, max_msg_size=4 * 1024 * 1024, compress=True)
        await ws.prepare(request)
        s = Session(ws, str(uuid.uuid4()))
        self.sessions.add(s)
        s.writer = asyncio.create_task(self._writer(s))
        s.send(_dumps({"session_id": s.sid, "type": "connected"}))
        try:
            async for msg in ws:
                s.last_recv = time.monotonic()
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(s, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self._on_text(s, msg.data.decode(errors="replace"))
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            self._drop(s)
            s.queue.put_nowait(None)
            if s.writer is not None:
                s.writer.cancel()
        return ws

    async def _writer(self, s: Session) -> None:
        try:
            while True:
                text = await s.queue.get()
                if text is None:
                    await s.ws.close(code=1008, message=b"slow reader")
                    return
                await s.ws.send_str(text)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return
        except Exception:  # pragma: no cover - defensive
            log.exception("ws writer")

    def _drop(self, s: Session) -> None:
        self.sessions.discard(s)
        for key in list(s.subs):
            self._unsub(s, key)

    def _unsub(self, s: Session, key: str) -> None:
        s.subs.discard(key)
        subs = self.channels.get(key)
        if subs is not None:
            subs.discard(s)
            if not subs:
                del self.channels[key]
                for acct, keys in list(self.by_account.items()):
                    keys.discard(key)
                    if not keys:
                        del self.by_account[acct]

    async def close_all(self, code: int = 1001, reason: str = "going away") -> int:
        n = 0
        for s in list(self.sessions):
            n += 1
            try:
                await s.ws.close(code=code, message=reason.encode())
            except Exception:
                pass
            self._drop(s)
        return n

    async def keepalive_loop(self) -> None:
        idle = self.srv.cfg.ws_idle_timeout_s
        ping_every = self.srv.cfg.ws_server_ping_s
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, max(0.05, idle / 4)))
            now = time.monotonic()
            for s in list(self.sessions):
                if now - s.last_recv > idle:
                    try:
                        await s.ws.close(code=1008, message=b"idle timeout")
                    except Exception:
                        pass
                    self._drop(s)
            if ping_every > 0 and now - last_ping >= ping_every:
                last_ping = now
                for s in self.sessions:
                    s.send('{"type":"ping"}')

    # -- inbound ------------------------------------------------------------------------------
    def _error(self, s: Session, e: E.VenueError, msg_id: Any = None) -> None:
        frame: dict[str, Any] = {"error": {"code": e.code, "message": e.message}}
        if msg_id is not None:
            frame["id"] = msg_id
        s.send(_dumps(frame))

    async def _on_text(self, s: Session, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._error(s, E.err(E.WS_INVALID_JSON))
            return
        if not isinstance(msg, dict):
            self._error(s, E.err(E.WS_INVALID_JSON))
            return
        t = msg.get("type")
        if self.srv.cfg.rate_limit and t not in ("jsonapi/sendtx", "jsonapi/sendtxbatch"):
            now = self.srv.clock()  # a rate limit: venue time (an /admin/clock jump empties the window)
            q = s.msg_times
            while q and q[0] <= now - 60_000:
                q.popleft()
            if len(q) >= MAX_MSGS_PER_MIN:
                self._error(s, E.err(E.WS_TOO_MANY_MESSAGES))
                return
            q.append(now)
        try:
            if t == "ping":
                s.send('{"type":"pong"}')
            elif t == "pong":
                pass
            elif t == "subscribe":
                self._subscribe(s, msg)
            elif t == "unsubscribe":
                ch = self.parse_channel(msg.get("channel"))
                if ch.key not in s.subs:
                    raise E.err(E.WS_NOT_SUBSCRIBED, f"Not Subscribed to : {ch.frame}")
                self._unsub(s, ch.key)
                s.send(_dumps({"type": "unsubscribed", "channel": ch.frame}))
            elif t in ("jsonapi/sendtx", "jsonapi/sendtxbatch"):
                await self._send_tx(s, t, msg.get("data"))
            else:
                raise E.err(E.WS_INVALID_TYPE, f"Invalid Type: {t}")
        except E.VenueError as e:
            self._error(s, e)

    async def _send_tx(self, s: Session, t: str, data: Any) -> None:
        if not isinstance(data, dict):
            self._error(s, E.err(E.INVALID_PARAM, "invalid param : data"))
            return
        msg_id = data.get("id")
        try:
            if t == "jsonapi/sendtx":
                tx_type = data.get("tx_type")
                if isinstance(tx_type, str) and tx_type.isdigit():
                    tx_type = int(tx_type)
                if type(tx_type) is not int:
                    raise E.err(E.INVALID_PARAM, "invalid param : tx_type")
                txs = [parse_tx(tx_type, data.get("tx_info") or "")]
                endpoint = "sendTx"
            else:
                types, infos = data.get("tx_types"), data.get("tx_infos")
                txs = parse_batch(types if isinstance(types, str) else _dumps(types),
                                  infos if isinstance(infos, str) else _dumps(infos), self.srv.cfg.max_batch)
                endpoint = "sendTxBatch"
            accepted, ratelimit, quota = await self.srv.submit(txs, endpoint, None)
        except E.VenueError as e:
            self._error(s, e, msg_id)
            return
        reply: dict[str, Any] = {"code": 200, "message": ratelimit_message(ratelimit),
                                 "tx_hash": accepted[0].tx_hash if t == "jsonapi/sendtx" else [a.tx_hash for a in accepted],
                                 "predicted_execution_time_ms": max(a.exec_ms for a in accepted),
                                 "volume_quota_remaining": quota}
        if msg_id is not None:
            reply["id"] = msg_id
        s.send(_dumps(reply))

    def _subscribe(self, s: Session, msg: dict[str, Any]) -> None:
        ch = self.parse_channel(msg.get("channel"))
        srv = self.srv
        v = srv.venue
        if ch.key in s.subs:
            raise E.err(E.WS_ALREADY_SUBSCRIBED, f"Already Subscribed to : {ch.frame}")
        if srv.cfg.rate_limit and len(s.subs) >= MAX_SUBS_PER_CONN:
            raise E.err(E.TOO_MANY_SUBSCRIPTIONS)
        if ch.account is not None:
            frame_name = f"{ch.kind}:{ch.account}" if ch.kind != "account_orders" else f"account_orders:{ch.market}:{ch.account}"
            token = msg.get("auth")
            if ch.kind in ACCOUNT_PRIVATE or token:
                check_token(v, token if isinstance(token, str) else None, srv.clock(),
                            max_ttl_s=srv.cfg.max_auth_ttl_s, channel=frame_name, account=ch.account)
            if v.account(ch.account) is None:
                raise E.err(E.WS_INVALID_CHANNEL, f"Invalid Channel:  ({msg.get('channel')})")
        srv.run_core()
        if ch.kind == "order_book":
            self._flush_market(ch.market, srv.clock(), force=True)  # snapshot == last sent nonce
        elif ch.kind == "height":
            self.last_height = v.engine.height
        s.subs.add(ch.key)
        self.channels.setdefault(ch.key, set()).add(s)
        if ch.account is not None:
            self.by_account.setdefault(ch.account, set()).add(ch.key)
        s.send(_dumps(self.snapshot(ch)))

    # -- frames -------------------------------------------------------------------------------
    def snapshot(self, ch: Channel) -> dict[str, Any]:
        srv = self.srv
        v = srv.venue
        now = srv.clock()
        typ = f"subscribed/{ch.kind}"
        if ch.kind == "order_book":
            m = v.markets[ch.market]
            book = v.engine.books[ch.market]
            self.offset += 1
            return {"channel": ch.frame, "offset": self.offset,
                    "order_book": {"code": 0, "asks": wire.levels_json(m, book.levels(True)),
                                   "bids": wire.levels_json(m, book.levels(False)), "offset": self.offset,
                                   "nonce": book.nonce, "begin_nonce": 0, "last_updated_at": now * 1000},
                    "timestamp": now, "last_updated_at": now * 1000, "type": typ}
        if ch.kind == "ticker":
            return self._ticker_frame(ch.market, now, typ)
        if ch.kind == "trade":
            m = v.markets[ch.market]
            trades = list(v.engine.trades[ch.market])[-50:]
            return {"channel": ch.frame, "nonce": v.engine.books[ch.market].nonce,
                    "trades": [wire.trade_json(t, m) for t in trades], "liquidation_trades": [], "type": typ}
        if ch.kind == "market_stats":
            if ch.market is None:
                stats = {str(k): wire.market_stats_json(v, m) for k, m in sorted(v.markets.items())}
                return {"channel": ch.frame, "market_stats": stats, "timestamp": now, "type": typ}
            return {"channel": ch.frame, "market_stats": wire.market_stats_json(v, v.markets[ch.market]),
                    "timestamp": now, "type": typ}
        if ch.kind == "height":
            return {"channel": "height", "height": v.engine.height, "timestamp": now, "type": typ}
        acct = v.account(ch.account)
        assert acct is not None
        return self._account_frame(ch, acct, typ, now, None, None, snapshot=True)

    def _ticker_frame(self, market: int, now: int, typ: str) -> dict[str, Any]:
        v = self.srv.venue
        m = v.markets[market]
        book = v.engine.books[market]
        a = book.best_ask_level()
        b = book.best_bid_level()
        return {"channel": f"ticker:{market}", "nonce": book.nonce,
                "ticker": {"s": m.symbol,
                           "a": {"price": m.fmt_price(a.price), "size": m.fmt_size(a.size)} if a else {"price": "0", "size": "0"},
                           "b": {"price": m.fmt_price(b.price), "size": m.fmt_size(b.size)} if b else {"price": "0", "size": "0"},
                           "last_updated_at": now * 1000},
                "last_updated_at": now * 1000, "timestamp": now, "type": typ}

    def _account_frame(self, ch: Channel, acct: Any, typ: str, now: int,
                       orders: dict[int, list[dict[str, Any]]] | None,
                       trades: dict[int, list[dict[str, Any]]] | None, snapshot: bool = False) -> dict[str, Any]:
        v = self.srv.venue
        kind = ch.kind
        if kind == "account_all_orders":
            if snapshot:
                orders = {}
                for o in sorted(v.engine.account_orders.get(acct.index, {}).values(), key=lambda o: o.order_index):
                    orders.setdefault(o.market_id, []).append(wire.order_json(o, v.markets[o.market_id]))
            return {"channel": ch.frame, "orders": {str(k): x for k, x in (orders or {}).items()}, "type": typ}
        if kind == "account_orders":
            if snapshot:
                lst = [wire.order_json(o, v.markets[o.market_id])
                       for o in sorted(v.engine.account_orders.get(acct.index, {}).values(), key=lambda o: o.order_index)
                       if o.market_id == ch.market]
            else:
                lst = (orders or {}).get(ch.market, [])
            return {"account": acct.index, "channel": ch.frame, "nonce": v.engine.books[ch.market].nonce,
                    "orders": {str(ch.market): lst}, "type": typ}
        if kind == "account_all_trades":
            vol = acct.volume_micro / 1e6
            d = {"channel": ch.frame, "trades": {str(k): x for k, x in (trades or {}).items()},
                 "daily_volume": vol, "weekly_volume": vol, "monthly_volume": vol, "total_volume": vol, "type": typ}
            return d
        if kind == "account_all_positions":
            return {"channel": ch.frame, "positions": wire.positions_map(v, acct), "shares": [], "type": typ}
        if kind == "account_all_assets":
            return {"account_id": acct.index, "channel": ch.frame, "assets": {"3": wire.asset_json(acct)},
                    "timestamp": now, "type": typ}
        if kind == "user_stats":
            return {"channel": ch.frame, "stats": wire.user_stats_json(v, acct), "type": typ}
        if kind == "account_tx":
            return {"channel": ch.frame, "txs": [], "type": typ}
        # account_all
        vol = acct.volume_micro / 1e6
        return {"account": acct.index, "channel": ch.frame, "assets": {"3": wire.asset_json(acct)},
                "positions": wire.positions_map(v, acct),
                "trades": {str(k): x for k, x in (trades or {}).items()}, "funding_histories": {},
                "shares": [], "daily_trades_count": acct.trade_count, "daily_volume": vol,
                "weekly_trades_count": acct.trade_count, "weekly_volume": vol,
                "monthly_trades_count": acct.trade_count, "monthly_volume": vol,
                "total_trades_count": acct.trade_count, "total_volume": vol, "type": typ}

    def _publish(self, key: str, frame: dict[str, Any]) -> None:
        subs = self.channels.get(key)
        if subs:
            text = _dumps(frame)
            for s in subs:
                s.send(text)

    # -- outbound: events -------------------------------------------------------------------
    def dispatch(self) -> None:
        """Drain core events into trade/account frames (book diffs go out on the 50 ms flush)."""
        v = self.srv.venue
        events = v.engine.events
        if not events:
            return
        v.engine.events = []
        if not self.channels:
            return
        now = self.srv.clock()
        faults = self.srv.faults
        trades_by_market: dict[int, list[dict[str, Any]]] = {}
        acct_orders: dict[int, dict[int, list[dict[str, Any]]]] = {}
        acct_trades: dict[int, dict[int, list[dict[str, Any]]]] = {}
        touched: set[int] = set()
        watched = self.by_account
        for ev in events:
            kind = ev[0]
            if kind == "trade":
                t = ev[1]
                m = v.markets[t.market_id]
                tj = None
                if f"trade/{t.market_id}" in self.channels and not faults.frozen(t.market_id, now):
                    tj = wire.trade_json(t, m)
                    trades_by_market.setdefault(t.market_id, []).append(tj)
                for a in (t.ask_account, t.bid_account):
                    if a in watched:
                        tj = tj or wire.trade_json(t, m)
                        acct_trades.setdefault(a, {}).setdefault(t.market_id, []).append(tj)
            elif kind == "order":
                o = ev[1]
                if o.account in watched:
                    acct_orders.setdefault(o.account, {}).setdefault(o.market_id, []).append(
                        wire.order_json(o, v.markets[o.market_id], ev[2], ev[3], ev[4]))
            elif kind == "account":
                if ev[1] in watched:
                    touched.add(ev[1])
        for mid, lst in trades_by_market.items():
            self._publish(f"trade/{mid}", {"channel": f"trade:{mid}", "nonce": v.engine.books[mid].nonce,
                                           "trades": lst, "liquidation_trades": [], "type": "update/trade"})
        for a in set(acct_orders) | set(acct_trades) | touched:
            acct = v.account(a)
            if acct is None or faults.account_muted(a, now):   # a zombie subscription: frames lost for good
                continue
            orders = acct_orders.get(a)
            trades = acct_trades.get(a)
            for key in sorted(watched.get(a, ())):   # sorted: a set of str iterates in hash-seed order
                kind = key.split("/", 1)[0]
                if kind in ("account_all_orders", "account_orders") and not orders:
                    continue
                if kind == "account_orders":
                    mid = int(key.split("/")[1])
                    if mid not in orders:
                        continue
                if kind == "account_all_trades" and not trades:
                    continue
                if kind == "account_tx":
                    continue
                ch = self.parse_channel(key)
                self._publish(key, self._account_frame(ch, acct, f"update/{ch.kind}", now, orders, trades))

    def _flush_market(self, mid: int, now: int, force: bool = False) -> None:
        v = self.srv.venue
        book = v.engine.books[mid]
        faults = self.srv.faults
        key = f"order_book/{mid}"
        if not force and faults.frozen(mid, now):
            return
        prev = self.sent_nonce.get(mid)
        if prev is None or key not in self.channels:
            book.take_dirty()
            self.sent_nonce[mid] = book.nonce
            return
        if faults.take_skip(mid):
            book.take_dirty()  # a lost diff: subscribers' books are now wrong, as after a real gap
            book.nonce += 1
            self.sent_nonce[mid] = book.nonce
            return
        if not book.dirty_asks and not book.dirty_bids:
            return
        asks, bids = book.take_dirty()
        self._diff(mid, asks, bids, prev, book.nonce, now)

    def _diff(self, mid: int, asks: list[tuple[int, int]], bids: list[tuple[int, int]], prev: int, nonce: int,
              now: int) -> None:
        m = self.srv.venue.markets[mid]
        self.offset += 1
        frame = {"channel": f"order_book:{mid}", "offset": self.offset,
                 "order_book": {"code": 0, "asks": wire.levels_json(m, asks), "bids": wire.levels_json(m, bids),
                                "offset": self.offset, "nonce": nonce, "begin_nonce": prev,
                                "last_updated_at": now * 1000},
                 "timestamp": now, "last_updated_at": now * 1000, "type": "update/order_book"}
        self.sent_nonce[mid] = nonce
        self._publish(f"order_book/{mid}", frame)

    def inject_levels(self, mid: int, now: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> bool:
        """Fault injection: a well-formed, in-sequence diff of levels the venue's book does not hold, as a
        corrupt exchange feed would send (``cross_book``). False when nobody is subscribed."""
        prev = self.sent_nonce.get(mid)
        if prev is None or f"order_book/{mid}" not in self.channels:
            return False
        book = self.srv.venue.engine.books[mid]
        book.nonce += 1   # the real diffs continue from here: the sequence stays unbroken
        self._diff(mid, asks, bids, prev, book.nonce, now)
        return True

    def flush_books(self, now: int) -> None:
        v = self.srv.venue
        for mid in v.markets:
            self._flush_market(mid, now)
            tkey = f"ticker/{mid}"
            if tkey in self.channels and not self.srv.faults.frozen(mid, now):
                book = v.engine.books[mid]
                a, b = book.best_ask_level(), book.best_bid_level()
                bbo = (a.price if a else 0, a.size if a else 0, b.price if b else 0, b.size if b else 0)
                if bbo != self.last_bbo.get(mid):
                    self.last_bbo[mid] = bbo
                    self._publish(tkey, self._ticker_frame(mid, now, "update/ticker"))
        h = v.engine.height
        if h != self.last_height and "height" in self.channels:
            self.last_height = h
            self._publish("height", {"channel": "height", "height": h, "timestamp": now, "type": "update/height"})
        if now - self.last_stats_ms >= 1000:
            self.last_stats_ms = now
            for mid, m in v.markets.items():
                key = f"market_stats/{mid}"
                if key in self.channels and not self.srv.faults.frozen(mid, now):
                    self._publish(key, {"channel": f"market_stats:{mid}", "market_stats": wire.market_stats_json(v, m),
                                        "timestamp": now, "type": "update/market_stats"})
            if "market_stats/all" in self.channels:
                stats = {str(k): wire.market_stats_json(v, m) for k, m in sorted(v.markets.items())}
                self._publish("market_stats/all", {"channel": "market_stats:all", "market_stats": stats,
                                                   "timestamp": now, "type": "update/market_stats"})
            for a, keys in list(self.by_account.items()):
                if f"user_stats/{a}" in keys:
                    acct = v.account(a)
                    if acct is not None:
                        self._publish(f"user_stats/{a}", {"channel": f"user_stats:{a}",
                                                          "stats": wire.user_stats_json(v, acct),
                                                          "type": "update/user_stats"})
