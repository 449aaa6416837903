"""Online estimates of the market's volatility, trade-arrival intensity and our fills' markouts.

Pure: no clock, no I/O, no randomness. Every method takes the event timestamp (ms) it is about,
so a live service and a replay of the same tape compute the same numbers. Events must be fed in
time order; an event older than the last one seen is ignored rather than trusted.

Prices here are floats in USD (``price_ticks / 10**price_decimals``, see ``to_price``/``book_mid``):
these are estimates that steer a strategy (sigma and k of a GLFT/Avellaneda-Stoikov quote), they
never become an order amount directly, so float rounding is harmless.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

from shared.markets import MarketSpec
from shared.schemas import BookTop


def to_price(ticks: int, spec: MarketSpec) -> float:
    """Integer ticks -> USD float, for feeding the estimators."""
    return ticks / spec.price_scale


def book_mid(book: BookTop, spec: MarketSpec) -> float | None:
    """Mid of the best bid and ask in USD; None for a one-sided or crossed book (no usable mid)."""
    if not book.bids or not book.asks:
        return None
    bid, ask = book.bids[0][0], book.asks[0][0]
    if bid <= 0 or ask < bid:
        return None
    return (bid + ask) / (2 * spec.price_scale)


# --- volatility ------------------------------------------------------------------------------------
class SigmaEstimator:
    """EMA of the mid's squared log returns, as variance per second.

    The mid is sampled at most once per ``sample_ms``: sub-second book noise (bid/ask bounce) would
    otherwise inflate sigma. A return over a longer gap (feed pause) is divided by its ``dt`` so it
    counts as per-second variance, and its EMA weight ``1 - 2**(-dt/halflife)`` grows with ``dt``:
    the estimate decays by time, not by number of samples.
    """

    def __init__(self, halflife_s: float = 30.0, sample_ms: int = 1000) -> None:
        if halflife_s <= 0 or sample_ms <= 0:
            raise ValueError("halflife_s and sample_ms must be positive")
        self.halflife_s = halflife_s
        self.sample_ms = sample_ms
        self._last_ts: int | None = None
        self._last_log_mid = 0.0
        self._var: float | None = None   # per second, in (log-return)^2
        self.samples = 0

    def update(self, ts_ms: int, mid: float) -> None:
        """Feed the mid (USD) seen at ``ts_ms``; returns are taken between samples >= sample_ms apart."""
        if not mid > 0 or not math.isfinite(mid):
            return
        if self._last_ts is None:
            self._last_ts, self._last_log_mid = ts_ms, math.log(mid)
            return
        elapsed = ts_ms - self._last_ts
        if elapsed < self.sample_ms:
            return
        dt = elapsed / 1000.0
        log_mid = math.log(mid)
        x = (log_mid - self._last_log_mid) ** 2 / dt
        if self._var is None:
            self._var = x
        else:
            w = 1.0 - 2.0 ** (-dt / self.halflife_s)
            self._var += w * (x - self._var)
        self._last_ts, self._last_log_mid = ts_ms, log_mid
        self.samples += 1

    @property
    def sigma_bps_per_sqrt_s(self) -> float | None:
        """Volatility in basis points per sqrt(second); None before the first return."""
        return None if self._var is None else math.sqrt(self._var) * 1e4

    def sigma_price_per_sqrt_s(self, mid: float) -> float | None:
        """Volatility in USD per sqrt(second) at price ``mid`` (what GLFT's sigma is expressed in)."""
        s = self.sigma_bps_per_sqrt_s
        return None if s is None else s * 1e-4 * mid

    def snapshot(self) -> dict[str, float | int]:
        """For metrics: ``ready`` is 0 until a first return exists (then sigma is 0.0, not a value)."""
        s = self.sigma_bps_per_sqrt_s
        return {"sigma_bps_per_sqrt_s": s or 0.0, "samples": self.samples, "ready": int(s is not None)}


# --- trade-arrival intensity ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Intensity:
    """lambda(delta) = A * exp(-k * delta): A in arrivals per second per side, k per USD of depth."""

    A: float
    k: float
    r2: float      # coefficient of determination of the fit on ln(lambda)
    n: int         # arrivals in the window
    span_s: float  # observed time the counts are divided by

    def rate(self, delta: float) -> float:
        """Expected taker arrivals per second per side reaching ``delta`` USD from the mid."""
        return self.A * math.exp(-self.k * delta)


class IntensityFit:
    """Trade-depth intensity fit (the hftbacktest GLFT tutorial's method) over a rolling window.

    An arrival is one taker order: trades at the same ``ts_ms`` by the same aggressor are one sweep,
    and its depth is the deepest price it reached (it filled every level up to there), measured from
    the mid of the last book before the sweep. For a grid of depths ``delta_j`` from 0 to the 90th
    percentile of the depths seen, ``N_j`` = arrivals with depth >= ``delta_j``, and
    ``lambda_j = N_j / (2 * span_s)`` (per side, both sides averaged); ``ln lambda_j`` is fitted by
    least squares to ``ln A - k * delta_j``. The percentile cap keeps the sparse tail, where counts
    are a handful and their logs are noise, out of the regression.

    ``span_s`` is the time observed inside the window (since the first book or trade, at most
    ``window_s``); a feed outage inside the window is not subtracted, so it biases A low.
    """

    def __init__(self, window_s: float = 600.0, depths: int = 10, min_trades: int = 30,
                 quantile: float = 0.9, min_span_s: float = 60.0) -> None:
        if window_s <= 0 or depths < 2 or min_trades < 2 or not 0 < quantile <= 1:
            raise ValueError("need window_s > 0, depths >= 2, min_trades >= 2, 0 < quantile <= 1")
        self.window_ms = int(window_s * 1000)
        self.depths = depths
        self.min_trades = min_trades
        self.quantile = quantile
        self.min_span_s = min_span_s
        self._mid: float | None = None
        self._start_ms: int | None = None
        self._last_ts: int | None = None
        self._arrivals: deque[tuple[int, float]] = deque()   # (ts_ms, depth USD), time order
        # the open sweep per aggressor side (taker_is_ask): (ts_ms, mid before it, deepest price)
        self._open: dict[bool, tuple[int, float, float]] = {}
        self.skipped_no_mid = 0

    def _seen(self, ts_ms: int) -> bool:
        if self._last_ts is not None and ts_ms < self._last_ts:
            return False
        self._last_ts = ts_ms
        if self._start_ms is None:
            self._start_ms = ts_ms
        return True

    def on_book(self, ts_ms: int, mid: float) -> None:
        """The mid (USD) after a book update; trades after it are measured from it."""
        if mid > 0 and self._seen(ts_ms):
            self._mid = mid

    def on_trade(self, ts_ms: int, price: float, taker_is_ask: bool) -> None:
        """A public trade at ``price`` USD; ``taker_is_ask`` = the aggressor sold."""
        if not self._seen(ts_ms):
            return
        cur = self._open.get(taker_is_ask)
        if cur is not None and cur[0] == ts_ms:
            deeper = min(cur[2], price) if taker_is_ask else max(cur[2], price)
            self._open[taker_is_ask] = (ts_ms, cur[1], deeper)
            return
        if cur is not None:
            self._close(cur)
        if self._mid is None:
            self._open.pop(taker_is_ask, None)
            self.skipped_no_mid += 1
            return
        self._open[taker_is_ask] = (ts_ms, self._mid, price)
        self._prune(ts_ms)

    def _close(self, sweep: tuple[int, float, float]) -> None:
        ts, mid, price = sweep
        self._arrivals.append((ts, abs(price - mid)))

    def _prune(self, now_ms: int) -> None:
        cutoff = now_ms - self.window_ms
        while self._arrivals and self._arrivals[0][0] < cutoff:
            self._arrivals.popleft()

    def deltas(self, now_ms: int) -> list[float]:
        """Depths (USD) of the arrivals inside the window ending at ``now_ms``, open sweeps included."""
        self._prune(now_ms)
        cutoff = now_ms - self.window_ms
        out = [d for _, d in self._arrivals]
        out += [abs(p - m) for ts, m, p in self._open.values() if cutoff <= ts <= now_ms]
        return out

    def span_s(self, now_ms: int) -> float:
        if self._start_ms is None:
            return 0.0
        return max(0.0, (now_ms - max(self._start_ms, now_ms - self.window_ms)) / 1000.0)

    def fit(self, now_ms: int) -> Intensity | None:
        """The fit over the window ending at ``now_ms``; None when data are too few or k <= 0."""
        ds = sorted(self.deltas(now_ms))
        n, span = len(ds), self.span_s(now_ms)
        if n < self.min_trades or span < self.min_span_s:
            return None
        top = ds[min(n - 1, int(self.quantile * n))]
        if top <= 0:
            return None
        xs: list[float] = []
        ys: list[float] = []
        for j in range(self.depths):
            d = top * j / (self.depths - 1)
            count = n - bisect_left(ds, d)
            if count > 0:
                xs.append(d)
                ys.append(math.log(count / (2.0 * span)))
        if len(xs) < 2:
            return None
        slope, intercept, r2 = _ols(xs, ys)
        if slope >= 0:
            return None
        return Intensity(A=math.exp(intercept), k=-slope, r2=r2, n=n, span_s=span)

    def snapshot(self) -> dict[str, float | int]:
        """The fit at the last event's time (A, k, r2 are 0.0 while ``ready`` is 0)."""
        now = self._last_ts if self._last_ts is not None else 0
        f = self.fit(now)
        return {"A": f.A if f else 0.0, "k": f.k if f else 0.0, "r2": f.r2 if f else 0.0,
                "arrivals": len(self.deltas(now)), "span_s": self.span_s(now), "ready": int(f is not None),
                "skipped_no_mid": self.skipped_no_mid}


def _ols(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Slope, intercept and r^2 of y = a + b*x by ordinary least squares."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    syy = sum((y - my) ** 2 for y in ys)
    slope = sxy / sxx
    intercept = my - slope * mx
    r2 = 1.0 if syy == 0 else max(0.0, 1.0 - sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys)) / syy)
    return slope, intercept, r2


# --- markouts --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _PendingFill:
    ts_ms: int
    sign: int      # +1 our buy, -1 our sell
    price: float
    size: float


class Markouts:
    """Per-fill markouts of our fills at fixed horizons: did the mid move our way after we traded?

    A fill's markout at horizon h uses the first mid at or after ``ts + h``:
    ``sign * (mid_h - price) / price * 1e4`` bps, sign +1 for our buy and -1 for our sell, so positive
    is good for us (spread earned minus adverse selection). Each horizon keeps the size-weighted mean
    of its last ``max_fills`` completed fills; fills awaiting a mid are capped at ``max_pending`` per
    horizon (the oldest dropped) so a dead mid feed cannot grow memory.
    """

    def __init__(self, horizons_s: tuple[float, ...] = (1, 5, 30, 60), max_fills: int = 200,
                 max_pending: int = 10_000) -> None:
        if not horizons_s or any(h <= 0 for h in horizons_s) or max_fills < 1 or max_pending < 1:
            raise ValueError("need positive horizons, max_fills >= 1, max_pending >= 1")
        self.horizons_s = tuple(sorted(set(horizons_s)))
        self._h_ms = {h: round(h * 1000) for h in self.horizons_s}
        self._pending: dict[float, deque[_PendingFill]] = {h: deque(maxlen=max_pending) for h in self.horizons_s}
        self._done: dict[float, deque[tuple[float, float]]] = {h: deque(maxlen=max_fills) for h in self.horizons_s}
        self._count: dict[float, int] = {h: 0 for h in self.horizons_s}

    def on_fill(self, ts_ms: int, is_ask: bool, price: float, size: float) -> None:
        """One of our fills (``is_ask`` = we sold), price USD, size in base units (only a weight)."""
        if not price > 0 or not size > 0:
            return
        fill = _PendingFill(ts_ms, -1 if is_ask else 1, price, size)
        for q in self._pending.values():
            q.append(fill)

    def on_mid(self, ts_ms: int, mid: float) -> None:
        """The mid (USD) at ``ts_ms``; completes every pending fill whose horizon has passed."""
        if not mid > 0:
            return
        for h, q in self._pending.items():
            h_ms = self._h_ms[h]
            while q and ts_ms >= q[0].ts_ms + h_ms:
                f = q.popleft()
                self._done[h].append((f.sign * (mid - f.price) / f.price * 1e4, f.size))
                self._count[h] += 1

    def _key(self, h: float) -> float:
        for k in self.horizons_s:
            if k == h:
                return k
        raise ValueError(f"no horizon {h} s (have {self.horizons_s})")

    def mean_bps(self, h: float) -> float | None:
        """Size-weighted mean markout (bps) at horizon ``h`` s over the last fills; None before any."""
        done = self._done[self._key(h)]
        w = sum(s for _, s in done)
        return None if not done else sum(m * s for m, s in done) / w

    def count(self, h: float) -> int:
        """Fills completed at horizon ``h`` since start (not only those in the mean)."""
        return self._count[self._key(h)]

    def snapshot(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        for h in self.horizons_s:
            m = self.mean_bps(h)
            out[f"markout_{h:g}s_bps"] = 0.0 if m is None else m
            out[f"markout_{h:g}s_n"] = self._count[h]
            out[f"markout_{h:g}s_pending"] = len(self._pending[h])
        return out
