"""The notifier process (``python -m services.notifier``) against a real redis-server, delivering
through apprise's ``json://`` to a local HTTP sink: a halt on ``risk:events`` and an Alertmanager
webhook reach the chat; the URL's token is in no log line and not in /health."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from redis.asyncio import Redis

from shared import keys
from shared.schemas import RiskState, encode
from tests.conftest import REPO, free_port, wait_port

pytestmark = pytest.mark.timeout(60)
TOKEN = "s3cr3t-chat-token-0123456789"


async def test_a_halt_and_an_alert_reach_the_sink_and_the_token_stays_secret(redis: Redis, redis_server: str,
                                                                            tmp_path: Path) -> None:
    got: list[dict[str, Any]] = []

    async def sink(request: web.Request) -> web.Response:
        got.append(orjson.loads(await request.read()))
        return web.json_response({})
    app = web.Application()
    app.router.add_post("/hook/{token}", sink)
    runner = web.AppRunner(app)
    await runner.setup()
    sink_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", sink_port).start()

    await redis.xadd(keys.RISK_EVENTS, encode(RiskState(ts_ms=int(time.time() * 1000), state="ACTIVE")))
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text((REPO / "config.yaml").read_text().replace("min_interval_s: 10 ", "min_interval_s: 0  "))
    env = {**os.environ, "REDIS_URL": redis_server, "NOTIFY_URL": f"json://127.0.0.1:{sink_port}/hook/{TOKEN}",
           "LIGHTER_BOT_CONFIG": str(cfg)}
    log = tmp_path / "notifier.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.notifier", "--port", str(port)], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_port(port)

        async def until(pred: Any, what: str) -> None:
            deadline = time.monotonic() + 15
            while not pred():
                assert time.monotonic() < deadline, f"{what}; sink got {got}; log:\n{log.read_text()[-2000:]}"
                await asyncio.sleep(0.1)
        await until(lambda: any("ACTIVE" in m.get("title", "") for m in got), "the state at start")
        await redis.xadd(keys.RISK_EVENTS, encode(RiskState(ts_ms=int(time.time() * 1000), state="HALTED",
                                                            reason="kill: operator")))
        await until(lambda: any("ACTIVE -> HALTED: kill: operator" in m.get("title", "") for m in got), "the halt")
        halt = next(m for m in got if "HALTED" in m.get("title", ""))
        assert halt["type"] == "failure"

        body = {"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "StaleFeed", "severity": "critical"},
             "annotations": {"summary": "order book 30 s old"}}]}
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{port}/alert", json=body) as r:
                assert r.status == 200, await r.text()
            async with s.post(f"http://127.0.0.1:{port}/alert", data=b"not json") as r:
                assert r.status == 400
            await until(lambda: any("[FIRING] StaleFeed: order book 30 s old" in m.get("message", "") for m in got),
                        "the alert")
            async with s.get(f"http://127.0.0.1:{port}/health") as r:
                health = await r.text()
        assert '"url_scheme":"json://"' in health.replace(" ", "") and TOKEN not in health
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        await runner.cleanup()
    text = log.read_text()
    assert TOKEN not in text and "notified (failure)" in text, text[-2000:]
