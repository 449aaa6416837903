"""Least privilege in Redis, against a real redis-server loaded with the ACL file ``shared/acl.py`` builds.

Each service user does its real work here through the same calls its code makes (``shared.bus``, the
gateway's Lua scripts, consumer groups) and is refused everything else with ``NOPERM``; the operator
runs, through ``redis-cli``, every command the README and docs show. ``tests/e2e/test_system.py`` then
runs the whole system under these users.
"""
from __future__ import annotations

import argparse
import re
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError

from core.main import SECRET_VARS, build_children, child_env
from shared import acl, keys, logs
from shared.bus import Bus, GroupConsumer, TailReader
from shared.config import load_settings
from shared.schemas import AccountGap, encode
from tests.acl_redis import AclRedis, start_acl_redis
from tests.conftest import REPO, free_port, wait_port

ACCT = keys.acct(100)
BOOK = keys.md_book(2)
OTHERS_THAN = {u: [s for s in acl.SERVICES if s != u] for u in acl.SERVICES}


# --- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclRedis]:
    s = start_acl_redis(tmp_path_factory.mktemp("acl-local"), "local")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def compose_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclRedis]:
    s = start_acl_redis(tmp_path_factory.mktemp("acl-compose"), "compose", conf=REPO / "redis" / "redis.conf")
    yield s
    s.stop()


async def _fresh(server: AclRedis) -> AclRedis:
    admin = server.admin()
    await admin.flushall()
    await admin.execute_command("ACL", "LOG", "RESET")
    await admin.aclose()
    return server


@pytest.fixture
async def srv(local_server: AclRedis) -> AclRedis:
    """The local-run layout (default user = operator, no password), emptied."""
    return await _fresh(local_server)


@pytest.fixture
async def csrv(compose_server: AclRedis) -> AclRedis:
    """The compose/Railway layout (default user off, ``operator`` with a password), emptied."""
    return await _fresh(compose_server)


class Users:
    """One open client per user of a server; closed at the end of the test."""

    def __init__(self, server: AclRedis) -> None:
        self.server = server
        self._clients: dict[str | None, Redis] = {}

    def __getitem__(self, user: str | None) -> Redis:
        if user not in self._clients:
            self._clients[user] = self.server.client(user)
        return self._clients[user]

    async def close(self) -> None:
        for c in self._clients.values():
            await c.aclose()


@pytest.fixture
async def users(srv: AclRedis) -> AsyncIterator[Users]:
    u = Users(srv)
    yield u
    await u.close()


async def refused(aw: Awaitable[Any]) -> None:
    """The call fails with NOPERM (a command, a key, or a command inside a Lua script)."""
    with pytest.raises(ResponseError) as e:
        await aw
    text = str(e.value)
    assert "NOPERM" in text or "no permissions" in text or "user executing the script can't" in text, text


def gap(reason: str = "test") -> AccountGap:
    return AccountGap(reason=reason, ts_ms=int(time.time() * 1000))


async def seed(admin: Redis) -> dict[str, str]:
    """What a running system has in Redis, written as the admin: ids of the entries written."""
    ids = {
        "acct": (await admin.xadd(ACCT, encode(gap("acct")))).decode(),
        "events": (await admin.xadd(keys.ORDERS_EVENTS, encode(gap("events")))).decode(),
        "book": (await admin.xadd(BOOK, encode(gap("book")))).decode(),
        "intent": (await admin.xadd(keys.ORDERS_INTENTS, encode(gap("intent")))).decode(),
    }
    await admin.set(keys.book_latest(2), "{}")
    await admin.set(keys.RISK_STATE, "ACTIVE")
    await admin.set(keys.AUTH_WS_TOKEN, "the-ws-token", px=60_000)
    await admin.hset(keys.GATEWAY_OPEN_ORDERS, "123", '{"intent_id": "maker-1", "market": 2}')
    await admin.hset(keys.gateway_journal("maker-1"), mapping={"state": "done", "epoch": "gateway-1:1"})
    for s in acl.SERVICES:
        await admin.set(keys.heartbeat(s), "1", px=60_000)
    return ids


# --- the file itself ----------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", acl.LAYOUTS)
async def test_the_file_loads_with_hashed_passwords_only(layout: acl.Layout, srv: AclRedis, csrv: AclRedis) -> None:
    server = srv if layout == "local" else csrv
    text = acl.acl_text(server.passwords, layout)
    for pw in server.passwords.values():
        assert pw not in text
    admin = server.admin()
    try:
        listed = {line.split()[1].decode() for line in await admin.execute_command("ACL", "LIST")}
    finally:
        await admin.aclose()
    expected = {"default", *acl.SERVICES} | ({acl.OPERATOR, acl.HEALTHCHECK} if layout == "compose" else set())
    assert listed == expected | {"testadmin"}
    with pytest.raises(acl.MissingPassword, match="REDIS_PASSWORD_GUARD"):
        acl.acl_text({u: "x" for u in acl.USERS if u != "guard"}, layout)


# --- maker and hedger -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["maker", "hedger"])
async def test_quoting_services_do_their_job(name: str, users: Users) -> None:
    await seed(users["testadmin"])
    r = users[name]
    bus = Bus(r, name)
    consumer = GroupConsumer(bus, [ACCT, keys.ORDERS_EVENTS], name, f"{name}-1", block_ms=10)
    await r.xgroup_create(ACCT, name, id="0", mkstream=True)                 # quoting_shell.create_group
    await r.xgroup_create(keys.ORDERS_EVENTS, name, id="0", mkstream=True)
    assert await consumer.read() == []          # own pending entries first: none
    got = await consumer.read()
    assert {e.stream for e in got} == {ACCT, keys.ORDERS_EVENTS}
    for e in got:
        await consumer.ack(e.stream, e.id)
    assert await consumer.claim_idle() == 0
    assert await r.xrevrange(BOOK, count=1)
    assert await r.get(keys.book_latest(2)) == b"{}"
    assert await TailReader(bus, [BOOK], start="0-0", block_ms=10).read()
    assert await r.hgetall(keys.GATEWAY_OPEN_ORDERS)
    assert await r.get(keys.RISK_STATE) == b"ACTIVE" and await r.get(keys.RISK_KILL) is None
    await users["guard"].xadd(keys.RISK_EVENTS, encode(gap("risk")))
    assert await r.xrevrange(keys.RISK_EVENTS, count=1)                       # shared.risk_watch
    assert await TailReader(bus, [keys.RISK_EVENTS], start="0-0", block_ms=10).read()
    await bus.publish_many(keys.ORDERS_INTENTS, [gap("a"), gap("b")])           # EVALSHA + SCRIPT LOAD
    await bus.publish(keys.ORDERS_INTENTS, gap("c"))
    await bus.dead_letter(BOOK, "1-0", {"d": "x"}, "bad")
    await r.set(keys.heartbeat(name), "1", px=keys.HEARTBEAT_TTL_MS)
    await r.set(keys.RECONCILE_REQUEST, f"{name} start")
    assert await users["testadmin"].xlen(keys.ORDERS_INTENTS) == 4
    assert await users["testadmin"].xlen(keys.dead_letter(name)) == 1


@pytest.mark.parametrize("name", ["maker", "hedger"])
async def test_quoting_services_cannot_approve_halt_read_the_token_or_fake_market_data(name: str, users: Users) -> None:
    admin = users["testadmin"]
    ids = await seed(admin)
    await admin.xgroup_create(keys.ORDERS_APPROVED, keys.GROUP_GATEWAY, id="0", mkstream=True)
    r = users[name]
    await refused(r.xadd(keys.ORDERS_APPROVED, encode(gap())))     # the issue: a bid straight to the gateway
    await refused(r.set(keys.RISK_KILL, "x"))
    await refused(r.delete(keys.RISK_KILL))
    for k in (keys.RISK_STATE, keys.RISK_REDUCE, keys.RISK_RESUME):
        await refused(r.set(k, "x"))
    await refused(r.xadd(keys.RISK_EVENTS, encode(gap())))
    await refused(r.get(keys.AUTH_WS_TOKEN))
    await refused(r.set(keys.AUTH_WS_TOKEN, "mine"))
    await refused(r.xadd(BOOK, encode(gap())))
    await refused(r.xadd(keys.md_trade(2), encode(gap())))
    await refused(r.set(keys.book_latest(2), "{}"))
    await refused(r.xadd(ACCT, encode(gap())))
    await refused(r.xreadgroup(keys.GROUP_GATEWAY, "x", {keys.ORDERS_APPROVED: ">"}))
    await refused(r.xack(keys.ORDERS_APPROVED, keys.GROUP_GATEWAY, "0-1"))
    await refused(r.xreadgroup(keys.GROUP_GUARD, "x", {keys.ORDERS_INTENTS: ">"}))
    await refused(r.xrange(keys.ORDERS_APPROVED))
    await refused(r.xadd(keys.ORDERS_EVENTS, encode(gap())))
    # a script may name an allowed key and still not write another one
    smuggle = r.register_script("return redis.call('XADD', 'orders:approved', '*', 'a', 'b')")   # EVALSHA
    await refused(smuggle(keys=[keys.ORDERS_INTENTS]))
    await refused(r.register_script("return redis.call('XADD', KEYS[1], '*', 'a', 'b')")(keys=[keys.ORDERS_APPROVED]))
    await refused(r.eval("return 1", 0))                                        # EVAL: only the gateway
    for other in OTHERS_THAN[name]:
        await refused(r.set(keys.heartbeat(other), "1"))
        await refused(r.xadd(keys.dead_letter(other), {"a": "b"}))
    await refused(r.set(keys.GATEWAY_LEASE, "x"))
    await refused(r.hset(keys.GATEWAY_OPEN_ORDERS, "1", "x"))
    await refused(r.hgetall(keys.gateway_journal("maker-1")))
    await refused(r.xgroup_destroy(ACCT, name))
    await refused(r.xtrim(keys.ORDERS_INTENTS, maxlen=0))
    await refused(r.delete(keys.ORDERS_INTENTS))
    await refused(r.xdel(keys.ORDERS_INTENTS, ids["intent"]))
    for cmd in (("FLUSHALL",), ("CONFIG", "SET", "appendonly", "no"), ("KEYS", "*"), ("ACL", "LIST"), ("MONITOR",),
                ("CLIENT", "LIST"), ("SHUTDOWN",), ("PUBLISH", "risk:events", "x"), ("SCRIPT", "FLUSH")):
        await refused(r.execute_command(*cmd))


# --- feed -----------------------------------------------------------------------------------------------
async def test_the_feed_reads_the_token_and_writes_market_and_account_data(users: Users) -> None:
    await seed(users["testadmin"])
    r = users["feed"]
    bus = Bus(r, "feed")
    assert await r.get(keys.AUTH_WS_TOKEN) == b"the-ws-token"
    await bus.publish_md(BOOK, gap(), latest_key=keys.book_latest(2))
    await bus.publish_md(keys.md_trade(2), gap())
    await bus.publish(ACCT, gap())
    await bus.dead_letter("ws", "1", {"frame": "x"}, "bad frame")
    await r.set(keys.heartbeat("feed"), "1", px=keys.HEARTBEAT_TTL_MS)
    assert await r.get(keys.RISK_STATE) == b"ACTIVE"
    await refused(r.set(keys.AUTH_WS_TOKEN, "forged"))
    await refused(r.xadd(keys.ORDERS_INTENTS, encode(gap())))
    await refused(r.xadd(keys.ORDERS_APPROVED, encode(gap())))
    await refused(r.xadd(keys.ORDERS_EVENTS, encode(gap())))
    await refused(r.set(keys.RISK_KILL, "x"))
    await refused(r.xreadgroup(keys.GROUP_GUARD, "x", {ACCT: ">"}))
    await refused(r.hgetall(keys.GATEWAY_OPEN_ORDERS))
    await refused(r.set(keys.heartbeat("maker"), "1"))


# --- guard ----------------------------------------------------------------------------------------------
async def test_only_the_guard_approves(users: Users, csrv: AclRedis) -> None:
    await seed(users["testadmin"])
    g = users["guard"]
    await g.xgroup_create(keys.ORDERS_INTENTS, keys.GROUP_GUARD, id="0", mkstream=True)
    consumer = GroupConsumer(Bus(g, "guard"), [ACCT, keys.ORDERS_EVENTS, keys.ORDERS_INTENTS], keys.GROUP_GUARD,
                             "guard-1", block_ms=10)
    await consumer.ensure_groups("0")
    assert await consumer.read() == []
    entries = await consumer.read()
    intent = [e for e in entries if e.stream == keys.ORDERS_INTENTS]
    assert len(intent) == 1 and {e.stream for e in entries} == {ACCT, keys.ORDERS_EVENTS, keys.ORDERS_INTENTS}
    assert await consumer.claim_idle() == 0
    # the guard's verdicts: approved + veto + a risk event, and the XACK of the intent, in one Lua call
    await Bus(g, "guard").publish_all_and_ack([(keys.ORDERS_APPROVED, gap("ok")), (keys.ORDERS_EVENTS, gap("veto")),
                                               (keys.RISK_EVENTS, gap("risk"))],
                                              keys.ORDERS_INTENTS, keys.GROUP_GUARD, [intent[0].id])
    assert (await g.xpending(keys.ORDERS_INTENTS, keys.GROUP_GUARD))["pending"] == 0
    await g.xadd(keys.ORDERS_APPROVED, encode(gap()))
    assert len(await g.xrange(keys.ORDERS_APPROVED)) == 2                      # recovery reads it back
    for name in ("feed", "maker", "hedger", "gateway", None):                 # None: the local operator
        await refused(users[name].xadd(keys.ORDERS_APPROVED, encode(gap())))
    op = csrv.client(acl.OPERATOR)
    try:
        await refused(op.xadd(keys.ORDERS_APPROVED, encode(gap())))
    finally:
        await op.aclose()


async def test_the_guard_writes_risk_and_reads_every_heartbeat(users: Users) -> None:
    await seed(users["testadmin"])
    g = users["guard"]
    bus = Bus(g, "guard")
    pipe = g.pipeline(transaction=True)                      # Guard._write_states: MULTI/SET/XADD/EXEC
    pipe.set(keys.RISK_STATE, "REDUCING")
    pipe.xadd(keys.RISK_EVENTS, encode(gap()), maxlen=keys.RISK_EVENTS_MAXLEN, approximate=True)
    await pipe.execute()
    await bus.publish(keys.RISK_EVENTS, gap("state"))
    pipe = g.pipeline(transaction=False)                     # the guard's flag poll
    pipe.get(keys.RISK_KILL)
    pipe.get(keys.RISK_REDUCE)
    pipe.get(keys.RISK_RESUME)
    pipe.mget([keys.heartbeat(n) for n in ("feed", "maker", "hedger", "gateway")])
    assert (await pipe.execute())[3] == [b"1"] * 4
    assert await g.set(keys.RISK_KILL, "guard: drawdown", nx=True)
    assert not await g.set(keys.RISK_KILL, "guard: again", nx=True)
    await users[None].set(keys.RISK_RESUME, "1")                              # the operator asks
    assert await g.get(keys.RISK_RESUME) == b"1"
    assert await g.delete(keys.RISK_RESUME) == 1
    await users[None].set(keys.RISK_RESUME, "1")
    assert await g.getdel(keys.RISK_RESUME) == b"1"
    for s in acl.SERVICES:
        assert await g.get(keys.heartbeat(s)) == b"1"
    await g.set(keys.heartbeat("guard"), "1", px=keys.HEARTBEAT_TTL_MS)
    await g.set(keys.RECONCILE_REQUEST, "guard start")
    assert await g.get(keys.book_latest(2)) == b"{}"
    assert await TailReader(bus, [BOOK], start="0-0", block_ms=10).read()
    await bus.dead_letter(ACCT, "1-0", {"d": "x"}, "bad")
    await refused(g.get(keys.AUTH_WS_TOKEN))
    await refused(g.xadd(BOOK, encode(gap())))
    await refused(g.set(keys.book_latest(2), "{}"))
    await refused(g.xadd(keys.ORDERS_INTENTS, encode(gap())))
    await refused(g.xadd(ACCT, encode(gap())))
    await refused(g.set(keys.GATEWAY_LEASE, "x"))
    await refused(g.hgetall(keys.GATEWAY_OPEN_ORDERS))
    await refused(g.set(keys.heartbeat("maker"), "1"))
    # everyone reads risk:*; nobody else writes it
    for name in ("feed", "maker", "hedger", "gateway", None):
        r = users[name]
        assert await r.get(keys.RISK_STATE) == b"REDUCING" and await r.get(keys.RISK_KILL) == b"guard: drawdown"
        assert len(await r.xrange(keys.RISK_EVENTS)) == 2
        if name is not None:
            for k in (keys.RISK_STATE, keys.RISK_KILL, keys.RISK_REDUCE, keys.RISK_RESUME):
                await refused(r.set(k, "x"))
                await refused(r.delete(k))
            await refused(r.xadd(keys.RISK_EVENTS, encode(gap())))
    await refused(users[None].set(keys.RISK_STATE, "ACTIVE"))                 # the operator's switches only
    await refused(users[None].xadd(keys.RISK_EVENTS, encode(gap())))


# --- gateway --------------------------------------------------------------------------------------------
async def test_the_gateway_alone_consumes_approved_intents(users: Users, csrv: AclRedis) -> None:
    await seed(users["testadmin"])
    gw = users["gateway"]
    consumer = GroupConsumer(Bus(gw, "gateway"), [keys.ORDERS_APPROVED, ACCT], keys.GROUP_GATEWAY, "gateway-1", block_ms=10)
    await consumer.ensure_groups("0")
    approved = (await users["guard"].xadd(keys.ORDERS_APPROVED, encode(gap()))).decode()
    await users["guard"].xadd(keys.ORDERS_APPROVED, encode(gap()))
    assert await consumer.read() == []
    got = await consumer.read()
    assert [e.id for e in got if e.stream == keys.ORDERS_APPROVED][0] == approved
    await consumer.ack(keys.ORDERS_APPROVED, approved)
    assert await consumer.claim_idle() == 0
    second = [e.id for e in got if e.stream == keys.ORDERS_APPROVED][1]
    await Bus(gw, "gateway").publish_and_ack(keys.ORDERS_EVENTS, gap("ack"), keys.ORDERS_APPROVED, keys.GROUP_GATEWAY,
                                             second)
    assert (await gw.xpending(keys.ORDERS_APPROVED, keys.GROUP_GATEWAY))["pending"] == 0
    g = users["guard"]
    await refused(g.xack(keys.ORDERS_APPROVED, keys.GROUP_GATEWAY, approved))
    await refused(g.xreadgroup(keys.GROUP_GATEWAY, "guard-1", {keys.ORDERS_APPROVED: "0"}))
    await refused(g.xautoclaim(keys.ORDERS_APPROVED, keys.GROUP_GATEWAY, "guard-1", 0))
    await refused(g.xgroup_create(keys.ORDERS_APPROVED, "guard2", id="0"))
    ack = g.register_script("return redis.call('XACK', KEYS[1], 'gateway', ARGV[1])")   # EVALSHA, as Bus does
    await refused(ack(keys=[keys.ORDERS_APPROVED], args=[approved]))
    for name in ("feed", "maker", "hedger", None):
        await refused(users[name].xreadgroup(keys.GROUP_GATEWAY, "x", {keys.ORDERS_APPROVED: "0"}))
        await refused(users[name].xack(keys.ORDERS_APPROVED, keys.GROUP_GATEWAY, approved))
    op = csrv.client(acl.OPERATOR)
    try:
        await refused(op.xreadgroup(keys.GROUP_GATEWAY, "x", {keys.ORDERS_APPROVED: "0"}))
    finally:
        await op.aclose()


async def test_the_gateway_keys_and_scripts(users: Users) -> None:
    from services.gateway.app import _CLAIM, _RELEASE, _RENEW

    await seed(users["testadmin"])
    gw = users["gateway"]
    bus = Bus(gw, "gateway")
    epoch = await gw.incr(keys.GATEWAY_EPOCH)
    token = f"gateway-1:{epoch}"
    assert await gw.set(keys.GATEWAY_LEASE, token, nx=True, px=5000)
    assert await gw.get(keys.GATEWAY_LEASE) == token.encode()
    claim, release = gw.register_script(_CLAIM), gw.register_script(_RELEASE)
    journal = keys.gateway_journal("maker-2")

    claim_keys = [keys.GATEWAY_LEASE, keys.RISK_KILL, keys.GATEWAY_OPEN_ORDERS, keys.RISK_STATE]   # as Gateway._claim
    args = [token, "1", 1, journal, 2, "77", '{"intent_id": "maker-2"}', "state", "sending", "epoch", token,
            keys.JOURNAL_TTL_S]
    res = await claim(keys=claim_keys, args=args)
    assert res[0] == b"ok"
    assert (await gw.hgetall(journal))[b"state"] == b"sending" and await gw.ttl(journal) > 0
    await users[None].set(keys.RISK_KILL, "manual")
    res = await claim(keys=claim_keys, args=args)
    assert res == [b"killed", b"manual"]                       # the claim reads the kill flag inside Lua
    pipe = gw.pipeline(transaction=False)                      # the ticker's round trip
    pipe.get(keys.RISK_KILL)
    for s in ("maker", "feed", "hedger"):
        pipe.get(keys.heartbeat(s))
    pipe.getdel(keys.RECONCILE_REQUEST)
    pipe.eval(_RENEW, 1, keys.GATEWAY_LEASE, token, 5000)
    kill, *_, renewed = await pipe.execute()
    assert kill == b"manual" and renewed == 1
    pipe = gw.pipeline(transaction=False)
    pipe.hset(journal, mapping={"state": "done"})
    pipe.expire(journal, keys.JOURNAL_TTL_S)
    await pipe.execute()
    assert await gw.hlen(keys.GATEWAY_OPEN_ORDERS) == 2
    await gw.hdel(keys.GATEWAY_OPEN_ORDERS, "77")
    await gw.delete(keys.GATEWAY_OPEN_ORDERS)
    await gw.set(keys.AUTH_WS_TOKEN, "fresh-token", px=60_000)  # mints the feed's token: write only
    await bus.publish(ACCT, gap("reconcile"))
    await bus.publish(keys.ORDERS_EVENTS, gap("fill"))
    await bus.dead_letter("venue:sendTx", "0xhash", {"d": "x"}, "no answer")
    await gw.set(keys.heartbeat("gateway"), "1", px=keys.HEARTBEAT_TTL_MS)
    assert await release(keys=[keys.GATEWAY_LEASE], args=[token]) == 1
    await refused(gw.get(keys.AUTH_WS_TOKEN))
    await refused(gw.set(keys.RISK_KILL, "x"))
    await refused(gw.delete(keys.RISK_KILL))
    await refused(gw.eval("return redis.call('DEL', KEYS[1])", 1, keys.RISK_KILL))   # a Lua key is not a write right
    await refused(gw.eval("return redis.call('SET', KEYS[1], 'x')", 1, keys.RISK_STATE))
    await refused(gw.xadd(keys.ORDERS_APPROVED, encode(gap())))
    await refused(gw.xadd(keys.ORDERS_INTENTS, encode(gap())))
    await refused(gw.xadd(BOOK, encode(gap())))
    await refused(gw.set(keys.heartbeat("maker"), "1"))
    assert await users["testadmin"].get(keys.RISK_KILL) == b"manual"


# --- the token ------------------------------------------------------------------------------------------
async def test_nobody_but_the_feed_reads_the_token(users: Users, csrv: AclRedis) -> None:
    await seed(users["testadmin"])
    op, cadmin = csrv.client(acl.OPERATOR), csrv.admin()
    await seed(cadmin)
    await cadmin.aclose()
    try:
        for r in (users["maker"], users["hedger"], users["guard"], users["gateway"], users[None], op):
            await refused(r.get(keys.AUTH_WS_TOKEN))
            await refused(r.execute_command("GETRANGE", keys.AUTH_WS_TOKEN, 0, -1))
        for r in (users[None], op):   # the operator reads with +@read: none of it reaches auth:*
            for cmd in (("DUMP",), ("STRLEN",), ("OBJECT", "ENCODING"), ("LCS",), ("MEMORY", "USAGE")):
                argv = [cmd[0], *cmd[1:], keys.AUTH_WS_TOKEN] + ([keys.RISK_STATE] if cmd == ("LCS",) else [])
                await refused(r.execute_command(*argv))
            await refused(r.execute_command("SORT_RO", keys.RISK_STATE, "BY", "nosort", "GET", keys.AUTH_WS_TOKEN))
            await refused(r.execute_command("MONITOR"))                       # would show the gateway's SET
            await refused(r.execute_command("SUBSCRIBE", "__keyspace@0__:auth:ws_token"))
            await refused(r.execute_command("CONFIG", "SET", "notify-keyspace-events", "KEA"))
    finally:
        await op.aclose()


# --- operators ------------------------------------------------------------------------------------------
_CONNECTION_FLAGS = {"-p", "-h", "-u", "--user", "--pass", "-a", "-n"}


def documented_commands() -> list[list[str]]:
    """Every ``redis-cli`` command shown in README.md and docs/*.md, without its connection flags."""
    out: list[list[str]] = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for line in path.read_text().splitlines():
            for m in re.finditer(r"redis-cli\b([^`]*)", line):
                try:
                    argv = shlex.split(m[1], comments=True)
                except ValueError:
                    continue
                cmd: list[str] = []
                skip = False
                for a in argv:
                    if skip:
                        skip = False
                    elif a in _CONNECTION_FLAGS:
                        skip = True
                    elif not (a.startswith("--") and not cmd):   # --no-auth-warning, --raw
                        cmd.append(a)
                if cmd and cmd[0][0].isalpha() and cmd[0].upper() == cmd[0] and cmd not in out:
                    out.append(cmd)
    return out


INTENT = ('{"intent_id":"operator-1","source":"operator","action":"cancel_all","market_id":2,'
          '"created_ms":1700000000000}')
OPERATOR_COMMANDS = [
    ["PING"], ["INFO", "persistence"], ["DBSIZE"], ["KEYS", "*"], ["SCAN", "0", "MATCH", "svc:*", "COUNT", "100"],
    ["XRANGE", "orders:events", "-", "+", "COUNT", "5"], ["XREVRANGE", "orders:events", "+", "-", "COUNT", "5"],
    ["XRANGE", ACCT, "-", "+", "COUNT", "5"], ["XRANGE", "dlq:maker", "-", "+"], ["XRANGE", "risk:events", "-", "+"],
    ["XRANGE", "orders:approved", "-", "+", "COUNT", "5"], ["XRANGE", BOOK, "-", "+", "COUNT", "1"],
    ["XLEN", "orders:intents"], ["XINFO", "STREAM", "orders:intents"], ["XINFO", "GROUPS", "orders:intents"],
    ["XINFO", "CONSUMERS", "orders:intents", "guard"], ["XPENDING", "orders:intents", "guard"],
    ["XPENDING", "orders:approved", "gateway", "-", "+", "10"], ["GET", "risk:state"], ["GET", "book:2"],
    ["HGETALL", "gw:open"], ["HGETALL", "gw:intent:maker-1"], ["GET", "gw:lease"], ["GET", "gw:epoch"],
    ["TTL", "svc:maker:heartbeat"], ["PTTL", "svc:gateway:heartbeat"], ["TYPE", "orders:events"],
    ["SET", "risk:kill", "manual"], ["GET", "risk:kill"], ["TTL", "risk:kill"], ["DEL", "risk:kill"],
    ["SET", "risk:reduce", "manual"], ["DEL", "risk:reduce"], ["SET", "risk:resume", "1"], ["DEL", "risk:resume"],
    ["SET", "gw:reconcile_request", "operator"],
    ["XADD", "orders:intents", "*", "type", "intent", "v", "1", "d", INTENT],
    ["CONFIG", "GET", "appendonly"], ["ACL", "WHOAMI"], ["ACL", "LOG"],
]
OPERATOR_REFUSED = [
    ["XADD", "orders:approved", "*", "type", "intent", "v", "1", "d", INTENT], ["GET", "auth:ws_token"],
    ["SET", "auth:ws_token", "x"], ["SET", "risk:state", "ACTIVE"], ["XADD", "risk:events", "*", "a", "b"],
    ["DEL", "orders:approved"], ["XTRIM", "orders:events", "MAXLEN", "0"], ["XGROUP", "DESTROY", "orders:approved", "gateway"],
    ["XACK", "orders:approved", "gateway", "0-1"], ["XREADGROUP", "GROUP", "gateway", "op", "STREAMS", "orders:approved", ">"],
    ["SET", "gw:lease", "x"], ["DEL", "gw:open"], ["XADD", BOOK, "*", "a", "b"], ["SET", "svc:maker:heartbeat", "1"],
    ["FLUSHALL"], ["CONFIG", "SET", "appendonly", "no"], ["ACL", "LIST"], ["MONITOR"], ["SHUTDOWN"],
]


def _error(done: subprocess.CompletedProcess[str]) -> str | None:
    out = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or re.search(r"^(\(error\) )?(ERR|NOPERM|NOAUTH|WRONGPASS|WRONGTYPE)\b", out, re.M):
        return out or f"exit {done.returncode}"
    return None


def test_the_docs_show_operator_commands() -> None:
    cmds = documented_commands()   # the parser finds them: the kill switch, an inspection, a hand-made intent
    assert any(c[:2] == ["SET", "risk:kill"] for c in cmds) and any(c[0] == "DEL" and "risk:kill" in c for c in cmds)
    assert ["XRANGE", "orders:events", "-", "+", "COUNT", "5"] in cmds
    assert any(c[:2] == ["XADD", "orders:intents"] for c in cmds)


@pytest.mark.parametrize("layout", acl.LAYOUTS)
async def test_every_operator_command_works_and_nothing_more(layout: acl.Layout, srv: AclRedis, csrv: AclRedis) -> None:
    """Local: plain ``redis-cli -p 6399``; compose/Railway: ``--user operator`` with REDISCLI_AUTH."""
    server, user = (srv, None) if layout == "local" else (csrv, acl.OPERATOR)
    admin = server.admin()
    try:
        await seed(admin)
        await admin.xgroup_create(keys.ORDERS_INTENTS, keys.GROUP_GUARD, id="0")
        await admin.xgroup_create(keys.ORDERS_APPROVED, keys.GROUP_GATEWAY, id="0", mkstream=True)
        await admin.xadd(keys.ORDERS_APPROVED, encode(gap()))
    finally:
        await admin.aclose()
    problems = {}
    for cmd in documented_commands() + OPERATOR_COMMANDS:
        err = _error(server.cli(user, *cmd))
        if err:
            problems[" ".join(cmd)] = err
    assert problems == {}
    for cmd in OPERATOR_REFUSED:
        out = server.cli(user, *cmd)
        assert "NOPERM" in out.stdout + out.stderr, (cmd, out)
    assert server.cli(user, "ACL", "WHOAMI").stdout.strip() == ("default" if user is None else acl.OPERATOR)


async def test_compose_default_user_is_off_and_the_healthcheck_only_pings(csrv: AclRedis) -> None:
    for user in (None, "default"):
        r = csrv.client(user)
        try:
            with pytest.raises((AuthenticationError, ResponseError)):
                await r.get(keys.RISK_KILL)
        finally:
            await r.aclose()
    assert "NOAUTH" in (csrv.cli(None, "GET", "risk:kill").stdout + csrv.cli(None, "GET", "risk:kill").stderr)
    hc = Redis.from_url(acl.redis_url(acl.HEALTHCHECK, "anything", "127.0.0.1", csrv.port))
    try:
        assert await hc.ping()
        await refused(hc.get(keys.RISK_KILL))
        await refused(hc.execute_command("INFO"))
    finally:
        await hc.aclose()
    wrong = Redis.from_url(acl.redis_url("maker", "wrong", "127.0.0.1", csrv.port))
    try:
        with pytest.raises(AuthenticationError):
            await wrong.ping()
    finally:
        await wrong.aclose()


# --- the local run: core.main's wiring -------------------------------------------------------------------
def _offset() -> int:
    for _ in range(100):
        port = free_port()
        off = port - 6399
        if 0 < off and 8700 + off < 65000:
            return off
    raise RuntimeError("no usable port offset")


def test_core_main_gives_each_service_its_own_user_and_keeps_passwords_private(tmp_path: Path) -> None:
    off = _offset()
    settings = load_settings(None, env={})
    given = acl.new_password()
    env = {"PATH": "/usr/bin:/bin", acl.password_var("maker"): given, acl.password_var("feed"): "",
           "REDIS_URL": "redis://127.0.0.1:1/0"}
    args = argparse.Namespace(port_offset=off, no_redis=False, no_venue=True, settings=settings, config=None, seed=None,
                              model=None, venue_admin=False)
    data = REPO / "var" / f"redis-{6399 + off}"
    try:
        children = {c.name: c for c in build_children(args, env)}
        assert stat.S_IMODE(data.stat().st_mode) == 0o700           # the AOF holds the WS token
        aclfile = data / "users.acl"
        assert stat.S_IMODE(aclfile.stat().st_mode) == 0o600
        redis_argv = children["redis"].argv
        assert redis_argv[redis_argv.index("--aclfile") + 1] == str(aclfile)
        assert redis_argv[redis_argv.index("--acl-pubsub-default") + 1] == "resetchannels"
        assert "REDIS_URL" not in children["redis"].env
        running = [s for s in acl.SERVICES if s in children]                  # the notifier runs in compose only
        assert running == [s for s in acl.SERVICES if s != "notifier"]
        urls = {name: children[name].env["REDIS_URL"] for name in running}
        assert urls["maker"].startswith(f"redis://maker:{given}@")            # the env file's password is used
        passwords = {name: url.split("@")[0].split(":")[-1] for name, url in urls.items()}
        assert len(set(passwords.values())) == len(running)
        for name, url in urls.items():
            assert url.startswith(f"redis://{name}:") and url.endswith(f"@127.0.0.1:{6399 + off}/0"), name
        for c in children.values():
            assert not set(c.env) & set(acl.PASSWORD_VARS), c.name
            env_text = " ".join(c.env.values())
            for name, pw in passwords.items():                                 # only its own password, nobody else's
                assert (pw in env_text) == (name == c.name), (c.name, name)
                assert pw not in " ".join(c.argv)
        proc = subprocess.Popen(redis_argv, env=children["redis"].env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(6399 + off)
            for name, url in urls.items():   # each service's own URL authenticates as that service
                done = subprocess.run(["redis-cli", "-u", url, "--no-auth-warning", "SET", keys.heartbeat(name), "1"],
                                      capture_output=True, text=True, timeout=10)
                assert done.stdout.strip() == "OK", done
            plain = subprocess.run(["redis-cli", "-p", str(6399 + off), "XADD", "orders:approved", "*", "a", "b"],
                                   capture_output=True, text=True, timeout=10)
            assert "NOPERM" in plain.stdout + plain.stderr
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        import shutil
        shutil.rmtree(data, ignore_errors=True)
    assert set(acl.PASSWORD_VARS) <= set(SECRET_VARS)
    assert acl.password_var("gateway") not in child_env({acl.password_var("gateway"): "x"}, "gateway")


def test_redis_urls_are_redacted_in_logs() -> None:
    url = acl.redis_url("maker", acl.new_password(), "127.0.0.1", 6399)
    assert logs.redact(f"connecting to {url}") == "connecting to redis://maker:***@127.0.0.1:6399/0"
    password = acl.new_password()
    logs.register_url_secret(acl.redis_url("guard", password, "redis", 6379))
    assert password not in logs.redact(f"AUTH guard {password}")


# --- scripts/redis_acl.py --------------------------------------------------------------------------------
def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "redis_acl.py"), *args], capture_output=True, text=True,
                          timeout=30, env=env or {"PATH": "/usr/bin:/bin"}, cwd=REPO)


def test_compose_env_creates_private_files_once_and_the_acl_from_them(tmp_path: Path) -> None:
    done = _script("compose-env", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    main = tmp_path / ".env.redis"
    from core.localenv import read_env_file
    first = read_env_file(main)
    assert set(first) == set(acl.PASSWORD_VARS)
    for s in acl.SERVICES:
        f = tmp_path / f".env.redis.{s}"
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        only = read_env_file(f)
        assert only == {"REDIS_URL": acl.redis_url(s, first[acl.password_var(s)], "redis", 6379)}
    assert stat.S_IMODE(main.stat().st_mode) == 0o600
    for pw in first.values():
        assert pw not in done.stdout + done.stderr
    assert _script("compose-env", "--dir", str(tmp_path)).returncode == 0
    assert read_env_file(main) == first                                  # kept, never rotated by accident
    out = tmp_path / "acl" / "users.acl"
    done = _script("acl", "--layout", "compose", "--env-file", str(main), "--out", str(out), "--mode", "0644")
    assert done.returncode == 0, done.stderr
    assert out.read_text() == acl.acl_text(acl.passwords_from(first), "compose")
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    printed = _script("acl", "--layout", "local", env={"PATH": "/usr/bin:/bin", **first})
    assert printed.stdout == acl.acl_text(acl.passwords_from(first), "local")
    missing = _script("acl")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1 and "make compose-env" in missing.stderr
