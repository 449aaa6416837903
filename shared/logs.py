"""JSON-lines logging with secret redaction.

Every secret the process loads is registered here; the filter replaces it with ``***`` in any
log record, so a careless ``log.info(token)`` cannot leak it (defence in depth: code never logs
secrets on purpose either).
"""
from __future__ import annotations

import logging
import os
import re
import sys
import time
from urllib.parse import unquote, urlsplit

import orjson

_SECRETS: set[str] = set()
# user:password@ in any URL (REDIS_URL carries the service's Redis ACL password)
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE)


def register_secret(value: str | None) -> None:
    if value and len(value) >= 8:
        _SECRETS.add(value)
        if value.startswith("0x"):
            _SECRETS.add(value[2:])


def register_url_secret(url: str | None) -> None:
    """Register the password of a URL such as ``redis://maker:<password>@host:port/0``."""
    try:
        password = urlsplit(url).password if url else None
    except ValueError:
        return
    if password:
        register_secret(password)
        register_secret(unquote(password))


def redact(text: str) -> str:
    for s in _SECRETS:
        if s in text:
            text = text.replace(s, "***")
    if "@" in text:
        text = _URL_CREDENTIALS.sub(r"\1***@", text)
    return text


RAILWAY_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
                  logging.CRITICAL: "error"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        # Railway's log explorer reads "message" as the line and "level" (debug/info/warn/error) as its
        # severity; every other field is an attribute to filter on (@service:maker, @logger:gateway)
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": RAILWAY_LEVELS.get(record.levelno, "info"),
            "service": self.service,
            "logger": record.name,
            "message": redact(msg),
        }
        return orjson.dumps(doc).decode()


def setup(service: str, level: str = "INFO") -> None:
    register_url_secret(os.environ.get("REDIS_URL"))   # the service's own Redis password
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "websockets", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
