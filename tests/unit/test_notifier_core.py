"""The notifier's policy: what is said, batched to one message per interval, never a flood."""
from __future__ import annotations

import pytest

from services.notifier.core import Alerts, NotifierCore, Tick
from shared.schemas import RiskState

T0 = 1_800_000_000_000


def firing(name: str, severity: str, summary: str, status: str = "firing") -> dict:
    return {"status": status, "labels": {"alertname": name, "severity": severity}, "annotations": {"summary": summary}}


def test_a_state_change_is_sent_at_once_and_a_repeat_is_not() -> None:
    c = NotifierCore(min_interval_ms=10_000)
    (s,) = c.handle(RiskState(ts_ms=T0, state="ACTIVE"), T0)
    assert s.title == "lighter-bot: trading ACTIVE" and s.level == "info"
    assert c.handle(RiskState(ts_ms=T0, state="ACTIVE", reason="again"), T0 + 20_000) == []
    (s,) = c.handle(RiskState(ts_ms=T0, state="HALTED", reason="kill: operator"), T0 + 30_000)
    assert s.title == "lighter-bot: trading ACTIVE -> HALTED: kill: operator" and s.level == "failure"


def test_what_comes_within_the_interval_is_batched_into_one_message_at_its_worst_level() -> None:
    c = NotifierCore(min_interval_ms=10_000, max_lines=2)
    c.handle(RiskState(ts_ms=T0, state="ACTIVE"), T0)
    assert c.handle(RiskState(ts_ms=T0, state="REDUCING", reason="drawdown"), T0 + 1_000) == []
    assert c.handle(Alerts({"alerts": [firing("StaleFeed", "critical", "order book 30 s old"),
                                        firing("NoFills", "info", "quiet")]}), T0 + 2_000) == []
    assert c.handle(Tick(), T0 + 9_999) == []
    (s,) = c.handle(Tick(), T0 + 10_000)
    assert s.level == "failure" and s.title.startswith("lighter-bot: 3 events, the first: trading ACTIVE -> REDUCING")
    assert s.body.splitlines() == ["trading ACTIVE -> REDUCING: drawdown", "[FIRING] StaleFeed: order book 30 s old",
                                   "and 1 more"]
    assert c.handle(Tick(), T0 + 30_000) == [] and c.sent == 2


def test_a_resolved_alert_is_info_and_a_body_that_is_not_alertmanagers_is_refused() -> None:
    c = NotifierCore(min_interval_ms=0)
    (s,) = c.handle(Alerts({"alerts": [firing("BotHalted", "critical", "halted", status="resolved")]}), T0)
    assert s.level == "info" and s.body == "[RESOLVED] BotHalted: halted"
    with pytest.raises(ValueError):
        c.handle(Alerts({"text": "hello"}), T0)
    assert c.bad == 1


def test_switched_off_kinds_say_nothing() -> None:
    c = NotifierCore(min_interval_ms=0, states=False, alerts=False)
    assert c.handle(RiskState(ts_ms=T0, state="HALTED"), T0) == []
    assert c.handle(Alerts({"alerts": [firing("X", "critical", "x")]}), T0) == []


def test_health_shows_the_urls_scheme_only_and_never_a_bare_token() -> None:
    from services.notifier.app import NotifierService
    from shared.config import load_settings
    for url, shown in (("tgram://123456:AAAsecret/987", "tgram://"), ("123456:AAAsecretbare", "(not a URL)")):
        _, h = NotifierService(load_settings(), url).health(0.0)
        assert h["url_scheme"] == shown and "secret" not in str(h)


def test_a_deployment_without_the_notifier_has_no_notifier_redis_user() -> None:
    from shared import acl
    pw = {u: f"pw-{u}-0123456789" for u in acl.USERS if u != "notifier"}
    text = acl.acl_text(pw, "compose")                       # the six passwords an older deployment has
    assert "user notifier" not in text and "user gateway on" in text
    assert "user notifier on" in acl.acl_text({**pw, "notifier": "pw-notifier-0123456789"}, "compose")
