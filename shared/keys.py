"""Every Redis key, stream and consumer-group name, in one place (operators rely on these names).

Inspect with ``redis-cli -p 6399``: ``XRANGE orders:events - + COUNT 5``, ``GET risk:kill``, ...
"""
from __future__ import annotations

# --- market data (plain XREAD, MAXLEN ~ trimmed) -------------------------------------------------
def md_book(market_id: int) -> str:
    """Top-of-book snapshots (integer ticks/lots) published by feed after every venue frame."""
    return f"md:book:{market_id}"


def md_trade(market_id: int) -> str:
    """Public trades on the venue."""
    return f"md:trade:{market_id}"


def book_latest(market_id: int) -> str:
    """Latest-value key mirroring the newest ``md:book`` entry, for start-up and resync."""
    return f"book:{market_id}"


# --- account (consumer group per consuming service) -----------------------------------------------
def acct(account_index: int) -> str:
    """Our account's orders, fills and positions, normalised by feed from the private WS channels."""
    return f"acct:{account_index}"


# --- order flow -----------------------------------------------------------------------------------
ORDERS_INTENTS = "orders:intents"      # maker/hedger/operator -> guard (group "guard")
ORDERS_APPROVED = "orders:approved"    # guard -> gateway (group "gateway")
ORDERS_EVENTS = "orders:events"        # gateway acks/rejects/fills, guard vetoes

# --- risk -----------------------------------------------------------------------------------------
RISK_KILL = "risk:kill"      # operator's one-key switch: any value = HALTED, the value is the reason; DEL resumes
RISK_REDUCE = "risk:reduce"  # operator: any value = REDUCING (only position-shrinking orders), the value is the reason
RISK_RESUME = "risk:resume"  # operator: SET it to clear latched triggers (e.g. drawdown); the guard deletes it
RISK_STATE = "risk:state"    # guard: ACTIVE | REDUCING | HALTED (string, PX RISK_STATE_TTL_MS); missing = HALTED
RISK_STATE_TTL_MS = 10_000   # the guard re-asserts it every second: a dead guard's state halts everyone within 10 s
RISK_EVENTS = "risk:events"  # guard: every trading-state change (RiskState messages), MAXLEN ~ RISK_EVENTS_MAXLEN
RISK_EVENTS_MAXLEN = 10_000

# --- dead letters and health ----------------------------------------------------------------------
def dead_letter(service: str) -> str:
    """Malformed messages a service could not handle: kept for inspection, never retried."""
    return f"dlq:{service}"


def heartbeat(service: str) -> str:
    """Per-service heartbeat with a TTL (``PX``): absent means the service is down."""
    return f"svc:{service}:heartbeat"


def gateway_journal(intent_id: str) -> str:
    """The gateway's write-ahead record of one intent (hash: state, coi, action, lane, nonce, tx_hash,
    expired_at, outcome, code, message), written before any network call and read on intake, so a
    redelivered or replayed intent is never signed twice. Expires after ``JOURNAL_TTL_S``."""
    return f"gw:intent:{intent_id}"


JOURNAL_TTL_S = 24 * 3600
GATEWAY_LEASE = "gw:lease"    # string "<instance>:<epoch>" with a PX expiry: only its holder sends
GATEWAY_EPOCH = "gw:epoch"    # counter: every lease acquisition takes the next epoch (fencing token)
RECONCILE_REQUEST = "gw:reconcile_request"  # any service SETs it (value = why): the gateway reconciles soon


AUTH_WS_TOKEN = "auth:ws_token"  # short-lived read token the gateway (sole signer holder) mints for feed; PX-expiring key, never in a stream or log

GATEWAY_OPEN_ORDERS = "gw:open"  # hash client_order_index -> json: every order the bot placed, for crash cleanup

# --- consumer groups ------------------------------------------------------------------------------
GROUP_GUARD = "guard"
GROUP_GATEWAY = "gateway"
GROUP_MAKER = "maker"
GROUP_HEDGER = "hedger"

# --- trimming -------------------------------------------------------------------------------------
MD_MAXLEN = 10_000               # market data: approximate MAXLEN on every XADD
ORDER_STREAM_RETENTION_MS = 24 * 3600 * 1000  # grouped streams: MINID ~ now - 24 h (never trim pending entries)
HEARTBEAT_TTL_MS = 5_000
