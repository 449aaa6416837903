"""Checks on a schema-valid book before a core prices from it (pure; shared by maker, hedger, guard)."""
from __future__ import annotations

from shared.schemas import BookTop


def book_problem(book: BookTop) -> str | None:
    """Why a schema-valid book is still unusable data (None if fine). One-sided books are fine."""
    for name, levels, better in (("bids", book.bids, 1), ("asks", book.asks, -1)):
        prev = None
        for i, (price, size) in enumerate(levels):
            if price <= 0 or size <= 0:
                return f"{name}[{i}] non-positive price or size"
            if prev is not None and (price - prev) * better >= 0:
                return f"{name} not strictly ordered best first"
            prev = price
    if book.bids and book.asks and book.bids[0][0] >= book.asks[0][0]:
        return f"crossed book: bid {book.bids[0][0]} >= ask {book.asks[0][0]}"
    return None
