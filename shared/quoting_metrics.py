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
VOL_BPS = _metric(Gauge, "mm_vol_bps", "Maker's volatility signal: the 1-minute sigma of mid (bps per sqrt(minute); "
                  "EMA of squared returns, 30 s half-life)", ["market"])
HALF_SPREAD_BPS = _metric(Gauge, "mm_half_spread_bps", "Maker's engine: distance of each side's quote from the mid (bps)",
                          ["market", "side"])
CALIBRATION = _metric(Gauge, "mm_calibration", "Maker's live estimates from the public tape: sigma_usd_per_sqrt_s, "
                      "A (per s per side), k (per USD), r2 (of the intensity fit), fit_used (1 = steering the quotes), "
                      "arrivals, span_s", ["market", "estimate"])
MARKOUT_BPS = _metric(Gauge, "mm_markout_bps", "Maker's own fills: size-weighted markout at the horizon over the last "
                      "200 fills (bps, positive = good); absent until a fill has matured", ["market", "horizon"])
TREND_BPS = _metric(Gauge, "mm_trend_bps", "Maker's mid change over the trend lookback (bps)", ["market"])


HEDGER_MODE = _metric(Gauge, "mm_hedger_mode", "1 for the hedger's current mode, 0 for the others", ["mode"])
HEDGER_CLIPS = _metric(Counter, "mm_hedger_clips_total", "Hedge clips sent", ["phase"])
HEDGER_CLIP_COST = _metric(Gauge, "mm_hedger_clip_cost_usd", "Hedger's ended clips: running total cost in USD since "
                           "start (slippage vs the decision mid, positive = paid; fees), signed", ["kind"])
HEDGER_LAST_CLIP_BPS = _metric(Gauge, "mm_hedger_last_clip_slippage_bps", "Slippage of the hedger's last ended clip "
                               "vs the decision mid (bps, positive = paid)", [])
HEDGER_SKIPS = _metric(Counter, "mm_hedger_skips_total", "Hedges not taken: self_cross (our quote is the best "
                       "opposite price), cost (expected cost > risk), position_hold, min_size", ["reason"])
HEDGER_SIGMA_BPS = _metric(Gauge, "mm_hedger_sigma_bps", "Hedger's volatility EMA of mid (bps per sqrt(s)); -1 warming up",
                           ["market"])
REJECTED_INPUT = _metric(Counter, "mm_rejected_input_total", "Schema-valid entries a core refused as malformed",
                         ["service"])
