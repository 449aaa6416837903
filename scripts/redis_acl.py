#!/usr/bin/env python3
"""The Redis ACL file and the passwords it needs, from ``shared/acl.py`` (the one definition of the users).

    python3 scripts/redis_acl.py compose-env            # once, before `docker compose up`: passwords
    python3 scripts/redis_acl.py acl --layout compose   # print the ACL file (REDIS_PASSWORD_* from the env)
    python3 scripts/redis_acl.py acl --layout compose --out /acl/users.acl --mode 0644

``compose-env`` creates ``.env.redis`` (every user's ``REDIS_PASSWORD_<USER>``, for the ACL writer and
for you: ``operator``) and one ``.env.redis.<service>`` per service holding only that service's
``REDIS_URL=redis://<service>:<password>@redis:6379/0``, all mode 0600 and git-ignored. Existing
passwords are kept; the per-service files are rewritten from them. ``acl`` reads the passwords from
the environment, then from ``--env-file`` files; the file it writes holds SHA-256 hashes only.
Standard library only: runs with any python3, no venv. Passwords are never printed.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python scripts/x.py` puts only scripts/ on the path

from shared import acl  # noqa: E402
from shared.cli import Parser  # noqa: E402 - stdlib only, like this script (make compose-env runs it with python3)

PROG = "redis_acl.py"
REPO = Path(__file__).resolve().parent.parent


def read_env_file(path: Path) -> dict[str, str]:
    """dotenv lines ``K=V`` (comments, blanks and quotes as core.localenv reads them)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip("'\"")
    return out


def compose_env(directory: Path, host: str, port: int) -> list[Path]:
    """Create or complete ``.env.redis``; (re)write each ``.env.redis.<service>`` from it."""
    main = directory / ".env.redis"
    env = read_env_file(main) if main.exists() else {}
    new = {acl.password_var(u): acl.new_password() for u in acl.USERS if not env.get(acl.password_var(u))}
    if new or not main.exists():
        env.update(new)
        body = ("# Redis ACL passwords for docker compose (scripts/redis_acl.py compose-env); git-ignored.\n"
                "# The redis-acl container hashes them into the ACL file; `operator` is yours (README \"Redis users\").\n")
        body += "".join(f"{acl.password_var(u)}={env[acl.password_var(u)]}\n" for u in acl.USERS)
        body += "".join(f"{k}={v}\n" for k, v in env.items() if k not in acl.PASSWORD_VARS)
        acl.write_private(main, body)
    written = [main]
    for s in acl.SERVICES:
        path = directory / f".env.redis.{s}"
        acl.write_private(path, f"# {s}'s Redis user only (scripts/redis_acl.py compose-env); git-ignored.\n"
                                f"REDIS_URL={acl.redis_url(s, env[acl.password_var(s)], host, port)}\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    a_acl = sub.add_parser("acl", help="print or write the ACL file")
    a_acl.add_argument("--layout", choices=acl.LAYOUTS, default="compose",
                       help="local: default user = operator, no password (core.main); compose: default off, user "
                            "operator (docker compose, Railway). Default compose")
    a_acl.add_argument("--env-file", action="append", default=[], type=Path, help="read REDIS_PASSWORD_* from FILE too")
    a_acl.add_argument("--out", type=Path, help="write the file here instead of printing it")
    a_acl.add_argument("--mode", default="0600", help="file mode with --out (default 0600)")
    a_env = sub.add_parser("compose-env", help="create .env.redis and .env.redis.<service> (passwords kept)")
    a_env.add_argument("--dir", type=Path, default=REPO, help="where (default: the repository root)")
    a_env.add_argument("--host", default="redis", help="Redis host in the services' REDIS_URL (default redis)")
    a_env.add_argument("--port", type=int, default=6379, help="Redis port in the services' REDIS_URL (default 6379)")
    a = p.parse_args(argv)
    if a.cmd == "compose-env":
        for path in compose_env(a.dir, a.host, a.port):
            print(f"{PROG}: {path} (mode 0600)")
        return 0
    env: dict[str, str] = {}
    for f in a.env_file:
        try:
            env.update(read_env_file(f))
        except OSError as e:
            sys.stderr.write(f"{PROG}: cannot read {f}: {e.strerror}\n")
            return 2
    env.update({k: v for k, v in os.environ.items() if k in acl.PASSWORD_VARS and v})
    try:
        text = acl.acl_text(acl.passwords_from(env), a.layout)
        mode = int(a.mode, 8)
    except acl.MissingPassword as e:
        sys.stderr.write(f"{PROG}: {e} (run `make compose-env`, or set them in the environment)\n")
        return 2
    except ValueError:
        sys.stderr.write(f"{PROG}: --mode: expected an octal mode such as 0600, got {a.mode!r}\n")
        return 2
    if a.out is None:
        sys.stdout.write(text)
        return 0
    acl.write_private(a.out, text, mode)
    users = ", ".join(line.split()[1] for line in text.splitlines())
    print(f"{PROG}: wrote {a.out} ({a.layout} layout; users {users})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
