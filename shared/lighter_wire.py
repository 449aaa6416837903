"""Lighter WebSocket and REST payloads -> ``shared.schemas`` messages (pure, exact).

Shared by the feed (WS channels) and the gateway (REST reconcile): Lighter uses one shape for an
order, a trade and a position on both.

Lighter prints prices and sizes as decimal strings in the market's decimals; they become integer
ticks/lots here, by string arithmetic (no float, no rounding). Anything that does not have the shape
Lighter documents (lighter-api.md sections 1.4 and 2) raises ``Malformed`` with the reason, so the
shell can count, log and dead-letter it instead of publishing a guess.
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from shared import fees
from shared.markets import MarketSpec
from shared.schemas import Fill, Level, OrderUpdate, Position, Reconcile, Trade


class Malformed(ValueError):
    """A frame or item that is not what Lighter sends; the message says what is wrong."""


_FIXED = re.compile(r"(-?)(\d+)(?:\.(\d+))?")


def fixed(value: Any, decimals: int, what: str) -> int:
    """``"140.125"`` -> ``140125`` at 3 decimals; refuses non-strings, exponents and excess precision."""
    if not isinstance(value, str):
        raise Malformed(f"{what}: expected a decimal string, got {type(value).__name__}")
    m = _FIXED.fullmatch(value)
    if m is None:
        raise Malformed(f"{what}: not a decimal number: {value[:40]!r}")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if len(frac) > decimals:
        if frac[decimals:].strip("0"):
            raise Malformed(f"{what}: {value!r} has more than {decimals} decimals")
        frac = frac[:decimals]
    n = int(whole + frac.ljust(decimals, "0"))
    return -n if sign else n


def rounded(value: Any, decimals: int, what: str) -> int:
    """Like ``fixed`` but rounds half-even: for venue-computed averages finer than a tick."""
    if not isinstance(value, str) or _FIXED.fullmatch(value) is None:
        raise Malformed(f"{what}: not a decimal number: {str(value)[:40]!r}")
    try:
        return int(Decimal(value).scaleb(decimals).to_integral_value(rounding=ROUND_HALF_EVEN))
    except InvalidOperation:  # pragma: no cover - the regex admits only finite numbers
        raise Malformed(f"{what}: not a decimal number: {value[:40]!r}") from None


def get(obj: Any, key: str, typ: type | tuple[type, ...], what: str = "") -> Any:
    """``obj[key]`` checked against ``typ`` (``bool`` never passes as ``int``)."""
    if not isinstance(obj, dict):
        raise Malformed(f"{what or 'frame'}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise Malformed(f"{what + '.' if what else ''}{key}: missing")
    v = obj[key]
    if not isinstance(v, typ) or (isinstance(v, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,))):
        raise Malformed(f"{what + '.' if what else ''}{key}: expected {_tname(typ)}, got {type(v).__name__}")
    return v


def opt(obj: dict[str, Any], key: str, typ: type | tuple[type, ...], default: Any, what: str = "") -> Any:
    """Optional field: absent or null gives ``default``; present must have the right type."""
    if obj.get(key) is None:
        return default
    return get(obj, key, typ, what)


def _tname(typ: type | tuple[type, ...]) -> str:
    return "/".join(t.__name__ for t in typ) if isinstance(typ, tuple) else typ.__name__


def to_ms(ts: int) -> int:
    """Lighter mixes seconds, ms and µs timestamps; scale by magnitude to epoch milliseconds."""
    if ts >= 10**17:
        return ts // 1_000_000
    if ts >= 10**14:
        return ts // 1_000
    if ts >= 10**11:
        return ts
    return ts * 1_000


# --- order book ----------------------------------------------------------------------------------
def _plain_fixed(v: Any, decimals: int) -> int | None:
    """``fixed`` for the common case (a non-negative ASCII decimal string within ``decimals``), else None.
    Every book frame has dozens of levels; anything unusual takes the checked path, which explains it."""
    if type(v) is not str:
        return None
    whole, dot, frac = v.partition(".")
    if not (whole.isascii() and whole.isdigit()) or (dot and not (frac.isascii() and frac.isdigit())) \
            or len(frac) > decimals:
        return None
    return int(whole + frac + "0" * (decimals - len(frac)))


def levels(raw: Any, spec: MarketSpec, what: str) -> list[Level]:
    """``[{price, size}, ...]`` -> ``[(ticks, lots), ...]``; zero sizes kept (they delete)."""
    if not isinstance(raw, list):
        raise Malformed(f"{what}: expected a list, got {type(raw).__name__}")
    out: list[Level] = []
    pd, sd = spec.price_decimals, spec.size_decimals
    for i, lvl in enumerate(raw):
        if type(lvl) is dict:
            price, size = _plain_fixed(lvl.get("price"), pd), _plain_fixed(lvl.get("size"), sd)
            if price is not None and size is not None and price > 0:
                out.append((price, size))
                continue
        w = f"{what}[{i}]"
        price = fixed(get(lvl, "price", str, w), pd, w + ".price")
        size = fixed(get(lvl, "size", str, w), sd, w + ".size")
        if price <= 0 or size < 0:
            raise Malformed(f"{w}: price must be positive and size not negative")
        out.append((price, size))
    return out


def book_ts_ms(frame: dict[str, Any], ob: dict[str, Any], now_ms: int) -> int:
    """The venue time of a book frame: top-level ``timestamp``, else ``last_updated_at``."""
    for src, key in ((frame, "timestamp"), (ob, "last_updated_at"), (frame, "last_updated_at")):
        v = src.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return to_ms(v)
    return now_ms


# --- public trades -------------------------------------------------------------------------------
def trade(t: Any, spec: MarketSpec) -> Trade:
    w = "trade"
    is_maker_ask = get(t, "is_maker_ask", bool, w)
    return Trade(
        market_id=get(t, "market_id", int, w),
        trade_id=get(t, "trade_id", int, w),
        price=fixed(get(t, "price", str, w), spec.price_decimals, w + ".price"),
        size=fixed(get(t, "size", str, w), spec.size_decimals, w + ".size"),
        taker_is_ask=not is_maker_ask,
        ts_ms=to_ms(get(t, "timestamp", int, w)),
    )


# --- account -------------------------------------------------------------------------------------
def order_update(o: Any, spec: MarketSpec, now_ms: int) -> OrderUpdate:
    """A full Lighter Order object (as in account_all_orders) -> ``OrderUpdate``; status kept as-is."""
    w = "order"
    tx_us = opt(o, "transaction_time", int, 0, w)
    updated_s = opt(o, "updated_at", int, 0, w)
    ts = to_ms(tx_us) if tx_us > 0 else (to_ms(updated_s) if updated_s > 0 else now_ms)
    return OrderUpdate(
        market_id=get(o, "market_index", int, w),
        order_index=get(o, "order_index", int, w),
        client_order_index=get(o, "client_order_index", int, w),
        is_ask=get(o, "is_ask", bool, w),
        price=fixed(get(o, "price", str, w), spec.price_decimals, w + ".price"),
        initial_size=fixed(get(o, "initial_base_amount", str, w), spec.size_decimals, w + ".initial_base_amount"),
        remaining_size=fixed(get(o, "remaining_base_amount", str, w), spec.size_decimals, w + ".remaining_base_amount"),
        filled_size=fixed(get(o, "filled_base_amount", str, w), spec.size_decimals, w + ".filled_base_amount"),
        status=get(o, "status", str, w),
        reduce_only=opt(o, "reduce_only", bool, False, w),
        ts_ms=ts,
    )


def fee_micro(price: int, size: int, rate: int, spec: MarketSpec) -> int:
    """Fee in micro-USDC: Lighter fee ints are rates in 1e-6 of notional. Rounded as the venue rounds
    (``shared.fees``: floored notional, floored fee), so the bus's ``Fill.fee`` is the venue's charge."""
    return fees.fee_micro(price, size, rate, spec.price_decimals, spec.size_decimals)


def fills(t: Any, spec: MarketSpec, account_index: int) -> list[Fill]:
    """Our side(s) of one account trade; empty when neither side is our account."""
    w = "trade"
    ask_acct = get(t, "ask_account_id", int, w)
    bid_acct = get(t, "bid_account_id", int, w)
    is_maker_ask = get(t, "is_maker_ask", bool, w)
    market_id = get(t, "market_id", int, w)
    trade_id = get(t, "trade_id", int, w)
    price = fixed(get(t, "price", str, w), spec.price_decimals, w + ".price")
    size = fixed(get(t, "size", str, w), spec.size_decimals, w + ".size")
    ts_ms = to_ms(get(t, "timestamp", int, w))
    maker_rate = opt(t, "maker_fee", int, 0, w)
    taker_rate = opt(t, "taker_fee", int, 0, w)
    out: list[Fill] = []
    for is_ask, acct in ((True, ask_acct), (False, bid_acct)):
        if acct != account_index:
            continue
        is_maker = is_maker_ask == is_ask
        side = "ask" if is_ask else "bid"
        out.append(Fill(
            market_id=market_id, trade_id=trade_id,
            order_index=get(t, f"{side}_id", int, w),
            client_order_index=opt(t, f"{side}_client_id", int, 0, w),
            is_ask=is_ask, is_maker=is_maker, price=price, size=size,
            fee=fee_micro(price, size, maker_rate if is_maker else taker_rate, spec),
            ts_ms=ts_ms,
        ))
    return out


def position(p: Any, spec: MarketSpec, ts_ms: int) -> Position:
    """``sign`` x unsigned ``position`` -> signed lots; the average entry is rounded to a tick."""
    w = "position"
    sign = get(p, "sign", int, w)
    if sign not in (-1, 0, 1):
        raise Malformed(f"{w}.sign: expected -1, 0 or 1, got {sign}")
    size = fixed(get(p, "position", str, w), spec.size_decimals, w + ".position")
    if size < 0:
        raise Malformed(f"{w}.position: expected an unsigned size, got {p['position']!r}")
    avg = p.get("avg_entry_price")
    return Position(
        market_id=get(p, "market_id", int, w),
        position=sign * size,
        avg_entry_price=rounded(avg, spec.price_decimals, w + ".avg_entry_price") if avg not in (None, "") else 0,
        ts_ms=ts_ms,
    )


def reconcile(spec: MarketSpec, account_index: int, reason: str, since_ms: int, as_of_ms: int, pos_ts_ms: int,
              orders: list[Any], trades: list[Any], positions: list[Any]) -> Reconcile:
    """One reconcile snapshot of ``spec``'s market from the venue's JSON: its orders (active and ended),
    our fills in its trades, and its position (none listed: flat), stamped ``pos_ts_ms``."""
    m = spec.market_id
    ups = [order_update(o, spec, as_of_ms) for o in orders if isinstance(o, dict) and o.get("market_index") == m]
    fl = [f for t in trades for f in fills(t, spec, account_index)]
    pos = [position(p, spec, pos_ts_ms) for p in positions if isinstance(p, dict) and p.get("market_id") == m]
    return Reconcile(reason=reason, as_of_ms=as_of_ms, since_ms=since_ms, markets=[m], complete=True, orders=ups,
                     fills=fl, positions=pos or [Position(market_id=m, position=0, ts_ms=pos_ts_ms)], ts_ms=pos_ts_ms)
