"""Operator scripts against the real local venue (``python -m services.venue``), each run as a
subprocess exactly as the runbook writes it; their output and the files they write are checked.
Fills for fetch_trades are made with the official SDK signer, as the gateway makes them."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from shared.config import load_settings
from tests.conftest import REPO, free_port

ACCOUNT, KEY = 123, 4


@dataclass(frozen=True)
class Venue:
    url: str
    private_key: str


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIGHTER_", "WS_AUTH", "VENUE_")) and k not in ("PORT", "LIGHTER_BOT_CONFIG")}
    return {**env, **extra}


def run_script(name: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=90)


def assert_one_line_error(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def venue() -> Iterator[Venue]:
    from lighter.signer_client import create_api_key

    priv, pub, err = create_api_key()
    assert not err
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "services.venue", "--host", "127.0.0.1", "--port", str(port),
                             "--rate-limit", "off", "--seed", "7", "--account", f"{ACCOUNT}:{KEY}:{pub}:1000"],
                            cwd=REPO, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "venue did not start"
        time.sleep(0.1)
    try:
        yield Venue(url, priv)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the repo's config and profiles, as an operator's checkout."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    return tmp_path


def _other_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_bytes().decode().splitlines(keepends=True) if not ln.startswith("profile:")]


# --- set_market -------------------------------------------------------------------------------------
def test_set_market_writes_a_valid_profile_and_switches_one_line(venue: Venue, workdir: Path) -> None:
    original = (workdir / "config.yaml").read_bytes()
    args = ["--balance-usd", "30", "--sizing-multiplier", "1.1", "--profile-out", "profiles/market_<id>.yaml", "--activate"]
    p = run_script("set_market.py", "--symbol", "ETH", *args, cwd=workdir, env=script_env(LIGHTER_BASE_URL=venue.url))
    assert p.returncode == 0, p.stderr
    assert "wrote profiles/market_0.yaml" in p.stdout and "activated" in p.stdout
    cfg = (workdir / "config.yaml").read_bytes()
    assert b"\nprofile: profiles/market_0.yaml\n" in cfg
    assert _other_lines(workdir / "config.yaml") == [ln for ln in original.decode().splitlines(keepends=True)
                                                    if not ln.startswith("profile:")]
    s = load_settings(workdir / "config.yaml", env={})  # what the services will load now
    assert (s.market.market_id, s.market.symbol, s.market.price_decimals, s.market.size_decimals) == (0, "ETH", 2, 4)
    assert (s.maker.price_scale, s.maker.size_scale) == (100, 10_000)
    assert s.market.min_base_amount == Decimal("0.0050") and s.guard.max_inventory_notional == 35
    price = Decimal(p.stdout.split("): price ")[1].split(",")[0])  # the price it sized at
    assert s.maker.size_min * price >= 10 and s.maker.size * price >= s.maker.exchange_min_notional
    assert s.maker.exchange_min_notional >= max(Decimal(10), Decimal("0.005") * price) * Decimal("1.1")
    assert s.market.reference_price == price and s.account.tier == "standard"
    from shared.profile_check import check, reference_mid
    assert check(s, reference_mid(s)) == []          # what it proposes is consistent at the price it sized at
    assert not [ln for ln in p.stdout.splitlines() if ln.startswith(("error:", "warning: maker.", "warning: hedger."))]

    # and back to SOL: the committed market_2 profile would change, so it is refused without --force,
    # with the before/after printed; with --force the old one is kept and the profile line follows
    committed = (workdir / "profiles" / "market_2.yaml").read_text()
    p = run_script("set_market.py", "--symbol", "sol", *args, cwd=workdir, env=script_env(LIGHTER_BASE_URL=venue.url))
    assert p.returncode == 2 and "--force" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr and "changed maker.size: " in p.stdout, p.stdout
    assert (workdir / "profiles" / "market_2.yaml").read_text() == committed
    p = run_script("set_market.py", "--symbol", "sol", *args, "--force", cwd=workdir,
                   env=script_env(LIGHTER_BASE_URL=venue.url))
    assert p.returncode == 0, p.stderr
    (backup,) = (workdir / "profiles").glob("market_2.yaml.*.bak")
    assert backup.read_text() == committed and "kept the old profile as" in p.stdout
    assert (workdir / "config.yaml").read_bytes() == original  # the repo's config already names market_2


def test_set_market_without_activate_leaves_config_alone(venue: Venue, workdir: Path) -> None:
    before = (workdir / "config.yaml").read_bytes()
    p = run_script("set_market.py", "--symbol", "BTC", "--balance-usd", "100", "--profile-out", "out/btc.yaml",
                   "--base-url", venue.url, cwd=workdir, env=script_env())
    assert p.returncode == 0, p.stderr
    assert (workdir / "config.yaml").read_bytes() == before
    assert load_settings(workdir / "config.yaml", workdir / "out" / "btc.yaml", env={}).market.symbol == "BTC"


@pytest.mark.parametrize(("args", "needle"), [
    (["--symbol", "DOGE", "--balance-usd", "30"], "unknown symbol 'DOGE'"),
    (["--symbol", "SOL", "--balance-usd", "thirty"], "--balance-usd"),
    (["--symbol", "SOL", "--balance-usd", "30", "--sizing-multiplier", "0.5"], "--sizing-multiplier"),
    (["--symbol", "BTC", "--balance-usd", "5"], "too small"),
    (["--symbol", "SOL", "--balance-usd", "30", "--config", "nope.yaml"], "config file not found"),
    (["--balance-usd", "30"], "--symbol"),
])
def test_set_market_bad_input_is_one_line_exit_2(venue: Venue, workdir: Path, args: list[str], needle: str) -> None:
    before = (workdir / "config.yaml").read_bytes()
    p = run_script("set_market.py", *args, "--activate", cwd=workdir, env=script_env(LIGHTER_BASE_URL=venue.url))
    assert_one_line_error(p, 2, needle)
    assert (workdir / "config.yaml").read_bytes() == before


def test_unreachable_venue_is_one_line_exit_1(workdir: Path) -> None:
    p = run_script("set_market.py", "--symbol", "SOL", "--balance-usd", "30", "--base-url", f"http://127.0.0.1:{free_port()}",
                   cwd=workdir, env=script_env())
    assert_one_line_error(p, 1, "cannot reach")


# --- apply_profile ----------------------------------------------------------------------------------
def test_apply_profile_saves_metadata_checks_and_activates(venue: Venue, workdir: Path) -> None:
    env = script_env(LIGHTER_BASE_URL=venue.url)
    assert run_script("set_market.py", "--symbol", "ETH", "--balance-usd", "30", cwd=workdir, env=env).returncode == 0
    p = run_script("apply_profile.py", "--profile", "profiles/market_0.yaml", "--config", "config.yaml",
                   "--metadata-out", "data/instruments/market_<id>.json", cwd=workdir, env=env)
    assert p.returncode == 0, p.stderr
    meta = json.loads((workdir / "data" / "instruments" / "market_0.json").read_text())
    assert meta["market_id"] == 0 and meta["symbol"] == "ETH"
    assert meta["order_book_detail"]["min_base_amount"] == "0.0050" and meta["order_book_detail"]["price_decimals"] == 2
    assert meta["source"].startswith(venue.url)
    assert "profile: profiles/market_0.yaml" in (workdir / "config.yaml").read_text()

    # the runbook's literal "<id>" re-applies the config's active market
    p = run_script("apply_profile.py", "--profile", "profiles/market_<id>.yaml", "--config", "config.yaml",
                   "--metadata-out", "data/instruments/market_<id>.json", "--no-activate", cwd=workdir, env=env)
    assert p.returncode == 0, p.stderr
    assert "<id> = 0" in p.stdout


def test_apply_profile_refuses_a_profile_the_venue_contradicts(venue: Venue, workdir: Path) -> None:
    before = (workdir / "config.yaml").read_bytes()
    (workdir / "profiles" / "wrong.yaml").write_text(
        "market:\n  market_id: 2\n  symbol: SOL\n  price_decimals: 3\n  size_decimals: 2\n  min_base_amount: 0.05\n"
        "  min_quote_amount: 10\nmaker:\n  size: 0.08\n  size_min: 0.07\n  size_max: 0.09\n  size_scale: 100\n")
    p = run_script("apply_profile.py", "--profile", "profiles/wrong.yaml", "--base-url", venue.url, cwd=workdir, env=script_env())
    assert_one_line_error(p, 2, "does not match the venue", "size_decimals is 2, venue has 3")
    assert (workdir / "config.yaml").read_bytes() == before
    assert (workdir / "data" / "instruments" / "market_2.json").exists()  # the venue's truth is saved for comparison


def test_apply_profile_config_errors_are_one_line_exit_2(venue: Venue, workdir: Path) -> None:
    (workdir / "profiles" / "typo.yaml").write_text("maker:\n  sise: 1\n")
    p = run_script("apply_profile.py", "--profile", "profiles/typo.yaml", "--base-url", venue.url, cwd=workdir, env=script_env())
    assert_one_line_error(p, 2, "typo.yaml", "maker.sise", "unknown key")
    p = run_script("apply_profile.py", "--profile", "profiles/none.yaml", cwd=workdir, env=script_env())
    assert_one_line_error(p, 2, "profile not found")


# --- suggest_market_targets -------------------------------------------------------------------------
def test_suggest_market_targets_ranks_and_inspects(venue: Venue, workdir: Path) -> None:
    env = script_env(LIGHTER_BASE_URL=venue.url)
    p = run_script("suggest_market_targets.py", "--top", "10", cwd=workdir, env=env)
    assert p.returncode == 0, p.stderr
    rows = [ln.split() for ln in p.stdout.splitlines()[2:]]
    assert sorted(r[1] for r in rows) == ["BTC", "ETH", "SOL"]
    p = run_script("suggest_market_targets.py", "--top", "2", "--json", cwd=workdir, env=env)
    ranked = json.loads(p.stdout)
    assert len(ranked) == 2 and all(r["spread_bps"] is None or r["spread_bps"] > 0 for r in ranked)
    assert all(len(repr(r[k]).split(".")[-1]) <= 3 for r in ranked for k in ("tick_bps", "spread_bps")
               if r[k] is not None)   # no float noise
    keys = [(not r["eligible"], -Decimal(r["daily_usd_volume"])) for r in ranked]
    assert keys == sorted(keys)
    p = run_script("suggest_market_targets.py", "--target-symbol", "sol", cwd=workdir, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("SOL (market 2, perp, active)")
    assert "python scripts/set_market.py --symbol SOL --balance-usd 30" in p.stdout
    assert_one_line_error(run_script("suggest_market_targets.py", "--target-symbol", "NOPE", cwd=workdir, env=env), 2, "NOPE")
    assert_one_line_error(run_script("suggest_market_targets.py", "--top", "x", cwd=workdir, env=env), 2, "--top")


# --- fetch_trades -----------------------------------------------------------------------------------
async def _make_fills(venue: Venue) -> str:
    """Two buys and a sell of SOL for our account, market orders over the 10 USDC minimum."""
    import lighter

    sc = lighter.SignerClient(url=venue.url, account_index=ACCOUNT, api_private_keys={KEY: venue.private_key}, chain_id=304)
    try:
        for coi, is_ask, size in ((1, False, 100), (2, False, 80), (3, True, 80)):  # worst prices 150 / 130 USD
            _, _, err = await sc.create_market_order(market_index=2, client_order_index=coi, base_amount=size,
                                                     avg_execution_price=130_000 if is_ask else 150_000, is_ask=is_ask)
            assert err is None, err
        token, err = sc.create_auth_token_with_expiry(600, api_key_index=KEY)
        assert err is None
        api = lighter.AccountApi(sc.api_client)
        for _ in range(100):  # taker latency: wait until the venue's ledger shows all three fills
            acct = (await api.account(by="index", value=str(ACCOUNT))).accounts[0]
            pos = [p for p in acct.positions or [] if p.market_id == 2]
            if pos and Decimal(pos[0].position) * pos[0].sign == Decimal("0.100"):
                return token
            await asyncio.sleep(0.1)
        raise AssertionError("fills did not land")
    finally:
        await sc.close()


async def test_fetch_trades_pnl_agrees_with_the_venue_ledger(venue: Venue, workdir: Path) -> None:
    token = await _make_fills(venue)
    args = ["--base-url", venue.url, "--account", str(ACCOUNT), "--market-id", "2", "--limit", "200", "--mark-mid", "140"]
    p = await asyncio.to_thread(run_script, "fetch_trades.py", *args, "--token", token, "--json", cwd=workdir, env=script_env())
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    pnl, fills = doc["pnl"], doc["fills"]
    assert Decimal(pnl["position"]) == Decimal("0.100")  # = the venue's own position for the account
    assert Decimal(pnl["bought"]) == Decimal("0.180") and Decimal(pnl["sold"]) == Decimal("0.080")
    assert pnl["taker_fills"] == len(fills) >= 3 and doc["mid_source"] == "--mark-mid"
    cash = sum(-(f["side"]) * Decimal(f["price"]) * Decimal(f["size"]) for f in fills)
    fees = sum(Decimal(f["fee"]) for f in fills)
    assert Decimal(pnl["cash"]) == cash and Decimal(pnl["fees"]) == fees
    assert Decimal(pnl["equity"]) == cash + Decimal("0.100") * 140 - fees
    # premium taker fee, 280 millionths, floored to the micro-USDC per fill as the venue charges it
    exact = Decimal(pnl["volume_usd"]) * Decimal("0.00028")
    assert exact - len(fills) * Decimal("0.000001") < fees <= exact
    assert token not in p.stdout and token not in p.stderr
    for k in ("avg_buy", "avg_sell", "round_trip_pnl", "inventory_pnl"):   # human digits, not Decimal's 28
        assert len(pnl[k].split(".")[-1]) <= 7, (k, pnl[k])
    assert Decimal(pnl["equity"]) == Decimal(pnl["round_trip_pnl"]) + Decimal(pnl["inventory_pnl"]) - fees

    # the chart: a PNG with PnL and inventory
    chart = workdir / "out" / "trades.png"
    p = await asyncio.to_thread(run_script, "fetch_trades.py", *args, "--token", token, "--chart", str(chart),
                                cwd=workdir, env=script_env())
    assert p.returncode == 0, p.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000

    # the table, the token from $LIGHTER_API_BEARER, the current mid from the venue, and paging
    p = await asyncio.to_thread(run_script, "fetch_trades.py", "--base-url", venue.url, "--account", str(ACCOUNT),
                                "--market-id", "2", "--limit", "2", cwd=workdir, env=script_env(LIGHTER_API_BEARER=token))
    assert p.returncode == 0, p.stderr
    assert "fills of account 123 on SOL (market 2): 2" in p.stdout and "venue mid now" in p.stdout
    assert "PnL" in p.stdout and "spread capture vs mid: n/a" in p.stdout

    p = await asyncio.to_thread(run_script, "fetch_trades.py", *args, "--token", "123:bad", cwd=workdir, env=script_env())
    assert_one_line_error(p, 1, "HTTP 401")
    p = await asyncio.to_thread(run_script, "fetch_trades.py", *args, cwd=workdir, env=script_env())
    assert_one_line_error(p, 2, "LIGHTER_API_BEARER")
    p = await asyncio.to_thread(run_script, "fetch_trades.py", *args, "--token", token, "--mark-mid", "abc", cwd=workdir,
                                env=script_env())
    assert_one_line_error(p, 2, "--mark-mid")
