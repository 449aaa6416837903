"""Market models: fills reach the bot, A-S intensity, replay tape, price jumps, model switching."""
from __future__ import annotations

import math
import random

from services.venue.config import VenueConfig
from services.venue.core import Venue
from services.venue.flow import AvellanedaStoikov, Burst, Mixed, parse_tape
from services.venue.ledger import TIERS, Account
from services.venue.markets import default_markets
from services.venue.txs import ORDER_LIMIT, TIF_GTT

from .test_venue_engine import check_invariants

T0 = 1_700_000_000_000
BOT = 500


def venue(model: str = "calm", seed: int = 3, **params: float) -> Venue:
    v = Venue(VenueConfig(model=model, model_params=dict(params), latency=False), random.Random(seed), T0)
    v.engine.add_account(Account(BOT, "0x" + "5" * 40, 10**12, TIERS["premium"]))
    return v


def rest(v: Venue, is_ask: bool, price: int, size: int = 100, t: int = T0):
    return v.engine.create_order(BOT, 0, 0, is_ask, price, size, ORDER_LIMIT, TIF_GTT, False, t + 86_400_000, t)


def test_calm_fills_quotes_near_mid_within_30s_and_ladder_belongs_to_synthetic_account() -> None:
    for seed in (1, 2, 3):
        v = venue(seed=seed)
        mid = v.flow[0].mark()
        bid, ask = rest(v, False, mid - mid // 5000), rest(v, True, mid + mid // 5000)  # +-2 bp
        t = T0
        while t < T0 + 30_000 and (bid.filled_base == 0 or ask.filled_base == 0):
            t += 100
            v.advance(t)
        assert bid.filled_base > 0 or ask.filled_base > 0, f"seed {seed}: no fill in 30 s"
        owners = {o.account for lv in v.engine.books[0].asks.values() for o in lv.orders.values()}
        assert owners <= {v.cfg.mm_account, BOT}
        check_invariants(v.engine)


def test_avellaneda_stoikov_fill_intensity_matches_A_exp_minus_k_delta() -> None:
    A, k, delta_bps = 2.0, 0.5, 2.0
    v = venue("as", sigma_bps=0.0, as_A=A, as_k=k)
    assert isinstance(v.flow[0].regime, AvellanedaStoikov)
    mid = v.flow[0].mid
    price = math.floor(mid * (1 - delta_bps / 1e4))
    fills, t, seconds = 0, T0, 400
    o = rest(v, False, price)
    while t < T0 + seconds * 1000:
        t += 100
        v.advance(t)
        if o.status == "filled":
            fills += 1
            o = rest(v, False, price, t=t)
    expected = A * math.exp(-k * delta_bps) * seconds
    assert abs(fills - expected) < 5 * math.sqrt(expected), (fills, expected)


def test_price_jump_trades_through_resting_orders() -> None:
    v = venue(taker_rate=0.0, sigma_bps=0.0)
    mid = v.flow[0].mark()
    ask = rest(v, True, mid + mid // 2000)  # 5 bp above
    v.price_jump(0, 20.0)
    v.advance(T0 + 200)
    assert ask.status == "filled"
    assert v.engine.accounts[BOT].positions[0].size == -100


def test_replay_tape_drives_mid_and_trades() -> None:
    lines = [
        b'{"stream":"md:book:0","ts_ms":1000,"bids":[["2500.00","1.0"],["2499.00","2"]],"asks":[["2501.00","1.5"]]}',
        b'{"stream":"md:trades:0","ts_ms":1500,"data":{"price":"2501.00","size":"0.0100","side":"buy"}}',
        b'{"stream":"md:book:0","ts_ms":3000,"bids":[["2510.00","1.0"]],"asks":[["2511.00","1.0"]]}',
        b'{"stream":"md:book:9","ts_ms":3000,"bids":[],"asks":[]}',
    ]
    tapes = parse_tape(lines, default_markets())
    assert [e.kind for e in tapes[0]] == ["book", "trade", "book"]
    v = Venue(VenueConfig(model="replay", latency=False), random.Random(1), T0, tapes=tapes)
    v.engine.add_account(Account(BOT, "0x" + "5" * 40, 10**12, TIERS["premium"]))
    v.advance(T0 + 100)
    book = v.engine.books[0]
    assert (book.best_bid(), book.best_ask()) == (250_000, 250_100)
    assert book.level_size(True, 250_100) == 1_5000
    v.advance(T0 + 600)  # the tape trade (taker buy 0.01 @ 2501.00) hit the replayed ask
    assert [(t.price, t.size, t.bid_account, t.is_maker_ask) for t in v.engine.trades[0]] == \
        [(250_100, 100, v.cfg.taker_account, True)]
    v.advance(T0 + 2050)  # (the tape loops: at T0+2001 it starts over)
    assert (book.best_bid(), book.best_ask()) == (251_000, 251_100)


def test_mixed_model_switches_regimes_and_admin_switch() -> None:
    v = venue("calm,burst", switch_every_s=1.0)
    regime = v.flow[0].regime
    assert isinstance(regime, Mixed)
    seen = set()
    for i in range(1, 200):
        v.advance(T0 + i * 100)
        seen.add(regime.active.name)
    assert seen == {"calm", "burst"}
    assert v.set_model(1, "burst") == "burst" and isinstance(v.flow[1].regime, Burst)
