"""Versioned messages on the Redis streams.

Prices and sizes are integer ticks and lots in the market's decimals (``shared.markets``): no
floats on the order path. On the wire each stream entry has three fields, ``type``, ``v`` and
``d`` (the JSON body), so ``redis-cli XRANGE`` stays readable. ``trace`` maps a hop name to a
wall-clock ``time.time_ns()`` stamp; it carries the per-hop latency that ``make bench`` reports.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1

Level = tuple[int, int]  # (price ticks, size lots)
Trace = dict[str, int]


class Msg(BaseModel):
    """Base of every bus message: immutable, unknown fields refused (a typo is a bug, not data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- market data ----------------------------------------------------------------------------------
class BookTop(Msg):
    """The top ``depth`` levels of one market after applying a venue frame; best price first."""

    type: Literal["book"] = "book"
    market_id: int
    seq: int                 # venue order_book nonce after this frame
    venue_ts_ms: int         # venue's timestamp of the frame
    bids: list[Level]
    asks: list[Level]
    trace: Trace = Field(default_factory=dict)


class Trade(Msg):
    """A public trade; ``taker_is_ask`` tells the aggressor side."""

    type: Literal["trade"] = "trade"
    market_id: int
    trade_id: int
    price: int
    size: int
    taker_is_ask: bool
    ts_ms: int


# --- account --------------------------------------------------------------------------------------
class OrderUpdate(Msg):
    """One of our orders changed state at the venue (open, filled, canceled-*...)."""

    type: Literal["order"] = "order"
    market_id: int
    order_index: int
    client_order_index: int
    is_ask: bool
    price: int
    initial_size: int
    remaining_size: int
    filled_size: int
    status: str
    reduce_only: bool = False
    ts_ms: int


class Fill(Msg):
    """One of our orders traded; ``is_ask`` is our side, ``fee`` signed micro-USDC (negative = rebate)."""

    type: Literal["fill"] = "fill"
    market_id: int
    trade_id: int
    order_index: int
    client_order_index: int
    is_ask: bool
    is_maker: bool
    price: int
    size: int
    fee: int = 0
    ts_ms: int


class Position(Msg):
    """Our signed position in lots (positive long)."""

    type: Literal["position"] = "position"
    market_id: int
    position: int
    avg_entry_price: int = 0
    ts_ms: int


class AccountGap(Msg):
    """The feed's account channels were (re)subscribed after a disconnect, an auth error or a gap:
    account events may have been missed. The gateway answers with a REST reconcile."""

    type: Literal["acct_gap"] = "acct_gap"
    reason: str
    ts_ms: int


class Reconcile(Msg):
    """What the venue's REST API says about our account, asked by the gateway (it holds the key).

    ``orders`` are every active order of ``markets`` (``complete``: the venue listed them all) plus
    orders that ended since ``since_ms``; ``fills`` are account trades after the last trade id the
    gateway had seen. Ledgers treat it as ground truth for orders sent before ``as_of_ms``.
    """

    type: Literal["reconcile"] = "reconcile"
    reason: str
    as_of_ms: int            # the venue's clock when the snapshot was asked for (orders sent after it are not judged)
    since_ms: int = 0
    markets: list[int] = Field(default_factory=list)
    complete: bool = True
    orders: list[OrderUpdate] = Field(default_factory=list)
    fills: list[Fill] = Field(default_factory=list)
    positions: list[Position] = Field(default_factory=list)
    ts_ms: int


# --- order flow -----------------------------------------------------------------------------------
Source = Literal["maker", "hedger", "operator"]


class OrderIntent(Msg):
    """A request to act at the venue. Producers mint ``intent_id`` and ``client_order_index``.

    ``place`` needs price/size/side; ``cancel`` names ``client_order_index``; ``modify`` moves the
    live order ``client_order_index`` to ``price``/``size`` in place (one tx instead of cancel + place);
    ``cancel_all`` cancels every open order of the market (``market_id`` -1 = all markets).
    """

    type: Literal["intent"] = "intent"
    intent_id: str
    source: Source
    action: Literal["place", "cancel", "modify", "cancel_all"]
    market_id: int
    client_order_index: int = 0
    is_ask: bool = False
    price: int = 0
    size: int = 0
    order_type: Literal["limit", "market"] = "limit"
    tif: Literal["post_only", "gtt", "ioc"] = "post_only"
    reduce_only: bool = False
    created_ms: int
    ttl_ms: int = 5_000
    book_ts_ms: int = 0      # venue time of the book it was priced from (0: hand-made, the guard's own book counts)
    trace: Trace = Field(default_factory=dict)


# ``not_sent``: certainly never reached the venue (nonce not used); ``unknown``: it may have (a timeout,
# a 5xx, a dropped connection after sending) and is resolved later by evidence, never by sending again;
# ``resolved``: the gateway settled an unknown outcome (``message`` says how: open | executed | dropped).
EventKind = Literal["ack", "reject", "veto", "stale", "fill", "canceled", "killed", "not_sent", "unknown",
                    "resolved", "error"]


class OrderEvent(Msg):
    """What happened to an intent: guard vetoes, gateway acks/rejects (Lighter code + message), fills."""

    type: Literal["order_event"] = "order_event"
    kind: EventKind
    intent_id: str = ""
    source: str = ""
    action: str = ""
    market_id: int = -1
    client_order_index: int = 0
    is_ask: bool = False
    price: int = 0
    size: int = 0
    code: int = 0
    message: str = ""
    tx_hash: str = ""
    ts_ms: int
    trace: Trace = Field(default_factory=dict)


# --- risk ---------------------------------------------------------------------------------------
TradingState = Literal["ACTIVE", "REDUCING", "HALTED"]


class RiskState(Msg):
    """The guard's trading state, on ``risk:events`` at every change (and at guard start).

    ``ACTIVE``: every order the checks pass. ``REDUCING``: only orders that can only shrink the
    position. ``HALTED``: cancels only. ``triggers`` maps each active trigger to its reason;
    ``reason`` is the one that decided the state. ``position`` (lots) tells producers which side
    reduces without waiting for their own account data.
    """

    type: Literal["risk"] = "risk"
    state: TradingState
    reason: str = ""
    triggers: dict[str, str] = Field(default_factory=dict)
    position: int = 0
    ts_ms: int


AnyMsg = Annotated[
    Union[BookTop, Trade, OrderUpdate, Fill, Position, AccountGap, Reconcile, OrderIntent, OrderEvent, RiskState],
    Field(discriminator="type"),
]
_BY_TYPE: dict[str, type[Msg]] = {
    m.model_fields["type"].default: m for m in (BookTop, Trade, OrderUpdate, Fill, Position, AccountGap, Reconcile,
                                                  OrderIntent, OrderEvent, RiskState)
}


class DecodeError(ValueError):
    """A stream entry that is not a valid message of this schema version."""


def encode(msg: Msg) -> dict[str, str]:
    """Stream-entry fields for ``XADD``."""
    return {"type": msg.type, "v": str(SCHEMA_VERSION), "d": msg.model_dump_json()}  # type: ignore[attr-defined]


def decode(fields: dict[bytes | str, bytes | str]) -> Msg:
    """Parse stream-entry fields back into a message; raise ``DecodeError`` with the reason."""
    try:
        f = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
        t = f.get("type")
        t = t.decode() if isinstance(t, bytes) else t
        v = f.get("v")
        v = v.decode() if isinstance(v, bytes) else v
    except UnicodeDecodeError:
        raise DecodeError("field name or header is not UTF-8") from None
    if v != str(SCHEMA_VERSION):
        raise DecodeError(f"unsupported schema version {v!r}")
    model = _BY_TYPE.get(t or "")
    if model is None:
        raise DecodeError(f"unknown message type {t!r}")
    body = f.get("d")
    if body is None:
        raise DecodeError("missing field 'd'")
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise DecodeError(f"invalid {t}: {e.errors()[0]['loc']} {e.errors()[0]['msg']}") from None
