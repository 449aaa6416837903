"""The order ledger: one state machine per order, fed by every event about it (pure, no I/O)."""
from __future__ import annotations

from shared.ids import IdMint
from shared.ledger import OrderLedger, State
from shared.schemas import Fill, OrderEvent, OrderIntent, OrderUpdate, Position, Reconcile

T0 = 1_800_000_000_000
MINT = IdMint("maker")


def place(coi: int, is_ask: bool = False, price: int = 140_000, size: int = 76) -> OrderIntent:
    return OrderIntent(intent_id=f"maker-{coi}", source="maker", action="place", market_id=2, client_order_index=coi,
                       is_ask=is_ask, price=price, size=size, created_ms=T0)


def event(kind: str, coi: int, action: str = "place", ts: int = T0, code: int = 0, message: str = "") -> OrderEvent:
    return OrderEvent(kind=kind, intent_id=f"maker-{coi}", source="maker", action=action, market_id=2,  # type: ignore[arg-type]
                      client_order_index=coi, code=code, message=message, ts_ms=ts)


def update(coi: int, status: str, remaining: int, filled: int = 0, size: int = 76, ts: int = T0,
           is_ask: bool = False, price: int = 140_000) -> OrderUpdate:
    return OrderUpdate(market_id=2, order_index=2**48 + coi % 1000, client_order_index=coi, is_ask=is_ask, price=price,
                       initial_size=size, remaining_size=remaining, filled_size=filled, status=status, ts_ms=ts)


def fill(coi: int, trade_id: int, size: int, ts: int, is_ask: bool = False) -> Fill:
    return Fill(market_id=2, trade_id=trade_id, order_index=0, client_order_index=coi, is_ask=is_ask, is_maker=True,
                price=140_000, size=size, ts_ms=ts)


def placed(led: OrderLedger, coi: int, **kw: object) -> None:
    led.on_intent(place(coi, **kw), T0)  # type: ignore[arg-type]
    led.on_event(event("ack", coi), T0)


def test_partial_fill_is_counted_once_whatever_the_frame_order() -> None:
    """The issue's case: order update (36 left of 76) then the fill of 40: remaining stays 36."""
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    placed(led, coi)
    led.on_order(update(coi, "open", 76), T0 + 10)
    led.on_order(update(coi, "open", 36, filled=40), T0 + 20)
    led.on_fill(fill(coi, 1, 40, T0 + 20), T0 + 20)
    o = led.get(coi)
    assert o is not None and o.state == State.PARTIAL and o.remaining == 36
    assert led.exposure(False) == 36
    assert led.effective_position == 40


def test_fills_are_deduplicated_by_trade_id_across_ws_and_reconcile() -> None:
    led = OrderLedger(market_id=2)
    led.on_position(Position(market_id=2, position=0, ts_ms=T0), T0)
    assert led.on_fill(fill(5, 77, 10, T0 + 5), T0 + 5)
    assert not led.on_fill(fill(5, 77, 10, T0 + 5), T0 + 6)
    led.on_reconcile(Reconcile(reason="gap", as_of_ms=T0 + 100, fills=[fill(5, 77, 10, T0 + 5), fill(5, 78, 3, T0 + 50)],
                               ts_ms=T0 + 100, complete=False), T0 + 100)
    assert led.effective_position == 13
    assert led.duplicate_fills == 2


def test_position_then_fills_after_it() -> None:
    led = OrderLedger(market_id=2)
    led.on_fill(fill(5, 1, 10, T0 + 5), T0)
    led.on_position(Position(market_id=2, position=10, ts_ms=T0 + 5), T0)
    assert led.effective_position == 10  # the fill is inside the position
    led.on_fill(fill(5, 2, 4, T0 + 9, is_ask=True), T0)
    assert led.effective_position == 6
    led.on_position(Position(market_id=2, position=9, ts_ms=T0 + 1), T0)  # an older position never wins
    assert led.effective_position == 6


def test_reconcile_closes_a_ghost_order_filled_or_cancelled_during_a_feed_outage() -> None:
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    placed(led, coi)
    led.on_order(update(coi, "open", 76), T0 + 10)
    assert led.exposure(False) == 76
    snap = Reconcile(reason="acct gap", as_of_ms=T0 + 60_000, markets=[2], orders=[], ts_ms=T0 + 60_000,
                     fills=[fill(coi, 9, 76, T0 + 30_000)])
    tr = led.on_reconcile(snap, T0 + 60_000)
    assert [t.after for t in tr] == [State.CANCELED]
    assert led.exposure(False) == 0 and led.effective_position == 76
    assert led.ghosts_closed == 1


def test_reconcile_does_not_judge_orders_sent_too_recently_or_not_yet_answered() -> None:
    led = OrderLedger(market_id=2)
    recent, unanswered = MINT.next_coi(T0), MINT.next_coi(T0)
    led.on_intent(place(recent), T0)
    led.on_event(event("ack", recent, ts=T0 + 59_000), T0 + 59_000)
    led.on_intent(place(unanswered), T0)
    led.on_reconcile(Reconcile(reason="periodic", as_of_ms=T0 + 60_000, markets=[2], ts_ms=T0 + 60_000), T0 + 60_000)
    assert led.get(recent).state == State.SENT  # type: ignore[union-attr]
    assert led.get(unanswered).state == State.PENDING  # type: ignore[union-attr]
    assert led.exposure(False) == 152


def test_an_incomplete_reconcile_closes_nothing() -> None:
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    placed(led, coi)
    led.on_reconcile(Reconcile(reason="x", as_of_ms=T0 + 60_000, complete=False, ts_ms=T0), T0 + 60_000)
    assert led.get(coi).state == State.SENT  # type: ignore[union-attr]


def test_reconcile_adopts_an_order_nobody_knew_and_a_false_ghost_comes_back() -> None:
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    led.on_reconcile(Reconcile(reason="start", as_of_ms=T0, markets=[2], orders=[update(coi, "open", 50, size=50)],
                               ts_ms=T0), T0)
    o = led.get(coi)
    assert o is not None and o.state == State.OPEN and o.source == "maker" and led.adopted == 1
    assert [x.coi for x in led.open_orders("maker")] == [coi]
    # a reconcile that missed it (too-early snapshot) is overruled by the venue's next word
    led.on_reconcile(Reconcile(reason="p", as_of_ms=T0 + 10_000, markets=[2], ts_ms=T0 + 10_000), T0 + 10_000)
    assert led.get(coi).state == State.CANCELED  # type: ignore[union-attr]
    led.on_order(update(coi, "open", 50, size=50, ts=T0 + 10_001), T0 + 10_001)
    assert led.get(coi).state == State.OPEN  # type: ignore[union-attr]


def test_a_terminal_order_never_comes_back_from_a_late_frame() -> None:
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    placed(led, coi)
    led.on_order(update(coi, "canceled", 0), T0 + 5)
    led.on_order(update(coi, "open", 76, ts=T0 + 1), T0 + 6)
    led.on_event(event("ack", coi), T0 + 7)
    assert led.get(coi).state == State.CANCELED  # type: ignore[union-attr]
    assert led.exposure(False) == 0


def test_unknown_outcome_counts_as_exposure_until_resolved() -> None:
    led = OrderLedger(market_id=2)
    a, b = MINT.next_coi(T0), MINT.next_coi(T0)
    for coi in (a, b):
        led.on_intent(place(coi), T0)
        led.on_event(event("unknown", coi, message="no answer within 3s"), T0)
    assert led.exposure(False) == 152
    assert {o.coi for o in led.maybe_open()} == {a, b}
    led.on_event(event("resolved", a, message="dropped: nonce not consumed before the tx expired"), T0 + 1)
    led.on_event(event("resolved", b, message="executed"), T0 + 1)
    assert led.get(a).state == State.NEVER_SENT  # type: ignore[union-attr]
    assert led.get(b).state == State.SENT  # type: ignore[union-attr]
    assert led.exposure(False) == 76


def test_never_sent_outcomes_free_the_exposure_and_rejects_are_terminal() -> None:
    led = OrderLedger(market_id=2)
    cois = [MINT.next_coi(T0) for _ in range(5)]
    for coi, kind in zip(cois, ("veto", "stale", "killed", "not_sent", "reject")):
        led.on_intent(place(coi), T0)
        led.on_event(event(kind, coi, code=21706 if kind == "reject" else 0), T0)
    assert led.exposure(False) == 0
    assert [led.get(c).state for c in cois] == [State.NEVER_SENT] * 4 + [State.REJECTED]  # type: ignore[union-attr]


def test_cancel_keeps_counting_until_the_venue_confirms() -> None:
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    placed(led, coi, is_ask=True)
    led.on_order(update(coi, "open", 76, is_ask=True), T0)
    led.on_intent(OrderIntent(intent_id="maker-x", source="maker", action="cancel", market_id=2,
                              client_order_index=coi, created_ms=T0), T0)
    assert led.get(coi).state == State.PENDING_CANCEL and led.exposure(True) == 76  # type: ignore[union-attr]
    led.on_order(update(coi, "canceled", 0, is_ask=True), T0 + 1)
    assert led.exposure(True) == 0


def test_cancel_refused_as_not_active_ends_the_order_and_other_refusals_restore_it() -> None:
    led = OrderLedger(market_id=2)
    a, b = MINT.next_coi(T0), MINT.next_coi(T0)
    for coi in (a, b):
        placed(led, coi)
        led.on_order(update(coi, "open", 76), T0)
        led.on_intent(OrderIntent(intent_id=f"c-{coi}", source="maker", action="cancel", market_id=2,
                                  client_order_index=coi, created_ms=T0), T0)
    led.on_event(event("reject", a, action="cancel", code=21715), T0)
    led.on_event(event("stale", b, action="cancel"), T0)
    assert led.get(a).state == State.CANCELED  # type: ignore[union-attr]
    assert led.get(b).state == State.OPEN  # type: ignore[union-attr]


def test_modify_counts_the_larger_size_until_the_venue_shows_it() -> None:
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    placed(led, coi, size=50)
    led.on_order(update(coi, "open", 50, size=50), T0)
    led.on_intent(OrderIntent(intent_id="m", source="maker", action="modify", market_id=2, client_order_index=coi,
                              price=140_100, size=80, created_ms=T0), T0)
    assert led.exposure(False) == 80
    led.on_order(update(coi, "open", 80, size=80, price=140_100), T0 + 1)
    o = led.get(coi)
    assert o is not None and o.modify_to is None and o.price == 140_100 and led.exposure(False) == 80


def test_source_filter_and_other_markets() -> None:
    led = OrderLedger(market_id=2)
    hedge = IdMint("hedger").next_coi(T0)
    led.on_order(update(hedge, "open", 40, size=40), T0)
    led.on_order(OrderUpdate(market_id=7, order_index=1, client_order_index=hedge + 4, is_ask=False, price=1,
                             initial_size=1, remaining_size=1, filled_size=0, status="open", ts_ms=T0), T0)
    assert [o.coi for o in led.open_orders("hedger")] == [hedge]
    assert led.open_orders("maker") == []
    assert led.exposure(False) == 40


def test_summary_is_json_friendly() -> None:
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    placed(led, coi)
    s = led.summary("maker")
    assert s["maybe_open"] == [coi] and s["open"] == [] and s["exposure_bid"] == 76 and s["states"] == {"sent": 1}


def test_a_cancel_refused_before_its_place_was_sent_closes_nothing_and_inferences_yield_to_the_venue() -> None:
    """The review's ghost: a cancel overtook its place and was refused as not active."""
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    led.on_intent(place(coi), T0)
    led.on_event(event("reject", coi, action="cancel", code=21715), T0)
    assert led.get(coi).state == State.PENDING  # type: ignore[union-attr]
    led.on_event(event("ack", coi), T0 + 1)
    led.on_event(event("reject", coi, action="cancel", code=21600), T0 + 2)   # sent, refused: inferred gone
    assert led.get(coi).state == State.CANCELED  # type: ignore[union-attr]
    led.on_order(update(coi, "open", 76), T0 + 3)                              # ... but the venue says it rests
    assert led.get(coi).state == State.OPEN and led.exposure(False) == 76  # type: ignore[union-attr]


def test_a_duplicate_client_order_index_reject_means_the_order_is_there() -> None:
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    led.on_intent(place(coi), T0)
    led.on_event(event("reject", coi, code=21728, message="client order index already exists"), T0)
    assert led.get(coi).state == State.SENT and led.exposure(False) == 76  # type: ignore[union-attr]


def test_dropped_never_closes_what_the_venue_shows_resting() -> None:
    led = OrderLedger(market_id=2)
    coi = MINT.next_coi(T0)
    led.on_intent(place(coi), T0)
    led.on_event(event("unknown", coi), T0)
    led.on_order(update(coi, "open", 76), T0 + 1)
    led.on_event(event("resolved", coi, message="dropped: a cancel-all took its nonce"), T0 + 2)
    assert led.get(coi).state == State.OPEN  # type: ignore[union-attr]


def test_the_live_index_always_equals_the_non_terminal_orders() -> None:
    """Seeded random interleavings of every input: ``live()`` (the hot path's index) never drifts from
    the orders' states, and exposure is never negative."""
    import random
    rng = random.Random(20261201)
    led = OrderLedger(market_id=2)
    cois = [MINT.next_coi(T0) for _ in range(30)]
    kinds = ["ack", "unknown", "reject", "veto", "stale", "not_sent", "canceled"]
    for step in range(3_000):
        coi = rng.choice(cois)
        r = rng.random()
        if r < 0.2:
            led.on_intent(place(coi, is_ask=coi % 8 == 1), T0 + step)
        elif r < 0.45:
            led.on_event(event(rng.choice(kinds), coi, code=rng.choice([0, 21715, 21728])), T0 + step)
        elif r < 0.7:
            status = rng.choice(["open", "open", "filled", "canceled", "canceled-post-only"])
            rem = 0 if status == "filled" else rng.randrange(1, 77)
            led.on_order(update(coi, status, rem, filled=76 - rem, ts=T0 + step), T0 + step)
        elif r < 0.8:
            led.on_intent(OrderIntent(intent_id=f"c{step}", source="maker", action="cancel", market_id=2,
                                      client_order_index=coi, created_ms=T0), T0 + step)
        elif r < 0.9:
            led.on_event(event("resolved", coi, message=rng.choice(["executed", "dropped: x"])), T0 + step)
        else:
            active = [update(c, "open", 76, ts=T0 + step) for c in rng.sample(cois, 3)]
            led.on_reconcile(Reconcile(reason="r", as_of_ms=T0 + step, markets=[2], orders=active, ts_ms=T0 + step),
                             T0 + step)
        live = {o.coi for o in led.live()}
        assert live == {c for c, o in led.orders.items() if not o.terminal}
        assert led.exposure(False) >= 0 and led.exposure(True) >= 0
