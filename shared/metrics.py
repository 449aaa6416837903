"""Prometheus helpers shared by the services (names prefixed ``mm_``).

``metric`` gets or creates a collector: each service is its own process in production, but
tests import several shells into one process, and two services may export the same family
(``mm_position_lots``). Registering it twice would raise; looking it up first does not.
"""
from __future__ import annotations

from typing import TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)


def metric(kind: type[M], name: str, doc: str, labels: list[str]) -> M:
    key = name.removesuffix("_total") if kind is Counter else name
    existing = REGISTRY._names_to_collectors.get(key)  # noqa: SLF001 - prometheus has no public lookup
    if existing is not None:
        if not isinstance(existing, kind) or tuple(existing._labelnames) != tuple(labels):  # noqa: SLF001
            raise TypeError(f"metric {name} already registered with another type or labels")
        return existing
    return kind(name, doc, labels)


def position_lots() -> Gauge:
    """``mm_position_lots{market}``: our signed position in lots as this service sees it."""
    return metric(Gauge, "mm_position_lots", "Signed position in lots as this service sees it", ["market"])
