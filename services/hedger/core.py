"""Hedger decision logic (pure): clips that bring the position back toward ``target_units``.

When |position - target| > ``trigger_units`` the hedger sends one clip of
min(|excess|, ``max_clip_units``), raised to the venue minimums (min base, min notional at the
order price). A clip that would then overshoot the target by more than it reduces the excess
(size > 2 x |excess|) is skipped and logged. ``reduce_only`` is set when the clip can only
shrink the position (opposite side, size <= |position|).

Execution (``prefer_passive``): a post-only order at the best price on our side improved by
``passive_offset_bps`` toward the other side (never crossing). If it has not filled after
``passive_wait_s`` we cancel it and, once the venue confirms it is gone, send a limit IOC at the
best opposite price -/+ ``price_offset_bps``, capped at mid -/+ ``max_slippage_bps``. That
aggressive leg is at most what the passive leg left unfilled (so a late position update cannot
double the hedge) and skips ``min_interval_s``; it still requires the excess to be above the
trigger. Waiting for the cancel's confirmation costs one round trip but never leaves two hedge
orders working at once.

Our own quotes: the hedger never crosses an order of our account on the other side, judged as
the guard's self-trade rule judges it (every order the ledger holds that may still rest, at its
price and at a pending modify's price, plus the other services' places and modifies the gateway
acked that the venue has not shown yet). A passive price stays strictly on its side of them; an
IOC's limit is capped one tick before them, and when that leaves nothing to take (our quote is
the best opposite price) no taker clip is sent: the maker's inventory skew works the position
off, and the next clip (after ``min_interval_s``) is passive again (``self_cross_avoided``).

Cost vs risk: before an aggressive clip the hedger compares its expected cost (walking the
book up to the limit, from mid, plus ``taker_fee_bps``) with the risk of holding the excess,
size x mid x sigma x sqrt(``risk_horizon_s``) x ``risk_aversion``, sigma being an EMA (30 s
half-life) of squared 1 s mid log-returns of the books it receives. It takes only when the risk
is at least the cost; otherwise it notes the deferral and goes on with passive clips. Before
the estimate has warmed up, and always in ``REDUCING``, it takes as before. Each clip that
reached the venue reports its cost when it ends: slippage against the mid at its decision time
(positive = we paid) and fees (``last_clip_cost``, running totals in ``snapshot()``).

Fills: the position is the venue's ``Position`` plus our fills after it (the ledger's
``effective_position``). A clip ends only once its fills are booked (seen as fills, or covered
by a later ``Position``), so a fill already hedged is never hedged again; and a ``Position`` that
drops our recent hedge fills and moves the position back the other way (a late frame showing the
pre-hedge state) is held for ``POSITION_CONFIRM_MS`` or until the next ``Position``.

One clip at a time: nothing new is sent while a clip is live or its fate unknown, and a new clip
waits ``min_interval_s`` after the previous one ended (time for the position to settle). The
position is unknown until the first ``Position`` message: no hedging before that. Like the maker
it never acts on a book older than ``maker.max_book_age_s`` and cancels a resting passive clip
when the book goes stale.

The guard's trading state (``risk:events``) decides what it may do: ``HALTED`` sends nothing and
cancels a live clip; ``REDUCING`` hedges toward zero (whatever ``target_units``) with no trigger
band, reduce-only, regardless of cost, until the guard resumes. A missing state counts as
``HALTED``.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from shared.books import book_problem
from shared.calibration import SigmaEstimator
from shared.commands import STRAY_GRACE_MS, Cancel, Command, Leftovers, Note, Place, Reject, cancel_leftovers
from shared.config import HedgerConfig, RateConfig, Settings
from shared.rate_budget import BudgetWatch, RateBudget
from shared.ids import IdMint, source_of
from shared.ledger import RECONCILE_GRACE_MS, OrderLedger, State, is_terminal_status
from shared.markets import MarketSpec, round_down
from shared.pricing import BPS, frac, mid_of, min_lots_at, min_notional_micro
from shared.schemas import BookTop, Fill, Msg, OrderEvent, OrderUpdate, Position, Reconcile, RiskState, TradingState

Mode = Literal["idle", "passive", "aggressive", "stale", "no-position", "halted"]
MODES: tuple[Mode, ...] = ("idle", "passive", "aggressive", "stale", "no-position", "halted")
HEDGE_TTL_MS = 2_000      # a hedge priced on a book must reach the venue soon or not at all
FATE_TIMEOUT_MS = 10_000  # no fate for a clip this long after it was due: cancel it by coi and move on
CANCEL_ATTEMPTS = 3       # a cancel of a forgotten hedge order is sent again, this many times in all
CANCEL_RETRY_MS = 5_000
FILLS_WAIT_MS = 3_000     # an ended clip waits this long for its fills (or a later Position) before it is freed
POSITION_CONFIRM_MS = 3_000   # a Position that seems to undo our hedge fills is not acted on for this long
INFLIGHT_MS = RECONCILE_GRACE_MS  # another service's acked order counts as possibly resting this long unseen
VOL_HALF_LIFE_S = 30.0    # sigma: EMA of squared 1 s mid log-returns (shared.calibration.SigmaEstimator, as the maker's)
VOL_SAMPLE_MS = 1_000
VOL_MIN_SAMPLES = 5       # before that many returns there is no estimate: aggressive clips go as before
KEEP_HEDGE_TRADES = 1_000
NOT_PLACED = frozenset({"reject", "veto", "stale", "killed", "not_sent", "canceled"})


def clip_size(excess: int, max_clip: int, min_lots: int) -> int | None:
    """Clip in lots for |excess| lots, or None when the venue minimum would overshoot too much."""
    excess = abs(excess)
    size = max(min(excess, max_clip), min_lots)
    if size - excess > excess:
        return None
    return size


def passive_price(best_bid: int, best_ask: int, is_ask: bool, offset_bps: Fraction) -> int:
    """Our side's best price improved by ``offset_bps`` toward the other side, never crossing."""
    if is_ask:
        return max(math.ceil(best_ask * (1 - offset_bps / BPS)), best_bid + 1)
    return min(math.floor(best_bid * (1 + offset_bps / BPS)), best_ask - 1)


def aggressive_price(best_bid: int, best_ask: int, is_ask: bool, offset_bps: Fraction, max_slippage_bps: Fraction) -> int:
    """Best opposite price -/+ ``offset_bps``, never worse than mid -/+ ``max_slippage_bps``."""
    mid = mid_of(best_bid, best_ask)
    if is_ask:
        return max(math.floor(best_bid * (1 - offset_bps / BPS)), math.ceil(mid * (1 - max_slippage_bps / BPS)), 1)
    return min(math.ceil(best_ask * (1 + offset_bps / BPS)), math.floor(mid * (1 + max_slippage_bps / BPS)))


def own_bound(is_ask: bool, own: list[tuple[bool, int]]) -> int | None:
    """The most aggressive price an order on side ``is_ask`` may have without crossing one of our
    orders ``own`` = [(is_ask, price)] (the guard's rule: a bid crosses our ask at bid >= ask, an ask
    our bid at ask <= bid): one tick before our best opposite order; None when there is none."""
    opposite = [p for a, p in own if a != is_ask]
    if not opposite:
        return None
    return max(opposite) + 1 if is_ask else min(opposite) - 1


def take_cost_ticks(levels: list[tuple[int, int]], lots: int, limit: int, is_ask: bool, mid: Fraction) -> Fraction:
    """Expected cost (ticks x lots, from mid) of taking ``lots`` from the opposite ``levels`` (best first)
    no worse than ``limit``; what the visible book cannot give within the limit is counted at the limit."""
    sign = -1 if is_ask else 1
    left, cost = lots, Fraction(0)
    for price, size in levels:
        if left <= 0 or (price < limit if is_ask else price > limit):
            break
        n = min(size, left)
        cost += sign * (price - mid) * n
        left -= n
    return cost + sign * (limit - mid) * max(left, 0)


@dataclass(slots=True)
class Clip:
    coi: int
    intent_id: str
    is_ask: bool
    price: int
    size: int
    phase: Literal["passive", "aggressive"]
    placed_ms: int
    deadline_ms: int        # no terminal news by then: cancel by coi and forget the clip
    mid: Fraction = Fraction(0)   # the mid at the decision: its cost is measured against it
    expected_cost_usd: float | None = None
    canceling: bool = False
    escalate: bool = False  # we cancelled it to go aggressive
    venue_ts_ms: int = -1   # the venue's latest update of it
    fills: list[tuple[int, int, int]] = field(default_factory=list)   # (price, lots, fee micro-USDC)
    booking_until_ms: int | None = None   # ended at the venue; waiting for its fills until then

    @property
    def filled_seen(self) -> int:
        return sum(n for _, n, _ in self.fills)


class HedgerCore:
    def __init__(self, cfg: HedgerConfig, spec: MarketSpec, min_notional: int, max_book_age_ms: int,
                 rate: RateConfig | None = None) -> None:
        self.cfg, self.spec = cfg, spec
        self.budget = None if rate is None else RateBudget.from_config(rate)   # the whole budget, as the guard counts it
        self.market_id = spec.market_id
        d = spec.size_decimals
        self.target = round_down(cfg.target_units, d)
        self.trigger = round_down(cfg.trigger_units, d)
        self.max_clip = round_down(cfg.max_clip_units, d)
        self.min_notional = min_notional
        self.max_book_age_ms = max_book_age_ms
        self.passive_wait_ms = int(cfg.passive_wait_s * 1000)
        self.min_interval_ms = int(cfg.min_interval_s * 1000)
        self.mint = IdMint("hedger")
        self.bid: int | None = None
        self.ask: int | None = None
        self.bids: list[tuple[int, int]] = []
        self.asks: list[tuple[int, int]] = []
        self.book_ts_ms: int | None = None
        self.trace: dict[str, int] = {}
        self.ledger = OrderLedger(market_id=spec.market_id)
        self.clip: Clip | None = None
        self.escalation: tuple[bool, int] | None = None  # (is_ask, lots the passive leg left)
        self.last_done_ms = -(10**18)
        self.mode: Mode = "no-position"
        self.risk_state: TradingState = "HALTED"   # until the guard's state is known
        self.risk_reason = "no trading state yet"
        self.counts = {"clips": 0, "passive": 0, "aggressive": 0, "cancel": 0, "skipped": 0, "failed": 0,
                       "done": 0, "self_cross_avoided": 0, "self_cross_capped": 0, "deferred": 0,
                       "position_held": 0, "fills_timeout": 0}
        # other services' orders the gateway acked but the venue has not shown: coi -> (is_ask, price, until)
        self.inflight: dict[int, tuple[bool, int, int]] = {}
        self.hedge_trades: set[int] = set()   # trade ids of fills of our hedge orders
        self._hedge_trade_order: deque[int] = deque()
        self.hold: tuple[int, int] | None = None   # (Position ts, until): a Position that undid our hedge fills
        self._pending_position: tuple[int, int] | None = None   # (effective position, hedge fills it drops)
        self.noted: dict[str, int] = {}
        # volatility (sigma: log-return per sqrt(s)) from the books' mids
        self.vol = SigmaEstimator(VOL_HALF_LIFE_S, VOL_SAMPLE_MS)
        self.rate_watch = BudgetWatch("hedger", self.budget)   # rate vetoes back off; the maker's acks count
        self.last_clip_cost: dict[str, Any] | None = None
        self.cost_totals = {"slippage_usd": 0.0, "fees_usd": 0.0, "filled_lots": 0}

    @classmethod
    def from_settings(cls, s: Settings) -> "HedgerCore":
        spec = s.market_spec
        return cls(s.hedger, spec, min_notional_micro(s.maker.exchange_min_notional, spec),
                   min(int(s.maker.max_book_age_s * 1000), s.guard.max_book_age_ms), s.guard.rate)

    @property
    def position(self) -> int | None:
        """The venue's position plus fills after it (a fill is hedged once, before its Position arrives)."""
        return self.ledger.effective_position if self.ledger.position_known else None

    @property
    def sigma(self) -> float | None:
        """Volatility of mid, log-return per sqrt(second); None until warmed up."""
        s = self.vol.sigma_bps_per_sqrt_s
        return None if s is None or self.vol.samples < VOL_MIN_SAMPLES else s / 1e4

    # --- events ---------------------------------------------------------------------------------
    def handle(self, event: Msg | Leftovers, now_ms: int) -> list[Command]:
        if isinstance(event, Leftovers):
            return cancel_leftovers(self.mint, event, now_ms) if event.market_id == self.market_id else []
        if isinstance(event, RiskState):
            self.risk_state, self.risk_reason = event.state, event.reason
            return self._evaluate(now_ms)
        if isinstance(event, BookTop):
            if event.market_id != self.market_id:
                return []
            problem = book_problem(event)
            if problem:
                return [Reject(problem)]
            if self.book_ts_ms is not None and event.venue_ts_ms < self.book_ts_ms:
                return []
            self.book_ts_ms, self.trace = event.venue_ts_ms, dict(event.trace)
            if event.bids and event.asks:
                self.bid, self.ask = event.bids[0][0], event.asks[0][0]
                self.bids, self.asks = list(event.bids), list(event.asks)
                self.vol.update(event.venue_ts_ms, (self.bid + self.ask) / 2)
            else:
                self.bid = self.ask = None
                self.bids, self.asks = [], []
            return self._evaluate(now_ms)
        if getattr(event, "market_id", self.market_id) not in (self.market_id, -1):
            return []
        self._observe(event, now_ms)
        self.rate_watch.observe(event, now_ms)
        self.ledger.handle(event, now_ms)
        cmds: list[Command] = []
        if isinstance(event, Position):
            cmds += self._after_position(event, now_ms)
        cmds += self._settle_clip(now_ms)
        return cmds + self._evaluate(now_ms)

    def _observe(self, event: Msg, now_ms: int) -> None:
        """What the ledger does not keep for us: our clip's fills and venue time, other services' acked
        orders not shown yet, and (before a Position is applied) the hedge fills it would drop."""
        c = self.clip
        if isinstance(event, Reconcile):   # its fills and orders, as if they came one by one (its positions: no hold)
            for x in [*event.fills, *event.orders]:
                self._observe(x, now_ms)
        elif isinstance(event, Fill):
            if not self.ledger.knows_trade(event.trade_id) and source_of(event.client_order_index) == "hedger":
                self.hedge_trades.add(event.trade_id)
                self._hedge_trade_order.append(event.trade_id)
                if len(self._hedge_trade_order) > KEEP_HEDGE_TRADES:
                    self.hedge_trades.discard(self._hedge_trade_order.popleft())
                if c is not None and event.client_order_index == c.coi:
                    c.fills.append((event.price, event.size, event.fee))
        elif isinstance(event, OrderUpdate):
            if c is not None and event.client_order_index == c.coi:
                c.venue_ts_ms = max(c.venue_ts_ms, event.ts_ms)
            if is_terminal_status(event.status):
                self.inflight.pop(event.client_order_index, None)
        elif isinstance(event, OrderEvent) and event.source not in ("hedger", "gateway", ""):
            coi = event.client_order_index
            if event.kind in ("ack", "unknown") and event.action in ("place", "modify") and event.price > 0:
                self.inflight[coi] = (event.is_ask, event.price, now_ms + INFLIGHT_MS)
            elif event.kind in NOT_PLACED and event.action in ("place", "modify"):
                self.inflight.pop(coi, None)
        elif isinstance(event, Position) and self.ledger.position_known and event.ts_ms >= self.ledger.position_ts_ms:
            self._pending_position = (self.ledger.effective_position,
                                      sum(n for ts, tid, n in self.ledger.unconfirmed
                                          if ts <= event.ts_ms and tid in self.hedge_trades))

    def _after_position(self, p: Position, now_ms: int) -> list[Command]:
        pending, self._pending_position = self._pending_position, None
        if self.hold is not None and p.ts_ms > self.hold[0]:
            self.hold = None   # a later Position settles it
        if pending is None or p.market_id not in (self.market_id, -1):
            return []
        before, dropped = pending
        moved = self.ledger.effective_position - before
        if dropped == 0 or moved == 0 or (moved > 0) == (dropped > 0):
            return []
        self.hold = (p.ts_ms, now_ms + POSITION_CONFIRM_MS)
        self.counts["position_held"] += 1
        return [Note(f"position {self.spec.size_str(self.ledger.position)} at {p.ts_ms} drops hedge fills of "
                     f"{self.spec.size_str(dropped)} and moves the position by {self.spec.size_str(moved)}: "
                     f"not hedging it until the next position or {POSITION_CONFIRM_MS} ms", "warning")]

    def on_timer(self, now_ms: int) -> list[Command]:
        return self._settle_clip(now_ms) + self._evaluate(now_ms)

    def shutdown(self, now_ms: int) -> list[Command]:
        """Cancel a live clip (graceful stop)."""
        c = self.clip
        if c is None or c.canceling or c.booking_until_ms is not None:
            return []
        c.canceling = True
        return [self._cancel(c.coi, now_ms, "shutdown")]

    def _finish(self, now_ms: int, escalate_left: int = 0) -> None:
        c = self.clip
        assert c is not None
        if escalate_left > 0:
            self.escalation = (c.is_ask, escalate_left)
        self.clip = None
        self.last_done_ms = now_ms

    def _settle_clip(self, now_ms: int) -> list[Command]:
        """The live clip ended at the venue (or never got there): once its fills are booked, report its
        cost, free the slot and escalate what is left."""
        c = self.clip
        o = None if c is None else self.ledger.get(c.coi)
        if c is None or o is None or not o.terminal:
            return []
        if o.state in (State.REJECTED, State.NEVER_SENT):
            self.counts["failed"] += 1
            self._finish(now_ms)  # never reached the book; min_interval_s keeps retries calm
            return []
        cmds: list[Command] = []
        booked = c.filled_seen >= o.filled or self.ledger.position_ts_ms >= c.venue_ts_ms >= 0
        if not booked:
            if c.booking_until_ms is None:
                c.booking_until_ms = now_ms + FILLS_WAIT_MS
            if now_ms < c.booking_until_ms:
                return []   # the venue says it filled; the fills are not in the position yet: hold the slot
            self.counts["fills_timeout"] += 1
            cmds.append(Note(f"hedge {c.coi}: filled {self.spec.size_str(o.filled)} but fills of only "
                             f"{self.spec.size_str(c.filled_seen)} seen after {FILLS_WAIT_MS} ms; going on", "warning"))
        left = max(o.size - o.filled, 0) if o.state != State.FILLED else 0
        go = c.phase == "passive" and (c.escalate or o.venue_status == "canceled-post-only")
        cmds += self._report_cost(c, o.filled)
        self._finish(now_ms, left if go else 0)
        return cmds

    def _report_cost(self, c: Clip, filled: int) -> list[Command]:
        """Slippage (vs the mid at the decision, positive = we paid) and fees of an ended clip."""
        scale = self.spec.price_scale * self.spec.size_scale
        sign = -1 if c.is_ask else 1
        lots = c.filled_seen
        slip = float(sum((sign * (p - c.mid) * n for p, n, _ in c.fills), Fraction(0)) / scale)
        fees = sum(f for _, _, f in c.fills) / 1_000_000
        notional = float(c.mid * lots / scale)
        bps = slip / notional * BPS if notional > 0 else 0.0
        self.counts["done"] += 1
        self.cost_totals["slippage_usd"] += slip
        self.cost_totals["fees_usd"] += fees
        self.cost_totals["filled_lots"] += lots
        self.last_clip_cost = {"coi": c.coi, "phase": c.phase, "side": "sell" if c.is_ask else "buy", "size": c.size,
                               "filled": filled, "slippage_usd": slip, "slippage_bps": bps, "fees_usd": fees,
                               "expected_cost_usd": c.expected_cost_usd}
        return [Note(f"hedge clip {c.coi} done: filled {self.spec.size_str(filled)} of {self.spec.size_str(c.size)}, "
                     f"slippage {slip:.4f} USD ({bps:.2f} bps), fees {fees:.4f} USD")]

    # --- decisions ------------------------------------------------------------------------------
    def fresh(self, now_ms: int) -> bool:
        return (self.bid is not None and self.book_ts_ms is not None
                and now_ms - self.book_ts_ms <= self.max_book_age_ms)

    def excess(self) -> int:
        target = 0 if self.risk_state == "REDUCING" else self.target   # reducing: flatten
        return 0 if self.position is None else self.position - target

    def net_excess(self) -> int:
        """The excess less what our hedge orders still working (sent, unknown, resting) may yet reduce:
        a clip forgotten by its deadline but still alive is never hedged twice."""
        e = self.excess()
        if e > 0:
            return max(e - self.ledger.exposure(True, "hedger"), 0)
        if e < 0:
            return min(e + self.ledger.exposure(False, "hedger"), 0)
        return 0

    def own_orders(self, now_ms: int) -> list[tuple[bool, int]]:
        """Our account's orders that may rest, as the guard counts them (every live order in the ledger,
        whatever its source), at their price and a pending modify's, plus acked ones not shown yet."""
        out: list[tuple[bool, int]] = []
        for o in self.ledger.live():
            out.append((o.is_ask, o.price))
            if o.modify_to is not None:
                out.append((o.is_ask, o.modify_to[0]))
        for coi, (is_ask, price, until) in list(self.inflight.items()):
            o = self.ledger.get(coi)
            if now_ms >= until or (o is not None and (o.terminal or o.price == price)):
                del self.inflight[coi]
            else:
                out.append((is_ask, price))
        return out

    def _note_once(self, key: str, text: str, now_ms: int) -> list[Command]:
        if now_ms - self.noted.get(key, -(10**18)) < self.min_interval_ms:
            return []
        self.noted[key] = now_ms
        return [Note(text)]

    def _evaluate(self, now_ms: int) -> list[Command]:
        cmds: list[Command] = []
        live_clip = None if self.clip is None else self.clip.coi
        for o in sorted(self.ledger.live("hedger"), key=lambda o: o.coi):
            if o.coi == live_clip or now_ms - o.created_ms < STRAY_GRACE_MS:
                continue
            if o.cancel_attempts == 0:
                cmds.append(self._cancel(o.coi, now_ms, "unwanted resting order"))
            elif o.cancel_attempts < CANCEL_ATTEMPTS and now_ms - o.cancel_sent_ms >= CANCEL_RETRY_MS:
                cmds.append(self._cancel(o.coi, now_ms, "cancel not confirmed; again"))
        c = self.clip
        if c is not None and c.booking_until_ms is None and now_ms >= c.deadline_ms:
            cmds.append(Note(f"no news of hedge {c.coi} after {FATE_TIMEOUT_MS} ms; cancelling it and moving on", "warning"))
            cmds.append(self._cancel(c.coi, now_ms, "no news"))
            self._finish(now_ms)
            c = None
        booking = c is not None and c.booking_until_ms is not None   # ended; only its fills are awaited
        if self.risk_state == "HALTED":
            self.mode, self.escalation = "halted", None
            if c is not None and not c.canceling and not booking:
                c.canceling, c.escalate, c.deadline_ms = True, False, now_ms + FATE_TIMEOUT_MS
                cmds.append(self._cancel(c.coi, now_ms, "halted"))
            return cmds
        if not self.fresh(now_ms):
            self.mode, self.escalation = "stale", None
            if c is not None and c.phase == "passive" and not c.canceling and not booking:
                c.canceling, c.escalate, c.deadline_ms = True, False, now_ms + FATE_TIMEOUT_MS
                cmds.append(self._cancel(c.coi, now_ms, "stale book"))
            elif c is not None:
                c.escalate = False
            return cmds
        if self.position is None:
            self.mode = "no-position"
            return cmds
        if c is not None:
            self.mode = c.phase
            if (c.phase == "passive" and not c.canceling and not booking
                    and now_ms - c.placed_ms >= self.passive_wait_ms):
                c.canceling = c.escalate = True
                c.deadline_ms = now_ms + FATE_TIMEOUT_MS
                cmds.append(self._cancel(c.coi, now_ms, "passive wait over"))
            return cmds
        self.mode = "idle"
        if self.hold is not None and now_ms >= self.hold[1]:
            self.hold = None
        excess = self.net_excess()
        esc, self.escalation = self.escalation, None
        if abs(excess) <= (0 if self.risk_state == "REDUCING" else self.trigger):
            return cmds
        if self.hold is not None:
            return cmds + self._note_once("hold", "hedge held: the last position undid hedge fills; waiting for "
                                                  "the next one", now_ms)
        is_ask = excess > 0
        if esc is not None and esc[0] == is_ask:
            cmds.extend(self._send(is_ask, min(abs(excess), esc[1]), "aggressive", now_ms, escalated=True))
            return cmds
        if now_ms - self.last_done_ms < self.min_interval_ms or self.rate_watch.holding(now_ms):
            return cmds
        phase: Literal["passive", "aggressive"] = "passive" if self.cfg.prefer_passive else "aggressive"
        cmds.extend(self._send(is_ask, min(abs(excess), self.max_clip), phase, now_ms))
        return cmds

    def _price(self, is_ask: bool, phase: Literal["passive", "aggressive"], now_ms: int) -> tuple[int | None, bool]:
        """The clip's price kept off our own opposite orders (None: an IOC would find nothing to take
        before them), and whether our orders moved it."""
        assert self.bid is not None and self.ask is not None
        cfg = self.cfg
        if phase == "passive":
            price = passive_price(self.bid, self.ask, is_ask, frac(cfg.passive_offset_bps))
        else:
            price = aggressive_price(self.bid, self.ask, is_ask, frac(cfg.price_offset_bps), frac(cfg.max_slippage_bps))
        bound = own_bound(is_ask, self.own_orders(now_ms))
        if bound is None or (price >= bound if is_ask else price <= bound):
            return price, False
        if phase == "aggressive" and (bound > self.bid if is_ask else bound < self.ask):
            return None, True   # our own quote is the best opposite price: nothing to take before it
        if bound <= 0:
            return None, True
        return bound, True

    def _cost_and_risk(self, is_ask: bool, size: int, price: int) -> tuple[float, float | None]:
        """Expected cost (USD) of an IOC of ``size`` at limit ``price``, and the risk (USD) of not hedging it
        (None: no volatility estimate yet)."""
        assert self.bid is not None and self.ask is not None
        mid = mid_of(self.bid, self.ask)
        scale = self.spec.price_scale * self.spec.size_scale
        levels = self.bids if is_ask else self.asks
        take = take_cost_ticks(levels, size, price, is_ask, mid)
        fee = mid * size * frac(self.cfg.taker_fee_bps) / BPS
        cost = float((take + fee) / scale)
        sigma = self.sigma
        if sigma is None:
            return cost, None
        risk = float(mid * size / scale) * sigma * math.sqrt(float(self.cfg.risk_horizon_s)) * float(self.cfg.risk_aversion)
        return cost, risk

    def _send(self, is_ask: bool, lots: int, phase: Literal["passive", "aggressive"], now_ms: int,
              escalated: bool = False) -> list[Command]:
        assert self.bid is not None and self.ask is not None and self.position is not None
        cfg = self.cfg
        side = "sell" if is_ask else "buy"
        excess = abs(self.net_excess())
        cmds: list[Command] = []
        price, capped = self._price(is_ask, phase, now_ms)
        expected: float | None = None
        if phase == "aggressive" and price is None:
            self.counts["self_cross_avoided"] += 1
            cmds += self._note_once("self-cross", f"no taker {side}: our own {'bid' if is_ask else 'ask'} is the best "
                                                  "opposite price; the maker's skew works the position off", now_ms)
        elif phase == "aggressive":
            assert price is not None
            size = clip_size(excess, lots, min_lots_at(self.spec, price, self.min_notional)) or lots
            expected, risk = self._cost_and_risk(is_ask, size, price)
            if risk is not None and risk < expected and self.risk_state != "REDUCING":
                self.counts["deferred"] += 1
                cmds += self._note_once("deferred", f"hedge deferred: expected cost {expected:.4f} USD > risk "
                                                    f"{risk:.4f} USD ({side} {self.spec.size_str(size)})", now_ms)
                price = None
        if phase == "aggressive" and price is None:
            if escalated:
                return cmds   # the passive leg just ended: the next clip, after min_interval_s, is passive again
            phase = "passive"
            price, capped = self._price(is_ask, phase, now_ms)
            expected = None
        if price is None:
            self.last_done_ms = now_ms
            return cmds
        if capped:
            self.counts["self_cross_capped"] += 1
        size = clip_size(excess, lots, min_lots_at(self.spec, price, self.min_notional))
        if size is None:
            self.counts["skipped"] += 1
            self.last_done_ms = now_ms  # log once per interval, not on every book
            return cmds + [Note(f"skip hedge: {side} of excess {self.spec.size_str(excess)} would need the venue minimum "
                                f"{self.spec.size_str(min_lots_at(self.spec, price, self.min_notional))} and overshoot the "
                                "target by more than it reduces")]
        reduce_only = (self.position > 0) == is_ask and self.position != 0 and size <= abs(self.position)
        what = (f"{phase} {side} {self.spec.size_str(size)}@{self.spec.price_str(price)} "
                f"(position {self.spec.size_str(self.position)}, target {self.spec.size_str(self.target)})")
        if cfg.dry_run:
            self.last_done_ms = now_ms
            return cmds + [Note(f"dry-run hedge: {what}")]
        if self.budget is not None:
            if self.budget.room("hedger", now_ms) < 1:   # the guard would refuse it: wait for room
                self.counts["budget_waits"] = self.counts.get("budget_waits", 0) + 1
                return cmds
            self.budget.take(now_ms, source="hedger")
        coi = self.mint.next_coi(now_ms)
        iid = self.mint.intent_id(coi)
        wait = self.passive_wait_ms if phase == "passive" else 0
        self.clip = Clip(coi, iid, is_ask, price, size, phase, now_ms, now_ms + wait + FATE_TIMEOUT_MS,
                         mid=mid_of(self.bid, self.ask), expected_cost_usd=expected)
        self.ledger.placed(coi, self.market_id, is_ask, price, size, "hedger", iid, now_ms, reduce_only)
        self.mode = phase
        self.counts["clips"] += 1
        self.counts[phase] += 1
        tif: Literal["post_only", "ioc"] = "post_only" if phase == "passive" else "ioc"
        return cmds + [Note(f"hedge: {what}"), Place(coi, iid, is_ask, price, size, tif, reduce_only, dict(self.trace))]

    def _cancel(self, coi: int, now_ms: int, reason: str) -> Cancel:
        self.counts["cancel"] += 1
        self.ledger.cancel_sent(coi, now_ms)
        return Cancel(coi, self.mint.intent_id(self.mint.next_coi(now_ms)), reason, dict(self.trace))

    # --- observability ---
    def _clip_state(self, coi: int) -> str | None:
        o = self.ledger.get(coi)
        return None if o is None else o.state.value

    def snapshot(self) -> dict[str, Any]:
        c = self.clip
        sigma = self.sigma
        return {
            "mode": self.mode,
            "dry_run": self.cfg.dry_run,
            "position": self.position,
            "target": self.target,
            "excess": self.excess(),
            "clip": None if c is None else {"coi": c.coi, "side": "ask" if c.is_ask else "bid", "price": c.price,
                                            "size": c.size, "phase": c.phase, "canceling": c.canceling,
                                            "booking": c.booking_until_ms is not None,
                                            "state": self._clip_state(c.coi)},
            "ledger": self.ledger.summary("hedger"),
            "counts": dict(self.counts),
            "cost": dict(self.cost_totals),
            "last_clip_cost": self.last_clip_cost,
            "sigma_bps": None if sigma is None else sigma * BPS,
            "held": self.hold is not None,
        }
