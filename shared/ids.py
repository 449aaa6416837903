"""Order identity minted by producers (pure: ``now_ms`` is passed in).

A ``client_order_index`` (Lighter: 1..2^48-1) is ``(max(now_ms << 5, last + 1) << 2) | source``:
strictly increasing per source, unique across sources and across restarts (the clock moves on),
and valid until 2039. The intent id names the source and the index, so any order at the venue
maps back to the intent that placed it.
"""
from __future__ import annotations

SOURCE_CODES = {"maker": 1, "hedger": 2, "operator": 3}
MAX_COI = 2**48 - 1


class IdMint:
    def __init__(self, source: str) -> None:
        self.source = source
        self.code = SOURCE_CODES[source]
        self._last = 0

    def next_coi(self, now_ms: int) -> int:
        self._last = max(now_ms << 5, self._last + 1)
        coi = (self._last << 2) | self.code
        if coi > MAX_COI:
            raise OverflowError("client_order_index space exhausted")
        return coi

    def intent_id(self, coi: int) -> str:
        return f"{self.source}-{coi}"


MIN_EPOCH_MS = 1_577_836_800_000  # 2020-01-01: our indexes carry a millisecond timestamp above this


def source_of(coi: int) -> str | None:
    """Which producer minted a client_order_index; None for foreign orders.

    The timestamp check keeps us off other tools' orders on the same account: a plain epoch-ms
    index (1.7e12) or a small counter is far below ``MIN_EPOCH_MS << 7``.
    """
    if coi > MAX_COI or (coi >> 7) < MIN_EPOCH_MS:
        return None
    for name, code in SOURCE_CODES.items():
        if coi & 3 == code:
            return name
    return None
