"""The operator scripts' pure parts (sizing, profile line edit, market parsing, PnL, ranking, metric
filtering, profile checks): no network, no processes. The subprocess tests are in the other
``test_scripts_*`` modules."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from scripts._common import (
    MarketInfo,
    UsageError,
    find_symbol,
    inventory_cap,
    market_from_detail,
    set_profile_line,
    substitute_id,
)
from scripts.apply_profile import check_profile
from scripts.dump_metrics import default_targets, matching_samples
from scripts.fetch_trades import Fill, compute_pnl, fills_from_trade
from scripts.set_market import derive_sizing, render_profile
from scripts.suggest_market_targets import evaluate, rank
from shared.config import load_settings
from tests.conftest import REPO

D = Decimal


def market(mid: int = 2, symbol: str = "SOL", pd: int = 3, sd: int = 3, min_base: str = "0.050",
           min_quote: str = "10.000000", last: str | None = "140.000", vol: str = "0", status: str = "active") -> MarketInfo:
    return MarketInfo(market_id=mid, symbol=symbol, market_type="perp", status=status, price_decimals=pd,
                      size_decimals=sd, min_base=D(min_base), min_quote=D(min_quote),
                      last_price=D(last) if last else None, daily_quote_volume=D(vol), daily_trades=0,
                      maker_fee="0.0000", taker_fee="0.0000")


# --- set_market ------------------------------------------------------------------------------------
def test_sizing_for_sol_at_140() -> None:
    s = derive_sizing(market(), D("140"), D("30"), D("1.1"))
    assert s.exchange_min_notional == D("11.00")       # max(10, 0.05 x 140 = 7) x 1.1
    assert (s.size_min, s.size, s.size_max) == (D("0.072"), D("0.079"), D("0.087"))
    assert s.max_inventory_notional == D("35")         # the seed's cap for a 30 USD balance
    assert s.max_position_units == D("0.250")
    assert (s.trigger_units, s.max_clip_units) == (D("0.087"), D("0.079"))


def test_sizing_reproduces_the_seed_size_min_at_its_price() -> None:
    s = derive_sizing(market(), D("164"), D("30"), D("1.1"))
    assert s.size_min == D("0.061")  # the seed's maker.size_min for SOL


@pytest.mark.parametrize(("m", "price"), [
    (market(), D("140.123")),
    (market(0, "ETH", 2, 4, "0.0050"), D("2999.18")),
    (market(1, "BTC", 1, 5, "0.00020"), D("90031.1")),
    (market(36, "CRV", 5, 1, "35.0"), D("0.20382")),  # here min base x price (7.1) < min quote (10)
])
def test_sizing_always_clears_the_venue_minimums(m: MarketInfo, price: Decimal) -> None:
    s = derive_sizing(m, price, D("100"), D("1.1"))
    lot = D(1).scaleb(-m.size_decimals)
    for size in (s.size_min, s.size, s.size_max, s.max_clip_units):
        assert size % lot == 0
        assert size >= m.min_base and size * price >= m.min_quote
    assert s.size * price >= s.exchange_min_notional >= m.min_order_notional(price) * D("1.1")
    assert s.size_min <= s.size <= s.size_max <= s.max_position_units


def test_sizing_refuses_a_balance_that_cannot_hold_one_quote() -> None:
    with pytest.raises(UsageError, match="too small"):
        derive_sizing(market(1, "BTC", 1, 5, "0.00020"), D("90000"), D("10"), D("1.1"))
    with pytest.raises(UsageError, match="multiplier"):
        derive_sizing(market(), D("140"), D("30"), D("0.9"))


def test_rendered_profile_loads_through_the_services_config_loader(tmp_path: Path) -> None:
    m = market(1000, "1000PEPE", 6, 0, "100", "10", "0.012345")
    s = derive_sizing(m, D("0.012345"), D("30"), D("1.1"))
    prof = tmp_path / "p.yaml"
    prof.write_text(render_profile(m, s, balance=D("30"), multiplier=D("1.1"), base_url="http://x", date="2026-01-01"))
    st = load_settings(REPO / "config.yaml", prof, env={})
    assert st.market.symbol == "1000PEPE" and st.market.market_id == 1000  # the symbol stays a string
    assert (st.maker.size, st.maker.size_min, st.maker.size_max) == (s.size, s.size_min, s.size_max)
    assert (st.maker.price_scale, st.maker.size_scale) == (10**6, 1)
    assert st.guard.max_position_units == s.max_position_units and st.hedger.max_clip_units == s.max_clip_units
    assert st.maker.spread_bps == D("2")  # everything not market-specific still comes from config.yaml


def test_inventory_cap_rounds_to_the_dollar() -> None:
    assert inventory_cap(D("30")) == D("35") and inventory_cap(D("100")) == D("115")


# --- config.yaml profile line ---------------------------------------------------------------------
def test_profile_line_edit_changes_only_the_value() -> None:
    text = "# head\nprofile: profiles/market_2.yaml   # active market\nmaker:\n  profile: nested\n"
    out = set_profile_line(text, "profiles/market_0.yaml")
    assert out == "# head\nprofile: profiles/market_0.yaml   # active market\nmaker:\n  profile: nested\n"


def test_profile_line_edit_keeps_crlf_and_quotes() -> None:
    text = 'a: 1\r\nprofile: "profiles/x.yaml"\r\nb: 2\r\n'
    assert set_profile_line(text, "profiles/y.yaml") == "a: 1\r\nprofile: profiles/y.yaml\r\nb: 2\r\n"


def test_profile_line_is_added_after_the_header_when_missing() -> None:
    assert set_profile_line("# c\n\nmaker:\n  size: 1\n", "p.yaml") == "# c\n\nprofile: p.yaml\nmaker:\n  size: 1\n"


def test_id_placeholder_substitution() -> None:
    assert substitute_id("profiles/market_<id>.yaml", 7) == Path("profiles/market_7.yaml")
    assert substitute_id("custom.yaml", 7) == Path("custom.yaml")


# --- venue metadata -------------------------------------------------------------------------------
def test_market_parsing_is_exact_and_tolerant() -> None:
    m = market_from_detail({"symbol": "SOL", "market_id": 2, "supported_price_decimals": 3, "supported_size_decimals": 3,
                            "min_base_amount": "0.050", "min_quote_amount": "10.000000", "last_trade_price": 140.125,
                            "daily_quote_token_volume": 1234.5})
    assert (m.price_decimals, m.size_decimals, m.min_base, m.last_price) == (3, 3, D("0.050"), D("140.125"))
    assert m.tick == D("0.001") and m.active
    with pytest.raises(ValueError, match="decimals"):
        market_from_detail({"symbol": "X", "market_id": 9, "min_base_amount": "1", "min_quote_amount": "1"})
    with pytest.raises(ValueError, match="min_base"):
        market_from_detail({"symbol": "X", "market_id": 9, "price_decimals": 2, "size_decimals": 2})


def test_symbol_lookup_prefers_perps_and_names_the_choices() -> None:
    spot = MarketInfo(2048, "ETH", "spot", "active", 2, 4, D("0.005"), D("10"), None, D(0), 0, "0", "0")
    assert find_symbol([spot, market(0, "ETH", 2, 4)], "eth").market_id == 0
    with pytest.raises(UsageError, match="ETH"):
        find_symbol([market(0, "ETH", 2, 4)], "DOGE")


# --- fetch_trades ---------------------------------------------------------------------------------
def trade(tid: int, bid: int, ask: int, maker_ask: bool, price: str = "100.00", size: str = "1.0",
          maker_fee: int | None = None, taker_fee: int | None = None, ts: int = 1000) -> dict[str, object]:
    t: dict[str, object] = {"trade_id": tid, "market_id": 2, "price": price, "size": size, "bid_account_id": bid,
                            "ask_account_id": ask, "is_maker_ask": maker_ask, "timestamp": ts}
    if maker_fee is not None:
        t["maker_fee"] = maker_fee
    if taker_fee is not None:
        t["taker_fee"] = taker_fee
    return t


@pytest.mark.parametrize(("bid", "ask", "maker_ask", "side", "maker"), [
    (7, 9, True, 1, False),   # we bought from a resting ask: taker
    (7, 9, False, 1, True),   # our bid rested and was hit: maker
    (9, 7, True, -1, True),   # our ask rested and was lifted: maker
    (9, 7, False, -1, False),  # we sold into a resting bid: taker
])
def test_fill_side_and_role(bid: int, ask: int, maker_ask: bool, side: int, maker: bool) -> None:
    (f,) = fills_from_trade(trade(1, bid, ask, maker_ask, maker_fee=40, taker_fee=280), 7)
    assert (f.side, f.maker) == (side, maker)
    assert f.fee == (D("0.0040") if maker else D("0.0280"))  # rate in millionths of 100 USD


def test_foreign_and_self_trades() -> None:
    assert fills_from_trade(trade(1, 8, 9, True), 7) == []
    both = fills_from_trade(trade(1, 7, 7, True), 7)
    assert sorted(f.side for f in both) == [-1, 1] and sum(f.maker for f in both) == 1


def f(side: int, price: str, size: str, fee: str = "0", mid: str | None = None, ts: int = 0) -> Fill:
    return Fill(trade_id=ts, timestamp_ms=ts, market_id=2, side=side, price=D(price), size=D(size), fee=D(fee),
                maker=True, mid=D(mid) if mid else None)


def test_pnl_by_hand() -> None:
    fills = [f(1, "100", "2", "0.02", ts=1), f(-1, "101", "1", "0.01", ts=2), f(-1, "102", "0.5", "0.01", ts=3)]
    p = compute_pnl(fills, D("100.5"))
    assert p.cash == D("-200") + D("101") + D("51")           # -48
    assert p.position == D("0.5")
    assert p.fees == D("0.04")
    assert p.equity == D("-48") + D("0.5") * D("100.5") - D("0.04")  # 2.21
    assert p.avg_sell == D("101.3333") and p.avg_buy == D("100")   # rounded 4 digits finer than the fills' tick
    assert p.round_trip_size == D("1.5")
    assert p.round_trip_pnl == D("2.000000")   # 1.5 x (152 / 1.5 - 100), to the micro-USDC
    assert p.inventory_pnl == D("0.25")        # 0.5 long from 100, marked at 100.5
    assert p.equity + p.fees == p.round_trip_pnl + p.inventory_pnl   # the attribution identity, exactly
    assert (p.volume_base, p.volume_usd) == (D("3.5"), D("352")) and p.spread_capture is None
    assert (p.first_ms, p.last_ms) == (1, 3)


def test_pnl_short_inventory_and_spread_capture_with_mids() -> None:
    fills = [f(-1, "101", "1", mid="100.5"), f(1, "100", "0.4", mid="100.5")]
    p = compute_pnl(fills, D("99"))
    assert p.position == D("-0.6")
    assert p.inventory_pnl == D("-0.6") * (D("99") - D("101"))     # short from 101, marked at 99: +1.2
    assert p.spread_capture == D("-1") * (D("100.5") - D("101")) + D("0.4") * (D("100.5") - D("100"))
    assert p.equity == p.round_trip_pnl + p.inventory_pnl


def test_pnl_of_no_fills_is_zero() -> None:
    p = compute_pnl([], D("100"))
    assert (p.fills, p.equity, p.position, p.first_ms) == (0, 0, 0, None)


# --- suggest_market_targets -----------------------------------------------------------------------
def test_ranking_puts_eligible_markets_first_then_volume() -> None:
    ms = [market(0, "ETH", 2, 4, "0.0050", last="3000", vol="900"),
          market(1, "BTC", 1, 5, "0.00020", last="90000", vol="5000"),   # 19.8 USD per quote: cap 35 holds 1
          market(2, "SOL", last="140", vol="500"),
          market(3, "OLD", last="1", vol="99999", status="inactive")]
    cands = [evaluate(m, {"SOL": (D("700"), 5)}, D("30"), D("1.1")) for m in ms]
    order = [c.market.symbol for c in rank(cands)]
    assert order == ["ETH", "SOL", "OLD", "BTC"]  # ineligible (inactive, or cap too small) last, by volume
    sol = next(c for c in cands if c.market.symbol == "SOL")
    assert sol.daily_usd_volume == D("700") and sol.quotes_funded == 3 and sol.eligible
    assert sol.tick_bps == pytest.approx(0.001 / 140 * 1e4)


# --- dump_metrics ---------------------------------------------------------------------------------
EXPOSITION = """# HELP mm_portfolio_equity_usd Equity.
# TYPE mm_portfolio_equity_usd gauge
mm_portfolio_equity_usd{market="2",service="maker"} 12.5
# HELP mm_intents_total Intents.
# TYPE mm_intents_total counter
mm_intents_total{outcome="ok"} 3.0
"""


def test_metric_filter_matches_sample_names() -> None:
    assert matching_samples(EXPOSITION, "portfolio_") == ['mm_portfolio_equity_usd{market="2",service="maker"} 12.5']
    assert matching_samples(EXPOSITION, "intents_total") == ['mm_intents_total{outcome="ok"} 3.0']
    assert len(matching_samples(EXPOSITION, "")) == 2


def test_default_targets_follow_config_ports_offset_and_port_env() -> None:
    ports = {"feed": 8081, "maker": 8082, "hedger": 8083, "guard": 8084, "gateway": 8085}
    t = default_targets(ports, "127.0.0.1", 0, None)
    assert t[0] == ("feed", "http://127.0.0.1:8081/metrics") and len(t) == 5
    assert default_targets(ports, "h", 10, "8082")[1] == ("maker", "http://h:8092/metrics")
    assert default_targets(ports, "h", 0, "8082") == default_targets(ports, "h", 0, None)  # $PORT is a known one
    assert default_targets(ports, "h", 0, "9000")[-1] == ("port 9000", "http://h:9000/metrics")


# --- apply_profile --------------------------------------------------------------------------------
def test_profile_check_lists_every_mismatch() -> None:
    s = load_settings(REPO / "config.yaml", REPO / "profiles" / "market_2.yaml", env={})
    problems, _ = check_profile(s, market())
    assert problems == []
    problems, _ = check_profile(s, market(2, "SOL", 3, 2, "0.10", "5"))
    text = "; ".join(problems)
    assert "size_decimals is 3, venue has 2" in text and "min_base_amount" in text and "min_quote_amount" in text
    assert "maker.size_min 0.061 is below" in text and "maker.size 0.064 has more than 2 decimals" in text
    problems, _ = check_profile(s, market(2, "ETH"))
    assert problems == ["market.symbol is SOL, venue market 2 is ETH"]
