"""Lighter auth tokens as the feed sees them (pure): read the deadline, judge, pick the best one.

Shapes (lighter-api.md section 1.2; services/venue/auth.py checks the same):

- ``{deadline_unix_s}:{account_index}:{api_key_index}:{hex signature}``, minted by
  ``SignerClient.create_auth_token_with_expiry`` (deadline = timestamp + ttl);
- read-only ``ro:{account_index}:{single|all}:{expiry_unix_s}:{hex}``.

A token is usable when it names our account and its deadline is more than ``margin_ms`` away. The
signature cannot be checked here; the venue's answer (20013) is the only judge of that.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

MARGIN_MS = 60_000  # never use a token that expires within this
_TOKEN = re.compile(r"^(\d{1,12}):(\d{1,20}):(\d{1,3}):([0-9a-fA-F]{8,1024})$")
_RO_TOKEN = re.compile(r"^ro:(\d{1,20}):(single|all):(\d{1,12}):([0-9a-fA-F]{8,1024})$")
SOURCES = ("env", "file", "redis")  # tie-break on equal deadlines: the operator's own token first


@dataclass(frozen=True, slots=True)
class Candidate:
    """One token found in one place; ``token`` is a secret and stays out of ``repr``."""

    token: str = field(repr=False)
    source: str
    deadline_ms: int | None  # None: not a token shape we can read
    account: int | None

    def problem(self, now_ms: int, account: int | None, margin_ms: int = MARGIN_MS) -> str | None:
        """Why this token must not be used now, or None."""
        if self.deadline_ms is None:
            return "not a Lighter auth token"
        if account is not None and self.account != account:
            return f"for account {self.account}, not {account}"
        left = self.deadline_ms - now_ms
        if left <= 0:
            return f"expired {-left // 1000} s ago"
        if left <= margin_ms:
            return f"expires in {left // 1000} s"
        return None


def parse(token: str, source: str) -> Candidate:
    t = token.strip()
    m = _TOKEN.match(t)
    if m is not None:
        return Candidate(t, source, int(m.group(1)) * 1000, int(m.group(2)))
    r = _RO_TOKEN.match(t)
    if r is not None:
        return Candidate(t, source, int(r.group(3)) * 1000, int(r.group(1)))
    return Candidate(t, source, None, None)


def deadline_ms(token: str) -> int | None:
    return parse(token, "-").deadline_ms


def choose(cands: Iterable[Candidate], now_ms: int, account: int | None, refused: Iterable[str] = (),
           margin_ms: int = MARGIN_MS) -> Candidate | None:
    """The usable token with the latest deadline, preferring ones the venue has not refused."""
    usable = [c for c in cands if c.problem(now_ms, account, margin_ms) is None]
    if not usable:
        return None
    bad = set(refused)
    pool = [c for c in usable if c.token not in bad] or usable

    def rank(c: Candidate) -> tuple[int, int]:
        return (c.deadline_ms or 0, -SOURCES.index(c.source) if c.source in SOURCES else -len(SOURCES))
    return max(pool, key=rank)


def summary(cands: Iterable[Candidate], now_ms: int, account: int | None, margin_ms: int = MARGIN_MS) -> str:
    """Why none is usable, per source, without the tokens: ``file: expired 120 s ago; redis: none``."""
    parts = [f"{c.source}: {c.problem(now_ms, account, margin_ms) or 'ok'}" for c in cands]
    return "; ".join(parts) if parts else "none found"
