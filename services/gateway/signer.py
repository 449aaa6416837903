"""The only holder of the API private key: lighter-sdk's ``SignerClient`` plus one signing thread.

Signing runs in a dedicated ``ThreadPoolExecutor(max_workers=1)``: from the main thread every
signature costs ~6x more (the Go runtime re-reads /proc/self/maps per call, lighter-api.md §3.7),
and ctypes releases the GIL so signing overlaps the event loop. Nonces are always explicit, so the
SDK never touches the network here; the SDK's nonce manager is off (``NonceManagerType.NONE``).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shared.config import Settings

import orjson

from .txs import CancelAllReq, CancelOrderReq, CreateOrderReq, ModifyOrderReq, SignRequest


class SignError(Exception):
    """The signer refused to sign (its message; never contains the key)."""


@dataclass(frozen=True, slots=True)
class Signed:
    tx_type: int
    tx_info: str
    tx_hash: str
    expired_at_ms: int   # the tx's ExpiredAt: after it the venue can no longer execute it


def signer_problem(settings: Settings) -> str | None:
    """Which environment variable keeps the signer from working (names only, never values)."""
    env = settings.env
    missing = [name for name, value in (("LIGHTER_API_PRIVATE_KEY", env.api_private_key),
                                        ("LIGHTER_ACCOUNT_INDEX", env.account_index),
                                        ("LIGHTER_API_KEY_INDEX", env.api_key_index)) if value is None]
    if missing:
        return "missing " + ", ".join(missing)
    assert env.api_private_key is not None
    raw = env.api_private_key.get_secret_value().removeprefix("0x")
    if len(raw) != 80 or any(ch not in "0123456789abcdefABCDEF" for ch in raw):
        return "LIGHTER_API_PRIVATE_KEY is not a Lighter API key (80 hex digits)"
    if env.account_index is not None and env.account_index <= 0:
        return "LIGHTER_ACCOUNT_INDEX must be > 0"
    if env.api_key_index is not None and not 0 <= env.api_key_index <= 254:
        return "LIGHTER_API_KEY_INDEX must be in 0..254"
    return None


def preload_sdk() -> None:
    """Import the SDK and load its native signer (seconds: eth_account, generated API modules).
    Run it in a thread at start so the event loop, and the health endpoint, stay responsive."""
    from lighter.signer_client import get_signer

    get_signer()


def api_keys(settings: Settings) -> dict[int, str]:
    """Every API key the gateway signs with: ``LIGHTER_API_KEY_INDEX``/``LIGHTER_API_PRIVATE_KEY``, plus the
    nonce lanes in ``LIGHTER_EXTRA_API_KEYS`` (``index:key,index:key``). Values are secrets."""
    env = settings.env
    assert env.api_private_key is not None and env.api_key_index is not None
    keys = {env.api_key_index: env.api_private_key.get_secret_value()}
    if env.extra_api_keys is not None:
        for part in env.extra_api_keys.get_secret_value().split(","):
            idx, _, key = part.strip().partition(":")
            if idx.strip():
                keys[int(idx)] = key.strip()
    return keys


def lane_indexes(settings: Settings) -> tuple[int, ...]:
    """The API key indexes (nonce lanes), primary first; names only, never keys."""
    env = settings.env
    if env.api_key_index is None:
        return (0,)
    return tuple(api_keys(settings)) if env.api_private_key is not None else (env.api_key_index,)


class Signer:
    """Construct inside the running event loop (the SDK's HTTP client needs one)."""

    def __init__(self, settings: Settings) -> None:
        from lighter.nonce_manager import NonceManagerType
        from lighter.signer_client import SignerClient

        env = settings.env
        assert env.api_private_key is not None and env.account_index is not None and env.api_key_index is not None
        self.account_index = env.account_index
        self.api_key_index = env.api_key_index
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signer")
        try:
            self._client = SignerClient(url=env.base_url, account_index=env.account_index,
                                        api_private_keys=api_keys(settings),
                                        nonce_management_type=NonceManagerType.NONE, chain_id=settings.gateway.chain_id)
        except Exception as e:  # noqa: BLE001 - the native signer raises plain Exception
            self._executor.shutdown(wait=False)
            raise SignError(f"signer refused the key: {type(e).__name__}") from None

    def _sign_sync(self, req: SignRequest, nonce: int, key: int | None = None) -> Signed:
        c, k = self._client, self.api_key_index if key is None else key
        if isinstance(req, CreateOrderReq):
            out = c.sign_create_order(req.market_index, req.client_order_index, req.base_amount, req.price, req.is_ask,
                                      req.order_type, req.time_in_force, req.reduce_only, 0, req.order_expiry,
                                      nonce=nonce, api_key_index=k)
        elif isinstance(req, CancelOrderReq):
            out = c.sign_cancel_order(req.market_index, req.order_index, nonce=nonce, api_key_index=k)
        elif isinstance(req, ModifyOrderReq):
            out = c.sign_modify_order(req.market_index, req.order_index, req.base_amount, req.price,
                                      nonce=nonce, api_key_index=k)
        elif isinstance(req, CancelAllReq):
            out = c.sign_cancel_all_orders(req.time_in_force, req.timestamp_ms, cancel_all_market_index=req.market_index,
                                           nonce=nonce, api_key_index=k)
        else:  # pragma: no cover - exhaustive
            raise SignError(f"unknown request {type(req).__name__}")
        tx_type, tx_info, tx_hash, err = out
        if err is not None or tx_info is None:
            raise SignError(str(err))
        try:
            expired = int(orjson.loads(tx_info).get("ExpiredAt", 0))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            expired = 0
        return Signed(int(tx_type), tx_info, tx_hash or "", expired)

    def _sign_many(self, reqs: tuple[SignRequest, ...], first_nonce: int, key: int) -> list[Signed]:
        return [self._sign_sync(r, first_nonce + i, key) for i, r in enumerate(reqs)]

    async def sign(self, req: SignRequest, nonce: int, key: int | None = None) -> Signed:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._sign_sync, req, nonce, key)

    async def sign_batch(self, reqs: tuple[SignRequest, ...], first_nonce: int, key: int) -> list[Signed]:
        """Consecutive nonces from ``first_nonce`` on one key, in one hop to the signing thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._sign_many, reqs, first_nonce, key)

    def _token_sync(self, ttl_s: int, now_s: int) -> str:
        # SDK semantics: the token's deadline is ``timestamp + deadline`` (deadline is a duration).
        token, err = self._client.create_auth_token_with_expiry(ttl_s, timestamp=now_s, api_key_index=self.api_key_index)
        if err is not None or not token:
            raise SignError(str(err))
        return str(token)

    async def auth_token(self, ttl_s: int, now_s: int) -> str:
        """An auth token valid until ``now_s + ttl_s`` (Lighter allows at most 8 h)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._token_sync, ttl_s, now_s)

    async def close(self) -> None:
        await self._client.close()
        self._executor.shutdown(wait=False)
