"""HedgerCore decisions, no I/O: trigger, clip size and minimums, passive then aggressive, slippage cap,
one clip at a time, stale books, dry-run."""
from __future__ import annotations

import pytest

from decimal import Decimal
from fractions import Fraction
from typing import Any

from shared.config import HedgerConfig, Settings
from shared.ids import IdMint
from shared.schemas import BookTop, Fill, OrderEvent, OrderUpdate, Position, RiskState
from services.hedger.core import FATE_TIMEOUT_MS, HedgerCore, aggressive_price, clip_size, passive_price
from shared.commands import Cancel, Command, Note, Place


pytestmark = pytest.mark.usefixtures("small_clock")  # cores run on a synthetic clock from t = 0


SETTINGS = Settings()
SPEC = SETTINGS.market_spec
MIN_NOTIONAL = 10_500_000


def make(**kw: Any) -> HedgerCore:
    cfg = HedgerConfig.model_validate({**SETTINGS.hedger.model_dump(), **kw})
    return active(HedgerCore(cfg, SPEC, MIN_NOTIONAL, 5_000))


def active(h: HedgerCore) -> HedgerCore:
    h.handle(RiskState(state="ACTIVE", ts_ms=0), 0)   # a missing trading state is HALTED
    return h


def book(bid: int, ask: int, ts: int, trace: dict[str, int] | None = None) -> BookTop:
    return BookTop(market_id=2, seq=ts, venue_ts_ms=ts, bids=[(bid, 500)], asks=[(ask, 500)], trace=trace or {})


def pos(lots: int, market: int = 2) -> Position:
    return Position(market_id=market, position=lots, ts_ms=0)


def places(cmds: list[Command]) -> list[Place]:
    return [c for c in cmds if isinstance(c, Place)]


def cancels(cmds: list[Command]) -> list[Cancel]:
    return [c for c in cmds if isinstance(c, Cancel)]


def update(p: Place, status: str, filled: int = 0) -> OrderUpdate:
    return OrderUpdate(market_id=2, order_index=p.coi + 1, client_order_index=p.coi, is_ask=p.is_ask, price=p.price,
                       initial_size=p.size, remaining_size=0 if status == "filled" else p.size - filled,
                       filled_size=p.size if status == "filled" else filled, status=status, ts_ms=0)


def started(position: int, bid: int = 139_900, ask: int = 140_100, **kw: Any) -> tuple[HedgerCore, list[Command]]:
    h = make(**kw)
    h.handle(book(bid, ask, 0, trace={"feed": 1}), 0)
    return h, h.handle(pos(position), 0)


def test_clip_size_rules() -> None:
    assert clip_size(200, 40, 75) == 75    # max_clip 0.04 raised to the 0.075 venue minimum
    assert clip_size(-200, 100, 75) == 100
    assert clip_size(40, 75, 75) == 75     # overshoots by 35 but reduces by 40: go
    assert clip_size(38, 75, 75) == 75
    assert clip_size(30, 40, 75) is None   # would overshoot by 45 to reduce 30: skip


def test_clip_size_boundary_is_exact() -> None:
    assert clip_size(37, 37, 75) is None   # 75 - 37 = 38 > 37
    assert clip_size(38, 38, 76) == 76     # 76 - 38 = 38, not more than 38


def test_prices() -> None:
    off, slip = Fraction(6), Fraction(25)
    assert passive_price(139_900, 140_100, True, Fraction(2)) == 140_072     # ceil(140100 x 0.9998)
    assert passive_price(139_900, 140_100, False, Fraction(2)) == 139_927    # floor(139900 x 1.0002)
    assert passive_price(139_990, 140_010, True, Fraction(20)) == 139_991    # never at or through the bid
    assert passive_price(139_990, 140_010, False, Fraction(20)) == 140_009
    assert aggressive_price(139_900, 140_100, True, off, slip) == 139_816    # floor(139900 x 0.9994)
    assert aggressive_price(139_900, 140_100, False, off, slip) == 140_185   # ceil(140100 x 1.0006)


def test_slippage_cap() -> None:
    off, slip = Fraction(6), Fraction(25)
    # wide book around mid 140.000: the offset price would be worse than mid -/+ 25 bps
    assert aggressive_price(139_000, 141_000, True, off, slip) == 139_650
    assert aggressive_price(139_000, 141_000, False, off, slip) == 140_350


def test_trigger_is_strict() -> None:
    h, cmds = started(70)
    assert places(cmds) == [] and h.mode == "idle"
    h2, cmds = started(71)
    assert len(places(cmds)) == 1


def test_passive_clip_reduces_long_position() -> None:
    h, cmds = started(200)
    (p,) = places(cmds)
    assert (p.is_ask, p.price, p.size, p.tif, p.reduce_only) == (True, 140_072, 75, "post_only", True)
    assert SPEC.notional_micro(p.price, p.size) >= MIN_NOTIONAL and p.size > 40  # raised above max_clip_units
    assert p.intent_id == f"hedger-{p.coi}" and p.coi & 3 == 2 and p.trace == {"feed": 1}
    assert h.mode == "passive"


def test_short_position_buys_and_other_market_position_is_ignored() -> None:
    h, cmds = started(-200)
    (p,) = places(cmds)
    assert (p.is_ask, p.price, p.size, p.reduce_only) == (False, 139_927, 76, True)
    h2, _ = started(0)
    assert places(h2.handle(pos(-500, market=1), 10)) == []


def test_target_units_and_reduce_only_flag() -> None:
    h, cmds = started(0, target_units="0.1")   # flat but the target is long 0.1: buy, adds to the position
    (p,) = places(cmds)
    assert not p.is_ask and not p.reduce_only
    h, cmds = started(60, target_units="-0.1")  # 0.075 sell would flip 0.060 long to short: not reduce-only
    (p,) = places(cmds)
    assert p.is_ask and p.size == 75 and not p.reduce_only
    h, cmds = started(80, target_units="-0.1")
    assert places(cmds)[0].reduce_only


def test_skip_when_minimum_would_overshoot() -> None:
    h, cmds = started(30, trigger_units="0.02")
    assert places(cmds) == [] and any(isinstance(x, Note) and "skip hedge" in x.text for x in cmds)
    assert h.counts["skipped"] == 1
    assert h.on_timer(500) == []  # logged once per min_interval_s, not on every tick
    assert len(h.on_timer(1_000)) == 1


def test_passive_then_aggressive_after_wait_and_confirmation() -> None:
    h, cmds = started(200)
    (p,) = places(cmds)
    assert h.on_timer(1_499) == []
    cmds = h.on_timer(1_500)
    assert [(x.coi, x.reason) for x in cancels(cmds)] == [(p.coi, "passive wait over")] and not places(cmds)
    assert places(h.on_timer(1_600)) == []  # the passive leg's fate is not known yet
    cmds = h.handle(update(p, "canceled"), 1_700)
    (ioc,) = places(cmds)
    assert (ioc.is_ask, ioc.tif, ioc.price) == (True, "ioc", 139_816)
    assert ioc.size == 76  # the 75 lots left, raised to the minimum at the lower IOC price
    assert h.mode == "aggressive"


def test_partial_passive_fill_limits_the_aggressive_leg() -> None:
    h, cmds = started(400, max_clip_units="0.2")
    (p,) = places(cmds)
    assert p.size == 200
    h.handle(Fill(market_id=2, trade_id=1, order_index=1, client_order_index=p.coi, is_ask=True, is_maker=True,
                  price=p.price, size=120, ts_ms=0), 100)
    h.on_timer(1_500)
    (ioc,) = places(h.handle(update(p, "canceled", filled=120), 1_600))  # position update not seen yet
    assert ioc.size == 80 and ioc.tif == "ioc"


def test_canceled_post_only_goes_aggressive_at_once() -> None:
    h, cmds = started(200)
    (p,) = places(cmds)
    (ioc,) = places(h.handle(update(p, "canceled-post-only"), 100))
    assert ioc.tif == "ioc"


def test_passive_filled_ends_the_clip_and_respects_min_interval() -> None:
    h, cmds = started(200)
    (p,) = places(cmds)
    h.handle(update(p, "open"), 100)
    assert h.clip is not None and h.ledger.get(h.clip.coi).state.value == "open"  # type: ignore[union-attr]
    assert places(h.handle(update(p, "filled"), 500)) == []  # position message not in yet, and min interval
    assert places(h.handle(pos(125), 600)) == []
    assert places(h.on_timer(1_499)) == []
    (p2,) = places(h.on_timer(1_500))
    assert p2.tif == "post_only" and p2.coi != p.coi


def test_in_flight_clip_suppresses_new_clips() -> None:
    h, cmds = started(200)
    assert len(places(cmds)) == 1
    for t in range(100, 1_400, 100):
        assert places(h.handle(book(139_900, 140_100, t), t)) == []
        assert places(h.handle(pos(300), t)) == []


def test_veto_ends_the_clip_without_escalation() -> None:
    h, cmds = started(200)
    (p,) = places(cmds)
    veto = OrderEvent(kind="veto", intent_id=p.intent_id, source="hedger", action="place", client_order_index=p.coi,
                      market_id=2, ts_ms=0)
    assert places(h.handle(veto, 100)) == [] and h.clip is None and h.counts["failed"] == 1
    assert places(h.on_timer(1_099)) == []
    assert places(h.on_timer(1_100))[0].tif == "post_only"


def test_ioc_outcome_ends_the_clip() -> None:
    h, cmds = started(200, prefer_passive=False)
    (ioc,) = places(cmds)
    assert ioc.tif == "ioc" and ioc.price == 139_816
    assert places(h.handle(update(ioc, "canceled-not-enough-liquidity"), 50)) == []
    assert h.clip is None and h.escalation is None
    assert places(h.on_timer(1_050))[0].tif == "ioc"


def test_no_hedge_without_position_or_fresh_book() -> None:
    h = make()
    assert h.handle(pos(200), 0) == [] and h.mode == "stale"
    assert places(h.handle(book(139_900, 140_100, 0), 6_000)) == []  # 6 s old
    h2 = make()
    assert h2.handle(book(139_900, 140_100, 0), 0) == [] and h2.mode == "no-position"


def test_stale_book_cancels_the_passive_clip_without_escalation() -> None:
    h, cmds = started(200)
    (p,) = places(cmds)
    cmds = h.on_timer(5_001)
    assert [(x.coi, x.reason) for x in cancels(cmds)] == [(p.coi, "stale book")] and h.mode == "stale"
    assert places(h.handle(update(p, "canceled"), 5_100)) == []
    assert h.escalation is None and h.clip is None
    (p2,) = places(h.handle(book(139_900, 140_100, 7_000), 7_000))
    assert p2.tif == "post_only"


def test_fate_timeout_cancels_and_forgets_a_clip_without_news() -> None:
    h, cmds = started(200, prefer_passive=False)
    (ioc,) = places(cmds)
    h.handle(book(139_900, 140_100, FATE_TIMEOUT_MS - 1), FATE_TIMEOUT_MS - 1)
    assert h.clip is not None
    cmds = h.on_timer(FATE_TIMEOUT_MS)
    assert [(x.coi, x.reason) for x in cancels(cmds)] == [(ioc.coi, "no news")]
    assert any(isinstance(x, Note) and x.level == "warning" for x in cmds) and h.clip is None
    assert places(h.on_timer(FATE_TIMEOUT_MS + 1_000))[0].tif == "ioc"


def test_unwanted_resting_hedger_order_is_cancelled() -> None:
    h, _ = started(0)
    stray = IdMint("hedger").next_coi(1)
    u = OrderUpdate(market_id=2, order_index=1, client_order_index=stray, is_ask=True, price=1, initial_size=1,
                    remaining_size=1, filled_size=0, status="open", ts_ms=0)
    assert cancels(h.handle(u, 10)) == []
    maker = IdMint("maker").next_coi(1)
    assert cancels(h.handle(u.model_copy(update={"client_order_index": maker}), 20)) == []
    assert [x.coi for x in cancels(h.on_timer(510))] == [stray]
    assert cancels(h.on_timer(2_000)) == []


def test_dry_run_logs_only() -> None:
    h, cmds = started(200, dry_run=True)
    assert places(cmds) == [] and h.clip is None
    (note,) = [x for x in cmds if isinstance(x, Note)]
    assert note.text == "dry-run hedge: passive sell 0.075@140.072 (position 0.200, target 0.000)"
    assert h.on_timer(500) == []
    assert len(h.on_timer(1_000)) == 1


def test_shutdown_cancels_live_clip() -> None:
    h, cmds = started(200)
    (p,) = places(cmds)
    assert [x.coi for x in h.shutdown(10)] == [p.coi]
    assert h.shutdown(20) == []


def test_long_passive_wait_is_not_cut_short_by_the_fate_timeout() -> None:
    h, cmds = started(200, passive_wait_s="12")
    (p,) = places(cmds)
    h.handle(book(139_900, 140_100, 11_000), 11_000)
    assert cancels(h.on_timer(11_999)) == []
    assert [x.reason for x in cancels(h.on_timer(12_000))] == ["passive wait over"]
    assert [x.reason for x in cancels(h.handle(book(139_900, 140_100, 15_000), 22_000))] == ["no news"]


def test_a_hedge_still_working_is_never_hedged_twice() -> None:
    """A clip forgotten at its deadline while its fate is still unknown keeps counting: the next clip
    is sized net of it, and its cancel is sent again until confirmed."""
    h = active(HedgerCore(HedgerConfig(trigger_units=Decimal("0.01"), max_clip_units=Decimal("0.1"), prefer_passive=False),
                          SPEC, 0, 5_000))
    h.handle(Position(market_id=2, position=100, ts_ms=1), 0)
    first = [c for c in h.handle(BookTop(market_id=2, seq=1, venue_ts_ms=0, bids=[(140_000, 500)], asks=[(140_010, 500)]),
                                 0) if isinstance(c, Place)]
    assert first and first[0].size == 100
    h.handle(OrderEvent(kind="unknown", intent_id=first[0].intent_id, source="hedger", action="place", market_id=2,
                client_order_index=first[0].coi, ts_ms=0), 10)
    book = BookTop(market_id=2, seq=2, venue_ts_ms=20_000, bids=[(140_000, 500)], asks=[(140_010, 500)])
    cmds = h.handle(book, 20_000)                                  # past its deadline: cancelled, forgotten...
    assert first[0].coi in [c.coi for c in cmds if isinstance(c, Cancel)]
    assert not [c for c in cmds if isinstance(c, Place)]           # ...but still counted: no second clip
    assert h.net_excess() == 0
    retry = h.handle(book.model_copy(update={"venue_ts_ms": 25_001, "seq": 3}), 25_001)
    assert [c.coi for c in retry if isinstance(c, Cancel)] == [first[0].coi]


# --- our own quotes: no self-cross (the guard's rule) ------------------------------------------------
MAKER = IdMint("maker")


def maker_open(is_ask: bool, price: int, ts: int = 0) -> OrderUpdate:
    """The venue shows a maker quote of ours resting (the hedger adopts it from the account stream)."""
    coi = MAKER.next_coi(ts + 1)
    return OrderUpdate(market_id=2, order_index=coi, client_order_index=coi, is_ask=is_ask, price=price,
                       initial_size=100, remaining_size=100, filled_size=0, status="open", ts_ms=ts)


def maker_ack(is_ask: bool, price: int, action: str = "place", coi: int | None = None) -> OrderEvent:
    """The gateway acked a maker place (or modify): at the venue, not yet in the account stream."""
    coi = coi or MAKER.next_coi(1)
    return OrderEvent(kind="ack", intent_id=f"maker-{coi}", source="maker", action=action, market_id=2,
                      client_order_index=coi, is_ask=is_ask, price=price, size=100, ts_ms=0)


def guard_would_veto(h: HedgerCore, p: Place) -> bool:
    """The guard's self-trade rule over every order of ours the hedger knows may rest."""
    from services.guard.rules import OwnOrder, would_self_trade
    own = [OwnOrder(o.coi, o.is_ask, o.price, o.exposure) for o in h.ledger.live() if o.coi != p.coi]
    own += [OwnOrder(coi, a, px, 1) for coi, (a, px, _) in h.inflight.items()]
    return would_self_trade(p.is_ask, p.price, own)


def test_passive_price_stays_off_our_own_opposite_quote() -> None:
    # the book lags our maker: its ask at 139.920 (acked, not yet in the book or the account stream)
    h = make()
    h.handle(book(139_900, 140_100, 0), 0)
    h.handle(maker_ack(True, 139_920), 0)
    (p,) = places(h.handle(pos(-200), 0))
    assert (p.is_ask, p.tif) == (False, "post_only")
    assert p.price == 139_919 and passive_price(139_900, 140_100, False, Fraction(2)) == 139_927   # capped
    assert not guard_would_veto(h, p) and h.counts["self_cross_capped"] == 1
    # the same once the venue shows it resting (adopted by the ledger from the account stream)
    h2 = make()
    h2.handle(book(139_900, 140_100, 0), 0)
    h2.handle(maker_open(True, 139_920), 0)
    (p2,) = places(h2.handle(pos(-200), 0))
    assert p2.price == 139_919 and not guard_would_veto(h2, p2)


def test_ioc_limit_capped_one_tick_before_our_quote() -> None:
    h = make(prefer_passive=False)
    h.handle(book(139_900, 140_100, 0), 0)
    h.handle(maker_open(True, 140_150), 0)      # our ask behind the best ask 140.100
    (ioc,) = places(h.handle(pos(-200), 0))
    assert (ioc.is_ask, ioc.tif, ioc.price) == (False, "ioc", 140_149)   # not 140.185
    assert not guard_would_veto(h, ioc)
    h2 = make(prefer_passive=False)                # a pending modify's new price counts too
    h2.handle(book(139_900, 140_100, 0), 0)
    q = maker_open(True, 140_300)
    h2.handle(q, 0)
    h2.handle(maker_ack(True, 140_120, "modify", q.client_order_index), 0)
    (ioc2,) = places(h2.handle(pos(-200), 0))
    assert ioc2.price == 140_119 and not guard_would_veto(h2, ioc2)


def test_no_taker_clip_when_our_quote_is_the_best_opposite_price() -> None:
    h = make(prefer_passive=False)
    h.handle(book(139_900, 140_100, 0), 0)
    h.handle(maker_open(False, 139_900), 0)     # the best bid is our maker's
    cmds = h.handle(pos(200), 0)
    assert not [p for p in places(cmds) if p.tif == "ioc"]
    assert h.counts["self_cross_avoided"] == 1
    assert any(isinstance(x, Note) and "no taker sell" in x.text for x in cmds)
    (p,) = places(cmds)                            # a passive clip instead, above our own bid
    assert p.tif == "post_only" and p.is_ask and p.price > 139_900 and not guard_would_veto(h, p)


def test_escalation_blocked_by_our_quote_retries_passive_after_the_interval() -> None:
    h, cmds = started(200)
    (p,) = places(cmds)
    h.handle(maker_open(False, 139_900, ts=100), 100)   # the maker now holds the best bid
    h.on_timer(1_500)
    cmds = h.handle(update(p, "canceled"), 1_600)
    assert places(cmds) == [] and h.counts["self_cross_avoided"] == 1
    assert [x for x in cmds if isinstance(x, Note) and "no taker" in x.text]
    assert places(h.on_timer(2_599)) == []
    (p2,) = places(h.on_timer(2_600))
    assert p2.tif == "post_only" and not guard_would_veto(h, p2)


def test_without_our_quotes_the_hedge_is_unchanged() -> None:
    h, cmds = started(-200, prefer_passive=False)
    h.handle(maker_open(False, 139_800), 0)        # our bid, same side as the hedge buy: irrelevant
    assert places(cmds)[0].price == 140_185 and h.counts["self_cross_capped"] == 0


# --- fills: a fill already hedged is never hedged again ---------------------------------------------
def fill(coi: int, is_ask: bool, price: int, size: int, ts: int, trade: int, fee: int = 0) -> Fill:
    return Fill(market_id=2, trade_id=trade, order_index=coi, client_order_index=coi, is_ask=is_ask,
                is_maker=False, price=price, size=size, fee=fee, ts_ms=ts)


def hedged_maker_fill() -> tuple[HedgerCore, Place]:
    """Flat at ts 1; the maker's bid fills 0.2 at ts 1000; the hedger sells it (IOC) and is filled at ts 1100."""
    h = make(prefer_passive=False, max_clip_units="0.2")
    h.handle(book(139_900, 140_100, 0), 0)
    h.handle(Position(market_id=2, position=0, ts_ms=1), 1)
    (ioc,) = places(h.handle(fill(MAKER.next_coi(5), False, 139_950, 200, 1_000, trade=1), 1_000))
    assert (ioc.is_ask, ioc.size) == (True, 200)
    h.handle(fill(ioc.coi, True, 139_900, 200, 1_100, trade=2), 1_100)
    h.handle(update(ioc, "filled").model_copy(update={"ts_ms": 1_100}), 1_100)
    assert h.clip is None and h.position == 0
    return h, ioc


@pytest.mark.parametrize("late", [200, 0])   # pre-hedge state (stamped before the hedge fill), or post-fill state
def test_late_position_never_sends_a_second_clip(late: int) -> None:
    h, _ = hedged_maker_fill()
    ts = 1_050 if late else 1_150
    for t in range(1_200, 6_000, 100):
        if t == 1_300:
            assert places(h.handle(Position(market_id=2, position=late, ts_ms=ts), t)) == []
        assert places(h.handle(book(139_900, 140_100, t), t)) == [], t
        assert places(h.on_timer(t)) == [], t
    assert h.position == 0


def test_late_pre_hedge_position_stamped_after_the_hedge_fill_is_held() -> None:
    """The feed stamps a position frame without a venue timestamp with its arrival time: a late frame showing
    the pre-hedge 0.2 then looks newer than our hedge fill and erases it. No second clip on its word alone."""
    h, _ = hedged_maker_fill()
    cmds = h.handle(Position(market_id=2, position=200, ts_ms=1_300), 1_300)
    assert any(isinstance(x, Note) and x.level == "warning" for x in cmds) and h.counts["position_held"] == 1
    for t in range(1_400, 4_000, 100):
        assert places(h.handle(book(139_900, 140_100, t), t)) == [], t
        assert places(h.on_timer(t)) == [], t
    h.handle(Position(market_id=2, position=0, ts_ms=3_500), 3_500)   # the venue's next word: flat
    assert h.hold is None
    for t in range(4_000, 8_000, 100):
        assert places(h.handle(book(139_900, 140_100, t), t)) == [], t
        assert places(h.on_timer(t)) == [], t


def test_held_position_is_hedged_once_confirmed_by_time() -> None:
    h, _ = hedged_maker_fill()
    h.handle(Position(market_id=2, position=200, ts_ms=1_300), 1_300)
    got = []
    for t in range(1_400, 5_000, 100):
        got += places(h.handle(book(139_900, 140_100, t), t)) + places(h.on_timer(t))
    assert len(got) == 1 and got[0].is_ask   # nothing contradicted it for 3 s: the venue's position wins


def test_clip_filled_before_its_fills_arrive_holds_the_slot() -> None:
    """The order channel says filled before the trade channel's fill: the clip is not done until its fill
    (or a later position) is booked, so min_interval_s cannot expire into a second clip."""
    h = make(prefer_passive=False, max_clip_units="0.2")
    h.handle(book(139_900, 140_100, 0), 0)
    (ioc,) = places(h.handle(Position(market_id=2, position=200, ts_ms=1), 1))
    h.handle(update(ioc, "filled").model_copy(update={"ts_ms": 100}), 100)
    assert h.clip is not None and h.snapshot()["clip"]["booking"]
    for t in range(200, 2_500, 100):
        assert places(h.handle(book(139_900, 140_100, t), t)) == [], t
        assert places(h.on_timer(t)) == [], t
    cmds = h.handle(fill(ioc.coi, True, 139_900, 200, 100, trade=7), 2_500)
    assert h.clip is None and h.position == 0
    assert any(isinstance(x, Note) and x.text.startswith(f"hedge clip {ioc.coi} done") for x in cmds)
    for t in range(2_600, 6_000, 100):
        assert places(h.handle(book(139_900, 140_100, t), t)) == [], t
        assert places(h.on_timer(t)) == [], t


# --- cost per clip ------------------------------------------------------------------------------------
def test_clip_cost_is_reported_against_the_decision_mid() -> None:
    h, _ = hedged_maker_fill()   # sold 0.2 at 139.900 with mid 140.000 at the decision
    c = h.last_clip_cost
    assert c is not None and c["filled"] == 200 and c["phase"] == "aggressive"
    assert c["slippage_usd"] == pytest.approx(0.02)           # 0.1 USD below mid x 0.2
    assert c["slippage_bps"] == pytest.approx(0.02 / 28 * 10_000)
    h2 = make(prefer_passive=False, max_clip_units="0.2")
    h2.handle(book(139_900, 140_100, 0), 0)
    (ioc,) = places(h2.handle(pos(-200), 0))                   # buy 0.2, two fills, one below mid (we gained)
    h2.handle(fill(ioc.coi, False, 140_100, 150, 0, trade=1, fee=1_500), 10)
    h2.handle(fill(ioc.coi, False, 139_990, 50, 0, trade=2, fee=500), 10)
    cmds = h2.handle(update(ioc, "filled"), 20)
    (note,) = [x for x in cmds if isinstance(x, Note) and "done" in x.text]
    assert note.text == (f"hedge clip {ioc.coi} done: filled 0.200 of 0.200, slippage 0.0145 USD (5.18 bps), "
                         "fees 0.0020 USD")
    assert h2.snapshot()["cost"] == {"slippage_usd": pytest.approx(0.0145), "fees_usd": pytest.approx(0.002),
                                     "filled_lots": 200}


def test_unfilled_clip_costs_nothing_and_rejected_clip_reports_nothing() -> None:
    h, cmds = started(200, prefer_passive=False)
    (ioc,) = places(cmds)
    cmds = h.handle(update(ioc, "canceled-not-enough-liquidity"), 50)
    assert any(isinstance(x, Note) and "filled 0.000 of 0.076, slippage 0.0000 USD (0.00 bps)" in x.text for x in cmds)
    h2, cmds = started(200)
    (p,) = places(cmds)
    veto = OrderEvent(kind="veto", intent_id=p.intent_id, source="hedger", action="place", client_order_index=p.coi,
                      market_id=2, ts_ms=0)
    assert not [x for x in h2.handle(veto, 10) if isinstance(x, Note)] and h2.last_clip_cost is None


# --- expected cost vs risk ----------------------------------------------------------------------------
def warmed(mids: list[tuple[int, int]], **kw: Any) -> HedgerCore:
    """A hedger that saw one book a second (``mids`` = [(bid, ask)]), flat, no clip yet."""
    h = make(**kw)
    h.handle(Position(market_id=2, position=0, ts_ms=0), 0)
    for i, (b, a) in enumerate(mids):
        h.handle(book(b, a, i * 1_000), i * 1_000)
    return h


def test_sigma_is_an_ema_of_one_second_log_returns() -> None:
    import math
    h = warmed([(139_900, 140_100)] * 3)
    assert h.sigma is None                                    # warming up
    h = warmed([(139_900, 140_100), (139_914, 140_114)] * 6)  # +/- 1 bp every second
    r = math.log(140_014 / 140_000)
    assert h.sigma == pytest.approx(abs(r), rel=1e-6)
    assert h.snapshot()["sigma_bps"] == pytest.approx(abs(r) * 10_000, rel=1e-6)


def test_calm_wide_market_defers_the_taker_and_keeps_passive() -> None:
    h = warmed([(139_900, 140_100)] * 10, prefer_passive=False)   # sigma 0: no risk in waiting
    t = 10_000
    cmds = h.handle(Position(market_id=2, position=200, ts_ms=t), t)
    (p,) = places(cmds)
    assert p.tif == "post_only" and h.counts["deferred"] == 1
    assert any(isinstance(x, Note) and x.text.startswith("hedge deferred: expected cost 0.0076 USD > risk 0.0000 USD")
               for x in cmds)
    # prefer_passive: the passive leg ends unfilled, the aggressive leg is deferred, passive again later
    h2 = warmed([(139_900, 140_100)] * 10)
    (p,) = places(h2.handle(Position(market_id=2, position=200, ts_ms=t), t))
    h2.handle(book(139_900, 140_100, t + 1_500), t + 1_500)
    h2.on_timer(t + 1_500)
    cmds = h2.handle(update(p, "canceled"), t + 1_600)
    assert places(cmds) == [] and h2.counts["deferred"] == 1
    assert places(h2.handle(book(139_900, 140_100, t + 2_599), t + 2_599)) == []
    (p2,) = places(h2.handle(book(139_900, 140_100, t + 2_600), t + 2_600))
    assert p2.tif == "post_only"


def test_volatile_market_takes() -> None:
    h = warmed([(139_900, 140_100), (139_970, 140_170)] * 6, prefer_passive=False)   # +/- 5 bps a second
    t = 12_000
    h.handle(book(139_900, 140_100, t), t)
    (ioc,) = places(h.handle(Position(market_id=2, position=200, ts_ms=t), t))
    assert ioc.tif == "ioc" and h.counts["deferred"] == 0
    assert h.clip is not None and h.clip.expected_cost_usd == pytest.approx(0.0076)


def test_taker_fee_counts_in_the_expected_cost() -> None:
    mids = [(139_995, 140_005), (140_002, 140_012)] * 6   # tight, +/- 0.5 bp a second
    h = warmed(mids, prefer_passive=False)
    t = 12_000
    h.handle(book(139_995, 140_005, t), t)
    assert places(h.handle(Position(market_id=2, position=200, ts_ms=t), t))[0].tif == "ioc"
    h2 = warmed(mids, prefer_passive=False, taker_fee_bps="20")   # a 0.2% taker fee outweighs the risk
    h2.handle(book(139_995, 140_005, t), t)
    assert places(h2.handle(Position(market_id=2, position=200, ts_ms=t), t))[0].tif == "post_only"


def test_reducing_hedges_regardless_of_cost() -> None:
    h = warmed([(139_900, 140_100)] * 10, prefer_passive=False)
    h.handle(RiskState(state="REDUCING", reason="inventory", ts_ms=0), 10_000)
    (ioc,) = places(h.handle(Position(market_id=2, position=200, ts_ms=10_000), 10_000))
    assert ioc.tif == "ioc" and h.counts["deferred"] == 0


def test_fills_learned_from_a_reconcile_book_the_clip() -> None:
    from shared.schemas import Reconcile
    h = make(prefer_passive=False, max_clip_units="0.2")
    h.handle(book(139_900, 140_100, 0), 0)
    (ioc,) = places(h.handle(Position(market_id=2, position=200, ts_ms=1), 1))
    h.handle(update(ioc, "filled").model_copy(update={"ts_ms": 100}), 100)
    assert h.clip is not None
    rec = Reconcile(reason="test", as_of_ms=200, markets=[2], complete=False, ts_ms=200,
                    fills=[fill(ioc.coi, True, 139_900, 200, 100, trade=9)])
    cmds = h.handle(rec, 200)
    assert h.clip is None and h.position == 0 and h.last_clip_cost is not None
    assert h.last_clip_cost["slippage_usd"] == pytest.approx(0.02) and not [x for x in cmds if x.__class__ is Place]


def test_a_rate_veto_backs_off_doubling_and_an_ack_resets_it() -> None:
    """The guard's budget counts the maker's requests too: vetoed for rate, the hedger waits 2 s, then 4 s..."""
    h, cmds = started(200)
    waits = []
    t = 0
    for _ in range(3):
        (p,) = places(cmds)
        veto = OrderEvent(kind="veto", intent_id=p.intent_id, source="hedger", action="place", client_order_index=p.coi,
                          market_id=2, message="rate: 40 places/modifies in the last minute (budget 40 for hedger)", ts_ms=t)
        h.handle(veto, t + 10)
        t0, cmds = t + 10, []
        t = t0
        while not places(cmds) and t < t0 + 60_000:
            t += 100
            cmds = h.handle(book(139_900, 140_100, t), t) + h.on_timer(t)
        waits.append(t - t0)
    assert waits == [2_000, 4_000, 8_000]
    (p,) = places(cmds)
    h.handle(OrderEvent(kind="ack", intent_id=p.intent_id, source="hedger", action="place", client_order_index=p.coi,
                        market_id=2, ts_ms=t), t)
    assert h.rate_watch.backoff_ms == 0
