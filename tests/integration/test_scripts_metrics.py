"""scripts/dump_metrics.py against real health/metrics sites (``shared.health``, what every service
serves), run as a subprocess while the sites run in this test's event loop."""
from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import Gauge

from shared.health import make_app, start_site
from tests.conftest import REPO, free_port

EQUITY = Gauge("mm_scripttest_portfolio_equity_usd", "Equity marked to mid (test)", ["market"])
EQUITY.labels("2").set(12.5)
OTHER = Gauge("mm_scripttest_book_age_seconds", "Book age (test)")
OTHER.set(0.25)


@pytest.fixture
async def sites() -> AsyncIterator[list[int]]:
    runners: list[web.AppRunner] = []
    ports = [free_port(), free_port()]
    for port in ports:
        runners.append(await start_site(make_app(lambda: (True, {}), lambda: True), "127.0.0.1", port))
    try:
        yield ports
    finally:
        for r in runners:
            await r.cleanup()


async def dump(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "LIGHTER_BOT_CONFIG")} | (env_extra or {})
    proc = await asyncio.create_subprocess_exec(sys.executable, str(REPO / "scripts" / "dump_metrics.py"), *args, cwd=cwd,
                                                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_filter_over_explicit_urls(sites: list[int], tmp_path: Path) -> None:
    urls = [a for p in sites for a in ("--url", f"http://127.0.0.1:{p}/metrics")]
    code, out, err = await dump("--filter", "scripttest_portfolio_", *urls, cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and err == ""
    for p, line in zip(sites, lines, strict=True):
        assert line.startswith(f"127.0.0.1:{p} ") and line.endswith('mm_scripttest_portfolio_equity_usd{market="2"} 12.5')
    assert "book_age" not in out


async def test_default_targets_come_from_the_config_ports(sites: list[int], tmp_path: Path) -> None:
    dead = [free_port() for _ in range(3)]   # every port must differ (config check)
    (tmp_path / "c.yaml").write_text(
        f"profile: {REPO / 'profiles' / 'market_2.yaml'}\n"
        f"ports:\n  feed: {sites[0]}\n  maker: {sites[1]}\n  hedger: {dead[0]}\n  guard: {dead[1]}\n  gateway: {dead[2]}\n")
    code, out, err = await dump("--filter", "scripttest_", "--config", "c.yaml", cwd=tmp_path)
    assert code == 0, err
    names = sorted(line.split()[0] for line in out.splitlines())
    assert names == ["feed", "feed", "maker", "maker"]  # two matching samples per answering service
    assert [ln.split(":")[1].split()[0] for ln in err.splitlines()] == ["hedger", "guard", "gateway"]


async def test_port_env_adds_the_one_service_of_a_railway_container(sites: list[int], tmp_path: Path) -> None:
    dead = [free_port() for _ in range(5)]
    (tmp_path / "c.yaml").write_text(
        f"profile: {REPO / 'profiles' / 'market_2.yaml'}\n"
        f"ports:\n  feed: {dead[0]}\n  maker: {dead[1]}\n  hedger: {dead[2]}\n  guard: {dead[3]}\n  gateway: {dead[4]}\n")
    code, out, _ = await dump("--filter", "scripttest_portfolio_", "--config", "c.yaml", cwd=tmp_path,
                              env_extra={"PORT": str(sites[0])})
    assert code == 0 and out.startswith(f"port {sites[0]}  mm_scripttest_portfolio_equity_usd")


async def test_nothing_answering_is_exit_1_and_bad_flags_exit_2(tmp_path: Path) -> None:
    code, _, err = await dump("--url", f"http://127.0.0.1:{free_port()}/metrics", cwd=tmp_path)
    assert code == 1 and "no target answered" in err.splitlines()[-1]
    for args in (["--url", "ftp://x"], ["--timeout", "0"], ["--nope"]):
        code, _, err = await dump(*args, cwd=tmp_path)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
