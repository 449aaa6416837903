"""Market models: fills reach the bot, A-S intensity, replay tape, price jumps, model switching."""
from __future__ import annotations

import math
import random

from services.venue.config import VenueConfig
from services.venue.core import Venue
from services.venue.flow import AvellanedaStoikov, Burst, Mixed, parse_tape
from services.venue.ledger import Account
from shared.tiers import TIERS
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


def _tape(*events: str):
    return parse_tape([e.encode() for e in events], default_markets())


def _book_line(t: int, bid_size: str, ask: str = "2501.00") -> str:
    return f'{{"stream":"md:book:0","ts_ms":{t},"bids":[["2500.00","{bid_size}"]],"asks":[["{ask}","5"]]}}'


def test_replay_queue_our_order_joins_behind_the_tape_and_growth_queues_behind_us() -> None:
    """Joining a tape level: everything displayed is ahead; later growth is behind; a tape trade eats the
    queue in FIFO order, so we fill only once the size ahead of us has traded."""
    tapes = _tape(_book_line(1000, "1.0"), _book_line(2000, "3.0"),
                  '{"stream":"md:trade:0","ts_ms":3000,"price":"2500.00","size":"1.2","side":"sell"}',
                  _book_line(3000, "1.8"), _book_line(60_000, "1.8"))
    v = Venue(VenueConfig(model="replay", latency=False), random.Random(1), T0, tapes=tapes)
    v.engine.add_account(Account(BOT, "0x" + "5" * 40, 10**12, TIERS["premium"]))
    v.advance(T0 + 100)
    ours = rest(v, False, 250_000, 5000, T0 + 100)   # 0.5 behind the tape's 1.0
    v.advance(T0 + 1_100)   # the level grows to 3.0: the 2.0 more join behind us
    assert v.engine.books[0].level_size(False, 250_000) == 3_0000 + 5000
    v.advance(T0 + 2_100)   # a taker sells 1.2: 1.0 ahead of us trades, then 0.2 of ours
    assert ours.filled_base == 2000 and ours.remaining == 3000
    # the tape then shows 1.8 left (its world had no order of ours): of its 2.0 left here, 0.2 goes, from
    # behind us (nothing of the tape is ahead any more); the level is the tape's 1.8 plus our 0.3
    assert v.engine.books[0].level_size(False, 250_000) == 1_8000 + 3000
    check_invariants(v.engine)


def test_replay_queue_a_shrink_without_a_trade_is_split_by_the_power_model() -> None:
    """2.0 ahead, 2.0 behind, the level shrinks by 1.0 with no trade: f = x^2 gives equal odds, so half of
    the cancel (0.5) comes from ahead of us; with all the size ahead (nothing behind) all of it does."""
    tapes = _tape(_book_line(1000, "2.0"), _book_line(2000, "4.0"), _book_line(3000, "3.0"), _book_line(60_000, "3.0"))
    v = Venue(VenueConfig(model="replay", latency=False, model_params={"queue_power": 2.0}), random.Random(1), T0,
              tapes=tapes)
    v.engine.add_account(Account(BOT, "0x" + "5" * 40, 10**12, TIERS["premium"]))
    v.advance(T0 + 100)
    rest(v, False, 250_000, 1000, T0 + 100)
    v.advance(T0 + 2_100)
    level = v.engine.books[0].bids[250_000]
    sizes = [(o.account == BOT, o.remaining) for o in level.orders.values()]
    ahead = sum(s for mine, s in sizes[:[m for m, _ in sizes].index(True)])
    assert ahead == 1_5000 and sum(s for m, s in sizes if not m) == 3_0000
    # a taker for 1.5 now fills exactly up to our order; 0.01 more would reach it
    v.engine.create_order(v.cfg.taker_account, 0, 0, True, 250_000, 1_5000, ORDER_LIMIT, 0, False, 0, T0 + 2_200)
    mine = next(o for o in level.orders.values() if o.account == BOT)
    assert mine.filled_base == 0 and next(iter(level.orders.values())) is mine
    check_invariants(v.engine)


def test_replay_queue_a_bigger_power_takes_more_of_a_cancel_from_the_bigger_side() -> None:
    for power, want_ahead in ((1.0, 2_0000 - round(1_0000 * 2 / 3)), (3.0, 2_0000 - round(1_0000 * 8 / 9))):
        tapes = _tape(_book_line(1000, "2.0"), _book_line(2000, "3.0"), _book_line(3000, "2.0"),
                      _book_line(60_000, "2.0"))
        v = Venue(VenueConfig(model="replay", latency=False, model_params={"queue_power": power}), random.Random(1), T0,
                  tapes=tapes)
        v.engine.add_account(Account(BOT, "0x" + "5" * 40, 10**12, TIERS["premium"]))
        v.advance(T0 + 100)
        rest(v, False, 250_000, 1000, T0 + 100)
        v.advance(T0 + 2_100)   # 2.0 ahead, 1.0 behind, shrink by 1.0: ahead takes f(2)/(f(2)+f(1)) of it
        level = v.engine.books[0].bids[250_000]
        sizes = [(o.account == BOT, o.remaining) for o in level.orders.values()]
        ahead = sum(s for mine, s in sizes[:[m for m, _ in sizes].index(True)])
        assert ahead == want_ahead, (power, ahead)
