"""Order identity: unique, increasing, and recognisable as ours (and only ours)."""
from __future__ import annotations

from shared.ids import MAX_COI, IdMint, source_of

NOW = 1_795_000_000_000


def test_indexes_increase_per_source_and_never_collide_across_sources() -> None:
    maker, hedger = IdMint("maker"), IdMint("hedger")
    m = [maker.next_coi(NOW) for _ in range(100)]
    h = [hedger.next_coi(NOW) for _ in range(100)]
    assert m == sorted(m) and len(set(m)) == 100 and not set(m) & set(h)
    assert all(0 < c <= MAX_COI for c in m + h)
    assert maker.next_coi(NOW - 5_000) > m[-1]  # a clock step back never reuses an index


def test_source_of_recognises_ours_and_refuses_foreign_indexes() -> None:
    assert source_of(IdMint("maker").next_coi(NOW)) == "maker"
    assert source_of(IdMint("hedger").next_coi(NOW)) == "hedger"
    assert source_of(IdMint("operator").next_coi(NOW)) == "operator"
    for foreign in (0, 1, 424_242_424_242, 1_700_000_000_001, NOW, MAX_COI + 1):  # counters, epoch-ms ids
        assert source_of(foreign) is None, foreign
