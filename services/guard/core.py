"""The guard's pure decision core: the last word on every order intent, and the trading state.

State: an ``OrderLedger`` (the one order truth: our position, resting orders, places approved and
not yet seen at the venue, orders whose send outcome is unknown, each side's worst case), the mid,
the operator's switches, the risk triggers and the request budget. ``handle(event, now_ms)``
returns commands (approve, veto, publish a new trading state) and never does I/O, reads a clock or
draws random numbers, so every rule is unit-testable and a recorded stream replays exactly.

**Trading state** (``services.guard.triggers``): ``ACTIVE``, ``REDUCING`` (only orders that can
only shrink the position) or ``HALTED`` (cancels only). Triggers: the operator's ``risk:kill``
(HALTED, its value the reason) and ``risk:reduce`` (REDUCING), an unreadable flag (HALTED),
inventory breach, trailing drawdown, stale feed, idle account stream, reject storm, lost
heartbeat, crossed book. Every change is a ``PublishState`` command.

Rules for a ``place`` or ``modify`` (in this order; ``cancel``/``cancel_all`` always pass):
 1. ``HALTED`` (kill flag set or unreadable included) -> veto ``halted``; holds with ``guard.enabled: false``;
 2. ``guard.enabled: false`` -> approve everything else (the guard rails are off);
 3. wrong market, non-positive price/size, reused client_order_index -> ``market``/``invalid``;
 4. ``created_ms + ttl_ms < now`` -> ``stale``;
 5. position not yet known -> ``position``;
 6. below the exchange minimum size or notional -> ``min_size``/``min_notional``;
 7. no mid, or further than ``max_price_deviation_bps`` from it -> ``price_band``;
 8. priced from a book older than ``max_book_age_ms`` -> ``book_age``;
 9. crosses one of our own orders on the other side -> ``self-trade``;
10. ``REDUCING`` and the order could add to the position -> ``reducing``;
11. worst-case position (resting + in flight + this) beyond the limit -> ``position``; its notional -> ``notional``;
12. the request budget for places and modifies spent -> ``rate``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from shared.config import GuardConfig, Settings
from shared.ids import source_of
from shared.ledger import NOT_ACTIVE_CODES, OrderLedger
from shared.markets import MarketSpec, round_down
from shared.portfolio import Portfolio
from shared.pricing import frac
from shared.rate_budget import RateBudget
from shared.schemas import (BookTop, Fill, Msg, OrderEvent, OrderIntent, OrderUpdate, Position, Reconcile, RiskState,
                            TradingState)

from services.guard.rules import (
    OwnOrder,
    human,
    human_dec,
    human_px2,
    notional2_micro,
    self_trade_conflict,
    would_self_trade,
    worst_long,
    worst_short,
)
from services.guard.triggers import MANUAL, Trigger, Triggers

ONE = Fraction(1)

__all__ = [
    "Approve", "ClearResume", "Command", "Duplicate", "GuardCore", "GuardLimits", "Heartbeats", "KillState",
    "OwnOrder", "PublishState", "Recovered", "Replayed", "Restored", "Veto", "self_trade_conflict", "would_self_trade",
]

KNOWN_VERDICTS_KEEP_MS = 600_000    # verdicts found at recovery are forgotten after this
MAX_COI = 2**48                      # Lighter's client_order_index is 48 bits (the venue refuses more)


# --- events the shell feeds in besides shared.schemas messages -------------------------------------
@dataclass(frozen=True, slots=True)
class KillState:
    """The operator's switches read just before a verdict batch: ``risk:kill`` (HALTED), ``risk:reduce``
    (REDUCING), ``risk:resume`` (clear latched triggers). ``readable=False`` fails closed (HALTED)."""

    reason: str | None
    readable: bool = True
    reduce: str | None = None
    resume: bool = False


@dataclass(frozen=True, slots=True)
class Heartbeats:
    """Each service's last heartbeat (wall ms it wrote), ``None`` when its key is absent."""

    beats: dict[str, int | None]


@dataclass(frozen=True, slots=True)
class Restored:
    """The active triggers of the last state this guard (or its predecessor) published: latched ones
    (``auto_resume: false``) stay tripped across a restart until the operator resumes."""

    triggers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Replayed:
    """An intent this guard approved before a restart (from ``orders:approved``): counts as in flight."""

    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class Recovered:
    """End of start-up replay: intents that already got a verdict (not to be judged twice)."""

    known_verdicts: frozenset[str] = frozenset()


Event = Msg | KillState | Heartbeats | Restored | Replayed | Recovered


# --- commands -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Approve:
    """Publish the intent to ``orders:approved``; ``reason`` is the metric label (ok/cancel/disabled)."""

    intent: OrderIntent
    reason: str


@dataclass(frozen=True, slots=True)
class Veto:
    """Publish a ``veto`` OrderEvent; ``reason`` is the metric label, ``message`` goes to the event."""

    intent: OrderIntent
    reason: str
    message: str

    def event(self, now_ms: int, trace: dict[str, int]) -> OrderEvent:
        """The ``veto`` OrderEvent the shell publishes for this verdict."""
        it = self.intent
        return OrderEvent(kind="veto", intent_id=it.intent_id, source=it.source, action=it.action,
                          market_id=it.market_id, client_order_index=it.client_order_index, is_ask=it.is_ask,
                          price=it.price, size=it.size, message=self.message, ts_ms=now_ms, trace=trace)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A redelivered intent whose verdict was already published: acknowledge, publish nothing."""

    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class PublishState:
    """The trading state changed: ``SET risk:state`` and ``XADD risk:events`` (one transaction)."""

    state: RiskState
    previous: TradingState
    trigger: str          # the trigger whose trip or clearance made the change ("start" at start-up)


@dataclass(frozen=True, slots=True)
class ClearResume:
    """The operator's ``risk:resume`` was applied: delete it."""


Command = Approve | Veto | Duplicate | PublishState | ClearResume


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The ``guard.*`` config in venue units (rounded down: a limit is never loosened by rounding)."""

    enabled: bool
    max_position_lots: int
    max_notional_micro: int
    max_position_human: str = ""
    max_notional_human: str = ""
    cfg: GuardConfig = GuardConfig()

    @classmethod
    def from_settings(cls, settings: Settings) -> "GuardLimits":
        g, dec = settings.guard, settings.market.size_decimals
        return cls.build(g.enabled, g.max_position_units, g.max_inventory_notional, dec, g)

    @classmethod
    def build(cls, enabled: bool, max_position_units: Decimal, max_notional: Decimal, size_decimals: int,
              cfg: GuardConfig | None = None) -> "GuardLimits":
        return cls(enabled, round_down(max_position_units, size_decimals), round_down(max_notional, 6),
                   human_dec(max_position_units), human_dec(max_notional), cfg or GuardConfig())


def _triggers(cfg: GuardConfig) -> Triggers:
    t, tr = cfg.triggers, Triggers()
    for name, action in MANUAL.items():
        tr.add(Trigger(name, action, auto_resume=True))
    for name in ("inventory", "drawdown", "stale_feed", "idle_account", "reject_storm", "heartbeat", "crossed_book"):
        tr.add(Trigger.from_config(name, getattr(t, name)))
    return tr


@dataclass(slots=True)
class GuardCore:
    """State plus rules for one market. Feed it events in stream order; carry out what it returns."""

    spec: MarketSpec
    limits: GuardLimits
    ledger: OrderLedger = field(default_factory=OrderLedger)
    mid2: int | None = None                 # 2 x mid in ticks (a mid may fall on half a tick)
    kill: str | None = None
    kill_known: bool = False                # False until the first readable KillState: fail closed
    known_verdicts: set[str] = field(default_factory=set)
    known_until_ms: int = 0
    approved: dict[str, int] = field(default_factory=dict)
    vetoed: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    fills: int = 0
    last_intent_ms: int | None = None
    last_book_ms: int | None = None         # when a usable book last arrived (guard time)
    book_venue_ms: int | None = None        # the venue time of that book
    last_account_ms: int | None = None
    last_fill_ms: int | None = None
    unechoed: dict[int, int] = field(default_factory=dict)   # coi -> when the venue accepted the place; no update yet
    triggers: Triggers = field(default_factory=Triggers)
    state: TradingState = "HALTED"          # until start-up is done, and whenever in doubt
    reason: str = "starting"
    since_ms: int = 0
    published: bool = False
    transitions: dict[str, int] = field(default_factory=dict)   # "FROM->TO" -> count
    budget: RateBudget = field(default_factory=lambda: RateBudget(60, 20, 8))
    portfolio: Portfolio | None = None      # PnL since the baseline (shared.portfolio); made in __post_init__
    peak2: int | None = None                # 2 x the highest PnL seen
    rejects: deque[int] = field(default_factory=deque)
    beat_last: dict[str, int] = field(default_factory=dict)   # service -> its newest heartbeat seen (wall ms)
    started_ms: int | None = None
    crossed: str | None = None
    beats_lost: str | None = None
    decided_by: str = "start"               # the trigger behind the current state

    def __post_init__(self) -> None:
        self.ledger.market_id = self.spec.market_id
        if not self.triggers.items:
            self.triggers = _triggers(self.limits.cfg)
        self.budget = RateBudget.from_config(self.limits.cfg.rate)
        if self.portfolio is None:
            self.portfolio = Portfolio(self.spec)

    @property
    def cfg(self) -> GuardConfig:
        return self.limits.cfg

    # --- entry points -----------------------------------------------------------------------------
    def handle(self, event: Event, now_ms: int) -> list[Command]:
        """Apply one event; return what the shell must do."""
        if isinstance(event, OrderIntent):   # the shell runs on_timer before every batch: the state is current
            if self.known_verdicts and now_ms > self.known_until_ms:
                self.known_verdicts.clear()
            return self._verdict(event, now_ms)
        if isinstance(event, KillState):
            return self._on_flags(event, now_ms)
        if isinstance(event, Heartbeats):
            return self._on_beats(event, now_ms)
        if isinstance(event, BookTop):
            return self._on_book(event, now_ms)
        if isinstance(event, (Position, OrderUpdate, Fill, Reconcile)):
            if getattr(event, "market_id", self.spec.market_id) not in (self.spec.market_id, -1):
                return []
            self.last_account_ms = now_ms
            if isinstance(event, Reconcile):
                self.unechoed.clear()                      # the venue's REST truth caught us up
            elif isinstance(event, (OrderUpdate, Fill)):
                self.unechoed.pop(event.client_order_index, None)
            if isinstance(event, Fill):
                if not self.ledger.on_fill(event, now_ms):
                    return []
                self.fills += 1
                self.last_fill_ms = now_ms
                self._count(event)
            else:
                missed = ([f for f in event.fills if f.market_id == self.spec.market_id
                           and not self.ledger.knows_trade(f.trade_id)] if isinstance(event, Reconcile) else [])
                self.ledger.handle(event, now_ms)
                for f in missed:   # fills the account stream never brought: the REST snapshot's
                    self._count(f)
            return self._evaluate(now_ms)
        if isinstance(event, OrderEvent):
            if event.kind == "reject" and not (event.action == "cancel" and event.code in NOT_ACTIVE_CODES):
                self.rejects.append(now_ms)   # a cancel racing a fill or a cancel-all ("not active") is no fault
            if event.kind == "ack" and event.action == "place" and event.client_order_index:
                # every accepted place ends in an account update (open, filled or cancelled post-only); a cancel
                # or modify accepted at the API may fail at execution without one, so only places count. The
                # echo may come before the ack (two channels): then there is nothing to wait for
                o = self.ledger.get(event.client_order_index)
                if o is None or not o.venue_status:
                    self.unechoed.setdefault(event.client_order_index, now_ms)
            if event.kind != "veto":   # our own vetoes were applied when made
                self.ledger.on_event(event, now_ms)
            return self._evaluate(now_ms)
        if isinstance(event, Replayed):
            self._track(event.intent, now_ms)
            return []
        if isinstance(event, Restored):
            for name, reason in event.triggers.items():
                t = self.triggers.items.get(name)
                if t is not None and t.enabled and not t.auto_resume and name not in MANUAL:
                    t.reason, t.clear_since_ms = reason, None
            return []
        if isinstance(event, Recovered):
            self.known_verdicts = set(event.known_verdicts)
            self.known_until_ms = now_ms + KNOWN_VERDICTS_KEEP_MS
            self.started_ms = now_ms
            self.rejects.clear()   # history: a storm that ended before the restart does not halt now
            self.unechoed.clear()
            self.published = False
            return self._evaluate(now_ms)
        return []

    def on_timer(self, now_ms: int) -> list[Command]:
        """Time-driven triggers (stale feed, idle account, hysteresis) and forgetting recovery data.
        Orders are never forgotten by age: only the venue (an update or a reconcile) ends an order."""
        if self.known_verdicts and now_ms > self.known_until_ms:
            self.known_verdicts.clear()
        return self._evaluate(now_ms)

    # --- derived state (orders: all of it the ledger's) -------------------------------------------
    @property
    def position(self) -> int:
        return self.ledger.position

    @property
    def position_known(self) -> bool:
        return self.ledger.position_known

    @property
    def effective_position(self) -> int:
        """Confirmed position plus fills the venue reported after it."""
        return self.ledger.effective_position

    @property
    def breached(self) -> bool:
        return self.triggers.items["inventory"].active

    def open_lots(self, is_ask: bool) -> int:
        """Lots on one side that may still fill: resting, pending cancel, approved, sent or unknown."""
        return self.ledger.exposure(is_ask)

    def own_orders(self) -> list[OwnOrder]:
        return [OwnOrder(o.coi, o.is_ask, o.price, o.exposure) for o in self.ledger.live()]

    @property
    def mid_human(self) -> str | None:
        return None if self.mid2 is None else human_px2(self.mid2, self.spec.price_decimals)

    def pnl2(self) -> int | None:
        """2 x PnL in micro-USDC since the baseline: fills' cash flow plus their position marked to mid.

        The baseline is the first moment both the position and a mid are known: the position held then
        counts as bought at that mid. PnL follows fills only (each counted once by trade id), so a
        position update never moves it by itself."""
        if self.mid2 is None:
            return None
        if not self.folio.started:
            if not self.position_known:
                return None
            self.folio.start(self.effective_position, self.mid2, self.ledger.position_ts_ms)
        return self.folio.pnl2(self.mid2)

    def drawdown2(self) -> int | None:
        """2 x how far PnL is below its peak, micro-USDC (what the drawdown trigger judges; None: no PnL yet)."""
        pnl2 = self.pnl2()
        return None if pnl2 is None or self.peak2 is None else self.peak2 - pnl2

    def _count(self, f: Fill) -> None:
        self.folio.on_fill(f.is_ask, f.price, f.size, f.fee, source_of(f.client_order_index), f.ts_ms)

    @property
    def folio(self) -> Portfolio:
        assert self.portfolio is not None
        return self.portfolio

    def risk_view(self) -> dict[str, object]:
        """For ``/health``: the state, its reason, every active trigger."""
        pnl2, dd2 = self.pnl2(), self.drawdown2()
        return {"state": self.state, "reason": self.reason, "since_ms": self.since_ms,
                "triggers": {n: t.reason for n, t in self.triggers.active().items()},
                "trips": {n: t.trips for n, t in self.triggers.items.items() if t.trips},
                "transitions": dict(self.transitions),
                "pnl_usdc": None if pnl2 is None else human(pnl2 // 2, 6),
                "drawdown_usdc": None if dd2 is None else human(dd2 // 2, 6),
                "budget": {"used": self.budget.used(self.since_ms if self.last_intent_ms is None else self.last_intent_ms),
                           "maker_cap": self.budget.cap("maker"), "cap": self.budget.cap("hedger")}}

    # --- trading state ----------------------------------------------------------------------------
    def _on_flags(self, ev: KillState, now_ms: int) -> list[Command]:
        self.kill, self.kill_known = (ev.reason, True) if ev.readable else (None, False)
        tr = self.triggers.items
        tr["unreadable"].observe(None if ev.readable else "risk:kill unreadable", now_ms)
        if ev.readable:
            tr["kill"].observe(ev.reason, now_ms)
            tr["manual"].observe(ev.reduce, now_ms)
        cmds: list[Command] = []
        if ev.resume and self.started_ms is not None:   # asked during start-up: kept until the state is judged
            self.peak2 = self.pnl2()   # a resumed drawdown counts from here
            limit = int(self.cfg.triggers.heartbeat.after_s * 1000)
            self.beat_last = {n: t for n, t in self.beat_last.items() if now_ms - t <= limit}   # stopped on purpose
            self.beats_lost = None
            self._observe(now_ms)   # what still holds after the reset
            for t in tr.values():
                t.resume()
            cmds.append(ClearResume())
        return cmds + self._evaluate(now_ms)

    def _on_beats(self, ev: Heartbeats, now_ms: int) -> list[Command]:
        hb = self.cfg.triggers.heartbeat
        limit = int(hb.after_s * 1000)
        lost: list[str] = []
        for name in hb.services:
            at = ev.beats.get(name)
            if at is not None:   # the key expires after 5 s: measure from the last beat seen, not the key
                self.beat_last[name] = max(self.beat_last.get(name, at), at)
            last = self.beat_last.get(name)
            if last is not None and now_ms - last > limit:
                lost.append(f"{name} ({(now_ms - last) / 1000:.1f}s since its last beat)")
        self.beats_lost = ", ".join(lost) if lost else None
        return self._evaluate(now_ms)

    def _conditions(self, now_ms: int) -> dict[str, str | None]:
        """Each automatic trigger's condition now (a reason while it holds)."""
        t = self.cfg.triggers
        out: dict[str, str | None] = {}
        out["inventory"] = self.breach_reason(frac(t.inventory.resume_ratio) if self.breached else ONE)
        pnl2 = self.pnl2()
        dd: str | None = None
        if pnl2 is not None:
            self.peak2 = pnl2 if self.peak2 is None else max(self.peak2, pnl2)
            max2 = 2 * round_down(t.drawdown.max_usdc, 6)
            limit2 = max2 * frac(t.drawdown.resume_ratio) if self.triggers.items["drawdown"].active else max2
            if self.peak2 - pnl2 > limit2:
                dd = (f"down {human((self.peak2 - pnl2) // 2, 6)} USDC from peak PnL "
                      f"(max {human_dec(t.drawdown.max_usdc)})")
        out["drawdown"] = dd
        out["stale_feed"] = None
        if self.last_book_ms is not None and now_ms - self.last_book_ms > int(t.stale_feed.after_s * 1000):
            out["stale_feed"] = f"no book for {(now_ms - self.last_book_ms) / 1000:.1f}s (max {human_dec(t.stale_feed.after_s)}s)"
        out["idle_account"] = None
        oldest = min(self.unechoed.values(), default=None)
        if oldest is not None and now_ms - oldest > int(t.idle_account.after_s * 1000):
            out["idle_account"] = (f"the venue accepted our place {(now_ms - oldest) / 1000:.0f}s ago "
                                   f"and the account stream said nothing (max {human_dec(t.idle_account.after_s)}s)")
        win = int(t.reject_storm.window_s * 1000)
        while self.rejects and self.rejects[0] <= now_ms - win:
            self.rejects.popleft()
        out["reject_storm"] = (f"{len(self.rejects)} rejects in {human_dec(t.reject_storm.window_s)}s"
                               if len(self.rejects) >= t.reject_storm.count else None)
        out["heartbeat"] = f"lost: {self.beats_lost}" if self.beats_lost else None
        out["crossed_book"] = self.crossed
        return out

    def _observe(self, now_ms: int) -> None:
        """Feed every automatic trigger its condition now (none while the guard rails are off)."""
        for name, cond in self._conditions(now_ms).items():
            self.triggers.items[name].observe(cond if self.limits.enabled else None, now_ms)

    def _evaluate(self, now_ms: int) -> list[Command]:
        """Feed every trigger its condition; publish the state when it (or its reason) changed."""
        if self.started_ms is None:
            return []   # still replaying history: the state is decided once, at the end
        self._observe(now_ms)   # sets the PnL baseline as soon as it can (the drawdown condition asks for PnL)
        self.folio.roll_day(now_ms // 86_400_000, self.mid2)   # today's zero at each UTC midnight
        state, reason, active = self.triggers.state()
        if self.published and state == self.state and reason == self.reason:
            return []
        prev = self.state
        if state != prev:
            key = f"{prev}->{state}"
            self.transitions[key] = self.transitions.get(key, 0) + 1
            self.since_ms = now_ms
        if reason:
            self.decided_by = reason.split(":", 1)[0]
        elif not self.published:
            self.decided_by = "start"
        self.state, self.reason, self.published = state, reason, True
        msg = RiskState(state=state, reason=reason, triggers=active, position=self.effective_position, ts_ms=now_ms)
        return [PublishState(msg, prev, self.decided_by)]

    def breach_reason(self, ratio: Fraction = Fraction(1)) -> str | None:
        """Why the actual position is beyond ``ratio`` x a limit, in human units; None when within."""
        spec, lim, sym = self.spec, self.limits, self.spec.symbol
        pos = self.effective_position
        max_lots = lim.max_position_lots * ratio if ratio != 1 else lim.max_position_lots
        scaled = "" if ratio == 1 else f" x {float(ratio):g}"
        if abs(pos) > max_lots:
            return f"position {human(pos, spec.size_decimals)} beyond max {lim.max_position_human}{scaled} {sym}"
        if self.mid2 is not None:
            n2 = notional2_micro(spec, self.mid2, pos)
            if n2 > 2 * lim.max_notional_micro * ratio:
                return (f"notional {human(n2 // 2, 6)} > max {lim.max_notional_human}{scaled} USDC "
                        f"(position {human(pos, spec.size_decimals)} {sym} @ {self.mid_human})")
        return None

    # --- verdicts ---------------------------------------------------------------------------------
    def _verdict(self, it: OrderIntent, now_ms: int) -> list[Command]:
        self.last_intent_ms = now_ms
        if it.intent_id in self.known_verdicts:
            self.known_verdicts.discard(it.intent_id)
            self.duplicates += 1
            return [Duplicate(it)]
        if it.action in ("cancel", "cancel_all"):
            self.ledger.on_intent(it, now_ms)   # a cancel keeps counting the order until the venue confirms
            return [self._approve(it, "cancel")]
        if self.state == "HALTED" or not self.kill_known:
            return [self._veto(it, "halted", f"halted: {self.reason or 'risk:kill unreadable'}")]
        if it.action == "modify":
            return [self._modify(it, now_ms)]
        if not self.limits.enabled:
            veto = self._reducing_veto(it, it.size)   # the rails are off, the trading state is not
            if veto is not None:
                return [veto]
            self._track(it, now_ms)
            return [self._approve(it, "disabled")]
        veto = self._check_place(it, now_ms)
        if veto is not None:
            return [veto]
        self._track(it, now_ms)
        self.budget.take(now_ms, source=it.source)
        return [self._approve(it, "ok")]

    def _modify(self, it: OrderIntent, now_ms: int) -> Approve | Veto:
        """A modify is judged like the order it becomes: same checks, its old size no longer counted."""
        o = self.ledger.get(it.client_order_index)
        if o is None or o.terminal or o.is_ask != it.is_ask:
            return self._veto(it, "invalid", f"invalid: modify of {it.client_order_index}, not a live order on that side")
        if self.limits.enabled:
            veto = self._check_place(it, now_ms, replacing=o.coi, new_lots=it.size - o.filled)
            if veto is not None:
                return veto
            self.budget.take(now_ms, source=it.source)
        else:
            veto = self._reducing_veto(it, it.size - o.filled, o.coi)
            if veto is not None:
                return veto
        self.ledger.on_intent(it, now_ms)   # counts the larger of old and new size until the venue shows it
        return self._approve(it, "ok" if self.limits.enabled else "disabled")

    def _check_place(self, it: OrderIntent, now_ms: int, replacing: int = 0, new_lots: int | None = None) -> Veto | None:
        """Rules for a place, or for a modify of ``replacing`` to ``new_lots`` still to fill."""
        spec, lim, sym, cfg = self.spec, self.limits, self.spec.symbol, self.cfg
        lots = it.size if new_lots is None else new_lots
        if it.market_id != spec.market_id:
            return self._veto(it, "market", f"market: intent for market {it.market_id}, guard runs {spec.market_id}")
        if it.price <= 0 or it.size <= 0 or lots <= 0:
            return self._veto(it, "invalid", f"invalid: price {it.price} size {it.size}")
        if not 0 < it.client_order_index < MAX_COI:
            return self._veto(it, "invalid", f"invalid: client_order_index {it.client_order_index} outside 1..2^48-1")
        if not replacing and self.ledger.get(it.client_order_index) is not None:
            return self._veto(it, "invalid", f"invalid: client_order_index {it.client_order_index} already in use")
        if it.created_ms + it.ttl_ms < now_ms:
            return self._veto(it, "stale", "stale")
        if not self.position_known:
            return self._veto(it, "position", "position: unknown (no account data yet)")
        if it.size < spec.min_base:
            return self._veto(it, "min_size", f"min_size: {human(it.size, spec.size_decimals)} < exchange minimum "
                                              f"{human(spec.min_base, spec.size_decimals)} {sym}")
        if spec.notional_micro(it.price, it.size) < spec.min_quote_micro:
            return self._veto(it, "min_notional", f"min_notional: {human(spec.notional_micro(it.price, it.size), 6)} < "
                                                  f"exchange minimum {human(spec.min_quote_micro, 6)} USDC")
        if self.mid2 is None:
            return self._veto(it, "price_band", "price_band: no mid to judge the price against")
        dev = abs(2 * it.price - self.mid2)
        if dev * 10_000 > Fraction(cfg.max_price_deviation_bps) * self.mid2:
            bps = Fraction(dev * 10_000, self.mid2)
            return self._veto(it, "price_band", f"price_band: {float(bps):.0f} bps from mid {self.mid_human} "
                                                f"(max {human_dec(cfg.max_price_deviation_bps)})")
        book_ms = it.book_ts_ms or self.book_venue_ms
        if book_ms is None or now_ms - book_ms > cfg.max_book_age_ms:
            age = "no book" if book_ms is None else f"book {now_ms - book_ms} ms old"
            return self._veto(it, "book_age", f"book_age: {age} (max {cfg.max_book_age_ms} ms)")
        conflict = self_trade_conflict(it.is_ask, it.price, [o for o in self.own_orders() if o.client_order_index != replacing])
        if conflict is not None:
            return self._veto(it, "self-trade", f"self-trade: crosses our {'ask' if conflict.is_ask else 'bid'} "
                                                f"{conflict.client_order_index} at {conflict.price}")
        pos = self.effective_position
        veto = self._reducing_veto(it, lots, replacing)
        if veto is not None:
            return veto
        if it.is_ask:
            worst = worst_short(pos, self.ledger.exposure(True, exclude=(replacing,)), lots)
            if worst < -lim.max_position_lots and not (it.reduce_only and pos > 0):
                return self._veto(it, "position", f"position: worst short {human(worst, spec.size_decimals)} "
                                                  f"< -{lim.max_position_human} {sym}")
            exposure, side = max(-worst, 0), "short"
        else:
            worst = worst_long(pos, self.ledger.exposure(False, exclude=(replacing,)), lots)
            if worst > lim.max_position_lots and not (it.reduce_only and pos < 0):
                return self._veto(it, "position", f"position: worst long {human(worst, spec.size_decimals)} "
                                                  f"> max {lim.max_position_human} {sym}")
            exposure, side = max(worst, 0), "long"
        n2 = notional2_micro(spec, self.mid2, exposure)
        if n2 > 2 * lim.max_notional_micro and not it.reduce_only:
            return self._veto(it, "notional", f"notional: worst {side} {human(n2 // 2, 6)} "
                                              f"> max {lim.max_notional_human} USDC")
        if self.budget.room(it.source, now_ms) < 1:
            mine = f", {self.budget.used(now_ms, 'maker')} of them the maker's" if it.source == "maker" else ""
            return self._veto(it, "rate", f"rate: {self.budget.used(now_ms)} places/modifies in the last minute{mine} "
                                          f"(budget {self.budget.cap(it.source)} for {it.source})")
        return None

    def _reducing_veto(self, it: OrderIntent, lots: int, replacing: int = 0) -> Veto | None:
        """In REDUCING, only an order that can only shrink the position (the ledger's rule) passes."""
        if self.state != "REDUCING":
            return None
        problem = self.ledger.reduce_problem(it.is_ask, lots, it.reduce_only, exclude=(replacing, it.client_order_index))
        if problem is None:
            return None
        pos = human(self.effective_position, self.spec.size_decimals)
        return self._veto(it, "reducing", f"reducing: only orders that shrink position {pos} {self.spec.symbol}: "
                                          f"{problem} ({self.reason})")

    def _approve(self, it: OrderIntent, reason: str) -> Approve:
        self.approved[reason] = self.approved.get(reason, 0) + 1
        return Approve(it, reason)

    def _veto(self, it: OrderIntent, reason: str, message: str) -> Veto:
        self.vetoed[reason] = self.vetoed.get(reason, 0) + 1
        return Veto(it, reason, message)

    def _track(self, it: OrderIntent, now_ms: int) -> None:
        """An approved place: counted from now on, whatever happens to it, until the venue says it ended."""
        self.ledger.on_intent(it, now_ms)
        self.ledger.approve(it.client_order_index, now_ms)

    # --- state updates ----------------------------------------------------------------------------
    def _on_book(self, b: BookTop, now_ms: int) -> list[Command]:
        if b.market_id != self.spec.market_id or not b.bids or not b.asks:
            return []
        if b.bids[0][0] >= b.asks[0][0]:
            self.crossed = f"crossed book: bid {b.bids[0][0]} >= ask {b.asks[0][0]}"
            return self._evaluate(now_ms)   # a corrupt book gives no mid and no freshness
        self.crossed = None
        self.mid2 = b.bids[0][0] + b.asks[0][0]
        self.last_book_ms = now_ms
        self.book_venue_ms = b.venue_ts_ms
        return self._evaluate(now_ms)
