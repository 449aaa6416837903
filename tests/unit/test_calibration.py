"""shared.calibration: sigma, trade-depth intensity fit and markouts on synthetic, seeded data."""
from __future__ import annotations

import math
import random

import pytest

from shared.calibration import IntensityFit, Markouts, SigmaEstimator, book_mid, to_price
from shared.markets import MarketSpec
from shared.schemas import BookTop

SPEC = MarketSpec(market_id=1, symbol="ETH", price_decimals=2, size_decimals=4, min_base=10, min_quote_micro=10_000_000)


# --- helpers ----------------------------------------------------------------------------------------
def test_book_mid_and_to_price() -> None:
    book = BookTop(market_id=1, seq=1, venue_ts_ms=0, bids=[(300000, 5)], asks=[(300010, 5)])
    assert book_mid(book, SPEC) == pytest.approx(3000.05)
    assert to_price(300010, SPEC) == pytest.approx(3000.10)
    assert book_mid(BookTop(market_id=1, seq=1, venue_ts_ms=0, bids=[], asks=[(1, 1)]), SPEC) is None
    assert book_mid(BookTop(market_id=1, seq=1, venue_ts_ms=0, bids=[(5, 1)], asks=[(4, 1)]), SPEC) is None


# --- sigma -------------------------------------------------------------------------------------------
def test_sigma_alternating_returns_converge_to_x_bps() -> None:
    est = SigmaEstimator(halflife_s=30.0)
    x = 5.0
    for i in range(300):
        est.update(i * 1000, 100.0 * math.exp((x * 1e-4) * (i % 2)))
    assert est.samples == 299
    assert est.sigma_bps_per_sqrt_s == pytest.approx(x, rel=1e-9)
    assert est.sigma_price_per_sqrt_s(100.0) == pytest.approx(x * 1e-4 * 100.0, rel=1e-9)
    assert est.snapshot() == {"sigma_bps_per_sqrt_s": pytest.approx(x), "samples": 299, "ready": 1}


def test_sigma_subsamples_and_normalises_gaps() -> None:
    est = SigmaEstimator(halflife_s=30.0, sample_ms=1000)
    assert est.sigma_bps_per_sqrt_s is None and est.snapshot()["ready"] == 0
    est.update(0, 100.0)
    est.update(400, 200.0)            # inside the sample period: ignored, not a return
    assert est.samples == 0
    # a 4 s gap with a 20 bps log move: variance per second = 20^2 / 4 -> sigma = 10 bps/sqrt(s)
    est.update(4000, 100.0 * math.exp(20e-4))
    assert est.samples == 1
    assert est.sigma_bps_per_sqrt_s == pytest.approx(10.0, rel=1e-9)


def test_sigma_decays_by_halflife() -> None:
    est = SigmaEstimator(halflife_s=10.0)
    est.update(0, 100.0)
    est.update(1000, 100.0 * math.exp(10e-4))   # var = 100 bps^2/s
    est.update(11000, 100.0 * math.exp(10e-4))  # flat over 10 s: weight 1/2 -> var 50
    assert est.sigma_bps_per_sqrt_s == pytest.approx(math.sqrt(50.0), rel=1e-9)


def test_sigma_ignores_bad_mids() -> None:
    est = SigmaEstimator()
    for ts, mid in [(0, 100.0), (1000, 0.0), (2000, float("nan")), (3000, -1.0)]:
        est.update(ts, mid)
    assert est.samples == 0


# --- intensity ---------------------------------------------------------------------------------------
def _poisson_tape(fit: IntensityFit, rng: random.Random, a: float, k: float, t0_ms: int, dur_s: float,
                  mid: float = 3000.0) -> None:
    """Per side, Poisson arrivals at rate ``a``/s reaching depth ~ Exp(k) USD from a constant mid."""
    events: list[tuple[int, bool, float]] = []
    for taker_is_ask in (False, True):
        t = 0.0
        while True:
            t += rng.expovariate(a)
            if t >= dur_s:
                break
            depth = rng.expovariate(k)
            events.append((t0_ms + int(t * 1000), taker_is_ask, mid - depth if taker_is_ask else mid + depth))
    events.sort()
    fit.on_book(t0_ms, mid)
    for ts, side, price in events:
        fit.on_trade(ts, price, side)


def test_intensity_recovers_a_and_k() -> None:
    fit = IntensityFit(window_s=600, depths=10, min_trades=30)
    _poisson_tape(fit, random.Random(7), a=2.0, k=50.0, t0_ms=0, dur_s=600)
    res = fit.fit(600_000)
    assert res is not None
    assert res.A == pytest.approx(2.0, rel=0.15)
    assert res.k == pytest.approx(50.0, rel=0.15)
    assert res.r2 > 0.9
    assert res.span_s == pytest.approx(600.0)
    assert 2000 < res.n < 2800
    assert res.rate(0.0) == pytest.approx(res.A)
    snap = fit.snapshot()
    assert snap["ready"] == 1 and snap["k"] == pytest.approx(res.k, rel=0.05)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_intensity_recovers_other_parameters(seed: int) -> None:
    fit = IntensityFit(window_s=600)
    _poisson_tape(fit, random.Random(seed), a=0.5, k=10.0, t0_ms=0, dur_s=600)
    res = fit.fit(600_000)
    assert res is not None                    # ~600 arrivals: sampling error alone is up to ~15%
    assert res.A == pytest.approx(0.5, rel=0.2)
    assert res.k == pytest.approx(10.0, rel=0.2)


def test_intensity_none_when_too_few_trades_or_too_short() -> None:
    fit = IntensityFit(min_trades=30)
    fit.on_book(0, 100.0)
    for i in range(29):
        fit.on_trade(1000 + i * 1000, 100.0 + 0.01 * (i + 1), False)
    assert fit.fit(120_000) is None and fit.snapshot()["ready"] == 0
    fit.on_trade(100_000, 100.5, False)
    assert fit.fit(120_000) is not None

    short = IntensityFit(min_trades=5)
    short.on_book(0, 100.0)
    for i in range(50):
        short.on_trade(100 + i * 100, 100.0 + 0.01 * (i + 1), True)
    assert short.fit(59_000) is None          # only 59 s observed
    assert short.fit(60_000) is not None


def test_intensity_none_when_k_not_positive() -> None:
    fit = IntensityFit(min_trades=5)
    fit.on_book(0, 100.0)
    for i in range(40):
        fit.on_trade(1000 * (i + 1), 100.0, False)   # every trade at the mid: no depth to fit
    assert fit.fit(100_000) is None


def test_intensity_sweep_is_one_arrival_at_its_deepest_price() -> None:
    fit = IntensityFit()
    fit.on_book(0, 100.0)
    fit.on_trade(1000, 100.05, False)
    fit.on_trade(1000, 99.90, True)           # other aggressor at the same ms: its own arrival
    fit.on_trade(1000, 100.20, False)
    fit.on_trade(1000, 99.80, True)
    fit.on_book(1000, 100.25)                 # the book after the sweep must not move its reference
    fit.on_trade(1000, 100.10, False)
    assert sorted(fit.deltas(1000)) == pytest.approx([0.20, 0.20])   # open sweeps count already
    fit.on_trade(2000, 100.30, False)         # a new ms closes the buy sweep, measured from 100.25
    assert sorted(fit.deltas(2000)) == pytest.approx([0.05, 0.20, 0.20])


def test_intensity_skips_trades_before_any_book() -> None:
    fit = IntensityFit()
    fit.on_trade(0, 100.0, False)
    assert fit.deltas(0) == [] and fit.skipped_no_mid == 1


def test_intensity_window_drops_old_arrivals() -> None:
    fit = IntensityFit(window_s=600)
    rng = random.Random(11)
    # 600 s with shallow depth (k=200), then 600 s with deep depth (k=20): the fit follows the window
    _poisson_tape(fit, rng, a=2.0, k=200.0, t0_ms=0, dur_s=600)
    first = fit.fit(600_000)
    _poisson_tape(fit, rng, a=2.0, k=20.0, t0_ms=600_000, dur_s=600)
    later = fit.fit(1_200_000)
    assert first is not None and later is not None
    assert first.k == pytest.approx(200.0, rel=0.15)
    assert later.k == pytest.approx(20.0, rel=0.15)
    assert later.n == len(fit.deltas(1_200_000)) < 2800
    assert later.span_s == pytest.approx(600.0)
    assert all(d > 0 for d in fit.deltas(1_200_000))


def test_intensity_ignores_out_of_order_events() -> None:
    fit = IntensityFit()
    fit.on_book(5000, 100.0)
    fit.on_trade(6000, 100.1, False)
    fit.on_trade(4000, 105.0, False)          # older than the last event: dropped
    fit.on_book(3000, 50.0)
    assert fit.deltas(6000) == pytest.approx([0.1])


# --- markouts ----------------------------------------------------------------------------------------
def test_markout_buy_and_sell_at_horizon() -> None:
    m = Markouts(horizons_s=(1, 5))
    m.on_fill(10_000, False, 100.0, 1.0)      # we bought at 100
    m.on_mid(11_000, 100.5)                   # +1 s
    m.on_mid(14_999, 99.0)                    # not yet 5 s
    assert m.mean_bps(5) is None and m.count(5) == 0
    m.on_mid(15_000, 101.0)                   # +5 s
    assert m.mean_bps(1) == pytest.approx(50.0)
    assert m.mean_bps(5) == pytest.approx(100.0)

    s = Markouts(horizons_s=(5,))
    s.on_fill(0, True, 100.0, 1.0)            # we sold at 100, mid rose to 101: bad for us
    s.on_mid(5_000, 101.0)
    assert s.mean_bps(5) == pytest.approx(-100.0)
    assert s.snapshot() == {"markout_5s_bps": pytest.approx(-100.0), "markout_5s_n": 1, "markout_5s_pending": 0}


def test_markout_uses_first_mid_at_or_after_horizon() -> None:
    m = Markouts(horizons_s=(1,))
    m.on_fill(0, False, 100.0, 1.0)
    m.on_mid(3_000, 102.0)                    # first mid after a gap
    m.on_mid(4_000, 90.0)
    assert m.mean_bps(1) == pytest.approx(200.0)


def test_markout_size_weighted_over_last_fills() -> None:
    m = Markouts(horizons_s=(1,), max_fills=2)
    m.on_fill(0, False, 100.0, 5.0)           # +100 bps, but pushed out of the last-2 window
    m.on_fill(0, False, 101.0, 1.0)           # 0 bps
    m.on_fill(0, True, 102.0, 3.0)            # sold 102, mid 101: +98.04 bps
    m.on_mid(1_000, 101.0)
    expected = (0.0 * 1.0 + (1.0 / 102.0 * 1e4) * 3.0) / 4.0
    assert m.mean_bps(1) == pytest.approx(expected)
    assert m.count(1) == 3


def test_markout_memory_bounded_and_unknown_horizon() -> None:
    m = Markouts(horizons_s=(1,), max_fills=3, max_pending=4)
    for i in range(10):
        m.on_fill(i, False, 100.0, 1.0)
    assert m.snapshot()["markout_1s_pending"] == 4
    m.on_mid(100_000, 100.0)
    assert m.count(1) == 4 and m.snapshot()["markout_1s_pending"] == 0
    with pytest.raises(ValueError):
        m.mean_bps(2)
