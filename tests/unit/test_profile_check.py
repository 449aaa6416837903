"""Settings that contradict the market or the tier, with the numbers: warnings, and errors that stop a load."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from services.maker.core import MakerCore
from shared.commands import Note
from shared.config import ConfigError, load_settings
from shared.profile_check import check, contradictions
from shared.schemas import BookTop, Position, RiskState


def _with(s, **keys):
    data = s.model_dump(mode="python", exclude={"env"})
    for k, v in keys.items():
        node = data
        *path, last = k.split("__")
        for p in path:
            node = node[p]
        node[last] = v
    return type(s).model_validate({**data, "env": s.env})


def test_the_packets_profile_at_140_is_told_every_contradiction_with_its_numbers() -> None:
    got = contradictions(load_settings(), 140_000)
    assert len(got) == 3, got
    assert got[0].startswith("maker.size_max: 0.072 SOL is below the venue's minimum order at 140.000 (0.075 SOL")
    assert got[1].startswith("hedger.max_clip_units: 0.040 is below the minimum order at 140.000 (0.075)")
    assert got[2].startswith("hedger.trigger_units: 0.070 is below one maker fill at 140.000 (0.075 SOL)")


def test_at_the_price_it_was_sized_at_only_the_clip_below_the_venue_minimum_remains() -> None:
    s = load_settings()
    assert s.market.reference_price == 165
    assert contradictions(s, 165_000) == [
        "hedger.max_clip_units: 0.040 is below the minimum order at 165.000 (0.064): every clip is raised to 0.064, "
        "beyond its limit"]


def test_a_consistent_profile_is_quiet_and_each_rule_stands_alone() -> None:
    s = load_settings()
    ok = _with(s, maker__size_max=Decimal("0.08"), hedger__max_clip_units=Decimal("0.08"),
               hedger__trigger_units=Decimal("0.15"))
    assert contradictions(ok, 140_000) == []
    assert len(contradictions(ok, 100_000)) == 2    # at 100 the minimum order is 0.105: size_max and the clip again
    tight = _with(ok, hedger__trigger_units=Decimal("0.1"))
    assert contradictions(tight, 100_000)[-1].startswith("hedger.trigger_units: 0.100 is below one maker fill at 100.000 (0.105")
    assert len(contradictions(_with(tight, hedger__dry_run=True), 100_000)) == 1   # no hedging: only size_max


def test_errors_where_the_system_would_misbehave() -> None:
    s = load_settings()
    levels = lambda st, mid: {(f.level, f.key) for f in check(st, mid)}  # noqa: E731
    assert ("error", "guard.max_position_units") in levels(_with(s, guard__max_position_units=Decimal("0.07")), 140_000)
    assert ("error", "guard.max_inventory_notional") in levels(_with(s, guard__max_inventory_notional=Decimal("10")), 140_000)
    assert ("error", "guard.rate.requests_per_min") in levels(_with(s, guard__rate__requests_per_min=120), None)
    assert ("error", "guard.rate.requests_per_min") not in levels(
        _with(s, guard__rate__requests_per_min=120, account__tier="premium", hedger__taker_fee_bps=Decimal("2.8")), None)
    assert ("error", "guard.max_price_deviation_bps") in levels(
        _with(s, maker__spread_bps=Decimal("50"), guard__max_price_deviation_bps=Decimal("40")), None)


def test_fees_of_the_tier_against_the_spread_and_the_hedgers_estimate() -> None:
    s = _with(load_settings(), account__tier="premium", maker__spread_bps=Decimal("0.3"))
    found = {f.key: f for f in check(s, None)}
    assert found["maker.spread_bps"].level == "warning" and "0.8 bps" in found["maker.spread_bps"].text
    assert "2.8 bps" in found["hedger.taker_fee_bps"].text
    assert "maker.spread_bps" not in {f.key for f in check(_with(s, maker__spread_bps=Decimal("0.5")), None)}


def test_load_refuses_an_error_naming_file_and_key(tmp_path: Path) -> None:
    prof = tmp_path / "p.yaml"
    prof.write_text(Path("profiles/market_2.yaml").read_text() + "guard:\n  max_position_units: 0.05\n")
    with pytest.raises(ConfigError) as e:
        load_settings(profile_path=prof, env={})
    assert e.value.file == str(prof) and e.value.key == "guard.max_position_units"
    assert "below one maker order at 165.000 (0.064)" in e.value.problem


def test_the_maker_says_it_once_on_its_first_book() -> None:
    m = MakerCore.from_settings(load_settings())
    m.handle(RiskState(state="ACTIVE", ts_ms=1), 1)
    m.handle(Position(market_id=2, position=0, ts_ms=1), 1)
    book = BookTop(market_id=2, seq=1, venue_ts_ms=2, bids=[(139_990, 500)], asks=[(140_010, 500)])
    first = [c for c in m.handle(book, 2) if isinstance(c, Note) and c.level == "warning"]
    assert len(first) == 3 and all(n.text.startswith("profile: ") for n in first)
    again = [c for c in m.handle(book.model_copy(update={"seq": 2, "venue_ts_ms": 3}), 3) if isinstance(c, Note)]
    assert not again
