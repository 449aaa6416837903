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
