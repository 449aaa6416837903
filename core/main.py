"""Run the whole system locally: Redis, the local Lighter venue and the five services.

``make run`` calls this. Children run in their own sessions (a terminal Ctrl-C reaches only the
supervisor), die with it (PDEATHSIG), are restarted with backoff if they crash, and are stopped
in dependency order on Ctrl-C/SIGTERM: producers first, the gateway (which cancels every open
order) after them, then the venue and Redis. An aggregate ``/health`` listens on port 8000.

Pointing at mainnet is configuration only: ``--no-venue`` with ``LIGHTER_BASE_URL`` and the
credentials in the environment.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from core.localenv import ensure_local_env, read_env_file
from shared import acl
from shared.cli import Parser, fail
from shared.exposition import merge
from shared.config import REPO_ROOT, ConfigError, load_settings
from shared.ports import bind_error, bind_problem, env_port

SERVICES = ("gateway", "guard", "feed", "hedger", "maker")  # start order; stop order is the reverse
STOP_ORDER = (("maker", "hedger"), ("feed", "guard"), ("gateway",), ("venue",), ("redis",))
AGGREGATE_PORT = 8000
REDIS_PORT = 6399
MAX_RESTARTS = 5          # more restarts of one child than this within RESTART_WINDOW_S: stop everything
RESTART_WINDOW_S = 60
PIPE_LIMIT = 1 << 20
# Secrets go only to the process that needs them: the gateway is the sole signer; the feed may use a
# WS token given by the operator. Everything else never sees them, not even in /proc/<pid>/environ.
# The Redis users' passwords (shared/acl.py) reach no child: each service gets its own REDIS_URL only.
SECRET_VARS = ("LIGHTER_API_PRIVATE_KEY", "LIGHTER_EXTRA_API_KEYS", "LIGHTER_API_BEARER", "WS_AUTH_TOKEN",
               *acl.PASSWORD_VARS)
SECRETS_FOR = {"gateway": ("LIGHTER_API_PRIVATE_KEY", "LIGHTER_EXTRA_API_KEYS"), "feed": ("WS_AUTH_TOKEN",)}


def child_env(env: dict[str, str], name: str) -> dict[str, str]:
    keep = SECRETS_FOR.get(name, ())
    return {k: v for k, v in env.items() if k not in SECRET_VARS or k in keep}


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    health_url: str | None
    proc: asyncio.subprocess.Process | None = None
    restarts: list[float] = field(default_factory=list)
    stopping: bool = False


class AggregatePortError(Exception):
    """The aggregate /health port cannot be listened on (the message is the one line to print)."""


class Supervisor:
    def __init__(self, children: list[Child], aggregate_port: int, max_restarts: int = MAX_RESTARTS,
                 port_source: str = f"the aggregate port {AGGREGATE_PORT}") -> None:
        self.children = {c.name: c for c in children}
        self.aggregate_port = aggregate_port
        self.port_source = port_source
        self.max_restarts = max_restarts
        self.stop = asyncio.Event()
        self.failed = False

    async def _pipe(self, c: Child) -> None:
        """Prefix and forward a child's output. Never stop draining: a child blocked on a full pipe
        would hang (for the gateway: no cancels), so an over-long line is passed on in pieces."""
        assert c.proc and c.proc.stdout
        while True:
            try:
                line = await c.proc.stdout.readline()
            except ValueError:  # longer than the stream limit
                line = await c.proc.stdout.read(PIPE_LIMIT) + b" [line cut]\n"
            if not line:
                return
            sys.stdout.write(f"{c.name:<8}| {line.decode(errors='replace')}")
            sys.stdout.flush()

    async def start(self, c: Child) -> None:
        c.proc = await asyncio.create_subprocess_exec(
            *c.argv, env=c.env, cwd=str(REPO_ROOT), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True, preexec_fn=_pdeathsig, limit=PIPE_LIMIT)
        asyncio.create_task(self._pipe(c))
        asyncio.create_task(self._watch(c, c.proc))

    async def _watch(self, c: Child, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if c.stopping or self.stop.is_set():
            return
        now = time.monotonic()
        c.restarts = [t for t in c.restarts if now - t < RESTART_WINDOW_S] + [now]
        if code == 2 or len(c.restarts) > self.max_restarts:
            print(f"supervisor| {c.name} exited with {code}; giving up and stopping everything", flush=True)
            self.failed = True
            self.stop.set()
            return
        delay = min(0.5 * 2 ** (len(c.restarts) - 1), 8.0)
        print(f"supervisor| {c.name} exited with {code}; restarting in {delay:.1f}s", flush=True)
        await asyncio.sleep(delay)
        if not self.stop.is_set():
            await self.start(c)

    async def wait_healthy(self, c: Child, timeout: float) -> bool:
        if c.health_url is None:
            return True
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline and not self.stop.is_set():
                try:
                    async with s.get(c.health_url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            return True
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.2)
        return False

    async def wait_tcp(self, port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                return True
            except OSError:
                await asyncio.sleep(0.1)
        return False

    async def terminate(self, names: Sequence[str], timeout: float = 20) -> None:
        procs = []
        for n in names:
            c = self.children.get(n)
            if c and c.proc and c.proc.returncode is None:
                c.stopping = True
                c.proc.send_signal(signal.SIGTERM)
                procs.append(c.proc)
        if procs:
            try:
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), timeout)
            except asyncio.TimeoutError:
                for p in procs:
                    if p.returncode is None:
                        p.kill()

    async def health(self) -> tuple[bool, dict[str, object]]:
        out: dict[str, object] = {}
        ok = True
        async with aiohttp.ClientSession() as s:
            for c in self.children.values():
                if c.health_url is None:
                    alive = c.proc is not None and c.proc.returncode is None
                    out[c.name] = {"status": "running" if alive else "down"}
                    ok &= alive
                    continue
                try:
                    async with s.get(c.health_url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                        out[c.name] = {"status": "ok" if r.status == 200 else "unhealthy", "http": r.status}
                        try:   # a service's own state and reason (e.g. "degraded: account channels down")
                            body = await r.json(content_type=None)
                        except (ValueError, aiohttp.ClientError):
                            body = None
                        if isinstance(body, dict) and body.get("state"):
                            out[c.name].update(state=body["state"], reason=body.get("reason", ""))
                        if isinstance(body, dict) and isinstance(body.get("trading"), dict):
                            out[c.name]["trading"] = body["trading"]
                        ok &= r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    out[c.name] = {"status": "down"}
                    ok = False
        return ok, out

    async def scrape(self) -> dict[str, str]:
        """Every child's ``/metrics`` (next to its ``/health``); one that does not answer is left out."""
        out: dict[str, str] = {}
        async with aiohttp.ClientSession() as s:
            for c in self.children.values():
                if c.health_url is None or not c.health_url.endswith("/health"):
                    continue
                try:
                    async with s.get(c.health_url.removesuffix("/health") + "/metrics",
                                     timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            out[c.name] = await r.text()
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
        return out

    async def serve_health(self) -> web.AppRunner:
        async def handler(_: web.Request) -> web.Response:
            ok, detail = await self.health()
            # the guard's trading state is the system's (the others follow it); absent guard: unknown = HALTED
            guard = detail.get("guard")
            trading = (guard.get("trading") if isinstance(guard, dict) else None) or {"state": "HALTED",
                                                                                     "reason": "guard not answering"}
            status = "unhealthy" if not ok else ("ok" if trading.get("state") == "ACTIVE" else str(trading.get("state")).lower())
            return web.json_response({"status": status, "trading": trading, "services": detail},
                                     status=200 if ok else 503)

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=merge(await self.scrape()), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/health", handler)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host = os.environ.get("HEALTH_HOST", "127.0.0.1")
        try:
            await web.TCPSite(runner, host, self.aggregate_port).start()
        except OSError as e:
            await runner.cleanup()
            raise AggregatePortError(bind_error(e, host, self.aggregate_port, self.port_source)) from None
        return runner

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        try:   # before any child: a busy aggregate port starts nothing
            runner = await self.serve_health()
        except AggregatePortError as e:
            sys.stderr.write(f"python -m core.main: error: {e}\n")
            return 2
        try:
            for name in ("redis", "venue", *SERVICES):
                c = self.children.get(name)
                if c is None:
                    continue
                await self.start(c)
                if name == "redis" and not await self.wait_tcp(int(c.argv[c.argv.index("--port") + 1]), 15):
                    print("supervisor| redis did not start", flush=True)
                    return 1
                if name == "venue" and not await self.wait_healthy(c, 30):
                    print("supervisor| venue did not become healthy", flush=True)
                    return 1
            print(f"supervisor| all started; aggregate health on http://127.0.0.1:{self.aggregate_port}/health"
                  " — Ctrl-C stops everything and cancels open orders", flush=True)
            await self.stop.wait()
        finally:
            print("supervisor| stopping", flush=True)
            for group in STOP_ORDER:
                await self.terminate(group)
            await runner.cleanup()
        return 1 if self.failed else 0


def local_redis_acl(data: Path, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """Prepare the local Redis's data dir and ACL file; return the file and each service's password.

    The data dir is 0700: the AOF in it holds ``auth:ws_token``. ``users.acl`` (0600, SHA-256 hashes
    only) is written afresh at every start from ``shared/acl.py``, with the passwords in ``env`` (the
    env file's ``REDIS_PASSWORD_<SERVICE>``) or, for any missing, new ones for this run only.
    """
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    data.chmod(0o700)
    passwords = {u: env.get(acl.password_var(u)) or acl.new_password() for u in acl.SERVICES}
    path = data / "users.acl"
    acl.write_private(path, acl.acl_text(passwords, "local"))
    return path, passwords


def build_children(args: object, env_base: dict[str, str]) -> list[Child]:
    a = args  # argparse namespace
    off = a.port_offset  # type: ignore[attr-defined]
    py = sys.executable
    children: list[Child] = []
    env = dict(env_base)
    urls: dict[str, str] = {}   # service -> its own REDIS_URL (our Redis: one ACL user each)
    if not a.no_redis:  # type: ignore[attr-defined]
        rport = REDIS_PORT + off
        data = REPO_ROOT / "var" / ("redis" if off == 0 else f"redis-{rport}")
        aclfile, passwords = local_redis_acl(data, env)
        env.pop("REDIS_URL", None)   # the venue and Redis itself get none
        children.append(Child("redis", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--dir", str(data),
                                        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                                        "--aclfile", str(aclfile), "--acl-pubsub-default", "resetchannels",
                                        "--daemonize", "no", "--loglevel", "warning"], child_env(env, "redis"), None))
        urls = {n: acl.redis_url(n, passwords[n], "127.0.0.1", rport) for n in SERVICES}
    settings = a.settings  # type: ignore[attr-defined]
    if not a.no_venue:  # type: ignore[attr-defined]
        vport = settings.ports.venue + off
        v = settings.venue
        argv = [py, "-m", "services.venue", "--host", "127.0.0.1", "--port", str(vport), "--seed", str(a.seed or v.seed),
                "--model", a.model or v.model, "--tier", settings.tier]
        if a.venue_admin:  # type: ignore[attr-defined]
            argv.append("--admin")
        children.append(Child("venue", argv, child_env(env, "venue"), f"http://127.0.0.1:{vport}/health"))
    for name in SERVICES:
        port = getattr(settings.ports, name) + off
        argv = [py, "-m", f"services.{name}", "--port", str(port), "--host", "127.0.0.1"]
        if a.config:  # type: ignore[attr-defined]
            argv += ["--config", a.config]  # type: ignore[attr-defined]
        cenv = child_env(env, name)
        if urls:
            cenv["REDIS_URL"] = urls[name]
        children.append(Child(name, argv, cenv, f"http://127.0.0.1:{port}/health"))
    return children


def _count(text: str) -> int:
    """A non-negative integer flag value (argparse prints the error in one line and exits 2)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return n


def _aggregate_port(p: Parser, offset: int) -> tuple[int, str]:
    """The aggregate /health port ($PORT or 8000, + --port-offset) and what set it; checked free
    before anything else is done (one line, exit 2, when it is not)."""
    try:
        base = env_port(os.environ)
    except ValueError as e:
        fail(p.prog, str(e))
    source = "$PORT" if base is not None else f"the aggregate port {AGGREGATE_PORT}"
    port = (AGGREGATE_PORT if base is None else base) + offset
    if offset:
        source += f" + --port-offset {offset}"
    if port > 65535:
        fail(p.prog, f"aggregate port {port} ({source}) is beyond 65535")
    problem = bind_problem(os.environ.get("HEALTH_HOST", "127.0.0.1"), port, source, "$HEALTH_HOST")
    if problem:
        fail(p.prog, problem)
    return port, source


def _check_offset(p: Parser, settings: object, offset: int, aggregate_port: int) -> None:
    """Every port the children get (ports.* and redis, + --port-offset) in range and apart from the aggregate one."""
    ports = {f"ports.{k}": v for k, v in settings.ports.model_dump().items()}  # type: ignore[attr-defined]
    for key, port in {**ports, "the redis port": REDIS_PORT}.items():
        if port + offset > 65535:
            fail(p.prog, f"--port-offset {offset}: {key} {port} + {offset} is beyond 65535")
        if port + offset == aggregate_port:
            fail(p.prog, f"the aggregate port {aggregate_port} is also {key}" + (f" + --port-offset {offset}" if offset else ""))


def main(argv: Sequence[str] | None = None) -> None:
    # no abbreviations: "--port 9000" must not be taken for --port-offset 9000
    p = Parser(prog="python -m core.main", description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--config", help="config file (default config.yaml)")
    p.add_argument("--no-venue", action="store_true", help="do not start the local venue (use $LIGHTER_BASE_URL)")
    p.add_argument("--no-redis", action="store_true", help="do not start redis-server (use $REDIS_URL)")
    p.add_argument("--seed", type=_count, help="local venue RNG seed, >= 0 (default venue.seed)")
    p.add_argument("--model", help="local venue market model (default venue.model)")
    p.add_argument("--venue-admin", action="store_true", help="enable the local venue's /admin API (loopback only)")
    p.add_argument("--port-offset", type=_count, default=0, metavar="N",
                   help="add N >= 0 to every port (run a second copy side by side); every port must stay <= 65535")
    p.add_argument("--env-file", default=str(REPO_ROOT / ".env.local"), help="local credentials file (default .env.local)")
    p.add_argument("--max-restarts", type=_count, default=MAX_RESTARTS, metavar="N",
                   help=f"stop everything when one child restarts more than N times in {RESTART_WINDOW_S} s "
                        f"(default {MAX_RESTARTS}; chaos runs pass a large value)")
    a = p.parse_args(argv)
    aggregate_port, port_source = _aggregate_port(p, a.port_offset)
    env = dict(os.environ)
    if not a.no_venue:
        try:
            first = load_settings(a.config, env={})
        except ConfigError as e:
            sys.stderr.write(f"{p.prog}: config error: {e}\n")
            raise SystemExit(2) from None
        _check_offset(p, first, a.port_offset, aggregate_port)
        venue_port = first.ports.venue
        base = f"http://127.0.0.1:{venue_port + a.port_offset}"
        local = ensure_local_env(Path(a.env_file), base)
        env.update(local)
        env["LIGHTER_BASE_URL"] = base
    else:
        env.update({k: v for k, v in read_env_file(Path(a.env_file)).items() if k not in env})
        missing = [k for k in ("LIGHTER_BASE_URL", "LIGHTER_ACCOUNT_INDEX", "LIGHTER_API_KEY_INDEX", "LIGHTER_API_PRIVATE_KEY")
                   if not env.get(k)]
        if missing:
            fail(p.prog, f"--no-venue needs {', '.join(missing)} in the environment or {a.env_file}")
    if a.no_redis and not env.get("REDIS_URL"):
        fail(p.prog, "--no-redis needs REDIS_URL")
    if not a.no_redis and not any(os.access(os.path.join(d, "redis-server"), os.X_OK)
                                  for d in os.environ.get("PATH", "").split(os.pathsep)):
        fail(p.prog, "redis-server not found: run 'make run' as root (it apt-installs it) or 'sudo apt-get install redis-server'")
    try:
        a.settings = load_settings(a.config, env=env)
    except ConfigError as e:
        sys.stderr.write(f"{p.prog}: config error: {e}\n")
        raise SystemExit(2) from None
    _check_offset(p, a.settings, a.port_offset, aggregate_port)
    sup = Supervisor(build_children(a, env), aggregate_port, a.max_restarts, port_source)
    raise SystemExit(asyncio.run(sup.run()))


if __name__ == "__main__":
    main()
