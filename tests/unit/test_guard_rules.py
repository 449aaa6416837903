"""Pure guard rules: self-trade crossing, exact doubled-price notional, human strings; the compat module."""
from __future__ import annotations

from decimal import Decimal

from services.guard import core, rules
from services.guard.rules import OwnOrder, human, human_dec, human_px2, notional2_micro, self_trade_conflict
from shared.config import Settings

SPEC = Settings().market_spec


def test_self_trade_conflict_names_the_crossed_order() -> None:
    own = [OwnOrder(1, True, 175_100, 64), OwnOrder(2, False, 174_900, 64)]
    assert self_trade_conflict(False, 175_100, own) == own[0]
    assert self_trade_conflict(False, 175_099, own) is None
    assert self_trade_conflict(True, 174_900, own) == own[1]
    assert self_trade_conflict(True, 174_901, own) is None
    assert self_trade_conflict(True, 1, []) is None


def test_notional_with_a_half_tick_mid_is_exact() -> None:
    assert notional2_micro(SPEC, 350_000, 200) == 2 * 35_000_000       # 0.2 @ 175.000
    assert notional2_micro(SPEC, 350_001, 200) == 2 * 35_000_100       # 0.2 @ 175.0005 = 35.0001
    assert notional2_micro(SPEC, 350_001, -200) == 2 * 35_000_100      # sign of the position ignored


def test_human_strings() -> None:
    assert (human(250, 3), human(-250, 3), human(0, 3), human(100_000, 3), human(35_000_100, 6)) == \
        ("0.25", "-0.25", "0", "100", "35.0001")
    assert (human_dec(Decimal("35.0")), human_dec(Decimal("0.20")), human_dec(Decimal("1E+1"))) == ("35", "0.2", "10")
    assert (human_px2(350_001, 3), human_px2(351_000, 3)) == ("175.0005", "175.5")


def test_compat_module_reexports_the_guard_core_check() -> None:
    from modules import self_trade_guard

    assert self_trade_guard.self_trade_conflict is rules.self_trade_conflict is core.self_trade_conflict
    assert self_trade_guard.would_self_trade(False, 10, [self_trade_guard.OwnOrder(1, True, 10, 1)])
    assert "services/guard" in (self_trade_guard.__doc__ or "") and "guard.*" in (self_trade_guard.__doc__ or "")
