"""Price-time priority limit order book for one market (pure, integer ticks and lots).

Levels are insertion-ordered dicts (order_index -> Order), so FIFO priority and O(1) removal
come for free; sorted price lists give the best level. Every change of a level's aggregate
size bumps `nonce` and marks the price dirty, which is all the WS order_book diff needs.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field

COI_LIMIT = 1 << 48  # client order indexes are 1..2^48-1, venue order indexes start at 2^48


@dataclass(slots=True, eq=False)
class Order:
    """A live or finished order. Amounts are integer lots / ticks, money micro-USDC."""

    order_index: int
    client_order_index: int
    market_id: int
    account: int
    is_ask: bool
    price: int
    initial: int
    remaining: int
    type: int  # 0 limit, 1 market
    tif: int  # 0 IOC, 1 GTT, 2 post-only
    reduce_only: bool
    expiry_ms: int
    nonce: int  # engine sequence (not the API-key nonce)
    created_ms: int
    updated_ms: int
    tx_time_us: int
    api_key: int = 0
    stp_mode: int = 0
    filled_base: int = 0
    filled_quote: int = 0  # micro-USDC
    status: str = "open"
    block_height: int = 0
    version: int = 1  # as Lighter's snapshots show a fresh order; each executed modify adds one
    reserved: int = 0  # lots still counted in the account's exposure (see ledger)
    trigger_price: int = 0


@dataclass(slots=True)
class Level:
    price: int
    size: int = 0
    orders: dict[int, Order] = field(default_factory=dict)


class Book:
    """One market's book. Bids and asks keep ascending price lists (best bid = last)."""

    __slots__ = ("market_id", "bids", "asks", "bid_prices", "ask_prices", "nonce",
                 "dirty_bids", "dirty_asks", "changes")

    def __init__(self, market_id: int, start_nonce: int = 1) -> None:
        self.market_id = market_id
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_prices: list[int] = []
        self.ask_prices: list[int] = []
        self.nonce = start_nonce
        self.dirty_bids: set[int] = set()
        self.dirty_asks: set[int] = set()
        self.changes = 0

    # -- queries -------------------------------------------------------------------------
    def best_bid(self) -> int | None:
        return self.bid_prices[-1] if self.bid_prices else None

    def best_ask(self) -> int | None:
        return self.ask_prices[0] if self.ask_prices else None

    def best_bid_level(self) -> Level | None:
        return self.bids[self.bid_prices[-1]] if self.bid_prices else None

    def best_ask_level(self) -> Level | None:
        return self.asks[self.ask_prices[0]] if self.ask_prices else None

    def levels(self, is_ask: bool, depth: int | None = None) -> list[tuple[int, int]]:
        """Aggregated (price, size) from best outward."""
        if is_ask:
            prices = self.ask_prices if depth is None else self.ask_prices[:depth]
            return [(p, self.asks[p].size) for p in prices]
        prices = self.bid_prices[::-1] if depth is None else self.bid_prices[: -depth - 1 : -1]
        return [(p, self.bids[p].size) for p in prices]

    def orders_from_best(self, is_ask: bool, limit: int) -> list[Order]:
        """Individual resting orders in priority order (for orderBookOrders)."""
        out: list[Order] = []
        side = self.asks if is_ask else self.bids
        prices = self.ask_prices if is_ask else reversed(self.bid_prices)
        for p in prices:
            for o in side[p].orders.values():
                out.append(o)
                if len(out) >= limit:
                    return out
        return out

    def count(self, is_ask: bool) -> int:
        side = self.asks if is_ask else self.bids
        return sum(len(lv.orders) for lv in side.values())

    # -- mutation ------------------------------------------------------------------------
    def _touch(self, is_ask: bool, price: int) -> None:
        self.nonce += 1
        self.changes += 1
        (self.dirty_asks if is_ask else self.dirty_bids).add(price)

    def add(self, o: Order) -> None:
        """Append `o` at the back of its price level."""
        side = self.asks if o.is_ask else self.bids
        lv = side.get(o.price)
        if lv is None:
            lv = side[o.price] = Level(o.price)
            insort(self.ask_prices if o.is_ask else self.bid_prices, o.price)
        lv.orders[o.order_index] = o
        lv.size += o.remaining
        self._touch(o.is_ask, o.price)

    def remove(self, o: Order) -> None:
        """Take `o` out of the book (its remaining size leaves the level)."""
        side = self.asks if o.is_ask else self.bids
        lv = side[o.price]
        del lv.orders[o.order_index]
        lv.size -= o.remaining
        if not lv.orders:
            del side[o.price]
            prices = self.ask_prices if o.is_ask else self.bid_prices
            del prices[bisect_left(prices, o.price)]
        self._touch(o.is_ask, o.price)

    def reduce(self, o: Order, lots: int) -> None:
        """Shrink a resting order in place (keeps priority); caller updates o.remaining."""
        side = self.asks if o.is_ask else self.bids
        side[o.price].size -= lots
        self._touch(o.is_ask, o.price)

    def level_size(self, is_ask: bool, price: int) -> int:
        lv = (self.asks if is_ask else self.bids).get(price)
        return lv.size if lv is not None else 0

    def take_dirty(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(asks, bids) changed since the last call as (price, current size; 0 = deleted)."""
        asks = [(p, self.level_size(True, p)) for p in sorted(self.dirty_asks)]
        bids = [(p, self.level_size(False, p)) for p in sorted(self.dirty_bids, reverse=True)]
        self.dirty_asks = set()
        self.dirty_bids = set()
        return asks, bids
