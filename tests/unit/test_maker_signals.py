"""Volatility EMA and trend window: time-aware, driven only by the timestamps given."""
from __future__ import annotations

import math

import pytest

from services.maker.signals import TrendWindow, VolEma


def test_vol_first_sample_only_seeds() -> None:
    v = VolEma(30_000)
    assert v.update(0, 100.0) == 0.0 and v.samples == 0


def test_vol_is_the_one_minute_sigma_of_one_second_returns() -> None:
    """Unit: bps per sqrt(minute). A steady 2 bps per second reads 2 * sqrt(60) = 15.5 (calm SOL)."""
    v = VolEma(30_000)
    mid = 100.0
    for i in range(1, 400):
        mid *= math.exp(0.0002 if i % 2 else -0.0002)
        v.update(i * 1_000, mid)
    assert v.value == pytest.approx(2 * math.sqrt(60), rel=1e-6)
    assert v.sigma_bps_per_sqrt_s == pytest.approx(2.0, rel=1e-6)


def test_vol_first_return_seeds_then_squares_are_averaged_by_halflife() -> None:
    v = VolEma(30_000)
    v.update(0, 100.0)
    assert v.update(1_000, 100.0 * math.exp(0.001)) == pytest.approx(10 * math.sqrt(60))   # the first return sets it
    v.update(2_000, 100.0 * math.exp(0.001))   # flat second: the variance decays by one second of weight
    w = 1 - 0.5 ** (1 / 30)
    assert v.value == pytest.approx(math.sqrt(100 * (1 - w) * 60))


def test_vol_samples_at_most_once_per_second_and_ignores_old_timestamps() -> None:
    v = VolEma(30_000)
    v.update(0, 100.0)
    assert v.update(500, 120.0) == 0.0  # too soon: not a sample
    assert v.update(-5, 120.0) == 0.0
    assert v.update(1_000, 100.0) == 0.0  # back where it was one second later: no return
    assert v.samples == 1


def test_vol_gap_is_variance_per_second_and_decays_by_time() -> None:
    a = VolEma(30_000)
    a.update(0, 100.0)
    a.update(4_000, 100.0 * math.exp(0.002))   # 20 bps over 4 s: variance 100 bps^2 per second
    assert a.value == pytest.approx(10 * math.sqrt(60))
    a.update(34_000, 100.0 * math.exp(0.002))  # flat for one half-life: the variance halves
    assert a.value == pytest.approx(10 * math.sqrt(60) / math.sqrt(2))


def test_trend_over_lookback() -> None:
    t = TrendWindow(45_000)
    assert t.update(0, 100.0) == 0.0
    assert t.update(10_000, 100.1) == pytest.approx(10.0)  # history shorter than the lookback: vs oldest
    assert t.update(50_000, 100.2) == pytest.approx(20.0)  # mid 45 s ago (at 5 s) was still the 0 s sample
    assert t.update(56_000, 100.2) == pytest.approx((100.2 / 100.1 - 1) * 1e4)  # reference now the 10 s sample
    for ts in range(51_000, 120_000, 1_000):
        t.update(ts, 100.2)
    assert t.value == pytest.approx(0.0)


def test_trend_down_and_out_of_order() -> None:
    t = TrendWindow(45_000)
    t.update(1_000, 100.0)
    assert t.update(2_000, 99.8) == pytest.approx(-20.0)
    assert t.update(1_500, 150.0) == pytest.approx(-20.0)  # older than the last sample: ignored


def test_the_trend_filter_has_hysteresis() -> None:
    """Starts at trigger_bps (12), holds until below release_bps (8), flips only at the trigger the other way."""
    from services.maker.core import MakerCore
    from shared.config import load_settings
    m = MakerCore.from_settings(load_settings())
    seen = []
    for trend in (11.9, 12.0, 10.0, 8.1, 7.9, -11.0, -12.5, 9.0, 12.0, -8.0):
        m.trend_dir = m._trend_state(trend)
        seen.append(m.trend_dir)
    assert seen == [0, 1, 1, 1, 0, 0, -1, -1, 1, 1]
