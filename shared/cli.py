"""Command-line parsing shared by every service: bad input = one line on stderr, exit status 2."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from shared.ports import parse_port


class Parser(argparse.ArgumentParser):
    """argparse that reports an error in one line (no usage dump) and exits 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def fail(prog: str, message: str) -> NoReturn:
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(2)


def service_parser(name: str, description: str) -> Parser:
    p = Parser(prog=f"python -m services.{name}", description=description)
    p.add_argument("--config", help="config file (default: config.yaml, or $LIGHTER_BOT_CONFIG)")
    p.add_argument("--profile", help="market profile (default: the config's 'profile', or $LIGHTER_PROFILE)")
    p.add_argument("--port", type=parse_port, help="health/metrics port 1..65535 (default: $PORT, or ports.<service>)")
    p.add_argument("--host", default=None, help="health/metrics bind address (default 0.0.0.0, or $HEALTH_HOST)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p
