"""Venue suite fixtures: the venue as operators run it (subprocess on a free port, never 8700)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .helpers import Keyed, free_port, new_signer

REPO = Path(__file__).resolve().parents[2]


@dataclass
class VenueProc:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with aiohttp.ClientSession() as s:
            async with s.request(method, self.url + path, json=body) as r:
                assert r.status == 200, (r.status, await r.text())
                return await r.json()

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s:
            async with s.get(self.url + path, params={k: str(v) for k, v in params.items()}) as r:
                return r.status, await r.json(content_type=None)

    async def account(self, collateral: str = "100000", **kw: Any) -> Keyed:
        """A funded account with a fresh key, registered through /admin/accounts."""
        k = await new_signer(self.url, **kw)
        await self.admin("POST", "/admin/accounts", {"account_index": k.account, "api_key_index": k.key,
                                                     "public_key": k.public, "collateral": collateral})
        return k


def start_venue(tmp: Path, *args: str, env: dict[str, str] | None = None) -> VenueProc:
    port = free_port()
    log = tmp / f"venue-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTER_", "VENUE_"))}
    full_env.update(env or {})
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "services.venue", "--port", str(port), *args],
                                cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=full_env)
    deadline = time.monotonic() + 20
    import socket
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"venue exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return VenueProc(port, proc, log)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError(log.read_text())


def stop_venue(v: VenueProc) -> None:
    v.proc.terminate()
    try:
        v.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        v.proc.kill()


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VenueProc]:
    """Premium tier, limits off, admin on: the permissive venue most contract tests use."""
    v = start_venue(tmp_path_factory.mktemp("venue"), "--seed", "11", "--admin", "--rate-limit", "off")
    yield v
    stop_venue(v)
