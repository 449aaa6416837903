"""The local supervisor's own rules: who gets which secret, and never blocking a chatty child."""
from __future__ import annotations

import asyncio
import sys

import pytest

from core.main import Child, Supervisor, child_env

ENV = {"PATH": "/bin", "LIGHTER_API_PRIVATE_KEY": "0xsecret", "LIGHTER_API_BEARER": "b", "WS_AUTH_TOKEN": "t",
       "LIGHTER_API_PUBLIC_KEY": "pub", "LIGHTER_ACCOUNT_INDEX": "100", "LIGHTER_EXTRA_API_KEYS": "5:0xlane"}


def test_only_the_gateway_gets_the_private_key() -> None:
    assert child_env(ENV, "gateway")["LIGHTER_API_PRIVATE_KEY"] == "0xsecret"
    assert child_env(ENV, "gateway")["LIGHTER_EXTRA_API_KEYS"] == "5:0xlane"
    for name in ("maker", "hedger", "guard", "feed", "venue", "redis"):
        env = child_env(ENV, name)
        assert "LIGHTER_API_PRIVATE_KEY" not in env and "LIGHTER_API_BEARER" not in env, name
        assert "LIGHTER_EXTRA_API_KEYS" not in env, name
        assert env["LIGHTER_ACCOUNT_INDEX"] == "100" and env["PATH"] == "/bin"
    assert child_env(ENV, "feed")["WS_AUTH_TOKEN"] == "t" and "WS_AUTH_TOKEN" not in child_env(ENV, "gateway")
    assert child_env(ENV, "venue")["LIGHTER_API_PUBLIC_KEY"] == "pub"


async def test_an_over_long_line_does_not_stop_the_log_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    code = "import sys; sys.stdout.write('x' * 3_000_000 + '\\n'); [print('line', i) for i in range(2000)]; print('done')"
    sup = Supervisor([], 0)
    child = Child("chatty", [sys.executable, "-c", code], {"PATH": "/usr/bin:/bin"}, None)
    await sup.start(child)
    assert child.proc is not None
    assert await asyncio.wait_for(child.proc.wait(), 20) == 0  # it was never blocked on a full pipe
    for _ in range(100):
        await asyncio.sleep(0.05)
        if "chatty  | done" in capsys.readouterr().out:
            return
    raise AssertionError("the tail of the output was never forwarded")
