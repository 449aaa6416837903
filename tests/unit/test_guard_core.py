"""Every rule of the guard core, with no I/O: SOL market 2 (3 dp price, 3 dp size), max 0.2 SOL, max 35 USDC."""
from __future__ import annotations

import ast
import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from services.guard.core import (
    Heartbeats,
    Approve,
    Duplicate,
    GuardCore,
    GuardLimits,
    KillState,
    Recovered,
    PublishState,
    Replayed,
    Restored,
    Veto,
)
from shared.config import Settings
from shared.schemas import BookTop, Fill, OrderEvent, OrderIntent, OrderUpdate, Position, Reconcile

REAL_SPEC = Settings().market_spec  # SOL, market 2, 3/3 decimals, min 0.05 SOL / 10 USDC
SPEC = dataclasses.replace(REAL_SPEC, min_base=1, min_quote_micro=1)   # the exchange minimums out of the way
NOW = 1_700_000_000_000
_coi = iter(range(1000, 10**6))


def limits(enabled: bool = True) -> GuardLimits:
    return GuardLimits.build(enabled, Decimal("0.2"), Decimal("35"), 3)


def make_core(enabled: bool = True, bid: int | None = 174_999, ask: int | None = 175_001) -> GuardCore:
    c = GuardCore(SPEC, limits(enabled))
    c.handle(KillState(None), NOW)
    c.handle(Position(market_id=2, position=0, ts_ms=NOW - 1), NOW)
    if bid is not None and ask is not None:
        c.handle(book(bid, ask), NOW)
    c.handle(Recovered(), NOW)
    return c


def book(bid: int, ask: int, market_id: int = 2) -> BookTop:
    return BookTop(market_id=market_id, seq=1, venue_ts_ms=NOW, bids=[(bid, 1000)], asks=[(ask, 1000)])


def place(price: int, size: int, is_ask: bool = False, coi: int | None = None, created_ms: int = NOW,
          ttl_ms: int = 5_000, market_id: int = 2) -> OrderIntent:
    coi = next(_coi) if coi is None else coi
    return OrderIntent(intent_id=f"maker-{coi}", source="maker", action="place", market_id=market_id,
                       client_order_index=coi, is_ask=is_ask, price=price, size=size, created_ms=created_ms, ttl_ms=ttl_ms)


def update(coi: int, price: int, size: int, is_ask: bool, status: str = "open", remaining: int | None = None,
           market_id: int = 2) -> OrderUpdate:
    rem = size if remaining is None else remaining
    return OrderUpdate(market_id=market_id, order_index=coi + 7, client_order_index=coi, is_ask=is_ask, price=price,
                       initial_size=size, remaining_size=rem, filled_size=size - rem, status=status, ts_ms=NOW)


def position(lots: int, market_id: int = 2) -> Position:
    return Position(market_id=market_id, position=lots, ts_ms=NOW)


def verdict(c: GuardCore, it: OrderIntent, now: int = NOW) -> Approve | Veto | Duplicate:
    cmds = c.handle(it, now)
    assert len(cmds) == 1
    v = cmds[0]
    assert isinstance(v, (Approve, Veto, Duplicate)) and v.intent is it
    return v


def vetoed(c: GuardCore, it: OrderIntent, now: int = NOW) -> str:
    v = verdict(c, it, now)
    assert isinstance(v, Veto), f"expected a veto, got {v}"
    return v.message


def approved(c: GuardCore, it: OrderIntent, now: int = NOW) -> str:
    v = verdict(c, it, now)
    assert isinstance(v, Approve), f"expected approval, got {v}"
    return v.reason


# --- cancels and the kill flag --------------------------------------------------------------------
@pytest.mark.parametrize("action", ["cancel", "cancel_all"])
def test_cancels_always_approved_even_killed_stale_or_foreign(action: str) -> None:
    c = make_core()
    c.handle(KillState("manual"), NOW)
    it = OrderIntent(intent_id="op-1", source="operator", action=action, market_id=-1 if action == "cancel_all" else 9,
                     client_order_index=5, created_ms=NOW - 60_000, ttl_ms=1)
    assert approved(c, it) == "cancel"
    c.handle(KillState(None, readable=False), NOW)
    assert approved(c, it.model_copy(update={"intent_id": "op-2"})) == "cancel"


def test_kill_flag_vetoes_places_with_its_value_and_delete_resumes() -> None:
    c = make_core()
    c.handle(KillState("manual stop by ops"), NOW)
    assert vetoed(c, place(174_000, 64)) == "halted: kill: manual stop by ops"
    assert c.vetoed == {"halted": 1} and c.state == "HALTED"
    c.handle(KillState(None), NOW)
    assert approved(c, place(174_000, 64)) == "ok"


def test_kill_state_unknown_or_unreadable_fails_closed() -> None:
    c = GuardCore(SPEC, limits())  # never told the kill state
    c.handle(book(174_999, 175_001), NOW)
    c.handle(position(0), NOW)
    c.handle(Recovered(), NOW)
    assert vetoed(c, place(174_000, 64)).startswith("halted: ")
    c.handle(KillState(None), NOW)
    assert approved(c, place(174_000, 64)) == "ok"
    c.handle(KillState(None, readable=False), NOW)
    assert vetoed(c, place(174_000, 64)) == "halted: unreadable: risk:kill unreadable"


def test_disabled_guard_approves_everything_except_while_killed() -> None:
    c = make_core(enabled=False)
    assert approved(c, place(174_000, 5_000)) == "disabled"                     # 5 SOL, way over limits
    assert approved(c, place(174_000, 64, created_ms=NOW - 60_000)) == "disabled"  # even stale
    c.handle(KillState("manual"), NOW)
    assert vetoed(c, place(174_000, 64)) == "halted: kill: manual"


def test_disabled_guard_never_trips_the_kill() -> None:
    c = make_core(enabled=False)
    assert c.handle(position(5_000), NOW) == []


# --- unknown / stale / invalid --------------------------------------------------------------------
def test_stale_intent_vetoed_and_boundary_is_inclusive() -> None:
    c = make_core()
    assert vetoed(c, place(174_000, 64, created_ms=NOW - 5_001)) == "stale"
    assert approved(c, place(174_000, 64, created_ms=NOW - 5_000)) == "ok"  # created + ttl == now: not yet stale
    assert c.vetoed == {"stale": 1}


def test_other_market_and_non_positive_amounts_vetoed() -> None:
    c = make_core()
    assert vetoed(c, place(174_000, 64, market_id=0)).startswith("market: ")
    assert vetoed(c, place(0, 64)).startswith("invalid: ")
    assert vetoed(c, place(174_000, 0)).startswith("invalid: ")
    assert vetoed(c, place(-1, 64)).startswith("invalid: ")
    assert vetoed(c, place(174_000, 64, coi=2**48)).startswith("invalid: client_order_index")
    assert c.vetoed == {"market": 1, "invalid": 4}


def test_reused_client_order_index_vetoed() -> None:
    c = make_core()
    assert approved(c, place(174_000, 64, coi=77)) == "ok"
    assert vetoed(c, place(170_001, 64, coi=77)).startswith("invalid: client_order_index 77")


# --- self-trade -----------------------------------------------------------------------------------
def test_bid_crossing_our_resting_ask_is_self_trade() -> None:
    c = make_core()
    c.handle(update(1, 175_100, 64, is_ask=True), NOW)
    assert vetoed(c, place(175_100, 64)).startswith("self-trade: crosses our")   # bid == our ask crosses
    assert vetoed(c, place(175_200, 64)).startswith("self-trade: crosses our")
    assert approved(c, place(175_099, 64)) == "ok"
    assert approved(c, place(175_500, 64, is_ask=True)) == "ok"  # same side never self-trades


def test_ask_crossing_our_resting_bid_is_self_trade_until_it_is_gone() -> None:
    c = make_core()
    c.handle(update(2, 174_900, 64, is_ask=False), NOW)
    assert vetoed(c, place(174_900, 64, is_ask=True)).startswith("self-trade: crosses our")
    assert approved(c, place(174_901, 64, is_ask=True)) == "ok"
    c.handle(update(2, 174_900, 64, is_ask=False, status="canceled", remaining=64), NOW)
    assert approved(c, place(174_800, 64, is_ask=True)) == "ok"


def test_approved_place_in_flight_counts_for_self_trade() -> None:
    c = make_core()
    assert approved(c, place(175_050, 64, is_ask=True)) == "ok"
    assert vetoed(c, place(175_060, 64)).startswith("self-trade: crosses our")


# --- position limit -------------------------------------------------------------------------------
def test_position_limit_is_inclusive() -> None:
    c = make_core(bid=100_000, ask=100_002)  # a low mid keeps the notional limit out of the way
    assert approved(c, place(100_000, 200)) == "ok"
    c2 = make_core(bid=100_000, ask=100_002)
    assert vetoed(c2, place(100_000, 201)) == "position: worst long 0.201 > max 0.2 SOL"
    assert vetoed(c2, place(100_001, 201, is_ask=True)) == "position: worst short -0.201 < -0.2 SOL"


def test_resting_and_in_flight_orders_count_toward_the_worst_case() -> None:
    c = make_core(bid=100_000, ask=100_002)
    c.handle(position(30), NOW)
    c.handle(update(1, 99_000, 100, is_ask=False), NOW)        # resting bid 0.1
    assert approved(c, place(99_100, 50)) == "ok"               # in flight 0.05: worst long 0.18
    assert vetoed(c, place(99_200, 21)) == "position: worst long 0.201 > max 0.2 SOL"
    assert approved(c, place(99_200, 20)) == "ok"               # exactly 0.2
    # the ask side is independent: 0.03 - 0.23 = -0.2 is fine, one more lot is not
    assert approved(c, place(101_000, 230, is_ask=True)) == "ok"
    assert vetoed(c, place(101_001, 1, is_ask=True)) == "position: worst short -0.201 < -0.2 SOL"


def test_partially_filled_order_counts_its_remainder() -> None:
    c = make_core(bid=100_000, ask=100_002)
    c.handle(update(1, 99_000, 150, is_ask=False, remaining=50), NOW)
    assert approved(c, place(99_100, 150)) == "ok"   # 0 + 0.05 + 0.15 = 0.2


def test_reduction_allowed_when_over_limit() -> None:
    c = make_core(bid=100_000, ask=100_002)
    c.handle(position(250), NOW)                      # over the limit: REDUCING
    assert c.state == "REDUCING"
    assert vetoed(c, place(99_000, 1)).startswith("reducing: only orders that shrink position 0.25")
    assert approved(c, place(101_000, 50, is_ask=True)) == "ok"   # reduces: 0.25 -> 0.2
    assert approved(c, place(101_000, 200, is_ask=True)) == "ok"  # 0.25 open on the ask side: down to 0 at worst
    assert vetoed(c, place(101_000, 1, is_ask=True)).startswith(
        "reducing: only orders that shrink position 0.25 SOL: 1 on top of 250 open on that side would flip")


# --- notional limit (exact micro-USDC) ------------------------------------------------------------
def test_notional_exactly_at_the_limit_is_allowed() -> None:
    c = make_core(bid=174_999, ask=175_001)           # mid 175.000: 0.2 SOL = 35.000000 USDC
    assert approved(c, place(174_000, 200)) == "ok"


def test_notional_half_a_tick_above_the_limit_is_vetoed() -> None:
    c = make_core(bid=175_000, ask=175_001)           # mid 175.0005: 0.2 SOL = 35.0001 USDC
    assert vetoed(c, place(174_000, 200)) == "notional: worst long 35.0001 > max 35 USDC"
    assert approved(c, place(174_000, 199)) == "ok"   # 34.8250995


def test_notional_counts_the_short_worst_case_and_resting_orders() -> None:
    c = make_core(bid=175_001, ask=175_003)           # mid 175.002
    c.handle(update(1, 176_000, 150, is_ask=True), NOW)
    assert vetoed(c, place(176_100, 50, is_ask=True)) == "notional: worst short 35.0004 > max 35 USDC"
    assert approved(c, place(176_100, 49, is_ask=True)) == "ok"


def test_no_mid_no_place() -> None:
    c = make_core(bid=None, ask=None)
    assert vetoed(c, place(175_000, 64)) == "price_band: no mid to judge the price against"


def test_one_sided_book_keeps_the_previous_mid() -> None:
    c = make_core(bid=175_000, ask=175_001)
    c.handle(BookTop(market_id=2, seq=2, venue_ts_ms=NOW, bids=[(100_000, 5)], asks=[]), NOW + 1)
    assert c.mid2 == 350_001 and c.last_book_ms == NOW


def test_reducing_order_passes_the_notional_check() -> None:
    c = make_core(bid=199_999, ask=200_001)           # mid 200: 0.2 SOL = 40 USDC
    c.handle(KillState(None), NOW)
    c.handle(position(-200), NOW)                     # breach by notional: REDUCING, short 0.2
    assert c.state == "REDUCING" and c.reason.startswith("inventory: notional 40 > max 35 USDC")
    assert approved(c, place(199_000, 100)) == "ok"   # bid reduces the short: exposure long 0
    assert vetoed(c, place(201_000, 1, is_ask=True)).startswith("reducing: ")


# --- in-flight bookkeeping ------------------------------------------------------------------------
def test_in_flight_place_becomes_resting_without_double_counting() -> None:
    c = make_core(bid=100_000, ask=100_002)
    it = place(99_000, 150)
    approved(c, it)
    assert c.open_lots(False) == 150
    c.handle(update(it.client_order_index, 99_000, 150, is_ask=False), NOW)
    assert c.open_lots(False) == 150 and [o.state.value for o in c.ledger.live()] == ["open"]
    c.handle(update(it.client_order_index, 99_000, 150, is_ask=False, status="filled", remaining=0), NOW)
    assert c.open_lots(False) == 0 and list(c.ledger.live()) == []


@pytest.mark.parametrize("kind", ["reject", "stale", "killed"])
def test_gateway_refusal_resolves_an_in_flight_place(kind: str) -> None:
    c = make_core(bid=100_000, ask=100_002)
    it = place(99_000, 150)
    approved(c, it)
    c.handle(OrderEvent(kind=kind, intent_id=it.intent_id, action="place", market_id=2,
                        client_order_index=it.client_order_index, ts_ms=NOW), NOW)
    assert c.open_lots(False) == 0


def test_own_veto_ack_and_cancel_reject_do_not_resolve() -> None:
    c = make_core(bid=100_000, ask=100_002)
    it = place(99_000, 150)
    approved(c, it)
    for ev in (OrderEvent(kind="veto", client_order_index=it.client_order_index, action="place", market_id=2, ts_ms=NOW),
               OrderEvent(kind="ack", client_order_index=it.client_order_index, action="place", market_id=2, ts_ms=NOW),
               OrderEvent(kind="reject", client_order_index=it.client_order_index, action="cancel", market_id=2, ts_ms=NOW)):
        c.handle(ev, NOW)
    assert c.open_lots(False) == 150


def test_unresolved_place_counted_until_a_reconcile_shows_it_gone() -> None:
    """No news is not "gone": an approved place whose outcome is unknown counts until the venue's word."""
    c = make_core(bid=100_000, ask=100_002)
    it = place(99_000, 150, ttl_ms=5_000)
    approved(c, it)
    c.handle(OrderEvent(kind="unknown", intent_id=it.intent_id, action="place", market_id=2,
                        client_order_index=it.client_order_index, message="no answer", ts_ms=NOW), NOW)
    c.on_timer(NOW + 10 * 3_600_000)
    assert c.open_lots(False) == 150
    snap = Reconcile(reason="periodic", as_of_ms=NOW + 60_000, markets=[2], ts_ms=NOW + 60_000)
    c.handle(snap, NOW + 60_000)
    assert c.open_lots(False) == 150        # the nonce is still in doubt: only the gateway's evidence settles it
    c.handle(OrderEvent(kind="resolved", intent_id=it.intent_id, action="place", market_id=2,
                        client_order_index=it.client_order_index, message="executed: its nonce was consumed",
                        ts_ms=NOW), NOW + 61_000)
    c.handle(snap.model_copy(update={"as_of_ms": NOW + 90_000}), NOW + 90_000)
    assert c.open_lots(False) == 0


def test_resting_order_whose_end_was_missed_is_closed_by_a_reconcile() -> None:
    """The issue's phantom order: filled while the feed was down; the reconcile closes it and counts the fill."""
    c = make_core(bid=100_000, ask=100_002)
    c.handle(update(42, 99_000, 150, is_ask=False), NOW)
    assert c.open_lots(False) == 150
    fill = Fill(market_id=2, trade_id=7, order_index=1, client_order_index=42, is_ask=False, is_maker=True,
                price=99_000, size=150, ts_ms=NOW + 1_000)
    c.handle(Reconcile(reason="acct gap", as_of_ms=NOW + 30_000, markets=[2], fills=[fill], ts_ms=NOW + 30_000),
             NOW + 30_000)
    assert c.open_lots(False) == 0 and list(c.ledger.live()) == [] and c.effective_position == 150


def test_places_vetoed_until_the_position_is_known() -> None:
    c = GuardCore(SPEC, limits())
    c.handle(KillState(None), NOW)
    c.handle(book(174_999, 175_001), NOW)
    c.handle(Recovered(), NOW)
    assert "unknown" in vetoed(c, place(174_000, 50))
    c.handle(position(0), NOW)
    approved(c, place(174_000, 50))


def test_fill_counts_before_its_position_update_arrives() -> None:
    """Orders and positions come on separate channels: a fill must not vanish from the exposure meanwhile."""
    c = make_core()
    first = place(174_000, 190)
    approved(c, first)
    c.handle(update(first.client_order_index, 174_000, 190, is_ask=False, status="filled", remaining=0), NOW + 1)
    c.handle(Fill(market_id=2, trade_id=1, order_index=1, client_order_index=first.client_order_index, is_ask=False,
                  is_maker=True, price=174_000, size=190, ts_ms=NOW + 1), NOW + 1)
    assert c.effective_position == 190
    assert "worst long" in vetoed(c, place(174_000, 190))
    c.handle(Position(market_id=2, position=190, ts_ms=NOW + 1), NOW + 2)  # now confirmed: not counted twice
    assert c.effective_position == 190 and c.ledger.unconfirmed == []


def test_fill_already_in_the_position_is_not_counted_twice() -> None:
    c = make_core()
    c.handle(Position(market_id=2, position=-60, ts_ms=NOW + 5), NOW + 5)
    c.handle(Fill(market_id=2, trade_id=1, order_index=1, client_order_index=9, is_ask=True, is_maker=True,
                  price=174_000, size=60, ts_ms=NOW + 5), NOW + 5)
    assert c.effective_position == -60


def test_events_of_other_markets_are_ignored() -> None:
    c = make_core(bid=100_000, ask=100_002)
    c.handle(position(5_000, market_id=0), NOW)
    c.handle(update(1, 99_000, 150, is_ask=False, market_id=0), NOW)
    c.handle(book(1, 2, market_id=0), NOW)
    assert (c.position, list(c.ledger.live()), c.mid2) == (0, [], 200_002)


def test_fills_are_counted_for_health() -> None:
    c = make_core()
    c.handle(Fill(market_id=2, trade_id=1, order_index=1, client_order_index=1, is_ask=False, is_maker=True,
                  price=175_000, size=64, ts_ms=NOW), NOW + 5)
    assert (c.fills, c.last_fill_ms, c.last_account_ms) == (1, NOW + 5, NOW + 5)


# --- trading states ---------------------------------------------------------------------------------
def states(cmds: list) -> list[tuple[str, str]]:
    return [(c.state.state, c.state.reason) for c in cmds if isinstance(c, PublishState)]


def test_position_breach_moves_to_reducing_and_resumes_below_the_hysteresis() -> None:
    c = make_core(bid=100_000, ask=100_002)
    assert states(c.handle(position(200), NOW)) == []                 # at the limit: fine
    assert states(c.handle(position(250), NOW)) == [("REDUCING", "inventory: position 0.25 beyond max 0.2 SOL")]
    assert states(c.handle(position(260), NOW)) == []                 # same episode, same reason
    assert states(c.handle(position(170), NOW)) == []                 # under the limit, above 0.8 x it
    assert states(c.handle(position(160), NOW)) == [("ACTIVE", "")]   # 0.16 = 0.8 x 0.2
    assert states(c.handle(position(-250), NOW))[0][0] == "REDUCING"
    assert c.triggers.items["inventory"].trips == 2 and c.transitions == {
        "HALTED->ACTIVE": 1, "ACTIVE->REDUCING": 2, "REDUCING->ACTIVE": 1}   # the first: start-up


def test_notional_breach_by_a_mid_move_moves_to_reducing() -> None:
    c = make_core(bid=174_999, ask=175_001)
    assert states(c.handle(position(200), NOW)) == []                 # 35.000000: at the limit
    assert states(c.handle(book(175_500, 175_501), NOW)) == [
        ("REDUCING", "inventory: notional 35.1001 > max 35 USDC (position 0.2 SOL @ 175.5005)")]


def test_the_kill_flag_halts_and_wins_over_reducing() -> None:
    c = make_core(bid=100_000, ask=100_002)
    c.handle(position(250), NOW)
    assert states(c.handle(KillState("ops: stop"), NOW)) == [("HALTED", "kill: ops: stop")]
    assert vetoed(c, place(101_000, 50, is_ask=True)) == "halted: kill: ops: stop"   # not even a reduction
    assert states(c.handle(KillState(None), NOW))[0][0] == "REDUCING"


def test_manual_reduce_switch() -> None:
    c = make_core(bid=100_000, ask=100_002)
    c.handle(position(100), NOW)
    assert states(c.handle(KillState(None, reduce="ops: flatten"), NOW)) == [("REDUCING", "manual: ops: flatten")]
    assert vetoed(c, place(99_000, 10)).startswith("reducing: ")
    assert approved(c, place(101_000, 100, is_ask=True)) == "ok"
    assert states(c.handle(KillState(None), NOW)) == [("ACTIVE", "")]


def test_drawdown_from_peak_latches_until_resume() -> None:
    c = make_core(bid=99_999, ask=100_001)            # mid 100
    c.handle(Fill(market_id=2, trade_id=1, order_index=1, client_order_index=1, is_ask=False, is_maker=True,
                  price=100_000, size=100, ts_ms=NOW), NOW)   # long 0.1 bought at 100
    c.handle(Position(market_id=2, position=100, ts_ms=NOW + 1), NOW + 1)
    c.handle(Position(market_id=2, position=900, ts_ms=NOW + 1), NOW + 1)   # no fill behind it: PnL does not move
    c.handle(Position(market_id=2, position=100, ts_ms=NOW + 1), NOW + 1)
    c.handle(book(109_999, 110_001), NOW + 2)         # +1 USDC: the peak
    assert states(c.handle(book(80_009, 80_011), NOW + 3)) == []   # -2.999: within 3 USDC
    assert states(c.handle(book(79_989, 79_991), NOW + 4)) == [
        ("REDUCING", "drawdown: down 3.001 USDC from peak PnL (max 3)")]
    assert states(c.handle(book(79_989, 79_991), NOW + 5)) == []    # still down: latched (auto_resume false)
    cmds = c.handle(KillState(None, resume=True), NOW + 6)          # the operator resumes: the peak is reset
    assert states(cmds) == [("ACTIVE", "")] and any(type(x).__name__ == "ClearResume" for x in cmds)


def test_stale_feed_halts_and_resumes_after_fresh_books() -> None:
    c = make_core()
    assert states(c.on_timer(NOW + 5_000)) == []
    assert states(c.on_timer(NOW + 5_001)) == [("HALTED", "stale_feed: no book for 5.0s (max 5s)")]
    c.handle(book(174_999, 175_001), NOW + 6_000)
    assert states(c.on_timer(NOW + 7_999)) == []                   # fresh for 1.999 s: not yet
    assert states(c.on_timer(NOW + 8_000)) == [("ACTIVE", "")]


def test_a_silent_account_channel_halts_only_when_the_venue_acted() -> None:
    c = make_core()
    for t in range(0, 120_001, 1_000):   # nothing happening: silence is fine
        c.handle(book(174_999, 175_001), NOW + t)
    assert c.state == "ACTIVE"
    later = NOW + 120_000
    c.handle(OrderEvent(kind="ack", action="cancel_all", market_id=-1, ts_ms=later), later)   # may move nothing
    c.handle(OrderEvent(kind="ack", action="cancel", market_id=2, client_order_index=5, ts_ms=later), later)   # may fail
    c.handle(OrderEvent(kind="ack", action="place", market_id=2, client_order_index=77, ts_ms=later), later)
    c.handle(OrderEvent(kind="ack", action="place", market_id=2, client_order_index=78, ts_ms=later + 5_000), later + 5_000)
    c.handle(book(174_999, 175_001), later + 10_000)
    assert c.state == "ACTIVE"                                            # 10 s since the first ack: at the limit
    c.handle(book(174_999, 175_001), later + 10_001)
    assert c.state == "HALTED" and c.reason.startswith("idle_account: the venue accepted our place 10s ago")
    c.handle(update(77, 174_000, 64, is_ask=False), later + 10_002)       # the channel speaks again
    assert c.state == "ACTIVE"
    c.handle(update(78, 174_001, 64, is_ask=False), later + 10_003)
    c.handle(update(79, 174_002, 64, is_ask=False), later + 10_004)       # an echo may beat its ack
    c.handle(OrderEvent(kind="ack", action="place", market_id=2, client_order_index=79, ts_ms=later), later + 10_005)
    c.handle(book(174_999, 175_001), later + 60_000)
    assert c.state == "ACTIVE" and c.unechoed == {}


def test_reject_storm_halts_then_resumes_after_the_window_and_the_wait() -> None:
    c = make_core()
    for i in range(10):
        cmds = c.handle(OrderEvent(kind="reject", action="place", code=21_120, ts_ms=NOW + i), NOW + i)
    assert states(cmds) == [("HALTED", "reject_storm: 10 rejects in 60s")]
    for t in (60_000, 119_999, 120_000):   # the storm leaves the window at +60 s; a minute's calm resumes
        c.handle(book(174_999, 175_001), NOW + t)
        c.handle(position(0), NOW + t)
        assert c.state == ("ACTIVE" if t == 120_000 else "HALTED")


def test_lost_heartbeat_reduces_only_once_seen_and_counts_from_the_last_beat() -> None:
    c = make_core()

    def beats(c: GuardCore, hb: dict, t: int) -> list:
        c.handle(book(174_999, 175_001), t)
        c.handle(position(0), t)
        return c.handle(Heartbeats(hb), t)
    assert states(beats(c, {"feed": None, "maker": None, "hedger": None, "gateway": None}, NOW)) == []
    beat = {"feed": NOW, "maker": NOW, "hedger": NOW, "gateway": NOW}
    beats(c, beat, NOW)
    def gone(t: int) -> dict:   # the maker's key expired (5 s TTL): its last beat still counts
        return {"feed": t, "maker": None, "hedger": t, "gateway": t}
    assert states(beats(c, gone(NOW + 10_000), NOW + 10_000)) == []
    cmds = beats(c, gone(NOW + 10_001), NOW + 10_001)
    assert states(cmds) == [("REDUCING", "heartbeat: lost: maker (10.0s since its last beat)")]
    beats(c, {n: NOW + 11_000 for n in beat}, NOW + 11_000)
    c.handle(book(174_999, 175_001), NOW + 13_000)
    assert c.state == "ACTIVE"
    beats(c, {**{n: NOW + 30_000 for n in beat}, "hedger": None}, NOW + 30_000)   # hedger stopped on purpose ...
    assert c.state == "REDUCING"
    c.handle(position(0), NOW + 30_001)
    cmds = c.handle(KillState(None, resume=True), NOW + 30_001)    # ... the operator says so
    beats(c, {**{n: NOW + 32_002 for n in beat}, "hedger": None}, NOW + 32_002)
    assert "heartbeat" not in {n for n, t in c.triggers.items.items() if t.active}


def test_crossed_book_halts_without_moving_the_mid() -> None:
    c = make_core()
    cmds = c.handle(book(175_010, 175_000), NOW + 1)
    assert states(cmds) == [("HALTED", "crossed_book: crossed book: bid 175010 >= ask 175000")]
    assert c.mid2 == 350_000
    c.handle(book(174_999, 175_001), NOW + 2)
    assert states(c.on_timer(NOW + 2_002)) == [("ACTIVE", "")]


def test_recovery_judges_the_state_once_and_known_verdicts_are_one_shot() -> None:
    c = GuardCore(SPEC, limits())
    c.handle(KillState(None), NOW)
    c.handle(book(100_000, 100_002), NOW)
    assert c.handle(position(300), NOW) == []                          # replaying history: no state yet
    it = place(101_000, 1, is_ask=True)
    cmds = c.handle(Recovered(frozenset({it.intent_id})), NOW)
    assert states(cmds) == [("REDUCING", "inventory: position 0.3 beyond max 0.2 SOL")]
    assert verdict(c, it) == Duplicate(it)
    assert isinstance(verdict(c, it), Approve)                      # a second redelivery is judged
    c.handle(Recovered(frozenset({"x"})), NOW)
    c.on_timer(NOW + 600_001)
    assert c.known_verdicts == set()


# --- the checks the venue would otherwise make --------------------------------------------------------
def test_exchange_minimums_price_band_and_book_age() -> None:
    c = GuardCore(REAL_SPEC, limits())
    c.handle(KillState(None), NOW)
    c.handle(position(0), NOW)
    c.handle(book(174_999, 175_001), NOW)
    c.handle(Recovered(), NOW)
    assert vetoed(c, place(174_000, 49)) == "min_size: 0.049 < exchange minimum 0.05 SOL"
    assert vetoed(c, place(150_000, 60)) == "min_notional: 9 < exchange minimum 10 USDC"
    assert approved(c, place(171_500, 64)) == "ok"                   # exactly 200 bps below mid
    assert vetoed(c, place(171_499, 64)) == "price_band: 200 bps from mid 175 (max 200)"
    assert vetoed(c, place(1_750_000, 64, is_ask=True)).startswith("price_band: 90000 bps")
    old = place(174_000, 64).model_copy(update={"book_ts_ms": NOW - 1_001})
    assert vetoed(c, old) == "book_age: book 1001 ms old (max 1000 ms)"
    assert approved(c, place(174_100, 64).model_copy(update={"book_ts_ms": NOW - 1_000})) == "ok"


def test_rate_budget_leaves_room_for_hedges() -> None:
    c = make_core(bid=100_000, ask=100_002)
    n = 0
    while True:
        v = verdict(c, place(99_000 - n, 1, created_ms=NOW + n), NOW + n)
        if isinstance(v, Veto):
            break
        n += 1
    assert n == 32 and v.message == ("rate: 32 places/modifies in the last minute, 32 of them the maker's "
                                     "(budget 32 for maker)")
    hedge = place(101_000, 1, is_ask=True).model_copy(update={"source": "hedger", "intent_id": "h-1"})
    assert approved(c, hedge, NOW + 40) == "ok"
    later = NOW + 60_001   # two maker stamps left the window
    c.handle(book(100_000, 100_002), later)
    c.handle(position(0), later)
    assert approved(c, place(99_500, 1, created_ms=later).model_copy(update={"book_ts_ms": later}), later) == "ok"


def test_a_hedge_does_not_use_up_the_makers_share_but_the_whole_budget_binds_everyone() -> None:
    """The maker counts only its own intents; so must the guard for the maker's share, or every hedge
    turns a maker intent the maker thought within budget into a "rate" veto."""
    c = make_core(bid=100_000, ask=100_002)
    for n in range(5):   # hedges first
        h = place(101_000 + n, 1, is_ask=True).model_copy(update={"source": "hedger", "intent_id": f"h-{n}"})
        assert approved(c, h, NOW + n) == "ok"
    n = 0
    while isinstance(verdict(c, place(99_000 - n, 1, created_ms=NOW + 10 + n), NOW + 10 + n), Approve):
        n += 1
    assert n == 32                                   # its whole share, hedges or not
    for k in range(3):   # the hedger still has the rest of the whole budget (40): 5 + 32 + 3
        h = place(100_500 + k, 1, is_ask=True).model_copy(update={"source": "hedger", "intent_id": f"h2-{k}"})
        assert approved(c, h, NOW + 100 + k) == "ok"
    h = place(100_600, 1, is_ask=True).model_copy(update={"source": "hedger", "intent_id": "h3"})
    assert vetoed(c, h, NOW + 200).startswith("rate: 40 places/modifies")


def test_replayed_approval_counts_in_flight() -> None:
    c = make_core(bid=100_000, ask=100_002)
    c.handle(Replayed(place(99_000, 150)), NOW)
    assert vetoed(c, place(99_000, 51)).startswith("position: worst long 0.201")


def test_core_module_is_pure() -> None:
    """No asyncio, Redis, clock or randomness in the core and its rules."""
    for name in ("core.py", "rules.py"):
        tree = ast.parse((Path(__file__).parents[2] / "services" / "guard" / name).read_text())
        mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not mods & {"asyncio", "redis", "time", "random", "datetime", "aiohttp"}, (name, mods)


# --- modify in place -----------------------------------------------------------------------------------
def modify(it: OrderIntent, price: int, size: int) -> OrderIntent:
    return it.model_copy(update={"intent_id": f"{it.intent_id}-m{price}", "action": "modify", "price": price,
                                 "size": size})


def test_a_modify_is_judged_like_the_order_it_becomes_without_its_old_size() -> None:
    c = make_core()
    bid = place(174_000, 150)
    approved(c, bid)
    c.handle(update(bid.client_order_index, 174_000, 150, is_ask=False), NOW)
    assert approved(c, modify(bid, 174_100, 200)) == "ok"          # 200 alone is at the limit: old 150 not added
    assert c.open_lots(False) == 200
    c.handle(update(bid.client_order_index, 174_100, 200, is_ask=False), NOW)
    assert "worst long 0.201" in vetoed(c, modify(bid, 174_100, 201))


def test_a_modify_is_vetoed_when_killed_crossing_or_not_live() -> None:
    c = make_core()
    bid, ask = place(174_000, 50), place(176_000, 50, is_ask=True)
    for it in (bid, ask):
        approved(c, it)
        c.handle(update(it.client_order_index, it.price, 50, is_ask=it.is_ask), NOW)
    assert vetoed(c, modify(bid, 176_000, 50)).startswith("self-trade: crosses our")         # onto our own ask
    assert approved(c, modify(ask, 175_500, 50)) == "ok"               # not against itself
    assert vetoed(c, modify(place(1, 1), 174_000, 50)).startswith("invalid: modify")
    c.handle(KillState("manual"), NOW)
    assert vetoed(c, modify(bid, 173_000, 50)) == "halted: kill: manual"


def test_a_latched_trigger_survives_a_restart_until_resumed() -> None:
    c = GuardCore(SPEC, limits())
    c.handle(Restored({"drawdown": "down 1 USDC from peak PnL (max 3)", "stale_feed": "no book", "kill": "x"}), NOW)
    c.handle(KillState(None), NOW)
    c.handle(position(0), NOW)
    c.handle(book(174_999, 175_001), NOW)
    assert states(c.handle(Recovered(), NOW)) == [("REDUCING", "drawdown: down 1 USDC from peak PnL (max 3)")]
    assert not c.triggers.items["stale_feed"].active and not c.triggers.items["kill"].active   # these re-judge now
    assert states(c.handle(KillState(None, resume=True), NOW + 1)) == [("ACTIVE", "")]


def test_cancels_of_orders_already_gone_are_no_storm() -> None:
    c = make_core()
    for i in range(20):
        c.handle(OrderEvent(kind="reject", action="cancel", code=21_715, ts_ms=NOW + i), NOW + i)
    assert c.state == "ACTIVE"


def test_the_portfolio_counts_a_fill_once_whichever_way_it_comes() -> None:
    c = make_core(bid=99_999, ask=100_001)            # baseline: flat at mid 100, as of the position's NOW - 1
    early = Fill(market_id=2, trade_id=1, order_index=1, client_order_index=1, is_ask=False, is_maker=True,
                 price=100_000, size=100, ts_ms=NOW - 5)   # already in that position (it came on another channel)
    c.handle(early, NOW)
    assert c.folio.position == 0 and sum(t.fills for t in c.folio.by_source.values()) == 0
    missed = Fill(market_id=2, trade_id=2, order_index=2, client_order_index=2, is_ask=True, is_maker=True,
                  price=100_010, size=50, ts_ms=NOW + 10)  # only the REST snapshot has it
    snap = Reconcile(reason="periodic", as_of_ms=NOW + 20, markets=[2], fills=[missed], ts_ms=NOW + 20)
    c.handle(snap, NOW + 20)
    c.handle(snap, NOW + 21)                          # the same snapshot again: nothing new
    c.handle(missed, NOW + 22)                        # and the stream's late copy: nothing new
    assert c.folio.position == -50 and c.folio.by_source["other"].fills == 1
