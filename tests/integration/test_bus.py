"""shared.bus against a real redis-server: the three traffic patterns and their failure paths."""
from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared import keys
from shared.bus import Bus, GroupConsumer, TailReader
from shared.schemas import BookTop, OrderIntent, decode


def book(seq: int) -> BookTop:
    return BookTop(market_id=2, seq=seq, venue_ts_ms=seq, bids=[(100, 1)], asks=[(101, 1)])


def intent(i: int) -> OrderIntent:
    return OrderIntent(intent_id=f"maker-{i}", source="maker", action="cancel", market_id=2, client_order_index=i, created_ms=1)


async def test_md_publish_mirrors_latest_key_and_tail_conflates(redis: Redis) -> None:
    bus = Bus(redis, "t")
    tail = TailReader(bus, [keys.md_book(2)], start="0", conflate=True)
    for s in range(1, 6):
        await bus.publish_md(keys.md_book(2), book(s), latest_key=keys.book_latest(2))
    got = await tail.read()
    assert [e.msg.seq for e in got] == [5]  # type: ignore[attr-defined]
    assert BookTop.model_validate_json(await redis.get(keys.book_latest(2))).seq == 5
    raw = await redis.xrange(keys.md_book(2), count=1)
    assert set(raw[0][1]) == {b"type", b"v", b"d"}  # readable with redis-cli XRANGE


async def test_group_consumer_rereads_own_pending_after_restart(redis: Redis) -> None:
    bus = Bus(redis, "t")
    c1 = GroupConsumer(bus, [keys.ORDERS_INTENTS], "g", "c1", block_ms=10)
    await c1.ensure_groups()
    for i in range(3):
        await bus.publish(keys.ORDERS_INTENTS, intent(i))
    first = await c1.read()
    first += await c1.read()
    assert len(first) == 3
    await c1.ack(first[0].stream, first[0].id)
    restarted = GroupConsumer(bus, [keys.ORDERS_INTENTS], "g", "c1", block_ms=10)  # same name: owns the PEL
    again = await restarted.read()
    assert [e.msg.intent_id for e in again] == ["maker-1", "maker-2"]  # type: ignore[attr-defined]
    assert await restarted.read() == []


async def test_claim_idle_takes_over_a_dead_consumers_entries(redis: Redis) -> None:
    bus = Bus(redis, "t")
    dead = GroupConsumer(bus, [keys.ORDERS_INTENTS], "g", "dead", block_ms=10)
    await dead.ensure_groups()
    await bus.publish(keys.ORDERS_INTENTS, intent(7))
    await dead.read()
    await dead.read()
    alive = GroupConsumer(bus, [keys.ORDERS_INTENTS], "g", "alive", block_ms=10, min_idle_ms=0)
    assert await alive.claim_idle() == 1
    got = await alive.read() + await alive.read()
    assert [e.msg.intent_id for e in got] == ["maker-7"]  # delivered once, not again by the history re-read  # type: ignore[attr-defined]
    assert await alive.read() == []


async def test_malformed_entry_is_dead_lettered_and_acked(redis: Redis) -> None:
    bus = Bus(redis, "svc")
    c = GroupConsumer(bus, [keys.ORDERS_INTENTS], "g", "c", block_ms=10)
    await c.ensure_groups()
    await redis.xadd(keys.ORDERS_INTENTS, {"type": "intent", "v": "1", "d": "{not json"})
    await bus.publish(keys.ORDERS_INTENTS, intent(1))
    got = await c.read() + await c.read()
    assert [e.msg.intent_id for e in got] == ["maker-1"]  # type: ignore[attr-defined]
    dlq = await redis.xrange(keys.dead_letter("svc"))
    assert len(dlq) == 1 and b"invalid intent" in dlq[0][1][b"error"]
    assert (await redis.xpending(keys.ORDERS_INTENTS, "g"))["pending"] == 1  # only the good one awaits its ack


async def test_group_is_recreated_after_flushall(redis: Redis) -> None:
    bus = Bus(redis, "t")
    c = GroupConsumer(bus, [keys.ORDERS_INTENTS], "g", "c", block_ms=10)
    await c.ensure_groups()
    await c.read()
    await redis.flushall()
    assert await c.read() == []  # NOGROUP handled by recreating
    await bus.publish(keys.ORDERS_INTENTS, intent(3))
    assert [e.msg.intent_id for e in await c.read()] == ["maker-3"]  # type: ignore[attr-defined]


async def test_publish_and_ack_never_acks_when_the_publish_fails(redis: Redis) -> None:
    bus = Bus(redis, "t")
    c = GroupConsumer(bus, [keys.ORDERS_INTENTS], "g", "c", block_ms=10)
    await c.ensure_groups()
    await bus.publish(keys.ORDERS_INTENTS, intent(1))
    (e,) = await c.read() + await c.read()
    await redis.set(keys.ORDERS_APPROVED, "in the way")  # XADD fails with WRONGTYPE
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await bus.publish_and_ack(keys.ORDERS_APPROVED, e.msg, e.stream, "g", e.id)
    assert (await redis.xpending(keys.ORDERS_INTENTS, "g"))["pending"] == 1
    await redis.delete(keys.ORDERS_APPROVED)
    await bus.publish_and_ack(keys.ORDERS_APPROVED, e.msg, e.stream, "g", e.id)
    assert (await redis.xpending(keys.ORDERS_INTENTS, "g"))["pending"] == 0
    assert decode((await redis.xrange(keys.ORDERS_APPROVED))[0][1]) == e.msg


async def test_publish_all_and_ack_answers_a_batch_in_order_and_acks_nothing_on_failure(redis: Redis) -> None:
    bus = Bus(redis, "t")
    c = GroupConsumer(bus, [keys.ORDERS_INTENTS], "g", "c", block_ms=10)
    await c.ensure_groups()
    await bus.publish_many(keys.ORDERS_INTENTS, [intent(i) for i in range(3)])
    got = await c.read() + await c.read()
    out = [(keys.ORDERS_APPROVED, got[0].msg), (keys.ORDERS_EVENTS, got[1].msg), (keys.ORDERS_APPROVED, got[2].msg)]
    await redis.set(keys.ORDERS_EVENTS, "in the way")  # the second XADD fails with WRONGTYPE
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await bus.publish_all_and_ack(out, keys.ORDERS_INTENTS, "g", [e.id for e in got])
    assert (await redis.xpending(keys.ORDERS_INTENTS, "g"))["pending"] == 3
    await redis.delete(keys.ORDERS_EVENTS, keys.ORDERS_APPROVED)
    await bus.publish_all_and_ack(out, keys.ORDERS_INTENTS, "g", [e.id for e in got])
    assert (await redis.xpending(keys.ORDERS_INTENTS, "g"))["pending"] == 0
    assert [decode(f).intent_id for _, f in await redis.xrange(keys.ORDERS_APPROVED)] == ["maker-0", "maker-2"]  # type: ignore[attr-defined]
    assert [decode(f).intent_id for _, f in await redis.xrange(keys.ORDERS_EVENTS)] == ["maker-1"]  # type: ignore[attr-defined]


async def test_publish_many_keeps_order_in_one_call(redis: Redis) -> None:
    bus = Bus(redis, "t")
    await bus.publish_many(keys.ORDERS_INTENTS, [intent(i) for i in range(4)])
    got = [decode(f).intent_id for _, f in await redis.xrange(keys.ORDERS_INTENTS)]  # type: ignore[attr-defined]
    assert got == [f"maker-{i}" for i in range(4)]


async def test_rewind_rereads_an_entry_left_pending(redis: Redis) -> None:
    bus = Bus(redis, "t")
    c = GroupConsumer(bus, [keys.ORDERS_INTENTS], "g", "c", block_ms=10)
    await c.ensure_groups()
    await bus.publish(keys.ORDERS_INTENTS, intent(1))
    await bus.publish(keys.ORDERS_INTENTS, intent(2))
    got = await c.read() + await c.read()
    await c.ack(got[1].stream, got[1].id)  # the first one failed to be handled: left pending
    assert await c.read() == []
    c.rewind()
    assert [e.msg.intent_id for e in await c.read()] == ["maker-1"]  # type: ignore[attr-defined]


async def test_undecodable_bytes_are_dead_lettered_not_fatal(redis: Redis) -> None:
    bus = Bus(redis, "svc")
    c = GroupConsumer(bus, [keys.ORDERS_INTENTS], "g", "c", block_ms=10)
    await c.ensure_groups()
    await redis.xadd(keys.ORDERS_INTENTS, {b"type": b"\xff\xfe", b"v": b"1", b"d": b"{}"})
    await redis.xadd(keys.ORDERS_INTENTS, {b"\xff": b"x"})
    await bus.publish(keys.ORDERS_INTENTS, intent(5))
    got = await c.read() + await c.read()
    assert [e.msg.intent_id for e in got] == ["maker-5"]  # type: ignore[attr-defined]
    assert await redis.xlen(keys.dead_letter("svc")) == 2
