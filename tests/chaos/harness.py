"""The whole system from the outside, for chaos and outage tests.

``python -m core.main`` exactly as ``make run`` starts it (own Redis, the local venue with its
``/admin`` API, the five services), observed only through public surfaces: every service's
``/health``, the venue's ``/admin/state`` (every order our account ever booked, trades, positions;
not rate-limited, so polling it never eats the account's REST budget the gateway needs), the
official SDK for our independent taker, and ``orders:events`` in Redis.

Children of the supervisor are found in ``/proc`` (their command lines name the module), so a
test can SIGKILL/SIGSTOP one service, or every process of the system at once.
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from lighter.signer_client import SignerClient, create_api_key
from redis.asyncio import Redis

from core.localenv import read_env_file
from shared.ids import source_of

REPO = Path(__file__).resolve().parent.parent.parent
SERVICES = ("feed", "maker", "hedger", "guard", "gateway")
BASE_PORTS = {"feed": 8081, "maker": 8082, "hedger": 8083, "guard": 8084, "gateway": 8085}
MARKET = 2            # SOL, the default profile
SIZE_SCALE = 1000     # SOL: 3 size decimals
PRICE_SCALE = 1000
LIVE = ("open", "pending", "in-progress")
# The synthetic ladder with small levels (~10 USD, 20 levels on the 0.6 bp grid, so some rest behind
# our ~10 bp quotes): the book keeps a stable two-sided top (the maker quotes around it as usual),
# but our taker can sweep the few lots in front of one of our quotes and so fill it, without
# emptying that side of the book. The venue's own takers keep trading (sweeps reach our quotes too).
THIN_LADDER = {"levels": 20, "level_notional_usd": 10}
SWEEP_LOTS = 8000       # what a taker IOC adds to our quote's size: more than the ladder in front of it


def port_offset() -> int:
    """A port offset whose whole range (6399, 8000, 8081-8085, 8700 + offset) is free right now."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(100):
        off = rng.randrange(1000, 21000)
        ports = [6399 + off, 8000 + off, 8700 + off, *(p + off for p in BASE_PORTS.values())]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return off
    raise RuntimeError("no free port range")


def lots(text: str | Decimal) -> int:
    return int(Decimal(str(text)) * SIZE_SCALE)


def ticks(text: str | Decimal) -> int:
    return int(Decimal(str(text)) * PRICE_SCALE)


def _proc_children() -> dict[int, list[int]]:
    """ppid -> child pids, from /proc."""
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        out.setdefault(ppid, []).append(int(d))
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2:].split()[0]


def descendants(pid: int) -> list[int]:
    tree = _proc_children()
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for c in tree.get(p, ()):
            out.append(c)
            todo.append(c)
    return out


class System:
    """One ``python -m core.main`` run on its own port range, own Redis and env file."""

    def __init__(self, d: Path, *, venue: bool = True, base_url: str | None = None, max_restarts: int = 1000,
                 model: str = "calm", seed: int | None = None, env_lines: Iterable[str] = (),
                 extra_env: dict[str, str] | None = None, off: int | None = None) -> None:
        self.dir = d
        self.off = port_offset() if off is None else off
        self.env_file = d / ".env.local"
        self.log = d / "system.log"
        self.venue = venue
        self.base_url = base_url or f"http://127.0.0.1:{8700 + self.off}"
        self.redis_url = f"redis://127.0.0.1:{6399 + self.off}/0"
        argv = [sys.executable, "-m", "core.main", "--port-offset", str(self.off), "--env-file", str(self.env_file),
                "--max-restarts", str(max_restarts)]
        if venue:
            argv += ["--venue-admin", "--model", model]
            if seed is not None:
                argv += ["--seed", str(seed)]
        else:
            argv.append("--no-venue")
        data = REPO / "var" / f"redis-{6399 + self.off}"   # core.main's Redis dir for this offset: start clean
        shutil.rmtree(data, ignore_errors=True)
        self.redis_dir = data
        lines = list(env_lines)
        if lines:
            fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("".join(line + "\n" for line in lines))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTER_", "VENUE_", "WS_AUTH"))}
        env.pop("REDIS_URL", None)
        env.pop("PORT", None)
        env.update(extra_env or {})
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.env_file.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"no env file from core.main\n{self.tail()}")
            time.sleep(0.05)
        self.env = read_env_file(self.env_file)
        self.account = int(self.env["LIGHTER_ACCOUNT_INDEX"])
        self.key_index = int(self.env["LIGHTER_API_KEY_INDEX"])

    def port(self, name: str) -> int:
        return (8000 if name == "aggregate" else BASE_PORTS[name]) + self.off

    def tail(self, n: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # --- processes ----------------------------------------------------------------------------------
    def children(self) -> dict[str, int]:
        """Service name -> pid of the supervisor's live child running it (venue and redis too)."""
        out: dict[str, int] = {}
        for pid in _proc_children().get(self.proc.pid, ()):
            argv = _cmdline(pid)
            if _state(pid) in ("Z", "X", ""):
                continue
            if "-m" in argv:
                mod = argv[argv.index("-m") + 1]
                if mod.startswith("services."):
                    out[mod.removeprefix("services.")] = pid
            elif argv and argv[0].endswith("redis-server"):
                out["redis"] = pid
        return out

    def signal(self, name: str, sig: int) -> int:
        pid = self.children()[name]
        os.kill(pid, sig)
        return pid

    def kill_everything(self) -> list[int]:
        """SIGKILL the supervisor and every process under it at once. The supervisor's process group
        alone is not enough: each child runs in its own session (so a terminal's Ctrl-C reaches only
        the supervisor) and would get PDEATHSIG's SIGTERM (a graceful stop, the gateway's cancel-all)
        when the supervisor dies first. So the children are killed first, then the group."""
        pids = descendants(self.proc.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.killpg(self.proc.pid, signal.SIGKILL)   # Popen(start_new_session=True): its own group
        self.proc.wait(timeout=10)
        return [self.proc.pid, *pids]

    def __enter__(self) -> "System":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM (the gateway cancels everything), then SIGKILL whatever is left."""
        if self.proc.poll() is None:
            for pid in descendants(self.proc.pid):   # nothing may stay stopped
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        left = descendants(self.proc.pid) if self.proc.poll() is None else []
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.redis_dir, ignore_errors=True)
        return self.proc.returncode


@dataclass
class Health:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body.get("state", "ok") == "ok"


class Observer:
    """Public views of one running system: /health, the venue's admin API, orders:events."""

    def __init__(self, system: System, session: aiohttp.ClientSession) -> None:
        self.sys = system
        self.s = session
        self.admin = system.base_url + "/admin"
        self.redis = Redis.from_url(system.redis_url)
        self.booked: dict[int, int] = {}          # our order_index -> client_order_index, every order ever seen
        self.by_coi: dict[int, set[int]] = {}     # client_order_index -> order indexes (2+ = a duplicate)

    async def close(self) -> None:
        await self.redis.aclose()

    async def health(self, name: str, timeout: float = 2.0) -> Health:
        try:
            async with self.s.get(f"http://127.0.0.1:{self.sys.port(name)}/health",
                                  timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                body = await r.json(content_type=None)
                return Health(r.status, body if isinstance(body, dict) else {})
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return Health(0, {})

    async def healths(self, names: Iterable[str] = SERVICES) -> dict[str, Health]:
        names = list(names)
        return dict(zip(names, await asyncio.gather(*(self.health(n) for n in names))))

    async def wait_healthy(self, names: Iterable[str] = SERVICES, timeout: float = 90) -> dict[str, Health]:
        names = list(names)
        deadline = time.monotonic() + timeout
        while True:
            hs = await self.healths(names)
            if all(h.ok for h in hs.values()):
                return hs
            if time.monotonic() > deadline or self.sys.proc.poll() is not None:
                bad = {n: (h.status, h.body.get("state"), h.body.get("reason")) for n, h in hs.items() if not h.ok}
                raise AssertionError(f"not healthy after {timeout} s: {bad}\n{self.sys.tail()}")
            await asyncio.sleep(0.2)

    # --- venue admin ------------------------------------------------------------------------------------
    async def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        for attempt in range(50):
            try:
                async with self.s.request(method, self.admin + path, data=orjson.dumps(body) if body is not None else None,
                                          timeout=aiohttp.ClientTimeout(total=10)) as r:
                    data = await r.json(content_type=None)
                    assert r.status == 200, f"{method} {path}: {r.status} {data}"
                    return data
            except (aiohttp.ClientError, asyncio.TimeoutError):
                if attempt == 49:
                    raise
                await asyncio.sleep(0.2)

    async def state(self) -> dict[str, Any]:
        st = await self._admin("GET", "/state")
        for o in st["orders"]:
            if o["owner_account_index"] == self.sys.account:
                oi, coi = int(o["order_index"]), int(o["client_order_index"])
                if oi not in self.booked:
                    self.booked[oi] = coi
                    self.by_coi.setdefault(coi, set()).add(oi)
        return st

    async def fault(self, **body: Any) -> Any:
        return await self._admin("POST", "/fault", body)

    async def clear_faults(self) -> Any:
        return await self._admin("DELETE", "/fault")

    async def venue_now_ms(self) -> int:
        return int((await self._admin("GET", "/clock"))["now_ms"])

    async def advance_clock(self, ms: int) -> Any:
        return await self._admin("POST", "/clock", {"advance_ms": ms})

    async def set_model(self, model: str = "calm", **params: float) -> Any:
        return await self._admin("POST", "/model", {"market_id": MARKET, "model": model, **params})

    async def thin_ladder(self, timeout: float = 30) -> None:
        """Switch the synthetic ladder to ``THIN_LADDER`` and wait (on the feed's ``book:2``) until the
        old big levels are gone: every level re-placed at once, then the usual refresh rate."""
        await self.set_model("calm", **THIN_LADDER, refresh_prob=1.0)
        deadline = time.monotonic() + timeout
        while True:
            raw = await self.redis.get(f"book:{MARKET}")
            book = orjson.loads(raw) if raw else {"bids": [], "asks": []}
            ours = {int(q.get("price") or 0) for q in (await self.health("maker")).body.get("quotes") or []}
            depth = [sz for side in ("bids", "asks") for px, sz in book[side][:4] if px not in ours]
            if depth and max(depth) <= 400:
                break
            assert time.monotonic() < deadline, f"the synthetic ladder did not thin: {book}"
            await asyncio.sleep(0.2)
        await self.set_model("calm", **THIN_LADDER)

    async def add_account(self, key_index: int, public_key: str, collateral: str = "1000000",
                          tier: str = "premium") -> int:
        res = await self._admin("POST", "/accounts", {"api_key_index": key_index, "public_key": public_key,
                                                       "collateral": collateral, "tier": tier})
        return int(res["account_index"])

    # --- what the venue holds for us ----------------------------------------------------------------------
    def ours(self, st: dict[str, Any]) -> list[dict[str, Any]]:
        return [o for o in st["orders"] if o["owner_account_index"] == self.sys.account]

    def resting(self, st: dict[str, Any]) -> list[dict[str, Any]]:
        return [o for o in self.ours(st) if o["status"] in LIVE and o["market_index"] == MARKET]

    def position(self, st: dict[str, Any], account: int | None = None) -> int:
        acct = st["accounts"].get(str(self.sys.account if account is None else account), {})
        pos = acct.get("positions", {}).get(str(MARKET))
        return lots(pos["size"]) if pos else 0

    def our_trades(self, st: dict[str, Any]) -> list[dict[str, Any]]:
        a = self.sys.account
        return [t for t in st["trades"] if a in (t["ask_account_id"], t["bid_account_id"]) and t["market_id"] == MARKET]

    def duplicates(self) -> dict[int, set[int]]:
        """Client order indexes the venue booked more than once (ever, across every state read)."""
        return {c: ois for c, ois in self.by_coi.items() if len(ois) > 1}

    # --- orders:events ------------------------------------------------------------------------------------
    async def events(self, since_ms: int, until_ms: int | None = None) -> list[dict[str, Any]]:
        end = f"{until_ms}-18446744073709551615" if until_ms is not None else "+"
        out = []
        for _id, fields in await self.redis.xrange("orders:events", f"{since_ms}-0", end):
            try:
                d = orjson.loads(fields[b"d"])
            except (KeyError, orjson.JSONDecodeError):
                continue
            d["_id"] = _id.decode()
            out.append(d)
        return out

    async def vetoes(self, since_ms: int, until_ms: int | None = None) -> list[dict[str, Any]]:
        return [e for e in await self.events(since_ms, until_ms) if e.get("kind") == "veto"]


@asynccontextmanager
async def observing(sysm: System) -> AsyncIterator[Observer]:
    """An Observer on a healthy system, closed after."""
    async with aiohttp.ClientSession() as s:
        obs = Observer(sysm, s)
        try:
            await obs.wait_healthy()
            yield obs
        finally:
            await obs.close()


def merge_config(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``a`` with ``b`` laid over it, nested sections key by key."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def configured_system(d: Path, overrides: dict[str, Any], *, extra_env: dict[str, str] | None = None,
                      **kw: Any) -> System:
    """A System on the repo's config.yaml with ``overrides`` merged in, written to ``d/config.yaml``."""
    cfg = merge_config(yaml.safe_load((REPO / "config.yaml").read_text()), overrides)
    path = d / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return System(d, extra_env={"LIGHTER_BOT_CONFIG": str(path), **(extra_env or {})}, **kw)


@dataclass
class Check:
    """One look at the venue and the four ledgers, judged."""

    venue_position: int
    positions: dict[str, int | None]
    resting: list[dict[str, Any]]
    orphans: list[int]
    duplicates: dict[int, set[int]]
    healths: dict[str, Health] = field(repr=False, default_factory=dict)

    @property
    def mismatched(self) -> dict[str, int | None]:
        return {n: p for n, p in self.positions.items() if p != self.venue_position}

    @property
    def ok(self) -> bool:
        """Converged: no orphan, every position the venue's (duplicates are judged by the caller:
        one ever booked stays booked, so it cannot converge away)."""
        return not self.orphans and not self.mismatched

    def why(self) -> str:
        parts = []
        if self.orphans:
            parts.append(f"orphans {self.orphans}")
        if self.duplicates:
            parts.append(f"duplicates {self.duplicates}")
        if self.mismatched:
            parts.append(f"positions {self.positions} vs venue {self.venue_position}")
        return "; ".join(parts) or "ok"


def tracked(h: dict[str, Health]) -> set[int]:
    """Orders the system says it has resting on purpose: the maker's quotes and the hedger's clip."""
    out: set[int] = set()
    for q in h["maker"].body.get("quotes") or []:
        out.add(int(q["coi"]))
    clip = h["hedger"].body.get("clip")
    if clip:
        out.add(int(clip["coi"]))
    return out


async def check(obs: Observer) -> Check:
    """Venue state between two reads of the maker's and hedger's health: an order counts as ours on
    purpose if either read names it (a requote between the reads is no orphan); positions must agree
    with the venue on a state read with no fill around it."""
    before = await obs.healths()
    st = await obs.state()
    after = await obs.healths(("maker", "hedger"))
    st2 = await obs.state()
    ok_ids = tracked(before) | tracked({**before, **after})
    resting = obs.resting(st)
    orphans = sorted(int(o["client_order_index"]) for o in resting if int(o["client_order_index"]) not in ok_ids)
    vp, vp2 = obs.position(st), obs.position(st2)
    positions: dict[str, int | None] = {}
    for n in ("maker", "hedger", "guard", "gateway"):
        led = before[n].body.get("ledger") or {}
        positions[n] = led.get("position") if led.get("position_known", True) else None
    if vp != vp2:   # a fill between the reads: judge positions on the next look
        positions = {n: None for n in positions}
    return Check(vp, positions, resting, orphans, obs.duplicates(), before)


def describe(c: Check, coi: int) -> dict[str, Any]:
    """An order of ours at the venue and what each ledger says of it (for reports)."""
    o = next((o for o in c.resting if int(o["client_order_index"]) == coi), {})
    known = {}
    for n, h in c.healths.items():
        led = h.body.get("ledger") or {}
        known[n] = "open" if coi in (led.get("open") or []) else "maybe_open" if coi in (led.get("maybe_open") or []) else "-"
    return {"coi": coi, "source": source_of(coi), "side": "ask" if o.get("is_ask") else "bid", "price": o.get("price"),
            "remaining": o.get("remaining_base_amount"), "status": o.get("status"), "created_at": o.get("created_at"),
            "ledgers": known}


async def converge(obs: Observer, deadline_s: float) -> tuple[Check, float, dict[int, dict[str, Any]]]:
    """Poll until a check passes or ``deadline_s`` passes; the last check, the time it took, and the
    orphans seen on the way (coi -> when first and last seen, and what the ledgers said)."""
    t0 = time.monotonic()
    seen: dict[int, dict[str, Any]] = {}
    while True:
        c = await check(obs)
        t = time.monotonic() - t0
        for coi in c.orphans:
            rec = seen.setdefault(coi, {"first_s": round(t, 2), **describe(c, coi)})
            rec["last_s"] = round(t, 2)
        if c.ok or t > deadline_s:
            return c, t, seen
        await asyncio.sleep(0.1)


async def two_sided(obs: Observer, timeout: float = 60) -> list[dict[str, Any]]:
    """Wait until a maker bid and a maker ask rest at the venue."""
    deadline = time.monotonic() + timeout
    while True:
        st = await obs.state()
        mk = [o for o in obs.resting(st) if source_of(int(o["client_order_index"])) == "maker"]
        if any(o["is_ask"] for o in mk) and any(not o["is_ask"] for o in mk):
            return mk
        assert time.monotonic() < deadline, f"no two-sided maker quotes within {timeout} s\n{obs.sys.tail()}"
        await asyncio.sleep(0.2)


async def settled(obs: Observer, timeout: float = 45) -> dict[str, Any]:
    """The end state every outage test asks for: the system holds exactly the venue's orders, fills
    and position, and keeps quoting. Polls until, on two state reads with nothing changed between:

    - a maker bid and a maker ask rest at the venue;
    - the gateway's and the guard's ledgers list exactly our resting orders as open (nothing "maybe"),
      the maker's and hedger's ledgers exactly their own;
    - the guard's worst-case exposure per side is the venue's remaining size on that side;
    - every ledger's position is the venue's, and its fill count the venue's trade count for us.
    """
    deadline = time.monotonic() + timeout
    while True:
        hs = await obs.healths()
        st = await obs.state()
        st2 = await obs.state()
        resting = {int(o["client_order_index"]): o for o in obs.resting(st)}
        pos, trades = obs.position(st), len(obs.our_trades(st))
        problems: list[str] = []
        if set(resting) != {int(o["client_order_index"]) for o in obs.resting(st2)} or pos != obs.position(st2):
            problems.append("the venue changed between two reads")
        mk = [o for c, o in resting.items() if source_of(c) == "maker"]
        if not (any(o["is_ask"] for o in mk) and any(not o["is_ask"] for o in mk)):
            problems.append(f"maker not two-sided at the venue: {[('ask' if o['is_ask'] else 'bid') for o in mk]}")
        for name, src in (("gateway", None), ("guard", None), ("maker", "maker"), ("hedger", "hedger")):
            led = hs[name].body.get("ledger") or {}
            want = {c for c in resting if src is None or source_of(c) == src}
            if set(led.get("open") or []) != want or led.get("maybe_open"):
                problems.append(f"{name} ledger open {led.get('open')} maybe {led.get('maybe_open')} vs venue {sorted(want)}")
            if led.get("position") != pos:
                problems.append(f"{name} position {led.get('position')} vs venue {pos}")
            if led.get("fills") != trades:
                problems.append(f"{name} fills {led.get('fills')} vs venue {trades}")
        g = hs["guard"].body.get("ledger") or {}
        for side, is_ask in (("bid", False), ("ask", True)):
            venue_lots = sum(lots(o["remaining_base_amount"]) for o in resting.values() if o["is_ask"] == is_ask)
            if g.get(f"exposure_{side}") != venue_lots:
                problems.append(f"guard exposure_{side} {g.get(f'exposure_{side}')} vs venue {venue_lots}")
        if not problems:
            return {"resting": resting, "position": pos, "trades": trades, "healths": hs}
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled after {timeout} s: {problems}\n{obs.sys.tail(3000)}")
        await asyncio.sleep(0.2)


async def no_veto_storm(obs: Observer, window_s: float = 5.0, limit: int = 5) -> int:
    """Count the vetoes on orders:events in the next ``window_s``; fewer than ``limit`` or fail."""
    t0 = now_ms()
    end = time.monotonic() + window_s
    while time.monotonic() < end:
        await asyncio.sleep(0.2)
    vetoes = await obs.vetoes(t0, now_ms())
    assert len(vetoes) < limit, f"veto storm: {len(vetoes)} in {window_s} s: {[v.get('message') for v in vetoes]}"
    return len(vetoes)


class Taker:
    """An independent funded account on the venue, trading through the official SDK."""

    def __init__(self, client: SignerClient, account: int, key: int) -> None:
        self.client, self.account, self.key = client, account, key
        self.sent = 0
        self.errors: list[str] = []
        self._coi = int(time.time())   # plain small indexes: source_of() reads them as foreign

    @classmethod
    async def create(cls, obs: Observer, key: int = 3) -> "Taker":
        priv, pub, err = create_api_key()
        assert err is None, err
        account = await obs.add_account(key, pub.removeprefix("0x"))
        client = SignerClient(url=obs.sys.base_url, account_index=account, api_private_keys={key: priv}, chain_id=304)
        return cls(client, account, key)

    async def close(self) -> None:
        await self.client.close()

    async def ioc(self, is_ask: bool, price: int, size: int) -> str | None:
        """An IOC limit order (sell if ``is_ask``); None when the venue accepted it, else the error."""
        self._coi += 1
        try:
            _tx, resp, err = await self.client.create_order(
                MARKET, self._coi, size, price, is_ask, SignerClient.ORDER_TYPE_LIMIT,
                SignerClient.ORDER_TIME_IN_FORCE_IMMEDIATE_OR_CANCEL, False, order_expiry=0)
        except Exception as e:  # noqa: BLE001 - reported, never fatal to the taker
            err = f"{type(e).__name__}: {e}"
            resp = None
        self.sent += 1
        if err is None and resp is not None and getattr(resp, "code", 200) != 200:
            err = f"code {resp.code}: {resp.message}"
        if err is not None:
            self.errors.append(str(err)[:200])
        return None if err is None else str(err)

    async def hit(self, quote: dict[str, Any], size: int | None = None, sweep: int = SWEEP_LOTS) -> str | None:
        """Trade against one of our resting quotes: an IOC at its price, big enough to take the few
        synthetic lots ahead of it (``sweep``) and the quote (or ``size`` for a partial fill when the
        quote is the best price)."""
        price = ticks(quote["price"])
        want = lots(quote["remaining_base_amount"]) + sweep if size is None else size
        return await self.ioc(not quote["is_ask"], price, want)


async def taker_loop(obs: Observer, taker: Taker, rng: random.Random, paused: asyncio.Event,
                     interval: tuple[float, float] = (1.0, 2.0)) -> None:
    """Every ~1.5 s (the venue rate-limits), cross one of our resting maker quotes, on the side that
    brings our position back toward zero. Skips while ``paused`` is set (fault injection)."""
    while True:
        await asyncio.sleep(rng.uniform(*interval))
        if paused.is_set():
            continue
        try:
            st = await obs.state()
        except Exception:  # noqa: BLE001 - the venue is up for the whole test; a slow read is skipped
            continue
        quotes = [o for o in obs.resting(st) if source_of(int(o["client_order_index"])) == "maker"]
        if not quotes or paused.is_set():
            continue
        pos = obs.position(st)
        # long: take our ask (we sell); short: take our bid; flat: either
        prefer = [o for o in quotes if o["is_ask"] == (pos > 0)] if pos else quotes
        await taker.hit(rng.choice(prefer or quotes))


def hold(pid: int) -> None:
    """SIGSTOP a process (a hung service: the supervisor sees nothing wrong)."""
    os.kill(pid, signal.SIGSTOP)


def release(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def until(what: str, fn: Any, timeout: float = 20.0, every: float = 0.05) -> Any:
    """Poll the coroutine function ``fn`` until it returns something true (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        v = await fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(every)


__all__ = ["Check", "Health", "Observer", "SERVICES", "System", "Taker", "THIN_LADDER", "check", "converge",
           "hold", "lots", "no_veto_storm", "now_ms", "release", "settled", "taker_loop", "ticks", "tracked",
           "two_sided", "until"]
