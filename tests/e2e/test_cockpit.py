"""The operator's cockpit against a running system: the ``mm_portfolio_*`` figures equal the venue's own
records, through the packet's own command (``dump_metrics.py --filter portfolio_``) and the aggregate
``/metrics``; ``lighter-bot status`` renders each section, a halted state and a degraded service."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import aiohttp
import pytest

from shared.ids import source_of
from tests.chaos.harness import (REPO, SERVICES, THIN_LADDER, Observer, System, Taker, hold, observing, release, settled,
                                 two_sided, until)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with System(tmp_path_factory.mktemp("cockpit")) as sysm:
        yield sysm


@pytest.fixture
async def obs(system: System) -> AsyncIterator[Observer]:
    async with observing(system) as o:
        yield o


def dump(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    urls = [a for n in SERVICES for a in ("--url", f"http://127.0.0.1:{system.port(n)}/metrics")]
    return subprocess.run([sys.executable, "scripts/dump_metrics.py", *args, *urls], cwd=REPO,
                          capture_output=True, text=True, timeout=30)


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value from dump_metrics' ``target  name{labels} value`` lines."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        _, _, sample = line.partition("  ")
        key, _, value = sample.rpartition(" ")
        out[key] = float(value)
    return out


async def test_the_portfolio_metrics_equal_the_venues_records(system: System, obs: Observer) -> None:
    await obs.set_model("calm", **THIN_LADDER)
    await two_sided(obs)
    taker = await Taker.create(obs)
    try:
        for _ in range(3):   # a few maker fills on both sides; the hedger works off what is left
            st = await obs.state()
            quotes = [o for o in obs.resting(st) if source_of(int(o["client_order_index"])) == "maker"]
            if quotes:
                await taker.hit(quotes[0])
            await asyncio.sleep(1.5)
    finally:
        await taker.close()
    await obs.set_model("calm", **THIN_LADDER, taker_rate=0.0)   # nothing trades while the figures are compared
    await settled(obs)

    async def quiet() -> dict | None:
        """The venue's records, the packet's command, the venue's records again: the same trades both times."""
        before = await obs.state()
        r = dump(system, "--filter", "portfolio_")
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        after = await obs.state()
        trades = obs.our_trades(after)
        m = samples(r.stdout)
        fills = sum(v for k, v in m.items() if k.startswith("mm_portfolio_fills{"))
        same = len(obs.our_trades(before)) == len(trades) and obs.position(before) == obs.position(after)
        return {"st": after, "trades": trades, "m": m} if same and trades and fills == len(trades) else None
    got = await until("the portfolio metrics with every venue fill, nothing trading", quiet, timeout=30, every=0.5)
    st, trades, m = got["st"], got["trades"], got["m"]
    pos = m['mm_portfolio_position{market="2"}']
    assert Decimal(str(pos)) == Decimal(obs.position(st)) / 1000, (m, system.tail(3000))
    fills = sum(v for k, v in m.items() if k.startswith("mm_portfolio_fills{"))
    assert fills == len(trades)
    volume = sum(v for k, v in m.items() if k.startswith("mm_portfolio_volume_usd{"))
    assert abs(volume - sum(float(t["usd_amount"]) for t in trades)) < 1e-6 * len(trades)
    venue_realised = float(st["accounts"][str(system.account)]["positions"]["2"]["realized_pnl"])
    assert abs(m['mm_portfolio_realised_pnl_usd{market="2"}'] - venue_realised) <= 1e-6 * len(trades)
    for name in ("pnl_usd", "unrealised_pnl_usd", "fees_usd", "inventory_notional_usd"):
        assert f'mm_portfolio_{name}{{market="2"}}' in m, name

    async def uptime() -> bool:   # the maker's session window summarises every 10 s
        return "mm_portfolio_quote_uptime_ratio" in dump(system, "--filter", "portfolio_").stdout
    await until("the maker's quote uptime", uptime, timeout=20, every=1)

    async with aiohttp.ClientSession() as s:   # the aggregate port serves every service's metrics, labelled
        async with s.get(f"http://127.0.0.1:{system.port('aggregate')}/metrics") as resp:
            text = await resp.text()
    assert resp.status == 200
    assert 'mm_portfolio_fills{market="2",service="guard",source="maker"}' in text
    assert text.count("# TYPE mm_position_lots gauge") == 1   # one family, though several services export it
    await obs.set_model("calm", **THIN_LADDER)


# --- lighter-bot status under tmux ---------------------------------------------------------------------
class Screen:
    """``lighter-bot status`` live in a detached tmux session; ``text()`` is the captured pane."""

    def __init__(self, system: System) -> None:
        self.name = f"status-{system.off}"
        cmd = f"{sys.executable} -m lab.cli status --port-offset {system.off} --interval 0.5"
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "130", "-y", "70", "-c", str(REPO), cmd],
                       check=True, env={**os.environ, "TERM": "xterm-256color"})

    def text(self) -> str:
        r = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return r.stdout

    async def shows(self, what: str, *needles: str, timeout: float = 20) -> str:
        async def seen() -> str | None:
            t = self.text()
            return t if all(n in t for n in needles) else None
        try:
            return await until(what, seen, timeout=timeout, every=0.3)
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n{self.text()}") from None

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def redis_cli(system: System, *args: str) -> str:
    port = system.redis_url.rsplit(":", 1)[1].split("/")[0]
    out = subprocess.run(["redis-cli", "-p", port, *args], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (make test installs it)")
async def test_status_shows_every_section_a_halt_and_a_degraded_service(system: System, obs: Observer) -> None:
    await two_sided(obs)
    screen = Screen(system)
    try:
        t = await screen.shows("every section", "RISK  ACTIVE", "kill: clear", "services", "position and PnL",
                               "PnL session", "PnL today", "our quotes", "last fills", "venue and feed",
                               "rejects by code", "volume quota left", "account_all_orders active")
        for name in SERVICES:
            row = [line for line in t.splitlines() if line.strip(" │").startswith(f"{name} ")]
            assert row and "DOWN" not in row[0], (name, t)   # its state (ok, or degraded under load) and reason
        assert "maker " in t and " bps" in t and "SOL" in t      # the earlier test's fills, in human units

        redis_cli(system, "SET", "risk:kill", "status test")
        await screen.shows("the halt", "RISK  HALTED", "kill: SET (status test)")
        redis_cli(system, "DEL", "risk:kill")
        await screen.shows("trading again", "RISK  ACTIVE", "kill: clear")

        feed = system.children()["feed"]
        hold(feed)   # a hung feed: it answers nothing; the maker's book goes stale
        try:
            t = await screen.shows("a degraded service", "DEGRADED", "feed: DOWN")
            assert any(line.strip(" │").startswith("feed ") and "DOWN" in line for line in t.splitlines()), t
        finally:
            release(feed)
        await screen.shows("the feed back", "account_all_orders active", "RISK  ACTIVE", timeout=60)
    finally:
        screen.close()
    # the module's last test: the system stops here (quoting again after the hung feed, on the standard
    # tier's request budget, is the outage tests' business, not the screen's)
