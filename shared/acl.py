"""Redis ACL users, one per service plus the operator: the only place their rights are written down.

Every rule is built from the names in ``shared/keys.py``. ``core.main`` writes the local run's file
(``var/redis/users.acl``, mode 0600) from here; ``scripts/redis_acl.py`` prints or writes the same
file for docker compose and Railway; ``tests/integration/test_redis_acl.py`` proves each allow and
deny against a real redis-server. Redis 7.0 semantics (see the research notes, architecture 1.8):

- ``%R~pat`` read, ``%W~pat`` write, ``~pat`` both; there is no negative pattern, so reads are
  granted namespace by namespace and ``auth:*`` (the WebSocket token) is in nobody's list but the
  feed's;
- a command passes only if ONE rule set (the root rules or a single ``(...)`` selector) grants the
  command and every key it names: each ``Grant`` below is one such rule set;
- ``XREADGROUP`` needs read permission only; ``XACK``, ``XGROUP CREATE``, ``XAUTOCLAIM`` need write.
  Consuming is therefore granted only in selectors, never at the root, so reading a stream never
  means being able to consume it (``orders:approved``: the gateway only);
- ``EVAL``/``EVALSHA`` name their keys read-write; every ``redis.call`` inside a script is checked
  again, command and key, against the caller's rules. A script key in a Lua grant (the gateway's
  claim script reads ``risk:kill`` and ``risk:state``) therefore gives no right to write it.

Key permissions do not restrict consumer-group names: a user that may ``XACK`` on ``acct:*`` could
acknowledge another group's entries there. Every such user is a service of ours; the streams only
the guard or only the gateway consume are granted to them alone.

Pure standard library (plus ``shared.keys``): ``python3 scripts/redis_acl.py`` runs without the venv.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from shared import keys

SERVICES = ("feed", "maker", "hedger", "guard", "gateway", "notifier")   # the notifier: compose's monitoring profile
OPERATOR = "operator"
HEALTHCHECK = "healthcheck"   # compose only: may PING and nothing else (the container healthcheck)
USERS = (*SERVICES, OPERATOR)  # the users with a password
OPTIONAL = frozenset({"notifier"})   # without its password (no monitoring profile) the user is left out
Layout = Literal["local", "compose"]
LAYOUTS: tuple[Layout, ...] = ("local", "compose")


def password_var(user: str) -> str:
    """The environment variable holding ``user``'s password, e.g. ``REDIS_PASSWORD_MAKER``."""
    return f"REDIS_PASSWORD_{user.upper()}"


PASSWORD_VARS = tuple(password_var(u) for u in USERS)


def new_password() -> str:
    """192 random bits, hex: safe in a URL and in a dotenv file without quoting."""
    return secrets.token_hex(24)


def redis_url(user: str, password: str, host: str, port: int, db: int = 0) -> str:
    return f"redis://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{db}"


# --- key patterns, from shared/keys.py ----------------------------------------------------------
def _ns(name: str) -> str:
    """``orders:intents`` -> ``orders:*``: the whole namespace of a key."""
    return name.split(":", 1)[0] + ":*"


MD = (keys.md_book("*"), keys.md_trade("*"))  # type: ignore[arg-type]
BOOK = keys.book_latest("*")                   # type: ignore[arg-type]
ACCT = keys.acct("*")                          # type: ignore[arg-type]
ORDERS = _ns(keys.ORDERS_INTENTS)
RISK = _ns(keys.RISK_KILL)
GW = _ns(keys.GATEWAY_LEASE)
SVC = keys.heartbeat("*")
DLQ = keys.dead_letter("*")
OPERATOR_SWITCHES = (keys.RISK_KILL, keys.RISK_REDUCE, keys.RISK_RESUME)
# everything an operator may read: every namespace but auth:* (the token)
READ_ALL = (*MD, BOOK, ACCT, ORDERS, RISK, DLQ, SVC, GW)

# --- commands ------------------------------------------------------------------------------------
# Connection handling for every user: AUTH, HELLO, PING, SELECT, CLIENT SETNAME/ID/INFO (and SETINFO on
# 7.2+, which redis-py sends on connect), COMMAND; minus CLIENT KILL/LIST/PAUSE and the like.
CONNECTION = ("+@connection", "-@admin", "-@dangerous")
# Keyless commands a service may need: transactions (queued commands are checked one by one) and
# loading Lua scripts (redis-py's register_script: EVALSHA, then SCRIPT LOAD on NOSCRIPT).
KEYLESS = ("multi", "exec", "discard", "script|load", "script|exists")
READ = ("get", "mget", "exists", "type", "ttl", "pttl", "strlen", "hget", "hmget", "hgetall", "hlen", "hexists",
        "xrange", "xrevrange", "xread", "xlen", "xpending", "xinfo")
CONSUME = ("xreadgroup", "xack", "xgroup|create", "xautoclaim")
# The operator reads like redis-cli does (+@read: GET, HGETALL, XRANGE, XINFO, XPENDING, TTL, TYPE, KEYS,
# SCAN, ...) minus SORT_RO (BY/GET patterns reach other keys), plus INFO, CONFIG GET and ACL LOG (who was
# refused what). Never MONITOR: it would show the token as the gateway writes it.
OPERATOR_READ = ("+@read", "-sort_ro", "+info", "+config|get", "+acl|whoami", "+acl|log")


@dataclass(frozen=True)
class Grant:
    """One rule set: these commands on keys matching these patterns (``read``, ``write`` or both)."""

    commands: tuple[str, ...]
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    both: tuple[str, ...] = ()

    def rules(self) -> list[str]:
        out = [c if c[0] in "+-" else f"+{c}" for c in self.commands]
        out += [f"~{p}" for p in self.both]
        out += [f"%R~{p}" for p in self.read if p not in self.both]
        out += [f"%W~{p}" for p in self.write if p not in self.both]
        return out


def _consume(*streams: str) -> Grant:
    """Consumer groups on these streams (all read by one XREADGROUP must be in the same grant)."""
    return Grant(CONSUME, both=streams)


def _quoting(name: str) -> list[Grant]:
    """The maker and the hedger: market data, the account, risk and order events in; intents out."""
    return [
        Grant(READ, read=(*MD, BOOK, ACCT, RISK, keys.ORDERS_EVENTS, keys.GATEWAY_OPEN_ORDERS)),
        _consume(ACCT, keys.ORDERS_EVENTS),
        Grant(("xadd",), write=(keys.ORDERS_INTENTS, keys.dead_letter(name))),
        Grant(("evalsha",), both=(keys.ORDERS_INTENTS,)),            # Bus.publish_many: XADD inside
        Grant(("set",), write=(keys.heartbeat(name), keys.RECONCILE_REQUEST)),
    ]


GRANTS: dict[str, list[Grant]] = {
    "feed": [
        Grant(READ, read=(*MD, BOOK, RISK, keys.AUTH_WS_TOKEN)),      # the only reader of the token
        Grant(("xadd",), write=(*MD, ACCT, keys.dead_letter("feed"))),
        Grant(("set",), write=(BOOK, keys.heartbeat("feed"))),
    ],
    "maker": _quoting("maker"),
    "hedger": _quoting("hedger"),
    "guard": [
        Grant(READ, read=(*MD, BOOK, ACCT, ORDERS, RISK, SVC)),      # ORDERS: recovery XRANGEs orders:approved
        _consume(keys.ORDERS_INTENTS, ACCT, keys.ORDERS_EVENTS),
        Grant(("xadd",), write=(keys.ORDERS_APPROVED, keys.ORDERS_EVENTS, keys.RISK_EVENTS, keys.dead_letter("guard"))),
        Grant(("evalsha",), both=(ORDERS, RISK)),                    # Bus.publish_all_and_ack: XADDs + XACK
        Grant(("set", "getdel", "del", "expire", "pexpire"), both=(RISK,)),   # risk:state, risk:kill NX, risk:resume
        Grant(("set",), write=(keys.heartbeat("guard"), keys.RECONCILE_REQUEST)),
    ],
    "gateway": [
        Grant(READ, read=(*MD, BOOK, ACCT, ORDERS, RISK, SVC, GW)),
        _consume(keys.ORDERS_APPROVED, ACCT),                       # the only consumer of orders:approved
        Grant(("xadd",), write=(keys.ORDERS_EVENTS, ACCT, keys.dead_letter("gateway"))),
        # journal, lease, epoch (redis-py's incr() sends INCRBY), gw:open, the reconcile request (GETDEL)
        Grant(("set", "getdel", "incr", "incrby", "del", "hset", "hdel", "expire", "pexpire"), both=(GW,)),
        # claim/renew/release scripts and Bus.publish_and_ack; risk:kill and risk:state are only read inside
        Grant(("eval", "evalsha"), both=(GW, RISK, keys.ORDERS_EVENTS, keys.ORDERS_APPROVED)),
        Grant(("set",), write=(keys.AUTH_WS_TOKEN, keys.heartbeat("gateway"))),   # SET PX, never GET
    ],
    "notifier": [
        Grant(READ, read=(RISK,)),                                   # risk:events (XREAD, XREVRANGE)
        Grant(("set",), write=(keys.heartbeat("notifier"),)),
    ],
    OPERATOR: [
        Grant(OPERATOR_READ, read=READ_ALL),
        Grant(("set", "del"), both=OPERATOR_SWITCHES),                # SET/DEL risk:kill, risk:reduce, risk:resume
        Grant(("xadd",), write=(keys.ORDERS_INTENTS,)),              # a hand-made intent, judged by the guard
        Grant(("set",), write=(keys.RECONCILE_REQUEST,)),
    ],
}


def user_rules(user: str) -> list[str]:
    """The ACL rules of ``user`` (no password, no on/off): root rules, then one selector per grant."""
    root, *selectors = GRANTS[user]
    out = ["resetkeys", "resetchannels", "-@all", *CONNECTION]
    if user != OPERATOR:
        out += [f"+{c}" for c in KEYLESS]
    out += root.rules()
    out += [f"({' '.join(g.rules())})" for g in selectors]
    return out


def _hash(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


class MissingPassword(ValueError):
    pass


def acl_text(passwords: Mapping[str, str], layout: Layout) -> str:
    """The ACL file (no comments: Redis's ACL file format has none); passwords stored as SHA-256.

    ``local``: ``default`` is the operator, without a password (Redis listens on 127.0.0.1 only, so
    ``redis-cli -p 6399`` works as the README shows). ``compose``: ``default`` is off, the operator
    authenticates as ``operator``; ``healthcheck`` may PING without a password.
    """
    missing = [password_var(u) for u in (SERVICES if layout == "local" else USERS)
               if not passwords.get(u) and u not in OPTIONAL]
    if missing:
        raise MissingPassword(f"missing {', '.join(missing)}")
    lines = []
    if layout == "local":
        lines.append(["user", "default", "on", "nopass", *user_rules(OPERATOR)])
    else:
        lines.append(["user", "default", "off", "resetpass", "resetkeys", "resetchannels", "-@all"])
        lines.append(["user", HEALTHCHECK, "on", "nopass", "resetkeys", "resetchannels", "-@all", "+ping"])
        lines.append(["user", OPERATOR, "on", _hash(passwords[OPERATOR]), *user_rules(OPERATOR)])
    for s in SERVICES:
        if s in OPTIONAL and not passwords.get(s):
            continue   # not deployed here: no user, so nothing can log in as it
        lines.append(["user", s, "on", _hash(passwords[s]), *user_rules(s)])
    return "".join(" ".join(line) + "\n" for line in lines)


def passwords_from(env: Mapping[str, str]) -> dict[str, str]:
    return {u: env[password_var(u)] for u in USERS if env.get(password_var(u))}


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` with ``mode`` (also when the file existed with another mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), mode)
        f.write(text)
