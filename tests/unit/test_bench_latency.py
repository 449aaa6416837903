from bench.latency import hop_table, percentile


def test_percentile_nearest_rank() -> None:
    vals = [float(i) for i in range(1, 101)]
    assert percentile(vals, 50) == 50.0 and percentile(vals, 99) == 99.0 and percentile([3.0], 99) == 3.0


def test_hop_table_per_hop_and_total_skips_incomplete() -> None:
    ms = 1_000_000
    t = {"venue": 0, "feed": 2 * ms, "maker": 3 * ms, "guard": 5 * ms, "signed": 6 * ms, "sent": 10 * ms}
    table = hop_table([t, {"venue": 0, "feed": 1}])
    assert table["venue→feed"] == {"n": 1, "p50_ms": 2.0, "p99_ms": 2.0}
    assert table["signed→sent"]["p50_ms"] == 4.0
    assert table["total venue→sent"]["p50_ms"] == 10.0 and table["internal feed→sent"]["p50_ms"] == 8.0
