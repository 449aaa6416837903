"""The REST calls the gateway makes to Lighter, over one aiohttp session.

``sendTx``/``sendTxBatch`` never raise: every outcome becomes a ``SendResult`` (see ``replies``).
Reads raise ``VenueError``. The auth token travels only in the ``authorization`` header (raw, no
"Bearer", as the SDK sends it). ``reconcile`` asks the four reads a reconcile snapshot is made of.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from shared import lighter_wire as wire
from shared.markets import MarketSpec
from shared.schemas import Reconcile

from .replies import SendResult, classify, no_answer, not_sent

MAX_PAGES = 10     # a reconcile reads at most this many pages of ended orders and of fills

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

    async def next_nonce(self, api_key_index: int | None = None) -> int:
        key = self.api_key_index if api_key_index is None else api_key_index
        doc = await self._get_json("/api/v1/nextNonce", {"account_index": self.account_index, "api_key_index": key})
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
        return await self._post("/api/v1/sendTx", {"tx_type": str(tx_type), "tx_info": tx_info})

    async def send_tx_batch(self, tx_types: list[int], tx_infos: list[str]) -> tuple[SendResult, bytes]:
        """POST a batch (one request, one rate-limit unit); fields are JSON strings, as the SDK sends them."""
        return await self._post("/api/v1/sendTxBatch", {"tx_types": orjson.dumps(tx_types).decode(),
                                                        "tx_infos": orjson.dumps(tx_infos).decode()})

    async def _post(self, path: str, form: dict[str, str]) -> tuple[SendResult, bytes]:
        try:
            async with self._http().post(self.base + path, data=form,
                                         timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_S)) as r:
                body = await r.read()
                return classify(r.status, body), body
        except aiohttp.ClientConnectorError as e:   # no connection was made: nothing reached the venue
            return not_sent(f"cannot connect: {type(e).__name__}"), b""
        except asyncio.TimeoutError:
            return no_answer(f"no answer within {SEND_TIMEOUT_S:g}s"), b""
        except (aiohttp.ClientError, OSError) as e:
            return no_answer(f"connection error: {type(e).__name__}"), b""

    async def _pages(self, path: str, params: dict[str, Any], token: str, field: str) -> tuple[list[Any], bool]:
        """Follow ``next_cursor``; returns the items and whether every page was read."""
        items: list[Any] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            doc = await self._get_json(path, {**params, **({"cursor": cursor} if cursor else {})},
                                       headers={"authorization": token})
            page = doc.get(field)
            if not isinstance(page, list):
                raise VenueError(f"{path}: no {field} list")
            items += page
            cursor = doc.get("next_cursor") or None
            if not cursor or not page:
                return items, True
        return items, False

    async def reconcile(self, token: str, spec: MarketSpec, reason: str, since_ms: int, now_ms: int) -> Reconcile:
        """Active orders, orders ended since ``since_ms``, fills since then, and the position, as one snapshot.

        The position is stamped with the time its request left: a WS position or fill newer than that
        is never rolled back by it (a fill racing the request may count twice until the next position).
        """
        acct, m = self.account_index, spec.market_id
        active = await self.active_orders(token, m)
        ended, _ = await self._pages("/api/v1/accountInactiveOrders",
                                     {"account_index": acct, "market_id": m, "limit": 100,
                                      "between_timestamps": f"{since_ms // 1000}-{now_ms // 1000 + 3600}"}, token, "orders")
        trades, _ = await self._pages("/api/v1/trades", {"account_index": acct, "market_id": m, "limit": 100,
                                                         "sort_by": "timestamp", "sort_dir": "asc", "from": since_ms},
                                      token, "trades")
        pos_ts = int(time.time() * 1000)
        doc = await self._get_json("/api/v1/account", {"by": "index", "value": str(acct)},
                                   headers={"authorization": token})
        accounts = doc.get("accounts") or []
        positions_raw = (accounts[0].get("positions") or []) if accounts and isinstance(accounts[0], dict) else []
        try:   # no position in the market: flat
            return wire.reconcile(spec, acct, reason, since_ms, now_ms, pos_ts, active + ended, trades, positions_raw)
        except wire.Malformed as e:
            raise VenueError(f"reconcile: unreadable venue answer: {e}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
