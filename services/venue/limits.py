"""Rate limits and the premium volume quota (pure; `now_ms` passed in).

REST: a rolling 60 s window per key (account when the request names one, else client IP).
Standard accounts get 60 requests/min unweighted; premium 24 000 weight/min with Lighter's
endpoint weights. Transactions: a per-account bucket (standard 60 tx/min, premium 4 000 tx/min;
each tx of a batch counts) plus, for premium, the volume quota (creates/modifies consume one,
cancels none, one free tx every 15 s). Exceeding any of them -> HTTP 429 code 23000.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from . import errors as E
from shared.tiers import Tier

from .ledger import Account
from .txs import TX_CREATE_ORDER, TX_MODIFY_ORDER, Tx

WINDOW_MS = 60_000
WEIGHTS: dict[str, int] = {
    "sendTx": 6, "sendTxBatch": 6, "nextNonce": 6, "publicPools": 50, "txFromL1TxHash": 50,
    "accountInactiveOrders": 100, "apikeys": 150, "trades": 600, "recentTrades": 600,
}
DEFAULT_WEIGHT = 300
QUOTA_TX_TYPES = (TX_CREATE_ORDER, TX_MODIFY_ORDER)


class Window:
    """Rolling-window weight counter per key."""

    __slots__ = ("events", "totals", "window_ms")

    def __init__(self, window_ms: int = WINDOW_MS) -> None:
        self.events: dict[object, deque[tuple[int, int]]] = {}
        self.totals: dict[object, int] = {}
        self.window_ms = window_ms

    def used(self, key: object, now_ms: int) -> int:
        q = self.events.get(key)
        if not q:
            return 0
        edge = now_ms - self.window_ms
        total = self.totals[key]
        while q and q[0][0] <= edge:
            total -= q.popleft()[1]
        self.totals[key] = total
        return total

    def add(self, key: object, weight: int, now_ms: int) -> None:
        self.events.setdefault(key, deque()).append((now_ms, weight))
        self.totals[key] = self.totals.get(key, 0) + weight


@dataclass(slots=True)
class QuotaPlan:
    account: Account
    consume: int
    use_free: bool
    message: str


def ratelimit_message(text: str) -> str:
    """sendTx `message`: a JSON string formatted like Lighter's ({"ratelimit": "..."})."""
    return '{"ratelimit": "' + text + '"}'


def too_many(msg: str = "Too Many Requests!") -> E.VenueError:
    return E.VenueError(E.TOO_MANY_REQUESTS, msg, 429)


class Limiter:
    def __init__(self, enabled: bool, free_every_ms: int = 15_000) -> None:
        self.enabled = enabled
        self.free_every_ms = free_every_ms
        self.rest = Window()
        self.tx = Window()

    def check_rest(self, key: object, tier: Tier, endpoint: str, now_ms: int) -> None:
        if not self.enabled:
            return
        w = 1 if tier.rest_unweighted else WEIGHTS.get(endpoint, DEFAULT_WEIGHT)
        if self.rest.used(key, now_ms) + w > tier.rest_weight_per_min:
            raise too_many()
        self.rest.add(key, w, now_ms)

    def plan_tx(self, acct: Account, txs: list[Tx], now_ms: int) -> QuotaPlan:
        """Check the tx bucket and quota without consuming (commit after the core accepts)."""
        consume = sum(1 for t in txs if t.tx_type in QUOTA_TX_TYPES)
        if not self.enabled:
            return QuotaPlan(acct, 0, False, "didn't use volume quota")
        if self.tx.used(acct.index, now_ms) + len(txs) > acct.tier.tx_per_min:
            raise too_many()
        if not acct.tier.volume_quota or consume == 0:
            return QuotaPlan(acct, 0, False, "didn't use volume quota")
        use_free = now_ms - acct.last_free_tx_ms >= self.free_every_ms
        need = consume - (1 if use_free else 0)
        if need > acct.volume_quota:
            raise too_many("Too Many Requests!:  Not enough volume quota")
        if need == 0:
            return QuotaPlan(acct, 0, True, "didn't use volume quota")
        return QuotaPlan(acct, need, use_free, f"{acct.volume_quota - need} volume quota remaining")

    def commit_tx(self, plan: QuotaPlan, n_txs: int, now_ms: int) -> None:
        if not self.enabled:
            return
        self.tx.add(plan.account.index, n_txs, now_ms)
        if plan.use_free:
            plan.account.last_free_tx_ms = now_ms
        plan.account.volume_quota -= plan.consume
