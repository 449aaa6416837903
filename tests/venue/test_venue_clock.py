"""POST /admin/clock: the venue's time jumps forward and everything that fell due fires and is pushed.

Each test gets its own venue: the offset is permanent, and txs the SDK signs carry a wall-clock
``ExpiredAt`` (10 min), so a venue that has jumped far ahead refuses them (as Lighter would).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import VenueProc, start_venue, stop_venue
from .helpers import Keyed, sign_cancel_all, sign_create
from .wsutil import WS, error, of

pytestmark = pytest.mark.asyncio
MIN = 60_000


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[VenueProc]:
    v = start_venue(tmp_path, "--seed", "21", "--admin", "--rate-limit", "off")
    yield v
    stop_venue(v)


@pytest.fixture
def standard(tmp_path: Path) -> Iterator[VenueProc]:
    v = start_venue(tmp_path, "--seed", "22", "--admin", "--tier", "standard")
    yield v
    stop_venue(v)


async def post(venue: VenueProc, path: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(venue.url + path, json=body) as r:
            return r.status, await r.json(content_type=None)


async def send(venue: VenueProc, t: int, info: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(venue.url + "/api/v1/sendTx", data={"tx_type": str(t), "tx_info": info}) as r:
            body = await r.json(content_type=None)
            assert r.status == 200, body
            return body


def token(k: Keyed, ttl_s: int) -> str:
    tok, err = k.client.create_auth_token_with_expiry(ttl_s, api_key_index=k.key)
    assert err is None
    return tok


async def active(venue: VenueProc, k: Keyed) -> list[dict[str, Any]]:
    status, body = await venue.get("/api/v1/accountActiveOrders", account_index=k.account, auth=token(k, 3600))
    assert status == 200, body
    return body["orders"]


async def subscribed(venue: VenueProc, k: Keyed) -> WS:
    ws = await WS.open(venue.ws_url)
    await ws.sub(f"account_all_orders/{k.account}", auth=token(k, 3600))
    await ws.until(of(f"account_all_orders:{k.account}", "subscribed/account_all_orders"))
    return ws


async def statuses(ws: WS, k: Keyed, want: dict[int, str], timeout: float = 10.0) -> dict[int, str]:
    """Follow account_all_orders updates until every client order index in ``want`` has that status."""
    seen: dict[int, str] = {}
    while any(seen.get(c) != s for c, s in want.items()):
        up = await ws.until(of(f"account_all_orders:{k.account}", "update/account_all_orders"), timeout=timeout)
        for o in up["orders"].get("0", []):
            seen[o["client_order_index"]] = o["status"]
    return seen


async def test_clock_endpoint_reports_and_only_moves_forward(fresh: VenueProc) -> None:
    c0 = await fresh.admin("GET", "/admin/clock")
    assert c0["offset_ms"] == 0 and abs(c0["now_ms"] - (await fresh.get("/"))[1]["timestamp"] * 1000) < 5_000
    out = await fresh.admin("POST", "/admin/clock", {"advance_ms": 90 * MIN})
    assert out["offset_ms"] == 90 * MIN and out["advanced_ms"] == 90 * MIN and out["now_ms"] >= c0["now_ms"] + 90 * MIN
    c1 = await fresh.admin("GET", "/admin/clock")
    assert c1["offset_ms"] == 90 * MIN and c1["now_ms"] >= out["now_ms"]
    # REST timestamps follow the venue clock
    _, root = await fresh.get("/")
    assert root["timestamp"] * 1000 >= c0["now_ms"] + 90 * MIN - 1_000
    for bad in ({"advance_ms": -1}, {"advance_ms": 1.5}, {"advance_ms": "60000"}, {"advance_ms": True}, {}):
        status, body = await post(fresh, "/admin/clock", bad)
        assert status == 400, (bad, body)
    assert (await fresh.admin("GET", "/admin/clock"))["offset_ms"] == 90 * MIN


async def test_gtt_order_expires_when_the_clock_passes_its_expiry(fresh: VenueProc) -> None:
    k = await fresh.account()
    ws = await subscribed(fresh, k)
    try:
        now = (await fresh.admin("GET", "/admin/clock"))["now_ms"]
        await send(fresh, *sign_create(k, 1, coi=501, price=290_000, tif=1, expiry=now + 5 * MIN + 500))
        await statuses(ws, k, {501: "open"})
        assert [o["client_order_index"] for o in await active(fresh, k)] == [501]
        await fresh.admin("POST", "/admin/clock", {"advance_ms": 4 * MIN})
        assert [o["client_order_index"] for o in await active(fresh, k)] == [501]  # not yet
        await fresh.admin("POST", "/admin/clock", {"advance_ms": MIN + 1_000})
        assert (await statuses(ws, k, {501: "canceled-expired"}))[501] == "canceled-expired"
        assert await active(fresh, k) == []
    finally:
        await ws.close()
        await k.client.close()


async def test_scheduled_cancel_all_fires_and_abort_disarms_it(fresh: VenueProc) -> None:
    k = await fresh.account()
    ws = await subscribed(fresh, k)
    try:
        now = (await fresh.admin("GET", "/admin/clock"))["now_ms"]
        await send(fresh, *sign_create(k, 1, coi=601, price=290_000, tif=1, expiry=now + 60 * MIN))
        await send(fresh, *sign_create(k, 2, coi=602, price=289_000, tif=2, expiry=now + 60 * MIN))
        await statuses(ws, k, {601: "open", 602: "open"})
        # armed at now + 5 min, then aborted: advancing past it cancels nothing
        await send(fresh, *sign_cancel_all(k, 3, tif=1, when=now + 5 * MIN + 500))
        _, acct = await fresh.get("/api/v1/account", by="index", value=k.account)
        assert acct["accounts"][0]["cancel_all_time"] == now + 5 * MIN + 500
        await send(fresh, *sign_cancel_all(k, 4, tif=2))
        await fresh.admin("POST", "/admin/clock", {"advance_ms": 5 * MIN + 1_000})
        assert sorted(o["client_order_index"] for o in await active(fresh, k)) == [601, 602]
        # armed again from the new venue time: advancing past it cancels every order of the account
        now = (await fresh.admin("GET", "/admin/clock"))["now_ms"]
        await send(fresh, *sign_cancel_all(k, 5, tif=1, when=now + 5 * MIN + 500))
        await fresh.admin("POST", "/admin/clock", {"advance_ms": 2 * MIN})
        assert len(await active(fresh, k)) == 2
        await fresh.admin("POST", "/admin/clock", {"advance_ms": 3 * MIN + 1_000})
        assert await statuses(ws, k, {601: "canceled", 602: "canceled"}) == {601: "canceled", 602: "canceled"}
        assert await active(fresh, k) == []
        _, acct = await fresh.get("/api/v1/account", by="index", value=k.account)
        assert acct["accounts"][0]["cancel_all_time"] == 0
    finally:
        await ws.close()
        await k.client.close()


async def test_auth_deadlines_are_checked_on_the_venue_clock(fresh: VenueProc) -> None:
    k = await fresh.account()
    short = token(k, 400)
    try:
        status, _ = await fresh.get("/api/v1/accountActiveOrders", account_index=k.account, auth=short)
        assert status == 200
        await fresh.admin("POST", "/admin/clock", {"advance_ms": 401_000})
        status, body = await fresh.get("/api/v1/accountActiveOrders", account_index=k.account, auth=short)
        assert (status, body["code"]) == (401, 20013)
        ws = await WS.open(fresh.ws_url)
        try:
            await ws.sub(f"account_all_orders/{k.account}", auth=short)
            assert (await ws.until(error(20013)))["error"]["message"] == "invalid auth: invalid deadline"
            # a token minted for the venue's time is good again
            now_s = (await fresh.admin("GET", "/admin/clock"))["now_ms"] // 1000
            good, err = k.client.create_auth_token_with_expiry(600, timestamp=now_s, api_key_index=k.key)
            assert err is None
            await ws.sub(f"account_all_orders/{k.account}", auth=good)
            await ws.until(of(f"account_all_orders:{k.account}", "subscribed/account_all_orders"))
        finally:
            await ws.close()
    finally:
        await k.client.close()


async def test_rate_limit_window_runs_on_the_venue_clock(standard: VenueProc) -> None:
    k = await standard.account()
    try:
        params = {"account_index": k.account, "api_key_index": k.key}
        for _ in range(60):  # standard tier: 60 requests per rolling minute per account
            assert (await standard.get("/api/v1/nextNonce", **params))[0] == 200
        assert (await standard.get("/api/v1/nextNonce", **params))[0] == 429
        await standard.admin("POST", "/admin/clock", {"advance_ms": 60_001})
        assert (await standard.get("/api/v1/nextNonce", **params))[0] == 200
    finally:
        await k.client.close()
