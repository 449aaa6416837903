"""A service's transitions into ``degraded``, counted: ``mm_degraded_total{service,reason}``, and the
state itself, ``mm_service_degraded{service}`` (what the alert rules read; the health check polls it).

Each reason is a short fixed code (the label stays low-cardinality; the text goes to ``/health``).
A reason counts once per episode: when it appears, not while it lasts.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge

from shared.metrics import metric

DEGRADED = metric(Counter, "mm_degraded_total", "Transitions of a service into the degraded state, by reason",
                  ["service", "reason"])
DEGRADED_NOW = metric(Gauge, "mm_service_degraded", "1 while the service is degraded (as of its last /health answer)", ["service"])


class DegradedWatch:
    def __init__(self, service: str) -> None:
        self.service = service
        self.codes: frozenset[str] = frozenset()

    def observe(self, problems: dict[str, str]) -> None:
        """``problems``: reason code -> text, as found now (empty: all is well)."""
        for code in problems.keys() - self.codes:
            DEGRADED.labels(self.service, code).inc()
        self.codes = frozenset(problems)
        DEGRADED_NOW.labels(self.service).set(1 if problems else 0)
