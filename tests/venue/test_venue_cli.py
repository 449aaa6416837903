"""CLI: bad flags exit 2 with one line; the operator key from the environment passes check_client."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO, start_venue, stop_venue
from .helpers import new_signer


@pytest.mark.parametrize("args", [["--port", "x"], ["--model", "nope"], ["--tier", "gold"], ["--markets", "0,9"],
                                  ["--account", "5:3"], ["--rate-limit", "maybe"], ["--model", "replay"],
                                  ["--account", "1:3:abcd"], ["--frobnicate"]])
def test_bad_flags_exit_2_with_one_line(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "services.venue", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("venue: error:")


@pytest.mark.asyncio
async def test_env_registers_the_operator_key(tmp_path) -> None:
    k = await new_signer("http://127.0.0.1:9")
    await k.client.close()
    v = start_venue(tmp_path, env={"LIGHTER_ACCOUNT_INDEX": str(k.account), "LIGHTER_API_KEY_INDEX": str(k.key),
                                   "LIGHTER_API_PUBLIC_KEY": "0x" + k.public.upper(), "VENUE_COLLATERAL_USDC": "777"})
    try:
        signer = await new_signer(v.url, account=k.account, key=k.key)
        signer.client.api_key_dict[k.key] = k.private.removeprefix("0x")
        signer.client.create_client(k.key)  # the operator's real private key
        assert signer.client.check_client() is None
        status, body = await v.get("/api/v1/account", by="index", value=k.account)
        assert body["accounts"][0]["collateral"] == "777.000000"
        await signer.client.close()
    finally:
        stop_venue(v)
