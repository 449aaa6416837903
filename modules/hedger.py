"""Hedges toward target_units, respects max_slippage_bps.

Compatibility alias: the real code lives in ``services/hedger/core.py``.
"""
from services.hedger.core import HedgerCore, aggressive_price, clip_size, passive_price

__all__ = ["HedgerCore", "aggressive_price", "clip_size", "passive_price"]
