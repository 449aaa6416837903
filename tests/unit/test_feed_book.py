"""Order book keeper: snapshot, deltas, zero-size deletes, nonce chain (no I/O)."""
from __future__ import annotations

from services.feed.book import OrderBook

# the real consecutive chain captured from mainnet (lighter-api.md section 2.3)
SNAP_NONCE, U1_NONCE, U2_NONCE = 18032383898, 18032384006, 18032384057


def snapshot_book() -> OrderBook:
    b = OrderBook(2)
    b.apply_snapshot(bids=[(140_120, 1_500), (140_125, 500), (140_100, 12_000)],
                     asks=[(140_150, 2_000), (140_130, 64), (140_200, 9_000)], nonce=SNAP_NONCE)
    return b


def test_snapshot_sorts_both_sides_best_first() -> None:
    b = snapshot_book()
    assert b.valid and b.nonce == SNAP_NONCE
    bids, asks = b.top(10)
    assert bids == [(140_125, 500), (140_120, 1_500), (140_100, 12_000)]
    assert asks == [(140_130, 64), (140_150, 2_000), (140_200, 9_000)]


def test_top_is_limited_to_depth() -> None:
    bids, asks = snapshot_book().top(2)
    assert bids == [(140_125, 500), (140_120, 1_500)] and asks == [(140_130, 64), (140_150, 2_000)]


def test_update_replaces_inserts_and_zero_deletes() -> None:
    b = snapshot_book()
    ok = b.apply_update(bids=[(140_125, 0), (140_121, 700), (140_100, 11_000)], asks=[(140_130, 0), (140_140, 30)],
                        begin_nonce=SNAP_NONCE, nonce=U1_NONCE)
    assert ok and b.nonce == U1_NONCE
    bids, asks = b.top(10)
    assert bids == [(140_121, 700), (140_120, 1_500), (140_100, 11_000)]
    assert asks == [(140_140, 30), (140_150, 2_000), (140_200, 9_000)]


def test_deleting_an_absent_level_is_harmless() -> None:
    b = snapshot_book()
    assert b.apply_update(bids=[(139_000, 0)], asks=[], begin_nonce=SNAP_NONCE, nonce=U1_NONCE)
    assert b.top(10)[0] == [(140_125, 500), (140_120, 1_500), (140_100, 12_000)]


def test_chain_of_updates_then_gap_invalidates() -> None:
    b = snapshot_book()
    assert b.apply_update([], [(140_130, 70)], SNAP_NONCE, U1_NONCE)
    assert b.apply_update([], [(140_130, 80)], U1_NONCE, U2_NONCE)
    assert b.top(1)[1] == [(140_130, 80)]
    # a frame was lost: begin_nonce points past our nonce
    assert not b.apply_update([], [(140_130, 90)], U2_NONCE + 51, U2_NONCE + 99)
    assert not b.valid and b.nonce is None and b.top(5) == ([], [])


def test_replayed_update_is_a_gap_too() -> None:
    b = snapshot_book()
    assert b.apply_update([], [], SNAP_NONCE, U1_NONCE)
    assert not b.apply_update([], [], SNAP_NONCE, U1_NONCE)
    assert not b.valid


def test_update_before_any_snapshot_is_refused() -> None:
    b = OrderBook(2)
    assert not b.apply_update([(1, 1)], [], 0, 5)
    assert not b.valid and b.top(5) == ([], [])


def test_new_snapshot_replaces_everything() -> None:
    b = snapshot_book()
    b.apply_snapshot([(141_000, 1)], [(141_010, 2)], nonce=U2_NONCE)
    assert b.top(10) == ([(141_000, 1)], [(141_010, 2)]) and b.nonce == U2_NONCE
