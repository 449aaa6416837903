"""Market-making metrics, exactly as defined in the project's metrics reference (pure functions).

Conventions: a fill's side ``s`` is +1 when our bid was hit (we bought) and -1 when our ask was
lifted; prices and mids are in quote currency per unit, sizes in base units, fees in quote
currency (negative = rebate). The mid used for a fill's edge is the last mid at or before the
fill (documented choice: "the mid just before the fill event"). Floats are fine here: this is
reporting, not the order path.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FillRec:
    t_ms: int
    side: int      # +1 bought (bid filled), -1 sold
    price: float
    size: float
    fee: float = 0.0


@dataclass(frozen=True, slots=True)
class QuoteSpan:
    """A resting quote's life at the venue: [start, end) in exchange time."""

    is_ask: bool
    start_ms: int
    end_ms: int


@dataclass
class Report:
    pnl: float = 0.0
    liquidation_pnl: float = 0.0
    spread_capture: float = 0.0
    inventory_pnl: float = 0.0
    fees: float = 0.0
    sharpe: float = float("nan")
    sharpe_interval_s: float = 1.0
    sortino: float = float("nan")
    max_drawdown: float = 0.0
    return_over_mdd: float = float("nan")
    inv_tw_std: float = 0.0
    inv_mean_abs: float = 0.0
    inv_max_abs: float = 0.0
    fills: int = 0
    volume: float = 0.0
    turnover_quote: float = 0.0
    fill_ratio: float = float("nan")
    capture_per_unit: float = float("nan")
    markouts: dict[str, dict[str, float]] = field(default_factory=dict)
    uptime: dict[str, float] = field(default_factory=dict)


class MidSeries:
    """Step function of the mid over time (last value at or before t)."""

    def __init__(self, points: list[tuple[int, float]]) -> None:
        pts = sorted(points)
        self.t = [p[0] for p in pts]
        self.m = [p[1] for p in pts]

    def at(self, t_ms: int) -> float:
        i = bisect.bisect_right(self.t, t_ms) - 1
        if i < 0:
            raise ValueError("no mid at or before that time")
        return self.m[i]


def equity_curve(fills: list[FillRec], mids: MidSeries, start_ms: int, end_ms: int, step_ms: int) -> list[float]:
    """E_t = X_t + q_t·m_t − Σ fees, sampled on a fixed clock."""
    fs = sorted(fills, key=lambda f: f.t_ms)
    out, i, cash, q, fees = [], 0, 0.0, 0.0, 0.0
    t = start_ms
    while t <= end_ms:
        while i < len(fs) and fs[i].t_ms <= t:
            f = fs[i]
            cash -= f.side * f.size * f.price
            q += f.side * f.size
            fees += f.fee
            i += 1
        out.append(cash + q * mids.at(t) - fees)
        t += step_ms
    return out


def attribution(fills: list[FillRec], mids: MidSeries, start_ms: int, end_ms: int) -> tuple[float, float, float]:
    """(spread capture, inventory PnL, fees); their sum minus fees equals E_T − E_0 exactly."""
    fs = sorted(fills, key=lambda f: f.t_ms)
    capture = sum(f.size * f.side * (mids.at(f.t_ms) - f.price) for f in fs)
    # inventory PnL: q held over every mid change; q changes only at fills
    events = sorted({start_ms, end_ms, *[f.t_ms for f in fs], *[t for t in mids.t if start_ms <= t <= end_ms]})
    inv, q, j = 0.0, 0.0, 0
    for a, b in zip(events, events[1:]):
        while j < len(fs) and fs[j].t_ms <= a:
            q += fs[j].side * fs[j].size
            j += 1
        inv += q * (mids.at(b) - mids.at(a))
    return capture, inv, sum(f.fee for f in fs)


def markouts(fills: list[FillRec], mids: MidSeries, horizons_ms: list[int], end_ms: int) -> dict[str, dict[str, float]]:
    """Size-weighted markout per unit at each horizon, on ONE common fill set (fills with t+max(h) ≤ end)."""
    hmax = max(horizons_ms)
    common = [f for f in fills if f.t_ms + hmax <= end_ms]
    vol = sum(f.size for f in common)
    out: dict[str, dict[str, float]] = {}
    for h in horizons_ms:
        if vol == 0:
            out[f"{h}ms"] = {"n": 0, "per_unit": float("nan"), "bps": float("nan")}
            continue
        num = sum(f.size * f.side * (mids.at(f.t_ms + h) - f.price) for f in common)
        bps = sum(f.size * f.side * (mids.at(f.t_ms + h) - f.price) / mids.at(f.t_ms) * 1e4 for f in common) / vol
        out[f"{h}ms"] = {"n": len(common), "per_unit": num / vol, "bps": bps}
    edge = sum(f.size * f.side * (mids.at(f.t_ms) - f.price) for f in common) / vol if vol else float("nan")
    out["edge"] = {"n": len(common), "per_unit": edge,
                   "bps": (sum(f.size * f.side * (mids.at(f.t_ms) - f.price) / mids.at(f.t_ms) * 1e4 for f in common) / vol)
                   if vol else float("nan")}
    return out


def uptime(spans: list[QuoteSpan], start_ms: int, end_ms: int) -> dict[str, float]:
    """Fraction of [start, end) with a live bid, a live ask, and both."""
    total = max(1, end_ms - start_ms)
    edges: list[tuple[int, int, int]] = []
    for s in spans:
        a, b = max(s.start_ms, start_ms), min(s.end_ms, end_ms)
        if b > a:
            edges.append((a, 1 if s.is_ask else 0, +1))
            edges.append((b, 1 if s.is_ask else 0, -1))
    edges.sort()
    live = [0, 0]
    t_prev = start_ms
    dur = {"bid": 0, "ask": 0, "both": 0}
    for t, side, d in edges:
        span = t - t_prev
        dur["bid"] += span if live[0] else 0
        dur["ask"] += span if live[1] else 0
        dur["both"] += span if live[0] and live[1] else 0
        live[side] += d
        t_prev = t
    return {k: v / total for k, v in dur.items()}


def inventory_stats(fills: list[FillRec], start_ms: int, end_ms: int) -> tuple[float, float, float]:
    """(time-weighted std of q, time-weighted mean |q|, max |q|)."""
    fs = sorted(fills, key=lambda f: f.t_ms)
    q, t_prev, w, s1, s2, sa, qmax = 0.0, start_ms, 0.0, 0.0, 0.0, 0.0, 0.0
    for f in [*fs, FillRec(end_ms, 0, 0.0, 0.0)]:
        dt = max(0, min(f.t_ms, end_ms) - t_prev)
        w += dt
        s1 += q * dt
        s2 += q * q * dt
        sa += abs(q) * dt
        q += f.side * f.size
        qmax = max(qmax, abs(q))
        t_prev = max(t_prev, min(f.t_ms, end_ms))
    if w == 0:
        return 0.0, 0.0, qmax
    mean = s1 / w
    return math.sqrt(max(0.0, s2 / w - mean * mean)), sa / w, qmax


def report(fills: list[FillRec], mids: MidSeries, start_ms: int, end_ms: int, *, step_ms: int = 1000,
           submitted_size: float = 0.0, quoted_half_spread: float = 0.0, spans: list[QuoteSpan] | None = None,
           final_half_spread: float = 0.0, horizons_ms: tuple[int, ...] = (100, 1000, 5000, 30000, 60000)) -> Report:
    r = Report(sharpe_interval_s=step_ms / 1000)
    eq = equity_curve(fills, mids, start_ms, end_ms, step_ms)
    r.pnl = eq[-1] - eq[0] if eq else 0.0
    q_end = sum(f.side * f.size for f in fills if f.t_ms <= end_ms)
    r.liquidation_pnl = r.pnl - abs(q_end) * final_half_spread
    r.spread_capture, r.inventory_pnl, r.fees = attribution(fills, mids, start_ms, end_ms)
    d = [b - a for a, b in zip(eq, eq[1:])]
    if len(d) > 1:
        mean = sum(d) / len(d)
        var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
        per_year = 365 * 86400 / (step_ms / 1000)
        r.sharpe = mean / math.sqrt(var) * math.sqrt(per_year) if var > 0 else float("nan")
        dn = sum(min(x, 0.0) ** 2 for x in d) / len(d)
        r.sortino = mean / math.sqrt(dn) if dn > 0 else float("nan")
    peak, mdd = -math.inf, 0.0
    for e in eq:
        peak = max(peak, e)
        mdd = max(mdd, peak - e)
    r.max_drawdown = mdd
    r.return_over_mdd = r.pnl / mdd if mdd > 0 else float("nan")
    r.inv_tw_std, r.inv_mean_abs, r.inv_max_abs = inventory_stats(fills, start_ms, end_ms)
    r.fills = len(fills)
    r.volume = sum(f.size for f in fills)
    r.turnover_quote = sum(f.size * f.price for f in fills)
    r.fill_ratio = r.volume / submitted_size if submitted_size > 0 else float("nan")
    if r.volume > 0:
        r.capture_per_unit = r.spread_capture / r.volume
    if fills:
        r.markouts = markouts(fills, mids, list(horizons_ms), end_ms)
    if spans is not None:
        r.uptime = uptime(spans, start_ms, end_ms)
    if quoted_half_spread > 0 and r.volume > 0:
        r.markouts.setdefault("edge", {})["capture_ratio"] = r.capture_per_unit / quoted_half_spread
    return r
