"""The feed shell against the real local venue (``python -m services.venue`` on a free port) and redis-server.

What the fake server in test_feed_app.py cannot prove: that the feed reads the venue's actual wire
shapes (decimals check, book chain, trades, private channels with a real SDK token, a real fill),
and survives the venue's own faults (``skip_book_nonce``, ``drop_ws``).
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from lighter.signer_client import SignerClient, create_api_key
from redis.asyncio import Redis

from services.feed.app import FeedService
from shared import keys
from shared.config import FeedConfig, Secrets, Settings
from shared.runtime import Runtime
from shared.schemas import BookTop, Fill, OrderUpdate, Position, Trade, decode
from tests.conftest import REPO, free_port, wait_port
from tests.integration.test_feed_app import until

pytestmark = pytest.mark.timeout(60)

ACCT, KEY = 321, 4


@dataclass(frozen=True)
class Venue:
    port: int
    private_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    priv, pub, err = create_api_key()
    assert err is None
    port = free_port()
    log = (tmp_path_factory.mktemp("venue") / "venue.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "services.venue", "--port", str(port), "--seed", "5", "--admin",
                             "--rate-limit", "off", "--account", f"{ACCT}:{KEY}:{str(pub).removeprefix('0x')}"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        yield Venue(port, str(priv))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
async def feed(venue: Venue, redis: Redis, redis_server: str, tmp_path: Path) -> AsyncIterator[FeedService]:
    settings = Settings(feed=FeedConfig(reconnect_min_s=Decimal("0.05"), reconnect_max_s=Decimal("0.2")),
                        env=Secrets(redis_url=redis_server, base_url=venue.url, ws_url=f"ws://127.0.0.1:{venue.port}/stream",
                                    account_index=ACCT))
    rt = Runtime("feed", settings, Redis.from_url(redis_server))
    service = FeedService(settings, token_file=tmp_path / "absent", token_poll_s=0.1, tick_s=0.05)
    await service.start(rt)
    task = asyncio.create_task(service.run(rt))
    try:
        yield service
    finally:
        rt.stopping.set()
        await asyncio.wait_for(task, 5)
        await service.stop(rt)
        await rt.redis.aclose()
        async with aiohttp.ClientSession() as http:
            await http.delete(f"{venue.url}/admin/fault")


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
