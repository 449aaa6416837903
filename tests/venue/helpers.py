"""Test helpers for the venue suite: offline SDK signers, a free port, an in-process venue."""
from __future__ import annotations

import asyncio
import itertools
import socket
import time
from dataclasses import dataclass
from typing import Any

import lighter
from lighter.signer_client import SignerClient, create_api_key

KEY = 3
_accounts = itertools.count(1000)


def next_account() -> int:
    """Distinct account indexes: the Go signer keeps one key per (account, key index) globally."""
    return next(_accounts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Keyed:
    account: int
    key: int
    private: str
    public: str  # hex without 0x
    client: SignerClient


async def new_signer(url: str, account: int | None = None, key: int = KEY) -> Keyed:
    """A real SDK SignerClient (must be built inside a running loop) with a fresh API key."""
    priv, pub, err = create_api_key()
    assert err is None
    idx = account if account is not None else next_account()
    c = SignerClient(url=url, account_index=idx, api_private_keys={key: priv}, chain_id=304)
    return Keyed(idx, key, priv, pub.removeprefix("0x"), c)


def offline_signer(account: int | None = None, key: int = KEY) -> Keyed:
    """A SignerClient for signing only (no network), usable from sync tests."""
    async def mk() -> Keyed:
        k = await new_signer("http://127.0.0.1:9", account, key)
        await k.client.close()  # signing needs no HTTP session
        return k
    return asyncio.run(mk())


def sign_create(k: Keyed, nonce: int, *, market: int = 0, coi: int = 0, base: int = 100, price: int = 300_000,
                is_ask: bool = False, order_type: int = 0, tif: int = 2, reduce_only: bool = False,
                expiry: int = -1, **kw: Any) -> tuple[int, str]:
    if tif == 0:
        expiry = 0
    t, info, _h, err = k.client.sign_create_order(market, coi, base, price, is_ask, order_type, tif, reduce_only,
                                                  0, expiry, nonce=nonce, api_key_index=k.key, **kw)
    assert err is None, err
    return t, info


def sign_cancel(k: Keyed, nonce: int, index: int, market: int = 0) -> tuple[int, str]:
    t, info, _h, err = k.client.sign_cancel_order(market, index, nonce=nonce, api_key_index=k.key)
    assert err is None, err
    return t, info


def sign_modify(k: Keyed, nonce: int, index: int, base: int, price: int, market: int = 0) -> tuple[int, str]:
    t, info, _h, err = k.client.sign_modify_order(market, index, base, price, nonce=nonce, api_key_index=k.key)
    assert err is None, err
    return t, info


def sign_cancel_all(k: Keyed, nonce: int, tif: int = 0, when: int = 0, market: int = 255) -> tuple[int, str]:
    t, info, _h, err = k.client.sign_cancel_all_orders(tif, when, market, nonce=nonce, api_key_index=k.key)
    assert err is None, err
    return t, info


def strict(model: type, obj: dict[str, Any]) -> Any:
    """Validate a JSON object against an SDK model *strictly* (every required field, right types)."""
    return model.model_validate(obj)


__all__ = ["KEY", "Keyed", "free_port", "lighter", "new_signer", "next_account", "now_ms", "offline_signer",
           "sign_cancel", "sign_cancel_all", "sign_create", "sign_modify", "strict"]
