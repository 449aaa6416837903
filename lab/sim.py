"""One process, simulated time: the venue core and the five service cores, wired as the live system is.

Every core is the one that trades: ``services.venue.core.Venue`` (matching, market models, tier
latencies, fees) behind the venue's own WebSocket hub, ``FeedCore`` parsing the hub's frames,
``MakerCore`` and ``HedgerCore`` turning messages into commands (``shared.commands.to_intent``
makes the intents, as in the live shell), ``GuardCore`` judging them and ``GatewayCore``
batching, nonce-keeping and reconciling. What the lab supplies instead of I/O:

- a clock: an event heap ordered by (time, sequence); nothing reads the wall clock;
- transports: a hop between two parts is a delay from ``lab.latency`` (per hop, constant or
  empirical), FIFO per link as TCP and Redis streams are;
- the gateway's Redis claim (kill flag, trading state) as ``claim_verdict``; the SDK signer as
  ``lab.venue_link.to_txs`` (the venue does not verify signatures).

The same seed and settings give bit-identical intents and summaries (``digest``).
"""
from __future__ import annotations

import gc as pygc
import hashlib
import heapq
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.feed import core as fc
from services.feed.core import FeedCore, FrameIn, Opened, TokenSeen, Timing
from services.gateway import core as gw
from services.gateway.app import limits_from
from services.gateway.core import GatewayCore
from services.guard import core as guard_core
from services.guard.core import GuardCore, GuardLimits
from services.hedger.core import HEDGE_TTL_MS, HedgerCore
from services.maker.core import MakerCore
from services.venue.config import AccountSpec, VenueConfig
from services.venue.core import Venue
from services.venue.flow import TapeEvent
from shared.commands import Order as ORDER_COMMANDS
from shared.commands import to_intent
from shared.config import Settings
from shared.schemas import BookTop, Msg, OrderEvent, OrderIntent, RiskState

from lab import venue_link as vl
from lab.latency import Latency

LAB_EPOCH_MS = 1_767_225_600_000   # 2026-01-01T00:00:00Z: every run starts here (the ids carry the clock)
ACCOUNT, API_KEY = 100, 4           # as ``make run``'s local account
COLLATERAL_MICRO = 1_000 * 10**6
QUOTING_TIMER_MS = 100              # the maker's and hedger's shell timers
FEED_TIMER_MS = 250
GUARD_TIMER_MS = 1_000              # the guard reads the switches and heartbeats at least this often
GATEWAY_TICK_MS = 100


def claim_verdict(kill: str | None, state: str | None, places: str) -> str:
    """The gateway's claim script (services/gateway/app.py ``_CLAIM``) on the lab's flags: a set kill
    flag or a missing/HALTED state stops a batch that places; REDUCING stops one that could add."""
    if places == "0":
        return "ok"
    if kill is not None:
        return "killed"
    if places == "1" and state == "REDUCING":
        return "reducing"
    if state not in ("ACTIVE", "REDUCING"):   # HALTED, missing or anything else: fail closed
        return "killed"
    return "ok"


def intents_of(cmds: list[Any], name: str, core: Any, ttl_ms: int, now_ms: int) -> list[OrderIntent]:
    """The intents a quoting core's commands become at ``now_ms`` (as the live shell makes them; the
    trace stamp is the simulated time). Shared by the simulation and the replay."""
    return [to_intent(c, name, core.market_id, now_ms, now_ms * 1_000_000, ttl_ms, core.book_ts_ms or 0)
            for c in cmds if isinstance(c, ORDER_COMMANDS)]


@dataclass
class Recorder:
    """What a run produced, in order: the bus messages the metrics read and every intent and verdict."""

    books: list[BookTop] = field(default_factory=list)
    account: list[Msg] = field(default_factory=list)
    intents: list[OrderIntent] = field(default_factory=list)
    events: list[OrderEvent] = field(default_factory=list)
    states: list[RiskState] = field(default_factory=list)

    def digest(self) -> str:
        h = hashlib.sha256()
        for it in self.intents:
            h.update(it.model_dump_json().encode())
        for ev in self.events:
            h.update(ev.model_dump_json().encode())
        return h.hexdigest()


@contextmanager
def fast_gc() -> Iterator[None]:
    """Fewer cyclic-GC passes while a session runs: it allocates millions of short-lived acyclic
    objects (messages, commands), and each full pass walks every live one (~10 % of the run)."""
    old = pygc.get_threshold()
    pygc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        pygc.set_threshold(*old)


class Link:
    """A FIFO hop between two parts: each message arrives after the hop's delay, never before the one sent before it."""

    __slots__ = ("sim", "hop", "last")

    def __init__(self, sim: "Sim", hop: str) -> None:
        self.sim, self.hop, self.last = sim, hop, 0

    def send(self, fn: Callable[..., None], *args: Any) -> None:
        t = max(self.sim.now + self.sim.latency.draw(self.hop), self.last)
        self.last = t
        self.sim.at(t, fn, *args)


class Sim:
    """The event loop of simulated time and the wiring of the cores."""

    def __init__(self, settings: Settings, *, model: str = "calm", seed: int = 1, latency: Latency | None = None,
                 tapes: dict[int, list[TapeEvent]] | None = None, start_ms: int = LAB_EPOCH_MS,
                 venue_tier: str | None = None, record: Recorder | None = None,
                 model_params: dict[str, float] | None = None, venue_options: dict[str, Any] | None = None,
                 collateral_micro: int = COLLATERAL_MICRO) -> None:
        self.settings = settings
        self.spec = settings.market_spec
        self.mid = self.spec.market_id
        self.now = start_ms
        self.start_ms = start_ms
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.events_run = 0
        self.latency = latency or Latency.constant()
        self.latency.seed(seed)
        self.rec = record or Recorder()
        # -- the venue ------------------------------------------------------------------------------
        self.vcfg = VenueConfig(seed=seed, model=model, model_params=dict(model_params or {}),
                                tier=venue_tier or settings.tier, markets=(self.mid,),
                                accounts=[AccountSpec(ACCOUNT, API_KEY, "00" * 40, "1000")], **(venue_options or {}))
        self.venue = Venue(self.vcfg, random.Random(seed), start_ms, tapes)
        self.venue.register_account(ACCOUNT, API_KEY, "00" * 40, collateral_micro, start_ms)
        self.host = vl.LabHost(self.venue, self.vcfg, start_ms)
        self._book = self.venue.engine.books[self.mid]
        self.session = vl.LabSession()
        # -- the cores ------------------------------------------------------------------------------
        f = settings.feed
        lo_ms, hi_ms = int(f.reconnect_min_s * 1000), int(f.reconnect_max_s * 1000)
        self.feed = FeedCore([self.spec], f.book_depth, ACCOUNT,
                             Timing(private_retry_ms=max(lo_ms, 1), private_retry_max_ms=max(hi_ms, lo_ms, 1)))
        self.maker = MakerCore.from_settings(settings)
        self.hedger = HedgerCore.from_settings(settings)
        self.guard = GuardCore(self.spec, GuardLimits.from_settings(settings))
        self.gateway = GatewayCore(limits_from(settings), (API_KEY,))
        self.maker_ttl = settings.maker.quote_ttl_ms
        self.kill: str | None = None
        self.risk_state: str | None = None
        # -- links (one per producer → consumer pair, FIFO) -------------------------------------------
        self.ws_in = Link(self, "ws")       # venue → feed
        self.ws_out = Link(self, "ws")      # feed → venue
        self.rest = {"out": Link(self, "rest"), "back": Link(self, "rest")}
        self.bus: dict[tuple[str, str], Link] = {}

    # --- the clock --------------------------------------------------------------------------------
    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def link(self, src: str, dst: str) -> Link:
        k = (src, dst)
        ln = self.bus.get(k)
        if ln is None:
            ln = self.bus[k] = Link(self, "bus")
        return ln

    def run(self, until_ms: int, progress: Callable[[int], None] | None = None) -> None:
        """Run every event up to ``until_ms`` (sim time), then stop the producers cleanly."""
        if not self._started:
            self._start()
        heap = self._heap
        pop = heapq.heappop
        next_report = self.now + 60_000
        while heap and heap[0][0] <= until_ms:
            t, _, fn, args = pop(heap)
            self.now = t
            self.host.now_ms = t
            fn(*args)
            self.events_run += 1
            if progress is not None and t >= next_report:
                progress(t)
                next_report = t + 60_000
        self.now = until_ms
        self.host.now_ms = until_ms

    _started = False

    def _start(self) -> None:
        self._started = True
        t = self.now
        self.host.connect(self.session)
        self._drain_frames()
        self._feed(Opened())
        self.at(t, self._venue_tick)
        self.at(t, self._flush_tick)
        self.at(t + 1, self._feed_timer)
        self.at(t + 2, self._maker_timer)
        self.at(t + 3, self._hedger_timer)
        self._guard_cmds(self.guard.handle(guard_core.KillState(self.kill), t))
        self._guard_cmds(self.guard.handle(guard_core.Recovered(), t))
        self.at(t, self._guard_timer)
        self.at(t, self._gateway_tick)
        self._gateway(gw.LeaseRead(True, "lab:1"))

    # --- venue ------------------------------------------------------------------------------------
    def _venue_tick(self) -> None:
        self.host.run_core(self.now)
        self._drain_frames()
        self.at(max(self.now + 1, self.venue.next_wakeup_ms()), self._venue_tick)

    def _flush_tick(self) -> None:
        if self.venue.next_wakeup_ms() <= self.now:   # a step due at this very ms runs first, as the live scheduler's does
            self.host.run_core(self.now)
        book = self._book
        if book.dirty_asks or book.dirty_bids:   # the feed subscribes to nothing else the flush sends
            self.host.hub.flush_books(self.now)
        self._drain_frames()
        self.at(self.now + self.vcfg.book_flush_ms, self._flush_tick)

    def _drain_frames(self) -> None:
        out = self.session.out
        if out:
            self.session.out = []
            for text in out:
                self.ws_in.send(self._feed, FrameIn(text))

    def _to_venue(self, text: str) -> None:
        self.host.receive(self.session, text)
        self._drain_frames()

    # --- feed -------------------------------------------------------------------------------------
    def _feed(self, ev: Any) -> None:
        self._feed_cmds(self.feed.handle(ev, self.now))

    def _feed_timer(self) -> None:
        self._feed_cmds(self.feed.on_timer(self.now))
        self.at(self.now + FEED_TIMER_MS, self._feed_timer)

    def _feed_cmds(self, cmds: list[Any]) -> None:
        for c in cmds:
            if isinstance(c, fc.PublishBook):
                b = c.book
                self.rec.books.append(b)
                for dst in ("maker", "hedger", "guard"):
                    self.link("feed", dst).send(self._deliver, dst, b)
            elif isinstance(c, fc.PublishTrade):   # the maker's live calibration reads the public tape
                self.link("feed", "maker").send(self._deliver, "maker", c.trade)
            elif isinstance(c, fc.PublishAccount):
                self.rec.account.append(c.msg)
                for dst in ("maker", "hedger", "guard", "gateway"):
                    self.link("feed", dst).send(self._deliver, dst, c.msg)
            elif isinstance(c, fc.Send):
                self.ws_out.send(self._to_venue, orjson.dumps(c.payload()).decode())
            elif isinstance(c, fc.Reconnect):
                self.session.subs.clear()
                self.host.hub._drop(self.session)  # type: ignore[arg-type]
                self.session = vl.LabSession()
                self.at(self.now + 1_000, self._reconnect)

    def _reconnect(self) -> None:
        self._feed(fc.Closed())
        self.host.connect(self.session)
        self._feed(Opened())
        self._drain_frames()

    # --- bus delivery -----------------------------------------------------------------------------
    def _deliver(self, dst: str, msg: Msg) -> None:
        if dst == "maker":
            self._quoting("maker", self.maker, self.maker_ttl, self.maker.handle(msg, self.now))
        elif dst == "hedger":
            self._quoting("hedger", self.hedger, HEDGE_TTL_MS, self.hedger.handle(msg, self.now))
        elif dst == "guard":
            self._guard_cmds(self.guard.handle(msg, self.now))
        elif dst == "gateway":
            self._gateway(gw.AccountIn(msg))  # type: ignore[arg-type]

    # --- maker and hedger ---------------------------------------------------------------------------
    def _maker_timer(self) -> None:
        self._quoting("maker", self.maker, self.maker_ttl, self.maker.on_timer(self.now))
        self.at(self.now + QUOTING_TIMER_MS, self._maker_timer)

    def _hedger_timer(self) -> None:
        self._quoting("hedger", self.hedger, HEDGE_TTL_MS, self.hedger.on_timer(self.now))
        self.at(self.now + QUOTING_TIMER_MS, self._hedger_timer)

    def _quoting(self, name: str, core: Any, ttl_ms: int, cmds: list[Any]) -> None:
        for it in intents_of(cmds, name, core, ttl_ms, self.now):
            self.rec.intents.append(it)
            self.link(name, "guard").send(self._judge, it)

    # --- guard --------------------------------------------------------------------------------------
    def _judge(self, it: OrderIntent) -> None:
        for c in self.guard.handle(it, self.now):
            if isinstance(c, guard_core.Approve):
                self.link("guard", "gateway").send(self._gateway_intent, it)
            elif isinstance(c, guard_core.Veto):
                self._order_event("guard", c.event(self.now, it.trace))
            else:
                self._guard_cmds([c])

    def _guard_timer(self) -> None:
        now = self.now
        cmds = self.guard.on_timer(now)
        cmds += self.guard.handle(guard_core.KillState(self.kill), now)
        beats = {n: now for n in self.settings.guard.triggers.heartbeat.services}
        cmds += self.guard.handle(guard_core.Heartbeats(beats), now)
        self._guard_cmds(cmds)
        self.at(now + GUARD_TIMER_MS, self._guard_timer)

    def _guard_cmds(self, cmds: list[Any]) -> None:
        for c in cmds:
            if isinstance(c, guard_core.PublishState):
                st = c.state
                self.risk_state = st.state
                self.rec.states.append(st)
                for dst in ("maker", "hedger"):
                    self.link("guard", dst).send(self._deliver, dst, st)

    # --- gateway ------------------------------------------------------------------------------------
    def _order_event(self, src: str, ev: OrderEvent) -> None:
        self.rec.events.append(ev)
        for dst in ("maker", "hedger", "guard"):
            self.link(src, dst).send(self._deliver, dst, ev)

    def _gateway_intent(self, it: OrderIntent) -> None:
        self._gateway(gw.IntentIn(it, f"{self.now}-{self._seq}"))

    def _gateway_tick(self) -> None:
        now = self.now
        beats = tuple((n, now) for n in self.gateway.limits.watch)
        self._gateway(gw.KillRead(self.kill, heartbeats=beats, state=self.risk_state))
        self._gateway_cmds(self.gateway.on_timer(now))
        self.at(now + GATEWAY_TICK_MS, self._gateway_tick)

    def _gateway(self, ev: Any) -> None:
        self._gateway_cmds(self.gateway.handle(ev, self.now))
        self._gateway_cmds(self.gateway.handle(gw.SenderReady(), self.now))

    def _gateway_cmds(self, cmds: list[Any]) -> None:
        rest = self.rest
        for c in cmds:
            if isinstance(c, gw.Publish):
                self._order_event("gateway", c.event)
            elif isinstance(c, gw.SendBatch):
                self._send_batch(c)
            elif isinstance(c, gw.FetchNonce):
                rest["out"].send(self._venue_answer, gw.NonceFetched, c.lane)
            elif isinstance(c, gw.CheckLane):
                rest["out"].send(self._venue_answer, gw.LaneChecked, c.lane)
            elif isinstance(c, gw.FetchReconcile):
                rest["out"].send(self._reconcile, c)
            elif isinstance(c, gw.PublishAccount):
                self.rec.account.append(c.msg)
                for dst in ("maker", "hedger", "guard", "gateway"):
                    self.link("gateway", dst).send(self._deliver, dst, c.msg)
            elif isinstance(c, gw.CheckActiveOrders):
                rest["out"].send(self._active_count)
            elif isinstance(c, gw.MintAuthToken):
                token = vl.lab_token(ACCOUNT, API_KEY, self.now // 1000 + c.ttl_s)
                self.link("gateway", "feed").send(self._feed, TokenSeen.of([(token, "redis")]))
                self._gateway(gw.TokenMinted())

    def _venue_answer(self, kind: type, lane: int) -> None:
        self.host.run_core(self.now)
        nonce = self.venue.next_nonce(ACCOUNT, lane)
        self.rest["back"].send(self._gateway, kind(lane, nonce))

    def _active_count(self) -> None:
        self.host.run_core(self.now)
        n = len(self.venue.engine.account_orders.get(ACCOUNT, {}))
        self.rest["back"].send(self._gateway, gw.ActiveOrders(n))

    def _reconcile(self, c: gw.FetchReconcile) -> None:
        self.host.run_core(self.now)
        snap = vl.reconcile(self.venue, ACCOUNT, self.spec, c.reason, c.since_ms, self.now)
        self.rest["back"].send(self._gateway, gw.ReconcileDone(snap))

    def _send_batch(self, c: gw.SendBatch) -> None:
        b = c.batch
        verdict = claim_verdict(self.kill, self.risk_state, self.gateway.places_of(b))
        if verdict != "ok":
            self._gateway(gw.BatchNotSent(b, f"{verdict}: lab claim", kill=self.kill if verdict == "killed" else None))
            return
        txs = vl.to_txs(c.requests, ACCOUNT, b.lane, b.first_nonce, self.now)
        self.rest["out"].send(self._arrive, b, txs)

    def _arrive(self, b: gw.Batch, txs: list[Any]) -> None:
        self.host.now_ms = self.now
        result = self.host.submit(txs)
        self._drain_frames()
        done = gw.BatchDone(b, result, tuple(t.tx_hash for t in txs), max(t.expired_at for t in txs),
                            self.now * 1_000_000, self.now * 1_000_000)
        self.rest["back"].send(self._gateway, done)
        self.at(max(self.now, self.venue.next_wakeup_ms()), self._venue_tick_once)

    def _venue_tick_once(self) -> None:
        self.host.run_core(self.now)
        self._drain_frames()

    # --- operator -------------------------------------------------------------------------------------
    def set_kill(self, reason: str | None) -> None:
        self.kill = reason

    def stop(self) -> None:
        """What ``make run``'s Ctrl-C does: the producers stop quoting, the gateway cancels everything."""
        for name, core, ttl in (("maker", self.maker, self.maker_ttl), ("hedger", self.hedger, HEDGE_TTL_MS)):
            self._quoting(name, core, ttl, core.shutdown(self.now))
        self._gateway(gw.Stopping())
