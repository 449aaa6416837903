"""Normalising Lighter payloads into shared.schemas messages, and the decimals check (no I/O)."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from shared import lighter_wire as nz
from services.feed.decimals import check_decimals
from shared.markets import MarketSpec
from shared.schemas import Fill

SOL = MarketSpec(market_id=2, symbol="SOL", price_decimals=3, size_decimals=3, min_base=50, min_quote_micro=10_000_000)
ME, OTHER = 281474976710654, 55

# shapes as in lighter-api.md 1.4 (Order, Trade, AccountPosition)
ORDER: dict[str, Any] = {
    "order_index": 281475565888172, "client_order_index": 7213160468725761, "order_id": "281475565888172",
    "client_order_id": "7213160468725761", "market_index": 2, "owner_account_index": ME,
    "initial_base_amount": "0.064", "price": "140.125", "nonce": 281475565888172, "remaining_base_amount": "0.014",
    "is_ask": True, "base_size": 64, "base_price": 140125, "filled_base_amount": "0.050",
    "filled_quote_amount": "7.006250", "side": "", "type": "limit", "time_in_force": "post-only", "reduce_only": False,
    "trigger_price": "0.000", "order_expiry": 1764040000000, "status": "open", "trigger_status": "na",
    "block_height": 91233112, "timestamp": 1763950000, "created_at": 1763949990, "updated_at": 1763950000,
    "transaction_time": 1763950000123456, "integrator_fee_collector_index": "0", "integrator_maker_fee": "0",
    "integrator_taker_fee": "0", "order_flags": 0, "order_version": 1, "market_symbol": "SOL", "market_kind": "perp",
}
TRADE: dict[str, Any] = {
    "trade_id": 412301293, "trade_id_str": "412301293", "tx_hash": "0a1b", "type": "trade", "market_id": 2,
    "size": "0.050", "price": "140.125", "usd_amount": "7.006250", "ask_id": 281475565888172, "bid_id": 281475565899001,
    "ask_account_id": ME, "bid_account_id": OTHER, "ask_client_id": 7213160468725761, "bid_client_id": 0,
    "is_maker_ask": True, "block_height": 91233113, "timestamp": 1763950000456, "maker_fee": 28, "taker_fee": 280,
    "transaction_time": 1763950000456789,
}
POSITION: dict[str, Any] = {
    "market_id": 2, "symbol": "SOL", "initial_margin_fraction": "10.00", "open_order_count": 2,
    "pending_order_count": 0, "position_tied_order_count": 0, "sign": -1, "position": "0.064",
    "avg_entry_price": "140.1254", "position_value": "8.968000", "unrealized_pnl": "0.000100",
    "realized_pnl": "0.000000", "liquidation_price": "210.000", "margin_mode": 0, "allocated_margin": "0.000000",
}


@pytest.mark.parametrize("text,dec,want", [("140.125", 3, 140_125), ("0.0", 3, 0), ("0.0000", 3, 0),
                                            ("12.5", 3, 12_500), ("12.5000", 3, 12_500), ("7", 0, 7),
                                            ("-0.064", 3, -64), ("58300.0", 1, 583_000)])
def test_fixed_is_exact(text: str, dec: int, want: int) -> None:
    assert nz.fixed(text, dec, "x") == want


@pytest.mark.parametrize("bad", ["140.1255", "1e3", "NaN", "Infinity", "", " 1", "1_000", "1.", ".5", "0x10"])
def test_fixed_refuses_what_lighter_never_sends(bad: str) -> None:
    with pytest.raises(nz.Malformed):
        nz.fixed(bad, 3, "price")


def test_fixed_refuses_numbers_that_are_not_strings() -> None:
    with pytest.raises(nz.Malformed, match="expected a decimal string, got float"):
        nz.fixed(140.125, 3, "price")


def test_levels_keep_zero_sizes_and_refuse_bad_ones() -> None:
    assert nz.levels([{"price": "140.120", "size": "0.000"}], SOL, "bids") == [(140_120, 0)]
    with pytest.raises(nz.Malformed, match=r"asks\[1\].size"):
        nz.levels([{"price": "140.120", "size": "1.000"}, {"price": "140.130"}], SOL, "asks")
    with pytest.raises(nz.Malformed, match="not negative"):
        nz.levels([{"price": "140.120", "size": "-1.000"}], SOL, "asks")


def test_to_ms_scales_by_magnitude() -> None:
    assert nz.to_ms(1763950000) == 1763950000_000
    assert nz.to_ms(1763950000123) == 1763950000123
    assert nz.to_ms(1763950000123456) == 1763950000123
    assert nz.to_ms(1763950000123456789) == 1763950000123


def test_public_trade() -> None:
    t = nz.trade(TRADE, SOL)
    assert (t.market_id, t.trade_id, t.price, t.size, t.ts_ms) == (2, 412301293, 140_125, 50, 1763950000456)
    assert t.taker_is_ask is False  # the maker was the ask, so a bid lifted it


def test_order_update_maps_every_field() -> None:
    u = nz.order_update(ORDER, SOL, now_ms=1)
    assert (u.market_id, u.order_index, u.client_order_index, u.is_ask) == (2, 281475565888172, 7213160468725761, True)
    assert (u.price, u.initial_size, u.remaining_size, u.filled_size) == (140_125, 64, 14, 50)
    assert (u.status, u.reduce_only, u.ts_ms) == ("open", False, 1763950000123)


def test_order_status_is_kept_verbatim_and_time_falls_back() -> None:
    o = {k: v for k, v in ORDER.items() if k not in ("transaction_time", "updated_at")}
    o["status"] = "canceled-post-only"
    u = nz.order_update(o, SOL, now_ms=1763950009999)
    assert u.status == "canceled-post-only" and u.ts_ms == 1763950009999


@pytest.mark.parametrize("mutate,match", [
    (lambda o: o.pop("client_order_index"), "client_order_index: missing"),
    (lambda o: o.update(is_ask="true"), "is_ask: expected bool"),
    (lambda o: o.update(order_index=True), "order_index: expected int"),
    (lambda o: o.update(price="140.1255"), "more than 3 decimals"),
])
def test_order_update_refuses_bad_orders(mutate: Any, match: str) -> None:
    o = copy.deepcopy(ORDER)
    mutate(o)
    with pytest.raises(nz.Malformed, match=match):
        nz.order_update(o, SOL, now_ms=1)


def test_fill_for_our_maker_ask_with_fee() -> None:
    [f] = nz.fills(TRADE, SOL, ME)
    assert f == Fill(market_id=2, trade_id=412301293, order_index=281475565888172, client_order_index=7213160468725761,
                     is_ask=True, is_maker=True, price=140_125, size=50,
                     fee=196,  # 7.00625 USDC x 28e-6 = 196.175 micro-USDC, floored as the venue charges
                     ts_ms=1763950000456)


def test_fill_for_our_taker_bid() -> None:
    [f] = nz.fills(TRADE, SOL, OTHER)
    assert (f.is_ask, f.is_maker, f.order_index, f.client_order_index) == (False, False, 281475565899001, 0)
    assert f.fee == 1961  # 7.00625 x 280e-6 = 1961.75 -> 1961 (floored, as the venue charges)


def test_fill_maker_side_follows_is_maker_ask() -> None:
    t = dict(TRADE, is_maker_ask=False)
    [f] = nz.fills(t, SOL, ME)
    assert f.is_ask and not f.is_maker and f.fee == 1961


def test_omitted_fees_mean_zero_and_foreign_trades_give_nothing() -> None:
    t = {k: v for k, v in TRADE.items() if k not in ("maker_fee", "taker_fee")}
    assert [f.fee for f in nz.fills(t, SOL, ME)] == [0]
    assert nz.fills(TRADE, SOL, 999) == []


def test_self_trade_gives_both_sides() -> None:
    t = dict(TRADE, bid_account_id=ME)
    assert sorted((f.is_ask, f.is_maker) for f in nz.fills(t, SOL, ME)) == [(False, False), (True, True)]


def test_fee_rebate_rounds_toward_zero_magnitude() -> None:
    assert nz.fee_micro(140_125, 50, -28, SOL) == -197   # floored like the venue: -196.175 -> -197


def test_position_is_signed_lots() -> None:
    p = nz.position(POSITION, SOL, ts_ms=5)
    assert (p.market_id, p.position, p.avg_entry_price, p.ts_ms) == (2, -64, 140_125, 5)
    assert nz.position(dict(POSITION, sign=1), SOL, 5).position == 64
    assert nz.position(dict(POSITION, sign=0, position="0.000", avg_entry_price="0.000"), SOL, 5).position == 0


def test_position_refuses_bad_sign() -> None:
    with pytest.raises(nz.Malformed, match="sign"):
        nz.position(dict(POSITION, sign=2), SOL, 5)


# --- decimals check against GET /api/v1/orderBooks ----------------------------------------------
def _books(**over: Any) -> dict[str, Any]:
    row = {"symbol": "SOL", "market_id": 2, "market_type": "perp", "status": "active", "taker_fee": "0.0000",
           "maker_fee": "0.0000", "min_base_amount": "0.050", "min_quote_amount": "10.000000",
           "supported_size_decimals": 3, "supported_price_decimals": 3, "supported_quote_decimals": 6, **over}
    eth = {"symbol": "ETH", "market_id": 0, "supported_size_decimals": 4, "supported_price_decimals": 2}
    return {"code": 200, "order_books": [eth, row]}


def test_decimals_match() -> None:
    assert check_decimals(SOL, _books()) is None


def test_decimals_mismatch_is_named() -> None:
    problem = check_decimals(SOL, _books(supported_price_decimals=2))
    assert problem is not None and "2/3" in problem and "3/3" in problem


def test_market_missing_or_garbage() -> None:
    assert "not listed" in (check_decimals(SOL, {"code": 200, "order_books": []}) or "")
    assert check_decimals(SOL, {"code": 400, "message": "bad"}) is not None


def test_the_fast_level_parser_equals_the_checked_one() -> None:
    """``levels``' fast path gives what ``fixed`` gives, and leaves every unusual string to it."""
    import random

    from shared.lighter_wire import Malformed, _plain_fixed, fixed

    rng = random.Random(5)
    alphabet = "0123456789.-+e ²٣"
    for _ in range(20000):
        v = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 9)))
        fast = _plain_fixed(v, 3)
        try:
            slow: int | None = fixed(v, 3, "x")
        except Malformed:
            slow = None
        if fast is not None:
            assert fast == slow, v
        elif slow is not None:   # the fast path may decline (negatives, trailing zeros beyond decimals) but never differ
            assert v.startswith("-") or len(v.partition(".")[2]) > 3 or not v.isascii(), v
