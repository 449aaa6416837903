"""The maker and the hedger obey the guard's trading state, so the guard has nothing to veto."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.hedger.core import HedgerCore
from services.maker.core import MakerCore
from shared.commands import Cancel, Command, Modify, Place
from shared.config import HedgerConfig, MakerConfig, RateConfig, Settings, TrendConfig, VolatilityConfig
from shared.rate_budget import RateBudget
from shared.schemas import BookTop, OrderUpdate, Position, RiskState

pytestmark = pytest.mark.usefixtures("small_clock")
SETTINGS = Settings()
SPEC = SETTINGS.market_spec
CALM = {"volatility": VolatilityConfig(enabled=False), "trend": TrendConfig(enabled=False)}


def maker(position: int = 0, state: str | None = "ACTIVE", rate: RateConfig | None = None) -> MakerCore:
    cfg = MakerConfig.model_validate({**SETTINGS.maker.model_dump(), **CALM})
    m = MakerCore(cfg, SPEC, 200, rate)
    if state:
        m.handle(RiskState(state=state, reason="test", ts_ms=0), 0)   # type: ignore[arg-type]
    m.handle(Position(market_id=2, position=position, ts_ms=0), 0)
    return m


def book(ts: int, mid: int = 140_000) -> BookTop:
    return BookTop(market_id=2, seq=ts, venue_ts_ms=ts, bids=[(mid - 10, 500)], asks=[(mid + 10, 500)])


def places(cmds: list[Command]) -> list[Place]:
    return [c for c in cmds if isinstance(c, Place)]


def test_maker_without_a_trading_state_quotes_nothing() -> None:
    m = maker(state=None)
    assert places(m.handle(book(1_000), 1_000)) == [] and m.mode == "halted"


def test_maker_halted_pulls_both_quotes_and_proposes_nothing_more() -> None:
    m = maker()
    assert len(places(m.handle(book(1_000), 1_000))) == 2
    cmds = m.handle(RiskState(state="HALTED", reason="kill: ops", ts_ms=1_100), 1_100)
    assert sorted(c.reason for c in cmds if isinstance(c, Cancel)) == ["halted", "halted"]
    for t in range(1_200, 10_000, 100):   # no veto storm: nothing but unconfirmed cancels sent again
        assert all(isinstance(c, Cancel) and c.reason == "retry" for c in m.handle(book(t), t) + m.on_timer(t))


def test_maker_reducing_quotes_only_the_side_that_shrinks_within_the_position() -> None:
    m = maker(position=60)   # long 0.06: only an ask, at most 0.06 (the minimum at 140 is 0.075: nothing)
    m.handle(RiskState(state="REDUCING", reason="inventory", ts_ms=0), 0)
    assert places(m.handle(book(1_000), 1_000)) == [] and m.mode == "reducing"
    m2 = maker(position=-250)
    m2.handle(RiskState(state="REDUCING", reason="inventory", ts_ms=0), 0)
    (bid,) = places(m2.handle(book(1_000), 1_000))
    assert not bid.is_ask and bid.size <= 250


def test_maker_keeps_within_its_share_of_the_request_budget() -> None:
    rate = RateConfig(requests_per_min=10, reserved_per_min=2, hedge_reserved_per_min=2)   # maker: 6 a minute
    m = maker(rate=rate)
    sent: list[int] = []
    for t in range(1_000, 120_000, 250):   # the mid moves every book: a requote wanted each time
        cmds = m.handle(book(t, 140_000 + (t // 250) * 60), t)
        sent += [t] * len([c for c in cmds if isinstance(c, (Place, Modify))])
        for c in cmds:   # the venue answers within the step: places rest, cancels end
            o = m.ledger.get(c.coi)
            if isinstance(c, Place) or (isinstance(c, Cancel) and o is not None):
                assert o is not None
                m.handle(OrderUpdate(market_id=2, order_index=o.coi + 7, client_order_index=o.coi, is_ask=o.is_ask,
                                     price=o.price, initial_size=o.size, remaining_size=o.size, filled_size=0,
                                     status="open" if isinstance(c, Place) else "canceled", ts_ms=t), t)
    assert m.counts["budget_waits"] > 0 and isinstance(m.budget, RateBudget)
    assert len(sent) > 6 and all(sum(1 for s in sent if t - 60_000 < s <= t) <= 6 for t in sent)


def hedger(position: int, state: str = "ACTIVE", target: str = "0") -> HedgerCore:
    cfg = HedgerConfig.model_validate({**SETTINGS.hedger.model_dump(), "prefer_passive": False,
                                       "target_units": Decimal(target)})
    h = HedgerCore(cfg, SPEC, 10_500_000, 5_000)
    h.handle(RiskState(state=state, reason="test", ts_ms=0), 0)   # type: ignore[arg-type]
    h.handle(Position(market_id=2, position=position, ts_ms=0), 0)
    return h


def test_hedger_reducing_flattens_inside_the_trigger_band_and_toward_zero() -> None:
    h = hedger(position=60)                           # within trigger 0.07: normally nothing
    assert places(h.handle(book(1_000, 100_000), 1_000)) == []
    (clip,) = places(h.handle(RiskState(state="REDUCING", reason="inventory", ts_ms=1_100), 1_100))
    assert clip.is_ask and clip.size == 106   # at once; raised to the 10.5 USDC minimum (so not reduce-only) ...
    h2 = hedger(position=150, state="ACTIVE", target="0.15")          # ... reducing ignores target_units
    assert places(h2.handle(book(1_000, 100_000), 1_000)) == []        # at target
    (clip2,) = places(h2.handle(RiskState(state="REDUCING", reason="drawdown", ts_ms=1_100), 1_100))
    assert clip2.is_ask and clip2.size == 106 and clip2.reduce_only


def test_hedger_halted_cancels_its_clip_and_sends_nothing() -> None:
    cfg = HedgerConfig.model_validate({**SETTINGS.hedger.model_dump(), "prefer_passive": True})
    h = HedgerCore(cfg, SPEC, 10_500_000, 5_000)
    h.handle(RiskState(state="ACTIVE", ts_ms=0), 0)
    h.handle(Position(market_id=2, position=150, ts_ms=0), 0)
    (clip,) = places(h.handle(book(1_000, 100_000), 1_000))
    h.handle(OrderUpdate(market_id=2, order_index=9, client_order_index=clip.coi, is_ask=True, price=clip.price,
                         initial_size=clip.size, remaining_size=clip.size, filled_size=0, status="open", ts_ms=1_050), 1_050)
    cmds = h.handle(RiskState(state="HALTED", reason="kill: ops", ts_ms=1_100), 1_100)
    assert [c.coi for c in cmds if isinstance(c, Cancel)] == [clip.coi]
    for t in range(1_200, 20_000, 500):
        assert places(h.handle(book(t, 100_000), t)) == []


def test_maker_backs_off_after_a_rate_veto_instead_of_storming() -> None:
    """A restarted maker does not know what its previous run used of the guard's window."""
    from shared.schemas import OrderEvent
    m = maker(rate=RateConfig(requests_per_min=60, reserved_per_min=20, hedge_reserved_per_min=8))
    (bid, ask) = places(m.handle(book(1_000), 1_000))
    for p in (bid, ask):
        m.handle(OrderEvent(kind="veto", intent_id=p.intent_id, source="maker", action="place", market_id=2,
                            client_order_index=p.coi, message="rate: 32 places/modifies in the last minute", ts_ms=1_010), 1_010)
    sent = [t for t in range(1_100, 8_000, 100) if places(m.handle(book(t), t))]
    assert sent[0] == 5_100   # two vetoes: held 2 s, then 4 s (doubling) from the second
    assert m.rate_watch.hold_until_ms == 1_010 + 4_000
