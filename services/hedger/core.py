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

One clip at a time: nothing new is sent while a clip is live or its fate unknown, and a new clip
waits ``min_interval_s`` after the previous one ended (time for the position to settle). The
position is unknown until the first ``Position`` message: no hedging before that. Like the maker
it never acts on a book older than ``maker.max_book_age_s`` and cancels a resting passive clip
when the book goes stale.

The guard's trading state (``risk:events``) decides what it may do: ``HALTED`` sends nothing and
cancels a live clip; ``REDUCING`` hedges toward zero (whatever ``target_units``) with no trigger
band, reduce-only, until the guard resumes. A missing state counts as ``HALTED``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from shared.books import book_problem
from shared.commands import STRAY_GRACE_MS, Cancel, Command, Leftovers, Note, Place, Reject, cancel_leftovers
from shared.config import HedgerConfig, Settings
from shared.ids import IdMint
from shared.ledger import OrderLedger, State
from shared.markets import MarketSpec, round_down
from shared.pricing import BPS, frac, mid_of, min_lots_at, min_notional_micro
from shared.schemas import BookTop, Msg, RiskState, TradingState

Mode = Literal["idle", "passive", "aggressive", "stale", "no-position", "halted"]
MODES: tuple[Mode, ...] = ("idle", "passive", "aggressive", "stale", "no-position", "halted")
HEDGE_TTL_MS = 2_000      # a hedge priced on a book must reach the venue soon or not at all
FATE_TIMEOUT_MS = 10_000  # no fate for a clip this long after it was due: cancel it by coi and move on
CANCEL_ATTEMPTS = 3       # a cancel of a forgotten hedge order is sent again, this many times in all
CANCEL_RETRY_MS = 5_000


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
    canceling: bool = False
    escalate: bool = False  # we cancelled it to go aggressive


class HedgerCore:
    def __init__(self, cfg: HedgerConfig, spec: MarketSpec, min_notional: int, max_book_age_ms: int) -> None:
        self.cfg, self.spec = cfg, spec
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
        self.book_ts_ms: int | None = None
        self.trace: dict[str, int] = {}
        self.ledger = OrderLedger(market_id=spec.market_id)
        self.clip: Clip | None = None
        self.escalation: tuple[bool, int] | None = None  # (is_ask, lots the passive leg left)
        self.last_done_ms = -(10**18)
        self.mode: Mode = "no-position"
        self.risk_state: TradingState = "HALTED"   # until the guard's state is known
        self.risk_reason = "no trading state yet"
        self.counts = {"clips": 0, "passive": 0, "aggressive": 0, "cancel": 0, "skipped": 0, "failed": 0}

    @classmethod
    def from_settings(cls, s: Settings) -> "HedgerCore":
        spec = s.market_spec
        return cls(s.hedger, spec, min_notional_micro(s.maker.exchange_min_notional, spec),
                   min(int(s.maker.max_book_age_s * 1000), s.guard.max_book_age_ms))

    @property
    def position(self) -> int | None:
        """The venue's position plus fills after it (a fill is hedged once, before its Position arrives)."""
        return self.ledger.effective_position if self.ledger.position_known else None

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
            else:
                self.bid = self.ask = None
            return self._evaluate(now_ms)
        if getattr(event, "market_id", self.market_id) not in (self.market_id, -1):
            return []
        self.ledger.handle(event, now_ms)
        self._settle_clip(now_ms)
        return self._evaluate(now_ms)

    def on_timer(self, now_ms: int) -> list[Command]:
        return self._evaluate(now_ms)

    def shutdown(self, now_ms: int) -> list[Command]:
        """Cancel a live clip (graceful stop)."""
        c = self.clip
        if c is None or c.canceling:
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

    def _settle_clip(self, now_ms: int) -> None:
        """The live clip ended at the venue (or never got there): free the slot, escalate what is left."""
        c = self.clip
        o = None if c is None else self.ledger.get(c.coi)
        if c is None or o is None or not o.terminal:
            return
        if o.state in (State.REJECTED, State.NEVER_SENT):
            self.counts["failed"] += 1
            self._finish(now_ms)  # never reached the book; min_interval_s keeps retries calm
            return
        left = max(o.size - o.filled, 0) if o.state != State.FILLED else 0
        go = c.phase == "passive" and (c.escalate or o.venue_status == "canceled-post-only")
        self._finish(now_ms, left if go else 0)

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
        if c is not None and now_ms >= c.deadline_ms:
            cmds.append(Note(f"no news of hedge {c.coi} after {FATE_TIMEOUT_MS} ms; cancelling it and moving on", "warning"))
            cmds.append(self._cancel(c.coi, now_ms, "no news"))
            self._finish(now_ms)
            c = None
        if self.risk_state == "HALTED":
            self.mode, self.escalation = "halted", None
            if c is not None and not c.canceling:
                c.canceling, c.escalate, c.deadline_ms = True, False, now_ms + FATE_TIMEOUT_MS
                cmds.append(self._cancel(c.coi, now_ms, "halted"))
            return cmds
        if not self.fresh(now_ms):
            self.mode, self.escalation = "stale", None
            if c is not None and c.phase == "passive" and not c.canceling:
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
            if c.phase == "passive" and not c.canceling and now_ms - c.placed_ms >= self.passive_wait_ms:
                c.canceling = c.escalate = True
                c.deadline_ms = now_ms + FATE_TIMEOUT_MS
                cmds.append(self._cancel(c.coi, now_ms, "passive wait over"))
            return cmds
        self.mode = "idle"
        excess = self.net_excess()
        esc, self.escalation = self.escalation, None
        if abs(excess) <= (0 if self.risk_state == "REDUCING" else self.trigger):
            return cmds
        is_ask = excess > 0
        if esc is not None and esc[0] == is_ask:
            cmds.extend(self._send(is_ask, min(abs(excess), esc[1]), "aggressive", now_ms))
            return cmds
        if now_ms - self.last_done_ms < self.min_interval_ms:
            return cmds
        phase: Literal["passive", "aggressive"] = "passive" if self.cfg.prefer_passive else "aggressive"
        cmds.extend(self._send(is_ask, min(abs(excess), self.max_clip), phase, now_ms))
        return cmds

    def _send(self, is_ask: bool, lots: int, phase: Literal["passive", "aggressive"], now_ms: int) -> list[Command]:
        assert self.bid is not None and self.ask is not None and self.position is not None
        cfg = self.cfg
        if phase == "passive":
            price = passive_price(self.bid, self.ask, is_ask, frac(cfg.passive_offset_bps))
        else:
            price = aggressive_price(self.bid, self.ask, is_ask, frac(cfg.price_offset_bps), frac(cfg.max_slippage_bps))
        excess = abs(self.net_excess())
        size = clip_size(excess, lots, min_lots_at(self.spec, price, self.min_notional))
        side = "sell" if is_ask else "buy"
        if size is None:
            self.counts["skipped"] += 1
            self.last_done_ms = now_ms  # log once per interval, not on every book
            return [Note(f"skip hedge: {side} of excess {self.spec.size_str(excess)} would need the venue minimum "
                         f"{self.spec.size_str(min_lots_at(self.spec, price, self.min_notional))} and overshoot the target "
                         "by more than it reduces")]
        reduce_only = (self.position > 0) == is_ask and self.position != 0 and size <= abs(self.position)
        what = (f"{phase} {side} {self.spec.size_str(size)}@{self.spec.price_str(price)} "
                f"(position {self.spec.size_str(self.position)}, target {self.spec.size_str(self.target)})")
        if cfg.dry_run:
            self.last_done_ms = now_ms
            return [Note(f"dry-run hedge: {what}")]
        coi = self.mint.next_coi(now_ms)
        iid = self.mint.intent_id(coi)
        wait = self.passive_wait_ms if phase == "passive" else 0
        self.clip = Clip(coi, iid, is_ask, price, size, phase, now_ms, now_ms + wait + FATE_TIMEOUT_MS)
        self.ledger.placed(coi, self.market_id, is_ask, price, size, "hedger", iid, now_ms, reduce_only)
        self.mode = phase
        self.counts["clips"] += 1
        self.counts[phase] += 1
        tif: Literal["post_only", "ioc"] = "post_only" if phase == "passive" else "ioc"
        return [Note(f"hedge: {what}"), Place(coi, iid, is_ask, price, size, tif, reduce_only, dict(self.trace))]

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
        return {
            "mode": self.mode,
            "dry_run": self.cfg.dry_run,
            "position": self.position,
            "target": self.target,
            "excess": self.excess(),
            "clip": None if c is None else {"coi": c.coi, "side": "ask" if c.is_ask else "bid", "price": c.price,
                                            "size": c.size, "phase": c.phase, "canceling": c.canceling,
                                            "state": self._clip_state(c.coi)},
            "ledger": self.ledger.summary("hedger"),
            "counts": dict(self.counts),
        }
