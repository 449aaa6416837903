"""shared.exposition: several services' /metrics as one valid exposition, labelled by service."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from services.gateway.replies import classify
from shared.exposition import merge

A = """# HELP mm_position_lots Position (lots)
# TYPE mm_position_lots gauge
mm_position_lots{market="2"} 75.0
# HELP mm_fills_total Fills
# TYPE mm_fills_total counter
mm_fills_total 3.0
"""
B = """# HELP mm_position_lots Position (lots)
# TYPE mm_position_lots gauge
mm_position_lots{market="2"} 74.0
"""


def test_a_family_two_services_export_is_one_family_with_a_service_label() -> None:
    text = merge({"maker": A, "guard": B, "broken": "this is { not an exposition"}).decode()
    assert text.count("# TYPE mm_position_lots gauge") == 1
    fams = {f.name: f for f in text_string_to_metric_families(text)}   # it parses: valid exposition
    got = {(s.labels["service"], s.value) for s in fams["mm_position_lots"].samples}
    assert got == {("maker", 75.0), ("guard", 74.0)}
    assert [s.value for s in fams["mm_fills"].samples if s.name == "mm_fills_total"] == [3.0]
    ok = {s.labels["service"]: s.value for s in fams["mm_aggregate_scrape_ok"].samples}
    assert ok == {"maker": 1.0, "guard": 1.0, "broken": 0.0}


def test_the_volume_quota_the_venue_reports_is_kept() -> None:
    r = classify(200, b'{"code":200,"message":"","tx_hash":"ab","volume_quota_remaining":42}')
    assert r.outcome == "ok" and r.quota_remaining == 42
    assert classify(200, b'{"code":200,"message":"","tx_hash":"ab"}').quota_remaining is None
