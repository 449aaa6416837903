"""Parse and structurally validate the tx_info JSON made by the SDK's Go signer.

Only structure is checked here (every field present, JSON integers, known attribute keys);
account, key, nonce and order semantics are checked by the core. The Schnorr signature (`Sig`)
is *not* verified: that would need an ECgFp5/Poseidon2 implementation (see README.md).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import errors as E

TX_CREATE_ORDER = 14
TX_CANCEL_ORDER = 15
TX_CANCEL_ALL = 16
TX_MODIFY_ORDER = 17
TX_UPDATE_LEVERAGE = 20
TX_UPDATE_MARGIN = 29
SUPPORTED_TX_TYPES = (TX_CREATE_ORDER, TX_CANCEL_ORDER, TX_CANCEL_ALL, TX_MODIFY_ORDER,
                      TX_UPDATE_LEVERAGE, TX_UPDATE_MARGIN)

ORDER_LIMIT, ORDER_MARKET = 0, 1
TIF_IOC, TIF_GTT, TIF_POST_ONLY = 0, 1, 2
CANCEL_ALL_IMMEDIATE, CANCEL_ALL_SCHEDULED, CANCEL_ALL_ABORT = 0, 1, 2
STP_EXPIRE_MAKER, STP_EXPIRE_TAKER, STP_EXPIRE_BOTH, STP_REDUCE = 0, 1, 2, 3
NIL_MARKET = 255

ATTR_INTEGRATOR, ATTR_INT_TAKER_FEE, ATTR_INT_MAKER_FEE = 1, 2, 3
ATTR_SKIP_NONCE, ATTR_CANCEL_ALL_MARKET, ATTR_STP_MODE, ATTR_STP_EQUALITY = 4, 5, 6, 7
ATTR_ORDER_VERSION = 8  # sign_modify_order(order_version=N): apply only to version N of the order

_COMMON = ("AccountIndex", "ApiKeyIndex", "ExpiredAt", "Nonce")
_FIELDS: dict[int, tuple[str, ...]] = {
    TX_CREATE_ORDER: ("MarketIndex", "ClientOrderIndex", "BaseAmount", "Price", "IsAsk", "Type",
                      "TimeInForce", "ReduceOnly", "TriggerPrice", "OrderExpiry"),
    TX_CANCEL_ORDER: ("MarketIndex", "Index"),
    TX_CANCEL_ALL: ("TimeInForce", "Time"),
    TX_MODIFY_ORDER: ("MarketIndex", "Index", "BaseAmount", "Price", "TriggerPrice"),
    TX_UPDATE_LEVERAGE: ("MarketIndex", "InitialMarginFraction", "MarginMode"),
    TX_UPDATE_MARGIN: ("MarketIndex", "USDCAmount", "Direction"),
}


@dataclass(slots=True)
class Tx:
    """A parsed signed transaction (fields named after the Go struct, snake_cased)."""

    tx_type: int
    account: int
    api_key: int
    nonce: int
    expired_at: int
    attrs: dict[int, int]
    f: dict[str, int]  # the type-specific integer fields, by their JSON name
    raw: str = field(repr=False, default="")
    tx_hash: str = ""

    @property
    def skip_nonce(self) -> bool:
        return self.attrs.get(ATTR_SKIP_NONCE, 0) == 1


def tx_hash_of(raw: str) -> str:
    """Deterministic 80-hex tx hash (40 bytes, like Lighter's); the SDK never compares it."""
    return hashlib.blake2b(raw.encode(), digest_size=40).hexdigest()


def _int(obj: dict[str, Any], key: str) -> int:
    v = obj.get(key)
    if type(v) is not int:
        raise E.err(E.INVALID_TX_INFO, f"invalid tx info: field {key} missing or not an integer")
    return v


def parse_tx(tx_type: int, tx_info: str | bytes | dict[str, Any]) -> Tx:
    """tx_info (JSON text or an already-decoded object, as WS jsonapi/sendtx sends it) -> Tx."""
    if tx_type not in _FIELDS:
        raise E.err(E.INVALID_TX_TYPE, f"invalid tx type: {tx_type}")
    if isinstance(tx_info, dict):
        obj = tx_info
        raw = orjson.dumps(tx_info).decode()
    else:
        raw = tx_info.decode() if isinstance(tx_info, bytes) else tx_info
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise E.err(E.INVALID_TX_INFO, "invalid tx info: not json") from None
        if not isinstance(obj, dict):
            raise E.err(E.INVALID_TX_INFO, "invalid tx info: not an object")
    account = _int(obj, "AccountIndex")
    api_key = _int(obj, "ApiKeyIndex")
    expired_at = _int(obj, "ExpiredAt")
    nonce = _int(obj, "Nonce")
    sig = obj.get("Sig")
    if not isinstance(sig, str) or not sig:
        raise E.err(E.INVALID_SIGNATURE)
    f = {k: _int(obj, k) for k in _FIELDS[tx_type]}
    attrs_raw = obj.get("L2TxAttributes")
    attrs: dict[int, int] = {}
    if attrs_raw is not None:
        if not isinstance(attrs_raw, dict) or len(attrs_raw) > 4:
            raise E.err(E.INVALID_TX_INFO, "invalid tx info: L2TxAttributes")
        for k, v in attrs_raw.items():
            if not k.isdigit() or not 1 <= int(k) <= 8 or type(v) is not int:
                raise E.err(E.INVALID_TX_INFO, "invalid tx info: L2TxAttributes")
            attrs[int(k)] = v
    if not 0 <= api_key <= 254:
        raise E.err(E.INVALID_API_KEY_INDEX)
    if nonce < 0 or account <= 0:
        raise E.err(E.INVALID_TX_INFO, "invalid tx info: account or nonce")
    return Tx(tx_type, account, api_key, nonce, expired_at, attrs, f, raw, tx_hash_of(raw))


def parse_batch(tx_types_json: str, tx_infos_json: str, max_batch: int = 15) -> list[Tx]:
    """Form fields of sendTxBatch: a JSON list of ints and a JSON list of JSON *strings*."""
    try:
        types = orjson.loads(tx_types_json)
        infos = orjson.loads(tx_infos_json)
    except orjson.JSONDecodeError:
        raise E.err(E.INVALID_TX_INFO, "invalid tx info: tx_types/tx_infos are not json") from None
    if not isinstance(types, list) or not isinstance(infos, list) or len(types) != len(infos) or not types:
        raise E.err(E.INVALID_TX_INFO, "invalid tx info: tx_types and tx_infos must be lists of the same length")
    if len(types) > max_batch:
        raise E.err(E.BATCH_TOO_LARGE, f"maximum {max_batch} transactions allowed per batch")
    out: list[Tx] = []
    for t, info in zip(types, infos, strict=True):
        if type(t) is not int:
            raise E.err(E.INVALID_TX_TYPE)
        if not isinstance(info, (str, dict)):
            raise E.err(E.INVALID_TX_INFO, "invalid tx info: batch entries must be json strings")
        out.append(parse_tx(t, info))
    return out
