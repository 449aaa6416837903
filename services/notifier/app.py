"""The notifier's shell: ``risk:events`` and Alertmanager's ``POST /alert`` in, apprise out.

One URL in ``$NOTIFY_URL`` reaches the operator's chat: Telegram (``tgram://``), Discord
(``discord://``), Slack (``slack://``), ntfy, email, a plain webhook (``json://host/path``) and the
rest of what apprise supports. The URL is a secret (it holds the chat token): registered with the
log redactor, never in health, metrics or Redis; health shows its scheme only. Without it the
messages are logged and counted, so the service can run (and be tested) everywhere.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import Counter

from shared import keys, logs
from shared.bus import TailReader
from shared.config import Settings
from shared.metrics import metric
from shared.risk_watch import newest_state
from shared.runtime import Runtime
from shared.schemas import RiskState

from services.notifier.core import Alerts, NotifierCore, Send, Tick

log = logging.getLogger("notifier")
SENT = metric(Counter, "mm_notifier_messages_total", "Messages handed to the chat, by outcome", ["outcome"])
TICK_S = 1.0


class NotifierService:
    name = "notifier"

    def __init__(self, settings: Settings, url: str | None) -> None:
        n = settings.notifier
        self.core = NotifierCore(min_interval_ms=int(n.min_interval_s * Decimal(1000)), max_lines=n.max_lines,
                                 states=n.states, alerts=n.alerts)
        self.url = url
        m = re.match(r"[a-z][a-z0-9+.-]*://", url or "")   # never more of the URL than its scheme
        self.scheme = None if not url else (m.group(0) if m else "(not a URL)")
        self.failed = 0
        self.last_error: str | None = None
        self.started = False
        self._reader: TailReader | None = None
        self._apprise: Any = None
        self.routes = (("POST", "/alert", self._on_alert),)

    async def start(self, rt: Runtime) -> None:
        if self.url:
            import apprise
            self._apprise = apprise.Apprise()
            if not self._apprise.add(self.url):
                self.last_error = f"NOTIFY_URL ({self.scheme}) is not a URL apprise knows: messages are logged only"
                log.error("%s", self.last_error)
                self._apprise = None
        newest = newest_state(await rt.redis.xrevrange(keys.RISK_EVENTS, count=1))
        if newest is not None:   # say where things stand at start (a restart mid-halt is news too)
            await self._deliver(self.core.handle(newest, int(time.time() * 1000)))
        self._reader = TailReader(rt.bus, [keys.RISK_EVENTS], block_ms=1000)
        self.started = True

    async def run(self, rt: Runtime) -> None:
        await asyncio.gather(rt.loop(self._read), rt.loop(self._tick, idle_s=TICK_S))

    async def stop(self, rt: Runtime) -> None:
        self.core.min_interval_ms = 0   # whatever is queued goes out before the process ends
        await self._deliver(self.core.handle(Tick(), int(time.time() * 1000)))

    async def _read(self) -> None:
        assert self._reader is not None
        for e in await self._reader.read():
            if isinstance(e.msg, RiskState):
                await self._deliver(self.core.handle(e.msg, int(time.time() * 1000)))

    async def _tick(self) -> None:
        await self._deliver(self.core.handle(Tick(), int(time.time() * 1000)))

    async def _on_alert(self, request: web.Request) -> web.Response:
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError as e:
            self.core.bad += 1
            return self._bad_webhook(f"not JSON: {e}")
        try:
            sends = self.core.handle(Alerts(payload), int(time.time() * 1000))
        except ValueError as e:   # the core counted it
            return self._bad_webhook(str(e))
        await self._deliver(sends)
        return web.json_response({"queued": len(self.core.queued), "sent": self.core.sent})

    @staticmethod
    def _bad_webhook(why: str) -> web.Response:
        log.warning("POST /alert: %s", why[:120])
        return web.json_response({"error": why[:120]}, status=400)

    async def _deliver(self, sends: list[Send]) -> None:
        for s in sends:
            if self._apprise is None:
                log.info("notify (%s, no NOTIFY_URL): %s | %s", s.level, s.title, s.body.replace("\n", " | "))
                SENT.labels("logged").inc()
                continue
            import apprise
            kind = {"info": apprise.NotifyType.INFO, "warning": apprise.NotifyType.WARNING,
                    "failure": apprise.NotifyType.FAILURE}[s.level]
            try:
                ok = await self._apprise.async_notify(body=s.body, title=s.title, notify_type=kind)
            except Exception as e:   # noqa: BLE001 - a chat outage must never stop the notifier
                ok, self.last_error = False, f"{type(e).__name__}"
            if ok:
                self.last_error = None
                SENT.labels("sent").inc()
                log.info("notified (%s): %s", s.level, s.title)
            else:
                self.failed += 1
                self.last_error = self.last_error or "the chat did not accept the message"
                SENT.labels("failed").inc()
                log.warning("notification not delivered (%s): %s", self.scheme, s.title)

    def health(self, now: float) -> tuple[bool, dict[str, Any]]:
        c = self.core
        problem = None if self.url else "NOTIFY_URL not set: messages are logged only"
        return self.started, {
            "state": "ok" if self.url and self._apprise is not None else "degraded",
            "reason": self.last_error if self.url and self._apprise is None else (problem or ""),
            "url_scheme": self.scheme, "sent": c.sent, "failed": self.failed, "queued": len(c.queued),
            "bad_webhooks": c.bad, "last_state": c.last_state, "last_error": self.last_error,
        }

    def ready(self) -> bool:
        return self.started


def build(settings: Settings) -> NotifierService:
    url = os.environ.get("NOTIFY_URL") or None
    logs.register_secret(url)
    if url and "://" in url:   # the token part alone too (a log line may quote a path of it)
        logs.register_secret(url.split("://", 1)[1])
    return NotifierService(settings, url)
