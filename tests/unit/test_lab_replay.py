"""lighter-bot replay on hand-made recordings: alignment with streams that began earlier, and divergences."""
from __future__ import annotations

from pathlib import Path

import orjson

from lab import recording
from lab.recording import _replay_quoting
from shared import keys
from shared.config import load_settings
from shared.schemas import SCHEMA_VERSION, BookTop, OrderIntent, Position, RiskState
from shared.tap import encode_event

T = 1_796_000_000_000


def _maker_tap() -> list[dict]:
    s = load_settings()
    header = {"tap": 1, "service": "maker", "market_id": 2, "settings": s.model_dump(mode="json", exclude={"env"})}
    evs = [RiskState(state="ACTIVE", ts_ms=T), Position(market_id=2, position=0, ts_ms=T)]
    lines = [header] + [{"t": T, "k": "h", "e": encode_event(e)} for e in evs]
    for n in range(6):   # the mid walks up 5 bps a second: the maker requotes
        mid = 140_000 + n * 70
        b = BookTop(market_id=2, seq=n + 1, venue_ts_ms=T + n * 1000, bids=[(mid - 5, 500)], asks=[(mid + 5, 500)])
        lines.append({"t": T + n * 1000 + 1, "k": "h", "e": encode_event(b)})
        lines.append({"t": T + n * 1000 + 50, "k": "timer"})
    return lines


def _write(path: Path, taps: list[dict], intents: list[OrderIntent]) -> recording.Recording:
    entries = [(keys.ORDERS_INTENTS, f"{i.created_ms}-{n}", {"type": "intent", "v": str(SCHEMA_VERSION),
                                                              "d": i.model_dump_json()}) for n, i in enumerate(intents)]
    recording.write(path, 2, 100, {"maker": [orjson.dumps(x) for x in taps]}, entries)
    return recording.read(path)


def test_intents_from_before_the_taps_are_skipped_and_the_rest_must_match(tmp_path: Path) -> None:
    taps = _maker_tap()
    made = _replay_quoting("maker", taps)
    assert len(made) >= 4, made
    earlier = made[0].model_copy(update={"intent_id": "maker-1", "client_order_index": 5, "created_ms": T - 60_000})
    rep = recording.replay(_write(tmp_path / "a.rec.gz", taps, [earlier, *made]))
    assert rep.ok and rep.skipped["maker"] == 1 and rep.compared["maker"] == len(made)


def test_a_different_intent_is_the_first_divergence_field_by_field(tmp_path: Path) -> None:
    taps = _maker_tap()
    made = _replay_quoting("maker", taps)
    bent = [*made[:2], made[2].model_copy(update={"price": made[2].price + 1}), *made[3:]]
    rep = recording.replay(_write(tmp_path / "b.rec.gz", taps, bent))
    d = rep.first["maker"]
    assert not rep.ok and d.index == 2 and "price" in d.text()


def test_a_recording_with_nothing_to_compare_is_not_ok(tmp_path: Path) -> None:
    rep = recording.replay(_write(tmp_path / "c.rec.gz", _maker_tap()[:1], []))
    assert not rep.ok and not rep.first
