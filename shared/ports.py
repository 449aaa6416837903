"""Listen ports: one parser for every port-like flag or variable, and a bind check made before a
process starts anything, so a bad or busy port is a one-line usage error (exit status 2), not a
traceback after Redis was reached.
"""
from __future__ import annotations

import argparse
import errno
import socket
from collections.abc import Mapping

MIN_PORT, MAX_PORT = 1, 65_535


def parse_port(text: str) -> int:
    """argparse ``type=``: an integer 1..65535 (argparse then reports ``argument --port: ...``)."""
    try:
        n = int(str(text).strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected an integer {MIN_PORT}..{MAX_PORT}") from None
    if not MIN_PORT <= n <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"invalid port {n}: must be {MIN_PORT}..{MAX_PORT}")
    return n


def env_port(env: Mapping[str, str], name: str = "PORT") -> int | None:
    """``$name`` as a port, ``None`` when unset or empty; ``ValueError("$PORT: ...")`` when bad."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return parse_port(raw)
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"${name}: {e}") from None


def _by(source: str) -> str:
    return f" (set by {source})" if source else ""


def bind_error(e: OSError, host: str, port: int, source: str = "") -> str:
    """``port 8084 on 0.0.0.0 is already in use (set by ports.guard)`` and the like, for an OSError
    from bind/listen; ``source`` names the flag, variable or config key that chose the port."""
    if e.errno == errno.EADDRINUSE:
        what = "is already in use"
    elif e.errno == errno.EACCES:
        what = "cannot be bound: permission denied"
    elif e.errno == errno.EADDRNOTAVAIL:
        what = "cannot be bound: the address is not on this host"
    else:
        what = f"cannot be bound: {e.strerror or e}"
    return f"port {port} on {host} {what}{_by(source)}"


def bind_problem(host: str, port: int, source: str = "", host_source: str = "") -> str | None:
    """Why ``host:port`` cannot be listened on now, or ``None``. Binds every address the host
    resolves to the way aiohttp/asyncio do (SO_REUSEADDR, IPv6 only on v6 sockets), then lets go."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        return f"cannot listen on host {host!r}: {getattr(e, 'strerror', None) or e}{_by(host_source)}"
    for family, kind, proto, _, addr in infos:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:  # e.g. no IPv6 on this host: asyncio skips it too
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as e:
                return bind_error(e, host, port, source)
    return None
