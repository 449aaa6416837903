"""Every numeric config key has bounds; a value outside them is one ``file: key: problem`` line."""
from __future__ import annotations

import types
import typing
from decimal import Decimal
from pathlib import Path

import annotated_types
import pytest
from pydantic import BaseModel

from shared.config import ConfigError, Settings, load_settings
from shared.ports import env_port, parse_port
from tests.conftest import REPO


def _load(tmp_path: Path, cfg: str, prof: str = "{}\n", env: dict[str, str] | None = None) -> Settings:
    (tmp_path / "c.yaml").write_text("profile: p.yaml\n" + cfg)
    (tmp_path / "p.yaml").write_text(prof)
    return load_settings(tmp_path / "c.yaml", env=env or {})


# (config text, key named, words in the problem)
BAD = [
    # the guard's limits (bounded where they are defined)
    ("guard:\n  max_position_units: -1\n", "guard.max_position_units", "greater than 0"),
    ("guard:\n  max_inventory_notional: 0\n", "guard.max_inventory_notional", "greater than 0"),
    # maker
    ("maker:\n  spread_bps: 0\n", "maker.spread_bps", "greater than 0"),
    ("maker:\n  spread_bps: 10001\n", "maker.spread_bps", "less than or equal to 10000"),
    ("maker:\n  requote_bps: -1\n", "maker.requote_bps", "greater than 0"),
    ("maker:\n  size: 0\n", "maker.size", "greater than 0"),
    ("maker:\n  size_min: -0.1\n", "maker.size_min", "greater than 0"),
    ("maker:\n  size: 0.08\n", "maker.size", "[size_min, size_max]"),
    ("maker:\n  min_requote_interval_s: 0\n", "maker.min_requote_interval_s", "greater than 0"),
    ("maker:\n  quote_ttl_ms: 0\n", "maker.quote_ttl_ms", "greater than or equal to 100"),
    ("maker:\n  quote_ttl_ms: 1.5\n", "maker.quote_ttl_ms", "valid integer"),
    ("maker:\n  max_book_age_s: 0\n", "maker.max_book_age_s", "greater than 0"),
    ("maker:\n  exchange_min_notional: -1\n", "maker.exchange_min_notional", "greater than or equal to 0"),
    ("maker:\n  price_scale: 0\n", "maker.price_scale", "greater than or equal to 1"),
    ("maker:\n  size: .inf\n", "maker.size", "finite"),
    ("maker:\n  spread_bps: .nan\n", "maker.spread_bps", "finite"),
    ("maker:\n  volatility:\n    resume_bps: 30\n", "maker.volatility.resume_bps", "below pause_bps"),
    ("maker:\n  volatility:\n    pause_bps: 0\n", "maker.volatility.pause_bps", "greater than 0"),
    ("maker:\n  volatility:\n    inventory_ratio: 1.5\n", "maker.volatility.inventory_ratio", "less than or equal to 1"),
    ("maker:\n  volatility:\n    ema_halflife_s: 0\n", "maker.volatility.ema_halflife_s", "greater than 0"),
    ("maker:\n  volatility:\n    spread_multiplier: -1\n", "maker.volatility.spread_multiplier", "greater than or equal to 0"),
    ("maker:\n  trend:\n    widen_factor: 0.5\n", "maker.trend.widen_factor", "greater than or equal to 1"),
    ("maker:\n  trend:\n    lookback_s: 0\n", "maker.trend.lookback_s", "greater than 0"),
    ("maker:\n  trend:\n    trigger_bps: -3\n", "maker.trend.trigger_bps", "greater than 0"),
    # hedger
    ("hedger:\n  trigger_units: -5\n", "hedger.trigger_units", "greater than or equal to 0"),
    ("hedger:\n  max_clip_units: 0\n", "hedger.max_clip_units", "greater than 0"),
    ("hedger:\n  passive_wait_s: 0\n", "hedger.passive_wait_s", "greater than 0"),
    ("hedger:\n  min_interval_s: -1\n", "hedger.min_interval_s", "greater than 0"),
    ("hedger:\n  max_slippage_bps: 0\n", "hedger.max_slippage_bps", "greater than 0"),
    ("hedger:\n  price_offset_bps: -1\n", "hedger.price_offset_bps", "greater than or equal to 0"),
    ("hedger:\n  passive_offset_bps: 20000\n", "hedger.passive_offset_bps", "less than or equal to 10000"),
    ("hedger:\n  target_units: 1e12\n", "hedger.target_units", "less than or equal to"),
    # market
    ("market:\n  price_decimals: 19\n", "market.price_decimals", "less than or equal to 18"),
    ("market:\n  size_decimals: -1\n", "market.size_decimals", "greater than or equal to 0"),
    ("market:\n  min_base_amount: 0\n", "market.min_base_amount", "greater than 0"),
    ("market:\n  min_quote_amount: -10\n", "market.min_quote_amount", "greater than 0"),
    ("market:\n  market_id: -1\n", "market.market_id", "greater than or equal to 0"),
    ("market:\n  market_id: 255\n", "market.market_id", "every market"),
    ("market:\n  symbol: ''\n", "market.symbol", "at least 1 character"),
    # feed
    ("feed:\n  reconnect_min_s: 0\n", "feed.reconnect_min_s", "greater than 0"),
    ("feed:\n  reconnect_min_s: 10\n", "feed.reconnect_min_s", "must not exceed reconnect_max_s"),
    ("feed:\n  book_depth: 0\n", "feed.book_depth", "greater than or equal to 1"),
    # gateway
    ("gateway:\n  chain_id: 0\n", "gateway.chain_id", "greater than or equal to 1"),
    ("gateway:\n  dead_man_s: 100\n", "gateway.dead_man_s", "0 (off) or >= 305"),
    ("gateway:\n  reconcile_s: 0\n", "gateway.reconcile_s", "greater than 0"),
    # ports
    ("ports:\n  guard: 70000\n", "ports.guard", "less than or equal to 65535"),
    ("ports:\n  guard: 0\n", "ports.guard", "greater than or equal to 1"),
    ("ports:\n  maker: 8081\n", "ports.maker", "also ports.feed"),
    ("ports:\n  venue: 8085\n", "ports.venue", "also ports.gateway"),
    ("ports:\n  guard: true\n", "ports.guard", "must be a number, not true"),
    ("ports:\n  guard: '80a'\n", "ports.guard", "valid integer"),
    # venue
    ("venue:\n  seed: -1\n", "venue.seed", "greater than or equal to 0"),
    ("venue:\n  model: ''\n", "venue.model", "at least 1 character"),
]


@pytest.mark.parametrize(("cfg", "key", "problem"), BAD, ids=[b[1] + "=" + b[0].split(": ")[-1].strip() for b in BAD])
def test_out_of_bounds_is_one_line_naming_file_key_problem(tmp_path: Path, cfg: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, cfg)
    e = ei.value
    assert (Path(e.file).name, e.key) == ("c.yaml", key), str(e)
    assert problem.lower() in e.problem.lower(), str(e)
    assert "\n" not in str(e) and str(e) == f"{e.file}: {e.key}: {e.problem}"


def test_the_value_given_is_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, "guard:\n  max_position_units: -1\n")
    assert str(ei.value).endswith("c.yaml: guard.max_position_units: Input should be greater than 0, got -1")


def test_a_profile_value_is_blamed_on_the_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, "", "hedger:\n  trigger_units: -5\n")
    assert (Path(ei.value.file).name, ei.value.key) == ("p.yaml", "hedger.trigger_units")


@pytest.mark.parametrize(("env", "name", "problem"), [
    ({"LIGHTER_API_KEY_INDEX": "255"}, "LIGHTER_API_KEY_INDEX", "less than or equal to 254"),
    ({"LIGHTER_ACCOUNT_INDEX": "-3"}, "LIGHTER_ACCOUNT_INDEX", "greater than or equal to 0"),
])
def test_environment_numbers_are_bounded_and_named(tmp_path: Path, env: dict[str, str], name: str, problem: str) -> None:
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, "", env=env)
    assert (ei.value.file, ei.value.key) == ("environment", name) and problem in ei.value.problem


def test_a_multi_line_problem_is_folded_to_one_line() -> None:
    e = ConfigError("c.yaml", "a\nb", "first\nsecond")
    assert str(e) == "c.yaml: a b: first second"


@pytest.mark.parametrize("cfg", [
    "ports:\n  feed: 1\n  maker: 65535\n",
    "hedger:\n  trigger_units: 0\n  target_units: -0.5\n",
    "market:\n  price_decimals: 0\n  size_decimals: 18\nmaker:\n  price_scale: 1\n  size_scale: 1000000000000000000\n",
    "maker:\n  volatility:\n    pause_bps: 30\n    resume_bps: 29.99\n    inventory_ratio: 1\n    spread_multiplier: 0\n",
    "feed:\n  reconnect_min_s: 5\n  reconnect_max_s: 5\n",
    "gateway:\n  dead_man_s: 0\n",
    "venue:\n  seed: 0\n",
])
def test_values_at_the_bounds_are_accepted(tmp_path: Path, cfg: str) -> None:
    _load(tmp_path, cfg)


def test_the_defaults_and_the_repo_config_are_within_bounds(tmp_path: Path) -> None:
    Settings()
    _load(tmp_path, "")
    load_settings(REPO / "config.yaml", env={})


def _numeric(annotation: object) -> bool:
    if annotation in (int, Decimal, float):
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_numeric(a) for a in typing.get_args(annotation) if a is not type(None))
    return False


def _sections(model: type[BaseModel], prefix: str) -> typing.Iterator[tuple[str, type[BaseModel]]]:
    yield prefix, model
    for name, f in model.model_fields.items():
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            yield from _sections(f.annotation, f"{prefix}.{name}" if prefix else name)


def test_every_numeric_key_has_a_lower_and_an_upper_bound() -> None:
    missing, seen = [], 0
    for where, model in _sections(Settings, ""):
        for name, f in model.model_fields.items():
            if not _numeric(f.annotation):
                continue
            seen += 1
            kinds = {type(m) for m in f.metadata}
            low = kinds & {annotated_types.Gt, annotated_types.Ge}
            high = kinds & {annotated_types.Lt, annotated_types.Le}
            if not (low and high):
                missing.append(f"{where}.{name}" if where else name)
    assert missing == [], f"numeric keys without bounds: {missing}"
    assert seen > 60   # the walk reached the nested sections


@pytest.mark.parametrize(("text", "ok"), [("1", True), ("65535", True), (" 8084 ", True), ("0", False),
                                          ("65536", False), ("99999", False), ("-5", False), ("x", False), ("8.5", False)])
def test_port_parser(text: str, ok: bool) -> None:
    import argparse
    if ok:
        assert parse_port(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="1..65535"):
            parse_port(text)


def test_env_port() -> None:
    assert env_port({}) is None and env_port({"PORT": ""}) is None and env_port({"PORT": "8084"}) == 8084
    with pytest.raises(ValueError, match=r"^\$PORT: invalid port 99999"):
        env_port({"PORT": "99999"})
