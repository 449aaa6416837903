"""``lighter-bot``: the strategy lab's command line (backtest, sweep, record, replay, report, paper, compare).

Every flag is documented in README "Strategy lab". A bad flag, config key or file is one line on
stderr naming it and exit status 2, before anything runs.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import orjson

from shared.cli import Parser
from shared.config import ConfigError, Settings, load_settings

from lab.latency import Latency, LatencyError
from lab.overrides import apply_overrides, parse_pairs

PROG = "lighter-bot"


class UsageError(Exception):
    """A flag's value is wrong (the message names the flag)."""


def _err(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 2


def _settings(a: object) -> Settings:
    s = load_settings(getattr(a, "config", None), getattr(a, "profile", None))
    return apply_overrides(s, parse_pairs(getattr(a, "set", []) or [], "--set"), "--set")


def _model(text: str) -> str:
    from services.venue.flow import MODEL_NAMES
    names = [n.strip() for n in text.split(",")]
    if not all(n in MODEL_NAMES for n in names):
        raise UsageError(f"--model: unknown {text!r}; choose from {', '.join(MODEL_NAMES)} (comma list = mixed)")
    return text


def _common(p: Parser) -> None:
    p.add_argument("--model", default="calm",
                   help="venue market model: calm, burst, trend, informed, as; a comma list switches between them "
                        "(ignored with --tape, which plays the venue's replay model)")
    p.add_argument("--seed", type=int, default=1, help="RNG seed of the venue and the latency model (default 1)")
    p.add_argument("--hours", type=float, default=1.0, help="simulated hours (default 1)")
    p.add_argument("--config", default=None, help="config file (default config.yaml)")
    p.add_argument("--profile", default=None, help="market profile (default the config's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--tape", default=None, help="JSONL tape (services/venue/README.md) played by the venue's replay model")
    p.add_argument("--latency", default="constant", help="constant[:ws=MS,bus=MS,rest=MS] or empirical:FILE")
    p.add_argument("--tier", choices=("premium", "standard"), default=None, help="venue account tier (default: the profile's account.tier)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="venue market-model parameter (services/venue/README.md), e.g. queue_power=3 or sigma_bps=2")
    p.add_argument("--out", required=True, help="output directory")


def _run(a: object):
    from lab.backtest import Run
    _model(getattr(a, "model"))
    Latency.parse(getattr(a, "latency"))
    hours = getattr(a, "hours")
    if not 0 < hours <= 24 * 30:
        raise UsageError(f"--hours: must be > 0 and <= 720, got {hours:g}")
    tape = getattr(a, "tape")
    if tape and not Path(tape).is_file():
        raise UsageError(f"--tape: no such file: {tape}")
    if tape:
        from lab.tape import load_tape
        load_tape(tape, load_settings(getattr(a, "config", None), getattr(a, "profile", None)).market_spec.market_id)
    from dataclasses import fields

    from services.venue.flow import Params
    known = {f.name for f in fields(Params)}
    params = []
    for k, v in parse_pairs(getattr(a, "param"), "--param").items():
        if k not in known:
            raise UsageError(f"--param {k}: unknown (known: {', '.join(sorted(known))})")
        try:
            x = float(v)
        except ValueError:
            raise UsageError(f"--param {k}: not a number: {v!r}") from None
        if x != x or x in (float("inf"), float("-inf")):
            raise UsageError(f"--param {k}: not a finite number: {v!r}")
        params.append((k, x))
    return Run(getattr(a, "model"), getattr(a, "seed"), hours, tape, getattr(a, "latency"), getattr(a, "tier"),
               tuple(params))


def _need_charts() -> None:
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("the report's charts need matplotlib: pip install -e '.[lab]' (make setup installs it)")


def cmd_backtest(a: object) -> int:
    from lab.backtest import backtest, progress_printer
    _need_charts()
    settings = _settings(a)
    run = _run(a)
    out = Path(getattr(a, "out"))
    want = sys.stderr.isatty() or os.environ.get("LAB_PROGRESS", "") not in ("", "0")
    prog = progress_printer(0, int(run.hours * 3_600_000)) if want else None
    from lab.sim import LAB_EPOCH_MS
    shown = (lambda t: prog(t - LAB_EPOCH_MS)) if prog else None
    summary = backtest(settings, run, out, parse_pairs(getattr(a, "set"), "--set"), shown)
    if prog:
        sys.stderr.write("\n")
    print(f"{summary['sim_seconds']:.0f} s simulated in {summary['wall_seconds']:.2f} s "
          f"({summary['sim_per_wall']}x): pnl {summary['pnl_usd']} USD, {summary['fills_maker']} maker / "
          f"{summary['fills_hedger']} hedger fills; {out}/summary.json, {out}/report.html")
    return 0


def _grid_value(settings: Settings, key: str, v: str) -> None:
    if key == "model":
        _model(v)
    elif key == "seed":
        if not v.lstrip("-").isdigit():
            raise UsageError(f"--grid seed: not an integer: {v!r}")
    elif key == "hours":
        try:
            h = float(v)
        except ValueError:
            raise UsageError(f"--grid hours: not a number: {v!r}") from None
        if not 0 < h <= 720:
            raise UsageError(f"--grid hours: must be > 0 and <= 720, got {v}")
    elif key == "latency":
        Latency.parse(v)
    elif key == "tier":
        if v not in ("premium", "standard"):
            raise UsageError(f"--grid tier: premium or standard, got {v!r}")
    else:
        apply_overrides(settings, {key: v}, "--grid")


def _check_metric(settings: Settings, metric: str) -> None:
    """``--metric`` must name a number in a backtest's summary (checked on a one-book session's)."""
    from analytics.session import SessionBuilder, summarize
    from shared.schemas import BookTop
    b = SessionBuilder(settings.market_spec)
    for t in (0, 60_000):
        b.feed(BookTop(market_id=settings.market_spec.market_id, seq=t + 1, venue_ts_ms=t, bids=[(1000, 1)],
                       asks=[(1001, 1)]))
    sample = {**summarize(b), "wall_seconds": 0.0, "sim_per_wall": 0.0, "events": 0, "intents": 0}
    cur: object = sample
    found = metric in sample
    if found:
        cur = sample[metric]
    else:
        found = True
        for part in metric.split("."):
            if not isinstance(cur, dict) or part not in cur:
                found = False
                break
            cur = cur[part]
    if not found or isinstance(cur, (dict, list, bool)):   # a leaf may be None here (no fills): it exists
        raise UsageError(f"--metric {metric!r}: not a number in summary.json (e.g. pnl_usd, fills_maker, "
                         f"sharpe.value, markout_bps.maker.1000ms.bps)")


def cmd_sweep(a: object) -> int:
    from lab.sweep import sweep
    _need_charts()
    settings = _settings(a)
    run = _run(a)
    grid: dict[str, list[str]] = {}
    for g in getattr(a, "grid"):
        key, eq, vals = g.partition("=")
        values = [v.strip() for v in vals.split(",") if v.strip()]
        if not eq or not values:
            raise UsageError(f"--grid: expected KEY=V1,V2,..., got {g!r}")
        grid[key.strip()] = values
        for v in values:   # every value must be valid before any job starts
            _grid_value(settings, key.strip(), v)
    if not grid:
        raise UsageError("--grid: at least one KEY=V1,V2,... is required")
    ex = getattr(a, "executor")
    if ex not in ("process", "serial", "dask-local") and not ex.startswith("dask:"):
        raise UsageError(f"--executor: unknown {ex!r} (process, serial, dask-local or dask:ADDRESS)")
    seeds = getattr(a, "seeds")
    if seeds < 1:
        raise UsageError(f"--seeds: must be >= 1, got {seeds}")
    workers = getattr(a, "workers")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers: must be >= 1, got {workers}")
    _check_metric(settings, getattr(a, "metric"))
    out = Path(getattr(a, "out"))
    t0 = time.perf_counter()

    def progress(n: int, total: int) -> None:
        sys.stderr.write(f"\r{n}/{total} backtests done in {time.perf_counter() - t0:.1f} s ")
        sys.stderr.flush()
    rows = sweep(settings, run, grid, seeds, out, getattr(a, "executor"), getattr(a, "workers"), getattr(a, "metric"),
                 progress)
    sys.stderr.write("\n")
    print(f"{len(rows)} backtests in {time.perf_counter() - t0:.1f} s; {out}/ranked.md, {out}/sweep.html")
    return 0


def _redacted(url: str) -> str:
    """A Redis URL without its credentials (they are secrets: never printed)."""
    from urllib.parse import urlsplit
    try:
        u = urlsplit(url)
        return f"{u.scheme}://{u.hostname or ''}{':' + str(u.port) if u.port else ''}{u.path}"
    except ValueError:
        return "(unparseable URL)"


def cmd_record(a: object) -> int:
    from redis import Redis
    from redis.exceptions import RedisError

    from lab import recording
    settings = load_settings(getattr(a, "config", None))
    market = settings.market_spec.market_id if getattr(a, "market") is None else getattr(a, "market")
    raw = getattr(a, "account") or os.environ.get("LIGHTER_ACCOUNT_INDEX") or "100"
    if not raw.isdigit():
        raise UsageError(f"--account (or $LIGHTER_ACCOUNT_INDEX): not an account index: {raw!r}")
    account = int(raw)
    since = int((time.time() - getattr(a, "since_s")) * 1000) if getattr(a, "since_s") else 0
    url = getattr(a, "redis_url")
    where = _redacted(url)
    try:
        r = Redis.from_url(url)
    except ValueError as e:
        raise UsageError(f"--redis-url {where}: {e}") from None
    streams = recording.streams_for(market, account)
    out = Path(getattr(a, "out"))
    follow = getattr(a, "follow")
    try:
        r.ping()
        out.parent.mkdir(parents=True, exist_ok=True)
        w = recording.Writer(out, market, account)
        try:
            last = _copy(r, w, streams, {s: f"{since}-0" for s in streams})   # what the streams hold now
            if follow:
                _follow(r, w, streams, last)
        finally:
            w.taps(_read_taps(Path(getattr(a, "tap_dir"))))   # after the streams: every output's input is on file
            counts = w.close()
    except (RedisError, OSError) as e:
        raise UsageError(f"cannot record from {where} to {out} ({type(e).__name__})") from None
    finally:
        r.close()
    print(f"recorded {counts['stream_entries']} stream entries and {counts['tap_lines']} core inputs to {out}"
          + ("" if counts["tap_lines"] else " (no taps: set LIGHTER_TAP_DIR for the services to replay them)"))
    return 0


def _read_taps(tap_dir: Path) -> dict[str, list[bytes]]:
    return {f.name.removesuffix(".tap.jsonl"): f.read_bytes().splitlines()
            for f in (sorted(tap_dir.glob("*.tap.jsonl")) if tap_dir.is_dir() else [])}


def _copy(r: object, w: object, streams: list[str], start: dict[str, str]) -> dict[str, str]:
    """Every entry from ``start`` on, stream by stream; returns the last id read per stream."""
    last = {}
    for stream in streams:
        ms0 = int(start[stream].split("-")[0])
        nxt, last[stream] = start[stream], f"{max(ms0 - 1, 0)}-0"   # XREAD continues after this id
        while True:
            batch = r.xrange(stream, min=nxt, count=5000)   # type: ignore[attr-defined]
            if not batch:
                break
            for eid, fields in batch:
                w.stream(stream, eid.decode(), {k.decode(): v.decode() for k, v in fields.items()})  # type: ignore[attr-defined]
            last[stream] = batch[-1][0].decode()
            ms, seq = last[stream].split("-")
            nxt = f"{ms}-{int(seq) + 1}"
    return last


def _follow(r: object, w: object, streams: list[str], last: dict[str, str]) -> None:
    """Tail the streams until SIGINT/SIGTERM, flushing every few seconds: a session of any length,
    whatever the streams' caps (run it beside the bot)."""
    import signal
    stop = {"now": False}

    def halt(*_: object) -> None:
        stop["now"] = True
    signal.signal(signal.SIGTERM, halt)
    signal.signal(signal.SIGINT, halt)
    flushed = time.monotonic()
    sys.stderr.write(f"{PROG} record: following {len(streams)} streams; Ctrl-C to finish\n")
    while not stop["now"]:
        res = r.xread(dict(last), count=2000, block=500)   # type: ignore[attr-defined]
        for stream_b, items in res or []:
            stream = stream_b.decode() if isinstance(stream_b, bytes) else stream_b
            for eid, fields in items:
                w.stream(stream, eid.decode(), {k.decode(): v.decode() for k, v in fields.items()})  # type: ignore[attr-defined]
                last[stream] = eid.decode()
        if time.monotonic() - flushed > 5:
            w.flush()   # type: ignore[attr-defined]
            flushed = time.monotonic()


def cmd_replay(a: object) -> int:
    from lab import recording
    rec = recording.read(Path(getattr(a, "file")))
    rep = recording.replay(rec)
    if getattr(a, "json"):
        print(orjson.dumps({"ok": rep.ok, "compared": rep.compared, "skipped": rep.skipped,
                            "first_divergence": {k: d.text() for k, d in rep.first.items()}}).decode())
    else:
        for svc, n in rep.compared.items():
            d = rep.first.get(svc)
            print(f"{svc}: {n} {'verdicts' if svc == 'guard' else 'intents'} compared: "
                  f"{'identical' if d is None else 'FIRST DIVERGENCE ' + d.text()}")
        if not rep.compared:
            print("nothing to compare: the recording holds no core taps (LIGHTER_TAP_DIR was not set)")
    return 0 if rep.ok else 1


def cmd_report(a: object) -> int:
    from analytics.session import SessionBuilder, curves, summarize
    from lab import recording
    from lab.report import write_report
    from analytics.session import NoBookData
    _need_charts()
    path = Path(getattr(a, "file"))
    rec = recording.read(path)
    settings = load_settings(getattr(a, "config", None))
    if rec.header.get("market_id") != settings.market_spec.market_id:
        raise UsageError(f"{path}: market {rec.header.get('market_id')} recorded; the config trades market "
                         f"{settings.market_spec.market_id} (pass the recording's --config)")
    b = SessionBuilder(settings.market_spec, rec.header.get("account"))
    for _, _, m in rec.entries:
        b.feed(m)
    try:
        summary = summarize(b)
    except NoBookData:
        raise UsageError(f"{path}: no book of market {settings.market_spec.market_id} in the recording") from None
    out = Path(getattr(a, "out"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    write_report(out, summary, curves(b, 1_000), f"{settings.market_spec.symbol} live session")
    print(f"{out}/summary.json, {out}/report.html")
    return 0


def cmd_paper(a: object) -> int:
    """Avellaneda & Stoikov (2008)'s table through the lab (``lab.paper``)."""
    from lab import paper
    paths = getattr(a, "paths")
    if paths < 2:
        raise UsageError(f"--paths: at least 2 (a standard deviation needs two), got {paths}")
    gammas = tuple(_gamma(g) for g in getattr(a, "gamma")) if getattr(a, "gamma") else paper.GAMMAS
    workers = getattr(a, "workers") or os.cpu_count() or 1
    if workers < 1:
        raise UsageError(f"--workers: at least 1, got {workers}")
    load_settings(getattr(a, "config", None))   # a broken config is one line, before anything runs
    t0 = time.perf_counter()
    rows = paper.as2008(paths, gammas, getattr(a, "config", None), workers)
    wall = time.perf_counter() - t0
    for r in rows:
        ok = paper.within_sampling_error(r) if (r["gamma"], r["strategy"]) in paper.PUBLISHED else {}
        pub = paper.PUBLISHED.get((r["gamma"], r["strategy"]), {})
        cells = "  ".join(f"{k} {r[k]:.3f} ({pub.get(k, float('nan')):.2f}{'' if ok.get(k, True) else ' !'})"
                          for k in ("spread", "profit_mean", "profit_std", "final_q_mean", "final_q_std"))
        print(f"gamma {r['gamma']:<5g} {r['strategy']:<9}  {cells}")
    print(f"{len(rows)} rows x {paths} paths in {wall:.0f} s; (published value; ! = outside 3 standard errors)")
    if getattr(a, "json"):
        Path(getattr(a, "json")).write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return 0


def cmd_compare(a: object) -> int:
    """Every engine against the baseline on each model (``lab.compare``)."""
    from lab import compare as cmp
    settings = _settings(a)
    models = tuple(m.strip() for m in getattr(a, "models").split(",") if m.strip())
    for m in models:
        if m != "tape":
            _model(m)
    tape = getattr(a, "tape")
    if "tape" in models and not tape:
        raise UsageError("--models tape needs --tape FILE (a lighter-bot recording or a JSONL tape)")
    if tape:
        from lab.tape import TapeError, load_tape
        try:
            load_tape(tape, settings.market_spec.market_id)
        except (OSError, TapeError) as e:
            raise UsageError(f"--tape: {e}") from None
    engines = dict(cmp.ENGINES)
    only = [e.strip() for e in getattr(a, "engines").split(",")] if getattr(a, "engines") else list(engines)
    for item in getattr(a, "engine"):
        name, colon, pairs = item.partition(":")
        if not colon or not name.strip():
            raise UsageError(f"--engine: NAME:KEY=VALUE,... , got {item!r}")
        over = dict(engines.get(name.strip(), {}))
        over.update(parse_pairs([p for p in pairs.split(",") if p], f"--engine {name}"))
        engines[name.strip()] = over
        if name.strip() not in only:
            only.append(name.strip())
    unknown = [e for e in only if e not in engines]
    if unknown:
        raise UsageError(f"--engines: unknown {', '.join(unknown)}; choose from {', '.join(engines)}")
    engines = {e: engines[e] for e in only}
    for name, over in engines.items():   # a bad key is refused before the first run
        apply_overrides(settings, over, f"--engine {name}")
    seeds, hours = getattr(a, "seeds"), getattr(a, "hours")
    if seeds < 1 or not hours > 0:
        raise UsageError(f"--seeds at least 1 and --hours positive, got {seeds} and {hours}")
    workers = getattr(a, "workers") or os.cpu_count() or 1
    t0 = time.perf_counter()
    rows = cmp.compare(settings, models, engines, seeds, hours, getattr(a, "tier"), tape, workers)
    table = cmp.markdown(rows)
    verdict = cmp.verdicts(rows)
    print(table)
    for v in verdict:
        if v["best"] is None:
            print(f"{v['model']}: no engine both trades ({cmp.MIN_FILLS_PER_HOUR}+ maker fills an hour) and has a "
                  "Sharpe on most seeds: no verdict")
            continue
        print(f"{v['model']}: best {v['best']} (Sharpe {v['sharpe']:.3f} vs baseline "
              f"{'–' if v['baseline_sharpe'] is None else format(v['baseline_sharpe'], '.3f')}; max |inventory| "
              f"{v['max_abs_inventory']:.4f} vs {v['baseline_max_abs_inventory']:.4f}): "
              f"{'higher' if v['higher_sharpe'] else 'NOT higher'} Sharpe, "
              f"{'lower' if v['lower_inventory'] else 'NOT lower'} inventory")
    print(f"{len(rows)} rows x {seeds} seeds x {hours:g} h in {time.perf_counter() - t0:.0f} s")
    if getattr(a, "json"):
        Path(getattr(a, "json")).write_bytes(orjson.dumps({"rows": rows, "verdicts": verdict},
                                                          option=orjson.OPT_INDENT_2))
    if getattr(a, "md"):
        Path(getattr(a, "md")).write_text(table)
    return 0


def _gamma(text: str) -> float:
    try:
        g = float(text)
    except ValueError:
        raise UsageError(f"--gamma: a number, got {text!r}") from None
    if not g > 0:
        raise UsageError(f"--gamma: must be positive, got {text!r}")
    return g


def _positive(text: str) -> float:
    """argparse ``type=``: a number > 0 (argparse turns the ValueError into its one-line error)."""
    v = float(text)
    if not 0 < v < float("inf"):
        raise ValueError(text)
    return v


_positive.__name__ = "positive number"


def cmd_status(a: object) -> int:
    """``core.status``: the live view."""
    import asyncio

    from core import status
    settings = _settings(a)
    try:
        return asyncio.run(status.watch(settings, host=getattr(a, "host"), offset=getattr(a, "port_offset"),
                                        redis_url=getattr(a, "redis_url"), once=getattr(a, "once"),
                                        interval_s=getattr(a, "interval"), account=getattr(a, "account")))
    except KeyboardInterrupt:
        return 0


def parser() -> Parser:
    p = Parser(prog=PROG, description="lighter-bot strategy lab: the trading cores in simulated time")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    b = sub.add_parser("backtest", help="one simulated session: summary.json, report.html, charts")
    _common(b)
    s = sub.add_parser("sweep", help="a grid of backtests x seeds, ranked")
    _common(s)
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...", help="a config key (or model/seed/hours) and its values")
    s.add_argument("--seeds", type=int, default=3, help="seeds per grid point (default 3)")
    s.add_argument("--executor", default="process", help="process (default), serial, dask-local or dask:ADDRESS")
    s.add_argument("--workers", type=int, default=None, help="pool size (default: CPU count)")
    s.add_argument("--metric", default="pnl_usd", help="the summary key to rank by (default pnl_usd)")
    r = sub.add_parser("record", help="capture a live session (streams + core taps) to a gzip'd file")
    r.add_argument("--out", required=True)
    r.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6399/0"))
    r.add_argument("--tap-dir", default=os.environ.get("LIGHTER_TAP_DIR", "var/tap"))
    r.add_argument("--account", default=None, help="account index (default $LIGHTER_ACCOUNT_INDEX, else 100)")
    r.add_argument("--market", type=int, default=None, help="market id (default the config's)")
    r.add_argument("--since-s", type=float, default=0.0, help="only the last N seconds of the streams (default all)")
    r.add_argument("--follow", action="store_true",
                   help="keep recording new entries until Ctrl-C/SIGTERM (sessions longer than the streams keep)")
    r.add_argument("--config", default=None)
    rp = sub.add_parser("replay", help="re-run the recorded core inputs; report the first divergence (exit 1)")
    rp.add_argument("file")
    rp.add_argument("--json", action="store_true")
    pp = sub.add_parser("paper", help="reproduce a paper's simulation through the lab (as2008: Avellaneda & Stoikov 2008)")
    pp.add_argument("name", choices=("as2008",), help="as2008: Quantitative Finance 8(3), 2008, tables 1-3")
    pp.add_argument("--paths", type=int, default=1000, help="paths per gamma and strategy (default 1000, as the paper)")
    pp.add_argument("--gamma", action="append", default=[], help="only this gamma (repeatable; default 0.1, 0.01, 1)")
    pp.add_argument("--json", default=None, metavar="FILE", help="write the rows as JSON")
    pp.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    pp.add_argument("--config", default=None, help="config file (default config.yaml)")
    c = sub.add_parser("compare", help="every quoting engine against the fixed-spread baseline, model by model")
    c.add_argument("--models", default=",".join(("calm", "burst", "trend", "informed", "as", "sol")),
                   help="comma list of market models; 'tape' = the --tape recording (default calm,...,sol)")
    c.add_argument("--engines", default=None, help="comma list (default baseline,adaptive,avellaneda_stoikov,glft)")
    c.add_argument("--engine", action="append", default=[], metavar="NAME:KEY=V,...",
                   help="add or change an engine's overrides (repeatable), e.g. 'as_best:maker.engine=avellaneda_stoikov,"
                        "maker.avellaneda_stoikov.gamma=30'")
    c.add_argument("--seeds", type=int, default=20, help="seeds per model and engine (default 20)")
    c.add_argument("--hours", type=float, default=1.0, help="simulated hours per run (default 1)")
    c.add_argument("--tier", choices=("premium", "standard"), default=None, help="account tier (default the profile's)")
    c.add_argument("--tape", default=None, help="recording or JSONL tape for the 'tape' model")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key for every run")
    c.add_argument("--config", default=None)
    c.add_argument("--profile", default=None)
    c.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    c.add_argument("--json", default=None, metavar="FILE")
    c.add_argument("--md", default=None, metavar="FILE", help="the table as markdown")
    st = sub.add_parser("status", help="a live terminal view of a running system (reads Redis and /health only)")
    st.add_argument("--once", action="store_true", help="print one frame and exit")
    st.add_argument("--interval", type=_positive, default=1.0, help="seconds between frames (default 1)")
    st.add_argument("--host", default="127.0.0.1", help="host of the services' health ports (default 127.0.0.1)")
    st.add_argument("--port-offset", type=int, default=0, help="as core.main --port-offset (default 0)")
    st.add_argument("--redis-url", default=None, help="default $REDIS_URL, else 6399 + the port offset")
    st.add_argument("--account", type=int, default=None, help="account index (default the feed's)")
    st.add_argument("--config", default=None)
    rr = sub.add_parser("report", help="summary.json and report.html of a recorded live session")
    rr.add_argument("file")
    rr.add_argument("--out", required=True)
    rr.add_argument("--config", default=None)
    return p


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    handler = {"backtest": cmd_backtest, "sweep": cmd_sweep, "record": cmd_record, "replay": cmd_replay,
               "report": cmd_report, "paper": cmd_paper, "status": cmd_status,
               "compare": cmd_compare}[a.cmd]
    from lab.recording import RecordingError
    try:
        code = handler(a)
    except ConfigError as e:
        code = _err(str(e))
    except (LatencyError, RecordingError, UsageError) as e:
        code = _err(str(e).splitlines()[0])
    raise SystemExit(code)


if __name__ == "__main__":
    main()
