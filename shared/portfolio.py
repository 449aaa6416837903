"""The account's money since a baseline, exact: the guard's drawdown reads it, ``mm_portfolio_*`` exports it.

One truth for PnL: the guard feeds it every fill once (its ledger dedups by trade id) and marks it to
the mid it already tracks. The baseline is the first moment both the position and a mid are known:
the position held then counts as bought at that mid, so PnL is what happened since this process
started watching, never a guess about history.

Units: money in 2 x micro-USDC (``*2`` fields; the 2 keeps a mid between two ticks exact), sizes in
lots. Realised PnL uses the average cost of the open position; ``pnl = realised + unrealised - fees``
holds exactly. A fill's ``fee`` is micro-USDC (negative for a rebate).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from shared.markets import MarketSpec

SOURCES = ("maker", "hedger", "operator", "other")


@dataclass(slots=True)
class SourceTotals:
    fills: int = 0
    lots: int = 0
    notional2: int = 0   # 2 x micro-USDC traded
    fees: int = 0        # micro-USDC paid


@dataclass(slots=True)
class Portfolio:
    spec: MarketSpec
    position: int | None = None        # lots since the baseline (None: no baseline yet)
    cash2: int = 0                     # sells +, buys -, fees not included
    basis2: Fraction = Fraction(0)     # the open position's cost at average price (signed like the position)
    realised2: Fraction = Fraction(0)
    fees: int = 0                      # micro-USDC
    by_source: dict[str, SourceTotals] = field(default_factory=lambda: {s: SourceTotals() for s in SOURCES})
    as_of_ms: int = 0                  # the venue's time of the baseline position
    day: int | None = None             # the UTC day (days since the epoch) ``day_open2`` belongs to
    day_open2: int = 0                 # PnL at that day's first roll (0 when the baseline began that day)

    @property
    def started(self) -> bool:
        return self.position is not None

    def start(self, position: int, mid2: int, as_of_ms: int = 0) -> None:
        """The baseline: ``position`` lots held at ``mid2`` (2 x the mid in ticks), as the venue reported it at
        ``as_of_ms``: a fill stamped at or before that is in it already (positions and fills come on separate
        channels, in any order), so ``on_fill`` skips it."""
        self.position = position
        self.as_of_ms = as_of_ms
        self.basis2 = Fraction(self._signed2(mid2, position))
        self.cash2 = -self._signed2(mid2, position)

    def on_fill(self, is_ask: bool, price: int, size: int, fee: int, source: str | None, ts_ms: int = 0) -> None:
        """One fill (ticks, lots, micro-USDC), each once; before the baseline (or stamped before the position
        it started from) it is already in that position."""
        if self.position is None or (ts_ms and ts_ms <= self.as_of_ms):
            return
        flow2 = self.spec.notional_micro(2 * price, size)
        t = self.by_source[source if source in self.by_source else "other"]
        t.fills, t.lots, t.notional2, t.fees = t.fills + 1, t.lots + size, t.notional2 + flow2, t.fees + fee
        self.fees += fee
        self.cash2 += flow2 if is_ask else -flow2
        signed = -size if is_ask else size
        pos = self.position
        if pos == 0 or (pos > 0) == (signed > 0):          # opening or adding: the basis grows at this price
            self.basis2 += flow2 if signed > 0 else -flow2
        else:
            closed = min(abs(signed), abs(pos))
            avg2 = self.basis2 / pos                          # 2 x micro-USDC per lot (positive)
            px2 = Fraction(flow2, size)
            # a long sold (or a short bought back) realises the difference to its average cost
            self.realised2 += (px2 - avg2) * closed * (1 if pos > 0 else -1)
            self.basis2 = self.basis2 * (abs(pos) - closed) / abs(pos)
            rest = abs(signed) - closed
            if rest:                                          # flipped: the remainder opens at this price
                self.basis2 = px2 * rest * (1 if signed > 0 else -1)
        self.position = pos + signed

    def _signed2(self, mid2: int, lots: int) -> int:
        mark = self.spec.notional_micro(mid2, abs(lots))
        return mark if lots >= 0 else -mark

    def mark2(self, mid2: int) -> int:
        """The position at ``mid2``, 2 x micro-USDC (signed)."""
        assert self.position is not None
        return self._signed2(mid2, self.position)

    def pnl2(self, mid2: int) -> int:
        """2 x PnL in micro-USDC since the baseline, marked to ``mid2``, after fees."""
        return self.cash2 + self.mark2(mid2) - 2 * self.fees

    def roll_day(self, day: int, mid2: int | None) -> None:
        """Called about every second with the UTC day: the PnL at a new day's start is today's zero."""
        if self.position is None or mid2 is None or day == self.day:
            return
        self.day_open2 = 0 if self.day is None else self.pnl2(mid2)
        self.day = day

    def unrealised2(self, mid2: int) -> Fraction:
        return self.mark2(mid2) - self.basis2

    def view(self, mid2: int | None, every_source: bool = False) -> dict[str, object]:
        """USD figures rounded to the micro-USDC (for /health, the status view and ``mm_portfolio_*``; the
        exact ones are the ``*2`` fields). ``by_source`` holds the sources that traded, or all of them."""
        def usd(v: Fraction | int, scale: int = 2 * 10**6) -> float:
            return round(float(Fraction(v) / scale), 6)
        out: dict[str, object] = {"started": self.started, "position_lots": self.position,
                                  "fees_usd": usd(self.fees, 10**6), "realised_usd": usd(self.realised2)}
        if self.position is not None and mid2 is not None:
            out |= {"pnl_usd": usd(self.pnl2(mid2)), "pnl_today_usd": usd(self.pnl2(mid2) - self.day_open2),
                    "unrealised_usd": usd(self.unrealised2(mid2)),
                    "inventory_usd": usd(self.mark2(mid2))}
        out["by_source"] = {s: {"fills": t.fills, "volume_usd": usd(t.notional2), "fees_usd": usd(t.fees, 10**6),
                                "lots": t.lots} for s, t in self.by_source.items() if t.fills or every_source}
        return out
