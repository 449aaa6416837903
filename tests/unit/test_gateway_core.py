"""Gateway core: pure decisions, no I/O. Each test drives the core like the shell does."""
from __future__ import annotations

from typing import Any

import pytest

from services.gateway import txs
from services.gateway.core import (
    MAX_BATCH, MAX_QUEUE, Ack, AccountIn, ActiveOrders, BatchDone, BatchNotSent, CheckActiveOrders, CheckLane, ClearOpen,
    Command, FetchNonce, FetchReconcile, ForgetOpen, GatewayCore, IntentIn, Journal, KillRead, LaneChecked, LeaseRead,
    Limits, MintAuthToken, NonceFailed, NonceFetched, Note, Publish, PublishAccount, ReconcileDone, SendBatch, SenderReady,
    Stopping,
)
from services.gateway.replies import SendResult, classify, no_answer
from shared.ids import SOURCE_CODES, IdMint
from shared.schemas import AccountGap, Fill, OrderIntent, OrderUpdate, Position, Reconcile

T0 = 1_795_000_000_000
KEY = 4
OK = SendResult("ok", code=200, message='{"ratelimit": "didn\'t use volume quota"}', tx_hash="ab" * 40, http_status=200)
TIMEOUT = no_answer("no answer within 3s")
EXPIRES = T0 + 599_000
MINT = IdMint("maker")


def intent(n: int = 1, action: str = "place", **kw: Any) -> OrderIntent:
    coi = (T0 << 7) + (n << 2) + 1   # a maker-minted index (low bits 01)
    base: dict[str, Any] = dict(intent_id=f"maker-{coi}", source="maker", action=action, market_id=2,
                                client_order_index=coi, is_ask=False, price=140_000, size=64, created_ms=T0,
                                ttl_ms=5_000, trace={"maker": 111})
    base.update(kw)
    return OrderIntent(**base)


def cancel(n: int, k: int = 100) -> OrderIntent:
    return intent(n, "cancel", intent_id=f"maker-c{n}-{k}")


def of(cmds: list[Command], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def events(cmds: list[Command]) -> list[Any]:
    return [c.event for c in cmds if isinstance(c, Publish)]


def batch(cmds: list[Command]) -> SendBatch:
    (s,) = of(cmds, SendBatch)
    return s


def done(core: GatewayCore, s: SendBatch, result: SendResult = OK, now: int = T0) -> list[Command]:
    hashes = tuple(f"h{i}" for i in range(len(s.batch.txs)))
    return core.handle(BatchDone(s.batch, result, hashes, EXPIRES, signed_ns=10, sent_ns=20), now)


def snapshot(now: int = T0, **kw: Any) -> Reconcile:
    return Reconcile(reason="start", as_of_ms=now, markets=[2], ts_ms=now, **kw)


def ready_core(nonce: int = 7, kill: str | None = None, keys: tuple[int, ...] = (KEY,), **limits: Any) -> GatewayCore:
    """A core past start-up: lease held, kill read, start-up reconcile done, nonce known."""
    lim = {"dead_man_ms": 0, **limits}
    core = GatewayCore(Limits(**lim), keys)
    core.handle(LeaseRead(True, "gw:1"), T0)
    core.handle(KillRead(kill), T0)
    rec = of(core.on_timer(T0), FetchReconcile)
    assert rec and rec[0].reason == "start"
    cmds = core.handle(ReconcileDone(snapshot()), T0)
    assert of(cmds, PublishAccount) and core.reconciled
    assert of(core.handle(SenderReady(), T0), FetchNonce) == [FetchNonce(k) for k in keys]   # fetched ahead
    for k in keys:
        core.handle(NonceFetched(k, nonce), T0)
    return core


def take(core: GatewayCore, *its: OrderIntent, now: int = T0) -> SendBatch:
    for i, it in enumerate(its):
        assert core.handle(IntentIn(it, f"{i}-0"), now) == []
    return batch(core.handle(SenderReady(), now))


# --- start-up ---------------------------------------------------------------------------------------
def test_startup_reconciles_before_any_place_and_never_blindly_cancels() -> None:
    core = GatewayCore(Limits(dead_man_ms=0), (KEY,))
    core.handle(LeaseRead(True), T0)
    core.handle(KillRead(None), T0)
    assert core.handle(IntentIn(intent(), "1-0"), T0) == []
    assert core.handle(SenderReady(), T0) == [FetchNonce(KEY)]
    core.handle(NonceFetched(KEY, 3), T0)
    assert core.handle(SenderReady(), T0) == []             # no place before the venue's truth is known
    rec = of(core.on_timer(T0), FetchReconcile)[0]
    assert rec.since_ms == T0 - 600_000 and rec.after_trade_id == 0
    core.handle(ReconcileDone(snapshot()), T0)
    s = batch(core.handle(SenderReady(), T0 + 1))
    assert s.batch.first_nonce == 3 and isinstance(s.requests[0], txs.CreateOrderReq)


def test_cancel_on_start_sends_a_cancel_all_first() -> None:
    core = GatewayCore(Limits(dead_man_ms=0, cancel_on_start=True), (KEY,))
    core.handle(LeaseRead(True), T0)
    core.handle(KillRead(None), T0)
    core.handle(SenderReady(), T0)
    core.handle(NonceFetched(KEY, 3), T0)
    core.handle(IntentIn(intent(), "1-0"), T0)
    first = batch(core.handle(SenderReady(), T0))
    assert [t.reason for t in first.batch.txs] == ["startup"] and first.requests == (txs.CancelAllReq(255),)
    cmds = done(core, first)
    assert of(cmds, ClearOpen) and core.reconciled and events(cmds)[0].intent_id == "gateway-startup"
    assert isinstance(batch(core.handle(SenderReady(), T0)).requests[0], txs.CreateOrderReq)


def test_unknown_kill_state_and_a_missing_lease_fail_closed() -> None:
    core = ready_core()
    core.handle(KillRead(None, readable=False), T0)
    ev = events(core.handle(IntentIn(intent(), "1-0"), T0))[0]
    assert ev.kind == "killed" and "unreadable" in ev.message
    core.handle(KillRead(None), T0)
    core.handle(LeaseRead(False, "gateway-2:9"), T0)
    ev = events(core.handle(IntentIn(intent(2), "2-0"), T0))[0]
    assert ev.kind == "killed" and "gateway-2:9" in ev.message
    core.handle(IntentIn(cancel(3), "3-0"), T0)
    assert core.handle(SenderReady(), T0) == []             # without the lease not even a cancel goes


# --- tx mapping ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tif,code,expiry", [("post_only", 2, T0 + 305_000), ("gtt", 1, T0 + 305_000), ("ioc", 0, 0)])
def test_limit_order_mapping(tif: str, code: int, expiry: int) -> None:
    req = txs.create_order(intent(tif=tif, reduce_only=True), T0, 300_000)
    assert (req.time_in_force, req.order_expiry, req.reduce_only, req.order_type) == (code, expiry, True, 0)


def test_market_order_is_ioc_with_worst_price_and_no_expiry() -> None:
    req = txs.create_order(intent(order_type="market", tif="post_only", price=150_000), T0, 300_000)
    assert (req.order_type, req.time_in_force, req.order_expiry, req.price) == (1, 0, 0, 150_000)


def test_cancel_modify_and_cancel_all_requests() -> None:
    it = intent(1)
    assert txs.cancel_order(it) == txs.CancelOrderReq(2, it.client_order_index)
    assert txs.modify_order(intent(1, "modify", price=140_100, size=80)) == txs.ModifyOrderReq(2, it.client_order_index, 80, 140_100)
    assert txs.cancel_all(-1) == txs.CancelAllReq(255) and txs.cancel_all(2) == txs.CancelAllReq(2)
    assert txs.cancel_all_scheduled(T0) == txs.CancelAllReq(255, 1, T0)
    assert txs.cancel_all_abort() == txs.CancelAllReq(255, 2, 0)


def test_invalid_intents_are_rejected_locally_without_a_nonce() -> None:
    core = ready_core()
    for i, bad in enumerate((intent(1, size=0), intent(2, price=0), intent(3, client_order_index=2**48),
                             intent(4, "modify", size=0))):
        ev = events(core.handle(IntentIn(bad, f"{i}-0"), T0))[0]
        assert ev.kind == "reject" and ev.message.startswith("invalid intent")
    assert core.handle(SenderReady(), T0) == [] and core.lanes[0].nonce == 7


# --- batches ---------------------------------------------------------------------------------------
def test_a_requote_goes_out_in_one_batch_and_each_tx_gets_its_hash() -> None:
    core = ready_core()
    s = take(core, cancel(1), intent(2), cancel(3), intent(4, is_ask=True))
    assert [t.action for t in s.batch.txs] == ["cancel", "place", "cancel", "place"] and s.batch.first_nonce == 7
    assert core.handle(SenderReady(), T0) == []              # one batch in flight per lane
    cmds = done(core, s)
    acks = events(cmds)
    assert [e.kind for e in acks] == ["ack"] * 4 and [e.tx_hash for e in acks] == ["h0", "h1", "h2", "h3"]
    assert acks[1].trace == {"maker": 111, "signed": 10, "sent": 20}
    for j in of(cmds, Journal):                               # the outcome is journaled before it is published
        assert cmds.index(j) < cmds.index(next(c for c in cmds if isinstance(c, Publish) and c.event.intent_id == j.intent_id))
    assert core.lanes[0].nonce == 11 and core.stats.batches == 1 and core.stats.batch_txs == 4


def test_batches_hold_at_most_fifteen_txs() -> None:
    core = ready_core()
    for n in range(20):
        core.handle(IntentIn(intent(n + 1), f"{n}-0"), T0)
    s = batch(core.handle(SenderReady(), T0))
    assert len(s.batch.txs) == MAX_BATCH
    done(core, s)
    assert len(batch(core.handle(SenderReady(), T0)).batch.txs) == 5


def test_a_refused_batch_is_retried_tx_by_tx_so_a_cancel_still_lands() -> None:
    core = ready_core()
    s = take(core, cancel(1), intent(2, size=10_000))
    refused = SendResult("rejected", code=21739, message="not enough margin to create the order", http_status=400)
    assert done(core, s, refused) == [] and core.lanes[0].nonce == 7
    one = batch(core.handle(SenderReady(), T0))
    assert [t.action for t in one.batch.txs] == ["cancel"]
    assert [e.kind for e in events(done(core, one))] == ["ack"]
    two = batch(core.handle(SenderReady(), T0))
    cmds = done(core, two, refused)
    assert [(e.kind, e.code) for e in events(cmds)] == [("reject", 21739)] and of(cmds, ForgetOpen)
    assert core.lanes[0].nonce == 8


def test_invalid_nonce_refetches_and_retries() -> None:
    core = ready_core()
    s = take(core, intent())
    assert done(core, s, classify(400, b'{"code":21104,"message":"invalid nonce"}')) == []
    assert core.handle(SenderReady(), T0) == [FetchNonce(KEY)]
    core.handle(NonceFetched(KEY, 9), T0)
    again = batch(core.handle(SenderReady(), T0))
    assert again.batch.first_nonce == 9 and again.batch.txs[0].attempt == 1


def test_429_keeps_the_nonce_and_backs_off_but_never_delays_a_kill() -> None:
    core = ready_core()
    s = take(core, intent())
    assert done(core, s, classify(429, b'{"code":23000,"message":"Too Many Requests!"}')) == []
    assert core.handle(SenderReady(), T0 + 100) == [] and core.lanes[0].nonce == 7
    core.handle(KillRead("manual"), T0 + 100)
    k = batch(core.handle(SenderReady(), T0 + 100))
    assert k.requests == (txs.CancelAllReq(255),) and k.batch.txs[0].reason == "kill"


def hedge(n: int) -> OrderIntent:
    coi = (T0 << 7) + (n << 2) + SOURCE_CODES["hedger"]
    return intent(n, intent_id=f"hedger-{coi}", source="hedger", client_order_index=coi, is_ask=True)


RATE_429 = b'{"code":23000,"message":"Too Many Requests!"}'


def _rate_limited_core(*queued: OrderIntent) -> GatewayCore:
    """A maker place refused with 429, then ``queued`` behind it."""
    core = ready_core()
    assert done(core, take(core, intent(1)), classify(429, RATE_429)) == []
    assert core.stats.rate_limited == 1
    for i, it in enumerate(queued, start=1):
        core.handle(IntentIn(it, f"{i}-1"), T0 + 10)
    assert core.handle(SenderReady(), T0 + 100) == []            # backing off
    return core


def test_after_a_429_a_hedge_goes_alone_before_the_quotes_queued_ahead_of_it() -> None:
    """On a spent budget (standard tier: 60 requests a minute, cancels included) a hedge that reduces the
    position must not wait behind maker quotes that rot anyway; per order, intent order still holds
    (the cancel of order 1 waits behind its place)."""
    core = _rate_limited_core(intent(2), hedge(3), cancel(1))
    first = batch(core.handle(SenderReady(), T0 + 300))
    assert [t.intent.source for t in first.batch.txs if t.intent] == ["hedger"]
    assert of(done(core, first), Publish)
    nxt = batch(core.handle(SenderReady(), T0 + 300))             # accepted: batches as before, in intent order
    assert [(t.action, t.order_coi) for t in nxt.batch.txs] == [
        ("place", intent(1).client_order_index), ("place", intent(2).client_order_index),
        ("cancel", intent(1).client_order_index)]


def test_after_a_429_a_cancel_goes_before_a_hedge_and_is_retried_alone() -> None:
    core = _rate_limited_core(hedge(3), cancel(9))
    first = batch(core.handle(SenderReady(), T0 + 300))
    assert [t.order_coi for t in first.batch.txs] == [cancel(9).client_order_index]
    assert done(core, first, classify(429, RATE_429)) == [] and core.stats.rate_limited == 2
    assert core.handle(SenderReady(), T0 + 300) == []
    again = batch(core.handle(SenderReady(), T0 + 900))           # backoff doubled to 500 ms
    assert [t.order_coi for t in again.batch.txs] == [cancel(9).client_order_index]


def test_nonce_fetch_failure_backs_off() -> None:
    core = GatewayCore(Limits(dead_man_ms=0), (KEY,))
    core.handle(LeaseRead(True), T0)
    core.handle(KillRead(None), T0)
    core.handle(IntentIn(cancel(1), "1-0"), T0)
    assert core.handle(SenderReady(), T0) == [FetchNonce(KEY)]
    core.handle(NonceFailed(KEY, "HTTP 500"), T0)
    assert core.handle(SenderReady(), T0 + 100) == []
    assert core.handle(SenderReady(), T0 + 600) == [FetchNonce(KEY)]


# --- unknown outcomes ------------------------------------------------------------------------------
def test_a_timeout_leaves_the_order_unknown_and_the_lane_blocked_until_the_nonce_shows_it_executed() -> None:
    core = ready_core()
    s = take(core, intent(1), intent(2))
    cmds = done(core, s, TIMEOUT)
    assert [e.kind for e in events(cmds)] == ["unknown", "unknown"] and of(cmds, Ack)
    assert core.ledger.exposure(False) == 128                 # both may rest: counted
    core.handle(IntentIn(intent(3), "3-0"), T0)
    assert core.handle(SenderReady(), T0) == []              # nothing else is signed on a nonce in doubt
    assert of(core.on_timer(T0 + 1_000), CheckLane) == [CheckLane(KEY)]
    cmds = core.handle(LaneChecked(KEY, 9), T0 + 1_000)
    assert [(e.kind, e.message.split(":")[0]) for e in events(cmds)] == [("resolved", "executed")] * 2
    assert core.lanes[0].nonce == 9 and core.lanes[0].doubt is None
    assert [core.ledger.get(t.order_coi).state.value for t in s.batch.txs] == ["sent", "sent"]  # type: ignore[union-attr]
    assert batch(core.handle(SenderReady(), T0 + 1_000)).batch.first_nonce == 9


def test_a_nonce_still_free_is_taken_by_a_harmless_tx_after_the_wait_and_the_place_is_dropped() -> None:
    core = ready_core(unknown_wait_ms=10_000)
    place = intent(1)
    done(core, take(core, place), TIMEOUT)
    core.on_timer(T0 + 1_000)
    assert core.handle(LaneChecked(KEY, 7), T0 + 1_000) == []
    assert core.handle(SenderReady(), T0 + 5_000) == []       # still waiting for evidence
    sup = batch(core.handle(SenderReady(), T0 + 10_000))
    assert sup.batch.supersede and sup.batch.first_nonce == 7 and sup.requests == (txs.CancelAllReq(255, 2, 0),)
    cmds = done(core, sup, now=T0 + 10_050)
    resolved = [e for e in events(cmds) if e.kind == "resolved"]
    assert [e.intent_id for e in resolved] == [place.intent_id] and resolved[0].message.startswith("dropped")
    assert ForgetOpen(place.client_order_index) in cmds and core.ledger.exposure(False) == 0
    assert core.lanes[0].nonce == 8 and core.lanes[0].doubt is None


def test_a_superseding_cancel_all_refused_for_its_nonce_proves_the_tx_executed() -> None:
    core = ready_core(unknown_wait_ms=0)
    done(core, take(core, intent(1)), TIMEOUT)
    core.handle(LaneChecked(KEY, 7), T0)
    sup = batch(core.handle(SenderReady(), T0))
    cmds = done(core, sup, classify(400, b'{"code":21104,"message":"invalid nonce"}'))
    assert [e.message.split(":")[0] for e in events(cmds)] == ["executed"]
    assert core.lanes[0].doubt is None and core.lanes[0].nonce is None   # re-fetched before the next tx


def test_a_kill_supersedes_a_doubtful_nonce_at_once() -> None:
    core = ready_core(unknown_wait_ms=60_000)
    done(core, take(core, intent(1)), TIMEOUT)
    core.handle(LaneChecked(KEY, 7), T0 + 10)
    core.handle(KillRead("manual"), T0 + 20)
    sup = batch(core.handle(SenderReady(), T0 + 20))
    assert sup.batch.supersede and sup.requests == (txs.CancelAllReq(255),)


def test_with_the_dead_man_switch_on_its_rearm_supersedes() -> None:
    core = ready_core(unknown_wait_ms=0, dead_man_ms=310_000)
    core.on_timer(T0)
    done(core, batch(core.handle(SenderReady(), T0)))          # the first arm
    done(core, take(core, intent(1)), TIMEOUT)
    core.handle(LaneChecked(KEY, 8), T0)
    sup = batch(core.handle(SenderReady(), T0 + 1))
    assert sup.requests == (txs.CancelAllReq(255, 1, T0 + 1 + 310_000),)


def test_a_doubtful_tx_is_dropped_once_its_expiry_passed() -> None:
    core = ready_core(unknown_wait_ms=10**9)
    done(core, take(core, intent(1)), TIMEOUT)
    assert core.handle(LaneChecked(KEY, 7), EXPIRES) == []
    cmds = core.handle(LaneChecked(KEY, 7), EXPIRES + 1_001)
    assert [e.message.split(":")[0] for e in events(cmds)] == ["dropped"] and core.lanes[0].nonce == 7


# --- exactly once across restarts --------------------------------------------------------------------
def test_a_journaled_outcome_is_published_again_never_signed() -> None:
    core = ready_core()
    it = intent(1)
    cmds = core.handle(IntentIn(it, "9-0", {"state": "done", "outcome": "ack", "code": "200", "tx_hash": "h"}), T0)
    ev = events(cmds)[0]
    assert (ev.kind, ev.code, ev.tx_hash) == ("ack", 200, "h") and Ack("9-0") in cmds
    assert core.handle(SenderReady(), T0) == []


def test_an_intent_journaled_as_sending_is_unknown_and_resolved_by_evidence() -> None:
    """The issue's duplicate: the gateway died mid-send; the new one replays the entry and must not send it."""
    core = ready_core()
    it = intent(1)
    j = {"state": "sending", "lane": str(KEY), "nonce": "7", "expired_at": str(EXPIRES), "coi": str(it.client_order_index)}
    cmds = core.handle(IntentIn(it, "9-0", j), T0)
    assert [e.kind for e in events(cmds)] == ["unknown"] and Journal(it.intent_id, {"state": "unknown"}) in cmds
    assert core.handle(SenderReady(), T0) == []
    core.on_timer(T0)
    cmds = core.handle(LaneChecked(KEY, 8), T0)
    assert [e.message.split(":")[0] for e in events(cmds)] == ["executed"]
    assert core.stats.replayed == 1 and core.stats.batches == 0


def test_a_redelivery_in_the_same_run_is_never_sent_again_and_gets_its_outcome_again() -> None:
    """A rewind after a Redis error re-reads pending entries: one still queued is left to its outcome; one
    whose outcome may not have been published gets it published again (never an ack without it)."""
    core = ready_core()
    it = intent(1)
    core.handle(IntentIn(it, "1-0"), T0)
    assert core.handle(IntentIn(it, "1-0"), T0) == [] and core.stats.duplicates == 1
    s = batch(core.handle(SenderReady(), T0))
    assert len(s.batch.txs) == 1
    ack = events(done(core, s))[0]
    again = core.handle(IntentIn(it, "1-0"), T0)
    assert again == [Publish(ack), Ack("1-0")]
    assert core.handle(SenderReady(), T0) == []


# --- rules on intents ------------------------------------------------------------------------------
def test_stale_places_are_never_sent_but_old_cancels_are() -> None:
    core = ready_core()
    ev = events(core.handle(IntentIn(intent(1, created_ms=T0 - 6_000), "1-0"), T0))[0]
    assert ev.kind == "stale"
    s = take(core, cancel(2, k=1) .model_copy(update={"created_ms": T0 - 60_000}))
    assert s.batch.txs[0].action == "cancel"


def test_a_cancel_of_an_order_known_to_have_ended_is_dropped() -> None:
    core = ready_core()
    it = intent(1)
    done(core, take(core, it))
    core.handle(AccountIn(OrderUpdate(market_id=2, order_index=5, client_order_index=it.client_order_index, is_ask=False,
                                      price=140_000, initial_size=64, remaining_size=0, filled_size=64, status="filled",
                                      ts_ms=T0)), T0)
    ev = events(core.handle(IntentIn(cancel(1), "2-0"), T0))[0]
    assert ev.kind == "stale" and "already ended" in ev.message and core.stats.dropped_cancels == 1


def test_the_send_queue_is_bounded_for_places_only() -> None:
    core = ready_core()
    core.handle(LeaseRead(False), T0)
    core.handle(LeaseRead(True), T0)
    for n in range(MAX_QUEUE):
        core.outbox.append(core.outbox[0] if core.outbox else __import__("services.gateway.core", fromlist=["Tx"]).Tx(
            "cancel", 2, cancel(n + 1), f"{n}-0"))
    ev = events(core.handle(IntentIn(intent(999), "x-0"), T0))[0]
    assert ev.kind == "not_sent" and "queue full" in ev.message
    assert core.handle(IntentIn(cancel(998), "y-0"), T0) == []


# --- kill, stop, dead-man, heartbeats ----------------------------------------------------------------
def test_kill_cancels_everything_first_and_alone_and_refuses_places() -> None:
    core = ready_core()
    core.handle(IntentIn(intent(1), "1-0"), T0)
    core.handle(IntentIn(cancel(2), "2-0"), T0)
    cmds = core.handle(KillRead("manual"), T0 + 1)
    assert [e.kind for e in events(cmds)] == ["killed"]
    k = batch(core.handle(SenderReady(), T0 + 1))
    assert [t.reason for t in k.batch.txs] == ["kill"]
    cmds = done(core, k, now=T0 + 2)
    assert events(cmds)[0].intent_id == "gateway-kill"
    assert of(core.on_timer(T0 + 400), CheckActiveOrders)
    core.handle(ActiveOrders(1), T0 + 400)                     # something still rests: cancel again
    assert [t.reason for t in core.outbox][0] == "still-open"
    core.handle(KillRead(None), T0 + 500)
    assert core.place_refusal() is None


def test_a_kill_seen_at_send_refuses_the_places_and_retries_the_cancels() -> None:
    core = ready_core()
    s = take(core, cancel(1), intent(2))
    cmds = core.handle(BatchNotSent(s.batch, "killed: manual", kill="manual"), T0)
    assert [e.kind for e in events(cmds)] == ["killed"]
    nxt = batch(core.handle(SenderReady(), T0 + 600))
    assert [t.reason for t in nxt.batch.txs] == ["kill"]
    done(core, nxt)
    assert [t.action for t in batch(core.handle(SenderReady(), T0 + 600)).batch.txs] == ["cancel"]


def test_stop_sends_a_cancel_all_then_disarms_the_dead_man_switch() -> None:
    core = ready_core()
    core.handle(IntentIn(intent(1), "1-0"), T0)
    cmds = core.handle(Stopping(), T0)
    assert [e.kind for e in events(cmds)] == ["killed"]
    first = batch(core.handle(SenderReady(), T0))
    assert [t.reason for t in first.batch.txs] == ["stop"]
    done(core, first)
    second = batch(core.handle(SenderReady(), T0))
    assert second.requests == (txs.CancelAllReq(255, 2, 0),)


def test_the_dead_man_switch_is_armed_and_rearmed() -> None:
    core = ready_core(dead_man_ms=310_000, dead_man_rearm_ms=60_000)
    core.on_timer(T0)
    s = batch(core.handle(SenderReady(), T0))
    assert s.requests == (txs.CancelAllReq(255, 1, T0 + 310_000),)
    done(core, s)
    assert core.stats.dead_man_arms == 1
    core.on_timer(T0 + 59_000)
    assert core.handle(SenderReady(), T0 + 59_000) == []
    core.on_timer(T0 + 60_000)
    assert batch(core.handle(SenderReady(), T0 + 60_000)).requests == (txs.CancelAllReq(255, 1, T0 + 370_000),)


def test_a_lost_maker_heartbeat_cancels_the_maker_quotes_once() -> None:
    core = ready_core(heartbeat_timeout_ms=3_000)
    core.handle(KillRead(None, heartbeats=(("maker", None), ("feed", None))), T0)
    assert core.heartbeat_lost == set()                   # never seen alive: not running here, nothing to watch
    a, b = intent(1), intent(2, is_ask=True)
    done(core, take(core, a, b))
    core.handle(KillRead(None, heartbeats=(("maker", T0), ("feed", T0))), T0 + 1_000)
    assert core.outbox == type(core.outbox)()
    core.handle(KillRead(None, heartbeats=(("maker", T0), ("feed", T0 + 3_000))), T0 + 3_001)
    s = batch(core.handle(SenderReady(), T0 + 3_001))
    assert sorted(t.coi for t in s.batch.txs) == sorted([a.client_order_index, b.client_order_index])
    core.handle(KillRead(None, heartbeats=(("maker", T0), ("feed", T0 + 3_000))), T0 + 3_100)
    assert core.stats.heartbeat_cancels == 1


# --- lanes ---------------------------------------------------------------------------------------------
def test_two_lanes_send_side_by_side_but_a_cancel_waits_for_its_place() -> None:
    core = ready_core(keys=(4, 5))
    first = take(core, intent(1))
    assert first.batch.lane == 4
    core.handle(IntentIn(cancel(1), "c-0"), T0)
    core.handle(IntentIn(intent(2), "p-0"), T0)
    second = batch(core.handle(SenderReady(), T0))
    assert second.batch.lane == 5 and [t.action for t in second.batch.txs] == ["place"]   # the cancel waits
    done(core, first)
    third = batch(core.handle(SenderReady(), T0))
    assert third.batch.lane == 4 and [t.action for t in third.batch.txs] == ["cancel"]


def test_a_lane_in_doubt_does_not_stop_the_others() -> None:
    core = ready_core(keys=(4, 5))
    done(core, take(core, intent(1)), TIMEOUT)
    s = take(core, intent(2))
    assert s.batch.lane == 5


# --- reconcile and the account stream ----------------------------------------------------------------
def test_reconcile_publishes_the_snapshot_and_closes_ghosts() -> None:
    core = ready_core(reconcile_every_ms=30_000)
    it = intent(1)
    done(core, take(core, it))
    assert core.ledger.exposure(False) == 64
    cmds = core.handle(ReconcileDone(snapshot(T0 + 60_000)), T0 + 60_000)
    assert of(cmds, PublishAccount) and ForgetOpen(it.client_order_index) in cmds
    assert core.ledger.exposure(False) == 0
    assert not of(core.on_timer(T0 + 89_000), FetchReconcile)
    assert of(core.on_timer(T0 + 90_000), FetchReconcile)


def test_an_account_gap_asks_for_a_reconcile_now() -> None:
    core = ready_core(reconcile_every_ms=30_000)
    core.handle(AccountIn(AccountGap(reason="reconnect", ts_ms=T0)), T0 + 10)
    (rec,) = of(core.on_timer(T0 + 10), FetchReconcile)
    assert "reconnect" in rec.reason


def test_fills_map_back_to_intents_once() -> None:
    core = ready_core()
    it = intent(1)
    done(core, take(core, it))
    f = Fill(market_id=2, trade_id=9, order_index=5, client_order_index=it.client_order_index, is_ask=False,
             is_maker=True, price=140_000, size=64, ts_ms=T0)
    ev = events(core.handle(AccountIn(f), T0))[0]
    assert (ev.kind, ev.intent_id, ev.source, ev.trace["signed"]) == ("fill", it.intent_id, "maker", 10)
    assert core.handle(AccountIn(f), T0) == []                # the same trade id is counted once


def test_without_signer_nothing_is_ever_sent() -> None:
    core = GatewayCore(Limits(), (KEY,), signer_problem="missing LIGHTER_API_PRIVATE_KEY")
    core.handle(LeaseRead(True), T0)
    core.handle(KillRead(None), T0)
    ev = events(core.handle(IntentIn(intent(), "1-0"), T0))[0]
    assert ev.kind == "not_sent" and "LIGHTER_API_PRIVATE_KEY" in ev.message
    assert core.handle(SenderReady(), T0) == [] and core.on_timer(T0) == []


def test_auth_token_is_minted_at_half_its_lifetime() -> None:
    core = ready_core(auth_token_ttl_s=600)
    assert of(core.on_timer(T0), MintAuthToken) == []        # minted during ready_core's first timer
    assert of(core.on_timer(T0 + 299_999), MintAuthToken) == []
    assert of(core.on_timer(T0 + 300_000), MintAuthToken) == [MintAuthToken(600)]


def test_send_reply_classification() -> None:
    ok = classify(200, b'{"code":200,"message":"m","tx_hash":"aa"}')
    assert (ok.outcome, ok.tx_hash) == ("ok", "aa")
    assert classify(200, b'{"code":21739,"message":"x"}').outcome == "rejected"
    assert classify(429, b'{"code":23000,"message":"x"}').rate_limited
    assert classify(502, b"<html>").outcome == "ambiguous" and classify(502, b"<html>").malformed
    assert classify(400, b'{"code":21104,"message":"invalid nonce"}').invalid_nonce
    assert no_answer("t").outcome == "ambiguous"


def test_the_published_snapshot_carries_only_news() -> None:
    """Every ledger reads the stream the gateway reads: orders it knows ended and fills it has seen are
    left out (a day of reconciles stays small); active orders are always in."""
    core = ready_core()
    live, gone = intent(1), intent(2)
    done(core, take(core, live, gone))
    f = Fill(market_id=2, trade_id=9, order_index=5, client_order_index=gone.client_order_index, is_ask=False,
             is_maker=True, price=140_000, size=64, ts_ms=T0)
    core.handle(AccountIn(f), T0)

    def upd(it: OrderIntent, status: str, remaining: int) -> OrderUpdate:
        return OrderUpdate(market_id=2, order_index=5, client_order_index=it.client_order_index, is_ask=False,
                           price=140_000, initial_size=64, remaining_size=remaining, filled_size=64 - remaining,
                           status=status, ts_ms=T0)
    core.handle(AccountIn(upd(gone, "filled", 0)), T0)
    old = intent(3)
    snap = snapshot(T0 + 60_000, orders=[upd(live, "open", 64), upd(gone, "filled", 0), upd(old, "canceled", 64)],
                    fills=[f, f.model_copy(update={"trade_id": 10, "client_order_index": live.client_order_index})])
    (pub,) = of(core.handle(ReconcileDone(snap), T0 + 60_000), PublishAccount)
    assert [o.client_order_index for o in pub.msg.orders] == [live.client_order_index]
    assert [x.trade_id for x in pub.msg.fills] == [10]


def test_on_a_lost_heartbeat_queued_maker_places_are_dropped_and_in_flight_ones_cancelled_on_ack() -> None:
    core = ready_core(heartbeat_timeout_ms=3_000)
    core.handle(KillRead(None, heartbeats=(("maker", T0),)), T0)
    flying = take(core, intent(1))
    core.handle(IntentIn(intent(2), "2-0"), T0)                          # queued behind the batch in flight
    cmds = core.handle(KillRead(None, heartbeats=(("maker", T0),)), T0 + 3_001)
    assert [(e.kind, e.intent_id) for e in events(cmds)] == [("killed", intent(2).intent_id)]
    assert core.stats.heartbeat_cancels == 1
    cmds = done(core, flying)
    nxt = batch(core.handle(SenderReady(), T0 + 3_002))
    assert [(t.action, t.coi) for t in nxt.batch.txs] == [("cancel", intent(1).client_order_index)]


def test_a_loss_while_the_only_maker_quote_is_in_flight_is_still_a_heartbeat_cancel() -> None:
    core = ready_core(heartbeat_timeout_ms=3_000)
    core.handle(KillRead(None, heartbeats=(("maker", T0),)), T0)
    flying = take(core, intent(1))                      # a requote's place, sent and not yet answered
    cmds = core.handle(KillRead(None, heartbeats=(("maker", T0),)), T0 + 3_001)
    assert core.stats.heartbeat_cancels == 1 and any("1 in flight" in n.text for n in of(cmds, Note))
    done(core, flying)
    nxt = batch(core.handle(SenderReady(), T0 + 3_002))
    assert [(t.action, t.coi) for t in nxt.batch.txs] == [("cancel", intent(1).client_order_index)]


def test_while_a_heartbeat_is_lost_a_late_maker_place_is_refused_and_one_after_its_return_is_not() -> None:
    core = ready_core(heartbeat_timeout_ms=3_000)
    core.handle(KillRead(None, heartbeats=(("maker", T0), ("feed", T0))), T0)
    core.handle(KillRead(None, heartbeats=(("maker", T0), ("feed", T0 + 3_000))), T0 + 3_001)
    cmds = core.handle(IntentIn(intent(1), "1-0"), T0 + 3_001)   # written before the hang, read after the loss
    assert [(e.kind, e.message) for e in events(cmds)] == [("killed", "maker heartbeat lost: maker quotes wait for it")]
    hedge = intent(2, source="hedger", intent_id="hedger-2", client_order_index=(T0 << 7) + (2 << 2) + 2)
    assert core.handle(IntentIn(hedge, "2-0"), T0 + 3_001) == []    # the hedger is not the maker
    core.handle(KillRead(None, heartbeats=(("maker", T0 + 3_100), ("feed", T0 + 3_100))), T0 + 3_200)
    assert core.heartbeat_lost == set()
    later = intent(3, created_ms=T0 + 3_200)
    assert core.handle(IntentIn(later, "3-0"), T0 + 3_200) == []


def test_a_cancel_never_overtakes_a_place_held_back_before_the_start_up_reconcile() -> None:
    core = GatewayCore(Limits(dead_man_ms=0), (KEY,))
    core.handle(LeaseRead(True), T0)
    core.handle(KillRead(None), T0)
    core.handle(SenderReady(), T0)
    core.handle(NonceFetched(KEY, 3), T0)
    core.handle(IntentIn(intent(1), "1-0"), T0)
    core.handle(IntentIn(cancel(1), "2-0"), T0)
    assert core.handle(SenderReady(), T0) == []                        # the cancel waits with its place
    core.on_timer(T0)
    core.handle(ReconcileDone(snapshot()), T0)
    s = batch(core.handle(SenderReady(), T0))
    assert [t.action for t in s.batch.txs] == ["place", "cancel"]


def test_a_doubt_replayed_while_a_batch_flies_is_settled_by_the_batch_range() -> None:
    core = ready_core()
    flying = take(core, intent(1))                                         # nonces 7
    old = intent(9)
    j = {"state": "sending", "lane": str(KEY), "nonce": "7", "batch_first": "7", "expired_at": str(EXPIRES)}
    core.handle(IntentIn(old, "9-0", j), T0)                               # an earlier gateway also used 7
    cmds = done(core, flying)                                              # ours took 7: the old one can never run
    assert [(e.kind, e.intent_id, e.message.split(":")[0]) for e in events(cmds) if e.kind == "resolved"] == [
        ("resolved", old.intent_id, "dropped")]
    assert core.lanes[0].doubt is None and core.lanes[0].nonce == 8


def test_a_superseding_tx_only_ever_takes_the_doubtful_nonce() -> None:
    core = ready_core(unknown_wait_ms=0)
    j = {"state": "sending", "lane": str(KEY), "nonce": "9", "batch_first": "8", "expired_at": str(EXPIRES)}
    core.handle(IntentIn(intent(1), "1-0", j), T0)
    core.on_timer(T0)
    core.handle(LaneChecked(KEY, 8), T0)                                  # the batch started at 8 (an own tx)
    sup = batch(core.handle(SenderReady(), T0))
    assert sup.batch.supersede and sup.batch.first_nonce == 8


# --- the guard's trading state ---------------------------------------------------------------------
@pytest.mark.parametrize("state", [None, "HALTED", "garbage"])
def test_a_halted_or_missing_trading_state_is_a_kill(state: str | None) -> None:
    core = ready_core()
    cmds = core.handle(KillRead(None, state=state), T0 + 1)
    assert core.kill == "set" and core.kill_reason == f"risk:state {state or 'missing'}"
    assert [t.reason for t in batch(core.handle(SenderReady(), T0 + 1)).batch.txs] == ["kill"]
    assert [e.kind for e in events(core.handle(IntentIn(intent(3), "3-0"), T0 + 2))] == ["killed"]
    assert cmds is not None
    core.handle(KillRead(None, state="ACTIVE"), T0 + 3)
    assert core.place_refusal() is None


def test_reducing_lets_only_shrinking_orders_out_and_cancels_the_adding_side() -> None:
    core = ready_core()
    core.handle(AccountIn(OrderUpdate(market_id=2, order_index=1, client_order_index=777, is_ask=False, price=139_000,
                                      initial_size=64, remaining_size=64, filled_size=0, status="open", ts_ms=T0)), T0)
    core.handle(AccountIn(Position(market_id=2, position=100, ts_ms=T0)), T0)   # long 0.1
    cmds = core.handle(KillRead(None, state="REDUCING"), T0 + 1)
    assert core.reducing and [(t.action, t.coi) for t in core.outbox] == [("cancel", 777)]   # our resting bid adds
    assert "adding side" in of(cmds, type(cmds[-1]))[-1].text
    bid = intent(5)                                                       # a bid would add
    assert [e.message for e in events(core.handle(IntentIn(bid, "5-0"), T0 + 2))] == [
        "risk:state REDUCING: only orders that shrink the position"]
    ask = intent(6, is_ask=True, size=100, price=141_000)                # exactly the position: passes
    assert core.handle(IntentIn(ask, "6-0"), T0 + 2) == []
    big = intent(7, is_ask=True, size=101, price=141_000)                # would flip: refused
    assert [e.kind for e in events(core.handle(IntentIn(big, "7-0"), T0 + 2))] == ["killed"]
    # a reduce-only ask beside the plain ask for the whole position: if it fills first, the plain one flips us
    assert not core.reduces(intent(8, is_ask=True, size=50, reduce_only=True))


def test_reducing_cancels_resting_orders_that_could_flip_the_position() -> None:
    core = ready_core()

    def rest(coi: int, size: int, reduce_only: bool = False) -> None:
        core.handle(AccountIn(OrderUpdate(market_id=2, order_index=coi, client_order_index=coi, is_ask=True, price=141_000,
                                          initial_size=size, remaining_size=size, filled_size=0, status="open",
                                          reduce_only=reduce_only, ts_ms=T0)), T0)
    rest(801, 60)                     # a quote from before the state changed
    rest(802, 60)
    core.handle(AccountIn(Position(market_id=2, position=100, ts_ms=T0)), T0)   # long 0.1: 120 resting asks could flip it
    core.handle(KillRead(None, state="REDUCING"), T0 + 1)
    assert [(t.action, t.coi) for t in core.outbox] == [("cancel", 802)]          # the newest plain one goes
    core.handle(AccountIn(Position(market_id=2, position=50, ts_ms=T0 + 2)), T0 + 2)   # a fill shrank the position
    assert [(t.action, t.coi) for t in core.outbox] == [("cancel", 801), ("cancel", 802)]
