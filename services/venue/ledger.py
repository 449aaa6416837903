"""Accounts, API keys, positions, collateral and margin (pure, exact integers).

Collateral and PnL are micro-USDC; positions are signed lots. Margin follows Lighter's cross
model closely enough for a market maker: initial margin is charged on the worst-case position
per market (position plus all resting/pending orders on one side), at the mark price.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from shared.tiers import Tier

from .markets import Market

MF_SCALE = 10_000  # margin fractions are in 1e-4


@dataclass(slots=True)
class Position:
    size: int = 0  # signed lots
    entry_quote: int = 0  # micro-USDC cost of |size| (always >= 0)
    realized_pnl: int = 0
    funding_paid: int = 0  # positive = paid out
    imf: int = 0  # initial margin fraction (1e-4), 0 = market default
    margin_mode: int = 0

    @property
    def sign(self) -> int:
        return (self.size > 0) - (self.size < 0)


@dataclass(slots=True)
class Account:
    index: int
    l1_address: str
    collateral: int  # micro-USDC
    tier: Tier
    api_keys: dict[int, str] = field(default_factory=dict)  # key index -> public key hex (no 0x)
    nonces: dict[int, int] = field(default_factory=dict)  # key index -> next nonce
    positions: dict[int, Position] = field(default_factory=dict)
    reserved_bid: dict[int, int] = field(default_factory=dict)  # market -> lots (resting + pending)
    reserved_ask: dict[int, int] = field(default_factory=dict)
    synthetic: bool = False  # venue-internal liquidity/taker accounts: no margin, no history
    cancel_all_time: int = 0
    volume_quota: int = 1000
    last_free_tx_ms: int = -(10**12)
    quota_earn_micro: int = 0  # traded notional not yet converted into quota
    created_ms: int = 0
    total_order_count: int = 0
    trade_count: int = 0
    volume_micro: int = 0
    maker_only_keys: frozenset[int] = frozenset()   # setMakerOnlyApiKeys: these keys may not take
    maker_only_set_ms: int | None = None

    def pos(self, market_id: int) -> Position:
        p = self.positions.get(market_id)
        if p is None:
            p = self.positions[market_id] = Position()
        return p


def l1_address_for(index: int) -> str:
    """Deterministic fake L1 address for a venue account."""
    return "0x" + hashlib.sha256(f"lighter-venue-account-{index}".encode()).hexdigest()[:40]


def imf_of(acct: Account, m: Market) -> int:
    p = acct.positions.get(m.market_id)
    return p.imf if p is not None and p.imf else m.default_imf


def unrealized(p: Position, m: Market, mark: int) -> int:
    if p.size == 0:
        return 0
    value = m.notional(mark, abs(p.size))
    return value - p.entry_quote if p.size > 0 else p.entry_quote - value


def worst_exposure(acct: Account, market_id: int, extra_bid: int = 0, extra_ask: int = 0) -> int:
    p = acct.positions.get(market_id)
    size = p.size if p is not None else 0
    bid = acct.reserved_bid.get(market_id, 0) + extra_bid
    ask = acct.reserved_ask.get(market_id, 0) + extra_ask
    return max(abs(size + bid), abs(size - ask))


def margin_summary(acct: Account, markets: dict[int, Market], marks: dict[int, int],
                   extra: tuple[int, int, int] | None = None) -> tuple[int, int, int, int]:
    """(equity, initial margin, maintenance margin, position value), micro-USDC.

    `extra` = (market_id, extra_bid_lots, extra_ask_lots) evaluates a hypothetical order.
    """
    equity = acct.collateral
    im = mm = pv = 0
    mids = set(acct.positions) | set(acct.reserved_bid) | set(acct.reserved_ask)
    if extra is not None:
        mids.add(extra[0])
    for mid in mids:
        m = markets.get(mid)
        if m is None:
            continue
        mark = marks[mid]
        p = acct.positions.get(mid)
        if p is not None and p.size:
            equity += unrealized(p, m, mark)
            value = m.notional(mark, abs(p.size))
            pv += value
            mm += value * m.maintenance_mf // MF_SCALE
        eb, ea = (extra[1], extra[2]) if extra is not None and extra[0] == mid else (0, 0)
        im += m.notional(mark, worst_exposure(acct, mid, eb, ea)) * imf_of(acct, m) // MF_SCALE
    return equity, im, mm, pv


def order_margin_ok(acct: Account, markets: dict[int, Market], marks: dict[int, int],
                    market_id: int, is_ask: bool, lots: int) -> bool:
    """True when adding `lots` on one side keeps equity >= initial margin (or reduces risk)."""
    if acct.synthetic:
        return True
    before = worst_exposure(acct, market_id)
    after = worst_exposure(acct, market_id, 0 if is_ask else lots, lots if is_ask else 0)
    if after <= before:
        return True
    equity, im, _, _ = margin_summary(acct, markets, marks,
                                      (market_id, 0 if is_ask else lots, lots if is_ask else 0))
    return equity >= im


def apply_fill(acct: Account, m: Market, is_buy: bool, lots: int, price: int, fee: int) -> tuple[int, int, int, bool]:
    """Book a fill into the position; returns (size_before, entry_before, realized_pnl, sign_changed)."""
    p = acct.pos(m.market_id)
    size_before, entry_before = p.size, p.entry_quote
    side = 1 if is_buy else -1
    pnl = 0
    if p.size == 0 or (p.size > 0) == is_buy:
        p.size += side * lots
        p.entry_quote += m.notional(price, lots)
    else:
        close = min(lots, abs(p.size))
        entry_part = p.entry_quote * close // abs(p.size)
        exit_value = m.notional(price, close)
        pnl = exit_value - entry_part if p.size > 0 else entry_part - exit_value
        p.entry_quote -= entry_part
        p.size += side * close
        rest = lots - close
        if p.size == 0:
            p.entry_quote = 0
        if rest:
            p.size += side * rest
            p.entry_quote = m.notional(price, rest)
    p.realized_pnl += pnl
    acct.collateral += pnl - fee
    sign_changed = size_before != 0 and (size_before > 0) != (p.size > 0) and p.size != 0
    return size_before, entry_before, pnl, sign_changed
