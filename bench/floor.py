"""The floor of a requote: its unavoidable parts, each measured in isolation on this machine.

A two-sided requote (both live quotes modified in place) decided on a venue frame goes
venue → feed (WS) → ``md:book`` → maker → ``orders:intents`` → guard → ``orders:approved`` →
gateway → journal claim → signed → one ``sendTxBatch``. What no design can remove:

- three stream hand-offs (``XADD`` → a blocked ``XREAD``/``XREADGROUP`` wakes), measured here;
- one Redis round trip for the gateway's journal claim (written before any send), measured here;
- signing the txs of one requote with the official SDK in one hop to the signing thread: two
  ``ModifyOrder`` (both quotes live, the usual case); cancel + place per side is measured too;
- one ``sendTxBatch`` round trip of those txs to the local venue (rate limits off);
- venue → feed, the WS frame's delivery and parse, taken from the live run (outside our code).

``floor`` = the sum of their p50s. ``make bench`` reports the live p50/p99 of venue frame →
requote sent next to it, and their ratio.
"""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from bench.latency import percentile

REPO = Path(__file__).resolve().parent.parent
N = 200


def _p(vals: list[float]) -> dict[str, float]:
    vals = sorted(vals)
    return {"n": len(vals), "p50_ms": percentile(vals, 50), "p99_ms": percentile(vals, 99)}


async def redis_parts(url: str) -> dict[str, dict[str, float]]:
    """GET round trip, and XADD → blocked XREAD delivery (two connections, like two services)."""
    a, b = Redis.from_url(url), Redis.from_url(url)
    rtt: list[float] = []
    for _ in range(N):
        t = time.perf_counter_ns()
        await a.get("bench:floor")
        rtt.append((time.perf_counter_ns() - t) / 1e6)
    hop: list[float] = []
    stream = "bench:floor:stream"
    await a.delete(stream)
    last = "0-0"
    for _ in range(N):
        reader = asyncio.create_task(b.xread({stream: last}, block=1000, count=1))
        await asyncio.sleep(0.002)   # the reader is blocked before the write, as a service is
        t = time.perf_counter_ns()
        await a.xadd(stream, {"t": str(t)})
        got = await reader
        hop.append((time.perf_counter_ns() - t) / 1e6)
        last = got[0][1][-1][0].decode()
    await a.delete(stream)
    await a.aclose()
    await b.aclose()
    return {"redis_rtt": _p(rtt), "stream_hop": _p(hop)}


BID, ASK = 105_000, 180_000   # SOL starts at 140.000: resting far from the market, inside the price band


def _place(market: int, coi: int, is_ask: bool) -> Any:
    from services.gateway import txs
    from shared.schemas import OrderIntent

    it = OrderIntent(intent_id=f"maker-{coi}", source="maker", action="place", market_id=market, client_order_index=coi,
                     is_ask=is_ask, price=ASK if is_ask else BID, size=100, created_ms=int(time.time() * 1000))
    return txs.create_order(it, int(time.time() * 1000), 300_000)


def _requote(market: int, prev: int, new: int) -> tuple[Any, ...]:
    """Cancel bid, place bid, cancel ask, place ask: what the maker sends when a side is not live yet."""
    from services.gateway import txs
    return (txs.CancelOrderReq(market, prev), _place(market, new, False),
            txs.CancelOrderReq(market, prev + 1), _place(market, new + 1, True))


def _modify(market: int, coi: int, i: int) -> tuple[Any, ...]:
    """Both live quotes moved in place: what the maker sends on a requote (maker.modify_requotes)."""
    from services.gateway import txs
    step = 100 * (i % 2)
    return (txs.ModifyOrderReq(market, coi, 100, BID - step), txs.ModifyOrderReq(market, coi + 1, 100, ASK + step))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)


async def sign_and_batch(market: int = 2) -> dict[str, dict[str, float]]:
    """Sign one requote (4 txs, one hop to the signing thread) and send it as one sendTxBatch, N times,
    against a venue of our own (rate limits off), with the gateway's own Signer and HTTP client."""
    from lighter.signer_client import create_api_key
    from pydantic import SecretStr

    from services.gateway.signer import Signer
    from services.gateway.venue_http import VenueHttp
    from shared.config import Secrets, Settings

    priv, pub, _ = create_api_key()
    port, account, key = _free_port(), 900, 4
    venue = subprocess.Popen([sys.executable, "-m", "services.venue", "--port", str(port), "--rate-limit", "off",
                              "--account", f"{account}:{key}:{str(pub).removeprefix('0x')}"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sign: list[float] = []
    send: list[float] = []
    sign4: list[float] = []
    send4: list[float] = []
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_http(url + "/")
        settings = Settings(env=Secrets(base_url=url, account_index=account, api_key_index=key,
                                        api_private_key=SecretStr(str(priv))))
        signer, http = Signer(settings), VenueHttp(url, account, key)
        try:
            nonce = await http.next_nonce()
            coi = (int(time.time() * 1000) << 7) | 1
            first = await signer.sign_batch((_place(market, coi, False), _place(market, coi + 1, True)), nonce, key)
            res, body = await http.send_tx_batch([x.tx_type for x in first], [x.tx_info for x in first])
            if res.outcome != "ok":
                raise RuntimeError(f"bench floor: the venue refused the first quotes: {body[:200]!r}")
            nonce += 2
            for i in range(2 * N):
                modify = i % 2 == 0
                if modify:
                    reqs = _modify(market, coi, i)
                else:
                    prev, coi = coi, coi + 4
                    reqs = _requote(market, prev, coi)
                t = time.perf_counter_ns()
                signed = await signer.sign_batch(reqs, nonce, key)
                t1 = time.perf_counter_ns()
                res, _ = await http.send_tx_batch([x.tx_type for x in signed], [x.tx_info for x in signed])
                t2 = time.perf_counter_ns()
                if res.outcome != "ok":
                    raise RuntimeError(f"bench floor: sendTxBatch refused: {res.code} {res.message}")
                nonce += len(signed)
                (sign if modify else sign4).append((t1 - t) / 1e6)
                (send if modify else send4).append((t2 - t1) / 1e6)
        finally:
            await signer.close()
            await http.close()
    finally:
        venue.terminate()
        venue.wait(timeout=10)
    return {"sign_requote": _p(sign), "send_tx_batch": _p(send),
            "sign_cancel_place": _p(sign4), "send_cancel_place_batch": _p(send4)}


def requotes(traces: list[dict[str, int]]) -> list[float]:
    """Venue frame → requote sent (ms), one sample per frame-driven maker decision: the decision's
    intents share its ``maker`` stamp; the requote is sent when its last tx's batch was answered."""
    by_decision: dict[int, dict[str, int]] = {}
    for t in traces:
        if "tick" in t or not all(k in t for k in ("venue", "maker", "sent")):
            continue   # timer-held decisions wait on policy (min_requote_interval_s), not on the path
        d = by_decision.setdefault(t["maker"], {"venue": t["venue"], "sent": t["sent"]})
        d["sent"] = max(d["sent"], t["sent"])
    return sorted((d["sent"] - d["venue"]) / 1e6 for d in by_decision.values())


def floor_table(parts: dict[str, dict[str, float]], venue_feed_p50: float) -> dict[str, float]:
    hop, rtt = parts["stream_hop"]["p50_ms"], parts["redis_rtt"]["p50_ms"]
    items = {"venue→feed (live p50)": venue_feed_p50, "3 stream hand-offs": 3 * hop, "journal claim (1 RTT)": rtt,
             "sign 2 modifies": parts["sign_requote"]["p50_ms"], "1 sendTxBatch of 2": parts["send_tx_batch"]["p50_ms"]}
    items["floor"] = sum(items.values())
    return items


def markdown(floor: dict[str, float], live: dict[str, float]) -> str:
    lines = ["| part | p50 (ms) |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in floor.items()]
    lines += ["", "| venue frame → requote sent | n | p50 (ms) | p99 (ms) | p50 / floor | p99 / p50 |",
              "|---|---:|---:|---:|---:|---:|",
              f"| live | {int(live['n'])} | {live['p50_ms']:.3f} | {live['p99_ms']:.3f} | "
              f"{live['p50_ms'] / floor['floor']:.2f} | {live['p99_ms'] / live['p50_ms']:.2f} |"]
    return "\n".join(lines)
