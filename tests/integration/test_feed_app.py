"""The feed shell against a tiny Lighter-protocol server (websockets + aiohttp) and a real redis-server.

The server speaks what lighter-api.md section 2 documents: ``connected`` first, ``subscribed/``
snapshots, ``update/`` deltas chained by nonce, ``unsubscribed`` acks, ``ping``, error frames for
refused auth, and ``GET /api/v1/orderBooks`` for the decimals check.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from websockets.asyncio.server import Server, ServerConnection, serve

from services.feed.app import FeedService
from shared import keys
from shared.config import FeedConfig, Secrets, Settings
from shared.runtime import Runtime
from shared.schemas import AccountGap, BookTop, Fill, Msg, OrderUpdate, Position, decode
from tests.conftest import REPO, free_port, wait_port

ACCT = 281474976710654
NOW_S = int(time.time())
GOOD_TOKEN = f"{NOW_S + 7200}:281474976710654:3:" + "8d" * 80     # the venue accepts it
REFUSED_TOKEN = f"{NOW_S + 3600}:281474976710654:3:" + "5e" * 80  # well-formed and fresh, but the venue says 20013
EXPIRED_TOKEN = "1700000000:281474976710654:3:" + "17" * 80
SNAP = 18032383898
T0 = 1_763_950_000_000


class FakeLighter:
    """One market (SOL, id 2); the test drives it frame by frame."""

    def __init__(self, price_decimals: int = 3, size_decimals: int = 3) -> None:
        self.decimals = (price_decimals, size_decimals)
        self.conns: list[ServerConnection] = []
        self.received: list[tuple[int, dict[str, Any]]] = []  # (connection number, client frame)
        self.nonce = SNAP
        self.good_tokens = {GOOD_TOKEN}
        self.rest_calls = 0
        self._ws_server: Server | None = None
        self._rest: web.AppRunner | None = None
        self.ws_port = self.rest_port = 0

    # --- servers ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._ws_server = await serve(self._handler, "127.0.0.1", 0)
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/api/v1/orderBooks", self._order_books)
        self._rest = web.AppRunner(app, access_log=None)
        await self._rest.setup()
        self.rest_port = free_port()
        await web.TCPSite(self._rest, "127.0.0.1", self.rest_port).start()

    async def close(self) -> None:
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        if self._rest is not None:
            await self._rest.cleanup()

    async def _order_books(self, request: web.Request) -> web.Response:
        self.rest_calls += 1
        assert request.query.get("market_id") == "2"
        row = {"symbol": "SOL", "market_id": 2, "market_type": "perp", "status": "active",
               "supported_price_decimals": self.decimals[0], "supported_size_decimals": self.decimals[1],
               "supported_quote_decimals": 6, "min_base_amount": "0.050", "min_quote_amount": "10.000000"}
        return web.json_response({"code": 200, "order_books": [row]})

    async def _handler(self, ws: ServerConnection) -> None:
        self.conns.append(ws)
        n = len(self.conns)
        await ws.send(orjson.dumps({"session_id": f"s{n}", "type": "connected"}).decode())
        async for raw in ws:
            d = orjson.loads(raw)
            self.received.append((n, d))
            typ, ch = d.get("type"), d.get("channel", "")
            if typ == "subscribe" and ch == "order_book/2":
                await self.send(self.snapshot())
            elif typ == "subscribe" and ch == "trade/2":
                await self.send({"channel": "trade:2", "nonce": 1, "trades": [trade(1)], "liquidation_trades": [],
                                 "type": "subscribed/trade"})
            elif typ == "subscribe" and ch.startswith("account_all_"):
                if d.get("auth") not in self.good_tokens:
                    await self.send({"error": {"code": 20013, "message": "invalid auth: invalid deadline"}})
                    continue
                kind = ch.split("/")[0]
                body = {"orders": {}} if kind == "account_all_orders" else (
                    {"trades": {}} if kind == "account_all_trades" else {"positions": {}, "shares": []})
                await self.send({"channel": ch.replace("/", ":"), "type": f"subscribed/{kind}", **body})
            elif typ == "unsubscribe":
                await self.send({"type": "unsubscribed", "channel": ch.replace("/", ":")})
            elif typ == "ping":
                await self.send({"type": "pong"})

    # --- frames ----------------------------------------------------------------------------------
    @property
    def ws(self) -> ServerConnection:
        return self.conns[-1]

    async def send(self, d: dict[str, Any] | str) -> None:
        await self.ws.send(d if isinstance(d, str) else orjson.dumps(d).decode())

    def snapshot(self) -> dict[str, Any]:
        self.nonce += 1000
        return {"channel": "order_book:2", "offset": 1, "type": "subscribed/order_book", "timestamp": T0,
                "order_book": {"code": 0, "nonce": self.nonce, "begin_nonce": 0, "offset": 1,
                               "bids": [{"price": "140.120", "size": "1.500"}, {"price": "140.100", "size": "3.000"}],
                               "asks": [{"price": "140.130", "size": "0.064"}, {"price": "140.150", "size": "2.000"}]}}

    async def update(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]], gap: bool = False) -> int:
        begin = self.nonce + (37 if gap else 0)
        self.nonce = begin + 108
        await self.send({"channel": "order_book:2", "offset": 2, "type": "update/order_book", "timestamp": T0 + 50,
                         "order_book": {"code": 0, "nonce": self.nonce, "begin_nonce": begin, "offset": 2,
                                        "bids": [{"price": p, "size": s} for p, s in bids],
                                        "asks": [{"price": p, "size": s} for p, s in asks]}})
        return self.nonce

    def sent_by_client(self, conn: int | None = None) -> list[dict[str, Any]]:
        return [d for n, d in self.received if conn is None or n == conn]


def trade(tid: int, **over: Any) -> dict[str, Any]:
    return {"trade_id": tid, "tx_hash": "ab", "type": "trade", "market_id": 2, "size": "0.050", "price": "140.125",
            "usd_amount": "7.006250", "ask_id": 11, "bid_id": 12, "ask_account_id": 5, "bid_account_id": 6,
            "is_maker_ask": True, "block_height": 1, "timestamp": T0 + tid, **over}


async def until(cond: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = cond()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


async def stream(r: Redis, key: str) -> list[Msg]:
    return [decode(f) for _, f in await r.xrange(key)]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Harness:
    def __init__(self, venue: FakeLighter, service: FeedService, rt: Runtime, task: asyncio.Task[None]) -> None:
        self.venue, self.service, self.rt, self.task = venue, service, rt, task

    async def books(self) -> list[BookTop]:
        return [m for m in await stream(self.rt.redis, keys.md_book(2)) if isinstance(m, BookTop)]


def settings_for(venue: FakeLighter, redis_url: str, account: int | None) -> Settings:
    return Settings(feed=FeedConfig(reconnect_min_s=Decimal("0.05"), reconnect_max_s=Decimal("0.2")),
                    env=Secrets(redis_url=redis_url, base_url=f"http://127.0.0.1:{venue.rest_port}",
                                ws_url=f"ws://127.0.0.1:{venue.ws_port}/stream", account_index=account))


@pytest.fixture
async def make_feed(redis: Redis, redis_server: str, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    started: list[tuple[FakeLighter, Runtime, asyncio.Task[None], FeedService]] = []

    async def make(account: int | None = None, venue: FakeLighter | None = None, token_file: Path | None = None) -> Harness:
        venue = venue or FakeLighter()
        await venue.start()
        rt = Runtime("feed", settings_for(venue, redis_server, account), Redis.from_url(redis_server))
        service = FeedService(rt.settings, token_file=token_file or tmp_path / "no-token-file", token_poll_s=0.1,
                              tick_s=0.05)
        await service.start(rt)
        task = asyncio.create_task(service.run(rt))
        started.append((venue, rt, task, service))
        return Harness(venue, service, rt, task)

    yield make
    for venue, rt, task, service in started:
        rt.stopping.set()
        await asyncio.wait_for(task, 5)
        await service.stop(rt)
        await rt.redis.aclose()
        await venue.close()


async def test_books_land_in_redis_and_a_gap_resyncs(make_feed: Callable[..., Awaitable[Harness]], redis: Redis) -> None:
    h = await make_feed()
    v = h.venue
    await until(lambda: h.service.health(time.time())[0],
                what="healthy feed")
    await until(lambda: _len_is(redis, keys.md_book(2), 1), what="snapshot in redis")  # core state leads the XADD
    [snap] = await h.books()
    assert snap.seq == v.nonce and snap.bids == [(140_120, 1_500), (140_100, 3_000)]
    assert snap.asks == [(140_130, 64), (140_150, 2_000)] and snap.venue_ts_ms == T0
    assert set(snap.trace) == {"venue", "feed"}
    assert [d["channel"] for d in v.sent_by_client(1)] == ["order_book/2", "trade/2"]

    u1 = await v.update(bids=[("140.120", "0.000")], asks=[("140.125", "0.500")])
    await until(lambda: _len_is(redis, keys.md_book(2), 2), what="second book")
    latest = BookTop.model_validate_json(await redis.get(keys.book_latest(2)))
    assert latest.seq == u1 and latest.bids == [(140_100, 3_000)] and latest.asks[0] == (140_125, 500)

    gaps_before = metric("mm_book_gaps_total", market="2")
    gapped = await v.update(bids=[("140.110", "9.000")], asks=[], gap=True)
    await until(lambda: len(v.sent_by_client(1)) >= 4, what="resubscription")
    assert v.sent_by_client(1)[2:] == [{"type": "unsubscribe", "channel": "order_book/2"},
                                       {"type": "subscribe", "channel": "order_book/2"}]
    await until(lambda: _len_is(redis, keys.md_book(2), 3), what="fresh snapshot")
    books = await h.books()
    assert [b.seq for b in books] == [snap.seq, u1, v.nonce] and gapped not in [b.seq for b in books]
    assert (140_110, 9_000) not in books[-1].bids  # the gapped frame was never applied
    assert BookTop.model_validate_json(await redis.get(keys.book_latest(2))).seq == v.nonce
    assert metric("mm_book_gaps_total", market="2") == gaps_before + 1
    ok, detail = h.service.health(time.time())
    assert ok and detail["gaps"] == 1 and detail["seq"] == v.nonce and detail["reconnects"] == 0
    trades = await stream(redis, keys.md_trade(2))
    assert [t.trade_id for t in trades] == [1]  # type: ignore[attr-defined]


async def _len_is(r: Redis, key: str, n: int) -> bool:
    return int(await r.xlen(key)) >= n


async def test_ping_malformed_frame_and_reconnect(make_feed: Callable[..., Awaitable[Harness]], redis: Redis) -> None:
    h = await make_feed()
    v = h.venue
    await until(lambda: _len_is(redis, keys.md_book(2), 1), what="snapshot")

    await v.send({"type": "ping"})
    await until(lambda: {"type": "pong"} in v.sent_by_client(1), what="pong")

    bad_before = metric("mm_feed_bad_frames_total")
    await v.send('{"channel":"order_book:2","type":"update/order_book","order_book":{"nonce":')  # truncated JSON
    await until(lambda: _len_is(redis, keys.dead_letter("feed"), 1), what="dead letter")
    [(_, dl)] = await redis.xrange(keys.dead_letter("feed"))
    assert dl[b"stream"] == b"ws" and b"invalid JSON" in dl[b"error"] and b"order_book:2" in dl[b"raw"]
    assert metric("mm_feed_bad_frames_total") == bad_before + 1
    u = await v.update(bids=[("140.121", "1.000")], asks=[])  # still publishing after the bad frame
    await until(lambda: _len_is(redis, keys.md_book(2), 2), what="book after the bad frame")
    assert (await h.books())[-1].seq == u

    reconnects = metric("mm_ws_reconnects_total")
    v.ws.transport.abort()  # the connection drops without a close frame
    await until(lambda: len(v.conns) == 2 and len(v.sent_by_client(2)) >= 2, what="reconnect and resubscribe")
    await until(lambda: _len_is(redis, keys.md_book(2), 3), what="snapshot after reconnect")
    assert (await h.books())[-1].seq == v.nonce
    assert metric("mm_ws_reconnects_total") == reconnects + 1
    await until(lambda: h.service.health(time.time())[0], what="healthy again")
    assert h.service.health(time.time())[1]["reconnects"] == 1
    # the trade replayed on resubscribe is not published twice
    assert len(await stream(redis, keys.md_trade(2))) == 1


def _subscribed_with(v: FakeLighter, token: str) -> int:
    return sum(1 for d in v.sent_by_client() if d.get("type") == "subscribe" and d.get("auth") == token)


async def test_account_events_with_token_from_redis(make_feed: Callable[..., Awaitable[Harness]], redis: Redis,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await redis.set(keys.AUTH_WS_TOKEN, EXPIRED_TOKEN, px=60_000)
    refusals = metric("mm_feed_venue_errors_total", code="20013")
    h = await make_feed(account=ACCT)
    v = h.venue
    await until(lambda: _len_is(redis, keys.md_book(2), 1), what="snapshot")
    # an expired token is never sent: the feed says why instead, and keeps publishing market data
    await until(lambda: "no valid auth token (redis: expired" in h.service.health(time.time())[1].get("reason", ""),
                what="degraded: no valid auth token")
    ok, detail = h.service.health(time.time())
    assert not ok and detail["state"] == "degraded" and not h.service.ready()
    assert _subscribed_with(v, EXPIRED_TOKEN) == 0
    # a fresh token the venue refuses: re-read and re-subscribed with backoff, each attempt logged
    await redis.set(keys.AUTH_WS_TOKEN, REFUSED_TOKEN, px=60_000)
    await until(lambda: _subscribed_with(v, REFUSED_TOKEN) >= 9, timeout=10, what="three attempts")
    await until(lambda: metric("mm_feed_venue_errors_total", code="20013") >= refusals + 9, what="refusals")
    assert "account channels down: 20013 invalid auth" in h.service.health(time.time())[1]["reason"]
    assert "attempt 3, re-reading auth tokens" in caplog.text
    # the gateway refreshes the token: the feed picks it up and subscribes with it
    await redis.set(keys.AUTH_WS_TOKEN, GOOD_TOKEN, px=60_000)
    await until(lambda: h.service.core.private_active, what="account channels active")
    good = [d for d in v.sent_by_client() if d.get("auth") == GOOD_TOKEN]
    assert sorted(d["channel"] for d in good) == sorted(f"{k}/{ACCT}" for k in
                                                        ("account_all_orders", "account_all_trades", "account_all_positions"))
    # positions snapshot without SOL = flat, then the gap (first subscribe) for the gateway to reconcile
    await until(lambda: _len_is(redis, keys.acct(ACCT), 2), what="flat position and account gap")

    order = {"order_index": 281475565888172, "client_order_index": 7213160468725761, "market_index": 2,
             "owner_account_index": ACCT, "initial_base_amount": "0.064", "price": "140.125",
             "remaining_base_amount": "0.014", "filled_base_amount": "0.050", "is_ask": True, "type": "limit",
             "time_in_force": "post-only", "reduce_only": False, "status": "open", "transaction_time": (T0 + 1) * 1000}
    await v.send({"channel": f"account_all_orders:{ACCT}", "type": "update/account_all_orders", "orders": {"2": [order]}})
    fill = trade(99, ask_account_id=ACCT, ask_id=281475565888172, ask_client_id=7213160468725761, maker_fee=28)
    await v.send({"channel": f"account_all_trades:{ACCT}", "type": "update/account_all_trades", "trades": {"2": [fill]}})
    pos = {"market_id": 2, "symbol": "SOL", "sign": -1, "position": "0.050", "avg_entry_price": "140.125"}
    await v.send({"channel": f"account_all_positions:{ACCT}", "type": "update/account_all_positions",
                  "positions": {"2": pos}})
    await until(lambda: _len_is(redis, keys.acct(ACCT), 5), what="account events")
    msgs = await stream(redis, keys.acct(ACCT))
    assert msgs[0] == Position(market_id=2, position=0, ts_ms=msgs[0].ts_ms)  # type: ignore[attr-defined]
    assert isinstance(msgs[1], AccountGap) and msgs[1].reason == "start"
    assert isinstance(msgs[2], OrderUpdate) and (msgs[2].filled_size, msgs[2].remaining_size) == (50, 14)
    assert isinstance(msgs[3], Fill) and (msgs[3].is_ask, msgs[3].is_maker, msgs[3].fee) == (True, True, 196)   # floored, as the venue charges
    assert isinstance(msgs[4], Position) and msgs[4].position == -50

    await v.update(bids=[("140.121", "1.000")], asks=[])  # a fresh book frame (the fake venue only sends on demand)
    await until(lambda: h.service.health(time.time())[0], what="healthy")
    ok, detail = h.service.health(time.time())
    assert detail["state"] == "ok" and "reason" not in detail and h.service.ready()
    assert detail["account"]["token_source"] == "redis" and detail["account_age_s"] is not None
    left = NOW_S + 7200 - time.time()          # the token's deadline, from now (the suite may have run long)
    assert left - 60 < detail["account"]["token_valid_s"] <= left + 1
    # the tokens are nowhere but in the subscribe frames
    for t in (GOOD_TOKEN, REFUSED_TOKEN, EXPIRED_TOKEN):
        assert t not in repr(detail) and t not in caplog.text
    for key in (keys.md_book(2), keys.md_trade(2), keys.acct(ACCT), keys.dead_letter("feed")):
        for _, fields in await redis.xrange(key):
            assert GOOD_TOKEN.encode() not in b"".join(fields.values())


async def test_token_file_wins_over_redis(make_feed: Callable[..., Awaitable[Harness]], redis: Redis,
                                          tmp_path: Path) -> None:
    """A valid file token with the later deadline is used; an expired one never hides the Redis token."""
    await redis.set(keys.AUTH_WS_TOKEN, EXPIRED_TOKEN, px=60_000)
    token_file = tmp_path / ".env.ws_token"
    token_file.write_text(f"WS_AUTH_TOKEN={GOOD_TOKEN}\n# written by scripts/refresh_ws_token.py\n")  # the script's format
    h = await make_feed(account=ACCT, token_file=token_file)
    await until(lambda: h.service.core.private_active, what="account channels active")
    assert {d.get("auth") for d in h.venue.sent_by_client() if d["type"] == "subscribe"} == {None, GOOD_TOKEN}
    assert h.service.health(time.time())[1]["account"]["token_source"] == "file"


async def test_expired_token_file_falls_back_to_redis(make_feed: Callable[..., Awaitable[Harness]], redis: Redis,
                                                      tmp_path: Path) -> None:
    await redis.set(keys.AUTH_WS_TOKEN, GOOD_TOKEN, px=60_000)
    token_file = tmp_path / ".env.ws_token"
    token_file.write_text(f"WS_AUTH_TOKEN={EXPIRED_TOKEN}\n")
    h = await make_feed(account=ACCT, token_file=token_file)
    await until(lambda: h.service.core.private_active, what="account channels active")
    assert {d.get("auth") for d in h.venue.sent_by_client() if d["type"] == "subscribe"} == {None, GOOD_TOKEN}
    assert h.service.health(time.time())[1]["account"]["token_source"] == "redis"


async def test_decimals_mismatch_keeps_the_feed_silent(make_feed: Callable[..., Awaitable[Harness]],
                                                       redis: Redis) -> None:
    h = await make_feed(venue=FakeLighter(price_decimals=2))
    await until(lambda: h.service.decimals == "mismatch", what="decimals check")
    await asyncio.sleep(0.3)
    ok, detail = h.service.health(time.time())
    assert not ok and detail["decimals"] == "mismatch" and "2/3" in detail["decimals_problem"]
    assert h.venue.conns == [] and await redis.xlen(keys.md_book(2)) == 0
    assert not h.service.ready()


def test_entry_point_serves_health_and_stops_on_sigterm(redis_server: str) -> None:
    """``python -m services.feed`` end to end: health 200 once books flow, exit 0 on SIGTERM."""
    async def scenario() -> None:
        venue = FakeLighter()
        await venue.start()
        port = free_port()
        env = {**os.environ, "REDIS_URL": redis_server, "LIGHTER_BASE_URL": f"http://127.0.0.1:{venue.rest_port}",
               "LIGHTER_WS_URL": f"ws://127.0.0.1:{venue.ws_port}/stream", "PYTHONPATH": str(REPO)}
        env.pop("LIGHTER_ACCOUNT_INDEX", None)
        proc = subprocess.Popen([sys.executable, "-m", "services.feed", "--port", str(port), "--host", "127.0.0.1"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            await asyncio.get_running_loop().run_in_executor(None, wait_port, port)
            async with aiohttp.ClientSession() as http:
                async def healthy() -> bool:
                    async with http.get(f"http://127.0.0.1:{port}/health") as r:
                        return r.status == 200
                await until(healthy, timeout=10, what="health 200")
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    text = await r.text()
                assert "mm_feed_frames_total" in text and "mm_book_age_seconds" in text
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 10)
            assert code == 0, proc.stdout.read().decode() if proc.stdout else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            await venue.close()

    asyncio.run(scenario())


def _redis_proc(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


async def test_account_event_survives_a_redis_outage(tmp_path: Path) -> None:
    """An account event that arrives while Redis is down is written once Redis is back, not dropped."""
    port = free_port()
    proc = _redis_proc(port)
    venue = FakeLighter()
    await venue.start()
    url = f"redis://127.0.0.1:{port}/0"
    check = Redis.from_url(url)
    await check.set(keys.AUTH_WS_TOKEN, GOOD_TOKEN)
    rt = Runtime("feed", settings_for(venue, url, ACCT), Redis.from_url(url))
    service = FeedService(rt.settings, token_file=tmp_path / "absent", token_poll_s=0.1, tick_s=0.05)
    task = asyncio.create_task(service.run(rt))
    try:
        await until(lambda: service.core.private_active, what="account channels active")
        await until(lambda: _len_is(check, keys.acct(ACCT), 2), what="flat position and account gap written")
        proc.terminate()
        proc.wait(timeout=10)
        order = {"order_index": 5, "client_order_index": 77, "market_index": 2, "initial_base_amount": "0.064",
                 "price": "140.125", "remaining_base_amount": "0.000", "filled_base_amount": "0.064", "is_ask": False,
                 "status": "filled", "transaction_time": (T0 + 9) * 1000}
        await venue.send({"channel": f"account_all_orders:{ACCT}", "type": "update/account_all_orders",
                          "orders": {"2": [order]}})
        await until(lambda: not rt.redis_ok, what="outage noticed")
        proc = _redis_proc(port)  # empty again: only what the feed writes from now on
        await check.aclose()
        check = Redis.from_url(url)
        await until(lambda: _len_is(check, keys.acct(ACCT), 1), timeout=10, what="retried write")
        [msg] = [decode(f) for _, f in await check.xrange(keys.acct(ACCT))]
        assert isinstance(msg, OrderUpdate) and (msg.client_order_index, msg.status) == (77, "filled")
        assert rt.redis_ok
    finally:
        rt.stopping.set()
        await asyncio.wait_for(task, 5)
        await check.aclose()
        await rt.redis.aclose()
        await venue.close()
        proc.terminate()
        proc.wait(timeout=10)
