"""The I/O shell shared by the maker and the hedger: Redis in, core decisions out.

Three loops feed one core (asyncio runs one ``handle`` at a time, so the core needs no locks):

- books: ``GET book:{m}`` at start, then a conflating ``TailReader`` on ``md:book:{m}`` starting
  after the stream's newest entry (no gap between the snapshot and the tail);
- account and order events: one ``GroupConsumer`` (group = service name) over ``acct:{account}``
  and ``orders:events``; the account group starts at ``0`` when new, so a fresh service learns its
  position from the stream's history, the events group at ``$``; entries are acked once handled;
- public trades (only for a shell with ``wants_trades``, the maker's live calibration): a plain
  ``TailReader`` on ``md:trade:{m}`` from ``$``, every entry (no conflation);
- a timer calling ``core.on_timer`` so time-based rules (stale book, unconfirmed cancels) fire;
- the guard's trading state (``shared.risk_watch``): read at start, then ``risk:events`` tailed, so
  the core stops proposing what the guard would veto the moment the state changes.

Commands become ``OrderIntent``s on ``orders:intents`` (``Bus.publish``); ``Reject`` dead-letters
the entry that caused it; an exception in the core is logged and dead-letters the entry too, and
the service keeps running. Nothing here reads or logs secrets.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from dataclasses import replace
from functools import partial
from typing import Any, Protocol

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared import clock, keys
from shared.bus import Entry, GroupConsumer, TailReader
from shared.commands import Order as ORDER_COMMANDS
from shared.commands import Command, Leftovers, Modify, Note, Place, Reject, to_intent
from shared.config import Settings
from shared.degraded import DegradedWatch
from shared.ledger import RESTING, OrderLedger
from shared.markets import MarketSpec
from shared.quoting_metrics import INTENTS, REJECTED_INPUT
from shared.risk_watch import RiskFollower
from shared.runtime import REDIS_ERRORS, Runtime
from shared.schemas import BookTop, Msg, OrderEvent, Source, encode
from shared.starvation import Starvation
from shared.tap import tapped


class Core(Protocol):
    market_id: int
    spec: MarketSpec
    mode: str
    book_ts_ms: int | None
    ledger: OrderLedger

    def handle(self, event: Msg | Leftovers, now_ms: int) -> list[Command]: ...
    def on_timer(self, now_ms: int) -> list[Command]: ...
    def shutdown(self, now_ms: int) -> list[Command]: ...
    def fresh(self, now_ms: int) -> bool: ...
    def snapshot(self) -> dict[str, Any]: ...


def leftovers(records: dict[Any, Any], name: str, market_id: int) -> Leftovers:
    """The ``gw:open`` records a previous run of ``name`` left in ``market_id``, as one core event."""
    cois = []
    for coi_b, raw in records.items():
        try:
            rec = orjson.loads(raw)
            coi = int(coi_b)
        except (ValueError, orjson.JSONDecodeError):
            continue
        if str(rec.get("intent_id", "")).startswith(f"{name}-") and rec.get("market") == market_id:
            cois.append(coi)
    return Leftovers(market_id=market_id, cois=tuple(sorted(cois)))


async def create_group(redis: Redis, stream: str, group: str, start: str) -> None:
    try:
        await redis.xgroup_create(stream, group, id=start, mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


class QuotingShell:
    """Implements ``shared.runtime.Service`` around a quoting core; subclasses add metrics."""

    wants_trades = False

    def __init__(self, name: Source, settings: Settings, core: Core, ttl_ms: int, dry_run: bool,
                 timer_s: float = 0.1, block_ms: int = 250) -> None:
        if settings.env.account_index is None:
            raise ValueError("LIGHTER_ACCOUNT_INDEX is not set")
        self.name: Source = name
        self.settings, self.ttl_ms, self.dry_run = settings, ttl_ms, dry_run
        self.core = tapped(core, name, settings)   # LIGHTER_TAP_DIR set: every core input recorded for replay
        self.timer_s, self.block_ms = timer_s, block_ms
        self.log = logging.getLogger(name)
        self.acct_stream = keys.acct(settings.env.account_index)
        self.book_stream = keys.md_book(core.market_id)
        self.books: TailReader | None = None
        self.trades: TailReader | None = None
        self.accounts: GroupConsumer | None = None
        self.risk: RiskFollower | None = None
        self.started = False
        self.last_intent_s: float | None = None
        self.last_account_s: float | None = None
        self.intents: Tally[str] = Tally()
        self.dead_letters = 0
        self.starved = Starvation(int(settings.maker.degraded_after_s * 1000))
        self.degraded = DegradedWatch(name)

    # --- Service protocol -----------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        r = rt.redis
        await create_group(r, self.acct_stream, self.name, "0")
        await create_group(r, keys.ORDERS_EVENTS, self.name, "$")
        self.accounts = GroupConsumer(rt.bus, [self.acct_stream, keys.ORDERS_EVENTS], self.name, f"{self.name}-1",
                                      block_ms=self.block_ms)
        newest = await r.xrevrange(self.book_stream, count=1)
        start = (newest[0][0].decode() if isinstance(newest[0][0], bytes) else newest[0][0]) if newest else "0-0"
        self.books = TailReader(rt.bus, [self.book_stream], start=start, block_ms=self.block_ms, conflate=True)
        if self.wants_trades:
            self.trades = TailReader(rt.bus, [keys.md_trade(self.core.market_id)], start="$", block_ms=self.block_ms)
        latest_key = keys.book_latest(self.core.market_id)
        raw = await r.get(latest_key)
        if raw is not None:
            try:
                book = BookTop.model_validate_json(raw)
            except ValidationError as e:
                self.dead_letters += 1
                await rt.bus.dead_letter(latest_key, "-", {"d": raw}, f"invalid book: {e.errors()[0]['msg']}")
            else:
                await self._apply(rt, book, None)
        self.risk = RiskFollower(rt.bus, block_ms=1000)
        await self._apply(rt, await self.risk.start(clock.now_ms()), None)
        await self._cancel_leftovers(rt)
        await r.set(keys.RECONCILE_REQUEST, f"{self.name} start")   # a restarted ledger learns the venue's truth now
        self.started = True
        self.log.info("%s started: market %d, account stream %s, dry_run=%s", self.name, self.core.market_id,
                      self.acct_stream, self.dry_run)

    async def _cancel_leftovers(self, rt: Runtime) -> None:
        """Cancel orders a previous run of this service placed and never saw end (a crash, a kill -9).

        The gateway records every place in ``gw:open`` before sending it; this run does not know
        those orders, so without this they would rest until their GTT expiry beside the new quotes.
        """
        if self.dry_run:
            return
        records = await rt.redis.hgetall(keys.GATEWAY_OPEN_ORDERS)  # type: ignore[misc]
        ns = clock.now_ns()
        cmds = self.core.handle(leftovers(records, self.name, self.core.market_id), ns // 1_000_000)
        if cmds:
            await self._execute(rt, cmds, ns, None, None)
            self.log.warning("cancelling %d order(s) left over by a previous run", len(cmds))

    async def run(self, rt: Runtime) -> None:
        loops = [rt.loop(partial(self._book_step, rt)), rt.loop(partial(self._account_step, rt)),
                 rt.loop(partial(self._timer_step, rt), idle_s=self.timer_s), rt.loop(partial(self._risk_step, rt))]
        if self.trades is not None:
            loops.append(rt.loop(partial(self._trade_step, rt)))
        await asyncio.gather(*loops)

    async def stop(self, rt: Runtime) -> None:
        ns = clock.now_ns()
        await self._execute(rt, self.core.shutdown(ns // 1_000_000), ns, None, None)

    def problems(self, now: float) -> dict[str, str]:
        """Why this service cannot do its job now, by reason code (empty: it can)."""
        now_ms = int(now * 1000)
        out: dict[str, str] = {}
        if not self.core.fresh(now_ms):
            ts = self.core.book_ts_ms
            out["book_stale"] = "no book yet" if ts is None else f"book stale ({now - ts / 1000:.1f} s old)"
        if not self.core.ledger.position_known:
            out["position_unknown"] = "position unknown (no account data yet)"
        starved = self.starved.problem(now_ms)
        if starved:
            out["orders_refused"] = starved
        return out

    def health(self, now: float) -> tuple[bool, dict[str, Any]]:
        ts = self.core.book_ts_ms
        problems = self.problems(now) if self.started else {"starting": "starting"}
        if self.started:
            self.degraded.observe(problems)
        risk = None if self.risk is None else self.risk.current
        trading = {"state": "HALTED", "reason": "starting"} if risk is None else {"state": risk.state, "reason": risk.reason}
        calm = "ok" if trading["state"] == "ACTIVE" else trading["state"].lower()
        detail: dict[str, Any] = {
            "state": "degraded" if problems else calm,
            "reason": "; ".join(problems.values()) or (trading["reason"] if calm != "ok" else ""),
            "trading": trading,
            **self.core.snapshot(),
            "book_age_s": None if ts is None else round(now - ts / 1000, 3),
            "last_intent_age_s": None if self.last_intent_s is None else round(now - self.last_intent_s, 3),
            "last_account_event_age_s": None if self.last_account_s is None else round(now - self.last_account_s, 3),
            "intents": dict(self.intents),
            "dead_letters": self.dead_letters,
        }
        return self.started and self.core.fresh(int(now * 1000)), detail

    def ready(self) -> bool:
        return self.started and not self.problems(time.time())

    # --- loops ----------------------------------------------------------------------------------
    async def _book_step(self, rt: Runtime) -> None:
        assert self.books is not None
        for e in await self.books.read():
            await self._apply(rt, e.msg, e)

    async def _trade_step(self, rt: Runtime) -> None:
        assert self.trades is not None
        for e in await self.trades.read():
            await self._apply(rt, e.msg, e)

    async def _account_step(self, rt: Runtime) -> None:
        assert self.accounts is not None
        try:
            for e in await self.accounts.read():
                self.last_account_s = time.time()
                await self._apply(rt, e.msg, e)
                await self.accounts.ack(e.stream, e.id)
        except REDIS_ERRORS:
            self.accounts.rewind()  # the entry that failed and the rest of its batch are read again, in order
            raise

    async def _risk_step(self, rt: Runtime) -> None:
        assert self.risk is not None
        for st in await self.risk.step(clock.now_ms()):
            self.log.log(logging.INFO if st.state == "ACTIVE" else logging.WARNING, "trading state %s%s",
                         st.state, f": {st.reason}" if st.reason else "")
            await self._apply(rt, st, None)

    async def _timer_step(self, rt: Runtime) -> None:
        ns = clock.now_ns()
        if self.started:
            self.degraded.observe(self.problems(ns / 1e9))
        cmds = [replace(c, trace={**c.trace, "tick": ns}) if isinstance(c, ORDER_COMMANDS) else c
                for c in self.core.on_timer(ns // 1_000_000)]   # "tick": decided on the timer, not on a frame
        await self._execute(rt, cmds, ns, None, None)

    async def _apply(self, rt: Runtime, msg: Msg, entry: Entry | None) -> None:
        ns = clock.now_ns()
        self._watch_starvation(msg, ns // 1_000_000)
        self.on_input(msg, ns // 1_000_000)
        try:
            cmds = self.core.handle(msg, ns // 1_000_000)
        except Exception as e:  # noqa: BLE001 - one bad entry must not stop the service
            self.log.exception("core failed on %s %s", entry.stream if entry else "start-up", entry.id if entry else "")
            cmds = [Reject(f"core error: {type(e).__name__}: {e}")]
        await self._execute(rt, cmds, ns, entry, msg)

    async def _execute(self, rt: Runtime, cmds: list[Command], now_ns: int, entry: Entry | None,
                       msg: Msg | None) -> None:
        now_ms = now_ns // 1_000_000
        intents = [to_intent(c, self.name, self.core.market_id, now_ms, now_ns, self.ttl_ms, self.core.book_ts_ms or 0)
                   for c in cmds if isinstance(c, ORDER_COMMANDS)]
        if intents and not self.dry_run:  # one round trip, in order, all or none
            await rt.bus.publish_many(keys.ORDERS_INTENTS, intents, now_ms)
        published = iter(intents)
        for c in cmds:
            if isinstance(c, ORDER_COMMANDS):
                intent = next(published)
                if self.dry_run:  # the cores emit nothing in dry-run; this is the second lock
                    self.log.info("dry-run: not publishing %s", intent.model_dump_json())
                    continue
                INTENTS.labels(self.name, intent.action).inc()
                self.on_intent(intent, now_ms)
                self.intents[intent.action] += 1
                self.last_intent_s = time.time()
                spec = self.core.spec
                if isinstance(c, Place):
                    what = (f"{'ask' if c.is_ask else 'bid'} {spec.size_str(c.size)}@{spec.price_str(c.price)} {c.tif}"
                            f"{' reduce-only' if c.reduce_only else ''}")
                elif isinstance(c, Modify):
                    what = f"{'ask' if c.is_ask else 'bid'} to {spec.size_str(c.size)}@{spec.price_str(c.price)} in place"
                else:
                    what = c.reason
                self.log.info("%s %s coi=%d %s", intent.action, intent.intent_id, intent.client_order_index, what)
            elif isinstance(c, Reject):
                REJECTED_INPUT.labels(self.name).inc()
                self.dead_letters += 1
                if entry is not None and msg is not None:
                    await rt.bus.dead_letter(entry.stream, entry.id, encode(msg), c.reason)
                else:
                    self.log.warning("rejected input: %s", c.reason)
            elif isinstance(c, Note):
                self.log.log({"warning": logging.WARNING, "error": logging.ERROR}.get(c.level, logging.INFO), "%s", c.text)
        self.observe()

    def _watch_starvation(self, msg: Msg, now_ms: int) -> None:
        """Refusals of our own places, against anything of ours resting or accepted."""
        if self.risk is None or self.risk.current is None or self.risk.current.state != "ACTIVE":
            self.starved.trading()   # refusals while reducing or halted are the design, not starvation
            return
        if isinstance(msg, OrderEvent) and msg.source == self.name and msg.action == "place":
            if msg.kind in ("veto", "reject", "killed", "stale", "not_sent"):
                self.starved.refused(now_ms, f"{msg.kind}: {msg.message}")
            elif msg.kind == "ack":
                self.starved.trading()
        if any(o.state in RESTING for o in self.core.ledger.live(self.name)):
            self.starved.trading()

    def on_input(self, msg: Msg, now_ms: int) -> None:
        """Every message the core is about to handle (a subclass may watch them; the core decides)."""

    def on_intent(self, intent: Any, now_ms: int) -> None:
        """Every intent published."""

    def observe(self) -> None:
        """Refresh gauges after each decision; subclasses set their own."""
