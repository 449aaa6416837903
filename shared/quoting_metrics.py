"""Prometheus metrics of the quoting services (maker and hedger share the names, label ``service``).

Created through ``_metric`` so a second import (both services' shells in one test process, or
another module defining the same family) reuses the registered collector instead of raising.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge

from shared.metrics import metric as _metric
from shared.metrics import position_lots

__all__ = ["position_lots"]

INTENTS = _metric(Counter, "mm_intents_total", "Order intents published", ["service", "action"])
MAKER_MODE = _metric(Gauge, "mm_maker_mode", "1 for the maker's current mode, 0 for the others", ["mode"])
VOL_BPS = _metric(Gauge, "mm_vol_bps", "Maker's volatility EMA of mid (bps per second)", ["market"])
TREND_BPS = _metric(Gauge, "mm_trend_bps", "Maker's mid change over the trend lookback (bps)", ["market"])


HEDGER_MODE = _metric(Gauge, "mm_hedger_mode", "1 for the hedger's current mode, 0 for the others", ["mode"])
REJECTED_INPUT = _metric(Counter, "mm_rejected_input_total", "Schema-valid entries a core refused as malformed",
                         ["service"])
