"""The gateway's I/O shell: streams in, signed batches out. All decisions are in ``core``.

Loops sharing one ``GatewayCore`` (asyncio is single-threaded, so each core call is atomic):
- intake: approved intents (with their journal records, read in one round trip per read) and our
  account stream, through the consumer group ``gateway``;
- sender: hands each free lane its next batch; a batch is signed in the signing thread, claimed
  in Redis by one Lua call (lease check, kill flag, journal records, ``gw:open``), then sent with
  ``sendTx`` (one tx) or ``sendTxBatch``;
- ticker (100 ms): one pipelined round trip reads ``risk:kill`` (a failed read fails closed), the
  maker's and feed's heartbeats and a reconcile request, and renews the lease; then the core's
  timers (lanes in doubt, reconcile, dead-man's switch, token).

A gateway that finds its lease taken (a deploy overlap, a long pause) exits at once: it is fenced
and must not send; the supervisor restarts it as a standby.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, NoReturn

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError

from shared import keys, logs
from shared.bus import Entry, GroupConsumer
from shared.clock import now_ms
from shared.config import Settings
from shared.degraded import DegradedWatch
from shared.risk_watch import RiskFollower
from shared.runtime import REDIS_ERRORS, Runtime
from shared.schemas import AccountGap, Fill, OrderIntent, OrderUpdate, Position, Reconcile, encode

from . import metrics as M
from .core import (
    VERIFY_AFTER_CANCEL_MS, Ack, AccountIn, ActiveOrders, ActiveOrdersFailed, BatchDone, BatchNotSent, CheckActiveOrders,
    CheckLane, ClearOpen, Command, Event, FetchNonce, FetchReconcile, ForgetOpen, GatewayCore, IntentIn, Journal, KillRead,
    LaneChecked, LeaseRead, Limits, MintAuthToken, NonceFailed, NonceFetched, Note, Publish, PublishAccount,
    ReconcileDone, ReconcileFailed, SendBatch, SenderReady, Stopping, TokenFailed, TokenMinted,
)
from .replies import no_answer
from .signer import SignError, Signer, lane_indexes, preload_sdk, signer_problem
from .venue_http import VenueError, VenueHttp

log = logging.getLogger("gateway")

KILL_POLL_S = 0.1
STOP_DEADLINE_S = 10.0
READ_TOKEN_TTL_S = 600

# KEYS: lease, kill, gw:open, risk:state. ARGV: lease token, places ('0' none, '1' some may add to the
# position, '2' all only reduce it), n, then per tx: journal key, n fields, coi, open record ('' = none),
# field/value pairs. Refuses the whole batch (writing nothing) when the lease is not ours, when it places
# or modifies and the kill flag is set, the trading state is missing or HALTED, or REDUCING and the
# batch may add; or when another epoch's journal record exists (this epoch's own record is a retry the
# core decided: the venue refused the last try).
_CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'fenced', redis.call('GET', KEYS[1]) or ''} end
if ARGV[2] ~= '0' then
  local kill = redis.call('GET', KEYS[2])
  if kill then return {'killed', kill} end
  local st = redis.call('GET', KEYS[4])
  if st == 'REDUCING' and ARGV[2] == '1' then return {'reducing', 'risk:state REDUCING: it may add'} end
  if st ~= 'ACTIVE' and st ~= 'REDUCING' then return {'killed', 'risk:state ' .. (st or 'missing')} end
end
local n = tonumber(ARGV[3])
local i = 4
for k = 1, n do
  local epoch = ARGV[i] ~= '' and redis.call('HGET', ARGV[i], 'epoch')
  if epoch and epoch ~= ARGV[1] then return {'taken', ARGV[i]} end
  i = i + 4 + tonumber(ARGV[i + 1]) * 2
end
i = 4
for k = 1, n do
  local nf = tonumber(ARGV[i + 1])
  if ARGV[i] ~= '' then
    local args = {}
    for f = 0, nf * 2 - 1 do args[#args + 1] = ARGV[i + 4 + f] end
    redis.call('HSET', ARGV[i], unpack(args))
    redis.call('EXPIRE', ARGV[i], tonumber(ARGV[#ARGV]))
  end
  if ARGV[i + 3] ~= '' then redis.call('HSET', KEYS[3], ARGV[i + 2], ARGV[i + 3]) end
  i = i + 4 + nf * 2
end
return {'ok', ''}
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return -1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Fenced(RuntimeError):
    """Another gateway holds the lease: this one must stop sending at once."""


def _age(now: float, ms: int | None) -> float | None:
    return None if ms is None else round(now - ms / 1000, 3)


def _s(x: bytes | str | None) -> str | None:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else x


def limits_from(settings: Settings) -> Limits:
    g = settings.gateway
    return Limits(order_expiry_ms=g.order_expiry_s * 1000, auth_token_ttl_s=settings.feed.auth_token_ttl_s,
                  reconcile_every_ms=int(g.reconcile_s * 1000), dead_man_ms=g.dead_man_s * 1000,
                  dead_man_rearm_ms=g.dead_man_rearm_s * 1000, heartbeat_timeout_ms=int(g.heartbeat_timeout_s * 1000),
                  unknown_wait_ms=int(g.unknown_wait_s * 1000), cancel_on_start=g.cancel_on_start)


class Gateway:
    name = "gateway"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spec = settings.market_spec
        self.problem = signer_problem(settings)
        self.instance = os.environ.get("GATEWAY_INSTANCE") or "gateway-1"
        self.core: GatewayCore | None = None
        self.signer: Signer | None = None
        self.venue: VenueHttp | None = None
        self.rt: Runtime | None = None
        self.consumer: GroupConsumer | None = None
        self.lease_token = ""
        self.lease_ttl_ms = int(settings.gateway.lease_ttl_s * 1000)
        self._wake = asyncio.Event()
        self._risk_changed = asyncio.Event()   # set by the risk:events tail: poll now
        self._risk: RiskFollower | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._kill_readable = True
        self._last_latency_s: float | None = None
        self._token: tuple[str, int] | None = None   # (token, deadline_s): kept in memory only
        self._token_minted_at: float | None = None
        self._fenced: str | None = None
        self._scripts: dict[str, Any] = {}
        self.degraded = DegradedWatch("gateway")

    # --- Service protocol --------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        env = self.settings.env
        if self.problem is None:
            try:
                await asyncio.to_thread(preload_sdk)
                self.signer = Signer(self.settings)   # inside the running loop, as the SDK requires
                assert env.account_index is not None
                self.venue = VenueHttp(env.base_url, env.account_index, env.api_key_index or 0)
            except SignError as e:
                self.problem = str(e)
        if self.problem is not None:
            log.error("gateway cannot sign (%s): staying up, unhealthy, sending nothing", self.problem)
        self.core = GatewayCore(limits_from(self.settings), lane_indexes(self.settings), self.problem)
        for name, body in (("claim", _CLAIM), ("release", _RELEASE)):
            self._scripts[name] = rt.redis.register_script(body)
        streams = [keys.ORDERS_APPROVED] + ([keys.acct(env.account_index)] if env.account_index is not None else [])
        self.consumer = GroupConsumer(rt.bus, streams, keys.GROUP_GATEWAY, self.instance, block_ms=200)
        await self.consumer.ensure_groups()
        await self._acquire_lease(rt)
        await self.consumer.claim_idle()  # a dead instance's entries join our pending list; read() returns them once
        await self._poll()
        log.info("gateway %s started: account %s, lanes %s, lease %s, kill=%s", self.instance, env.account_index,
                 [lane.key_index for lane in self.core.lanes], self.lease_token, self.core.kill)

    async def _acquire_lease(self, rt: Runtime) -> None:
        """Wait for the singleton lease (a dead holder's expires within ``lease_ttl_s``); take a new epoch."""
        assert self.core is not None
        waited = False
        while not rt.stopping.is_set():
            epoch = await rt.redis.incr(keys.GATEWAY_EPOCH)
            token = f"{self.instance}:{epoch}"
            if await rt.redis.set(keys.GATEWAY_LEASE, token, nx=True, px=self.lease_ttl_ms):
                self.lease_token = token
                await self._apply(LeaseRead(True, token))
                if waited:
                    log.info("lease acquired: %s", token)
                return
            holder = _s(await rt.redis.get(keys.GATEWAY_LEASE)) or ""
            if not waited:
                log.warning("lease held by %s: standing by (sending nothing) until it expires", holder)
                waited = True
            await self._apply(LeaseRead(False, holder))
            await rt.sleep(self.lease_ttl_ms / 3000)

    async def run(self, rt: Runtime) -> None:
        tasks = [asyncio.create_task(rt.loop(self._intake_step), name="intake"),
                 asyncio.create_task(self._sender_loop(rt), name="sender"),
                 asyncio.create_task(self._ticker_loop(rt), name="ticker"),
                 asyncio.create_task(rt.loop(lambda: self._risk_step(rt)), name="risk")]
        stop = asyncio.create_task(rt.stopping.wait())
        done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stop and t.exception() is not None]
        rt.stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if failed:
            raise failed[0].exception()  # type: ignore[misc]

    async def stop(self, rt: Runtime) -> None:
        """Refuse places, cancel every order of the account, disarm the dead-man's switch, release the lease."""
        core = self.core
        if core is None or self._fenced is not None:
            return
        for t in list(self._background):   # a batch interrupted mid-send: its outcome is unknown
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for lane in core.lanes:
            lane.fetching = False   # a nonce fetch cancelled above never answered: the lane may fetch again
            if lane.in_flight is not None:
                await self._apply(BatchDone(lane.in_flight, no_answer("interrupted by shutdown"), (), 0))
        await self._apply(Stopping())
        deadline = time.monotonic() + STOP_DEADLINE_S
        await self._drain(deadline)
        if core.signer_ready and core.lease:
            if not core.idle:
                log.error("stop: cancel-all not accepted within %.0fs", STOP_DEADLINE_S)
            for attempt in range(3):   # verify; orders still listed make the core cancel again
                if attempt:
                    await asyncio.sleep(VERIFY_AFTER_CANCEL_MS / 1000)
                n = await self._active_count()
                if n == 0:
                    log.info("stop: cancel-all done, the venue lists no open order")
                    break
                if n is not None:
                    await self._apply(ActiveOrders(n))
                    await self._drain(deadline)
            else:
                log.error("stop: could not confirm that the venue lists no open order")
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        try:
            await self._scripts["release"](keys=[keys.GATEWAY_LEASE], args=[self.lease_token])
        except REDIS_ERRORS:
            log.warning("stop: could not release the lease; it expires in %d ms", self.lease_ttl_ms)
        if self.signer is not None:
            await self.signer.close()
        if self.venue is not None:
            await self.venue.close()

    async def _drain(self, deadline: float) -> None:
        assert self.core is not None
        while not self.core.idle and time.monotonic() < deadline:
            await self._pump()
            await self._run(self.core.on_timer(now_ms()))
            while self._background and not self.core.idle and time.monotonic() < deadline:
                await asyncio.wait(list(self._background), timeout=0.05)
                await self._pump()
            if not self.core.idle:
                await asyncio.sleep(0.05)

    def ready(self) -> bool:
        c = self.core
        return c is not None and c.signer_ready and c.reconciled and c.lease

    def problems(self, now: float) -> dict[str, str]:
        """Why the gateway cannot do its whole job now, by reason code (empty: it can)."""
        core = self.core
        assert core is not None
        out: dict[str, str] = {}
        if not core.lease:
            out["standby"] = f"standby: lease held by {core.lease_holder or 'nobody'}"
        for d in core.in_doubt:
            out["nonce_in_doubt"] = f"nonce {d.first} in doubt for {round(now - d.since_ms / 1000, 1)} s"
        rec_age = _age(now, core.stats.last_reconcile_ms)
        if core.reconciled and rec_age is not None and rec_age > 3 * core.limits.reconcile_every_ms / 1000:
            out["reconcile_stale"] = f"last reconcile {rec_age:.0f} s ago"
        if core.heartbeat_lost:   # maker places are refused until it is back (GatewayCore.place_refusal)
            out["heartbeat_lost"] = f"{', '.join(sorted(core.heartbeat_lost))} heartbeat lost: maker quotes refused"
        return out

    def health(self, now: float) -> tuple[bool, dict[str, Any]]:
        core = self.core
        if core is None:
            return False, {"signer_ready": False, "signer_problem": self.problem, "started": False}
        s = core.stats
        kill_age = _age(now, s.last_kill_read_ms)
        reasons = self.problems(now)
        self.degraded.observe(reasons)
        rec_age = _age(now, s.last_reconcile_ms)
        trading = ({"state": "HALTED", "reason": core.kill_reason or "kill flag unreadable"} if core.kill != "clear"
                   else {"state": "REDUCING", "reason": "risk:state REDUCING"} if core.reducing
                   else {"state": "ACTIVE", "reason": ""})
        calm = "ok" if trading["state"] == "ACTIVE" else trading["state"].lower()
        detail: dict[str, Any] = {
            "state": "degraded" if reasons else calm,
            "reason": "; ".join(reasons.values()) or trading["reason"],
            "trading": trading,
            "instance": self.instance,
            "lease": {"held": core.lease, "token": self.lease_token if core.lease else "", "holder": core.lease_holder},
            "signer_ready": core.signer_ready,
            "signer_problem": core.signer_problem,
            "reconciled": core.reconciled,
            "lanes": [{"key": lane.key_index, "nonce": lane.nonce, "in_flight": len(lane.in_flight.txs) if lane.in_flight else 0,
                       "in_doubt": None if lane.doubt is None else lane.doubt.nonces} for lane in core.lanes],
            "kill": core.kill,
            "kill_reason": core.kill_reason,
            "stopping": core.stopping,
            "acks": s.acks,
            "rejects": {str(code): n for code, n in sorted(s.rejects.items())},
            "stale": s.stale,
            "killed": s.killed,
            "not_sent": s.not_sent,
            "unknown": s.unknown,
            "resolved": dict(s.resolved),
            "replayed": s.replayed,
            "invalid": s.invalid,
            "fills": s.fills,
            "canceled": s.canceled,
            "cancel_alls": s.cancel_alls,
            "batches": s.batches,
            "batch_txs": s.batch_txs,
            "dropped_cancels": s.dropped_cancels,
            "queue_full": s.queue_full,
            "rate_limited": s.rate_limited,
            "dead_man_arms": s.dead_man_arms,
            "heartbeat_cancels": s.heartbeat_cancels,
            "volume_quota_remaining": s.volume_quota_remaining,
            "heartbeat_lost": sorted(core.heartbeat_lost),
            "nonce_resyncs": s.nonce_resyncs,
            "reconciles": s.reconciles,
            "reconcile_failures": s.reconcile_failures,
            "last_reconcile_age_s": rec_age,
            "dead_man_armed_for_s": None if s.dead_man_armed_until_ms is None
            else round(s.dead_man_armed_until_ms / 1000 - now, 1),
            "last_send_latency_ms": None if self._last_latency_s is None else round(self._last_latency_s * 1000, 3),
            "open_orders_tracked": len(core.live),
            # the venue's count when last asked (a reconcile, a kill check), with its age: not a live count
            "venue_open_orders": s.venue_open_orders,
            "venue_open_orders_age_s": _age(now, s.venue_open_orders_ms),
            "ledger": core.ledger.summary(),
            "queued_txs": len(core.outbox),
            "last_intent_age_s": _age(now, s.last_intent_ms),
            "last_account_event_age_s": _age(now, s.last_account_ms),
            "last_send_age_s": _age(now, s.last_send_ms),
            "last_kill_read_age_s": kill_age,
            "auth_token_age_s": None if self._token_minted_at is None else round(now - self._token_minted_at, 1),
        }
        kill_fresh = kill_age is not None and kill_age < 2.0
        return core.signer_ready and kill_fresh, detail

    # --- loops ---------------------------------------------------------------------------------------
    async def _intake_step(self) -> None:
        assert self.consumer is not None and self.rt is not None
        entries = await self.consumer.read()
        journals: dict[str, dict[str, str]] = {}
        ids = [e.msg.intent_id for e in entries if e.stream == keys.ORDERS_APPROVED and isinstance(e.msg, OrderIntent)]
        if ids:   # every intent's journal record, in one round trip
            try:
                pipe = self.rt.redis.pipeline(transaction=False)
                for i in ids:
                    pipe.hgetall(keys.gateway_journal(i))
                for i, rec in zip(ids, await pipe.execute()):
                    if rec:
                        journals[i] = {_s(k) or "": _s(v) or "" for k, v in rec.items()}
            except REDIS_ERRORS:
                self.consumer.rewind()
                raise
        for e in entries:
            await self._on_entry(e, journals)

    async def _on_entry(self, e: Entry, journals: dict[str, dict[str, str]]) -> None:
        assert self.consumer is not None
        if e.stream == keys.ORDERS_APPROVED:
            if isinstance(e.msg, OrderIntent):
                if not await self._apply(IntentIn(e.msg, e.id, journals.get(e.msg.intent_id))):
                    self._retry_later(e)  # the core dedupes intent ids and the journal does across restarts
            else:
                await self._refuse_entry(e, f"expected an intent, got {e.msg.type!r}")
            return
        if isinstance(e.msg, (OrderUpdate, Fill, Position, AccountGap, Reconcile)):
            if not await self._apply(AccountIn(e.msg)):
                self._retry_later(e)  # its fill/canceled event was not published: do not ack it
            await self.consumer.ack(e.stream, e.id)
        else:
            await self._refuse_entry(e, f"expected an account message, got {e.msg.type!r}")

    def _retry_later(self, e: Entry) -> NoReturn:
        """Handling hit a Redis error: leave the entry pending, re-read pending entries, back off."""
        assert self.consumer is not None
        self.consumer.rewind()
        raise RedisConnectionError(f"could not publish the outcome of {e.stream} {e.id}")

    async def _refuse_entry(self, e: Entry, reason: str) -> None:
        assert self.rt is not None and self.consumer is not None
        M.MALFORMED.labels(e.stream).inc()
        await self.rt.bus.dead_letter(e.stream, e.id, encode(e.msg), reason)
        await self.consumer.ack(e.stream, e.id)

    async def _sender_loop(self, rt: Runtime) -> None:
        while not rt.stopping.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=0.05)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self._pump()
            if self._fenced is not None:
                raise Fenced(self._fenced)

    async def _pump(self) -> None:
        """Give every free lane its next batch (each batch runs as its own task)."""
        assert self.core is not None
        await self._run(self.core.handle(SenderReady(), now_ms()))

    async def _ticker_loop(self, rt: Runtime) -> None:
        assert self.core is not None
        while not rt.stopping.is_set():
            await self._poll()
            if self._fenced is not None:
                raise Fenced(self._fenced)
            await self._run(self.core.on_timer(now_ms()))
            M.KILL_ACTIVE.set(0 if self.core.place_refusal() is None else 1)
            M.OPEN_TRACKED.set(len(self.core.live))
            M.IN_DOUBT.set(sum(len(d.nonces) for d in self.core.in_doubt))
            if self.core.stats.volume_quota_remaining is not None:
                M.VOLUME_QUOTA.set(self.core.stats.volume_quota_remaining)
            self.degraded.observe(self.problems(time.time()))
            try:   # every 100 ms, or at once when the guard publishes a new trading state
                await asyncio.wait_for(self._risk_changed.wait(), timeout=KILL_POLL_S)
            except asyncio.TimeoutError:
                pass
            self._risk_changed.clear()

    async def _risk_step(self, rt: Runtime) -> None:
        """Tail ``risk:events``: a state change wakes the ticker, so the gateway follows the guard as soon as
        the producers do (the poll, not the event, stays the truth it acts on)."""
        if self._risk is None:
            self._risk = RiskFollower(rt.bus, block_ms=1000)
            await self._risk.start(now_ms())
        if await self._risk.step(now_ms()):
            self._risk_changed.set()

    async def _poll(self) -> None:
        """Kill flag, heartbeats, reconcile request and lease renewal in one round trip."""
        assert self.rt is not None and self.core is not None
        watch = self.core.limits.watch
        try:
            pipe = self.rt.redis.pipeline(transaction=False)
            pipe.get(keys.RISK_KILL)
            pipe.get(keys.RISK_STATE)
            for name in watch:
                pipe.get(keys.heartbeat(name))
            pipe.getdel(keys.RECONCILE_REQUEST)
            if self.lease_token:
                pipe.eval(_RENEW, 1, keys.GATEWAY_LEASE, self.lease_token, self.lease_ttl_ms)
            res = await asyncio.wait_for(pipe.execute(), timeout=1.0)
            self.rt.redis_ok = True
            beats = tuple((name, int(raw) if raw is not None and str(_s(raw)).isdigit() else None)
                          for name, raw in zip(watch, res[2:2 + len(watch)]))
            event = KillRead(_s(res[0]), heartbeats=beats, state=_s(res[1]))
            asked = _s(res[2 + len(watch)])
            if asked:
                self.core.request_reconcile(f"asked: {asked[:60]}", now_ms())
            if self.lease_token and int(res[-1]) < 0:
                self._fenced = f"lease {self.lease_token} lost (another gateway took it): stopping, sending nothing"
                log.error("%s", self._fenced)
                await self._apply(LeaseRead(False))
                return
        except (*REDIS_ERRORS, asyncio.TimeoutError) as e:
            self.rt.redis_ok = False
            event = KillRead(None, readable=False)
            if self._kill_readable:
                log.warning("kill flag unreadable (%s): refusing places until it can be read", type(e).__name__)
        self._kill_readable = event.readable
        before = self.core.kill
        await self._apply(event)
        after = self.core.kill
        if before != after:
            if after == "set":
                log.warning("kill flag set (%s): refusing places, cancelling every order", self.core.kill_reason)
            elif after == "clear":
                log.info("kill flag clear: places allowed")

    # --- core plumbing --------------------------------------------------------------------------------
    async def _apply(self, event: Event) -> bool:
        """Feed the core one event and carry out its commands; False if a Redis write failed."""
        assert self.core is not None
        ok = await self._run(self.core.handle(event, now_ms()))
        self._wake.set()
        return ok

    async def _run(self, cmds: list[Command]) -> bool:
        """Carry out commands in order; a batch runs as its own task (lanes send side by side)."""
        assert self.rt is not None and self.consumer is not None
        r = self.rt.redis
        ok = True
        acked: str | None = None  # an Ack already done together with the Publish before it
        published = True
        for i, c in enumerate(cmds):
            try:
                if isinstance(c, Publish):
                    published = False
                    self._count(c)
                    nxt = cmds[i + 1] if i + 1 < len(cmds) else None
                    if isinstance(nxt, Ack):  # outcome + XACK atomically, one round trip
                        await self.rt.bus.publish_and_ack(keys.ORDERS_EVENTS, c.event, keys.ORDERS_APPROVED,
                                                          keys.GROUP_GATEWAY, nxt.entry_id)
                        acked = nxt.entry_id
                    else:
                        await self.rt.bus.publish(keys.ORDERS_EVENTS, c.event)
                    published = True
                elif isinstance(c, Ack):
                    if acked == c.entry_id:
                        acked = None
                    elif published:
                        await self.consumer.ack(keys.ORDERS_APPROVED, c.entry_id)
                elif isinstance(c, Journal):
                    pipe = r.pipeline(transaction=False)
                    pipe.hset(keys.gateway_journal(c.intent_id), mapping=c.fields)  # type: ignore[arg-type]
                    pipe.expire(keys.gateway_journal(c.intent_id), keys.JOURNAL_TTL_S)
                    await pipe.execute()
                elif isinstance(c, ForgetOpen):
                    await r.hdel(keys.GATEWAY_OPEN_ORDERS, str(c.client_order_index))  # type: ignore[misc]
                elif isinstance(c, ClearOpen):
                    n = await r.hlen(keys.GATEWAY_OPEN_ORDERS)  # type: ignore[misc]
                    await r.delete(keys.GATEWAY_OPEN_ORDERS)
                    log.info("start-up cancel-all accepted; cleared %d order record(s) of the previous run", n)
                elif isinstance(c, FetchNonce):
                    self._spawn(self._read_nonce(c.lane, check=False))
                elif isinstance(c, SendBatch):
                    self._spawn(self._send_batch(c))
                elif isinstance(c, CheckLane):
                    self._spawn(self._read_nonce(c.lane, check=True))
                elif isinstance(c, FetchReconcile):
                    self._spawn(self._reconcile(c))
                elif isinstance(c, PublishAccount):
                    assert self.settings.env.account_index is not None
                    await self.rt.bus.publish(keys.acct(self.settings.env.account_index), c.msg)
                elif isinstance(c, CheckActiveOrders):
                    self._spawn(self._check_active())
                elif isinstance(c, MintAuthToken):
                    self._spawn(self._mint_token(c.ttl_s))
                elif isinstance(c, Note):
                    log.log(logging.WARNING if c.level == "warning" else logging.INFO, "%s", c.text)
            except REDIS_ERRORS as e:
                self.rt.redis_ok = False
                ok = False
                log.warning("redis unavailable while running %s: %s", type(c).__name__, type(e).__name__)
        return ok

    def _count(self, c: Publish) -> None:
        ev = c.event
        if ev.kind in ("ack", "reject", "not_sent", "unknown", "resolved", "stale", "killed"):
            M.ORDERS.labels(ev.action, ev.kind).inc()
        if ev.kind == "reject":
            M.REJECTS.labels(str(ev.code)).inc()
            log.info("reject %s %s (%s): %d %s", ev.action, ev.intent_id, ev.source, ev.code, ev.message)
        elif ev.kind in ("not_sent", "unknown", "resolved"):
            log.warning("%s %s %s (%s): %s", ev.kind, ev.action, ev.intent_id, ev.source, ev.message)
        elif ev.kind in ("stale", "killed"):
            log.info("%s %s %s: %s", ev.kind, ev.action, ev.intent_id, ev.message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- venue I/O ---------------------------------------------------------------------------------------
    async def _read_nonce(self, lane: int, check: bool) -> None:
        """``nextNonce`` of a lane: a fresh baseline (``NonceFetched``) or evidence for a doubt (``LaneChecked``)."""
        assert self.venue is not None
        try:
            nonce = await self.venue.next_nonce(lane)
        except VenueError as e:
            log.warning("nonce %s for key %d failed (retrying): %s", "check" if check else "fetch", lane, e)
            await self._apply(NonceFailed(lane, str(e)))
            return
        if check:
            await self._apply(LaneChecked(lane, nonce))
            return
        M.NONCE_RESYNCS.inc()
        log.info("nonce of key %d from venue: %d", lane, nonce)
        await self._apply(NonceFetched(lane, nonce))

    async def _claim(self, c: SendBatch, hashes: list[str], expired: list[int]) -> tuple[str, str]:
        """One round trip before the send: lease, kill flag, journal records, ``gw:open``."""
        assert self.rt is not None
        b = c.batch
        places = self.core.places_of(b)
        args: list[str | int] = [self.lease_token, places, len(b.txs)]
        for i, tx in enumerate(b.txs):
            it = tx.intent
            fields: dict[str, str] = {}
            if it is not None:
                fields = {"state": "sending", "intent_id": it.intent_id, "action": it.action,
                          "coi": str(it.client_order_index), "lane": str(b.lane), "nonce": str(b.first_nonce + i),
                          "batch_first": str(b.first_nonce),
                          "tx_hash": hashes[i], "expired_at": str(expired[i]), "epoch": self.lease_token,
                          "ts": str(now_ms())}
            record = ""
            if it is not None and tx.action == "place":
                record = orjson.dumps({"market": it.market_id, "side": "ask" if it.is_ask else "bid", "price": it.price,
                                       "size": it.size, "intent_id": it.intent_id, "ts": now_ms()}).decode()
            args += [keys.gateway_journal(it.intent_id) if it is not None else "", len(fields),
                     str(tx.order_coi), record]
            for k, v in fields.items():
                args += [k, v]
        args.append(keys.JOURNAL_TTL_S)
        res = await self._scripts["claim"](keys=[keys.GATEWAY_LEASE, keys.RISK_KILL, keys.GATEWAY_OPEN_ORDERS,
                                                 keys.RISK_STATE], args=args)
        return _s(res[0]) or "", _s(res[1]) or ""

    async def _send_batch(self, c: SendBatch) -> None:
        assert self.signer is not None and self.venue is not None and self.rt is not None
        b = c.batch
        t0 = time.perf_counter()
        try:
            signed = await self.signer.sign_batch(c.requests, b.first_nonce, b.lane)
        except SignError as e:
            log.error("signer refused a batch of %d: %s", len(b.txs), e)
            await self._apply(BatchNotSent(b, f"signer: {e}"))
            return
        signed_ns = time.time_ns()
        try:
            verdict, detail = await self._claim(c, [s.tx_hash for s in signed], [s.expired_at_ms for s in signed])
        except REDIS_ERRORS as e:
            self.rt.redis_ok = False
            await self._apply(BatchNotSent(b, f"journal not written ({type(e).__name__})"))
            return
        if verdict in ("fenced", "taken"):   # another gateway holds the lease, or journaled this intent: never both
            self._fenced = (f"lease lost to {detail or 'nobody'} before a send" if verdict == "fenced"
                            else f"{detail} claimed by another gateway epoch") + ": stopping, sending nothing"
            log.error("%s", self._fenced)
            self._wake.set()
            return
        if verdict != "ok":
            await self._apply(BatchNotSent(b, f"{verdict}: {detail}", kill=detail if verdict == "killed" else None))
            return
        if len(signed) == 1:
            result, body = await self.venue.send_tx(signed[0].tx_type, signed[0].tx_info)
        else:
            result, body = await self.venue.send_tx_batch([s.tx_type for s in signed], [s.tx_info for s in signed])
        sent_ns = time.time_ns()
        self._last_latency_s = time.perf_counter() - t0
        M.SUBMIT_LATENCY.observe(self._last_latency_s)
        M.BATCH_SIZE.observe(len(signed))
        if result.rate_limited:
            M.RATE_LIMITED.inc()
            log.warning("batch of %d on key %d refused with 429 (the tier's request budget): %s; backing off, "
                        "then one tx at a time by risk", len(signed), b.lane, result.message)
        if result.malformed:
            M.MALFORMED.labels("sendTx").inc()
            log.warning("unreadable sendTx answer (HTTP %d)", result.http_status)
            try:
                await self.rt.bus.dead_letter("venue:sendTx", signed[0].tx_hash,
                                              {"http_status": str(result.http_status), "body": body[:2000]}, result.message)
            except REDIS_ERRORS:
                pass
        if result.outcome == "ambiguous":
            log.warning("batch of %d on key %d nonce %d: outcome unknown (%s)", len(signed), b.lane, b.first_nonce,
                        result.message)
        elif result.outcome == "not_sent":
            await self._apply(BatchNotSent(b, result.message))
            return
        await self._apply(BatchDone(b, result, tuple(s.tx_hash for s in signed), max(s.expired_at_ms for s in signed),
                                    signed_ns, sent_ns))

    async def _reconcile(self, c: FetchReconcile) -> None:
        assert self.venue is not None
        try:
            snap = await self.venue.reconcile(await self._read_token(), self.spec, c.reason, c.since_ms, now_ms())
        except (VenueError, SignError) as e:
            await self._apply(ReconcileFailed(str(e)))
            return
        log.info("reconcile (%s): %d order(s), %d fill(s), position %s", c.reason, len(snap.orders), len(snap.fills),
                 [p.position for p in snap.positions])
        await self._apply(ReconcileDone(snap))

    async def _read_token(self) -> str:
        """A token for private REST reads: the feed's token while it is fresh, else a short one."""
        assert self.signer is not None
        now_s = int(time.time())
        if self._token is not None and self._token[1] - now_s > 60:
            return self._token[0]
        token = await self.signer.auth_token(READ_TOKEN_TTL_S, now_s)
        logs.register_secret(token)
        self._token = (token, now_s + READ_TOKEN_TTL_S)
        return token

    async def _active_count(self) -> int | None:
        """How many open orders the venue lists for the account (None if it could not be asked)."""
        assert self.venue is not None
        try:
            n = len(await self.venue.active_orders(await self._read_token()))
        except (VenueError, SignError) as e:
            log.warning("open-order check failed: %s", e)
            return None
        if n:
            log.info("venue lists %d open order(s)", n)
        return n

    async def _check_active(self) -> None:
        n = await self._active_count()
        await self._apply(ActiveOrdersFailed("open-order check failed") if n is None else ActiveOrders(n))

    async def _mint_token(self, ttl_s: int) -> None:
        """Mint the feed's WS auth token and publish it in a PX-expiring key (never in a stream or log)."""
        assert self.signer is not None and self.rt is not None
        try:
            now_s = int(time.time())
            token = await self.signer.auth_token(ttl_s, now_s)
            logs.register_secret(token)
            await self.rt.redis.set(keys.AUTH_WS_TOKEN, token, px=ttl_s * 1000)
        except (SignError, *REDIS_ERRORS) as e:
            log.warning("auth token refresh failed: %s", type(e).__name__)
            await self._apply(TokenFailed(type(e).__name__))
            return
        self._token = (token, now_s + ttl_s)
        self._token_minted_at = time.time()
        log.info("auth token refreshed (valid %d s)", ttl_s)
        await self._apply(TokenMinted())
