#!/usr/bin/env python3
"""Mint a Lighter auth token for the private WebSocket channels and store it as ``WS_AUTH_TOKEN``.

    python scripts/refresh_ws_token.py --config config.yaml [--railway]

The token is signed locally by the official SDK signer (``SignerClient.create_auth_token_with_expiry``)
from ``LIGHTER_ACCOUNT_INDEX``, ``LIGHTER_API_KEY_INDEX`` and ``LIGHTER_API_PRIVATE_KEY``; nothing is
sent to the venue. It lives ``feed.auth_token_ttl_s`` seconds (Lighter refuses more than 8 h) and is
written to ``.env.ws_token`` with mode 0600, which docker compose and ``--env-file`` read. Only the
expiry is printed. ``--railway`` also stores it as a Railway variable through the ``railway`` CLI.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python scripts/x.py` puts only scripts/ on the path
from scripts import _venv  # noqa: E402,F401 - first: re-runs under .venv when the packages are missing

from scripts._common import ScriptError, UsageError, default_base_url, load_env, parser, run
from shared.config import ConfigError, load_settings
from shared.logs import redact, register_secret

PROG = "refresh_ws_token.py"
MAX_TTL_S = 8 * 3600  # Lighter rejects auth tokens whose deadline is further out


def write_token_file(path: Path, token: str, expires_at: int) -> None:
    """Write ``WS_AUTH_TOKEN=...`` readable by the owner only, also when the file already existed.

    dotenv format (docker compose ``env_file``, ``--env-file``); the token line comes first because
    the feed reads the file's first line."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))
    body = (f"WS_AUTH_TOKEN={token}\n"
            f"# written by scripts/refresh_ws_token.py; expires {stamp} (unix {expires_at})\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, body.encode())
    finally:
        os.close(fd)


def railway_set(token: str, service: str | None) -> str:
    """``railway variables --set WS_AUTH_TOKEN=...``; returns the CLI's (redacted) last line."""
    exe = shutil.which("railway")
    if exe is None:
        raise ScriptError("the railway CLI is not installed (npm i -g @railway/cli, then railway login && railway link); "
                          "the token is in the file only")
    argv = [exe, "variables", "--set", f"WS_AUTH_TOKEN={token}"]
    if service:
        argv += ["--service", service]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ScriptError(f"railway variables --set failed: {type(e).__name__}") from None
    lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    last = redact(lines[-1]).strip() if lines else ""
    if done.returncode != 0:
        raise ScriptError(f"railway variables --set exited {done.returncode}: {last or 'no output'}")
    return last


def main(argv: list[str] | None = None) -> None:
    p = parser(PROG, "Mint a Lighter WS auth token, write .env.ws_token (0600), optionally set it on Railway.")
    p.add_argument("--config", default="config.yaml", help="config file: feed.auth_token_ttl_s (default config.yaml)")
    p.add_argument("--railway", action="store_true", help="also run 'railway variables --set WS_AUTH_TOKEN=...'")
    p.add_argument("--railway-service", help="Railway service to set it on (default: the linked service)")
    p.add_argument("--ttl-s", type=int, help=f"token lifetime in seconds (default feed.auth_token_ttl_s; 60..{MAX_TTL_S})")
    p.add_argument("--out", default=".env.ws_token", help="token file (default .env.ws_token)")
    p.add_argument("--env-file", help="read missing credentials from this file too (e.g. .env.local)")
    p.add_argument("--base-url", default=None, help="Lighter base URL the signer is bound to (default $LIGHTER_BASE_URL)")
    a = p.parse_args(argv)
    try:
        env = load_env(a.env_file)
        settings = load_settings(a.config, env=env)
    except UsageError as exc:
        p.error(str(exc))
    except ConfigError as exc:
        p.error(f"config error: {exc}")
    if a.ttl_s is not None and not 60 <= a.ttl_s <= MAX_TTL_S:   # a flag's own error first, before credentials
        p.error(f"--ttl-s must be within 60..{MAX_TTL_S} (Lighter refuses tokens beyond 8 h), got {a.ttl_s}")
    creds = settings.env
    missing = [n for n, v in (("LIGHTER_ACCOUNT_INDEX", creds.account_index), ("LIGHTER_API_KEY_INDEX", creds.api_key_index),
                              ("LIGHTER_API_PRIVATE_KEY", creds.api_private_key)) if v is None]
    if missing:
        p.error(f"{', '.join(missing)} not set (environment or --env-file)")
    assert creds.account_index is not None and creds.api_key_index is not None and creds.api_private_key is not None
    account, key_index = creds.account_index, creds.api_key_index
    if account <= 0:
        p.error(f"LIGHTER_ACCOUNT_INDEX must be positive, got {account}")
    ttl = a.ttl_s if a.ttl_s is not None else settings.feed.auth_token_ttl_s
    if not 60 <= ttl <= MAX_TTL_S:
        p.error(f"--ttl-s must be within 60..{MAX_TTL_S} (Lighter refuses tokens beyond 8 h), got {ttl}")
    base_url = (a.base_url or env.get("LIGHTER_BASE_URL") or default_base_url()).rstrip("/")
    private_key = creds.api_private_key.get_secret_value()
    register_secret(private_key)

    async def go() -> int:
        from lighter import SignerClient  # loads the native signer; only this script needs it

        now = int(time.time())
        try:
            signer = SignerClient(url=base_url, account_index=account,
                                  api_private_keys={key_index: private_key})
        except Exception as exc:
            raise UsageError(f"the signer refused the credentials: {redact(str(exc))}") from None
        try:
            token, err = signer.create_auth_token_with_expiry(ttl, timestamp=now, api_key_index=key_index)
        finally:
            await signer.close()
        if err or not token:
            raise ScriptError(f"the signer could not create a token: {redact(str(err))}")
        register_secret(token)
        out = Path(a.out)
        try:
            write_token_file(out, token, now + ttl)
        except OSError as exc:
            raise ScriptError(f"cannot write {out}: {exc.strerror}") from None
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + ttl))
        print(f"wrote {out} (mode 0600): WS_AUTH_TOKEN for account {account} key {key_index}, "
              f"expires {expiry} (in {ttl} s)")
        if a.railway:
            last = railway_set(token, a.railway_service)
            target = f"service {a.railway_service}" if a.railway_service else "the linked service"
            print(f"set WS_AUTH_TOKEN on Railway ({target})" + (f": {last}" if last else ""))
        return 0

    run(PROG, go)


if __name__ == "__main__":
    main()
