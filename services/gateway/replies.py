"""How to read the venue's answer to ``POST /api/v1/sendTx`` (pure: status + body in, verdict out).

Lighter answers HTTP 200 ``{"code":200,"tx_hash":...}`` when the API accepted the tx (the nonce is
then consumed), HTTP 400 ``{"code":..,"message":..}`` when it refused it (nonce not consumed; the
literal "invalid nonce" means our counter is wrong), 429 for rate limits, 5xx when something broke.
A timeout, a connection error, a 5xx or an unreadable body leave us unsure whether the tx went
through: the verdict is *ambiguous* and the nonce must be re-fetched before the next tx.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

Outcome = Literal["ok", "rejected", "ambiguous", "not_sent"]


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    code: int = 0            # Lighter code (200 on success); the HTTP status when the body had none
    message: str = ""        # Lighter's message, verbatim
    tx_hash: str = ""
    http_status: int = 0     # 0 = no HTTP answer (timeout, connection error)
    resync_nonce: bool = False
    rate_limited: bool = False   # HTTP 429: refused at the API (nonce not consumed); back off before the next tx
    invalid_nonce: bool = False
    malformed: bool = False  # the body was not a Lighter answer (counted and dead-lettered by the shell)
    quota_remaining: int | None = None   # the venue's volume_quota_remaining (premium accounts), when it said


def _parse(body: bytes) -> tuple[int, str, str, int | None] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or type(doc.get("code")) is not int:
        return None
    msg = doc.get("message")
    tx_hash = doc.get("tx_hash")
    quota = doc.get("volume_quota_remaining")
    return (doc["code"], msg if isinstance(msg, str) else "", tx_hash if isinstance(tx_hash, str) else "",
            quota if type(quota) is int else None)


def not_sent(error: str) -> SendResult:
    """No connection could be made: nothing reached the venue, the nonce is still ours."""
    return SendResult("not_sent", message=error)


def no_answer(error: str) -> SendResult:
    """Timeout or connection error: the tx may or may not have reached the venue."""
    return SendResult("ambiguous", message=error, resync_nonce=True)


def classify(status: int, body: bytes) -> SendResult:
    parsed = _parse(body)
    if parsed is None:
        text = body[:200].decode("utf-8", "replace")
        return SendResult("ambiguous", code=status, message=f"HTTP {status}: unreadable answer {text!r}",
                          http_status=status, resync_nonce=True, malformed=True)
    code, message, tx_hash, quota = parsed
    if status == 200:
        if code == 200:
            return SendResult("ok", code=200, message=message, tx_hash=tx_hash, http_status=200, quota_remaining=quota)
        return SendResult("rejected", code=code, message=message, http_status=200)  # SDK: nonce not consumed
    if status == 429:  # refused at the API: Lighter does not consume the nonce
        return SendResult("rejected", code=code, message=message, http_status=status, rate_limited=True)
    if status >= 500:
        return SendResult("ambiguous", code=code, message=message, http_status=status, resync_nonce=True)
    invalid_nonce = "invalid nonce" in message.lower()
    return SendResult("rejected", code=code, message=message, http_status=status,
                      resync_nonce=invalid_nonce, invalid_nonce=invalid_nonce)
