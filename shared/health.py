"""One aiohttp site per service: ``/health`` (liveness, 200/503 + JSON), ``/ready``, ``/metrics``.

Health output never contains secrets: services report ages, counters and states only.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

HealthFn = Callable[[], tuple[bool, dict[str, Any]]]
ReadyFn = Callable[[], bool]


Route = tuple[str, str, Callable[[web.Request], Any]]   # (method, path, handler): a service's own endpoints


def make_app(health: HealthFn, ready: ReadyFn, routes: tuple[Route, ...] = ()) -> web.Application:
    async def _health(_: web.Request) -> web.Response:
        ok, detail = health()
        return web.json_response({"status": "ok" if ok else "unhealthy", **detail}, status=200 if ok else 503)

    async def _ready(_: web.Request) -> web.Response:
        ok = ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def _metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/health", _health)
    app.router.add_get("/ready", _ready)
    app.router.add_get("/metrics", _metrics)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Listen on ``host:port``; an OSError (port in use, no permission) is raised with nothing left running."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
