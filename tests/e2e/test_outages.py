"""Outages of the whole system on the local venue, each ending with: the system holds exactly the
venue's orders, fills and position, and keeps quoting (a maker bid and ask resting again).

The system runs as ``make run`` starts it (``python -m core.main``, own Redis, env file, the local
venue with ``/admin``); a taker account of our own (official SDK) trades against our quotes.
Everything is checked through public surfaces (``/health``, the venue's admin state, ``orders:events``)
and every wait is on observable state.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from lighter.signer_client import SignerClient, create_api_key

from shared.ids import source_of
from tests.chaos.harness import (REPO, THIN_LADDER, Observer, System, Taker, configured_system, hold, lots,
                                 no_veto_storm, now_ms, observing,
                                 port_offset, release, settled, two_sided, until)
from tests.conftest import wait_port

pytestmark = pytest.mark.e2e

HEARTBEAT_TIMEOUT_S = 3.0      # gateway.heartbeat_timeout_s
SEND_TIMEOUT_S = 3.0           # the gateway's sendTx timeout (services/gateway/venue_http.py)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    # the timings below (a 3 s heartbeat, a 3 s send timeout, a second for the cancel) are the premium
    # tier's: no maker/cancel latency and the request budget the faults' requotes need
    with configured_system(tmp_path_factory.mktemp("outages"),
                           {"venue": {"tier": "premium"}, "guard": {"rate": {"requests_per_min": 600}}}) as sysm:
        yield sysm


@pytest.fixture
async def obs(system: System) -> AsyncIterator[Observer]:
    async with observing(system) as o:
        await o.thin_ladder()
        await two_sided(o)
        yield o


@pytest.fixture
async def taker(obs: Observer) -> AsyncIterator[Taker]:
    t = await Taker.create(obs)
    try:
        yield t
    finally:
        await t.close()


def _maker_quotes(obs: Observer, st: dict) -> list[dict]:
    return [o for o in obs.resting(st) if source_of(int(o["client_order_index"])) == "maker"]


async def _order(obs: Observer, coi: int) -> dict:
    st = await obs.state()
    (o,) = [o for o in obs.ours(st) if int(o["client_order_index"]) == coi]
    return o




# --- a. a quote filled while the feed is down ---------------------------------------------------------
async def test_a_quote_filled_while_the_feed_is_down(system: System, obs: Observer, taker: Taker) -> None:
    feed = system.children()["feed"]
    hold(feed)                           # hung, not dead: the supervisor restarts nothing
    try:
        st = await obs.state()
        quote = _maker_quotes(obs, st)[0]
        coi, is_ask = int(quote["client_order_index"]), bool(quote["is_ask"])
        assert await taker.hit(quote) is None
        filled = await until("the quote filled at the venue",
                              lambda: _filled(obs, coi), timeout=HEARTBEAT_TIMEOUT_S - 0.5)
        assert filled["status"] == "filled"
    finally:
        os.kill(feed, signal.SIGKILL)    # a stopped process dies on SIGKILL; the supervisor restarts it
        release(feed)
    await until("the feed back", lambda: _back(obs, system, "feed", feed), timeout=60, every=0.2)

    async def counted_nowhere() -> bool:
        st = await obs.state()
        hs = await obs.healths()
        venue_pos = obs.position(st)
        side_lots = sum(lots(o["remaining_base_amount"]) for o in obs.resting(st) if o["is_ask"] == is_ask)
        g = hs["guard"].body["ledger"]
        return (all((hs[n].body.get("ledger") or {}).get("position") == venue_pos for n in ("maker", "hedger", "guard", "gateway"))
                and all(coi not in (hs[n].body["ledger"].get("open") or []) + (hs[n].body["ledger"].get("maybe_open") or [])
                        for n in ("maker", "hedger", "guard", "gateway"))
                and g[f"exposure_{'ask' if is_ask else 'bid'}"] == side_lots)
    await until("the ledgers' positions equal the venue's and the filled quote counted nowhere", counted_nowhere,
                 timeout=20, every=0.2)
    await no_veto_storm(obs)
    await settled(obs)


async def _filled(obs: Observer, coi: int) -> dict | None:
    o = await _order(obs, coi)
    return o if o["status"] == "filled" else None


async def _back(obs: Observer, system: System, name: str, old_pid: int) -> bool:
    pid = system.children().get(name)
    return pid is not None and pid != old_pid and (await obs.health(name)).ok


# --- b. a send timed out by the delay fault -------------------------------------------------------------
async def test_a_timed_out_send_ends_exactly_once(system: System, obs: Observer, taker: Taker) -> None:
    """delay_tx (4 s) holds a place (the hedge of a fill, or the maker's refill) past the gateway's 3 s send timeout: the outcome is
    unknown, resolved by evidence (the nonce was consumed), never by sending again. (4 s, not more:
    a place carries a 5-min GTT plus 5 s of slack, so a venue that holds it longer than 5 s refuses it
    with 21711, and the gateway rightly resolves it as dropped.)"""
    max_per_side = {False: 0, True: 0}
    stop = asyncio.Event()

    async def watch() -> None:   # the maker never has two quotes on one side at the venue
        while not stop.is_set():
            st = await obs.state()
            for is_ask in (False, True):
                n = sum(1 for o in _maker_quotes(obs, st) if o["is_ask"] == is_ask)
                max_per_side[is_ask] = max(max_per_side[is_ask], n)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        unknown = None
        for _attempt in range(3):
            t0 = now_ms()
            quote = _maker_quotes(obs, await obs.state())[0]
            # the taker's IOC is accepted now and executes 200 ms later (taker latency): the delay armed
            # in between takes the gateway's next tx, the hedger's hedge or the maker's refill
            assert await taker.hit(quote) is None
            await obs.fault(kind="delay_tx", ms=int((SEND_TIMEOUT_S + 1) * 1000), count=1)
            await until("an unknown outcome", lambda: _event(obs, t0, "unknown"), timeout=15)
            unknown = next((e for e in await obs.events(t0) if e.get("kind") == "unknown" and e.get("action") == "place"
                            and e.get("source") in ("maker", "hedger")), None)
            if unknown is not None:
                break
            await until("the unknown resolved", lambda: _gateway_ok(obs), timeout=30)   # another tx took it: again
            await two_sided(obs)
        assert unknown is not None, "no place timed out in 3 tries"
        coi = int(unknown["client_order_index"])
        resolved = await until("its outcome resolved", lambda: _event(obs, t0, "resolved", coi), timeout=30)
        # executed: the venue consumed its nonce (booked once); dropped: the venue refused it when the delay
        # ended (an IOC hedge whose batch no longer fit, say) and a superseding tx took the nonce (booked never)
        assert resolved["message"].startswith(("executed", "dropped")), resolved
        booked_if = 1 if resolved["message"].startswith("executed") else 0
        gw = await until("the gateway ok again", lambda: _gateway_ok(obs), timeout=30)
        how = resolved["message"].split(":")[0]
        assert gw["resolved"].get(how, 0) >= 1 and all(lane["in_doubt"] is None for lane in gw["lanes"]), gw
        await obs.state()
        assert len(obs.by_coi.get(coi, ())) == booked_if, f"{coi} booked {len(obs.by_coi.get(coi, ()))} times"
        await settled(obs)
        await obs.state()
        assert len(obs.by_coi.get(coi, ())) == booked_if and not obs.duplicates(), obs.duplicates()
    finally:
        stop.set()
        await watcher
        await obs.clear_faults()
    assert max(max_per_side.values()) == 1, f"maker quotes on one side at the venue, at most: {max_per_side}"


async def _event(obs: Observer, since_ms: int, kind: str, coi: int | None = None) -> dict | None:
    for e in await obs.events(since_ms):
        if e.get("kind") == kind and (coi is None or int(e.get("client_order_index", 0)) == coi):
            return e
    return None


async def _gateway_ok(obs: Observer) -> dict | None:
    h = await obs.health("gateway")
    return h.body if h.ok else None


# --- c. a partial fill ----------------------------------------------------------------------------------
async def test_a_partial_fill_leaves_the_venues_remaining_in_the_ledgers(system: System, obs: Observer, taker: Taker) -> None:
    # the synthetic ladder steps behind our quotes, so a taker IOC at our price meets only our quote
    await obs.set_model("calm", **{**THIN_LADDER, "half_spread_bps": 30})
    try:
        async def alone() -> dict | None:
            st = await obs.state()
            for q in _maker_quotes(obs, st):
                book = orjson.loads(await obs.redis.get("book:2"))
                side = book["asks" if q["is_ask"] else "bids"]
                if side and side[0][0] == int(q["base_price"]) and side[0][1] == int(q["base_size"]) == lots(q["remaining_base_amount"]):
                    return q
            return None
        quote = await until("a maker quote alone at the top of its side", alone, timeout=20, every=0.2)
        coi, size = int(quote["client_order_index"]), lots(quote["remaining_base_amount"])
        part = 72                            # >= 50 lots and >= 10 USD at ~140: the venue's minimums
        assert part < size
        assert await taker.ioc(not quote["is_ask"], int(quote["base_price"]), part) is None
        o = await until("the partial fill", lambda: _partial(obs, coi), timeout=10)
        assert lots(o["filled_base_amount"]) >= part   # the venue's own takers may have hit it too

        async def same() -> bool:   # the maker's ledger and the venue agree on what is left
            o = await _order(obs, coi)
            h = (await obs.health("maker")).body
            q = [x for x in h.get("quotes") or [] if int(x["coi"]) == coi]
            g = (await obs.health("guard")).body["ledger"]
            side_lots = sum(lots(x["remaining_base_amount"]) for x in obs.resting(await obs.state()) if x["is_ask"] == o["is_ask"])
            if o["status"] not in ("open", "pending", "in-progress"):
                return not q
            return (bool(q) and q[0]["size"] == lots(o["remaining_base_amount"])
                    and g[f"exposure_{'ask' if o['is_ask'] else 'bid'}"] == side_lots)
        await until("the maker ledger's remaining equal to the venue's", same, timeout=10, every=0.1)
    finally:
        await obs.set_model("calm", **THIN_LADDER)
    await settled(obs)


async def _partial(obs: Observer, coi: int) -> dict | None:
    o = await _order(obs, coi)
    return o if lots(o["filled_base_amount"]) > 0 else None


# --- e (part). a hung maker ---------------------------------------------------------------------------
async def test_a_hung_maker_has_its_quotes_cancelled_by_the_heartbeat_watch(system: System, obs: Observer) -> None:
    await obs.set_model("calm", **THIN_LADDER, taker_rate=0.0)   # no taker may fill what the watch must cancel
    await two_sided(obs)   # quotes of the maker's at the venue to begin with
    maker = system.children()["maker"]
    hold(maker)
    t0 = time.monotonic()
    try:
        seen: dict = {}

        async def none_left() -> bool:   # a requote's gap is not it: the watch must have fired
            seen["gateway"] = gw = (await obs.health("gateway")).body
            seen["quotes"] = left = _maker_quotes(obs, await obs.state())
            return gw["heartbeat_cancels"] >= 1 and not left
        try:
            await until("no maker quote at the venue", none_left, timeout=HEARTBEAT_TIMEOUT_S + 1.0)
        except AssertionError as e:
            raise AssertionError(f"{e}: {seen}\n{system.tail(3000)}") from None
        took = time.monotonic() - t0
        assert took <= HEARTBEAT_TIMEOUT_S + 1.0
        gw = (await obs.health("gateway")).body
        assert gw["heartbeat_cancels"] >= 1 and "maker" in gw["heartbeat_lost"], (took, gw, system.tail(3000))
    finally:
        release(maker)
        await obs.set_model("calm", **THIN_LADDER)
    await settled(obs)


# --- d. an expired token in the env file --------------------------------------------------------------
async def test_an_expired_ws_token_falls_back_to_the_gateways(tmp_path: Path) -> None:
    priv, pub, err = create_api_key()
    assert err is None
    signer = SignerClient(url="http://127.0.0.1:9", account_index=100, api_private_keys={4: priv}, chain_id=304)
    try:
        token, err = signer.create_auth_token_with_expiry(600, timestamp=int(time.time()) - 3600, api_key_index=4)
        assert err is None
    finally:
        await signer.close()
    sysm = System(tmp_path, env_lines=["LIGHTER_ACCOUNT_INDEX=100", "LIGHTER_API_KEY_INDEX=4",
                                        f"LIGHTER_API_PRIVATE_KEY={priv}", f"LIGHTER_API_PUBLIC_KEY={pub.removeprefix('0x')}",
                                        f"WS_AUTH_TOKEN={token}"])
    try:
        async with observing(sysm) as o:
            feed = (await o.health("feed")).body
            acct = feed["account"]
            assert acct["token_source"] == "redis" and acct["token_valid_s"] > 60, acct
            assert set(acct["channels"].values()) == {"active"}, acct
            await o.thin_ladder()
            await settled(o)
        log = sysm.tail(10**7)
        assert token.split(":")[-1] not in log, "the expired token's signature was logged"
    finally:
        sysm.stop()


# --- e. the dead-man's switch ---------------------------------------------------------------------------
async def test_dead_mans_switch_cancels_after_everything_is_killed(tmp_path: Path) -> None:
    """SIGKILL every process of the system at once (no graceful cancel) with the venue running apart;
    past the scheduled cancel-all (armed ~310 s ahead, 5 min and more on the venue's clock) no order of
    ours rests. The quotes are made to outlive the switch (each GTT ends after it), so what ends them is
    the switch, not their own 5-min expiry."""
    off = port_offset()
    vport = 8700 + off
    priv, pub, err = create_api_key()
    assert err is None
    venv = {**os.environ, "LIGHTER_ACCOUNT_INDEX": "100", "LIGHTER_API_KEY_INDEX": "4",
            "LIGHTER_API_PUBLIC_KEY": pub.removeprefix("0x")}
    with open(tmp_path / "venue.log", "wb") as vlog:
        venue = subprocess.Popen([sys.executable, "-m", "services.venue", "--host", "127.0.0.1", "--port", str(vport),
                                  "--admin", "--model", "calm", "--seed", "5"], cwd=REPO, env=venv,
                                 stdout=vlog, stderr=subprocess.STDOUT)
    sysm = None
    try:
        wait_port(vport, 30)
        base = f"http://127.0.0.1:{vport}"
        sysm = System(tmp_path, venue=False, base_url=base, off=off,
                      env_lines=[f"LIGHTER_BASE_URL={base}", "LIGHTER_ACCOUNT_INDEX=100", "LIGHTER_API_KEY_INDEX=4",
                                 f"LIGHTER_API_PRIVATE_KEY={priv}"])
        async with observing(sysm) as o:
            await o.thin_ladder()
            await two_sided(o)
            gw = (await o.health("gateway")).body
            assert gw["dead_man_armed_for_s"] is not None and gw["dead_man_armed_for_s"] > 240, gw
            switch_ms = now_ms() + int(gw["dead_man_armed_for_s"] * 1000)   # the venue's clock is ours until advanced
            taker = await Taker.create(o)
            try:
                async def outliving() -> list[dict] | None:
                    """Maker quotes on both sides whose GTT ends after the switch; fill the others (the
                    maker refills with a fresh 5-min expiry)."""
                    mk = _maker_quotes(o, await o.state())
                    early = [q for q in mk if q["order_expiry"] <= switch_ms + 1_000]
                    if not early and {q["is_ask"] for q in mk} == {False, True}:
                        return mk
                    for q in early[:1]:
                        await taker.hit(q)
                    await asyncio.sleep(0.5)
                    return None
                await until("quotes that outlive the switch", outliving, timeout=45, every=0.2)
            finally:
                await taker.close()
            pids = sysm.kill_everything()
            await until("every process of the system dead", lambda: _all_gone(pids), timeout=10)
            left = o.resting(await o.state())
            assert any(source_of(int(x["client_order_index"])) == "maker" for x in left), \
                f"no maker quote rests after the kill (nothing cancelled them: nothing may have): {left}"
            assert all(x["order_expiry"] > switch_ms + 500 for x in left), left
            venue_now = await o.venue_now_ms()
            advance = max(301_000, switch_ms - venue_now + 500)   # past 5 min; events fire in time order
            await o.advance_clock(advance)
            st = await o.state()
            assert o.resting(st) == [], f"still resting after the dead-man's switch was due: {o.resting(st)}"
            cois = {x["client_order_index"] for x in left}
            ended = {x["status"] for x in o.ours(st) if x["client_order_index"] in cois}
            assert ended == {"canceled"}, f"ended as {ended}: not by the scheduled cancel-all"
            print(f"\ndead-man: {len(left)} order(s) left resting by the kill, all cancelled by the switch "
                  f"{(switch_ms - venue_now) / 1000:.0f} s later on the venue's clock (advanced {advance / 1000:.0f} s)")
    finally:
        if sysm is not None:
            sysm.stop()
        venue.terminate()
        venue.wait(timeout=20)


async def _all_gone(pids: list[int]) -> bool:
    return all(_gone(p) for p in pids)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].split()[0] in ("Z", "X")
