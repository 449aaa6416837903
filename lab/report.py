"""HTML + PNG report of one backtest session of the strategy lab.

    from lab.report import write_report
    paths = write_report(Path("var/lab/run1"), summary, curves, title="maker 1h seed 7")

writes into ``out_dir``:

- ``report.html``  one self-contained file: a table of the summary's numbers, then the charts, embedded
  as base64 ``data:image/png`` URIs (no external URL, no JavaScript);
- ``equity.png``    equity over time and its attribution (spread capture, inventory PnL, −fees);
- ``inventory.png`` position over time;
- ``quotes.png``    our best bid and ask against the mid (subsampled to at most ``MAX_QUOTE_POINTS``);
- ``markouts.png``  markout in bps against the horizon, one line per fill source (maker, hedger).

Input shapes (produced by the lab's runner):

- ``summary``: flat-ish dict. Money is exact decimal *strings* ("0.012345") and is shown verbatim; known nested
  keys (``sharpe``, ``markout_bps``) get their own formatting, any other nested dict is flattened to dotted keys.
- ``curves``: ``{"equity": [[t_ms, equity, capture, inventory, fees], ...], "inventory": [[t_ms, position], ...],
  "quotes": [[t_ms, mid, bid|None, ask|None], ...], "markouts": {"maker": [[horizon_ms, bps], ...], ...}}``.
  ``fees`` is the cumulative fee *cost* (positive = paid), so the chart draws ``−fees``. Any series may be missing
  or empty: its chart is drawn with "no data". The time axis is seconds since the first point of all time series.

Rendering uses matplotlib's Agg canvas through ``matplotlib.figure.Figure`` (no pyplot, no GUI, no global figure
registry), so it works headless and in threads. PNGs carry no ``Software`` metadata, so the same input renders
to the same bytes on the same matplotlib/freetype build.
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

MAX_QUOTE_POINTS = 5000
MAX_SERIES_POINTS = 20000  # equity / inventory: beyond this, stride-subsample (keeps 1 h of per-fill data fast)
CHART_FILES = ("equity.png", "inventory.png", "quotes.png", "markouts.png")
FIGSIZE = (10.0, 3.6)
DPI = 100

# summary keys shown first (in this order); the rest follow in the dict's own order
_KEY_ORDER = (
    "model", "profile", "seed", "hours", "sim_seconds", "wall_seconds",
    "pnl_usd", "spread_capture_usd", "inventory_pnl_usd", "fees_usd", "max_drawdown_usd", "sharpe",
    "fills_maker", "fills_hedger", "max_abs_position", "two_sided_uptime",
)

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1060px;color:#222}
h1{font-size:20px;margin:0 0 12px} h2{font-size:16px;margin:22px 0 8px}
table{border-collapse:collapse;font-size:13px;margin-bottom:8px}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.key{font-family:ui-monospace,Menlo,Consolas,monospace}
.grid{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
figure{margin:12px 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#666}
.muted{color:#888;font-size:12px}
""".strip()


# --------------------------------------------------------------------------------------------------- matplotlib

def _mpl() -> Any:
    """Import matplotlib for headless, deterministic rendering (Agg; no pyplot)."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        try:
            matplotlib.use("Agg", force=False)
        except Exception:  # pyplot already bound to another backend: Figure + savefig still renders with Agg
            pass
    matplotlib.rcParams["svg.hashsalt"] = "lighter-bot-lab"
    return matplotlib


def new_figure(figsize: tuple[float, float] = FIGSIZE) -> Any:
    """A standalone Agg figure (not registered with pyplot, so nothing to close)."""
    _mpl()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Any) -> bytes:
    """Render ``fig`` to PNG bytes without time/software metadata."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def no_data(ax: Any, what: str = "no data") -> None:
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", fontsize=14, color="#999")
    ax.set_xticks([])
    ax.set_yticks([])


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# --------------------------------------------------------------------------------------------------- data helpers

def _f(v: Any) -> float:
    """float or NaN (None, "", junk) — matplotlib breaks lines at NaN."""
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _rows(series: Any, width: int) -> list[Sequence[Any]]:
    """Rows of at least ``width`` columns with a numeric time; malformed rows are dropped."""
    if not isinstance(series, (list, tuple)):
        return []
    out = []
    for r in series:
        if isinstance(r, (list, tuple)) and len(r) >= width and not math.isnan(_f(r[0])):
            out.append(r)
    return out


def subsample(rows: Sequence[Any], max_points: int) -> list[Any]:
    """Every k-th row (k = ceil(n / max_points)), always keeping the last one."""
    n = len(rows)
    if n <= max_points or max_points <= 0:
        return list(rows)
    step = math.ceil(n / max_points)
    out = list(rows[::step])
    if (n - 1) % step:  # last row not picked by the stride
        if len(out) < max_points:
            out.append(rows[-1])
        else:
            out[-1] = rows[-1]
    return out


def _column(rows: Iterable[Sequence[Any]], i: int) -> list[float]:
    return [_f(r[i]) for r in rows]


def _seconds(rows: Sequence[Sequence[Any]], t0: float) -> list[float]:
    return [(_f(r[0]) - t0) / 1000.0 for r in rows]


# --------------------------------------------------------------------------------------------------- charts

def _style(ax: Any, xlabel: str, ylabel: str) -> None:
    ax.grid(True, alpha=0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _single(title: str, rows: list[Sequence[Any]], draw: Any) -> bytes:
    """One axes titled ``title``: ``draw(ax)`` when there are rows, else "no data"."""
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    if not rows:
        no_data(ax)
    else:
        draw(ax)
    fig.tight_layout()
    return figure_png(fig)


def chart_equity(rows: list[Sequence[Any]], t0: float) -> bytes:
    def draw(ax: Any) -> None:
        t = _seconds(rows, t0)
        ax.axhline(0.0, color="#888", lw=0.8)
        ax.plot(t, _column(rows, 2), lw=1.0, color="tab:green", label="spread capture")
        ax.plot(t, _column(rows, 3), lw=1.0, color="tab:orange", label="inventory PnL")
        ax.plot(t, [-x for x in _column(rows, 4)], lw=1.0, color="tab:red", label="−fees")
        ax.plot(t, _column(rows, 1), lw=1.8, color="black", label="equity (cumulative)")
        _style(ax, "time [s]", "USD")
        ax.legend(loc="upper left", fontsize=8, ncol=4)
    return _single("Equity and attribution", rows, draw)


def chart_inventory(rows: list[Sequence[Any]], t0: float) -> bytes:
    def draw(ax: Any) -> None:
        ax.axhline(0.0, color="#888", lw=0.8)
        ax.step(_seconds(rows, t0), _column(rows, 1), where="post", lw=1.0, color="tab:blue")
        _style(ax, "time [s]", "position [base units]")
    return _single("Inventory", rows, draw)


def chart_quotes(rows: list[Sequence[Any]], t0: float) -> bytes:
    """Top: mid, our bid, our ask. Bottom: the quotes' distance from the mid in bps (readable over hours,
    where bid/ask/mid overlap at price scale). Gaps (None) break the lines."""
    n = len(rows)
    rows = subsample(rows, MAX_QUOTE_POINTS)
    fig = new_figure((FIGSIZE[0], FIGSIZE[1] * 1.6))
    title = "Quotes vs mid" + (f" (1 in {math.ceil(n / len(rows))} of {n} points)" if len(rows) < n else "")
    if not rows:
        ax = fig.add_subplot(1, 1, 1)
        ax.set_title(title)
        no_data(ax)
    else:
        ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        ax.set_title(title)
        t = _seconds(rows, t0)
        mid, bid, ask = _column(rows, 1), _column(rows, 2), _column(rows, 3)
        ax.plot(t, mid, lw=1.0, color="black", label="mid")
        ax.plot(t, bid, lw=0.8, color="tab:green", label="our bid")
        ax.plot(t, ask, lw=0.8, color="tab:red", label="our ask")
        _style(ax, "", "price")
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.legend(loc="upper left", fontsize=8, ncol=3)

        def bps(q: list[float]) -> list[float]:
            return [(x - m) / m * 1e4 if m and not math.isnan(m) else math.nan for x, m in zip(q, mid)]

        ax2.axhline(0.0, color="black", lw=0.8)
        ax2.plot(t, bps(bid), lw=0.8, color="tab:green", label="bid − mid")
        ax2.plot(t, bps(ask), lw=0.8, color="tab:red", label="ask − mid")
        _style(ax2, "time [s]", "distance from mid [bps]")
        ax2.legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    return figure_png(fig)


def chart_markouts(markouts: Any) -> bytes:
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title("Markouts")
    series = {}
    if isinstance(markouts, dict):
        for src, rows in markouts.items():
            pts = sorted((_f(r[0]), _f(r[1])) for r in _rows(rows, 2))
            pts = [(h, b) for h, b in pts if not math.isnan(b)]
            if pts:
                series[str(src)] = pts
    if not series:
        no_data(ax)
    else:
        colors = {"maker": "tab:blue", "hedger": "tab:purple"}
        hs = [h for pts in series.values() for h, _ in pts]
        ax.axhline(0.0, color="#888", lw=0.8)
        for src, pts in series.items():
            ax.plot([h for h, _ in pts], [b for _, b in pts], marker="o", ms=4, lw=1.2,
                    color=colors.get(src), label=src)
        if min(hs) > 0 and max(hs) / min(hs) >= 10:
            ax.set_xscale("log")
        ax.set_xticks(sorted(set(hs)))
        ax.set_xticklabels([_horizon_label(h) for h in sorted(set(hs))])
        ax.minorticks_off()
        _style(ax, "horizon", "markout [bps]")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def _horizon_label(ms: float) -> str:
    if ms >= 1000 and ms % 1000 == 0:
        return f"{ms / 1000:g}s"
    return f"{ms:g}ms"


# --------------------------------------------------------------------------------------------------- summary table

def _fmt_value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt_value(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt_value(x)}" for k, x in v.items())
    return str(v)  # decimal strings verbatim


def _fmt_duration(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def _fmt_sharpe(v: Any) -> str:
    if not isinstance(v, dict):
        return _fmt_value(v)
    bits = []
    if v.get("interval_s") is not None:
        bits.append(f"{_fmt_value(v.get('interval_s'))} s buckets")
    if v.get("samples") is not None:
        bits.append(f"n={_fmt_value(v.get('samples'))}")
    if v.get("reason"):
        bits.append(str(v["reason"]))
    val = v.get("value")
    head = f"{val:.3f}" if isinstance(val, (int, float)) and not isinstance(val, bool) else "n/a"
    return head + (f" ({', '.join(bits)})" if bits else "")


def _fmt_row_value(key: str, v: Any, summary: dict) -> str:
    if key == "sharpe":
        return _fmt_sharpe(v)
    if key == "two_sided_uptime" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{float(v):.1%}"
    if key in ("sim_seconds", "wall_seconds") and isinstance(v, (int, float)) and not isinstance(v, bool):
        out = f"{float(v):.6g}"
        if float(v) >= 60:
            out += f" ({_fmt_duration(float(v))})"
        if key == "wall_seconds":
            sim = _f(summary.get("sim_seconds"))
            if float(v) > 0 and not math.isnan(sim):
                out += f" — {sim / float(v):.0f}× real time"
        return out
    return _fmt_value(v)


def _flatten(prefix: str, d: dict, out: list[tuple[str, Any]]) -> None:
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            _flatten(key, v, out)
        else:
            out.append((key, v))


def summary_rows(summary: dict, headline: bool = False) -> list[tuple[str, str]]:
    """(key, formatted value): known keys first (only those when ``headline``), markout_bps excluded (own table)."""
    keys = [k for k in _KEY_ORDER if k in summary] + ([] if headline else [k for k in summary if k not in _KEY_ORDER])
    out: list[tuple[str, str]] = []
    for k in keys:
        v = summary[k]
        if k == "markout_bps":
            continue
        if isinstance(v, dict) and k not in ("sharpe", "overrides"):
            flat: list[tuple[str, Any]] = []
            _flatten(str(k), v, flat)
            out.extend((fk, _fmt_value(fv)) for fk, fv in flat)
        else:
            out.append((str(k), _fmt_row_value(k, v, summary)))
    return out


def _horizon_ms(label: Any) -> float:
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|min)?\s*", str(label))
    if not m:
        return math.inf
    x = float(m.group(1))
    return x * {"ms": 1, None: 1, "s": 1000, "m": 60000, "min": 60000}[m.group(2)]


def _markout_table(mk: Any) -> str:
    if not isinstance(mk, dict) or not mk:
        return ""
    horizons: list[str] = []
    for per in mk.values():
        if isinstance(per, dict):
            horizons += [str(h) for h in per if str(h) not in horizons]
    horizons.sort(key=_horizon_ms)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in horizons)
    body = []
    for src, per in mk.items():
        per = per if isinstance(per, dict) else {}
        cells = []
        for h in horizons:
            c = per.get(h)
            if isinstance(c, dict):
                bps = c.get("bps")
                txt = (f"{float(bps):+.2f}" if isinstance(bps, (int, float)) and not isinstance(bps, bool)
                       else "—") + f' <span class="muted">n={_fmt_value(c.get("n"))}</span>'
            else:
                txt = html.escape(_fmt_value(c))
            cells.append(f'<td class="num">{txt}</td>')
        body.append(f'<tr><td class="key">{html.escape(str(src))}</td>{"".join(cells)}</tr>')
    return (f"<h2>Markouts [bps]</h2><table><tr><th>source</th>{head}</tr>{''.join(body)}</table>")


def _is_num(s: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[0-9][0-9.,eE+\-]*%?( .*)?", s)) or s.startswith("n/a")


def _summary_table(summary: dict, headline: bool = False) -> str:
    rows = summary_rows(summary, headline)
    if not rows:
        return '<p class="muted">empty summary</p>'
    trs = "".join(
        f'<tr><td class="key">{html.escape(k)}</td><td{" class=num" if _is_num(v) else ""}>{html.escape(v)}</td></tr>'
        for k, v in rows)
    return f"<table><tr><th>key</th><th>value</th></tr>{trs}</table>"


def html_page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
            f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def img_figure(png: bytes, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{html.escape(alt)}" src="{png_data_uri(png)}">{cap}</figure>\n'


# --------------------------------------------------------------------------------------------------- entry point

def write_report(out_dir: Path, summary: dict, curves: dict, title: str) -> list[Path]:
    """Write report.html and the four chart PNGs into ``out_dir``; return their paths (HTML first)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summary if isinstance(summary, dict) else {}
    curves = curves if isinstance(curves, dict) else {}

    equity = subsample(_rows(curves.get("equity"), 5), MAX_SERIES_POINTS)
    inventory = subsample(_rows(curves.get("inventory"), 2), MAX_SERIES_POINTS)
    quotes = _rows(curves.get("quotes"), 4)
    firsts = [_f(s[0][0]) for s in (equity, inventory, quotes) if s]
    t0 = min(firsts) if firsts else 0.0

    charts = {
        "equity.png": (chart_equity(equity, t0), "Equity over time: total and its attribution"),
        "inventory.png": (chart_inventory(inventory, t0), "Position over time"),
        "quotes.png": (chart_quotes(quotes, t0), "Our best bid and ask against the mid"),
        "markouts.png": (chart_markouts(curves.get("markouts")), "Markout vs horizon per fill source"),
    }
    paths = [out_dir / "report.html"]
    figs = []
    for name in CHART_FILES:
        png, caption = charts[name]
        p = out_dir / name
        p.write_bytes(png)
        paths.append(p)
        figs.append(img_figure(png, name, caption))

    body = ('<div class="grid"><div>' + "<h2>Summary</h2>" + _summary_table(summary, headline=True) + "</div><div>"
            + _markout_table(summary.get("markout_bps")) + "</div></div>\n<h2>Charts</h2>\n" + "".join(figs)
            + "<h2>Every figure</h2>\n" + _summary_table(summary))
    paths[0].write_text(html_page(title, body), encoding="utf-8")
    return paths
