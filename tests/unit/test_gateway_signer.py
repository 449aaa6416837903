"""The real lighter-sdk signer, offline (explicit nonces never touch the network)."""
from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest
from lighter.signer_client import SignerClient, create_api_key
from pydantic import SecretStr

from services.gateway import txs
from services.gateway.signer import SignError, Signer, signer_problem
from shared.config import Secrets, Settings


def settings(**env: object) -> Settings:
    base: dict[str, object] = dict(base_url="http://127.0.0.1:9", account_index=7, api_key_index=4)
    base.update(env)
    return Settings(env=Secrets(**base))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def key() -> str:
    priv, _pub, err = create_api_key()
    assert err is None
    return str(priv)


def test_constants_match_the_sdk() -> None:
    assert txs.ORDER_TYPE == {"limit": SignerClient.ORDER_TYPE_LIMIT, "market": SignerClient.ORDER_TYPE_MARKET}
    assert txs.TIME_IN_FORCE == {"ioc": SignerClient.ORDER_TIME_IN_FORCE_IMMEDIATE_OR_CANCEL,
                                 "gtt": SignerClient.ORDER_TIME_IN_FORCE_GOOD_TILL_TIME,
                                 "post_only": SignerClient.ORDER_TIME_IN_FORCE_POST_ONLY}
    assert txs.CANCEL_ALL_IMMEDIATE == SignerClient.CANCEL_ALL_TIF_IMMEDIATE
    assert txs.NIL_MARKET_INDEX == SignerClient.NIL_MARKET_INDEX


def test_missing_secrets_are_named_never_shown(key: str) -> None:
    assert signer_problem(settings(api_private_key=None)) == "missing LIGHTER_API_PRIVATE_KEY"
    assert signer_problem(settings(account_index=None, api_key_index=None, api_private_key=None)) == \
        "missing LIGHTER_API_PRIVATE_KEY, LIGHTER_ACCOUNT_INDEX, LIGHTER_API_KEY_INDEX"
    assert signer_problem(settings(account_index=0, api_private_key=SecretStr(key))) == "LIGHTER_ACCOUNT_INDEX must be > 0"
    assert signer_problem(settings(api_private_key=SecretStr(key))) is None


async def test_signs_in_one_worker_thread_with_explicit_nonces(key: str) -> None:
    signer = Signer(settings(api_private_key=SecretStr(key)))
    try:
        now = int(time.time() * 1000)
        req = txs.CreateOrderReq(market_index=2, client_order_index=(now << 7) | 1, base_amount=64, price=140_125,
                                 is_ask=True, order_type=0, time_in_force=2, reduce_only=False, order_expiry=now + 3_600_000)
        s = await signer.sign(req, 41)
        info = orjson.loads(s.tx_info)
        assert s.tx_type == txs.TX_CREATE_ORDER and len(s.tx_hash) == 80
        assert (info["AccountIndex"], info["ApiKeyIndex"], info["Nonce"], info["MarketIndex"]) == (7, 4, 41, 2)
        assert (info["ClientOrderIndex"], info["BaseAmount"], info["Price"], info["IsAsk"]) == (req.client_order_index, 64, 140_125, 1)
        assert (info["Type"], info["TimeInForce"], info["OrderExpiry"]) == (0, 2, now + 3_600_000)

        c = orjson.loads((await signer.sign(txs.CancelOrderReq(2, req.client_order_index), 42)).tx_info)
        assert (c["Index"], c["MarketIndex"], c["Nonce"]) == (req.client_order_index, 2, 42)
        a = await signer.sign(txs.CancelAllReq(txs.NIL_MARKET_INDEX), 43)
        assert a.tx_type == txs.TX_CANCEL_ALL and orjson.loads(a.tx_info)["L2TxAttributes"] is None
        scoped = orjson.loads((await signer.sign(txs.CancelAllReq(2), 44)).tx_info)
        assert scoped["L2TxAttributes"] == {"5": 2} and scoped["TimeInForce"] == 0 and scoped["Time"] == 0

        loop = asyncio.get_running_loop()
        names = {await loop.run_in_executor(signer._executor, lambda: threading.current_thread().name) for _ in range(3)}
        assert len(names) == 1 and names != {threading.current_thread().name}
    finally:
        await signer.close()


async def test_invalid_order_is_a_sign_error(key: str) -> None:
    signer = Signer(settings(api_private_key=SecretStr(key)))
    try:
        bad = txs.CreateOrderReq(2, 5, 64, 140_000, False, 0, 2, False, order_expiry=0)  # post-only needs an expiry
        with pytest.raises(SignError, match="OrderExpiry"):
            await signer.sign(bad, 1)
    finally:
        await signer.close()


async def test_auth_token_deadline_is_now_plus_ttl(key: str) -> None:
    signer = Signer(settings(api_private_key=SecretStr(key)))
    try:
        token = await signer.auth_token(3600, 1_795_000_000)
        deadline, account, api_key, sig = token.split(":")
        assert (int(deadline), int(account), int(api_key)) == (1_795_003_600, 7, 4) and len(sig) >= 64
    finally:
        await signer.close()


def test_a_malformed_key_is_named_without_its_value() -> None:
    problem = signer_problem(settings(api_private_key=SecretStr("0x1234nothex")))
    assert problem is not None and "LIGHTER_API_PRIVATE_KEY" in problem and "1234" not in problem
