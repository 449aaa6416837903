"""The monitoring profile's files: Prometheus config and alert rules (promtool), Alertmanager's config
(amtool), the Grafana dashboard as a model whose every query parses, and every metric they name is
one the code exports."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.config import load_settings
from tests.conftest import REPO

MON = REPO / "monitoring"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make test installs it)")


def run(*argv: str, cwd: Path = MON) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_checks_the_config_and_the_rules_pass_their_tests() -> None:
    r = run("promtool", "check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("promtool", "test", "rules", "alerts.test.yml")
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed (make test installs it)")
def test_amtool_checks_the_alertmanager_config() -> None:
    r = run("amtool", "check-config", "alertmanager.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_a_test_and_the_scrape_targets_are_the_configs_ports() -> None:
    rules = yaml.safe_load((MON / "alerts.yml").read_text())["groups"][0]["rules"]
    tested = {t["alertname"] for case in yaml.safe_load((MON / "alerts.test.yml").read_text())["tests"]
              for t in case["alert_rule_test"] if t.get("exp_alerts")}
    assert {r["alert"] for r in rules} - tested == set()
    targets = yaml.safe_load((MON / "prometheus.yml").read_text())["scrape_configs"][0]["static_configs"][0]["targets"]
    ports = load_settings().ports
    assert targets == [f"{n}:{getattr(ports, n)}" for n in ("feed", "maker", "hedger", "guard", "gateway")]
    am = yaml.safe_load((MON / "alertmanager.yml").read_text())
    assert am["receivers"][0]["webhook_configs"][0]["url"] == f"http://notifier:{ports.notifier}/alert"


class Target(BaseModel):
    model_config = ConfigDict(extra="allow")
    refId: str
    expr: str = Field(min_length=1)
    datasource: dict[str, str]


class GridPos(BaseModel):
    x: int = Field(ge=0, le=23)
    y: int = Field(ge=0)
    w: int = Field(ge=1, le=24)
    h: int = Field(ge=1)


class Panel(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    type: str
    title: str = Field(min_length=1)
    gridPos: GridPos
    datasource: dict[str, str]
    targets: list[Target] = Field(min_length=1)

    @field_validator("type")
    @classmethod
    def _known(cls, v: str) -> str:
        assert v in {"timeseries", "stat", "table", "state-timeline", "bargauge"}, v
        return v


class Dashboard(BaseModel):
    model_config = ConfigDict(extra="allow")
    uid: str
    title: str
    schemaVersion: int = Field(ge=36)
    panels: list[Panel] = Field(min_length=1)


def dashboard() -> Dashboard:
    return Dashboard.model_validate(json.loads((MON / "grafana/dashboards/lighter-bot.json").read_text()))


def test_the_dashboard_is_a_valid_model_on_the_provisioned_data_source() -> None:
    d = dashboard()
    assert len({p.id for p in d.panels}) == len(d.panels)
    ds = yaml.safe_load((MON / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert all(p.datasource["uid"] == ds["uid"] and all(t.datasource["uid"] == ds["uid"] for t in p.targets)
               for p in d.panels)
    titles = " ".join(p.title.lower() for p in d.panels)
    for what in ("spread", "inventory", "pnl", "attribution", "fills", "markout", "rejects", "latency", "risk"):
        assert what in titles, what
    for p in d.panels:
        assert p.gridPos.x + p.gridPos.w <= 24, p.title


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = [t.expr for p in dashboard().panels for t in p.targets]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e}
                                                          for i, e in enumerate(exprs)]}]}
    f = tmp_path / "dashboard-rules.yml"
    f.write_text(yaml.safe_dump(rules))
    r = run("promtool", "check", "rules", str(f))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_metric_the_rules_and_the_dashboard_name_is_exported_by_the_code() -> None:
    import importlib

    from prometheus_client import REGISTRY

    from shared import portfolio_metrics
    from shared.portfolio import Portfolio
    for m in ("feed", "maker", "hedger", "guard", "gateway", "notifier"):   # each registers its families on import
        importlib.import_module(f"services.{m}.app")
    importlib.import_module("shared.degraded")
    spec = load_settings().market_spec
    folio = Portfolio(spec)
    folio.start(0, 2 * 140_000)
    before = portfolio_metrics.COLLECTOR.source
    portfolio_metrics.bind(lambda: (folio, 2 * 140_000))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
    try:   # the series names a query can select (a counter's family "x" is only ever scraped as "x_total")
        series = {f.name + sfx for f in REGISTRY.collect() for sfx in suffixes.get(f.type, ("",))}
    finally:
        portfolio_metrics.COLLECTOR.source = before
    names = set(re.findall(r"\bmm_[a-z_]+", (MON / "alerts.yml").read_text()))
    names |= {n for p in dashboard().panels for t in p.targets for n in re.findall(r"\bmm_[a-z_]+", t.expr)}
    assert names - series == set()
