"""A recording as a tape: our own resting quotes leave the recorded books; a backtest plays it."""
from __future__ import annotations

from pathlib import Path

import orjson

from lab import recording
from lab.backtest import Run, backtest
from lab.sim import Sim
from lab.tape import tape_from_recording
from shared import keys
from shared.config import load_settings
from shared.schemas import SCHEMA_VERSION, BookTop, Fill, OrderUpdate, Trade


def _entry(stream: str, ms: int, seq: int, m) -> tuple[str, str, dict[str, str]]:
    return stream, f"{ms}-{seq}", {"type": m.type, "v": str(SCHEMA_VERSION), "d": m.model_dump_json()}


def test_our_resting_size_leaves_the_recorded_books_while_it_rests(tmp_path: Path) -> None:
    book = BookTop(market_id=2, seq=1, venue_ts_ms=1_000, bids=[(140_000, 500), (139_990, 300)], asks=[(140_010, 400)])
    ours = OrderUpdate(market_id=2, order_index=7, client_order_index=11, is_ask=False, price=140_000, initial_size=200,
                       remaining_size=200, filled_size=0, status="open", ts_ms=900)
    gone = ours.model_copy(update={"status": "canceled", "remaining_size": 0, "ts_ms": 1_500})
    later = book.model_copy(update={"venue_ts_ms": 2_000, "seq": 2})
    trade = Trade(market_id=2, trade_id=1, price=140_010, size=50, taker_is_ask=False, ts_ms=2_100)
    hit_us = Trade(market_id=2, trade_id=2, price=140_000, size=50, taker_is_ask=True, ts_ms=2_200)
    our_part = Fill(market_id=2, trade_id=2, order_index=8, client_order_index=12, is_ask=False, is_maker=True,
                    price=140_000, size=20, ts_ms=2_200)
    we_took = Trade(market_id=2, trade_id=3, price=140_010, size=40, taker_is_ask=False, ts_ms=2_300)
    our_ioc = Fill(market_id=2, trade_id=3, order_index=9, client_order_index=14, is_ask=False, is_maker=False,
                   price=140_010, size=40, ts_ms=2_300)
    path = tmp_path / "r.rec.gz"
    recording.write(path, 2, 100, {}, [
        _entry(keys.acct(100), 900, 0, ours), _entry(keys.md_book(2), 1_000, 0, book),
        _entry(keys.acct(100), 1_500, 0, gone), _entry(keys.md_book(2), 2_000, 0, later),
        _entry(keys.md_trade(2), 2_100, 0, trade), _entry(keys.md_trade(2), 2_200, 0, hit_us),
        _entry(keys.acct(100), 2_200, 1, our_part), _entry(keys.md_trade(2), 2_300, 0, we_took),
        _entry(keys.acct(100), 2_300, 1, our_ioc)])
    tape = tape_from_recording(recording.read(path), 2)
    assert [(e.kind, e.t_ms) for e in tape] == [("book", 1_000), ("book", 2_000), ("trade", 2_100), ("trade", 2_200)]
    assert tape[3].size == 30                                   # the 20 that hit our quote were ours, not the market's
    assert tape[0].bids == [(140_000, 300), (139_990, 300)]     # our 200 taken out while it rested
    assert tape[1].bids == [(140_000, 500), (139_990, 300)]     # back to the market's own size after our cancel
    assert (tape[2].price, tape[2].size, tape[2].taker_buy) == (140_010, 50, True)


def test_a_backtest_on_a_recorded_session_trades_against_the_tape(tmp_path: Path) -> None:
    """Record a simulated session as the live recorder would (streams), then backtest on it."""
    settings = load_settings()
    sim = Sim(settings, model="as", seed=2)
    sim.run(sim.start_ms + 240_000)
    entries, seq = [], 0
    for b in sim.rec.books:
        seq += 1
        entries.append(_entry(keys.md_book(2), b.venue_ts_ms, seq, b))
    for t in sim.venue.engine.trades[2]:
        seq += 1
        tr = Trade(market_id=2, trade_id=t.trade_id, price=t.price, size=t.size, taker_is_ask=not t.is_maker_ask,
                   ts_ms=t.timestamp_ms)
        entries.append(_entry(keys.md_trade(2), t.timestamp_ms, seq, tr))
    for m in sim.rec.account:
        seq += 1
        entries.append(_entry(keys.acct(100), getattr(m, "ts_ms", 0), seq, m))
    path = tmp_path / "s.rec.gz"
    recording.write(path, 2, 100, {}, entries)
    s = backtest(settings, Run(hours=0.05, tape=str(path)), tmp_path / "bt", charts=False)
    assert s["model"] == "replay" and s["books"] > 100
    assert s["fills_maker"] + s["fills_hedger"] > 0
    assert orjson.loads((tmp_path / "bt" / "summary.json").read_bytes())["tape"] == str(path)
