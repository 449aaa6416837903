"""The guard's trading states and triggers, end to end on the local venue (``python -m core.main``).

Every check is on public surfaces: the venue's admin state (what really rests, our position),
``risk:state`` / ``risk:events`` / ``orders:events`` read with plain ``redis-cli`` (the operator's
tool), and each service's ``/health``. Intents are written the way an operator would: raw
``redis-cli XADD orders:intents * type intent v 1 d '<json>'``. The triggers are tuned faster than
the defaults (``RISK_CONFIG``) so the module runs in a few minutes; the logic is the same.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from lighter.signer_client import SignerClient, create_api_key

from shared.ids import source_of
from tests.chaos.harness import (Observer, System, Taker, configured_system, hold, now_ms, observing, release,
                                 ticks, two_sided, until)

pytestmark = pytest.mark.e2e

RISK_CONFIG: dict[str, Any] = {
    # the premium tier's budget (4000/min) holds the raised rate below; the standard tier's 60 would not
    "venue": {"tier": "premium"},
    # the drawdown test's 4% price jump would hold the volatility pause for minutes after the resume,
    # and the trend filter one-sided for its 45 s lookback (42 s of this module's run); both have their
    # own tests (tests/unit/test_lab_signals.py, the maker's unit tests)
    "maker": {"volatility": {"pause_bps": 10000, "resume_bps": 9000}, "trend": {"one_sided": False}},
    "hedger": {"trigger_units": 0.15},   # leaves a small position alone: the states decide when to flatten
    "guard": {
        # the request budget has its own tests; here it would only make the maker's re-quotes after each
        # trigger wait for the window (the faults below make it requote a lot)
        "rate": {"requests_per_min": 600, "reserved_per_min": 20, "hedge_reserved_per_min": 8},
        "triggers": {
        "stale_feed": {"after_s": 2, "resume_after_s": 1},
        "crossed_book": {"resume_after_s": 1},
        "reject_storm": {"count": 4, "window_s": 10, "resume_after_s": 2},
        "heartbeat": {"after_s": 3, "resume_after_s": 1},
        "idle_account": {"after_s": 3},
        "drawdown": {"max_usdc": 0.4},
        }},
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with configured_system(tmp_path_factory.mktemp("risk"), RISK_CONFIG) as sysm:
        yield sysm


@pytest.fixture
async def obs(system: System) -> AsyncIterator[Observer]:
    async with observing(system) as o:
        try:
            await until("the trading state ACTIVE", lambda: state_is(system, "ACTIVE"), 60)
            await two_sided(o)
            yield o
        finally:
            await o.clear_faults()


# --- the operator's tool ---------------------------------------------------------------------------------
def cli(sysm: System, *args: str) -> str:
    """Plain ``redis-cli -p <port>``: the default user, no password, as the README shows it."""
    port = sysm.redis_url.rsplit(":", 1)[1].split("/")[0]
    exe = shutil.which("redis-cli")
    assert exe, "redis-cli not installed"
    out = subprocess.run([exe, "-p", port, *args], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


async def state_is(sysm: System, want: str) -> bool:
    return cli(sysm, "GET", "risk:state") == want


def _stream(sysm: System, name: str, start: str = "-") -> list[dict[str, Any]]:
    """The JSON bodies of a stream, as ``redis-cli XRANGE`` prints them (one field per line)."""
    return [orjson.loads(line) for line in cli(sysm, "XRANGE", name, start, "+").splitlines() if line.startswith("{")]


def risk_events(sysm: System, since_ms: int) -> list[dict[str, Any]]:
    return _stream(sysm, "risk:events", str(since_ms))




def xadd_intent(sysm: System, **fields: Any) -> str:
    body = {"intent_id": f"op-{time.time_ns()}", "source": "operator", "action": "place", "market_id": 2,
            "client_order_index": (time.time_ns() // 1000 % 2**44) << 2 | 3, "created_ms": now_ms(), "ttl_ms": 10_000,
            **fields}
    cli(sysm, "XADD", "orders:intents", "*", "type", "intent", "v", "1", "d", orjson.dumps(body).decode())
    return str(body["intent_id"])


def vetoes(sysm: System) -> dict[str, str]:
    return {e["intent_id"]: e["message"] for e in _stream(sysm, "orders:events") if e.get("kind") == "veto"}


def maker_resting(obs: Observer, st: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in obs.resting(st) if source_of(int(o["client_order_index"])) == "maker"]


async def nothing_rests(obs: Observer) -> bool:
    return not obs.resting(await obs.state())


async def mid(obs: Observer) -> int:
    raw = await obs.redis.get("book:2")
    book = orjson.loads(raw)
    return (book["bids"][0][0] + book["asks"][0][0]) // 2


async def ui_trader(obs: Observer) -> Taker:
    """Our own account traded by hand (API key 3, as Lighter's web UI would): a position the bot did not make."""
    priv, pub, err = create_api_key()
    assert err is None, err
    await obs._admin("POST", "/accounts", {"account_index": obs.sys.account, "api_key_index": 3,
                                           "public_key": pub.removeprefix("0x")})
    client = SignerClient(url=obs.sys.base_url, account_index=obs.sys.account, api_private_keys={3: priv}, chain_id=304)
    return Taker(client, obs.sys.account, 3)


async def flatten_by_hand(obs: Observer, ui: Taker) -> None:
    """Close whatever position earlier tests left (the hedger leaves up to its trigger alone)."""
    m = await mid(obs)
    least = -(-10_500 * 1000 // m)   # lots worth the 10.5 USDC minimum notional: less cannot be traded
    pos = obs.position(await obs.state())
    if abs(pos) >= least:
        assert await ui.ioc(pos > 0, m - m // 100 if pos > 0 else m + m // 100, abs(pos)) is None
    await until("flat within the minimum", lambda: _within(obs, least), 10)
    await until("ACTIVE", lambda: state_is(obs.sys, "ACTIVE"), 20)


# --- bad intents ------------------------------------------------------------------------------------------
async def test_every_bad_intent_is_vetoed_with_its_reason_and_none_reaches_the_venue(system: System, obs: Observer) -> None:
    m = await mid(obs)
    ask = min((o for o in maker_resting(obs, await obs.state()) if o["is_ask"]), key=lambda o: ticks(o["price"]))
    t = now_ms()
    cases = {
        "position": xadd_intent(system, is_ask=False, price=m - 500, size=20_000, book_ts_ms=t),      # 100 x the limit
        "price_band": xadd_intent(system, is_ask=True, price=m * 10, size=90, book_ts_ms=t),           # 10 x from mid
        "self-trade": xadd_intent(system, is_ask=False, price=ticks(ask["price"]) + 1, size=90, book_ts_ms=t),
        "min_notional": xadd_intent(system, is_ask=False, price=m - 500, size=60, book_ts_ms=t),       # ~8.4 USDC
        "book_age": xadd_intent(system, is_ask=False, price=m - 500, size=90, book_ts_ms=t - 5_000),
        "market": xadd_intent(system, market_id=99, is_ask=False, price=m - 500, size=90, book_ts_ms=t),
    }
    cli(system, "SET", "risk:reduce", "e2e: reduce only")
    await until("REDUCING", lambda: state_is(system, "REDUCING"), 5)
    pos = obs.position(await obs.state())
    cases["reducing"] = xadd_intent(system, is_ask=pos > 0, price=m + 500 if pos <= 0 else m - 500, size=90,
                                    book_ts_ms=now_ms())   # the adding side
    cli(system, "DEL", "risk:reduce")
    cli(system, "XADD", "orders:intents", "*", "type", "intent", "v", "1", "d", "{not json")
    cli(system, "XADD", "orders:intents", "*", "type", "rocket", "v", "1", "d", "{}")

    async def all_judged() -> bool:
        return set(cases.values()) <= set(vetoes(system))
    try:
        await until("a verdict for every bad intent", all_judged, 10)
    finally:
        got = vetoes(system)
        print({reason: got.get(iid, "(no veto)") for reason, iid in cases.items()})
    for reason, iid in cases.items():
        assert got[iid].startswith(f"{reason}: "), (reason, got[iid])
    st = await obs.state()
    assert not [o for o in obs.ours(st) if source_of(int(o["client_order_index"])) not in ("maker", "hedger")]
    assert int(cli(system, "XLEN", "dlq:guard")) >= 2
    assert (await obs.health("guard")).status == 200   # alive and well
    await until("ACTIVE again", lambda: state_is(system, "ACTIVE"), 5)


# --- the kill flag ----------------------------------------------------------------------------------------
async def test_the_kill_flag_empties_the_book_within_a_second_and_stays_quiet(system: System, obs: Observer) -> None:
    t0 = time.monotonic()
    cli(system, "SET", "risk:kill", "e2e: operator stop")
    try:
        await until("nothing of ours resting", lambda: nothing_rests(obs), 1.0, every=0.02)
        took = time.monotonic() - t0
        await until("risk:state HALTED", lambda: state_is(system, "HALTED"), 2)
        quiet_from = now_ms()
        await asyncio.sleep(3)
        assert [e for e in (await obs.events(quiet_from, now_ms())) if e.get("kind") == "veto"] == []
        hs = await obs.healths()
        assert {n: h.body["trading"]["state"] for n, h in hs.items()} == {n: "HALTED" for n in hs}
        traders = ("maker", "hedger", "guard", "gateway")   # the feed keeps feeding: its own state stays ok
        assert {n: hs[n].body["state"] for n in traders} == {n: "halted" for n in traders}
        assert "kill: e2e: operator stop" in hs["guard"].body["reason"]
        async with obs.s.get(f"http://127.0.0.1:{system.port('aggregate')}/health") as r:
            agg = await r.json()
        assert agg["status"] == "halted" and "e2e: operator stop" in agg["trading"]["reason"]
    finally:
        cli(system, "DEL", "risk:kill")
    await until("ACTIVE", lambda: state_is(system, "ACTIVE"), 5)
    await two_sided(obs)
    assert took <= 1.0


# --- triggers -------------------------------------------------------------------------------------------------
async def _tripped(system: System, since: int, trigger: str, state: str, timeout: float = 20,
                   obs: Observer | None = None) -> dict[str, Any]:
    async def seen() -> dict[str, Any] | None:
        for e in risk_events(system, since):
            if e["state"] == state and trigger in e["triggers"]:
                return e
        return None
    try:
        return await until(f"{state} by {trigger}", seen, timeout, every=0.1)
    except AssertionError as e:   # what the gateway and the venue saw, for the report
        if obs is None:
            raise
        gw = (await obs.health("gateway")).body
        keep = {k: gw.get(k) for k in ("state", "reason", "lanes", "acks", "rejects", "stale", "killed",
                                        "rate_limited", "reconciled", "kill", "open_orders_tracked")}
        st = await obs.state()
        raise AssertionError(f"{e}\ngateway: {keep}\nvenue position {obs.position(st)}, "
                             f"resting {[(o['client_order_index'], o['is_ask']) for o in obs.resting(st)]}") from None


async def test_a_stale_feed_halts_pulls_everything_and_resumes(system: System, obs: Observer) -> None:
    t = now_ms()
    await obs.fault(kind="freeze_feed", market_id=2, seconds=5)
    await _tripped(system, t, "stale_feed", "HALTED")
    await until("nothing resting", lambda: nothing_rests(obs), 3)
    await until("ACTIVE after the feed is back", lambda: state_is(system, "ACTIVE"), 15)
    await two_sided(obs)


async def test_a_storm_of_rejects_halts_then_resumes(system: System, obs: Observer) -> None:
    t = now_ms()
    await obs.fault(kind="reject_tx", code=21_120, count=4)   # the venue refuses the next four txs
    m = await mid(obs)
    for i in range(4):   # hand-made bids 1% under mid: valid, approved, refused by the venue
        xadd_intent(system, is_ask=False, price=m - m // 100 - i, size=90, book_ts_ms=now_ms())
        await asyncio.sleep(0.3)
    await _tripped(system, t, "reject_storm", "HALTED", obs=obs)
    await until("nothing resting", lambda: nothing_rests(obs), 5)
    await obs.clear_faults()
    await until("ACTIVE again", lambda: state_is(system, "ACTIVE"), 30)
    await two_sided(obs)


async def test_a_lost_heartbeat_reduces_only(system: System, obs: Observer) -> None:
    hedger = system.children()["hedger"]
    t = now_ms()
    hold(hedger)
    try:
        e = await _tripped(system, t, "heartbeat", "REDUCING")
        assert "hedger" in e["triggers"]["heartbeat"]

        async def only_reducing() -> bool:
            st = await obs.state()
            pos = obs.position(st)
            return all(pos != 0 and o["is_ask"] == (pos > 0) for o in maker_resting(obs, st))
        await until("only reducing maker quotes", only_reducing, 5)
    finally:
        release(hedger)
    await until("ACTIVE again", lambda: state_is(system, "ACTIVE"), 15)
    await two_sided(obs)


async def test_a_silent_account_channel_halts(system: System, obs: Observer) -> None:
    t = now_ms()
    await obs.fault(kind="mute_account", account_index=system.account, seconds=12)   # connected, silent
    m = await mid(obs)
    xadd_intent(system, is_ask=False, price=m - m // 100, size=90, book_ts_ms=now_ms())   # accepted, never echoed
    e = await _tripped(system, t, "idle_account", "HALTED", timeout=10)
    assert e["triggers"]["idle_account"].startswith("the venue accepted our place")
    await until("ACTIVE once the channel speaks again", lambda: state_is(system, "ACTIVE"), 40)
    await two_sided(obs)


async def test_a_drawdown_reduces_until_the_operator_resumes(system: System, obs: Observer) -> None:
    ui = await ui_trader(obs)
    try:
        await flatten_by_hand(obs, ui)
        m = await mid(obs)
        assert await ui.ioc(False, m + m // 100, 120) is None      # bought 0.12 by hand, at the market
        await until("long at the venue", lambda: _long(obs, 100), 10)
        t = now_ms()
        await obs.fault(kind="price_jump", market_id=2, bps=-400)    # about -0.84 USDC on 0.12 SOL
        e = await _tripped(system, t, "drawdown", "REDUCING")
        assert e["triggers"]["drawdown"].startswith("down ")
        async def only_reducing() -> bool:   # long: no maker bid rests, the hedger sells reduce-only
            st = await obs.state()
            return not [o for o in maker_resting(obs, st) if not o["is_ask"]]
        await until("only the reducing side", only_reducing, 5)
        await asyncio.sleep(2)
        assert cli(system, "GET", "risk:state") == "REDUCING"        # latched (auto_resume: false), even back at peak
        cli(system, "SET", "risk:resume", "1")
        await until("ACTIVE after risk:resume", lambda: state_is(system, "ACTIVE"), 5)
        assert cli(system, "EXISTS", "risk:resume") == "0"
        await flatten_by_hand(obs, ui)
        await two_sided(obs)
    finally:
        await ui.close()


async def test_a_breach_reduces_the_hedger_flattens_and_the_adding_side_stays_off(system: System, obs: Observer) -> None:
    ui = await ui_trader(obs)
    try:
        await flatten_by_hand(obs, ui)
        m = await mid(obs)
        t = now_ms()
        # 0.4 by hand, far over the 0.2 limit from wherever we are: a hedge clip in flight while we flattened
        # can leave us one clip short (seen twice with 0.25: the flatten sold 0.116 at 0.037, the buy peaked
        # at 0.171), and reading the position first races the same clip
        assert await ui.ioc(False, m + m // 100, 400) is None
        try:
            e = await _tripped(system, t, "inventory", "REDUCING", obs=obs)
        except AssertionError as err:
            raise AssertionError(f"{err}\nthe hand orders: {await _hand_orders(ui)}") from None
        assert e["triggers"]["inventory"].startswith("position 0.") and "beyond max 0.2 SOL" in e["triggers"]["inventory"]
        adding_seen = 0
        deadline = time.monotonic() + 60
        while cli(system, "GET", "risk:state") == "REDUCING":
            st = await obs.state()
            pos = obs.position(st)
            adding_seen += sum(1 for o in maker_resting(obs, st) if not o["is_ask"] and pos > 0)
            assert time.monotonic() < deadline, "still REDUCING after 60 s"
            await asyncio.sleep(0.1)
        st = await obs.state()
        assert obs.position(st) <= 160 and adding_seen == 0       # flattened at the venue to 0.8 x the limit
        assert cli(system, "GET", "risk:kill") == ""               # the breach never touched the operator's switch
        await flatten_by_hand(obs, ui)   # what is left (<= 0.16) leaves no room for a minimum-size bid
        await two_sided(obs)
    finally:
        await ui.close()


async def _hand_orders(ui: Taker) -> list[tuple[int, str, str, str]]:
    """The hand key's last orders as the venue ended them (client index, status, size, filled)."""
    token, err = ui.client.create_auth_token_with_expiry(600, api_key_index=3)
    if err is not None:
        return []
    r = await ui.client.order_api.account_inactive_orders(token, ui.account, 5)
    return [(o.client_order_index, o.status, o.initial_base_amount, o.filled_base_amount) for o in r.orders]


async def _long(obs: Observer, at_least: int) -> bool:
    return obs.position(await obs.state()) >= at_least


async def _within(obs: Observer, lots_: int) -> bool:
    return abs(obs.position(await obs.state())) <= lots_


async def test_a_crossed_book_halts_and_resumes(system: System, obs: Observer) -> None:
    # last in the module: seen here, the phantom crossing level sometimes came back to the feed's book
    # after the venue withdrew it (HALTED by crossed_book again a few seconds later, in the next test);
    # not yet explained, so nothing runs after it
    t = now_ms()
    await obs.fault(kind="cross_book", market_id=2, seconds=2)
    e = await _tripped(system, t, "crossed_book", "HALTED")
    assert e["triggers"]["crossed_book"].startswith("crossed book: bid ")
    await until("nothing resting", lambda: nothing_rests(obs), 3)
    await until("ACTIVE again", lambda: state_is(system, "ACTIVE"), 15)
    await two_sided(obs)
