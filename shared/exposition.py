"""Many services' ``/metrics`` as one exposition, each sample labelled with its ``service``.

The aggregate port (``core.main``) serves it, so one Prometheus target (or one ``curl``) sees the
whole system. Families two services both export (``mm_position_lots``) are merged into one family,
which a plain concatenation would make invalid (a second ``# TYPE`` line for the same name).
"""
from __future__ import annotations

from typing import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample


class _Fixed(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merge(texts: dict[str, str]) -> bytes:
    """``{service: exposition text}`` -> one exposition; a text that does not parse is skipped (and named
    in ``mm_aggregate_scrape_ok``)."""
    families: dict[str, Metric] = {}
    ok = Metric("mm_aggregate_scrape_ok", "1 when the service's /metrics answered and parsed", "gauge")
    for service, text in texts.items():
        try:
            parsed = list(text_string_to_metric_families(text))
        except Exception:   # noqa: BLE001 - one broken target must not hide the others
            ok.samples.append(Sample("mm_aggregate_scrape_ok", {"service": service}, 0.0))
            continue
        ok.samples.append(Sample("mm_aggregate_scrape_ok", {"service": service}, 1.0))
        for fam in parsed:
            into = families.get(fam.name)
            if into is None:
                into = families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            for s in fam.samples:
                into.samples.append(Sample(s.name, {"service": service, **s.labels}, s.value, s.timestamp, s.exemplar))
    reg = CollectorRegistry()
    reg.register(_Fixed([*families.values(), ok]))
    return generate_latest(reg)
