"""Auth-token checks for private REST endpoints and WS channels.

Tokens made by `SignerClient.create_auth_token_with_expiry` look like
"{deadline_s}:{account}:{api_key}:{160 hex}" (read-only tokens: "ro:{account}:{single|all}:{expiry_s}:{hex}").
The Schnorr signature cannot be verified here (no ECgFp5/Poseidon2), so the venue checks the
shape, that the account exists and the key is registered, and that the deadline is in the
future and at most 8 h ahead (Lighter's maximum lifetime).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from . import errors as E
from .core import Venue

_TOKEN = re.compile(r"^(\d{1,12}):(\d{1,20}):(\d{1,3}):([0-9a-fA-F]{64,512})$")
_RO_TOKEN = re.compile(r"^ro:(\d{1,20}):(single|all):(\d{1,12}):([0-9a-fA-F]{8,512})$")
RO_MAX_TTL_S = 10 * 365 * 86_400


@dataclass(slots=True)
class AuthInfo:
    account: int
    api_key: int  # -1 for read-only tokens
    deadline_s: int
    read_only: bool


def check_token(v: Venue, token: str | None, now_ms: int, *, max_ttl_s: int,
                channel: str = "", account: int | None = None) -> AuthInfo:
    """Validate a token; raises VenueError (20001 missing, 20013 invalid: HTTP 401)."""
    if not token:
        msg = (f"invalid param : auth field is required: {channel}" if channel else
               "invalid param : auth query param and Authorization header are empty")
        raise E.err(E.INVALID_PARAM, msg)
    now_s = now_ms // 1000
    m = _TOKEN.match(token)
    if m is not None:
        deadline, acct_i, key = int(m.group(1)), int(m.group(2)), int(m.group(3))
        read_only = False
        ttl = max_ttl_s
    else:
        r = _RO_TOKEN.match(token)
        if r is None:
            raise E.err(E.INVALID_AUTH, "invalid auth: invalid token format", 401)
        acct_i, deadline, key, read_only = int(r.group(1)), int(r.group(3)), -1, True
        ttl = RO_MAX_TTL_S
    if deadline <= now_s or deadline > now_s + ttl:
        raise E.err(E.INVALID_AUTH, "invalid auth: invalid deadline", 401)
    acct = v.account(acct_i)
    if acct is None:
        raise E.err(E.INVALID_AUTH, "invalid auth: account not found", 401)
    if not read_only and key not in acct.api_keys:
        raise E.err(E.INVALID_AUTH, "invalid auth: api key not found", 401)
    if account is not None and account != acct_i:
        raise E.err(E.INVALID_AUTH, "invalid auth: account index mismatch", 401)
    return AuthInfo(acct_i, key, deadline, read_only)
