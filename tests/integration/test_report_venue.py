"""analytics.session against the real local venue (``python -m services.venue``), the real feed and redis-server.

One session is run once for the module: our account quotes post-only one tick inside the venue's
synthetic book (maker client order indexes, with the maker's intents on ``orders:intents``), takers
fill some quotes, then a hedger market order flattens the position. Orders are signed with the
official SDK, as the gateway signs them; the feed publishes books, order updates and fills to Redis.
Then the metrics computed from the Redis streams (``analytics.streams`` -> ``analytics.session``, what
``mm_report.py`` does) and from the venue's REST trades (what ``fetch_trades.py`` does) are checked
against the venue's own ledger: its fill list, its collateral and realised PnL (fees = realised PnL -
collateral change, to the micro-USDC; PnL = collateral change, the position being flat at both ends).
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lighter.signer_client import SignerClient, create_api_key
from redis.asyncio import Redis

from analytics.session import SessionBuilder, attribution, fill_source, summarize
from analytics.streams import load_builder
from scripts import fetch_trades as ft
from scripts._common import rest
from services.feed.app import FeedService
from shared import keys
from shared.config import FeedConfig, Secrets, Settings
from shared.ids import IdMint
from shared.runtime import Runtime
from shared.schemas import OrderIntent, encode
from tests.conftest import REPO, free_port, wait_port

pytestmark = pytest.mark.timeout(90)

ACCT, KEY = 654, 4
LOTS = 100              # 0.100 SOL, about 14 USD: over the 10 USDC minimum
MAKER_ROUNDS = 4


@dataclass
class Outcome:
    redis_url: str
    spec: Any
    bus: SessionBuilder            # everything from the Redis streams
    rest_fills: list[ft.Fill]      # the venue's account trades, through fetch_trades' own parsing
    rest_trades: list[dict[str, Any]]
    collateral_before: int         # micro-USDC
    collateral_after: int
    realized: int                  # the venue's realised PnL on the market, micro-USDC
    position_after: int            # lots
    equity_before: int             # the venue's total_asset_value, micro-USDC
    equity_after: int


def _micro(s: str) -> int:
    return int(Decimal(s).scaleb(6))


async def _until(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if asyncio.iscoroutine(r):
            r = await r
        if r:
            return r
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _account(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/v1/account", params={"by": "index", "value": str(ACCT)}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["accounts"][0]


def _position(acct: dict[str, Any]) -> int:
    for p in acct.get("positions") or []:
        if p["market_id"] == 2:
            return int(p["sign"]) * int(Decimal(p["position"]).scaleb(3))
    return 0


async def _publish(r: Redis, it: OrderIntent) -> None:
    await r.xadd(keys.ORDERS_INTENTS, encode(it))  # type: ignore[arg-type]


async def _scenario(url: str, port: int, priv: str, redis_url: str) -> Outcome:
    r = Redis.from_url(redis_url)
    await r.flushall()
    signer = SignerClient(url=url, account_index=ACCT, api_private_keys={KEY: priv}, chain_id=304)
    settings = Settings(feed=FeedConfig(reconnect_min_s=Decimal("0.05"), reconnect_max_s=Decimal("0.2")),
                        env=Secrets(redis_url=redis_url, base_url=url, ws_url=f"ws://127.0.0.1:{port}/stream",
                                    account_index=ACCT))
    spec = settings.market_spec
    assert (spec.market_id, spec.price_decimals, spec.size_decimals) == (2, 3, 3)
    token, err = signer.create_auth_token_with_expiry(600, api_key_index=KEY)
    assert err is None
    await r.set(keys.AUTH_WS_TOKEN, token, px=600_000)
    rt = Runtime("feed", settings, Redis.from_url(redis_url))
    feed = FeedService(settings, token_file=Path("/nonexistent/ws_token"), token_poll_s=0.1, tick_s=0.05)
    await feed.start(rt)
    task = asyncio.create_task(feed.run(rt))
    maker, hedger = IdMint("maker"), IdMint("hedger")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/admin/model", json={"model": "calm", "market_id": 2, "taker_rate": 6.0}) as resp:
                assert resp.status == 200, await resp.text()
            await _until(lambda: feed.core.private_active and feed.core.books[2].valid, 15, "feed live")
            before = await _account(http, url)
            assert _position(before) == 0

            async def quote_round() -> None:
                bids, asks = feed.core.books[2].top(1)
                b, a = bids[0][0], asks[0][0]
                sides = ((False, b + 1 if a - b > 2 else b), (True, a - 1 if a - b > 2 else a))
                for is_ask, price in sides:
                    now = int(time.time() * 1000)
                    coi = maker.next_coi(now)
                    await _publish(r, OrderIntent(intent_id=maker.intent_id(coi), source="maker", action="place",
                                                  market_id=2, client_order_index=coi, is_ask=is_ask, price=price,
                                                  size=LOTS, created_ms=now))
                    _, _, e = await signer.create_order(2, coi, LOTS, price, is_ask, signer.ORDER_TYPE_LIMIT,
                                                        signer.ORDER_TIME_IN_FORCE_POST_ONLY, api_key_index=KEY)
                    assert e is None, e
                await asyncio.sleep(1.5)
                _, _, e = await signer.cancel_all_orders(signer.CANCEL_ALL_TIF_IMMEDIATE, 0, api_key_index=KEY)
                assert e is None, e
                await asyncio.sleep(0.2)

            async def hedge(lots: int, is_ask: bool) -> None:
                bids, asks = feed.core.books[2].top(1)
                worst = bids[0][0] * 98 // 100 if is_ask else asks[0][0] * 102 // 100
                now = int(time.time() * 1000)
                coi = hedger.next_coi(now)
                await _publish(r, OrderIntent(intent_id=hedger.intent_id(coi), source="hedger", action="place",
                                              market_id=2, client_order_index=coi, is_ask=is_ask, price=worst,
                                              size=lots, order_type="market", tif="ioc", created_ms=now))
                _, _, e = await signer.create_market_order(2, coi, lots, worst, is_ask, api_key_index=KEY)
                assert e is None, e

            for _ in range(MAKER_ROUNDS):
                await quote_round()
            q = _position(await _account(http, url))
            if q == 0:  # no inventory to hedge: make the hedger trade anyway, a round trip
                await hedge(LOTS, False)
                await _until(lambda: _pos_is(http, url, LOTS), 10, "hedger buy")
                q = LOTS
            await hedge(abs(q), q > 0)
            await _until(lambda: _pos_is(http, url, 0), 10, "flat")

            async with rest(url, token) as client:
                async def all_fills() -> list[ft.Fill]:
                    return await ft.fetch_fills(client, account=ACCT, market_id=2, limit=10_000)

                rest_fills = await all_fills()

                async def bus_has_everything() -> bool:
                    b = await load_builder(r, spec, ACCT)
                    return len(b.fills) == len(rest_fills) and b.last_position == 0
                await _until(bus_has_everything, 10, "the feed to publish every fill")
                raw = (await client.get("trades", sort_by="timestamp", limit=100, account_index=ACCT,
                                        market_id=2, sort_dir="asc"))["trades"]
                assert len(raw) < 100 and len(raw) == len({f.trade_id for f in rest_fills})
            after = await _account(http, url)
            await asyncio.sleep(0.3)   # a book or two after the last fill
    finally:
        rt.stopping.set()
        await asyncio.wait_for(task, 5)
        await feed.stop(rt)
        await rt.redis.aclose()
        await signer.close()
    bus = await load_builder(r, spec, ACCT)
    await r.aclose()
    realized = sum(_micro(p["realized_pnl"]) for p in after["positions"] if p["market_id"] == 2)
    return Outcome(redis_url, spec, bus, rest_fills, raw, _micro(before["collateral"]), _micro(after["collateral"]), realized,
                   _position(after), _micro(before["total_asset_value"]), _micro(after["total_asset_value"]))


async def _pos_is(http: aiohttp.ClientSession, url: str, lots: int) -> bool:
    return _position(await _account(http, url)) == lots


@pytest.fixture(scope="module")
def session(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    priv, pub, err = create_api_key()
    assert err is None
    port = free_port()
    log = (tmp_path_factory.mktemp("venue") / "venue.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "services.venue", "--port", str(port), "--seed", "21", "--admin",
                             "--rate-limit", "off", "--account", f"{ACCT}:{KEY}:{str(pub).removeprefix('0x')}:1000"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        yield asyncio.run(_scenario(f"http://127.0.0.1:{port}", port, str(priv), redis_server))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _venue_fees(o: Outcome) -> int:
    """What the venue charged: its realised PnL minus what its collateral moved by."""
    return o.realized - (o.collateral_after - o.collateral_before)


def _rate(t: dict[str, Any], acct_is_ask: bool) -> int:
    maker = t["is_maker_ask"] == acct_is_ask
    return int(t.get("maker_fee" if maker else "taker_fee") or 0)


def test_the_streams_metrics_match_the_venues_fills_position_and_cash(session: Outcome) -> None:
    o = session
    s = summarize(o.bus)
    rest_keys = sorted((f.trade_id, f.side < 0) for f in o.rest_fills)
    bus_keys = sorted((f.trade_id, f.is_ask) for f in o.bus.freeze().fills)
    assert bus_keys == rest_keys and s["fills"] == len(o.rest_fills) and s["fills_before_start"] == 0
    by_src = {src: sum(1 for f in o.rest_fills if f.source == src) for src in ("maker", "hedger", "other")}
    assert (s["fills_maker"], s["fills_hedger"], s["fills_other"]) == (by_src["maker"], by_src["hedger"], 0)
    assert s["fills_maker"] >= 1 and s["fills_hedger"] >= 1
    assert s["by_source"]["maker"]["taker_fills"] == 0 and s["by_source"]["hedger"]["maker_fills"] == 0
    assert s["position_end_lots"] == o.position_after == 0 and s["venue_position_lots"] == 0
    # flat to flat: the venue's realised PnL is exactly our cash
    assert Fraction(Decimal(s["cash_usd"])) == Fraction(o.realized, 10**6)
    a = attribution(o.bus)
    assert a.pnl == a.spread_capture + a.inventory_pnl - a.fees
    assert Decimal(s["pnl_usd"]) == Decimal(s["spread_capture_usd"]) + Decimal(s["inventory_pnl_usd"]) - Decimal(s["fees_usd"])
    # the maker's intents were read back: fill ratio of the maker alone
    assert s["orders_placed_maker"] == 2 * MAKER_ROUNDS and s["submitted_lots_maker"] == 2 * MAKER_ROUNDS * LOTS
    assert s["fill_ratio_maker"] == s["filled_lots_maker"] / s["submitted_lots_maker"] > 0
    assert s["uptime_maker"] is not None and 0 < s["uptime_maker"]["any"] <= 1
    assert s["markout_bps"]["maker"]["0ms"]["n"] == s["fills_maker"]


def test_fees_and_pnl_from_the_venues_trades_match_its_ledger_to_the_micro(session: Outcome) -> None:
    o = session
    fees = _venue_fees(o)
    assert fees > 0
    # fetch_trades' fills: each fee is the venue's rounding, and they add up to what the venue charged
    assert sum(f.micro() for f in o.rest_fills) == fees
    p = ft.compute_pnl(o.rest_fills, Decimal("140"), o.spec)
    assert p.fees_micro == fees and p.position == 0
    assert p.equity == Decimal(o.collateral_after - o.collateral_before).scaleb(-6)
    # the session metrics on the same fills, with the books from the streams: exact PnL and fees
    b = SessionBuilder(o.spec, ACCT)
    d = o.bus.freeze()
    for t, bid, ask in zip(d.book_t, d.book_bid, d.book_ask):
        b.feed(_book(t, bid, ask))
    for f in ft.session_fills(o.rest_fills, o.spec):
        assert b.add_fill(f)
    s = summarize(b, end_ms=d.last_ts)
    assert s["fees_micro"] == fees and s["fees_usd"] == f"{Decimal(fees).scaleb(-6):f}"
    assert Fraction(Decimal(s["pnl_usd"])) == Fraction(o.collateral_after - o.collateral_before, 10**6)
    assert o.equity_after - o.equity_before == o.collateral_after - o.collateral_before   # flat: no unrealised part
    a = attribution(b, end_ms=d.last_ts)
    assert a.pnl == a.spread_capture + a.inventory_pnl - a.fees and a.fees_micro == fees


def test_the_streams_fees_and_pnl_match_the_venue(session: Outcome) -> None:
    """The bus's ``Fill.fee`` is computed by the feed (``shared.lighter_wire.fee_micro``) from the trade's rate,
    with the venue's own rounding (``shared.fees``): the totals agree exactly."""
    o = session
    s = summarize(o.bus)
    fees = _venue_fees(o)
    pnl = Fraction(o.collateral_after - o.collateral_before, 10**6)
    assert s["fees_micro"] == fees   # to the micro-USDC: the feed rounds each fill as the venue does
    assert Fraction(Decimal(s["pnl_usd"])) == pnl


def _book(t: int, bid: int, ask: int) -> Any:
    from shared.schemas import BookTop
    return BookTop(market_id=2, seq=0, venue_ts_ms=t, bids=[(bid, 1)], asks=[(ask, 1)])


def test_fill_sources_come_from_the_client_order_index(session: Outcome) -> None:
    for t in session.rest_trades:
        for side in ("ask", "bid"):
            if t[f"{side}_account_id"] == ACCT:
                assert fill_source(int(t[f"{side}_client_id"])) in ("maker", "hedger")


def test_mm_report_prints_the_same_summary(session: Outcome) -> None:
    import json
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTER_", "VENUE_")) and k != "LIGHTER_BOT_CONFIG"}
    args = [sys.executable, str(REPO / "scripts" / "mm_report.py"), "--redis-url", session.redis_url,
            "--account", str(ACCT)]
    p = subprocess.run([*args, "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == summarize(session.bus)
    p = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    s = summarize(session.bus)
    assert f"pnl_usd                {s['pnl_usd']}" in p.stdout and "not annualised" in p.stdout
