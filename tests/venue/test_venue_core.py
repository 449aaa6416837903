"""Venue core (API-level acceptance + sequencer) with simulated time and real signed txs."""
from __future__ import annotations

import random

import pytest

from services.venue import errors as E
from services.venue.config import VenueConfig
from services.venue.core import Venue
from services.venue.txs import parse_tx

from .helpers import Keyed, now_ms, offline_signer, sign_cancel, sign_cancel_all, sign_create, sign_modify

QUIET = {"levels": 0, "taker_rate": 0}  # no synthetic liquidity: the book holds only our orders


def venue(tier: str = "premium", latency: bool = False, params: dict | None = None, **kw) -> tuple[Venue, int]:
    cfg = VenueConfig(tier=tier, latency=latency, model_params=dict(QUIET if params is None else params), **kw)
    t0 = now_ms()
    return Venue(cfg, random.Random(1), t0), t0


def register(v: Venue, k: Keyed, t: int, usdc: int = 100_000) -> None:
    v.register_account(k.account, k.key, k.public, usdc * 10**6, t)


@pytest.fixture(scope="module")
def ka() -> Keyed:
    return offline_signer()


@pytest.fixture(scope="module")
def kb() -> Keyed:
    return offline_signer()


def submit(v: Venue, t: int, *signed: tuple[int, str]):
    """Submit like the shell does: accept, then run the sequencer up to now."""
    out = v.submit([parse_tx(a, b) for a, b in signed], t)
    v.advance(t)
    return out


def codes(fn) -> int:
    with pytest.raises(E.VenueError) as ei:
        fn()
    return ei.value.code


def active(v: Venue, acct: int):
    return list(v.engine.account_orders[acct].values())


def test_nonce_rules(ka: Keyed) -> None:
    v, t = venue()
    register(v, ka, t)
    assert v.next_nonce(ka.account, ka.key) == 1
    submit(v, t, sign_create(ka, 1, coi=1, price=290_000))
    assert v.next_nonce(ka.account, ka.key) == 2
    assert codes(lambda: submit(v, t, sign_create(ka, 1, coi=2, price=290_000))) == E.INVALID_NONCE  # stale
    assert codes(lambda: submit(v, t, sign_create(ka, 5, coi=2, price=290_000))) == E.INVALID_NONCE  # gap
    assert v.next_nonce(ka.account, ka.key) == 2
    submit(v, t, sign_create(ka, 5, coi=2, price=290_000, skip_nonce=1))  # skip-nonce: strictly greater is fine
    assert v.next_nonce(ka.account, ka.key) == 6
    assert E.MESSAGES[E.INVALID_NONCE] == "invalid nonce"


def test_api_failures_keep_the_nonce_sequencer_rejections_consume_it(ka: Keyed, kb: Keyed) -> None:
    v, t = venue()
    register(v, ka, t)
    register(v, kb, t)
    assert codes(lambda: submit(v, t, sign_create(ka, 1, base=10))) == E.INVALID_BASE_OR_QUOTE  # 0.0010 ETH < min
    assert codes(lambda: submit(v, t, sign_create(ka, 1, base=50, price=10_000))) == E.INVALID_BASE_OR_QUOTE  # $5
    assert v.next_nonce(ka.account, ka.key) == 1
    submit(v, t, sign_create(kb, 1, price=300_000, is_ask=True, tif=1))
    submit(v, t, sign_create(ka, 1, price=300_000, is_ask=False, tif=2, coi=9))  # post-only crossing
    assert v.next_nonce(ka.account, ka.key) == 2
    hist = list(v.engine.history[ka.account])
    assert [(o.client_order_index, o.status) for o in hist] == [(9, "canceled-post-only")]


def test_margin_check_is_api_level_for_makers_and_sequencer_level_for_takers(ka: Keyed, kb: Keyed) -> None:
    v, t = venue()
    register(v, ka, t, usdc=10)  # 10 USDC at 20x supports ~200 USDC of ETH
    register(v, kb, t)
    assert codes(lambda: submit(v, t, sign_create(ka, 1, base=1_0000, price=290_000, tif=1))) == E.NOT_ENOUGH_MARGIN
    assert v.next_nonce(ka.account, ka.key) == 1
    submit(v, t, sign_create(ka, 1, base=500, price=290_000, tif=1))  # 0.05 ETH ~ $145: fine
    submit(v, t, sign_create(kb, 1, base=1_0000, price=300_000, is_ask=True, tif=1))
    submit(v, t, sign_create(ka, 2, coi=5, base=1_0000, price=300_000, tif=0))  # IOC taker, too big
    assert v.next_nonce(ka.account, ka.key) == 3
    assert [(o.client_order_index, o.status) for o in v.engine.history[ka.account]] == [(5, "canceled-margin-not-allowed")]


def test_order_field_checks(ka: Keyed) -> None:
    v, t = venue()
    register(v, ka, t)
    assert codes(lambda: submit(v, t, sign_create(ka, 1, expiry=t + 60_000))) == E.INVALID_EXPIRY
    assert codes(lambda: submit(v, t, sign_create(ka, 1, expiry=t + 31 * 86_400_000))) == E.INVALID_EXPIRY
    assert codes(lambda: submit(v, t, sign_create(ka, 1, market=7))) == E.INVALID_MARKET
    assert codes(lambda: submit(v, t, sign_create(ka, 1, price=100_000))) == E.PRICE_TOO_FAR
    submit(v, t, sign_create(ka, 1, coi=77, price=290_000, expiry=t + 6 * 60_000))
    assert codes(lambda: submit(v, t, sign_create(ka, 2, coi=77, price=290_100))) == E.DUPLICATE_COI
    assert codes(lambda: submit(v, t, sign_cancel(ka, 2, 78))) == E.NOT_ACTIVE_ORDER
    assert v.next_nonce(ka.account, ka.key) == 2


def test_expired_tx_is_refused(ka: Keyed) -> None:
    v, t = venue()
    register(v, ka, t)
    info = sign_create(ka, 1, price=290_000)
    assert codes(lambda: submit(v, t + 11 * 60_000, info)) == E.TX_EXPIRED


def test_batch_is_atomic_and_single_owner(ka: Keyed, kb: Keyed) -> None:
    v, t = venue()
    register(v, ka, t)
    register(v, kb, t)
    good = sign_create(ka, 1, coi=1, price=290_000)
    bad = sign_create(ka, 2, coi=2, base=1, price=290_000)
    assert codes(lambda: submit(v, t, good, bad)) == E.INVALID_BASE_OR_QUOTE
    assert v.next_nonce(ka.account, ka.key) == 1 and not active(v, ka.account)
    assert v.pending_coi == {} and v.engine.accounts[ka.account].reserved_bid.get(0, 0) == 0
    assert codes(lambda: submit(v, t, good, sign_create(kb, 1, price=290_000))) == E.BATCH_DIFFERENT_OWNERS
    assert codes(lambda: submit(v, t, sign_create(ka, 2, coi=3, price=290_000), good)) == E.NONCE_NOT_INCREASING
    out = submit(v, t, good, sign_create(ka, 2, coi=2, price=289_000), sign_cancel(ka, 3, 1))
    assert len(out) == 3 and v.next_nonce(ka.account, ka.key) == 4
    assert [o.client_order_index for o in active(v, ka.account)] == [2]


def test_standard_tier_latency_and_sequencing(ka: Keyed, kb: Keyed) -> None:
    v, t = venue(tier="standard", latency=True)
    register(v, ka, t)
    register(v, kb, t)
    (acc,) = submit(v, t, sign_create(ka, 1, coi=1, price=300_000, is_ask=True, tif=1))
    assert acc.exec_ms == t + 200
    v.advance(t + 199)
    assert not active(v, ka.account)
    v.advance(t + 200)
    assert [o.client_order_index for o in active(v, ka.account)] == [1]
    # taker sent first (300 ms) executes after a cancel sent later (200 ms): the taker finds nothing
    (tk,) = submit(v, t + 250, sign_create(kb, 1, coi=5, price=300_000, tif=0))
    (cx,) = submit(v, t + 260, sign_cancel(ka, 2, 1))
    assert tk.exec_ms == t + 550 and cx.exec_ms == t + 460
    v.advance(t + 600)
    assert [(o.client_order_index, o.status) for o in v.engine.history[kb.account]] == [(5, "canceled")]
    assert [(o.client_order_index, o.status) for o in v.engine.history[ka.account]] == [(1, "canceled")]


def test_cancel_by_coi_while_create_is_pending(ka: Keyed) -> None:
    v, t = venue(tier="standard", latency=True)
    register(v, ka, t)
    submit(v, t, sign_create(ka, 1, coi=42, price=290_000))
    submit(v, t + 1, sign_cancel(ka, 2, 42))  # order not executed yet: accepted because the create is pending
    v.advance(t + 1000)
    assert [(o.client_order_index, o.status) for o in v.engine.history[ka.account]] == [(42, "canceled")]


def test_pending_order_limit_per_market(ka: Keyed) -> None:
    v, t = venue(tier="standard", latency=True, pending_per_market=3)
    register(v, ka, t)
    for n in range(1, 4):
        submit(v, t, sign_create(ka, n, coi=n, price=290_000 - n))
    assert codes(lambda: submit(v, t, sign_create(ka, 4, coi=4, price=289_000))) == E.MAX_PENDING_ORDERS_MARKET
    v.advance(t + 200)
    submit(v, t + 200, sign_create(ka, 4, coi=4, price=289_000))


def test_modify_and_cancel_all_through_txs(ka: Keyed) -> None:
    v, t = venue()
    register(v, ka, t)
    submit(v, t, sign_create(ka, 1, coi=1, price=290_000), sign_create(ka, 2, coi=2, price=289_000))
    submit(v, t, sign_modify(ka, 3, 1, 300, 291_000))
    o = {o.client_order_index: o for o in active(v, ka.account)}
    assert (o[1].price, o[1].initial, o[1].remaining) == (291_000, 300, 300)
    submit(v, t, sign_cancel_all(ka, 4))
    assert not active(v, ka.account)
    assert v.engine.accounts[ka.account].reserved_bid[0] == 0


def test_scheduled_cancel_all_fires_and_abort_disarms(ka: Keyed) -> None:
    v, t = venue()
    register(v, ka, t)
    submit(v, t, sign_create(ka, 1, coi=1, price=290_000))
    assert codes(lambda: submit(v, t, sign_cancel_all(ka, 2, tif=1, when=t + 1000))) == E.INVALID_CANCEL_ALL
    submit(v, t, sign_cancel_all(ka, 2, tif=1, when=t + 6 * 60_000))
    assert v.engine.accounts[ka.account].cancel_all_time == t + 6 * 60_000
    v.advance(t + 5 * 60_000)
    assert len(active(v, ka.account)) == 1
    v.advance(t + 6 * 60_000)
    assert not active(v, ka.account)
    submit(v, t + 6 * 60_000, sign_create(ka, 3, coi=2, price=290_000))
    submit(v, t + 6 * 60_000, sign_cancel_all(ka, 4, tif=1, when=t + 12 * 60_000))
    submit(v, t + 6 * 60_000, sign_cancel_all(ka, 5, tif=2))
    v.advance(t + 13 * 60_000)
    assert [o.client_order_index for o in active(v, ka.account)] == [2]


def test_funding_is_paid_on_positions(ka: Keyed, kb: Keyed) -> None:
    v, t = venue(funding_interval_s=60)
    register(v, ka, t)
    register(v, kb, t)
    submit(v, t, sign_create(kb, 1, base=1_0000, price=300_000, is_ask=True, tif=1))
    submit(v, t, sign_create(ka, 1, base=1_0000, price=300_000, tif=0))
    ca, cb = v.engine.accounts[ka.account].collateral, v.engine.accounts[kb.account].collateral
    v.advance(t + 61_000)
    (rec,) = [r for r in v.fundings[0]]
    assert rec.rate_ppm != 0
    pay = v.markets[0].notional(rec.mark, 1_0000) * rec.rate_ppm // 10**6
    assert v.engine.accounts[ka.account].collateral == ca - pay  # long pays a positive rate
    assert v.engine.accounts[kb.account].collateral == cb + pay


def test_drop_reduce_only_fault_accepts_and_never_books(ka: Keyed, kb: Keyed) -> None:
    v, t = venue()
    register(v, ka, t)
    register(v, kb, t)
    submit(v, t, sign_create(kb, 1, base=1_0000, price=300_000, is_ask=True, tif=1))
    submit(v, t, sign_create(ka, 1, base=1_0000, price=300_000, tif=0))  # ka long 1 ETH
    v.faults.drop_reduce_only = 1
    submit(v, t, sign_create(ka, 2, coi=8, base=1_0000, price=310_000, is_ask=True, tif=1, reduce_only=True))
    assert v.next_nonce(ka.account, ka.key) == 3 and not active(v, ka.account)
    submit(v, t, sign_create(ka, 3, coi=9, base=1_0000, price=310_000, is_ask=True, tif=1, reduce_only=True))
    assert [o.client_order_index for o in active(v, ka.account)] == [9]


def test_update_leverage_changes_the_margin_requirement(ka: Keyed) -> None:
    v, t = venue()
    register(v, ka, t, usdc=100)
    t20, info = ka.client.sign_update_leverage(0, 100, 0, nonce=1, api_key_index=ka.key)[:2]
    assert codes(lambda: submit(v, t, (t20, info))) == E.INVALID_LEVERAGE  # 1% IMF < min 2%
    # 100 USDC at the default 20x carries ~2000 USDC of ETH; at 2x (IMF 50%) only ~200
    assert v.account(ka.account) is not None
    submit(v, t, sign_create(ka, 1, coi=1, base=5000, price=290_000, tif=1))  # 0.5 ETH ~ 1450 USDC: ok at 20x
    t20, info = ka.client.sign_update_leverage(0, 5000, 0, nonce=2, api_key_index=ka.key)[:2]
    submit(v, t, (t20, info))
    assert v.engine.accounts[ka.account].positions[0].imf == 5000
    assert codes(lambda: submit(v, t, sign_create(ka, 3, coi=2, base=100, price=290_000, tif=1))) == E.NOT_ENOUGH_MARGIN


def test_two_versioned_modifies_in_flight_the_second_is_void(ka: Keyed) -> None:
    """Both name version 1 and are accepted while it is current; the sequencer runs the first (now
    version 2), so the second, still naming 1, changes nothing."""
    v, t = venue(tier="standard", latency=True)
    register(v, ka, t)
    submit(v, t, sign_create(ka, 1, coi=7, price=290_000, tif=2))
    v.advance(t + 1_000)
    (o,) = active(v, ka.account)
    assert o.version == 1

    def modify(nonce: int, base: int) -> tuple[int, str]:
        tt, info, _h, err = ka.client.sign_modify_order(0, 7, base, 289_000, order_version=1, nonce=nonce,
                                                       api_key_index=ka.key)
        assert err is None
        return tt, info

    v.submit([parse_tx(*modify(2, 200)), parse_tx(*modify(3, 300))], t + 1_000)
    v.advance(t + 2_000)
    (o,) = active(v, ka.account)
    assert (o.version, o.filled_base + o.remaining) == (2, 200)
    assert codes(lambda: v.submit([parse_tx(*modify(4, 400))], t + 2_000)) == E.STALE_ORDER_VERSION


def test_maker_only_key_rules(ka: Keyed, kb: Keyed) -> None:
    v, t = venue()
    register(v, ka, t)
    assert codes(lambda: v.set_maker_only_keys(ka.account, [3], t)) == E.INVALID_PARAM          # keys are 4..254
    assert codes(lambda: v.set_maker_only_keys(ka.account, [9], t)) == E.API_KEY_NOT_FOUND
    v.register_account(ka.account, 9, kb.public, None, t)
    assert codes(lambda: v.set_maker_only_keys(ka.account, [9, 9], t)) == E.INVALID_PARAM
    v.set_maker_only_keys(ka.account, [9], t)
    assert codes(lambda: v.set_maker_only_keys(ka.account, [], t + 3_599_999)) == E.TOO_MANY_REQUESTS
    v.set_maker_only_keys(ka.account, [], t + 3_600_000)                                        # an hour on: cleared
    assert v.account(ka.account).maker_only_keys == frozenset()
    s, ts = venue(tier="standard")
    register(s, ka, ts)
    assert codes(lambda: s.set_maker_only_keys(ka.account, [], ts)) == E.INVALID_PARAM         # premium only
