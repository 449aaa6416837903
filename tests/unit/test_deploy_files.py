"""Deployment files agree with the operator contract: start commands, health paths, ports, Redis
durability, Railway deploy settings, and every referenced entry point exists.

Docker is not available where the suite runs, so the compose file is checked structurally; the
health-check commands it embeds are executed for real against a real health site and redis-server.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, free_port, wait_port

SERVICES = ("feed", "maker", "hedger", "guard", "gateway")
TRADING = ("maker", "hedger", "guard", "gateway")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _ports() -> dict[str, int]:
    return yaml.safe_load((REPO / "config.yaml").read_text())["ports"]


def _railway(path: str) -> dict[str, Any]:
    return json.loads((REPO / path).read_text())


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert m, duration
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60}[m[2]]


def _module(argv: list[str]) -> str:
    """``python -m X ...`` (possibly inside ``/bin/sh -c "exec ..."``) -> ``X``."""
    if argv[:2] == ["/bin/sh", "-c"]:
        argv = [a for a in shlex.split(argv[2]) if a != "exec"]
    assert argv[0] == "python" and argv[1] == "-m", argv
    return argv[2]


# --- docker compose ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SERVICES)
def test_compose_service_start_port_health_and_dependencies(name: str) -> None:
    svc = _compose()["services"][name]
    assert _argv(svc["command"]) == ["python", "-m", f"services.{name}"]
    port = _ports()[name]
    env = svc["environment"]
    assert env["PORT"] == str(port)
    assert "REDIS_URL" not in env   # it comes from the service's own env file, with its own Redis user
    assert env["LIGHTER_BASE_URL"] == "${LIGHTER_BASE_URL:-http://venue:8700}"  # local venue unless .env says otherwise
    assert svc["ports"] == [f"127.0.0.1:{port}:{port}"]
    test = " ".join(svc["healthcheck"]["test"])
    assert "/health" in test and "PORT" in test
    deps = svc["depends_on"]
    assert deps["redis"] == {"condition": "service_healthy"}
    assert deps["venue"] == {"condition": "service_healthy"}
    assert svc["init"] is True
    *credentials, own = svc["env_file"]
    assert [f["path"] for f in credentials] == [".env.local", ".env", ".env.ws_token"]
    assert all(f.get("required") is False for f in credentials)  # optional: a fresh clone starts without .env
    # last (wins), required: `make compose-env` writes it; it holds this service's REDIS_URL and nothing else
    assert own == {"path": f".env.redis.{name}", "required": True}


@pytest.mark.parametrize("name", ["maker", "gateway"])
def test_compose_gives_cancel_on_stop_time(name: str) -> None:
    assert _seconds(_compose()["services"][name]["stop_grace_period"]) >= 15


def test_compose_redis_is_durable_healthchecked_and_local_only() -> None:
    c = _compose()
    r = c["services"]["redis"]
    assert r["image"].startswith("redis:7")
    assert "/usr/local/etc/redis/redis.conf" in _argv(r["command"])
    assert "./redis/redis.conf:/usr/local/etc/redis/redis.conf:ro" in r["volumes"]
    data = [v for v in r["volumes"] if v.endswith(":/data")]
    assert data and data[0].split(":")[0] in c["volumes"]  # a named volume, not the container layer
    hc = r["healthcheck"]
    assert "redis-cli --user healthcheck" in " ".join(hc["test"]) and " ping " in " ".join(hc["test"])
    assert (hc["interval"], hc["retries"], hc["start_period"]) == ("2s", 15, "5s")


def test_compose_redis_starts_with_the_acl_file_the_one_shot_writes() -> None:
    c = _compose()
    r, w = c["services"]["redis"], c["services"]["redis-acl"]
    argv = _argv(r["command"])
    assert argv[argv.index("--aclfile") + 1] == "/acl/users.acl"
    assert "redis-acl:/acl:ro" in r["volumes"] and "redis-acl:/acl" in w["volumes"] and "redis-acl" in c["volumes"]
    assert r["depends_on"]["redis-acl"] == {"condition": "service_completed_successfully"}
    wargv = _argv(w["command"])
    assert wargv[:3] == ["python", "scripts/redis_acl.py", "acl"]
    assert wargv[wargv.index("--layout") + 1] == "compose" and wargv[wargv.index("--out") + 1] == "/acl/users.acl"
    assert w["env_file"] == [{"path": ".env.redis", "required": True}]
    assert "ports" not in w and w["restart"] == "no"
    # only the one-shot and redis mount the volume; no bot service gets every password
    for name, svc in c["services"].items():
        if name not in ("redis", "redis-acl"):
            assert not any("redis-acl" in str(v) for v in svc.get("volumes", [])), name
            assert ".env.redis" not in [f["path"] for f in svc.get("env_file", []) if isinstance(f, dict)], name


def test_compose_redis_wiring_for_real(tmp_path: Path) -> None:
    """What compose does, without docker: `make compose-env`, the redis-acl command, redis-server with the
    compose arguments, the healthcheck, and each service's REDIS_URL from its own env file."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        pytest.fail("redis-server not found (make test installs it)")
    from core.localenv import read_env_file
    from shared import acl, keys

    make = re.search(r"^compose-env:.*\n\t(.+)$", (REPO / "Makefile").read_text(), re.M)
    assert make and _argv(make[1])[:2] == ["python3", "scripts/redis_acl.py"]
    done = subprocess.run([sys.executable, *_argv(make[1])[1:], "--dir", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    c = _compose()
    passwords = read_env_file(tmp_path / ".env.redis")
    wargv = [sys.executable if a == "python" else a.replace("/acl/", f"{tmp_path}/acl/")
             for a in _argv(c["services"]["redis-acl"]["command"])]
    done = subprocess.run(wargv, cwd=REPO, env={"PATH": "/usr/bin:/bin", **passwords}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    port = free_port()
    argv = [a.replace("/usr/local/etc/redis/redis.conf", str(REPO / "redis" / "redis.conf")).replace("/acl/", f"{tmp_path}/acl/")
            .replace("/data", str(tmp_path)) for a in _argv(c["services"]["redis"]["command"])]
    proc = subprocess.Popen([binary, *argv[1:], "--port", str(port), "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        hc = c["services"]["redis"]["healthcheck"]["test"]
        assert hc[0] == "CMD-SHELL"
        ok = subprocess.run(["/bin/sh", "-c", hc[1].replace("redis-cli", f"{cli} -p {port}")], capture_output=True, timeout=10)
        assert ok.returncode == 0, ok
        for name in SERVICES:
            url = read_env_file(tmp_path / f".env.redis.{name}")["REDIS_URL"].replace("@redis:6379/", f"@127.0.0.1:{port}/")
            out = subprocess.run([cli, "-u", url, "--no-auth-warning", "SET", keys.heartbeat(name), "1"], capture_output=True,
                                 text=True, timeout=10)
            assert out.stdout.strip() == "OK", (name, out)
        plain = subprocess.run([cli, "-p", str(port), "GET", "risk:kill"], capture_output=True, text=True, timeout=10)
        assert "NOAUTH" in plain.stdout + plain.stderr                # the default user is off
        op = subprocess.run([cli, "-p", str(port), "--user", "operator", "SET", "risk:kill", "manual"], capture_output=True,
                            text=True, timeout=10, env={"REDISCLI_AUTH": passwords[acl.password_var("operator")]})
        assert op.stdout.strip() == "OK", op
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, svc in _compose()["services"].items():
        for p in svc.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), (name, p)


def test_compose_venue_serves_the_contract_port_with_health() -> None:
    v = _compose()["services"]["venue"]
    argv = _argv(v["command"])
    assert _module(argv) == "services.venue"
    assert argv[argv.index("--port") + 1] == str(_ports()["venue"])
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert "/health" in " ".join(v["healthcheck"]["test"])


def test_compose_healthcheck_command_passes_on_200_and_fails_on_503(tmp_path: Path) -> None:
    """Run the exact healthcheck test from the compose file against a real shared.health site."""
    test = _compose()["services"]["maker"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    argv = [sys.executable if a == "python" else a for a in test[1:]]
    server = tmp_path / "site.py"
    server.write_text(
        "import asyncio, sys\n"
        "from shared.health import make_app, start_site\n"
        "ok = sys.argv[2] == 'ok'\n"
        "async def main():\n"
        "    await start_site(make_app(lambda: (ok, {}), lambda: ok), '127.0.0.1', int(sys.argv[1]))\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n")
    for state, expect_ok in (("ok", True), ("bad", False)):
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(server), str(port), state], cwd=REPO)
        try:
            wait_port(port)
            done = subprocess.run(argv, env={"PORT": str(port)}, capture_output=True, timeout=30)
            assert (done.returncode == 0) is expect_ok, done.stderr
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_redis_conf_turns_aof_on_in_a_real_redis_server(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found (make test installs it)")
    port = free_port()
    proc = subprocess.Popen([binary, str(REPO / "redis" / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        cli = shutil.which("redis-cli") or "redis-cli"

        def get(key: str) -> str:
            out = subprocess.run([cli, "-p", str(port), "CONFIG", "GET", key], capture_output=True, text=True, timeout=10)
            return out.stdout.split("\n")[1]
        assert get("appendonly") == "yes"
        assert get("appendfsync") == "everysec"
        assert get("maxmemory-policy") == "noeviction"
        assert get("acl-pubsub-default") == "resetchannels"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert (tmp_path / "appendonlydir").is_dir()


# --- Railway ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*SERVICES, "venue"])
def test_railway_service_files(name: str) -> None:
    cfg = _railway(f"services/{name}/railway.json")
    assert cfg["$schema"] == "https://railway.com/railway.schema.json"
    assert cfg["build"]["builder"] == "DOCKERFILE" and cfg["build"]["dockerfilePath"] == "Dockerfile"
    watch = cfg["build"]["watchPatterns"]
    assert f"/services/{name}/**" in watch and "/shared/**" in watch and "/Dockerfile" in watch
    d = cfg["deploy"]
    assert _module(_argv(d["startCommand"])) == f"services.{name}"
    assert d["healthcheckPath"] == "/health"
    assert d["restartPolicyType"] == "ALWAYS"
    for key in ("healthcheckTimeout", "overlapSeconds", "drainingSeconds"):  # Railway rejects strings here
        assert key not in d or type(d[key]) is int, key
    if name in TRADING:
        assert d["overlapSeconds"] == 0 and d["drainingSeconds"] >= 15
    if name == "feed":
        assert d["overlapSeconds"] == 0  # two feeds would publish every fill twice into acct:*
    if name == "venue":  # the venue has no $PORT of its own: the start command passes it
        assert "$PORT" in d["startCommand"] or "${PORT" in d["startCommand"]


def test_railway_root_is_the_all_in_one_bot() -> None:
    cfg = _railway("railway.json")
    assert cfg["$schema"] == "https://railway.com/railway.schema.json"
    assert cfg["build"]["builder"] == "DOCKERFILE"
    d = cfg["deploy"]
    assert _module(_argv(d["startCommand"])) == "core.main"
    assert d["healthcheckPath"] == "/health" and d["restartPolicyType"] == "ALWAYS"
    assert d["overlapSeconds"] == 0 and type(d["drainingSeconds"]) is int and d["drainingSeconds"] >= 15


# --- entry points and image -------------------------------------------------------------------------
def _referenced_modules() -> set[str]:
    mods = {_module(_argv(s["command"])) for s in _compose()["services"].values()
            if "command" in s and _argv(s["command"])[:2] == ["python", "-m"]}
    for path in ["railway.json", *(f"services/{n}/railway.json" for n in (*SERVICES, "venue"))]:
        mods.add(_module(_argv(_railway(path)["deploy"]["startCommand"])))
    cmd = re.search(r'^CMD \[(.*)\]$', (REPO / "Dockerfile").read_text(), re.M)
    assert cmd
    mods.add(_module(json.loads(f"[{cmd[1]}]")))
    return mods


def test_every_referenced_entry_point_exists() -> None:
    mods = _referenced_modules()
    assert {f"services.{n}" for n in (*SERVICES, "venue")} | {"core.main"} <= mods
    for mod in mods:
        path = REPO / Path(*mod.split("."))
        assert (path / "__main__.py").is_file() or path.with_suffix(".py").is_file(), f"{mod} has no entry point"


def test_every_referenced_script_exists() -> None:
    scripts = [_argv(s["command"])[1] for s in _compose()["services"].values()
               if "command" in s and _argv(s["command"])[0] == "python" and _argv(s["command"])[1] != "-m"]
    assert scripts == ["scripts/redis_acl.py"]
    for path in scripts:
        assert (REPO / path).is_file(), path


def test_dockerfile_one_slim_image_non_root_project_installed() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "pyproject.toml" in text and re.search(r"pip install (--no-deps )?\.(\s|$)", text, re.M)
    assert re.search(r"^CMD \[", text, re.M)


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    lines = {ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    assert {".env", ".env.*", ".venv", ".git", "var/"} <= lines   # .env.* covers .env.redis and .env.redis.<service>


def test_redis_password_files_are_git_ignored() -> None:
    names = [".env.redis", *(f".env.redis.{s}" for s in SERVICES), ".env.local"]
    done = subprocess.run(["git", "check-ignore", *names], cwd=REPO, capture_output=True, text=True, timeout=10)
    assert done.stdout.split() == names
