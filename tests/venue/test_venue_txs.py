"""tx_info parsing: real SDK signer output in, typed fields out; structural errors are Lighter's codes."""
from __future__ import annotations

import orjson
import pytest

from services.venue import errors as E
from services.venue.txs import TX_CANCEL_ALL, TX_CANCEL_ORDER, TX_CREATE_ORDER, TX_MODIFY_ORDER, parse_batch, parse_tx

from .helpers import offline_signer, sign_cancel, sign_cancel_all, sign_create, sign_modify


@pytest.fixture(scope="module")
def k():
    return offline_signer()


def test_create_order_fields(k) -> None:
    t, info = sign_create(k, 7, coi=123, base=1000, price=300_000, is_ask=True, tif=1)
    tx = parse_tx(t, info)
    assert tx.tx_type == TX_CREATE_ORDER == t
    assert (tx.account, tx.api_key, tx.nonce) == (k.account, 3, 7)
    assert tx.f["ClientOrderIndex"] == 123 and tx.f["BaseAmount"] == 1000 and tx.f["Price"] == 300_000
    assert tx.f["IsAsk"] == 1 and tx.f["TimeInForce"] == 1 and tx.f["OrderExpiry"] > tx.expired_at
    assert not tx.skip_nonce and len(tx.tx_hash) == 80


def test_skip_nonce_and_stp_attributes(k) -> None:
    t, info = sign_create(k, 9, skip_nonce=1, self_trade_behavior_mode=1)
    tx = parse_tx(t, info)
    assert tx.skip_nonce and tx.attrs == {4: 1, 6: 1}


def test_cancel_modify_cancel_all(k) -> None:
    c = parse_tx(*sign_cancel(k, 1, 55))
    assert c.tx_type == TX_CANCEL_ORDER and c.f == {"MarketIndex": 0, "Index": 55}
    m = parse_tx(*sign_modify(k, 2, 55, 200, 300_100))
    assert m.tx_type == TX_MODIFY_ORDER and m.f["BaseAmount"] == 200 and m.f["Price"] == 300_100
    ca = parse_tx(*sign_cancel_all(k, 3, market=1))
    assert ca.tx_type == TX_CANCEL_ALL and ca.f == {"TimeInForce": 0, "Time": 0} and ca.attrs == {5: 1}


def test_ws_object_form_equals_string_form(k) -> None:
    t, info = sign_create(k, 4)
    assert parse_tx(t, orjson.loads(info)).f == parse_tx(t, info).f


@pytest.mark.parametrize("mutate,code", [
    (lambda d: d.pop("Nonce"), E.INVALID_TX_INFO),
    (lambda d: d.__setitem__("Price", "300000"), E.INVALID_TX_INFO),
    (lambda d: d.__setitem__("Price", 1.5), E.INVALID_TX_INFO),
    (lambda d: d.__setitem__("IsAsk", True), E.INVALID_TX_INFO),
    (lambda d: d.__setitem__("Sig", ""), E.INVALID_SIGNATURE),
    (lambda d: d.__setitem__("ApiKeyIndex", 255), E.INVALID_API_KEY_INDEX),
    (lambda d: d.__setitem__("L2TxAttributes", {"9": 1}), E.INVALID_TX_INFO),
])
def test_structural_errors(k, mutate, code) -> None:
    t, info = sign_create(k, 5)
    d = orjson.loads(info)
    mutate(d)
    with pytest.raises(E.VenueError) as ei:
        parse_tx(t, orjson.dumps(d).decode())
    assert ei.value.code == code and ei.value.status == 400


def test_unknown_type_and_garbage() -> None:
    with pytest.raises(E.VenueError) as ei:
        parse_tx(99, "{}")
    assert ei.value.code == E.INVALID_TX_TYPE
    with pytest.raises(E.VenueError) as ei:
        parse_tx(14, "not json")
    assert ei.value.code == E.INVALID_TX_INFO


def test_batch_is_double_encoded_and_capped(k) -> None:
    txs = [sign_create(k, n) for n in range(1, 4)]
    types = orjson.dumps([t for t, _ in txs]).decode()
    infos = orjson.dumps([i for _, i in txs]).decode()  # a JSON list of JSON strings
    parsed = parse_batch(types, infos)
    assert [p.nonce for p in parsed] == [1, 2, 3]
    many = [sign_create(k, n) for n in range(1, 17)]
    with pytest.raises(E.VenueError) as ei:
        parse_batch(orjson.dumps([t for t, _ in many]).decode(), orjson.dumps([i for _, i in many]).decode())
    assert ei.value.code == E.BATCH_TOO_LARGE
    with pytest.raises(E.VenueError):
        parse_batch("[14, 14]", infos)


def test_form_parser_matches_urllib() -> None:
    import random
    from urllib.parse import parse_qsl, urlencode

    from services.venue.server import parse_form
    rng = random.Random(3)
    alphabet = "abc+/=&%?#;: \"{}[],é\\"
    for _ in range(500):
        d = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))): "".join(
            rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3)}
        body = urlencode(d)
        assert parse_form(body) == dict(parse_qsl(body, keep_blank_values=True)) == d
