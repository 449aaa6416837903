#!/usr/bin/env python3
"""Scrape every service's ``/metrics`` and print the samples whose name contains a filter.

    python scripts/dump_metrics.py --filter portfolio_
    python scripts/dump_metrics.py --url http://127.0.0.1:8082/metrics --url http://10.0.0.5:8085/metrics

Default targets: feed, maker, hedger, guard and gateway on 127.0.0.1 at the ports in the config
(``ports:``), plus ``$PORT`` when set (inside a one-service Railway container the service listens
there). ``--url`` (repeatable) replaces them. A target that does not answer is reported on stderr
and skipped; the exit status is 1 only when none answered.
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python scripts/x.py` puts only scripts/ on the path
from scripts import _venv  # noqa: E402,F401 - first: re-runs under .venv when the packages are missing

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from scripts._common import ScriptError, parser, run
from shared.config import ConfigError, load_settings

PROG = "dump_metrics.py"
SERVICES = ("feed", "maker", "hedger", "guard", "gateway")


def default_targets(ports: dict[str, int], host: str, offset: int, env_port: str | None) -> list[tuple[str, str]]:
    targets = [(name, f"http://{host}:{ports[name] + offset}/metrics") for name in SERVICES]
    if env_port and env_port.isdigit() and int(env_port) not in {ports[n] + offset for n in SERVICES}:
        targets.append((f"port {env_port}", f"http://{host}:{env_port}/metrics"))
    return targets


def matching_samples(text: str, needle: str) -> list[str]:
    """``name{labels} value`` for every sample whose name contains ``needle`` (exposition order)."""
    out: list[str] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if needle in s.name:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out.append(f"{s.name}{{{labels}}} {s.value!r}" if labels else f"{s.name} {s.value!r}")
    return out


async def scrape(session: aiohttp.ClientSession, url: str, timeout_s: float) -> str:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
        if r.status != 200:
            raise ScriptError(f"HTTP {r.status}")
        return await r.text()


def main(argv: list[str] | None = None) -> None:
    p = parser(PROG, "Print the Prometheus samples of every service whose name contains --filter.")
    p.add_argument("--filter", default="", help="substring of the sample name, e.g. portfolio_ (default: all)")
    p.add_argument("--url", action="append", default=[], help="a /metrics URL to scrape instead of the defaults (repeatable)")
    p.add_argument("--config", default=None, help="config file for the ports (default config.yaml or $LIGHTER_BOT_CONFIG)")
    p.add_argument("--host", default="127.0.0.1", help="host of the default targets (default 127.0.0.1)")
    p.add_argument("--port-offset", type=int, default=0, help="as core.main --port-offset (default 0)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per target (default 3)")
    a = p.parse_args(argv)
    for u in a.url:
        if not u.startswith(("http://", "https://")):
            p.error(f"--url must be an http(s) URL, got {u!r}")
    if a.timeout <= 0:
        p.error("--timeout must be positive")
    if a.url:
        targets = [(u.split("//", 1)[1].split("/", 1)[0], u) for u in a.url]
    else:
        try:
            ports = load_settings(a.config or os.environ.get("LIGHTER_BOT_CONFIG"), env={}).ports
        except ConfigError as e:
            p.error(f"config error: {e}")
        targets = default_targets({n: getattr(ports, n) for n in SERVICES}, a.host, a.port_offset, os.environ.get("PORT"))

    async def go() -> int:
        width = max(len(name) for name, _ in targets)
        answered = 0
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(scrape(session, url, a.timeout) for _, url in targets), return_exceptions=True)
        for (name, url), res in zip(targets, results, strict=True):
            if isinstance(res, BaseException):
                why = str(res) if isinstance(res, ScriptError) else type(res).__name__
                sys.stderr.write(f"{PROG}: {name} {url}: no answer ({why})\n")
                continue
            answered += 1
            try:
                lines = matching_samples(res, a.filter)
            except ValueError as e:
                sys.stderr.write(f"{PROG}: {name} {url}: not Prometheus text ({e})\n")
                continue
            for line in lines:
                print(f"{name:<{width}}  {line}")
        if answered == 0:
            raise ScriptError("no target answered (is the system running? see docs/operations.md)")
        return 0

    run(PROG, go)


if __name__ == "__main__":
    main()
