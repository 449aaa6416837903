"""Every /admin fault kind, the admin guards, /admin/state and /admin/model."""
from __future__ import annotations

import asyncio
import socket
import time
from decimal import Decimal

import aiohttp
import lighter
import pytest
import websockets

from .conftest import VenueProc, start_venue, stop_venue
from .wsutil import WS, of

pytestmark = pytest.mark.asyncio


async def test_drop_ws_closes_every_connection(venue: VenueProc) -> None:
    a, b = await WS.open(venue.ws_url), await WS.open(venue.ws_url)
    r = await venue.admin("POST", "/admin/fault", {"kind": "drop_ws"})
    assert r["closed"] >= 2
    for ws in (a, b):
        with pytest.raises(websockets.ConnectionClosed) as ei:
            while True:
                await ws.conn.recv()
        assert ei.value.rcvd is not None and ei.value.rcvd.code == 1011


async def test_skip_book_nonce_breaks_the_chain_once(venue: VenueProc) -> None:
    ws = await WS.open(venue.ws_url)
    try:
        await ws.sub("order_book/2")
        nonce = (await ws.until(of("order_book:2", "subscribed/order_book")))["order_book"]["nonce"]
        m = await ws.until(of("order_book:2", "update/order_book"))
        assert m["order_book"]["begin_nonce"] == nonce
        nonce = m["order_book"]["nonce"]
        await venue.admin("POST", "/admin/fault", {"kind": "skip_book_nonce", "market_id": 2})
        gaps = 0
        for _ in range(10):
            u = (await ws.until(of("order_book:2", "update/order_book")))["order_book"]
            gaps += u["begin_nonce"] != nonce
            nonce = u["nonce"]
        assert gaps == 1
    finally:
        await ws.close()


async def test_freeze_feed_silences_one_market_then_resumes_consistently(venue: VenueProc) -> None:
    ws = await WS.open(venue.ws_url)
    try:
        await ws.sub("order_book/0")
        await ws.sub("order_book/1")
        await ws.sub("ticker/0")
        nonce = (await ws.until(of("order_book:0", "subscribed/order_book")))["order_book"]["nonce"]
        await ws.until(of("order_book:1", "subscribed/order_book"))
        for m in await ws.drain(0.3):
            if m.get("channel") == "order_book:0" and m["type"] == "update/order_book":
                nonce = m["order_book"]["nonce"]
        await venue.admin("POST", "/admin/fault", {"kind": "freeze_feed", "market_id": 0, "seconds": 1.0})
        await asyncio.sleep(0.06)  # a flush that was already on its way may still arrive
        frames = await ws.drain(0.8)
        chans = [m.get("channel") for m in frames]
        late = []   # market-0 frames at the head of the drain were already on their way (a loaded box delays them)
        for m in frames[:3]:
            if m.get("channel") not in ("order_book:0", "ticker:0"):
                break
            late.append(m)
        for m in late:
            if m.get("channel") == "order_book:0":
                nonce = m["order_book"]["nonce"]
        assert chans[len(late):].count("order_book:0") == 0 and "ticker:0" not in chans[len(late):]
        assert chans.count("order_book:1") >= 3
        u = (await ws.until(of("order_book:0", "update/order_book"), timeout=3))["order_book"]
        assert u["begin_nonce"] == nonce
    finally:
        await ws.close()


async def test_delay_and_reject_tx(venue: VenueProc) -> None:
    k = await venue.account()
    c = k.client
    try:
        price = await c.get_best_price(0, is_ask=True) - 900
        await venue.admin("POST", "/admin/fault", {"kind": "delay_tx", "ms": 400, "count": 1})
        t = time.monotonic()
        _, resp, err = await c.create_order(0, 1, 100, price, False, 0, 2)
        assert err is None and time.monotonic() - t >= 0.38
        t = time.monotonic()
        await c.create_order(0, 2, 100, price, False, 0, 2)
        assert time.monotonic() - t < 0.3
        await venue.admin("POST", "/admin/fault", {"kind": "reject_tx", "code": 21120, "message": "invalid signature", "count": 1})
        _, resp, err = await c.create_order(0, 3, 100, price, False, 0, 2, nonce=3, api_key_index=k.key)
        assert resp is None and "21120" in err and "invalid signature" in err
        assert (await c.tx_api.next_nonce(k.account, k.key)).nonce == 3
        _, resp, err = await c.create_order(0, 3, 100, price, False, 0, 2, nonce=3, api_key_index=k.key)
        assert err is None
    finally:
        await c.close()


async def test_http_status_faults_and_clear(venue: VenueProc) -> None:
    k = await venue.account()
    c = k.client
    try:
        price = await c.get_best_price(0, is_ask=True) - 900
        await venue.admin("POST", "/admin/fault", {"kind": "http_status", "status": 503, "count": 1})
        with pytest.raises(lighter.exceptions.ServiceException):
            await c.create_order(0, 1, 100, price, False, 0, 2, nonce=1, api_key_index=k.key)
        await venue.admin("POST", "/admin/fault", {"kind": "http_status", "status": 429, "count": 1})
        with pytest.raises(lighter.exceptions.ApiException) as ei:
            await c.create_order(0, 1, 100, price, False, 0, 2, nonce=1, api_key_index=k.key)
        assert ei.value.status == 429
        await venue.admin("POST", "/admin/fault", {"kind": "http_status", "status": 500, "count": 50,
                                                   "path_prefix": "/api/v1/orderBooks"})
        status, _ = await venue.get("/api/v1/orderBooks")
        assert status == 500
        status, _ = await venue.get("/api/v1/orderBookDetails", market_id=0)
        assert status == 200
        await venue.admin("DELETE", "/admin/fault")
        status, _ = await venue.get("/api/v1/orderBooks")
        assert status == 200
        assert (await c.tx_api.next_nonce(k.account, k.key)).nonce == 1
        _, resp, err = await c.create_order(0, 1, 100, price, False, 0, 2, nonce=1, api_key_index=k.key)
        assert err is None
    finally:
        await c.close()


async def test_drop_reduce_only(venue: VenueProc) -> None:
    k = await venue.account()
    c = k.client
    try:
        tok, _ = c.create_auth_token_with_expiry(600, api_key_index=k.key)
        best_ask = await c.get_best_price(0, is_ask=False)
        await c.create_market_order(0, 1, 200, best_ask + 1000, False)  # long 0.02 ETH
        await asyncio.sleep(0.4)
        await venue.admin("POST", "/admin/fault", {"kind": "drop_reduce_only", "count": 1})
        _, resp, err = await c.create_order(0, 2, 200, best_ask + 5000, True, 0, 1, reduce_only=True)
        assert err is None and resp.code == 200
        await asyncio.sleep(0.3)
        assert (await c.order_api.account_active_orders(tok, k.account)).orders == []
        inactive = await c.order_api.account_inactive_orders(tok, k.account, 10)
        assert 2 not in [o.client_order_index for o in inactive.orders]
        _, resp, err = await c.create_order(0, 3, 200, best_ask + 5000, True, 0, 1, reduce_only=True)
        assert [o.client_order_index for o in (await c.order_api.account_active_orders(tok, k.account)).orders] == [3]
    finally:
        await c.close()


async def test_price_jump_moves_the_mark(venue: VenueProc) -> None:
    async def mark() -> Decimal:
        _, body = await venue.get("/api/v1/orderBookDetails", market_id=1)
        return Decimal(body["order_book_details"][0]["mark_price"])
    await venue.admin("POST", "/admin/model", {"market_id": 1, "model": "calm", "sigma_bps": 0, "taker_rate": 0})
    try:
        before = await mark()
        await venue.admin("POST", "/admin/fault", {"kind": "price_jump", "market_id": 1, "bps": -150})
        after = await mark()
        assert abs((after / before - 1) * 10_000 + 150) < 2
        await asyncio.sleep(0.25)  # the synthetic ladder re-centres on its next step
        status, body = await venue.get("/api/v1/orderBookOrders", market_id=1, limit=1)
        assert Decimal(body["bids"][0]["price"]) < after < Decimal(body["asks"][0]["price"])
    finally:
        await venue.admin("POST", "/admin/model", {"market_id": 1, "model": "calm"})


async def test_admin_state_model_and_validation(venue: VenueProc) -> None:
    k = await venue.account("123.45")
    try:
        price = await k.client.get_best_price(2, is_ask=True) - 500
        await k.client.create_order(2, 5, 100, price, False, 0, 2)
        st = await venue.admin("GET", "/admin/state")
        assert st["accounts"][str(k.account)]["collateral"] == "123.450000"
        assert st["nonces"][f"{k.account}:{k.key}"] == 2
        assert any(o["owner_account_index"] == k.account and o["client_order_index"] == 5 for o in st["orders"])
        assert isinstance(st["trades"], list)
        r = await venue.admin("POST", "/admin/model", {"market_id": 2, "model": "as,burst"})
        assert r["models"] == {"2": "as,burst"}
        async with aiohttp.ClientSession() as s:
            async with s.post(venue.url + "/admin/model", json={"market_id": 2, "model": "bogus"}) as r2:
                assert r2.status == 400
            async with s.post(venue.url + "/admin/fault", json={"kind": "bogus"}) as r3:
                assert r3.status == 400
        await venue.admin("POST", "/admin/model", {"market_id": 2, "model": "calm"})
    finally:
        await k.client.close()


def _external_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


async def test_admin_is_off_by_default_and_loopback_only(tmp_path) -> None:
    off = start_venue(tmp_path)
    on = start_venue(tmp_path, "--admin", "--host", "0.0.0.0")
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(off.url + "/admin/state") as r:
                assert r.status == 404
            async with s.get(on.url + "/admin/state") as r:
                assert r.status == 200
            ip = _external_ip()
            if ip is None:
                pytest.skip("no non-loopback address on this machine")
            async with s.get(f"http://{ip}:{on.port}/admin/state") as r:
                assert r.status == 403
            async with s.get(f"http://{ip}:{on.port}/api/v1/orderBooks") as r:
                assert r.status == 200
    finally:
        stop_venue(off)
        stop_venue(on)


async def test_cross_book_sends_a_phantom_crossing_bid_in_sequence_then_withdraws_it(venue: VenueProc) -> None:
    ws = await WS.open(venue.ws_url)
    try:
        await ws.sub("order_book/2")
        nonce = (await ws.until(of("order_book:2", "subscribed/order_book")))["order_book"]["nonce"]
        r = await venue.admin("POST", "/admin/fault", {"kind": "cross_book", "market_id": 2, "seconds": 0.3})
        phantom: dict | None = None
        withdrawn = False
        deadline = time.monotonic() + 5
        while not withdrawn and time.monotonic() < deadline:
            m = await ws.until(of("order_book:2", "update/order_book"))
            ob = m["order_book"]
            assert ob["begin_nonce"] == nonce     # the chain never breaks
            nonce = ob["nonce"]
            for lvl in ob["bids"]:
                if lvl["price"] == r["price"]:
                    if phantom is None:
                        phantom = lvl
                    elif Decimal(lvl["size"]) == 0:
                        withdrawn = True
        assert phantom is not None and Decimal(phantom["size"]) > 0 and withdrawn
        _, body = await venue.get("/api/v1/orderBookOrders", market_id=2, limit=5)
        assert all(Decimal(b["price"]) < Decimal(r["price"]) for b in body["bids"])   # never in the venue's book
    finally:
        await ws.close()


async def test_mute_account_drops_the_account_frames_but_rest_tells_the_truth(venue: VenueProc) -> None:
    k = await venue.account()
    c = k.client
    ws = await WS.open(venue.ws_url)
    try:
        tok, _ = c.create_auth_token_with_expiry(600, api_key_index=k.key)
        await ws.sub(f"account_all_orders/{k.account}", auth=tok)
        await ws.until(of(f"account_all_orders:{k.account}", "subscribed/account_all_orders"))
        await venue.admin("POST", "/admin/fault", {"kind": "mute_account", "account_index": k.account, "seconds": 1.0})
        best_bid = await c.get_best_price(0, is_ask=True)
        await c.create_order(0, 41, 100, best_bid - 300, False, 0, 2)
        with pytest.raises(asyncio.TimeoutError):
            await ws.until(of(f"account_all_orders:{k.account}", "update/account_all_orders"), timeout=0.7)
        tok2, _ = c.create_auth_token_with_expiry(600, api_key_index=k.key)
        _, body = await venue.get("/api/v1/accountActiveOrders", account_index=k.account, market_id=0, auth=tok2)
        assert [o["client_order_index"] for o in body["orders"]] == [41]   # the order is there; only the echo was lost
        await asyncio.sleep(0.4)
        await c.cancel_order(0, 41)
        up = await ws.until(of(f"account_all_orders:{k.account}", "update/account_all_orders"), timeout=3)
        assert up["orders"]["0"][0]["status"] == "canceled"                   # speaking again after the mute
    finally:
        await ws.close()
