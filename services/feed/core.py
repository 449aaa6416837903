"""Feed decision logic (pure): Lighter WebSocket frames in, commands out.

The shell feeds four events (``Opened``, ``FrameIn``, ``Closed``, ``TokenSeen``) plus a periodic
``on_timer``; the core keeps the order books, the subscription state and the auth-token state, and
answers with small commands: frames to send, messages to publish, malformed input to dead-letter,
counters to bump. No I/O, no clock, no randomness: ``now`` is always an argument.

Protocol (lighter-api.md section 2): wait for ``{"type":"connected"}``, then subscribe; every
connection starts from scratch (full resync). A broken ``begin_nonce``/``nonce`` chain resyncs the
book with unsubscribe + subscribe (subscribe alone gets error 30003 and no snapshot).

Account channels and auth tokens: the shell reports every token it finds (env, file, Redis); the
core reads their deadlines, never uses one that is expired or expires within ``token_margin_ms``
and takes the usable one with the latest deadline, preferring tokens the venue has not refused.
A refusal (20001/20013) re-reads the sources and re-subscribes with capped exponential backoff
(``private_retry_ms`` .. ``private_retry_max_ms``); a token about to expire is rotated (unsubscribe +
subscribe with the fresh one). Whenever the three channels are all up again after being down (first
subscribe, reconnect, auth error, rotation) the core publishes ``AccountGap`` on the account stream:
events may have been missed, and the gateway answers with a REST reconcile.
"""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

import orjson

from shared import lighter_wire as nz
from services.feed import tokens as tk
from services.feed.book import OrderBook
from shared.markets import MarketSpec
from shared.schemas import AccountGap, BookTop, Msg, Position, Trade

# reasons a book is resynced (metric label values, so a fixed set)
GAP = "nonce gap"
BAD_FRAME = "malformed frame"
NO_SNAPSHOT = "no snapshot in time"

AUTH_ERROR_CODES = frozenset({20001, 20013})  # auth missing / invalid (expired deadline)
ALREADY_SUBSCRIBED = 30003
RAW_KEEP = 16_384  # characters of a bad frame kept for the dead-letter entry


# --- events --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Opened:
    """A WebSocket connection is open (the ``connected`` frame is still to come)."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is gone; everything learnt on it is void."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class FrameIn:
    """One text (or binary) frame exactly as received."""

    raw: str | bytes


@dataclass(frozen=True, slots=True)
class TokenSeen:
    """The tokens the shell currently finds: ``token`` from ``source`` plus any ``more`` (token, source)
    pairs (env, file and Redis are all reported; the core chooses). No token at all: ``TokenSeen(None)``."""

    token: str | None = field(repr=False)
    source: str = "none"
    more: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, found: list[tuple[str, str]]) -> TokenSeen:
        if not found:
            return cls(None)
        (tok, src), *rest = found
        return cls(tok, src, tuple(rest))

    def found(self) -> list[tuple[str, str]]:
        first = [(self.token, self.source)] if self.token else []
        return first + [(t, s) for t, s in self.more if t]


Event = Union[Opened, Closed, FrameIn, TokenSeen]


# --- commands ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """A JSON frame for the venue; ``auth`` stays out of ``repr`` so a logged command cannot leak it."""

    type: str
    channel: str = ""
    auth: str | None = field(default=None, repr=False)

    def payload(self) -> dict[str, str]:
        p = {"type": self.type}
        if self.channel:
            p["channel"] = self.channel
        if self.auth is not None:
            p["auth"] = self.auth
        return p


@dataclass(frozen=True, slots=True)
class PublishBook:
    book: BookTop


@dataclass(frozen=True, slots=True)
class PublishTrade:
    trade: Trade


@dataclass(frozen=True, slots=True)
class PublishAccount:
    msg: Msg


@dataclass(frozen=True, slots=True)
class Seen:
    """A frame arrived on ``kind`` (channel name without its argument, or the control type)."""

    kind: str


@dataclass(frozen=True, slots=True)
class Resync:
    """The book of ``market_id`` is void (nonce gap or bad frame); a fresh snapshot is requested."""

    market_id: int
    reason: str
    expected_nonce: int | None = None
    begin_nonce: int | None = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """Input that is not Lighter's documented shape: count, log, dead-letter; never publish it."""

    channel: str
    error: str
    raw: str


@dataclass(frozen=True, slots=True)
class VenueError:
    """An ``{"error": {code, message}}`` frame."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something worth one info log line (server shutdown notice, subscription state)."""

    message: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """Well-formed input deliberately not published (other market/account, duplicate, stale)."""

    reason: str


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """Look the token sources up again now (the venue refused one, or none is usable)."""


@dataclass(frozen=True, slots=True)
class AccountDown:
    """The account channels are not up: one warning per attempt, with the next try."""

    reason: str
    attempt: int
    retry_in_ms: int


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Drop the connection and start over (protocol stuck)."""

    reason: str


Command = Union[Send, PublishBook, PublishTrade, PublishAccount, Seen, Resync, Malformed, VenueError, Notice,
                Skipped, RefreshToken, AccountDown, Reconnect]


# --- state ---------------------------------------------------------------------------------------
class SubState(Enum):
    IDLE = "idle"
    PENDING = "pending"
    ACTIVE = "active"


class _Recent:
    """Bounded memory of published ids: trades replayed on resubscribe are not published twice."""

    def __init__(self, size: int) -> None:
        self._q: deque[Hashable] = deque()
        self._set: set[Hashable] = set()
        self._size = size

    def add(self, key: Hashable) -> bool:
        """True if ``key`` is new."""
        if key in self._set:
            return False
        self._set.add(key)
        self._q.append(key)
        if len(self._q) > self._size:
            self._set.discard(self._q.popleft())
        return True


@dataclass(frozen=True, slots=True)
class Timing:
    """Protocol timers in milliseconds."""

    connected_timeout_ms: int = 10_000   # no "connected" frame after open -> reconnect
    snapshot_timeout_ms: int = 5_000     # no snapshot after (re)subscribing -> unsubscribe + subscribe again
    ping_idle_ms: int = 60_000           # the server closes after 2 min of client silence
    private_retry_ms: int = 30_000       # first retry after a refusal (or without a usable token); doubles ...
    private_retry_max_ms: int = 60_000   # ... up to this (the shell passes feed.reconnect_min_s/max_s)
    token_margin_ms: int = tk.MARGIN_MS  # a token closer than this to its deadline is not used (and is rotated)


def _text(raw: str | bytes) -> str:
    s = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return s[:RAW_KEEP]


class FeedCore:
    """Books, subscriptions and normalisation for a set of markets and (optionally) one account."""

    def __init__(self, markets: Mapping[int, MarketSpec] | list[MarketSpec], depth: int,
                 account_index: int | None = None, timing: Timing = Timing()) -> None:
        specs = list(markets.values()) if isinstance(markets, Mapping) else list(markets)
        self.specs: dict[int, MarketSpec] = {s.market_id: s for s in specs}
        self.depth = depth
        self.account_index = account_index
        self.timing = timing
        self.books: dict[int, OrderBook] = {m: OrderBook(m) for m in self.specs}
        self.private: dict[str, SubState] = (
            {f"{k}:{account_index}": SubState.IDLE for k in ("account_all_orders", "account_all_trades", "account_all_positions")}
            if account_index is not None else {})
        # connection
        self.open = False
        self.connected = False
        self.session_id = ""
        self._opened_ms = 0
        self._last_sent_ms = 0
        self._awaiting: dict[int, int] = {}  # market -> ms since we wait for its snapshot
        # auth tokens and the account channels' health
        self.token: str | None = None         # the token chosen now (None: none usable)
        self.token_source = "none"
        self.token_deadline_ms = 0
        self._cands: list[tk.Candidate] = []
        self._refused: dict[str, int] = {}    # token -> when the venue refused it
        self._sub_token: dict[str, str] = {}  # channel -> token its last subscribe carried
        self._outstanding: deque[tuple[str, str]] = deque()  # private subscribes not answered yet, in send order
        self._pending_since: dict[str, int] = {}  # channel -> when its subscribe went out
        self._retry_at = 0                    # next attempt with a refused token / without a usable one
        self._retry_ms = timing.private_retry_ms
        self.attempts = 0                     # attempts since the channels were last all up
        self.private_problem = "not subscribed yet"  # why the channels are down ("" while up)
        self._gap: str | None = "start" if account_index is not None else None  # AccountGap due when up
        self.account_gaps = 0
        # observations for health
        self.last_book_ms: dict[int, int] = {}
        self.last_trade_ms = 0
        self.last_account_ms = 0
        self.last_channel_ms: dict[str, int] = {}   # private channel -> its newest frame (the status view's ages)
        self.gaps = 0
        self.bad_frames = 0
        self._trades = _Recent(4096)
        self._fills = _Recent(4096)

    # --- public API ------------------------------------------------------------------------------
    def handle(self, event: Event, now_ms: int, now_ns: int | None = None) -> list[Command]:
        """React to one event; ``now_ns`` (wall clock) stamps the trace of published books."""
        now_ns = now_ms * 1_000_000 if now_ns is None else now_ns
        if isinstance(event, FrameIn):
            out = self._frame(event.raw, now_ms, now_ns)
        elif isinstance(event, Opened):
            self._reset_connection()
            self.open, self._opened_ms = True, now_ms
            out = []
        elif isinstance(event, Closed):
            self._reset_connection()
            out = []
        elif isinstance(event, TokenSeen):
            out = self._token(event, now_ms)
        else:  # pragma: no cover - exhaustiveness guard
            raise TypeError(f"unknown event {event!r}")
        self._note_sent(out, now_ms)
        return out

    def on_timer(self, now_ms: int) -> list[Command]:
        """Timeouts: connected frame, overdue snapshots, private re-subscription, keepalive ping."""
        out: list[Command] = []
        if self.open and not self.connected and now_ms - self._opened_ms >= self.timing.connected_timeout_ms:
            self.open = False  # one Reconnect per stuck connection
            return [Reconnect("no 'connected' frame")]
        if not self.connected:
            return out
        for m, since in list(self._awaiting.items()):
            if now_ms - since >= self.timing.snapshot_timeout_ms:
                out += self._resync(m, NO_SNAPSHOT, now_ms)
        out += self._all_up(now_ms)
        out += self._unanswered(now_ms)
        out += self._rotate(now_ms)
        out += self._subscribe_private(now_ms)
        if now_ms - self._last_sent_ms >= self.timing.ping_idle_ms:
            out.append(Send("ping"))
        self._note_sent(out, now_ms)
        return out

    @property
    def private_active(self) -> bool:
        return bool(self.private) and all(s is SubState.ACTIVE for s in self.private.values())

    # --- connection ------------------------------------------------------------------------------
    def _reset_connection(self) -> None:
        self.open = self.connected = False
        self.session_id = ""
        self._awaiting.clear()
        for b in self.books.values():
            b.reset()
        if self.private:
            if any(st is not SubState.IDLE for st in self.private.values()):
                self.private_problem = "websocket closed"
            self._gap = self._gap or "reconnect"
            self._outstanding.clear()
        for ch in self.private:
            self.private[ch] = SubState.IDLE

    def _note_sent(self, cmds: list[Command], now_ms: int) -> None:
        if any(isinstance(c, Send) for c in cmds):
            self._last_sent_ms = now_ms

    def _on_connected(self, data: dict[str, Any], now_ms: int) -> list[Command]:
        if self.connected:
            return [Skipped("repeated 'connected' frame")]
        self.connected = True
        sid = data.get("session_id")
        self.session_id = sid if isinstance(sid, str) else ""
        out: list[Command] = []
        for m in self.specs:
            out += [Send("subscribe", f"order_book/{m}"), Send("subscribe", f"trade/{m}")]
            self._awaiting[m] = now_ms
        out += self._subscribe_private(now_ms)
        return out

    def _resync(self, market_id: int, reason: str, now_ms: int, expected: int | None = None,
                begin: int | None = None) -> list[Command]:
        self.books[market_id].reset()
        self._awaiting[market_id] = now_ms
        return [Resync(market_id, reason, expected, begin),
                Send("unsubscribe", f"order_book/{market_id}"), Send("subscribe", f"order_book/{market_id}")]

    # --- auth token and account channels ---------------------------------------------------------
    def _token(self, ev: TokenSeen, now_ms: int) -> list[Command]:
        cands = [tk.parse(t, src) for t, src in ev.found()]
        changed = [(c.token, c.source) for c in cands] != [(c.token, c.source) for c in self._cands]
        self._cands = cands
        live = {c.token for c in cands} | set(self._sub_token.values())
        self._refused = {t: ms for t, ms in self._refused.items() if t in live}
        out: list[Command] = []
        best = self._pick(now_ms)
        if changed:
            if best is not None:
                left_s = ((best.deadline_ms or 0) - now_ms) // 1000
                out.append(Notice(f"auth token from {best.source}, valid {left_s} s"))
            else:
                out.append(Notice(f"no usable auth token ({self._token_summary(now_ms)})"))
        return out + self._rotate(now_ms) + self._subscribe_private(now_ms)

    def _pick(self, now_ms: int) -> tk.Candidate | None:
        """Choose the token to use now and remember it (for health and for the next subscribe)."""
        best = tk.choose(self._cands, now_ms, self.account_index, self._refused, self.timing.token_margin_ms)
        self.token = best.token if best else None
        self.token_source = best.source if best else "none"
        self.token_deadline_ms = (best.deadline_ms or 0) if best else 0
        return best

    def account_problem(self, now_ms: int) -> tuple[str, str] | None:
        """``(code, reason)`` while the account channels are not (or will soon not be) usable, else None.

        Codes are a fixed set (metric label values): ``no_auth_token``, ``auth_error``, ``account_down``.
        """
        if not self.private:
            return None
        best = self._pick(now_ms)
        if not self.private_active:
            if best is None:
                return "no_auth_token", f"no valid auth token ({self._token_summary(now_ms)})"
            if self._refused and self.private_problem[:1].isdigit():
                return "auth_error", f"account channels down: {self.private_problem}"
            return "account_down", f"account channels down: {self.private_problem or 'subscribing'}"
        in_use = min((tk.deadline_ms(t) or 0 for t in set(self._sub_token.values())), default=0)
        if in_use - now_ms <= self.timing.token_margin_ms and (best is None or best.deadline_ms == in_use):
            left = max(0, in_use - now_ms) // 1000
            return "no_auth_token", f"no valid auth token (the one in use expires in {left} s)"
        return None

    def _token_summary(self, now_ms: int) -> str:
        return tk.summary(self._cands, now_ms, self.account_index, self.timing.token_margin_ms)

    def _backoff(self, now_ms: int) -> int:
        """Schedule the next attempt; returns its delay (doubling up to the cap)."""
        delay = self._retry_ms
        self._retry_at = now_ms + delay
        self._retry_ms = min(max(delay * 2, 1), max(self.timing.private_retry_max_ms, self.timing.private_retry_ms))
        return delay

    def _subscribe_private(self, now_ms: int) -> list[Command]:
        """Subscribe the idle account channels with the best usable token.

        A token the venue refused is tried again only when its backoff is due and nothing better exists;
        a token not refused yet is tried at once. Active channels are left alone while their token is
        good: a resubscription opens a window in which fills are lost (see ``_rotate``).
        """
        idle = [ch for ch, st in self.private.items() if st is SubState.IDLE]
        if not (self.connected and idle):
            return []
        best = self._pick(now_ms)
        if best is None:
            self.private_problem = "no valid auth token"
            if now_ms < self._retry_at:
                return []
            self.attempts += 1
            reason = f"no valid auth token ({self._token_summary(now_ms)})"
            return [RefreshToken(), AccountDown(reason, self.attempts, self._backoff(now_ms))]
        if best.token in self._refused and now_ms < self._retry_at:
            return []  # the refusal scheduled the next try
        self.attempts += 1
        out: list[Command] = [RefreshToken()] if best.token in self._refused else []
        out.append(Notice(f"subscribing the account channels (attempt {self.attempts}) with the auth token from "
                          f"{best.source}, valid {((best.deadline_ms or 0) - now_ms) // 1000} s"))
        for ch in idle:
            self.private[ch] = SubState.PENDING
            self._sub_token[ch] = best.token
            self._pending_since[ch] = now_ms
            self._outstanding.append((ch, best.token))
            out.append(Send("subscribe", ch.replace(":", "/"), auth=best.token))
        return out

    def _answered(self, channel: str | None) -> tuple[str, str] | None:
        """Take the outstanding subscribe this answer is for: ``channel``'s, or the oldest (the venue
        answers in order; its auth errors do not name the channel)."""
        for i, (ch, tok) in enumerate(self._outstanding):
            if channel is None or ch == channel:
                del self._outstanding[i]
                return ch, tok
        return None

    def _unanswered(self, now_ms: int) -> list[Command]:
        """Subscribes the venue never answered: subscribe again after the backoff (a subscription that
        did take answers 30003, which counts as up)."""
        late = [ch for ch, st in self.private.items() if st is SubState.PENDING
                and now_ms - self._pending_since.get(ch, now_ms) >= self.timing.snapshot_timeout_ms]
        if not late:
            return []
        self._outstanding = deque((ch, t) for ch, t in self._outstanding if ch not in late)
        for ch in late:
            self.private[ch] = SubState.IDLE
            self._refused.setdefault(self._sub_token[ch], now_ms)  # held back like a refused one
        self.private_problem = f"no answer to the subscribe in {self.timing.snapshot_timeout_ms // 1000} s"
        delay = self._backoff(now_ms) if now_ms >= self._retry_at else self._retry_at - now_ms
        return [AccountDown(self.private_problem, self.attempts, delay)]

    @property
    def tokens_found(self) -> int:
        """How many tokens the sources gave, usable or not."""
        return len(self._cands)

    def _rotate(self, now_ms: int) -> list[Command]:
        """Active channels whose token is about to expire move to a fresher one (unsubscribe + subscribe)."""
        if not self.connected:
            return []
        margin = self.timing.token_margin_ms
        stale = [ch for ch, st in self.private.items() if st is SubState.ACTIVE
                 and (tk.deadline_ms(self._sub_token.get(ch, "")) or 0) - now_ms <= margin]
        if not stale:
            return []
        best = self._pick(now_ms)
        if best is None or best.token in self._refused:
            return []  # nothing fresher: keep what flows; health says so (account_problem)
        out: list[Command] = [Notice(f"auth token in use expires within {margin // 1000} s: "
                                     f"re-subscribing with the one from {best.source}")]
        for ch in stale:
            if self._sub_token.get(ch) == best.token:
                continue
            self.private[ch] = SubState.IDLE
            out.append(Send("unsubscribe", ch.replace(":", "/")))
        if len(out) > 1:
            self._gap = self._gap or "token rotation"
            self.private_problem = "token rotation"
            return out
        return []

    def _auth_refused(self, code: int, message: str, now_ms: int) -> list[Command]:
        """Blame the token the refused subscribe carried (the venue answers in order, so an error that
        names no channel is for the oldest unanswered subscribe), drop every channel subscribed with
        it, re-read the sources, then retry at once with another token or after the backoff."""
        named = next((ch for ch in self.private if re.search(re.escape(ch) + r"(?!\d)", message)), None)
        got = self._answered(named)
        blamed = got[1] if got else (self._sub_token.get(named) if named else None)
        out: list[Command] = [RefreshToken()]
        if blamed is None:
            return out
        self._refused[blamed] = now_ms
        hit = [named] if named else [ch for ch, st in self.private.items()
                                     if st is SubState.PENDING and self._sub_token.get(ch) == blamed]
        hit = [ch for ch in hit if self.private[ch] is not SubState.IDLE and self._sub_token.get(ch) == blamed]
        if not hit:
            return out  # a later answer to an attempt already handled
        for c in self._cands:  # health shows this text: never echo a token, whatever the venue says
            message = message.replace(c.token, "***")
        self.private_problem = f"{code} {message}"[:160]
        self._gap = self._gap or "auth error"
        for ch in hit:
            if self.private[ch] is SubState.ACTIVE:
                out.append(Send("unsubscribe", ch.replace(":", "/")))
            self.private[ch] = SubState.IDLE
        delay = self._backoff(now_ms) if now_ms >= self._retry_at else self._retry_at - now_ms
        out.append(AccountDown(self.private_problem, self.attempts, delay))
        return out + self._subscribe_private(now_ms)

    def _channel_up(self, channel: str) -> list[Command]:
        if self.private[channel] is SubState.ACTIVE:
            return []
        self.private[channel] = SubState.ACTIVE
        self._answered(channel)
        return [Notice(f"subscribed to {channel}")]

    def _all_up(self, now_ms: int) -> list[Command]:
        """Once every account channel is confirmed: publish the pending AccountGap, reset the backoff."""
        if not self.private_active or (self._gap is None and not self.attempts and not self.private_problem):
            return []
        out: list[Command] = []
        if self._gap is not None:
            out.append(PublishAccount(AccountGap(reason=self._gap, ts_ms=now_ms)))
            out.append(Notice(f"account channels up after {self._gap} ({self.attempts} attempt(s)); "
                              "account gap published"))
            self.account_gaps += 1
            self._gap = None
        for t in set(self._sub_token.values()):
            self._refused.pop(t, None)  # it works
        self.private_problem = ""
        self.attempts = 0
        self._retry_at = 0
        self._retry_ms = self.timing.private_retry_ms
        return out

    # --- frames ----------------------------------------------------------------------------------
    def _frame(self, raw: str | bytes, now_ms: int, now_ns: int) -> list[Command]:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            return self._bad("-", f"invalid JSON: {e}", raw, [Seen("invalid")])
        if not isinstance(data, dict):
            return self._bad("-", f"frame is a JSON {type(data).__name__}, not an object", raw, [Seen("invalid")])
        if "error" in data:
            return [Seen("error"), *self._error(data, raw, now_ms)]
        typ = data.get("type")
        if not isinstance(typ, str):
            return self._bad("-", "frame has no 'type'", raw, [Seen("invalid")])
        if typ in ("connected", "ping", "pong", "unsubscribed", "shutdown"):
            out: list[Command] = [Seen(typ)]
            if typ == "connected":
                out += self._on_connected(data, now_ms)
            elif typ == "ping":
                out.append(Send("pong"))
            elif typ == "shutdown":
                out.append(Notice(f"venue announced shutdown in {data.get('close_in_ms')} ms"))
            return out
        stage, _, _ = typ.partition("/")
        channel = data.get("channel")
        if stage not in ("subscribed", "update") or not isinstance(channel, str) or ":" not in channel:
            return [Seen("other"), Skipped(f"unhandled frame type {typ[:40]}")]
        kind, _, arg = channel.partition(":")
        out = [Seen(kind)]
        snapshot = stage == "subscribed"
        try:
            if kind == "order_book":
                if not arg.isdigit():
                    raise nz.Malformed(f"bad channel {channel[:40]!r}")
                return out + self._book(data, snapshot, int(arg), raw, now_ms, now_ns)
            if kind == "trade":
                self.last_trade_ms = now_ms
                return out + self._public_trades(data, channel)
            if channel in self.private:
                self.last_account_ms = self.last_channel_ms[channel] = now_ms
                if snapshot:
                    out += self._channel_up(channel)
                out += self._account(kind, data, snapshot, channel, now_ms)
                return out + self._all_up(now_ms)
        except nz.Malformed as e:
            return self._bad(channel, str(e), raw, out)
        return out + [Skipped(f"unsubscribed channel {channel[:40]}")]

    def _bad(self, channel: str, error: str, raw: str | bytes, prefix: list[Command]) -> list[Command]:
        self.bad_frames += 1
        return [*prefix, Malformed(channel, error, _text(raw))]

    def _error(self, data: dict[str, Any], raw: str | bytes, now_ms: int) -> list[Command]:
        err = data["error"]
        code, message = (err.get("code"), err.get("message")) if isinstance(err, dict) else (None, None)
        if not isinstance(code, int) or isinstance(code, bool):
            return self._bad("-", "error frame without an integer code", raw, [])
        message = message if isinstance(message, str) else ""
        out: list[Command] = [VenueError(code, message)]
        if (code in AUTH_ERROR_CODES or message.lower().startswith("invalid auth")) and self.private:
            out += self._auth_refused(code, message, now_ms)
        elif code == ALREADY_SUBSCRIBED:
            for ch in self.private:
                if re.search(re.escape(ch) + r"(?!\d)", message) and self.private[ch] is SubState.PENDING:
                    out += self._channel_up(ch)
            out += self._all_up(now_ms)
        return out

    def _book(self, data: dict[str, Any], snapshot: bool, market_id: int, raw: str | bytes, now_ms: int,
              now_ns: int) -> list[Command]:
        book = self.books.get(market_id)
        spec = self.specs.get(market_id)
        if book is None or spec is None:
            return [Skipped(f"book of unsubscribed market {market_id}")]
        if not snapshot and market_id in self._awaiting:
            return [Skipped("update while awaiting a snapshot")]
        try:
            ob = nz.get(data, "order_book", dict)
            bids = nz.levels(nz.get(ob, "bids", list, "order_book"), spec, "order_book.bids")
            asks = nz.levels(nz.get(ob, "asks", list, "order_book"), spec, "order_book.asks")
            nonce = nz.get(ob, "nonce", int, "order_book")
            begin = 0 if snapshot else nz.get(ob, "begin_nonce", int, "order_book")
        except nz.Malformed as e:
            # the frame's changes are lost, so the book is wrong from here on: resync now
            return self._bad(f"order_book:{market_id}", str(e), raw, []) + self._resync(market_id, BAD_FRAME, now_ms)
        if snapshot:
            book.apply_snapshot((lv for lv in bids if lv[1] > 0), (lv for lv in asks if lv[1] > 0), nonce)
            self._awaiting.pop(market_id, None)
        else:
            expected = book.nonce
            if not book.apply_update(bids, asks, begin, nonce):
                self.gaps += 1
                return self._resync(market_id, GAP, now_ms, expected, begin)
        self.last_book_ms[market_id] = now_ms
        top_bids, top_asks = book.top(self.depth)
        venue_ms = nz.book_ts_ms(data, ob, now_ms)
        return [PublishBook(BookTop(market_id=market_id, seq=nonce, venue_ts_ms=venue_ms, bids=top_bids, asks=top_asks,
                                    trace={"venue": venue_ms * 1_000_000, "feed": now_ns}))]

    @staticmethod
    def _items(by_market: dict[str, Any]) -> list[Any]:
        """``{market: [items]}`` or ``{market: item}`` flattened; each item names its own market."""
        out: list[Any] = []
        for v in by_market.values():
            out.extend(v if isinstance(v, list) else [v])
        return out

    def _each(self, items: list[Any], channel: str, fn: Callable[[Any], list[Command]]) -> list[Command]:
        """Normalise item by item: a bad item is dead-lettered alone, its neighbours still flow."""
        out: list[Command] = []
        for item in items:
            try:
                out += fn(item)
            except nz.Malformed as e:
                out += self._bad(channel, str(e), orjson.dumps(item).decode(), [])
        return out

    def _public_trades(self, data: dict[str, Any], channel: str) -> list[Command]:
        trades = nz.get(data, "trades", list)
        liq = nz.opt(data, "liquidation_trades", list, [])

        def one(t: Any) -> list[Command]:
            market = nz.get(t, "market_id", int, "trade")
            spec = self.specs.get(market)
            if spec is None:
                return [Skipped("trade of another market")]
            tr = nz.trade(t, spec)
            if not self._trades.add(tr.trade_id):
                return [Skipped("duplicate trade")]
            return [PublishTrade(tr)]

        return self._each([*trades, *liq], channel, one)

    def _account(self, kind: str, data: dict[str, Any], snapshot: bool, channel: str, now_ms: int) -> list[Command]:
        acct = self.account_index
        assert acct is not None  # private channels exist only with an account
        if kind == "account_all_orders":
            def order(o: Any) -> list[Command]:
                spec = self.specs.get(nz.get(o, "market_index", int, "order"))
                return [PublishAccount(nz.order_update(o, spec, now_ms))] if spec else [Skipped("order of another market")]
            return self._each(self._items(nz.get(data, "orders", dict)), channel, order)
        if kind == "account_all_trades":
            def fill(t: Any) -> list[Command]:
                spec = self.specs.get(nz.get(t, "market_id", int, "trade"))
                if spec is None:
                    return [Skipped("fill of another market")]
                got = nz.fills(t, spec, acct)
                new = [f for f in got if self._fills.add((f.trade_id, f.is_ask))]
                return [PublishAccount(f) for f in new] or [Skipped("fill not ours or duplicate")]
            return self._each(self._items(nz.opt(data, "trades", dict, {})), channel, fill)
        if kind == "account_all_positions":
            ts = data.get("timestamp")
            ts_ms = nz.to_ms(ts) if isinstance(ts, int) and not isinstance(ts, bool) and ts > 0 else now_ms
            seen: set[int] = set()

            def pos(p: Any) -> list[Command]:
                spec = self.specs.get(nz.get(p, "market_id", int, "position"))
                if spec is None:
                    return [Skipped("position in another market")]
                seen.add(spec.market_id)
                return [PublishAccount(nz.position(p, spec, ts_ms))]
            out = self._each(self._items(nz.get(data, "positions", dict)), channel, pos)
            if snapshot and not any(isinstance(c, Malformed) for c in out):  # a full snapshot without our market = flat
                out += [PublishAccount(Position(market_id=m, position=0, ts_ms=ts_ms)) for m in self.specs if m not in seen]
            return out
        return [Skipped(f"unhandled account channel {kind}")]  # pragma: no cover - self.private lists only the three
