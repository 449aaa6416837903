"""Command line and environment -> VenueConfig, then run the server.

    python -m services.venue [--host 127.0.0.1] [--port 8700] [--seed 1] [--model calm]
        [--tier premium|standard] [--rate-limit on|off] [--latency on|off] [--admin]
        [--markets 0,1,2] [--account INDEX:KEY_INDEX:PUBKEY[:COLLATERAL_USDC]]...
        [--tape FILE.jsonl] [--param NAME=VALUE]... [--step-ms 100] [--ws-idle-timeout 120]

Bad flags (a port outside 1..65535, a non-positive interval, ...) and a port already in use print
one line and exit with status 2 (no traceback).
"""
from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .config import AccountSpec, VenueConfig
from .flow import MODEL_NAMES, Params
from shared.tiers import TIERS
from .markets import default_markets, parse_fixed


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _port(text: str) -> int:
    """1..65535 (the venue stays free of shared/, so this mirrors shared.ports.parse_port)."""
    try:
        n = int(text.strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected an integer 1..65535") from None
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {n}: must be 1..65535")
    return n


def _number(kind: type, low: float, strict: bool) -> "Callable[[str], Any]":
    """A finite int/float above ``low`` (``strict``) or at least ``low``."""
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not math.isfinite(v) or (v <= low if strict else v < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text!r}")
        return v
    return parse


def _onoff(text: str) -> bool:
    t = text.strip().lower()
    if t in ("on", "1", "true", "yes"):
        return True
    if t in ("off", "0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {text!r}")


def _account(text: str) -> AccountSpec:
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"--account wants INDEX:KEY_INDEX:PUBKEY[:COLLATERAL_USDC], got {text!r}")
    try:
        idx, key = int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"--account index and key index must be integers: {text!r}") from None
    return _account_spec(idx, key, parts[2], parts[3] if len(parts) == 4 else "1000", "--account")


def _account_spec(idx: int, key: int, pk: str, coll: str, where: str) -> AccountSpec:
    if idx <= 2:
        raise argparse.ArgumentTypeError(f"{where}: account index must be > 2 (1 and 2 are the venue's synthetic accounts)")
    if not 0 <= key <= 254:
        raise argparse.ArgumentTypeError(f"{where}: api key index must be 0..254")
    pk = pk.lower()
    pk = pk[2:] if pk.startswith("0x") else pk
    if not pk or any(c not in "0123456789abcdef" for c in pk):
        raise argparse.ArgumentTypeError(f"{where}: public key must be hex")
    try:
        parse_fixed(coll, 6)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{where}: collateral must be a decimal USDC amount") from None
    return AccountSpec(idx, key, pk, coll)


def _markets(text: str) -> tuple[int, ...]:
    known = default_markets()
    try:
        ids = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--markets wants a comma list of ids, got {text!r}") from None
    bad = [i for i in ids if i not in known]
    if not ids or bad:
        raise argparse.ArgumentTypeError(f"--markets: unknown market ids {bad} (known: {sorted(known)})")
    return ids


def _model(text: str) -> str:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in MODEL_NAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"--model: unknown {bad or text!r}; choose from {', '.join(MODEL_NAMES)} (comma list = mixed)")
    return ",".join(names)


def _param(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or name not in Params.__slots__:
        raise argparse.ArgumentTypeError(f"--param wants NAME=VALUE with NAME in {', '.join(Params.__slots__)}")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--param {name}: not a number: {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = _Parser(prog="python -m services.venue", description="Local Lighter-compatible venue.")
    p.add_argument("--host", default=env("VENUE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=_port, default=env("VENUE_PORT", "8700"), help="1..65535 (default $VENUE_PORT or 8700)")
    p.add_argument("--seed", type=int, default=env("VENUE_SEED", "1"))
    p.add_argument("--model", type=_model, default=env("VENUE_MODEL", "calm"),
                   help=f"market model: {', '.join(MODEL_NAMES)}; comma list switches between them")
    p.add_argument("--tape", default=env("VENUE_TAPE") or None, help="JSONL tape for --model replay")
    p.add_argument("--param", type=_param, action="append", default=[], help="model parameter NAME=VALUE")
    p.add_argument("--tier", choices=sorted(TIERS), default=env("VENUE_TIER", "premium"),
                   help="tier of accounts created at start (default premium)")
    p.add_argument("--rate-limit", type=_onoff, default=_onoff(env("VENUE_RATE_LIMIT", "on")),
                   help="enforce REST/tx rate limits and the volume quota (on|off, default on)")
    p.add_argument("--latency", type=_onoff, default=_onoff(env("VENUE_LATENCY", "on")),
                   help="apply the tier's maker/taker sequencer latency (on|off, default on)")
    p.add_argument("--admin", action="store_true", default=env("VENUE_ADMIN", "") == "1")
    p.add_argument("--markets", type=_markets, default=_markets(env("VENUE_MARKETS", "0,1,2")))
    p.add_argument("--account", type=_account, action="append", default=[])
    p.add_argument("--step-ms", type=_number(int, 0, True), default=100, help="synthetic market step (ms)")
    p.add_argument("--ws-idle-timeout", type=_number(float, 0, True), default=120.0, help="close WS idle for this many s")
    p.add_argument("--ws-ping", type=_number(float, 0, False), default=0.0, help="send {type:ping} every N s (0 = never)")
    p.add_argument("--funding-interval", type=_number(int, 0, True), default=3600, help="funding period in s")
    p.add_argument("--volume-quota", type=_number(int, 0, False), default=1000, help="initial premium volume quota")
    p.add_argument("--log-level", default=env("VENUE_LOG_LEVEL", "INFO"))
    return p


def config_from_args(argv: Sequence[str] | None = None) -> VenueConfig:
    try:
        a = build_parser().parse_args(argv)
    except argparse.ArgumentTypeError as e:
        raise UsageError(str(e)) from None
    if "replay" in a.model.split(",") and not a.tape:
        raise UsageError("--model replay needs --tape FILE")
    if a.tape and not os.path.isfile(a.tape):
        raise UsageError(f"--tape: no such file: {a.tape}")
    accounts = list(a.account)
    env = os.environ
    trio = [env.get(k) for k in ("LIGHTER_ACCOUNT_INDEX", "LIGHTER_API_KEY_INDEX", "LIGHTER_API_PUBLIC_KEY")]
    if all(trio):
        try:
            idx, key = int(trio[0] or ""), int(trio[1] or "")
        except ValueError:
            raise UsageError("LIGHTER_ACCOUNT_INDEX and LIGHTER_API_KEY_INDEX must be integers") from None
        try:
            accounts.insert(0, _account_spec(idx, key, trio[2] or "", env.get("VENUE_COLLATERAL_USDC", "1000"),
                                             "LIGHTER_* env"))
        except argparse.ArgumentTypeError as e:
            raise UsageError(str(e)) from None
    return VenueConfig(host=a.host, port=a.port, seed=a.seed, model=a.model, model_params=dict(a.param),
                       tape_path=a.tape, tier=a.tier, rate_limit=a.rate_limit, latency=a.latency,
                       admin=a.admin, markets=a.markets, accounts=accounts, step_ms=a.step_ms,
                       ws_idle_timeout_s=a.ws_idle_timeout, ws_server_ping_s=a.ws_ping,
                       funding_interval_s=a.funding_interval, volume_quota_start=a.volume_quota,
                       log_level=a.log_level)


async def serve(cfg: VenueConfig, ready: asyncio.Event | None = None) -> None:
    from aiohttp import web

    from .server import make_app
    app, srv = make_app(cfg)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True)
    try:
        await site.start()
    except OSError as e:   # before anything is served: the port is a usage error (exit 2), not a traceback
        await runner.cleanup()
        raise ListenError(_listen_problem(e, cfg.host, cfg.port)) from None
    logging.getLogger("venue").info(
        "venue listening on http://%s:%d (ws /stream) seed=%d model=%s tier=%s rate_limit=%s admin=%s accounts=%s",
        cfg.host, cfg.port, cfg.seed, cfg.model, cfg.tier, "on" if cfg.rate_limit else "off",
        cfg.admin, [s.index for s in cfg.accounts])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class ListenError(Exception):
    """The venue's port cannot be listened on."""


def _listen_problem(e: OSError, host: str, port: int) -> str:
    if isinstance(e, socket.gaierror):
        return f"cannot listen on host {host!r}: {e.strerror or e} (set by --host/$VENUE_HOST)"
    what = {errno.EADDRINUSE: "is already in use", errno.EACCES: "cannot be bound: permission denied",
            errno.EADDRNOTAVAIL: "cannot be bound: the address is not on this host"}.get(
                e.errno or 0, f"cannot be bound: {e.strerror or e}")
    return f"port {port} on {host} {what} (set by --port/$VENUE_PORT)"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = config_from_args(argv)
    except UsageError as e:
        print(f"venue: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, cfg.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        import uvloop  # type: ignore[import-not-found]
        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(cfg))
    except ListenError as e:
        print(f"venue: error: {e}", file=sys.stderr)
        return 2
    return 0
