"""Config loading: seed defaults, profile precedence, and one clear error per broken input."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from shared.config import ConfigError, load_settings
from tests.conftest import REPO


def test_seed_defaults_from_repo_config() -> None:
    s = load_settings(REPO / "config.yaml", env={})
    assert s.market.market_id == 2 and s.profile.endswith("market_2.yaml")
    m = s.maker
    assert (m.size, m.size_min, m.size_max) == (Decimal("0.064"), Decimal("0.061"), Decimal("0.072"))
    assert (m.price_scale, m.size_scale, m.exchange_min_notional) == (1000, 1000, Decimal("10.5"))
    v = m.volatility
    assert v.enabled and (v.ema_halflife_s, v.pause_bps, v.resume_bps, v.inventory_ratio) == (30, 30, 18, Decimal("0.25"))
    assert m.trend.enabled and (m.trend.lookback_s, m.trend.trigger_bps) == (45, 12)
    h = s.hedger
    assert h.dry_run is False and (h.trigger_units, h.max_clip_units, h.price_offset_bps) == (Decimal("0.07"), Decimal("0.04"), 6)
    assert h.prefer_passive and (h.passive_wait_s, h.passive_offset_bps) == (Decimal("1.5"), 2)
    assert (s.guard.max_position_units, s.guard.max_inventory_notional) == (Decimal("0.2"), 35)


def test_defaults_equal_seed_without_any_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("profile: p.yaml\n")
    (tmp_path / "p.yaml").write_text("{}\n")
    s = load_settings(tmp_path / "c.yaml", env={})
    assert s.maker.size == Decimal("0.064") and s.guard.max_inventory_notional == 35


def test_profile_overrides_config_and_env_supplies_secrets(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("profile: p.yaml\nmaker:\n  spread_bps: 7\n")
    (tmp_path / "p.yaml").write_text("maker:\n  spread_bps: 9\n")
    s = load_settings(tmp_path / "c.yaml", env={"LIGHTER_API_PRIVATE_KEY": "0xabc123456789", "LIGHTER_ACCOUNT_INDEX": "7"})
    assert s.maker.spread_bps == 9
    assert s.env.account_index == 7
    assert "abc123456789" not in repr(s)


@pytest.mark.parametrize(
    ("cfg", "prof", "file", "key", "problem"),
    [
        ("profile: p.yaml\nmaker:\n  sise: 1\n", "{}", "c.yaml", "maker.sise", "unknown key"),
        ("profile: p.yaml\n", "guard:\n  max_position_units: lots\n", "p.yaml", "guard.max_position_units", "decimal"),
        ("profile: p.yaml\nmaker:\n  price_scale: 100\n", "{}", "c.yaml", "maker.price_scale", "10^market"),
        ("profile: missing.yaml\n", None, "missing.yaml", "-", "file not found"),
        ("profile: p.yaml\nmaker: [\n", "{}", "c.yaml", "line", "invalid YAML"),
    ],
)
def test_errors_name_file_key_problem(tmp_path: Path, cfg: str, prof: str | None, file: str, key: str, problem: str) -> None:
    (tmp_path / "c.yaml").write_text(cfg)
    if prof is not None:
        (tmp_path / "p.yaml").write_text(prof)
    with pytest.raises(ConfigError) as ei:
        load_settings(tmp_path / "c.yaml", env={})
    e = ei.value
    assert e.file.endswith(file) and e.key.startswith(key) and problem.lower() in e.problem.lower()


def test_bad_env_integer_is_named() -> None:
    with pytest.raises(ConfigError) as ei:
        load_settings(REPO / "config.yaml", env={"LIGHTER_ACCOUNT_INDEX": "abc"})
    assert (ei.value.file, ei.value.key) == ("environment", "LIGHTER_ACCOUNT_INDEX")


def test_service_exits_2_with_one_line_and_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("profile: p.yaml\nguard:\n  max_position_unit: 1\n")
    (tmp_path / "p.yaml").write_text("{}\n")
    r = subprocess.run([sys.executable, "-m", "services.guard", "--config", str(tmp_path / "c.yaml")],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "guard.max_position_unit" in lines[0] and "unknown key" in lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_bad_cli_flag_exits_2_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "services.guard", "--port", "notaport"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--port" in r.stderr


def test_ws_url_follows_the_rest_base_unless_given() -> None:
    mainnet = load_settings(REPO / "config.yaml", env={"LIGHTER_BASE_URL": "https://mainnet.zklighter.elliot.ai"})
    assert mainnet.env.ws_url == "wss://mainnet.zklighter.elliot.ai/stream"
    assert load_settings(REPO / "config.yaml", env={}).env.ws_url == "ws://127.0.0.1:8700/stream"
    assert load_settings(REPO / "config.yaml", env={"LIGHTER_WS_URL": "wss://x/stream"}).env.ws_url == "wss://x/stream"
