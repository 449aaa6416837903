"""Local credentials: generated once with the real SDK signer, private to the user, stable after."""
from __future__ import annotations

import stat
from pathlib import Path

from core.localenv import LOCAL_API_KEY_INDEX, ensure_local_env, read_env_file


def test_creates_key_pair_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / ".env.local"
    env = ensure_local_env(path, "http://127.0.0.1:8700")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert env["LIGHTER_API_PRIVATE_KEY"].startswith("0x") and len(env["LIGHTER_API_PRIVATE_KEY"]) == 82
    assert len(env["LIGHTER_API_PUBLIC_KEY"]) == 80 and not env["LIGHTER_API_PUBLIC_KEY"].startswith("0x")
    assert int(env["LIGHTER_ACCOUNT_INDEX"]) > 0 and env["LIGHTER_API_KEY_INDEX"] == str(LOCAL_API_KEY_INDEX)
    assert read_env_file(path) == env
    assert ensure_local_env(path, "http://other") == env  # never regenerated: the venue registered this key
    assert all(env[f"REDIS_PASSWORD_{s.upper()}"] for s in ("FEED", "MAKER", "HEDGER", "GUARD", "GATEWAY"))


def test_read_env_file_ignores_comments_and_quotes(tmp_path: Path) -> None:
    p = tmp_path / "e"
    p.write_text("# c\n\nA=1\nB='two'\nC=\"x=y\"\nnot a line\n")
    assert read_env_file(p) == {"A": "1", "B": "two", "C": "x=y"}


def test_redis_passwords_generated_once_and_appended_to_an_older_file(tmp_path: Path) -> None:
    from shared import acl

    p = tmp_path / ".env.local"
    p.write_text("# mine\nLIGHTER_API_PRIVATE_KEY=0xabc\nLIGHTER_API_PUBLIC_KEY=def\nEXTRA=kept")   # no final newline
    p.chmod(0o644)
    env = ensure_local_env(p, "http://127.0.0.1:8700")
    names = [acl.password_var(u) for u in acl.SERVICES]
    assert all(len(env[n]) >= 32 for n in names) and len({env[n] for n in names}) == len(names)
    assert p.read_text().startswith("# mine\nLIGHTER_API_PRIVATE_KEY=0xabc\nLIGHTER_API_PUBLIC_KEY=def\nEXTRA=kept\n")
    assert read_env_file(p) == env and env["EXTRA"] == "kept"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert ensure_local_env(p, "http://other") == env      # stable: never regenerated
