"""Time at the shell edge only: cores receive ``now`` (milliseconds) as an argument."""
from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def now_ns() -> int:
    return time.time_ns()
