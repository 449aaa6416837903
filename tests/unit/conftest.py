"""Fixtures for the pure-core unit tests."""
from __future__ import annotations

import pytest

import shared.ids


@pytest.fixture
def small_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that run a core on a small synthetic clock (t = 0, 1000, ...): the indexes it mints
    carry tiny timestamps, so let ``source_of`` accept them (tests/unit/test_ids.py covers the real bound)."""
    monkeypatch.setattr(shared.ids, "MIN_EPOCH_MS", 0)
