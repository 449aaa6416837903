"""FeedCore on realistic Lighter frames: protocol, books, gaps, account, auth token, bad input (no I/O)."""
from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.feed.core import (BAD_FRAME, GAP, NO_SNAPSHOT, Closed, Command, FeedCore, FrameIn, Malformed, Notice,
                                Opened, PublishAccount, PublishBook, PublishTrade, Reconnect, RefreshToken, Resync, Seen,
                                Send, Skipped, SubState, Timing, TokenSeen, VenueError)
from shared.markets import MarketSpec
from shared.schemas import AccountGap, BookTop, Fill, OrderUpdate, Position

SOL = MarketSpec(market_id=2, symbol="SOL", price_decimals=3, size_decimals=3, min_base=50, min_quote_micro=10_000_000)
ACCT = 281474976710654
TOKEN = "1795480949:281474976710654:3:" + "8d" * 80
T0 = 1_763_950_000_000
SNAP, U1, U2 = 18032383898, 18032384006, 18032384057
PRIVATE = [f"account_all_orders/{ACCT}", f"account_all_trades/{ACCT}", f"account_all_positions/{ACCT}"]


def frame(d: dict[str, Any]) -> FrameIn:
    return FrameIn(orjson.dumps(d))


def book_frame(kind: str, nonce: int, begin: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]],
               ts: int = T0) -> FrameIn:
    lv = lambda xs: [{"price": p, "size": s} for p, s in xs]  # noqa: E731
    return frame({"channel": "order_book:2", "offset": 41692,
                  "order_book": {"code": 0, "asks": lv(asks), "bids": lv(bids), "offset": 41692, "nonce": nonce,
                                 "begin_nonce": begin, "last_updated_at": ts * 1000 + 123},
                  "timestamp": ts, "last_updated_at": ts * 1000 + 123, "type": f"{kind}/order_book"})


SNAPSHOT = book_frame("subscribed", SNAP, 0, bids=[("140.120", "1.500"), ("140.125", "0.500"), ("140.100", "12.000")],
                      asks=[("140.150", "2.000"), ("140.130", "0.064"), ("140.200", "9.000")])
UPDATE1 = book_frame("update", U1, SNAP, bids=[("140.125", "0.000")], asks=[("140.130", "0.0"), ("140.140", "0.030")],
                     ts=T0 + 50)
UPDATE2 = book_frame("update", U2, U1, bids=[("140.126", "1.000")], asks=[], ts=T0 + 100)


def of(cmds: list[Command], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def connected(core: FeedCore, now: int = T0) -> list[Command]:
    core.handle(Opened(), now)
    return core.handle(frame({"session_id": "2b7c-uuid", "type": "connected"}), now)


def live(account: int | None = None, token: str | None = None, depth: int = 20) -> FeedCore:
    core = FeedCore([SOL], depth=depth, account_index=account)
    if token:
        core.handle(TokenSeen(token, "redis"), T0)
    connected(core)
    core.handle(SNAPSHOT, T0)
    return core


# --- protocol ------------------------------------------------------------------------------------
def test_subscribes_only_after_connected_frame() -> None:
    core = FeedCore([SOL], depth=20)
    assert core.handle(Opened(), T0) == []
    out = core.handle(frame({"session_id": "x", "type": "connected"}), T0)
    assert of(out, Send) == [Send("subscribe", "order_book/2"), Send("subscribe", "trade/2")]
    assert core.connected and core.session_id == "x"


def test_no_connected_frame_means_reconnect() -> None:
    core = FeedCore([SOL], depth=20)
    core.handle(Opened(), T0)
    assert core.on_timer(T0 + 9_999) == []
    assert of(core.on_timer(T0 + 10_000), Reconnect)


def test_server_ping_is_answered_and_idle_client_pings() -> None:
    core = live()
    assert core.handle(frame({"type": "ping"}), T0 + 1) == [Seen("ping"), Send("pong")]
    assert of(core.on_timer(T0 + 1 + 59_999), Send) == []
    assert of(core.on_timer(T0 + 1 + 60_000), Send) == [Send("ping")]
    assert of(core.on_timer(T0 + 1 + 60_001), Send) == []  # the ping itself counts as traffic
    assert core.handle(frame({"type": "pong"}), T0 + 2) == [Seen("pong")]


def test_snapshot_publishes_book_top_with_trace() -> None:
    core = FeedCore([SOL], depth=2)
    connected(core)
    [pub] = of(core.handle(SNAPSHOT, T0 + 7, now_ns=(T0 + 7) * 1_000_000 + 42), PublishBook)
    assert pub.book == BookTop(market_id=2, seq=SNAP, venue_ts_ms=T0, bids=[(140_125, 500), (140_120, 1_500)],
                               asks=[(140_130, 64), (140_150, 2_000)],
                               trace={"venue": T0 * 1_000_000, "feed": (T0 + 7) * 1_000_000 + 42})
    assert core.last_book_ms[2] == T0 + 7


def test_updates_chain_and_zero_sizes_delete() -> None:
    core = live()
    [b1] = of(core.handle(UPDATE1, T0 + 50), PublishBook)
    assert b1.book.seq == U1 and b1.book.venue_ts_ms == T0 + 50
    assert b1.book.bids[0] == (140_120, 1_500) and b1.book.asks[0] == (140_140, 30)
    [b2] = of(core.handle(UPDATE2, T0 + 100), PublishBook)
    assert b2.book.seq == U2 and b2.book.bids[0] == (140_126, 1_000)
    assert core.gaps == 0


def test_gap_resyncs_with_unsubscribe_then_subscribe() -> None:
    core = live()
    out = core.handle(UPDATE2, T0 + 100)  # UPDATE1 was lost
    assert of(out, PublishBook) == []
    assert of(out, Resync) == [Resync(2, GAP, expected_nonce=SNAP, begin_nonce=U1)]
    assert of(out, Send) == [Send("unsubscribe", "order_book/2"), Send("subscribe", "order_book/2")]
    assert core.gaps == 1 and not core.books[2].valid
    # updates still in flight from the old subscription are ignored, the fresh snapshot restores the book
    assert of(core.handle(UPDATE1, T0 + 101), PublishBook) == []
    assert core.handle(frame({"type": "unsubscribed", "channel": "order_book:2"}), T0 + 102) == [Seen("unsubscribed")]
    [pub] = of(core.handle(book_frame("subscribed", U2 + 500, 0, [("141.000", "1.000")], [("141.010", "2.000")]),
                           T0 + 103), PublishBook)
    assert pub.book.seq == U2 + 500 and core.books[2].valid
    assert of(core.handle(book_frame("update", U2 + 600, U2 + 500, [], []), T0 + 104), PublishBook)


def test_missing_snapshot_is_requested_again() -> None:
    core = FeedCore([SOL], depth=20)
    connected(core)
    assert of(core.on_timer(T0 + 4_999), Resync) == []
    out = core.on_timer(T0 + 5_000)
    assert of(out, Resync) == [Resync(2, NO_SNAPSHOT)]
    assert of(out, Send) == [Send("unsubscribe", "order_book/2"), Send("subscribe", "order_book/2")]


def test_update_before_snapshot_is_ignored_not_published() -> None:
    core = FeedCore([SOL], depth=20)
    connected(core)
    out = core.handle(UPDATE1, T0)
    assert of(out, PublishBook) == [] and of(out, Skipped)


def test_reconnect_is_a_full_resync() -> None:
    core = live()
    core.handle(Closed("1006"), T0 + 1)
    assert not core.connected and not core.books[2].valid and core.books[2].nonce is None
    out = connected(core, T0 + 2)
    assert Send("subscribe", "order_book/2") in out
    assert of(core.handle(UPDATE1, T0 + 3), PublishBook) == []  # nothing until the new snapshot
    assert of(core.handle(SNAPSHOT, T0 + 4), PublishBook)


def test_repeated_connected_frame_does_not_resubscribe() -> None:
    core = live()
    out = core.handle(frame({"session_id": "y", "type": "connected"}), T0 + 1)
    assert of(out, Send) == []


# --- malformed input -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw,err", [
    (b'{"type":"update/order_book","channel":"order_book:2",', "invalid JSON"),
    (b"[1,2,3]", "not an object"),
    (b'{"channel":"order_book:2"}', "no 'type'"),
    (b'{"error":"boom"}', "integer code"),
])
def test_unparseable_frames_are_malformed(raw: bytes, err: str) -> None:
    core = live()
    out = core.handle(FrameIn(raw), T0 + 1)
    [bad] = of(out, Malformed)
    assert err in bad.error and bad.raw == raw.decode()
    assert core.bad_frames == 1 and of(out, PublishBook) == []


def test_bad_decimal_in_book_update_is_dead_lettered_and_resyncs() -> None:
    core = live()
    bad = book_frame("update", U1, SNAP, bids=[("140.1255", "1.000")], asks=[])
    out = core.handle(bad, T0 + 50)
    [m] = of(out, Malformed)
    assert m.channel == "order_book:2" and "more than 3 decimals" in m.error
    assert of(out, Resync) == [Resync(2, BAD_FRAME)] and of(out, PublishBook) == []
    assert core.gaps == 0 and core.bad_frames == 1


def test_missing_nonce_is_malformed() -> None:
    core = live()
    d = orjson.loads(UPDATE1.raw)
    del d["order_book"]["begin_nonce"]
    [m] = of(core.handle(frame(d), T0), Malformed)
    assert "begin_nonce: missing" in m.error


def test_bad_channel_argument_is_malformed() -> None:
    core = live()
    d = orjson.loads(UPDATE1.raw)
    d["channel"] = "order_book:SOL"
    assert of(core.handle(frame(d), T0), Malformed)


def test_unknown_frames_are_seen_and_skipped() -> None:
    core = live()
    out = core.handle(frame({"type": "update/height", "channel": "height:0", "height": 5}), T0)
    assert of(out, Skipped) and not of(out, Malformed)
    out = core.handle(frame({"type": "update/order_book", "channel": "order_book:7", "order_book": {}}), T0)
    assert of(out, Skipped) and of(out, PublishBook) == []


def test_venue_error_frame_is_reported() -> None:
    core = live()
    out = core.handle(frame({"error": {"code": 30005, "message": "Invalid Channel:  (marketId)"}}), T0)
    assert out == [Seen("error"), VenueError(30005, "Invalid Channel:  (marketId)")]


# --- public trades -------------------------------------------------------------------------------
def trade(tid: int, price: str = "140.125", maker_ask: bool = True, market: int = 2) -> dict[str, Any]:
    return {"trade_id": tid, "tx_hash": "ab", "type": "trade", "market_id": market, "size": "0.050", "price": price,
            "usd_amount": "7.006250", "ask_id": 1, "bid_id": 2, "ask_account_id": 10, "bid_account_id": 11,
            "is_maker_ask": maker_ask, "block_height": 1, "timestamp": T0 + tid}


def test_trades_published_once_even_when_replayed() -> None:
    core = live()
    snap = frame({"channel": "trade:2", "nonce": 1, "trades": [trade(1), trade(2)], "liquidation_trades": [],
                  "type": "subscribed/trade"})
    pubs = of(core.handle(snap, T0), PublishTrade)
    assert [(p.trade.trade_id, p.trade.taker_is_ask) for p in pubs] == [(1, False), (2, False)]
    upd = frame({"channel": "trade:2", "nonce": 2, "trades": [trade(2), trade(3, maker_ask=False)],
                 "liquidation_trades": [trade(4)], "type": "update/trade"})
    pubs = of(core.handle(upd, T0 + 1), PublishTrade)
    assert [(p.trade.trade_id, p.trade.taker_is_ask) for p in pubs] == [(3, True), (4, False)]
    assert core.last_trade_ms == T0 + 1


def test_one_bad_trade_does_not_hide_its_neighbours() -> None:
    core = live()
    bad = trade(8, price="abc")
    out = core.handle(frame({"channel": "trade:2", "trades": [trade(7), bad, trade(9)], "type": "update/trade"}), T0)
    assert [p.trade.trade_id for p in of(out, PublishTrade)] == [7, 9]
    [m] = of(out, Malformed)
    assert orjson.loads(m.raw)["trade_id"] == 8 and m.channel == "trade:2"


# --- account -------------------------------------------------------------------------------------
def order(status: str = "open", remaining: str = "0.064", filled: str = "0.000", market: int = 2) -> dict[str, Any]:
    return {"order_index": 281475565888172, "client_order_index": 7213160468725761, "market_index": market,
            "owner_account_index": ACCT, "initial_base_amount": "0.064", "price": "140.125",
            "remaining_base_amount": remaining, "filled_base_amount": filled, "is_ask": False, "side": "",
            "type": "limit", "time_in_force": "post-only", "reduce_only": False, "status": status,
            "transaction_time": (T0 + 5) * 1000, "updated_at": T0 // 1000}


def test_private_channels_wait_for_a_token() -> None:
    core = FeedCore([SOL], depth=20, account_index=ACCT)
    out = connected(core)
    assert [s.channel for s in of(out, Send)] == ["order_book/2", "trade/2"]
    assert of(core.on_timer(T0 + 1_000), Send) == []
    out = core.handle(TokenSeen(TOKEN, "file"), T0 + 2_000)
    sends = of(out, Send)
    assert [s.channel for s in sends] == PRIVATE and all(s.auth == TOKEN for s in sends)
    assert all(s.payload() == {"type": "subscribe", "channel": s.channel, "auth": TOKEN} for s in sends)
    assert core.token_source == "file"


def test_token_never_appears_in_reprs() -> None:
    core = FeedCore([SOL], depth=20, account_index=ACCT)
    connected(core)
    out = core.handle(TokenSeen(TOKEN, "env"), T0)
    assert TOKEN not in repr(out) and TOKEN not in repr(TokenSeen(TOKEN, "env"))


def test_account_snapshots_and_deltas() -> None:
    core = live(ACCT, TOKEN)
    ch_orders, ch_trades, ch_pos = (f"{k}:{ACCT}" for k in ("account_all_orders", "account_all_trades",
                                                           "account_all_positions"))
    out = core.handle(frame({"channel": ch_orders, "orders": {"2": [order()], "0": [order(market=0)]},
                             "type": "subscribed/account_all_orders"}), T0 + 10)
    [u] = [c.msg for c in of(out, PublishAccount)]
    assert isinstance(u, OrderUpdate) and u.status == "open" and u.price == 140_125 and u.ts_ms == T0 + 5
    assert core.private[ch_orders] is SubState.ACTIVE and core.last_account_ms == T0 + 10
    out = core.handle(frame({"channel": ch_orders, "orders": {"2": [order("filled", "0.000", "0.064")]},
                             "type": "update/account_all_orders"}), T0 + 11)
    [u] = [c.msg for c in of(out, PublishAccount)]
    assert (u.status, u.remaining_size, u.filled_size) == ("filled", 0, 64)

    fill = dict(trade(77), bid_account_id=ACCT, bid_id=281475565888172, bid_client_id=7213160468725761, taker_fee=280)
    core.handle(frame({"channel": ch_trades, "trades": {}, "total_volume": 0, "type": "subscribed/account_all_trades"}), T0)
    out = core.handle(frame({"channel": ch_trades, "trades": {"2": [fill]}, "type": "update/account_all_trades"}), T0)
    [f] = [c.msg for c in of(out, PublishAccount)]
    assert isinstance(f, Fill) and (f.is_ask, f.is_maker, f.order_index, f.fee) == (False, False, 281475565888172, 1961)
    # the same trade again (e.g. replayed) is not a second fill
    assert of(core.handle(frame({"channel": ch_trades, "trades": {"2": [fill]}, "type": "update/account_all_trades"}),
                          T0), PublishAccount) == []

    out = core.handle(frame({"channel": ch_pos, "positions": {}, "shares": [], "type": "subscribed/account_all_positions",
                             "timestamp": T0 + 20}), T0 + 21)
    # the last of the three snapshots: the channels are up for the first time, so an AccountGap follows
    assert [c.msg for c in of(out, PublishAccount)] == [Position(market_id=2, position=0, ts_ms=T0 + 20),
                                                        AccountGap(reason="start", ts_ms=T0 + 21)]
    pos = {"market_id": 2, "symbol": "SOL", "sign": 1, "position": "0.064", "avg_entry_price": "140.125"}
    out = core.handle(frame({"channel": ch_pos, "positions": {"2": pos}, "type": "update/account_all_positions"}), T0 + 22)
    assert [c.msg for c in of(out, PublishAccount)] == [Position(market_id=2, position=64, avg_entry_price=140_125,
                                                                 ts_ms=T0 + 22)]
    assert core.private_active


def test_bad_position_in_snapshot_does_not_fake_a_flat_position() -> None:
    core = live(ACCT, TOKEN)
    bad = {"market_id": 2, "sign": -1, "position": "0.0645"}
    out = core.handle(frame({"channel": f"account_all_positions:{ACCT}", "positions": {"2": bad},
                             "type": "subscribed/account_all_positions"}), T0)
    assert of(out, PublishAccount) == [] and len(of(out, Malformed)) == 1


def test_frames_of_another_account_are_skipped() -> None:
    core = live(ACCT, TOKEN)
    out = core.handle(frame({"channel": "account_all_orders:5", "orders": {"2": [order()]},
                             "type": "update/account_all_orders"}), T0)
    assert of(out, PublishAccount) == [] and of(out, Skipped)


def test_refused_token_is_retried_only_when_it_changes_or_later() -> None:
    core = live(ACCT, TOKEN)
    out = core.handle(frame({"error": {"code": 20013, "message": "invalid auth: invalid deadline"}}), T0 + 1)
    assert of(out, VenueError) == [VenueError(20013, "invalid auth: invalid deadline")] and of(out, RefreshToken)
    assert all(s is SubState.IDLE for s in core.private.values())
    assert of(core.handle(TokenSeen(TOKEN, "redis"), T0 + 2), Send) == []   # same refused token: wait
    assert of(core.on_timer(T0 + 1_000), Send) == []
    new = TOKEN.replace("1795480949", "1795484549")
    sends = of(core.handle(TokenSeen(new, "redis"), T0 + 3), Send)
    assert [s.channel for s in sends] == PRIVATE and {s.auth for s in sends} == {new}


def test_refused_token_is_retried_after_the_retry_interval() -> None:
    core = FeedCore([SOL], depth=20, account_index=ACCT, timing=Timing(private_retry_ms=30_000))
    core.handle(TokenSeen(TOKEN, "env"), T0)
    connected(core)
    core.handle(SNAPSHOT, T0)
    core.handle(frame({"error": {"code": 20001, "message": f"invalid param : auth field is required: "
                                                           f"account_all_orders:{ACCT}"}}), T0 + 1)
    assert core.private[f"account_all_orders:{ACCT}"] is SubState.IDLE
    assert core.private[f"account_all_trades:{ACCT}"] is SubState.PENDING  # refusal named one channel
    for k in ("account_all_trades", "account_all_positions"):  # the venue answers the other two
        core.handle(frame({"channel": f"{k}:{ACCT}", "trades": {}, "positions": {}, "type": f"subscribed/{k}"}), T0 + 2)
    assert of(core.on_timer(T0 + 30_000), Send) == []
    assert [s.channel for s in of(core.on_timer(T0 + 30_001), Send)] == [PRIVATE[0]]


def test_active_subscriptions_survive_token_rotation() -> None:
    core = live(ACCT, TOKEN)
    for k in ("account_all_orders", "account_all_trades", "account_all_positions"):
        core.handle(frame({"channel": f"{k}:{ACCT}", "orders": {}, "trades": {}, "positions": {},
                           "type": f"subscribed/{k}"}), T0)
    assert core.private_active
    out = core.handle(TokenSeen("rotated-token-value-123", "redis"), T0 + 1)
    assert of(out, Send) == [] and of(out, Notice)


def test_expiry_naming_an_active_channel_resubscribes_it_with_the_new_token() -> None:
    core = live(ACCT, TOKEN)
    ch = f"account_all_trades:{ACCT}"
    core.handle(frame({"channel": ch, "trades": {}, "type": "subscribed/account_all_trades"}), T0)
    out = core.handle(frame({"error": {"code": 20013, "message": f"invalid auth: invalid deadline: {ch}"}}), T0 + 1)
    assert of(out, Send) == [Send("unsubscribe", f"account_all_trades/{ACCT}")]
    new = "1795484549:281474976710654:3:" + "aa" * 80
    sends = of(core.handle(TokenSeen(new, "redis"), T0 + 2), Send)
    assert sends == [Send("subscribe", f"account_all_trades/{ACCT}", auth=new)]


def test_already_subscribed_marks_the_channel_active() -> None:
    core = live(ACCT, TOKEN)
    ch = f"account_all_orders:{ACCT}"
    core.handle(frame({"error": {"code": 30003, "message": f"Already Subscribed to : {ch}"}}), T0)
    assert core.private[ch] is SubState.ACTIVE


def test_no_account_means_no_private_channels() -> None:
    core = FeedCore([SOL], depth=20)
    connected(core)
    assert of(core.handle(TokenSeen(TOKEN, "env"), T0), Send) == []


def test_refusal_is_blamed_on_the_token_the_subscription_carried() -> None:
    core = live(ACCT, TOKEN)  # subscriptions pending with TOKEN
    new = TOKEN.replace("1795480949", "1795484549")
    assert of(core.handle(TokenSeen(new, "redis"), T0 + 1), Send) == []  # pending channels are not re-sent
    out = core.handle(frame({"error": {"code": 20013, "message": "invalid auth: invalid deadline"}}), T0 + 2)
    # TOKEN was refused, not the rotated one: all three go out again right away with the new token
    sends = of(out, Send)
    assert [s.channel for s in sends] == PRIVATE and {s.auth for s in sends} == {new}
