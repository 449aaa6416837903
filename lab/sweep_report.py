"""Report of a parameter sweep of the strategy lab (several parameter combinations × several seeds).

    from lab.sweep_report import write_sweep
    write_sweep(Path("var/lab/sweep1"), rows, grid_keys=["spread_bps", "skew"], metric="pnl_usd")

``rows``: one dict per run, ``{"params": {key: value, ...}, "seed": int, "summary": summary-dict}`` (the summary of
lab.report). Writes into ``out_dir``:

- ``sweep.csv``   one line per run: the params (grid keys first), the seed, and every summary field, nested ones
  flattened to dotted columns (``sharpe.value``, ``markout_bps.maker.100ms.bps``); values exactly as given;
- ``ranked.csv``  one line per parameter combination (the values of ``grid_keys``): mean, sample std, min, max of
  the metric across seeds, the number of runs with a metric, mean ``fills_maker`` and mean ``max_drawdown_usd``;
  ranked by mean metric, highest first (combinations without any metric value last);
- ``ranked.md``   the same as a Markdown table;
- ``heatmap.png`` mean metric per cell of the first two grid keys, annotated (other grid keys, if any, are averaged
  over); with one grid key a bar chart whose error bars are the sample std across seeds;
- ``sweep.html``  self-contained page: the ranked table and the chart inline.

``metric`` is a summary key, or a dotted path into nested ones (``"sharpe.value"``). Decimal strings are converted
with ``float()`` for ranking and plotting only.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from .report import figure_png, html_page, img_figure, new_figure, no_data

STAT_COLUMNS = ("mean", "std", "min", "max", "n", "mean_fills_maker", "mean_max_drawdown_usd")


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _get(summary: Any, path: str) -> Any:
    cur = summary
    if isinstance(cur, dict) and path in cur:
        return cur[path]
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _flatten(prefix: str, v: Any, out: dict[str, Any]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), x, out)
    else:
        out[prefix] = v


def _cell(v: Any) -> str:
    """CSV text of a value: strings verbatim, numbers via str(), None empty, lists/dicts as compact JSON."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, separators=(",", ":"), sort_keys=True, default=str)
    return str(v)


def _fmt(x: float | None, digits: int = 10) -> str:
    return "" if x is None else f"{x:.{digits}g}"


def _combo_key(params: dict, grid_keys: list[str]) -> str:
    return json.dumps([params.get(k) for k in grid_keys], default=str)


def rank_rows(rows: list[dict], grid_keys: list[str], metric: str = "pnl_usd") -> list[dict]:
    """One dict per parameter combination, best mean metric first:
    ``{"params": {grid_key: value}, "values": [metric per run], "seeds": [...], "mean", "std", "min", "max", "n",
    "mean_fills_maker", "mean_max_drawdown_usd"}`` (floats or None; ``std`` is the sample std, None for n < 2)."""
    groups: dict[str, dict] = {}
    for r in rows:
        params = r.get("params") or {}
        summary = r.get("summary") or {}
        g = groups.setdefault(_combo_key(params, grid_keys), {
            "params": {k: params.get(k) for k in grid_keys}, "values": [], "seeds": [], "_fills": [], "_dd": []})
        g["seeds"].append(r.get("seed"))
        v = _num(_get(summary, metric))
        if v is not None:
            g["values"].append(v)
        for src, dst in (("fills_maker", "_fills"), ("max_drawdown_usd", "_dd")):
            x = _num(summary.get(src)) if isinstance(summary, dict) else None
            if x is not None:
                g[dst].append(x)
    out = []
    for g in groups.values():
        vals = g["values"]
        g["n"] = len(vals)
        g["mean"] = statistics.fmean(vals) if vals else None
        g["std"] = statistics.stdev(vals) if len(vals) >= 2 else None
        g["min"] = min(vals) if vals else None
        g["max"] = max(vals) if vals else None
        fills, dd = g.pop("_fills"), g.pop("_dd")
        g["mean_fills_maker"] = statistics.fmean(fills) if fills else None
        g["mean_max_drawdown_usd"] = statistics.fmean(dd) if dd else None
        out.append(g)
    # stable: ties keep first-appearance order; combinations without a metric value go last
    out.sort(key=lambda g: (g["mean"] is None, -(g["mean"] or 0.0)))
    return out


# --------------------------------------------------------------------------------------------------- files

def _write_sweep_csv(path: Path, rows: list[dict], grid_keys: list[str]) -> None:
    param_cols = list(grid_keys)
    summ_cols: list[str] = []
    flat_rows = []
    for r in rows:
        params = r.get("params") or {}
        param_cols += [k for k in params if k not in param_cols]
        flat: dict[str, Any] = {}
        _flatten("", r.get("summary") or {}, flat)
        summ_cols += [k for k in flat if k not in summ_cols]
        flat_rows.append((params, r.get("seed"), flat))
    # a summary column that clashes with a param/seed name gets a prefix
    taken = set(param_cols) | {"seed"}
    out_summ = [(c, f"summary.{c}" if c in taken else c) for c in summ_cols]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(param_cols + ["seed"] + [name for _, name in out_summ])
        for params, seed, flat in flat_rows:
            w.writerow([_cell(params.get(k)) for k in param_cols] + [_cell(seed)]
                       + [_cell(flat.get(c)) for c, _ in out_summ])


def _ranked_table(ranked: list[dict], grid_keys: list[str], digits: int) -> tuple[list[str], list[list[str]]]:
    head = ["rank"] + list(grid_keys) + list(STAT_COLUMNS)
    body = []
    for i, g in enumerate(ranked, 1):
        body.append([str(i)] + [_cell(g["params"].get(k)) for k in grid_keys]
                    + [_fmt(g[c], digits) if c != "n" else str(g["n"]) for c in STAT_COLUMNS])
    return head, body


def _write_ranked_csv(path: Path, ranked: list[dict], grid_keys: list[str]) -> None:
    head, body = _ranked_table(ranked, grid_keys, 10)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(head)
        w.writerows(body)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _ranked_md(ranked: list[dict], grid_keys: list[str], metric: str, n_runs: int) -> str:
    head, body = _ranked_table(ranked, grid_keys, 6)
    lines = [f"# Sweep ranked by mean `{metric}` ({len(ranked)} combinations, {n_runs} runs)", "",
             "std is the sample standard deviation across seeds (empty for a single seed).", "",
             "| " + " | ".join(_md_escape(h) for h in head) + " |",
             "|" + "|".join("---:" if h not in grid_keys else "---" for h in head) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _sort_values(vals: list[Any]) -> list[Any]:
    if all(_num(v) is not None for v in vals):
        return sorted(vals, key=lambda v: _num(v))
    return vals  # first-appearance order


def _chart(rows: list[dict], ranked: list[dict], grid_keys: list[str], metric: str) -> bytes:
    if len(grid_keys) >= 2:
        return _heatmap(rows, grid_keys, metric)
    fig = new_figure((max(5.0, min(14.0, 1.0 + 0.7 * len(ranked))), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    shown = [g for g in ranked if g["mean"] is not None]
    if not shown:
        no_data(ax)
    else:
        if grid_keys:
            order = _sort_values([g["params"].get(grid_keys[0]) for g in shown])
            by = {_cell(g["params"].get(grid_keys[0])): g for g in shown}
            shown = [by[_cell(v)] for v in order]
            labels = [_cell(g["params"].get(grid_keys[0])) for g in shown]
            ax.set_xlabel(grid_keys[0])
        else:
            labels = ["all runs"]
        means = [g["mean"] for g in shown]
        errs = [g["std"] or 0.0 for g in shown]
        x = list(range(len(shown)))
        colors = ["tab:green" if m >= 0 else "tab:red" for m in means]
        ax.bar(x, means, yerr=errs, capsize=4, color=colors, alpha=0.8, ecolor="black")
        ax.axhline(0.0, color="#888", lw=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30 if len(labels) > 8 else 0)
        for xi, g, e in zip(x, shown, errs):
            up = g["mean"] >= 0  # label beyond the error bar's end, away from zero
            ax.annotate(f"{g['mean']:.4g}\nn={g['n']}", (xi, g["mean"] + (e if up else -e)), ha="center",
                        va="bottom" if up else "top", fontsize=8,
                        xytext=(0, 4 if up else -4), textcoords="offset points")
        ax.margins(y=0.2)
        ax.set_ylabel(f"mean {metric}")
        ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(f"mean {metric} ± sample std across seeds", fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def _heatmap(rows: list[dict], grid_keys: list[str], metric: str) -> bytes:
    ky, kx = grid_keys[0], grid_keys[1]
    cells: dict[tuple[str, str], list[float]] = {}
    ys: list[Any] = []
    xs: list[Any] = []
    for r in rows:
        p = r.get("params") or {}
        y, x = p.get(ky), p.get(kx)
        if _cell(y) not in map(_cell, ys):
            ys.append(y)
        if _cell(x) not in map(_cell, xs):
            xs.append(x)
        v = _num(_get(r.get("summary") or {}, metric))
        if v is not None:
            cells.setdefault((_cell(y), _cell(x)), []).append(v)
    ys, xs = _sort_values(ys), _sort_values(xs)
    grid = [[(statistics.fmean(cells[(_cell(y), _cell(x))]) if (_cell(y), _cell(x)) in cells else math.nan)
             for x in xs] for y in ys]
    fig = new_figure((max(5.0, min(14.0, 2.5 + 1.1 * len(xs))), max(3.5, min(12.0, 1.5 + 0.6 * len(ys)))))
    ax = fig.add_subplot(1, 1, 1)
    finite = [v for row in grid for v in row if not math.isnan(v)]
    extra = f" (averaged over {', '.join(grid_keys[2:])})" if len(grid_keys) > 2 else ""
    ax.set_title(f"mean {metric} by {ky} × {kx}{extra}", fontsize=10)
    if not finite:
        no_data(ax)
    else:
        import numpy as np
        from matplotlib.colors import Normalize, TwoSlopeNorm

        lo, hi = min(finite), max(finite)
        if lo < 0 < hi:
            norm: Any = TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi)
        else:
            norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-12)
        data = np.ma.masked_invalid(np.array(grid, dtype=float))
        im = ax.imshow(data, cmap="RdYlGn", norm=norm, aspect="auto", origin="lower")
        fig.colorbar(im, ax=ax, label=metric)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if math.isnan(v):
                    ax.text(j, i, "—", ha="center", va="center", fontsize=9, color="#666")
                else:
                    n = len(cells[(_cell(ys[i]), _cell(xs[j]))])
                    rgba = im.cmap(norm(v))
                    dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
                    ax.text(j, i, f"{v:.4g}\nn={n}", ha="center", va="center", fontsize=8,
                            color="white" if dark else "black")
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([_cell(x) for x in xs])
        ax.set_yticks(range(len(ys)))
        ax.set_yticklabels([_cell(y) for y in ys])
        ax.set_xlabel(kx)
        ax.set_ylabel(ky)
    fig.tight_layout()
    return figure_png(fig)


def _ranked_html(ranked: list[dict], grid_keys: list[str]) -> str:
    head, body = _ranked_table(ranked, grid_keys, 6)
    ths = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = []
    for row in body:
        tds = "".join(f'<td{"" if h in grid_keys else " class=num"}>{html.escape(c)}</td>' for h, c in zip(head, row))
        trs.append(f"<tr>{tds}</tr>")
    return f"<table><tr>{ths}</tr>{''.join(trs)}</table>"


def write_sweep(out_dir: Path, rows: list[dict], grid_keys: list[str], metric: str = "pnl_usd") -> list[Path]:
    """Write sweep.csv, ranked.csv, ranked.md, heatmap.png and sweep.html into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in (rows or []) if isinstance(r, dict)]
    grid_keys = list(grid_keys or [])
    ranked = rank_rows(rows, grid_keys, metric)

    p_sweep, p_rcsv, p_md = out_dir / "sweep.csv", out_dir / "ranked.csv", out_dir / "ranked.md"
    p_png, p_html = out_dir / "heatmap.png", out_dir / "sweep.html"
    _write_sweep_csv(p_sweep, rows, grid_keys)
    _write_ranked_csv(p_rcsv, ranked, grid_keys)
    p_md.write_text(_ranked_md(ranked, grid_keys, metric, len(rows)), encoding="utf-8")
    png = _chart(rows, ranked, grid_keys, metric)
    p_png.write_bytes(png)

    title = f"Sweep: {metric} over {' × '.join(grid_keys) or 'runs'}"
    seeds = [_cell(x) for x in _sort_values(list(dict.fromkeys(r.get("seed") for r in rows)))]
    body = io.StringIO()
    body.write(f'<p class="muted">{len(rows)} runs, {len(ranked)} parameter combinations, seeds: '
               f'{html.escape(", ".join(seeds) or "—")}. Ranked by mean {html.escape(metric)}, highest first; '
               f"std is the sample standard deviation across seeds.</p>\n")
    body.write("<h2>Ranking</h2>\n" + _ranked_html(ranked, grid_keys) + "\n")
    body.write("<h2>" + ("Heatmap" if len(grid_keys) >= 2 else "Mean per combination") + "</h2>\n")
    body.write(img_figure(png, "heatmap.png"))
    p_html.write_text(html_page(title, body.getvalue()), encoding="utf-8")
    return [p_sweep, p_rcsv, p_md, p_png, p_html]
