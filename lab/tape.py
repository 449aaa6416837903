"""A recorded live session as a venue tape: the market as it was, without us in it.

The recorded books (``md:book``) show our own resting quotes too; replayed as they are, a backtest
would queue behind (and trade against) its own past orders. So each book's levels lose the size our
account had resting at that price at that moment (followed from the recorded ``acct`` order updates,
in stream order), and the trades (``md:trade``) lose our part: a trade we took is dropped, a trade
that hit our quote keeps only what others traded. Times are the exchange's. The venue's replay model then plays it with its queue-position model
(``services.venue.flow.SyntheticMarket._follow_tape``).
"""
from __future__ import annotations

from pathlib import Path

from services.venue.flow import TapeEvent, parse_tape
from services.venue.markets import default_markets
from shared import keys
from shared.schemas import BookTop, Fill, OrderUpdate, Trade

from lab.recording import Recording, RecordingError, read

TERMINAL = ("filled", "canceled", "expired", "rejected")


class TapeError(RecordingError):
    """A tape that cannot drive a backtest (names the file and why)."""


def _order(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


def tape_from_recording(rec: Recording, market_id: int) -> list[TapeEvent]:
    account = rec.header.get("account")
    wanted = {keys.md_book(market_id), keys.md_trade(market_id)}
    if account is not None:
        wanted.add(keys.acct(int(account)))
    entries = sorted((e for e in rec.entries if e[0] in wanted), key=lambda e: _order(e[1]))
    resting: dict[int, tuple[bool, int, int]] = {}   # order_index -> (is_ask, price, remaining)
    # our side of each recorded trade: a trade we took (the hedger's IOCs) was our flow, not the
    # market's, and is dropped; of a trade that hit our quote only the rest was someone else's
    ours: dict[int, tuple[bool, int]] = {}
    for _s, _e, m in entries:
        if isinstance(m, Fill) and m.market_id == market_id:
            took, size = ours.get(m.trade_id, (False, 0))
            ours[m.trade_id] = (took or not m.is_maker, size + m.size)
    out: list[TapeEvent] = []
    for _stream, _eid, m in entries:
        if isinstance(m, OrderUpdate) and m.market_id == market_id:
            if m.status.startswith(TERMINAL) or m.remaining_size <= 0:
                resting.pop(m.order_index, None)
            else:
                resting[m.order_index] = (m.is_ask, m.price, m.remaining_size)
        elif isinstance(m, BookTop) and m.market_id == market_id:
            mine: dict[tuple[bool, int], int] = {}
            for is_ask, price, rem in resting.values():
                mine[(is_ask, price)] = mine.get((is_ask, price), 0) + rem
            bids = [(p, s - mine.get((False, p), 0)) for p, s in m.bids]
            asks = [(p, s - mine.get((True, p), 0)) for p, s in m.asks]
            out.append(TapeEvent(m.venue_ts_ms, "book", bids=[lv for lv in bids if lv[1] > 0],
                                 asks=[lv for lv in asks if lv[1] > 0]))
        elif isinstance(m, Trade) and m.market_id == market_id:
            took, mine = ours.get(m.trade_id, (False, 0))
            size = 0 if took else m.size - mine
            if size > 0:
                out.append(TapeEvent(m.ts_ms, "trade", price=m.price, size=size, taker_buy=not m.taker_is_ask))
    out.sort(key=lambda e: e.t_ms)
    return out


def load_tape(path: str, market_id: int) -> dict[int, list[TapeEvent]]:
    """A ``lighter-bot record`` file (gzip) or a JSONL tape (services/venue/README.md)."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    if gz:
        events = tape_from_recording(read(Path(path)), market_id)
    else:
        try:
            with open(path, "rb") as fh:
                events = parse_tape(fh, {market_id: default_markets()[market_id]}).get(market_id, [])
        except (ValueError, KeyError, TypeError, IndexError) as e:   # orjson's decode error is a ValueError
            raise TapeError(f"{path}: not a JSONL tape ({type(e).__name__}: {str(e)[:120]})") from None
    if not any(e.kind == "book" for e in events):
        raise TapeError(f"{path}: no book of market {market_id} on this tape")
    return {market_id: events}
