"""Same seed + same orders => identical event streams, independent of how often the shell polls."""
from __future__ import annotations

import random
from typing import Any

from services.venue.config import VenueConfig
from services.venue.core import Venue
from services.venue.errors import VenueError
from services.venue.txs import parse_tx

from .helpers import now_ms, offline_signer, sign_cancel, sign_create, sign_modify


def serialize(ev: tuple) -> tuple[Any, ...]:
    kind = ev[0]
    if kind == "order":
        o = ev[1]
        return ("order", o.order_index, o.account, o.market_id, ev[2], ev[3], ev[4], o.price)
    if kind == "trade":
        t = ev[1]
        return ("trade", t.trade_id, t.market_id, t.price, t.size, t.ask_id, t.bid_id, t.ask_account,
                t.bid_account, t.timestamp_ms, t.taker_fee_paid, t.maker_fee_paid)
    if kind == "funding":
        r = ev[2]
        return ("funding", ev[1], r.timestamp_ms, r.market_id, r.change, r.rate_ppm)
    return tuple(ev)


def run(seed: int, signed: list[tuple[int, tuple[int, str]]], poll_ms: int, k, t0: int) -> list[tuple]:
    cfg = VenueConfig(model="calm,burst,informed,trend", tier="standard", latency=True, funding_interval_s=20)
    v = Venue(cfg, random.Random(seed), t0)
    v.register_account(k.account, k.key, k.public, 50_000 * 10**6, t0)
    stream: list[tuple] = []
    plan = sorted(signed, key=lambda x: x[0])
    t = t0
    end = t0 + 60_000
    while t < end:
        t = min(end, t + poll_ms)
        while plan and plan[0][0] <= t:
            at, (ty, info) = plan.pop(0)
            v.advance(at)  # drain what happens before the submission, so the stream order is canonical
            stream.extend(serialize(e) for e in v.engine.events)
            v.engine.events = []
            try:
                v.submit([parse_tx(ty, info)], at)
            except VenueError as e:
                stream.append(("rejected", at, e.code))
        v.advance(t)
        stream.extend(serialize(e) for e in v.engine.events)
        v.engine.events = []
    for mid, book in sorted(v.engine.books.items()):
        stream.append(("book", mid, tuple(book.levels(True)), tuple(book.levels(False)), book.nonce))
    return stream


def test_same_seed_same_orders_same_stream_and_poll_independent() -> None:
    k = offline_signer()
    t0 = now_ms()
    mids = [300_000 + d for d in (-300, 300, -90, 60)]
    signed = [
        (t0 + 1_000, sign_create(k, 1, coi=1, price=mids[0], base=200, tif=1)),
        (t0 + 1_000, sign_create(k, 2, coi=2, price=mids[1], base=200, is_ask=True, tif=1)),
        (t0 + 7_000, sign_modify(k, 3, 1, 300, mids[2])),
        (t0 + 9_500, sign_create(k, 4, coi=4, price=mids[3], base=100, is_ask=True, tif=2)),
        (t0 + 15_000, sign_create(k, 5, coi=5, price=310_000, base=100, tif=0)),
        (t0 + 30_000, sign_cancel(k, 6, 2)),
    ]
    a = run(7, signed, 37, k, t0)
    b = run(7, signed, 1000, k, t0)
    c = run(8, signed, 37, k, t0)
    assert len(a) > 100 and any(e[0] == "trade" and k.account in (e[7], e[8]) for e in a)
    assert any(e[0] == "funding" for e in a)
    assert a == b
    assert a != c
