"""The venue's transaction history: what ``tx``, ``txs``, ``blockTxs``, ``block`` and ``blocks`` read.

Every accepted tx is recorded once its request commits (a refused batch leaves nothing), then marked
when the sequencer runs it. Status follows Lighter's mapping for ``/tx`` (research notes §"error
codes"): 0 failed, 1 pending, 2 executed (3, pending-final, is never used: the venue has no L1).
A block is ``BLOCK_MS`` of venue time; its height is the one the engine shows (``currentHeight``).
The log is bounded (oldest dropped first) so hour-long lab runs keep flat memory.
"""
from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from .txs import Tx

STATUS_FAILED, STATUS_PENDING, STATUS_EXECUTED = 0, 1, 2
DEFAULT_CAP = 100_000


@dataclass(slots=True)
class TxRecord:
    tx: Tx
    sequence_index: int
    queued_ms: int
    executed_ms: int = 0
    block_height: int = 0
    status: int = STATUS_PENDING


class TxLog:
    """Accepted txs by hash, in acceptance order, and by block once executed."""

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        self.cap = cap
        self.seq = 0
        self.order: deque[TxRecord] = deque()
        self.by_hash: dict[str, TxRecord] = {}
        self.by_block: dict[int, list[TxRecord]] = {}

    def accepted(self, tx: Tx, now_ms: int) -> None:
        self.seq += 1
        rec = TxRecord(tx, self.seq, now_ms)
        self.order.append(rec)
        self.by_hash[tx.tx_hash] = rec
        while len(self.order) > self.cap:
            old = self.order.popleft()
            if self.by_hash.get(old.tx.tx_hash) is old:
                del self.by_hash[old.tx.tx_hash]
            blk = self.by_block.get(old.block_height)
            if blk is not None and old in blk:
                blk.remove(old)
                if not blk:
                    del self.by_block[old.block_height]

    def executed(self, tx: Tx, now_ms: int, height: int, ok: bool) -> None:
        rec = self.by_hash.get(tx.tx_hash)
        if rec is None or rec.tx is not tx:
            return
        rec.executed_ms, rec.block_height = now_ms, height
        rec.status = STATUS_EXECUTED if ok else STATUS_FAILED
        self.by_block.setdefault(height, []).append(rec)

    def get(self, tx_hash: str) -> TxRecord | None:
        return self.by_hash.get(tx_hash)

    def by_sequence(self, index: int) -> TxRecord | None:
        if not self.order:
            return None
        pos = index - self.order[0].sequence_index
        return self.order[pos] if 0 <= pos < len(self.order) else None

    def page(self, index: int, limit: int) -> list[TxRecord]:
        """From sequence index ``index`` on (the oldest kept when below it), at most ``limit``."""
        if not self.order:
            return []
        start = max(index - self.order[0].sequence_index, 0)
        return [self.order[i] for i in range(start, min(start + limit, len(self.order)))]

    def block(self, height: int) -> list[TxRecord]:
        return list(self.by_block.get(height, ()))


def _digest(*parts: object) -> str:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=32).hexdigest()


def block_commitment(height: int) -> str:
    return _digest("commitment", height)


def tx_json(r: TxRecord, l1_address: str) -> dict[str, Any]:
    """One ``Tx`` as the SDK model has it (times: ms, ``transaction_time``: µs)."""
    t = r.tx
    return {"hash": t.tx_hash, "type": t.tx_type, "info": t.raw, "event_info": "", "status": r.status,
            "transaction_index": r.sequence_index, "l1_address": l1_address, "account_index": t.account,
            "nonce": t.nonce, "expire_at": t.expired_at, "block_height": r.block_height,
            "queued_at": r.queued_ms, "executed_at": r.executed_ms, "sequence_index": r.sequence_index,
            "parent_hash": "", "api_key_index": t.api_key, "transaction_time": (r.executed_ms or r.queued_ms) * 1000}


def block_json(height: int, at_ms: int, txs: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``Block``: commitment and roots are stand-ins (no L1 here), committed = verified = its time."""
    return {"commitment": block_commitment(height), "height": height, "state_root": _digest("state", height),
            "priority_operations": 0, "on_chain_l2_operations": 0, "pending_on_chain_operations_pub_data": "",
            "committed_tx_hash": _digest("commit", height), "committed_at": at_ms,
            "verified_tx_hash": _digest("verify", height), "verified_at": at_ms, "txs": txs,
            "status": 2, "size": len(txs)}
