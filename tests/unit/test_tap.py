"""The core tap records every call and never costs trading when it fails."""
from __future__ import annotations

import os
from pathlib import Path

import orjson

from services.guard.core import Heartbeats, KillState, Recovered
from shared.config import load_settings
from shared.schemas import BookTop
from shared.tap import TappedCore, decode_event, tapped


class _Core:
    market_id = 2

    def __init__(self) -> None:
        self.seen: list[tuple[object, int]] = []

    def handle(self, ev: object, now_ms: int) -> list[str]:
        self.seen.append((ev, now_ms))
        return ["ok"]

    def on_timer(self, now_ms: int) -> list[str]:
        self.seen.append(("timer", now_ms))
        return []


def test_off_unless_the_directory_is_set(tmp_path: Path) -> None:
    core = _Core()
    assert tapped(core, "maker", load_settings(), env={}) is core


def test_every_call_is_recorded_before_the_core_runs_and_decodes_back(tmp_path: Path) -> None:
    core = _Core()
    t = tapped(core, "guard", load_settings(), env={"LIGHTER_TAP_DIR": str(tmp_path)})
    assert isinstance(t, TappedCore) and t.market_id == 2
    book = BookTop(market_id=2, seq=1, venue_ts_ms=5, bids=[(1, 2)], asks=[(3, 4)])
    events = [book, KillState("op", reduce="x"), Heartbeats({"maker": 7, "feed": None}), Recovered(frozenset({"b", "a"}))]
    for n, ev in enumerate(events):
        assert t.handle(ev, 100 + n) == ["ok"]
    t.on_timer(200)
    path = tmp_path / "guard.tap.jsonl"
    assert os.stat(path).st_mode & 0o777 == 0o600
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    assert lines[0]["tap"] == 1 and "env" not in lines[0]["settings"]
    from lab.recording import GUARD_EVENTS
    assert [decode_event(ln["e"], GUARD_EVENTS) for ln in lines[1:5]] == events
    assert [ln["t"] for ln in lines[1:]] == [100, 101, 102, 103, 200] and lines[-1]["k"] == "timer"


def test_a_failing_tap_stops_recording_but_the_core_gets_every_input(tmp_path: Path) -> None:
    core = _Core()
    t = tapped(core, "maker", load_settings(), env={"LIGHTER_TAP_DIR": str(tmp_path)})
    class Full:
        def write(self, _: bytes) -> int:
            raise OSError(28, "No space left on device")
    t._tap.fh = Full()
    books = [BookTop(market_id=2, seq=n, venue_ts_ms=n, bids=[(1, 2)], asks=[(3, 4)]) for n in range(3)]
    for n, b in enumerate(books):
        assert t.handle(b, n) == ["ok"]
    assert [e for e, _ in core.seen] == books and t._tap.broken


def test_an_input_the_tap_cannot_encode_ends_the_tap_not_the_trading(tmp_path: Path) -> None:
    core = _Core()
    t = tapped(core, "maker", load_settings(), env={"LIGHTER_TAP_DIR": str(tmp_path)})
    assert t.handle(object(), 1) == ["ok"] and t._tap.broken and core.seen
