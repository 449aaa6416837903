"""The gateway's decisions, pure: which intents go to the venue, when, in which batch, on which nonce.

No asyncio, no Redis, no clock: the shell feeds events (an intent with its journal record, a
kill-flag and heartbeat read, the venue's answer to a batch, a nonce read, a reconcile) with
``now_ms`` and carries out the returned commands in order.

Rules it enforces:
- *Exactly once.* Every intent has a journal record (``gw:intent:{id}``) written before any
  network call, and read on intake: an intent the journal knows is never signed again. Its
  recorded outcome is published again (the crash came between send and ack), or, if the record
  stops at "sending", the outcome is unknown and is resolved by evidence.
- *Unknown outcomes are resolved by evidence, never by sending again.* A timeout, a 5xx or a
  dropped connection leave the lane's nonce in doubt: the lane is blocked (nothing else is signed
  on it) until ``nextNonce`` shows the tx consumed (it executed), its ``ExpiredAt`` passed (it was
  dropped), or a superseding tx took that very nonce (accepted: the doubtful tx can never execute;
  refused "invalid nonce": it did). The superseding tx is the one tx allowed on a nonce in doubt,
  because whichever of the two the venue takes, nothing executes twice. It changes nothing at
  the venue (the dead-man's re-arm, or an abort when the switch is off) and is sent after
  ``unknown_wait_ms``; killed or stopping, it is the cancel-all that is due anyway, sent at once.
- *Batches.* Ready txs leave in one ``sendTxBatch`` per lane (at most ``MAX_BATCH``), in intent
  order; a cancel never overtakes the place it cancels, on any lane. The nonce advances only
  when the venue accepted the batch. A refused batch is retried tx by tx, so one bad place
  never blocks a cancel. Several API keys are several lanes, each with its own nonce.
- *Risk first on a spent budget.* After a 429 (the standard tier allows 60 requests a minute,
  cancels included) and until the venue accepts a tx again, the lane sends one tx at a time,
  chosen by what it does for risk: cancels and the gateway's own txs, then hedges and operator
  orders, then maker quotes; per order, intent order still holds. Quotes waiting behind the
  budget rot (``ttl_ms``); a hedge that reduces the position does not wait behind them.
- *Fail closed.* Places go out only while the kill flag was read and found absent, the lease is
  ours, start-up reconciliation is done and the gateway is not stopping. Cancels always may.
- *Quotes rot.* A place older than ``created_ms + ttl_ms`` is ``stale`` and never sent. A cancel
  of an order the ledger knows has ended is dropped (``stale``, "already ended"), not sent.
- *Dead-man's switch.* A scheduled cancel-all is kept armed at now + ``dead_man_ms`` (re-armed
  every ``dead_man_rearm_ms``) and aborted on a clean stop; if the maker's or the feed's
  heartbeat is older than ``heartbeat_timeout_ms`` the maker's quotes are cancelled.
"""
from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, Union

from shared.ids import source_of
from shared.ledger import INFERRED, Order, OrderLedger, State
from shared.schemas import AccountGap, Fill, OrderEvent, OrderIntent, OrderUpdate, Position, Reconcile, Trace

from . import txs
from .replies import SendResult
from .txs import SignRequest

KillState = Literal["unknown", "set", "clear"]
MAX_BATCH = 15                   # Lighter's sendTxBatch limit (current docs)
VERIFY_AFTER_CANCEL_MS = 300     # look at the venue's open orders this long after a kill cancel-all was accepted
VERIFY_WHILE_KILLED_MS = 5_000   # and keep looking this often while the kill flag stays set
TOKEN_RETRY_MS = 5_000
NONCE_RETRY_MS = 500
LANE_CHECK_MS = 1_000            # how often a lane in doubt asks nextNonce
MAX_BACKOFF_MS = 2_000
RATE_BACKOFF_MIN_MS = 250        # first wait after a 429; doubles up to MAX_BACKOFF_MS, reset by an accepted tx
RECONCILE_RETRY_MS = 2_000
RECONCILE_LOOKBACK_MS = 600_000  # ended orders and fills a start-up reconcile asks for (later ones: since the last)
MAX_QUEUE = 200                  # the send queue is bounded: places beyond it are refused (cancels never)
MAX_LIVE = 10_000


@dataclass(frozen=True, slots=True)
class Limits:
    """The gateway's timing, from ``gateway.*`` config (ms)."""

    order_expiry_ms: int = 300_000
    auth_token_ttl_s: int = 3600
    reconcile_every_ms: int = 30_000
    dead_man_ms: int = 310_000         # Lighter refuses a scheduled cancel-all less than 5 min ahead
    dead_man_rearm_ms: int = 60_000
    heartbeat_timeout_ms: int = 3_000
    unknown_wait_ms: int = 10_000
    cancel_on_start: bool = False
    watch: tuple[str, ...] = ("maker", "feed")


# --- what the gateway sends -------------------------------------------------------------------------
Schedule = Literal["now", "arm", "abort"]


@dataclass(frozen=True, slots=True)
class Tx:
    """One transaction. ``intent`` is None for the gateway's own txs (cancel-alls, dead-man arm or
    abort, quote cancels on a lost heartbeat), whose ``reason`` names why."""

    action: Literal["place", "cancel", "modify", "cancel_all"]
    market_id: int
    intent: OrderIntent | None = None
    entry_id: str | None = None
    reason: str = ""
    attempt: int = 0
    schedule: Schedule = "now"
    coi: int = 0                     # the order a gateway-made cancel names
    solo: bool = False               # resend alone (its batch was refused)

    @property
    def order_coi(self) -> int:
        return self.intent.client_order_index if self.intent is not None else self.coi


def _risk_rank(tx: Tx) -> int:
    """0: a cancel or the gateway's own tx (frees exposure); 1: a hedge's or an operator's order;
    2: a maker quote (the one thing that may wait: it is requoted anyway)."""
    if tx.intent is None or tx.action in ("cancel", "cancel_all"):
        return 0
    return 2 if tx.intent.source == "maker" else 1


@dataclass(frozen=True, slots=True)
class Batch:
    lane: int
    txs: tuple[Tx, ...]
    first_nonce: int
    supersede: bool = False          # a cancel-all on a nonce in doubt


@dataclass(slots=True)
class Doubt:
    """Txs whose outcome is unknown: ``nonces[i]`` was maybe consumed by ``txs[i]``. ``floor`` is the
    first nonce of their batch (a replayed doubt knows only the journaled txs; the gateway's own txs
    in the same batch, not journaled, sit below them)."""

    txs: list[Tx]
    nonces: list[int]
    expired_at_ms: int
    since_ms: int
    superseding: bool = False
    floor: int | None = None

    @property
    def first(self) -> int:
        return min(self.nonces[0], self.floor if self.floor is not None else self.nonces[0])


@dataclass(slots=True)
class Lane:
    """One API key: one nonce sequence, one batch in flight at a time."""

    key_index: int
    nonce: int | None = None
    in_flight: Batch | None = None
    doubt: Doubt | None = None
    retry_at_ms: int = 0
    rate_backoff_ms: int = 0
    check_at_ms: int = 0
    fetching: bool = False


# --- events (inputs) --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IntentIn:
    """An approved intent and its journal record (None: never seen by any gateway)."""

    intent: OrderIntent
    entry_id: str
    journal: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class AccountIn:
    msg: OrderUpdate | Fill | Position | AccountGap | Reconcile


@dataclass(frozen=True, slots=True)
class KillRead:
    """The value of ``risk:kill`` (None = absent); ``readable`` False when Redis could not be asked.
    ``heartbeats`` maps a watched service to its last heartbeat (ms; None = no key)."""

    value: str | None
    readable: bool = True
    heartbeats: tuple[tuple[str, int | None], ...] = ()
    state: str | None = "ACTIVE"   # ``risk:state`` as read (the shell passes None when the key is missing)


@dataclass(frozen=True, slots=True)
class LeaseRead:
    held: bool
    holder: str = ""


@dataclass(frozen=True, slots=True)
class SenderReady:
    """The sender is free: hand it the next batch (or a nonce fetch)."""


@dataclass(frozen=True, slots=True)
class NonceFetched:
    lane: int
    nonce: int


@dataclass(frozen=True, slots=True)
class NonceFailed:
    lane: int
    reason: str


@dataclass(frozen=True, slots=True)
class BatchDone:
    """The venue answered (or did not) a signed batch; stamps are ``time.time_ns()``."""

    batch: Batch
    result: SendResult
    tx_hashes: tuple[str, ...]
    expired_at_ms: int
    signed_ns: int = 0
    sent_ns: int = 0


@dataclass(frozen=True, slots=True)
class BatchNotSent:
    """The batch never left (signer error, Redis write failed, lease lost, kill seen at send):
    its nonces are still free. ``kill`` carries the flag's value when that was the reason."""

    batch: Batch
    reason: str
    kill: str | None = None


@dataclass(frozen=True, slots=True)
class LaneChecked:
    """``nextNonce`` of a lane in doubt."""

    lane: int
    next_nonce: int


@dataclass(frozen=True, slots=True)
class ReconcileDone:
    snapshot: Reconcile


@dataclass(frozen=True, slots=True)
class ReconcileFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class ActiveOrders:
    count: int


@dataclass(frozen=True, slots=True)
class ActiveOrdersFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class TokenMinted:
    pass


@dataclass(frozen=True, slots=True)
class TokenFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class Stopping:
    pass


Event = Union[IntentIn, AccountIn, KillRead, LeaseRead, SenderReady, NonceFetched, NonceFailed, BatchDone,
              BatchNotSent, LaneChecked, ReconcileDone, ReconcileFailed, ActiveOrders, ActiveOrdersFailed,
              TokenMinted, TokenFailed, Stopping]


# --- commands (outputs) -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Publish:
    event: OrderEvent


@dataclass(frozen=True, slots=True)
class Ack:
    """XACK the intent entry: its outcome has been published."""

    entry_id: str


@dataclass(frozen=True, slots=True)
class Journal:
    """HSET ``gw:intent:{intent_id}`` fields (the outcome of an intent, before it is published)."""

    intent_id: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class ForgetOpen:
    client_order_index: int


@dataclass(frozen=True, slots=True)
class ClearOpen:
    """Every order the ``gw:open`` hash named has just been cancelled by a start-up cancel-all."""


@dataclass(frozen=True, slots=True)
class FetchNonce:
    lane: int


@dataclass(frozen=True, slots=True)
class SendBatch:
    """Sign ``requests`` on ``batch.lane`` from ``batch.first_nonce``; claim the journal records,
    ``gw:open`` and the lease and re-read the kill flag in one round trip; then send."""

    batch: Batch
    requests: tuple[SignRequest, ...]


@dataclass(frozen=True, slots=True)
class CheckLane:
    lane: int


@dataclass(frozen=True, slots=True)
class FetchReconcile:
    reason: str
    since_ms: int
    after_trade_id: int


@dataclass(frozen=True, slots=True)
class PublishAccount:
    """XADD a reconcile snapshot to the account stream (every ledger applies it)."""

    msg: Reconcile


@dataclass(frozen=True, slots=True)
class CheckActiveOrders:
    pass


@dataclass(frozen=True, slots=True)
class MintAuthToken:
    ttl_s: int


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    level: Literal["info", "warning"] = "info"


Command = Union[Publish, Ack, Journal, ForgetOpen, ClearOpen, FetchNonce, SendBatch, CheckLane, FetchReconcile,
                PublishAccount, CheckActiveOrders, MintAuthToken, Note]


@dataclass(slots=True)
class Stats:
    """Counters and last-event times (ms) for health output."""

    acks: int = 0
    rejects: Counter[int] = field(default_factory=Counter)
    stale: int = 0
    killed: int = 0
    not_sent: int = 0
    unknown: int = 0
    resolved: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    duplicates: int = 0
    replayed: int = 0
    fills: int = 0
    canceled: int = 0
    cancel_alls: int = 0
    batches: int = 0
    batch_txs: int = 0
    nonce_resyncs: int = 0
    reconciles: int = 0
    reconcile_failures: int = 0
    dropped_cancels: int = 0
    heartbeat_cancels: int = 0
    volume_quota_remaining: int | None = None   # the venue's last word on it (premium; None = never said)
    dead_man_arms: int = 0
    queue_full: int = 0
    rate_limited: int = 0          # batches the venue refused with 429 (retried after a back-off)
    venue_open_orders: int | None = None   # as the venue answered at the last reconcile or open-orders check
    venue_open_orders_ms: int | None = None
    last_intent_ms: int | None = None
    last_account_ms: int | None = None
    last_kill_read_ms: int | None = None
    last_send_ms: int | None = None
    last_reconcile_ms: int | None = None
    dead_man_armed_until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class _Live:
    intent_id: str
    source: str
    trace: Trace


class GatewayCore:
    """State of one gateway (one account, one or more API keys). ``signer_problem`` names what keeps
    the signer from working (a missing variable, a bad key); while set nothing is ever sent."""

    def __init__(self, limits: Limits, key_indexes: tuple[int, ...] = (0,), signer_problem: str | None = None) -> None:
        self.limits = limits
        self.order_expiry_ms = limits.order_expiry_ms
        self.signer_problem = signer_problem
        self.lanes = [Lane(k) for k in key_indexes]
        self.kill: KillState = "unknown"
        self.kill_reason = ""
        self.lease = False
        self.lease_holder = ""
        self.reconciled = False          # the start-up reconcile (or cancel-all) is done: places may go
        self.stopping = False
        self.outbox: deque[Tx] = deque()
        self.ledger = OrderLedger()
        self.live: dict[int, _Live] = {}
        self.stats = Stats()
        self.heartbeat_lost: set[str] = set()
        self.reducing = False   # risk:state REDUCING: only position-shrinking places and modifies go out
        self._trimmed: set[int] = set()   # orders cancelled because, while REDUCING, they could flip the position
        self._heartbeat_seen: set[str] = set()
        self._verify_at_ms: int | None = None
        self._token_due_ms = 0
        self._reconcile_due_ms: int | None = 0    # None: one is being fetched
        self._reconcile_reason = "start"
        self._reconcile_since_ms: int | None = None   # None: the last RECONCILE_LOOKBACK_MS
        self._rearm_at_ms = 0
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self._outcomes: dict[str, OrderEvent] = {}   # the last outcome published per intent (seen ones only)
        if signer_problem is None and limits.cancel_on_start:
            self.outbox.append(Tx("cancel_all", -1, reason="startup"))

    # --- queries -----------------------------------------------------------------------------------
    @property
    def signer_ready(self) -> bool:
        return self.signer_problem is None

    @property
    def idle(self) -> bool:
        return not self.outbox and all(lane.in_flight is None for lane in self.lanes)

    @property
    def in_doubt(self) -> list[Doubt]:
        return [lane.doubt for lane in self.lanes if lane.doubt is not None]

    def lane(self, key_index: int) -> Lane:
        for lane in self.lanes:
            if lane.key_index == key_index:
                return lane
        raise KeyError(key_index)

    def place_refusal(self, it: OrderIntent | None = None) -> str | None:
        """Why a place (``it``, or any place) may not go out now (None = it may)."""
        if self.stopping:
            return "gateway stopping"
        if self.kill == "set":
            return f"risk kill set: {self.kill_reason}"
        if self.kill == "unknown":
            return "risk state unknown (kill flag unreadable): failing closed"
        if not self.lease:
            return f"lease not held (held by {self.lease_holder or 'nobody'}): another gateway may be sending"
        if self.reducing and it is not None and not self.reduces(it):
            return "risk:state REDUCING: only orders that shrink the position"
        if it is not None and it.source == "maker" and self.heartbeat_lost:
            # a quote read after its maker (or the feed it prices from) went quiet is stale by construction
            return f"{min(self.heartbeat_lost)} heartbeat lost: maker quotes wait for it"
        return None

    def reduces(self, it: OrderIntent) -> bool:
        """The order can only shrink the position: on the reducing side, and (unless reduce-only, which the
        venue caps) within the position together with everything else that may fill on that side."""
        o = self.ledger.get(it.client_order_index)
        lots = it.size - (o.filled if o is not None and it.action == "modify" else 0)
        return self.ledger.reduce_problem(it.is_ask, lots, it.reduce_only, exclude=(it.client_order_index,)) is None

    def places_of(self, batch: Batch) -> str:
        """What the claim script is told of a batch: "0" no place or modify, "2" all of them only reduce,
        "1" some may add (refused while REDUCING)."""
        orders = [t.intent for t in batch.txs if t.action in ("place", "modify") and t.intent is not None]
        return "0" if not orders else ("2" if all(self.reduces(it) for it in orders) else "1")

    # --- entry points ------------------------------------------------------------------------------
    def handle(self, event: Event, now_ms: int) -> list[Command]:
        if isinstance(event, IntentIn):
            return self._on_intent(event, now_ms)
        if isinstance(event, SenderReady):
            return self._next_batches(now_ms)
        if isinstance(event, BatchDone):
            return self._on_done(event, now_ms)
        if isinstance(event, BatchNotSent):
            return self._on_not_sent(event, now_ms)
        if isinstance(event, AccountIn):
            return self._on_account(event.msg, now_ms)
        if isinstance(event, KillRead):
            return self._on_kill(event, now_ms)
        if isinstance(event, LeaseRead):
            self.lease, self.lease_holder = event.held, event.holder
            return self._purge(now_ms) if not event.held else []
        if isinstance(event, NonceFetched):
            lane = self.lane(event.lane)
            lane.fetching = False
            if lane.doubt is None:
                lane.nonce = event.nonce
            else:   # a fetch that raced with a doubt: settle the doubt with it instead
                return self._on_lane_checked(LaneChecked(event.lane, event.nonce), now_ms)
            return []
        if isinstance(event, NonceFailed):
            lane = self.lane(event.lane)
            lane.fetching = False
            lane.retry_at_ms = now_ms + NONCE_RETRY_MS
            return []
        if isinstance(event, LaneChecked):
            return self._on_lane_checked(event, now_ms)
        if isinstance(event, ReconcileDone):
            return self._on_reconciled(event.snapshot, now_ms)
        if isinstance(event, ReconcileFailed):
            self.stats.reconcile_failures += 1
            self._reconcile_due_ms = now_ms + RECONCILE_RETRY_MS
            return [Note(f"reconcile failed ({event.reason}); retrying", "warning")]
        if isinstance(event, ActiveOrders):
            return self._on_active(event.count, now_ms)
        if isinstance(event, ActiveOrdersFailed):
            if self.kill == "set" or self.stopping:
                self._verify_at_ms = now_ms + VERIFY_AFTER_CANCEL_MS
            return []
        if isinstance(event, TokenMinted):
            return []
        if isinstance(event, TokenFailed):
            self._token_due_ms = now_ms + TOKEN_RETRY_MS
            return []
        if isinstance(event, Stopping):
            return self._on_stop(now_ms)
        raise TypeError(f"unknown event {type(event).__name__}")

    def on_timer(self, now_ms: int) -> list[Command]:
        """Every ~100 ms: drop rotten places, check lanes in doubt, reconcile, re-arm the dead-man's
        switch, verify the venue after kill cancel-alls, refresh the WS token."""
        cmds = self._purge(now_ms)
        if not self.signer_ready:
            return cmds
        for lane in self.lanes:
            d = lane.doubt
            if d is None or lane.in_flight is not None:
                continue
            if now_ms >= lane.check_at_ms and not lane.fetching:
                lane.check_at_ms, lane.fetching = now_ms + LANE_CHECK_MS, True
                cmds.append(CheckLane(lane.key_index))
        if self._reconcile_due_ms is not None and now_ms >= self._reconcile_due_ms:
            self._reconcile_due_ms = None
            since = self._reconcile_since_ms if self._reconcile_since_ms is not None else now_ms - RECONCILE_LOOKBACK_MS
            cmds.append(FetchReconcile(self._reconcile_reason, since, self.ledger.last_trade_id))
        if (self.limits.dead_man_ms > 0 and self.reconciled and not self.stopping and self.lease
                and now_ms >= self._rearm_at_ms and not any(t.schedule == "arm" for t in self.outbox)):
            self._rearm_at_ms = now_ms + self.limits.dead_man_rearm_ms
            self.outbox.append(Tx("cancel_all", -1, reason="dead-man", schedule="arm"))
        if self._verify_at_ms is not None and now_ms >= self._verify_at_ms:
            self._verify_at_ms = None
            cmds.append(CheckActiveOrders())
        if now_ms >= self._token_due_ms:
            self._token_due_ms = now_ms + self.limits.auth_token_ttl_s * 1000 // 2
            cmds.append(MintAuthToken(self.limits.auth_token_ttl_s))
        return cmds

    def request_reconcile(self, reason: str, now_ms: int) -> None:
        """Ask the venue for the truth soon (coalesced with one already due)."""
        self._reconcile_reason = reason
        if self._reconcile_due_ms is not None:
            self._reconcile_due_ms = min(self._reconcile_due_ms, now_ms)

    # --- intents -----------------------------------------------------------------------------------
    def _on_intent(self, ev: IntentIn, now_ms: int) -> list[Command]:
        it = ev.intent
        self.stats.last_intent_ms = now_ms
        if it.intent_id in self._seen:   # read again (a rewind after a Redis error, or a redelivery)
            self.stats.duplicates += 1
            known = self._outcomes.get(it.intent_id)
            if known is not None:       # its outcome may not have been published: publish it again
                return self._publish(known, ev.entry_id)
            return []                   # still queued, in flight or in doubt: it is acked with its outcome
        if ev.journal:
            return self._replayed(ev, now_ms)
        self._remember(it.intent_id)
        if self.signer_problem is not None:
            self.stats.not_sent += 1
            return self._finish(ev.entry_id, self._event("not_sent", now_ms, it,
                                                         message=f"gateway cannot sign: {self.signer_problem}"))
        bad = txs.invalid_reason(it)
        if bad is not None:
            self.stats.invalid += 1
            return self._finish(ev.entry_id, self._event("reject", now_ms, it, message=f"invalid intent: {bad}"))
        if it.action in ("place", "modify"):
            if it.action == "place":
                self.ledger.on_intent(it, now_ms)
                self.ledger.approve(it.client_order_index, now_ms)
            if now_ms > it.created_ms + it.ttl_ms:
                self.stats.stale += 1
                return self._finish(ev.entry_id, self._event("stale", now_ms, it, message=f"{now_ms - it.created_ms} ms old"))
            refusal = self.place_refusal(it)
            if refusal is not None:
                self.stats.killed += 1
                return self._finish(ev.entry_id, self._event("killed", now_ms, it, message=refusal))
            if len(self.outbox) >= MAX_QUEUE:
                self.stats.queue_full += 1
                return self._finish(ev.entry_id, self._event("not_sent", now_ms, it,
                                                             message=f"send queue full ({MAX_QUEUE})"))
        if it.action in ("cancel", "modify"):
            o = self.ledger.get(it.client_order_index)
            if o is not None and o.terminal and not o.why.startswith(INFERRED):
                self.stats.dropped_cancels += 1
                return self._finish(ev.entry_id, self._event("stale", now_ms, it,
                                                             message=f"order already ended ({o.state.value}): not sent"))
            self.ledger.on_intent(it, now_ms)
        self.outbox.append(Tx(it.action, it.market_id, it, ev.entry_id))
        return []

    def _replayed(self, ev: IntentIn, now_ms: int) -> list[Command]:
        """An intent a gateway already took (a crash between send and ack, or another instance):
        never signed again. A recorded outcome is published again; "sending" means unknown."""
        it, j = ev.intent, ev.journal or {}
        self._remember(it.intent_id)
        self.stats.replayed += 1
        if it.action == "place":
            self.ledger.on_intent(it, now_ms)
        state = j.get("state", "")
        if state == "done":
            kind = j.get("outcome", "unknown")
            return self._finish(ev.entry_id, self._event(kind, now_ms, it, code=int(j.get("code", "0") or 0),
                                                         message=j.get("message", ""), tx_hash=j.get("tx_hash", "")))
        # claimed before a send whose answer this gateway never saw: the nonce is in doubt
        self.stats.unknown += 1
        nonce, key = int(j.get("nonce", "-1") or -1), int(j.get("lane", "-1") or -1)
        batch_first = int(j.get("batch_first", str(nonce)) or nonce)
        cmds: list[Command] = [Journal(it.intent_id, {"state": "unknown"})]
        try:
            lane = self.lane(key)
        except KeyError:
            lane = None
        if lane is not None and nonce >= 0:
            tx = Tx(it.action, it.market_id, it, None)
            exp = int(j.get("expired_at", "0") or 0)
            if lane.doubt is None:
                lane.doubt = Doubt([tx], [nonce], exp, now_ms, floor=batch_first)
            elif nonce not in lane.doubt.nonces:
                at = sum(1 for n in lane.doubt.nonces if n < nonce)
                lane.doubt.txs.insert(at, tx)
                lane.doubt.nonces.insert(at, nonce)
                lane.doubt.expired_at_ms = max(lane.doubt.expired_at_ms, exp)
                lane.doubt.floor = min(lane.doubt.floor if lane.doubt.floor is not None else batch_first, batch_first)
            if lane.in_flight is None:
                lane.nonce = None
            lane.check_at_ms = now_ms
        return cmds + self._finish(ev.entry_id, self._event(
            "unknown", now_ms, it, message=f"taken by an earlier gateway (state {state or '?'}): resolving by evidence"))

    def _remember(self, intent_id: str) -> None:
        self._seen.add(intent_id)
        self._seen_order.append(intent_id)
        if len(self._seen_order) > 10_000:
            old = self._seen_order.popleft()
            self._seen.discard(old)
            self._outcomes.pop(old, None)

    def _purge(self, now_ms: int) -> list[Command]:
        """Report and drop queued places and modifies that are stale, or that may not go out any more."""
        if not any(tx.action in ("place", "modify") for tx in self.outbox):
            return []
        refusal = self.place_refusal()
        cmds: list[Command] = []
        keep: deque[Tx] = deque()
        for tx in self.outbox:
            it = tx.intent
            if tx.action not in ("place", "modify") or it is None or tx.entry_id is None:
                keep.append(tx)
            elif now_ms > it.created_ms + it.ttl_ms:
                self.stats.stale += 1
                cmds += self._finish(tx.entry_id, self._event("stale", now_ms, it, message=f"{now_ms - it.created_ms} ms old"))
            elif refusal is not None:
                self.stats.killed += 1
                cmds += self._finish(tx.entry_id, self._event("killed", now_ms, it, message=refusal))
            else:
                keep.append(tx)
        self.outbox = keep
        return cmds

    # --- the sender ----------------------------------------------------------------------------------
    def _next_batches(self, now_ms: int) -> list[Command]:
        cmds = self._purge(now_ms)
        if not self.signer_ready or not self.lease:
            return cmds   # two gateways never both send: without the lease nothing goes, cancels included
        for lane in self.lanes:
            if lane.nonce is None and lane.doubt is None:   # fetched ahead: the first send never waits for it
                if not lane.fetching and lane.in_flight is None and now_ms >= lane.retry_at_ms:
                    lane.fetching = True
                    cmds.append(FetchNonce(lane.key_index))
            elif self.outbox or lane.doubt is not None:
                cmds += self._fill_lane(lane, now_ms)
        return cmds

    def _busy_cois(self, lane: Lane) -> set[int]:
        """Orders with a tx in flight or in doubt on another lane: their next tx waits (ordering)."""
        out: set[int] = set()
        for other in self.lanes:
            if other is lane:
                continue
            if other.in_flight is not None:
                out.update(t.order_coi for t in other.in_flight.txs)
            if other.doubt is not None:
                out.update(t.order_coi for t in other.doubt.txs)
        out.discard(0)
        return out

    def _fill_lane(self, lane: Lane, now_ms: int) -> list[Command]:
        if lane.in_flight is not None or now_ms < lane.retry_at_ms:
            return []
        if lane.doubt is not None:
            return self._supersede(lane, now_ms)
        assert lane.nonce is not None
        busy = self._busy_cois(lane)
        if lane.rate_backoff_ms > 0:
            return self._send_first_by_risk(lane, busy, now_ms)
        picked: list[Tx] = []
        skipped: deque[Tx] = deque()
        blocked: set[int] = set()
        while self.outbox and len(picked) < MAX_BATCH:
            tx = self.outbox.popleft()
            gateway_own = tx.intent is None
            coi = tx.order_coi
            if tx.action == "place" and not self.reconciled:
                blocked.add(coi)   # its cancel or modify must not overtake it
                skipped.append(tx)
                continue
            if (coi and (coi in busy or coi in blocked)) or (tx.solo and picked):
                blocked.add(coi)
                skipped.append(tx)
                continue
            if gateway_own and tx.action == "cancel_all" and tx.schedule == "now" and picked:
                skipped.appendleft(tx)   # an urgent cancel-all goes first, alone
                break
            picked.append(tx)
            if tx.solo or (gateway_own and tx.action == "cancel_all" and tx.schedule == "now"):
                break
        self.outbox = deque([*skipped, *self.outbox]) if skipped else self.outbox
        # keep intent order: skipped txs were ahead of what remains
        if not picked:
            return []
        return [self._send(lane, picked, now_ms)]

    def _send_first_by_risk(self, lane: Lane, busy: set[int], now_ms: int) -> list[Command]:
        """On a rate-limited lane: the one tx that does most for risk, alone (see *Risk first*)."""
        best: tuple[int, int] | None = None   # (rank, index in the outbox)
        earlier: set[int] = set()              # orders with an earlier tx still queued: theirs go first
        for i, tx in enumerate(self.outbox):
            coi = tx.order_coi
            held = coi != 0 and (coi in busy or coi in earlier)
            if coi:
                earlier.add(coi)
            if held or (tx.action == "place" and not self.reconciled):
                continue
            rank = _risk_rank(tx)
            if best is None or rank < best[0]:
                best = (rank, i)
                if rank == 0:
                    break
        if best is None:
            return []
        tx = self.outbox[best[1]]
        del self.outbox[best[1]]
        return [self._send(lane, [tx], now_ms)]

    def _send(self, lane: Lane, picked: list[Tx], now_ms: int, supersede: bool = False) -> SendBatch:
        assert lane.nonce is not None
        batch = Batch(lane.key_index, tuple(picked), lane.nonce, supersede)
        lane.in_flight = batch
        return SendBatch(batch, tuple(self._request(tx, now_ms) for tx in picked))

    def _request(self, tx: Tx, now_ms: int) -> SignRequest:
        it = tx.intent
        if tx.action == "place" and it is not None:
            return txs.create_order(it, now_ms, self.order_expiry_ms)
        if tx.action == "cancel":
            return txs.cancel_order(it) if it is not None else txs.CancelOrderReq(tx.market_id, tx.coi)
        if tx.action == "modify" and it is not None:
            return txs.modify_order(it)
        if tx.schedule == "arm":
            return txs.cancel_all_scheduled(now_ms + self.limits.dead_man_ms)
        if tx.schedule == "abort":
            return txs.cancel_all_abort()
        return txs.cancel_all(tx.market_id)

    def _supersede(self, lane: Lane, now_ms: int) -> list[Command]:
        """A lane in doubt takes only a cancel-all on its doubtful nonce: after ``unknown_wait_ms``,
        at once while killed or stopping."""
        d = lane.doubt
        assert d is not None
        urgent = self.kill == "set" or self.stopping
        if d.superseding or (not urgent and now_ms - d.since_ms < self.limits.unknown_wait_ms):
            return []
        if lane.nonce != d.first:   # only the doubtful nonce itself may be taken (never one above it)
            if lane.fetching:
                return []
            lane.fetching = True
            return [FetchNonce(lane.key_index)]
        d.superseding = True
        # the tx that takes the nonce: harmless unless we are flattening (the dead-man's re-arm, or an abort
        # when the switch is off); killed or stopping, the cancel-all that is due anyway
        schedule: Schedule = "now" if urgent else ("arm" if self.limits.dead_man_ms > 0 else "abort")
        return [Note(f"lane {lane.key_index}: nonce {lane.nonce} in doubt for {now_ms - d.since_ms} ms; a "
                     f"{'cancel-all' if urgent else 'dead-man ' + schedule} takes it (whichever the venue accepts, "
                     "nothing executes twice)", "warning"),
                self._send(lane, [Tx("cancel_all", -1, reason="supersede", schedule=schedule)], now_ms, supersede=True)]

    def _on_done(self, ev: BatchDone, now_ms: int) -> list[Command]:
        b, res = ev.batch, ev.result
        lane = self.lane(b.lane)
        lane.in_flight = None
        self.stats.last_send_ms = now_ms
        trace_add = {"signed": ev.signed_ns, "sent": ev.sent_ns}
        n = len(b.txs)
        if res.outcome == "ok":
            self.stats.batches += 1
            if res.quota_remaining is not None:
                self.stats.volume_quota_remaining = res.quota_remaining
            self.stats.batch_txs += n
            lane.nonce = b.first_nonce + n
            lane.retry_at_ms = lane.rate_backoff_ms = 0
            cmds: list[Command] = []
            if b.supersede:
                cmds += self._settle_doubt(lane, "dropped: a cancel-all took its nonce", now_ms, next_nonce=lane.nonce)
            elif lane.doubt is not None:   # a doubt replayed while this batch was in flight: its range is evidence
                cmds += self._settle_by_range(lane, b.first_nonce, n, now_ms)
            for i, tx in enumerate(b.txs):
                h = ev.tx_hashes[i] if i < len(ev.tx_hashes) else res.tx_hash
                cmds += self._accepted(tx, h, res.message, trace_add, now_ms)
            return cmds
        if res.outcome == "ambiguous":
            lane.nonce = None
            self.stats.nonce_resyncs += 1
            if b.supersede:   # still in doubt (now about two txs on one nonce): check again
                assert lane.doubt is not None
                lane.doubt.superseding = False
                lane.check_at_ms = now_ms
                return []
            self.stats.unknown += n
            lane.doubt = Doubt(list(b.txs), [b.first_nonce + i for i in range(n)], ev.expired_at_ms, now_ms)
            lane.check_at_ms = now_ms + LANE_CHECK_MS
            cmds = []
            for tx in b.txs:
                if tx.intent is None:
                    continue
                cmds.append(Journal(tx.intent.intent_id, {"state": "unknown"}))
                if tx.action == "place":
                    self._track(tx.intent, trace_add)
                ev = self._event("unknown", now_ms, tx.intent, tx, code=res.code,
                                 message=f"outcome unknown: {res.message}", trace_add=trace_add)
                self.ledger.on_event(ev, now_ms)
                cmds += self._publish(ev, tx.entry_id)
            return cmds
        # refused at the API: no nonce consumed
        if res.invalid_nonce or res.resync_nonce:
            lane.nonce = None
            self.stats.nonce_resyncs += 1
        if res.rate_limited:   # every further tx on the lane waits (doubling, capped) instead of hammering
            self.stats.rate_limited += 1
            lane.rate_backoff_ms = min(max(2 * lane.rate_backoff_ms, RATE_BACKOFF_MIN_MS), MAX_BACKOFF_MS)
            lane.retry_at_ms = now_ms + lane.rate_backoff_ms
        if b.supersede:
            assert lane.doubt is not None
            if res.invalid_nonce:   # the doubtful tx took the nonce: it executed
                return self._settle_doubt(lane, "executed: its nonce was consumed", now_ms)
            lane.doubt.superseding = False
            return []
        if res.rate_limited or (res.invalid_nonce and all(tx.attempt < 2 for tx in b.txs)):
            self.outbox.extendleft(reversed([replace(tx, attempt=tx.attempt + 1) for tx in b.txs]))
            return []
        if n > 1:   # one refused tx refuses the batch: find it by sending each alone (cancels are not held back)
            self.outbox.extendleft(reversed([replace(tx, attempt=tx.attempt + 1, solo=True) for tx in b.txs]))
            return []
        cmds = []
        for tx in b.txs:
            self.stats.rejects[res.code] += 1
            if tx.intent is None:
                if tx.action == "cancel_all" and tx.schedule != "abort":
                    self._retry_gateway_tx(tx, lane, now_ms)   # a cancel of one order may be refused: it ended
                continue
            if tx.action == "place":
                cmds.append(ForgetOpen(tx.intent.client_order_index))
            cmds += self._outcome(tx, "reject", now_ms, code=res.code, message=res.message, trace_add=trace_add)
        return cmds

    def _accepted(self, tx: Tx, tx_hash: str, message: str, trace_add: Trace, now_ms: int) -> list[Command]:
        self.stats.acks += 1
        it = tx.intent
        if it is None:
            if tx.schedule == "arm":
                self.stats.dead_man_arms += 1
                self.stats.dead_man_armed_until_ms = now_ms + self.limits.dead_man_ms
                return []
            if tx.schedule == "abort":
                self.stats.dead_man_armed_until_ms = None
                return []
            if tx.action == "cancel":
                return []
            self.stats.cancel_alls += 1
            cmds: list[Command] = []
            if tx.reason == "startup":
                self.reconciled = True
                cmds.append(ClearOpen())
            if tx.reason in ("kill", "still-open", "stop", "startup"):
                self._verify_at_ms = now_ms + VERIFY_AFTER_CANCEL_MS
            self.request_reconcile(f"after cancel-all ({tx.reason})", now_ms)
            return cmds + self._publish(self._event("ack", now_ms, None, tx, code=200, message=message, tx_hash=tx_hash,
                                                    trace_add=trace_add), None)
        if tx.action == "place":
            self._track(it, trace_add)
            if it.source == "maker" and self.heartbeat_lost:   # it was in flight when the heartbeat was lost
                self.outbox.appendleft(Tx("cancel", it.market_id, reason=f"{min(self.heartbeat_lost)} heartbeat lost",
                                          coi=it.client_order_index))
        elif tx.action == "cancel_all":
            self.stats.cancel_alls += 1
        return self._outcome(tx, "ack", now_ms, code=200, message=message, tx_hash=tx_hash, trace_add=trace_add)

    def _outcome(self, tx: Tx, kind: str, now_ms: int, *, code: int = 0, message: str = "", tx_hash: str = "",
                 trace_add: Trace | None = None) -> list[Command]:
        """An intent's final outcome: journal it, then publish it and ack the entry."""
        assert tx.intent is not None
        ev = self._event(kind, now_ms, tx.intent, tx, code=code, message=message, tx_hash=tx_hash, trace_add=trace_add)
        self.ledger.on_event(ev, now_ms)
        return [Journal(tx.intent.intent_id, {"state": "done", "outcome": kind, "code": str(code),
                                              "message": message[:300], "tx_hash": tx_hash})] + \
            self._publish(ev, tx.entry_id)

    def _publish(self, ev: OrderEvent, entry_id: str | None) -> list[Command]:
        if ev.intent_id in self._seen:
            self._outcomes[ev.intent_id] = ev
        return [Publish(ev)] + ([Ack(entry_id)] if entry_id is not None else [])

    def _on_not_sent(self, ev: BatchNotSent, now_ms: int) -> list[Command]:
        b = ev.batch
        lane = self.lane(b.lane)
        lane.in_flight = None
        cmds: list[Command] = []
        if b.supersede:
            assert lane.doubt is not None
            lane.doubt.superseding = False
            lane.retry_at_ms = now_ms + NONCE_RETRY_MS
            return self._on_kill(KillRead(ev.kill), now_ms) if ev.kill is not None else []
        for tx in reversed(b.txs):
            if tx.intent is None:
                self._retry_gateway_tx(tx, lane, now_ms)
            elif tx.action in ("place", "modify") and ev.kill is not None:
                self.stats.killed += 1
                if tx.action == "place":
                    cmds.append(ForgetOpen(tx.intent.client_order_index))
                cmds += self._outcome(tx, "killed", now_ms, message=f"risk kill set: {ev.kill}")
            elif tx.action != "place" and tx.attempt < 3:
                self.outbox.appendleft(replace(tx, attempt=tx.attempt + 1))   # cancels must land: retry
                lane.retry_at_ms = now_ms + NONCE_RETRY_MS
            else:
                self.stats.not_sent += 1
                if tx.action == "place":
                    cmds.append(ForgetOpen(tx.intent.client_order_index))
                cmds += self._outcome(tx, "not_sent", now_ms, message=f"not sent: {ev.reason}")
        if ev.kill is not None:
            cmds += self._on_kill(KillRead(ev.kill), now_ms)   # same transition as a poll: the kill cancel-all goes first
        return cmds

    def _retry_gateway_tx(self, tx: Tx, lane: Lane, now_ms: int) -> None:
        """The gateway's own txs must eventually land: retry with a capped backoff (once per kind)."""
        if tx.schedule == "arm":
            self._rearm_at_ms = now_ms + RECONCILE_RETRY_MS
            return
        if any(q.intent is None and q.action == tx.action and q.schedule == tx.schedule and q.coi == tx.coi
               for q in self.outbox):
            return
        self.outbox.appendleft(replace(tx, attempt=tx.attempt + 1, solo=False))
        lane.retry_at_ms = max(lane.retry_at_ms, now_ms + min(100 * 2 ** min(tx.attempt, 5), MAX_BACKOFF_MS))

    def _ensure_cancel_all(self, reason: str) -> None:
        """Queue an account-wide cancel-all ahead of everything unless one is already waiting."""
        if self.signer_problem is None and not any(q.intent is None and q.action == "cancel_all" and q.schedule == "now"
                                                   for q in self.outbox):
            self.outbox.appendleft(Tx("cancel_all", -1, reason=reason))

    # --- lanes in doubt --------------------------------------------------------------------------------
    def _on_lane_checked(self, ev: LaneChecked, now_ms: int) -> list[Command]:
        lane = self.lane(ev.lane)
        lane.fetching = False
        d = lane.doubt
        if d is None:
            lane.nonce = ev.next_nonce
            return []
        if ev.next_nonce > d.nonces[-1]:
            return self._settle_doubt(lane, "executed: its nonce was consumed", now_ms, next_nonce=ev.next_nonce)
        if ev.next_nonce < d.first:
            lane.nonce = None   # below the batch: cannot be (its nonces were consumed before it was signed)
            return [Note(f"lane {lane.key_index}: nextNonce {ev.next_nonce} below the doubtful batch at {d.first}; "
                         "waiting for its expiry", "warning")]
        if ev.next_nonce > d.first:   # part of it consumed: those executed; the rest stays in doubt
            done = [i for i, n in enumerate(d.nonces) if n < ev.next_nonce]
            cmds = self._resolve([d.txs[i] for i in done], "executed: its nonce was consumed", now_ms)
            d.txs = [t for i, t in enumerate(d.txs) if i not in done]
            d.nonces = [n for i, n in enumerate(d.nonces) if i not in done]
            return cmds
        if d.expired_at_ms and now_ms > d.expired_at_ms + 1_000:
            return self._settle_doubt(lane, "dropped: its nonce was not consumed before the tx expired", now_ms,
                                      next_nonce=ev.next_nonce)
        lane.nonce = ev.next_nonce if ev.next_nonce == d.first else None   # usable only by a superseding cancel-all
        return []

    def _settle_by_range(self, lane: Lane, first: int, n: int, now_ms: int) -> list[Command]:
        """Our batch took nonces ``first..first+n-1``: doubtful txs below were consumed before it
        (executed), those inside can never execute (dropped); those above stay in doubt."""
        d = lane.doubt
        assert d is not None
        below = [i for i, x in enumerate(d.nonces) if x < first]
        inside = [i for i, x in enumerate(d.nonces) if first <= x < first + n]
        cmds = self._resolve([d.txs[i] for i in below], "executed: its nonce was consumed", now_ms)
        cmds += self._resolve([d.txs[i] for i in inside], "dropped: another tx took its nonce", now_ms)
        done = set(below) | set(inside)
        d.txs = [t for i, t in enumerate(d.txs) if i not in done]
        d.nonces = [x for i, x in enumerate(d.nonces) if i not in done]
        if not d.nonces:
            lane.doubt = None
            self.request_reconcile("unknown outcome settled", now_ms)
        else:
            lane.nonce = None
        return cmds

    def _settle_doubt(self, lane: Lane, how: str, now_ms: int, next_nonce: int | None = None) -> list[Command]:
        d = lane.doubt
        assert d is not None
        lane.doubt = None
        lane.nonce = next_nonce
        self.request_reconcile(f"unknown outcome settled ({how.split(':')[0]})", now_ms)
        return self._resolve(d.txs, how, now_ms)

    def _resolve(self, done: list[Tx], how: str, now_ms: int) -> list[Command]:
        cmds: list[Command] = []
        for tx in done:
            self.stats.resolved[how.split(":")[0]] += 1
            if tx.intent is None:
                continue
            if how.startswith("dropped") and tx.action == "place":
                cmds.append(ForgetOpen(tx.intent.client_order_index))
            ev = self._event("resolved", now_ms, tx.intent, tx, message=how)
            self.ledger.on_event(ev, now_ms)
            cmds.append(Journal(tx.intent.intent_id, {"state": "done", "outcome": "resolved", "message": how}))
            cmds.append(Publish(ev))
        return cmds

    # --- kill flag, heartbeats, stop, verification -----------------------------------------------------
    def _on_kill(self, ev: KillRead, now_ms: int) -> list[Command]:
        if not ev.readable:
            if self.kill == "clear":
                self.kill = "unknown"
            return self._purge(now_ms)
        self.stats.last_kill_read_ms = now_ms
        cmds = self._watch(ev.heartbeats, now_ms)
        value = ev.value
        if value is None and ev.state not in ("ACTIVE", "REDUCING"):   # the guard's HALTED, or no state: fail closed
            value = "risk:state missing" if ev.state is None else f"risk:state {ev.state[:40]}"
        reducing = ev.state == "REDUCING" and value is None
        if reducing and not self.reducing:
            cmds += self._drop_adding(now_ms)
        self.reducing = reducing
        if not reducing:
            self._trimmed.clear()
        if value is not None:
            self.kill_reason = value
            if self.kill != "set":
                self.kill = "set"
                self._ensure_cancel_all("kill")
                for lane in self.lanes:
                    lane.retry_at_ms = 0   # flattening never waits behind a rate-limit backoff
            return cmds + self._purge(now_ms)
        if self.kill != "clear":
            self.kill, self.kill_reason = "clear", ""
            if not self.stopping:
                self._verify_at_ms = None
        return cmds

    def _watch(self, heartbeats: tuple[tuple[str, int | None], ...], now_ms: int) -> list[Command]:
        """A lost heartbeat of the maker or the feed cancels the maker's quotes (once per loss)."""
        timeout = self.limits.heartbeat_timeout_ms
        cmds: list[Command] = []
        for name, last in heartbeats:
            lost = last is None or now_ms - last > timeout
            if not lost:
                self.heartbeat_lost.discard(name)
                self._heartbeat_seen.add(name)
                continue
            if name in self.heartbeat_lost or name not in self._heartbeat_seen:
                continue   # lost once per loss; a service never seen alive is not running here at all
            self.heartbeat_lost.add(name)
            if not self.signer_ready:
                continue
            # queued maker places and modifies never go out; what was sent is cancelled by index
            dropped, killed = self._kill_queued(lambda tx: tx.intent is not None and tx.intent.source == "maker",
                                                now_ms, f"{name} heartbeat lost: not sent")
            cmds += killed
            live = list(self.ledger.live("maker"))
            sent = sorted((o for o in live if o.state not in (State.PENDING, State.APPROVED)), key=lambda o: o.coi)
            flying = len(live) - len(sent)   # places in flight: each is cancelled on its ack (see _accepted)
            if not sent and not dropped and not flying:
                continue
            self.stats.heartbeat_cancels += 1
            cmds.append(Note(f"{name} heartbeat lost (> {timeout} ms): cancelling {len(sent)} maker order(s) "
                             f"and {flying} in flight on their ack, dropping {dropped} queued", "warning"))
            self._cancel_by_index(sent, f"{name} heartbeat lost")
        return cmds

    def _kill_queued(self, which: Callable[[Tx], bool], now_ms: int, message: str) -> tuple[int, list[Command]]:
        """Queued places and modifies chosen by ``which`` never go out: each gets a ``killed`` outcome."""
        cmds: list[Command] = []
        keep: deque[Tx] = deque()
        for tx in self.outbox:
            if tx.action in ("place", "modify") and tx.intent is not None and which(tx):
                self.stats.killed += 1
                if tx.action == "place":
                    cmds.append(ForgetOpen(tx.intent.client_order_index))
                cmds += self._outcome(tx, "killed", now_ms, message=message)
            else:
                keep.append(tx)
        dropped = len(self.outbox) - len(keep)
        self.outbox = keep
        return dropped, cmds

    def _cancel_by_index(self, orders: Iterable[Order], reason: str) -> None:
        """Cancel each sent order by its index, first in the queue, unless a cancel of it is queued already."""
        for o in orders:
            if not any(q.coi == o.coi and q.action == "cancel" for q in self.outbox):
                self.outbox.appendleft(Tx("cancel", o.market_id, reason=reason, coi=o.coi))

    def _drop_adding(self, now_ms: int) -> list[Command]:
        """Entering REDUCING: queued places/modifies that could add never go out, and every order that
        rests on the adding side is cancelled by index (the producers pull theirs too; this is the backstop)."""
        self.reducing = True
        _, cmds = self._kill_queued(lambda tx: tx.intent is not None and tx.entry_id is not None
                                    and not self.reduces(tx.intent),
                                    now_ms, "risk:state REDUCING: it could add to the position")
        pos = self.ledger.effective_position
        adding = sorted((o for o in self.ledger.live() if o.state not in (State.PENDING, State.APPROVED)
                         and (pos == 0 or o.is_ask != (pos > 0))), key=lambda o: o.coi)
        self._cancel_by_index(adding, "reducing: adding side")
        if adding:
            cmds.append(Note(f"risk:state REDUCING: cancelling {len(adding)} order(s) on the adding side", "warning"))
        return cmds + self._trim_reducing()

    def _trim_reducing(self) -> list[Command]:
        """While REDUCING, orders already resting on the reducing side must not be able to flip the position
        either (a quote larger than what is left, a fill that shrank the position): the newest plain ones are
        cancelled until plain + reduce-only exposure fits the position."""
        if not self.reducing or not self.ledger.position_known:
            return []
        pos = self.ledger.effective_position
        if pos == 0:
            return []
        side = [o for o in self.ledger.live() if o.is_ask == (pos > 0) and o.state not in (State.PENDING, State.APPROVED)
                and o.coi not in self._trimmed]
        plain = sorted((o for o in side if not o.reduce_only), key=lambda o: o.coi, reverse=True)
        total = sum(o.exposure for o in side)
        cut: list[Order] = []
        for o in plain:
            if total <= abs(pos):
                break
            total -= o.exposure
            cut.append(o)
        self._trimmed.update(o.coi for o in cut)
        self._cancel_by_index(cut, "reducing: could flip")
        if not cut:
            return []
        return [Note(f"risk:state REDUCING: cancelling {len(cut)} order(s) that could flip position {pos}", "warning")]

    def _on_stop(self, now_ms: int) -> list[Command]:
        self.stopping = True
        cmds = self._purge(now_ms)
        if self.signer_problem is None:
            self.outbox = deque(tx for tx in self.outbox if tx.intent is not None and tx.action != "place")
            self.outbox.appendleft(Tx("cancel_all", -1, reason="dead-man", schedule="abort"))
            self.outbox.appendleft(Tx("cancel_all", -1, reason="stop"))
            for lane in self.lanes:
                lane.retry_at_ms = 0
        return cmds

    def _on_active(self, count: int, now_ms: int) -> list[Command]:
        self.stats.venue_open_orders, self.stats.venue_open_orders_ms = count, now_ms
        if self.kill == "set" or self.stopping:
            if count > 0:
                self._ensure_cancel_all("still-open")
                self._verify_at_ms = now_ms + VERIFY_AFTER_CANCEL_MS
            else:
                self._verify_at_ms = now_ms + VERIFY_WHILE_KILLED_MS
        return []

    # --- reconcile -------------------------------------------------------------------------------------
    def _on_reconciled(self, snap: Reconcile, now_ms: int) -> list[Command]:
        self.stats.reconciles += 1
        self.stats.last_reconcile_ms = now_ms
        self.stats.venue_open_orders = sum(1 for o in snap.orders if o.status in ("open", "pending", "in-progress"))
        self.stats.venue_open_orders_ms = now_ms
        self._reconcile_due_ms = now_ms + self.limits.reconcile_every_ms
        self._reconcile_reason, self._reconcile_since_ms = "periodic", max(0, snap.as_of_ms - 120_000)
        # every ledger reads the account stream the gateway reads: what this one already knows, they do too,
        # so the published snapshot carries only the news (active orders always: they are the check)
        news = snap.model_copy(update={
            "orders": [o for o in snap.orders if o.status in ("open", "pending", "in-progress")
                       or ((mine := self.ledger.get(o.client_order_index)) is not None and not mine.terminal)],
            "fills": [f for f in snap.fills if not self.ledger.knows_trade(f.trade_id)]})
        cmds: list[Command] = [PublishAccount(news)]
        for t in self.ledger.on_reconcile(snap, now_ms):
            if t.after.value in ("filled", "canceled", "expired"):
                self.live.pop(t.coi, None)
                cmds.append(ForgetOpen(t.coi))
        if not self.reconciled and not self.limits.cancel_on_start:
            self.reconciled = True
            cmds.append(Note(f"start-up reconcile: {self.stats.venue_open_orders} open order(s) at the venue adopted, "
                             f"{len(snap.fills)} fill(s) since {snap.since_ms}"))
        if (self.kill == "set" or self.stopping) and self.stats.venue_open_orders:
            self._ensure_cancel_all("still-open")
        return cmds

    # --- account stream --------------------------------------------------------------------------------
    def _on_account(self, msg: OrderUpdate | Fill | Position | AccountGap | Reconcile, now_ms: int) -> list[Command]:
        self.stats.last_account_ms = now_ms
        if isinstance(msg, AccountGap):
            self.request_reconcile(f"account gap: {msg.reason}", now_ms)
            return []
        if isinstance(msg, Reconcile):
            return []   # our own snapshot coming back: already applied
        if isinstance(msg, Position):
            self.ledger.on_position(msg, now_ms)
            return self._trim_reducing()
        if isinstance(msg, Fill):
            if not self.ledger.on_fill(msg, now_ms):
                return []
            self.stats.fills += 1
            live = self.live.get(msg.client_order_index)
            return self._trim_reducing() + [Publish(self._account_event("fill", now_ms, msg.client_order_index, live, market_id=msg.market_id,
                                                is_ask=msg.is_ask, price=msg.price, size=msg.size,
                                                message="maker" if msg.is_maker else "taker"))]
        coi = msg.client_order_index
        self.ledger.on_order(msg, now_ms)
        if msg.status in ("open", "pending", "in-progress"):
            if self.kill == "set" or self.stopping:
                self._ensure_cancel_all("still-open")
            return []
        live = self.live.pop(coi, None)
        cmds: list[Command] = [ForgetOpen(coi)] if coi > 0 else []
        if msg.status.startswith("canceled"):
            self.stats.canceled += 1
            cmds.append(Publish(self._account_event("canceled", now_ms, coi, live, market_id=msg.market_id,
                                                    is_ask=msg.is_ask, price=msg.price, size=msg.remaining_size,
                                                    message=msg.status)))
        return cmds

    def _track(self, it: OrderIntent, trace_add: Trace) -> None:
        self.live[it.client_order_index] = _Live(it.intent_id, it.source, {**it.trace, **trace_add})
        if len(self.live) > MAX_LIVE:
            del self.live[next(iter(self.live))]

    # --- event building --------------------------------------------------------------------------------
    def _finish(self, entry_id: str | None, event: OrderEvent) -> list[Command]:
        self.ledger.on_event(event, event.ts_ms)
        if event.intent_id and event.source not in ("", "gateway") and event.kind != "unknown":
            return [Journal(event.intent_id, {"state": "done", "outcome": event.kind, "code": str(event.code),
                                              "message": event.message[:300], "tx_hash": event.tx_hash})] + \
                self._publish(event, entry_id)
        return self._publish(event, entry_id)

    @staticmethod
    def _event(kind: str, now_ms: int, it: OrderIntent | None, tx: Tx | None = None, *, code: int = 0,
               message: str = "", tx_hash: str = "", trace_add: Trace | None = None) -> OrderEvent:
        if it is None:  # the gateway's own tx
            assert tx is not None
            return OrderEvent(kind=kind, intent_id=f"gateway-{tx.reason}", source="gateway", action=tx.action,  # type: ignore[arg-type]
                              market_id=tx.market_id, client_order_index=tx.coi, code=code, message=message,
                              tx_hash=tx_hash, ts_ms=now_ms, trace=dict(trace_add or {}))
        return OrderEvent(kind=kind, intent_id=it.intent_id, source=it.source, action=it.action,  # type: ignore[arg-type]
                          market_id=it.market_id, client_order_index=it.client_order_index, is_ask=it.is_ask,
                          price=it.price, size=it.size, code=code, message=message, tx_hash=tx_hash, ts_ms=now_ms,
                          trace={**it.trace, **(trace_add or {})})

    @staticmethod
    def _account_event(kind: str, now_ms: int, coi: int, live: _Live | None, **fields: int | bool | str) -> OrderEvent:
        if live is not None:
            intent_id, source, trace = live.intent_id, live.source, dict(live.trace)
        else:
            src = source_of(coi) if coi > 0 else None
            intent_id, source, trace = (f"{src}-{coi}" if src else ""), (src or ""), {}
        return OrderEvent(kind=kind, intent_id=intent_id, source=source, action="place",  # type: ignore[arg-type]
                          client_order_index=coi, ts_ms=now_ms, trace=trace, **fields)  # type: ignore[arg-type]
