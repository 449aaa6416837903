"""Recordings: what a live system saw, in one gzip'd JSON-lines file, and its exact replay.

Format ``lighter-bot-recording`` version 1 (documented in README "Strategy lab"):

- line 1: ``{"format": "lighter-bot-recording", "version": 1, "market_id", "account", "streams": [...]}``;
  the other lines in any order (``record --follow`` writes entries as they come and the taps at the end)
- ``{"src": "tap", "service": NAME, "r": TAP_LINE}``: each line of ``$LIGHTER_TAP_DIR/NAME.tap.jsonl``
  (``shared.tap``: the core's every input with its ``now_ms``; the first is the header with settings);
- ``{"src": "stream", "stream": KEY, "id": ENTRY_ID, "type": T, "v": SCHEMA_VERSION, "d": JSON}``: every entry of the
  market-data, account, order and risk streams, for the metrics and for judging the replay.

``replay`` rebuilds each tapped core from the settings in its header, feeds it the recorded calls
in order and compares what it emits with what the live service published: the maker's and the
hedger's intents on ``orders:intents`` (content and order; trace stamps excepted, they are wall
clock), and the guard's verdict on every intent (``orders:approved`` or a ``veto`` event).
"""
from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from services.guard import core as guard_core
from services.guard.core import GuardCore, GuardLimits
from services.hedger.core import HEDGE_TTL_MS, HedgerCore
from services.maker.core import MakerCore
from shared import keys
from shared.commands import Leftovers
from shared.config import Settings
from shared.schemas import SCHEMA_VERSION, Msg, OrderEvent, OrderIntent, decode
from shared.tap import decode_event

from lab.sim import intents_of

FORMAT = "lighter-bot-recording"
VERSION = 1
COMPARED = ("intent_id", "source", "action", "market_id", "client_order_index", "is_ask", "price", "size",
            "order_type", "tif", "reduce_only", "created_ms", "ttl_ms", "book_ts_ms")
GUARD_EVENTS = {c.__name__: c for c in (guard_core.KillState, guard_core.Heartbeats, guard_core.Restored,
                                        guard_core.Replayed, guard_core.Recovered)}
QUOTING_EVENTS = {"Leftovers": Leftovers}


class RecordingError(ValueError):
    """A file that is not a recording this version can read (the message names the file and line)."""


def streams_for(market_id: int, account: int) -> list[str]:
    return [keys.md_book(market_id), keys.md_trade(market_id), keys.acct(account), keys.ORDERS_INTENTS,
            keys.ORDERS_APPROVED, keys.ORDERS_EVENTS, keys.RISK_EVENTS]


class Writer:
    """A recording being written: the header, then stream entries and tap lines in any order. ``flush``
    leaves a gzip sync point, so a recorder killed later still leaves everything up to it readable."""

    def __init__(self, path: Path, market_id: int, account: int) -> None:
        self.fh = gzip.open(path, "wb", compresslevel=6)
        self.counts = {"tap_lines": 0, "stream_entries": 0}
        self.fh.write(orjson.dumps({"format": FORMAT, "version": VERSION, "market_id": market_id, "account": account,
                                    "streams": streams_for(market_id, account)}) + b"\n")

    def stream(self, stream: str, eid: str, fields: dict[str, str]) -> None:
        self.fh.write(orjson.dumps({"src": "stream", "stream": stream, "id": eid, "type": fields.get("type", ""),
                                    "v": fields.get("v", ""), "d": fields.get("d", "")}) + b"\n")
        self.counts["stream_entries"] += 1

    def taps(self, taps: dict[str, list[bytes]]) -> None:
        for service, lines in sorted(taps.items()):
            for line in lines:
                line = line.strip()
                if not line:
                    continue
                try:
                    r = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue   # a line cut by a crash; the run after it starts with a new header
                self.fh.write(orjson.dumps({"src": "tap", "service": service, "r": r}) + b"\n")
                self.counts["tap_lines"] += 1

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> dict[str, int]:
        self.fh.close()
        return self.counts


def write(path: Path, market_id: int, account: int, taps: dict[str, list[bytes]],
          entries: list[tuple[str, str, dict[str, str]]]) -> dict[str, int]:
    """Write a recording; ``entries`` are (stream, id, fields) as XRANGE gives them. Returns counts."""
    w = Writer(path, market_id, account)
    w.taps(taps)
    for stream, eid, fields in entries:
        w.stream(stream, eid, fields)
    return w.close()


@dataclass
class Recording:
    header: dict[str, Any]
    taps: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    truncated: bool = False   # the file ended without its gzip trailer (read up to the last flush)
    entries: list[tuple[str, str, Msg]] = field(default_factory=list)

    def stream(self, name: str) -> Iterator[tuple[str, Msg]]:
        for s, eid, m in self.entries:
            if s == name:
                yield eid, m


def read(path: Path) -> Recording:
    try:
        fh = gzip.open(path, "rb")
        first = fh.readline()
    except (OSError, EOFError) as e:
        raise RecordingError(f"{path}: not a gzip'd recording ({type(e).__name__})") from None
    with fh:
        try:
            header = orjson.loads(first)
        except orjson.JSONDecodeError:
            raise RecordingError(f"{path}: line 1: not JSON") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise RecordingError(f"{path}: line 1: not a {FORMAT} file")
        if header.get("version") != VERSION:
            raise RecordingError(f"{path}: version {header.get('version')!r}; this build reads version {VERSION}")
        rec = Recording(header)
        lines: list[bytes] = []
        try:
            for line in fh:
                lines.append(line)
        except (OSError, EOFError):   # a recorder killed before it closed the file: keep what was flushed
            rec.truncated = True
            if lines and not lines[-1].endswith(b"\n"):
                lines.pop()
        for n, line in enumerate(lines, start=2):
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise RecordingError(f"{path}: line {n}: not JSON") from None
            if not isinstance(r, dict) or (r.get("src") == "tap" and not isinstance(r.get("r"), dict)):
                raise RecordingError(f"{path}: line {n}: not a recording line")
            if r.get("src") == "tap":
                rec.taps.setdefault(r["service"], []).append(r["r"])
            elif r.get("src") == "stream":
                try:
                    msg = decode({"type": r["type"], "v": r.get("v") or str(SCHEMA_VERSION), "d": r["d"]})
                except ValueError:
                    continue   # a malformed entry live services dead-lettered too
                rec.entries.append((r["stream"], r["id"], msg))
        return rec


# --- replay ---------------------------------------------------------------------------------------
@dataclass
class Divergence:
    service: str
    index: int
    expected: dict[str, Any]
    got: dict[str, Any] | None

    def text(self) -> str:
        if self.got is None:
            return f"{self.service}: #{self.index}: live {self.expected} but the replay has nothing there"
        diff = {k: (self.expected[k], self.got.get(k)) for k in self.expected if self.expected[k] != self.got.get(k)}
        return f"{self.service}: intent #{self.index} ({self.expected.get('intent_id')}): live vs replay {diff}"


@dataclass
class ReplayReport:
    compared: dict[str, int] = field(default_factory=dict)
    first: dict[str, Divergence] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)   # live intents from before the taps began

    @property
    def ok(self) -> bool:
        return not self.first and sum(self.compared.values()) > 0


def _key(it: OrderIntent) -> dict[str, Any]:
    return {k: getattr(it, k) for k in COMPARED}


def _settings(header: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate({**header["settings"], "env": {}})
    except (ValidationError, KeyError, TypeError) as e:
        raise RecordingError(f"{header.get('service', '?')} tap: settings this build cannot read "
                             f"({str(e).splitlines()[0][:160]})") from None


def _replay_quoting(service: str, lines: list[dict[str, Any]]) -> list[OrderIntent]:
    settings = _settings(lines[0])
    if service == "maker":
        core: Any = MakerCore.from_settings(settings)
        ttl = settings.maker.quote_ttl_ms
    else:
        core = HedgerCore.from_settings(settings)
        ttl = HEDGE_TTL_MS
    out: list[OrderIntent] = []
    for r in lines[1:]:
        t, k = r["t"], r["k"]
        try:   # as the live shell: a core error on one input rejects that input, nothing is emitted
            if k == "h":
                cmds = core.handle(decode_event(r["e"], QUOTING_EVENTS), t)
            elif k == "timer":
                cmds = core.on_timer(t)
            else:
                cmds = core.shutdown(t)
        except Exception:  # noqa: BLE001 - the live shell logs it and carries on
            cmds = []
        out += intents_of(cmds, service, core, ttl, t)
    return out


def _replay_guard(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    settings = _settings(lines[0])
    core = GuardCore(settings.market_spec, GuardLimits.from_settings(settings))
    out: list[tuple[str, str]] = []
    for r in lines[1:]:
        if r["k"] == "timer":
            try:
                core.on_timer(r["t"])
            except Exception:  # noqa: BLE001 - as live: logged, the loop goes on
                pass
            continue
        ev = decode_event(r["e"], GUARD_EVENTS)
        try:
            cmds = core.handle(ev, r["t"])
        except Exception:  # noqa: BLE001 - live: an intent the core fails on is vetoed, a state entry rejected
            cmds = [guard_core.Veto(ev, "error", "error: guard internal error")] if isinstance(ev, OrderIntent) else []
        if isinstance(ev, OrderIntent):
            for c in cmds:
                if isinstance(c, guard_core.Approve):
                    out.append((ev.intent_id, "approve"))
                elif isinstance(c, guard_core.Veto):
                    out.append((ev.intent_id, "veto"))
    return out


def _segments(lines: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """One tap file may hold several runs of a service (a restart appends a new header)."""
    segs: list[list[dict[str, Any]]] = []
    for r in lines:
        if "tap" in r:
            segs.append([r])
        elif segs:
            segs[-1].append(r)
    return segs


def replay(rec: Recording) -> ReplayReport:
    rep = ReplayReport()
    live = [m for _, m in rec.stream(keys.ORDERS_INTENTS) if isinstance(m, OrderIntent)]
    for service in ("maker", "hedger"):
        lines = rec.taps.get(service)
        if not lines:
            continue
        got = [i for seg in _segments(lines) for i in _replay_quoting(service, seg)]
        want = [i for i in live if i.source == service]
        # the streams may hold intents from before the taps began (an earlier run, --since-s): start at
        # the first live intent the replay also made; every one after it must then match, in order
        at = {it.intent_id: n for n, it in enumerate(got)}
        n0 = next((n for n, it in enumerate(want) if it.intent_id in at), len(want) if not got else 0)
        g0 = at.get(want[n0].intent_id, 0) if n0 < len(want) else 0
        rep.skipped[service] = n0
        rep.compared[service] = len(want) - n0
        for n in range(n0, len(want)):   # replayed intents after the last recorded one came after the recording
            a = _key(want[n])
            j = g0 + n - n0
            b = _key(got[j]) if j < len(got) else None
            if a != b:
                rep.first[service] = Divergence(service, n, a, b)
                break
    lines = rec.taps.get("guard")
    if lines:
        approved = {m.intent_id for _, m in rec.stream(keys.ORDERS_APPROVED) if isinstance(m, OrderIntent)}
        vetoed = {m.intent_id for _, m in rec.stream(keys.ORDERS_EVENTS) if isinstance(m, OrderEvent) and m.kind == "veto"}
        segs = _segments(lines)
        got_v = [v for seg in segs for v in _replay_guard(seg)]
        judged = {iid for iid, _ in got_v}
        since = next((r["t"] for seg in segs for r in seg[1:2]), None)   # the guard's first tapped input
        before = {m.intent_id for _, m in rec.stream(keys.ORDERS_INTENTS)
                  if isinstance(m, OrderIntent) and since is not None and m.created_ms < since}
        approved -= before   # judged before the tap began: nothing to replay them from
        vetoed -= before
        rep.compared["guard"] = 0
        for n, (iid, verdict) in enumerate(got_v):
            want_v = "approve" if iid in approved else "veto" if iid in vetoed else None
            if want_v is None:
                continue   # judged live after the streams were read (or its verdict was never published)
            rep.compared["guard"] += 1
            if want_v != verdict:
                rep.first["guard"] = Divergence("guard", n, {"intent_id": iid, "verdict": want_v},
                                                {"intent_id": iid, "verdict": verdict})
                break
        missing = sorted((approved | vetoed) - judged)
        if missing and "guard" not in rep.first:
            rep.first["guard"] = Divergence("guard", -1, {"intent_id": missing[0], "verdict": "judged live"}, None)
    return rep
