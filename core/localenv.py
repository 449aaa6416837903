"""Credentials for the local run: ``.env.local`` (git-ignored, mode 0600), created once.

The file holds the same variables a mainnet run uses, so switching venues is an edit of this
file (or of the environment), never of code. The venue reads ``LIGHTER_API_PUBLIC_KEY`` to
register the key for the account, as Lighter's ChangePubKey would. It also holds the local Redis
users' passwords (``REDIS_PASSWORD_<SERVICE>``, see ``shared/acl.py``), generated once; a file from
before they existed gets them appended, every other line kept.
"""
from __future__ import annotations

import os
from pathlib import Path

from shared import acl

LOCAL_ACCOUNT_INDEX = 100
LOCAL_API_KEY_INDEX = 4  # 0-3 are reserved for Lighter's web/mobile UI


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip().strip("'\"")
    return out


def _redis_passwords(env: dict[str, str]) -> dict[str, str]:
    """New passwords for the local Redis users ``env`` lacks (the default user, the operator, has none)."""
    return {acl.password_var(u): acl.new_password() for u in acl.SERVICES if not env.get(acl.password_var(u))}


def ensure_local_env(path: Path, base_url: str) -> dict[str, str]:
    """Return the local credentials, generating an API key pair with the SDK and the Redis users'
    passwords when absent."""
    env = read_env_file(path)
    if env.get("LIGHTER_API_PRIVATE_KEY") and env.get("LIGHTER_API_PUBLIC_KEY"):
        missing = _redis_passwords(env)
        if missing:   # append: the key pair and anything the user added stay as they are
            newline = "" if path.read_bytes().endswith(b"\n") else "\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            with os.fdopen(fd, "a") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(newline + "# Local Redis users' passwords (shared/acl.py), written by `make run`\n")
                f.write("".join(f"{k}={v}\n" for k, v in missing.items()))
        return {**env, **missing}
    from lighter.signer_client import create_api_key  # the official signer makes the key

    priv, pub, err = create_api_key()
    if err:
        raise RuntimeError(f"cannot create a local API key: {err}")
    env = {
        "LIGHTER_BASE_URL": base_url,
        "LIGHTER_ACCOUNT_INDEX": str(LOCAL_ACCOUNT_INDEX),
        "LIGHTER_API_KEY_INDEX": str(LOCAL_API_KEY_INDEX),
        "LIGHTER_API_PRIVATE_KEY": priv,
        "LIGHTER_API_PUBLIC_KEY": pub.removeprefix("0x"),
        **_redis_passwords({}),
    }
    body = "# Local-venue credentials written by `make run`; git-ignored. Never commit a real key.\n"
    body += "".join(f"{k}={v}\n" for k, v in env.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(body)
    return env
