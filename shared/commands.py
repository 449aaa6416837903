"""What the quoting cores ask their shells to do: small frozen records, no I/O.

Shared by the maker and the hedger so both speak to the guard the same way. ``to_intent`` is the
single, pure place where a command becomes an ``OrderIntent`` (stamped with the decision time and
the trace hop), so the wire shape is unit-tested without Redis.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from shared.ids import IdMint
from shared.schemas import OrderIntent, Source

Tif = Literal["post_only", "gtt", "ioc"]


@dataclass(frozen=True, slots=True)
class Place:
    """Place a limit order; ``trace`` is the driving book's trace (the shell adds its own hop)."""

    coi: int
    intent_id: str
    is_ask: bool
    price: int
    size: int
    tif: Tif = "post_only"
    reduce_only: bool = False
    trace: dict[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel one of our orders by its client_order_index (never cancel_all: services share a market)."""

    coi: int
    intent_id: str
    reason: str = ""
    trace: dict[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Modify:
    """Move one of our live orders in place (``ModifyOrder``): ``size`` is the new *total* size (filled
    part included, as Lighter wants it); the order keeps its client_order_index."""

    coi: int
    intent_id: str
    is_ask: bool
    price: int
    size: int
    trace: dict[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Reject:
    """The input event is malformed: the shell counts, logs and dead-letters it."""

    reason: str


@dataclass(frozen=True, slots=True)
class Note:
    """A decision worth a log line (dry-run orders, pauses, skipped hedges)."""

    text: str
    level: Literal["info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class Leftovers:
    """An input, not a command: orders a previous run of this producer left resting (``gw:open``),
    which this run does not know; the core cancels them (the mint advances inside the core, so a
    replay of the core's inputs reproduces these cancels too)."""

    market_id: int
    cois: tuple[int, ...]


def cancel_leftovers(mint: "IdMint", ev: Leftovers, now_ms: int) -> list["Command"]:
    return [Cancel(coi, mint.intent_id(mint.next_coi(now_ms)), "left over by a previous run") for coi in ev.cois]


Command = Union[Place, Cancel, Modify, Reject, Note]
Order = (Place, Cancel, Modify)   # the commands that become intents

STRAY_GRACE_MS = 500  # a producer's own order it does not want is cancelled once known this long
                      # (replayed account history often reports an order's end right after its start)


def to_intent(cmd: Place | Cancel | Modify, source: Source, market_id: int, now_ms: int, now_ns: int,
              ttl_ms: int, book_ts_ms: int = 0) -> OrderIntent:
    """The ``OrderIntent`` for a command decided at ``now_ms``/``now_ns``."""
    trace = {**cmd.trace, source: now_ns}
    if isinstance(cmd, Place):
        return OrderIntent(intent_id=cmd.intent_id, source=source, action="place", market_id=market_id,
                           client_order_index=cmd.coi, is_ask=cmd.is_ask, price=cmd.price, size=cmd.size,
                           order_type="limit", tif=cmd.tif, reduce_only=cmd.reduce_only,
                           created_ms=now_ms, ttl_ms=ttl_ms, book_ts_ms=book_ts_ms, trace=trace)
    if isinstance(cmd, Modify):
        return OrderIntent(intent_id=cmd.intent_id, source=source, action="modify", market_id=market_id,
                           client_order_index=cmd.coi, is_ask=cmd.is_ask, price=cmd.price, size=cmd.size,
                           created_ms=now_ms, ttl_ms=ttl_ms, book_ts_ms=book_ts_ms, trace=trace)
    return OrderIntent(intent_id=cmd.intent_id, source=source, action="cancel", market_id=market_id,
                       client_order_index=cmd.coi, created_ms=now_ms, ttl_ms=ttl_ms, trace=trace)
