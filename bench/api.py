#!/usr/bin/env python
"""The HTTP API under load: ``regul serve`` on PostgreSQL, 50 clients on loopback.

A fresh PostgreSQL schema (database ``test``) is migrated and given the demo directory by
``regul init --demo`` (``REGUL_DATABASE_URL`` with ``options=-csearch_path``); ``--cases``
ECMO cases are opened through the engine's ``Runner`` in this process for the 102 demo
hospitals of every region and escalated once by the hospital, so that each waits in
``umac_review``; one API token is issued (``engine.accounts.Accounts.issue_token``) for each
UMAC and ARS regulator. Then ``regul serve --no-worker`` runs as a subprocess on a free port
of 127.0.0.1 (``REGUL_NOTICES`` as given by ``--notices``, default on: the server's default).

The load generator is a separate process (this script with ``--load-child``): one asyncio
event loop and ``--clients`` tasks, each with its own HTTP/1.1 keep-alive connection written
on asyncio streams (``--client raw``, the default: about 0.1 ms of CPU per request, where one
``httpx.AsyncClient`` shared by 50 tasks, ``--client httpx``, took about 4 ms and so a good
part of the two cores the server needs). Each task takes a case no other task holds and loops: ``GET
/api/v1/cases/{ref}`` with the token of the regulator whose level holds the case (a read; it
keeps the ETag), and after every ``--fire-every``-th read ``POST
/api/v1/cases/{ref}/triggers/escalate`` with ``If-Match`` (a transition): the zone's UMAC
takes the case from ``umac_review`` to ``ars_regulation``, the region's ARS to
``national_regulation``, the top of the ladder; the task then takes the next case. Every
request is timed from just before it is sent to the end of its answer; requests that start
during the measured window (``--seconds``, after ``--warmup`` s) count for the latencies,
those that end in it for the rates. Every status is counted (a 412 would be two clients on
one case; none should occur). Three phases, on the same server, one after the other:

- ``single``: one client, no think time: the latency of a request alone, the floor;
- ``closed``: no think time, each client sends its next request as soon as it has an answer:
  the server's saturation throughput, and latency ≈ clients / throughput (Little's law);
- ``paced``: after every answer a client waits ``--think`` s on average (uniform over 0.5x to
  1.5x): 50 regulators working at a human pace, the load the targets speak of.

CPU of the server process, of the load generator and of the whole machine is read from
``/proc`` at both ends of each window; the server's PostgreSQL sessions are sampled from
``pg_stat_activity`` every 20 ms (by the application_name its URL gives them). In
the same run, before the server starts, the core benchmark's in-process rate is measured on
PostgreSQL (``bench/transitions.py``'s ``run_engine``: open + escalate x3 + resolve per case,
one committed command each), with notices off (the core benchmark) and on (as the server
runs); the ratio is HTTP transitions/s (closed loop) over that rate. Afterwards the audit log
is checked: one ``transition`` event per 200 answer to a POST, one ``read`` event per 200
answer to a GET, and ``engine.audit.verify`` over the whole log.

    .venv/bin/python bench/api.py                 # the default run (about 4.5 minutes)
    .venv/bin/python bench/api.py --json > api.json
    .venv/bin/python bench/api.py --seconds 10 --cases 2000 --rate-repeat 1   # a quick look
    .venv/bin/python bench/api.py --phases paced --think 0.25                 # a heavier pace
    .venv/bin/python bench/api.py --profile --phases closed --seconds 20      # where time goes

``--profile`` serves the same application from this script under cProfile (every thread,
CPU time) instead of ``regul serve``, skips the in-process rates, and prints the server's own
time by library and its request path by cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import _core  # this folder is still first on sys.path here

_core.repository_first()

core = _core.load_core_bench()

import sqlalchemy as sa  # noqa: E402

from engine import audit  # noqa: E402
from engine.accounts import Accounts  # noqa: E402
from engine.clock import SystemClock  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.decisions import Rules  # noqa: E402
from engine.runner import Runner  # noqa: E402
from workflows import default_registry  # noqa: E402

CONFIRMS = Rules(hospital_confirms=True)  # the benches time the hospital's confirm step

REGUL = Path(sys.executable).parent / "regul"
KIND = "ecmo"
FIELDS = core.OPEN_FIELDS[KIND]
READ_P99_MS, TRANSITION_P99_MS = 50.0, 100.0  # the issue's targets
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENTS = {
    "raw": "a keep-alive asyncio connection each",
    "httpx": "one shared httpx.AsyncClient",
}
log = core.log


# -- the database: a schema of its own, migrated by `regul init --demo` ----------------------


class Schema:
    """A PostgreSQL schema for this run, dropped at the end."""

    def __init__(self, pg_url: str) -> None:
        self.name = f"regul_api_{os.getpid()}"
        self.admin = sa.create_engine(Database(pg_url).url, poolclass=sa.pool.NullPool)
        with self.admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {self.name} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {self.name}"))
        sep = "&" if "?" in pg_url else "?"
        self.url = f"{pg_url}{sep}options=-csearch_path%3D{self.name}"

    @property
    def server_url(self) -> str:
        """The server's URL: its connections carry an application_name of their own."""
        return f"{self.url}&application_name={self.name}"

    def watch_sessions(self, stop: threading.Event, interval: float = 0.02) -> dict[str, int]:
        """Until ``stop``: the server's PostgreSQL sessions, sampled from pg_stat_activity.

        ``opened``: sessions seen that were not there at the start (a session that opens and
        closes between two samples is missed: a lower bound); ``most``: the most at once.
        """
        query = sa.text(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = :name"
        )
        seen: set[tuple[int, Any]] = set()
        first: set[tuple[int, Any]] | None = None
        most = 0
        with self.admin.connect() as conn:
            while True:
                rows = {(r.pid, r.backend_start) for r in conn.execute(query, {"name": self.name})}
                conn.rollback()
                first = rows if first is None else first
                seen |= rows
                most = max(most, len(rows))
                if stop.wait(interval):
                    break
        return {"opened": len(seen - first), "most": most}

    def drop(self) -> None:
        with self.admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {self.name} CASCADE"))
        self.admin.dispose()


def regul_env(url: str, notices: bool, work_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGUL_")}
    env.update(
        {
            "REGUL_DATABASE_URL": url,
            "REGUL_NOTICES": "true" if notices else "false",
            "REGUL_EML_DIR": str(work_dir / "outbox"),
            "COLUMNS": "200",
        }
    )
    return env


def init_demo(url: str, work_dir: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(REGUL), "init", "--demo", "--json"],
        env=regul_env(url, False, work_dir),
        cwd=work_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"regul init --demo failed:\n{done.stdout}\n{done.stderr}")
    return dict(json.loads(done.stdout))


def regulators(db: Database) -> list[dict[str, str]]:
    """Each demo hospital with its establishment user, its zone's UMAC and its region's ARS."""
    query = sa.text(
        "SELECT h.id, e.login AS etab, um.login AS umac, ar.login AS ars "
        "FROM organisation h "
        "JOIN regul_user e ON e.org = h.id AND e.role = 'establishment' AND e.active "
        "JOIN organisation uo ON uo.kind = 'umac' AND uo.zone = h.zone "
        "JOIN regul_user um ON um.org = uo.id AND um.role = 'umac' AND um.active "
        "JOIN organisation ao ON ao.kind = 'ars' AND ao.region = h.region "
        "JOIN regul_user ar ON ar.org = ao.id AND ar.role = 'ars' AND ar.active "
        "WHERE h.kind = 'hospital' ORDER BY h.id"
    )
    with db.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    # one user per organisation in the demo directory: keep the first of any duplicate
    seen: dict[str, dict[str, str]] = {}
    for row in rows:
        seen.setdefault(row["id"], row)
    return list(seen.values())


def seed(db: Database, hospitals: list[dict[str, str]], count: int) -> list[tuple[str, str]]:
    """``count`` ECMO cases opened and escalated to ``umac_review`` by their hospitals."""
    runner = Runner(db, default_registry(), SystemClock(), rules=CONFIRMS)  # notices off: set-up
    cases = []
    for i in range(count):
        h = hospitals[i % len(hospitals)]
        fields = dict(FIELDS, patient_ref=f"PAT-{i:06d}")
        ref = runner.open_case(kind=KIND, login=h["etab"], org=h["id"], fields=fields).reference
        runner.advance(reference=ref, trigger="escalate", login=h["etab"], reason="bench set-up")
        cases.append((ref, h["id"]))
    return cases


def issue_tokens(db: Database, logins: set[str]) -> dict[str, str]:
    accounts = Accounts(db, SystemClock())
    return {login: accounts.issue_token(login, label="bench-api")[0] for login in sorted(logins)}


# -- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``regul serve --no-worker`` on 127.0.0.1, its output in files."""

    def __init__(
        self,
        url: str,
        notices: bool,
        work_dir: Path,
        token: str,
        profile: Path | None = None,
        workers: int = 1,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.err_path = work_dir / "serve.err"
        self.out = (work_dir / "serve.out").open("wb")
        self.err = self.err_path.open("wb")
        command = [str(REGUL), "serve", "--no-worker", "--port", str(self.port)]
        if workers > 1:
            command += ["--workers", str(workers)]
        if profile is not None:  # the same application, every thread under cProfile
            here = str(Path(__file__).resolve())
            command = [sys.executable, here, "--serve-profiled", f"{self.port}:{profile}"]
        self.popen = subprocess.Popen(
            command,
            env=regul_env(url, notices, work_dir),
            cwd=work_dir,
            stdin=subprocess.DEVNULL,
            stdout=self.out,
            stderr=self.err,
        )
        self.startup_s = self._wait(token)

    def _wait(self, token: str, limit: float = 60.0) -> float:
        import httpx

        began = time.perf_counter()
        while time.perf_counter() - began < limit:
            if self.popen.poll() is not None:
                raise RuntimeError(f"regul serve exited {self.popen.returncode}:\n{self.stderr()}")
            try:
                answer = httpx.get(
                    f"{self.base}/api/v1/me",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=2,
                )
                if answer.status_code == 200:
                    return time.perf_counter() - began
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"regul serve did not answer within {limit} s:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on SIGINT
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=30)
        self.out.close()
        self.err.close()
        return self.popen.returncode


def serve_profiled(port: int, out: str) -> int:
    """What ``regul serve --no-worker`` runs, with a cProfile in every thread; stats to ``out``.

    ``threading.setprofile`` hands each new thread (anyio's workers run the sync routes) a
    hook whose first call starts a ``cProfile.Profile`` of its own; at shutdown all are merged.
    The timer is the thread's CPU time: with forty threads taking turns at the GIL, wall time
    would charge each function for the time other threads held it.
    """
    import cProfile
    import pstats
    import threading

    import uvicorn

    from interfaces.app import build_app
    from interfaces.web import create_web

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start(*_: Any) -> None:
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        profile.enable()  # replaces this hook for the thread

    app = build_app(hospital_confirms_request=True)
    web = create_web(app, app.accounts)
    threading.setprofile(start)
    main_profile = cProfile.Profile(time.thread_time)
    profiles.append(main_profile)
    main_profile.enable()
    try:
        uvicorn.run(web, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    finally:
        main_profile.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        with lock:
            stats = pstats.Stats(profiles[0])
            for profile in profiles[1:]:
                stats.add(profile)
        stats.dump_stats(out)
        app.db.dispose()
    return 0


GROUPS = (  # where a function's own time is counted, by the path of its file
    ("h11/", "uvicorn + h11 (HTTP)"),
    ("uvicorn/", "uvicorn + h11 (HTTP)"),
    ("starlette/", "starlette + fastapi"),
    ("fastapi/", "starlette + fastapi"),
    ("pydantic", "pydantic"),
    ("anyio/", "anyio (threadpool)"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("psycopg", "psycopg (driver, waits on PostgreSQL)"),
    ("jinja2/", "notices (Jinja, outbox)"),
    ("/notifications/", "notices (Jinja, outbox)"),
    ("/engine/", "engine"),
    ("/workflows/", "engine"),
    ("/interfaces/", "interfaces (routes, auth)"),
    ("threading.py", "threads, locks, queues (waiting)"),
    ("queue.py", "threads, locks, queues (waiting)"),
    ("asyncio/", "asyncio"),
    ("selectors.py", "asyncio"),
    ("{method 'acquire'", "threads, locks, queues (waiting)"),
    ("{method 'poll'", "asyncio"),
    ("{method 'control'", "asyncio"),
)


def profile_groups(path: Path, top: int) -> dict[str, Any]:
    """Own time by library, and the functions of the request path by cumulative time."""
    import pstats

    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    groups: Counter[str] = Counter()
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        where = f"{filename}:{name}" if filename != "~" else name
        label = next((g for key, g in GROUPS if key in where), "other")
        groups[label] += tottime
    total = sum(groups.values())
    functions = sorted(
        (
            (ct, tt, nc, f"{Path(f).name}:{line}({name})" if f != "~" else name)
            for (f, line, name), (_cc, nc, tt, ct, _callers) in raw.items()
        ),
        reverse=True,
    )
    return {
        "total_s": round(total, 2),
        "own_time": {g: round(t / total, 3) for g, t in groups.most_common()},
        "cumulative": [
            {"function": name, "calls": nc, "cumulative_s": round(ct, 3), "own_s": round(tt, 3)}
            for ct, tt, nc, name in functions[:top]
        ],
    }


# -- /proc -----------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) and of its live children."""
    total = 0.0
    for path in [f"/proc/{pid}/stat", *_children_stats(pid)]:
        try:
            with open(path, encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def _children_stats(pid: int) -> list[str]:
    """The stat files of ``pid``'s children (``regul serve --workers N`` forks N processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(str(entry / "stat"))
    return found


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine, all cores, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return (total - idle) / CLK_TCK, total / CLK_TCK


# -- the load generator (its own process) ----------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of unsorted values."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def summary(latencies: list[float], done: int, seconds: float) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(ms),
        "per_s": round(done / seconds, 1),
        "p50_ms": round(pct(ms, 50), 1) if ms else None,
        "p90_ms": round(pct(ms, 90), 1) if ms else None,
        "p99_ms": round(pct(ms, 99), 1) if ms else None,
        "max_ms": round(max(ms), 1) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
    }


class RawAnswer:
    """What the clients read of an answer: status, headers (lower-case names), body."""

    def __init__(self, status_code: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self.body = status_code, headers, body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class RawHttp:
    """One keep-alive HTTP/1.1 connection on asyncio streams: the lightest client possible.

    Enough for this server's answers (Content-Length bodies, chunked when streamed); it costs
    the load generator a fraction of what httpx costs, which shares the server's two cores.
    """

    def __init__(self, base: str) -> None:
        host_port = base.removeprefix("http://").rstrip("/")
        self.host, _, port = host_port.partition(":")
        self.port = int(port or 80)
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str, *, headers: dict[str, str]) -> RawAnswer:
        return await self.request("GET", path, headers, None)

    async def post(self, path: str, *, headers: dict[str, str], json: Any) -> RawAnswer:
        body = _json_dumps(json).encode()
        return await self.request("POST", path, headers, body)

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> RawAnswer:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            found: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    found[name.strip().lower()] = value.strip()
            if found.get("transfer-encoding", "").lower() == "chunked":
                data = b""
                while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                    data += (await reader.readexactly(size + 2))[:-2]
                await reader.readuntil(b"\r\n")
            else:
                data = await reader.readexactly(int(found.get("content-length", "0")))
        except BaseException:
            self.close()
            raise
        if found.get("connection", "").lower() == "close":
            self.close()
        return RawAnswer(status, found, data)

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Load:
    """The clients of one phase, on one event loop, and what they measured."""

    KINDS = ("read", "transition")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.clients, self.think = spec["clients"], spec["think"]
        self.fire_every = spec["fire_every"]
        self.pool: deque[list[str]] = deque(spec["cases"])  # [reference, umac, ars token]
        self.latencies: dict[str, list[float]] = {k: [] for k in self.KINDS}
        self.done: dict[str, int] = dict.fromkeys(self.KINDS, 0)
        self.statuses: dict[str, Counter[str]] = {k: Counter() for k in self.KINDS}
        self.taken = self.exhausted = 0
        self.failures: list[str] = []
        self.start = self.end = 0.0

    def note(self, kind: str, sent: float, status: str) -> None:
        now = time.perf_counter()
        if self.start <= sent < self.end:
            self.latencies[kind].append(now - sent)
            self.statuses[kind][status] += 1
        if self.start <= now < self.end:
            self.done[kind] += 1

    def fail(self, what: str, status: str, answer: Any) -> None:
        if len(self.failures) < 5:
            self.failures.append(f"{what}: {status} {answer.text[:200] if answer else ''}")

    async def pause(self, rng: random.Random) -> None:
        if self.think > 0:
            await asyncio.sleep(rng.uniform(0.5 * self.think, 1.5 * self.think))

    def take(self) -> list[str] | None:
        if not self.pool:
            return None
        self.taken += 1
        return self.pool.popleft()

    async def send(self, kind: str, request: Any) -> tuple[Any, str]:
        """Time one request; (the answer or None, its status or the exception's name)."""
        import httpx

        sent = time.perf_counter()
        try:
            answer = await request
            status = str(answer.status_code)
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError) as exc:
            answer, status = None, type(exc).__name__
        self.note(kind, sent, status)
        return answer, status

    async def client(self, n: int, http: Any) -> None:
        """Read the case held, fire escalate after every fire_every-th read; next case at top."""
        rng = random.Random(n)
        if self.think > 0:
            await asyncio.sleep(rng.uniform(0, self.think))  # clients do not start in step
        case, level, reads = self.take(), 0, 0
        while time.perf_counter() < self.end:
            if case is None:  # the pool ran dry: this client stops (reported)
                self.exhausted += 1
                return
            ref, auth = case[0], {"Authorization": f"Bearer {case[1 + level]}"}
            answer, status = await self.send("read", http.get(f"/api/v1/cases/{ref}", headers=auth))
            if answer is None or answer.status_code != 200:
                self.fail(f"GET {ref}", status, answer)
                case, level, reads = self.take(), 0, 0
                await self.pause(rng)
                continue
            etag = answer.headers.get("etag", "")
            reads += 1
            await self.pause(rng)
            if reads % self.fire_every or time.perf_counter() >= self.end:
                continue
            answer, status = await self.send(
                "transition",
                http.post(
                    f"/api/v1/cases/{ref}/triggers/escalate",
                    headers={**auth, "If-Match": etag},
                    json={"reason": "bench: escalated over HTTP"},
                ),
            )
            if answer is not None and answer.status_code == 200:
                level += 1
                if level == 2:  # national_regulation: the top of the ladder
                    case, level, reads = self.take(), 0, 0
            elif answer is None or answer.status_code != 412:  # 412: read again, fire again
                self.fail(f"POST {ref}", status, answer)
                case, level, reads = self.take(), 0, 0
            await self.pause(rng)

    async def run(self) -> dict[str, Any]:
        import httpx

        spec, pid = self.spec, self.spec["server_pid"]
        self.start = time.perf_counter() + spec["warmup"]
        self.end = self.start + spec["seconds"]
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        shared = httpx.AsyncClient(base_url=spec["base"], limits=limits, timeout=60.0)
        connections: list[Any] = (
            [RawHttp(spec["base"]) for _ in range(self.clients)]
            if spec["client"] == "raw"
            else [shared] * self.clients
        )
        async with shared:
            tasks = [
                asyncio.create_task(self.client(n, http)) for n, http in enumerate(connections)
            ]
            await asyncio.sleep(max(0.0, self.start - time.perf_counter()))
            cpu0 = (time.process_time(), proc_cpu(pid), machine_cpu())
            await asyncio.sleep(max(0.0, self.end - time.perf_counter()))
            cpu1 = (time.process_time(), proc_cpu(pid), machine_cpu())
            await asyncio.gather(*tasks)
        for http in connections:
            if isinstance(http, RawHttp):
                http.close()
        return self.report(cpu0, cpu1)

    def report(self, cpu0: Any, cpu1: Any) -> dict[str, Any]:
        seconds = float(self.spec["seconds"])
        cores = cpu1[2][1] - cpu0[2][1]  # CPU seconds of all cores, busy or not
        busy = cpu1[2][0] - cpu0[2][0]
        client, server = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        rest = busy - server - client
        lat, done = self.latencies, self.done
        requests = done["read"] + done["transition"]

        def per_request(cpu: float) -> float | None:
            return round(cpu / requests * 1000, 2) if requests else None

        return {
            "phase": self.spec["phase"],
            "client": self.spec["client"],
            "clients": self.clients,
            "think_s": self.think,
            "fire_every": self.fire_every,
            "seconds": seconds,
            "read": summary(lat["read"], done["read"], seconds),
            "transition": summary(lat["transition"], done["transition"], seconds),
            "all": summary(lat["read"] + lat["transition"], requests, seconds),
            "statuses": {k: dict(sorted(self.statuses[k].items())) for k in self.KINDS},
            "ok": {k: self.statuses[k].get("200", 0) for k in self.KINDS},
            "failures": self.failures,
            "cases_taken": self.taken,
            "clients_exhausted": self.exhausted,
            "cpu": {  # in cores: CPU seconds per second of the window
                "server": round(server / seconds, 2),
                "client": round(client / seconds, 2),
                "rest": round(rest / seconds, 2),
                "machine_busy": round(busy / seconds, 2),
                "machine_cores": round(cores / seconds, 2),
                "server_ms_per_request": per_request(server),
                "client_ms_per_request": per_request(client),
                "rest_ms_per_request": per_request(rest),
            },
        }


def load_child(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    print(json.dumps(asyncio.run(Load(spec).run())))
    return 0


def run_phase(
    phase: str,
    think: float,
    args: argparse.Namespace,
    server: Server,
    pool: deque[list[str]],
    schema: Schema,
    work_dir: Path,
) -> dict[str, Any]:
    spec = {
        "phase": phase,
        "base": server.base,
        "server_pid": server.popen.pid,
        "clients": 1 if phase == "single" else args.clients,
        "think": think,
        "fire_every": args.fire_every,
        "client": args.client,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "cases": list(pool),
    }
    path = work_dir / f"load-{phase}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    stop, found = threading.Event(), {}
    watcher = threading.Thread(target=lambda: found.update(schema.watch_sessions(stop)))
    watcher.start()
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--load-child", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    # the two reads of pg_stat_database are sessions too; the rest are the server's
    stop.set()
    watcher.join()
    result["pg_sessions_opened"] = found.get("opened")
    result["pg_sessions_most"] = found.get("most")
    for _ in range(result["cases_taken"]):
        pool.popleft()
    return result


# -- the core benchmark's in-process rate, same run ------------------------------------------


def transition_rate(work: Any, cases: int, notices: bool) -> dict[str, Any]:
    """``bench/transitions.py``'s ``run_engine`` on a fresh PostgreSQL schema, once.

    With ``notices``, the runner gets the notice outbox as its notifier, as the server's does.
    """
    target = work.postgres()
    return _core.engine_rate(core, work, target, kind=KIND, cases=cases, notices=notices)


# -- checks ----------------------------------------------------------------------------------


def audit_counts(db: Database) -> dict[str, int]:
    """HTTP transitions (by UMAC and ARS users) and API reads recorded in the audit log."""
    query = sa.text(
        "SELECT "
        "count(*) FILTER (WHERE action = 'transition' AND role IN ('umac', 'ars')), "
        "count(*) FILTER (WHERE action = 'read' AND data ->> 'via' = 'api') "
        "FROM audit_event"
    )
    with db.read() as conn:
        transitions, reads = conn.execute(query).one()
    return {"transitions": int(transitions), "reads": int(reads)}


# -- report ----------------------------------------------------------------------------------


def median_of(rows: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for row in rows:
        value: Any = row
        for key in path:
            value = value[key]
        if value is not None:
            values.append(value)
    return round(statistics.median(values), 1) if values else None


def aggregate(phases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per phase name, the median of each figure over the repeats."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(p["phase"] for p in phases):
        rows = [p for p in phases if p["phase"] == name]
        figures: dict[str, Any] = {"runs": len(rows), "think_s": rows[0]["think_s"]}
        for kind in ("read", "transition", "all"):
            figures[kind] = {
                key: median_of(rows, kind, key)
                for key in ("per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")
            }
        figures["cpu"] = {key: median_of(rows, "cpu", key) for key in rows[0]["cpu"]}
        figures["pg_sessions_opened"] = median_of(rows, "pg_sessions_opened")
        figures["pg_sessions_most"] = median_of(rows, "pg_sessions_most")
        statuses: dict[str, Counter[str]] = {"read": Counter(), "transition": Counter()}
        for row in rows:
            for kind, counts in row["statuses"].items():
                statuses[kind].update(counts)
        figures["statuses"] = {k: dict(v) for k, v in statuses.items()}
        figures["meets"] = {
            "read_p99": (figures["read"]["p99_ms"] or math.inf) < READ_P99_MS,
            "transition_p99": (figures["transition"]["p99_ms"] or math.inf) < TRANSITION_P99_MS,
        }
        out[name] = figures
    return out


def table(result: dict[str, Any]) -> str:
    m, cfg = result["machine"], result["config"]
    lines = [
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, PostgreSQL {m['postgresql']}, "
        f"SQLAlchemy {m['sqlalchemy']}, psycopg {m['psycopg']}; load average "
        f"{m['loadavg_start'][0]} at start, {m['loadavg_end'][0]} at end; code {m['code_sha256']}",
        f"Server: regul serve --no-worker --workers {cfg.get('workers', 1)}"
        f"{' (under cProfile)' if cfg['profile'] else ''}, "
        f"REGUL_NOTICES={'true' if cfg['notices'] else 'false'}, {result['seeded']} ECMO cases "
        f"in umac_review for {result['hospitals']} hospitals; "
        f"start-up {result['server_startup_s']} s",
        f"Load: {cfg['clients']} clients ({CLIENTS[cfg['client']]}, one process), "
        f"{cfg['seconds']} s measured after {cfg['warmup']} s of warm-up; a transition after every "
        f"{cfg['fire_every']} reads; phases {', '.join(cfg['phases'])}"
        + (f", medians of {cfg['repeat']}" if cfg["repeat"] > 1 else ""),
        "",
        "| phase | kind | requests/s | p50 ms | p90 ms | p99 ms | max ms | target p99 | met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, f in result["summary"].items():
        label = {
            "single": "single (1 client)",
            "closed": f"closed ({cfg['clients']} clients)",
            "paced": f"paced ({cfg['clients']} clients, think {f['think_s']:g} s)",
        }[name]
        for kind, target, met in (
            ("read", READ_P99_MS, f["meets"]["read_p99"]),
            ("transition", TRANSITION_P99_MS, f["meets"]["transition_p99"]),
            ("all", None, None),
        ):
            k = f[kind]
            lines.append(
                f"| {label} | {kind} | {k['per_s']} | {k['p50_ms']} | {k['p90_ms']} | "
                f"{k['p99_ms']} | {k['max_ms']} | {f'< {target:g}' if target else '-'} | "
                f"{'-' if met is None else ('yes' if met else 'NO')} |"
            )
    lines += [
        "",
        "| phase | server CPU (cores) | load generator | rest (PostgreSQL…) | machine busy "
        "| server ms/request | rest ms/request | PG sessions opened (at once) | statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, f in result["summary"].items():
        c = f["cpu"]
        st = "; ".join(
            f"{kind} " + ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
            for kind, counts in f["statuses"].items()
        )
        lines.append(
            f"| {name} | {c['server']} | {c['client']} | {c['rest']} | {c['machine_busy']} / "
            f"{c['machine_cores']} | {c['server_ms_per_request']} | {c['rest_ms_per_request']} "
            f"| ≥ {f['pg_sessions_opened']:.0f} ({f['pg_sessions_most']:.0f}) | {st} |"
        )
    lines += rates_lines(result) + profile_lines(result.get("profile"))
    checks = result["checks"]
    lines += [
        "",
        f"Audit log: {checks['audit']} against 200 answers {checks['ok']}: "
        f"{'match' if checks['match'] else 'MISMATCH'}; verify "
        f"{'ok' if checks['verify_ok'] else 'BROKEN'} ({checks['verify_events']} events)",
        f"Whole run: {result['total_s']:.0f} s",
    ]
    return "\n".join(lines)


def rates_lines(result: dict[str, Any]) -> list[str]:
    rates, ratio = result["in_process"], result["ratio"]
    if not rates:
        return []
    lines = [
        "",
        "In-process (bench/transitions.py run_engine, PostgreSQL, same run, before the server "
        f"started; {rates['cases']} cases x 5 commands, medians of {rates['repeat']}):",
    ]
    for key in ("notices_off", "notices_on"):
        r = rates[key]
        lines.append(
            f"- notices {key.split('_')[1]}: {r['per_s']} transitions/s "
            f"(runs {', '.join(str(x) for x in r['runs'])}), {r['cpu_us']} µs CPU each"
        )
    if ratio and ratio["transitions_vs_core"] is not None:
        lines += [
            "",
            f"Ratio, closed loop: HTTP transitions/s / in-process transitions/s = "
            f"{ratio['transitions_vs_core']} (notices off, the core benchmark), "
            f"{ratio['transitions_vs_same_notices']} (notices as served); every request commits "
            f"one transaction (a read is audited): HTTP requests/s / in-process commands/s = "
            f"{ratio['requests_vs_core']} / {ratio['requests_vs_same_notices']}",
        ]
    return lines


def profile_lines(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    lines = [
        "",
        f"Server profile (cProfile in every thread, CPU time, {found['total_s']} s in all; "
        "profiling itself slows the server), own time by library:",
        "",
    ]
    lines += [f"  {share:6.1%}  {group}" for group, share in found["own_time"].items()]
    lines += ["", "  cumulative s   own s      calls  function"]
    lines += [
        f"  {f['cumulative_s']:12.3f} {f['own_s']:7.3f} {f['calls']:10d}  {f['function']}"
        for f in found["cumulative"]
    ]
    return lines


# -- orchestration ---------------------------------------------------------------------------


def in_process(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"notices_off": [], "notices_on": []}
    with core.workspace(None, args.pg_url) as work:
        for r in range(args.rate_repeat):
            order = (False, True) if r % 2 == 0 else (True, False)
            for notices in order:
                row = transition_rate(work, args.rate_cases, notices)
                runs[f"notices_{'on' if notices else 'off'}"].append(row)
                log(
                    f"  in-process, notices {'on' if notices else 'off'}: {row['per_s']} "
                    f"transitions/s, {row['cpu_us']} µs CPU each"
                )
    return {
        "cases": args.rate_cases,
        "repeat": args.rate_repeat,
        **{
            key: {
                "per_s": round(statistics.median(r["per_s"] for r in rows), 1),
                "cpu_us": round(statistics.median(r["cpu_us"] for r in rows), 1),
                "runs": [r["per_s"] for r in rows],
            }
            for key, rows in runs.items()
        },
    }


def prepare(db: Database, args: argparse.Namespace, result: dict[str, Any]) -> deque[list[str]]:
    """Seed the cases, issue the tokens: [reference, UMAC token, ARS token] per case."""
    hospitals = regulators(db)
    began = time.perf_counter()
    log(f"seeding {args.cases} ECMO cases for {len(hospitals)} hospitals")
    cases = seed(db, hospitals, args.cases)
    by_hospital = {h["id"]: h for h in hospitals}
    tokens = issue_tokens(db, {h[k] for h in hospitals for k in ("umac", "ars")})
    pool: deque[list[str]] = deque(
        [ref, tokens[by_hospital[org]["umac"]], tokens[by_hospital[org]["ars"]]]
        for ref, org in cases
    )
    random.Random(2026).shuffle(pool)  # hospitals and regions interleaved
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    result.update(
        hospitals=len(hospitals),
        seeded=len(cases),
        tokens=len(tokens),
        seed_s=round(time.perf_counter() - began, 1),
    )
    return pool


def run_phases(
    args: argparse.Namespace,
    server: Server,
    pool: deque[list[str]],
    schema: Schema,
    work_dir: Path,
) -> list[dict[str, Any]]:
    phases = []
    for r in range(args.repeat):
        for phase in args.phases:
            think = args.think if phase == "paced" else 0.0
            log(
                f"phase {phase} {r + 1}/{args.repeat}: "
                f"{1 if phase == 'single' else args.clients} clients, think "
                f"{think:g} s, {args.warmup:g} + {args.seconds:g} s; {len(pool)} cases left"
            )
            row = run_phase(phase, think, args, server, pool, schema, work_dir)
            phases.append(row)
            read, trans = row["read"], row["transition"]
            log(
                f"  read {read['per_s']}/s p50 {read['p50_ms']} ms p99 {read['p99_ms']} ms; "
                f"transition {trans['per_s']}/s p50 {trans['p50_ms']} ms p99 "
                f"{trans['p99_ms']} ms; server CPU {row['cpu']['server']} cores; "
                f"statuses {row['statuses']}"
            )
            if row["clients_exhausted"]:
                log(f"  {row['clients_exhausted']} clients ran out of cases: raise --cases")
    return phases


def check(db: Database, before: dict[str, int], phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The audit log against the answers: at least one event per 200; the chain intact."""
    after = audit_counts(db)
    with db.read() as conn:
        report = audit.verify(conn)
    answered = {
        "transitions": sum(p["ok"]["transition"] for p in phases),
        "reads": sum(p["ok"]["read"] for p in phases),
    }
    recorded = {k: after[k] - before[k] for k in after}
    # the windows leave out the warm-up and the tail: more events than counted 200s
    return {
        "audit": recorded,
        "ok": answered,
        "match": all(recorded[k] >= answered[k] for k in recorded),
        "verify_ok": report.ok,
        "verify_events": report.events,
    }


def ratios(summary_: dict[str, Any], rates: dict[str, Any], notices: bool) -> dict[str, Any]:
    closed = summary_.get("closed")
    if closed is None:
        return dict.fromkeys(
            (
                "transitions_vs_core",
                "transitions_vs_same_notices",
                "requests_vs_core",
                "requests_vs_same_notices",
            )
        )
    core_rate = rates["notices_off"]["per_s"]
    same = rates["notices_on"]["per_s"] if notices else core_rate
    trans, reqs = closed["transition"]["per_s"], closed["all"]["per_s"]
    return {
        "transitions_vs_core": round(trans / core_rate, 3),
        "transitions_vs_same_notices": round(trans / same, 3),
        "requests_vs_core": round(reqs / core_rate, 3),
        "requests_vs_same_notices": round(reqs / same, 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    core.PG_URL = args.pg_url
    info = core.machine()
    if info["postgresql"] is None:
        raise SystemExit(f"PostgreSQL at {args.pg_url} is unreachable")
    rates = None
    if not args.profile and args.rate_repeat > 0:
        log(
            f"in-process rate: {args.rate_cases} cases x 5 commands, notices off and on, "
            f"{args.rate_repeat} repeat(s)"
        )
        rates = in_process(args)
    result: dict[str, Any] = {
        "machine": info,
        "config": {
            **{k: v for k, v in vars(args).items() if k not in {"json", "load_child"}},
            "argv": sys.argv[1:],
        },
        "in_process": rates,
    }
    work_dir = Path(tempfile.mkdtemp(prefix="regul-bench-api-"))
    schema = Schema(args.pg_url)
    server: Server | None = None
    db = None
    try:
        log(f"schema {schema.name}: regul init --demo")
        result["init"] = init_demo(schema.url, work_dir)
        db = Database(schema.url)
        pool = prepare(db, args, result)
        log(
            f"regul serve --no-worker --workers {args.workers} "
            f"(REGUL_NOTICES={'true' if args.notices else 'false'})"
        )
        profile = work_dir / "serve.prof" if args.profile else None
        server = Server(
            schema.server_url, args.notices, work_dir, pool[0][1], profile, args.workers
        )
        result["server_startup_s"] = round(server.startup_s, 2)
        before = audit_counts(db)
        phases = run_phases(args, server, pool, schema, work_dir)
        code = server.stop()
        if code not in (0, None):
            log(f"the server exited {code}:\n{server.stderr()[-2000:]}")
        result["checks"] = check(db, before, phases)
        if profile is not None:
            result["profile"] = profile_groups(profile, args.profile_lines)
            if args.profile_out:
                shutil.copy(profile, args.profile_out)
    finally:
        if server is not None:
            server.stop()
        if db is not None:
            db.dispose()
        schema.drop()
        shutil.rmtree(work_dir, ignore_errors=True)
    result["phases"] = phases
    result["summary"] = aggregate(phases)
    result["ratio"] = ratios(result["summary"], rates, args.notices) if rates else None
    result["total_s"] = round(time.perf_counter() - began, 1)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="regul serve on PostgreSQL under 50 HTTP clients: rates and latencies."
    )
    add = parser.add_argument
    add("--seconds", type=float, default=60.0, help="measured seconds of each phase (60)")
    add("--warmup", type=float, default=3.0, help="unmeasured seconds before each window (3)")
    add("--clients", type=int, default=50, help="concurrent clients (50)")
    add("--workers", type=int, default=1, help="HTTP processes of regul serve (1)")
    add("--think", type=float, default=0.5, help="mean think time of the paced phase, s (0.5)")
    add("--fire-every", type=int, default=2, help="a transition after every N reads (2)")
    add(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: one asyncio keep-alive connection per client (light); httpx: one shared "
        "httpx.AsyncClient (raw)",
    )
    add(
        "--phases",
        default="single,closed,paced",
        help="any of single (1 client, no think time: latency unloaded), closed, paced",
    )
    add("--repeat", type=int, default=1, help="runs of each phase; medians reported (1)")
    add(
        "--cases",
        type=int,
        default=None,
        help="ECMO cases seeded for the clients (8000 per --repeat)",
    )
    add(
        "--notices",
        choices=("on", "off"),
        default="on",
        help="REGUL_NOTICES of the server (on: its default)",
    )
    add("--rate-cases", type=int, default=600, help="cases of each in-process run (600)")
    add(
        "--rate-repeat",
        type=int,
        default=3,
        help="in-process runs per notices setting, 0: none (3)",
    )
    add("--pg-url", default=core.PG_URL)
    add("--json", action="store_true", help="print a JSON document on stdout")
    add(
        "--profile",
        action="store_true",
        help="serve under cProfile (every thread, CPU time) and report where it goes; "
        "no in-process rates",
    )
    add("--profile-lines", type=int, default=25, help="functions listed (25)")
    add("--profile-out", default=None, help="keep the merged pstats file there")
    add("--load-child", default=None, help=argparse.SUPPRESS)
    add("--serve-profiled", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    args.notices = args.notices == "on"
    if args.cases is None:
        args.cases = 8000 * max(1, args.repeat)
    if not args.phases or any(p not in {"single", "closed", "paced"} for p in args.phases):
        parser.error("--phases takes single, closed and/or paced")
    if args.clients < 1 or args.fire_every < 1 or args.seconds <= 0 or args.rate_repeat < 0:
        parser.error("--clients, --fire-every at least 1, --rate-repeat 0 or more, --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load_child:
        return load_child(args.load_child)
    if args.serve_profiled:
        port, _, out = args.serve_profiled.partition(":")
        return serve_profiled(int(port), out)
    result = run(args)
    text = table(result)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
