"""Venue configuration (built by cli.py from flags and environment)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class AccountSpec:
    """An account registered at start: `--account INDEX:KEY_INDEX:PUBKEY[:COLLATERAL_USDC]`."""

    index: int
    api_key_index: int
    public_key: str  # hex, no 0x, lowercase
    collateral_usdc: str = "1000"


@dataclass(slots=True)
class VenueConfig:
    host: str = "127.0.0.1"
    port: int = 8700
    seed: int = 1
    model: str = "calm"
    model_params: dict[str, float] = field(default_factory=dict)
    tape_path: str | None = None
    tier: str = "premium"
    rate_limit: bool = True
    latency: bool = True
    admin: bool = False
    markets: tuple[int, ...] = (0, 1, 2)
    accounts: list[AccountSpec] = field(default_factory=list)
    step_ms: int = 100  # synthetic market step
    book_flush_ms: int = 50  # WS order_book batching (Lighter: 50 ms)
    ws_idle_timeout_s: float = 120.0
    ws_server_ping_s: float = 0.0  # 0 = never send {"type":"ping"}
    funding_interval_s: int = 3600
    max_batch: int = 15
    max_auth_ttl_s: int = 8 * 3600
    volume_quota_start: int = 1000
    quota_usd_per_tx: int = 5
    free_tx_every_ms: int = 15_000
    pending_per_market: int = 16
    pending_per_account: int = 500
    active_per_market: int = 1000
    active_per_account: int = 1500
    mm_account: int = 1
    taker_account: int = 2
    log_level: str = "INFO"
