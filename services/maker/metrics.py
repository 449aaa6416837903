"""Prometheus metrics of the quoting services (maker and hedger share the names, label ``service``).

Created through ``_metric`` so a second import (both services' shells in one test process, or
another module defining the same family) reuses the registered collector instead of raising.
"""
from __future__ import annotations

from typing import TypeVar

from prometheus_client import REGISTRY, Counter, Gauge

M = TypeVar("M", Counter, Gauge)


def _metric(kind: type[M], name: str, doc: str, labels: list[str]) -> M:
    existing = REGISTRY._names_to_collectors.get(name)  # noqa: SLF001 - prometheus has no public lookup
    if existing is not None:
        if not isinstance(existing, kind) or tuple(existing._labelnames) != tuple(labels):  # noqa: SLF001
            raise TypeError(f"metric {name} already registered with another type or labels")
        return existing
    return kind(name, doc, labels)


INTENTS = _metric(Counter, "mm_intents_total", "Order intents published", ["service", "action"])
MAKER_MODE = _metric(Gauge, "mm_maker_mode", "1 for the maker's current mode, 0 for the others", ["mode"])
VOL_BPS = _metric(Gauge, "mm_vol_bps", "Maker's volatility EMA of mid (bps per second)", ["market"])
TREND_BPS = _metric(Gauge, "mm_trend_bps", "Maker's mid change over the trend lookback (bps)", ["market"])


def position_lots() -> Gauge:
    """``mm_position_lots{market}``: the guard registers the same family at import, so ours is looked up
    (or created) at first use; in production every service is its own process and series."""
    return _metric(Gauge, "mm_position_lots", "Signed position in lots as this service sees it", ["market"])
HEDGER_MODE = _metric(Gauge, "mm_hedger_mode", "1 for the hedger's current mode, 0 for the others", ["mode"])
REJECTED_INPUT = _metric(Counter, "mm_rejected_input_total", "Schema-valid entries a core refused as malformed",
                         ["service"])
