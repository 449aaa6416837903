"""Market statistics in bps (floats are fine here: they steer the strategy, never an order amount).

Both use the timestamps they are given (the venue's book time), never a clock, so a replay of a
recorded stream yields the same values.
"""
from __future__ import annotations

import math
from collections import deque


class VolEma:
    """EMA of absolute log-returns of mid, sampled at most once per ``sample_ms``, in bps per second.

    A return over a gap of ``dt`` seconds is scaled by ``1/sqrt(dt)`` (random-walk scaling) so
    gaps in the feed do not look like volatility; the EMA weight ``1 - 2^(-dt/halflife)`` makes
    the decay depend on elapsed time, not on the number of books.
    """

    def __init__(self, halflife_ms: int, sample_ms: int = 1_000) -> None:
        if halflife_ms <= 0:
            raise ValueError("halflife must be positive")
        self.halflife_ms, self.sample_ms = halflife_ms, sample_ms
        self.value = 0.0
        self.samples = 0
        self._ts: int | None = None
        self._mid = 0.0

    def update(self, ts_ms: int, mid: float) -> float:
        if mid <= 0:
            return self.value
        if self._ts is None:
            self._ts, self._mid = ts_ms, mid
            return self.value
        dt = ts_ms - self._ts
        if dt < self.sample_ms:  # also ignores out-of-order timestamps
            return self.value
        r_bps = abs(math.log(mid / self._mid)) * 1e4 / math.sqrt(dt / 1000)
        alpha = 1.0 - 0.5 ** (dt / self.halflife_ms)
        self.value += alpha * (r_bps - self.value)
        self.samples += 1
        self._ts, self._mid = ts_ms, mid
        return self.value


class TrendWindow:
    """Mid change in bps over the last ``lookback_ms``.

    Keeps one sample at or before the window start as the reference; until the history spans the
    whole lookback the oldest sample is the reference (a trend shows up early rather than late).
    """

    def __init__(self, lookback_ms: int, min_step_ms: int = 250) -> None:
        self.lookback_ms, self.min_step_ms = lookback_ms, min_step_ms
        self._samples: deque[tuple[int, float]] = deque()
        self.value = 0.0

    def update(self, ts_ms: int, mid: float) -> float:
        if mid <= 0:
            return self.value
        s = self._samples
        if s and ts_ms < s[-1][0]:
            return self.value
        if not s or ts_ms - s[-1][0] >= self.min_step_ms:
            s.append((ts_ms, mid))
        cutoff = ts_ms - self.lookback_ms
        while len(s) >= 2 and s[1][0] <= cutoff:
            s.popleft()
        self.value = (mid / s[0][1] - 1.0) * 1e4
        return self.value
