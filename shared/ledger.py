"""One order truth: the state of every order of our account, fed by every event about it.

Pure (no I/O, no clock): each service holds one ``OrderLedger`` and feeds it, in stream order,
the intents it sees, the guard's verdicts, the gateway's outcomes, the venue's order updates and
fills, positions, and the gateway's REST reconcile snapshots. Every question about an order
(is it open, might it be open, how much may still fill on each side, what is our position) is
answered here and nowhere else.

States of one order (keyed by ``client_order_index``)::

    pending --approve--> approved --ack--> sent --venue open--> open --fill--> partial
       |                    |  \\--unknown--> unknown --(venue open | resolved)--> open/sent
       |                    |                    \\--resolved dropped--> never_sent
       \\--veto--> never_sent \\--reject--> rejected; stale/killed/not_sent --> never_sent
    open/partial/sent/unknown --cancel intent--> pending_cancel --> canceled | filled | expired

Terminal: ``filled``, ``canceled``, ``expired``, ``rejected``, ``never_sent``.

Rules that make it the truth:
- The remaining size comes from the venue (``OrderUpdate.remaining_size``), never from local
  arithmetic: a fill never changes ``remaining`` (the venue's order update does).
- Fills are de-duplicated by trade id, so the WS stream and a reconcile can both report one.
- The position is the venue's last ``Position`` plus the fills with a later venue timestamp.
- A terminal order never comes back from a gateway outcome. An order closed by inference (a
  reconcile that no longer lists it, a cancel refused as "not active") comes back when the venue
  reports it resting; one the venue itself reported ended never does.
- A reconcile closes an order the venue no longer lists once the venue has had ``grace_ms`` to
  show it (orders sent after the snapshot was asked for are not judged, nor orders whose send
  outcome is unknown: only the gateway's evidence settles those).
- Worst-case exposure counts every order that may still fill: pending, approved, sent, unknown,
  open, partial and pending cancel, at the larger of its old and new size while a modify is out.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from shared.ids import source_of
from shared.schemas import Fill, OrderEvent, OrderIntent, OrderUpdate, Position, Reconcile


class State(str, Enum):
    PENDING = "pending"
    APPROVED = "approved"
    SENT = "sent"
    UNKNOWN = "unknown"
    OPEN = "open"
    PARTIAL = "partially_filled"
    PENDING_CANCEL = "pending_cancel"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    NEVER_SENT = "never_sent"


TERMINAL = frozenset({State.FILLED, State.CANCELED, State.EXPIRED, State.REJECTED, State.NEVER_SENT})
RESTING = frozenset({State.OPEN, State.PARTIAL, State.PENDING_CANCEL})
VENUE_LIVE_STATUSES = frozenset({"open", "pending", "in-progress"})
NOT_ACTIVE_CODES = frozenset({21600, 21715})  # a cancel of an order the venue says is not active
COI_EXISTS = 21728        # "client order index already exists": that order of ours *is* at the venue
INFERRED = "inferred: "   # a closure guessed from absence or a refusal; the venue's word on the order overrules it
RECONCILE_GRACE_MS = 3_000    # an order acked this recently may not be listed yet (standard tier: 200 ms)
KEEP_TERMINAL = 2_000         # ended orders remembered (late events map to them instead of creating ghosts)
KEEP_TRADE_IDS = 20_000


def is_terminal_status(status: str) -> bool:
    """Lighter order statuses after which the order no longer rests."""
    return status == "filled" or status.startswith("canceled") or status == "expired"


def _terminal_state(status: str) -> State:
    if status == "filled":
        return State.FILLED
    if status == "expired" or status == "canceled-expired":
        return State.EXPIRED
    return State.CANCELED


@dataclass(slots=True)
class Order:
    """One order as the ledger knows it. ``remaining`` is the venue's word once it has spoken."""

    coi: int
    market_id: int
    is_ask: bool
    price: int
    size: int
    source: str
    state: State
    remaining: int
    filled: int = 0
    reduce_only: bool = False
    intent_id: str = ""
    order_index: int = 0
    created_ms: int = 0
    sent_ms: int | None = None     # when the venue API accepted it (or might have): reconciles judge after this
    updated_ms: int = 0
    venue_status: str = ""
    modify_to: tuple[int, int] | None = None   # (price, size) of a modify not yet seen at the venue
    cancel_attempts: int = 0
    cancel_sent_ms: int = 0
    why: str = ""                  # the last transition's cause, for logs and health

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def exposure(self) -> int:
        """Lots that may still fill: the larger of the live size and a pending modify's size."""
        if self.terminal:
            return 0
        return max(self.remaining, self.modify_to[1] - self.filled if self.modify_to else 0)


@dataclass(frozen=True, slots=True)
class Transition:
    """What changed, for the caller's logs and metrics."""

    coi: int
    before: State | None
    after: State
    why: str


@dataclass(slots=True)
class OrderLedger:
    """Orders and position of one account on one market (``market_id`` -1: every market)."""

    market_id: int = -1
    grace_ms: int = RECONCILE_GRACE_MS
    orders: dict[int, Order] = field(default_factory=dict)
    position: int = 0                   # the venue's last Position (lots)
    position_known: bool = False
    position_ts_ms: int = -1
    unconfirmed: list[tuple[int, int, int]] = field(default_factory=list)  # (ts, trade id, signed lots) after it
    fills_seen: int = 0
    duplicate_fills: int = 0
    ghosts_closed: int = 0
    adopted: int = 0
    last_trade_id: int = 0
    _trade_ids: set[int] = field(default_factory=set)
    _trade_order: deque[int] = field(default_factory=deque)
    _ended: deque[int] = field(default_factory=deque)
    _live: dict[int, Order] = field(default_factory=dict)   # the non-terminal subset of ``orders``

    # --- queries ------------------------------------------------------------------------------------
    def get(self, coi: int) -> Order | None:
        return self.orders.get(coi)

    def live(self, source: str | None = None, market_id: int | None = None) -> Iterator[Order]:
        """Orders that may still rest or fill (every non-terminal state); the hot path, so it walks
        only those, not the ended orders kept for late events."""
        for o in list(self._live.values()):
            if (source is None or o.source == source) and (market_id is None or o.market_id == market_id):
                yield o

    def knows_trade(self, trade_id: int) -> bool:
        return trade_id in self._trade_ids

    def open_orders(self, source: str | None = None) -> list[Order]:
        """Orders the venue says rest (open, partially filled, or being cancelled)."""
        return [o for o in self.live(source) if o.state in RESTING]

    def maybe_open(self, source: str | None = None) -> list[Order]:
        """Orders that might rest although the venue has not said so (sent, unknown, approved)."""
        return [o for o in self.live(source) if o.state not in RESTING]

    def exposure(self, is_ask: bool, source: str | None = None, exclude: Iterable[int] = ()) -> int:
        """Worst-case lots that may still fill on one side, counting pending and unknown orders."""
        skip = set(exclude)
        return sum(o.exposure for o in self.live(source) if o.is_ask == is_ask and o.coi not in skip)

    def reduce_problem(self, is_ask: bool, lots: int, reduce_only: bool, exclude: Iterable[int] = ()) -> str | None:
        """Why an order of ``lots`` on side ``is_ask`` could grow the position or flip it (None: it can only
        shrink it), counting everything else that may fill on that side, in any order of fills.

        A plain order must fit with everything else on its side. A reduce-only order is capped by the
        venue at the position when it fills, so only the plain orders beside it can push it through zero.
        """
        pos = self.effective_position
        if not self.position_known or pos == 0 or is_ask != (pos > 0):
            return "on the adding side" if self.position_known else "position unknown"
        skip = set(exclude)
        same = [o for o in self.live() if o.is_ask == is_ask and o.coi not in skip]
        counted = sum(o.exposure for o in same if not (reduce_only and o.reduce_only))
        if lots > abs(pos) or counted + lots > abs(pos):
            return f"{lots} on top of {counted} open on that side would flip the position {pos}"
        return None

    @property
    def effective_position(self) -> int:
        """The venue's last position plus the fills it reported after it (separate channels, any order)."""
        return self.position + sum(lots for _, _, lots in self.unconfirmed)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.orders.values():
            out[o.state.value] = out.get(o.state.value, 0) + 1
        return out

    def summary(self, source: str | None = None) -> dict[str, object]:
        """JSON-able view for /health (operators and the chaos test compare it with the venue)."""
        return {
            "position": self.effective_position,
            "position_known": self.position_known,
            "open": sorted(o.coi for o in self.open_orders(source)),
            "maybe_open": sorted(o.coi for o in self.maybe_open(source)),
            "exposure_bid": self.exposure(False, source),
            "exposure_ask": self.exposure(True, source),
            "states": self.counts(),
            "fills": self.fills_seen,
            "duplicate_fills": self.duplicate_fills,
            "ghosts_closed": self.ghosts_closed,
            "adopted": self.adopted,
        }

    # --- feeding ------------------------------------------------------------------------------------
    def _mine(self, market_id: int) -> bool:
        return self.market_id == -1 or market_id in (self.market_id, -1)

    def _set(self, o: Order, state: State, why: str, now_ms: int) -> Transition | None:
        if o.state == state:
            return None
        before = o.state
        o.state, o.why, o.updated_ms = state, why, now_ms
        if state not in TERMINAL:
            self._live[o.coi] = o   # new, or back from an inferred end
        else:
            self._live.pop(o.coi, None)
            o.remaining, o.modify_to = 0, None
            self._ended.append(o.coi)
            while len(self._ended) > KEEP_TERMINAL:
                old = self._ended.popleft()
                gone = self.orders.get(old)
                if gone is not None and gone.terminal:
                    del self.orders[old]
        return Transition(o.coi, before, state, why)

    def on_intent(self, it: OrderIntent, now_ms: int) -> list[Transition]:
        """An intent was published (by us, or seen on ``orders:intents`` by the guard)."""
        if not self._mine(it.market_id):
            return []
        if it.action == "place":
            if it.client_order_index in self.orders:
                return []
            o = Order(it.client_order_index, it.market_id, it.is_ask, it.price, it.size, it.source, State.PENDING,
                      remaining=it.size, reduce_only=it.reduce_only, intent_id=it.intent_id, created_ms=now_ms,
                      updated_ms=now_ms)
            self.orders[o.coi] = self._live[o.coi] = o
            return [Transition(o.coi, None, State.PENDING, "intent")]
        o = self.orders.get(it.client_order_index)
        if o is None or o.terminal:
            return []
        if it.action == "cancel":
            if o.cancel_sent_ms != now_ms or o.cancel_attempts == 0:
                o.cancel_attempts += 1
            o.cancel_sent_ms = now_ms
            if o.state in (State.PENDING, State.APPROVED):
                return []   # not at the venue yet: the place's own outcome decides, the cancel follows it
            t = self._set(o, State.PENDING_CANCEL, "cancel sent", now_ms)
            return [t] if t else []
        if it.action == "modify":
            o.modify_to = (it.price, it.size)
        return []

    def placed(self, coi: int, market_id: int, is_ask: bool, price: int, size: int, source: str, intent_id: str,
               now_ms: int, reduce_only: bool = False) -> None:
        """A producer's own place, recorded as it is published (the same as seeing its intent)."""
        self.on_intent(OrderIntent(intent_id=intent_id, source=source, action="place", market_id=market_id,  # type: ignore[arg-type]
                                   client_order_index=coi, is_ask=is_ask, price=price, size=size,
                                   reduce_only=reduce_only, created_ms=now_ms), now_ms)

    def cancel_sent(self, coi: int, now_ms: int) -> None:
        """A producer's own cancel of ``coi``, recorded as it is published."""
        o = self.orders.get(coi)
        if o is not None:
            self.on_intent(OrderIntent(intent_id=f"cancel-{coi}", source="operator", action="cancel",
                                       market_id=o.market_id, client_order_index=coi, created_ms=now_ms), now_ms)

    def modify_sent(self, coi: int, price: int, size: int, now_ms: int) -> None:
        """A producer's own modify of ``coi`` to ``price`` and total ``size``, recorded as it is published."""
        o = self.orders.get(coi)
        if o is not None:
            self.on_intent(OrderIntent(intent_id=f"modify-{coi}", source="operator", action="modify",
                                       market_id=o.market_id, client_order_index=coi, is_ask=o.is_ask, price=price,
                                       size=size, created_ms=now_ms), now_ms)

    def on_event(self, e: OrderEvent, now_ms: int) -> list[Transition]:
        """A verdict (guard) or an outcome (gateway) on ``orders:events``."""
        if not self._mine(e.market_id) or e.kind == "fill":
            return []   # fills come from the account stream, with trade ids
        o = self.orders.get(e.client_order_index)
        if o is None or (e.source in ("maker", "hedger", "operator") and o.source in ("maker", "hedger", "operator")
                         and e.source != o.source):
            return []
        t: Transition | None = None
        if e.action == "place":
            if o.terminal:
                return []
            if e.kind == "ack":
                o.sent_ms = e.ts_ms
                if o.state in (State.PENDING, State.APPROVED, State.UNKNOWN):
                    t = self._set(o, State.SENT, "accepted by the venue", now_ms)
            elif e.kind == "unknown":
                o.sent_ms = e.ts_ms
                if o.state in (State.PENDING, State.APPROVED, State.SENT):
                    t = self._set(o, State.UNKNOWN, f"outcome unknown: {e.message}", now_ms)
            elif e.kind == "resolved":
                if e.message.startswith("dropped") and o.state not in RESTING:   # the venue's word wins
                    t = self._set(o, State.NEVER_SENT, f"resolved: {e.message}", now_ms)
                elif o.state == State.UNKNOWN:
                    t = self._set(o, State.SENT, f"resolved: {e.message}", now_ms)
            elif e.kind == "reject" and e.code == COI_EXISTS:
                if o.state in (State.PENDING, State.APPROVED, State.UNKNOWN):
                    t = self._set(o, State.SENT, f"reject {e.code}: the order is at the venue already", now_ms)
            elif e.kind == "reject":
                t = self._set(o, State.REJECTED, f"reject {e.code}: {e.message}", now_ms)
            elif e.kind in ("veto", "stale", "killed", "not_sent"):
                if o.state in (State.PENDING, State.APPROVED):
                    t = self._set(o, State.NEVER_SENT, f"{e.kind}: {e.message}", now_ms)
            elif e.kind == "canceled":
                t = self._set(o, State.CANCELED, e.message or "canceled", now_ms)
        elif e.action == "cancel":
            if e.kind == "reject" and e.code in NOT_ACTIVE_CODES and o.state not in (State.PENDING, State.APPROVED):
                t = self._set(o, State.CANCELED, f"{INFERRED}cancel refused {e.code}: not active at the venue", now_ms)
            elif e.kind in ("veto", "stale", "killed", "not_sent", "reject") and o.state == State.PENDING_CANCEL:
                back = State.PARTIAL if o.filled else State.OPEN
                t = self._set(o, back, f"cancel {e.kind}: {e.message}", now_ms)
        elif e.action == "modify":
            if e.kind in ("reject", "veto", "stale", "killed", "not_sent"):
                o.modify_to = None
        return [t] if t else []

    def approve(self, coi: int, now_ms: int) -> list[Transition]:
        """The guard approved a place (its own verdict; other services learn it from the ack)."""
        o = self.orders.get(coi)
        if o is None or o.state != State.PENDING:
            return []
        t = self._set(o, State.APPROVED, "approved", now_ms)
        return [t] if t else []

    def on_order(self, u: OrderUpdate, now_ms: int) -> list[Transition]:
        """The venue's word on one order: its status and remaining size are the truth."""
        if not self._mine(u.market_id):
            return []
        o = self.orders.get(u.client_order_index)
        if o is None:
            if is_terminal_status(u.status) or u.client_order_index <= 0:
                return []
            o = Order(u.client_order_index, u.market_id, u.is_ask, u.price, u.initial_size,
                      source_of(u.client_order_index) or "foreign", State.SENT, remaining=u.remaining_size,
                      reduce_only=u.reduce_only, order_index=u.order_index, created_ms=now_ms, sent_ms=u.ts_ms)
            self.orders[o.coi] = self._live[o.coi] = o
            self.adopted += 1
        elif o.terminal and not (o.why.startswith(INFERRED) and u.status in VENUE_LIVE_STATUSES):
            return []   # an ended order stays ended (a late frame of its past); only an inference yields
        o.order_index = u.order_index or o.order_index
        o.venue_status, o.filled = u.status, max(o.filled, u.filled_size)
        if is_terminal_status(u.status):
            t = self._set(o, _terminal_state(u.status), u.status, now_ms)
            return [t] if t else []
        o.price, o.size, o.remaining = u.price, u.initial_size, u.remaining_size
        if o.modify_to is not None and o.modify_to == (u.price, u.remaining_size + u.filled_size):
            o.modify_to = None
        if o.sent_ms is None:
            o.sent_ms = u.ts_ms
        if u.remaining_size <= 0:
            t = self._set(o, State.FILLED, "nothing left", now_ms)
        elif o.state == State.PENDING_CANCEL:
            t = None
        else:
            t = self._set(o, State.PARTIAL if u.filled_size > 0 else State.OPEN, u.status, now_ms)
        return [t] if t else []

    def on_fill(self, f: Fill, now_ms: int) -> bool:
        """Count a fill once (by trade id); False if it was seen already or is for another market."""
        if not self._mine(f.market_id):
            return False
        if f.trade_id in self._trade_ids:
            self.duplicate_fills += 1
            return False
        self._trade_ids.add(f.trade_id)
        self._trade_order.append(f.trade_id)
        if len(self._trade_order) > KEEP_TRADE_IDS:
            self._trade_ids.discard(self._trade_order.popleft())
        self.fills_seen += 1
        self.last_trade_id = max(self.last_trade_id, f.trade_id)
        if f.ts_ms > self.position_ts_ms:
            self.unconfirmed.append((f.ts_ms, f.trade_id, -f.size if f.is_ask else f.size))
        return True

    def on_position(self, p: Position, now_ms: int) -> None:
        if not self._mine(p.market_id) or p.ts_ms < self.position_ts_ms:
            return
        self.position, self.position_known = p.position, True
        self.position_ts_ms = p.ts_ms
        self.unconfirmed = [x for x in self.unconfirmed if x[0] > p.ts_ms]

    def on_reconcile(self, r: Reconcile, now_ms: int) -> list[Transition]:
        """The venue's REST snapshot: adopt what it lists, close what it no longer has, count missed fills."""
        out: list[Transition] = []
        for f in r.fills:
            self.on_fill(f, now_ms)
        for p in r.positions:
            self.on_position(p, now_ms)
        listed: set[int] = set()
        for u in r.orders:
            if not self._mine(u.market_id):
                continue
            listed.add(u.client_order_index)
            out += self.on_order(u, now_ms)
        if not r.complete:
            return out
        for o in list(self.live()):
            if o.coi in listed or (r.markets and o.market_id not in r.markets):
                continue
            if o.state in (State.PENDING, State.APPROVED, State.UNKNOWN):
                continue   # the gateway has not spoken yet, or its nonce is in doubt: its evidence settles these
            if o.sent_ms is None or o.sent_ms > r.as_of_ms - self.grace_ms:
                continue   # too recent for the venue to list it yet
            t = self._set(o, State.CANCELED, f"{INFERRED}reconcile: not at the venue", now_ms)
            if t:
                self.ghosts_closed += 1
                out.append(t)
        return out

    def handle(self, msg: object, now_ms: int) -> list[Transition]:
        """Dispatch any stream message the ledger cares about."""
        if isinstance(msg, OrderUpdate):
            return self.on_order(msg, now_ms)
        if isinstance(msg, Fill):
            self.on_fill(msg, now_ms)
            return []
        if isinstance(msg, Position):
            self.on_position(msg, now_ms)
            return []
        if isinstance(msg, Reconcile):
            return self.on_reconcile(msg, now_ms)
        if isinstance(msg, OrderEvent):
            return self.on_event(msg, now_ms)
        if isinstance(msg, OrderIntent):
            return self.on_intent(msg, now_ms)
        return []
