"""Configuration: ``config.yaml`` + the active market profile + environment (secrets only).

Precedence: environment > profile > config.yaml > defaults. Every key of the bot-state packet
exists with its value as the default. A broken file, key or value raises ``ConfigError`` naming
file, key and problem; service entry points turn it into one line on stderr and exit status 2.
Money-like keys are ``Decimal`` so the conversion to integer ticks/lots stays exact.
"""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from shared.markets import MarketSpec, round_up

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.yaml"


# Upper bounds for amounts where any cap is only a guard against a typo (units, USDC).
BIG = 1_000_000_000
BPS = 10_000          # 100 %
DAY_S = 86_400


def _one_line(text: str) -> str:
    return " ".join(str(text).splitlines())


class ConfigError(Exception):
    """One clear configuration problem: ``file: key: problem`` (always one line)."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = _one_line(file), _one_line(key), _one_line(problem)
        super().__init__(f"{self.file}: {self.key}: {self.problem}")


class Section(BaseModel):
    """Every numeric key of a section has bounds (``Field(gt=/ge=/le=)``); cross-field checks are
    ``_name`` model validators raising ``ValueError("key: problem")`` so ``load_settings`` names the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """YAML ``true``/``false`` where a number belongs is a mistake, not 1/0 (pydantic's lax mode would take it)."""
        if isinstance(data, dict):
            for name, value in data.items():
                f = cls.model_fields.get(name) if isinstance(name, str) else None
                if isinstance(value, bool) and f is not None and f.annotation in (int, Decimal):
                    raise ValueError(f"{name}: must be a number, not {str(value).lower()}")
        return data


class VolatilityConfig(Section):
    """Pause quoting when short-horizon volatility spikes; resume below a lower threshold (hysteresis)."""

    enabled: bool = True
    ema_halflife_s: Decimal = Field(Decimal("30"), gt=0, le=DAY_S)
    pause_bps: Decimal = Field(Decimal("30"), gt=0, le=BPS)
    resume_bps: Decimal = Field(Decimal("18"), ge=0, le=BPS)    # below pause_bps (hysteresis)
    inventory_ratio: Decimal = Field(Decimal("0.25"), ge=0, le=1)  # while paused, keep quoting the side that reduces |position| above this share of the limit
    spread_multiplier: Decimal = Field(Decimal("0.1"), ge=0, le=100)  # extra half-spread (bps) per bps of 1-minute volatility (0 = off)

    @model_validator(mode="after")
    def _hysteresis(self) -> "VolatilityConfig":
        if self.resume_bps >= self.pause_bps:
            raise ValueError(f"resume_bps: {self.resume_bps} must be below pause_bps ({self.pause_bps})")
        return self


class TrendConfig(Section):
    """When the tape trends, widen spreads and quote only the side that does not fight the move."""

    enabled: bool = True
    lookback_s: Decimal = Field(Decimal("45"), gt=0, le=DAY_S)
    trigger_bps: Decimal = Field(Decimal("12"), gt=0, le=BPS)
    release_bps: Decimal = Field(Decimal("8"), ge=0, le=BPS)    # a trend ends below this (hysteresis: < trigger_bps)
    widen_factor: Decimal = Field(Decimal("1.5"), ge=1, le=100)   # multiplies the half-spread: < 1 would narrow it
    one_sided: bool = True

    @model_validator(mode="after")
    def _hysteresis(self) -> "TrendConfig":
        if self.release_bps >= self.trigger_bps:
            raise ValueError(f"release_bps: {self.release_bps} must be below trigger_bps ({self.trigger_bps})")
        return self


class SkewConfig(Section):
    """Inventory skew, per unit (base currency) of position: its own keys, not the guard's limit."""

    price_bps_per_unit: Decimal = Field(Decimal("20"), ge=0, le=BPS)   # both quotes shift down this much per unit long
    size_per_unit: Decimal = Field(Decimal("0"), ge=0, le=1000)        # the side that adds shrinks by this share per unit


class AvellanedaStoikovConfig(Section):
    """Avellaneda & Stoikov (2008). Units: prices in quote currency (USD), time in seconds,
    inventory q in orders (position / maker.size); gamma per USD, k per USD, A per second per side."""

    gamma: Decimal = Field(Decimal("0.1"), gt=0, le=1_000_000)
    k: Decimal = Field(Decimal("0"), ge=0, le=1_000_000_000)          # 0: the live estimate (trade-depth intensity fit)
    sigma: Decimal = Field(Decimal("0"), ge=0, le=1_000_000)          # USD per sqrt(s); 0: the live estimate
    horizon_s: Decimal = Field(Decimal("0"), ge=0, le=DAY_S * 365)    # T from the first book; 0: infinite-horizon form
    q_max: Decimal = Field(Decimal("0"), ge=0, le=1_000_000)          # infinite horizon: inventory bound in orders (0: guard limit / size)
    symmetric: bool = False     # the paper's benchmark: the same spread, centred on the mid instead of the reservation price


class GlftConfig(Section):
    """Gueant, Lehalle & Fernandez-Tapia (2013), asymptotic closed form; units as avellaneda_stoikov."""

    gamma: Decimal = Field(Decimal("0.1"), gt=0, le=1_000_000)
    k: Decimal = Field(Decimal("0"), ge=0, le=1_000_000_000)          # 0: the live estimate
    A: Decimal = Field(Decimal("0"), ge=0, le=1_000_000)              # 0: the live estimate
    sigma: Decimal = Field(Decimal("0"), ge=0, le=1_000_000)          # 0: the live estimate
    xi: Decimal = Field(Decimal("0"), ge=0, le=1_000_000)             # 0: xi = gamma (the paper's case)


class CalibrationConfig(Section):
    """Live estimates from the market's own tape: sigma, the trade-depth intensity A and k, markouts."""

    window_s: Decimal = Field(Decimal("600"), ge=60, le=DAY_S)        # trades kept for the intensity fit
    min_trades: int = Field(30, ge=5, le=1_000_000)
    min_r2: Decimal = Field(Decimal("0.5"), ge=0, le=1)               # a worse fit is reported, not used
    fallback_k_per_bps: Decimal = Field(Decimal("0.5"), gt=0, le=1_000)   # k until a fit is good, per bps of mid
    fallback_A: Decimal = Field(Decimal("1"), gt=0, le=1_000_000)     # A until a fit is good, per second per side
    markout_widen: Decimal = Field(Decimal("0"), ge=0, le=100)        # extra half-spread per bps of adverse 5 s markout (0 = off)
    markout_widen_max_bps: Decimal = Field(Decimal("10"), ge=0, le=BPS)


class MakerConfig(Section):
    degraded_after_s: Decimal = Field(Decimal("30"), gt=0, le=3600)  # every quote refused this long, none resting: degraded
    size: Decimal = Field(Decimal("0.064"), gt=0, le=BIG)
    size_min: Decimal = Field(Decimal("0.061"), gt=0, le=BIG)
    size_max: Decimal = Field(Decimal("0.072"), gt=0, le=BIG)
    price_scale: int = Field(1000, ge=1, le=10**18)   # = 10^market.price_decimals
    size_scale: int = Field(1000, ge=1, le=10**18)    # = 10^market.size_decimals
    exchange_min_notional: Decimal = Field(Decimal("10.5"), ge=0, le=BIG)
    engine: Literal["fixed", "adaptive", "avellaneda_stoikov", "glft"] = "adaptive"
    spread_bps: Decimal = Field(Decimal("2"), gt=0, le=BPS)           # half-spread around mid (fixed, adaptive)
    requote_bps: Decimal = Field(Decimal("2"), gt=0, le=BPS)          # move a quote only when the target moved this much
    min_requote_interval_s: Decimal = Field(Decimal("1.0"), gt=0, le=3600)
    modify_requotes: bool = True                 # move a live quote with ModifyOrder (one tx) instead of cancel + place
    quote_ttl_ms: int = Field(5_000, ge=100, le=600_000)   # intents older than this are stale at the gateway
    max_book_age_s: Decimal = Field(Decimal("5"), gt=0, le=3600)   # pull quotes when the book is older than this
    dry_run: bool = False
    volatility: VolatilityConfig = VolatilityConfig()
    trend: TrendConfig = TrendConfig()
    skew: SkewConfig = SkewConfig()
    avellaneda_stoikov: AvellanedaStoikovConfig = AvellanedaStoikovConfig()
    glft: GlftConfig = GlftConfig()
    calibration: CalibrationConfig = CalibrationConfig()

    @model_validator(mode="after")
    def _sizes(self) -> "MakerConfig":
        if not (self.size_min <= self.size <= self.size_max):
            raise ValueError("size: must lie within [size_min, size_max]")
        return self


class NotifierConfig(Section):
    """The notifier (services/notifier): the operator's chat, through one apprise URL in $NOTIFY_URL."""

    states: bool = True                                      # every trading-state change on risk:events
    alerts: bool = True                                      # Alertmanager's webhooks on POST /alert
    min_interval_s: Decimal = Field(Decimal("10"), ge=0, le=3600)   # at most one message per this; more are batched
    max_lines: int = Field(20, ge=1, le=1000)                # lines per message; the rest are counted


class HedgerConfig(Section):
    dry_run: bool = False
    target_units: Decimal = Field(Decimal("0"), ge=-BIG, le=BIG)   # signed: a short target is negative
    trigger_units: Decimal = Field(Decimal("0.07"), ge=0, le=BIG)
    max_clip_units: Decimal = Field(Decimal("0.04"), gt=0, le=BIG)
    price_offset_bps: Decimal = Field(Decimal("6"), ge=0, le=BPS)
    max_slippage_bps: Decimal = Field(Decimal("25"), gt=0, le=BPS)   # 0 would price an IOC at mid: it never crosses
    prefer_passive: bool = True
    passive_wait_s: Decimal = Field(Decimal("1.5"), gt=0, le=3600)
    passive_offset_bps: Decimal = Field(Decimal("2"), ge=0, le=BPS)
    min_interval_s: Decimal = Field(Decimal("1.0"), gt=0, le=3600)
    # expected cost vs risk of an aggressive clip (REDUCING always hedges): take only when
    # size x mid x sigma x sqrt(risk_horizon_s) x risk_aversion >= the cost of crossing + taker fee
    taker_fee_bps: Decimal = Field(Decimal("0"), ge=0, le=BPS)      # Lighter standard tier: 0; premium: 2 (0.02%)
    risk_horizon_s: Decimal = Field(Decimal("60"), gt=0, le=86400)  # how long an unhedged excess would be held
    risk_aversion: Decimal = Field(Decimal("1.0"), ge=0, le=1000)   # 0: never take unless REDUCING


Action = Literal["REDUCING", "HALTED"]


class TriggerConfig(Section):
    """One risk trigger: what it moves the guard to, and whether it resumes on its own.

    ``auto_resume``: the trigger clears once its condition has been false for ``resume_after_s``
    (hysteresis); otherwise it stays latched until an operator ``SET risk:resume 1``.
    """

    enabled: bool = True
    action: Action = "HALTED"
    auto_resume: bool = True
    resume_after_s: Decimal = Field(Decimal("2"), ge=0, le=86400)


class InventoryTrigger(TriggerConfig):
    """Actual position beyond ``max_position_units`` / ``max_inventory_notional``: reduce only, until the
    position is back under ``resume_ratio`` x the limits."""

    action: Action = "REDUCING"
    resume_after_s: Decimal = Field(Decimal("0"), ge=0, le=86400)
    resume_ratio: Decimal = Field(Decimal("0.8"), gt=0, le=1)


class DrawdownTrigger(TriggerConfig):
    """PnL (realised + position marked to mid) fell ``max_usdc`` below its peak since the guard started."""

    action: Action = "REDUCING"
    auto_resume: bool = False
    max_usdc: Decimal = Field(Decimal("3"), gt=0, le=10_000_000)
    resume_ratio: Decimal = Field(Decimal("0.5"), ge=0, lt=1)   # auto-resume below this share of max_usdc


class StaleFeedTrigger(TriggerConfig):
    """No book update for ``after_s``: quotes priced on it are stale; everything comes off."""

    after_s: Decimal = Field(Decimal("5"), gt=0, le=3600)


class IdleAccountTrigger(TriggerConfig):
    """The venue accepted one of our places ``after_s`` ago and nothing has come on our account stream
    since (no order update, fill, position or reconcile): the account channel has gone silent while
    the venue acts on our orders, so fills may be going unseen. Silence with nothing happening is fine."""

    after_s: Decimal = Field(Decimal("10"), gt=0, le=86400)
    resume_after_s: Decimal = Field(Decimal("0"), ge=0, le=86400)


class RejectStormTrigger(TriggerConfig):
    """``count`` venue rejects within ``window_s``: something is wrong with what we send."""

    count: int = Field(10, ge=1, le=100_000)
    window_s: Decimal = Field(Decimal("60"), gt=0, le=86400)
    resume_after_s: Decimal = Field(Decimal("60"), ge=0, le=86400)


class HeartbeatTrigger(TriggerConfig):
    """A service's heartbeat, once seen, older than ``after_s``. Reducing by default: the gateway already
    pulls a dead maker's quotes, and the hedger must stay able to reduce."""

    action: Action = "REDUCING"
    after_s: Decimal = Field(Decimal("10"), gt=0, le=3600)
    services: tuple[Literal["feed", "maker", "hedger", "gateway"], ...] = ("feed", "maker", "hedger", "gateway")


class CrossedBookTrigger(TriggerConfig):
    """Best bid >= best ask in the feed's book: the local book is corrupt (or the venue is)."""


class TriggersConfig(Section):
    inventory: InventoryTrigger = InventoryTrigger()
    drawdown: DrawdownTrigger = DrawdownTrigger()
    stale_feed: StaleFeedTrigger = StaleFeedTrigger()
    idle_account: IdleAccountTrigger = IdleAccountTrigger()
    reject_storm: RejectStormTrigger = RejectStormTrigger()
    heartbeat: HeartbeatTrigger = HeartbeatTrigger()
    crossed_book: CrossedBookTrigger = CrossedBookTrigger()


class RateConfig(Section):
    """The account tier's request budget, shared by everything that talks to the venue.

    Lighter's standard tier allows 60 requests per rolling minute, reads included. Places and
    modifies may use ``requests_per_min - reserved_per_min``; the reserve is for cancels, the kill
    path, reconcile reads and dead-man re-arms, which are never held back. The maker may use all
    but ``hedge_reserved_per_min`` of the place budget, so a hedge always finds room.
    """

    requests_per_min: int = Field(60, ge=1, le=1_000_000)
    reserved_per_min: int = Field(20, ge=0, le=1_000_000)
    hedge_reserved_per_min: int = Field(8, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _shares(self) -> "RateConfig":
        if self.reserved_per_min + self.hedge_reserved_per_min >= self.requests_per_min:
            raise ValueError("reserved_per_min: reserved_per_min + hedge_reserved_per_min must be below requests_per_min")
        return self


class GuardConfig(Section):
    degraded_after_s: Decimal = Field(Decimal("30"), gt=0, le=3600)  # every place vetoed this long, none resting: degraded
    enabled: bool = True
    max_position_units: Decimal = Field(Decimal("0.2"), gt=0, le=1_000_000_000)
    max_inventory_notional: Decimal = Field(Decimal("35"), gt=0, le=1_000_000_000)
    max_price_deviation_bps: Decimal = Field(Decimal("200"), gt=0, le=5000)   # price band around mid, every source
    max_book_age_ms: int = Field(1000, ge=50, le=60_000)   # the book an intent was priced from, at most this old
    rate: RateConfig = RateConfig()
    triggers: TriggersConfig = TriggersConfig()


class MarketConfig(Section):
    """The active market; services check it against the venue's ``orderBooks`` at start."""

    market_id: int = Field(2, ge=0, le=65_535)
    symbol: str = Field("SOL", min_length=1)
    price_decimals: int = Field(3, ge=0, le=18)
    size_decimals: int = Field(3, ge=0, le=18)
    min_base_amount: Decimal = Field(Decimal("0.050"), gt=0, le=BIG)
    min_quote_amount: Decimal = Field(Decimal("10"), gt=0, le=BIG)
    reference_price: Decimal = Field(Decimal("0"), ge=0, le=BIG)   # the price the profile was sized at (0: unknown)

    @model_validator(mode="after")
    def _not_nil(self) -> "MarketConfig":
        if self.market_id == 255:
            raise ValueError("market_id: 255 is Lighter's 'every market' index, not a market")
        return self


class FeedConfig(Section):
    book_depth: int = Field(20, ge=1, le=250)
    reconnect_min_s: Decimal = Field(Decimal("0.2"), gt=0, le=600)
    reconnect_max_s: Decimal = Field(Decimal("5"), gt=0, le=3600)
    auth_token_ttl_s: int = Field(900, ge=60, le=8 * 3600)   # short: the token sits in Redis (feed-only ACL) and its AOF

    @model_validator(mode="after")
    def _backoff(self) -> "FeedConfig":
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_min_s: {self.reconnect_min_s} must not exceed reconnect_max_s ({self.reconnect_max_s})")
        return self


class GatewayConfig(Section):
    chain_id: int = Field(304, ge=1, le=2**31 - 1)
    order_expiry_s: int = Field(300, ge=300, le=30 * 86400)   # GTT expiry on our quotes (Lighter's minimum, 5 min)
    cancel_on_start: bool = False     # blanket cancel-all at start instead of reconciling with the venue
    reconcile_s: Decimal = Field(Decimal("30"), gt=0, le=3600)   # periodic REST reconcile
    dead_man_s: int = Field(310, ge=0, le=15 * 86400)   # scheduled cancel-all kept this far ahead (0 = off; >= 300)
    dead_man_rearm_s: int = Field(60, ge=5, le=3600)
    heartbeat_timeout_s: Decimal = Field(Decimal("3"), gt=0, le=600)   # maker/feed heartbeat older: cancel quotes
    unknown_wait_s: Decimal = Field(Decimal("10"), gt=0, le=600)   # nonce in doubt this long: a cancel-all takes it
    lease_ttl_s: Decimal = Field(Decimal("3"), ge=1, le=60)   # singleton lease; a dead gateway's expires this fast

    @model_validator(mode="after")
    def _dead_man_window(self) -> "GatewayConfig":
        if 0 < self.dead_man_s < 305:
            raise ValueError("dead_man_s: must be 0 (off) or >= 305 (Lighter refuses a scheduled cancel-all under 5 min ahead)")
        return self


class PortsConfig(Section):
    """Health/metrics port of each service (and the local venue's): 1..65535, all different."""

    feed: int = Field(8081, ge=1, le=65_535)
    maker: int = Field(8082, ge=1, le=65_535)
    hedger: int = Field(8083, ge=1, le=65_535)
    guard: int = Field(8084, ge=1, le=65_535)
    gateway: int = Field(8085, ge=1, le=65_535)
    notifier: int = Field(8086, ge=1, le=65_535)
    venue: int = Field(8700, ge=1, le=65_535)

    @model_validator(mode="after")
    def _distinct(self) -> "PortsConfig":
        seen: dict[int, str] = {}
        for name in type(self).model_fields:
            port = getattr(self, name)
            if port in seen:
                raise ValueError(f"{name}: {port} is also ports.{seen[port]}; every port must be different")
            seen[port] = name
        return self


class AccountConfig(Section):
    """The Lighter account's tier (fees, latencies, request budget). The packet: premium is not
    enabled and maker fees are zero, i.e. the standard tier (0 fees, 200 ms maker/cancel and
    300 ms taker latency, 60 requests a minute)."""

    tier: Literal["standard", "premium"] = "standard"


class VenueConfig(Section):
    """The embedded local venue used by ``make run`` and the tests."""

    seed: int = Field(1, ge=0, le=2**63 - 1)
    model: str = Field("sol", min_length=1)
    tier: Literal["standard", "premium", ""] = ""    # "": the account's tier (account.tier)


class Secrets(BaseModel):
    """From the environment only; ``SecretStr`` keeps them out of reprs, logs and health output."""

    model_config = ConfigDict(frozen=True)
    redis_url: str = "redis://127.0.0.1:6399/0"
    base_url: str = "http://127.0.0.1:8700"
    ws_url: str = ""
    account_index: int | None = Field(None, ge=0, le=2**63 - 1)
    api_key_index: int | None = Field(None, ge=0, le=254)   # 255 is Lighter's "no key"
    api_private_key: SecretStr | None = None
    extra_api_keys: SecretStr | None = None    # nonce lanes: "index:key,index:key"
    ws_auth_token: SecretStr | None = None
    api_bearer: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _ws_from_base(cls, data: Any) -> Any:
        """The WebSocket URL follows the REST base unless given (Lighter serves both on one host)."""
        if isinstance(data, dict) and not data.get("ws_url"):
            base = str(data.get("base_url") or cls.model_fields["base_url"].default).rstrip("/")
            data = {**data, "ws_url": base.replace("https://", "wss://").replace("http://", "ws://") + "/stream"}
        return data


class Settings(Section):
    profile: str = "profiles/market_2.yaml"
    market: MarketConfig = MarketConfig()
    account: AccountConfig = AccountConfig()
    maker: MakerConfig = MakerConfig()
    hedger: HedgerConfig = HedgerConfig()
    notifier: NotifierConfig = NotifierConfig()
    guard: GuardConfig = GuardConfig()
    feed: FeedConfig = FeedConfig()
    gateway: GatewayConfig = GatewayConfig()
    ports: PortsConfig = PortsConfig()
    venue: VenueConfig = VenueConfig()
    env: Secrets = Secrets()

    @model_validator(mode="after")
    def _scales(self) -> "Settings":
        if self.maker.price_scale != 10**self.market.price_decimals:
            raise ValueError(f"maker.price_scale: {self.maker.price_scale} does not equal 10^market.price_decimals")
        if self.maker.size_scale != 10**self.market.size_decimals:
            raise ValueError(f"maker.size_scale: {self.maker.size_scale} does not equal 10^market.size_decimals")
        return self

    @property
    def tier(self) -> str:
        """The tier the local venue gives our account: ``venue.tier`` when set, else ``account.tier``."""
        return self.venue.tier or self.account.tier

    @property
    def market_spec(self) -> MarketSpec:
        m = self.market
        return MarketSpec(
            market_id=m.market_id,
            symbol=m.symbol,
            price_decimals=m.price_decimals,
            size_decimals=m.size_decimals,
            min_base=round_up(m.min_base_amount, m.size_decimals),
            min_quote_micro=round_up(m.min_quote_amount, 6),
        )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(str(path), "-", "file not found") from None
    except OSError as e:
        raise ConfigError(str(path), "-", f"cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "-"
        raise ConfigError(str(path), where, f"invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "-", "top level must be a mapping")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _has_key(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    cur: Any = data
    for part in loc:
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def _env_int(env: dict[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError("environment", name, f"must be an integer, got {raw!r}") from None


ENV_NAMES = {"redis_url": "REDIS_URL", "base_url": "LIGHTER_BASE_URL", "ws_url": "LIGHTER_WS_URL",
             "account_index": "LIGHTER_ACCOUNT_INDEX", "api_key_index": "LIGHTER_API_KEY_INDEX",
             "api_private_key": "LIGHTER_API_PRIVATE_KEY", "ws_auth_token": "WS_AUTH_TOKEN",
             "api_bearer": "LIGHTER_API_BEARER", "extra_api_keys": "LIGHTER_EXTRA_API_KEYS"}


def secrets_from_env(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "redis_url": env.get("REDIS_URL", "redis://127.0.0.1:6399/0"),
        "base_url": env.get("LIGHTER_BASE_URL", "http://127.0.0.1:8700").rstrip("/"),
        "ws_url": env.get("LIGHTER_WS_URL", ""),
        "account_index": _env_int(env, "LIGHTER_ACCOUNT_INDEX"),
        "api_key_index": _env_int(env, "LIGHTER_API_KEY_INDEX"),
    }
    for key, name in (("api_private_key", "LIGHTER_API_PRIVATE_KEY"), ("ws_auth_token", "WS_AUTH_TOKEN"),
                      ("api_bearer", "LIGHTER_API_BEARER"), ("extra_api_keys", "LIGHTER_EXTRA_API_KEYS")):
        if env.get(name):
            out[key] = env[name]
    return out


def load_settings(config_path: str | Path | None = None, profile_path: str | Path | None = None,
                  env: dict[str, str] | None = None) -> Settings:
    """Load and validate; raise ``ConfigError`` on the first problem."""
    env = dict(os.environ) if env is None else env
    cfg_path = Path(config_path or env.get("LIGHTER_BOT_CONFIG") or DEFAULT_CONFIG)
    cfg = _read_yaml(cfg_path)
    if "env" in cfg:
        raise ConfigError(str(cfg_path), "env", "secrets and URLs come from the environment, not the file")
    prof_name = profile_path or env.get("LIGHTER_PROFILE") or cfg.get("profile") or Settings.model_fields["profile"].default
    prof_path = Path(prof_name)
    if not prof_path.is_absolute():
        prof_path = (cfg_path.parent / prof_path) if (cfg_path.parent / prof_path).exists() else REPO_ROOT / prof_path
    prof = _read_yaml(prof_path)
    for forbidden in ("env", "profile"):
        if forbidden in prof:
            raise ConfigError(str(prof_path), forbidden, "not allowed in a profile")
    data = _merge(cfg, prof)
    data["profile"] = str(prof_name)
    data["env"] = secrets_from_env(env)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(p for p in err["loc"] if p != "__root__")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "value_error" and ": " in msg:  # model-level check naming its own key
            sub, msg = msg.split(": ", 1)
            loc = (*loc, *sub.split("."))
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] != "value_error" and loc and loc[0] != "env" and isinstance(err.get("input"), (int, float, str)):
            shown = repr(err["input"])
            msg = f"{msg}, got {shown if len(shown) <= 40 else shown[:37] + '...'}"
        key = ".".join(str(p) for p in loc) or "-"
        if loc and loc[0] == "env":
            file = "environment"
            key = ENV_NAMES.get(str(loc[1]), key) if len(loc) > 1 else key
        elif loc and _has_key(prof, loc):
            file = str(prof_path)
        else:
            file = str(cfg_path)
        raise ConfigError(file, key, msg) from None
    from shared.profile_check import check, reference_mid   # it reads Settings: imported once they exist
    for f in check(settings, reference_mid(settings)):
        if f.level == "error":
            loc = tuple(f.key.split("."))
            raise ConfigError(str(prof_path) if _has_key(prof, loc) else str(cfg_path), f.key, f.text)
    return settings
