"""Lighter JSON shapes (SDK 1.1.8 models + captured WS frames), built from core state.

Every builder returns plain dicts ready for orjson. Field sets follow the SDK models in
`lighter/models/` so that `Model.from_dict` (and the stricter `model_validate`) accept them.
"""
from __future__ import annotations

from typing import Any

from .book import Order
from .core import Venue
from .engine import Trade
from .ledger import MF_SCALE, Account, imf_of, margin_summary, unrealized
from .markets import USDC_ASSET_ID, Market, fmt_fixed, fmt_usdc

TYPE_NAMES = {0: "limit", 1: "market"}
TIF_NAMES = {0: "immediate-or-cancel", 1: "good-till-time", 2: "post-only"}


def order_json(o: Order, m: Market, status: str | None = None, remaining: int | None = None,
               filled: int | None = None) -> dict[str, Any]:
    """Order model. `status/remaining/filled` override the live values (event-time snapshot)."""
    rem = o.remaining if remaining is None else remaining
    fil = o.filled_base if filled is None else filled
    return {
        "order_index": o.order_index, "client_order_index": o.client_order_index,
        "order_id": str(o.order_index), "client_order_id": str(o.client_order_index),
        "market_index": o.market_id, "owner_account_index": o.account,
        "initial_base_amount": m.fmt_size(o.initial), "price": m.fmt_price(o.price),
        "nonce": o.nonce, "remaining_base_amount": m.fmt_size(rem), "is_ask": o.is_ask,
        "base_size": o.initial, "base_price": o.price,
        "filled_base_amount": m.fmt_size(fil), "filled_quote_amount": fmt_usdc(o.filled_quote),
        "side": "", "type": TYPE_NAMES.get(o.type, "limit"),
        "time_in_force": TIF_NAMES.get(o.tif, "Unknown"), "reduce_only": o.reduce_only,
        "trigger_price": m.fmt_price(o.trigger_price), "order_expiry": o.expiry_ms,
        "status": status or o.status, "trigger_status": "na", "trigger_time": 0,
        "parent_order_index": 0, "parent_order_id": "0", "to_trigger_order_id_0": "0",
        "to_trigger_order_id_1": "0", "to_cancel_order_id_0": "0",
        "block_height": o.block_height, "timestamp": o.updated_ms // 1000,
        "created_at": o.created_ms // 1000, "updated_at": o.updated_ms // 1000,
        "transaction_time": o.tx_time_us, "integrator_fee_collector_index": "0",
        "integrator_maker_fee": "0", "integrator_taker_fee": "0", "order_flags": 0,
        "order_version": o.version, "market_symbol": m.symbol, "market_kind": "perps",
    }


def simple_order_json(o: Order, m: Market) -> dict[str, Any]:
    return {
        "order_index": o.order_index, "order_id": str(o.order_index),
        "owner_account_index": o.account, "initial_base_amount": m.fmt_size(o.initial),
        "remaining_base_amount": m.fmt_size(o.remaining), "price": m.fmt_price(o.price),
        "order_expiry": o.expiry_ms, "transaction_time": o.tx_time_us,
    }


def trade_json(t: Trade, m: Market) -> dict[str, Any]:
    d: dict[str, Any] = {
        "trade_id": t.trade_id, "trade_id_str": str(t.trade_id), "tx_hash": t.tx_hash or "0" * 80,
        "type": t.type, "market_id": t.market_id, "size": m.fmt_size(t.size),
        "price": m.fmt_price(t.price), "usd_amount": fmt_usdc(t.usd_amount),
        "ask_id": t.ask_id, "ask_id_str": str(t.ask_id), "bid_id": t.bid_id, "bid_id_str": str(t.bid_id),
        "ask_account_id": t.ask_account, "bid_account_id": t.bid_account,
        "ask_client_id": t.ask_coi, "ask_client_id_str": str(t.ask_coi),
        "bid_client_id": t.bid_coi, "bid_client_id_str": str(t.bid_coi),
        "is_maker_ask": t.is_maker_ask, "block_height": t.block_height, "timestamp": t.timestamp_ms,
        "taker_position_size_before": m.fmt_size(abs(t.taker_size_before)),
        "taker_entry_quote_before": fmt_usdc(t.taker_entry_before),
        "taker_initial_margin_fraction_before": t.taker_imf_before,
        "taker_position_sign_changed": t.taker_sign_changed,
        "maker_position_size_before": m.fmt_size(abs(t.maker_size_before)),
        "maker_entry_quote_before": fmt_usdc(t.maker_entry_before),
        "maker_initial_margin_fraction_before": t.maker_imf_before,
        "maker_position_sign_changed": t.maker_sign_changed,
        "transaction_time": t.tx_time_us,
        "bid_account_pnl": fmt_usdc(t.bid_pnl), "ask_account_pnl": fmt_usdc(t.ask_pnl),
        "integrator_maker_fee": 0, "integrator_maker_fee_collector_index": 0,
        "integrator_taker_fee": 0, "integrator_taker_fee_collector_index": 0,
        "taker_allocated_margin_usdc_before": 0, "taker_allocated_margin_usdc_after": 0,
        "maker_allocated_margin_usdc_before": 0, "maker_allocated_margin_usdc_after": 0,
        "bid_order_version": 0, "ask_order_version": 0,
        "market_symbol": m.symbol, "market_kind": "perps",
    }
    if t.taker_fee:
        d["taker_fee"] = t.taker_fee
    if t.maker_fee:
        d["maker_fee"] = t.maker_fee
    return d


def position_json(v: Venue, acct: Account, market_id: int) -> dict[str, Any]:
    m = v.markets[market_id]
    p = acct.positions.get(market_id)
    size = p.size if p else 0
    mark = v.engine.marks[market_id]
    orders = [o for o in v.engine.account_orders.get(acct.index, {}).values() if o.market_id == market_id]
    avg = (p.entry_quote * 10 ** m.price_decimals // m.notional(10 ** m.price_decimals, abs(size))
           if p and size else 0)
    equity, im, mm, _ = margin_summary(acct, v.markets, v.engine.marks)
    liq = 0
    if size:
        # price where equity == maintenance margin, holding everything else fixed (approximation)
        value = m.notional(mark, abs(size))
        slack = equity - mm
        per_tick = value / mark if mark else 0
        if per_tick:
            move = slack / per_tick / (1 - (m.maintenance_mf / MF_SCALE) * (1 if size > 0 else -1))
            liq = max(0, int(mark - move) if size > 0 else int(mark + move))
    return {
        "market_id": market_id, "symbol": m.symbol,
        "initial_margin_fraction": fmt_fixed(imf_of(acct, m), 2),
        "open_order_count": len(orders), "pending_order_count": v.pending_market.get((acct.index, market_id), 0),
        "position_tied_order_count": sum(1 for o in orders if o.reduce_only),
        "sign": 1 if size > 0 else -1 if size < 0 else 0, "position": m.fmt_size(abs(size)),
        "avg_entry_price": m.fmt_price(avg), "position_value": fmt_usdc(m.notional(mark, abs(size))),
        "unrealized_pnl": fmt_usdc(unrealized(p, m, mark) if p else 0),
        "realized_pnl": fmt_usdc(p.realized_pnl if p else 0),
        "liquidation_price": m.fmt_price(liq),
        "total_funding_paid_out": fmt_usdc(p.funding_paid if p else 0),
        "margin_mode": p.margin_mode if p else 0, "allocated_margin": fmt_usdc(0),
        "total_discount": fmt_usdc(0), "margin_set_flag": 0,
    }


def positions_map(v: Venue, acct: Account) -> dict[str, Any]:
    return {str(mid): position_json(v, acct, mid) for mid in sorted(acct.positions) if mid in v.markets}


def asset_json(acct: Account, *, full: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {"symbol": "USDC", "asset_id": USDC_ASSET_ID, "balance": fmt_usdc(acct.collateral),
                         "locked_balance": fmt_usdc(0)}
    if full:
        d.update({"margin_balance": fmt_usdc(acct.collateral), "margin_mode": "enabled", "multiplier": "1"})
    return d


def account_summary(v: Venue, acct: Account) -> dict[str, Any]:
    equity, im, mm, pv = margin_summary(acct, v.markets, v.engine.marks)
    return {"equity": equity, "im": im, "mm": mm, "pv": pv, "available": max(0, equity - im)}


def account_base_json(v: Venue, acct: Account) -> dict[str, Any]:
    """Fields shared by Account and DetailedAccount."""
    s = account_summary(v, acct)
    return {
        "code": 200, "account_type": 0, "account_trading_mode": 0, "index": acct.index,
        "l1_address": acct.l1_address, "cancel_all_time": acct.cancel_all_time,
        "total_order_count": acct.total_order_count, "total_isolated_order_count": 0,
        "pending_order_count": v.pending_account.get(acct.index, 0),
        "available_balance": fmt_usdc(s["available"]), "status": 1,
        "collateral": fmt_usdc(acct.collateral), "transaction_time": v.now_ms * 1000,
    }


def detailed_account_json(v: Venue, acct: Account) -> dict[str, Any]:
    s = account_summary(v, acct)
    d = account_base_json(v, acct)
    d.update({
        "account_index": acct.index, "name": "", "description": "", "can_invite": True,
        "referral_points_percentage": "0",
        "positions": [position_json(v, acct, mid) for mid in sorted(acct.positions) if mid in v.markets],
        "assets": [asset_json(acct)],
        "total_asset_value": fmt_usdc(s["equity"]), "cross_asset_value": fmt_usdc(s["equity"]),
        "pool_info": {"status": 0, "operator_fee": "0", "min_operator_share_rate": "0", "total_shares": 0,
                      "operator_shares": 0, "annual_percentage_yield": 0, "daily_returns": [],
                      "share_prices": [], "sharpe_ratio": 0, "strategies": []},
        "shares": [], "created_at": acct.created_ms // 1000, "pending_unlocks": [],
        "approved_integrators": [], "can_rfq": False,
        "cross_initial_margin_requirement": fmt_usdc(s["im"]),
        "cross_maintenance_margin_requirement": fmt_usdc(s["mm"]),
        "can_rfq_market_ids": [], "metadata": {"color": ""}, "agent_enabled": False, "bo_positions": [],
    })
    return d


def user_stats_json(v: Venue, acct: Account) -> dict[str, Any]:
    s = account_summary(v, acct)
    leverage = s["pv"] / s["equity"] if s["equity"] > 0 else 0.0
    usage = s["im"] / s["equity"] * 100 if s["equity"] > 0 else 0.0
    inner = {"collateral": fmt_usdc(acct.collateral), "portfolio_value": fmt_usdc(s["equity"]),
             "leverage": f"{leverage:.2f}", "available_balance": fmt_usdc(s["available"]),
             "margin_usage": f"{usage:.2f}", "buying_power": fmt_usdc(s["available"] * 10)}
    return {**inner, "account_trading_mode": 0, "cross_stats": dict(inner), "total_stats": dict(inner)}


def market_row(v: Venue, m: Market, tier_fees: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """OrderBook model row (/orderBooks)."""
    return {
        "symbol": m.symbol, "market_id": m.market_id, "market_type": "perp", "base_asset_id": 0,
        "quote_asset_id": 0, "status": "active",
        "taker_fee": fmt_fixed(tier_fees[1], 4), "maker_fee": fmt_fixed(tier_fees[0], 4),
        "liquidation_fee": "1.0000", "min_base_amount": m.fmt_size(m.min_base),
        "min_quote_amount": fmt_usdc(m.min_quote), "supported_size_decimals": m.size_decimals,
        "supported_price_decimals": m.price_decimals, "supported_quote_decimals": m.size_decimals + m.price_decimals,
        "order_quote_limit": fmt_usdc(m.order_quote_limit), "is_maker_fee_enabled": True,
        "is_taker_fee_enabled": True, "created_at": m.created_at, "multiplier": "1.000000000000000000",
        "start_timestamp": 0, "end_timestamp": 0, "settlement_type": 0, "settlement_price": 0,
        "settlement_cap": 0, "outcome": 0, "default_price": 0, "operator_account_index": 0,
        "is_frozen": False, "open_interest": m.fmt_size(open_interest(v, m.market_id)),
    }


def open_interest(v: Venue, market_id: int) -> int:
    return sum(a.positions[market_id].size for a in v.engine.accounts.values()
               if market_id in a.positions and a.positions[market_id].size > 0)


def daily(v: Venue, m: Market) -> dict[str, Any]:
    n, vol, quote, low, high, first, last = v.stats[m.market_id].daily(v.now_ms)
    ltp = v.engine.last_trade_price[m.market_id]
    change = ((last - first) / first * 100.0) if first and last else 0.0
    return {"n": n, "base": m.size_float(vol), "quote": quote / 1e6,
            "low": m.price_float(low if low is not None else ltp),
            "high": m.price_float(high if high is not None else ltp),
            "change": change, "last": m.price_float(ltp)}


def market_detail(v: Venue, m: Market) -> dict[str, Any]:
    """PerpsOrderBookDetail (/orderBookDetails)."""
    d = market_row(v, m)
    d.pop("open_interest")
    st = daily(v, m)
    mark = v.engine.marks[m.market_id]
    d.update({
        "size_decimals": m.size_decimals, "price_decimals": m.price_decimals,
        "quote_multiplier": 10 ** max(0, m.quote_exp),
        "default_initial_margin_fraction": m.default_imf, "min_initial_margin_fraction": m.min_imf,
        "maintenance_margin_fraction": m.maintenance_mf, "closeout_margin_fraction": m.closeout_mf,
        "last_trade_price": st["last"], "daily_trades_count": st["n"],
        "daily_base_token_volume": st["base"], "daily_quote_token_volume": st["quote"],
        "daily_price_low": st["low"], "daily_price_high": st["high"], "daily_price_change": st["change"],
        "open_interest": m.size_float(open_interest(v, m.market_id)), "daily_chart": {},
        "market_config": {"market_margin_mode": 0, "insurance_fund_account_index": 0, "liquidation_mode": 0,
                          "force_reduce_only": False, "funding_fee_discounts_enabled": False,
                          "trading_hours": "", "hidden": False, "rfq_enabled": False},
        "strategy_index": 0, "funding_clamp_small": "0.0500", "funding_clamp_big": "4.0000",
        "base_interest_rate": "0.0100", "mark_price": m.fmt_price(mark), "index_price": m.fmt_price(mark),
        "market_flags": 0, "funding_premium_multiplier": 1,
    })
    return d


def market_stats_json(v: Venue, m: Market) -> dict[str, Any]:
    st = daily(v, m)
    mark = v.engine.marks[m.market_id]
    book = v.engine.books[m.market_id]
    bb, ba = book.best_bid(), book.best_ask()
    last_f = v.fundings[m.market_id][-1].rate_ppm if v.fundings[m.market_id] else 0
    fi = v.cfg.funding_interval_s * 1000
    d: dict[str, Any] = {
        "symbol": m.symbol, "market_id": m.market_id, "index_price": m.fmt_price(mark),
        "mark_price": m.fmt_price(mark),
        "open_interest": m.fmt_size(open_interest(v, m.market_id)), "open_interest_limit": "72057594037927936",
        "funding_clamp_small": "0.0500", "funding_clamp_big": "4.0000",
        "last_trade_price": m.fmt_price(v.engine.last_trade_price[m.market_id]),
        "current_funding_rate": fmt_fixed(v.current_funding_ppm[m.market_id], 4),
        "funding_rate": fmt_fixed(last_f, 4),
        "funding_timestamp": (v.now_ms // fi) * fi if fi > 0 else 0,
        "daily_base_token_volume": st["base"], "daily_quote_token_volume": st["quote"],
        "daily_price_low": st["low"], "daily_price_high": st["high"], "daily_price_change": st["change"],
    }
    if bb is not None and ba is not None:
        d["mid_price"] = m.fmt_price((bb + ba) // 2)
    if bb is not None:
        d["best_bid_price"] = m.fmt_price(bb)
    if ba is not None:
        d["best_ask_price"] = m.fmt_price(ba)
    return d


def levels_json(m: Market, levels: list[tuple[int, int]]) -> list[dict[str, str]]:
    fp, fs = m.fmt_price, m.fmt_size
    return [{"price": fp(p), "size": fs(s)} for p, s in levels]
