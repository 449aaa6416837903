"""Adaptive/volatility-aware quoting with notional clamp.

Compatibility alias: the real code lives in ``services/maker/`` (``core.py``, ``pricing.py``, ``signals.py``).
"""
from services.maker.core import MakerCore, Target
from shared.books import book_problem
from shared.pricing import clamp_size, config_size_lots, min_lots_at, min_notional_micro, quote_prices
from services.maker.signals import TrendWindow, VolEma

__all__ = ["MakerCore", "Target", "book_problem", "clamp_size", "config_size_lots", "min_lots_at",
           "min_notional_micro", "quote_prices", "TrendWindow", "VolEma"]
