"""JSON-lines logging with secret redaction.

Every secret the process loads is registered here; the filter replaces it with ``***`` in any
log record, so a careless ``log.info(token)`` cannot leak it (defence in depth: code never logs
secrets on purpose either).
"""
from __future__ import annotations

import logging
import sys
import time

import orjson

_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= 8:
        _SECRETS.add(value)
        if value.startswith("0x"):
            _SECRETS.add(value[2:])


def redact(text: str) -> str:
    for s in _SECRETS:
        if s in text:
            text = text.replace(s, "***")
    return text


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact(msg),
        }
        return orjson.dumps(doc).decode()


def setup(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "websockets", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
