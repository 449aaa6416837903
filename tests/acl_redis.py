"""A real redis-server started with an ACL file from ``shared/acl.py`` (the variant of the ``redis_server``
fixture in ``tests/conftest.py`` that the ACL tests use), and ways to talk to it as each user."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from shared import acl
from tests.conftest import free_port, wait_port

ADMIN = "testadmin"   # tests only: set-up and clean-up; never in a file a deployment uses


@dataclass
class AclRedis:
    port: int
    layout: acl.Layout
    passwords: dict[str, str]
    admin_password: str
    proc: subprocess.Popen[bytes]

    def url(self, user: str | None) -> str:
        """``None``: the default user, no password (what plain ``redis-cli -p 6399`` is)."""
        if user is None:
            return f"redis://127.0.0.1:{self.port}/0"
        password = self.admin_password if user == ADMIN else self.passwords.get(user, "wrong-password")
        return acl.redis_url(user, password, "127.0.0.1", self.port)

    def client(self, user: str | None) -> Redis:
        return Redis.from_url(self.url(user))

    def admin(self) -> Redis:
        return self.client(ADMIN)

    def cli(self, user: str | None, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``redis-cli`` as an operator types it: ``-p PORT`` and, for a named user, ``--user`` with the
        password in ``REDISCLI_AUTH`` (never on the command line)."""
        argv = [shutil.which("redis-cli") or "redis-cli", "-p", str(self.port)]
        env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        if user is not None:
            argv += ["--user", user]
            env["REDISCLI_AUTH"] = self.passwords[user]
        return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=20, env=env, input=stdin)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_acl_redis(directory: Path, layout: acl.Layout, conf: Path | None = None) -> AclRedis:
    """redis-server on a free port with ``users.acl`` = ``acl.acl_text`` (+ the test admin user)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: run 'make test' (it installs it) or apt-get install redis-server")
    passwords = {u: acl.new_password() for u in acl.USERS}
    admin_password = acl.new_password()
    aclfile = directory / "users.acl"
    acl.write_private(aclfile, acl.acl_text(passwords, layout) + f"user {ADMIN} on >{admin_password} ~* &* +@all\n")
    port = free_port()
    argv = [binary, *([str(conf)] if conf else []), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--appendonly", "yes", "--save", "", "--daemonize", "no", "--aclfile", str(aclfile),
            "--acl-pubsub-default", "resetchannels"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
    except TimeoutError:
        proc.kill()
        raise
    return AclRedis(port, layout, passwords, admin_password, proc)
