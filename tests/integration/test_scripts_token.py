"""scripts/refresh_ws_token.py as the runbook runs it: the official signer mints the token from env
credentials, the file is owner-only, only the expiry is printed, and ``--railway`` drives the
Railway CLI. The real CLI needs Railway's cloud, so a stand-in ``railway`` executable on PATH records
the arguments it is given (the only stand-in in these tests)."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import load_settings
from tests.conftest import REPO

ACCOUNT, KEY = 100, 4


@pytest.fixture(scope="module")
def creds() -> Iterator[dict[str, str]]:
    from lighter.signer_client import create_api_key

    priv, _, err = create_api_key()
    assert not err
    yield {"LIGHTER_ACCOUNT_INDEX": str(ACCOUNT), "LIGHTER_API_KEY_INDEX": str(KEY), "LIGHTER_API_PRIVATE_KEY": priv,
           "LIGHTER_BASE_URL": "http://127.0.0.1:8700"}


def env_with(path_dirs: list[Path] | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTER_", "WS_AUTH")) and k != "LIGHTER_BOT_CONFIG"}
    if path_dirs is not None:  # a PATH without any real railway CLI
        env["PATH"] = os.pathsep.join(str(d) for d in path_dirs)
    return {**env, **extra}


def refresh(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "refresh_ws_token.py"), "--config",
                           str(REPO / "config.yaml"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90)


def token_in(path: Path) -> str:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("WS_AUTH_TOKEN=")]
    assert len(lines) == 1
    return lines[0].split("=", 1)[1]


def python_only_path(tmp: Path) -> Path:
    d = tmp / "bin"
    d.mkdir(exist_ok=True)
    return d


def test_token_file_is_owner_only_and_nothing_secret_is_printed(tmp_path: Path, creds: dict[str, str]) -> None:
    out = tmp_path / ".env.ws_token"
    out.write_text("old\n")
    out.chmod(0o644)  # a file left readable by someone else must not stay that way
    before = int(time.time())
    p = refresh(cwd=tmp_path, env=env_with(**creds))
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    token = token_in(out)
    assert out.read_text().startswith("WS_AUTH_TOKEN=")  # dotenv, token line first (the feed reads line 1)
    deadline, account, key, sig = token.split(":")
    assert (int(account), int(key)) == (ACCOUNT, KEY) and len(sig) == 160 and int(sig, 16) >= 0
    ttl = load_settings(REPO / "config.yaml", env={}).feed.auth_token_ttl_s   # feed.auth_token_ttl_s from config.yaml
    assert before + ttl <= int(deadline) <= int(time.time()) + ttl
    assert "expires" in p.stdout and time.strftime("%Y-%m-%dT%H:%M", time.gmtime(int(deadline))) in p.stdout
    secret = creds["LIGHTER_API_PRIVATE_KEY"].removeprefix("0x")
    for text in (p.stdout, p.stderr):
        assert token not in text and sig not in text and secret not in text


def test_ttl_flag_and_env_file_credentials(tmp_path: Path, creds: dict[str, str]) -> None:
    (tmp_path / "creds.env").write_text("".join(f"{k}={v}\n" for k, v in creds.items()))
    p = refresh("--ttl-s", "600", "--env-file", "creds.env", "--out", "tok.env", cwd=tmp_path, env=env_with())
    assert p.returncode == 0, p.stderr
    deadline = int(token_in(tmp_path / "tok.env").split(":")[0])
    assert abs(deadline - (int(time.time()) + 600)) <= 60


@pytest.mark.parametrize(("args", "drop", "needle"), [
    ((), "LIGHTER_API_PRIVATE_KEY", "LIGHTER_API_PRIVATE_KEY not set"),
    (("--ttl-s", "99999"), None, "--ttl-s"),
    (("--bogus",), None, "unrecognized arguments"),
    (("--env-file", "missing.env"), None, "missing.env"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, creds: dict[str, str], args: tuple[str, ...], drop: str | None,
                                      needle: str) -> None:
    env = env_with(**{k: v for k, v in creds.items() if k != drop})
    p = refresh(*args, cwd=tmp_path, env=env)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and needle in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / ".env.ws_token").exists()


def test_railway_flag_without_the_cli_says_so_and_exits_1(tmp_path: Path, creds: dict[str, str]) -> None:
    bin_dir = python_only_path(tmp_path)
    p = refresh("--railway", cwd=tmp_path, env=env_with([bin_dir], **creds))
    assert p.returncode == 1, p.stderr
    assert "railway CLI is not installed" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert token_in(tmp_path / ".env.ws_token") not in p.stdout + p.stderr  # still written, still unprinted


def _fake_railway(bin_dir: Path, record: Path, code: int) -> None:
    exe = bin_dir / "railway"
    exe.write_text(f"#!{shutil.which('sh') or '/bin/sh'}\n"
                   f"for a in \"$@\"; do printf '%s\\n' \"$a\" >> '{record}'; done\n"
                   f"echo \"railway says: $*\" >&2\nexit {code}\n")
    exe.chmod(0o755)


def test_railway_flag_sets_the_variable_through_the_cli(tmp_path: Path, creds: dict[str, str]) -> None:
    bin_dir, record = python_only_path(tmp_path), tmp_path / "argv.txt"
    _fake_railway(bin_dir, record, 0)
    p = refresh("--railway", "--railway-service", "feed", cwd=tmp_path, env=env_with([bin_dir], **creds))
    assert p.returncode == 0, p.stderr
    token = token_in(tmp_path / ".env.ws_token")
    assert record.read_text().splitlines() == ["variables", "--set", f"WS_AUTH_TOKEN={token}", "--service", "feed"]
    assert "set WS_AUTH_TOKEN on Railway (service feed)" in p.stdout
    assert token not in p.stdout + p.stderr  # the CLI echoed it; the script redacted it


def test_railway_cli_failure_is_exit_1_and_redacted(tmp_path: Path, creds: dict[str, str]) -> None:
    bin_dir = python_only_path(tmp_path)
    _fake_railway(bin_dir, tmp_path / "argv.txt", 3)
    p = refresh("--railway", cwd=tmp_path, env=env_with([bin_dir], **creds))
    assert p.returncode == 1 and "exited 3" in p.stderr
    assert token_in(tmp_path / ".env.ws_token") not in p.stdout + p.stderr and "***" in p.stderr
