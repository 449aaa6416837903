"""Gateway process against the local Lighter venue (subprocess, free port) and a real redis-server.

Each test gets its own venue account (one venue per module), so the gateway's account-wide
cancel-alls never touch another test's orders. Open orders are checked the way an operator would:
``GET /api/v1/accountActiveOrders`` with an auth token.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lighter.signer_client import create_api_key
from pydantic import SecretStr
from redis.asyncio import Redis

from services.gateway import txs
from services.gateway.signer import Signer
from shared import keys
from shared.bus import Bus
from shared.clock import now_ms
from shared.config import Secrets, Settings
from shared.ids import IdMint
from shared.schemas import OrderEvent, OrderIntent, OrderUpdate, Reconcile, decode
from tests.conftest import REPO, free_port, wait_port

pytestmark = pytest.mark.timeout(60)

KEY_INDEX = 4
BID, ASK, SIZE = 105_000, 180_000, 100      # SOL mid starts at 140.000: far enough not to trade, inside the 2x band
N_ACCOUNTS = 12
SECOND_KEY: dict[int, str] = {}   # account index -> private key of its API key KEY_INDEX + 1


@dataclass(frozen=True)
class VenueAccount:
    index: int
    private_key: str
    public_key: str


@dataclass
class VenueProc:
    port: int
    accounts: list[VenueAccount]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VenueProc]:
    accounts = []
    for i in range(N_ACCOUNTS):
        priv, pub, err = create_api_key()
        assert err is None
        accounts.append(VenueAccount(300 + i, str(priv), str(pub).removeprefix("0x")))
    port = free_port()
    log = (tmp_path_factory.mktemp("venue") / "venue.log").open("w")
    args = [sys.executable, "-m", "services.venue", "--port", str(port), "--seed", "7", "--admin"]
    for a in accounts:
        args += ["--account", f"{a.index}:{KEY_INDEX}:{a.public_key}"]
    priv, pub, _ = create_api_key()     # a second API key (a second nonce lane) on the first account
    SECOND_KEY[accounts[0].index] = str(priv)
    args += ["--account", f"{accounts[0].index}:{KEY_INDEX + 1}:{str(pub).removeprefix('0x')}"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        yield VenueProc(port, accounts)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def account(venue: VenueProc) -> VenueAccount:
    return venue.accounts.pop()


class GatewayProc:
    """``python -m services.gateway`` as operators run it; stdout goes to a file the tests can read."""

    def __init__(self, redis_url: str, venue: VenueProc, acct: VenueAccount, tmp: Path, **env: str) -> None:
        self.health_port = free_port()
        self.log_path = tmp / f"gateway-{self.health_port}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTER_", "GATEWAY_"))}
        self.env.update(REDIS_URL=redis_url, LIGHTER_BASE_URL=venue.url, LIGHTER_ACCOUNT_INDEX=str(acct.index),
                        LIGHTER_API_KEY_INDEX=str(KEY_INDEX), LIGHTER_API_PRIVATE_KEY=acct.private_key,
                        GATEWAY_INSTANCE="gateway-test")
        self.env.update(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "GatewayProc":
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.gateway", "--port", str(self.health_port),
                                          "--host", "127.0.0.1"], cwd=REPO, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.health_port}{path}") as r:
            return r.status, await r.json()

    async def wait_ready(self, timeout: float = 15.0) -> None:
        wait_port(self.health_port, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            if (await self.get("/ready"))[0] == 200:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"gateway not ready:\n{self.log()}")

    async def wait_health(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 3.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            _, health = await self.get("/health")
            if pred(health) or time.monotonic() > deadline:
                return health
            await asyncio.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def signal(self, sig: int, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def gateways(redis_server: str, venue: VenueProc, tmp_path: Path) -> Iterator[Callable[..., GatewayProc]]:
    made: list[GatewayProc] = []

    def make(acct: VenueAccount, **env: str) -> GatewayProc:
        g = GatewayProc(redis_server, venue, acct, tmp_path, **env)
        made.append(g)
        return g.start()

    yield make
    for g in made:
        g.close()


class VenueView:
    """The test's own read access to the venue: auth token from the account's key, REST reads."""

    def __init__(self, venue: VenueProc, acct: VenueAccount, signer: Signer) -> None:
        self.venue, self.acct, self.signer = venue, acct, signer
        self.token = ""

    async def active(self) -> list[dict[str, Any]]:
        if not self.token:
            self.token = await self.signer.auth_token(600, int(time.time()))
        async with aiohttp.ClientSession() as s, s.get(
                f"{self.venue.url}/api/v1/accountActiveOrders", params={"account_index": self.acct.index},
                headers={"authorization": self.token}) as r:
            doc = await r.json()
            assert r.status == 200, doc
            return list(doc["orders"])

    async def wait_active(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            orders = await self.active()
            if pred(orders) or time.monotonic() > deadline:
                return orders
            await asyncio.sleep(0.1)   # the venue rate-limits reads like Lighter

    async def next_nonce(self) -> int:
        async with aiohttp.ClientSession() as s, s.get(
                f"{self.venue.url}/api/v1/nextNonce", params={"account_index": self.acct.index, "api_key_index": KEY_INDEX}) as r:
            return int((await r.json())["nonce"])


@pytest.fixture
async def view(venue: VenueProc, account: VenueAccount) -> AsyncIterator[VenueView]:
    settings = Settings(env=Secrets(base_url=venue.url, account_index=account.index, api_key_index=KEY_INDEX,
                                    api_private_key=SecretStr(account.private_key)))
    signer = Signer(settings)
    try:
        yield VenueView(venue, account, signer)
    finally:
        await signer.close()


MINT = IdMint("maker")


def place(price: int = BID, size: int = SIZE, is_ask: bool = False, **kw: Any) -> OrderIntent:
    coi = MINT.next_coi(now_ms())
    base: dict[str, Any] = dict(intent_id=MINT.intent_id(coi), source="maker", action="place", market_id=2,
                                client_order_index=coi, is_ask=is_ask, price=price, size=size, created_ms=now_ms(),
                                trace={"maker": time.time_ns()})
    base.update(kw)
    return OrderIntent(**base)


async def send(r: Redis, *intents: OrderIntent) -> None:
    bus = Bus(r, "test")
    for it in intents:
        await bus.publish(keys.ORDERS_APPROVED, it)


async def events(r: Redis) -> list[OrderEvent]:
    return [ev for _, f in await r.xrange(keys.ORDERS_EVENTS) if isinstance(ev := decode(f), OrderEvent)]


async def wait_event(r: Redis, intent_id: str, kinds: tuple[str, ...] = ("ack", "reject", "not_sent", "unknown", "stale", "killed"),
                     timeout: float = 5.0) -> OrderEvent:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in await events(r):
            if ev.intent_id == intent_id and ev.kind in kinds:
                return ev
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no {kinds} event for {intent_id}; events: {await events(r)}")


def cois(orders: list[dict[str, Any]]) -> set[int]:
    return {int(o["client_order_index"]) for o in orders}


# --- tests ---------------------------------------------------------------------------------------------
async def test_approved_intents_rest_at_the_venue_and_are_acked(redis: Redis, gateways: Callable[..., GatewayProc],
                                                                account: VenueAccount, view: VenueView) -> None:
    gw = gateways(account)
    await gw.wait_ready()
    bid, ask = place(), place(ASK, is_ask=True)
    await send(redis, bid, ask)
    for it in (bid, ask):
        ev = await wait_event(redis, it.intent_id)
        assert ev.kind == "ack" and ev.code == 200 and len(ev.tx_hash) == 80, ev
        assert ev.trace["maker"] <= ev.trace["signed"] <= ev.trace["sent"]
    orders = await view.wait_active(lambda o: len(o) == 2)
    assert cois(orders) == {bid.client_order_index, ask.client_order_index}
    by_coi = {int(o["client_order_index"]): o for o in orders}
    assert by_coi[bid.client_order_index]["price"] == "105.000" and by_coi[ask.client_order_index]["is_ask"] is True
    assert by_coi[bid.client_order_index]["time_in_force"] == "post-only"
    recorded = await redis.hgetall(keys.GATEWAY_OPEN_ORDERS)
    assert {int(k) for k in recorded} == {bid.client_order_index, ask.client_order_index}

    cancel = place(action="cancel", client_order_index=bid.client_order_index, intent_id="maker-cancel-1")
    await send(redis, cancel)
    assert (await wait_event(redis, "maker-cancel-1")).kind == "ack"
    assert cois(await view.wait_active(lambda o: len(o) == 1)) == {ask.client_order_index}

    # the account stream (normally written by feed) reports the cancel: mapped back, record dropped
    upd = OrderUpdate(market_id=2, order_index=1, client_order_index=bid.client_order_index, is_ask=False, price=BID,
                      initial_size=SIZE, remaining_size=SIZE, filled_size=0, status="canceled", ts_ms=now_ms())
    await Bus(redis, "test").publish(keys.acct(account.index), upd)
    ev = await wait_event(redis, bid.intent_id, ("canceled",))
    assert ev.trace["signed"] > 0 and ev.message == "canceled"
    assert not await redis.hexists(keys.GATEWAY_OPEN_ORDERS, str(bid.client_order_index))

    # the WS token for feed: a PX-expiring key, never in a stream, a log line or the health output
    token = (await redis.get(keys.AUTH_WS_TOKEN)).decode()
    assert token.split(":")[1:3] == [str(account.index), str(KEY_INDEX)]
    assert 0 < await redis.pttl(keys.AUTH_WS_TOKEN) <= 3600 * 1000
    status, health = await gw.get("/health")
    assert status == 200 and health["signer_ready"] and health["acks"] >= 3 and health["kill"] == "clear"
    blob = str(health) + gw.log() + str(await redis.xrange(keys.ORDERS_EVENTS))
    for secret in (token, account.private_key, account.private_key.removeprefix("0x")):
        assert secret not in blob


async def test_refusals_burn_no_nonce_and_nonce_errors_recover(redis: Redis, gateways: Callable[..., GatewayProc],
                                                                account: VenueAccount, view: VenueView) -> None:
    """A below-minimum order gets Lighter's code verbatim; a stale intent is never signed nor sent;
    a nonce used behind the gateway's back and a 5xx both end in a re-fetch, not in lost orders."""
    gw = gateways(account)
    await gw.wait_ready()
    await gw.wait_health(lambda h: h["dead_man_armed_for_s"] is not None)   # its first arm takes a nonce
    tiny = place(size=1)
    await send(redis, tiny)
    ev = await wait_event(redis, tiny.intent_id)
    assert (ev.kind, ev.code, ev.message) == ("reject", 21706, "invalid order base or quote amount")
    assert ev.trace["signed"] <= ev.trace["sent"]
    assert not await redis.hexists(keys.GATEWAY_OPEN_ORDERS, str(tiny.client_order_index))

    nonce = await view.next_nonce()
    old = place(created_ms=now_ms() - 6_000, ttl_ms=5_000)
    await send(redis, old)
    ev = await wait_event(redis, old.intent_id)
    assert ev.kind == "stale" and "signed" not in ev.trace
    assert await view.next_nonce() == nonce

    ok = place()                                          # the refused txs burnt no nonce: the next one goes through
    await send(redis, ok)
    assert (await wait_event(redis, ok.intent_id)).kind == "ack"
    assert cois(await view.wait_active(bool)) == {ok.client_order_index}
    status, health = await gw.get("/health")
    assert health["rejects"] == {"21706": 1} and health["stale"] == 1 and health["nonce_resyncs"] == 0
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{gw.health_port}/metrics") as r:
        metrics = await r.text()
    assert 'mm_rejects_total{code="21706"} 1.0' in metrics
    assert 'mm_orders_total{action="place",outcome="ack"} 1.0' in metrics
    assert 'mm_orders_total{action="place",outcome="stale"} 1.0' in metrics

    # someone else spends the next nonce of our key: the gateway's next tx hits "invalid nonce", re-fetches, retries
    foreign = await view.signer.sign(txs.CancelAllReq(0), await view.next_nonce())
    async with aiohttp.ClientSession() as s, s.post(f"{view.venue.url}/api/v1/sendTx",
                                                    data={"tx_type": str(foreign.tx_type), "tx_info": foreign.tx_info}) as r:
        assert r.status == 200
    desynced = place(BID - 2_000)
    await send(redis, desynced)
    assert (await wait_event(redis, desynced.intent_id)).kind == "ack"
    health = await gw.wait_health(lambda h: h["nonce_resyncs"] == 1)
    assert health["nonce_resyncs"] == 1 and health["rejects"] == {"21706": 1}

    # a 5xx is ambiguous: the outcome is unknown, the nonce in doubt; nothing else is signed on it until
    # the evidence is in (here: still free after gateway.unknown_wait_s, so a harmless re-arm takes it)
    async with aiohttp.ClientSession() as s, s.post(f"{view.venue.url}/admin/fault",
                                                    json={"kind": "http_status", "status": 503, "count": 1}) as r:
        assert r.status == 200
    broken = place(BID - 3_000)
    await send(redis, broken)
    ev = await wait_event(redis, broken.intent_id)
    assert (ev.kind, ev.code) == ("unknown", 29500) and "internal server error (injected)" in ev.message
    after = place(BID - 4_000, ttl_ms=30_000)
    await send(redis, after)
    ev = await wait_event(redis, broken.intent_id, ("resolved",), timeout=20.0)
    assert ev.message.startswith("dropped")
    assert (await wait_event(redis, after.intent_id, timeout=10.0)).kind == "ack"
    assert (await gw.get("/health"))[1]["nonce_resyncs"] == 2
    assert cois(await view.wait_active(lambda o: len(o) == 3)) == {ok.client_order_index, desynced.client_order_index,
                                                                    after.client_order_index}


async def test_kill_flag_lifecycle(redis: Redis, gateways: Callable[..., GatewayProc], account: VenueAccount,
                                   view: VenueView) -> None:
    """Set before start: nothing placed. DEL: orders go out. SET: the venue is empty within 1 s and
    new places are refused. DEL: trading resumes."""
    await redis.set(keys.RISK_KILL, "set before start")
    gw = gateways(account)
    await gw.wait_ready()
    early = place()
    await send(redis, early)
    assert (await wait_event(redis, early.intent_id)).kind == "killed"
    assert await view.active() == []

    await redis.delete(keys.RISK_KILL)
    await asyncio.sleep(0.3)                              # > one 100 ms poll
    resting = [place(), place(BID - 1_000), place(ASK, is_ask=True)]
    await send(redis, *resting)
    for it in resting:
        assert (await wait_event(redis, it.intent_id)).kind == "ack"
    assert len(await view.wait_active(lambda o: len(o) == 3)) == 3

    t0 = time.monotonic()
    await redis.set(keys.RISK_KILL, "test: operator halt")
    orders = await view.wait_active(lambda o: not o, timeout=2.0)
    elapsed = time.monotonic() - t0
    assert orders == [] and elapsed < 1.0, (orders, elapsed)

    refused = place()
    await send(redis, refused)
    ev = await wait_event(redis, refused.intent_id)
    assert ev.kind == "killed" and "operator halt" in ev.message
    await asyncio.sleep(0.3)
    assert await view.active() == []
    health = await gw.wait_health(lambda h: h["venue_open_orders"] == 0)      # the gateway verified it too
    assert health["kill"] == "set" and health["killed"] == 2 and health["venue_open_orders"] == 0

    await redis.delete(keys.RISK_KILL)
    await asyncio.sleep(0.3)
    resumed = place()
    await send(redis, resumed)
    assert (await wait_event(redis, resumed.intent_id)).kind == "ack"
    assert cois(await view.wait_active(bool)) == {resumed.client_order_index}


async def crash_with_two_quotes(redis: Redis, gw: GatewayProc) -> list[OrderIntent]:
    """A gateway places a bid and an ask, then dies by SIGKILL (no clean-up of any kind)."""
    await gw.wait_ready()
    resting = [place(), place(ASK, is_ask=True)]
    await send(redis, *resting)
    for it in resting:
        assert (await wait_event(redis, it.intent_id)).kind == "ack"
    gw.signal(signal.SIGKILL)
    return resting


async def test_restart_after_sigkill_adopts_what_rests_and_sigterm_cancels_all(
        redis: Redis, gateways: Callable[..., GatewayProc], account: VenueAccount, view: VenueView) -> None:
    """No blind cancel-all at start: the new gateway reconciles, adopts the orders that rest (the maker and
    hedger then keep or cancel them), and only SIGTERM cancels everything."""
    resting = await crash_with_two_quotes(redis, gateways(account))
    assert len(await view.wait_active(lambda o: len(o) == 2)) == 2            # nobody cleaned up
    assert await redis.hlen(keys.GATEWAY_OPEN_ORDERS) == 2

    second = gateways(account)
    await second.wait_ready(timeout=20.0)                                       # waits for the dead lease to expire
    health = await second.wait_health(lambda h: h["ledger"]["adopted"] == 2)
    assert sorted(health["ledger"]["open"]) == sorted(it.client_order_index for it in resting)
    assert cois(await view.active()) == {it.client_order_index for it in resting}
    snaps = [m for _, f in await redis.xrange(keys.acct(account.index)) if isinstance(m := decode(f), Reconcile)]
    assert snaps and {o.client_order_index for o in snaps[-1].orders} >= {it.client_order_index for it in resting}

    assert second.signal(signal.SIGTERM) == 0
    assert await view.active() == []                                           # gone before the process exited
    assert any(ev.intent_id == "gateway-stop" and ev.kind == "ack" for ev in await events(redis))


async def test_cancel_on_start_clears_what_a_crashed_run_left(
        redis: Redis, gateways: Callable[..., GatewayProc], account: VenueAccount, view: VenueView,
        tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text((REPO / "config.yaml").read_text().replace("cancel_on_start: false", "cancel_on_start: true"))
    await crash_with_two_quotes(redis, gateways(account, LIGHTER_BOT_CONFIG=str(cfg)))
    second = gateways(account, LIGHTER_BOT_CONFIG=str(cfg))
    await second.wait_ready(timeout=20.0)
    assert await view.wait_active(lambda o: not o) == []
    assert await redis.hlen(keys.GATEWAY_OPEN_ORDERS) == 0
    assert "cleared 2 order record(s)" in second.log()


async def test_a_gateway_killed_mid_send_never_sends_the_intent_twice(
        redis: Redis, gateways: Callable[..., GatewayProc], account: VenueAccount, view: VenueView) -> None:
    """The issue's duplicate: the venue holds the tx (delay fault), the gateway is SIGKILLed meanwhile, the
    new one replays the unacknowledged entry. Its journal says "sending": unknown, never signed again."""
    first = gateways(account)
    await first.wait_ready()
    await first.wait_health(lambda h: h["dead_man_armed_for_s"] is not None)
    async with aiohttp.ClientSession() as s, s.post(f"{view.venue.url}/admin/fault",
                                                    json={"kind": "delay_tx", "ms": 2_500, "count": 1}) as r:
        assert r.status == 200
    it = place(ttl_ms=30_000)
    await send(redis, it)
    journal = keys.gateway_journal(it.intent_id)
    deadline = time.monotonic() + 5
    while not await redis.hget(journal, "state") and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert await redis.hget(journal, "state") == b"sending"
    first.signal(signal.SIGKILL)
    await view.wait_active(lambda o: len(o) == 1, timeout=6.0)                # the delayed tx landed meanwhile

    second = gateways(account)
    await second.wait_ready(timeout=20.0)
    ev = await wait_event(redis, it.intent_id, ("unknown",), timeout=10.0)
    assert "earlier gateway" in ev.message
    ev = await wait_event(redis, it.intent_id, ("resolved",), timeout=10.0)
    assert ev.message.startswith("executed")
    orders = await view.active()
    assert [int(o["client_order_index"]) for o in orders] == [it.client_order_index]   # exactly one, not two
    assert (await redis.hget(journal, "state")) == b"done"
    assert second.signal(signal.SIGTERM) == 0


async def test_a_second_gateway_stands_by_while_the_lease_is_held(
        redis: Redis, gateways: Callable[..., GatewayProc], account: VenueAccount, view: VenueView) -> None:
    first = gateways(account)
    await first.wait_ready()
    second = gateways(account, GATEWAY_INSTANCE="gateway-standby")
    wait_port(second.health_port, 20)
    health = await second.wait_health(lambda h: bool(h.get("lease", {}).get("holder")), timeout=20.0)
    assert (await second.get("/ready"))[0] == 503
    assert health["lease"]["held"] is False and "gateway-test" in health["lease"]["holder"]
    assert first.signal(signal.SIGTERM) == 0
    await second.wait_ready(timeout=20.0)
    ok = place()
    await send(redis, ok)
    assert (await wait_event(redis, ok.intent_id)).kind == "ack"
    assert second.signal(signal.SIGTERM) == 0


async def test_a_modify_moves_the_order_in_place(redis: Redis, gateways: Callable[..., GatewayProc],
                                                 account: VenueAccount, view: VenueView) -> None:
    gw = gateways(account)
    await gw.wait_ready()
    bid = place()
    await send(redis, bid)
    assert (await wait_event(redis, bid.intent_id)).kind == "ack"
    await view.wait_active(lambda o: len(o) == 1)
    moved = place(BID + 1_000, SIZE + 20, action="modify", client_order_index=bid.client_order_index,
                  intent_id="maker-modify-1")
    await send(redis, moved)
    assert (await wait_event(redis, "maker-modify-1")).kind == "ack"
    orders = await view.wait_active(lambda o: len(o) == 1 and o[0]["price"] == "106.000")
    assert [(int(o["client_order_index"]), o["price"], o["remaining_base_amount"]) for o in orders] == [
        (bid.client_order_index, "106.000", "0.120")]
    assert gw.signal(signal.SIGTERM) == 0


async def test_a_second_api_key_is_a_second_nonce_lane(redis: Redis, gateways: Callable[..., GatewayProc],
                                                       venue: VenueProc) -> None:
    acct = venue.accounts[0]   # never handed out by the account fixture (it pops from the end)
    gw = gateways(acct, LIGHTER_EXTRA_API_KEYS=f"{KEY_INDEX + 1}:{SECOND_KEY[acct.index]}")
    await gw.wait_ready()
    health = await gw.wait_health(lambda h: all(lane["nonce"] is not None for lane in h["lanes"]))
    assert [lane["key"] for lane in health["lanes"]] == [KEY_INDEX, KEY_INDEX + 1]
    await gw.wait_health(lambda h: h["dead_man_armed_for_s"] is not None)
    async with aiohttp.ClientSession() as s, s.post(f"{venue.url}/admin/fault",
                                                    json={"kind": "delay_tx", "ms": 800, "count": 1}) as r:
        assert r.status == 200   # the first batch stays in flight on its lane: the next ones take the other
    orders = [place(BID - 100 * i) for i in range(12)]
    await send(redis, orders[0])
    await gw.wait_health(lambda h: any(lane["in_flight"] for lane in h["lanes"]))
    await send(redis, *orders[1:])
    for it in orders:
        assert (await wait_event(redis, it.intent_id)).kind == "ack"
    async with aiohttp.ClientSession() as s:
        nonces = []
        for key in (KEY_INDEX, KEY_INDEX + 1):
            async with s.get(f"{venue.url}/api/v1/nextNonce", params={"account_index": acct.index,
                                                                    "api_key_index": key}) as r:
                nonces.append(int((await r.json())["nonce"]))
    assert all(n > 0 for n in nonces), nonces     # both keys signed txs the venue accepted
    blob = gw.log() + str(await gw.get("/health"))
    assert SECOND_KEY[acct.index] not in blob and SECOND_KEY[acct.index].removeprefix("0x") not in blob
    assert gw.signal(signal.SIGTERM) == 0
