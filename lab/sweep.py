"""Parameter sweeps: a grid × seeds of backtests on an executor, ranked.

The executor is a seam: anything with the ``concurrent.futures.Executor`` interface runs the
jobs. ``process`` (default) is a local process pool; ``serial`` runs in this process; ``dask:ADDR``
submits to a Dask cluster (``distributed.Client(ADDR).get_executor()``), so a user who outgrows one
machine runs the same sweep on many; ``dask-local`` starts a local Dask cluster (what the test
uses). A job is plain data (a settings dict, a ``Run``), so it pickles to any worker.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared.config import Settings

from lab.backtest import Run, backtest
from lab.overrides import apply_overrides

RUN_KEYS = {"model", "seed", "hours", "latency", "tier"}


class SerialExecutor(Executor):
    """Runs each job at submit time, in this process (debugging; one core)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        f: Future[Any] = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - the future carries it
            f.set_exception(e)
        return f


@contextmanager
def executor(spec: str, workers: int) -> Iterator[Executor]:
    if spec == "serial":
        yield SerialExecutor()
    elif spec == "process":
        with ProcessPoolExecutor(max_workers=workers) as ex:
            yield ex
    elif spec == "dask-local" or spec.startswith("dask:"):
        from distributed import Client, LocalCluster   # optional: pip install "dask[distributed]"
        if spec == "dask-local":
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                    Client(cl) as client:
                yield client.get_executor()
        else:
            with Client(spec.removeprefix("dask:")) as client:
                yield client.get_executor()
    else:
        raise ValueError(f"--executor: unknown {spec!r} (process, serial, dask-local or dask:ADDRESS)")


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def job(settings_data: dict[str, Any], run: Run, params: dict[str, str], seed: int) -> dict[str, Any]:
    """One backtest of one grid point and seed (top level: it pickles)."""
    run_over: dict[str, Any] = {k: (float(v) if k == "hours" else v) for k, v in params.items()
                                if k in RUN_KEYS and k != "seed"}   # a grid seed is the base of the point's seeds
    set_over = {k: v for k, v in params.items() if k not in RUN_KEYS}
    settings = apply_overrides(Settings.model_validate(settings_data), set_over, "--grid")
    r = replace(run, **{**run_over, "seed": seed})
    return {"params": params, "seed": seed, "summary": backtest(settings, r, charts=False, overrides=params)}


def sweep(settings: Settings, run: Run, grid: dict[str, list[str]], seeds: int, out: Path, spec: str = "process",
          workers: int | None = None, metric: str = "pnl_usd",
          progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    points = grid_points(grid)
    data = settings.model_dump(mode="python", exclude={"env"})   # secrets never leave this process
    jobs = [(p, int(p.get("seed", run.seed)) + s) for p in points for s in range(seeds)]
    rows: list[dict[str, Any]] = []
    with executor(spec, workers or max(1, (os.cpu_count() or 1))) as ex:
        futs = [ex.submit(job, data, run, p, seed) for p, seed in jobs]
        for n, f in enumerate(as_completed(futs), start=1):
            rows.append(f.result())
            if progress is not None:
                progress(n, len(futs))
    rows.sort(key=lambda r: (points.index(r["params"]), r["seed"]))
    from lab.sweep_report import write_sweep
    write_sweep(out, rows, list(grid), metric)
    return rows
