"""WebSocket /stream contract: raw frames (websockets) plus the SDK's own WsClient."""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import lighter
import pytest
from lighter import models as M

from .conftest import VenueProc, start_venue, stop_venue
from .helpers import sign_create, strict
from .wsutil import WS, error, of

pytestmark = pytest.mark.asyncio


def apply(book: dict[str, dict[str, str]], side: list[dict[str, str]], levels: list[dict[str, str]]) -> None:
    for lv in levels:
        if Decimal(lv["size"]) == 0:
            book.pop(lv["price"], None)
        else:
            book[lv["price"]] = lv["size"]


async def test_order_book_chain_reproduces_the_rest_book(venue: VenueProc) -> None:
    ws = await WS.open(venue.ws_url)
    try:
        await ws.sub("order_book/0")
        snap = await ws.until(of("order_book:0", "subscribed/order_book"))
        ob = snap["order_book"]
        assert ob["begin_nonce"] == 0 and ob["code"] == 0 and snap["offset"] == ob["offset"]
        assert all(len(lv["price"].split(".")[1]) == 2 and len(lv["size"].split(".")[1]) == 4 for lv in ob["asks"])
        asks = {lv["price"]: lv["size"] for lv in ob["asks"]}
        bids = {lv["price"]: lv["size"] for lv in ob["bids"]}
        nonce, offset, updates = ob["nonce"], snap["offset"], 0
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            m = await ws.until(of("order_book:0"))
            assert m["type"] == "update/order_book"
            u = m["order_book"]
            assert u["begin_nonce"] == nonce, "gap in the nonce chain"
            assert u["nonce"] > nonce and m["offset"] > offset
            nonce, offset = u["nonce"], m["offset"]
            apply(asks, asks, u["asks"])
            apply(bids, bids, u["bids"])
            updates += 1
        assert updates >= 5
        # stop the synthetic market, let the last diff out, then compare with REST (aggregated L3)
        await venue.admin("POST", "/admin/model", {"market_id": 0, "model": "calm", "sigma_bps": 0, "taker_rate": 0,
                                                   "refresh_prob": 0})
        for m in await ws.drain(0.4):
            if m.get("channel") == "order_book:0":
                u = m["order_book"]
                assert u["begin_nonce"] == nonce
                nonce = u["nonce"]
                apply(asks, asks, u["asks"])
                apply(bids, bids, u["bids"])
        status, rest = await venue.get("/api/v1/orderBookOrders", market_id=0, limit=250)
        agg_a: dict[str, Decimal] = {}
        agg_b: dict[str, Decimal] = {}
        for o in rest["asks"]:
            agg_a[o["price"]] = agg_a.get(o["price"], Decimal(0)) + Decimal(o["remaining_base_amount"])
        for o in rest["bids"]:
            agg_b[o["price"]] = agg_b.get(o["price"], Decimal(0)) + Decimal(o["remaining_base_amount"])
        assert {p: Decimal(s) for p, s in asks.items()} == agg_a
        assert {p: Decimal(s) for p, s in bids.items()} == agg_b
    finally:
        await venue.admin("POST", "/admin/model", {"market_id": 0, "model": "calm"})
        await ws.close()


async def test_session_protocol_errors_and_acks(venue: VenueProc) -> None:
    ws = await WS.open(venue.ws_url)
    try:
        await ws.sub("trade/1")
        snap = await ws.until(of("trade:1", "subscribed/trade"))
        for t in snap["trades"]:
            strict(M.Trade, t)
        await ws.sub("trade/1")
        dup = await ws.until(lambda m: "error" in m or m.get("type") == "subscribed/trade")
        assert dup == {"error": {"code": 30003, "message": "Already Subscribed to : trade:1"}}
        await ws.send({"type": "unsubscribe", "channel": "trade/1"})
        assert await ws.until(lambda m: m.get("type") == "unsubscribed") == {"type": "unsubscribed", "channel": "trade:1"}
        await ws.sub("trade/1")
        await ws.until(of("trade:1", "subscribed/trade"))
        await ws.sub("order_book/77")
        assert (await ws.until(error(30005)))["error"]["message"].startswith("Invalid Channel")
        await ws.send("{not json")
        await ws.until(error(30000))
        await ws.send({"type": "nope"})
        await ws.until(error(30001))
        await ws.send({"type": "ping"})
        assert await ws.until(lambda m: m.get("type") == "pong") == {"type": "pong"}
        for ch in ("ticker/0", "market_stats/all", "market_stats/2", "height"):
            await ws.sub(ch)
        t = await ws.until(of("ticker:0", "subscribed/ticker"))
        assert t["ticker"]["s"] == "ETH" and Decimal(t["ticker"]["a"]["price"]) > Decimal(t["ticker"]["b"]["price"])
        ms = await ws.until(of("market_stats:all", "subscribed/market_stats"))
        assert set(ms["market_stats"]) == {"0", "1", "2"}
        ms2 = await ws.until(of("market_stats:2"))
        assert ms2["market_stats"]["symbol"] == "SOL"
        h = await ws.until(of("height", "subscribed/height"))
        h2 = await ws.until(of("height", "update/height"))
        assert h2["height"] > h["height"]
        await ws.until(of("ticker:0", "update/ticker"))
        await ws.until(of("trade:1", "update/trade"), timeout=10)
    finally:
        await ws.close()


async def test_account_channels_follow_the_orders(venue: VenueProc) -> None:
    k = await venue.account()
    c = k.client
    ws = await WS.open(venue.ws_url)
    try:
        tok, _ = c.create_auth_token_with_expiry(600, api_key_index=k.key)
        for ch in (f"account_all_orders/{k.account}", f"account_orders/0/{k.account}", f"account_all_trades/{k.account}",
                   f"account_all_positions/{k.account}", f"account_all_assets/{k.account}"):
            await ws.sub(ch, auth=tok)
        await ws.sub(f"account_all/{k.account}")  # public per Lighter's docs (the SDK's WsClient sends no auth)
        await ws.sub(f"user_stats/{k.account}")
        snap = await ws.until(of(f"account_all_orders:{k.account}", "subscribed/account_all_orders"))
        assert snap["orders"] == {}
        assets = await ws.until(of(f"account_all_assets:{k.account}"))
        from lighter.models.ws_account_assets import WSAccountAssets
        strict(WSAccountAssets, assets)
        assert assets["assets"]["3"]["balance"] == "100000.000000"
        us = await ws.until(of(f"user_stats:{k.account}"))
        assert us["stats"]["collateral"] == "100000.000000"
        best_bid = await c.get_best_price(0, is_ask=True)
        await c.create_order(0, 31, 100, best_bid - 300, False, 0, 2)
        up = await ws.until(of(f"account_all_orders:{k.account}", "update/account_all_orders"))
        (o,) = up["orders"]["0"]
        strict(M.Order, o)
        assert (o["client_order_index"], o["status"], o["owner_account_index"]) == (31, "open", k.account)
        per_market = await ws.until(of("account_orders:0", "update/account_orders"), timeout=2)
        assert per_market["account"] == k.account and per_market["orders"]["0"][0]["client_order_index"] == 31
        await c.cancel_order(0, 31)
        up = await ws.until(of(f"account_all_orders:{k.account}", "update/account_all_orders"))
        assert up["orders"]["0"][0]["status"] == "canceled"
        best_ask = await c.get_best_price(0, is_ask=False)
        await c.create_order(0, 32, 100, best_ask + 100, False, 0, 2)  # crosses
        up = await ws.until(of(f"account_all_orders:{k.account}", "update/account_all_orders"))
        assert (up["orders"]["0"][0]["client_order_index"], up["orders"]["0"][0]["status"]) == (32, "canceled-post-only")
        await c.create_market_order(0, 33, 100, best_ask + 1000, False)
        tr = await ws.until(of(f"account_all_trades:{k.account}", "update/account_all_trades"))
        for t in tr["trades"]["0"]:
            strict(M.Trade, t)
            assert t["bid_account_id"] == k.account and t["taker_fee"] == 280
        pos = await ws.until(lambda m: m.get("channel") == f"account_all_positions:{k.account}"
                             and m["type"] == "update/account_all_positions" and "0" in m["positions"])
        p = strict(M.AccountPosition, pos["positions"]["0"])
        assert (p.sign, p.position) == (1, "0.0100")
        aa = await ws.until(lambda m: m.get("channel") == f"account_all:{k.account}" and m["type"] == "update/account_all"
                            and m["trades"])
        assert aa["positions"]["0"]["position"] == "0.0100" and aa["trades"]["0"]
    finally:
        await ws.close()
        await c.close()


async def test_private_channels_refuse_missing_expired_or_foreign_tokens(venue: VenueProc) -> None:
    k = await venue.account()
    other = await venue.account()
    ws = await WS.open(venue.ws_url)
    try:
        await ws.sub(f"account_all_orders/{k.account}")
        assert await ws.until(error(20001)) == {"error": {"code": 20001, "message":
                                                          f"invalid param : auth field is required: account_all_orders:{k.account}"}}
        expired, _ = k.client.create_auth_token_with_expiry(5, timestamp=int(time.time()) - 30, api_key_index=k.key)
        await ws.sub(f"account_all_orders/{k.account}", auth=expired)
        assert (await ws.until(error(20013)))["error"]["message"] == "invalid auth: invalid deadline"
        too_long, _ = k.client.create_auth_token_with_expiry(8 * 3600 + 120, api_key_index=k.key)
        await ws.sub(f"account_all_positions/{k.account}", auth=too_long)
        await ws.until(error(20013))
        foreign, _ = other.client.create_auth_token_with_expiry(600, api_key_index=other.key)
        await ws.sub(f"account_orders/0/{k.account}", auth=foreign)
        await ws.until(error(20013))
        await ws.sub(f"account_all_trades/{k.account}", auth="12:34")
        await ws.until(error(20013))
        ok, _ = k.client.create_auth_token_with_expiry(8 * 3600 - 60, api_key_index=k.key)
        await ws.sub(f"account_all_orders/{k.account}", auth=ok)
        await ws.until(of(f"account_all_orders:{k.account}", "subscribed/account_all_orders"))
    finally:
        await ws.close()
        await k.client.close()
        await other.client.close()


async def test_jsonapi_sendtx_over_ws_echoes_id(venue: VenueProc) -> None:
    k = await venue.account()
    ws = await WS.open(venue.ws_url)
    try:
        t, info = sign_create(k, 1, coi=1, price=290_000, tif=1)
        import orjson
        await ws.send({"type": "jsonapi/sendtx", "data": {"id": "a-1", "tx_type": t, "tx_info": orjson.loads(info)}})
        r = await ws.until(lambda m: m.get("id") == "a-1")
        assert r["code"] == 200 and len(r["tx_hash"]) == 80 and isinstance(r["predicted_execution_time_ms"], int)
        await ws.send({"type": "jsonapi/sendtx", "data": {"id": "a-2", "tx_type": t, "tx_info": orjson.loads(info)}})
        r = await ws.until(lambda m: m.get("id") == "a-2")
        assert r == {"error": {"code": 21104, "message": "invalid nonce"}, "id": "a-2"}
        batch = [sign_create(k, n, coi=n, price=290_000 - n, tif=1) for n in (2, 3)]
        await ws.send({"type": "jsonapi/sendtxbatch", "data": {"id": "b-1", "tx_types": orjson.dumps([x for x, _ in batch]).decode(),
                                                                "tx_infos": orjson.dumps([y for _, y in batch]).decode()}})
        r = await ws.until(lambda m: m.get("id") == "b-1")
        assert r["code"] == 200 and len(r["tx_hash"]) == 2
        assert (await k.client.tx_api.next_nonce(k.account, k.key)).nonce == 4
    finally:
        await ws.close()
        await k.client.close()


async def test_sdk_wsclient_gets_book_and_account(venue: VenueProc) -> None:
    k = await venue.account()
    books: list[tuple[str, dict]] = []
    accounts: list[tuple[str, dict]] = []
    client = lighter.WsClient(host=f"127.0.0.1:{venue.port}", order_book_ids=[2], account_ids=[k.account],
                              on_order_book_update=lambda m, ob: books.append((m, ob)),
                              on_account_update=lambda a, msg: accounts.append((a, msg)))
    client.base_url = venue.ws_url  # the SDK builds wss:// from host; point it at plain ws://
    task = asyncio.create_task(client.run_async())
    try:
        deadline = time.monotonic() + 5
        while (len(books) < 3 or not accounts) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert books and books[0][0] == "2" and books[-1][1]["asks"] and books[-1][1]["bids"]
        assert accounts and accounts[0][0] == str(k.account)
    finally:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
        await k.client.close()


async def test_idle_connections_are_closed_but_pinging_ones_live(tmp_path) -> None:
    v = start_venue(tmp_path, "--ws-idle-timeout", "1")
    try:
        idle = await WS.open(v.ws_url)
        busy = await WS.open(v.ws_url)
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 4:
            await busy.send({"type": "ping"})
            await asyncio.sleep(0.3)
            if idle.conn.close_code is not None or getattr(idle.conn, "state", None).name == "CLOSED":
                closed = True
                break
        if not closed:
            try:
                await idle.drain(1.0)
                await idle.conn.recv()
            except Exception:
                closed = True
        assert closed and time.monotonic() - t0 >= 0.9
        await busy.send({"type": "ping"})
        assert (await busy.until(lambda m: m.get("type") == "pong")) == {"type": "pong"}
        await busy.close()
    finally:
        stop_venue(v)
