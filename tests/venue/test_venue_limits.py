"""Account tiers: standard latency and 60/min limits, premium volume quota; 429 code 23000."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import lighter
import pytest

from .conftest import VenueProc, start_venue, stop_venue
from .helpers import now_ms, sign_cancel, sign_create, sign_modify

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def standard(tmp_path_factory: pytest.TempPathFactory):
    v = start_venue(tmp_path_factory.mktemp("std"), "--tier", "standard", "--admin", "--seed", "5")
    yield v
    stop_venue(v)


@pytest.fixture(scope="module")
def premium_small_quota(tmp_path_factory: pytest.TempPathFactory):
    v = start_venue(tmp_path_factory.mktemp("prem"), "--tier", "premium", "--admin", "--volume-quota", "2")
    yield v
    stop_venue(v)


async def post_tx(venue: VenueProc, t: int, info: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(venue.url + "/api/v1/sendTx", data={"tx_type": str(t), "tx_info": info}) as r:
            return r.status, await r.json(content_type=None)


async def test_standard_tier_latency_and_60_per_minute(standard: VenueProc) -> None:
    k = await standard.account()
    try:
        t0 = now_ms()
        status, body = await post_tx(standard, *sign_create(k, 1, coi=1, price=290_000, tif=2))
        assert status == 200 and 180 <= body["predicted_execution_time_ms"] - t0 <= 400
        status, body = await post_tx(standard, *sign_create(k, 2, coi=2, price=290_000, tif=0))
        assert status == 200 and 280 <= body["predicted_execution_time_ms"] - t0 <= 600
        assert json.loads(body["message"]) == {"ratelimit": "didn't use volume quota"}
        await asyncio.sleep(0.3)  # order 1 is live now
        for n in range(3, 61):  # 58 modifies: 60 requests in total
            status, body = await post_tx(standard, *sign_modify(k, n, 1, 100 + n, 290_000 - n))
            assert status == 200, body
        n = 61
        status, body = await post_tx(standard, *sign_create(k, n, coi=n, price=289_000, tif=2))
        assert (status, body) == (429, {"code": 23000, "message": "Too Many Requests!"})
        async with aiohttp.ClientSession() as s:
            async with s.get(standard.url + "/api/v1/nextNonce",
                             params={"account_index": k.account, "api_key_index": k.key}) as r:
                assert r.status == 429  # standard: 60 requests/min per account, every endpoint counts
    finally:
        await k.client.close()
    st = await standard.admin("GET", "/admin/state")
    assert st["nonces"][f"{k.account}:{k.key}"] == n  # the 429 consumed nothing


async def test_sdk_surfaces_429_as_api_exception(standard: VenueProc) -> None:
    k = await standard.account()
    try:
        for n in range(1, 61):
            await post_tx(standard, *sign_create(k, n, coi=n, price=290_000 - n, tif=1))
        with pytest.raises(lighter.exceptions.ApiException) as ei:
            await k.client.send_tx(*sign_create(k, 61, coi=61, price=289_000, tif=1))
        assert ei.value.status == 429 and "23000" in str(ei.value.body)
    finally:
        await k.client.close()


async def test_premium_volume_quota(premium_small_quota: VenueProc) -> None:
    v = premium_small_quota
    k = await v.account()
    try:
        msgs = []
        for n in range(1, 4):  # 1 free (every 15 s) + quota 2
            status, body = await post_tx(v, *sign_create(k, n, coi=n, price=290_000 - n, tif=2))
            assert status == 200, body
            assert abs(body["predicted_execution_time_ms"] - now_ms()) < 100  # premium makers: ~0 ms
            msgs.append(json.loads(body["message"])["ratelimit"])
        assert msgs == ["didn't use volume quota", "1 volume quota remaining", "0 volume quota remaining"]
        status, body = await post_tx(v, *sign_create(k, 4, coi=4, price=289_000, tif=2))
        assert (status, body) == (429, {"code": 23000, "message": "Too Many Requests!:  Not enough volume quota"})
        status, body = await post_tx(v, *sign_cancel(k, 4, 1))  # cancels never consume quota
        assert status == 200 and body["volume_quota_remaining"] == 0
    finally:
        await k.client.close()


async def test_ws_subscription_and_message_caps(standard: VenueProc) -> None:
    from .wsutil import WS, error
    accounts = [20_000 + i for i in range(45)]
    for a in accounts:
        await standard.admin("POST", "/admin/accounts", {"account_index": a, "api_key_index": 0, "public_key": "ab" * 40})
    chans = ["height", "market_stats/all"] + [f"{k}/{m}" for k in ("order_book", "trade", "ticker", "market_stats")
                                              for m in (0, 1, 2)]
    chans += [f"{k}/{a}" for a in accounts for k in ("account_all", "user_stats")]
    ws = await WS.open(standard.ws_url)
    try:
        for ch in chans[:100]:
            await ws.sub(ch)
        await ws.sub(chans[100])  # message 101: over the 100 subscriptions per connection
        await ws.until(error(23001), timeout=5)
        for _ in range(99):  # messages 102..200 are fine
            await ws.send({"type": "ping"})
        await ws.send({"type": "ping"})  # message 201 within a minute
        await ws.until(error(30009), timeout=5)
        assert sum(1 for m in ws.seen + ws.backlog if m.get("type") == "pong") >= 99
    finally:
        await ws.close()
