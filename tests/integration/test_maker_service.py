"""The maker shell against a real redis-server: books and account entries in, OrderIntents out."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from shared import keys
from shared.config import MakerConfig, Secrets, Settings, SkewConfig, TrendConfig, VolatilityConfig
from shared.ids import IdMint
from shared.schemas import BookTop, Msg, OrderEvent, OrderIntent, OrderUpdate, Position, decode, encode
from services.maker.app import MakerService, build
from tests.integration.harness import running

ACCOUNT = 7
BOOK = keys.md_book(2)
ACCT = keys.acct(ACCOUNT)


def settings(**maker: Any) -> Settings:
    # a 10 bps half-spread and a 3 bps requote threshold: the prices below are worked out for them
    base = {"volatility": VolatilityConfig(enabled=False), "trend": TrendConfig(enabled=False),
            "spread_bps": Decimal(10), "requote_bps": Decimal(3), **maker}
    return Settings(maker=MakerConfig.model_validate({**Settings().maker.model_dump(), **base}),
                    env=Secrets(account_index=ACCOUNT))


def book(mid: int = 140_000, ts_ms: int | None = None) -> BookTop:
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    return BookTop(market_id=2, seq=ts, venue_ts_ms=ts, bids=[(mid - 10, 100)], asks=[(mid + 10, 100)],
                   trace={"feed": time.time_ns()})


async def _true(value: bool) -> bool:
    return value


async def flat(redis: Redis) -> None:
    """The feed always publishes a Position when it subscribes (flat if none): the maker quotes only once
    it knows it (ts 0, so a test's own Position is newer)."""
    await xadd(redis, ACCT, Position(market_id=2, position=0, ts_ms=0))


@pytest.fixture(autouse=True)
async def _flat(redis: Redis) -> None:
    await flat(redis)


async def xadd(redis: Redis, stream: str, msg: Msg) -> None:
    await redis.xadd(stream, encode(msg))  # type: ignore[arg-type]


async def intents(redis: Redis) -> list[OrderIntent]:
    return [decode(f) for _, f in await redis.xrange(keys.ORDERS_INTENTS)]  # type: ignore[misc]


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def n_intents(redis: Redis, n: int) -> list[OrderIntent]:
    async def check() -> list[OrderIntent] | None:
        got = await intents(redis)
        return got if len(got) >= n else None
    return await wait_for(check)


async def test_latest_book_at_start_gives_two_post_only_quotes(redis: Redis) -> None:
    b = book()
    await redis.set(keys.book_latest(2), b.model_dump_json())
    svc = MakerService(settings())
    async with running(svc, redis):
        bid, ask = sorted(await n_intents(redis, 2), key=lambda i: i.is_ask)
    assert (bid.action, bid.source, bid.tif, bid.price, bid.size) == ("place", "maker", "post_only", 139_860, 76)
    assert (ask.is_ask, ask.price, ask.size) == (True, 140_140, 75)
    assert bid.ttl_ms == 5_000 and abs(bid.created_ms - time.time() * 1000) < 2_000
    assert bid.trace["feed"] == b.trace["feed"] and bid.trace["maker"] >= b.trace["feed"]
    assert bid.intent_id == f"maker-{bid.client_order_index}"


async def test_books_from_the_stream_and_requotes(redis: Redis) -> None:
    await xadd(redis, BOOK, book(130_000))  # before start: the tail starts after it
    svc = MakerService(settings(min_requote_interval_s=Decimal("0.1")))
    async with running(svc, redis):
        await asyncio.sleep(0.3)
        assert await intents(redis) == []
        await xadd(redis, BOOK, book())
        first = await n_intents(redis, 2)
        await asyncio.sleep(0.15)
        await xadd(redis, BOOK, book(140_100))  # ~7 bps: requote both sides
        got = await n_intents(redis, 6)
    assert [i.action for i in got[2:]].count("cancel") == 2
    cancelled = {i.client_order_index for i in got[2:] if i.action == "cancel"}
    assert cancelled == {i.client_order_index for i in first}
    assert {i.price for i in got[2:] if i.action == "place"} == {139_959, 140_241}  # mid 140.100 -/+ 0.1401, rounded outward


async def test_malformed_entries_are_dead_lettered_and_the_maker_keeps_running(redis: Redis) -> None:
    svc = MakerService(settings())
    async with running(svc, redis):
        await redis.xadd(BOOK, {"type": "book", "v": "1", "d": "{not json"})
        await wait_for(lambda: redis.xlen(keys.dead_letter("maker")))
        crossed = BookTop(market_id=2, seq=1, venue_ts_ms=int(time.time() * 1000), bids=[(140_100, 1)], asks=[(140_000, 1)])
        await xadd(redis, BOOK, crossed)
        await wait_for(lambda: _dlq_len_at_least(redis, 2))
        await redis.xadd(ACCT, {"type": "position", "v": "1", "d": '{"market_id": "x"}'})
        await wait_for(lambda: _dlq_len_at_least(redis, 3))
        await xadd(redis, BOOK, book())
        assert len(await n_intents(redis, 2)) == 2
        ok, detail = svc.health(time.time())
    dlq = [f for _, f in await redis.xrange(keys.dead_letter("maker"))]
    assert [f[b"stream"].decode() for f in dlq] == [BOOK, BOOK, ACCT]
    assert b"crossed book" in dlq[1][b"error"]
    assert (await redis.xpending(ACCT, "maker"))["pending"] == 0
    assert ok and detail["dead_letters"] == 1  # the crossed book; decode errors are counted by the bus


async def _dlq_len_at_least(redis: Redis, n: int) -> bool:
    return await redis.xlen(keys.dead_letter("maker")) >= n


async def test_position_history_skews_quotes_and_fills_are_tracked(redis: Redis) -> None:
    await xadd(redis, ACCT, Position(market_id=2, position=100, ts_ms=1))  # before start: group reads history
    await redis.set(keys.book_latest(2), book().model_dump_json())
    # 50 bps per SOL: the 0.1 SOL position shifts both quotes down 5 bps (70 ticks at 140)
    svc = MakerService(settings(min_requote_interval_s=Decimal("0.2"),
                                skew=SkewConfig(price_bps_per_unit=Decimal(50))))
    async with running(svc, redis):
        # the snapshot book is quoted at start, before the account history is read: flat first,
        # then the position arrives and both quotes move down (a requote, after the interval)
        async def both_cancelled() -> list[OrderIntent] | None:
            got = await intents(redis)
            first = {i.client_order_index for i in got[:2]}
            return got if len(got) > 2 and {i.client_order_index for i in got[2:] if i.action == "cancel"} >= first else None
        got = await wait_for(both_cancelled)
        assert svc.core.position == 100
        assert [(i.action, i.price) for i in got[:2]] == [("place", 139_860), ("place", 140_140)]
        # the ask moves at once; the new bid would not fit next to the old one while its cancel is in
        # flight (0.1 long + 2 x 0.076 > the guard's 0.2, counted as the guard counts it): it waits for
        # the venue's confirmation
        assert not [i for i in got[2:] if i.action == "place" and not i.is_ask]
        old_bid = got[0]
        await xadd(redis, ACCT, OrderUpdate(market_id=2, order_index=1, client_order_index=old_bid.client_order_index,
                                            is_ask=False, price=old_bid.price, initial_size=old_bid.size,
                                            remaining_size=0, filled_size=0, status="canceled", ts_ms=2))
        async def both_placed() -> dict[bool, OrderIntent] | None:
            p = {i.is_ask: i for i in (await intents(redis))[2:] if i.action == "place"}
            return p if len(p) == 2 else None
        places = await wait_for(both_placed)
        assert (places[False].price, places[True].price) == (139_790, 140_070)
        bid = places[False]
        await xadd(redis, ACCT, OrderUpdate(market_id=2, order_index=1, client_order_index=bid.client_order_index,
                                            is_ask=False, price=bid.price, initial_size=bid.size, remaining_size=0,
                                            filled_size=bid.size, status="filled", ts_ms=3))
        await wait_for(lambda: _no_bid(svc))
        n = len(await intents(redis))
        await xadd(redis, BOOK, book())
        refill = (await n_intents(redis, n + 1))[n]
    assert (refill.action, refill.is_ask, refill.price) == ("place", False, 139_790)


async def _no_bid(svc: MakerService) -> bool:
    return False not in svc.core.quotes


async def test_veto_event_frees_the_side(redis: Redis) -> None:
    await redis.set(keys.book_latest(2), book().model_dump_json())
    svc = MakerService(settings(min_requote_interval_s=Decimal("0.2")))
    async with running(svc, redis):
        bid = next(i for i in await n_intents(redis, 2) if not i.is_ask)
        await xadd(redis, keys.ORDERS_EVENTS, OrderEvent(kind="veto", intent_id=bid.intent_id, source="maker",
                                                         action="place", market_id=2,
                                                         client_order_index=bid.client_order_index, ts_ms=1))
        await xadd(redis, BOOK, book())
        again = (await n_intents(redis, 3))[2]
    assert again.action == "place" and not again.is_ask and again.client_order_index != bid.client_order_index


async def test_stale_book_pulls_quotes_and_health_turns_red(redis: Redis) -> None:
    from prometheus_client import REGISTRY

    def stale_count() -> float:
        return REGISTRY.get_sample_value("mm_degraded_total", {"service": "maker", "reason": "book_stale"}) or 0.0
    await redis.set(keys.book_latest(2), book().model_dump_json())
    svc = MakerService(settings(max_book_age_s=Decimal("0.4")))
    before = stale_count()
    async with running(svc, redis):
        placed = await n_intents(redis, 2)
        assert svc.health(time.time())[0]
        got = await n_intents(redis, 4)
        ok, detail = svc.health(time.time())
        assert not svc.ready()
    assert {i.client_order_index for i in got[2:] if i.action == "cancel"} == {i.client_order_index for i in placed}
    assert not ok and detail["mode"] == "stale" and detail["book_age_s"] > 0.4
    assert detail["state"] == "degraded" and "book stale" in detail["reason"]
    assert stale_count() == before + 1        # counted once per episode, however often it was looked at
    assert detail["intents"] == {"place": 2, "cancel": 2} and detail["last_intent_age_s"] is not None


async def test_unwanted_resting_order_is_cancelled(redis: Redis) -> None:
    svc = MakerService(settings())
    stray = IdMint("maker").next_coi(int(time.time() * 1000) - 60_000)  # minted by an earlier run
    async with running(svc, redis):
        await xadd(redis, ACCT, OrderUpdate(market_id=2, order_index=9, client_order_index=stray, is_ask=True,
                                            price=150_000, initial_size=75, remaining_size=75, filled_size=0,
                                            status="open", ts_ms=1))
        (cancel,) = await n_intents(redis, 1)
    assert (cancel.action, cancel.client_order_index) == ("cancel", stray)


async def test_stop_cancels_quotes_and_dry_run_publishes_nothing(redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="maker")
    await redis.set(keys.book_latest(2), book().model_dump_json())
    svc = MakerService(settings())
    async with running(svc, redis) as rt:
        placed = await n_intents(redis, 2)
    await svc.stop(rt)
    got = await intents(redis)
    assert {i.client_order_index for i in got[2:] if i.action == "cancel"} == {i.client_order_index for i in placed}

    await redis.flushall()
    await redis.set(keys.RISK_STATE, "ACTIVE")
    await redis.set(keys.book_latest(2), book().model_dump_json())
    await flat(redis)
    dry = MakerService(settings(dry_run=True))
    async with running(dry, redis) as rt:
        await wait_for(lambda: _true(dry.core.ledger.position_known))
        await xadd(redis, BOOK, book(140_200))
        await asyncio.sleep(0.3)
        assert dry.health(time.time())[0] and dry.core.targets
    await dry.stop(rt)
    assert await redis.exists(keys.ORDERS_INTENTS) == 0
    assert any(r.getMessage() == "dry-run quoting: bid 0.076@139.860, ask 0.075@140.140" for r in caplog.records)


def test_build_requires_the_account_index(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build(Settings())
    assert e.value.code == 2 and "LIGHTER_ACCOUNT_INDEX" in capsys.readouterr().err


async def test_orders_left_by_a_crashed_run_are_cancelled_at_start(redis: Redis) -> None:
    """The gateway recorded a maker order in gw:open; a new maker run (no memory of it) cancels it,
    and leaves the hedger's and other markets' records alone."""
    rec = {"market": 2, "side": "bid", "price": 139_990, "size": 76, "ts": 1}
    await redis.hset(keys.GATEWAY_OPEN_ORDERS, mapping={
        "1111": orjson.dumps({**rec, "intent_id": "maker-1111"}),
        "2222": orjson.dumps({**rec, "intent_id": "hedger-2222"}),
        "3333": orjson.dumps({**rec, "market": 0, "intent_id": "maker-3333"}),
    })
    svc = MakerService(settings())
    async with running(svc, redis):
        got = await n_intents(redis, 1)
    cancels = [i for i in got if i.action == "cancel"]
    assert [c.client_order_index for c in cancels] == [1111] and cancels[0].source == "maker"


async def test_the_trader_metrics_reach_metrics_from_what_the_maker_saw(redis: Redis) -> None:
    """mm_session_* on /metrics: the one metrics implementation over the maker's inputs and intents."""
    from prometheus_client import REGISTRY

    from shared.schemas import Fill
    await redis.set(keys.book_latest(2), book().model_dump_json())
    svc = MakerService(settings())
    svc.SESSION_EVERY_S = 0.2
    async with running(svc, redis):
        got = await n_intents(redis, 2)
        bid = next(i for i in got if not i.is_ask)
        now = int(time.time() * 1000)
        await xadd(redis, ACCT, Fill(market_id=2, trade_id=77, order_index=5, client_order_index=bid.client_order_index,
                                     is_ask=False, is_maker=True, price=bid.price, size=bid.size, fee=0, ts_ms=now))
        await xadd(redis, BOOK, book(ts_ms=now + 10))

        async def exported() -> bool:
            return REGISTRY.get_sample_value("mm_session_fills", {"source": "maker"}) == 1
        await wait_for(exported)
    assert REGISTRY.get_sample_value("mm_session_fill_ratio_maker") > 0
    assert REGISTRY.get_sample_value("mm_session_spread_capture_usd") is not None
