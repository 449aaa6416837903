"""Plumbing shared by the operator scripts.

- Errors: bad flags or inputs print one line on stderr and exit 2 (``UsageError``, argparse);
  failures at run time (venue unreachable, HTTP error, missing tool) print one line and exit 1
  (``ScriptError``). Never a traceback, never a secret: every message passes the log redactor.
- Venue reads are plain aiohttp GETs of Lighter's documented REST endpoints (the field names of the
  lighter-sdk models), against any Lighter-compatible base URL (default ``$LIGHTER_BASE_URL`` or the
  local venue). Importing the SDK costs seconds (eth-account); only signing needs it.
- Markets are read into ``MarketInfo`` with ``Decimal`` amounts, so sizing stays exact.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import aiohttp

from shared.cli import Parser
from shared.logs import redact, register_secret

LOCAL_BASE_URL = "http://127.0.0.1:8700"
REQUEST_TIMEOUT_S = 15.0
ID_PLACEHOLDER = "<id>"
INVENTORY_PER_BALANCE = Decimal("1.15")  # guard inventory cap per USD of balance (the seed: 35 on 30)


class UsageError(Exception):
    """Bad flag or input: one line, exit status 2."""


class ScriptError(Exception):
    """Failure while running (venue, network, external tool): one line, exit status 1."""


def default_base_url() -> str:
    return (os.environ.get("LIGHTER_BASE_URL") or LOCAL_BASE_URL).rstrip("/")


def parser(prog: str, description: str) -> Parser:
    """argparse that reports a bad flag in one line and exits 2 (shared with the services)."""
    return Parser(prog=prog, description=description)


def decimal_arg(text: str) -> Decimal:
    """argparse ``type=`` for exact decimal flags (``--balance-usd 30``); rejects NaN/inf."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None
    if not d.is_finite():
        raise ValueError(text)
    return d


decimal_arg.__name__ = "decimal"  # argparse names the type in its error message


def seconds_arg(text: str) -> float:
    """argparse ``type=`` for a duration in seconds: a finite number >= 0 (``--since-s -5`` is a typo)."""
    v = float(text)
    if not (v >= 0 and v != float("inf")):
        raise ValueError(text)
    return v


seconds_arg.__name__ = "seconds (a number >= 0)"


def count_arg(text: str) -> int:
    """argparse ``type=`` for a count: a whole number >= 1."""
    v = int(text)
    if v < 1:
        raise ValueError(text)
    return v


count_arg.__name__ = "count (a whole number >= 1)"


def to_decimal(value: Any) -> Decimal | None:
    """Venue numbers arrive as strings or (SDK-typed) floats; ``str`` keeps the printed digits exact."""
    if value is None or value == "":
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def fmt_dec(d: Decimal) -> str:
    """Plain notation, never ``1E+1``; YAML and humans read it the same way."""
    return format(d, "f")


def substitute_id(path: str, market_id: int) -> Path:
    """``profiles/market_<id>.yaml`` (the runbook's literal text) -> ``profiles/market_2.yaml``."""
    return Path(path.replace(ID_PLACEHOLDER, str(market_id)))


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (``.env.local``, ``.env``); comments and blank lines ignored."""
    out: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"env file not found: {path}") from None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip().removeprefix("export ").strip()] = v.strip().strip("'\"")
    return out


def load_env(env_file: str | None) -> dict[str, str]:
    """The process environment, completed (never overridden) by ``--env-file``."""
    env = dict(os.environ)
    if env_file:
        for k, v in read_env_file(Path(env_file)).items():
            env.setdefault(k, v)
    for name in ("LIGHTER_API_PRIVATE_KEY", "WS_AUTH_TOKEN", "LIGHTER_API_BEARER"):
        register_secret(env.get(name))
    return env


def inventory_cap(balance: Decimal) -> Decimal:
    """``guard.max_inventory_notional`` for a balance, to the dollar (set_market and the ranking agree)."""
    return (balance * INVENTORY_PER_BALANCE).quantize(Decimal(1), rounding=ROUND_HALF_UP)


# --- config.yaml: the one-line profile switch ----------------------------------------------------
_PROFILE_LINE = re.compile(r"^profile:[ \t]*(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s#]*)", re.MULTILINE)


def profile_ref(config_path: Path, profile_path: Path) -> str:
    """How config.yaml should name the profile: relative to the config's folder when inside it."""
    try:
        return profile_path.resolve().relative_to(config_path.resolve().parent).as_posix()
    except ValueError:
        return str(profile_path.resolve())


def set_profile_line(text: str, ref: str) -> str:
    """Return ``text`` with the top-level ``profile:`` value replaced by ``ref``; every other byte
    (comments, other keys, line endings, a trailing comment on that line) stays as it was."""
    m = _PROFILE_LINE.search(text)
    if m is None:  # no profile line yet: add one after the leading comment block
        lines = text.splitlines(keepends=True)
        i = 0
        while i < len(lines) and (lines[i].startswith("#") or not lines[i].strip()):
            i += 1
        nl = "\r\n" if "\r\n" in text else "\n"
        return "".join(lines[:i]) + f"profile: {ref}{nl}" + "".join(lines[i:])
    return text[: m.start("value")] + ref + text[m.end("value"):]


def activate_profile(config_path: Path, profile_path: Path) -> str:
    """Point config.yaml's ``profile:`` at ``profile_path`` (in place: the file may be a bind mount)."""
    try:
        with open(config_path, newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise UsageError(f"config file not found: {config_path}") from None
    ref = profile_ref(config_path, profile_path)
    new = set_profile_line(text, ref)
    if new != text:
        try:
            with open(config_path, "w", newline="") as f:
                f.write(new)
        except OSError as e:
            raise ScriptError(f"cannot write {config_path}: {e.strerror}") from None
    return ref


# --- markets --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MarketInfo:
    """One market as the venue describes it (``/api/v1/orderBookDetails``), amounts exact."""

    market_id: int
    symbol: str
    market_type: str
    status: str
    price_decimals: int
    size_decimals: int
    min_base: Decimal
    min_quote: Decimal
    last_price: Decimal | None
    daily_quote_volume: Decimal
    daily_trades: int
    maker_fee: str
    taker_fee: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def tick(self) -> Decimal:
        return Decimal(1).scaleb(-self.price_decimals)

    @property
    def lot(self) -> Decimal:
        return Decimal(1).scaleb(-self.size_decimals)

    @property
    def active(self) -> bool:
        return self.status in ("", "active")

    def min_order_notional(self, price: Decimal) -> Decimal:
        """The smallest order the venue accepts at ``price``: both minimums must hold."""
        return max(self.min_quote, self.min_base * price)


def _small_int(v: Any) -> int:
    if isinstance(v, bool) or v is None:
        raise TypeError(v)
    n = int(v)
    if not 0 <= n <= 18:
        raise ValueError(v)
    return n


def market_from_detail(d: dict[str, Any]) -> MarketInfo:
    """Parse one ``order_book_details`` item; ``ValueError`` names what is missing or broken."""
    try:
        mid = int(d["market_id"])
        symbol = str(d["symbol"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("market without market_id/symbol") from None
    try:
        pd = _small_int(d.get("price_decimals", d.get("supported_price_decimals")))
        sd = _small_int(d.get("size_decimals", d.get("supported_size_decimals")))
    except (TypeError, ValueError):
        raise ValueError(f"market {mid} ({symbol}): no valid price/size decimals") from None
    min_base, min_quote = to_decimal(d.get("min_base_amount")), to_decimal(d.get("min_quote_amount"))
    if min_base is None or min_quote is None:
        raise ValueError(f"market {mid} ({symbol}): no min_base_amount/min_quote_amount")
    last = to_decimal(d.get("last_trade_price"))
    return MarketInfo(
        market_id=mid, symbol=symbol, market_type=str(d.get("market_type") or "perp"),
        status=str(d.get("status") or ""), price_decimals=pd, size_decimals=sd,
        min_base=min_base, min_quote=min_quote, last_price=last if last and last > 0 else None,
        daily_quote_volume=to_decimal(d.get("daily_quote_token_volume")) or Decimal(0),
        daily_trades=int(d.get("daily_trades_count") or 0),
        maker_fee=str(d.get("maker_fee") or "0"), taker_fee=str(d.get("taker_fee") or "0"), raw=dict(d),
    )


def find_symbol(markets: list[MarketInfo], symbol: str) -> MarketInfo:
    """Case-insensitive symbol lookup among perps (Lighter names spot markets ``ETH/USDC``)."""
    hits = [m for m in markets if m.symbol.upper() == symbol.upper() and m.market_type != "spot"]
    hits = hits or [m for m in markets if m.symbol.upper() == symbol.upper()]
    if not hits:
        known = ", ".join(sorted(m.symbol for m in markets)[:30]) or "none"
        raise UsageError(f"unknown symbol {symbol!r} (venue lists: {known})")
    return hits[0]


# --- venue access (REST reads) -------------------------------------------------------------------
class VenueError(Exception):
    """The venue answered, but not with ``code: 200`` (HTTP status and Lighter's message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class Rest:
    """GET ``{base_url}/api/v1/{endpoint}``; the auth token goes raw in ``authorization``, as the SDK sends it."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None = None) -> None:
        self.session, self.base_url, self.token = session, base_url.rstrip("/"), token

    async def get(self, endpoint: str, **params: Any) -> dict[str, Any]:
        query = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items() if v is not None}
        headers = {"Accept": "application/json"}
        if self.token:
            headers["authorization"] = self.token
        async with self.session.get(f"{self.base_url}/api/v1/{endpoint}", params=query, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as r:
            text = await r.text()
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if r.status != 200 or not isinstance(doc, dict) or doc.get("code", 200) != 200:
            msg = doc.get("message") if isinstance(doc, dict) else None
            raise VenueError(r.status, str(msg or text.strip()[:200] or r.reason))
        return doc


@asynccontextmanager
async def rest(base_url: str, token: str | None = None) -> AsyncIterator[Rest]:
    async with aiohttp.ClientSession() as session:
        yield Rest(session, base_url, token)


async def fetch_markets(client: Rest, market_id: int | None = None) -> list[MarketInfo]:
    """``/api/v1/orderBookDetails`` (perps); rows the venue describes badly are skipped with a warning."""
    doc = await client.get("orderBookDetails", market_id=market_id)
    out: list[MarketInfo] = []
    for item in doc.get("order_book_details") or []:
        try:
            out.append(market_from_detail(item))
        except (ValueError, TypeError, AttributeError) as e:
            sys.stderr.write(f"warning: skipping a market the venue described badly: {e}\n")
    return out


async def fetch_top_of_book(client: Rest, market_id: int) -> tuple[Decimal | None, Decimal | None]:
    """Best bid and ask from ``/api/v1/orderBookOrders`` (None for an empty side)."""
    doc = await client.get("orderBookOrders", market_id=market_id, limit=1)
    asks: list[Mapping[str, Any]] = doc.get("asks") or []
    bids: list[Mapping[str, Any]] = doc.get("bids") or []
    return (to_decimal(bids[0].get("price")) if bids else None, to_decimal(asks[0].get("price")) if asks else None)


def run(prog: str, main: Callable[[], Coroutine[Any, Any, int]], base_url: str | None = None) -> NoReturn:
    """Run ``main`` and turn every expected failure into one redacted line and an exit status."""
    code: int
    try:
        code = asyncio.run(main())
    except UsageError as e:
        sys.stderr.write(redact(f"{prog}: error: {e}") + "\n")
        code = 2
    except ScriptError as e:
        sys.stderr.write(redact(f"{prog}: {e}") + "\n")
        code = 1
    except VenueError as e:
        sys.stderr.write(redact(f"{prog}: venue answered {e}") + "\n")
        code = 1
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        where = f" {base_url}" if base_url else ""
        sys.stderr.write(redact(f"{prog}: cannot reach{where}: {type(e).__name__}: {e}".rstrip(": ")) + "\n")
        code = 1
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)
