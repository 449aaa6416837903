"""``python scripts/x.py`` from a system Python: run it again under the project's ``.venv``.

Imported first by every script (before any third-party import). Where the project's packages are
importable already (the .venv, a container, a CI image) it does nothing; otherwise it re-executes
the same command line with ``.venv/bin/python``, or, with no .venv, says in one line how to make
one (exit 2) instead of a ModuleNotFoundError traceback.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
NEEDED = ("aiohttp", "pydantic", "yaml", "redis", "prometheus_client", "orjson")


def ensure() -> None:
    if all(importlib.util.find_spec(m) is not None for m in NEEDED):
        return
    if (VENV_PY.exists() and Path(sys.prefix).resolve() != VENV_PY.parent.parent.resolve()   # not this .venv yet
            and not os.environ.get("LIGHTER_BOT_REEXEC")):                                  # and never twice
        os.environ["LIGHTER_BOT_REEXEC"] = "1"
        os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])
    sys.stderr.write(f"{Path(sys.argv[0]).name}: error: the project's Python packages are not installed for "
                     f"{sys.executable}: run `make setup` in {ROOT} (it makes .venv; then python scripts/... works)\n")
    raise SystemExit(2)


ensure()
