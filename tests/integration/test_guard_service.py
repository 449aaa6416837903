"""The guard shell against a real redis-server: intents in, verdicts out, kill flag, dead letters, restarts."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from services.guard.app import GuardService
from shared import clock, keys
from shared.bus import Bus
from shared.config import Secrets, Settings
from shared.runtime import Runtime
from shared.schemas import BookTop, OrderEvent, OrderIntent, OrderUpdate, Position, decode
from tests.conftest import REPO, free_port, wait_port

ACCT = 4242
ACCT_STREAM = keys.acct(ACCT)
MARKET = 2


def settings(url: str) -> Settings:
    return Settings(env=Secrets(redis_url=url, account_index=ACCT))


@asynccontextmanager
async def running_guard(url: str) -> AsyncIterator[tuple[GuardService, Runtime]]:
    r = Redis.from_url(url)
    rt = Runtime("guard", settings(url), r)
    svc = GuardService(rt.settings, block_ms=50)
    await svc.start(rt)
    task = asyncio.create_task(svc.run(rt))
    try:
        yield svc, rt
    finally:
        rt.stopping.set()
        await asyncio.wait_for(task, 5)
        await svc.stop(rt)
        await r.aclose()


_coi = iter(range(10_000, 10**9, 4))


def place(price: int = 174_000, size: int = 64, is_ask: bool = False, **kw: Any) -> OrderIntent:
    coi = next(_coi) + 1
    kw.setdefault("created_ms", clock.now_ms())
    kw.setdefault("book_ts_ms", clock.now_ms())   # priced from a book of now (the guard's max_book_age_ms is 1 s)
    return OrderIntent(intent_id=f"maker-{coi}", source="maker", action="place", market_id=MARKET, client_order_index=coi,
                       is_ask=is_ask, price=price, size=size, **kw)


async def set_book(redis: Redis, bid: int = 174_999, ask: int = 175_001, age_ms: int = 0) -> None:
    b = BookTop(market_id=MARKET, seq=1, venue_ts_ms=clock.now_ms() - age_ms, bids=[(bid, 1000)], asks=[(ask, 1000)])
    await Bus(redis, "feed").publish_md(keys.md_book(MARKET), b, latest_key=keys.book_latest(MARKET))
    if await redis.xlen(ACCT_STREAM) == 0:  # the feed always publishes a Position when it subscribes (flat if none)
        await Bus(redis, "feed").publish(ACCT_STREAM, Position(market_id=MARKET, position=0, ts_ms=0))


async def send(redis: Redis, *intents: OrderIntent) -> None:
    bus = Bus(redis, "maker")
    for it in intents:
        await bus.publish(keys.ORDERS_INTENTS, it)


async def stream(redis: Redis, name: str) -> list[Any]:
    return [decode(f) for _, f in await redis.xrange(name)]


async def approved_ids(redis: Redis) -> list[str]:
    return [m.intent_id for m in await stream(redis, keys.ORDERS_APPROVED)]


async def vetoes(redis: Redis) -> dict[str, str]:
    return {m.intent_id: m.message for m in await stream(redis, keys.ORDERS_EVENTS)
            if isinstance(m, OrderEvent) and m.kind == "veto"}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def verdicts_for(redis: Redis, *intents: OrderIntent) -> None:
    want = {i.intent_id for i in intents}

    async def done() -> bool:
        return want <= set(await approved_ids(redis)) | set(await vetoes(redis))
    await eventually(done)


async def pending_intents(redis: Redis) -> int:
    return int((await redis.xpending(keys.ORDERS_INTENTS, keys.GROUP_GUARD))["pending"])


async def test_intents_in_verdicts_out(redis: Redis, redis_server: str) -> None:
    await set_book(redis)
    async with running_guard(redis_server) as (svc, _):
        ok, too_big, stale = place(size=64), place(size=201), place(created_ms=clock.now_ms() - 60_000)
        cancel = OrderIntent(intent_id="maker-c1", source="maker", action="cancel", market_id=MARKET,
                             client_order_index=ok.client_order_index, created_ms=clock.now_ms())
        await send(redis, ok, too_big, stale, cancel)
        await verdicts_for(redis, ok, too_big, stale, cancel)
        out = await stream(redis, keys.ORDERS_APPROVED)
        assert [m.intent_id for m in out] == [ok.intent_id, cancel.intent_id]
        assert out[0].model_dump(exclude={"trace"}) == ok.model_dump(exclude={"trace"}) and "guard" in out[0].trace
        v = {m.intent_id: m for m in await stream(redis, keys.ORDERS_EVENTS)}
        assert v[too_big.intent_id].message == "position: worst long 0.265 > max 0.2 SOL"  # 0.064 in flight + 0.201
        assert (v[too_big.intent_id].client_order_index, v[too_big.intent_id].size) == (too_big.client_order_index, 201)
        assert v[stale.intent_id].message == "stale" and v[stale.intent_id].kind == "veto"
        await eventually(lambda: _eq(pending_intents(redis), 0))
        healthy, detail = svc.health(time.time())
        assert healthy and detail["verdicts"]["vetoed"] == {"position": 1, "stale": 1}
        assert detail["verdicts"]["approved"] == {"ok": 1, "cancel": 1} and detail["mid"] == "175"


async def _eq(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def test_kill_flag_vetoes_places_and_delete_resumes(redis: Redis, redis_server: str) -> None:
    await set_book(redis)
    async with running_guard(redis_server):
        await redis.set(keys.RISK_KILL, "manual")
        a = place()
        cancel_all = OrderIntent(intent_id="op-1", source="operator", action="cancel_all", market_id=-1,
                                 created_ms=clock.now_ms())
        await send(redis, a, cancel_all)
        await verdicts_for(redis, a, cancel_all)
        assert (await vetoes(redis))[a.intent_id] == "halted: kill: manual"
        assert await approved_ids(redis) == ["op-1"]
        await redis.delete(keys.RISK_KILL)
        b = place()
        await send(redis, b)
        await verdicts_for(redis, b)
        assert await approved_ids(redis) == ["op-1", b.intent_id]


async def test_unreadable_kill_flag_fails_closed(redis: Redis, redis_server: str) -> None:
    await set_book(redis)
    async with running_guard(redis_server) as (svc, _):
        await redis.hset(keys.RISK_KILL, "why", "wrong type")
        a = place()
        await send(redis, a)
        await verdicts_for(redis, a)
        assert (await vetoes(redis))[a.intent_id] == "halted: unreadable: risk:kill unreadable"
        assert svc.health(time.time())[1]["kill"]["readable"] is False


async def test_malformed_intent_is_dead_lettered_and_guard_keeps_going(redis: Redis, redis_server: str) -> None:
    await set_book(redis)
    async with running_guard(redis_server) as (svc, _):
        await redis.xadd(keys.ORDERS_INTENTS, {"type": "intent", "v": "1", "d": "{not json"})
        await Bus(redis, "feed").publish(keys.ORDERS_INTENTS, Position(market_id=MARKET, position=1, ts_ms=1))
        await redis.xadd(ACCT_STREAM, {"type": "position", "v": "1", "d": '{"market_id": "two"}'})
        good = place()
        await send(redis, good)
        await verdicts_for(redis, good)
        await eventually(lambda: _eq(redis.xlen(keys.dead_letter("guard")), 3))
        dlq = sorted((f[b"stream"].decode(), f[b"error"].decode()) for _, f in await redis.xrange(keys.dead_letter("guard")))
        assert [s for s, _ in dlq] == [ACCT_STREAM, keys.ORDERS_INTENTS, keys.ORDERS_INTENTS]
        assert dlq[0][1].startswith("invalid position") and dlq[1][1].startswith("invalid intent")
        assert dlq[2][1] == "unexpected position on orders:intents"
        assert await approved_ids(redis) == [good.intent_id]
        await eventually(lambda: _eq(pending_intents(redis), 0))
        assert svc.core.position == 0  # the bad Position did not count


async def test_restart_rereads_pending_intents_without_duplicate_verdicts(redis: Redis, redis_server: str) -> None:
    await set_book(redis)
    a = place(size=64)
    async with running_guard(redis_server):
        await send(redis, a)
        await verdicts_for(redis, a)
        await eventually(lambda: _eq(pending_intents(redis), 0))
    # the previous instance crashed after reading b, c, d; it had published d's verdict but not acked it
    b, c, d = place(size=64), place(price=176_000, size=64, is_ask=True), place(price=177_000, size=64, is_ask=True)
    await send(redis, b, c, d)
    got = await redis.xreadgroup(keys.GROUP_GUARD, "guard-1", {keys.ORDERS_INTENTS: ">"}, count=10)
    assert len(got[0][1]) == 3 and await pending_intents(redis) == 3
    await Bus(redis, "guard").publish(keys.ORDERS_APPROVED, d.model_copy(update={"trace": {"guard": 1}}))
    async with running_guard(redis_server) as (svc, _):
        await eventually(lambda: _eq(pending_intents(redis), 0))
        await asyncio.sleep(0.2)
        assert await vetoes(redis) == {}
        assert sorted(await approved_ids(redis)) == sorted([a.intent_id, d.intent_id, b.intent_id, c.intent_id])
        assert await vetoes(redis) == {}
        assert svc.core.duplicates == 1
        assert (svc.core.open_lots(False), svc.core.open_lots(True)) == (128, 128)   # a and d replayed, b and c new


async def test_state_is_rebuilt_from_the_account_stream_after_a_restart(redis: Redis, redis_server: str) -> None:
    bus = Bus(redis, "feed")
    await bus.publish(ACCT_STREAM, Position(market_id=MARKET, position=50, ts_ms=1))
    await set_book(redis)
    for coi, status in ((11, "open"), (12, "open"), (12, "filled")):
        await bus.publish(ACCT_STREAM, OrderUpdate(market_id=MARKET, order_index=coi, client_order_index=coi, is_ask=False,
                                                   price=174_000, initial_size=50, remaining_size=50 if status == "open" else 0,
                                                   filled_size=0, status=status, ts_ms=1))
    async with running_guard(redis_server) as (svc, _):
        assert (svc.core.position, [o.coi for o in svc.core.ledger.open_orders()]) == (50, [11])
        over, fits = place(price=174_000, size=101), place(price=174_000, size=100)
        await send(redis, over)
        await verdicts_for(redis, over)
        assert (await vetoes(redis))[over.intent_id] == "position: worst long 0.201 > max 0.2 SOL"
        await send(redis, fits)
        await verdicts_for(redis, fits)
        assert fits.intent_id in await approved_ids(redis)
        # live account events keep flowing; entries seen during the replay are not applied twice
        await bus.publish(ACCT_STREAM, OrderUpdate(market_id=MARKET, order_index=11, client_order_index=11, is_ask=False,
                                                   price=174_000, initial_size=50, remaining_size=0, filled_size=50,
                                                   status="filled", ts_ms=2))
        await eventually(lambda: _true(not svc.core.ledger.open_orders()))


async def _true(v: bool) -> bool:
    return v


async def risk_events(redis: Redis) -> list[tuple[str, str]]:
    return [(m.state, m.reason) for m in await stream(redis, keys.RISK_EVENTS)]


async def test_a_breach_moves_to_reducing_never_touching_the_operator_kill(redis: Redis, redis_server: str) -> None:
    await set_book(redis, 99_999, 100_001)
    bus = Bus(redis, "feed")
    async with running_guard(redis_server):
        await eventually(lambda: _eq(redis.get(keys.RISK_STATE), b"ACTIVE"))
        await bus.publish(ACCT_STREAM, Position(market_id=MARKET, position=250, ts_ms=1))
        await eventually(lambda: _eq(redis.get(keys.RISK_STATE), b"REDUCING"))
        assert await redis.get(keys.RISK_KILL) is None
        assert (await risk_events(redis))[-1] == ("REDUCING", "inventory: position 0.25 beyond max 0.2 SOL")
        reduce, add = place(price=100_500, size=120, is_ask=True), place(price=99_500, size=120)
        await send(redis, reduce, add)
        await verdicts_for(redis, reduce, add)
        assert await approved_ids(redis) == [reduce.intent_id]
        assert (await vetoes(redis))[add.intent_id].startswith("reducing: only orders that shrink position 0.25 SOL")
        await redis.set(keys.RISK_KILL, "ops: investigating")
        await eventually(lambda: _eq(redis.get(keys.RISK_STATE), b"HALTED"))
        await bus.publish(ACCT_STREAM, Position(market_id=MARKET, position=0, ts_ms=2))
        await asyncio.sleep(0.3)
        assert await redis.get(keys.RISK_KILL) == b"ops: investigating"
        assert (await risk_events(redis))[-1] == ("HALTED", "kill: ops: investigating")
        await redis.delete(keys.RISK_KILL)
        await eventually(lambda: _eq(redis.get(keys.RISK_STATE), b"ACTIVE"))


async def test_notional_breach_from_the_book_stream_moves_to_reducing(redis: Redis, redis_server: str) -> None:
    await set_book(redis)
    await Bus(redis, "feed").publish(ACCT_STREAM, Position(market_id=MARKET, position=200, ts_ms=1))
    async with running_guard(redis_server):
        await asyncio.sleep(0.1)
        assert await redis.get(keys.RISK_STATE) == b"ACTIVE"   # 0.2 SOL @ 175 = 35 USDC: at the limit
        await set_book(redis, 175_500, 175_501)
        await eventually(lambda: _eq(redis.get(keys.RISK_STATE), b"REDUCING"))
        assert (await risk_events(redis))[-1][1] == "inventory: notional 35.1001 > max 35 USDC (position 0.2 SOL @ 175.5005)"


async def test_a_deleted_state_is_written_again(redis: Redis, redis_server: str) -> None:
    await set_book(redis)
    async with running_guard(redis_server):
        await eventually(lambda: _eq(redis.get(keys.RISK_STATE), b"ACTIVE"))
        await redis.delete(keys.RISK_STATE)
        a = place()
        await send(redis, a)
        await verdicts_for(redis, a)
        await eventually(lambda: _eq(redis.get(keys.RISK_STATE), b"ACTIVE"))


async def test_unhealthy_when_mid_is_old_while_intents_arrive(redis: Redis, redis_server: str) -> None:
    await set_book(redis, age_ms=20_000)  # a dead feed left this behind
    async with running_guard(redis_server) as (svc, _):
        assert svc.health(time.time())[0]  # no intents yet: an old mid is harmless
        a = place()
        await send(redis, a)
        await verdicts_for(redis, a)
        ok, detail = svc.health(time.time())
        assert not ok and detail["problems"] == ["mid older than 10s while intents arrive"]
        await set_book(redis)
        await eventually(lambda: _true(svc.health(time.time())[0]))


@pytest.mark.timeout(30)
async def test_process_serves_health_and_stops_on_sigterm(redis: Redis, redis_server: str) -> None:
    await set_book(redis)
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_server, "LIGHTER_ACCOUNT_INDEX": str(ACCT)}
    proc = subprocess.Popen([sys.executable, "-m", "services.guard", "--port", str(port), "--host", "127.0.0.1"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await asyncio.to_thread(wait_port, port)
        async with aiohttp.ClientSession() as http:
            async def ready() -> bool:
                async with http.get(f"http://127.0.0.1:{port}/ready") as r:
                    return r.status == 200
            await eventually(ready, 10)
            a = place()
            await send(redis, a)
            await verdicts_for(redis, a)
            async with http.get(f"http://127.0.0.1:{port}/health") as r:
                body = await r.json()
                assert r.status == 200 and body["service"] == "guard"
                assert body["kill"] == {"set": False, "reason": None, "readable": True}
                assert body["trading"] == {"state": "ACTIVE", "reason": ""}
                assert body["verdicts"]["approved"] == {"ok": 1} and body["position"]["units"] == "0"
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
                assert 'mm_guard_verdicts_total{reason="ok",verdict="approved"} 1.0' in text
                assert "mm_position_lots" in text and 'mm_risk_state{state="ACTIVE"} 1.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(proc.communicate, timeout=15)
    assert proc.returncode == 0, err


def test_refuses_to_start_without_an_account_index() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LIGHTER_ACCOUNT_INDEX"}
    r = subprocess.run([sys.executable, "-m", "services.guard", "--port", str(free_port()), "--host", "127.0.0.1"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "LIGHTER_ACCOUNT_INDEX" in r.stderr and len(r.stderr.strip().splitlines()) == 1


async def test_verdict_that_failed_to_publish_is_resent_unchanged(redis: Redis, redis_server: str) -> None:
    """A verdict is decided once: if publishing fails it is retried as is, not judged again."""
    await set_book(redis)
    rt = Runtime("guard", settings(redis_server), Redis.from_url(redis_server))
    svc = GuardService(rt.settings, block_ms=50)
    try:
        await svc.start(rt)
        await redis.set(keys.ORDERS_APPROVED, "in the way")  # XADD now fails with WRONGTYPE
        a = place()
        await send(redis, a)
        with pytest.raises(Exception, match="WRONGTYPE"):
            for _ in range(20):
                await svc._order_step(rt)
        assert await pending_intents(redis) == 1 and svc.health(time.time())[1]["unhandled"] == 1
        await redis.delete(keys.ORDERS_APPROVED)
        await redis.set(keys.RISK_KILL, "manual")  # would veto a fresh judgement
        await svc._order_step(rt)
        assert await approved_ids(redis) == [a.intent_id] and await vetoes(redis) == {}
        assert await pending_intents(redis) == 0 and svc.core.approved == {"ok": 1}
    finally:
        await rt.redis.aclose()
