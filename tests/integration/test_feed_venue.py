"""The feed shell against the real local venue (``python -m services.venue`` on a free port) and redis-server.

What the fake server in test_feed_app.py cannot prove: that the feed reads the venue's actual wire
shapes (decimals check, book chain, trades, private channels with a real SDK token, a real fill),
survives the venue's own faults (``skip_book_nonce``, ``drop_ws``), and handles the venue's own
auth refusals (a token expired by the venue's clock: ``/admin/clock``).
"""
from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lighter.signer_client import SignerClient, create_api_key
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from services.feed.app import FeedService
from shared import keys
from shared.config import FeedConfig, Secrets, Settings
from shared.health import make_app, start_site
from shared.runtime import Runtime
from shared.schemas import AccountGap, BookTop, Fill, OrderUpdate, Position, Trade, decode
from tests.conftest import REPO, free_port, wait_port
from tests.integration.test_feed_app import metric, until

pytestmark = pytest.mark.timeout(60)

ACCT, KEY = 321, 4


@dataclass(frozen=True)
class Venue:
    port: int
    private_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _start_venue(tmp: Path, seed: int) -> tuple[Venue, subprocess.Popen[bytes], Any]:
    priv, pub, err = create_api_key()
    assert err is None
    port = free_port()
    log = (tmp / f"venue-{port}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "services.venue", "--port", str(port), "--seed", str(seed), "--admin",
                             "--rate-limit", "off", "--account", f"{ACCT}:{KEY}:{str(pub).removeprefix('0x')}"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port)
    return Venue(port, str(priv)), proc, log


def _stop_venue(proc: subprocess.Popen[bytes], log: Any) -> None:
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    v, proc, log = _start_venue(tmp_path_factory.mktemp("venue"), 5)
    try:
        yield v
    finally:
        _stop_venue(proc, log)


@pytest.fixture
def own_venue(tmp_path: Path) -> Iterator[Venue]:
    """A venue of its own, for a test that moves the venue's clock (the offset is permanent)."""
    v, proc, log = _start_venue(tmp_path, 6)
    try:
        yield v
    finally:
        _stop_venue(proc, log)


@pytest.fixture
async def make_feed(redis: Redis, redis_server: str, tmp_path: Path
                    ) -> AsyncIterator[Callable[..., Awaitable[tuple[FeedService, Runtime]]]]:
    started: list[tuple[FeedService, Runtime, asyncio.Task[None], Venue]] = []

    async def make(venue: Venue, token_file: Path | None = None) -> tuple[FeedService, Runtime]:
        settings = Settings(feed=FeedConfig(reconnect_min_s=Decimal("0.05"), reconnect_max_s=Decimal("0.2")),
                            env=Secrets(redis_url=redis_server, base_url=venue.url,
                                        ws_url=f"ws://127.0.0.1:{venue.port}/stream", account_index=ACCT))
        rt = Runtime("feed", settings, Redis.from_url(redis_server))
        service = FeedService(settings, token_file=token_file or tmp_path / "absent", token_poll_s=0.1, tick_s=0.05)
        await service.start(rt)
        started.append((service, rt, asyncio.create_task(service.run(rt)), venue))
        return service, rt

    yield make
    for service, rt, task, venue in started:
        rt.stopping.set()
        await asyncio.wait_for(task, 5)
        await service.stop(rt)
        await rt.redis.aclose()
        async with aiohttp.ClientSession() as http:
            await http.delete(f"{venue.url}/admin/fault")


@pytest.fixture
async def feed(venue: Venue, make_feed: Callable[..., Awaitable[tuple[FeedService, Runtime]]],
               redis: Redis) -> AsyncIterator[FeedService]:
    """The feed with the token the gateway would have put in Redis (healthy needs the account channels)."""
    signer = _signer(venue)
    try:
        token, err = signer.create_auth_token_with_expiry(600, api_key_index=KEY)
        assert err is None
        await redis.set(keys.AUTH_WS_TOKEN, token, px=600_000)
        yield (await make_feed(venue))[0]
    finally:
        await signer.close()


async def _books(r: Redis) -> list[BookTop]:
    return [m for _, f in await r.xrange(keys.md_book(2)) if isinstance(m := decode(f), BookTop)]


async def _fault(venue: Venue, body: dict[str, object]) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{venue.url}/admin/fault", json=body) as r:
            assert r.status == 200, await r.text()


async def test_venue_books_gap_and_drop(venue: Venue, feed: FeedService, redis: Redis) -> None:
    await until(lambda: feed.health(time.time())[0], timeout=10, what="healthy feed")
    assert feed.decimals == "ok"
    await until(lambda: redis.xlen(keys.md_book(2)), what="books")  # type: ignore[arg-type]
    await asyncio.sleep(0.5)
    books = await _books(redis)
    assert all(b.bids and b.asks and b.bids[0][0] < b.asks[0][0] for b in books)
    assert all(len(b.bids) <= 20 and b.bids == sorted(b.bids, reverse=True) and b.asks == sorted(b.asks) for b in books)
    assert [b.seq for b in books] == sorted(b.seq for b in books)
    latest = BookTop.model_validate_json(await redis.get(keys.book_latest(2)))
    assert latest.seq >= books[-1].seq and abs(latest.bids[0][0] - 140_000) < 14_000  # SOL starts at 140.000

    await _fault(venue, {"kind": "skip_book_nonce", "market_id": 2})
    await until(lambda: feed.core.gaps >= 1, what="gap detected")
    await until(lambda: feed.core.books[2].valid, what="fresh snapshot")
    n = len(await _books(redis))
    await until(lambda: _more(redis, n), what="books after the gap")

    await _fault(venue, {"kind": "drop_ws"})
    await until(lambda: feed.reconnects >= 1, what="reconnect")
    await until(lambda: feed.health(time.time())[0], timeout=10, what="healthy after reconnect")
    n = len(await _books(redis))
    await until(lambda: _more(redis, n), what="books after the reconnect")
    trades = [decode(f) for _, f in await redis.xrange(keys.md_trade(2))]
    assert trades and all(isinstance(t, Trade) for t in trades)
    assert len({t.trade_id for t in trades}) == len(trades)  # type: ignore[attr-defined]  # replays not republished
    assert feed.core.bad_frames == 0 and await redis.xlen(keys.dead_letter("feed")) == 0


async def _more(r: Redis, n: int) -> bool:
    return len(await _books(r)) > n


async def test_venue_private_channels_and_a_real_fill(venue: Venue, feed: FeedService, redis: Redis) -> None:
    signer = SignerClient(url=venue.url, account_index=ACCT, api_private_keys={KEY: venue.private_key}, chain_id=304)
    try:
        token, err = signer.create_auth_token_with_expiry(api_key_index=KEY)
        assert err is None
        await redis.set(keys.AUTH_WS_TOKEN, token, px=600_000)
        await until(lambda: feed.core.private_active, timeout=10, what="account channels active")
        await until(lambda: redis.xlen(keys.acct(ACCT)), what="position snapshot")  # type: ignore[arg-type]
        first = decode((await redis.xrange(keys.acct(ACCT)))[0][1])
        assert first == Position(market_id=2, position=0, ts_ms=first.ts_ms)  # type: ignore[attr-defined]

        await until(lambda: feed.core.books[2].valid, what="book")
        best_ask = feed.core.books[2].top(1)[1][0][0]
        _, resp, err = await signer.create_market_order(market_index=2, client_order_index=4242, base_amount=100,
                                                        avg_execution_price=best_ask + best_ask // 100, is_ask=False,
                                                        api_key_index=KEY)
        assert err is None and resp is not None and resp.code == 200

        async def filled() -> bool:
            return any(isinstance(decode(f), Fill) for _, f in await redis.xrange(keys.acct(ACCT)))
        await until(filled, timeout=10, what="fill")
        await until(lambda: _position_is(redis, 100), timeout=10, what="long 0.100 SOL")
        msgs = [decode(f) for _, f in await redis.xrange(keys.acct(ACCT))]
        fills = [m for m in msgs if isinstance(m, Fill)]
        assert sum(f.size for f in fills) == 100
        assert all(not f.is_ask and not f.is_maker and f.client_order_index == 4242 and f.fee > 0 for f in fills)
        assert all(best_ask - 1_000 <= f.price <= best_ask + best_ask // 100 for f in fills)
        orders = [m for m in msgs if isinstance(m, OrderUpdate) and m.client_order_index == 4242]
        assert orders and orders[-1].status == "filled" and orders[-1].filled_size == 100
        ok, detail = feed.health(time.time())
        assert ok and detail["account"]["token_source"] == "redis" and token not in repr(detail)
    finally:
        await signer.close()


async def _position_is(r: Redis, lots: int) -> bool:
    pos = [m for _, f in await r.xrange(keys.acct(ACCT)) if isinstance(m := decode(f), Position)]
    return bool(pos) and pos[-1].position == lots


async def _acct(r: Redis) -> list[Any]:
    return [decode(f) for _, f in await r.xrange(keys.acct(ACCT))]


async def _gaps(r: Redis) -> list[AccountGap]:
    return [m for m in await _acct(r) if isinstance(m, AccountGap)]


def _signer(venue: Venue) -> SignerClient:
    return SignerClient(url=venue.url, account_index=ACCT, api_private_keys={KEY: venue.private_key}, chain_id=304)


async def test_venue_expired_token_file_falls_back_to_the_redis_token(
        venue: Venue, make_feed: Callable[..., Awaitable[tuple[FeedService, Runtime]]], redis: Redis,
        tmp_path: Path) -> None:
    signer = _signer(venue)
    try:
        stale, err = signer.create_auth_token_with_expiry(300, timestamp=int(time.time()) - 900, api_key_index=KEY)
        assert err is None
        fresh, err = signer.create_auth_token_with_expiry(600, api_key_index=KEY)
        assert err is None
        token_file = tmp_path / ".env.ws_token"
        token_file.write_text(f"WS_AUTH_TOKEN={stale}\n# written by scripts/refresh_ws_token.py\n")
        await redis.set(keys.AUTH_WS_TOKEN, fresh, px=600_000)
        feed, _ = await make_feed(venue, token_file)
        await until(lambda: feed.core.private_active, timeout=10, what="account channels active")
        assert feed.core.token_source == "redis" and set(feed.core._sub_token.values()) == {fresh}
        await until(lambda: _gaps(redis), what="account gap")
        [gap] = await _gaps(redis)
        assert gap.reason == "start"
        await until(lambda: feed.health(time.time())[0], timeout=10, what="healthy")
        detail = feed.health(time.time())[1]
        assert detail["state"] == "ok" and detail["account"]["token_source"] == "redis"
        assert stale not in repr(detail) and fresh not in repr(detail)
    finally:
        await signer.close()


async def test_venue_auth_refusal_resubscribes_with_backoff_and_publishes_a_gap(
        own_venue: Venue, make_feed: Callable[..., Awaitable[tuple[FeedService, Runtime]]], redis: Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    """The venue's clock runs past the token's deadline and the connection drops: on reconnect the venue
    refuses the token (20013). The feed says degraded (503) with the reason, retries with backoff, and once
    the gateway's next token is in Redis it subscribes with it and publishes an AccountGap."""
    caplog.set_level(logging.INFO)
    venue = own_venue
    signer = _signer(venue)
    port = free_port()
    runner = None
    try:
        first, err = signer.create_auth_token_with_expiry(600, api_key_index=KEY)
        assert err is None
        await redis.set(keys.AUTH_WS_TOKEN, first, px=600_000)
        feed, rt = await make_feed(venue)
        runner = await start_site(make_app(lambda: feed.health(time.time()), feed.ready), "127.0.0.1", port)

        async def status(path: str) -> int:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                    return r.status

        await until(lambda: feed.health(time.time())[0], timeout=10, what="healthy")
        await until(lambda: _gaps(redis), what="first account gap")
        assert [g.reason for g in await _gaps(redis)] == ["start"]
        assert await status("/health") == 200 and await status("/ready") == 200

        degraded = _degraded_total()
        refusals = metric("mm_feed_venue_errors_total", code="20013")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{venue.url}/admin/clock", json={"advance_ms": 660_000}) as r:
                assert r.status == 200
                venue_now_s = (await r.json())["now_ms"] // 1000
            async with http.post(f"{venue.url}/admin/fault", json={"kind": "drop_ws"}) as r:
                assert r.status == 200
        await until(lambda: "20013 invalid auth: invalid deadline" in feed.health(time.time())[1].get("reason", ""),
                    timeout=10, what="degraded with the venue's reason")
        ok, detail = feed.health(time.time())
        assert not ok and detail["state"] == "degraded"
        assert detail["reason"].startswith("account channels down: 20013")
        assert await status("/health") == 503 and await status("/ready") == 503
        assert _degraded_total() == degraded + 1  # one transition (its reason: whatever was seen first)
        # re-subscribed with backoff (each attempt is refused three times, once per channel) and logged
        await until(lambda: metric("mm_feed_venue_errors_total", code="20013") >= refusals + 9, timeout=10,
                    what="three refused attempts")
        assert "attempt 3, re-reading auth tokens" in caplog.text
        assert [g.reason for g in await _gaps(redis)] == ["start"]  # nothing published while down

        # the gateway's next token (minted for the venue's time) lands in Redis
        second, err = signer.create_auth_token_with_expiry(600, timestamp=venue_now_s, api_key_index=KEY)
        assert err is None
        await redis.set(keys.AUTH_WS_TOKEN, second, px=600_000)
        await until(lambda: feed.core.private_active, timeout=10, what="account channels back")
        await until(lambda: _more_gaps(redis, 1), what="second account gap")
        gaps = await _gaps(redis)
        assert [g.reason for g in gaps] == ["start", "reconnect"] and gaps[1].ts_ms > gaps[0].ts_ms
        await until(lambda: feed.health(time.time())[0], timeout=10, what="healthy again")
        assert await status("/health") == 200 and await status("/ready") == 200
        assert _degraded_total() == degraded + 1
        detail = feed.health(time.time())[1]
        assert "reason" not in detail and detail["account"]["account_gaps"] == 2
        for t in (first, second):
            assert t not in caplog.text and t not in repr(detail)
            for _, fields in await redis.xrange(keys.acct(ACCT)):
                assert t.encode() not in b"".join(fields.values())
    finally:
        if runner is not None:
            await runner.cleanup()
        await signer.close()


def _degraded_total() -> float:
    return sum(smp.value for fam in REGISTRY.collect() if fam.name == "mm_degraded"
               for smp in fam.samples if smp.name == "mm_degraded_total" and smp.labels.get("service") == "feed")


async def _more_gaps(r: Redis, n: int) -> bool:
    return len(await _gaps(r)) > n
