"""Local L2 order book of one market: a Lighter snapshot, then deltas chained by nonce.

Lighter's ``update/order_book`` frames are batched diffs: each level replaces the aggregated size at
its price and size zero deletes it. An update applies only if its ``begin_nonce`` equals the nonce of
the previous frame; anything else means frames were lost, so the book invalidates itself and the
caller must fetch a fresh snapshot (unsubscribe + subscribe). Prices are integer ticks, sizes lots.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from shared.schemas import Level


class _Side:
    """One side: size per price plus the prices kept sorted ascending, so the top is a slice."""

    __slots__ = ("sizes", "prices", "descending")

    def __init__(self, descending: bool) -> None:
        self.sizes: dict[int, int] = {}
        self.prices: list[int] = []
        self.descending = descending

    def clear(self) -> None:
        self.sizes.clear()
        self.prices.clear()

    def set(self, price: int, size: int) -> None:
        if size == 0:
            if self.sizes.pop(price, None) is not None:
                del self.prices[bisect_left(self.prices, price)]
            return
        if price not in self.sizes:
            insort(self.prices, price)
        self.sizes[price] = size

    def top(self, depth: int) -> list[Level]:
        prices = self.prices[-depth:][::-1] if self.descending else self.prices[:depth]
        return [(p, self.sizes[p]) for p in prices]

    def __len__(self) -> int:
        return len(self.prices)


class OrderBook:
    """Book of one market; ``valid`` only between a snapshot and the first broken nonce link."""

    def __init__(self, market_id: int) -> None:
        self.market_id = market_id
        self.bids = _Side(descending=True)
        self.asks = _Side(descending=False)
        self.nonce: int | None = None
        self.valid = False

    def reset(self) -> None:
        """Forget everything (reconnect or gap): nothing may be published until the next snapshot."""
        self.bids.clear()
        self.asks.clear()
        self.nonce = None
        self.valid = False

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], nonce: int) -> None:
        self.reset()
        for p, s in bids:
            self.bids.set(p, s)
        for p, s in asks:
            self.asks.set(p, s)
        self.nonce = nonce
        self.valid = True

    def apply_update(self, bids: Iterable[Level], asks: Iterable[Level], begin_nonce: int, nonce: int) -> bool:
        """Apply a delta; on a broken chain (or no snapshot yet) reset and return False."""
        if not self.valid or begin_nonce != self.nonce:
            self.reset()
            return False
        for p, s in bids:
            self.bids.set(p, s)
        for p, s in asks:
            self.asks.set(p, s)
        self.nonce = nonce
        return True

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """Best ``depth`` levels per side, best price first."""
        return self.bids.top(depth), self.asks.top(depth)
