"""Feed shell: the only reader of Lighter's WebSocket and the only writer of market data to Redis.

It checks the configured decimals against the venue's REST ``orderBooks`` (wrong decimals would
scale every number by a power of ten, so a mismatch keeps the feed silent and unhealthy), then runs
two tasks around ``FeedCore``: the WebSocket reader (own client, reconnect with capped exponential
backoff, every connection a full resync) and a timer (keepalive, protocol timeouts, auth-token
polling, gauges, health state). Commands from the core are carried out here and nowhere else.

Health tells the truth: ``state`` is ``ok``, ``starting`` (never up yet, less than ``START_GRACE_S``
since start, nothing known to be wrong) or ``degraded`` with a ``reason`` (book stale, venue WebSocket
down, account channels down, no valid auth token, ...); anything but ``ok`` answers 503 on ``/health``
and ``/ready``. A venue refusal, a token that is there but unusable, or wrong decimals are degraded at
once, even at start. Each transition into ``degraded`` counts once in
``mm_degraded_total{service="feed",reason}`` (reason: the code of the problem seen at that moment:
``decimals_mismatch``, ``decimals_unverified``, ``redis_down``, ``ws_down``, ``book_stale``,
``no_auth_token``, ``auth_error``, ``account_down``).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client import Counter, Gauge
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from services.feed.core import (GAP, AccountDown, Closed, Command, FeedCore, FrameIn, Malformed, Notice, Opened,
                                PublishAccount, PublishBook, PublishTrade, Reconnect, RefreshToken, Resync, Seen, Send,
                                Skipped, Timing, TokenSeen, VenueError)
from services.feed.decimals import check_decimals
from shared import clock, keys, logs
from shared.config import REPO_ROOT, Settings
from shared.degraded import DEGRADED
from shared.runtime import REDIS_ERRORS, Runtime

log = logging.getLogger("feed")

FRAMES = Counter("mm_feed_frames_total", "Venue WebSocket frames received, by channel", ["channel"])
BAD_FRAMES = Counter("mm_feed_bad_frames_total", "Malformed venue frames or items (counted, logged, dead-lettered)")
RECONNECTS = Counter("mm_ws_reconnects_total", "Venue WebSocket reconnections")
GAPS = Counter("mm_book_gaps_total", "Order book nonce gaps (each followed by a resync)", ["market"])
RESYNCS = Counter("mm_book_resyncs_total", "Order book resubscriptions, by reason", ["market", "reason"])
BOOK_AGE = Gauge("mm_book_age_seconds", "Seconds since the last applied order book frame", ["market"])
VENUE_ERRORS = Counter("mm_feed_venue_errors_total", "Error frames received from the venue", ["code"])
SKIPPED = Counter("mm_feed_skipped_total", "Well-formed venue input deliberately not published")
ACCOUNT_GAPS = Counter("mm_feed_account_gaps_total", "AccountGap messages published (account channels back up)")

BOOK_MAX_AGE_S = 5.0      # healthy only while the last book frame is younger than this
START_GRACE_S = 30.0      # soft problems read "starting" this long after start, until first up
TOKEN_FILE = REPO_ROOT / ".env.ws_token"
WS_MAX_FRAME = 16 * 2**20  # full snapshots are ~100 KB on mainnet; leave ample headroom


class FeedService:
    """``shared.runtime.Service`` for the feed."""

    name = "feed"

    def __init__(self, settings: Settings, token_file: Path | None = None, token_poll_s: float = 5.0,
                 tick_s: float = 0.25) -> None:
        self.settings = settings
        self.spec = settings.market_spec
        self.account = settings.env.account_index
        lo_ms = int(settings.feed.reconnect_min_s * 1000)
        hi_ms = int(settings.feed.reconnect_max_s * 1000)
        self.core = FeedCore([self.spec], settings.feed.book_depth, self.account,
                             Timing(private_retry_ms=max(lo_ms, 1), private_retry_max_ms=max(hi_ms, lo_ms, 1)))
        self.ws_url = settings.env.ws_url
        self.token_file = TOKEN_FILE if token_file is None else token_file
        self.token_poll_s, self.tick_s = token_poll_s, tick_s
        self.decimals = "unverified"  # -> "ok" | "mismatch"
        self.decimals_problem = ""
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._frames = 0
        self._conn_books = 0
        self._refresh = asyncio.Event()
        self._rt: Runtime | None = None
        self._redis_token: tuple[str, str] | None = None  # last token read from Redis (kept through an outage)
        self.state = "starting"  # -> "ok" | "degraded"
        self.reason = ""
        self._been_ok = False
        self._run_since: float | None = None

    # --- Service protocol ------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        log.info("feed for market %d (%s, %d/%d decimals) from %s%s", self.spec.market_id, self.spec.symbol,
                 self.spec.price_decimals, self.spec.size_decimals, self.ws_url,
                 f", account {self.account}" if self.account is not None else ", no account")

    async def run(self, rt: Runtime) -> None:
        self._rt = rt
        self._run_since = time.time()
        if not await self._verify_decimals(rt):
            await rt.stopping.wait()
            return
        if self.account is not None:
            await self._poll_token(rt)
        tasks = {asyncio.create_task(self._ws_loop(rt), name="feed-ws"),
                 asyncio.create_task(self._timer_loop(rt), name="feed-timer")}
        stopper = asyncio.create_task(rt.stopping.wait())
        try:
            done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for t in done & tasks:
                t.result()  # a crashed loop is a bug: let the runtime report it
        finally:
            stopper.cancel()
            await self._close_ws()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self, rt: Runtime) -> None:
        await self._close_ws()

    def health(self, now: float) -> tuple[bool, dict[str, Any]]:
        m = self.spec.market_id
        book_age = self._age(now, self.core.last_book_ms.get(m, 0))
        state, reason = self._observe(now)
        detail: dict[str, Any] = {
            "state": state,
            "connected": self.core.connected,
            "decimals": self.decimals,
            "book_age_s": book_age,
            "trade_age_s": self._age(now, self.core.last_trade_ms),
            "account_age_s": self._age(now, self.core.last_account_ms),
            "reconnects": self.reconnects,
            "gaps": self.core.gaps,
            "bad_frames": self.core.bad_frames,
            "seq": self.core.books[m].nonce,
        }
        if reason:
            detail["reason"] = reason
        if self.decimals_problem:
            detail["decimals_problem"] = self.decimals_problem
        if self.account is not None:
            c = self.core
            detail["account"] = {
                "index": self.account, "token_source": c.token_source,
                "token_valid_s": max(0, (c.token_deadline_ms - int(now * 1000)) // 1000) if c.token else None,
                "channels": {ch: st.value for ch, st in c.private.items()},
                "channel_age_s": {ch: self._age(now, c.last_channel_ms.get(ch, 0)) for ch in c.private},
                "attempts": c.attempts, "account_gaps": c.account_gaps,
            }
        return state == "ok", detail

    def ready(self) -> bool:
        return self._observe(time.time())[0] == "ok"

    def _problem(self, now: float) -> tuple[str, str, bool] | None:
        """``(code, reason, hard)`` of the first thing that keeps the feed from doing its job, or None.

        ``hard`` problems make the state ``degraded`` even before the feed was ever up (they will not go
        away by waiting); the others read ``starting`` during the start grace, until first up.
        """
        m = self.spec.market_id
        if self.decimals == "mismatch":
            return "decimals_mismatch", f"market decimals mismatch: {self.decimals_problem}", True
        if self.decimals != "ok":
            return "decimals_unverified", "market decimals not confirmed by the venue yet", False
        if self._rt is not None and not self._rt.redis_ok:
            return "redis_down", "redis unavailable", False
        if not self.core.connected:
            return "ws_down", "venue websocket down", False
        book_age = self._age(now, self.core.last_book_ms.get(m, 0))
        if not self.core.books[m].valid or book_age is None or book_age >= BOOK_MAX_AGE_S:
            return "book_stale", ("book stale" if book_age is None else f"book stale ({book_age:.1f} s old)"), False
        acct = self.core.account_problem(int(now * 1000))
        if acct is not None:
            code, reason = acct
            return code, reason, code == "auth_error" or (code == "no_auth_token" and self.core.tokens_found > 0)
        return None

    def _observe(self, now: float) -> tuple[str, str]:
        """Current state and reason; counts and logs each transition into ``degraded``."""
        p = self._problem(now)
        if p is None:
            state, reason, code = "ok", "", ""
            self._been_ok = True
        else:
            code, reason, hard = p
            starting = self._run_since is None or now - self._run_since < START_GRACE_S
            state = "degraded" if (hard or self._been_ok or not starting) else "starting"
        if state != self.state:
            if state == "degraded":
                DEGRADED.labels(self.name, code).inc()
                log.warning("degraded: %s", reason)
            elif state == "ok" and self.state == "degraded":
                log.info("healthy again (was degraded: %s)", self.reason)
            self.state = state
        self.reason = reason
        return state, reason

    # --- start-up check --------------------------------------------------------------------------
    async def _verify_decimals(self, rt: Runtime) -> bool:
        """Retry until the venue answers; a mismatch is final (the config must be fixed)."""
        url = f"{self.settings.env.base_url.rstrip('/')}/api/v1/orderBooks"
        delay = 0.5
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while not rt.stopping.is_set():
                try:
                    async with http.get(url, params={"market_id": str(self.spec.market_id)}) as resp:
                        if resp.status != 200:
                            raise ValueError(f"HTTP {resp.status}")
                        payload = await resp.json(content_type=None)
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
                    log.warning("cannot check market decimals at %s (%s); retrying in %.1fs", url, e, delay)
                    await rt.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                problem = check_decimals(self.spec, payload)
                if problem is not None:
                    self.decimals, self.decimals_problem = "mismatch", problem
                    log.error("refusing to publish market data: %s", problem)
                    return False
                self.decimals = "ok"
                log.info("market %d decimals confirmed by the venue", self.spec.market_id)
                return True
        return False

    # --- WebSocket -------------------------------------------------------------------------------
    async def _ws_loop(self, rt: Runtime) -> None:
        lo, hi = float(self.settings.feed.reconnect_min_s), float(self.settings.feed.reconnect_max_s)
        delay = lo
        first = True
        while not rt.stopping.is_set():
            if not first:
                self.reconnects += 1
                RECONNECTS.inc()
            first = False
            self._conn_books = 0
            try:
                async with connect(self.ws_url, open_timeout=10, close_timeout=2, max_size=WS_MAX_FRAME,
                                   ping_interval=20, ping_timeout=20) as ws:
                    self._ws = ws
                    log.info("websocket open: %s", self.ws_url)
                    await self._apply(rt, self.core.handle(Opened(), clock.now_ms()))
                    async for raw in ws:
                        await self._on_frame(rt, raw)
                if not rt.stopping.is_set():
                    log.warning("websocket closed (code %s)", ws.close_code)
            except (OSError, asyncio.TimeoutError, WebSocketException) as e:
                if not rt.stopping.is_set():
                    log.warning("websocket %s: %s: %s", self.ws_url, type(e).__name__, e)
            finally:
                self._ws = None
                await self._apply(rt, self.core.handle(Closed(), clock.now_ms()))
            if self._conn_books:  # that session worked: start the backoff over
                delay = lo
            if not await rt.sleep(delay * random.uniform(0.8, 1.0)):
                return
            delay = min(delay * 2, hi)

    async def _on_frame(self, rt: Runtime, raw: str | bytes) -> None:
        self._frames += 1
        now_ns = clock.now_ns()
        try:
            cmds = self.core.handle(FrameIn(raw), now_ns // 1_000_000, now_ns)
        except Exception as e:  # noqa: BLE001 - a core bug on one frame must not stop the feed
            log.exception("feed core failed on a frame; reconnecting for a clean state")
            self.core.bad_frames += 1
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            cmds = [Malformed("-", f"internal error: {type(e).__name__}: {e}", text[:16_384]), Reconnect("internal error")]
        await self._apply(rt, cmds)

    async def _send(self, cmd: Send) -> None:
        ws = self._ws
        if ws is None:
            return
        if cmd.type in ("subscribe", "unsubscribe"):
            log.info("%s %s%s", cmd.type, cmd.channel, " (with auth)" if cmd.auth else "")
        try:
            await ws.send(orjson.dumps(cmd.payload()).decode())
        except ConnectionClosed:
            pass  # the reader sees the closure and reconnects

    async def _close_ws(self) -> None:
        ws = self._ws
        if ws is not None:
            await ws.close()

    # --- commands --------------------------------------------------------------------------------
    async def _apply(self, rt: Runtime, cmds: list[Command]) -> None:
        for c in cmds:
            if isinstance(c, Seen):
                FRAMES.labels(c.kind).inc()
            elif isinstance(c, PublishBook):
                m = c.book.market_id
                self._conn_books += 1
                await self._redis(rt, partial(rt.bus.publish_md, keys.md_book(m), c.book, latest_key=keys.book_latest(m)))
            elif isinstance(c, PublishTrade):
                await self._redis(rt, partial(rt.bus.publish_md, keys.md_trade(c.trade.market_id), c.trade))
            elif isinstance(c, PublishAccount):
                assert self.account is not None
                await self._redis(rt, partial(rt.bus.publish, keys.acct(self.account), c.msg))
                if c.msg.type == "acct_gap":
                    ACCOUNT_GAPS.inc()
            elif isinstance(c, Send):
                await self._send(c)
            elif isinstance(c, Malformed):
                BAD_FRAMES.inc()
                entry = f"{c.channel}#{self._frames}"
                await self._redis(rt, partial(rt.bus.dead_letter, "ws", entry, {"channel": c.channel, "frame": c.raw},
                                              c.error))
            elif isinstance(c, Resync):
                market = str(c.market_id)
                RESYNCS.labels(market, c.reason).inc()
                if c.reason == GAP:
                    GAPS.labels(market).inc()
                    log.warning("book %s: nonce gap (expected begin_nonce %s, got %s); resubscribing",
                                market, c.expected_nonce, c.begin_nonce)
                else:
                    log.warning("book %s: %s; resubscribing", market, c.reason)
            elif isinstance(c, VenueError):
                VENUE_ERRORS.labels(str(c.code)).inc()
                log.warning("venue error %d: %s", c.code, c.message[:200])
            elif isinstance(c, Notice):
                log.info("%s", c.message)
            elif isinstance(c, Skipped):
                SKIPPED.inc()
                log.debug("skipped: %s", c.reason)
            elif isinstance(c, RefreshToken):
                self._refresh.set()
            elif isinstance(c, AccountDown):
                log.warning("account channels down (%s); attempt %d, re-reading auth tokens, next try in %.1f s",
                            c.reason, c.attempt, c.retry_in_ms / 1000)
            elif isinstance(c, Reconnect):
                log.warning("reconnecting: %s", c.reason)
                await self._close_ws()

    async def _redis(self, rt: Runtime, op: Callable[[], Awaitable[Any]]) -> None:
        """Run one Redis write, retrying through an outage (account events must not be lost)."""
        delay = 0.05
        while True:
            try:
                await op()
                rt.redis_ok = True
                return
            except REDIS_ERRORS as e:
                rt.redis_ok = False
                log.warning("redis write failed (%s); retrying in %.2fs", type(e).__name__, delay)
                if not await rt.sleep(delay):
                    return
                delay = min(delay * 2, 2.0)

    # --- timer: keepalive, timeouts, token, gauges ----------------------------------------------
    async def _timer_loop(self, rt: Runtime) -> None:
        next_poll = time.monotonic() + self.token_poll_s
        while await rt.sleep(self.tick_s):
            if self.account is not None and (self._refresh.is_set() or time.monotonic() >= next_poll):
                self._refresh.clear()
                next_poll = time.monotonic() + self.token_poll_s
                await self._poll_token(rt)
            await self._apply(rt, self.core.on_timer(clock.now_ms()))
            last = self.core.last_book_ms.get(self.spec.market_id)
            if last:
                BOOK_AGE.labels(str(self.spec.market_id)).set(max(0.0, time.time() - last / 1000))
            self._observe(time.time())

    async def _poll_token(self, rt: Runtime) -> None:
        found = await self._read_tokens(rt)
        for token, _ in found:
            logs.register_secret(token)
        await self._apply(rt, self.core.handle(TokenSeen.of(found), clock.now_ms()))

    async def _read_tokens(self, rt: Runtime) -> list[tuple[str, str]]:
        """Every token found: WS_AUTH_TOKEN, the first line of ``.env.ws_token``, the gateway's Redis key.

        The core reads their deadlines and picks (an expired file never hides a fresh Redis token).
        """
        found: list[tuple[str, str]] = []
        env = self.settings.env.ws_auth_token
        if env is not None and env.get_secret_value().strip():
            found.append((env.get_secret_value().strip(), "env"))
        try:
            lines = self.token_file.read_text().splitlines()
        except OSError:
            lines = []
        if lines and lines[0].strip():
            found.append((lines[0].strip().removeprefix("WS_AUTH_TOKEN=").strip(), "file"))
        try:
            raw = await rt.redis.get(keys.AUTH_WS_TOKEN)
            text = (raw.decode() if isinstance(raw, bytes) else str(raw)).strip() if raw else ""
            self._redis_token = (text, "redis") if text else None
        except REDIS_ERRORS:
            pass  # keep what we had through an outage
        if self._redis_token is not None:
            found.append(self._redis_token)
        return found

    @staticmethod
    def _age(now: float, last_ms: int) -> float | None:
        return round(max(0.0, now - last_ms / 1000), 3) if last_ms else None
