"""The three REST calls the gateway makes to Lighter, over one aiohttp session.

``sendTx`` never raises: every outcome becomes a ``SendResult`` (see ``replies``). The auth token
travels only in the ``authorization`` header (raw, no "Bearer", as the SDK sends it).
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from .replies import SendResult, classify, no_answer

SEND_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 3.0


class VenueError(Exception):
    """A read call (nonce, active orders) failed; the message names the HTTP status or the cause."""


class VenueHttp:
    def __init__(self, base_url: str, account_index: int, api_key_index: int) -> None:
        self.base = base_url.rstrip("/")
        self.account_index = account_index
        self.api_key_index = api_key_index
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"Accept": "application/json"})
        return self._session

    async def _get_json(self, path: str, params: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            async with self._http().get(self.base + path, params=params, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT_S)) as r:
                body = await r.read()
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise VenueError(f"{path}: {type(e).__name__}") from None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise VenueError(f"{path}: HTTP {status}, unreadable body") from None
        if status != 200 or not isinstance(doc, dict) or doc.get("code") != 200:
            code = doc.get("code") if isinstance(doc, dict) else None
            msg = doc.get("message") if isinstance(doc, dict) else None
            raise VenueError(f"{path}: HTTP {status} code={code} message={msg!r}")
        return doc

    async def next_nonce(self) -> int:
        doc = await self._get_json("/api/v1/nextNonce", {"account_index": self.account_index,
                                                         "api_key_index": self.api_key_index})
        nonce = doc.get("nonce")
        if type(nonce) is not int or nonce < 0:
            raise VenueError(f"/api/v1/nextNonce: bad nonce {nonce!r}")
        return nonce

    async def active_orders(self, auth_token: str, market_id: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"account_index": self.account_index}
        if market_id is not None:
            params["market_id"] = market_id
        doc = await self._get_json("/api/v1/accountActiveOrders", params, headers={"authorization": auth_token})
        orders = doc.get("orders")
        if not isinstance(orders, list):
            raise VenueError("/api/v1/accountActiveOrders: no orders list")
        return orders

    async def send_tx(self, tx_type: int, tx_info: str) -> tuple[SendResult, bytes]:
        """POST the signed tx; returns the verdict and the raw body (for dead-lettering an unreadable one)."""
        try:
            async with self._http().post(self.base + "/api/v1/sendTx", data={"tx_type": str(tx_type), "tx_info": tx_info},
                                         timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_S)) as r:
                body = await r.read()
                return classify(r.status, body), body
        except asyncio.TimeoutError:
            return no_answer(f"no answer within {SEND_TIMEOUT_S:g}s"), b""
        except (aiohttp.ClientError, OSError) as e:
            return no_answer(f"connection error: {type(e).__name__}"), b""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
