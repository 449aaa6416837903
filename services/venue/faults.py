"""Fault injection state for /admin/fault (docs/venue-contract.md). Pure counters and deadlines."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import errors as E

KINDS = ("drop_ws", "skip_book_nonce", "freeze_feed", "delay_tx", "reject_tx", "http_status",
         "drop_reduce_only", "price_jump", "cross_book", "mute_account")


@dataclass(slots=True)
class Faults:
    delay_ms: int = 0
    delay_count: int = 0
    reject_code: int = 0
    reject_message: str = ""
    reject_count: int = 0
    http_status: int = 0
    http_count: int = 0
    http_prefix: str = "/api/v1/sendTx"
    freeze_until_ms: dict[int, int] = field(default_factory=dict)
    skip_nonce: dict[int, int] = field(default_factory=dict)
    mute_until_ms: dict[int, int] = field(default_factory=dict)   # account -> no account frames before this

    def clear(self) -> None:
        self.delay_ms = self.delay_count = self.reject_code = self.reject_count = 0
        self.http_status = self.http_count = 0
        self.reject_message = ""
        self.http_prefix = "/api/v1/sendTx"
        self.freeze_until_ms.clear()
        self.skip_nonce.clear()
        self.mute_until_ms.clear()

    def take_http(self, path: str) -> int:
        """Status to answer instead of handling `path`, or 0."""
        if self.http_count > 0 and path.startswith(self.http_prefix):
            self.http_count -= 1
            return self.http_status
        return 0

    def take_delay(self) -> int:
        if self.delay_count > 0:
            self.delay_count -= 1
            return self.delay_ms
        return 0

    def take_reject(self) -> E.VenueError | None:
        if self.reject_count > 0:
            self.reject_count -= 1
            return E.VenueError(self.reject_code, self.reject_message or E.MESSAGES.get(self.reject_code, "error"))
        return None

    def frozen(self, market_id: int, now_ms: int) -> bool:
        return _holds(self.freeze_until_ms, market_id, now_ms)

    def account_muted(self, account: int, now_ms: int) -> bool:
        return _holds(self.mute_until_ms, account, now_ms)

    def take_skip(self, market_id: int) -> bool:
        n = self.skip_nonce.get(market_id, 0)
        if n > 0:
            if n == 1:
                del self.skip_nonce[market_id]
            else:
                self.skip_nonce[market_id] = n - 1
            return True
        return False


def _holds(until_ms: dict[int, int], key: int, now_ms: int) -> bool:
    """True while the deadline for ``key`` is ahead; a passed one is forgotten."""
    until = until_ms.get(key)
    if until is None:
        return False
    if now_ms >= until:
        del until_ms[key]
        return False
    return True


def _int(body: dict[str, Any], key: str, default: int | None = None) -> int:
    v = body.get(key, default)
    if v is None or isinstance(v, bool):
        raise ValueError(f"missing or invalid {key!r}")
    return int(v)


def apply_fault(f: Faults, body: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """Validate and arm one fault (drop_ws / drop_reduce_only / price_jump are handled by the
    caller, which owns the sockets and the core). Returns a description for the reply."""
    kind = body.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
    if kind == "skip_book_nonce":
        m = _int(body, "market_id")
        f.skip_nonce[m] = f.skip_nonce.get(m, 0) + _int(body, "count", 1)
    elif kind == "freeze_feed":
        m = _int(body, "market_id")
        f.freeze_until_ms[m] = now_ms + int(float(body.get("seconds", 5)) * 1000)
    elif kind == "mute_account":
        a = _int(body, "account_index")
        f.mute_until_ms[a] = now_ms + int(float(body.get("seconds", 5)) * 1000)
    elif kind == "delay_tx":
        f.delay_ms, f.delay_count = _int(body, "ms"), _int(body, "count", 1)
    elif kind == "reject_tx":
        f.reject_code, f.reject_count = _int(body, "code"), _int(body, "count", 1)
        f.reject_message = str(body.get("message") or E.MESSAGES.get(f.reject_code, "error"))
    elif kind == "http_status":
        status = _int(body, "status")
        if status not in (429, 500, 502, 503, 504):
            raise ValueError("status must be 429, 500, 502, 503 or 504")
        f.http_status, f.http_count = status, _int(body, "count", 1)
        f.http_prefix = str(body.get("path_prefix") or "/api/v1/sendTx")
    return {"kind": kind}
