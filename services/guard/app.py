"""The guard's I/O shell: streams in, verdicts out, around the pure ``GuardCore``.

One consumer (group ``guard``) reads our account stream, ``orders:events`` and
``orders:intents``; per batch the account/events entries update the core first, then
``risk:kill`` is read (GET) and each intent gets a verdict, published before its XACK. An intent
whose verdict could not be published stays in the inbox and is retried with the same verdict,
so a Redis outage never produces a second, different verdict. A second task tails
``md:book:{m}`` for the mid. Malformed entries are dead-lettered to ``dlq:guard`` and acked.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import Counter, Gauge

from shared.metrics import position_lots

from shared import clock, keys, portfolio_metrics
from shared.bus import Entry, GroupConsumer, TailReader
from shared.cli import fail
from shared.config import Settings
from shared.degraded import DegradedWatch
from shared.runtime import REDIS_ERRORS, Runtime
from shared.risk_watch import newest_state, text
from shared.schemas import AccountGap, BookTop, Fill, Msg, OrderEvent, OrderIntent, OrderUpdate, Position, Reconcile, encode
from shared.starvation import Starvation
from shared.tap import tapped

from services.guard.core import (
    Approve,
    ClearResume,
    Command,
    Duplicate,
    GuardCore,
    GuardLimits,
    Heartbeats,
    KillState,
    PublishState,
    Recovered,
    Restored,
    Veto,
)
from services.guard.recovery import id_key, recover
from services.guard.rules import human

log = logging.getLogger("guard")

VERDICTS = Counter("mm_guard_verdicts_total", "Guard verdicts on order intents", ["verdict", "reason"])
TRANSITIONS = Counter("mm_risk_transitions_total", "Trading-state changes", ["from_state", "to_state", "trigger"])
STATE = Gauge("mm_risk_state", "1 for the current trading state", ["state"])
TRIPS = Counter("mm_risk_trigger_trips_total", "Risk trigger trips", ["trigger"])
POSITION = position_lots()
DRAWDOWN = Gauge("mm_risk_drawdown_usd", "Fall of the guard's PnL from its peak (USD), what the drawdown trigger judges")
DRAWDOWN_LIMIT = Gauge("mm_risk_drawdown_limit_usd", "guard.triggers.drawdown.max_usdc (USD)")

MID_MAX_AGE_S = 10.0       # unhealthy when the mid is older than this while intents arrive
KILL_REFRESH_S = 1.0       # re-read the switches and heartbeats at least this often even without intents
ACCOUNT_TYPES = (Position, OrderUpdate, Fill, AccountGap, Reconcile)


def _fields(msg: Msg) -> dict[str, str]:
    return {"type": msg.type, "d": msg.model_dump_json()}  # type: ignore[attr-defined]


class GuardService:
    """``shared.runtime.Service`` for the guard."""

    name = "guard"

    def __init__(self, settings: Settings, consumer: str = "guard-1", block_ms: int = 1000) -> None:
        if settings.env.account_index is None:
            raise ValueError("LIGHTER_ACCOUNT_INDEX is required: the guard tracks our account stream")
        self.settings = settings
        self.spec = settings.market_spec
        self.core = tapped(GuardCore(self.spec, GuardLimits.from_settings(settings)), "guard", settings)
        self.acct_stream = keys.acct(settings.env.account_index)
        self.consumer_name = consumer
        self.block_ms = block_ms
        self._consumer: GroupConsumer | None = None
        self._books: TailReader | None = None
        self._inbox: list[Entry] = []                     # read, not yet fully handled (acked)
        self._decided: dict[str, tuple[str, Msg]] = {}   # entry id -> verdict to publish: judged once, resent unchanged
        self._state_todo: list[PublishState] = []       # state changes not yet written (Redis error): retried first
        self._state_lock = asyncio.Lock()               # two loops may publish: one writer at a time, in order
        self._kill_read_at = 0.0
        self._last_ids: dict[str, tuple[int, int]] = {}
        self._started = False
        self._position_gauge = POSITION.labels(str(self.spec.market_id))
        portfolio_metrics.bind(lambda: (self.core.portfolio, self.core.mid2))
        DRAWDOWN_LIMIT.set(float(settings.guard.triggers.drawdown.max_usdc))
        self.starved = Starvation(int(settings.guard.degraded_after_s * 1000))
        self.degraded = DegradedWatch("guard")

    # --- Service protocol -------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        now = clock.now_ms()
        self._consumer = GroupConsumer(rt.bus, [self.acct_stream, keys.ORDERS_EVENTS, keys.ORDERS_INTENTS],
                                       keys.GROUP_GUARD, self.consumer_name, block_ms=self.block_ms)
        await self._consumer.ensure_groups()
        await self._consumer.claim_idle()  # a dead instance's entries become ours; read() re-reads them from 0
        self._books = TailReader(rt.bus, [keys.md_book(self.spec.market_id)], block_ms=self.block_ms, conflate=True)
        await self._load_book(rt, now)
        window = (self.settings.gateway.order_expiry_s + 60) * 1000
        rec = await recover(rt.redis, self.acct_stream, self.spec.market_id, now, window)
        for at_ms, ev in rec.events:
            self.core.handle(ev, at_ms)  # history: its commands were carried out back then
        self._last_ids = dict(rec.last_ids)
        now = clock.now_ms()
        prev = newest_state(await rt.redis.xrevrange(keys.RISK_EVENTS, count=1))
        if prev is not None and prev.triggers:
            self.core.handle(Restored(dict(prev.triggers)), now)   # latched triggers survive a restart
        await self._read_flags(rt)   # the operator's switches count from the first state on
        await self._execute(rt, self.core.handle(Recovered(rec.known_verdicts), now))
        self._position_gauge.set(self.core.position)
        await rt.redis.set(keys.RECONCILE_REQUEST, "guard start")   # the venue's truth for the rebuilt ledger
        self._started = True
        log.info("guard started: market %d, position %s %s, %d resting, enabled=%s", self.spec.market_id,
                 human(self.core.position, self.spec.size_decimals), self.spec.symbol, len(self.core.ledger.open_orders()),
                 self.core.limits.enabled)

    async def run(self, rt: Runtime) -> None:
        await asyncio.gather(rt.loop(lambda: self._order_step(rt)), rt.loop(lambda: self._book_step(rt)))

    async def stop(self, rt: Runtime) -> None:
        if self._inbox:
            log.warning("stopping with %d entries unhandled; they are re-read at the next start", len(self._inbox))

    def ready(self) -> bool:
        return self._started and self.starved.problem(clock.now_ms()) is None

    def health(self, now: float) -> tuple[bool, dict[str, Any]]:
        c, dec = self.core, self.spec.size_decimals

        def age(ms: int | None) -> float | None:
            return None if ms is None else round(now - ms / 1000, 3)

        ages = {"intent": age(c.last_intent_ms), "book": age(c.last_book_ms),
                "account": age(c.last_account_ms), "fill": age(c.last_fill_ms),
                "kill_read": round(now - self._kill_read_at, 3) if self._kill_read_at else None}
        problems: dict[str, str] = {}
        intents_flowing = ages["intent"] is not None and ages["intent"] <= MID_MAX_AGE_S
        if intents_flowing and (ages["book"] is None or ages["book"] > MID_MAX_AGE_S):
            problems["mid_stale"] = f"mid older than {MID_MAX_AGE_S:g}s while intents arrive"
        starved = self.starved.problem(int(now * 1000))
        if starved:
            problems["orders_refused"] = f"every place vetoed: {starved}"
        self.degraded.observe(problems)
        res = c.ledger.open_orders()
        fly = c.ledger.maybe_open()
        detail = {
            "state": "degraded" if problems else ("ok" if c.state == "ACTIVE" else c.state.lower()),
            "reason": "; ".join(problems.values()) or c.reason,
            "enabled": c.limits.enabled,
            "trading": {"state": c.state, "reason": c.reason},
            "risk": c.risk_view(),
            "kill": {"set": c.kill is not None, "reason": c.kill, "readable": c.kill_known},
            "position": {"lots": c.position, "units": human(c.position, dec), "symbol": self.spec.symbol,
                         "known": c.position_known, "breached": c.breached},
            "mid": c.mid_human,
            "resting": {"bids": sum(not o.is_ask for o in res), "asks": sum(o.is_ask for o in res),
                        "bid_lots": sum(o.remaining for o in res if not o.is_ask),
                        "ask_lots": sum(o.remaining for o in res if o.is_ask)},
            "in_flight": {"bids": sum(not o.is_ask for o in fly), "asks": sum(o.is_ask for o in fly)},
            "ledger": c.ledger.summary(),
            "verdicts": {"approved": dict(c.approved), "vetoed": dict(c.vetoed), "duplicates": c.duplicates},
            "fills": c.fills,
            "portfolio": c.folio.view(c.mid2),
            "unhandled": len(self._inbox),
            "age_s": ages,
            "problems": list(problems.values()),
        }
        return not problems, detail

    # --- order flow -------------------------------------------------------------------------------
    async def _order_step(self, rt: Runtime) -> None:
        """One batch: state entries first (the freshest state judges the intents), then verdicts.

        Entries stay in ``_inbox`` until done, so a Redis error mid-batch resumes where it stopped
        instead of leaving entries pending until the next restart.
        """
        assert self._consumer is not None
        if self._state_todo:
            await self._write_states(rt)
        await self._execute(rt, self.core.on_timer(clock.now_ms()))
        if not self._inbox:
            entries = await self._consumer.read()
            self._inbox = ([e for e in entries if e.stream != keys.ORDERS_INTENTS]
                           + [e for e in entries if e.stream == keys.ORDERS_INTENTS])
        if any(e.stream == keys.ORDERS_INTENTS for e in self._inbox) or self._kill_stale():
            await self._read_flags(rt)
        while self._inbox:
            e = self._inbox[0]
            if e.stream != keys.ORDERS_INTENTS:
                await self._apply_state(rt, e)
                self._inbox.pop(0)
            elif not isinstance(e.msg, OrderIntent):
                await self._reject_entry(rt, e, f"unexpected {e.msg.type} on {e.stream}")
                self._inbox.pop(0)
            else:
                await self._judge_run(rt)

    async def _judge_run(self, rt: Runtime) -> None:
        """The intents at the head of the inbox (a maker's requote arrives as one run): judged in order,
        every verdict published and every entry acked in one Lua call, so the gateway reads them at once."""
        run: list[Entry] = []
        for e in self._inbox:
            if e.stream != keys.ORDERS_INTENTS or not isinstance(e.msg, OrderIntent):
                break
            run.append(e)
        for e in run:
            if e.id not in self._decided:
                self._decided[e.id] = self._decide(e)
        out = [self._decided[e.id] for e in run]
        await rt.bus.publish_all_and_ack([o for o in out if o[0]], keys.ORDERS_INTENTS, keys.GROUP_GUARD,
                                         [e.id for e in run])
        for e in run:
            self._decided.pop(e.id, None)
        del self._inbox[:len(run)]

    def _decide(self, entry: Entry) -> tuple[str, Msg]:
        """Judge one intent once; the result is kept until published (retries resend it unchanged)."""
        it = entry.msg
        assert isinstance(it, OrderIntent)
        now = clock.now_ms()
        try:
            cmds = self.core.handle(it, now)
        except Exception:  # noqa: BLE001 - a bug must not approve: fail closed, keep running
            log.exception("guard core failed on intent %s; vetoing", it.intent_id)
            cmds = [Veto(it, "error", "error: guard internal error")]
        for c in cmds:
            if isinstance(c, Approve):
                if it.action == "place":
                    self.starved.trading()
                VERDICTS.labels("approved", c.reason).inc()
                log.debug("approved %s (%s)", it.intent_id, c.reason)
                trace = {**it.trace, "guard": clock.now_ns()}
                return keys.ORDERS_APPROVED, it.model_copy(update={"trace": trace})
            if isinstance(c, Veto):
                if self.core.state != "ACTIVE":
                    self.starved.trading()   # vetoes while reducing or halted are the design, not starvation
                elif not self.core.ledger.open_orders():
                    self.starved.refused(now, c.message)
                VERDICTS.labels("vetoed", c.reason).inc()
                log.log(logging.DEBUG if c.reason == "halted" else logging.INFO, "vetoed %s %s %s: %s",
                        it.intent_id, it.action, "ask" if it.is_ask else "bid", c.message)
                return keys.ORDERS_EVENTS, c.event(now, {**it.trace, "guard": clock.now_ns()})
            if isinstance(c, Duplicate):
                VERDICTS.labels("duplicate", "redelivered").inc()
                log.info("intent %s already had a verdict before the restart; acking only", it.intent_id)
                return "", it
        raise AssertionError(f"core returned no verdict for {it.intent_id}")  # pragma: no cover

    def _kill_stale(self) -> bool:
        return clock.now_ms() / 1000 - self._kill_read_at > KILL_REFRESH_S

    async def _read_flags(self, rt: Runtime) -> None:
        """One round trip: the operator's switches (``risk:kill``, ``risk:reduce``, ``risk:resume``) and
        every service's heartbeat. An unreadable kill flag fails closed (HALTED). Also re-asserts
        ``risk:state`` (somebody may have deleted it; a missing state means HALTED to everyone)."""
        now = clock.now_ms()
        names = list(self.settings.guard.triggers.heartbeat.services)
        try:
            pipe = rt.redis.pipeline(transaction=False)
            pipe.get(keys.RISK_KILL)
            pipe.get(keys.RISK_REDUCE)
            pipe.get(keys.RISK_RESUME)
            pipe.mget([keys.heartbeat(n) for n in names])
            res = await pipe.execute(raise_on_error=False)
        except REDIS_ERRORS:
            await self._execute(rt, self.core.handle(KillState(None, readable=False), now))
            raise
        kill_raw, reduce_raw, resume_raw, beats = res[:4]
        if isinstance(kill_raw, Exception) or isinstance(reduce_raw, Exception):  # e.g. WRONGTYPE
            log.error("risk:kill/risk:reduce unreadable (%s); halting", kill_raw if isinstance(kill_raw, Exception) else reduce_raw)
            await self._execute(rt, self.core.handle(KillState(None, readable=False), now))
            return
        reason, reduce = text(kill_raw), text(reduce_raw)
        if reason != self.core.kill:
            log.warning("risk:kill %s", f"set: {reason}" if reason is not None else "cleared")
        cmds = self.core.handle(KillState(reason, reduce=reduce, resume=resume_raw is not None
                                          and not isinstance(resume_raw, Exception)), now)
        if not isinstance(beats, Exception):
            hb: dict[str, int | None] = {}
            for n, v in zip(names, beats):
                try:
                    hb[n] = None if v is None else int(v)
                except ValueError:
                    hb[n] = None
            cmds += self.core.handle(Heartbeats(hb), now)
        await self._execute(rt, cmds)
        await self._reassert_state(rt)
        self._kill_read_at = now / 1000
        dd2 = self.core.drawdown2()
        if dd2 is not None:
            DRAWDOWN.set(max(0, dd2) / 2e6)

    async def _reassert_state(self, rt: Runtime) -> None:
        """Refresh ``risk:state`` and its expiry (a dead guard's state expires: HALTED for everyone), under
        the writer lock and only with no change pending, so an older value never overwrites a newer one."""
        async with self._state_lock:
            if self.core.published and not self._state_todo:
                await rt.redis.set(keys.RISK_STATE, self.core.state, px=keys.RISK_STATE_TTL_MS)

    # --- state streams ----------------------------------------------------------------------------
    async def _apply_state(self, rt: Runtime, e: Entry) -> None:
        assert self._consumer is not None
        key = id_key(e.id)
        if key <= self._last_ids.get(e.stream, (-1, -1)):  # applied already (start-up replay, or before an error)
            await self._consumer.ack(e.stream, e.id)
            return
        self._last_ids[e.stream] = key
        expected = ACCOUNT_TYPES if e.stream == self.acct_stream else (OrderEvent,)
        if not isinstance(e.msg, expected):
            await self._reject_entry(rt, e, f"unexpected {e.msg.type} on {e.stream}")
            return
        try:
            cmds = self.core.handle(e.msg, clock.now_ms())
        except Exception as exc:  # noqa: BLE001 - one bad event must not stop the guard
            log.exception("guard core failed on %s %s", e.stream, e.id)
            await self._reject_entry(rt, e, f"handler error: {type(exc).__name__}")
            return
        if isinstance(e.msg, Position):
            self._position_gauge.set(self.core.position)
        await self._execute(rt, cmds)
        await self._consumer.ack(e.stream, e.id)

    async def _reject_entry(self, rt: Runtime, e: Entry, error: str) -> None:
        assert self._consumer is not None
        await rt.bus.dead_letter(e.stream, e.id, _fields(e.msg), error)
        await self._consumer.ack(e.stream, e.id)

    # --- market data ------------------------------------------------------------------------------
    async def _book_step(self, rt: Runtime) -> None:
        assert self._books is not None
        for e in await self._books.read():
            if isinstance(e.msg, BookTop):
                await self._execute(rt, self.core.handle(e.msg, clock.now_ms()))
            else:
                await rt.bus.dead_letter(e.stream, e.id, _fields(e.msg), f"unexpected {e.msg.type} on {e.stream}")

    async def _load_book(self, rt: Runtime, now: int) -> None:
        """Seed the mid from ``book:{m}``, aged by the venue timestamp (a dead feed's book is old)."""
        raw = await rt.redis.get(keys.book_latest(self.spec.market_id))
        if raw is None:
            return
        try:
            book = BookTop.model_validate_json(raw)
        except ValueError as e:
            log.warning("ignoring malformed %s: %s", keys.book_latest(self.spec.market_id), str(e).splitlines()[0])
            return
        self.core.handle(book, min(now, book.venue_ts_ms))

    # --- commands ---------------------------------------------------------------------------------
    async def _execute(self, rt: Runtime, cmds: list[Command]) -> None:
        for c in cmds:
            if isinstance(c, PublishState):
                st = c.state
                TRANSITIONS.labels(c.previous, st.state, c.trigger).inc()
                for n in ("ACTIVE", "REDUCING", "HALTED"):
                    STATE.labels(n).set(1 if n == st.state else 0)
                if st.state != c.previous:
                    for name in st.triggers:
                        TRIPS.labels(name).inc()
                lvl = logging.INFO if st.state == "ACTIVE" else logging.WARNING
                log.log(lvl, "trading state %s -> %s%s", c.previous, st.state, f": {st.reason}" if st.reason else "")
                self._state_todo.append(c)
            elif isinstance(c, ClearResume):
                log.warning("risk:resume applied: latched triggers cleared, drawdown peak reset")
                await rt.redis.delete(keys.RISK_RESUME)
        if self._state_todo:
            await self._write_states(rt)

    async def _write_states(self, rt: Runtime) -> None:
        """``SET risk:state`` and ``XADD risk:events`` in one transaction, oldest change first."""
        async with self._state_lock:
            while self._state_todo:
                st = self._state_todo[0].state
                pipe = rt.redis.pipeline(transaction=True)
                pipe.set(keys.RISK_STATE, st.state, px=keys.RISK_STATE_TTL_MS)
                pipe.xadd(keys.RISK_EVENTS, encode(st), maxlen=keys.RISK_EVENTS_MAXLEN, approximate=True)
                await pipe.execute()
                self._state_todo.pop(0)


def build(settings: Settings) -> GuardService:
    """Factory for ``run_service``: refuses to start without the account to watch."""
    if settings.env.account_index is None:
        fail("python -m services.guard", "LIGHTER_ACCOUNT_INDEX is required: the guard tracks our account stream")
    return GuardService(settings)

