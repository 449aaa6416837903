"""Maker decision logic (pure): two-sided post-only quotes around mid.

``MakerCore.handle(event, now_ms)`` takes ``shared.schemas`` messages (books, our order updates,
fills, positions, order events) and returns ``commands``; ``on_timer(now_ms)`` lets time-based
rules fire without new data (a book that went stale, a cancel nobody confirmed). No I/O, no clock.

Policy, in order of precedence:

0. **halted** / **reducing**: the guard's trading state (``risk:events``). HALTED quotes nothing;
   REDUCING quotes only the side that shrinks the position, at most the position's size. A
   missing state counts as HALTED. So the maker never proposes what the guard would veto.
1. **stale**: no fresh two-sided book (older than ``max_book_age_s`` by the venue's timestamp):
   cancel every quote, quote nothing.
2. **paused**: volatility EMA at/above ``pause_bps`` until it drops below ``resume_bps``. Only
   when |position| >= ``inventory_ratio`` x the guard's position limit is the side that reduces
   the position still quoted.
3. **trend-up/-down**: |mid change over ``lookback_s``| >= ``trigger_bps`` (until it falls below
   ``release_bps``: hysteresis) widens the half-spread
   by ``widen_factor``; with ``one_sided`` only the side that does not fight the move is quoted
   (up: bid only, down: ask only).
4. **quoting**: both sides.

Where the quotes go is the engine's (``maker.engine``, ``services/maker/engines.py``: fixed,
adaptive, avellaneda_stoikov, glft): distances below/above the mid from the 1-minute sigma, the
live trade-intensity fit (A, k: ``shared.calibration``, from the public tape), our inventory and
time; ``fixed`` is a plain spread with no pause, trend or skew (the baseline). Every engine
shares the rest: sizing and the minimum-notional clamp, the guard's states, the pause and trend
modes and the requote discipline. The maker also keeps per-fill markouts of its own fills
(1/5/30/60 s); ``calibration.markout_widen`` > 0 widens every engine but ``fixed`` when the 5 s
markout turns adverse. A live quote is kept unless its target moved >= ``requote_bps``
of mid; every new order on a side (requote, refill, retry) waits ``min_requote_interval_s`` after
the previous one, which also stops post-only rejection loops. Cancels are never delayed.

Order state lives in ``shared.ledger.OrderLedger`` (one truth: the venue's updates, fills by trade
id, the gateway's outcomes and reconcile snapshots). The maker keeps only its *decision*: which
order is its quote on each side (``quotes``, side -> ``Slot``). A slot whose order ended is free;
one whose outcome is unknown is not (it may rest: it is cancelled by index, never silently
replaced). Maker orders the ledger says may rest that are no quote of ours (a lost cancel, an
order adopted from a reconcile) are cancelled once known for ``STRAY_GRACE_MS``; a cancel the venue
has not confirmed is sent again after ``quote_ttl_ms``, up to ``CANCEL_ATTEMPTS`` times. Nothing
is quoted before the position is known (the guard would veto it).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from fractions import Fraction
from typing import Any, Literal

from shared.books import book_problem
from shared.commands import STRAY_GRACE_MS, Cancel, Command, Leftovers, Modify, Note, Place, Reject, cancel_leftovers
from shared.config import MakerConfig, RateConfig, Settings
from shared.ids import IdMint
from shared.ledger import RESTING, OrderLedger, State, Transition
from shared.markets import MarketSpec, round_down
from shared.pricing import clamp_size, config_size_lots, frac, mid_of, min_notional_micro, moved_less_than, quote_prices
from shared.profile_check import Finding, check
from shared.rate_budget import BudgetWatch, RateBudget
from shared.schemas import BookTop, Msg, RiskState, TradingState

from shared.calibration import Intensity, IntensityFit, Markouts
from shared.schemas import Fill, Trade

from services.maker import engines
from services.maker.signals import TrendWindow, VolEma

Mode = Literal["quoting", "paused", "trend-up", "trend-down", "stale", "no-position", "halted", "reducing"]
MODES: tuple[Mode, ...] = ("quoting", "paused", "trend-up", "trend-down", "stale", "no-position", "halted", "reducing")
PULL_MODES = ("stale", "paused", "no-position", "halted", "reducing")
CANCEL_ATTEMPTS = 3
NEVER = -(10**18)
FIT_EVERY_MS = 5_000          # the intensity fit is redone this often (it reads the whole window)
VOL_SAMPLE_MS = 250           # the volatility signal samples the mid 4x a second (variance per second either way):
                              # 4x the returns of 1 s sampling, so a burst shows within seconds, not tens


ZERO = Fraction(0)

@dataclass(frozen=True, slots=True)
class Target:
    price: int
    size: int


@dataclass(slots=True)
class Slot:
    """Which order is our quote on one side (its state is the ledger's)."""

    coi: int
    intent_id: str
    is_ask: bool
    placed_ms: int


class MakerCore:
    def __init__(self, cfg: MakerConfig, spec: MarketSpec, max_position_lots: int, rate: RateConfig | None = None,
                 max_book_age_ms: int | None = None) -> None:
        self.cfg, self.spec = cfg, spec
        self.market_id = spec.market_id
        self.profile_check: Callable[[int], list[Finding]] | None = None   # shared.profile_check at the first book
        self.base_lots = config_size_lots(cfg, spec)
        self.min_notional = min_notional_micro(cfg.exchange_min_notional, spec)
        self.max_position = max_position_lots
        self.max_book_age_ms = int(cfg.max_book_age_s * 1000)
        if max_book_age_ms is not None:   # the guard's limit, when stricter: never propose on a book it refuses
            self.max_book_age_ms = min(self.max_book_age_ms, max_book_age_ms)
        self.budget = None if rate is None else RateBudget.from_config(rate)   # the guard's place budget, our share
        self.rate_watch = BudgetWatch("maker", self.budget)   # rate vetoes back off; the hedger's acks count
        self.risk_state: TradingState = "HALTED"   # until the guard's state is known: a missing state is HALTED
        self.risk_reason = "no trading state yet"
        self.requote_interval_ms = int(cfg.min_requote_interval_s * 1000)
        self.pending_timeout_ms = 2 * cfg.quote_ttl_ms   # a place nobody reported on: cancel it, free the side
        self.cancel_retry_ms = cfg.quote_ttl_ms          # a cancel nobody confirmed: send it again
        self.vol = VolEma(int(cfg.volatility.ema_halflife_s * 1000), VOL_SAMPLE_MS)
        self.trend = TrendWindow(int(cfg.trend.lookback_s * 1000))
        self.trend_dir = 0   # +1 up, -1 down, 0 none (with hysteresis: _trend_state)
        self.mint = IdMint("maker")
        self.bid: int | None = None
        self.ask: int | None = None
        self.book_ts_ms: int | None = None
        self.trace: dict[str, int] = {}
        self.ledger = OrderLedger(market_id=spec.market_id)
        self.paused = False
        self.mode: Mode = "stale"
        self.half_spread_bps = frac(cfg.spread_bps)
        self._hs_key: tuple[str, bool] | None = None
        self.quotes: dict[bool, Slot] = {}           # is_ask -> our quote on that side
        self.last_place_ms: dict[bool, int] = {}
        self.targets: dict[bool, Target] = {}
        self.counts = {"place": 0, "modify": 0, "cancel": 0, "failed": 0, "rejected_input": 0}
        self.engine = engines.ENGINES[cfg.engine]
        c = cfg.calibration
        self.intensity = IntensityFit(float(c.window_s), min_trades=c.min_trades)
        self.fit: Intensity | None = None      # the last fit, good or not (reported)
        self.fit_used = False                  # whether its A and k steer the quotes (r2 >= min_r2)
        self.fit_ms = NEVER
        self.markouts = Markouts()
        self.engine_t0_ms: int | None = None   # the engines' clock starts at the first quote decision
        self.quote: engines.Quote | None = None
        self.position_cap_units = max_position_lots / spec.size_scale

    @classmethod
    def from_settings(cls, s: Settings) -> "MakerCore":
        core = cls(s.maker, s.market_spec, round_down(s.guard.max_position_units, s.market.size_decimals),
                   s.guard.rate, s.guard.max_book_age_ms)
        core.profile_check = partial(check, s)
        return core

    @property
    def position(self) -> int:
        return self.ledger.effective_position

    # --- events ---------------------------------------------------------------------------------
    def handle(self, event: Msg | Leftovers, now_ms: int) -> list[Command]:
        if isinstance(event, Leftovers):
            return cancel_leftovers(self.mint, event, now_ms) if event.market_id == self.market_id else []
        if isinstance(event, BookTop):
            return self._on_book(event, now_ms)
        if isinstance(event, Trade):
            if event.market_id == self.market_id:
                self.intensity.on_trade(event.ts_ms, event.price / self.spec.price_scale, event.taker_is_ask)
            return []
        if isinstance(event, Fill) and event.market_id == self.market_id:
            o = self.ledger.get(event.client_order_index)
            if o is not None and o.source == "maker":
                self.markouts.on_fill(event.ts_ms, event.is_ask, event.price / self.spec.price_scale,
                                      event.size / self.spec.size_scale)
        if isinstance(event, RiskState):
            self.risk_state, self.risk_reason = event.state, event.reason
            return self._reconcile(now_ms)
        self.rate_watch.observe(event, now_ms)
        if getattr(event, "market_id", self.market_id) not in (self.market_id, -1):
            return []
        self._free_ended(self.ledger.handle(event, now_ms))
        return self._reconcile(now_ms)

    def on_timer(self, now_ms: int) -> list[Command]:
        return self._reconcile(now_ms)

    def shutdown(self, now_ms: int) -> list[Command]:
        """Cancel every quote (graceful stop)."""
        if self.cfg.dry_run:
            return []
        return [self._cancel(q, now_ms, "shutdown") for q in list(self.quotes.values())]

    def _on_book(self, book: BookTop, now_ms: int) -> list[Command]:
        if book.market_id != self.market_id:
            return []
        problem = book_problem(book)
        if problem:
            self.counts["rejected_input"] += 1
            return [Reject(problem)]
        if self.book_ts_ms is not None and book.venue_ts_ms < self.book_ts_ms:
            return []  # older than what we have: conflation already moved past it
        self.book_ts_ms = book.venue_ts_ms
        self.trace = dict(book.trace)
        warn: list[Command] = []
        bid, ask = self._market_best(book)
        if bid is not None and ask is not None:
            self.bid, self.ask = bid, ask
            if self.profile_check is not None:   # the venue's minimums need a price: said once, on the first book
                warn = [Note(f"profile: {f}", f.level) for f in self.profile_check((self.bid + self.ask) // 2)]
                self.profile_check = None
            mid = (self.bid + self.ask) / 2
            self.vol.update(book.venue_ts_ms, mid)
            self.trend.update(book.venue_ts_ms, mid)
            mid_usd = mid / self.spec.price_scale
            self.intensity.on_book(book.venue_ts_ms, mid_usd)
            self.markouts.on_mid(book.venue_ts_ms, mid_usd)
            if book.venue_ts_ms - self.fit_ms >= FIT_EVERY_MS:
                self.fit_ms = book.venue_ts_ms
                self.fit = self.intensity.fit(book.venue_ts_ms)
                self.fit_used = self.fit is not None and self.fit.r2 >= float(self.cfg.calibration.min_r2)
        else:
            self.bid = self.ask = None
        return warn + self._reconcile(now_ms) if warn else self._reconcile(now_ms)

    def _market_best(self, book: BookTop) -> tuple[int | None, int | None]:
        """The best bid and ask of everybody but us: our own resting size is taken out of the book's
        levels (the ledger knows it). Centred on a book that includes our quotes, a fill of our own
        touch quote would jump the mid by our own half-spread: the signals would see our fills as
        volatility and the quotes would chase themselves."""
        own: dict[tuple[bool, int], int] = {}
        for o in self.ledger.live():
            if o.state in RESTING and o.market_id == self.market_id:
                own[(o.is_ask, o.price)] = own.get((o.is_ask, o.price), 0) + o.remaining

        def first(levels: list[tuple[int, int]], is_ask: bool) -> int | None:
            for px, size in levels:
                if size - own.get((is_ask, px), 0) > 0:
                    return px
            return levels[0][0] if levels else None   # only our own orders in view: the book's own best
        if not own:
            return (book.bids[0][0] if book.bids else None), (book.asks[0][0] if book.asks else None)
        return first(book.bids, False), first(book.asks, True)

    def _free_ended(self, transitions: list[Transition]) -> None:
        """A slot whose order ended (filled, cancelled, refused, never sent) is free again."""
        for t in transitions:
            if t.after.value in ("rejected", "never_sent"):
                self.counts["failed"] += 1
        for side, q in list(self.quotes.items()):
            o = self.ledger.get(q.coi)
            if o is not None and o.terminal:
                del self.quotes[side]

    # --- decisions ------------------------------------------------------------------------------
    def fresh(self, now_ms: int) -> bool:
        return (self.bid is not None and self.book_ts_ms is not None
                and now_ms - self.book_ts_ms <= self.max_book_age_ms)

    def _desired(self, now_ms: int) -> dict[bool, Target]:
        if self.risk_state == "HALTED":
            self.mode = "halted"
            return {}
        if not self.fresh(now_ms):
            self.mode = "stale"
            return {}
        if not self.ledger.position_known:
            self.mode = "no-position"
            return {}
        assert self.bid is not None and self.ask is not None
        cfg, v, t = self.cfg, self.cfg.volatility, self.cfg.trend
        vol = self.vol.value
        plain = cfg.engine == "fixed"   # the baseline: no pause, no trend, no skew
        if not v.enabled or plain:
            self.paused = False
        elif not self.paused and vol >= float(v.pause_bps):
            self.paused = True
        elif self.paused and vol < float(v.resume_bps):
            self.paused = False
        trend = self.trend.value
        self.trend_dir = self._trend_state(trend) if t.enabled and not plain else 0
        trending = self.trend_dir != 0
        position = self.position
        quote = self._engine_quote(now_ms, vol, trending, position)
        self.half_spread_bps = quote.half_spread_bps
        sides: tuple[bool, ...] = (False, True)
        if self.risk_state == "REDUCING":
            self.mode = "reducing"
            sides = (position > 0,) if position != 0 else ()
        elif self.paused:
            self.mode = "paused"
            limit = frac(v.inventory_ratio) * self.max_position
            if position != 0 and self.max_position > 0 and abs(position) >= limit:
                sides = (position > 0,)  # long: keep the ask; short: keep the bid
            else:
                sides = ()
        elif trending:
            self.mode = "trend-up" if self.trend_dir > 0 else "trend-down"
            if t.one_sided:
                sides = (self.trend_dir < 0,)  # up: bid only; down: ask only
        else:
            self.mode = "quoting"
        sides = tuple(side for side in sides if quote.quotes(side))
        bid_px, ask_px = quote_prices(self.bid, self.ask, quote.half_spread_bps, quote.skew_ticks(mid_of(self.bid, self.ask)))
        own_ask = min((o.price for o in self.ledger.live() if o.is_ask and o.source != "maker"), default=None)
        own_bid = max((o.price for o in self.ledger.live() if not o.is_ask and o.source != "maker"), default=None)
        if own_ask is not None:   # never through our own hedger's order (the guard's self-trade rule)
            bid_px = min(bid_px, own_ask - 1)
        if own_bid is not None:
            ask_px = max(ask_px, own_bid + 1)
        shrink = frac(cfg.skew.size_per_unit) * Fraction(abs(position), self.spec.size_scale) if not plain else ZERO
        out: dict[bool, Target] = {}
        for is_ask in sides:
            px = ask_px if is_ask else bid_px
            base = self.base_lots
            if shrink and position and (position > 0) != is_ask:   # the side that adds to the position
                base = int(base * max(ZERO, 1 - shrink))
            size = clamp_size(base, self.spec, px, self.min_notional)
            q = self.quotes.get(is_ask)
            size = min(size, self.room(is_ask, None if q is None else q.coi))
            if size < clamp_size(1, self.spec, px, self.min_notional):   # never below the exchange minimum
                continue
            out[is_ask] = Target(px, size)
        return out

    def room(self, is_ask: bool, replacing: int | None) -> int:
        """The largest order on a side that the guard would accept: within the position limit counting
        everything else of ours that may still fill on that side (a cancel on its way included, as the
        guard counts it), or, reducing, within the position less what else may reduce it. ``replacing``:
        the order a modify would move in place (its exposure becomes the new order's)."""
        others = sum(o.exposure for o in self.ledger.live() if o.is_ask == is_ask and o.coi != replacing)
        position = self.position
        if self.mode == "reducing":
            return abs(position) - others
        worst = (others - position) if is_ask else (position + others)
        return self.max_position - worst

    def _engine_quote(self, now_ms: int, vol: float, trending: bool, position: int) -> engines.Quote:
        """The engine's distances from the mid (cached: timers and books repeat the same inputs)."""
        assert self.bid is not None and self.ask is not None and self.book_ts_ms is not None
        cfg = self.cfg
        if self.engine_t0_ms is None:
            self.engine_t0_ms = self.book_ts_ms
        mid_ticks = (self.bid + self.ask) / 2
        mid_usd = mid_ticks / self.spec.price_scale
        elapsed = (self.book_ts_ms - self.engine_t0_ms) / 1000
        model = cfg.engine in ("avellaneda_stoikov", "glft")
        markout = self.markouts.mean_bps(5) if cfg.calibration.markout_widen and cfg.engine != "fixed" else None
        key = (f"{vol:.2f}", trending, position, mid_ticks if model else 0, round(elapsed, 1) if model else 0,
               self.fit if model else None, None if markout is None else round(markout, 2))
        if key == self._hs_key and self.quote is not None:
            return self.quote
        A, k = self._intensity(mid_usd)
        m = engines.Market(mid_usd=mid_usd, vol_1m_bps=float(key[0]), sigma=self.vol.sigma_bps_per_sqrt_s * mid_usd / 1e4,
                           A=A, k=k, q=position / self.base_lots, q_units=position / self.spec.size_scale,
                           max_units=self.position_cap_units, max_orders=self.max_position / self.base_lots,
                           elapsed_s=elapsed, trending=trending)
        quote = self.engine(cfg, m)
        if markout is not None and markout < 0:   # our fills are being picked off: widen both sides
            extra = min(frac(cfg.calibration.markout_widen) * engines.exact(-markout), frac(cfg.calibration.markout_widen_max_bps))
            quote = engines.Quote(None if quote.bid_bps is None else quote.bid_bps + extra,
                                  None if quote.ask_bps is None else quote.ask_bps + extra)
        self._hs_key, self.quote = key, quote
        return quote

    def _intensity(self, mid_usd: float) -> tuple[float, float]:
        """(A per second per side, k per USD): the live fit when it is good enough, else the fallbacks."""
        c = self.cfg.calibration
        if self.fit_used and self.fit is not None:
            return self.fit.A, self.fit.k
        return float(c.fallback_A), float(c.fallback_k_per_bps) / (mid_usd / 1e4)

    def _trend_state(self, trend: float) -> int:
        """+1/-1 while trending up/down, 0 otherwise: a trend starts at ``trigger_bps`` and ends below
        ``release_bps`` (or flips when the other way reaches ``trigger_bps``), so it does not flap."""
        t = self.cfg.trend
        on, off = float(t.trigger_bps), float(t.release_bps)
        if self.trend_dir == 0:
            return (1 if trend > 0 else -1) if abs(trend) >= on else 0
        if abs(trend) < off:
            return 0
        if (trend > 0) != (self.trend_dir > 0) and abs(trend) >= on:
            return -self.trend_dir
        return self.trend_dir

    def _reconcile(self, now_ms: int) -> list[Command]:
        desired = self._desired(now_ms)
        if self.cfg.dry_run:
            cmds: list[Command] = []
            if desired != self.targets:
                sides = ", ".join(f"{'ask' if a else 'bid'} {self.spec.size_str(t.size)}@{self.spec.price_str(t.price)}"
                                  for a, t in sorted(desired.items()))
                cmds.append(Note(f"dry-run {self.mode}: {sides or 'no quotes'}"))
            self.targets = desired
            return cmds
        self.targets = desired
        cmds = []
        for is_ask in (False, True):
            want, q = desired.get(is_ask), self.quotes.get(is_ask)
            if want is None:
                if q is not None:
                    cmds.append(self._cancel(q, now_ms, self.mode if self.mode in PULL_MODES else "side off"))
                continue
            live = None if q is None else self.ledger.get(q.coi)
            if live is not None and self._moved_less(live.modify_to[0] if live.modify_to else live.price,
                                                     want.price, frac(self.cfg.requote_bps)):
                continue
            if now_ms - self.last_place_ms.get(is_ask, NEVER) < self.requote_interval_ms:
                continue
            if self.budget is not None:   # our share of the tier's request budget; cancels never wait for it
                if self.budget.room("maker", now_ms) < 1 or self.rate_watch.holding(now_ms):
                    self.counts["budget_waits"] = self.counts.get("budget_waits", 0) + 1
                    continue
                self.budget.take(now_ms)
            if (q is not None and live is not None and self.cfg.modify_requotes and live.state in (State.OPEN, State.PARTIAL)
                    and live.modify_to is None and live.cancel_attempts == 0):
                cmds.append(self._modify(q, live.filled, want, now_ms))
                continue
            if q is not None:
                cmds.append(self._cancel(q, now_ms, "requote"))
                # the guard still counts the cancelled quote until the venue confirms it: the new one must
                # fit beside it, or wait for the confirmation (the slot is free then)
                fit = min(want.size, self.room(is_ask, None))
                if fit < clamp_size(1, self.spec, want.price, self.min_notional):
                    continue
                want = Target(want.price, fit)
            cmds.append(self._place(is_ask, want, now_ms))
        cmds.extend(self._housekeeping(now_ms))
        return cmds

    def _moved_less(self, old: int, new: int, bps: Fraction) -> bool:
        assert self.bid is not None and self.ask is not None  # a wanted quote implies a fresh book
        return moved_less_than(old, new, self.bid, self.ask, bps)

    def _housekeeping(self, now_ms: int) -> list[Command]:
        cmds: list[Command] = []
        mine = {q.coi for q in self.quotes.values()}
        for o in sorted(self.ledger.live("maker"), key=lambda o: o.coi):
            if o.coi in mine:
                continue
            if o.cancel_attempts == 0:
                if o.state in RESTING or o.state.value in ("sent", "unknown"):
                    if now_ms - o.created_ms >= STRAY_GRACE_MS:
                        cmds.append(self._cancel_coi(o.coi, now_ms, "unwanted resting order"))
            elif now_ms - o.cancel_sent_ms >= self.cancel_retry_ms:
                if o.cancel_attempts >= CANCEL_ATTEMPTS:
                    if o.cancel_attempts == CANCEL_ATTEMPTS:
                        o.cancel_attempts += 1   # say it once; the next reconcile settles it
                        cmds.append(Note(f"cancel of {o.coi} unconfirmed after {CANCEL_ATTEMPTS} attempts; "
                                         "the next reconcile settles it", "warning"))
                    continue
                cmds.append(self._cancel_coi(o.coi, now_ms, "retry"))
        for q in list(self.quotes.values()):
            o = self.ledger.get(q.coi)
            if o is not None and o.state not in RESTING and now_ms - q.placed_ms > self.pending_timeout_ms:
                cmds.append(self._cancel(q, now_ms, "no news of the order"))
        return cmds

    def _place(self, is_ask: bool, t: Target, now_ms: int) -> Place:
        coi = self.mint.next_coi(now_ms)
        iid = self.mint.intent_id(coi)
        self.quotes[is_ask] = Slot(coi, iid, is_ask, now_ms)
        self.ledger.placed(coi, self.market_id, is_ask, t.price, t.size, "maker", iid, now_ms)
        self.last_place_ms[is_ask] = now_ms
        self.counts["place"] += 1
        return Place(coi, iid, is_ask, t.price, t.size, "post_only", False, dict(self.trace))

    def _modify(self, q: Slot, filled: int, t: Target, now_ms: int) -> Modify:
        """A live quote moves in place: one tx instead of two; the total size keeps what already filled."""
        iid = self.mint.intent_id(self.mint.next_coi(now_ms))
        self.ledger.modify_sent(q.coi, t.price, filled + t.size, now_ms)
        self.last_place_ms[q.is_ask] = now_ms
        self.counts["modify"] += 1
        return Modify(q.coi, iid, q.is_ask, t.price, filled + t.size, dict(self.trace))

    def _cancel(self, q: Slot, now_ms: int, reason: str) -> Cancel:
        del self.quotes[q.is_ask]
        return self._cancel_coi(q.coi, now_ms, reason)

    def _cancel_coi(self, coi: int, now_ms: int, reason: str) -> Cancel:
        """Cancel intents get their own fresh intent id (the place intent's id is already used)."""
        iid = self.mint.intent_id(self.mint.next_coi(now_ms))
        self.ledger.cancel_sent(coi, now_ms)
        self.counts["cancel"] += 1
        return Cancel(coi, iid, reason, dict(self.trace))

    # --- observability ---
    def _quote_view(self, q: Slot) -> dict[str, Any]:
        o = self.ledger.get(q.coi)
        sp = self.spec
        return {"side": "ask" if q.is_ask else "bid", "coi": q.coi, "price": None if o is None else o.price,
                "size": None if o is None else o.remaining, "state": None if o is None else o.state.value,
                "open": o is not None and o.state in RESTING,
                # the same in the market's units (ticks and lots above are what the venue is sent)
                "price_usd": None if o is None else str(Decimal(o.price).scaleb(-sp.price_decimals)),
                "size_base": None if o is None else str(Decimal(o.remaining).scaleb(-sp.size_decimals)),
                "placed_ms": None if o is None else (o.sent_ms or o.created_ms)}

    def calibration(self) -> dict[str, float | None]:
        """The live estimates (for /health and the metrics): sigma, the intensity fit and its quality, markouts."""
        f, mid = self.fit, ((self.bid + self.ask) / 2 / self.spec.price_scale if self.bid and self.ask else None)
        out: dict[str, float | None] = {
            "sigma_usd_per_sqrt_s": None if mid is None else self.vol.sigma_bps_per_sqrt_s * mid / 1e4,
            "A": None if f is None else f.A, "k": None if f is None else f.k, "r2": None if f is None else f.r2,
            "arrivals": None if f is None else float(f.n), "fit_used": 1.0 if self.fit_used else 0.0}
        for h in self.markouts.horizons_s:
            out[f"markout_{h:g}s"] = self.markouts.mean_bps(h)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "engine": self.cfg.engine,
            "calibration": self.calibration(),
            "dry_run": self.cfg.dry_run,
            "vol_bps": round(self.vol.value, 3),
            "trend_bps": round(self.trend.value, 3),
            "half_spread_bps": float(self.half_spread_bps),
            "position": self.position,
            "quotes": [self._quote_view(q) for q in self.quotes.values()],
            "canceling": sum(1 for o in self.ledger.live("maker") if o.cancel_attempts),
            "ledger": self.ledger.summary("maker"),
            "counts": dict(self.counts),
        }
