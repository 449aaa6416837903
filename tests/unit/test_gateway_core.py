"""Gateway core: pure decisions, no I/O. Each test drives the core like the shell does."""
from __future__ import annotations

from typing import Any

import pytest

from services.gateway import txs
from services.gateway.core import (
    Ack, AccountIn, ActiveOrders, CheckActiveOrders, ClearOpen, Command, FetchNonce, ForgetOpen, GatewayCore,
    IntentIn, KillRead, KillSeenAtSend, MintAuthToken, NonceFailed, NonceFetched, Publish, RecordOpen, SenderReady, SignAndSend,
    Stopping, TxDone, TxNotSent,
)
from services.gateway.replies import SendResult, classify, no_answer
from shared.schemas import Fill, OrderIntent, OrderUpdate

T0 = 1_795_000_000_000
EXPIRY_MS = 3_600_000
OK = SendResult("ok", code=200, message='{"ratelimit": "didn\'t use volume quota"}', tx_hash="ab" * 40, http_status=200)


def intent(n: int = 1, action: str = "place", **kw: Any) -> OrderIntent:
    coi = (T0 << 7) + (n << 2) + 1   # a maker-minted index (low bits 01)
    base: dict[str, Any] = dict(intent_id=f"maker-{coi}", source="maker", action=action, market_id=2,
                                client_order_index=coi, is_ask=False, price=140_000, size=64, created_ms=T0,
                                ttl_ms=5_000, trace={"maker": 111})
    base.update(kw)
    return OrderIntent(**base)


def of(cmds: list[Command], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def events(cmds: list[Command]) -> list[Any]:
    return [c.event for c in cmds if isinstance(c, Publish)]


def sign(cmds: list[Command]) -> SignAndSend:
    (s,) = of(cmds, SignAndSend)
    return s


def done(core: GatewayCore, s: SignAndSend, result: SendResult = OK, now: int = T0) -> list[Command]:
    return core.handle(TxDone(s.tx, s.nonce, result, signed_ns=10, sent_ns=20), now)


def ready_core(nonce: int = 7, kill: str | None = None) -> GatewayCore:
    """A core past start-up: kill read, nonce known, start-up cancel-all accepted."""
    core = GatewayCore(EXPIRY_MS, 3600)
    core.handle(KillRead(kill), T0)
    assert of(core.handle(SenderReady(), T0), FetchNonce)
    core.handle(NonceFetched(nonce), T0)
    s = sign(core.handle(SenderReady(), T0))
    assert s.tx.reason == "startup" and s.request == txs.CancelAllReq(255)
    cmds = done(core, s)
    assert of(cmds, ClearOpen) and core.reconciled and core.nonce == nonce + 1
    return core


# --- start-up ---------------------------------------------------------------------------------------
def test_startup_reconciles_with_cancel_all_before_any_place() -> None:
    core = GatewayCore(EXPIRY_MS, 3600)
    core.handle(KillRead(None), T0)
    assert core.handle(IntentIn(intent(), "1-0"), T0) == []           # queued, not sent
    assert core.handle(SenderReady(), T0) == [FetchNonce()]
    core.handle(NonceFetched(3), T0)
    first = sign(core.handle(SenderReady(), T0))
    assert first.tx.action == "cancel_all" and first.tx.reason == "startup" and first.nonce == 3
    assert core.handle(SenderReady(), T0) == []                        # one tx at a time
    cmds = done(core, first)
    assert of(cmds, ClearOpen) and events(cmds)[0].intent_id == "gateway-startup"
    cmds = core.handle(SenderReady(), T0 + 1)
    rec, s = of(cmds, RecordOpen)[0], sign(cmds)
    assert cmds.index(rec) < cmds.index(s)                             # HSET before the send
    assert s.nonce == 4 and isinstance(s.request, txs.CreateOrderReq)


def test_places_wait_for_the_startup_cancel_all_even_after_it_failed() -> None:
    core = GatewayCore(EXPIRY_MS, 3600)
    core.handle(KillRead(None), T0)
    core.handle(NonceFetched(0), T0)
    core.handle(IntentIn(intent(), "1-0"), T0)
    s = sign(core.handle(SenderReady(), T0))
    cmds = done(core, s, no_answer("timeout"))
    assert events(cmds)[0].kind == "error" and core.nonce is None and not core.reconciled
    assert core.handle(SenderReady(), T0 + 10) == []                   # backing off
    assert core.handle(SenderReady(), T0 + 200) == [FetchNonce()]
    core.handle(NonceFetched(1), T0 + 200)
    retry = sign(core.handle(SenderReady(), T0 + 200))
    assert retry.tx.reason == "startup" and retry.tx.attempt == 1 and retry.nonce == 1


def test_unknown_kill_state_fails_closed() -> None:
    core = GatewayCore(EXPIRY_MS, 3600)                                # kill flag never read yet
    cmds = core.handle(IntentIn(intent(), "1-0"), T0)
    (ev,) = events(cmds)
    assert ev.kind == "killed" and "unknown" in ev.message and of(cmds, Ack) == [Ack("1-0")]
    cancel = intent(2, "cancel")
    assert core.handle(IntentIn(cancel, "2-0"), T0) == []              # cancels still allowed


# --- order mapping ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tif,code,expiry", [("post_only", 2, T0 + EXPIRY_MS), ("gtt", 1, T0 + EXPIRY_MS), ("ioc", 0, 0)])
def test_limit_order_mapping(tif: str, code: int, expiry: int) -> None:
    core = ready_core()
    core.handle(IntentIn(intent(tif=tif, is_ask=True, reduce_only=True), "1-0"), T0)
    s = sign(core.handle(SenderReady(), T0))
    it = intent()
    assert s.request == txs.CreateOrderReq(market_index=2, client_order_index=it.client_order_index, base_amount=64,
                                           price=140_000, is_ask=True, order_type=0, time_in_force=code,
                                           reduce_only=True, order_expiry=expiry)


def test_market_order_is_ioc_with_worst_price_and_no_expiry() -> None:
    core = ready_core()
    core.handle(IntentIn(intent(order_type="market", price=139_000), "1-0"), T0)  # tif left at its default
    req = sign(core.handle(SenderReady(), T0)).request
    assert isinstance(req, txs.CreateOrderReq)
    assert (req.order_type, req.time_in_force, req.order_expiry, req.price) == (1, 0, 0, 139_000)


def test_cancel_by_client_order_index_and_scoped_cancel_all() -> None:
    core = ready_core()
    c = intent(1, "cancel")
    core.handle(IntentIn(c, "1-0"), T0)
    s = sign(core.handle(SenderReady(), T0))
    assert s.request == txs.CancelOrderReq(market_index=2, order_index=c.client_order_index)
    done(core, s)
    core.handle(IntentIn(intent(2, "cancel_all", market_id=2), "2-0"), T0)
    s = sign(core.handle(SenderReady(), T0))
    assert s.request == txs.CancelAllReq(2)
    done(core, s)
    core.handle(IntentIn(intent(3, "cancel_all", market_id=-1), "3-0"), T0)
    assert sign(core.handle(SenderReady(), T0)).request == txs.CancelAllReq(255)


def test_invalid_intents_are_rejected_locally_without_a_nonce() -> None:
    core = ready_core(nonce=5)
    for n, kw in enumerate([dict(size=0), dict(price=0), dict(order_type="market", price=0), dict(client_order_index=0)]):
        cmds = core.handle(IntentIn(intent(n + 1, **kw), f"{n}-0"), T0)
        (ev,) = events(cmds)
        assert ev.kind == "reject" and ev.code == 0 and ev.message.startswith("invalid intent")
    assert core.idle and core.nonce == 6 and core.stats.invalid == 4


# --- outcomes and nonces ------------------------------------------------------------------------------
def test_ack_carries_trace_and_tx_hash_and_advances_nonce() -> None:
    core = ready_core(nonce=7)
    core.handle(IntentIn(intent(), "1-0"), T0)
    s = sign(core.handle(SenderReady(), T0))
    assert s.nonce == 8
    cmds = done(core, s, now=T0 + 3)
    (ev,) = events(cmds)
    assert ev.kind == "ack" and ev.code == 200 and ev.tx_hash == "ab" * 40 and ev.intent_id == intent().intent_id
    assert ev.trace == {"maker": 111, "signed": 10, "sent": 20}
    assert of(cmds, Ack) == [Ack("1-0")] and cmds.index(of(cmds, Ack)[0]) > cmds.index(of(cmds, Publish)[0])
    assert core.nonce == 9 and intent().client_order_index in core.live


def test_venue_reject_is_published_verbatim_and_keeps_the_nonce() -> None:
    core = ready_core(nonce=7)
    core.handle(IntentIn(intent(size=1), "1-0"), T0)
    s = sign(core.handle(SenderReady(), T0))
    res = classify(400, b'{"code":21706,"message":"invalid order base or quote amount"}')
    cmds = done(core, s, res)
    (ev,) = events(cmds)
    assert (ev.kind, ev.code, ev.message) == ("reject", 21706, "invalid order base or quote amount")
    assert of(cmds, ForgetOpen) == [ForgetOpen(intent().client_order_index)]
    assert core.nonce == 8 and core.stats.rejects[21706] == 1


def test_invalid_nonce_refetches_and_retries_once() -> None:
    core = ready_core(nonce=7)
    core.handle(IntentIn(intent(), "1-0"), T0)
    s = sign(core.handle(SenderReady(), T0))
    bad = classify(400, b'{"code":21104,"message":"invalid nonce"}')
    assert done(core, s, bad) == [] and core.nonce is None and core.stats.nonce_resyncs == 1
    assert core.handle(SenderReady(), T0) == [FetchNonce()]
    core.handle(NonceFetched(12), T0)
    s2 = sign(core.handle(SenderReady(), T0))
    assert s2.nonce == 12 and s2.tx.attempt == 1 and s2.tx.intent == intent()
    cmds = done(core, s2, bad)                                         # second time: give up, report it
    (ev,) = events(cmds)
    assert ev.kind == "reject" and ev.code == 21104 and of(cmds, Ack)


def test_429_keeps_the_nonce_and_backs_off_but_never_delays_a_kill() -> None:
    """Lighter refuses a rate-limited tx at the API: the nonce is not consumed, so no nextNonce call."""
    rate_limited = classify(429, b'{"code":23000,"message":"Too Many Requests!"}')
    core = ready_core(nonce=7)
    for i in (1, 2, 3):
        core.handle(IntentIn(intent(i), f"{i}-0"), T0)
    s1 = sign(core.handle(SenderReady(), T0))
    (ev,) = events(done(core, s1, rate_limited))
    assert ev.kind == "reject" and ev.code == 23000 and core.nonce == s1.nonce
    assert core.handle(SenderReady(), T0 + 249) == []                  # backing off 250 ms
    s2 = sign(core.handle(SenderReady(), T0 + 250))
    assert s2.nonce == s1.nonce                                         # same nonce after the wait
    done(core, s2, rate_limited, now=T0 + 250)                          # again: the wait doubles
    assert core.handle(SenderReady(), T0 + 250 + 499) == []
    core.handle(KillRead("manual"), T0 + 300)
    flatten = sign(core.handle(SenderReady(), T0 + 300))                # the kill's cancel-all does not wait
    assert flatten.tx.intent is None and flatten.nonce == s1.nonce


@pytest.mark.parametrize("result,kind", [
    (no_answer("timeout after 5s"), "error"),
    (classify(503, b'{"code":29500,"message":"internal server error"}'), "error"),
    (classify(502, b"<html>bad gateway</html>"), "error"),
])
def test_ambiguous_outcomes_refetch_the_nonce_before_the_next_tx(result: SendResult, kind: str) -> None:
    core = ready_core(nonce=7)
    core.handle(IntentIn(intent(1), "1-0"), T0)
    core.handle(IntentIn(intent(2), "2-0"), T0)
    s = sign(core.handle(SenderReady(), T0))
    (ev,) = events(done(core, s, result))
    assert ev.kind == kind and core.nonce is None
    assert core.handle(SenderReady(), T0) == [FetchNonce()]
    core.handle(NonceFetched(8), T0)
    assert sign(core.handle(SenderReady(), T0)).nonce == 8


def test_http_200_with_error_code_is_a_reject_that_keeps_the_nonce() -> None:
    core = ready_core(nonce=7)
    core.handle(IntentIn(intent(), "1-0"), T0)
    s = sign(core.handle(SenderReady(), T0))
    (ev,) = events(done(core, s, classify(200, b'{"code":21739,"message":"not enough margin to create the order"}')))
    assert ev.kind == "reject" and ev.code == 21739 and core.nonce == 8


def test_nonce_fetch_failure_backs_off() -> None:
    core = GatewayCore(EXPIRY_MS, 3600)
    core.handle(KillRead(None), T0)
    assert core.handle(SenderReady(), T0) == [FetchNonce()]
    core.handle(NonceFailed("connection refused"), T0)
    assert core.handle(SenderReady(), T0 + 100) == []
    assert core.handle(SenderReady(), T0 + 600) == [FetchNonce()]


def test_tx_not_sent_frees_the_nonce_and_reports_an_error() -> None:
    core = ready_core(nonce=7)
    core.handle(IntentIn(intent(), "1-0"), T0)
    s = sign(core.handle(SenderReady(), T0))
    cmds = core.handle(TxNotSent(s.tx, "redis down"), T0)
    (ev,) = events(cmds)
    assert ev.kind == "error" and "redis down" in ev.message and of(cmds, Ack) and core.nonce == 8


# --- staleness -----------------------------------------------------------------------------------------
def test_stale_place_is_never_sent_but_old_cancels_are() -> None:
    core = ready_core()
    cmds = core.handle(IntentIn(intent(1), "1-0"), T0 + 5_001)
    (ev,) = events(cmds)
    assert ev.kind == "stale" and ev.trace == {"maker": 111} and of(cmds, Ack)
    assert core.handle(IntentIn(intent(2, "cancel"), "2-0"), T0 + 60_000) == []
    assert isinstance(sign(core.handle(SenderReady(), T0 + 60_000)).request, txs.CancelOrderReq)


def test_place_that_rots_in_the_queue_is_reported_stale() -> None:
    core = ready_core()
    core.handle(IntentIn(intent(1), "1-0"), T0 + 4_000)
    assert [e.kind for e in events(core.on_timer(T0 + 5_001))] == ["stale"]
    assert core.idle


# --- kill switch -----------------------------------------------------------------------------------------
def test_kill_cancels_everything_refuses_places_and_resumes_on_delete() -> None:
    core = ready_core(nonce=7)
    core.handle(IntentIn(intent(1), "1-0"), T0)
    core.handle(IntentIn(intent(2, "cancel"), "2-0"), T0)
    cmds = core.handle(KillRead("guard: max position"), T0 + 1)
    assert [e.kind for e in events(cmds)] == ["killed"]                 # queued place dropped
    s = sign(core.handle(SenderReady(), T0 + 1))
    assert s.tx.reason == "kill" and s.request == txs.CancelAllReq(255)  # jumps ahead of the queued cancel
    done(core, s, now=T0 + 5)
    (ev,) = events(core.handle(IntentIn(intent(3), "3-0"), T0 + 6))
    assert ev.kind == "killed" and "guard: max position" in ev.message
    assert core.on_timer(T0 + 5 + 300)[:1] == [CheckActiveOrders()]
    core.handle(ActiveOrders(1), T0 + 400)                             # the venue still shows one
    assert sign(core.handle(SenderReady(), T0 + 400)).tx.reason == "still-open"
    core.in_flight = None
    core.handle(KillRead(None), T0 + 500)
    assert core.handle(IntentIn(intent(4), "4-0"), T0 + 500) == []
    queued = [tx.intent for tx in core.outbox if tx.action == "place"]
    assert queued == [intent(4)]


def test_open_order_reported_while_killed_triggers_another_cancel_all() -> None:
    core = ready_core()
    core.handle(KillRead("x"), T0)
    s = sign(core.handle(SenderReady(), T0))
    done(core, s)
    upd = OrderUpdate(market_id=2, order_index=1 << 48, client_order_index=intent().client_order_index, is_ask=False,
                      price=140_000, initial_size=64, remaining_size=64, filled_size=0, status="open", ts_ms=T0)
    core.handle(AccountIn(upd), T0 + 10)
    assert sign(core.handle(SenderReady(), T0 + 10)).tx.reason == "still-open"


def test_unreadable_flag_fails_closed_without_cancelling() -> None:
    core = ready_core()
    core.handle(KillRead(None, readable=False), T0)
    assert core.kill == "unknown" and core.idle
    (ev,) = events(core.handle(IntentIn(intent(), "1-0"), T0))
    assert ev.kind == "killed"
    core.handle(KillRead(None), T0 + 100)
    assert core.handle(IntentIn(intent(2), "2-0"), T0 + 100) == []


def test_stop_drops_places_and_sends_one_cancel_all() -> None:
    core = ready_core()
    core.handle(IntentIn(intent(1), "1-0"), T0)
    cmds = core.handle(Stopping(), T0)
    assert [e.kind for e in events(cmds)] == ["killed"]
    s = sign(core.handle(SenderReady(), T0))
    assert s.tx.reason == "stop" and s.request == txs.CancelAllReq(255)
    done(core, s)
    assert core.idle


# --- missing secrets ---------------------------------------------------------------------------------------
def test_without_signer_nothing_is_ever_sent() -> None:
    core = GatewayCore(EXPIRY_MS, 3600, signer_problem="missing LIGHTER_API_PRIVATE_KEY")
    core.handle(KillRead(None), T0)
    core.handle(NonceFetched(1), T0)
    cmds = core.handle(IntentIn(intent(), "1-0"), T0)
    (ev,) = events(cmds)
    assert ev.kind == "error" and "LIGHTER_API_PRIVATE_KEY" in ev.message
    core.handle(KillRead("x"), T0)
    core.handle(Stopping(), T0)
    assert core.handle(SenderReady(), T0) == [] and core.on_timer(T0) == []


# --- account stream -----------------------------------------------------------------------------------------
def test_fills_and_cancels_map_back_to_intents() -> None:
    core = ready_core()
    it = intent()
    core.handle(IntentIn(it, "1-0"), T0)
    done(core, sign(core.handle(SenderReady(), T0)))
    fill = Fill(market_id=2, trade_id=9, order_index=1 << 48, client_order_index=it.client_order_index, is_ask=False,
                is_maker=True, price=140_000, size=20, ts_ms=T0)
    (ev,) = events(core.handle(AccountIn(fill), T0 + 50))
    assert (ev.kind, ev.intent_id, ev.size, ev.message) == ("fill", it.intent_id, 20, "maker")
    assert ev.trace == {"maker": 111, "signed": 10, "sent": 20}
    upd = OrderUpdate(market_id=2, order_index=1 << 48, client_order_index=it.client_order_index, is_ask=False,
                      price=140_000, initial_size=64, remaining_size=44, filled_size=20, status="canceled-post-only",
                      ts_ms=T0)
    cmds = core.handle(AccountIn(upd), T0 + 60)
    assert of(cmds, ForgetOpen) == [ForgetOpen(it.client_order_index)]
    (ev,) = events(cmds)
    assert (ev.kind, ev.intent_id, ev.message, ev.size) == ("canceled", it.intent_id, "canceled-post-only", 44)
    assert it.client_order_index not in core.live


def test_unknown_orders_map_through_the_minting_source() -> None:
    core = ready_core()
    coi = (T0 << 7) | 2                                                 # hedger-minted, from a previous run
    fill = Fill(market_id=2, trade_id=9, order_index=1, client_order_index=coi, is_ask=True, is_maker=False,
                price=1, size=1, ts_ms=T0)
    (ev,) = events(core.handle(AccountIn(fill), T0))
    assert ev.intent_id == f"hedger-{coi}" and ev.source == "hedger" and ev.trace == {}
    upd = OrderUpdate(market_id=2, order_index=1, client_order_index=coi, is_ask=True, price=1, initial_size=1,
                      remaining_size=0, filled_size=1, status="filled", ts_ms=T0)
    assert core.handle(AccountIn(upd), T0) == [ForgetOpen(coi)]        # filled: forget, no extra event


def test_duplicate_delivery_is_acked_and_ignored() -> None:
    core = ready_core()
    assert core.handle(IntentIn(intent(), "1-0"), T0) == []
    assert core.handle(IntentIn(intent(), "1-0"), T0) == [Ack("1-0")]
    assert len(core.outbox) == 1


# --- timers ------------------------------------------------------------------------------------------------
def test_auth_token_is_minted_at_half_its_lifetime() -> None:
    core = ready_core()
    assert of(core.on_timer(T0), MintAuthToken) == [MintAuthToken(3600)]
    assert of(core.on_timer(T0 + 1_799_999), MintAuthToken) == []
    assert of(core.on_timer(T0 + 1_800_000), MintAuthToken) == [MintAuthToken(3600)]


def test_startup_cancel_all_is_verified_once() -> None:
    core = ready_core()
    assert of(core.on_timer(T0 + 299), CheckActiveOrders) == []
    assert of(core.on_timer(T0 + 300), CheckActiveOrders) == [CheckActiveOrders()]
    core.handle(ActiveOrders(0), T0 + 310)
    assert core.stats.venue_open_orders == 0
    assert of(core.on_timer(T0 + 60_000), CheckActiveOrders) == []      # kill clear: no periodic polling


def test_send_reply_classification() -> None:
    assert classify(200, b'{"code":200,"message":"m","tx_hash":"ff"}') == SendResult("ok", 200, "m", "ff", 200)
    r = classify(400, b'{"code":21104,"message":"invalid nonce"}')
    assert r.outcome == "rejected" and r.invalid_nonce and r.resync_nonce
    r = classify(400, b'{"code":21728,"message":"client order index already exists"}')
    assert r.outcome == "rejected" and not r.resync_nonce
    r = classify(200, b"not json")
    assert r.outcome == "ambiguous" and r.malformed and r.resync_nonce
    assert classify(500, b'{"code":29500,"message":"x"}').outcome == "ambiguous"
    assert no_answer("timeout").http_status == 0


def test_kill_seen_at_send_refuses_the_place_and_flattens() -> None:
    """The flag set between two polls: found in the same round trip as the open-order record, the
    place is never signed, it is reported ``killed`` and the kill's cancel-all goes next."""
    core = ready_core()
    core.handle(IntentIn(intent(1), "1-0"), T0)
    cmds = core.handle(SenderReady(), T0)
    place = sign(cmds)
    assert of(cmds, RecordOpen) and place.tx.action == "place"
    out = core.handle(KillSeenAtSend(place.tx, "manual"), T0 + 1)
    (ev,) = events(out)
    assert ev.kind == "killed" and "manual" in ev.message and of(out, ForgetOpen) and of(out, Ack)
    assert core.kill == "set" and core.in_flight is None
    nxt = sign(core.handle(SenderReady(), T0 + 1))
    assert nxt.tx.intent is None and nxt.tx.reason == "kill"
