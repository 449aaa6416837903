"""The thin shell every service shares: CLI + settings, logging, Redis with reconnect, heartbeat,
health site, signals and graceful shutdown.

A service implements ``Service``; ``run_service`` owns everything impure around it. On SIGTERM or
SIGINT the runtime sets ``stopping``, lets ``run`` return, then awaits ``stop`` (the gateway
cancels every open order there) before exiting 0.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from prometheus_client import Gauge, Info
from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from shared import keys, logs
from shared.bus import Bus
from shared.cli import fail, service_parser
from shared.config import ConfigError, Settings, load_settings
from shared.health import make_app, start_site
from shared.ports import bind_error, bind_problem, env_port
from shared.risk_watch import trading_view

log = logging.getLogger("runtime")
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
UP = Gauge("mm_up", "1 while the service loop runs", ["service"])
BUILD = Info("mm_build", "Service build information")


class Service(Protocol):
    name: str

    async def start(self, rt: "Runtime") -> None: ...
    async def run(self, rt: "Runtime") -> None: ...
    async def stop(self, rt: "Runtime") -> None: ...
    def health(self, now: float) -> tuple[bool, dict[str, Any]]: ...
    def ready(self) -> bool: ...


class Runtime:
    """What a service shell gets: settings, Redis, the bus and the stop signal."""

    def __init__(self, name: str, settings: Settings, redis: Redis) -> None:
        self.name = name
        self.settings = settings
        self.redis = redis
        self.bus = Bus(redis, name)
        self.stopping = asyncio.Event()
        self.redis_ok = False
        self.started_at = time.time()
        self.trading: dict[str, str] = {"state": "HALTED", "reason": "trading state not read yet"}

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; return False when stopping."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
            return False
        except asyncio.TimeoutError:
            return True

    async def loop(self, step: Callable[[], Awaitable[None]], idle_s: float = 0.0) -> None:
        """Run ``step`` until stopping; survive Redis outages with a capped backoff."""
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                await step()
                self.redis_ok = True
                backoff = 0.1
                if idle_s:
                    await self.sleep(idle_s)
            except REDIS_ERRORS as e:
                self.redis_ok = False
                log.warning("redis unavailable (%s); retrying in %.1fs", type(e).__name__, backoff)
                await self.sleep(backoff)
                backoff = min(backoff * 2, 2.0)


def connect_redis(url: str) -> Redis:
    return Redis.from_url(url, retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
                          retry_on_error=[RedisConnectionError, RedisTimeoutError], health_check_interval=10,
                          socket_connect_timeout=2, socket_timeout=None)


async def _wait_redis(rt: Runtime) -> bool:
    delay = 0.1
    while not rt.stopping.is_set():
        try:
            await rt.redis.ping()
            rt.redis_ok = True
            return True
        except REDIS_ERRORS:
            log.warning("waiting for redis at %s", rt.settings.env.redis_url.split("@")[-1])
            await rt.sleep(delay)
            delay = min(delay * 2, 2.0)
    return False


async def _heartbeat(rt: Runtime) -> None:
    """Beat every second; in the same round trip read the trading state, so every ``/health`` shows it."""
    async def beat() -> None:
        pipe = rt.redis.pipeline(transaction=False)
        pipe.set(keys.heartbeat(rt.name), str(int(time.time() * 1000)), px=keys.HEARTBEAT_TTL_MS)
        pipe.get(keys.RISK_STATE)
        pipe.xrevrange(keys.RISK_EVENTS, count=1)
        _, state, last = await pipe.execute()
        rt.trading = trading_view(state, last, int(time.time() * 1000))
    await rt.loop(beat, idle_s=1.0)


async def _amain(service: Service, settings: Settings, host: str, port: int, port_source: str = "--port") -> int:
    rt = Runtime(service.name, settings, connect_redis(settings.env.redis_url))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rt.stopping.set)

    def health() -> tuple[bool, dict[str, Any]]:
        ok, detail = service.health(time.time())
        detail.setdefault("trading", rt.trading)   # services that do not follow the state (the feed) still show it
        return ok and rt.redis_ok, {"service": service.name, "redis": rt.redis_ok,
                                    "uptime_s": round(time.time() - rt.started_at, 1), **detail}

    try:   # before Redis or any work: taken since run_service's check = the same one-line error
        runner = await start_site(make_app(health, lambda: rt.redis_ok and service.ready(),
                                           tuple(getattr(service, "routes", ()))), host, port)
    except OSError as e:
        await rt.redis.aclose()
        sys.stderr.write(f"python -m services.{service.name}: error: {bind_error(e, host, port, port_source)}\n")
        return 2
    log.info("%s listening on %s:%d (health/metrics)", service.name, host, port)
    code = 0
    try:
        if not await _wait_redis(rt):
            return 0
        await service.start(rt)
        UP.labels(service.name).set(1)
        hb = asyncio.create_task(_heartbeat(rt))
        main = asyncio.create_task(service.run(rt))
        stop_wait = asyncio.create_task(rt.stopping.wait())
        done, _ = await asyncio.wait({main, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if main in done and main.exception() is not None:
            log.error("%s main loop failed", service.name, exc_info=main.exception())
            code = 1
        rt.stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(main), timeout=5)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - shutdown must go on
            main.cancel()
        log.info("%s stopping", service.name)
        try:
            await asyncio.wait_for(service.stop(rt), timeout=15)
        except Exception:  # noqa: BLE001
            log.exception("%s stop hook failed", service.name)
            code = code or 1
        hb.cancel()
        UP.labels(service.name).set(0)
    finally:
        await runner.cleanup()
        await rt.redis.aclose()
    return code


def load_or_exit(prog: str, config: str | None, profile: str | None) -> Settings:
    try:
        return load_settings(config, profile)
    except ConfigError as e:
        sys.stderr.write(f"{prog}: config error: {e}\n")
        raise SystemExit(2) from None


def run_service(name: str, factory: Callable[[Settings], Service], description: str,
                argv: Sequence[str] | None = None) -> None:
    """Entry point used by every ``services/<name>/__main__.py``."""
    prog = f"python -m services.{name}"
    args = service_parser(name, description).parse_args(argv)
    settings = load_or_exit(prog, args.config, args.profile)
    port, source = args.port, "--port"
    if port is None:
        try:
            port, source = env_port(os.environ), "$PORT"
        except ValueError as e:
            fail(prog, str(e))
    if port is None:
        port, source = getattr(settings.ports, name), f"ports.{name}"
    host = args.host or os.environ.get("HEALTH_HOST") or "0.0.0.0"
    problem = bind_problem(host, port, source, "--host" if args.host else "$HEALTH_HOST")
    if problem:   # before logging, the service, Redis: a busy port starts nothing
        fail(prog, problem)
    logs.setup(name, args.log_level)
    for s in (settings.env.api_private_key, settings.env.ws_auth_token, settings.env.api_bearer,
              settings.env.extra_api_keys):
        logs.register_secret(s.get_secret_value() if s else None)
    if settings.env.extra_api_keys is not None:   # each lane's key alone too ("index:key,index:key")
        for part in settings.env.extra_api_keys.get_secret_value().split(","):
            logs.register_secret(part.partition(":")[2].strip() or None)
    BUILD.info({"service": name, "version": "0.1.0"})
    service = factory(settings)
    raise SystemExit(asyncio.run(_amain(service, settings, host, port, source)))
