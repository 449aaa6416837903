"""``mm_portfolio_*``: the trader's figures on ``/metrics``, read from the guard's ``Portfolio`` at scrape time.

A collector, not gauges set on every fill: a scrape reads the one truth as it is (the guard's
portfolio, marked to its current mid), and nothing is computed when nobody scrapes. Names follow
Prometheus: base units (USD, the base asset), no market-specific unit in a name, the market as a label.
Quote uptime and markouts come from the maker's session window (``shared.session_metrics``) and are
exported there as ``mm_portfolio_quote_uptime_ratio`` and ``mm_portfolio_markout_bps``.
"""
from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.portfolio import Portfolio

MARKET = (   # view key -> (metric suffix, help), each labelled by market
    ("realised_usd", "realised_pnl_usd", "Realised PnL since the guard's baseline, average cost, before fees (USD)"),
    ("fees_usd", "fees_usd", "Fees paid since the baseline (USD; negative = rebates)"),
    ("pnl_usd", "pnl_usd", "PnL since the baseline marked to mid, after fees: realised + unrealised - fees (USD)"),
    ("unrealised_usd", "unrealised_pnl_usd", "The open position marked to mid against its average cost (USD)"),
    ("inventory_usd", "inventory_notional_usd", "The position marked to mid (USD, signed)"),
)
Source = Callable[[], tuple[Portfolio | None, int | None]]


class PortfolioCollector(Collector):
    def __init__(self) -> None:
        self.source: Source | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.source is None:
            return
        p, mid2 = self.source()
        if p is None or p.position is None:
            return
        market = str(p.spec.market_id)
        v = p.view(mid2, every_source=True)   # the figures /health shows, one conversion for both
        position = GaugeMetricFamily("mm_portfolio_position", "Position in the market's base asset (e.g. SOL), "
                                     "by the fills since the baseline", labels=["market"])
        position.add_metric([market], p.position / p.spec.size_scale)
        yield position
        for key, name, doc in MARKET:
            if key in v:   # the marked figures need a mid
                fam = GaugeMetricFamily(f"mm_portfolio_{name}", doc, labels=["market"])
                fam.add_metric([market], v[key])  # type: ignore[arg-type]
                yield fam
        fills = GaugeMetricFamily("mm_portfolio_fills", "Fills since the baseline, by source", labels=["market", "source"])
        volume = GaugeMetricFamily("mm_portfolio_volume_usd", "Notional traded since the baseline, by source (USD)",
                                   labels=["market", "source"])
        for s, t in v["by_source"].items():  # type: ignore[union-attr]
            fills.add_metric([market, s], t["fills"])
            volume.add_metric([market, s], t["volume_usd"])
        yield fills
        yield volume


COLLECTOR = PortfolioCollector()
_registered = False


def bind(source: Source) -> None:
    """Export ``source()`` = (portfolio, mid2) on every scrape (registered once per process)."""
    global _registered
    COLLECTOR.source = source
    if not _registered:
        REGISTRY.register(COLLECTOR)
        _registered = True
