"""lab.report / lab.sweep_report: files written, PNGs valid, HTML self-contained, sweep ranking and stats."""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from lab.report import CHART_FILES, subsample, summary_rows, write_report  # noqa: E402
from lab.sweep_report import rank_rows, write_sweep  # noqa: E402

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _summary() -> dict:
    return {
        "model": "maker-v1", "seed": 7, "hours": 0.01, "sim_seconds": 36.0, "wall_seconds": 0.5,
        "pnl_usd": "0.012345", "spread_capture_usd": "0.020000", "inventory_pnl_usd": "-0.004655",
        "fees_usd": "0.003000", "fills_maker": 12, "fills_hedger": 3, "max_abs_position": "0.004",
        "sharpe": {"value": 1.25, "interval_s": 5, "samples": 7, "reason": ""},
        "max_drawdown_usd": "0.002100",
        "markout_bps": {"maker": {"100ms": {"n": 12, "bps": -0.4}, "1000ms": {"n": 11, "bps": 0.7}},
                        "hedger": {"100ms": {"n": 3, "bps": None}, "1000ms": {"n": 0, "bps": None}}},
        "two_sided_uptime": 0.973, "overrides": {"spread_bps": 4},
    }


def _curves() -> dict:
    t0 = 1_700_000_000_000
    equity, inventory, quotes = [], [], []
    for i in range(37):
        t = t0 + i * 1000
        cap, inv, fees = 0.02 * i / 36, 0.005 * math.sin(i / 5), 0.003 * i / 36
        equity.append([t, cap + inv - fees, cap, inv, fees])
        inventory.append([t, 0.001 * ((i % 9) - 4)])
        mid = 100.0 + 0.1 * math.sin(i / 4)
        quotes.append([t, mid, None if i % 10 == 3 else mid - 0.02, mid + 0.02])
    return {"equity": equity, "inventory": inventory, "quotes": quotes,
            "markouts": {"maker": [[100, -0.4], [1000, 0.7], [10000, 1.1]], "hedger": [[100, -1.0], [1000, -0.2]]}}


def _check_png(p: Path) -> None:
    data = p.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_SIG and data[12:16] == b"IHDR"
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert w > 100 and h > 100


def _check_self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<script|<link|src=\"(?!data:)", text)


def test_write_report_files_pngs_and_self_contained_html(tmp_path: Path) -> None:
    out = tmp_path / "run"
    paths = write_report(out, _summary(), _curves(), title="maker 36 s seed 7")
    assert [p.name for p in paths] == ["report.html", *CHART_FILES] and all(p.exists() for p in paths)
    for name in CHART_FILES:
        _check_png(out / name)
    text = (out / "report.html").read_text(encoding="utf-8")
    _check_self_contained(text)
    assert text.count("data:image/png;base64,") == len(CHART_FILES)
    for name in CHART_FILES:
        assert f'alt="{name}" src="data:image/png;base64,' in text
    # decimal strings verbatim, nested keys formatted
    assert "0.012345" in text and "-0.004655" in text and "97.3%" in text
    assert "1.250 (5 s buckets, n=7)" in text and "+0.70" in text and "spread_bps=4" in text


def test_summary_rows_order_and_nested_formatting() -> None:
    s = _summary()
    s["sharpe"] = {"value": None, "interval_s": 60, "samples": 1, "reason": "too few samples"}
    s["extra"] = {"a": {"b": 1.5}}
    rows = dict(summary_rows(s))
    assert list(dict(summary_rows(s)))[:3] == ["model", "seed", "hours"]
    assert rows["sharpe"] == "n/a (60 s buckets, n=1, too few samples)"
    assert rows["extra.a.b"] == "1.5" and "markout_bps" not in rows and rows["pnl_usd"] == "0.012345"


def test_write_report_tolerates_missing_and_empty_series(tmp_path: Path) -> None:
    paths = write_report(tmp_path, {}, {"equity": [], "quotes": [[1, None, None, None]], "markouts": {"maker": []}},
                         title="empty")
    for p in paths[1:]:
        _check_png(p)
    text = paths[0].read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 4
    _check_self_contained(text)


def test_report_png_is_deterministic(tmp_path: Path) -> None:
    write_report(tmp_path / "a", _summary(), _curves(), title="x")
    write_report(tmp_path / "b", _summary(), _curves(), title="x")
    for name in CHART_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_subsample_caps_points_and_keeps_ends() -> None:
    rows = list(range(36_001))
    s = subsample(rows, 5000)
    assert len(s) <= 5000 and s[0] == 0 and s[-1] == 36_000 and s == sorted(s)
    assert subsample(rows[:10], 5000) == rows[:10]


# --------------------------------------------------------------------------------------------------- sweep

def _run(spread: int, skew: float, seed: int, pnl: str, fills: int, dd: str) -> dict:
    return {"params": {"spread_bps": spread, "skew": skew}, "seed": seed,
            "summary": {"pnl_usd": pnl, "fills_maker": fills, "max_drawdown_usd": dd,
                        "sharpe": {"value": 0.5, "interval_s": 60, "samples": 3, "reason": ""}}}


def _sweep_rows() -> list[dict]:
    return [
        _run(2, 0.0, 1, "1.000000", 10, "0.5"), _run(2, 0.0, 2, "2.000000", 20, "0.5"),
        _run(2, 0.0, 3, "3.000000", 30, "2.0"),
        _run(4, 0.0, 1, "5.5", 4, "1"), _run(4, 0.0, 2, "4.5", 6, "3"),
        _run(2, 0.5, 1, "-1", 1, "1"), _run(2, 0.5, 2, "1", 3, "1"),
        _run(4, 0.5, 1, "10.25", 8, "0.25"),
    ]


def test_rank_rows_orders_by_mean_and_sample_std() -> None:
    ranked = rank_rows(_sweep_rows(), ["spread_bps", "skew"])
    assert [(g["params"]["spread_bps"], g["params"]["skew"]) for g in ranked] == [(4, 0.5), (4, 0.0), (2, 0.0), (2, 0.5)]
    assert [g["mean"] for g in ranked] == [10.25, 5.0, 2.0, 0.0]
    # sample std: (4,0): sqrt((0.25+0.25)/1); (2,0): sqrt((1+0+1)/2) = 1; (2,0.5): sqrt((1+1)/1)
    assert ranked[0]["std"] is None and ranked[0]["n"] == 1
    assert ranked[1]["std"] == pytest.approx(math.sqrt(0.5))
    assert ranked[2]["std"] == pytest.approx(1.0) and ranked[2]["n"] == 3
    assert ranked[3]["std"] == pytest.approx(math.sqrt(2.0))
    assert (ranked[2]["min"], ranked[2]["max"]) == (1.0, 3.0)
    assert ranked[2]["mean_fills_maker"] == 20.0 and ranked[2]["mean_max_drawdown_usd"] == 1.0
    assert [g["mean"] for g in rank_rows(_sweep_rows(), ["spread_bps"])] == pytest.approx([
        (5.5 + 4.5 + 10.25) / 3, (1 + 2 + 3 - 1 + 1) / 5])
    # dotted metric path into a nested summary value
    assert rank_rows(_sweep_rows(), ["spread_bps"], metric="sharpe.value")[0]["mean"] == 0.5


def test_write_sweep_files_csv_exact_and_html(tmp_path: Path) -> None:
    paths = write_sweep(tmp_path, _sweep_rows(), ["spread_bps", "skew"])
    assert [p.name for p in paths] == ["sweep.csv", "ranked.csv", "ranked.md", "heatmap.png", "sweep.html"]
    with (tmp_path / "sweep.csv").open() as fh:
        runs = list(csv.DictReader(fh))
    assert len(runs) == 8 and runs[0]["pnl_usd"] == "1.000000" and runs[0]["seed"] == "1"
    assert runs[0]["spread_bps"] == "2" and runs[0]["sharpe.value"] == "0.5"
    with (tmp_path / "ranked.csv").open() as fh:
        ranked = list(csv.DictReader(fh))
    assert [(r["rank"], r["spread_bps"], r["skew"], r["n"]) for r in ranked] == [
        ("1", "4", "0.5", "1"), ("2", "4", "0.0", "2"), ("3", "2", "0.0", "3"), ("4", "2", "0.5", "2")]
    assert float(ranked[1]["mean"]) == 5.0 and float(ranked[1]["std"]) == pytest.approx(0.7071067812)
    assert ranked[0]["std"] == "" and float(ranked[3]["std"]) == pytest.approx(1.414213562)
    md = (tmp_path / "ranked.md").read_text()
    assert md.count("\n| ") == 5 and "| 1 | 4 | 0.5 | 10.25 |" in md
    _check_png(tmp_path / "heatmap.png")
    text = (tmp_path / "sweep.html").read_text(encoding="utf-8")
    _check_self_contained(text)
    assert text.count("data:image/png;base64,") == 1 and "<table>" in text


def test_write_sweep_one_key_bar_chart_and_empty(tmp_path: Path) -> None:
    paths = write_sweep(tmp_path / "one", _sweep_rows(), ["spread_bps"], metric="pnl_usd")
    _check_png(paths[3])
    paths = write_sweep(tmp_path / "none", [], ["spread_bps", "skew"])
    _check_png(paths[3])
    assert (tmp_path / "none" / "ranked.csv").read_text().splitlines() == [
        "rank,spread_bps,skew,mean,std,min,max,n,mean_fills_maker,mean_max_drawdown_usd"]
