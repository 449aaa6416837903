"""What to sign for an intent: pure mapping from ``OrderIntent`` to the SDK's ``sign_*`` arguments.

Integers only (ticks, lots, ms). The SDK constants are restated here so the core stays free of the
SDK import (which loads a native library); ``tests/unit/test_gateway_signer.py`` pins them to the SDK.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from shared.schemas import OrderIntent

ORDER_TYPE = {"limit": 0, "market": 1}
TIME_IN_FORCE = {"ioc": 0, "gtt": 1, "post_only": 2}
CANCEL_ALL_IMMEDIATE, CANCEL_ALL_SCHEDULED, CANCEL_ALL_ABORT = 0, 1, 2
NIL_MARKET_INDEX = 255   # cancel-all over every market

TX_CREATE_ORDER, TX_CANCEL_ORDER, TX_CANCEL_ALL, TX_MODIFY_ORDER = 14, 15, 16, 17


@dataclass(frozen=True, slots=True)
class CreateOrderReq:
    """``sign_create_order`` arguments; ``price`` is the worst price for a market order."""

    market_index: int
    client_order_index: int
    base_amount: int
    price: int
    is_ask: bool
    order_type: int
    time_in_force: int
    reduce_only: bool
    order_expiry: int   # absolute ms; 0 for IOC (the venue wants 5 min..30 days for resting orders)


@dataclass(frozen=True, slots=True)
class CancelOrderReq:
    """``sign_cancel_order``: ``order_index`` is our client_order_index (the venue accepts either)."""

    market_index: int
    order_index: int


@dataclass(frozen=True, slots=True)
class ModifyOrderReq:
    """``sign_modify_order``: move a live order (by client_order_index) to a new price and total size."""

    market_index: int
    order_index: int
    base_amount: int
    price: int


@dataclass(frozen=True, slots=True)
class CancelAllReq:
    """``sign_cancel_all_orders(time_in_force, timestamp_ms, cancel_all_market_index)``: immediate
    (0, 0), scheduled (1, absolute ms: the venue-side dead-man's switch) or abort a scheduled one (2, 0)."""

    market_index: int   # NIL_MARKET_INDEX = every market (the only choice for scheduled and abort)
    time_in_force: int = CANCEL_ALL_IMMEDIATE
    timestamp_ms: int = 0


SignRequest = Union[CreateOrderReq, CancelOrderReq, ModifyOrderReq, CancelAllReq]


def invalid_reason(intent: OrderIntent) -> str | None:
    """Why the venue could never accept this intent (checked before spending a nonce), else None."""
    if intent.action == "place":
        if intent.size <= 0:
            return "size must be > 0"
        if intent.price <= 0:
            return "price must be > 0 (a market order needs its worst price)"
        if intent.price > 2**31 - 1:
            return "price out of range"
        if not 0 < intent.client_order_index < 2**48:
            return "client_order_index must be in 1..2^48-1"
        if intent.market_id < 0:
            return "market_id must be >= 0"
    elif intent.action in ("cancel", "modify"):
        if intent.action == "modify" and (intent.size <= 0 or not 0 < intent.price <= 2**31 - 1):
            return "a modify needs a size > 0 and a price in range"
        if not 0 < intent.client_order_index < 2**48:
            return "client_order_index must be in 1..2^48-1"
        if intent.market_id < 0:
            return "market_id must be >= 0"
    return None


EXPIRY_SLACK_MS = 5_000   # Lighter refuses an expiry under 5 min *at arrival*: a 5-min GTT leaves with 5 s to spare


def create_order(intent: OrderIntent, now_ms: int, order_expiry_ms: int) -> CreateOrderReq:
    """A market order is always IOC with expiry 0 (the only combination the signer accepts)."""
    market = intent.order_type == "market"
    tif = TIME_IN_FORCE["ioc"] if market else TIME_IN_FORCE[intent.tif]
    expiry = 0 if tif == TIME_IN_FORCE["ioc"] else now_ms + order_expiry_ms + EXPIRY_SLACK_MS
    return CreateOrderReq(
        market_index=intent.market_id,
        client_order_index=intent.client_order_index,
        base_amount=intent.size,
        price=intent.price,
        is_ask=intent.is_ask,
        order_type=ORDER_TYPE[intent.order_type],
        time_in_force=tif,
        reduce_only=intent.reduce_only,
        order_expiry=expiry,
    )


def cancel_order(intent: OrderIntent) -> CancelOrderReq:
    return CancelOrderReq(market_index=intent.market_id, order_index=intent.client_order_index)


def modify_order(intent: OrderIntent) -> ModifyOrderReq:
    return ModifyOrderReq(market_index=intent.market_id, order_index=intent.client_order_index,
                          base_amount=intent.size, price=intent.price)


def cancel_all(market_id: int) -> CancelAllReq:
    """``market_id`` -1 (or any negative) = the whole account."""
    return CancelAllReq(market_index=NIL_MARKET_INDEX if market_id < 0 else market_id)


def cancel_all_scheduled(at_ms: int) -> CancelAllReq:
    """Arm (or move) the account's scheduled cancel-all to ``at_ms`` (Lighter: 5 min to 15 days ahead)."""
    return CancelAllReq(NIL_MARKET_INDEX, CANCEL_ALL_SCHEDULED, at_ms)


def cancel_all_abort() -> CancelAllReq:
    """Disarm the scheduled cancel-all (a clean stop)."""
    return CancelAllReq(NIL_MARKET_INDEX, CANCEL_ALL_ABORT, 0)
