"""The guard's pure decision core: the last word on every order intent.

State: an ``OrderLedger`` (the one order truth: our position, resting orders, places approved and
not yet seen at the venue, orders whose send outcome is unknown, each side's worst case), the mid
and the kill flag. ``handle(event, now_ms)`` returns commands (approve, veto, trip the kill flag)
and never does I/O, reads a clock or draws random numbers, so every rule is unit-testable and a
recorded stream replays deterministically.

Rules for a ``place`` (in this order; ``cancel``/``cancel_all`` are always approved):
 1. kill flag set (or unreadable) -> veto ``kill: <reason>``; this holds even with ``guard.enabled: false``;
 2. ``guard.enabled: false`` -> approve everything else (the guard rails are off);
 3. wrong market, non-positive price/size, reused client_order_index -> veto ``market``/``invalid``;
 4. ``created_ms + ttl_ms < now`` -> veto ``stale``;
 5. crosses one of our own orders on the other side (resting or approved in flight) -> ``self-trade``;
 6. worst-case position counting resting and in-flight orders beyond ``guard.max_position_units``
    -> ``position`` (an order that reduces an over-limit position passes);
 7. the same worst case x mid (order price without a mid) above ``guard.max_inventory_notional``
    -> ``notional``.
A limit breached by the *actual* position trips the kill flag once per breach episode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from shared.config import Settings
from shared.ledger import OrderLedger
from shared.markets import MarketSpec, round_down
from shared.schemas import BookTop, Fill, Msg, OrderEvent, OrderIntent, OrderUpdate, Position, Reconcile

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

__all__ = [
    "Approve", "Command", "Duplicate", "GuardCore", "GuardLimits", "KillState", "OwnOrder", "Recovered",
    "Replayed", "SetKill", "Veto", "self_trade_conflict", "would_self_trade",
]

KNOWN_VERDICTS_KEEP_MS = 600_000    # verdicts found at recovery are forgotten after this


# --- events the shell feeds in besides shared.schemas messages -------------------------------------
@dataclass(frozen=True, slots=True)
class KillState:
    """The value of ``risk:kill`` read just before a verdict batch; ``readable=False`` fails closed."""

    reason: str | None
    readable: bool = True


@dataclass(frozen=True, slots=True)
class Replayed:
    """An intent this guard approved before a restart (from ``orders:approved``): counts as in flight."""

    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class Recovered:
    """End of start-up replay: intents that already got a verdict (not to be judged twice)."""

    known_verdicts: frozenset[str] = frozenset()


Event = Msg | KillState | Replayed | Recovered


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


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A redelivered intent whose verdict was already published: acknowledge, publish nothing."""

    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class SetKill:
    """Halt trading: ``SET risk:kill <reason> NX`` (an operator's reason is never overwritten)."""

    reason: str


Command = Approve | Veto | Duplicate | SetKill


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The ``guard.*`` config in venue units (rounded down: a limit is never loosened by rounding)."""

    enabled: bool
    max_position_lots: int
    max_notional_micro: int
    max_position_human: str = ""
    max_notional_human: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> "GuardLimits":
        g, dec = settings.guard, settings.market.size_decimals
        return cls.build(g.enabled, g.max_position_units, g.max_inventory_notional, dec)

    @classmethod
    def build(cls, enabled: bool, max_position_units: Decimal, max_notional: Decimal, size_decimals: int) -> "GuardLimits":
        return cls(enabled, round_down(max_position_units, size_decimals), round_down(max_notional, 6),
                   human_dec(max_position_units), human_dec(max_notional))


@dataclass(slots=True)
class GuardCore:
    """State plus rules for one market. Feed it events in stream order; carry out what it returns."""

    spec: MarketSpec
    limits: GuardLimits
    ledger: OrderLedger = field(default_factory=OrderLedger)
    mid2: int | None = None                 # 2 x mid in ticks (a mid may fall on half a tick)
    kill: str | None = None
    kill_known: bool = False                # False until the first readable KillState: fail closed
    breached: bool = False                  # inside a breach episode (the kill flag trips on entry)
    known_verdicts: set[str] = field(default_factory=set)
    known_until_ms: int = 0
    approved: dict[str, int] = field(default_factory=dict)
    vetoed: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    fills: int = 0
    kill_trips: int = 0
    last_intent_ms: int | None = None
    last_book_ms: int | None = None
    last_account_ms: int | None = None
    last_fill_ms: int | None = None

    def __post_init__(self) -> None:
        self.ledger.market_id = self.spec.market_id

    # --- entry points -----------------------------------------------------------------------------
    def handle(self, event: Event, now_ms: int) -> list[Command]:
        """Apply one event; return what the shell must do."""
        if isinstance(event, OrderIntent):
            self.on_timer(now_ms)
            return self._verdict(event, now_ms)
        if isinstance(event, KillState):
            self.kill, self.kill_known = (event.reason, True) if event.readable else (None, False)
            return []
        if isinstance(event, BookTop):
            return self._on_book(event, now_ms)
        if isinstance(event, (Position, OrderUpdate, Fill, Reconcile)):
            if getattr(event, "market_id", self.spec.market_id) not in (self.spec.market_id, -1):
                return []
            self.last_account_ms = now_ms
            if isinstance(event, Fill):
                if not self.ledger.on_fill(event, now_ms):
                    return []
                self.fills += 1
                self.last_fill_ms = now_ms
            else:
                self.ledger.handle(event, now_ms)
            return self._check_breach()
        if isinstance(event, OrderEvent):
            if event.kind != "veto":   # our own vetoes were applied when made
                self.ledger.on_event(event, now_ms)
            return []
        if isinstance(event, Replayed):
            self._track(event.intent, now_ms)
            return []
        if isinstance(event, Recovered):
            self.known_verdicts = set(event.known_verdicts)
            self.known_until_ms = now_ms + KNOWN_VERDICTS_KEEP_MS
            self.breached = False  # a breach still present after a restart trips again
            return self._check_breach()
        return []

    def on_timer(self, now_ms: int) -> list[Command]:
        """Forget old recovery data. Orders are never forgotten by age: only the venue (an update or a
        reconcile) ends an order; until then it counts (over-counting vetoes, under-counting breaches)."""
        if self.known_verdicts and now_ms > self.known_until_ms:
            self.known_verdicts.clear()
        return []

    # --- derived state (all of it the ledger's) ---------------------------------------------------
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

    def open_lots(self, is_ask: bool) -> int:
        """Lots on one side that may still fill: resting, pending cancel, approved, sent or unknown."""
        return self.ledger.exposure(is_ask)

    def own_orders(self) -> list[OwnOrder]:
        return [OwnOrder(o.coi, o.is_ask, o.price, o.exposure) for o in self.ledger.live()]

    @property
    def mid_human(self) -> str | None:
        return None if self.mid2 is None else human_px2(self.mid2, self.spec.price_decimals)

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
        if not self.kill_known:
            return [self._veto(it, "kill", "kill: risk:kill unreadable")]
        if self.kill is not None:
            return [self._veto(it, "kill", f"kill: {self.kill}")]
        if it.action == "modify":
            return [self._modify(it, now_ms)]
        if not self.limits.enabled:
            self._track(it, now_ms)
            return [self._approve(it, "disabled")]
        veto = self._check_place(it, now_ms)
        if veto is not None:
            return [veto]
        self._track(it, now_ms)
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
        self.ledger.on_intent(it, now_ms)   # counts the larger of old and new size until the venue shows it
        return self._approve(it, "ok" if self.limits.enabled else "disabled")

    def _check_place(self, it: OrderIntent, now_ms: int, replacing: int = 0, new_lots: int | None = None) -> Veto | None:
        """Rules for a place, or for a modify of ``replacing`` to ``new_lots`` still to fill."""
        spec, lim, sym = self.spec, self.limits, self.spec.symbol
        lots = it.size if new_lots is None else new_lots
        if it.market_id != spec.market_id:
            return self._veto(it, "market", f"market: intent for market {it.market_id}, guard runs {spec.market_id}")
        if it.price <= 0 or it.size <= 0 or lots <= 0:
            return self._veto(it, "invalid", f"invalid: price {it.price} size {it.size}")
        if not replacing and self.ledger.get(it.client_order_index) is not None:
            return self._veto(it, "invalid", f"invalid: client_order_index {it.client_order_index} already in use")
        if it.created_ms + it.ttl_ms < now_ms:
            return self._veto(it, "stale", "stale")
        if not self.position_known:
            return self._veto(it, "position", "position: unknown (no account data yet)")
        if would_self_trade(it.is_ask, it.price, [o for o in self.own_orders() if o.client_order_index != replacing]):
            return self._veto(it, "self-trade", "self-trade")
        if it.is_ask:
            worst = worst_short(self.effective_position, self.ledger.exposure(True, exclude=(replacing,)), lots)
            if worst < -lim.max_position_lots:
                return self._veto(it, "position", f"position: worst short {human(worst, spec.size_decimals)} "
                                                  f"< -{lim.max_position_human} {sym}")
            exposure, side = max(-worst, 0), "short"
        else:
            worst = worst_long(self.effective_position, self.ledger.exposure(False, exclude=(replacing,)), lots)
            if worst > lim.max_position_lots:
                return self._veto(it, "position", f"position: worst long {human(worst, spec.size_decimals)} "
                                                  f"> max {lim.max_position_human} {sym}")
            exposure, side = max(worst, 0), "long"
        px2 = self.mid2 if self.mid2 is not None else 2 * it.price
        n2 = notional2_micro(spec, px2, exposure)
        if n2 > 2 * lim.max_notional_micro:
            return self._veto(it, "notional", f"notional: worst {side} {human(n2 // 2, 6)} "
                                              f"> max {lim.max_notional_human} USDC")
        return None

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
        self.mid2 = b.bids[0][0] + b.asks[0][0]
        self.last_book_ms = now_ms
        return self._check_breach()

    # --- kill trip --------------------------------------------------------------------------------
    def breach_reason(self) -> str | None:
        """Why the actual position breaches a limit, in human units; None when within limits."""
        spec, lim, sym = self.spec, self.limits, self.spec.symbol
        pos = self.effective_position
        if pos > lim.max_position_lots:
            return f"guard: position {human(pos, spec.size_decimals)} > max {lim.max_position_human} {sym}"
        if -pos > lim.max_position_lots:
            return f"guard: position {human(pos, spec.size_decimals)} < -max {lim.max_position_human} {sym}"
        if self.mid2 is not None:
            n2 = notional2_micro(spec, self.mid2, pos)
            if n2 > 2 * lim.max_notional_micro:
                return (f"guard: notional {human(n2 // 2, 6)} > max {lim.max_notional_human} USDC "
                        f"(position {human(pos, spec.size_decimals)} {sym} @ {self.mid_human})")
        return None

    def _check_breach(self) -> list[Command]:
        if not self.limits.enabled:
            return []
        reason = self.breach_reason()
        if reason is None:
            self.breached = False
            return []
        if self.breached:
            return []
        self.breached = True
        self.kill_trips += 1
        return [SetKill(reason)]
