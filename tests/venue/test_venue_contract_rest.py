"""REST contract through the official lighter-sdk (ApiClient + API classes + SignerClient) only."""
from __future__ import annotations

import asyncio
import json
import time

import lighter
import pytest
from lighter import models as M

from .conftest import VenueProc
from .helpers import Keyed, new_signer, now_ms, sign_cancel, sign_create, sign_modify, strict

pytestmark = pytest.mark.asyncio


async def api(venue: VenueProc):
    return lighter.ApiClient(lighter.Configuration(host=venue.url))


async def auth(k: Keyed, ttl: int = 600) -> str:
    token, err = k.client.create_auth_token_with_expiry(ttl, api_key_index=k.key)
    assert err is None
    return token


async def active(k: Keyed, market: int | None = None) -> list:
    r = await k.client.order_api.account_active_orders(await auth(k), k.account, market_id=market)
    return r.orders


async def wait_for(pred, timeout: float = 3.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = await pred()
        if v or time.monotonic() > deadline:
            return v
        await asyncio.sleep(every)


async def test_markets_and_details_match_the_contract(venue: VenueProc) -> None:
    c = await api(venue)
    try:
        ob = await lighter.OrderApi(c).order_books()
        rows = {r.market_id: r for r in ob.order_books}
        assert [(r.symbol, r.supported_price_decimals, r.supported_size_decimals, r.min_base_amount, r.min_quote_amount)
                for r in rows.values()] == [("ETH", 2, 4, "0.0050", "10.000000"), ("BTC", 1, 5, "0.00020", "10.000000"),
                                            ("SOL", 3, 3, "0.050", "10.000000")]
        det = await lighter.OrderApi(c).order_book_details(market_id=1)
        (d,) = det.order_book_details
        assert d.symbol == "BTC" and d.price_decimals == 1 and d.size_decimals == 5
        assert len(d.mark_price.split(".")[1]) == 1 and d.market_config.force_reduce_only is False
        orders = await lighter.OrderApi(c).order_book_orders(0, 5)
        assert orders.total_asks == 5 and all(len(o.price.split(".")[1]) == 2 for o in orders.asks + orders.bids)
        assert all(len(o.remaining_base_amount.split(".")[1]) == 4 for o in orders.asks)
        assert float(orders.bids[0].price) < float(orders.asks[0].price)
        assert {o.owner_account_index for o in orders.asks} == {1}
    finally:
        await c.close()
    for path, model, params in [("/api/v1/orderBooks", M.OrderBooks, {}),
                                ("/api/v1/orderBookDetails", M.OrderBookDetails, {}),
                                ("/api/v1/orderBookOrders", M.OrderBookOrders, {"market_id": 2, "limit": 10}),
                                ("/api/v1/recentTrades", M.Trades, {"market_id": 0, "limit": 5}),
                                ("/api/v1/exchangeStats", M.ExchangeStats, {}),
                                ("/api/v1/currentHeight", M.CurrentHeight, {})]:
        status, body = await venue.get(path, **params)
        assert status == 200, body
        strict(model, body)
    status, body = await venue.get("/api/v1/orderBookOrders", market_id=9, limit=5)
    assert status == 400 and body["code"] == 21602


async def test_account_keys_and_nonce(venue: VenueProc) -> None:
    k = await venue.account("2500")
    try:
        assert k.client.check_client() is None
        acc = await lighter.AccountApi(k.client.api_client).account(by="index", value=str(k.account))
        (a,) = acc.accounts
        assert a.index == k.account and a.collateral == "2500.000000" and a.positions == []
        status, raw = await venue.get("/api/v1/account", by="index", value=k.account)
        strict(M.DetailedAccounts, raw)
        by_l1 = await lighter.AccountApi(k.client.api_client).account(by="l1_address", value=a.l1_address)
        assert by_l1.accounts[0].index == k.account
        subs = await lighter.AccountApi(k.client.api_client).accounts_by_l1_address(a.l1_address)
        assert [s.index for s in subs.sub_accounts] == [k.account]
        keys = await lighter.AccountApi(k.client.api_client).apikeys(k.account)
        assert [(x.api_key_index, x.public_key) for x in keys.api_keys] == [(k.key, k.public)]
        n = await k.client.tx_api.next_nonce(k.account, k.key)
        assert n.nonce == 1
        limits = await lighter.AccountApi(k.client.api_client).account_limits(k.account, await auth(k))
        assert limits.user_tier_name == "premium" and limits.current_maker_fee_tick == 40
        with pytest.raises(lighter.exceptions.BadRequestException):
            await lighter.AccountApi(k.client.api_client).account(by="index", value="999999")
    finally:
        await k.client.close()


async def test_create_modify_cancel_and_cancel_all(venue: VenueProc) -> None:
    k = await venue.account()
    c = k.client
    try:
        best = await c.get_best_price(0, is_ask=True)  # best bid, integer ticks
        _, resp, err = await c.create_order(0, 101, 100, best - 500, False, c.ORDER_TYPE_LIMIT, c.ORDER_TIME_IN_FORCE_POST_ONLY)
        assert err is None and resp.code == 200 and len(resp.tx_hash) == 80
        assert json.loads(resp.message) == {"ratelimit": "didn't use volume quota"}
        assert abs(resp.predicted_execution_time_ms - now_ms()) < 2000
        (o,) = await active(k)
        assert (o.client_order_index, o.status, o.price, o.time_in_force) == (101, "open", f"{(best - 500) / 100:.2f}", "post-only")
        _, resp, err = await c.modify_order(0, 101, 200, best - 600)
        assert err is None and resp.code == 200
        (o,) = await active(k)
        assert (o.initial_base_amount, o.base_price) == ("0.0200", best - 600)
        _, resp, err = await c.cancel_order(0, o.order_index)  # by venue order index
        assert err is None
        assert await active(k) == []
        # batch: three creates in one sendTxBatch, then cancel-all
        n = (await c.tx_api.next_nonce(k.account, k.key)).nonce
        signed = [sign_create(k, n + i, coi=200 + i, price=best - 700 - i, tif=1) for i in range(3)]
        r = await c.send_tx_batch([t for t, _ in signed], [i for _, i in signed])
        assert r.code == 200 and len(r.tx_hash) == 3
        assert sorted(o.client_order_index for o in await active(k, 0)) == [200, 201, 202]
        _, resp, err = await c.cancel_all_orders(c.CANCEL_ALL_TIF_IMMEDIATE, 0, nonce=n + 3, api_key_index=k.key)
        assert err is None and resp.code == 200
        assert await active(k) == []
        inactive = await c.order_api.account_inactive_orders(await auth(k), k.account, 10)
        assert [o.status for o in inactive.orders] == ["canceled"] * 4  # 101 (modified then canceled) + 3
        status, raw = await venue.get("/api/v1/accountInactiveOrders", account_index=k.account, limit=2, auth=await auth(k))
        strict(M.Orders, raw)
        assert raw["next_cursor"]
        by_coi = await c.order_api.account_orders(await auth(k), "201,202", account_index=k.account)
        assert sorted(o.client_order_index for o in by_coi.orders) == [201, 202]
    finally:
        await c.close()


async def test_crossing_post_only_is_accepted_then_canceled_post_only(venue: VenueProc) -> None:
    k = await venue.account()
    c = k.client
    try:
        best_ask = await c.get_best_price(0, is_ask=False)
        _, resp, err = await c.create_order(0, 7, 100, best_ask + 100, False, c.ORDER_TYPE_LIMIT, c.ORDER_TIME_IN_FORCE_POST_ONLY)
        assert err is None and resp.code == 200
        inactive = await c.order_api.account_inactive_orders(await auth(k), k.account, 10)
        assert [(o.client_order_index, o.status) for o in inactive.orders] == [(7, "canceled-post-only")]
        assert (await c.tx_api.next_nonce(k.account, k.key)).nonce == 2  # sequencer rejection consumed the nonce
    finally:
        await c.close()


async def test_stale_nonce_gets_invalid_nonce_and_sdk_recovers(venue: VenueProc) -> None:
    k = await venue.account()
    c = k.client
    try:
        price = await c.get_best_price(0, is_ask=True) - 800
        _, _, err = await c.create_order(0, 1, 100, price, False, 0, 2)
        assert err is None
        _, resp, err = await c.create_order(0, 2, 100, price, False, 0, 2, nonce=1, api_key_index=k.key)
        assert resp is None and "invalid nonce" in err and "21104" in err
        # the SDK's managed path: force its cached nonce stale, it gets "invalid nonce" and hard-refreshes
        c.nonce_manager.nonce[k.key] = 0
        _, resp, err = await c.create_order(0, 3, 100, price, False, 0, 2)
        assert "invalid nonce" in err
        _, resp, err = await c.create_order(0, 4, 100, price, False, 0, 2)
        assert err is None and resp.code == 200
        assert sorted(o.client_order_index for o in await active(k)) == [1, 4]
    finally:
        await c.close()


async def test_below_minimum_and_margin_errors_do_not_consume_the_nonce(venue: VenueProc) -> None:
    k = await venue.account("20")
    c = k.client
    try:
        price = await c.get_best_price(0, is_ask=True) - 800
        _, resp, err = await c.create_order(0, 1, 49, price, False, 0, 2, nonce=1, api_key_index=k.key)
        assert resp is None and "21706" in err and "invalid order base or quote amount" in err
        _, resp, err = await c.create_order(0, 1, 2_0000, price, False, 0, 2, nonce=1, api_key_index=k.key)
        assert "21739" in err and "not enough margin to create the order" in err
        assert (await c.tx_api.next_nonce(k.account, k.key)).nonce == 1
        _, resp, err = await c.create_order(0, 1, 50, price, False, 0, 2, nonce=1, api_key_index=k.key)
        assert err is None
    finally:
        await c.close()


async def test_fills_show_in_trades_positions_and_candles(venue: VenueProc) -> None:
    k = await venue.account()
    c = k.client
    try:
        best_ask = await c.get_best_price(0, is_ask=False)
        _, resp, err = await c.create_market_order(0, 9, 1000, best_ask + 500, False)  # buy 0.1 ETH
        assert err is None and resp.predicted_execution_time_ms >= now_ms() + 100  # premium taker latency 200 ms
        tok = await auth(k)

        async def fills():
            r = await c.order_api.trades(sort_by="timestamp", limit=100, authorization=tok, account_index=k.account)
            return r if r.trades else None
        trades = await wait_for(fills)
        assert trades.trades and all(t.bid_account_id == k.account for t in trades.trades)
        assert sum(int(t.size.replace(".", "")) for t in trades.trades) == 1000
        assert all(t.taker_fee == 280 for t in trades.trades)
        page = await c.order_api.trades(sort_by="timestamp", limit=1, authorization=tok, account_index=k.account)
        if len(trades.trades) > 1:
            assert page.next_cursor is not None
            nxt = await c.order_api.trades(sort_by="timestamp", limit=1, authorization=tok, account_index=k.account,
                                           cursor=page.next_cursor)
            assert nxt.trades[0].trade_id < page.trades[0].trade_id
        acc = await lighter.AccountApi(c.api_client).account(by="index", value=str(k.account))
        (pos,) = acc.accounts[0].positions
        assert (pos.market_id, pos.sign, pos.position) == (0, 1, "0.1000")
        status, raw = await venue.get("/api/v1/trades", sort_by="timestamp", limit=10, account_index=k.account, auth=tok)
        strict(M.Trades, raw)
        now_s = int(time.time())
        cs = await lighter.CandlestickApi(c.api_client).candles(0, "1m", (now_s - 600) * 1000, (now_s + 60) * 1000, 10)
        assert cs.r == "1m" and cs.c and cs.c[-1].v > 0 and cs.c[-1].h >= cs.c[-1].l
        status, raw = await venue.get("/api/v1/candles", market_id=0, resolution="5m", start_timestamp=(now_s - 600) * 1000,
                                      end_timestamp=(now_s + 60) * 1000, count_back=3)
        strict(M.Candles, raw)
        f = await lighter.CandlestickApi(c.api_client).fundings(0, "1h", now_s - 86400, now_s, 10)
        assert f.resolution == "1h" and isinstance(f.fundings, list)
        stats = await lighter.OrderApi(c.api_client).exchange_stats()
        assert stats.total == 3 and stats.daily_trades_count > 0
        async def five_recent():   # the synthetic takers' trades accumulate: five may take a few seconds
            r = await lighter.OrderApi(c.api_client).recent_trades(0, 5)
            return r if len(r.trades) == 5 else None
        assert await wait_for(five_recent, timeout=20.0) is not None
    finally:
        await c.close()


async def test_private_rest_needs_a_valid_token(venue: VenueProc) -> None:
    k = await venue.account()
    try:
        status, body = await venue.get("/api/v1/accountActiveOrders", account_index=k.account)
        assert (status, body) == (400, {"code": 20001, "message":
                                        "invalid param : auth query param and Authorization header are empty"})
        expired, _ = k.client.create_auth_token_with_expiry(10, timestamp=int(time.time()) - 60, api_key_index=k.key)
        status, body = await venue.get("/api/v1/accountActiveOrders", account_index=k.account, auth=expired)
        assert (status, body) == (401, {"code": 20013, "message": "invalid auth: invalid deadline"})
        too_long, _ = k.client.create_auth_token_with_expiry(9 * 3600, api_key_index=k.key)
        status, body = await venue.get("/api/v1/accountActiveOrders", account_index=k.account, auth=too_long)
        assert status == 401 and body["code"] == 20013
        with pytest.raises(lighter.exceptions.UnauthorizedException):
            await k.client.order_api.account_active_orders(expired, k.account)
        other = await venue.account()
        try:
            status, body = await venue.get("/api/v1/accountActiveOrders", account_index=k.account, auth=await auth(other))
            assert status == 401
        finally:
            await other.client.close()
        status, body = await venue.get("/api/v1/accountActiveOrders", account_index=k.account, auth=await auth(k))
        assert status == 200 and body == {"code": 200, "orders": []}
    finally:
        await k.client.close()


async def test_batch_limits(venue: VenueProc) -> None:
    k = await venue.account()
    c = k.client
    try:
        signed = [sign_create(k, n, coi=n, price=290_000 - n, tif=1) for n in range(1, 17)]
        with pytest.raises(lighter.exceptions.BadRequestException) as ei:
            await c.send_tx_batch([t for t, _ in signed], [i for _, i in signed])
        assert "21514" in str(ei.value)
        other = await venue.account()
        try:
            mixed = [signed[0], sign_create(other, 1, price=290_000, tif=1)]
            with pytest.raises(lighter.exceptions.BadRequestException) as ei:
                await c.send_tx_batch([t for t, _ in mixed], [i for _, i in mixed])
            assert "21121" in str(ei.value)
        finally:
            await other.client.close()
        assert (await c.tx_api.next_nonce(k.account, k.key)).nonce == 1
    finally:
        await c.close()


async def test_an_unknown_path_or_method_answers_lighters_json_error(venue: VenueProc) -> None:
    """Lighter answers every error as JSON ``{code, message}``; a client that parses an error's body
    must not meet aiohttp's plain text."""
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{venue.url}/api/v1/noSuchEndpoint") as r:
            assert r.status == 404 and r.content_type == "application/json"
            body = await r.json()
            assert body["code"] == 29404 and "noSuchEndpoint" in body["message"]
        async with s.delete(f"{venue.url}/api/v1/sendTx") as r:
            assert r.status == 405 and (await r.json())["code"] == 29404
        async with s.get(f"{venue.url}/api/v1/orderBooks") as r:   # a known path is unchanged
            assert r.status == 200 and (await r.json())["code"] == 200


async def test_versioned_modify_applies_only_to_the_version_it_names(venue: VenueProc) -> None:
    """``sign_modify_order(order_version=N)`` (L2TxAttributes key 8): a retried or late modify cannot
    undo a newer one. A fresh order is version 1; each executed modify adds one."""
    k = await venue.account()
    c = k.client
    try:
        best = await c.get_best_price(0, is_ask=True)
        _, resp, err = await c.create_order(0, 301, 100, best - 500, False, c.ORDER_TYPE_LIMIT, c.ORDER_TIME_IN_FORCE_POST_ONLY)
        assert err is None
        (o,) = await active(k)
        assert o.order_version == 1
        n = (await c.tx_api.next_nonce(k.account, k.key)).nonce

        def modify(nonce: int, base: int, version: int) -> tuple[int, str]:
            t, info, _h, e = c.sign_modify_order(0, 301, base, best - 600, order_version=version, nonce=nonce,
                                                 api_key_index=k.key)
            assert e is None, e
            return t, info

        r = await c.send_tx(*modify(n, 200, 1))
        assert r.code == 200
        (o,) = await active(k)
        assert (o.initial_base_amount, o.order_version) == ("0.0200", 2)
        with pytest.raises(lighter.exceptions.BadRequestException) as stale:
            await c.send_tx(*modify(n + 1, 300, 1))      # names the version it replaced: refused
        assert "21745" in str(stale.value)
        assert (await active(k))[0].initial_base_amount == "0.0200"
        r = await c.send_tx(*modify(n + 1, 300, 2))      # the refusal did not use the nonce
        assert r.code == 200 and (await active(k))[0].order_version == 3
        r = await c.send_tx(*modify(n + 2, 400, 0))      # no version: applies to whatever is there
        assert r.code == 200 and (await active(k))[0].initial_base_amount == "0.0400"
    finally:
        await c.close()


async def test_maker_only_keys_are_set_read_and_cannot_take(venue: VenueProc) -> None:
    """getMakerOnlyApiKeys / setMakerOnlyApiKeys as the SDK's example calls them; a maker-only key may
    rest post-only orders, modify and cancel, and nothing else."""
    owner = await venue.account()
    quoter = await new_signer(venue.url, owner.account, key=owner.key + 1)
    await venue.admin("POST", "/admin/accounts", {"account_index": owner.account, "api_key_index": quoter.key,
                                                  "public_key": quoter.public})
    acc = lighter.AccountApi(owner.client.api_client)
    try:
        token = await auth(owner)
        assert (await acc.get_maker_only_api_keys(token, owner.account)).api_key_indexes == []
        r = await acc.set_maker_only_api_keys(token, owner.account, json.dumps([quoter.key]))
        assert r.code == 200
        assert (await acc.get_maker_only_api_keys(token, owner.account)).api_key_indexes == [quoter.key]
        with pytest.raises(lighter.exceptions.ApiException) as again:   # once an hour
            await acc.set_maker_only_api_keys(token, owner.account, "[]")
        assert again.value.status == 429
        with pytest.raises(lighter.exceptions.BadRequestException):
            await acc.set_maker_only_api_keys(token, owner.account, "not json")

        q = quoter.client
        best = await q.get_best_price(0, is_ask=True)
        n = (await q.tx_api.next_nonce(owner.account, quoter.key)).nonce
        r = await q.send_tx(*sign_create(quoter, n, coi=401, price=best - 500, tif=2))       # post-only: fine
        assert r.code == 200
        for i, (tif, order_type) in enumerate([(1, 0), (0, 0), (0, 1)]):                     # GTT, IOC, market
            with pytest.raises(lighter.exceptions.BadRequestException) as took:
                await q.send_tx(*sign_create(quoter, n + 1, coi=402 + i, price=best + 500, tif=tif,
                                             order_type=order_type))
            assert "21150" in str(took.value)
        r = await q.send_tx(*sign_modify(quoter, n + 1, 401, 200, best - 600))
        assert r.code == 200
        r = await q.send_tx(*sign_cancel(quoter, n + 2, 401))
        assert r.code == 200 and await active(owner) == []
        r = await owner.client.send_tx(*sign_create(owner, (await owner.client.tx_api.next_nonce(
            owner.account, owner.key)).nonce, coi=410, price=best - 500, tif=1))           # the other key may
        assert r.code == 200
    finally:
        await quoter.client.close()
        await owner.client.close()


async def test_tx_history_and_blocks_read_through_the_sdk(venue: VenueProc) -> None:
    """``tx``, ``txs``, ``blockTxs``, ``block`` and ``blocks``: a sent tx is found by the hash sendTx
    answered, executed in a block whose txs hold it, and every body validates strictly."""
    k = await venue.account()
    c = k.client
    try:
        best = await c.get_best_price(0, is_ask=True)
        _, resp, err = await c.create_order(0, 501, 100, best - 500, False, c.ORDER_TYPE_LIMIT, c.ORDER_TIME_IN_FORCE_POST_ONLY)
        assert err is None
        txa = lighter.TransactionApi(c.api_client)
        t = await wait_for(lambda: _executed(txa, resp.tx_hash))
        assert t and (t.type, t.account_index, t.api_key_index, t.status) == (14, k.account, k.key, 2)
        assert json.loads(t.info)["ClientOrderIndex"] == 501 and t.block_height >= 1
        status, raw = await venue.get("/api/v1/tx", by="hash", value=resp.tx_hash)
        strict(M.EnrichedTx, raw)
        by_seq = await txa.tx(by="sequence_index", value=str(t.sequence_index))
        assert by_seq.hash == resp.tx_hash
        page = await txa.txs(limit=100, index=t.sequence_index)
        assert page.txs[0].hash == resp.tx_hash
        in_block = await txa.block_txs(by="block_height", value=str(t.block_height))
        assert resp.tx_hash in [x.hash for x in in_block.txs]
        blocks = lighter.BlockApi(c.api_client)
        (b,) = (await blocks.block(by="height", value=str(t.block_height))).blocks
        assert b.height == t.block_height and resp.tx_hash in [x.hash for x in b.txs] and b.size == len(b.txs)
        again = await blocks.block(by="commitment", value=b.commitment)
        assert again.blocks[0].height == b.height
        recent = await blocks.blocks(limit=3, sort="desc")
        assert [x.height for x in recent.blocks] == list(range(recent.total, max(recent.total - 3, 0), -1))
        assert recent.total >= t.block_height
        for path, model, params in [("/api/v1/txs", M.Txs, {"limit": 5}), ("/api/v1/blocks", M.Blocks, {"limit": 2}),
                                    ("/api/v1/blockTxs", M.Txs, {"by": "block_height", "value": t.block_height})]:
            status, raw = await venue.get(path, **params)
            assert status == 200, raw
            strict(model, raw)
        with pytest.raises(lighter.exceptions.BadRequestException):
            await txa.tx(by="hash", value="00" * 40)
    finally:
        await c.close()


async def _executed(txa: "lighter.TransactionApi", tx_hash: str):
    t = await txa.tx(by="hash", value=tx_hash)
    return t if t.status == 2 else None
