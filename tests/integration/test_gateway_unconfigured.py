"""Gateway process without its private key, on a real redis-server: up, unhealthy, sending nothing.

Also the stream plumbing that needs no venue: malformed entries are dead-lettered while the
service keeps running, and account-stream cancels are mapped back to intents.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from shared import keys
from shared.bus import Bus
from shared.clock import now_ms
from shared.ids import IdMint
from shared.schemas import Fill, OrderEvent, OrderIntent, OrderUpdate, decode
from tests.conftest import REPO, free_port, wait_port

pytestmark = pytest.mark.timeout(60)
ACCOUNT = 301


@pytest.fixture
def gateway(redis_server: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port, venue_port = free_port(), free_port()    # nothing listens on venue_port: the gateway must not need it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTER_", "GATEWAY_"))}
    env.update(REDIS_URL=redis_server, LIGHTER_BASE_URL=f"http://127.0.0.1:{venue_port}",
               LIGHTER_ACCOUNT_INDEX=str(ACCOUNT), LIGHTER_API_KEY_INDEX="4")
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.gateway", "--port", str(port), "--host", "127.0.0.1"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 15)
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.json()


async def wait_for(redis: Redis, pred: Any, timeout: float = 5.0) -> OrderEvent:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, f in await redis.xrange(keys.ORDERS_EVENTS):
            ev = decode(f)
            if isinstance(ev, OrderEvent) and pred(ev):
                return ev
        await asyncio.sleep(0.02)
    raise TimeoutError("event not seen")


async def test_missing_key_keeps_the_gateway_up_unhealthy_and_silent(
        redis: Redis, gateway: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    proc, port, log = gateway
    deadline = time.monotonic() + 10
    while "kill" not in (health := (await get(port, "/health"))[1]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)   # started: the core exists and has read the kill flag
    status, health = await get(port, "/health")
    assert status == 503 and health["status"] == "unhealthy"
    assert health["signer_ready"] is False and health["signer_problem"] == "missing LIGHTER_API_PRIVATE_KEY"
    assert (await get(port, "/ready"))[0] == 503

    mint = IdMint("maker")
    coi = mint.next_coi(now_ms())
    it = OrderIntent(intent_id=mint.intent_id(coi), source="maker", action="place", market_id=2, client_order_index=coi,
                     price=105_000, size=100, created_ms=now_ms())
    bus = Bus(redis, "test")
    await redis.xadd(keys.ORDERS_APPROVED, {"type": "intent", "v": "1", "d": "{not json"})          # garbage
    await bus.publish(keys.ORDERS_APPROVED, Fill(market_id=2, trade_id=1, order_index=1, client_order_index=coi,
                                                  is_ask=False, is_maker=True, price=1, size=1, ts_ms=now_ms()))  # wrong type
    await bus.publish(keys.ORDERS_APPROVED, it)
    ev = await wait_for(redis, lambda e: e.intent_id == it.intent_id)
    assert ev.kind == "not_sent" and ev.message == "gateway cannot sign: missing LIGHTER_API_PRIVATE_KEY"
    dlq = await redis.xrange(keys.dead_letter("gateway"))
    assert len(dlq) == 2 and b"expected an intent" in dlq[1][1][b"error"]
    pending = await redis.xpending(keys.ORDERS_APPROVED, keys.GROUP_GATEWAY)
    assert pending["pending"] == 0                                   # everything handled and acknowledged

    upd = OrderUpdate(market_id=2, order_index=1, client_order_index=coi, is_ask=False, price=105_000, initial_size=100,
                      remaining_size=100, filled_size=0, status="canceled-expired", ts_ms=now_ms())
    await redis.hset(keys.GATEWAY_OPEN_ORDERS, str(coi), "{}")
    await bus.publish(keys.acct(ACCOUNT), upd)
    ev = await wait_for(redis, lambda e: e.kind == "canceled")
    assert (ev.intent_id, ev.source, ev.message) == (it.intent_id, "maker", "canceled-expired")
    assert not await redis.hexists(keys.GATEWAY_OPEN_ORDERS, str(coi))

    assert await redis.get(keys.AUTH_WS_TOKEN) is None
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert "missing LIGHTER_API_PRIVATE_KEY" in log.read_text()
