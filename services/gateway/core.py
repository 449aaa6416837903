"""The gateway's decisions, pure: which intents go to the venue, in what order, with which nonce.

No asyncio, no Redis, no clock: the shell feeds events (an intent, a kill-flag read, the venue's
answer, an account update) with ``now_ms`` and carries out the returned commands in order.

Rules it enforces:
- *One tx at a time.* Txs wait in an outbox and leave it one by one (``SenderReady``); the nonce only
  advances when the venue answered "accepted", so a refused or unsent tx never burns one. "invalid
  nonce" re-fetches and retries the tx once; an ambiguous answer (timeout, 5xx, 429) re-fetches.
- *Intents keep their order* (a cancel never overtakes the place it cancels). Only the gateway's own
  cancel-alls (start-up reconcile, kill, stop, orders still open while killed) jump the queue.
- *Fail closed.* Places go out only while the kill flag was read and found absent, the start-up
  cancel-all has been acknowledged and the gateway is not stopping. Cancels are always allowed.
- *Quotes rot.* A place older than ``created_ms + ttl_ms`` is reported ``stale`` and never sent.
  Cancels are sent however old they are: removing an order is never stale.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal, Union

from shared.ids import source_of
from shared.schemas import Fill, OrderEvent, OrderIntent, OrderUpdate, Position, Trace

from . import txs
from .replies import SendResult
from .txs import SignRequest

KillState = Literal["unknown", "set", "clear"]
OPEN_STATUSES = frozenset({"open", "pending", "in-progress"})
VERIFY_AFTER_CANCEL_MS = 300     # look at the venue's open orders this long after a cancel-all was accepted
VERIFY_WHILE_KILLED_MS = 5_000   # and keep looking this often while the kill flag stays set
TOKEN_RETRY_MS = 5_000
NONCE_RETRY_MS = 500
MAX_BACKOFF_MS = 2_000
RATE_BACKOFF_MIN_MS = 250  # first wait after a 429; doubles up to MAX_BACKOFF_MS, reset by an accepted tx
MAX_LIVE = 10_000                # orders remembered for mapping fills back to intents
MAX_SEEN = 10_000                # intent ids remembered to drop redeliveries


# --- what the gateway sends -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tx:
    """One transaction waiting for (or holding) the sender. ``intent`` is None for the gateway's own
    cancel-alls, whose ``reason`` is startup | kill | stop | still-open."""

    action: Literal["place", "cancel", "cancel_all"]
    market_id: int
    intent: OrderIntent | None = None
    entry_id: str | None = None
    reason: str = ""
    attempt: int = 0


# --- events (inputs) --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IntentIn:
    intent: OrderIntent
    entry_id: str


@dataclass(frozen=True, slots=True)
class AccountIn:
    msg: OrderUpdate | Fill | Position


@dataclass(frozen=True, slots=True)
class KillRead:
    """The value of ``risk:kill`` (None = absent); ``readable`` False when Redis could not be asked."""

    value: str | None
    readable: bool = True


@dataclass(frozen=True, slots=True)
class KillSeenAtSend:
    """``risk:kill`` was found set in the same round trip as a place's open-order record, just before
    signing: the place is not sent (closes the window between two kill-flag polls)."""

    tx: "Tx"
    value: str


@dataclass(frozen=True, slots=True)
class SenderReady:
    """The sender is free: hand it the next tx (or a nonce fetch)."""


@dataclass(frozen=True, slots=True)
class NonceFetched:
    nonce: int


@dataclass(frozen=True, slots=True)
class NonceFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class TxDone:
    """The venue answered (or did not) a signed tx; stamps are ``time.time_ns()``."""

    tx: Tx
    nonce: int
    result: SendResult
    signed_ns: int
    sent_ns: int


@dataclass(frozen=True, slots=True)
class TxNotSent:
    """The tx never left (signer error, open-order record not written): its nonce is still free."""

    tx: Tx
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


Event = Union[IntentIn, AccountIn, KillRead, KillSeenAtSend, SenderReady, NonceFetched, NonceFailed, TxDone, TxNotSent,
              ActiveOrders, ActiveOrdersFailed, TokenMinted, TokenFailed, Stopping]


# --- commands (outputs) -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Publish:
    event: OrderEvent


@dataclass(frozen=True, slots=True)
class Ack:
    """XACK the intent entry: its outcome has been published."""

    entry_id: str


@dataclass(frozen=True, slots=True)
class RecordOpen:
    """HSET gw:open <coi> <record> *before* the place is sent; if it fails the place is not sent."""

    client_order_index: int
    record: dict[str, int | str]


@dataclass(frozen=True, slots=True)
class ForgetOpen:
    client_order_index: int


@dataclass(frozen=True, slots=True)
class ClearOpen:
    """Every order the hash named has just been cancelled by the start-up cancel-all."""


@dataclass(frozen=True, slots=True)
class FetchNonce:
    pass


@dataclass(frozen=True, slots=True)
class SignAndSend:
    tx: Tx
    request: SignRequest
    nonce: int


@dataclass(frozen=True, slots=True)
class CheckActiveOrders:
    pass


@dataclass(frozen=True, slots=True)
class MintAuthToken:
    ttl_s: int


Command = Union[Publish, Ack, RecordOpen, ForgetOpen, ClearOpen, FetchNonce, SignAndSend, CheckActiveOrders,
                MintAuthToken]


@dataclass(slots=True)
class Stats:
    """Counters and last-event times (ms) for health output."""

    acks: int = 0
    rejects: Counter[int] = field(default_factory=Counter)
    stale: int = 0
    killed: int = 0
    errors: int = 0
    invalid: int = 0
    duplicates: int = 0
    fills: int = 0
    canceled: int = 0
    cancel_alls: int = 0
    nonce_resyncs: int = 0
    venue_open_orders: int | None = None
    last_intent_ms: int | None = None
    last_account_ms: int | None = None
    last_kill_read_ms: int | None = None
    last_send_ms: int | None = None


@dataclass(frozen=True, slots=True)
class _Live:
    intent_id: str
    source: str
    trace: Trace


class GatewayCore:
    """State of one gateway (one account, one API key). ``signer_problem`` names what keeps the
    signer from working (a missing variable, a bad key); while set nothing is ever sent."""

    def __init__(self, order_expiry_ms: int, auth_token_ttl_s: int, signer_problem: str | None = None) -> None:
        self.order_expiry_ms = order_expiry_ms
        self.auth_token_ttl_s = auth_token_ttl_s
        self.signer_problem = signer_problem
        self.kill: KillState = "unknown"
        self.kill_reason = ""
        self.nonce: int | None = None
        self.reconciled = False
        self.stopping = False
        self.outbox: deque[Tx] = deque()
        self.in_flight: Tx | None = None
        self.live: dict[int, _Live] = {}
        self.stats = Stats()
        self._retry_at_ms = 0
        self._rate_backoff_ms = 0
        self._verify_at_ms: int | None = None
        self._token_due_ms = 0
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        if signer_problem is None:
            self.outbox.append(Tx("cancel_all", -1, reason="startup"))

    # --- queries -----------------------------------------------------------------------------------
    @property
    def signer_ready(self) -> bool:
        return self.signer_problem is None

    @property
    def idle(self) -> bool:
        return not self.outbox and self.in_flight is None

    def place_refusal(self) -> str | None:
        """Why a place may not go out now (None = it may)."""
        if self.stopping:
            return "gateway stopping"
        if self.kill == "set":
            return f"risk kill set: {self.kill_reason}"
        if self.kill == "unknown":
            return "risk state unknown (kill flag unreadable): failing closed"
        return None

    # --- entry points ------------------------------------------------------------------------------
    def handle(self, event: Event, now_ms: int) -> list[Command]:
        if isinstance(event, IntentIn):
            return self._on_intent(event, now_ms)
        if isinstance(event, SenderReady):
            return self._next_tx(now_ms)
        if isinstance(event, TxDone):
            return self._on_done(event, now_ms)
        if isinstance(event, AccountIn):
            return self._on_account(event.msg, now_ms)
        if isinstance(event, KillRead):
            return self._on_kill(event, now_ms)
        if isinstance(event, KillSeenAtSend):
            return self._on_kill_at_send(event, now_ms)
        if isinstance(event, NonceFetched):
            self.nonce = event.nonce
            return []
        if isinstance(event, NonceFailed):
            self._retry_at_ms = now_ms + NONCE_RETRY_MS
            return []
        if isinstance(event, TxNotSent):
            return self._on_not_sent(event, now_ms)
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
        """Every ~100 ms: drop rotten places, verify the venue after cancel-alls, refresh the WS token."""
        cmds = self._purge(now_ms)
        if self._verify_at_ms is not None and now_ms >= self._verify_at_ms and self.signer_ready:
            self._verify_at_ms = None
            cmds.append(CheckActiveOrders())
        if self.signer_ready and now_ms >= self._token_due_ms:
            self._token_due_ms = now_ms + self.auth_token_ttl_s * 1000 // 2
            cmds.append(MintAuthToken(self.auth_token_ttl_s))
        return cmds

    # --- intents -----------------------------------------------------------------------------------
    def _on_intent(self, ev: IntentIn, now_ms: int) -> list[Command]:
        it = ev.intent
        self.stats.last_intent_ms = now_ms
        if it.intent_id in self._seen:
            self.stats.duplicates += 1
            return [Ack(ev.entry_id)]
        self._remember(it.intent_id)
        if self.signer_problem is not None:
            self.stats.errors += 1
            return self._finish(ev.entry_id, self._event("error", now_ms, it, message=f"gateway cannot sign: {self.signer_problem}"))
        bad = txs.invalid_reason(it)
        if bad is not None:
            self.stats.invalid += 1
            return self._finish(ev.entry_id, self._event("reject", now_ms, it, message=f"invalid intent: {bad}"))
        if it.action == "place":
            if now_ms > it.created_ms + it.ttl_ms:
                self.stats.stale += 1
                return self._finish(ev.entry_id, self._event("stale", now_ms, it, message=f"{now_ms - it.created_ms} ms old"))
            refusal = self.place_refusal()
            if refusal is not None:
                self.stats.killed += 1
                return self._finish(ev.entry_id, self._event("killed", now_ms, it, message=refusal))
        self.outbox.append(Tx(it.action, it.market_id, it, ev.entry_id))
        return []

    def _remember(self, intent_id: str) -> None:
        self._seen.add(intent_id)
        self._seen_order.append(intent_id)
        if len(self._seen_order) > MAX_SEEN:
            self._seen.discard(self._seen_order.popleft())

    def _purge(self, now_ms: int) -> list[Command]:
        """Report and drop queued places that are stale, or that may not go out any more."""
        if not any(tx.action == "place" for tx in self.outbox):
            return []
        refusal = self.place_refusal()
        cmds: list[Command] = []
        keep: deque[Tx] = deque()
        for tx in self.outbox:
            it = tx.intent
            if tx.action != "place" or it is None or tx.entry_id is None:
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
    def _next_tx(self, now_ms: int) -> list[Command]:
        cmds = self._purge(now_ms)
        if self.in_flight is not None or not self.outbox or now_ms < self._retry_at_ms or not self.signer_ready:
            return cmds
        if self.nonce is None:
            return cmds + [FetchNonce()]
        tx = self.outbox[0]
        if tx.action == "place" and not self.reconciled:
            return cmds   # the start-up cancel-all has not been accepted yet
        self.outbox.popleft()
        self.in_flight = tx
        it = tx.intent
        if tx.action == "place" and it is not None:
            record: dict[str, int | str] = {"market": it.market_id, "side": "ask" if it.is_ask else "bid",
                                            "price": it.price, "size": it.size, "intent_id": it.intent_id,
                                            "ts": now_ms}
            return cmds + [RecordOpen(it.client_order_index, record),
                           SignAndSend(tx, txs.create_order(it, now_ms, self.order_expiry_ms), self.nonce)]
        if tx.action == "cancel" and it is not None:
            return cmds + [SignAndSend(tx, txs.cancel_order(it), self.nonce)]
        return cmds + [SignAndSend(tx, txs.cancel_all(tx.market_id), self.nonce)]

    def _on_done(self, ev: TxDone, now_ms: int) -> list[Command]:
        tx, res = ev.tx, ev.result
        self.in_flight = None
        self.stats.last_send_ms = now_ms
        trace_add = {"signed": ev.signed_ns, "sent": ev.sent_ns}
        if res.outcome == "ok":
            self.nonce = ev.nonce + 1
            self._retry_at_ms = 0
            self._rate_backoff_ms = 0
            self.stats.acks += 1
            cmds: list[Command] = []
            if tx.intent is None:
                self.stats.cancel_alls += 1
                if tx.reason == "startup":
                    self.reconciled = True
                    cmds.append(ClearOpen())
                self._verify_at_ms = now_ms + VERIFY_AFTER_CANCEL_MS
            elif tx.action == "place":
                self._track(tx.intent, trace_add)
            elif tx.action == "cancel_all":
                self.stats.cancel_alls += 1
            return cmds + self._finish(tx.entry_id, self._event("ack", now_ms, tx.intent, tx, code=200, message=res.message,
                                                                tx_hash=res.tx_hash, trace_add=trace_add))
        if res.invalid_nonce or res.resync_nonce:
            self.nonce = None
            self.stats.nonce_resyncs += 1
        else:
            self.nonce = ev.nonce
        if res.rate_limited:  # nonce kept; every further tx waits (doubling, capped) instead of hammering
            self._rate_backoff_ms = min(max(2 * self._rate_backoff_ms, RATE_BACKOFF_MIN_MS), MAX_BACKOFF_MS)
            self._retry_at_ms = now_ms + self._rate_backoff_ms
        if res.invalid_nonce and tx.attempt == 0:
            self.outbox.appendleft(Tx(tx.action, tx.market_id, tx.intent, tx.entry_id, tx.reason, tx.attempt + 1))
            return []
        kind: Literal["reject", "error"] = "reject" if res.outcome == "rejected" else "error"
        if kind == "reject":
            self.stats.rejects[res.code] += 1
        else:
            self.stats.errors += 1
        cmds = []
        if tx.intent is None:
            self._retry_gateway_cancel(tx, now_ms)
        elif tx.action == "place":
            if kind == "reject":
                cmds.append(ForgetOpen(tx.intent.client_order_index))
            else:
                self._track(tx.intent, trace_add)  # it may rest: keep it mappable; gw:open keeps it for cleanup
        return cmds + self._finish(tx.entry_id, self._event(kind, now_ms, tx.intent, tx, code=res.code, message=res.message,
                                                            tx_hash=res.tx_hash, trace_add=trace_add))

    def _on_kill_at_send(self, ev: KillSeenAtSend, now_ms: int) -> list[Command]:
        tx = ev.tx
        self.in_flight = None
        cmds = self._on_kill(KillRead(ev.value), now_ms)  # same transition as a poll: cancel-all queued
        if tx.intent is None:
            return cmds
        self.stats.killed += 1
        cmds.append(ForgetOpen(tx.intent.client_order_index))
        return cmds + self._finish(tx.entry_id, self._event("killed", now_ms, tx.intent, tx,
                                                            message=self.place_refusal() or f"risk kill set: {ev.value}"))

    def _on_not_sent(self, ev: TxNotSent, now_ms: int) -> list[Command]:
        tx = ev.tx
        self.in_flight = None
        self.stats.errors += 1
        cmds: list[Command] = []
        if tx.intent is None:
            self._retry_gateway_cancel(tx, now_ms)
        elif tx.action == "place":
            cmds.append(ForgetOpen(tx.intent.client_order_index))
        return cmds + self._finish(tx.entry_id, self._event("error", now_ms, tx.intent, tx, message=f"not sent: {ev.reason}"))

    def _retry_gateway_cancel(self, tx: Tx, now_ms: int) -> None:
        """The gateway's own cancel-all must eventually land: retry with a capped backoff."""
        if any(q.intent is None for q in self.outbox):
            return
        self.outbox.appendleft(Tx(tx.action, tx.market_id, None, None, tx.reason, tx.attempt + 1))
        self._retry_at_ms = now_ms + min(100 * 2 ** min(tx.attempt, 5), MAX_BACKOFF_MS)

    def _ensure_cancel_all(self, reason: str) -> None:
        """Queue an account-wide cancel-all ahead of everything unless one is already waiting."""
        if self.signer_problem is None and not any(q.intent is None for q in self.outbox):
            self.outbox.appendleft(Tx("cancel_all", -1, reason=reason))

    # --- kill flag, stop, verification -----------------------------------------------------------------
    def _on_kill(self, ev: KillRead, now_ms: int) -> list[Command]:
        if not ev.readable:
            if self.kill == "clear":
                self.kill = "unknown"
            return self._purge(now_ms)
        self.stats.last_kill_read_ms = now_ms
        if ev.value is not None:
            self.kill_reason = ev.value
            if self.kill != "set":
                self.kill = "set"
                self._ensure_cancel_all("kill")
                self._retry_at_ms = 0  # flattening never waits behind a rate-limit backoff
            return self._purge(now_ms)
        if self.kill != "clear":
            self.kill, self.kill_reason = "clear", ""
            if not self.stopping:
                self._verify_at_ms = None
        return []

    def _on_stop(self, now_ms: int) -> list[Command]:
        self.stopping = True
        cmds = self._purge(now_ms)
        if self.signer_problem is None:
            self.outbox = deque(tx for tx in self.outbox if tx.intent is not None)
            self.outbox.appendleft(Tx("cancel_all", -1, reason="stop"))
            self._retry_at_ms = 0
        return cmds

    def _on_active(self, count: int, now_ms: int) -> list[Command]:
        self.stats.venue_open_orders = count
        if self.kill == "set" or self.stopping:
            if count > 0:
                self._ensure_cancel_all("still-open")
                self._verify_at_ms = now_ms + VERIFY_AFTER_CANCEL_MS
            else:
                self._verify_at_ms = now_ms + VERIFY_WHILE_KILLED_MS
        return []

    # --- account stream --------------------------------------------------------------------------------
    def _on_account(self, msg: OrderUpdate | Fill | Position, now_ms: int) -> list[Command]:
        self.stats.last_account_ms = now_ms
        if isinstance(msg, Fill):
            self.stats.fills += 1
            live = self.live.get(msg.client_order_index)
            return [Publish(self._account_event("fill", now_ms, msg.client_order_index, live, market_id=msg.market_id,
                                                is_ask=msg.is_ask, price=msg.price, size=msg.size,
                                                message="maker" if msg.is_maker else "taker"))]
        if isinstance(msg, OrderUpdate):
            coi = msg.client_order_index
            if msg.status in OPEN_STATUSES:
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
        return []

    def _track(self, it: OrderIntent, trace_add: Trace) -> None:
        self.live[it.client_order_index] = _Live(it.intent_id, it.source, {**it.trace, **trace_add})
        if len(self.live) > MAX_LIVE:
            del self.live[next(iter(self.live))]

    # --- event building --------------------------------------------------------------------------------
    def _finish(self, entry_id: str | None, event: OrderEvent) -> list[Command]:
        return [Publish(event)] + ([Ack(entry_id)] if entry_id is not None else [])

    @staticmethod
    def _event(kind: str, now_ms: int, it: OrderIntent | None, tx: Tx | None = None, *, code: int = 0,
               message: str = "", tx_hash: str = "", trace_add: Trace | None = None) -> OrderEvent:
        if it is None:  # the gateway's own cancel-all
            assert tx is not None
            return OrderEvent(kind=kind, intent_id=f"gateway-{tx.reason}", source="gateway", action="cancel_all",  # type: ignore[arg-type]
                              market_id=tx.market_id, code=code, message=message, tx_hash=tx_hash, ts_ms=now_ms,
                              trace=dict(trace_add or {}))
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
