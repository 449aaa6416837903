"""The lab's side of the venue: what the aiohttp server and the SDK signer do, without sockets.

``LabHost`` gives the venue's WebSocket ``Hub`` the three things it asks of the server (the core,
the clock, the faults), so the feed core reads the very frames a live feed reads. ``to_txs`` turns
the gateway core's sign requests into the venue's ``Tx`` records with the fields the SDK's Go
signer writes; the Schnorr signature is a placeholder (the local venue does not verify it yet,
see services/venue/README.md). ``reconcile`` builds the snapshot the gateway's REST reconcile
builds, through the same ``shared.lighter_wire`` parsers, from the venue's own JSON.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.gateway.replies import SendResult, classify
from services.gateway.txs import CancelAllReq, CancelOrderReq, CreateOrderReq, ModifyOrderReq, SignRequest
from services.venue import errors as E
from services.venue import wire as vwire
from services.venue.config import VenueConfig
from services.venue.core import Venue
from services.venue.faults import Faults
from services.venue.limits import Limiter
from services.venue.stream import Hub
from services.venue.txs import TX_CANCEL_ALL, TX_CANCEL_ORDER, TX_CREATE_ORDER, TX_MODIFY_ORDER, Tx, parse_tx
from shared import lighter_wire as wire
from shared.markets import MarketSpec
from shared.schemas import Reconcile

SDK_TX_EXPIRY_MS = 599_000   # the SDK's default ExpiredAt: now + 10 min - 1 s
LAB_SIG = "lab-unsigned"


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (the hub's text handler on anything but a send)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("the coroutine suspended: not allowed in simulated time")


@dataclass(slots=True, eq=False)
class LabSession:
    """One WebSocket connection: frames the hub sends are collected, in order."""

    sid: str = "lab"
    subs: set[str] = field(default_factory=set)
    msg_times: deque[int] = field(default_factory=deque)
    out: list[str] = field(default_factory=list)
    overflow: bool = False

    def send(self, text: str) -> None:
        self.out.append(text)


class LabHost:
    """The parts of ``VenueServer`` the hub uses, on an injected clock."""

    def __init__(self, venue: Venue, cfg: VenueConfig, now_ms: int) -> None:
        self.venue = venue
        self.cfg = cfg
        self.now_ms = now_ms
        self.faults = Faults()
        self.limiter = Limiter(cfg.rate_limit, cfg.free_tx_every_ms)
        self.hub = Hub(self)  # type: ignore[arg-type]

    def clock(self) -> int:
        return self.now_ms

    def run_core(self, now_ms: int | None = None) -> None:
        self.venue.advance(self.now_ms if now_ms is None else now_ms)
        self.hub.dispatch()

    def connect(self, s: LabSession) -> None:
        self.hub.sessions.add(s)  # type: ignore[arg-type]
        s.send('{"session_id":"%s","type":"connected"}' % s.sid)

    def receive(self, s: LabSession, text: str) -> None:
        run_sync(self.hub._on_text(s, text))  # type: ignore[arg-type]

    def submit(self, txs: list[Tx]) -> SendResult:
        """``sendTx``/``sendTxBatch`` as the server answers them (limits, then the core), read by the
        gateway's own reply reader (``services.gateway.replies.classify``)."""
        now = self.now_ms
        acct = self.venue.account(txs[0].account)
        try:
            if acct is None:
                raise E.err(E.ACCOUNT_NOT_FOUND)
            plan = self.limiter.plan_tx(acct, txs, now)
            accepted = self.venue.submit(txs, now)
            self.limiter.commit_tx(plan, len(txs), now)
        except E.VenueError as e:
            return classify(e.status, orjson.dumps(e.body()))
        self.run_core(now)
        return classify(200, orjson.dumps({"code": 200, "tx_hash": accepted[0].tx_hash}))


def tx_info(req: SignRequest, account: int, key: int, nonce: int, now_ms: int) -> tuple[int, dict[str, Any]]:
    """The tx type and the JSON fields the SDK's signer writes for one request."""
    base: dict[str, Any] = {"AccountIndex": account, "ApiKeyIndex": key, "ExpiredAt": now_ms + SDK_TX_EXPIRY_MS,
                            "Nonce": nonce, "Sig": LAB_SIG}
    if isinstance(req, CreateOrderReq):
        return TX_CREATE_ORDER, {**base, "MarketIndex": req.market_index, "ClientOrderIndex": req.client_order_index,
                                 "BaseAmount": req.base_amount, "Price": req.price, "IsAsk": int(req.is_ask),
                                 "Type": req.order_type, "TimeInForce": req.time_in_force,
                                 "ReduceOnly": int(req.reduce_only), "TriggerPrice": 0, "OrderExpiry": req.order_expiry}
    if isinstance(req, CancelOrderReq):
        return TX_CANCEL_ORDER, {**base, "MarketIndex": req.market_index, "Index": req.order_index}
    if isinstance(req, ModifyOrderReq):
        return TX_MODIFY_ORDER, {**base, "MarketIndex": req.market_index, "Index": req.order_index,
                                 "BaseAmount": req.base_amount, "Price": req.price, "TriggerPrice": 0}
    assert isinstance(req, CancelAllReq)
    info = {**base, "TimeInForce": req.time_in_force, "Time": req.timestamp_ms}
    if req.market_index != 255:
        info["L2TxAttributes"] = {"5": req.market_index}
    return TX_CANCEL_ALL, info


def to_txs(reqs: tuple[SignRequest, ...], account: int, key: int, first_nonce: int, now_ms: int) -> list[Tx]:
    """Venue ``Tx`` records for a batch: the SDK's JSON fields, through the venue's own parser."""
    return [parse_tx(*tx_info(r, account, key, first_nonce + i, now_ms)) for i, r in enumerate(reqs)]


def reconcile(v: Venue, account: int, spec: MarketSpec, reason: str, since_ms: int, now_ms: int) -> Reconcile:
    """The gateway's reconcile snapshot (``shared.lighter_wire.reconcile``, as ``venue_http`` builds it) from
    the venue's own JSON: active orders, orders ended since, our trades since, the position."""
    m = v.markets[spec.market_id]
    mid = spec.market_id
    active = [vwire.order_json(o, m) for o in v.engine.account_orders.get(account, {}).values() if o.market_id == mid]
    ended = [vwire.order_json(o, m) for o in v.engine.history.get(account, ())
             if o.market_id == mid and o.updated_ms >= since_ms]
    trades = [vwire.trade_json(t, m) for t in v.engine.account_trades.get(account, ())
              if t.market_id == mid and t.timestamp_ms >= since_ms]
    acct = v.account(account)
    positions = [vwire.position_json(v, acct, mid)] if acct is not None and mid in acct.positions else []
    return wire.reconcile(spec, account, reason, since_ms, now_ms, now_ms, active + ended, trades, positions)


def lab_token(account: int, key: int, deadline_s: int) -> str:
    """An auth token of the SDK's shape (the venue checks shape, account, key and deadline)."""
    return f"{deadline_s}:{account}:{key}:{'0' * 160}"
