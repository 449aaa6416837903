"""``lighter-bot`` as an operator runs it: backtests, sweeps (process pool and a local Dask cluster),
the report from a recorded session, and one-line errors with exit status 2 for bad input."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import orjson
import pytest

from tests.conftest import REPO

CLOCK_KEYS = ("wall_seconds", "sim_per_wall")   # the only wall-clock figures in a summary
REQUIRED = ("sim_seconds", "wall_seconds", "pnl_usd", "spread_capture_usd", "inventory_pnl_usd", "fees_usd",
            "fills_maker", "fills_hedger", "max_abs_position", "sharpe", "max_drawdown_usd", "markout_bps",
            "two_sided_uptime")


def lighter_bot(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _summary(d: Path) -> dict:
    return orjson.loads((d / "summary.json").read_bytes())


def test_a_backtest_writes_its_summary_report_and_charts_and_repeats_bit_for_bit(tmp_path: Path) -> None:
    args = ("backtest", "--model", "as", "--seed", "7", "--hours", "0.06", "--set", "maker.spread_bps=4")
    a, b = lighter_bot(*args, "--out", str(tmp_path / "a")), lighter_bot(*args, "--out", str(tmp_path / "b"))
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    sa, sb = _summary(tmp_path / "a"), _summary(tmp_path / "b")
    for k in REQUIRED:
        assert k in sa, k
    assert sa["sim_seconds"] == 216 and sa["fills_maker"] > 0 and sa["overrides"] == {"maker.spread_bps": "4"}
    assert sa["sharpe"]["interval_s"] > 0 and "maker" in sa["markout_bps"]
    assert {k: v for k, v in sa.items() if k not in CLOCK_KEYS} == {k: v for k, v in sb.items() if k not in CLOCK_KEYS}
    pnl = Fraction(Decimal(sa["pnl_usd"]))
    assert pnl == Fraction(Decimal(sa["spread_capture_usd"])) + Fraction(Decimal(sa["inventory_pnl_usd"])) \
        - Fraction(Decimal(sa["fees_usd"]))
    html = (tmp_path / "a" / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4 and "https://" not in html
    for png in ("equity", "inventory", "quotes", "markouts"):
        assert (tmp_path / "a" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_grid_over_seeds_and_models_runs(tmp_path: Path) -> None:
    r = lighter_bot("sweep", "--grid", "seed=3,9", "--grid", "model=calm,as", "--seeds", "1", "--hours", "0.01",
                    "--executor", "serial", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(rows) == 5 and any(",9," in row or row.startswith("9,") or ",9" in row for row in rows[1:]), rows


@pytest.mark.parametrize("executor", ["process", "dask-local"])
def test_a_sweep_ranks_the_grid_across_seeds(tmp_path: Path, executor: str) -> None:
    r = lighter_bot("sweep", "--grid", "maker.spread_bps=3,6", "--seeds", "2", "--model", "as", "--hours", "0.03",
                    "--executor", executor, "--workers", "2", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    ranked = (tmp_path / "ranked.csv").read_text().splitlines()
    assert len(ranked) == 3                                     # header + one row per grid point
    rows = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(rows) == 5                                       # header + 2 points x 2 seeds
    assert (tmp_path / "heatmap.png").exists() and (tmp_path / "sweep.html").exists()


@pytest.mark.parametrize("args,needle", [
    (("backtest", "--out", "x", "--set", "maker.no_such_key=1"), "--set: maker.no_such_key: unknown key"),
    (("backtest", "--out", "x", "--set", "maker.spread_bps=-3"), "maker.spread_bps"),
    (("backtest", "--out", "x", "--model", "volcano"), "--model"),
    (("backtest", "--out", "x", "--latency", "constant:wss=1"), "wss"),
    (("backtest", "--out", "x", "--hours", "0"), "--hours"),
    (("backtest", "--out", "x", "--tape", "/no/such/tape.jsonl"), "--tape"),
    (("sweep", "--out", "x", "--grid", "maker.spread_bps"), "--grid"),
    (("sweep", "--out", "x", "--grid", "maker.spread_bps=3", "--executor", "carrier-pigeon"), "--executor"),
    (("replay", "/no/such/file.rec.gz"), "/no/such/file.rec.gz"),
    (("backtest", "--hours", "1"), "--out"),
    (("backtest", "--out", "x", "--param", "queue_powr=3"), "--param queue_powr"),
    (("sweep", "--out", "x", "--grid", "maker.spread_bps=3", "--metric", "pnl"), "--metric"),
    (("sweep", "--out", "x", "--grid", "maker.spread_bps=3", "--metric", "markout_bps"), "--metric"),
    (("backtest", "--out", "x", "--param", "sigma_bps=nan"), "--param sigma_bps"),
    (("backtest", "--out", "x", "--latency", "constant:ws=nan"), "ws"),
    (("sweep", "--out", "x", "--grid", "seed=1,x"), "--grid seed"),
    (("sweep", "--out", "x", "--grid", "model=volcano"), "--model"),
    (("sweep", "--out", "x", "--grid", "maker.spread_bps=3", "--workers", "0"), "--workers"),
    (("record", "--out", "x/r.gz", "--redis-url", "redis://user:hunter2@127.0.0.1:1/0"), "127.0.0.1:1"),
    (("paper", "as2008", "--paths", "1", "--json", "x"), "--paths"),
    (("paper", "as2008", "--gamma", "-1", "--json", "x"), "--gamma"),
    (("paper", "as2009", "--json", "x"), "as2009"),
    (("compare", "--engines", "nope", "--json", "x"), "--engines: unknown nope"),
    (("compare", "--engine", "mine:maker.no_such_key=1", "--json", "x"), "maker.no_such_key"),
    (("compare", "--engine", "mine", "--json", "x"), "--engine"),
    (("compare", "--models", "calm,tape", "--json", "x"), "--tape"),
    (("compare", "--models", "volcano", "--json", "x"), "--model"),
    (("compare", "--seeds", "0", "--json", "x"), "--seeds"),
])
def test_bad_input_is_one_line_and_exit_status_2(args: tuple[str, ...], needle: str, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "hunter2" not in r.stderr                           # a URL's password is a secret
    assert not (tmp_path / "x").exists()                       # nothing started, nothing written


def test_record_follow_keeps_what_arrives_after_it_started_and_a_killed_recorder_leaves_a_readable_file(
        redis_server: str, tmp_path: Path) -> None:
    import signal
    import time

    from redis import Redis

    from lab import recording
    from shared.schemas import BookTop, encode
    r = Redis.from_url(redis_server)
    book = BookTop(market_id=2, seq=1, venue_ts_ms=1, bids=[(140_000, 5)], asks=[(140_010, 5)])
    r.delete("md:book:2")
    r.xadd("md:book:2", encode(book))
    out = tmp_path / "f.rec.gz"
    p = subprocess.Popen([sys.executable, "-m", "lab.cli", "record", "--follow", "--out", str(out), "--redis-url",
                          redis_server, "--tap-dir", str(tmp_path / "none")], cwd=REPO, stderr=subprocess.PIPE,
                         text=True)
    try:
        time.sleep(2.0)
        for n in range(2, 5):
            r.xadd("md:book:2", encode(book.model_copy(update={"seq": n})))
        time.sleep(1.5)
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    rec = recording.read(out)
    assert [m.seq for _, m in rec.stream("md:book:2")] == [1, 2, 3, 4] and not rec.truncated
    # a recorder killed after a flush: everything up to it reads back
    w = recording.Writer(tmp_path / "k.rec.gz", 2, 100)
    w.stream("md:book:2", "5-0", encode(book))
    w.flush()
    cut = (tmp_path / "k.rec.gz").read_bytes()
    (tmp_path / "cut.rec.gz").write_bytes(cut)
    w.close()
    rec = recording.read(tmp_path / "cut.rec.gz")
    assert rec.truncated and [m.seq for _, m in rec.stream("md:book:2")] == [1]


def test_every_documented_metric_is_accepted() -> None:
    from lab.cli import _check_metric
    from shared.config import load_settings
    s = load_settings()
    for m in ("pnl_usd", "fills_maker", "sharpe.value", "markout_bps.maker.1000ms.bps", "two_sided_uptime",
              "max_drawdown_usd", "wall_seconds"):
        _check_metric(s, m)


def test_paper_writes_the_papers_rows_as_json(tmp_path: Path) -> None:
    out = tmp_path / "as2008.json"
    r = lighter_bot("paper", "as2008", "--paths", "3", "--gamma", "0.1", "--workers", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr
    rows = orjson.loads(out.read_bytes())
    assert [(x["gamma"], x["strategy"]) for x in rows] == [(0.1, "inventory"), (0.1, "symmetric")]
    assert all(set(x) == {"gamma", "strategy", "spread", "profit_mean", "profit_std", "final_q_mean", "final_q_std",
                          "paths"} and x["paths"] == 3 for x in rows)
    assert "published value" in r.stdout


def test_compare_ranks_each_engine_against_the_baseline(tmp_path: Path) -> None:
    out, md = tmp_path / "cmp.json", tmp_path / "cmp.md"
    r = lighter_bot("compare", "--models", "calm", "--seeds", "2", "--hours", "0.03", "--workers", "2",
                    "--engine", "wide:maker.engine=fixed,maker.spread_bps=8", "--json", str(out), "--md", str(md))
    assert r.returncode == 0, r.stderr
    got = orjson.loads(out.read_bytes())
    assert [x["engine"] for x in got["rows"]] == ["baseline", "adaptive", "avellaneda_stoikov", "glft", "wide"]
    assert all(x["seeds"] == 2 and x["tier"] == "standard" for x in got["rows"])
    base, wide = got["rows"][0], got["rows"][-1]
    assert base["fills_hedger"] == 0 and wide["fills_maker"] < base["fills_maker"]   # no hedging; wider fills less
    assert got["verdicts"][0]["model"] == "calm" and md.read_text().startswith("| model | engine |")
