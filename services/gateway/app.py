"""The gateway's I/O shell: streams in, signed txs out. All decisions are in ``core``.

Three loops share one ``GatewayCore`` (asyncio is single-threaded, so each core call is atomic):
- intake: approved intents and our account stream through the consumer group ``gateway``;
- sender: hands the core's next tx to the signing thread, then to ``POST /api/v1/sendTx``;
- ticker (100 ms): reads ``risk:kill`` (a failed read fails closed) and runs the core's timers.

The bot owns its account: at start the gateway cancels *every* order of the account (orders of a
crashed run included) before it places anything, and on SIGTERM it cancels every order again.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import replace
from typing import Any, NoReturn

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError

from shared import keys, logs
from shared.bus import Entry, GroupConsumer
from shared.clock import now_ms
from shared.config import Settings
from shared.runtime import REDIS_ERRORS, Runtime
from shared.schemas import Fill, OrderIntent, OrderUpdate, Position, encode

from . import metrics as M
from .core import (
    VERIFY_AFTER_CANCEL_MS, Ack, AccountIn, ActiveOrders, ActiveOrdersFailed, CheckActiveOrders, ClearOpen, Command, Event, FetchNonce,
    ForgetOpen, GatewayCore, IntentIn, KillRead, KillSeenAtSend, MintAuthToken, NonceFailed, NonceFetched, Publish, RecordOpen,
    SenderReady, SignAndSend, Stopping, TokenFailed, TokenMinted, TxDone, TxNotSent,
)
from .replies import no_answer
from .signer import SignError, Signer, preload_sdk, signer_problem
from .venue_http import VenueError, VenueHttp

log = logging.getLogger("gateway")

KILL_POLL_S = 0.1
STOP_DEADLINE_S = 10.0
READ_TOKEN_TTL_S = 600


def _age(now: float, ms: int | None) -> float | None:
    return None if ms is None else round(now - ms / 1000, 3)


class Gateway:
    name = "gateway"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.problem = signer_problem(settings)
        self.instance = os.environ.get("GATEWAY_INSTANCE") or "gateway-1"
        self.core: GatewayCore | None = None
        self.signer: Signer | None = None
        self.venue: VenueHttp | None = None
        self.rt: Runtime | None = None
        self.consumer: GroupConsumer | None = None
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._nonce_fetches = 0
        self._nonce_failing = False
        self._kill_readable = True
        self._last_latency_s: float | None = None
        self._token: tuple[str, int] | None = None   # (token, deadline_s): kept in memory only
        self._token_minted_at: float | None = None

    # --- Service protocol --------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        env = self.settings.env
        if self.problem is None:
            try:
                await asyncio.to_thread(preload_sdk)
                self.signer = Signer(self.settings)   # inside the running loop, as the SDK requires
                assert env.account_index is not None and env.api_key_index is not None
                self.venue = VenueHttp(env.base_url, env.account_index, env.api_key_index)
            except SignError as e:
                self.problem = str(e)
        if self.problem is not None:
            log.error("gateway cannot sign (%s): staying up, unhealthy, sending nothing", self.problem)
        self.core = GatewayCore(self.settings.gateway.order_expiry_s * 1000, self.settings.feed.auth_token_ttl_s,
                                self.problem)
        streams = [keys.ORDERS_APPROVED] + ([keys.acct(env.account_index)] if env.account_index is not None else [])
        self.consumer = GroupConsumer(rt.bus, streams, keys.GROUP_GATEWAY, self.instance, block_ms=200)
        await self.consumer.ensure_groups()
        await self.consumer.claim_idle()  # a dead instance's entries join our pending list; read() returns them once
        await self._poll_kill()
        log.info("gateway %s started: account %s key %s, kill=%s%s", self.instance, env.account_index,
                 env.api_key_index, self.core.kill, "; start-up cancel-all queued" if self.core.signer_ready else "")

    async def run(self, rt: Runtime) -> None:
        tasks = [asyncio.create_task(rt.loop(self._intake_step), name="intake"),
                 asyncio.create_task(self._sender_loop(rt), name="sender"),
                 asyncio.create_task(self._ticker_loop(rt), name="ticker")]
        stop = asyncio.create_task(rt.stopping.wait())
        done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stop and t.exception() is not None]
        rt.stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if failed:
            raise failed[0].exception()  # type: ignore[misc]

    async def stop(self, rt: Runtime) -> None:
        """Refuse places, cancel every order of the account, then close the signer."""
        core = self.core
        if core is None:
            return
        if core.in_flight is not None:  # the sender was interrupted mid-send: outcome unknown
            await self._apply(TxDone(core.in_flight, core.nonce or 0, no_answer("interrupted by shutdown"), 0, 0))
        await self._apply(Stopping())
        deadline = time.monotonic() + STOP_DEADLINE_S
        await self._drain(deadline)
        if core.signer_ready:
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
        for t in self._background:
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.signer is not None:
            await self.signer.close()
        if self.venue is not None:
            await self.venue.close()

    async def _drain(self, deadline: float) -> None:
        assert self.core is not None
        while not self.core.idle and time.monotonic() < deadline:
            await self._pump()
            if not self.core.idle:
                await asyncio.sleep(0.05)

    def ready(self) -> bool:
        return self.core is not None and self.core.signer_ready and self.core.reconciled

    def health(self, now: float) -> tuple[bool, dict[str, Any]]:
        core = self.core
        if core is None:
            return False, {"signer_ready": False, "signer_problem": self.problem, "started": False}
        s = core.stats
        kill_age = _age(now, s.last_kill_read_ms)
        detail: dict[str, Any] = {
            "instance": self.instance,
            "signer_ready": core.signer_ready,
            "signer_problem": core.signer_problem,
            "reconciled": core.reconciled,
            "nonce": core.nonce,
            "kill": core.kill,
            "kill_reason": core.kill_reason,
            "stopping": core.stopping,
            "acks": s.acks,
            "rejects": {str(code): n for code, n in sorted(s.rejects.items())},
            "stale": s.stale,
            "killed": s.killed,
            "errors": s.errors,
            "invalid": s.invalid,
            "fills": s.fills,
            "canceled": s.canceled,
            "cancel_alls": s.cancel_alls,
            "nonce_resyncs": s.nonce_resyncs,
            "last_send_latency_ms": None if self._last_latency_s is None else round(self._last_latency_s * 1000, 3),
            "open_orders_tracked": len(core.live),
            "venue_open_orders": s.venue_open_orders,
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
        assert self.consumer is not None
        entries = await self.consumer.read()
        for e in entries:
            await self._on_entry(e)

    async def _on_entry(self, e: Entry) -> None:
        assert self.consumer is not None
        if e.stream == keys.ORDERS_APPROVED:
            if isinstance(e.msg, OrderIntent):
                if not await self._apply(IntentIn(e.msg, e.id)):
                    self._retry_later(e)  # the core dedupes intent ids: a re-read is acked, never re-sent
            else:
                await self._refuse_entry(e, f"expected an intent, got {e.msg.type!r}")
            return
        if isinstance(e.msg, (OrderUpdate, Fill, Position)):
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

    async def _pump(self) -> None:
        """Send queued txs one after the other until the core has nothing ready."""
        assert self.core is not None
        while True:
            cmds = self.core.handle(SenderReady(), now_ms())
            if not cmds:
                return
            await self._run(cmds)
            if not any(isinstance(c, (SignAndSend, FetchNonce)) for c in cmds):
                return

    async def _ticker_loop(self, rt: Runtime) -> None:
        assert self.core is not None
        while not rt.stopping.is_set():
            await self._poll_kill()
            await self._run(self.core.on_timer(now_ms()))
            M.KILL_ACTIVE.set(0 if self.core.place_refusal() is None else 1)
            M.OPEN_TRACKED.set(len(self.core.live))
            await rt.sleep(KILL_POLL_S)

    async def _poll_kill(self) -> None:
        assert self.rt is not None and self.core is not None
        try:
            raw = await asyncio.wait_for(self.rt.redis.get(keys.RISK_KILL), timeout=1.0)
            self.rt.redis_ok = True
            event = KillRead(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
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
        """Carry out commands in order. A place is sent only if its open-order record was written."""
        assert self.rt is not None and self.consumer is not None
        r = self.rt.redis
        not_recorded: str | None = None
        kill_at_send: str | None = None
        ok = True
        published = True
        acked: str | None = None  # an Ack already done together with the Publish before it
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
                elif isinstance(c, RecordOpen):
                    not_recorded, kill_at_send = None, None
                    try:  # record the order and re-read the kill flag in one round trip, just before signing
                        pipe = r.pipeline(transaction=False)
                        pipe.hset(keys.GATEWAY_OPEN_ORDERS, str(c.client_order_index), orjson.dumps(c.record))
                        pipe.get(keys.RISK_KILL)
                        _, raw_kill = await pipe.execute()
                        if raw_kill is not None:
                            kill_at_send = raw_kill.decode("utf-8", "replace") if isinstance(raw_kill, bytes) else raw_kill
                    except REDIS_ERRORS as e:
                        not_recorded = f"open-order record not written ({type(e).__name__})"
                elif isinstance(c, ForgetOpen):
                    await r.hdel(keys.GATEWAY_OPEN_ORDERS, str(c.client_order_index))  # type: ignore[misc]
                elif isinstance(c, ClearOpen):
                    n = await r.hlen(keys.GATEWAY_OPEN_ORDERS)  # type: ignore[misc]
                    await r.delete(keys.GATEWAY_OPEN_ORDERS)
                    log.info("start-up cancel-all accepted; cleared %d order record(s) of the previous run", n)
                elif isinstance(c, FetchNonce):
                    await self._fetch_nonce()
                elif isinstance(c, SignAndSend):
                    if kill_at_send is not None and c.tx.action == "place":
                        await self._apply(KillSeenAtSend(c.tx, kill_at_send))
                    elif not_recorded is not None and c.tx.action == "place":
                        await self._apply(TxNotSent(c.tx, not_recorded))
                    else:
                        await self._sign_and_send(c)
                elif isinstance(c, CheckActiveOrders):
                    self._spawn(self._check_active())
                elif isinstance(c, MintAuthToken):
                    self._spawn(self._mint_token(c.ttl_s))
            except REDIS_ERRORS as e:
                self.rt.redis_ok = False
                ok = False
                log.warning("redis unavailable while running %s: %s", type(c).__name__, type(e).__name__)
        return ok

    def _count(self, c: Publish) -> None:
        ev = c.event
        if ev.kind in ("ack", "reject", "error", "stale", "killed"):
            M.ORDERS.labels(ev.action, ev.kind).inc()
        if ev.kind == "reject":
            M.REJECTS.labels(str(ev.code)).inc()
            log.info("reject %s %s (%s): %d %s", ev.action, ev.intent_id, ev.source, ev.code, ev.message)
        elif ev.kind == "error":
            log.warning("error %s %s (%s): %s", ev.action, ev.intent_id, ev.source, ev.message)
        elif ev.kind in ("stale", "killed"):
            log.info("%s %s %s: %s", ev.kind, ev.action, ev.intent_id, ev.message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- venue I/O ---------------------------------------------------------------------------------------
    async def _fetch_nonce(self) -> None:
        assert self.venue is not None
        try:
            nonce = await self.venue.next_nonce()
        except VenueError as e:
            (log.debug if self._nonce_failing else log.warning)("nonce fetch failed (retrying): %s", e)
            self._nonce_failing = True
            await self._apply(NonceFailed(str(e)))
            return
        self._nonce_failing = False
        if self._nonce_fetches:
            M.NONCE_RESYNCS.inc()
        self._nonce_fetches += 1
        log.info("nonce from venue: %d", nonce)
        await self._apply(NonceFetched(nonce))

    async def _sign_and_send(self, c: SignAndSend) -> None:
        assert self.signer is not None and self.venue is not None and self.rt is not None
        t0 = time.perf_counter()
        try:
            signed = await self.signer.sign(c.request, c.nonce)
        except SignError as e:
            log.error("signer refused %s: %s", c.tx.action, e)
            await self._apply(TxNotSent(c.tx, f"signer: {e}"))
            return
        signed_ns = time.time_ns()
        result, body = await self.venue.send_tx(signed.tx_type, signed.tx_info)
        sent_ns = time.time_ns()
        self._last_latency_s = time.perf_counter() - t0
        M.SUBMIT_LATENCY.observe(self._last_latency_s)
        if result.malformed:
            M.MALFORMED.labels("sendTx").inc()
            log.warning("unreadable sendTx answer (HTTP %d)", result.http_status)
            try:
                await self.rt.bus.dead_letter("venue:sendTx", signed.tx_hash,
                                              {"http_status": str(result.http_status), "body": body[:2000]}, result.message)
            except REDIS_ERRORS:
                pass
        if result.outcome == "ok" and not result.tx_hash:
            result = replace(result, tx_hash=signed.tx_hash)
        if result.outcome == "ambiguous":
            log.warning("%s nonce %d: outcome unknown (%s); nonce will be re-fetched", c.tx.action, c.nonce, result.message)
        elif c.tx.intent is None:
            log.info("cancel-all (%s) nonce %d: %s %d %s", c.tx.reason, c.nonce, result.outcome, result.code, result.message)
        await self._apply(TxDone(c.tx, c.nonce, result, signed_ns, sent_ns))

    async def _read_token(self) -> str:
        """A token for private REST reads: the feed's token while it is fresh, else a short one."""
        assert self.signer is not None
        now_s = int(time.time())
        if self._token is not None and self._token[1] - now_s > 60:
            return self._token[0]
        token = await self.signer.auth_token(READ_TOKEN_TTL_S, now_s)
        logs.register_secret(token)
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
