"""Seeded synthetic market: mid process, background liquidity and taker flow (pure).

Each market has a `SyntheticMarket`: a mid price (float ticks, model state only), a ladder of
resting orders owned by the synthetic market-maker account (never the bot) and takers sent from
the synthetic taker account. Orders the flow sends are integer ticks/lots and go through the
same matching engine as everybody else, so a bot's resting order is filled exactly like on a
real book: by takers that reach it, or by the ladder re-centring through it after a mid move.

Models (regimes) decide the mid increments and the taker arrivals:
calm, burst, trend, informed, sol (the realistic mix: all of them at once), as
(Avellaneda-Stoikov), replay; a comma list switches between regimes at random times. Same seed +
same inputs => identical event stream. The defaults are calibrated to SOL-PERP on Lighter; each
parameter's source is in services/venue/README.md ("Market models").
"""
from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson

from .book import Book, Order
from .engine import Engine
from .markets import Market, parse_fixed
from .txs import ORDER_LIMIT, TIF_GTT, TIF_IOC

MODEL_NAMES = ("calm", "burst", "trend", "informed", "sol", "as", "replay")


@dataclass(slots=True)
class Params:
    """Tunable model parameters (bps are relative to the mid); defaults calibrated to SOL-PERP."""

    sigma_bps: float = 1.2  # mid volatility per sqrt(second): ~70 % a year, SOL's typical calm-to-normal
    drift_bps: float = 0.0  # mid drift per second
    taker_rate: float = 2.0  # taker orders per second (both sides), scaled by sqrt(vol) in stressed markets
    taker_median_usd: float = 300.0  # lognormal body of the taker size
    taker_size_sd: float = 1.2  # its log-sd (mean ~ 620 USD)
    taker_tail_prob: float = 0.08  # share of takers from the Pareto tail ...
    taker_tail_min_usd: float = 2_000.0  # ... starting here ...
    taker_tail_alpha: float = 1.5  # ... with this exponent (trade sizes' classic power law)
    taker_max_usd: float = 250_000.0
    taker_limit_bps: float = 15.0  # how far from the mid a taker is willing to walk the book
    half_spread_bps: float = 0.5  # synthetic best bid/ask distance from mid (spread ~1 bps)
    level_step_bps: float = 0.5
    levels: int = 20
    level_notional_usd: float = 12_000.0  # per level, growing 15 % a level: ~25 k within 1 bps, ~200 k within 5
    refresh_prob: float = 0.04  # per level per step: re-place (changes size, loses priority)
    queue_power: float = 2.0  # replay: a tape level's shrink is ahead of our order with odds f(ahead):f(behind), f = x^n
    buy_bias: float = 0.5  # probability a taker buys
    # volatility clustering (sol): log-vol is an Ornstein-Uhlenbeck process
    cluster_sd: float = 0.35  # stationary sd of log-vol: busy/quiet hours ~2-3x apart
    cluster_tau_s: float = 1_800.0  # its mean-reversion time
    # burst regime: stressed episodes
    burst_every_s: float = 600.0  # mean time between bursts
    burst_len_s: float = 90.0  # mean burst length (exponential, at least 20 s)
    burst_sigma_bps: float = 12.0  # sigma per sqrt(s) during a burst (news, liquidations: ~1 % a minute)
    # trend regime
    trend_bps: float = 0.3  # drift per second while trending (~50 bps over a 3-minute trend)
    trend_flip_s: float = 180.0  # trend: mean time before the direction flips
    trend_every_s: float = 900.0  # sol: mean time between trends ...
    trend_len_s: float = 180.0  # ... and their mean length
    # informed regime
    informed_share: float = 0.3  # share of takers who know the next informed_horizon_steps increments
    informed_prob: float = 0.8  # an informed taker trades the way the mid is about to go with this probability
    informed_horizon_steps: int = 50  # 5 s at the 100 ms step (cross-venue lead of ~10 s seen on perps)
    # Avellaneda-Stoikov
    as_A: float = 2.0  # arrivals per second per side
    as_k: float = 0.5  # per bp: P(reach >= delta) = exp(-k * delta_bps)
    as_paper: float = 0.0  # 1: the 2008 paper's discrete scheme (binomial mid, one Bernoulli taker per side per step)
    start_price: float = 0.0  # > 0: the market starts at this price (quote currency) instead of its default
    # regime switching for mixed models
    switch_every_s: float = 60.0

    def update(self, values: dict[str, Any]) -> Params:
        names = {f.name: f.type for f in fields(self)}
        clean = {}
        for k, v in values.items():
            if k in names:
                clean[k] = int(v) if names[k] in ("int", int) else float(v)
        return replace(self, **clean)


@dataclass(slots=True)
class TakerIntent:
    is_ask: bool
    lots: int
    limit: int  # ticks


@dataclass(slots=True)
class TapeEvent:
    t_ms: int
    kind: str  # "book" | "trade"
    bids: list[tuple[int, int]] = field(default_factory=list)
    asks: list[tuple[int, int]] = field(default_factory=list)
    price: int = 0
    size: int = 0
    taker_buy: bool = True


class Regime:
    """Base regime = calm: Brownian (log) mid with drift, Poisson takers."""

    name = "calm"

    def __init__(self, p: Params) -> None:
        self.p = p

    def vol_mult(self) -> float:
        return 1.0

    def mid_step(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> float:
        p = self.p
        bps = p.drift_bps * dt + p.sigma_bps * self.vol_mult() * math.sqrt(dt) * rng.gauss(0.0, 1.0)
        return sm.mid * (1.0 + bps / 1e4)

    def buy_prob(self, sm: SyntheticMarket, rng: random.Random) -> float:
        return self.p.buy_bias

    def takers(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> list[TakerIntent]:
        p = self.p
        out: list[TakerIntent] = []
        n = _poisson(rng, p.taker_rate * self.vol_mult() ** 0.5 * dt)
        for _ in range(n):
            buy = rng.random() < self.buy_prob(sm, rng)
            lots = sm.lots_for_usd(taker_usd(p, rng))
            depth = p.taker_limit_bps   # the size decides how deep it goes; the limit caps it
            out.append(TakerIntent(not buy, lots, sm.price_at(depth if buy else -depth)))
        return out

    def target_levels(self, sm: SyntheticMarket) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
        return None

    def advance(self, sm: SyntheticMarket, now_ms: int, dt: float, rng: random.Random) -> None:
        """Regime state changes (bursts, trend flips); called once per step before the mid step."""


class Burst(Regime):
    """Calm, with stressed episodes: sigma jumps to ``burst_sigma_bps`` for an exponential time
    (mean ``burst_len_s``, at least 20 s), every ``burst_every_s`` on average. ``starts`` keeps
    each burst's first step (the maker's pause is judged against it)."""

    name = "burst"

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.left_s = 0.0
        self.starts: list[int] = []

    def vol_mult(self) -> float:
        return self.p.burst_sigma_bps / self.p.sigma_bps if self.left_s > 0 and self.p.sigma_bps > 0 else 1.0

    def advance(self, sm: SyntheticMarket, now_ms: int, dt: float, rng: random.Random) -> None:
        if self.left_s > 0:
            self.left_s -= dt
        elif rng.random() < dt / self.p.burst_every_s:
            self.left_s = max(20.0, rng.expovariate(1.0 / self.p.burst_len_s))
            self.starts.append(now_ms)


class Trend(Regime):
    name = "trend"

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.direction = 1.0

    def advance(self, sm: SyntheticMarket, now_ms: int, dt: float, rng: random.Random) -> None:
        if rng.random() < dt / self.p.trend_flip_s:
            self.direction = -self.direction

    def mid_step(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> float:
        p = self.p
        bps = (p.drift_bps + self.direction * p.trend_bps) * dt + \
            p.sigma_bps * 0.7 * math.sqrt(dt) * rng.gauss(0.0, 1.0)
        return sm.mid * (1.0 + bps / 1e4)

    def buy_prob(self, sm: SyntheticMarket, rng: random.Random) -> float:
        return 0.65 if self.direction > 0 else 0.35


class Informed(Regime):
    """Takers trade ahead of the mid: their side predicts the next `horizon` increments."""

    name = "informed"

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.future: deque[float] = deque()

    def _fill_future(self, dt: float, rng: random.Random) -> None:
        p = self.p
        while len(self.future) < max(1, p.informed_horizon_steps):
            self.future.append(p.drift_bps * dt + p.sigma_bps * math.sqrt(dt) * rng.gauss(0.0, 1.0))

    def mid_step(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> float:
        self._fill_future(dt, rng)
        return sm.mid * (1.0 + self.future.popleft() / 1e4)

    def buy_prob(self, sm: SyntheticMarket, rng: random.Random) -> float:
        if rng.random() >= self.p.informed_share:
            return self.p.buy_bias
        ahead = sum(self.future)
        q = self.p.informed_prob
        return q if ahead > 0 else 1.0 - q


class Sol(Regime):
    """The realistic mix (``make run``'s default): SOL-PERP as it trades through a day.

    Volatility clusters (log-vol an Ornstein-Uhlenbeck process: ``cluster_sd``, ``cluster_tau_s``),
    stressed bursts arrive as in ``burst``, trends as episodes (``trend_every_s``, ``trend_len_s``,
    ``trend_bps``), and a share of the takers is informed as in ``informed`` (they see the next
    ``informed_horizon_steps`` increments, drawn ahead). Takers trade more when the market moves
    (rate x sqrt(vol factor)); their sizes are the calibrated lognormal body with a Pareto tail.
    """

    name = "sol"

    def __init__(self, p: Params) -> None:
        super().__init__(p)
        self.log_vol = 0.0
        self.burst_left_s = 0.0
        self.trend_left_s = 0.0
        self.trend_dir = 0.0
        self.future: deque[float] = deque()
        self.factors: deque[float] = deque()   # the vol factor of each drawn increment, in step with ``future``
        self.starts: list[int] = []            # when a burst's first increment moves the mid

    def _factor(self) -> float:
        p = self.p
        f = math.exp(self.log_vol)
        if self.burst_left_s > 0 and p.sigma_bps > 0:
            f = max(f, p.burst_sigma_bps / p.sigma_bps)
        return f

    def vol_mult(self) -> float:
        return self.factors[0] if self.factors else 1.0

    def advance(self, sm: SyntheticMarket, now_ms: int, dt: float, rng: random.Random) -> None:
        p = self.p
        tau = max(p.cluster_tau_s, dt)
        self.log_vol += -self.log_vol * dt / tau + p.cluster_sd * math.sqrt(2 * dt / tau) * rng.gauss(0.0, 1.0)
        ahead_ms = int(max(1, p.informed_horizon_steps) * dt * 1000)
        if self.burst_left_s > 0:
            self.burst_left_s -= dt
        elif rng.random() < dt / p.burst_every_s:
            self.burst_left_s = max(20.0, rng.expovariate(1.0 / p.burst_len_s))
            self.starts.append(now_ms + ahead_ms)   # its increments reach the mid one horizon later
        if self.trend_left_s > 0:
            self.trend_left_s -= dt
            if self.trend_left_s <= 0:
                self.trend_dir = 0.0
        elif rng.random() < dt / p.trend_every_s:
            self.trend_left_s = rng.expovariate(1.0 / p.trend_len_s)
            self.trend_dir = 1.0 if rng.random() < 0.5 else -1.0
        while len(self.future) < max(1, p.informed_horizon_steps):
            f = self._factor()
            self.factors.append(f)
            self.future.append((p.drift_bps + self.trend_dir * p.trend_bps) * dt
                               + p.sigma_bps * f * math.sqrt(dt) * rng.gauss(0.0, 1.0))

    def mid_step(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> float:
        if not self.future:
            self.advance(sm, 0, dt, rng)
        self.factors.popleft()
        return sm.mid * (1.0 + self.future.popleft() / 1e4)

    def buy_prob(self, sm: SyntheticMarket, rng: random.Random) -> float:
        p = self.p
        if rng.random() < p.informed_share:
            return p.informed_prob if sum(self.future) > 0 else 1.0 - p.informed_prob
        if self.trend_dir:   # trend-followers lean the flow the way of the trend
            return 0.6 if self.trend_dir > 0 else 0.4
        return p.buy_bias


def taker_usd(p: Params, rng: random.Random) -> float:
    """One taker's size: a lognormal body (median ``taker_median_usd``) and, with probability
    ``taker_tail_prob``, a Pareto tail from ``taker_tail_min_usd`` with exponent ``taker_tail_alpha``."""
    if rng.random() < p.taker_tail_prob:
        usd = p.taker_tail_min_usd * (1.0 - rng.random()) ** (-1.0 / max(p.taker_tail_alpha, 0.1))
    else:
        usd = p.taker_median_usd * math.exp(p.taker_size_sd * rng.gauss(0.0, 1.0))
    return min(usd, p.taker_max_usd)


class AvellanedaStoikov(Regime):
    """Arithmetic Brownian mid; per side, takers arrive at rate A and reach delta* ~ Exp(k),
    sweeping everything up to mid +/- delta*: a resting order at distance delta is therefore
    filled with intensity A*exp(-k*delta). Background liquidity sits far from the mid."""

    name = "as"

    @property
    def takers_first(self) -> bool:
        return self.p.as_paper > 0

    def mid_step(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> float:
        p = self.p
        sigma_abs = p.sigma_bps * sm.start_mid / 1e4  # constant in price units
        drift = p.drift_bps * sm.start_mid / 1e4 * dt
        if p.as_paper > 0:   # the paper: +/- sigma*sqrt(dt) with probability 1/2 each
            return sm.mid + drift + sigma_abs * math.sqrt(dt) * (1.0 if rng.random() < 0.5 else -1.0)
        return sm.mid + drift + sigma_abs * math.sqrt(dt) * rng.gauss(0.0, 1.0)

    def takers(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> list[TakerIntent]:
        p = self.p
        out: list[TakerIntent] = []
        for buy in (True, False):
            if p.as_paper > 0:
                # one draw per side per step whose reach d* = ln(A*dt/U)/k makes P(d* >= delta) =
                # min(1, A*exp(-k*delta)*dt) for every delta, negative ones included: the paper's fill law
                u = 1.0 - rng.random()
                reach = math.log(p.as_A * dt / u) / p.as_k
                limit = sm.price_at(reach if buy else -reach)
                out.append(TakerIntent(not buy, sm.liquidity_within(buy, limit), limit))
                continue
            for _ in range(_poisson(rng, p.as_A * dt)):
                reach = rng.expovariate(p.as_k)  # bps
                limit = sm.price_at(reach if buy else -reach)
                out.append(TakerIntent(not buy, sm.liquidity_within(buy, limit), limit))
        return out


class Replay(Regime):
    """Replays a recorded tape: the mid and the synthetic ladder follow the tape's book, and
    each tape trade becomes a synthetic taker of the same side and size at the same price."""

    name = "replay"

    def __init__(self, p: Params, tape: list[TapeEvent]) -> None:
        super().__init__(p)
        self.tape = tape
        self.pos = 0
        self.t0: int | None = None
        self.loop_offset = 0
        self.book: tuple[list[tuple[int, int]], list[tuple[int, int]]] | None = None
        self.pending: list[TakerIntent] = []

    def advance(self, sm: SyntheticMarket, now_ms: int, dt: float, rng: random.Random) -> None:
        if not self.tape:
            return
        if self.t0 is None:
            self.t0 = now_ms
        base = self.tape[0].t_ms
        span = max(1, self.tape[-1].t_ms - base + 1)
        while True:
            ev = self.tape[self.pos]
            if self.t0 + self.loop_offset + (ev.t_ms - base) > now_ms:
                break
            if ev.kind == "book" and ev.bids and ev.asks:
                self.book = (ev.bids, ev.asks)
                sm.mid = (ev.bids[0][0] + ev.asks[0][0]) / 2.0
            elif ev.kind == "trade" and ev.size > 0:
                self.pending.append(TakerIntent(not ev.taker_buy, ev.size, ev.price))
            self.pos += 1
            if self.pos >= len(self.tape):
                self.pos = 0
                self.loop_offset += span

    def mid_step(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> float:
        return sm.mid

    def takers(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> list[TakerIntent]:
        out, self.pending = self.pending, []
        return out

    def target_levels(self, sm: SyntheticMarket) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
        return self.book


class Mixed(Regime):
    """Switches between sub-regimes at exponentially distributed times."""

    name = "mixed"

    def __init__(self, p: Params, regimes: list[Regime]) -> None:
        super().__init__(p)
        self.regimes = regimes
        self.active = regimes[0]
        self.name = ",".join(r.name for r in regimes)

    def advance(self, sm: SyntheticMarket, now_ms: int, dt: float, rng: random.Random) -> None:
        if len(self.regimes) > 1 and rng.random() < dt / self.p.switch_every_s:
            self.active = self.regimes[rng.randrange(len(self.regimes))]
        for r in self.regimes:
            r.advance(sm, now_ms, dt, rng) if r is self.active else None

    def vol_mult(self) -> float:
        return self.active.vol_mult()

    def mid_step(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> float:
        return self.active.mid_step(sm, dt, rng)

    def takers(self, sm: SyntheticMarket, dt: float, rng: random.Random) -> list[TakerIntent]:
        return self.active.takers(sm, dt, rng)

    def target_levels(self, sm: SyntheticMarket) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
        return self.active.target_levels(sm)


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method; lam per step is small (< ~5)."""
    if lam <= 0:
        return 0
    limit = math.exp(-lam)
    k, prod = 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


AS_DEFAULTS = {"half_spread_bps": 8.0, "levels": 10}


def make_regime(spec: str, p: Params, tape: list[TapeEvent] | None = None) -> Regime:
    """'calm' | 'burst' | 'trend' | 'informed' | 'as' | 'replay' | comma list (mixed)."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError("empty model")
    regimes: list[Regime] = []
    for n in names:
        if n == "calm":
            regimes.append(Regime(p))
        elif n == "burst":
            regimes.append(Burst(p))
        elif n == "trend":
            regimes.append(Trend(p))
        elif n == "informed":
            regimes.append(Informed(p))
        elif n == "sol":
            regimes.append(Sol(p))
        elif n == "as":
            regimes.append(AvellanedaStoikov(p))
        elif n == "replay":
            if not tape:
                raise ValueError("model 'replay' needs a tape (--tape FILE)")
            regimes.append(Replay(p, tape))
        else:
            raise ValueError(f"unknown model {n!r} (choose from {', '.join(MODEL_NAMES)})")
    return regimes[0] if len(regimes) == 1 else Mixed(p, regimes)


class SyntheticMarket:
    """Mid + ladder + takers for one market. `step` is called every `dt` of simulated time."""

    def __init__(self, market: Market, regime: Regime, rng: random.Random, mm_account: int,
                 taker_account: int, params: Params) -> None:
        self.m = market
        self.regime = regime
        self.rng = rng
        self.p = params
        self.mm_account = mm_account
        self.taker_account = taker_account
        start = params.start_price * 10 ** market.price_decimals if params.start_price > 0 else market.start_mid
        self.start_mid = float(start)
        self.mid = float(start)
        self.book: Book | None = None
        self.ladder_bids: dict[int, Order] = {}
        self.ladder_asks: dict[int, Order] = {}
        self.tape_queues: dict[bool, dict[int, list[Order]]] = {}   # replay: the synthetic orders of a tape level, FIFO
        self.steps = 0
        self.grid_step = max(1, int(round(self.mid * params.level_step_bps / 1e4)))
        self.tick_value = 10 ** market.price_decimals
        self.lot_value = 10 ** market.size_decimals

    # -- helpers --------------------------------------------------------------------------
    def price_at(self, bps: float) -> int:
        """Integer ticks at mid * (1 + bps/1e4), rounded away from the mid."""
        x = self.mid * (1.0 + bps / 1e4)
        return max(1, math.ceil(x) if bps >= 0 else math.floor(x))

    def lots_for_usd(self, usd: float) -> int:
        price = self.mid / self.tick_value
        lots = int(usd / max(price, 1e-9) * self.lot_value)
        return max(self.m.min_base, lots)

    def liquidity_within(self, buy: bool, limit: int) -> int:
        """Lots resting on the opposite side at prices a taker with `limit` would take
        (a read-only view of the engine's book, installed by `bind_liquidity`)."""
        if self.book is None:
            return 0
        book = self.book
        total = 0
        if buy:
            for p in book.ask_prices:
                if p > limit:
                    break
                total += book.asks[p].size
        else:
            for p in reversed(book.bid_prices):
                if p < limit:
                    break
                total += book.bids[p].size
        return total

    def mark(self) -> int:
        return max(1, int(round(self.mid)))

    # -- one step ---------------------------------------------------------------------------
    def step(self, engine: Engine, now_ms: int, dt: float) -> None:
        rng = self.rng
        self.regime.advance(self, now_ms, dt, rng)
        if getattr(self.regime, "takers_first", False):
            # the 2008 paper's order: fills against the quotes set on the mid they saw, then the mid moves
            self._take(engine, self.regime.takers(self, dt, rng), now_ms)
            self.mid = max(1.0, self.regime.mid_step(self, dt, rng))
            engine.set_mark(self.m.market_id, self.mark())
            self._refresh_ladder(engine, now_ms)
            self.steps += 1
            return
        self.mid = max(1.0, self.regime.mid_step(self, dt, rng))
        engine.set_mark(self.m.market_id, self.mark())
        if self.regime.target_levels(self) is not None:
            # a tape: its trades first (they eat the queue at their price, ours in FIFO order), then its
            # book, whose sizes already show those trades (applied the other way round, a trade would count twice)
            self._take(engine, self.regime.takers(self, dt, rng), now_ms)
            self._follow_tape(engine, now_ms)
        else:
            self._refresh_ladder(engine, now_ms)
            self._take(engine, self.regime.takers(self, dt, rng), now_ms)
        self.steps += 1

    def _take(self, engine: Engine, takers: list[TakerIntent], now_ms: int) -> None:
        for t in takers:
            if t.lots > 0:
                engine.create_order(self.taker_account, self.m.market_id, 0, t.is_ask, t.limit,
                                    t.lots, ORDER_LIMIT, TIF_IOC, False, 0, now_ms)

    def _follow_tape(self, engine: Engine, now_ms: int) -> None:
        """Make each price level's synthetic size the tape's, keeping queue positions (a probabilistic
        queue model, after hftbacktest's ``PowerProbQueueModel``, on Lighter's FIFO book).

        The tape only shows a level's total. Growth joins the back of the queue (behind any order of
        ours). A shrink that is not a trade (a cancel) comes from ahead of our first order at that price
        with probability f(ahead) / (f(ahead) + f(behind)), f(x) = x ** queue_power, applied as its
        expected value (deterministic); with nobody of ours at the level, where it comes from is moot.
        Trades need no model: the tape's trades are takers that the engine matches in FIFO order.
        """
        target = self.regime.target_levels(self)
        assert target is not None
        book = engine.books[self.m.market_id]
        mine = self.mm_account
        n = self.p.queue_power
        for is_ask, want, have in ((False, target[0], self.ladder_bids), (True, target[1], self.ladder_asks)):
            want_sizes = dict(want)
            queues: dict[int, list[Order]] = self.tape_queues.setdefault(is_ask, {})
            queued = {o.order_index for lst in queues.values() for o in lst}
            for o in have.values():   # a synthetic ladder left by another regime (a mixed model): gone
                if o.status == "open" and o.order_index not in queued:
                    engine.cancel_order(o, now_ms)
            for price in [p for p in queues if p not in want_sizes]:
                for o in queues.pop(price):
                    if o.status == "open":
                        engine.cancel_order(o, now_ms)
            have.clear()
            for price, size in want:
                q = [o for o in queues.get(price, ()) if o.status == "open" and o.remaining > 0]
                total = sum(o.remaining for o in q)
                if size > total:
                    o = engine.create_order(mine, self.m.market_id, 0, is_ask, price, size - total,
                                            ORDER_LIMIT, TIF_GTT, False, 0, now_ms)
                    if o.status == "open" and o.remaining > 0:
                        q.append(o)
                elif size < total:
                    self._shrink(engine, book, is_ask, price, q, total - size, n, now_ms)
                    q = [o for o in q if o.status == "open" and o.remaining > 0]
                queues[price] = q
                if q:
                    have[price] = q[0]

    @staticmethod
    def _shrink(engine: Engine, book: Book, is_ask: bool, price: int, q: list[Order], cut: int, n: float,
                now_ms: int) -> None:
        level = (book.asks if is_ask else book.bids).get(price)
        tape = {o.order_index for o in q}
        fifo = list(level.orders) if level is not None else []
        first_real = next((i for i, oi in enumerate(fifo) if oi not in tape), None)   # the first real order
        if first_real is None:   # only the tape's liquidity at the level: take it from the back
            ahead: list[Order] = []
            behind = list(q)
        else:
            pos = {oi: i for i, oi in enumerate(fifo)}
            ahead = [o for o in q if pos[o.order_index] < first_real]
            behind = [o for o in q if pos[o.order_index] > first_real]
        a, b = sum(o.remaining for o in ahead), sum(o.remaining for o in behind)
        fa, fb = a ** n, b ** n
        from_ahead = round(cut * fa / (fa + fb)) if fa + fb > 0 else 0
        from_ahead = max(cut - b, min(a, from_ahead))
        for group, lots in ((ahead, from_ahead), (behind, cut - from_ahead)):
            for o in reversed(group):   # nearest to our order first
                if lots <= 0:
                    break
                take = min(lots, o.remaining)
                engine.shrink(o, take, now_ms)
                lots -= take

    def _desired(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        target = self.regime.target_levels(self)
        if target is not None:
            return target
        p = self.p
        hs = p.half_spread_bps
        if p.as_paper <= 0 and (isinstance(self.regime, AvellanedaStoikov) or (
                isinstance(self.regime, Mixed) and isinstance(self.regime.active, AvellanedaStoikov))):
            hs = max(hs, AS_DEFAULTS["half_spread_bps"])
        # levels sit on a fixed grid of `step` ticks, so a mid move only adds/removes edge levels
        step = self.grid_step
        best_bid = math.floor(self.mid * (1.0 - hs / 1e4) / step) * step
        best_ask = math.ceil(self.mid * (1.0 + hs / 1e4) / step) * step
        if best_ask <= best_bid:
            best_ask = best_bid + step
        # size 0 = "any size": drawn only when a level is (re)placed, in _refresh_ladder
        bids = [(best_bid - i * step, 0) for i in range(p.levels) if best_bid - i * step > 0]
        asks = [(best_ask + i * step, 0) for i in range(p.levels)]
        return bids, asks

    def _refresh_ladder(self, engine: Engine, now_ms: int) -> None:
        """Keep the synthetic ladder on the desired levels: cancel stale ones first (both sides),
        then place missing ones, so the ladder never trades with itself. A few random levels are
        re-placed each step (new size, back of the queue), which lets other orders gain priority."""
        if self.tape_queues:   # a tape's levels left by another regime (a mixed model): gone
            for queues in self.tape_queues.values():
                for lst in queues.values():
                    for o in lst:
                        if o.status == "open":
                            engine.cancel_order(o, now_ms)
            self.tape_queues = {}
            self.ladder_bids.clear()
            self.ladder_asks.clear()
        bids, asks = self._desired()
        rng = self.rng
        n_refresh = self.p.refresh_prob * (len(bids) + len(asks))
        refresh = _poisson(rng, n_refresh) if n_refresh > 0 else 0
        sides = ((False, bids, self.ladder_bids), (True, asks, self.ladder_asks))
        for _is_ask, want, have in sides:
            want_prices = {p for p, _ in want}
            sized = want and want[0][1] != 0
            for price, o in list(have.items()):
                if o.status != "open":
                    del have[price]
                elif price not in want_prices:
                    engine.cancel_order(o, now_ms)
                    del have[price]
            if sized:
                for price, size in want:
                    o = have.get(price)
                    if o is not None and o.remaining != size:
                        engine.cancel_order(o, now_ms)
                        del have[price]
        for _ in range(refresh):
            is_ask = rng.random() < 0.5
            have = self.ladder_asks if is_ask else self.ladder_bids
            if have:
                price = list(have)[rng.randrange(len(have))]
                engine.cancel_order(have.pop(price), now_ms)
        base_lots = self.lots_for_usd(self.p.level_notional_usd)
        mid_id = self.m.market_id
        for is_ask, want, have in sides:
            if len(have) == len(want):
                continue
            for i, (price, size) in enumerate(want):
                if price in have:
                    continue
                lots = size or max(self.m.min_base,
                                   int(base_lots * (1.0 + 0.15 * i) * (0.5 + rng.random())))
                o = engine.create_order(self.mm_account, mid_id, 0, is_ask, price, lots,
                                        ORDER_LIMIT, TIF_GTT, False, 0, now_ms)
                if o.status == "open" and o.remaining > 0:
                    have[price] = o


def bind_liquidity(sm: SyntheticMarket, engine: Engine) -> None:
    """Give the market's regimes a read-only view of its book (used by the AS sweep)."""
    sm.book = engine.books[sm.m.market_id]


# -- tape -------------------------------------------------------------------------------------
def _levels(raw: Any, m: Market) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lv in raw or []:
        if isinstance(lv, dict):
            price, size = lv.get("price"), lv.get("size")
        else:
            price, size = lv[0], lv[1]
        p = parse_fixed(str(price), m.price_decimals) if not isinstance(price, int) else price
        s = parse_fixed(str(size), m.size_decimals) if not isinstance(size, int) else size
        if s > 0:
            out.append((p, s))
    return out


def parse_tape(lines: Iterable[str | bytes], markets: dict[int, Market]) -> dict[int, list[TapeEvent]]:
    """JSONL tape -> events per market. See README.md ("Replay tape format")."""
    out: dict[int, list[TapeEvent]] = {m: [] for m in markets}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        rec = orjson.loads(line)
        stream = str(rec.get("stream") or rec.get("key") or "")
        data = rec.get("data") or rec.get("fields") or rec
        if isinstance(data, dict) and isinstance(data.get("data"), (str, bytes)):
            data = orjson.loads(data["data"])
        parts = stream.split(":")
        if len(parts) < 3 or parts[0] != "md":
            continue
        kind = "book" if parts[1] == "book" else "trade" if parts[1] in ("trade", "trades") else ""
        try:
            mid = int(parts[2])
        except ValueError:
            continue
        if not kind or mid not in markets:
            continue
        m = markets[mid]
        ts = rec.get("ts_ms") or data.get("ts_ms") or data.get("timestamp") or rec.get("ts")
        if ts is None and isinstance(rec.get("id"), str):
            ts = int(rec["id"].split("-")[0])
        t_ms = int(ts or 0)
        if kind == "book":
            bids = sorted(_levels(data.get("bids"), m), reverse=True)
            asks = sorted(_levels(data.get("asks"), m))
            out[mid].append(TapeEvent(t_ms, "book", bids=bids, asks=asks))
        else:
            price = parse_fixed(str(data["price"]), m.price_decimals)
            size = parse_fixed(str(data["size"]), m.size_decimals)
            side = str(data.get("side", "")).lower()
            if side in ("buy", "b", "bid"):
                taker_buy = True
            elif side in ("sell", "s", "ask"):
                taker_buy = False
            else:
                taker_buy = bool(data.get("is_maker_ask", True))
            out[mid].append(TapeEvent(t_ms, "trade", price=price, size=size, taker_buy=taker_buy))
    for evs in out.values():
        evs.sort(key=lambda e: e.t_ms)
    return out
