"""``python -m core.main --max-restarts N``: the crash-loop limit chaos runs lift (default 5 in 60 s)."""
from __future__ import annotations

import asyncio
import sys
import time

import pytest

from core.main import MAX_RESTARTS, Child, Supervisor, main


def test_default_limit_is_five() -> None:
    assert MAX_RESTARTS == 5
    assert Supervisor([], 0).max_restarts == 5


@pytest.mark.parametrize("value", ["-1", "x", ""])
def test_a_bad_value_is_one_line_and_exit_2(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--max-restarts", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-restarts" in err, err


@pytest.mark.parametrize("limit", [0, 2])
async def test_the_supervisor_gives_up_after_more_than_n_restarts(limit: int, capsys: pytest.CaptureFixture[str]) -> None:
    sup = Supervisor([], 0, max_restarts=limit)
    child = Child("crashy", [sys.executable, "-c", "print('up', flush=True); raise SystemExit(1)"],
                  {"PATH": "/usr/bin:/bin"}, None)
    sup.children[child.name] = child
    t0 = time.monotonic()
    await sup.start(child)
    await asyncio.wait_for(sup.stop.wait(), 30)   # backoff 0.5 s, 1 s, ... between the restarts
    assert sup.failed
    assert len(child.restarts) == limit + 1, child.restarts
    await asyncio.sleep(0.2)   # let the pipe forward the last child's output
    out = capsys.readouterr().out
    assert out.count("crashy  | up") == limit + 1
    assert out.count("restarting in") == limit and "giving up and stopping everything" in out
    assert time.monotonic() - t0 < 20
