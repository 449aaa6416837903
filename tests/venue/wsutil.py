"""A tiny raw-frame WebSocket client for the venue tests (websockets library)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import websockets


class WS:
    def __init__(self, conn: websockets.ClientConnection) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []
        self.backlog: list[dict[str, Any]] = []  # frames received but not yet matched by until()

    @classmethod
    async def open(cls, url: str) -> WS:
        ws = cls(await websockets.connect(url, max_size=None))
        first = await ws.recv()
        assert first["type"] == "connected" and len(first["session_id"]) == 36, first
        return ws

    async def send(self, obj: Any) -> None:
        await self.conn.send(obj if isinstance(obj, str) else orjson.dumps(obj).decode())

    async def sub(self, channel: str, **extra: Any) -> None:
        await self.send({"type": "subscribe", "channel": channel, **extra})

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = orjson.loads(await asyncio.wait_for(self.conn.recv(), timeout))
        self.seen.append(msg)
        return msg

    async def until(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """First frame (oldest first, including earlier unmatched ones) for which pred is true."""
        for i, msg in enumerate(self.backlog):
            if pred(msg):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching frame")
            msg = await self.recv(left)
            if pred(msg):
                return msg
            self.backlog.append(msg)
            del self.backlog[:-2000]

    async def drain(self, seconds: float) -> list[dict[str, Any]]:
        out, self.backlog = self.backlog, []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(await self.recv(left))
            except TimeoutError:
                return out

    async def close(self) -> None:
        await self.conn.close()


def of(channel: str, typ: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("channel") == channel and (typ is None or m.get("type") == typ)


def error(code: int) -> Callable[[dict[str, Any]], bool]:
    return lambda m: "error" in m and m["error"]["code"] == code
