"""The core tap: every input a service's pure core receives, with the ``now_ms`` it was given, to a file.

Off unless ``LIGHTER_TAP_DIR`` names a directory. Then the maker, the hedger and the guard wrap
their core in ``TappedCore``: each ``handle``/``on_timer``/``shutdown`` call is appended (one JSON
line, flushed) to ``$LIGHTER_TAP_DIR/{service}.tap.jsonl`` before the core runs. Because a core
is deterministic given its inputs and their times, ``lighter-bot replay`` re-runs the same calls
and must produce the same intents and verdicts; the first difference is the bug or the
nondeterminism to look at. Secrets never reach a core, so none reach the tap (the settings in the
header exclude ``env``).

Line format (``TAP_VERSION`` 1): the first line is ``{"tap": 1, "service", "market_id",
"settings"}``; then ``{"t": now_ms, "k": "h" | "timer" | "shutdown", "e": event}`` where an
event is ``{"c": class name, "d": fields}`` (bus messages as their JSON model dump).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import IO, Any

import orjson

from shared.schemas import _BY_TYPE, Msg

TAP_VERSION = 1
TAP_ENV = "LIGHTER_TAP_DIR"
log = logging.getLogger("tap")


def _plain(v: Any) -> Any:
    if isinstance(v, Msg):
        return {"c": "msg", "d": orjson.loads(v.model_dump_json())}
    if isinstance(v, (frozenset, set)):
        return sorted(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def encode_event(ev: Any) -> dict[str, Any]:
    if isinstance(ev, Msg):
        return {"c": "msg", "d": orjson.loads(ev.model_dump_json())}
    if dataclasses.is_dataclass(ev):
        return {"c": type(ev).__name__, "d": {f.name: _plain(getattr(ev, f.name)) for f in dataclasses.fields(ev)}}
    raise TypeError(f"cannot tap {type(ev).__name__}")


def decode_msg(d: dict[str, Any]) -> Msg:
    return _BY_TYPE[d["type"]].model_validate(d)


def decode_event(e: dict[str, Any], classes: dict[str, type]) -> Any:
    """Back to the object the core was given; ``classes`` names the service's own event types."""
    if e["c"] == "msg":
        return decode_msg(e["d"])
    cls = classes[e["c"]]
    kw = {}
    for f in dataclasses.fields(cls):
        v = e["d"][f.name]
        if isinstance(v, dict) and v.get("c") == "msg":
            v = decode_msg(v["d"])
        elif f.name == "known_verdicts":
            v = frozenset(v)
        kw[f.name] = v
    return cls(**kw)


class Tap:
    """Append-only, line-flushed JSONL (0600: it is the whole trading history): a crash loses at most
    the line being written. Recording must never cost trading: a write that fails (disk full, the
    directory removed) is logged once and ends the tap; the core still gets every input."""

    def __init__(self, path: Path, service: str, market_id: int, settings: Any) -> None:
        self.path = path
        self.broken = False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.fh: IO[bytes] = os.fdopen(fd, "ab", buffering=0)
        header = {"tap": TAP_VERSION, "service": service, "market_id": market_id,
                  "settings": settings.model_dump(mode="json", exclude={"env"}), "pid": os.getpid()}
        self._write(orjson.dumps(header) + b"\n")

    def _write(self, line: bytes) -> None:
        if self.broken:
            return
        try:
            self.fh.write(line)
        except (OSError, ValueError) as e:   # ValueError: the file was closed under us
            self.broken = True
            log.error("core tap %s stopped (%s): trading goes on, this session can no longer be replayed",
                      self.path, type(e).__name__)

    def note(self, now_ms: int, kind: str, ev: Any = None) -> None:
        if self.broken:
            return
        rec: dict[str, Any] = {"t": now_ms, "k": kind}
        if ev is not None:
            try:
                rec["e"] = encode_event(ev)
            except (TypeError, ValueError) as e:   # an input the tap cannot encode: the tap ends, trading does not
                self.broken = True
                log.error("core tap %s stopped: cannot record %s (%s)", self.path, type(ev).__name__, e)
                return
        self._write(orjson.dumps(rec) + b"\n")


class TappedCore:
    """A core with every call recorded first; everything else passes through to the core."""

    def __init__(self, core: Any, tap: Tap) -> None:
        object.__setattr__(self, "_core", core)
        object.__setattr__(self, "_tap", tap)

    def handle(self, event: Any, now_ms: int) -> Any:
        self._tap.note(now_ms, "h", event)
        return self._core.handle(event, now_ms)

    def on_timer(self, now_ms: int) -> Any:
        self._tap.note(now_ms, "timer")
        return self._core.on_timer(now_ms)

    def shutdown(self, now_ms: int) -> Any:
        self._tap.note(now_ms, "shutdown")
        return self._core.shutdown(now_ms)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._core, name, value)


def tapped(core: Any, service: str, settings: Any, env: dict[str, str] | None = None) -> Any:
    """``core`` itself, or wrapped in a ``TappedCore`` when ``LIGHTER_TAP_DIR`` is set."""
    d = (os.environ if env is None else env).get(TAP_ENV, "")
    if not d:
        return core
    return TappedCore(core, Tap(Path(d) / f"{service}.tap.jsonl", service, settings.market_spec.market_id, settings))
