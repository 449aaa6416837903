"""Bugs the chaos test found, each reduced to a deterministic repro through the public core APIs.

Found by ``tests/chaos/test_chaos.py`` on bf2d449 (seed 12, cycle 15, a gateway SIGKILL): a maker
bid rested at the venue for 18 s that no ledger counted (maker, hedger, guard and gateway all had
it closed), so the guard's worst-case exposure left it out. The chain:

1. the restarted gateway held every place back until its start-up reconcile was done, but not the
   cancel of that place, which was sent first (``services/gateway/core.py`` ``_fill_lane``: a place
   skipped for ``not self.reconciled`` did not put its order in ``blocked``);
2. the venue refused the cancel with 21715 (the order did not exist yet); every ledger closed the
   order as "cancel refused 21715: not active at the venue" (``shared/ledger.py`` ``on_event``);
3. the place went out after the reconcile and the venue booked it; the venue's "open" update was
   ignored, because a terminal order only came back when a *reconcile* had closed it
   (``shared/ledger.py`` ``on_order``), although "not active" was just as much a guess.

Both tests failed on bf2d449 and pass since 8c1d90c (ledger) and 18f4bdc (gateway), which fixed
these in parallel; they stay as regression tests.
"""
from __future__ import annotations

from typing import Any

from services.gateway.core import (FetchNonce, GatewayCore, IntentIn, KillRead, LeaseRead, Limits, NonceFetched,
                                   SendBatch, SenderReady)
from shared.ledger import OrderLedger, State
from shared.schemas import OrderEvent, OrderIntent, OrderUpdate

T0 = 1_795_000_000_000
KEY = 4
COI = (T0 << 7) + (1 << 2) + 1   # a maker-minted index


def _intent(action: str, intent_id: str, **kw: Any) -> OrderIntent:
    base: dict[str, Any] = dict(intent_id=intent_id, source="maker", action=action, market_id=2,
                                client_order_index=COI, is_ask=False, price=140_000, size=76, created_ms=T0,
                                ttl_ms=5_000)
    base.update(kw)
    return OrderIntent(**base)


def test_a_cancel_never_overtakes_its_place_held_for_the_startup_reconcile() -> None:
    """A restarted gateway reads a place and then its cancel (the maker requoted while the gateway
    was down) before its start-up reconcile is done: the cancel must wait behind the place."""
    core = GatewayCore(Limits(dead_man_ms=0), (KEY,))
    core.handle(LeaseRead(True, "gateway-1:2"), T0)
    core.handle(KillRead(None), T0)
    assert core.handle(SenderReady(), T0) == [FetchNonce(KEY)]
    core.handle(NonceFetched(KEY, 113), T0)
    assert core.handle(IntentIn(_intent("place", f"maker-{COI}"), "1-0"), T0 + 100) == []
    assert core.handle(IntentIn(_intent("cancel", "maker-c1"), "2-0"), T0 + 100) == []
    sent = [t for c in core.handle(SenderReady(), T0 + 100) if isinstance(c, SendBatch) for t in c.batch.txs]
    # the place may not go before the reconcile; then neither may the cancel that names it
    assert [(t.action, t.order_coi) for t in sent] == [], \
        f"sent before the start-up reconcile, ahead of the place it cancels: {[(t.action, t.order_coi) for t in sent]}"


def test_the_venue_booking_an_order_revives_one_closed_by_a_refused_cancel() -> None:
    """The ledger closes an order whose cancel the venue refused with 21715 ("not active"): a guess,
    like a reconcile that did not list it. When the venue then says the order rests, it must count
    again (open, in the worst-case exposure), or the guard approves past its limits."""
    led = OrderLedger(market_id=2)
    led.on_intent(_intent("place", f"maker-{COI}"), T0)
    led.on_event(OrderEvent(kind="ack", intent_id=f"maker-{COI}", source="maker", action="place", market_id=2,
                            client_order_index=COI, ts_ms=T0 + 5), T0 + 5)
    led.on_intent(_intent("cancel", "maker-c1"), T0 + 10)
    led.on_event(OrderEvent(kind="reject", intent_id="maker-c1", source="maker", action="cancel", market_id=2,
                            client_order_index=COI, code=21715, message="given order is not an active order",
                            ts_ms=T0 + 12), T0 + 12)
    assert led.get(COI).state == State.CANCELED   # the guess
    led.on_order(OrderUpdate(market_id=2, client_order_index=COI, order_index=281474976711011, is_ask=False,
                             price=140_000, initial_size=76, remaining_size=76, filled_size=0, status="open",
                             ts_ms=T0 + 20), T0 + 20)
    o = led.get(COI)
    assert o.state == State.OPEN and led.exposure(False) == 76, \
        f"the venue lists {COI} open, the ledger keeps it {o.state.value} ({o.why}) with bid exposure {led.exposure(False)}"
