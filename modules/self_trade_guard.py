"""Compatibility shim: the self-trade check of the risk guard.

The real code lives in ``services/guard`` (``services.guard.core``, rules in
``services.guard.rules``); this module only re-exports it for code that imported the old
``modules.self_trade_guard``. The guard rails are activated via the ``guard.*`` config
(``guard.enabled``, ``guard.max_position_units``, ``guard.max_inventory_notional``); the guard
service vetoes any place that would cross one of our own resting orders with reason ``self-trade``.
"""
from __future__ import annotations

from services.guard.core import OwnOrder, self_trade_conflict, would_self_trade

__all__ = ["OwnOrder", "self_trade_conflict", "would_self_trade"]
