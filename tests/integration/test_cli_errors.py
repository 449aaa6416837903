"""Every entry point, as a real process: a config value out of bounds, a bad port flag or variable
and a port already in use are each one line on stderr, exit status 2, no traceback, nothing started.

No Redis is needed: each process must stop before it would reach one (REDIS_URL points at a port
where nothing listens, so a process that got that far would hang and fail the test on its timeout).
The cases run side by side, once per module.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.timeout(90)

SERVICES = ("feed", "maker", "hedger", "guard", "gateway")
DROP = ("PORT", "HEALTH_HOST", "LIGHTER_BOT_CONFIG", "LIGHTER_PROFILE", "VENUE_PORT", "VENUE_HOST", "VENUE_SEED")


@dataclass
class Case:
    argv: list[str]
    expect: list[str]                       # each must appear in the one stderr line
    env: dict[str, str] = field(default_factory=dict)
    config: str | None = None               # YAML for --config (a temp file next to an empty profile)


def _cases(held: int) -> dict[str, Case]:
    svc = lambda name, *a: [sys.executable, "-m", f"services.{name}", *a]  # noqa: E731
    core = lambda *a: [sys.executable, "-m", "core.main", *a]  # noqa: E731
    venue = lambda *a: [sys.executable, "-m", "services.venue", *a]  # noqa: E731
    cases = {
        "guard --port 99999": Case(svc("guard", "--port", "99999"), ["argument --port", "99999", "1..65535"]),
        "guard --port 0": Case(svc("guard", "--port", "0"), ["argument --port", "invalid port 0"]),
        "guard $PORT=70000": Case(svc("guard"), ["$PORT", "70000"], env={"PORT": "70000"}),
        "guard $PORT=abc": Case(svc("guard"), ["$PORT", "'abc'"], env={"PORT": "abc"}),
        "guard max_position_units -1": Case(svc("guard"), ["c.yaml: guard.max_position_units", "greater than 0"],
                                            config="guard:\n  max_position_units: -1\n"),
        "hedger trigger_units -5": Case(svc("hedger"), ["c.yaml: hedger.trigger_units", "greater than or equal to 0"],
                                        config="hedger:\n  trigger_units: -5\n"),
        "maker spread_bps 0": Case(svc("maker"), ["c.yaml: maker.spread_bps", "greater than 0"],
                                   config="maker:\n  spread_bps: 0\n"),
        "guard ports.guard 70000": Case(svc("guard"), ["c.yaml: ports.guard", "65535"], config="ports:\n  guard: 70000\n"),
        "feed ports.maker = ports.feed": Case(svc("feed"), ["c.yaml: ports.maker", "also ports.feed"],
                                              config="ports:\n  maker: 8081\n"),
        "guard $PORT busy": Case(svc("guard"), [f"port {held} on 0.0.0.0 is already in use", "$PORT"],
                                 env={"PORT": str(held)}),
        "gateway ports.gateway busy": Case(svc("gateway"), [f"port {held}", "already in use", "ports.gateway"],
                                           config=f"ports:\n  gateway: {held}\n"),
        "venue --port 99999": Case(venue("--port", "99999"), ["venue: error:", "--port", "1..65535"]),
        "venue --port 0": Case(venue("--port", "0"), ["venue: error:", "--port", "invalid port 0"]),
        "venue --seed x": Case(venue("--seed", "x"), ["venue: error:", "--seed"]),
        "venue --port busy": Case(venue("--port", str(held)), [f"port {held} on 127.0.0.1 is already in use", "--port"]),
        "core --port-offset -5": Case(core("--port-offset", "-5"), ["argument --port-offset", "'-5'"]),
        "core --seed x": Case(core("--seed", "x"), ["argument --seed", "'x'"]),
        "core --port 9000": Case(core("--port", "9000"), ["unrecognized arguments: --port 9000"]),
        "core $PORT=99999": Case(core(), ["$PORT", "99999"], env={"PORT": "99999"}),
        "core --port-offset 60000": Case(core("--port-offset", "60000"), ["68000", "beyond 65535"]),
        "core $PORT busy": Case(core(), [f"port {held} on 127.0.0.1 is already in use", "$PORT"], env={"PORT": str(held)}),
        "core aggregate+offset busy": Case(core("--port-offset", str(held - 8000)),
                                           [f"port {held}", "already in use", f"--port-offset {held - 8000}"]),
    }
    # every script and tool, three bad inputs each (the packet's commands as an operator mistypes them)
    script = lambda name, *a: [sys.executable, f"scripts/{name}.py", *a]  # noqa: E731
    tool = lambda *a: [sys.executable, "-m", "lab.cli", *a]  # noqa: E731
    bad = {
        "set_market": [(("--balance-usd", "30"), "--symbol"), (("--symbol", "SOL", "--balance-usd", "thirty"), "--balance-usd"),
                       (("--symbol", "SOL", "--balance-usd", "30", "--tier", "gold"), "--tier")],
        "apply_profile": [((), "--profile"), (("--profile", "p.yaml", "--bogus"), "--bogus"),
                          (("--profile", "p.yaml", "--config", "nope.yaml"), "nope.yaml")],
        "fetch_trades": [((), "--market-id"), (("--market-id", "2", "--limit", "0"), "--limit"),
                         (("--market-id", "2", "--mark-mid", "abc"), "--mark-mid")],
        "mm_report": [(("--since-s", "-5"), "--since-s"), (("--sharpe-interval-s", "0"), "--sharpe-interval-s"),
                      (("--account", "x"), "--account")],
        "refresh_ws_token": [(("--ttl-s", "x"), "--ttl-s"), (("--bogus",), "--bogus"), (("--ttl-s", "5"), "--ttl-s")],
        "suggest_market_targets": [(("--top", "-1"), "--top"), (("--balance-usd", "x"), "--balance-usd"),
                                   (("--sizing-multiplier", "nan"), "--sizing-multiplier")],
        "dump_metrics": [(("--timeout", "x"), "--timeout"), (("--port-offset", "x"), "--port-offset"), (("--bogus",), "--bogus")],
        "redis_acl": [((), "required"), (("acl", "--layout", "bogus"), "--layout"), (("compose-env", "--port", "x"), "--port")],
    }
    for name, inputs in bad.items():
        for args, word in inputs:
            cases[f"{name} {' '.join(args) or '(no args)'}"] = Case(script(name, *args), [f"{name}.py", word])
    for args, word in ((("status", "--interval", "0"), "--interval"), (("status", "--port-offset", "x"), "--port-offset"),
                       (("status", "--bogus"), "--bogus")):
        cases[f"lighter-bot {' '.join(args)}"] = Case(tool(*args), ["lighter-bot", word])
    for name in SERVICES:
        cases[f"{name} --port busy"] = Case(svc(name, "--port", str(held), "--host", "127.0.0.1"),
                                            [f"python -m services.{name}: error: port {held} on 127.0.0.1 is already in use",
                                             "--port"])
    return cases


@dataclass
class Result:
    argv: list[str]
    code: int | None
    stdout: str
    stderr: str


def _run(case: Case, tmp: Path, name: str) -> Result:
    env = {k: v for k, v in os.environ.items() if k not in DROP}
    env.update(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", LIGHTER_ACCOUNT_INDEX="301", **case.env)
    argv = list(case.argv)
    if "core.main" in argv:
        argv += ["--env-file", str(tmp / "env.local")]   # never the repo's .env.local
    if case.config is not None:
        d = tmp / name.replace(" ", "_").replace("$", "").replace("/", "_")
        d.mkdir()
        (d / "p.yaml").write_text("{}\n")
        (d / "c.yaml").write_text("profile: p.yaml\n" + case.config)
        argv += ["--config", str(d / "c.yaml")]
    try:
        r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
        return Result(argv, r.returncode, r.stdout, r.stderr)
    except subprocess.TimeoutExpired as e:
        return Result(argv, None, str(e.stdout or ""), str(e.stderr or "") + "\n[timed out: it went on starting]")


@pytest.fixture(scope="module")
def held_port() -> Iterator[int]:
    """A port someone else already listens on (all interfaces)."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.fixture(scope="module")
def results(held_port: int, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Case, Result]]:
    tmp = tmp_path_factory.mktemp("cli_errors")
    cases = _cases(held_port)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run, case, tmp, name) for name, case in cases.items()}
        return {name: (cases[name], f.result()) for name, f in futures.items()}


CASE_NAMES = list(_cases(50_000))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_one_line_exit_2_no_traceback(results: dict[str, tuple[Case, Result]], name: str) -> None:
    case, r = results[name]
    lines = r.stderr.strip().splitlines()
    where = f"{' '.join(r.argv)}\nexit {r.code}\nstderr:\n{r.stderr}\nstdout:\n{r.stdout}"
    assert r.code == 2, where
    assert len(lines) == 1, where
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, where
    assert r.stdout.strip() == "", where
    for word in case.expect:
        assert word in lines[0], f"{word!r} missing from: {lines[0]}"


def test_a_port_taken_after_the_check_is_the_same_one_line(held_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    """The race behind the early check: the site itself fails to bind (runtime and core.main)."""
    from core.main import Supervisor
    from shared.config import Settings
    from shared.runtime import _amain

    class Svc:
        name = "guard"

    assert asyncio.run(_amain(Svc(), Settings(), "127.0.0.1", held_port, "ports.guard")) == 2  # type: ignore[arg-type]
    assert asyncio.run(Supervisor([], held_port, port_source="$PORT").run()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m services.guard: error: port {held_port} on 127.0.0.1 is already in use (set by ports.guard)",
                   f"python -m core.main: error: port {held_port} on 127.0.0.1 is already in use (set by $PORT)"]
