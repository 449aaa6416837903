"""Lighter error codes and literal messages the venue returns.

Texts marked in the research notes as captured from mainnet are reproduced verbatim; the SDK's
nonce recovery keys on the substring "invalid nonce", so that one must never change.
"""
from __future__ import annotations


class VenueError(Exception):
    """An API-level rejection: HTTP `status` with body {"code": code, "message": message}."""

    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


def err(code: int, message: str | None = None, status: int = 400) -> VenueError:
    return VenueError(code, message if message is not None else MESSAGES.get(code, "error"), status)


# tx / account
INVALID_NONCE = 21104
NONCE_NOT_INCREASING = 21105
ACCOUNT_NOT_FOUND = 21100
API_KEY_NOT_FOUND = 21109
INVALID_API_KEY_INDEX = 21110
INVALID_SIGNATURE = 21120
BATCH_DIFFERENT_OWNERS = 21121
TX_EXPIRED = 21116
INVALID_TX_INFO = 21500
INVALID_TX_TYPE = 21501
BATCH_TOO_LARGE = 21514
# order book / orders
NOT_ACTIVE_LIMIT_ORDER = 21600
BOOK_FULL = 21601
INVALID_MARKET = 21602
INVALID_BASE_AMOUNT = 21701
INVALID_PRICE = 21702
INVALID_ORDER_TYPE = 21703
INVALID_TIME_IN_FORCE = 21704
INVALID_BASE_OR_QUOTE = 21706
INVALID_EXPIRY = 21711
NOT_ACTIVE_ORDER = 21715
MAX_ACTIVE_ORDERS = 21717
MAX_ACTIVE_ORDERS_MARKET = 21718
MAX_PENDING_ORDERS = 21719
MAX_PENDING_ORDERS_MARKET = 21720
INVALID_COI = 21727
DUPLICATE_COI = 21728
REDUCE_ONLY_INVALID = 21732
PRICE_TOO_FAR = 21734
NOT_ENOUGH_MARGIN = 21739
INVALID_LEVERAGE = 21741
INVALID_CANCEL_ALL = 21122
# rate limit
TOO_MANY_REQUESTS = 23000
TOO_MANY_SUBSCRIPTIONS = 23001
# auth / params
INVALID_PARAM = 20001
# ours (no code in the research notes; see services/venue/README.md, deviations)
STALE_ORDER_VERSION = 21745
MAKER_ONLY_API_KEY = 21150
INVALID_AUTH = 20013
# ws
WS_INVALID_JSON = 30000
WS_INVALID_TYPE = 30001
WS_NOT_SUBSCRIBED = 30002
WS_ALREADY_SUBSCRIBED = 30003
WS_INVALID_CHANNEL = 30005
WS_TOO_MANY_MESSAGES = 30009
# generic
NOT_FOUND = 29404
INTERNAL = 29500

MESSAGES: dict[int, str] = {
    INVALID_NONCE: "invalid nonce",
    NONCE_NOT_INCREASING: "invalid nonce: nonces in batch must be increasing",
    ACCOUNT_NOT_FOUND: "account not found",
    API_KEY_NOT_FOUND: "api key not found",
    INVALID_API_KEY_INDEX: "invalid api key index",
    INVALID_SIGNATURE: "invalid signature",
    BATCH_DIFFERENT_OWNERS: "all transactions in a batch must have the same account and api key",
    TX_EXPIRED: "transaction expired",
    INVALID_TX_INFO: "invalid tx info",
    INVALID_TX_TYPE: "invalid tx type",
    BATCH_TOO_LARGE: "maximum 15 transactions allowed per batch",
    NOT_ACTIVE_LIMIT_ORDER: "given order is not an active limit order",
    BOOK_FULL: "order book is full",
    INVALID_MARKET: "invalid market index",
    INVALID_BASE_AMOUNT: "invalid order base amount",
    INVALID_PRICE: "invalid order price",
    INVALID_ORDER_TYPE: "invalid order type",
    INVALID_TIME_IN_FORCE: "invalid order time in force",
    INVALID_BASE_OR_QUOTE: "invalid order base or quote amount",
    INVALID_EXPIRY: "invalid order expiry",
    NOT_ACTIVE_ORDER: "given order is not an active order",
    MAX_ACTIVE_ORDERS: "maximum active order limit reached",
    MAX_ACTIVE_ORDERS_MARKET: "maximum active order limit reached for the market",
    MAX_PENDING_ORDERS: "maximum pending order limit reached",
    MAX_PENDING_ORDERS_MARKET: "maximum pending order limit reached for the market",
    INVALID_COI: "invalid client order index",
    DUPLICATE_COI: "client order index already exists",
    REDUCE_ONLY_INVALID: "invalid reduce only order",
    PRICE_TOO_FAR: "limit order price is too far from the mark price",
    NOT_ENOUGH_MARGIN: "not enough margin to create the order",
    INVALID_LEVERAGE: "invalid leverage",
    INVALID_CANCEL_ALL: "invalid cancel all orders time",
    TOO_MANY_REQUESTS: "Too Many Requests!",
    TOO_MANY_SUBSCRIPTIONS: "Too Many Subscriptions",
    INVALID_PARAM: "invalid param",
    INVALID_AUTH: "invalid auth: invalid deadline",
    WS_INVALID_JSON: "Invalid Json",
    WS_INVALID_TYPE: "Invalid Type",
    WS_NOT_SUBSCRIBED: "Not Subscribed",
    WS_ALREADY_SUBSCRIBED: "Already Subscribed",
    WS_INVALID_CHANNEL: "Invalid Channel",
    WS_TOO_MANY_MESSAGES: "Too Many Websocket Messages",
    NOT_FOUND: "not found",
    STALE_ORDER_VERSION: "invalid order version: the order has changed since",
    MAKER_ONLY_API_KEY: "api key is maker-only: only post-only orders, modifies and cancels",
    INTERNAL: "internal server error",
}
