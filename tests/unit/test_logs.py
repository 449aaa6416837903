"""Log lines are one JSON object each, with the fields Railway's log explorer parses."""
from __future__ import annotations

import logging

import orjson

from shared import logs


def test_a_line_has_railways_message_and_level_and_no_secret() -> None:
    logs.register_secret("0xdeadbeefcafebabe1234")
    rec = logging.LogRecord("gateway", logging.WARNING, __file__, 1, "signed with %s", ("0xdeadbeefcafebabe1234",), None)
    doc = orjson.loads(logs.JsonFormatter("gateway").format(rec))
    assert doc["level"] == "warn" and doc["service"] == "gateway" and doc["logger"] == "gateway"
    assert "deadbeefcafebabe1234" not in doc["message"] and doc["message"].startswith("signed with ")
    assert doc["ts"].endswith("Z")
