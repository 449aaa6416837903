"""The hedger shell against a real redis-server: position and books in, hedge intents out."""
from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from shared import keys
from shared.config import HedgerConfig, Secrets, Settings
from shared.schemas import OrderEvent, OrderUpdate, Position
from services.hedger.app import HedgerService
from tests.integration.test_maker_service import book, intents, n_intents, wait_for, xadd
from tests.integration.harness import running

ACCOUNT = 7
ACCT = keys.acct(ACCOUNT)


def settings(**hedger: Any) -> Settings:
    return Settings(hedger=HedgerConfig.model_validate({**Settings().hedger.model_dump(), **hedger}),
                    env=Secrets(account_index=ACCOUNT))


async def test_passive_clip_then_ioc_after_the_wait(redis: Redis) -> None:
    await redis.set(keys.book_latest(2), book().model_dump_json())   # bid 139.990 / ask 140.010
    await xadd(redis, ACCT, Position(market_id=2, position=200, ts_ms=1))
    svc = HedgerService(settings(passive_wait_s=Decimal("0.3")))
    async with running(svc, redis):
        (passive,) = await n_intents(redis, 1)
        assert (passive.source, passive.action, passive.is_ask, passive.tif) == ("hedger", "place", True, "post_only")
        assert (passive.price, passive.size, passive.reduce_only) == (139_991, 76, True)
        assert passive.ttl_ms == 2_000 and "hedger" in passive.trace
        cancel = (await n_intents(redis, 2))[1]
        assert (cancel.action, cancel.client_order_index) == ("cancel", passive.client_order_index)
        await asyncio.sleep(0.2)
        assert len(await intents(redis)) == 2  # no IOC before the venue says the passive order is gone
        await xadd(redis, keys.ORDERS_EVENTS, OrderEvent(kind="ack", intent_id=cancel.intent_id, source="hedger",
                                                         action="cancel", client_order_index=cancel.client_order_index,
                                                         ts_ms=2))
        await xadd(redis, ACCT, OrderUpdate(market_id=2, order_index=5, client_order_index=passive.client_order_index,
                                            is_ask=True, price=passive.price, initial_size=76, remaining_size=76,
                                            filled_size=0, status="canceled", ts_ms=3))
        ioc = (await n_intents(redis, 3))[2]
        ok, detail = svc.health(time.time())
    assert (ioc.action, ioc.is_ask, ioc.tif, ioc.order_type) == ("place", True, "ioc", "limit")
    # best bid 139.990 - 6 bps = 139.906, never below mid 140.000 - 25 bps = 139.650
    assert ioc.price == 139_906 and ioc.size == 76 and ioc.reduce_only
    assert ok and detail["mode"] == "aggressive" and detail["clip"]["phase"] == "aggressive"
    assert detail["intents"] == {"place": 2, "cancel": 1} and detail["position"] == 200


async def test_flat_position_and_stale_book_send_nothing(redis: Redis) -> None:
    await xadd(redis, ACCT, Position(market_id=2, position=50, ts_ms=1))
    svc = HedgerService(settings())
    async with running(svc, redis):
        await xadd(redis, keys.md_book(2), book(ts_ms=int(time.time() * 1000) - 10_000))  # 10 s old
        await asyncio.sleep(0.3)
        ok, detail = svc.health(time.time())
        assert not ok and detail["mode"] == "stale"
        await xadd(redis, keys.md_book(2), book())
        await wait_for(lambda: _mode_is(svc, "idle"))
        await xadd(redis, ACCT, Position(market_id=2, position=-300, ts_ms=2))
        (buy,) = await n_intents(redis, 1)
    assert not buy.is_ask and buy.tif == "post_only" and buy.reduce_only


async def _mode_is(svc: HedgerService, mode: str) -> bool:
    return svc.core.mode == mode


async def test_malformed_account_entry_is_dead_lettered(redis: Redis) -> None:
    await redis.set(keys.book_latest(2), book().model_dump_json())
    svc = HedgerService(settings())
    async with running(svc, redis):
        await redis.xadd(ACCT, {"type": "nope", "v": "1", "d": "{}"})
        await wait_for(lambda: redis.xlen(keys.dead_letter("hedger")))
        await xadd(redis, ACCT, Position(market_id=2, position=200, ts_ms=1))
        (clip,) = await n_intents(redis, 1)
    assert clip.is_ask and clip.source == "hedger"


async def test_dry_run_publishes_nothing(redis: Redis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hedger")
    await redis.set(keys.book_latest(2), book().model_dump_json())
    await xadd(redis, ACCT, Position(market_id=2, position=200, ts_ms=1))
    svc = HedgerService(settings(dry_run=True))
    async with running(svc, redis) as rt:
        await wait_for(lambda: _mode_is(svc, "idle"))
        await asyncio.sleep(0.3)
    await svc.stop(rt)
    assert await redis.exists(keys.ORDERS_INTENTS) == 0
    assert any(r.getMessage().startswith("dry-run hedge: passive sell 0.076@139.991") for r in caplog.records)
