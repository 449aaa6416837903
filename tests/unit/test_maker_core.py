"""MakerCore decisions, no I/O: quotes, sizes, pause/resume, trend, skew, requotes, order tracking."""
from __future__ import annotations

import pytest

from typing import Any

from shared.config import MakerConfig, Settings, TrendConfig, VolatilityConfig
from shared.ids import IdMint
from shared.schemas import BookTop, Fill, OrderEvent, OrderUpdate, Position, RiskState
from shared.commands import Cancel, Command, Modify, Note, Place, Reject, to_intent
from services.maker.core import MakerCore


pytestmark = pytest.mark.usefixtures("small_clock")  # cores run on a synthetic clock from t = 0


SETTINGS = Settings()
SPEC = SETTINGS.market_spec
CALM = {"volatility": VolatilityConfig(enabled=False), "trend": TrendConfig(enabled=False)}


def make(**kw: Any) -> MakerCore:
    """The packet's maker at a 10 bps half-spread, the old skew (one half-spread at the 0.2 limit: 50
    bps per unit) and the old volatility multiplier, so prices below are easy to check by hand."""
    kw = {"spread_bps": 10, "requote_bps": 3, "skew": {"price_bps_per_unit": 50}, **kw}
    if "volatility" not in kw:
        kw["volatility"] = VolatilityConfig(spread_multiplier=1)
    cfg = MakerConfig.model_validate({**SETTINGS.maker.model_dump(), **kw})
    core = MakerCore(cfg, SPEC, 200)  # guard.max_position_units 0.2 = 200 lots
    core.handle(RiskState(state="ACTIVE", ts_ms=0), 0)   # a missing trading state is HALTED
    core.handle(Position(market_id=2, position=0, ts_ms=0), 0)  # nothing is quoted before the position is known
    return core


def book(mid: int, ts: int, half: int = 10, trace: dict[str, int] | None = None, market: int = 2) -> BookTop:
    return BookTop(market_id=market, seq=ts, venue_ts_ms=ts, bids=[(mid - half, 100)], asks=[(mid + half, 100)],
                   trace=trace or {})


def places(cmds: list[Command]) -> list[Place]:
    return [c for c in cmds if isinstance(c, Place)]


def cancels(cmds: list[Command]) -> list[Cancel]:
    return [c for c in cmds if isinstance(c, Cancel)]


def update(coi: int, status: str, size: int = 76, remaining: int | None = None, is_ask: bool = False,
           price: int = 1) -> OrderUpdate:
    rem = (0 if status == "filled" else size) if remaining is None else remaining
    return OrderUpdate(market_id=2, order_index=coi + 7, client_order_index=coi, is_ask=is_ask, price=price, initial_size=size,
                       remaining_size=rem, filled_size=size - rem, status=status, ts_ms=0)


def test_first_fresh_book_places_two_post_only_quotes_with_clamped_sizes() -> None:
    c = make(**CALM)
    cmds = c.handle(book(140_000, 1_000, trace={"venue": 1, "feed": 2}), 1_000)
    bid, ask = places(cmds)
    assert (bid.is_ask, bid.price, bid.size) == (False, 139_860, 76)  # 75 lots at 139.860 = 10.4895 < 10.5
    assert (ask.is_ask, ask.price, ask.size) == (True, 140_140, 75)   # the user's 0.064 -> 0.075 at ~140
    assert bid.tif == ask.tif == "post_only" and not bid.reduce_only
    assert bid.coi != ask.coi and bid.intent_id == f"maker-{bid.coi}" and bid.coi & 3 == 1
    assert bid.trace == {"venue": 1, "feed": 2}
    assert c.mode == "quoting"


def test_intent_carries_ttl_created_and_trace_hop() -> None:
    c = make(**CALM)
    bid = places(c.handle(book(140_000, 1_000, trace={"feed": 5}), 1_000))[0]
    it = to_intent(bid, "maker", 2, 1_234, 9_999, SETTINGS.maker.quote_ttl_ms)
    assert (it.action, it.source, it.market_id, it.client_order_index, it.price, it.size) == ("place", "maker", 2, bid.coi, 139_860, 76)
    assert (it.created_ms, it.ttl_ms, it.tif, it.order_type) == (1_234, 5_000, "post_only", "limit")
    assert it.trace == {"feed": 5, "maker": 9_999}
    cx = to_intent(Cancel(bid.coi, "maker-1", "x", {"feed": 5}), "maker", 2, 1_300, 10_000, 5_000)
    assert (cx.action, cx.client_order_index, cx.intent_id, cx.trace) == ("cancel", bid.coi, "maker-1", {"feed": 5, "maker": 10_000})


def test_other_market_and_stale_books_are_not_quoted() -> None:
    c = make(**CALM)
    assert c.handle(book(140_000, 1_000, market=1), 1_000) == []
    assert c.handle(book(140_000, 1_000), 6_001) == [] and c.mode == "stale"  # 5.001 s old on arrival
    assert len(places(c.handle(book(140_000, 6_000), 6_001))) == 2


def test_book_going_stale_cancels_quotes_until_fresh_data() -> None:
    c = make(**CALM)
    bid, ask = places(c.handle(book(140_000, 0), 0))
    assert c.on_timer(5_000) == []  # exactly max_book_age_s: still fresh
    cmds = c.on_timer(5_001)
    assert {x.coi for x in cancels(cmds)} == {bid.coi, ask.coi} and not places(cmds) and c.mode == "stale"
    assert c.on_timer(6_000) == []  # nothing more to do while stale
    again = places(c.handle(book(140_000, 7_000), 7_000))
    assert len(again) == 2 and c.mode == "quoting"


def test_one_sided_and_malformed_books() -> None:
    c = make(**CALM)
    places(c.handle(book(140_000, 0), 0))
    one_sided = BookTop(market_id=2, seq=1, venue_ts_ms=100, bids=[(139_990, 1)], asks=[])
    cmds = c.handle(one_sided, 100)
    assert len(cancels(cmds)) == 2 and c.mode == "stale"
    crossed = BookTop(market_id=2, seq=2, venue_ts_ms=200, bids=[(140_010, 1)], asks=[(140_000, 1)])
    assert c.handle(crossed, 200) == [Reject("crossed book: bid 140010 >= ask 140000")]
    unordered = BookTop(market_id=2, seq=3, venue_ts_ms=300, bids=[(139_000, 1), (139_500, 1)], asks=[(141_000, 1)])
    assert isinstance(c.handle(unordered, 300)[0], Reject)
    zero = BookTop(market_id=2, seq=4, venue_ts_ms=300, bids=[(139_000, 0)], asks=[(141_000, 1)])
    assert isinstance(c.handle(zero, 300)[0], Reject)
    assert c.counts["rejected_input"] == 3


def test_older_book_is_ignored() -> None:
    c = make(**CALM)
    c.handle(book(140_000, 2_000), 2_000)
    assert c.handle(book(150_000, 1_000), 2_100) == []
    assert c.bid == 139_990


def venue_answers(c: MakerCore, cmds: list[Command], t: int) -> None:
    """The venue confirms what the maker sent: places rest, cancels end (as it would within a second)."""
    for x in cmds:
        if isinstance(x, Place):
            c.handle(update(x.coi, "open", size=x.size, is_ask=x.is_ask, price=x.price), t)
        elif isinstance(x, Cancel):
            o = c.ledger.get(x.coi)
            if o is not None:
                c.handle(update(x.coi, "canceled", size=o.size, remaining=o.remaining, is_ask=o.is_ask, price=o.price), t)


def drive_vol_up(c: MakerCore, t: int = 0) -> tuple[int, list[tuple[float, str, list[Command]]]]:
    """Alternate the mid every second by a growing step (2 ticks, then one more each second: from
    0.14 bps to ~5 bps per sqrt(s), i.e. ~1 to ~40 bps of 1-minute sigma) until the maker pauses."""
    seen = []
    for i in range(200):
        mid = 140_000 if i % 2 == 0 else 140_000 + 2 + i
        cmds = c.handle(book(mid, t), t)
        venue_answers(c, cmds, t)
        seen.append((c.vol.value, c.mode, cmds))
        t += 1_000
        if c.paused:
            return t, seen
    raise AssertionError("never paused")


def test_volatility_pause_and_resume_with_hysteresis() -> None:
    c = make(trend=TrendConfig(enabled=False))
    t, rising = drive_vol_up(c)
    # quoting all the way up to pause_bps, including the band between resume (18) and pause (30)
    assert all(mode == "quoting" for vol, mode, _ in rising[:-1])
    assert any(18 <= vol < 30 for vol, _, _ in rising[:-1])
    vol, mode, cmds = rising[-1]
    assert vol >= 30 and mode == "paused"
    assert sorted(x.reason for x in cancels(cmds) if x.reason != "retry") == ["paused", "paused"]
    assert not places(cmds) and c.quotes == {}
    falling = []
    for _ in range(120):  # calm tape: the EMA decays with its 30 s half-life
        cmds = c.handle(book(140_000, t), t)
        falling.append((c.vol.value, c.mode, cmds))
        t += 1_000
        if c.mode == "quoting":
            break
    assert all(mode == "paused" and not places(cmds) for vol, mode, cmds in falling[:-1])
    assert any(18 <= vol < 30 for vol, _, _ in falling[:-1])  # below pause_bps but still paused
    vol, mode, cmds = falling[-1]
    assert vol < 18 and mode == "quoting" and len(places(cmds)) == 2


def test_paused_keeps_only_the_reducing_side_above_the_inventory_ratio() -> None:
    for position, sides in ((50, [True]), (49, []), (-50, [False]), (-200, [False]), (0, [])):
        c = make(trend=TrendConfig(enabled=False))
        c.handle(Position(market_id=2, position=position, ts_ms=0), 0)
        t, rising = drive_vol_up(c)
        assert c.mode == "paused"
        assert sorted(c.targets) == sides, position
        t += 1_000
        c.handle(book(140_000, t), t)
        assert sorted(c.quotes) == sides  # the reducing side is (still or newly) quoted, nothing else


def test_volatility_widens_the_spread() -> None:
    c = make(trend=TrendConfig(enabled=False))
    c.handle(book(140_000, 0), 0)
    c.handle(book(140_140, 1_000), 1_000)  # 10 bps move -> vol ~0.23 bps
    assert c.vol.value > 0
    assert float(c.half_spread_bps) == round(10 + round(c.vol.value, 2), 2)


def trend_core(**trend: Any) -> tuple[MakerCore, list[Command]]:
    c = make(volatility=VolatilityConfig(enabled=False), trend=TrendConfig(**trend))
    cmds: list[Command] = []
    for i in range(8):  # +2 bps per second
        new = c.handle(book(140_000 + 28 * i, i * 1_000), i * 1_000)
        venue_answers(c, new, i * 1_000)
        cmds += new
    return c, cmds


def test_uptrend_quotes_bid_only_and_widens() -> None:
    c, cmds = trend_core()
    assert c.mode == "trend-up" and c.trend.value >= 12
    assert list(c.targets) == [False]
    mid = 140_000 + 28 * 7
    assert c.targets[False].price == (mid * (10_000 - 15)) // 10_000  # half-spread 10 x 1.5
    assert c.quotes.keys() == {False}
    asks_cancelled = [x for x in cancels(cmds)]
    assert asks_cancelled  # the ask placed before the trend showed up was pulled


def test_downtrend_quotes_ask_only() -> None:
    c = make(volatility=VolatilityConfig(enabled=False))
    for i in range(8):
        venue_answers(c, c.handle(book(140_000 - 28 * i, i * 1_000), i * 1_000), i * 1_000)
    assert c.mode == "trend-down" and list(c.targets) == [True]


def test_trend_two_sided_when_not_one_sided() -> None:
    c, _ = trend_core(one_sided=False)
    assert c.mode == "trend-up" and sorted(c.targets) == [False, True]
    c2, _ = trend_core(enabled=False)
    assert c2.mode == "quoting"
    assert c.targets[True].price > c2.targets[True].price  # widened


def test_inventory_skew_moves_both_quotes_against_the_position() -> None:
    prices = {}
    for pos in (0, 100, 200, -100):
        c = make(**CALM)
        c.handle(Position(market_id=2, position=pos, ts_ms=0), 0)
        c.handle(Position(market_id=1, position=999, ts_ms=0), 0)  # another market: ignored
        quotes = {p.is_ask: p.price for p in places(c.handle(book(140_000, 0), 0))}
        prices[pos] = (quotes.get(False), quotes.get(True))
    assert prices[0] == (139_860, 140_140)
    assert prices[100] == (139_790, 140_070)   # long half the limit: both down by half a half-spread (70 ticks)
    assert prices[200] == (None, 140_000)      # at the limit: the ask sits at mid, no bid (the guard would refuse it)
    assert prices[-100] == (139_930, 140_210)


def test_requote_threshold_and_interval() -> None:
    c = make(**CALM)
    bid, ask = places(c.handle(book(140_000, 0), 0))
    assert c.handle(book(140_028, 2_000), 2_000) == []   # 2 bps < requote_bps 3
    cmds = c.handle(book(140_056, 2_500), 2_500)          # 4 bps: cancel then place, both sides
    assert [type(x).__name__ for x in cmds] == ["Cancel", "Place", "Cancel", "Place"]
    assert cmds[0].coi == bid.coi and cmds[2].coi == ask.coi
    new_bid = cmds[1]
    assert isinstance(new_bid, Place) and new_bid.coi not in (bid.coi, ask.coi)
    assert cmds[0].intent_id not in (bid.intent_id, new_bid.intent_id)  # a cancel has its own intent id
    venue_answers(c, cmds, 2_600)
    assert c.handle(book(140_112, 3_000), 3_000) == []   # moved again but within min_requote_interval_s
    cmds = c.on_timer(3_500)
    assert [type(x).__name__ for x in cmds] == ["Modify", "Modify"]   # now resting: moved in place


def test_fill_removes_the_quote_and_refill_waits_for_the_interval() -> None:
    c = make(**CALM)
    bid, ask = places(c.handle(book(140_000, 0), 0))
    c.handle(update(bid.coi, "open"), 50)
    assert c.snapshot()["quotes"][0]["open"]
    # the venue's frame order: the order update (46 left) first, then the fill of 30 - counted once
    c.handle(update(bid.coi, "open", remaining=46), 90)
    assert c.handle(Fill(market_id=2, trade_id=1, order_index=1, client_order_index=bid.coi, is_ask=False,
                         is_maker=True, price=bid.price, size=30, ts_ms=1), 100) == []
    assert c.ledger.get(bid.coi).remaining == 46  # type: ignore[union-attr]
    assert c.position == 30
    assert c.handle(update(bid.coi, "filled"), 200) == []
    assert False not in c.quotes
    cmds = c.on_timer(1_000)
    refill = places(cmds)
    assert [p.is_ask for p in refill] == [False] and not cancels(cmds)
    assert refill[0].price < 139_860  # long 30 lots now: skewed down


def test_canceled_post_only_update_and_veto_event_make_the_quote_gone() -> None:
    c = make(**CALM)
    bid, ask = places(c.handle(book(140_000, 0), 0))
    c.handle(update(ask.coi, "canceled-post-only", is_ask=True), 10)
    veto = OrderEvent(kind="veto", intent_id=bid.intent_id, source="maker", action="place", market_id=2,
                      client_order_index=bid.coi, message="max position", ts_ms=20)
    assert c.handle(veto, 20) == []
    assert c.quotes == {} and c.counts["failed"] == 1
    assert len(places(c.on_timer(1_000))) == 2


def test_events_of_other_sources_are_ignored() -> None:
    c = make(**CALM)
    bid, _ = places(c.handle(book(140_000, 0), 0))
    c.handle(OrderEvent(kind="veto", intent_id="hedger-1", source="hedger", action="place",
                        client_order_index=bid.coi, ts_ms=0), 10)
    assert False in c.quotes


def test_cancel_confirmation_retry_and_give_up() -> None:
    c = make(**CALM, max_book_age_s=100)
    bid, ask = places(c.handle(book(140_000, 0), 0))
    cmds = c.handle(book(140_100, 1_000), 1_000)
    old_bid_cancel, old_ask_cancel = cancels(cmds)
    # the ask's cancel is confirmed by the venue, the bid's by the gateway (order no longer active)
    c.handle(OrderEvent(kind="ack", intent_id=bid.intent_id, source="maker", action="place", market_id=2,
                        client_order_index=bid.coi, ts_ms=0), 1_050)
    c.handle(update(ask.coi, "canceled", is_ask=True), 1_100)
    c.handle(OrderEvent(kind="reject", intent_id=old_bid_cancel.intent_id, source="maker", action="cancel",
                        client_order_index=bid.coi, code=21715, ts_ms=0), 1_100)
    assert c.snapshot()["canceling"] == 0
    # an unconfirmed cancel is sent again every quote_ttl_ms, three attempts in all
    new_bid = c.quotes[False]
    cmds = c.handle(book(140_300, 2_100), 2_100)
    assert cancels(cmds)[0].coi == new_bid.coi
    nb, na = places(cmds)
    c.handle(update(nb.coi, "open", price=nb.price), 2_150)
    c.handle(update(na.coi, "open", is_ask=True, price=na.price), 2_150)
    assert [x.coi for x in cancels(c.on_timer(7_099))] == []
    new_ask = cancels(cmds)[1]
    retry = cancels(c.on_timer(7_100))
    assert [(x.coi, x.reason) for x in retry] == [(new_bid.coi, "retry"), (new_ask.coi, "retry")]
    assert retry[0].intent_id != cmds[0].intent_id  # each attempt is a new intent
    c.handle(update(new_ask.coi, "canceled", is_ask=True), 7_200)
    assert [x.coi for x in cancels(c.on_timer(12_100))] == [new_bid.coi]
    cmds = c.on_timer(17_100)
    assert not cancels(cmds) and any(isinstance(x, Note) and x.level == "warning" for x in cmds)
    assert not cancels(c.on_timer(30_000)) and not any(isinstance(x, Note) for x in c.on_timer(30_001))


def test_place_without_news_is_cancelled_after_twice_the_ttl() -> None:
    c = make(**CALM, max_book_age_s=100)
    bid, ask = places(c.handle(book(140_000, 0), 0))
    c.handle(update(ask.coi, "open", is_ask=True, price=ask.price), 10)
    assert c.on_timer(10_000) == []
    cmds = c.on_timer(10_001)
    assert [(x.coi, x.reason) for x in cancels(cmds)] == [(bid.coi, "no news of the order")]
    assert [p.is_ask for p in places(c.on_timer(10_002))] == [False]


def test_unwanted_resting_maker_orders_are_cancelled_after_a_grace() -> None:
    c = make(**CALM, max_book_age_s=100)
    c.handle(book(140_000, 0), 0)
    foreign = IdMint("maker").next_coi(1)  # e.g. an errored place that did reach the book
    hedger = IdMint("hedger").next_coi(1)
    assert cancels(c.handle(update(foreign, "open", size=10), 100)) == []   # small: our bid still fits the limit
    assert cancels(c.handle(update(hedger, "open", size=10), 100)) == []
    assert cancels(c.on_timer(599)) == []
    assert [(x.coi, x.reason) for x in cancels(c.on_timer(600))] == [(foreign, "unwanted resting order")]
    assert cancels(c.on_timer(2_000)) == []  # once
    # reported open then terminal within the grace (a replayed history): nothing to cancel
    other = IdMint("maker").next_coi(2)
    c.handle(update(other, "open"), 3_000)
    c.handle(update(other, "canceled"), 3_001)
    assert cancels(c.on_timer(4_000)) == []


def test_dry_run_computes_and_logs_but_emits_nothing() -> None:
    c = make(**CALM, dry_run=True)
    cmds = c.handle(book(140_000, 0), 0)
    assert not places(cmds) and not cancels(cmds)
    assert [x.text for x in cmds if isinstance(x, Note)] == ["dry-run quoting: bid 0.076@139.860, ask 0.075@140.140"]
    assert c.handle(book(140_000, 100), 100) == []  # unchanged decision: no new log line
    assert c.on_timer(5_101) == [Note("dry-run stale: no quotes")]
    assert c.quotes == {} and c.shutdown(6_000) == []


def test_shutdown_cancels_live_quotes() -> None:
    c = make(**CALM)
    bid, ask = places(c.handle(book(140_000, 0), 0))
    assert {(x.coi, x.reason) for x in c.shutdown(10)} == {(bid.coi, "shutdown"), (ask.coi, "shutdown")}
    assert c.quotes == {}


def test_snapshot_for_health() -> None:
    c = make(**CALM)
    c.handle(Position(market_id=2, position=-5, ts_ms=0), 0)
    c.handle(book(140_000, 0), 0)
    s = c.snapshot()
    assert s["mode"] == "quoting" and s["position"] == -5 and len(s["quotes"]) == 2
    assert {"vol_bps", "trend_bps", "half_spread_bps", "counts"} <= s.keys()


def test_a_live_quote_moves_in_place_with_one_modify() -> None:
    c = make(**CALM)
    bid, ask = places(c.handle(book(140_000, 0), 0))
    c.handle(update(bid.coi, "open", price=bid.price, remaining=46), 10)      # 30 of 76 filled already
    c.handle(update(ask.coi, "open", is_ask=True, price=ask.price, size=75), 10)
    cmds = c.handle(book(140_100, 1_000), 1_000)
    mods = [x for x in cmds if isinstance(x, Modify)]
    assert not cancels(cmds) and not places(cmds) and len(mods) == 2
    m = next(x for x in mods if not x.is_ask)
    assert m.coi == bid.coi and m.price > bid.price
    assert m.size == 30 + c.targets[False].size                             # total: what filled plus the new target
    assert c.quotes[False].coi == bid.coi and c.counts["modify"] == 2
    assert c.ledger.get(bid.coi).modify_to == (m.price, m.size)  # type: ignore[union-attr]
    assert c.handle(book(140_100, 1_500), 1_500) == []                      # the pending modify counts as the quote


def test_modify_can_be_turned_off() -> None:
    c = make(**CALM, modify_requotes=False)
    bid, _ = places(c.handle(book(140_000, 0), 0))
    c.handle(update(bid.coi, "open", price=bid.price), 10)
    cmds = c.handle(book(140_100, 1_000), 1_000)
    assert bid.coi in [x.coi for x in cancels(cmds)] and not [x for x in cmds if isinstance(x, Modify)]


def test_the_fixed_engine_is_plain_no_pause_trend_or_skew() -> None:
    c = make(engine="fixed", spread_bps=2, trend=TrendConfig(lookback_s=5))
    c.handle(Position(market_id=2, position=50, ts_ms=0), 0)   # long: the adaptive engine would skew down
    t, _ = 0, None
    for i in range(60):   # a violent up-trend: 1-minute sigma far above pause_bps, trend far above trigger_bps
        t = i * 1_000
        venue_answers(c, c.handle(book(140_000 + 200 * i, t), t), t)
    assert c.vol.value > 30 and c.trend.value > 12
    assert c.mode == "quoting" and sorted(c.targets) == [False, True]
    mid = 140_000 + 200 * 59
    assert c.targets[False].price == mid * (10_000 - 2) // 10_000 and c.targets[True].price == -(-mid * 10_002 // 10_000)


def test_engines_share_the_sizing_clamp_and_the_guard_states() -> None:
    for engine in ("fixed", "adaptive", "avellaneda_stoikov", "glft"):
        c = make(engine=engine)
        bid, ask = places(c.handle(book(140_000, 1_000), 1_000))
        assert (bid.size, ask.size) == (76, 75) and bid.tif == ask.tif == "post_only", engine   # the clamp at each price
        c.handle(RiskState(state="HALTED", ts_ms=2_000), 2_000)
        assert c.mode == "halted" and not c.targets, engine


def test_a_cancel_in_flight_counts_as_the_guard_counts_it() -> None:
    """The guard counts a quote being cancelled as resting until the venue confirms it: a cancel + place
    requote whose new order would not fit beside it waits for the confirmation (no veto)."""
    c = make(**CALM, modify_requotes=False)
    c.handle(Position(market_id=2, position=-75, ts_ms=0), 0)    # short 0.075: room on the ask is 0.125
    cmds = c.handle(book(140_000, 0), 0)
    venue_answers(c, cmds, 0)
    ask = next(x for x in places(cmds) if x.is_ask)
    assert ask.size == 75
    cmds = c.handle(book(140_056, 2_000), 2_000)                  # 4 bps: requote both sides
    assert ask.coi in [x.coi for x in cancels(cmds)]
    assert not [x for x in places(cmds) if x.is_ask]              # -75 - 75 (cancelling) - 75 < -200: wait
    o = c.ledger.get(ask.coi)
    again = c.handle(update(ask.coi, "canceled", size=o.size, is_ask=True, price=o.price), 2_300)
    assert [x.size for x in places(again) if x.is_ask] == [75]    # confirmed: now it fits
