"""Settings that contradict the market, with the numbers: the packet's profile at SOL 140 trips three."""
from __future__ import annotations

from decimal import Decimal

from services.maker.core import MakerCore
from shared.commands import Note
from shared.config import load_settings
from shared.profile_check import contradictions
from shared.schemas import BookTop, Position, RiskState


def _with(s, **maker_or_hedger):
    data = s.model_dump(mode="python", exclude={"env"})
    for k, v in maker_or_hedger.items():
        sec, key = k.split("__")
        data[sec][key] = v
    return type(s).model_validate({**data, "env": s.env})


def test_the_packets_profile_at_140_is_told_every_contradiction_with_its_numbers() -> None:
    got = contradictions(load_settings(), 140_000)
    assert len(got) == 3, got
    assert got[0].startswith("maker.size_max 0.072 SOL is below the venue's minimum order at 140.000 (0.075 SOL")
    assert got[1].startswith("hedger.max_clip_units 0.040 is below the minimum order at 140.000 (0.075)")
    assert got[2].startswith("one maker fill (0.075 SOL) exceeds hedger.trigger_units 0.070")


def test_a_consistent_profile_is_quiet_and_each_rule_stands_alone() -> None:
    s = load_settings()
    ok = _with(s, maker__size_max=Decimal("0.08"), hedger__max_clip_units=Decimal("0.08"),
               hedger__trigger_units=Decimal("0.15"))
    assert contradictions(ok, 140_000) == []
    assert len(contradictions(ok, 100_000)) == 2    # at 100 the minimum order is 0.105: size_max and the clip again
    tight = _with(ok, hedger__trigger_units=Decimal("0.1"))
    assert contradictions(tight, 100_000)[-1].startswith("one maker fill (0.105 SOL) exceeds hedger.trigger_units 0.100")
    assert len(contradictions(_with(tight, hedger__dry_run=True), 100_000)) == 2   # no hedging, no hedge per fill


def test_the_maker_says_it_once_on_its_first_book() -> None:
    m = MakerCore.from_settings(load_settings())
    m.handle(RiskState(state="ACTIVE", ts_ms=1), 1)
    m.handle(Position(market_id=2, position=0, ts_ms=1), 1)
    book = BookTop(market_id=2, seq=1, venue_ts_ms=2, bids=[(139_990, 500)], asks=[(140_010, 500)])
    first = [c for c in m.handle(book, 2) if isinstance(c, Note) and c.level == "warning"]
    assert len(first) == 3 and all(n.text.startswith("profile: ") for n in first)
    again = [c for c in m.handle(book.model_copy(update={"seq": 2, "venue_ts_ms": 3}), 3) if isinstance(c, Note)]
    assert not again
