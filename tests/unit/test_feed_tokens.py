"""Auth tokens (services/feed/tokens.py) and the feed core's account-channel life cycle: deadlines,
choice between sources, refusal backoff, rotation before expiry, AccountGap on every way back up."""
from __future__ import annotations

from typing import Any

import orjson

from services.feed import tokens as tk
from services.feed.core import (AccountDown, Closed, Command, FeedCore, FrameIn, Notice, Opened, PublishAccount,
                                RefreshToken, Send, SubState, Timing, TokenSeen)
from shared.markets import MarketSpec
from shared.schemas import AccountGap

SOL = MarketSpec(market_id=2, symbol="SOL", price_decimals=3, size_decimals=3, min_base=50, min_quote_micro=10_000_000)
ACCT = 321
T0 = 1_763_950_000_000
S0 = T0 // 1000
KINDS = ("account_all_orders", "account_all_trades", "account_all_positions")
PRIVATE = [f"{k}/{ACCT}" for k in KINDS]
TIMING = Timing(private_retry_ms=200, private_retry_max_ms=1_000)


def tok(deadline_s: int, account: int = ACCT, sig: str = "8d") -> str:
    return f"{deadline_s}:{account}:4:" + sig * 80


def frame(d: dict[str, Any]) -> FrameIn:
    return FrameIn(orjson.dumps(d))


def of(cmds: list[Command], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def connect(core: FeedCore, now: int = T0) -> list[Command]:
    core.handle(Opened(), now)
    return core.handle(frame({"session_id": "s", "type": "connected"}), now)


def snapshots(core: FeedCore, now: int) -> list[Command]:
    out: list[Command] = []
    for k in KINDS:
        body = {"orders": {}} if k == "account_all_orders" else (
            {"trades": {}} if k == "account_all_trades" else {"positions": {}, "shares": []})
        out += core.handle(frame({"channel": f"{k}:{ACCT}", "type": f"subscribed/{k}", **body}), now)
    return out


REFUSED = frame({"error": {"code": 20013, "message": "invalid auth: invalid deadline"}})


def gaps(out: list[Command]) -> list[AccountGap]:
    return [c.msg for c in of(out, PublishAccount) if isinstance(c.msg, AccountGap)]


def subs(out: list[Command]) -> list[tuple[str, str | None]]:
    return [(s.channel, s.auth) for s in of(out, Send) if s.type == "subscribe" and s.channel in PRIVATE]


def private(out: list[Command]) -> list[Send]:
    return [s for s in of(out, Send) if s.channel in PRIVATE]


# --- tokens.py -----------------------------------------------------------------------------------
def test_parse_reads_deadline_and_account_of_both_shapes() -> None:
    c = tk.parse(tok(S0 + 600), "redis")
    assert (c.deadline_ms, c.account, c.source) == ((S0 + 600) * 1000, ACCT, "redis")
    ro = tk.parse(f"ro:{ACCT}:single:{S0 + 86_400}:" + "ab" * 16, "file")
    assert (ro.deadline_ms, ro.account) == ((S0 + 86_400) * 1000, ACCT)
    bad = tk.parse("not-a-token-at-all", "env")
    assert bad.deadline_ms is None and bad.problem(T0, ACCT) == "not a Lighter auth token"
    assert tok(S0 + 600) not in repr(c)


def test_problem_refuses_expired_soon_expiring_and_foreign_tokens() -> None:
    assert tk.parse(tok(S0 - 120), "file").problem(T0, ACCT) == "expired 120 s ago"
    assert tk.parse(tok(S0 + 60), "file").problem(T0, ACCT) == "expires in 60 s"  # inside the 60 s margin
    assert tk.parse(tok(S0 + 61), "file").problem(T0, ACCT) is None
    assert tk.parse(tok(S0 + 600, account=5), "env").problem(T0, ACCT) == "for account 5, not 321"


def test_choose_prefers_the_later_deadline_and_tokens_not_refused() -> None:
    env, file, redis = (tk.parse(tok(S0 + d, sig=s), src) for d, s, src in
                        ((300, "aa", "env"), (3600, "bb", "file"), (600, "cc", "redis")))
    assert tk.choose([env, file, redis], T0, ACCT) is file
    assert tk.choose([env, file, redis], T0, ACCT, refused=[file.token]) is redis
    assert tk.choose([env, file], T0, ACCT, refused=[env.token, file.token]) is file  # all refused: still the best
    expired = tk.parse(tok(S0 - 1), "file")
    assert tk.choose([expired], T0, ACCT) is None
    same = tk.parse(tok(S0 + 300, sig="dd"), "redis")
    assert tk.choose([same, env], T0, ACCT) is env  # equal deadlines: the operator's token first
    text = tk.summary([expired, redis], T0, ACCT)
    assert text == "file: expired 1 s ago; redis: ok" and expired.token not in text


# --- core: choice and expiry ---------------------------------------------------------------------
def test_expired_file_token_falls_back_to_the_redis_token() -> None:
    core = FeedCore([SOL], 20, ACCT, TIMING)
    good = tok(S0 + 600, sig="cc")
    core.handle(TokenSeen.of([(tok(S0 - 30), "file"), (good, "redis")]), T0)
    out = connect(core)
    assert subs(out) == [(ch, good) for ch in PRIVATE] and core.token_source == "redis"


def test_token_expiring_within_a_minute_is_never_sent() -> None:
    core = FeedCore([SOL], 20, ACCT, TIMING)
    core.handle(TokenSeen(tok(S0 + 45), "redis"), T0)
    out = connect(core)
    assert subs(out) == [] and of(out, RefreshToken)
    [down] = of(out, AccountDown)
    assert down.reason == "no valid auth token (redis: expires in 45 s)" and down.retry_in_ms == 200
    assert core.account_problem(T0) == ("no_auth_token", "no valid auth token (redis: expires in 45 s)")
    # no silence: another attempt (re-read + warning) after each backoff step, doubling to the cap
    times = [t for t in range(T0 + 1, T0 + 4_000, 50) if of(core.on_timer(t), AccountDown)]
    assert [t - T0 for t in times] == [201, 601, 1401, 2401, 3401]


# --- core: refusal and backoff -------------------------------------------------------------------
def test_refusals_retry_with_backoff_and_the_gap_follows_a_fresh_token() -> None:
    core = FeedCore([SOL], 20, ACCT, TIMING)
    bad = tok(S0 + 600, sig="ee")
    core.handle(TokenSeen(bad, "redis"), T0)
    connect(core)
    snapshots_before = len(gaps(snapshots(core, T0)))  # first subscribe: an AccountGap "start"
    assert snapshots_before == 1
    core.handle(Closed(), T0 + 10)
    connect(core, T0 + 20)                            # reconnect: the venue refuses the token now
    out = core.handle(REFUSED, T0 + 21)
    assert [(d.attempt, d.retry_in_ms) for d in of(out, AccountDown)] == [(1, 200)] and of(out, RefreshToken)
    assert all(s is SubState.IDLE for s in core.private.values()) and subs(out) == []
    # the venue answers each of the three subscribes: one attempt, one backoff step, not three
    for _ in range(2):
        assert of(core.handle(REFUSED, T0 + 22), AccountDown) == []
    assert core.account_problem(T0 + 30) == ("auth_error", "account channels down: 20013 invalid auth: invalid deadline")
    assert subs(core.on_timer(T0 + 220)) == []
    retry = core.on_timer(T0 + 221)
    assert subs(retry) == [(ch, bad) for ch in PRIVATE] and of(retry, RefreshToken)
    for _ in range(3):
        core.handle(REFUSED, T0 + 230)
    assert subs(core.on_timer(T0 + 629)) == [] and len(subs(core.on_timer(T0 + 630))) == 3  # 400 ms later
    for _ in range(3):
        core.handle(REFUSED, T0 + 640)
    # the gateway refreshes the token: the next read is tried at once, the channels come up, the gap is published
    good = tok(S0 + 900, sig="ff")
    out = core.handle(TokenSeen.of([(bad, "file"), (good, "redis")]), T0 + 700)
    assert subs(out) == [(ch, good) for ch in PRIVATE]
    out = snapshots(core, T0 + 710)
    assert gaps(out) == [AccountGap(reason="reconnect", ts_ms=T0 + 710)] and core.private_active
    assert core.account_problem(T0 + 710) is None and core.attempts == 0
    everything = repr(out) + repr(core.on_timer(T0 + 720)) + repr(of(retry, Notice))
    assert bad not in everything and good not in everything


def test_auth_error_on_an_active_channel_publishes_an_auth_gap() -> None:
    core = FeedCore([SOL], 20, ACCT, TIMING)
    first = tok(S0 + 600, sig="aa")
    core.handle(TokenSeen(first, "redis"), T0)
    connect(core)
    snapshots(core, T0)
    ch = f"account_all_trades:{ACCT}"
    out = core.handle(frame({"error": {"code": 20013, "message": f"invalid auth: invalid deadline: {ch}"}}), T0 + 5)
    assert of(out, Send) == [Send("unsubscribe", f"account_all_trades/{ACCT}")]
    new = tok(S0 + 1200, sig="bb")
    assert subs(core.handle(TokenSeen(new, "redis"), T0 + 6)) == [(f"account_all_trades/{ACCT}", new)]
    out = core.handle(frame({"channel": ch, "trades": {}, "type": "subscribed/account_all_trades"}), T0 + 7)
    assert gaps(out) == [AccountGap(reason="auth error", ts_ms=T0 + 7)]


# --- core: rotation before expiry ----------------------------------------------------------------
def test_token_about_to_expire_is_rotated_and_the_gap_published() -> None:
    core = FeedCore([SOL], 20, ACCT, TIMING)
    old = tok(S0 + 120, sig="aa")
    core.handle(TokenSeen(old, "redis"), T0)
    connect(core)
    snapshots(core, T0)
    assert private(core.on_timer(T0 + 59_000)) == [] and core.account_problem(T0 + 59_000) is None
    # inside the margin with nothing fresher: channels kept (data still flows), health says why
    assert private(core.on_timer(T0 + 61_000)) == []
    assert core.account_problem(T0 + 61_000) == ("no_auth_token", "no valid auth token (the one in use expires in 59 s)")
    new = tok(S0 + 3_720, sig="bb")
    out = core.handle(TokenSeen.of([(old, "redis"), (new, "file")]), T0 + 62_000)
    assert [s.payload()["type"] for s in private(out)] == ["unsubscribe"] * 3 + ["subscribe"] * 3
    assert subs(out) == [(ch, new) for ch in PRIVATE]
    out = snapshots(core, T0 + 62_100)
    assert gaps(out) == [AccountGap(reason="token rotation", ts_ms=T0 + 62_100)]
    assert core.account_problem(T0 + 62_100) is None and core.token_source == "file"


def test_no_gap_without_an_account_and_one_gap_per_outage() -> None:
    core = FeedCore([SOL], 20, None, TIMING)
    connect(core)
    assert core.account_problem(T0) is None and private(core.on_timer(T0 + 1)) == []
    core = FeedCore([SOL], 20, ACCT, TIMING)
    core.handle(TokenSeen(tok(S0 + 600), "redis"), T0)
    connect(core)
    assert len(gaps(snapshots(core, T0))) == 1
    assert gaps(snapshots(core, T0 + 1)) == [] and gaps(core.on_timer(T0 + 2)) == []


def test_unanswered_subscribes_are_sent_again_after_the_backoff() -> None:
    core = FeedCore([SOL], 20, ACCT, TIMING)
    t = tok(S0 + 600)
    core.handle(TokenSeen(t, "redis"), T0)
    assert len(subs(connect(core))) == 3
    assert private(core.on_timer(T0 + 4_999)) == []
    out = core.on_timer(T0 + 5_000)  # no answer in 5 s: down, said so, retried after the backoff
    [down] = of(out, AccountDown)
    assert down.reason == "no answer to the subscribe in 5 s" and private(out) == []
    assert core.account_problem(T0 + 5_000) == ("account_down", "account channels down: no answer to the subscribe in 5 s")
    assert len(subs(core.on_timer(T0 + 5_200))) == 3
    # this time the venue says they are already there: that counts as up
    out: list[Command] = []
    for k in KINDS:
        out += core.handle(frame({"error": {"code": 30003, "message": f"Already Subscribed to : {k}:{ACCT}"}}), T0 + 5_300)
    assert core.private_active and gaps(out) == [AccountGap(reason="start", ts_ms=T0 + 5_300)]


def test_venue_error_text_never_carries_a_token_into_health() -> None:
    core = FeedCore([SOL], 20, ACCT, TIMING)
    t = tok(S0 + 600)
    core.handle(TokenSeen(t, "redis"), T0)
    connect(core)
    core.handle(frame({"error": {"code": 20013, "message": f"invalid auth: {t}"}}), T0 + 1)
    problem = core.account_problem(T0 + 1)
    assert problem == ("auth_error", "account channels down: 20013 invalid auth: ***")
