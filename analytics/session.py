"""The market-making metrics of one session, exactly (definitions: research ``metrics.md`` §5.1).

One implementation for ``scripts/mm_report.py`` (Redis streams), ``scripts/fetch_trades.py`` (REST
trades), the strategy lab (simulated messages) and anything live that wants the same numbers.

Feeding
-------
``SessionBuilder(spec, account_index)`` takes the bus messages (``shared.schemas``) one by one through
``feed(msg)``: ``BookTop`` (mids), ``Fill`` (our executions), ``OrderUpdate`` (our resting quotes),
``OrderIntent`` (what the maker submitted), ``Reconcile`` (its fills, orders and positions) and
``Position`` (the venue's position: the first one minus the fills fed before it, in account-stream
order, is the inventory held before the first fill; ``initial_position=`` overrides it); anything
else, or another market, is ignored. The streams may be fed one after the other or interleaved.
``feed`` stores integers only (ticks, lots, micro-USDC, ms), so it costs a few attribute reads per
message. Fills are de-duplicated by ``(trade_id, is_ask)``: the same fill arrives
from the account stream and again from a gateway reconcile. ``build_session(messages, spec)`` feeds an
iterable (a recorded JSONL file through ``read_messages(path)``, or ``analytics.streams.load_builder``
for the Redis streams): one path for every source.

Time
----
Exchange time only: ``BookTop.venue_ts_ms``, ``Fill.ts_ms``, ``Position.ts_ms``, ``OrderUpdate.ts_ms``
(``OrderIntent`` has no exchange time: its producer's ``created_ms``). ``feed(msg, ts_ms)``'s ``ts_ms``
(arrival time) is used only when a message carries 0. An ``OrderUpdate``'s ``ts_ms`` is the order's
``transaction_time`` (``shared.lighter_wire.order_update``): the time of the tx that last changed it
(the local venue kept the creation time until this was noticed; data recorded then, or from a venue
that does, would date a cancel as old as the order). So, defensively, an update is dated no earlier
than the latest exchange time already seen on the account stream (fills, positions, updates, in
account-stream order), and an order that ends ``filled`` ends at its last fill's ``ts_ms``. Events at
the same millisecond: fills first, then books (a book frame stamped with a trade's millisecond is taken
to show the book after the trade).

The window is ``(start_ms, end_ms]``: default start = the first book's time (a mid must exist at the
start: an earlier ``start_ms`` is moved to it, see the summary's ``start_ms``), default end = the last
exchange time seen in any message. Fills at or before the start are inventory held at the start
(``position_start_lots``), not window fills. Every number is evaluated at exactly ``end_ms``: no time
grid is involved in PnL, attribution, drawdown or markouts.

Exact money
-----------
Mids are kept as ``bid_ticks + ask_ticks`` (twice the mid, an integer), cash as ticks x lots, fees as the
per-fill integer micro-USDC ``Fill.fee``, never recomputed here (whoever derives a fee from a trade's
rate must round as the venue does: ``shared.fees.fee_micro``); totals are integer sums. With m the
mid, q the position, X the cash and F the fees:

- equity E_t = X_t + q_t m_t - F_t (mark-to-mid); ``pnl`` = E_end - E_start;
- ``spread_capture`` = sum_i s_i v_i (m_{t_i-} - p_i), m_{t_i-} = the mid just before fill i (the last
  book with ``venue_ts_ms < ts_ms``); s = +1 when we bought;
- ``inventory_pnl`` = sum over mid changes of q (m_new - m_old), q = the position held over the change;
- ``fees`` = sum f_i (positive = paid, negative = rebate);

and ``pnl == spread_capture + inventory_pnl - fees`` holds exactly (``attribution`` returns them as
``Fraction``; the summary's decimal strings are the same numbers written out exactly, at least 6
decimals, more when the half-tick mid needs them: ``Decimal(s)`` arithmetic gives the identity back).

Other definitions
-----------------
- markout(h) per source (``maker`` / ``hedger`` / ``other``, from ``shared.ids.source_of`` on the
  client_order_index) = sum v s (m_{t+h} - p) / sum v, in bps of m_{t-}: sum v s (m_{t+h} - p) / m_{t-}
  x 1e4 / sum v; m_{t+h} = the last mid at or before t+h. Horizon h uses every window fill with
  t + h <= min(end, last exchange time) (``n`` per horizon); ``"0ms"`` is the edge (m_{t-} itself).
  ``markout_common_bps`` is the same on the one fill set observable at the largest horizon.
- fill ratio (maker) = lots filled of the maker orders submitted in the window (``created_ms`` in
  [start, end], fills linked by client_order_index) / maker lots submitted: every ``place``'s size, plus
  every ``modify``'s new remaining size (its new total size minus what that order had filled by the
  modify's ``created_ms``): each re-quote is a new submission, an in-place amend counts once.
- uptime (maker quotes) = fraction of the window with a maker bid resting, an ask, both (two-sided),
  either; an order rests from its ``open`` OrderUpdate to its first ``filled``/``canceled*`` one,
  in exchange time (so the time between a request and the venue's ack is down time).
- Sharpe = mean / std (ddof 1) of the equity changes over consecutive complete ``sharpe_interval_s``
  intervals from the start, *per interval, not annualised*; absent (``None`` with the reason) with
  fewer than ``sharpe_min_samples`` intervals or zero variance. Sortino likewise with the downside
  deviation sqrt(mean(min(dE, 0)^2)).
- max drawdown = max over every event time of (running peak of E) - E, exact.
- inventory: time-weighted mean, std and mean |q| over the window, max |q|, final q.

Summary (``summarize``), JSON-ready
-----------------------------------
Money ``*_usd``: exact decimal strings; base-unit sizes ``*_base`` / ``volume_*``: exact decimal strings;
lots, counts, ms: ints; ratios, bps, Sharpe: floats or ``None``::

    {market_id, symbol, start_ms, end_ms, sim_seconds, books,
     pnl_usd, spread_capture_usd, inventory_pnl_usd, fees_usd, fees_micro, liquidation_pnl_usd,
     cash_usd, end_mid, position_start_lots, position_end_lots, position_end_base, venue_position_lots,
     fills, fills_maker, fills_hedger, fills_other, volume_maker, volume_hedger, volume_other,
     volume_maker_lots, volume_hedger_lots, volume_other_lots, fills_before_start, duplicate_fills,
     by_source: {maker|hedger|other: {fills, maker_fills, taker_fills, volume_lots, volume_base,
                                      notional_usd, fees_usd, fees_micro, spread_capture_usd}},
     fill_ratio_maker, submitted_lots_maker, filled_lots_maker, orders_placed_maker, orders_modified_maker,
     max_abs_position: {lots, base},
     inventory: {tw_mean_base, tw_std_base, tw_mean_abs_base, max_abs_lots, max_abs_base, final_lots, final_base},
     sharpe: {value, interval_s, samples, min_samples, reason, scaling}, sortino: {value, reason},
     max_drawdown_usd, return_over_mdd,
     markout_bps: {maker|hedger|other: {"0ms"|"100ms"|...: {n, volume_lots, per_unit_usd, bps}}},
     markout_common_bps: (same shape), markout_reference: str,
     two_sided_uptime, uptime_maker: {bid, ask, both, any}}

Curves (``curves``), for charts; every series is a list of rows, ``t_ms`` exchange time, sampled at
``start + k * step_ms`` and at ``end`` (step functions: the value in force at that time), floats::

    {start_ms, end_ms, step_ms,
     equity:    [[t_ms, pnl_usd, spread_capture_usd, inventory_pnl_usd, fees_usd], ...]  # fees = cost paid,
                                                               # so pnl = capture + inventory - fees per row
     inventory: [[t_ms, position_base], ...],
     quotes:    [[t_ms, mid, our_best_bid | None, our_best_ask | None], ...]     # maker quotes, price units
     book:      [[t_ms, best_bid, best_ask], ...],
     markouts:  {maker|hedger|other: [[horizon_ms, bps | None], ...]},           # horizon 0 = edge
     fills:     [[t_ms, source, side (+1 bought / -1 sold), price, size_base], ...]}
"""
from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

from pydantic import TypeAdapter

from shared.ids import source_of
from shared.markets import MarketSpec
from shared.schemas import AnyMsg, BookTop, Fill, Msg, OrderIntent, OrderUpdate, Position, Reconcile, decode

SOURCES = ("maker", "hedger", "other")
DEFAULT_HORIZONS_MS = (100, 1000, 5000, 30000, 60000)
CURVE_HORIZONS_MS = (0, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
SHARPE_INTERVAL_S = 60
SHARPE_MIN_SAMPLES = 30
TERMINAL_PREFIXES = ("filled", "canceled")
MARKOUT_REFERENCE = "mid just before the fill: the last book with venue_ts_ms < fill ts_ms"
MICRO = 1_000_000


class NoBookData(ValueError):
    """No mid for the market in the data (nothing can be marked)."""


def fill_source(client_order_index: int) -> str:
    """``maker`` / ``hedger`` for our producers' orders, ``other`` for the operator's and foreign ones."""
    s = source_of(client_order_index)
    return s if s in ("maker", "hedger") else "other"


def _intent_source(source: str) -> str:
    return source if source in ("maker", "hedger") else "other"


@dataclass(frozen=True, slots=True)
class SessionFill:
    """One of our fills, integers only: ``price`` ticks, ``size`` lots, ``fee`` micro-USDC (positive = paid)."""

    ts_ms: int
    market_id: int
    source: str      # "maker" | "hedger" | "other"
    is_ask: bool     # we sold
    is_maker: bool
    price: int
    size: int
    fee: int
    trade_id: int
    client_order_index: int = 0   # 0 when unknown (links a fill to its submission for the fill ratio)

    @property
    def side(self) -> int:
        """+1 we bought, -1 we sold."""
        return -1 if self.is_ask else 1

    @classmethod
    def from_fill(cls, f: Fill, ts_ms: int | None = None) -> SessionFill:
        return cls(f.ts_ms or (ts_ms or 0), f.market_id, fill_source(f.client_order_index), f.is_ask, f.is_maker,
                   f.price, f.size, f.fee, f.trade_id, f.client_order_index)


# ------------------------------------------------------------------------------------------------ totals
@dataclass(frozen=True, slots=True)
class FillTotals:
    """Sums over a set of fills, integers: ``*_tl`` are sum(price x size) in ticks x lots."""

    fills: int = 0
    maker_fills: int = 0
    taker_fills: int = 0
    bought_lots: int = 0
    sold_lots: int = 0
    bought_tl: int = 0
    sold_tl: int = 0
    fees_micro: int = 0
    first_ms: int | None = None
    last_ms: int | None = None

    @property
    def position_lots(self) -> int:
        return self.bought_lots - self.sold_lots

    @property
    def cash_tl(self) -> int:
        return self.sold_tl - self.bought_tl

    @property
    def volume_lots(self) -> int:
        return self.bought_lots + self.sold_lots

    @property
    def notional_tl(self) -> int:
        return self.bought_tl + self.sold_tl


def fill_totals(fills: Iterable[SessionFill]) -> FillTotals:
    n = mk = bl = sl = btl = stl = fee = 0
    first: int | None = None
    last: int | None = None
    for f in fills:
        n += 1
        mk += f.is_maker
        fee += f.fee
        if f.is_ask:
            sl += f.size
            stl += f.price * f.size
        else:
            bl += f.size
            btl += f.price * f.size
        first = f.ts_ms if first is None or f.ts_ms < first else first
        last = f.ts_ms if last is None or f.ts_ms > last else last
    return FillTotals(n, mk, n - mk, bl, sl, btl, stl, fee, first, last)


def usd_of_tl(tl: int, spec: MarketSpec) -> Fraction:
    """ticks x lots -> USD, exact."""
    return Fraction(tl, spec.price_scale * spec.size_scale)


def usd_of_micro(micro: int) -> Fraction:
    return Fraction(micro, MICRO)


def equity_usd(t: FillTotals, spec: MarketSpec, mark: Fraction) -> Fraction:
    """X + q * mark - F for fills starting flat (``mark`` in USD per base unit), exact."""
    return usd_of_tl(t.cash_tl, spec) + Fraction(t.position_lots, spec.size_scale) * mark - usd_of_micro(t.fees_micro)


def spread_capture_usd(fills_with_mid: Iterable[tuple[SessionFill, Fraction]], spec: MarketSpec) -> Fraction:
    """sum s v (mid - p) for fills whose mid at fill time is known some other way (``mid`` in USD), exact."""
    ps, ss = spec.price_scale, spec.size_scale
    return sum((Fraction(f.side * f.size, ss) * (mid - Fraction(f.price, ps)) for f, mid in fills_with_mid), Fraction(0))


# ------------------------------------------------------------------------------------------------ exact decimals
def exact_decimal(x: Fraction | int, min_places: int = 6) -> str:
    """The exact decimal expansion of ``x`` (its denominator must divide a power of ten), at least
    ``min_places`` decimals: ``Fraction(12345, 10**6)`` -> ``"0.012345"``, ``Fraction(1, 2*10**6)`` -> ``"0.0000005"``."""
    x = Fraction(x)
    den = x.denominator
    places = 0
    while den % 10 == 0:
        den //= 10
        places += 1
    while den % 2 == 0:
        den //= 2
        places += 1
    while den % 5 == 0:
        den //= 5
        places += 1
    if den != 1:
        raise ValueError(f"{x} has no finite decimal expansion")
    places = max(places, min_places)
    scaled = x * 10**places
    assert scaled.denominator == 1
    v = scaled.numerator
    sign = "-" if v < 0 else ""
    s = str(abs(v)).rjust(places + 1, "0")
    return f"{sign}{s[:-places]}.{s[-places:]}" if places else f"{sign}{s}"


# ------------------------------------------------------------------------------------------------ builder
@dataclass
class SessionData:
    """A frozen, sorted snapshot of a builder (``SessionBuilder.freeze``); what the metrics read."""

    spec: MarketSpec
    account_index: int | None
    book_t: list[int]
    book_bid: list[int]
    book_ask: list[int]
    fills: list[SessionFill]           # sorted by (ts_ms, trade_id, is_ask)
    fill_t: list[int]
    edges: list[tuple[int, int, bool, int, int, str]]  # (ts, order_index, is_ask, price, +1 open / -1 close, source)
    submissions: list[tuple[int, str, int, int]]       # (created_ms, source, lots offered, client_order_index)
    places: dict[str, int]
    modifies: dict[str, int]
    initial_position: int
    last_position: int | None
    first_ts: int | None
    last_ts: int | None
    duplicate_fills: int

    def mid2_at(self, t: int) -> int | None:
        """2 x the mid (ticks) of the last book at or before ``t``."""
        i = bisect.bisect_right(self.book_t, t) - 1
        return None if i < 0 else self.book_bid[i] + self.book_ask[i]

    def mid2_before(self, t: int) -> int | None:
        """2 x the mid (ticks) of the last book strictly before ``t``."""
        i = bisect.bisect_left(self.book_t, t) - 1
        return None if i < 0 else self.book_bid[i] + self.book_ask[i]


class SessionBuilder:
    """Accumulates one market's session from bus messages (see the module docstring)."""

    def __init__(self, spec: MarketSpec, account_index: int | None = None, initial_position: int | None = None) -> None:
        self.spec = spec
        self.account_index = account_index
        self.market_id = spec.market_id
        self.book_t: list[int] = []
        self.book_bid: list[int] = []
        self.book_ask: list[int] = []
        self.fills: list[SessionFill] = []
        self.edges: list[tuple[int, int, bool, int, int, str]] = []
        self.submissions: list[tuple[int, str, int, int]] = []
        self.places = {s: 0 for s in SOURCES}
        self.modifies = {s: 0 for s in SOURCES}
        self.duplicate_fills = 0
        self.undecodable = 0  # entries a loader could not decode (set by analytics.streams)
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.last_position: int | None = None
        self._initial_position = initial_position
        self._first_position: int | None = None
        self._lots_at_first_position = 0
        self._net_lots = 0
        self._seen: set[tuple[int, bool]] = set()
        self._modifies: list[tuple[int, str, int, int]] = []    # (created_ms, source, client_order_index, new total)
        self._live: dict[int, tuple[bool, int, str, int]] = {}   # order_index -> (is_ask, price, source, open ts)
        self._done: set[int] = set()
        self._acct_clock = 0                                     # latest exchange time seen on the account stream
        self._last_fill_ts: dict[int, int] = {}                  # order_index -> its latest fill's ts
        self._filled_closes: list[tuple[int, int, int]] = []     # (edge index, order_index, open ts) of orders that filled
        self._frozen: SessionData | None = None

    # -- feeding -----------------------------------------------------------------------------------
    def _stamp(self, ts: int) -> None:
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts

    def feed(self, msg: object, ts_ms: int | None = None) -> None:
        """Take one bus message (``ts_ms``: its arrival time, only a fallback for a 0 exchange time)."""
        t = type(msg)
        if t is BookTop:
            self._book(msg, ts_ms)  # type: ignore[arg-type]
        elif t is Fill:
            self._fill(msg, ts_ms)  # type: ignore[arg-type]
        elif t is OrderUpdate:
            self._order(msg, ts_ms)  # type: ignore[arg-type]
        elif t is OrderIntent:
            self._intent(msg, ts_ms)  # type: ignore[arg-type]
        elif t is Reconcile:
            for f in msg.fills:  # type: ignore[attr-defined]
                self._fill(f, ts_ms)
            for o in msg.orders:  # type: ignore[attr-defined]
                self._order(o, ts_ms)
            for p in msg.positions:  # type: ignore[attr-defined]
                self._position(p, ts_ms)
        elif t is Position:
            self._position(msg, ts_ms)  # type: ignore[arg-type]

    def _book(self, m: BookTop, fallback: int | None) -> None:
        if m.market_id != self.market_id or not m.bids or not m.asks:
            return
        ts = m.venue_ts_ms or (fallback or 0)
        self._stamp(ts)
        b, a = m.bids[0][0], m.asks[0][0]
        bt = self.book_t
        if bt and self.book_bid[-1] == b and self.book_ask[-1] == a and ts >= bt[-1]:
            return  # same top: the mid step function does not change
        bt.append(ts)
        self.book_bid.append(b)
        self.book_ask.append(a)
        self._frozen = None

    def add_fill(self, f: SessionFill) -> bool:
        """Add one fill (de-duplicated by ``(trade_id, is_ask)``); False when it was a duplicate or another market."""
        if f.market_id != self.market_id:
            return False
        key = (f.trade_id, f.is_ask)
        if key in self._seen:
            self.duplicate_fills += 1
            return False
        self._seen.add(key)
        self._stamp(f.ts_ms)
        self.fills.append(f)
        self._net_lots += -f.size if f.is_ask else f.size
        self._frozen = None
        return True

    def _fill(self, m: Fill, fallback: int | None) -> None:
        if m.market_id != self.market_id:
            return
        f = SessionFill.from_fill(m, fallback)
        if f.ts_ms > self._acct_clock:
            self._acct_clock = f.ts_ms
        if f.ts_ms > self._last_fill_ts.get(m.order_index, 0):
            self._last_fill_ts[m.order_index] = f.ts_ms
        self.add_fill(f)

    def _order(self, m: OrderUpdate, fallback: int | None) -> None:
        if m.market_id != self.market_id:
            return
        oi = m.order_index
        if oi in self._done:
            return
        # an update happens no earlier than what the account stream already showed (see "Time" above)
        ts = max(m.ts_ms or (fallback or 0), self._acct_clock)
        self._acct_clock = ts
        self._stamp(ts)
        status = m.status
        live = self._live.get(oi)
        if status == "open":
            if live is None:
                src = fill_source(m.client_order_index)
                self._live[oi] = (m.is_ask, m.price, src, ts)
                self.edges.append((ts, oi, m.is_ask, m.price, 1, src))
                self._frozen = None
            elif live[1] != m.price:  # modified in place: the quote moved
                self.edges.append((ts, oi, live[0], live[1], -1, live[2]))
                self.edges.append((ts, oi, live[0], m.price, 1, live[2]))
                self._live[oi] = (live[0], m.price, live[2], live[3])
                self._frozen = None
        elif status.startswith(TERMINAL_PREFIXES):
            self._done.add(oi)
            if live is not None:
                del self._live[oi]
                if status == "filled":
                    self._filled_closes.append((len(self.edges), oi, live[3]))
                self.edges.append((ts, oi, live[0], live[1], -1, live[2]))
                self._frozen = None

    def _intent(self, m: OrderIntent, fallback: int | None) -> None:
        if m.market_id != self.market_id:
            return
        src = _intent_source(m.source)
        ts = m.created_ms or (fallback or 0)
        if m.action == "place":
            self.places[src] += 1
            self.submissions.append((ts, src, m.size, m.client_order_index))
        elif m.action == "modify":
            self.modifies[src] += 1
            self._modifies.append((ts, src, m.client_order_index, m.size))
        else:
            return
        self._frozen = None

    def _position(self, m: Position, fallback: int | None) -> None:
        if m.market_id != self.market_id:
            return
        ts = m.ts_ms or (fallback or 0)
        if ts > self._acct_clock:
            self._acct_clock = ts
        if self._first_position is None:
            self._first_position = m.position
            self._lots_at_first_position = self._net_lots
        self.last_position = m.position
        self._frozen = None

    # -- reading -----------------------------------------------------------------------------------
    @property
    def initial_position(self) -> int:
        """Lots held before the first fill fed: given, else the first ``Position`` minus the fills before it, else 0."""
        if self._initial_position is not None:
            return self._initial_position
        if self._first_position is not None:
            return self._first_position - self._lots_at_first_position
        return 0

    def _modify_submissions(self) -> list[tuple[int, str, int, int]]:
        """Each modify's new remaining size: its new total minus what its order had filled by then (exchange
        time, so the result does not depend on the order the streams were fed in)."""
        if not self._modifies:
            return []
        by_coi: dict[int, list[tuple[int, int]]] = {}
        for f in self.fills:
            if f.client_order_index:
                by_coi.setdefault(f.client_order_index, []).append((f.ts_ms, f.size))
        out = []
        for ts, src, coi, size in self._modifies:
            filled = sum(lots for t, lots in by_coi.get(coi, ()) if t <= ts)
            out.append((ts, src, max(0, size - filled), coi))
        return out

    def _edges_fixed(self) -> list[tuple[int, int, bool, int, int, str]]:
        """The quote edges, an order that ended filled ending at its last fill (known once every fill is fed)."""
        edges = list(self.edges)
        for i, oi, opened in self._filled_closes:
            last = self._last_fill_ts.get(oi)
            if last is not None and last >= opened:
                edges[i] = (last, *edges[i][1:])
        return edges

    def freeze(self) -> SessionData:
        """A sorted snapshot for the metrics (cached until the next change)."""
        if self._frozen is None:
            order = sorted(range(len(self.book_t)), key=self.book_t.__getitem__)  # stable: arrival order on ties
            fills = sorted(self.fills, key=lambda f: (f.ts_ms, f.trade_id, f.is_ask))
            self._frozen = SessionData(
                spec=self.spec, account_index=self.account_index,
                book_t=[self.book_t[i] for i in order], book_bid=[self.book_bid[i] for i in order],
                book_ask=[self.book_ask[i] for i in order], fills=fills, fill_t=[f.ts_ms for f in fills],
                edges=sorted(self._edges_fixed(), key=lambda e: e[0]),
                submissions=sorted(self.submissions + self._modify_submissions(), key=lambda s: s[0]),
                places=dict(self.places), modifies=dict(self.modifies), initial_position=self.initial_position,
                last_position=self.last_position, first_ts=self.first_ts, last_ts=self.last_ts,
                duplicate_fills=self.duplicate_fills)
        return self._frozen


def _data(x: SessionBuilder | SessionData) -> SessionData:
    return x.freeze() if isinstance(x, SessionBuilder) else x


def build_session(messages: Iterable[Msg | tuple[int, Msg]], spec: MarketSpec, account_index: int | None = None,
                  initial_position: int | None = None) -> SessionBuilder:
    """A builder fed with ``messages`` in order (each a message, or ``(arrival_ts_ms, message)``)."""
    b = SessionBuilder(spec, account_index, initial_position)
    for item in messages:
        if isinstance(item, tuple):
            b.feed(item[1], item[0])
        else:
            b.feed(item)
    return b


_ANY = TypeAdapter(AnyMsg)


def read_messages(path: str | Path) -> Iterator[Msg]:
    """Messages of a recorded JSONL file: one per line, either the message's JSON (``msg.model_dump_json()``,
    what ``write_messages`` writes) or a stream entry's fields ``{"type", "v", "d"}``; blank lines skipped."""
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            if isinstance(obj, dict) and "d" in obj and "v" in obj:
                yield decode(obj)
            else:
                yield _ANY.validate_python(obj)


def write_messages(messages: Iterable[Msg], fh: TextIO) -> int:
    """Write messages as JSONL (the format ``read_messages`` reads); returns how many."""
    n = 0
    for m in messages:
        fh.write(m.model_dump_json())
        fh.write("\n")
        n += 1
    return n


# ------------------------------------------------------------------------------------------------ the walk
@dataclass
class _Walk:
    """Everything one pass over the window's events yields; money in integer units (see ``_units``)."""

    start: int
    end: int
    q0: int
    m2_0: int
    q: int = 0
    m2: int = 0
    cash2: int = 0           # 2 x cash change, ticks x lots
    cap2: int = 0            # 2 x spread capture, ticks x lots
    inv2: int = 0            # 2 x inventory PnL, ticks x lots
    fees: int = 0            # micro-USDC
    cap2_src: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))
    peak_u: int = 0
    mdd_u: int = 0
    max_abs_q: int = 0
    tw_q: int = 0            # sum q dt
    tw_q2: int = 0           # sum q^2 dt
    tw_absq: int = 0         # sum |q| dt
    books: int = 0
    samples: list[tuple[int, int, int, int, int, int, int]] = field(default_factory=list)
    # (t, pnl_u, cap_u, inv_u, fee_u, q, m2) at grid times


def _units(spec: MarketSpec) -> tuple[int, int, int]:
    """(U, factor of 2x-ticks-x-lots, factor of micro-USDC): every money amount is an integer of 1/U USD."""
    h = 2 * spec.price_scale * spec.size_scale
    u = math.lcm(h, MICRO)
    return u, u // h, u // MICRO


def _window(d: SessionData, start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
    if not d.book_t:
        raise NoBookData(f"no book with a bid and an ask for market {d.spec.market_id}")
    start = d.book_t[0] if start_ms is None else max(start_ms, d.book_t[0])
    last = d.last_ts if d.last_ts is not None else start
    end = last if end_ms is None else end_ms
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return start, end


def _walk(d: SessionData, start: int, end: int, grid_step_ms: int | None = None) -> _Walk:
    u, uh, uf = _units(d.spec)
    ft, fills = d.fill_t, d.fills
    i = bisect.bisect_right(ft, start)
    i_end = bisect.bisect_right(ft, end)
    q = d.initial_position
    for f in fills[:i]:
        q += -f.size if f.is_ask else f.size
    bt, bb, ba = d.book_t, d.book_bid, d.book_ask
    k = bisect.bisect_right(bt, start)
    k_end = bisect.bisect_right(bt, end)
    m2 = bb[k - 1] + ba[k - 1]
    w = _Walk(start, end, q, m2)
    q0, m2_0 = q, m2
    cash2 = cap2 = inv2 = fees = 0
    cap2_src = w.cap2_src
    peak = mdd = 0
    max_abs = abs(q)
    tw_q = tw_q2 = tw_abs = 0
    last_t = start
    g = start if grid_step_ms else None
    samples = w.samples
    inf = end + 1
    while i < i_end or k < k_end:
        t = min(ft[i] if i < i_end else inf, bt[k] if k < k_end else inf)
        if g is not None and g < t:
            e_u = (cash2 + q * m2 - q0 * m2_0) * uh - fees * uf
            while g < t:
                samples.append((g, e_u, cap2 * uh, inv2 * uh, fees * uf, q, m2))
                g += grid_step_ms  # type: ignore[operator]
        dt = t - last_t
        if dt:
            tw_q += q * dt
            tw_q2 += q * q * dt
            tw_abs += abs(q) * dt
            last_t = t
        while i < i_end and ft[i] == t:
            f = fills[i]
            if f.is_ask:
                cash2 += 2 * f.size * f.price
                c = f.size * (2 * f.price - m2)
                q -= f.size
            else:
                cash2 -= 2 * f.size * f.price
                c = f.size * (m2 - 2 * f.price)
                q += f.size
            cap2 += c
            cap2_src[f.source] += c
            fees += f.fee
            if abs(q) > max_abs:
                max_abs = abs(q)
            i += 1
        while k < k_end and bt[k] == t:
            nm2 = bb[k] + ba[k]
            inv2 += q * (nm2 - m2)
            m2 = nm2
            k += 1
            w.books += 1
        e_u = (cash2 + q * m2 - q0 * m2_0) * uh - fees * uf
        if e_u > peak:
            peak = e_u
        elif peak - e_u > mdd:
            mdd = peak - e_u
    if g is not None:
        e_u = (cash2 + q * m2 - q0 * m2_0) * uh - fees * uf
        while g <= end:
            samples.append((g, e_u, cap2 * uh, inv2 * uh, fees * uf, q, m2))
            g += grid_step_ms  # type: ignore[operator]
    dt = end - last_t
    if dt > 0:
        tw_q += q * dt
        tw_q2 += q * q * dt
        tw_abs += abs(q) * dt
    w.q, w.m2, w.cash2, w.cap2, w.inv2, w.fees = q, m2, cash2, cap2, inv2, fees
    w.peak_u, w.mdd_u, w.max_abs_q = peak, mdd, max_abs
    w.tw_q, w.tw_q2, w.tw_absq = tw_q, tw_q2, tw_abs
    return w


# ------------------------------------------------------------------------------------------------ attribution
@dataclass(frozen=True, slots=True)
class Attribution:
    """Exact USD amounts over the window; ``pnl == spread_capture + inventory_pnl - fees`` always."""

    start_ms: int
    end_ms: int
    pnl: Fraction
    spread_capture: Fraction
    inventory_pnl: Fraction
    fees: Fraction
    fees_micro: int
    cash: Fraction
    position_start_lots: int
    position_end_lots: int
    end_mid: Fraction


def _attribution(d: SessionData, w: _Walk) -> Attribution:
    spec = d.spec
    h = 2 * spec.price_scale * spec.size_scale
    trading2 = w.cash2 + w.q * w.m2 - w.q0 * w.m2_0
    fees = Fraction(w.fees, MICRO)
    return Attribution(w.start, w.end, Fraction(trading2, h) - fees, Fraction(w.cap2, h), Fraction(w.inv2, h), fees,
                       w.fees, Fraction(w.cash2, h), w.q0, w.q, Fraction(w.m2, 2 * spec.price_scale))


def attribution(data: SessionBuilder | SessionData, start_ms: int | None = None, end_ms: int | None = None) -> Attribution:
    """PnL and its three lines, exact ``Fraction`` USD, evaluated at exactly ``end_ms``."""
    d = _data(data)
    start, end = _window(d, start_ms, end_ms)
    return _attribution(d, _walk(d, start, end))


# ------------------------------------------------------------------------------------------------ markouts
def _label(h: int) -> str:
    return f"{h}ms"


def _markouts(d: SessionData, start: int, end: int, horizons: Iterable[int]
              ) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[str, dict[int, dict[str, Any]]]]:
    """Per source and horizon, on every observable fill and on the common set (observable at the max horizon)."""
    hs = sorted({0, *horizons})
    hmax = hs[-1]
    obs_end = min(end, d.last_ts if d.last_ts is not None else end)
    ps = d.spec.price_scale
    acc: dict[str, dict[int, list[Any]]] = {s: {h: [0, 0, 0, 0.0] for h in hs} for s in SOURCES}
    com: dict[str, dict[int, list[Any]]] = {s: {h: [0, 0, 0, 0.0] for h in hs} for s in SOURCES}
    lo = bisect.bisect_right(d.fill_t, start)
    hi = bisect.bisect_right(d.fill_t, end)
    for f in d.fills[lo:hi]:
        m2b = d.mid2_before(f.ts_ms)
        if m2b is None or m2b <= 0:
            continue
        sv = -f.size if f.is_ask else f.size
        common = f.ts_ms + hmax <= obs_end
        for h in hs:
            if f.ts_ms + h > obs_end:
                break
            m2h = m2b if h == 0 else d.mid2_at(f.ts_ms + h)
            num = sv * (m2h - 2 * f.price)  # type: ignore[operator]
            bps = num / m2b * 1e4
            for tgt in ((acc, com) if common else (acc,)):
                a = tgt[f.source][h]
                a[0] += 1
                a[1] += f.size
                a[2] += num
                a[3] += bps

    def out(src: dict[str, dict[int, list[Any]]]) -> dict[str, dict[int, dict[str, Any]]]:
        res: dict[str, dict[int, dict[str, Any]]] = {}
        for s in SOURCES:
            res[s] = {}
            for h in hs:
                n, vol, num, bps = src[s][h]
                res[s][h] = {"n": n, "volume_lots": vol,
                             "per_unit_usd": float(Fraction(num, 2 * ps * vol)) if vol else None,
                             "bps": bps / vol if vol else None}
        return res
    return out(acc), out(com)


# ------------------------------------------------------------------------------------------------ uptime
def _uptime(edges: list[tuple[int, int, bool, int, int, str]], start: int, end: int, source: str = "maker"
            ) -> dict[str, float] | None:
    total = end - start
    if total <= 0:
        return None
    live = [0, 0]
    dur = {"bid": 0, "ask": 0, "both": 0, "any": 0}

    def credit(span: int) -> None:   # who rested during ``span`` ms, by side
        b, a = live[0] > 0, live[1] > 0
        dur["bid"] += span if b else 0
        dur["ask"] += span if a else 0
        dur["both"] += span if b and a else 0
        dur["any"] += span if b or a else 0
    t_prev = start
    for ts, _oi, is_ask, _p, delta, src in edges:
        if src != source:
            continue
        if ts > end:
            break
        if ts > t_prev:
            credit(ts - t_prev)
            t_prev = ts
        live[is_ask] += delta
    credit(end - t_prev)
    return {k: v / total for k, v in dur.items()}


# ------------------------------------------------------------------------------------------------ ratios
def _ratio(values: list[float], interval_s: int, min_samples: int) -> tuple[dict[str, Any], dict[str, Any]]:
    n = len(values)
    sharpe: dict[str, Any] = {"value": None, "interval_s": interval_s, "samples": n, "min_samples": min_samples,
                              "reason": "", "scaling": "per interval, not annualised"}
    sortino: dict[str, Any] = {"value": None, "reason": ""}
    if n < max(2, min_samples):
        why = f"{n} complete {interval_s} s intervals, need at least {max(2, min_samples)}"
        sharpe["reason"] = sortino["reason"] = why
        return sharpe, sortino
    mean = sum(values) / n
    var = sum((x - mean) ** 2 for x in values) / (n - 1)
    if var > 0:
        sharpe["value"] = mean / math.sqrt(var)
    else:
        sharpe["reason"] = "zero variance"
    dn = sum(min(x, 0.0) ** 2 for x in values) / n
    if dn > 0:
        sortino["value"] = mean / math.sqrt(dn)
    else:
        sortino["reason"] = "no losing interval"
    return sharpe, sortino


# ------------------------------------------------------------------------------------------------ summary
def summarize(data: SessionBuilder | SessionData, start_ms: int | None = None, end_ms: int | None = None,
              horizons_ms: Iterable[int] = DEFAULT_HORIZONS_MS, sharpe_interval_s: int = SHARPE_INTERVAL_S,
              sharpe_min_samples: int = SHARPE_MIN_SAMPLES) -> dict[str, Any]:
    """The session's metrics as a JSON-ready dict (shape in the module docstring). Raises ``NoBookData``."""
    d = _data(data)
    spec = d.spec
    start, end = _window(d, start_ms, end_ms)
    if sharpe_interval_s <= 0:
        raise ValueError("sharpe_interval_s must be positive")
    w = _walk(d, start, end, sharpe_interval_s * 1000)
    att = _attribution(d, w)
    u, uh, uf = _units(spec)
    lo = bisect.bisect_right(d.fill_t, start)
    hi = bisect.bisect_right(d.fill_t, end)
    window = d.fills[lo:hi]
    by_src = {s: fill_totals(f for f in window if f.source == s) for s in SOURCES}
    h = 2 * spec.price_scale * spec.size_scale

    # fill ratio (maker): lots filled of the orders submitted in the window / lots submitted
    sub = [s for s in d.submissions if start <= s[0] <= end and s[1] == "maker"]
    submitted = sum(s[2] for s in sub)
    sub_cois = {s[3] for s in sub}
    filled = sum(f.size for f in window if f.source == "maker" and f.client_order_index in sub_cois)

    # Sharpe on complete intervals of the grid (the walk's samples at start + k * interval)
    eq = [s[1] for s in w.samples]
    diffs = [float(Fraction(b - a, u)) for a, b in zip(eq, eq[1:])]
    sharpe, sortino = _ratio(diffs, sharpe_interval_s, sharpe_min_samples)

    # liquidation value: the final position marked at the bid (long) or the ask (short)
    kb = bisect.bisect_right(d.book_t, end) - 1
    bid, ask = d.book_bid[kb], d.book_ask[kb]
    liq_px2 = 2 * (bid if w.q > 0 else ask)
    liq = att.pnl - Fraction(w.q * (w.m2 - liq_px2), h)

    total_ms = end - start
    ss = spec.size_scale
    if total_ms > 0:
        tw_mean = w.tw_q / total_ms / ss
        tw_var = max(0.0, w.tw_q2 / total_ms - (w.tw_q / total_ms) ** 2)
        tw_std = math.sqrt(tw_var) / ss
        tw_abs = w.tw_absq / total_ms / ss
    else:
        tw_mean = tw_std = tw_abs = 0.0
    mk_all, mk_common = _markouts(d, start, end, horizons_ms)
    uptime = _uptime(d.edges, start, end)
    mdd = Fraction(w.mdd_u, u)

    def src_block(s: str) -> dict[str, Any]:
        t = by_src[s]
        return {"fills": t.fills, "maker_fills": t.maker_fills, "taker_fills": t.taker_fills,
                "volume_lots": t.volume_lots, "volume_base": spec.size_str(t.volume_lots),
                "notional_usd": exact_decimal(usd_of_tl(t.notional_tl, spec)),
                "fees_usd": exact_decimal(usd_of_micro(t.fees_micro)), "fees_micro": t.fees_micro,
                "spread_capture_usd": exact_decimal(Fraction(w.cap2_src[s], h))}

    def mk_json(m: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
        return {s: {_label(hh): v for hh, v in per.items()} for s, per in m.items()}

    return {
        "market_id": spec.market_id, "symbol": spec.symbol, "account_index": d.account_index,
        "start_ms": start, "end_ms": end, "sim_seconds": total_ms / 1000, "books": w.books,
        "pnl_usd": exact_decimal(att.pnl), "spread_capture_usd": exact_decimal(att.spread_capture),
        "inventory_pnl_usd": exact_decimal(att.inventory_pnl), "fees_usd": exact_decimal(att.fees),
        "fees_micro": att.fees_micro, "liquidation_pnl_usd": exact_decimal(liq),
        "cash_usd": exact_decimal(att.cash), "end_mid": exact_decimal(att.end_mid, spec.price_decimals),
        "position_start_lots": w.q0, "position_end_lots": w.q, "position_end_base": spec.size_str(w.q),
        "venue_position_lots": d.last_position,
        "fills": len(window), "fills_maker": by_src["maker"].fills, "fills_hedger": by_src["hedger"].fills,
        "fills_other": by_src["other"].fills,
        "volume_maker": spec.size_str(by_src["maker"].volume_lots), "volume_hedger": spec.size_str(by_src["hedger"].volume_lots),
        "volume_other": spec.size_str(by_src["other"].volume_lots),
        "volume_maker_lots": by_src["maker"].volume_lots, "volume_hedger_lots": by_src["hedger"].volume_lots,
        "volume_other_lots": by_src["other"].volume_lots,
        "fills_before_start": lo, "duplicate_fills": d.duplicate_fills,
        "by_source": {s: src_block(s) for s in SOURCES},
        "fill_ratio_maker": filled / submitted if submitted else None,
        "submitted_lots_maker": submitted, "filled_lots_maker": filled,
        "orders_placed_maker": d.places["maker"],
        "orders_modified_maker": d.modifies["maker"],
        "max_abs_position": {"lots": w.max_abs_q, "base": spec.size_str(w.max_abs_q)},
        "inventory": {"tw_mean_base": tw_mean, "tw_std_base": tw_std, "tw_mean_abs_base": tw_abs,
                      "max_abs_lots": w.max_abs_q, "max_abs_base": spec.size_str(w.max_abs_q),
                      "final_lots": w.q, "final_base": spec.size_str(w.q)},
        "sharpe": sharpe, "sortino": sortino,
        "max_drawdown_usd": exact_decimal(mdd),
        "return_over_mdd": float(att.pnl / mdd) if mdd else None,
        "markout_bps": mk_json(mk_all), "markout_common_bps": mk_json(mk_common),
        "markout_reference": MARKOUT_REFERENCE,
        "two_sided_uptime": uptime["both"] if uptime else None, "uptime_maker": uptime,
    }


# ------------------------------------------------------------------------------------------------ curves
def curves(data: SessionBuilder | SessionData, step_ms: int = 1000, start_ms: int | None = None,
           end_ms: int | None = None, horizons_ms: Iterable[int] = CURVE_HORIZONS_MS) -> dict[str, Any]:
    """Time series for charts (shape in the module docstring); the last rows are at exactly ``end_ms``."""
    if step_ms <= 0:
        raise ValueError("step_ms must be positive")
    d = _data(data)
    spec = d.spec
    start, end = _window(d, start_ms, end_ms)
    w = _walk(d, start, end, step_ms)
    u, uh, uf = _units(spec)
    samples = list(w.samples)
    if not samples or samples[-1][0] != end:
        e_u = (w.cash2 + w.q * w.m2 - w.q0 * w.m2_0) * uh - w.fees * uf
        samples.append((end, e_u, w.cap2 * uh, w.inv2 * uh, w.fees * uf, w.q, w.m2))
    ps, ss = spec.price_scale, spec.size_scale
    equity = [[t, e / u, c / u, i / u, f / u] for t, e, c, i, f, _q, _m in samples]
    inventory = [[t, q / ss] for t, _e, _c, _i, _f, q, _m in samples]
    times = [s[0] for s in samples]
    ours = _quote_samples(d.edges, times)
    quotes = [[t, m2 / (2 * ps), None if b is None else b / ps, None if a is None else a / ps]
              for (t, _e, _c, _i, _f, _q, m2), (b, a) in zip(samples, ours)]
    book = []
    for t in times:
        kb = bisect.bisect_right(d.book_t, t) - 1
        book.append([t, d.book_bid[kb] / ps, d.book_ask[kb] / ps])
    mk, _ = _markouts(d, start, end, horizons_ms)
    markouts = {s: [[hh, v["bps"]] for hh, v in sorted(per.items())] for s, per in mk.items()}
    lo = bisect.bisect_right(d.fill_t, start)
    hi = bisect.bisect_right(d.fill_t, end)
    fills = [[f.ts_ms, f.source, f.side, f.price / ps, f.size / ss] for f in d.fills[lo:hi]]
    return {"start_ms": start, "end_ms": end, "step_ms": step_ms, "equity": equity, "inventory": inventory,
            "quotes": quotes, "book": book, "markouts": markouts, "fills": fills}


def _quote_samples(edges: list[tuple[int, int, bool, int, int, str]], times: list[int], source: str = "maker"
                   ) -> list[tuple[int | None, int | None]]:
    """Our best resting bid and ask (ticks) in force at each of ``times`` (sorted)."""
    live: list[dict[int, int]] = [{}, {}]
    out: list[tuple[int | None, int | None]] = []
    j = 0
    for t in times:
        while j < len(edges) and edges[j][0] <= t:
            ts, _oi, is_ask, price, delta, src = edges[j]
            j += 1
            if src != source:
                continue
            side = live[is_ask]
            n = side.get(price, 0) + delta
            if n > 0:
                side[price] = n
            else:
                side.pop(price, None)
        out.append((max(live[0]) if live[0] else None, min(live[1]) if live[1] else None))
    return out
