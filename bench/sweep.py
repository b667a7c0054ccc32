#!/usr/bin/env python
"""The deadline sweep: a mass of deadlines falling due at once, and lateness at a steady rate.

Burst: N open ECMO cases in ``requested`` whose deadlines all fell due at the same past instant
(2 h ago) are escalated by real ``regul worker --once --json`` processes
(``REGUL_SWEEP_BATCH``, default 200): one on SQLite (WAL, ``synchronous`` FULL and NORMAL via
``REGUL_SQLITE_SYNCHRONOUS``), one and four started together on PostgreSQL. The figure is the
wall time from the first spawn until no row that was due is left open (this process polls the
database every 0.25 s), process start-up included; start-up alone is measured on the same,
still empty, database and shown. The workers' exit time is shown too (with notices on, a
``--once`` worker goes on to dispatch them). Notices are off by default (``REGUL_NOTICES=false``),
as in the core benchmark, whose runner queues none; ``--notices on|both`` measures them.

Checked from the database afterwards: exactly N ``system`` transitions, one per case, every
case in ``umac_review`` version 2, one fired and one open deadline per case, nothing left due,
the notices (if any) all sent with gapless numbers, and ``engine.audit.verify`` true over the
whole log. Escalations per second are divided by the engine's human-transition rate measured
in the same run, on the same backend, with the same notices setting: ``run_engine`` of
``bench/transitions.py`` (open + escalate x3 + resolve through ``Runner``, one committed
command each, one process).

Setup is fast and takes the row shapes from the real engine: ONE case is opened through
``Runner.open_case`` (clock 3 h in the past, reminder fractions off so that its deadline's
``next_at`` is its ``due_at``), then copied N-1 times with ``INSERT ... SELECT`` from its own
rows: every column the same but the id and the opening event's hash, recomputed for that id
with ``engine.audit.canonical`` / ``chain_hash`` exactly as ``engine.audit.append`` does (the
template's own hash is recomputed first, as a check). PostgreSQL tables are then
``VACUUM ANALYZE``d (what autovacuum does after such growth), the SQLite WAL checkpointed.

Steady: one ``regul worker --interval S`` process (default 1 s; the worker's own default is
5 s) with its default notices, while this process feeds, every second, 1,000/60 cases whose
deadlines fall due 2 s later, spread evenly over that second (copies of one engine-opened
template, each with its own opening and due instants; ``--steady-backlog N`` adds N overdue
cases at the start). Lateness is audit ``at`` - deadline ``due_at`` of each escalation: ``at``
is the runner's clock when the row is applied; the ``late_s`` the sweeper records is measured
from the batch's ``now``, a little earlier (both are in the JSON).

    .venv/bin/python bench/sweep.py                       # the default run (about 10 minutes)
    .venv/bin/python bench/sweep.py --cases 2000 --steady-minutes 0.5
    .venv/bin/python bench/sweep.py --cases 10000 --notices on --steady-minutes 0
    .venv/bin/python bench/sweep.py --sync FULL --probe --steady-minutes 0  # commands meanwhile
    .venv/bin/python bench/sweep.py --cases 0 --steady-backlog 10000 --steady-minutes 1.5
    .venv/bin/python bench/sweep.py --backend postgres --workers 1,2,4 --json > sweep.json
    .venv/bin/python bench/sweep.py --profile --backend postgres --cases 5000  # cProfile
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import _core  # this folder is still first on sys.path here

_core.repository_first()


core = _core.load_core_bench()

import sqlalchemy as sa  # noqa: E402
from sqlmodel.sql.sqltypes import UTCDateTime  # noqa: E402

from engine import audit  # noqa: E402
from engine.audit import GENESIS, Draft, canonical, chain_hash  # noqa: E402
from engine.clock import FixedClock, SystemClock  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.deadlines import ReminderPolicy  # noqa: E402
from engine.decisions import Rules  # noqa: E402
from engine.models import AuditEvent, Case, Deadline  # noqa: E402
from engine.runner import Runner  # noqa: E402
from workflows import default_registry  # noqa: E402

CONFIRMS = Rules(hospital_confirms=True)  # the benches time the hospital's confirm step

REGUL = Path(sys.executable).parent / "regul"
CASE_T = Case.__table__  # type: ignore[attr-defined]
AUDIT_T = AuditEvent.__table__  # type: ignore[attr-defined]
DEADLINE_T = Deadline.__table__  # type: ignore[attr-defined]
KIND = "ecmo"
OPENER = core.ACTORS["establishment"]
HOSPITAL = core.HOSPITAL
FIELDS = core.OPEN_FIELDS[KIND]
NO_REMINDERS = ReminderPolicy(fractions=())  # the opened row's next_at is its due_at
log = core.log


@dataclass
class Plan:
    label: str  # sqlite-full | sqlite-normal | postgres
    backend: str
    sync: str | None
    workers: list[int] = field(default_factory=list)


# -- setup: one case through the engine, N-1 copies of its rows ------------------------------


def requested_deadline() -> timedelta:
    deadline = default_registry()[KIND].state("requested").deadline
    assert deadline is not None
    return deadline


def open_template(db: Database, opened_at: datetime) -> int:
    """One ECMO case opened by the engine at ``opened_at``; its deadline is due 1 h later."""
    runner = Runner(
        db, default_registry(), FixedClock(opened_at), policy=NO_REMINDERS, rules=CONFIRMS
    )
    case = runner.open_case(kind=KIND, login=OPENER, org=HOSPITAL, fields=FIELDS)
    return case.id


# One row per copy: its case id, its opening event's hash, its opening instant, its due instant.
_IDS = sa.Table(
    "bench_ids",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String, nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("due", UTCDateTime(), nullable=False),
    prefixes=["TEMPORARY"],
)


def _copy_sql(table: sa.Table, key: str, replace: dict[str, str], where: str) -> sa.TextClause:
    """INSERT INTO table (cols) SELECT t.col or u.<value> FROM table t CROSS JOIN bench_ids u."""
    names = [c.name for c in table.columns if c.name != "id" or "id" in replace]
    picks = [replace.get(n, f"t.{n}") for n in names]
    return sa.text(
        f"INSERT INTO {table.name} ({', '.join(names)}) "
        f"SELECT {', '.join(picks)} FROM {table.name} t CROSS JOIN bench_ids u "
        f"WHERE t.{key} = :template{where} ORDER BY u.id"
    )


_COPIES = (
    _copy_sql(
        CASE_T,
        "id",
        {"id": "u.id", "audit_hash": "u.hash", "opened_at": "u.at", "updated_at": "u.at"},
        "",
    ),
    _copy_sql(AUDIT_T, "case_id", {"case_id": "u.id", "hash": "u.hash", "at": "u.at"}, ""),
    _copy_sql(
        DEADLINE_T,
        "case_id",
        {"case_id": "u.id", "created_at": "u.at", "due_at": "u.due", "next_at": "u.due"},
        " AND t.status = 'open'",
    ),
)


def clone(
    db: Database, template: int, count: int, times: list[tuple[datetime, datetime]] | None = None
) -> list[int]:
    """``count`` copies of the template case, its opening event and its open deadline.

    Every column is the template's except the id, the event's hash (recomputed for that id and
    instant as ``engine.audit.append`` computes it) and, when ``times`` gives them, each copy's
    opening instant (case opened/updated, event at, deadline created) and due instant.
    """
    if count <= 0:
        return []
    with db.write() as conn:
        case = conn.execute(sa.select(CASE_T).where(CASE_T.c.id == template)).one()
        event = conn.execute(sa.select(AUDIT_T).where(AUDIT_T.c.case_id == template)).one()
        row = conn.execute(
            sa.select(DEADLINE_T).where(
                DEADLINE_T.c.case_id == template, DEADLINE_T.c.status == "open"
            )
        ).one()
        # The mapping of instants below holds for a case the engine has just opened.
        assert case.opened_at == case.updated_at == event.at == row.created_at, "template"
        assert row.next_at == row.due_at, "the template must be opened without reminders"
        assert (event.seq, event.prev_hash, case.audit_seq) == (1, GENESIS, 1)
        draft = Draft(
            event.actor,
            event.role,
            event.org,
            event.action,
            event.from_state,
            event.to_state,
            event.version,
            event.reason,
            dict(event.data),
        )
        # The template's own hash, recomputed: proves the recipe before it is used N times.
        assert chain_hash(GENESIS, canonical(template, 1, event.at, draft)) == event.hash
        if times is None:
            times = [(event.at, row.due_at)] * count
        assert len(times) == count
        if db.is_sqlite:  # BEGIN IMMEDIATE holds the write lock: nobody else takes these ids
            first = conn.execute(sa.select(sa.func.max(CASE_T.c.id))).scalar_one() + 1
            ids = list(range(first, first + count))
        else:
            ids = list(
                conn.execute(
                    sa.text(
                        "SELECT nextval(pg_get_serial_sequence('regul_case', 'id')) "
                        "FROM generate_series(1, :n)"
                    ),
                    {"n": count},
                ).scalars()
            )
        hashes = [
            chain_hash(GENESIS, canonical(i, 1, at, draft))
            for i, (at, _) in zip(ids, times, strict=True)
        ]
        _IDS.create(conn)
        if db.is_sqlite:
            conn.execute(
                _IDS.insert(),
                [
                    {"id": i, "hash": h, "at": at, "due": due}
                    for i, h, (at, due) in zip(ids, hashes, times, strict=True)
                ],
            )
        else:  # one statement of four arrays rather than N inserts
            conn.execute(
                sa.text(
                    "INSERT INTO bench_ids (id, hash, at, due) SELECT * FROM unnest("
                    "CAST(:ids AS integer[]), CAST(:hashes AS text[]), "
                    "CAST(:ats AS timestamptz[]), CAST(:dues AS timestamptz[]))"
                ),
                {
                    "ids": ids,
                    "hashes": hashes,
                    "ats": [at for at, _ in times],
                    "dues": [due for _, due in times],
                },
            )
        for statement in _COPIES:
            done = conn.execute(statement, {"template": template}).rowcount
            assert done == count, (statement, done, count)
        _IDS.drop(conn)
    return ids


def fill(target: Any, count: int, opened_at: datetime) -> dict[str, Any]:
    """``count`` due cases: one opened by the engine, the rest copied; timed."""
    began = time.perf_counter()
    db = Database(target.url)
    template = open_template(db, opened_at)
    clone(db, template, count - 1)
    d = DEADLINE_T.c
    with db.read() as conn:
        due = conn.execute(
            sa.select(sa.func.count(), sa.func.min(d.due_at), sa.func.max(d.next_at)).where(
                d.status == "open"
            )
        ).one()
    if db.is_sqlite:  # start the sweep from an empty WAL (raw connection: no BEGIN)
        raw = db.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    else:  # what autovacuum does to a table that grew by 100,000 rows
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE regul_case, audit_event, deadline")
    db.dispose()
    assert due[0] == count, due
    return {
        "seconds": round(time.perf_counter() - began, 2),
        "template_case": template,
        "due_at": due[1].isoformat(),
        "max_next_at": due[2].isoformat(),
    }


# -- worker processes ------------------------------------------------------------------------


@dataclass
class Proc:
    """A ``regul`` process with its output in files (never a pipe that could fill and block)."""

    name: str
    popen: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path
    files: tuple[IO[bytes], IO[bytes]]

    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=30)
        for handle in self.files:
            handle.close()


_SEQ = iter(range(1, 1_000_000))


def spawn(work_dir: Path, url: str, args: list[str], name: str, env_extra: dict[str, str]) -> Proc:
    """``regul *args`` with only the REGUL_* variables given here, in a scratch folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGUL_")}
    env.update({"REGUL_DATABASE_URL": url, "COLUMNS": "200", **env_extra})
    n = next(_SEQ)
    out_path, err_path = work_dir / f"{name}-{n}.out", work_dir / f"{name}-{n}.err"
    out, err = out_path.open("wb"), err_path.open("wb")
    popen = subprocess.Popen(
        [str(REGUL), *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=work_dir
    )
    return Proc(name, popen, out_path, err_path, (out, err))


def worker_env(plan: Plan, notices: bool, batch: int, work_dir: Path) -> dict[str, str]:
    """The worker's settings, all explicit: batch, notices (.eml into the scratch folder)."""
    env = {
        "REGUL_SWEEP_BATCH": str(batch),
        "REGUL_NOTICES": "true" if notices else "false",
        "REGUL_EML_DIR": str(work_dir / f"eml-{next(_SEQ)}"),
    }
    if plan.sync:
        env["REGUL_SQLITE_SYNCHRONOUS"] = plan.sync
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _due_left(db: Database, cutoff: datetime) -> int:
    d = DEADLINE_T.c
    with db.read() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(d.status == "open", d.next_at <= cutoff)
            ).scalar_one()
        )


def run_once_workers(
    work_dir: Path, url: str, workers: int, env: dict[str, str], timeout: float, poll: bool
) -> dict[str, Any]:
    """``workers`` ``regul worker --once --json`` started together; until the last exits.

    With ``poll``, the database is read every 0.25 s: the instant no row due at the start is
    left open is when every case has been escalated (a worker goes on to dispatch notices).
    """
    db = Database(url) if poll else None
    cutoff = datetime.now(UTC)
    cpu = _children_cpu()
    began = time.perf_counter()
    procs = [
        spawn(work_dir, url, ["worker", "--once", "--json"], f"once{workers}", env)
        for _ in range(workers)
    ]
    escalated: float | None = None
    try:
        while True:
            running = any(p.popen.poll() is None for p in procs)
            if db is not None and escalated is None and _due_left(db, cutoff) == 0:
                escalated = time.perf_counter() - began
            if not running:
                break
            if time.perf_counter() - began > timeout:
                raise RuntimeError(f"{workers} worker(s) still running after {timeout} s")
            time.sleep(0.25)
        seconds = time.perf_counter() - began
        reports = []
        for proc in procs:
            code = proc.popen.returncode
            if code != 0:
                raise RuntimeError(f"{proc.name} exited {code}:\n{proc.stderr()}")
            reports.append(json.loads(proc.stdout()))
    finally:
        for proc in procs:
            proc.close()
        if db is not None:
            db.dispose()
    dispatched = [r.get("dispatch", {}).get("sent", 0) for r in reports]
    return {
        "escalated_s": min(escalated, seconds) if escalated is not None else seconds,
        "exit_s": seconds,
        "worker_cpu_s": _children_cpu() - cpu,
        "shares": [r["counts"].get("escalated", 0) for r in reports],
        "counts": [r["counts"] for r in reports],
        "errors": sum(r["errors"] for r in reports),
        "dispatched": dispatched if any("dispatch" in r for r in reports) else None,
    }


# -- checks ----------------------------------------------------------------------------------


def check_escalated(url: str, total: int, notices: bool, probed: int = 0) -> dict[str, Any]:
    """What the audit log and the tables say after a burst: exactly once, chain intact."""
    db = Database(url)
    a, d, c = AUDIT_T.c, DEADLINE_T.c, CASE_T.c
    transitions = sa.and_(a.actor == "system", a.action == "transition")
    with db.read() as conn:
        by_action: dict[str, int] = dict(
            conn.execute(
                sa.select(a.action, sa.func.count()).where(a.actor == "system").group_by(a.action)
            ).all()
        )
        count, distinct, first_at, last_at = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(sa.distinct(a.case_id)),
                sa.func.min(a.at),
                sa.func.max(a.at),
            ).where(transitions)
        ).one()
        duplicated = conn.execute(
            sa.select(sa.func.count()).select_from(
                sa.select(a.case_id)
                .where(transitions)
                .group_by(a.case_id)
                .having(sa.func.count() > 1)
                .subquery()
            )
        ).scalar_one()
        moves = conn.execute(
            sa.select(a.from_state, a.to_state, a.version, sa.func.count())
            .where(transitions)
            .group_by(a.from_state, a.to_state, a.version)
        ).all()
        cases = conn.execute(
            sa.select(c.state, c.version, c.incident, sa.func.count()).group_by(
                c.state, c.version, c.incident
            )
        ).all()
        deadlines = conn.execute(
            sa.select(d.state, d.status, sa.func.count())
            .group_by(d.state, d.status)
            .order_by(d.state, d.status)
        ).all()
        still_due = conn.execute(
            sa.select(sa.func.count()).where(d.status == "open", d.next_at <= datetime.now(UTC))
        ).scalar_one()
        notice_rows = _notice_summary(conn) if notices else None
        stamps = sorted(conn.execute(sa.select(a.at).where(transitions)).scalars())
        checked = time.perf_counter()
        report = audit.verify(conn)
        verify_s = time.perf_counter() - checked
    db.dispose()
    exactly_once = (
        by_action == {"transition": total}
        and (count, distinct, duplicated) == (total, total, 0)
        and [tuple(m) for m in moves] == [("requested", "umac_review", 2, total)]
        and sorted(tuple(r) for r in cases)
        == sorted(
            [("umac_review", 2, False, total)] + [("requested", 1, False, probed)] * bool(probed)
        )
        and sorted(tuple(r) for r in deadlines)
        == sorted(
            [("requested", "fired", total), ("umac_review", "open", total)]
            + [("requested", "open", probed)] * bool(probed)
        )
        and still_due == 0
    )
    return {
        "system_events": by_action,
        "escalations": int(count),
        "distinct_cases": int(distinct),
        "duplicated_cases": int(duplicated),
        "first_at": first_at.isoformat() if first_at else None,
        "last_at": last_at.isoformat() if last_at else None,
        "audit_span_s": round((last_at - first_at).total_seconds(), 2) if first_at else None,
        # Escalations per second over each tenth of the sweep (audit `at`): flat, or slowing?
        "rate_by_tenth": _rate_by_tenth(stamps),
        "deadlines": {f"{s}/{t}": int(n) for s, t, n in deadlines},
        "still_due": int(still_due),
        "exactly_once": exactly_once,
        "notices": notice_rows,
        "verify_ok": report.ok,
        "verify_events": report.events,
        "verify_findings": [str(f) for f in report.findings[:3]],
        "verify_s": round(verify_s, 1),
    }


def _rate_by_tenth(stamps: list[datetime]) -> list[float]:
    if len(stamps) < 20:
        return []
    cuts = [stamps[round(i * (len(stamps) - 1) / 10)] for i in range(11)]
    size = (len(stamps) - 1) / 10
    return [
        round(size / max((b - a).total_seconds(), 1e-6), 1) for a, b in itertools.pairwise(cuts)
    ]


def _notice_summary(conn: sa.Connection) -> dict[str, Any]:
    """Notices queued by the sweep: by kind and status, and whether their numbers are gapless."""
    rows = conn.execute(
        sa.text(
            "SELECT kind, status, count(*), count(DISTINCT number), min(number), max(number) "
            "FROM notice GROUP BY kind, status"
        )
    ).all()
    return {
        f"{kind}/{status}": {"count": n, "distinct_numbers": k, "min": lo, "max": hi}
        for kind, status, n, k, lo, hi in rows
    }


# -- the burst -------------------------------------------------------------------------------


class Probe:
    """A regulator's command (open a case) every ``every`` s on the same database, timed."""

    def __init__(self, url: str, sync: str | None, every: float = 0.5) -> None:
        self.db = Database(url, sqlite_synchronous=sync or "FULL")
        self.runner = Runner(self.db, default_registry(), SystemClock(), rules=CONFIRMS)
        self.every, self.stopping = every, threading.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            began = time.perf_counter()
            try:
                self.runner.open_case(kind=KIND, login=OPENER, org=HOSPITAL, fields=FIELDS)
                self.latencies.append(time.perf_counter() - began)
            except Exception as exc:  # reported: a command that failed during the sweep
                self.errors.append(f"after {time.perf_counter() - began:.1f} s: {exc}"[:300])
            self.stopping.wait(self.every)

    def start(self) -> Probe:
        self.thread.start()
        return self

    def finish(self) -> dict[str, Any]:
        self.stopping.set()
        self.thread.join(timeout=120)
        self.db.dispose()
        lat = self.latencies
        return {
            "commands": len(lat),
            "failed": len(self.errors),
            "p50_s": round(_pct(lat, 50), 3) if lat else None,
            "p90_s": round(_pct(lat, 90), 3) if lat else None,
            "max_s": round(max(lat), 3) if lat else None,
            "errors": self.errors[:3],
        }


def make_target(work: Any, plan: Plan) -> Any:
    return work.sqlite(plan.sync) if plan.backend == "sqlite" else work.postgres()


def transition_rate(work: Any, plan: Plan, cases: int, notices: bool) -> dict[str, Any]:
    """The core benchmark's engine measurement (bench/transitions.py run_engine), once.

    With ``notices``, the same loop with the runner the CLI builds by default: the notice
    outbox as its notifier (run_engine's ``Runner`` is swapped for the time of the call).
    """
    target = make_target(work, plan)
    return _core.engine_rate(core, work, target, kind=KIND, cases=cases, notices=notices)


def burst(
    work: Any, plan: Plan, workers: int, notices: bool, args: argparse.Namespace
) -> dict[str, Any]:
    """N due cases on a fresh database, swept by ``workers`` worker processes."""
    target = make_target(work, plan)
    env = worker_env(plan, notices, args.batch, work.dir)
    name = f"{plan.label} x{workers} notices {'on' if notices else 'off'}"
    try:
        # Process start-up plus an empty sweep, on the same (still empty) database.
        idle = run_once_workers(work.dir, target.url, workers, env, 300, poll=False)
        setup = fill(target, args.cases, datetime.now(UTC) - timedelta(hours=3))
        log(f"  {name}: {args.cases} due cases ready in {setup['seconds']} s")
        probe = Probe(target.url, plan.sync).start() if args.probe else None
        try:
            swept = run_once_workers(work.dir, target.url, workers, env, args.timeout, poll=True)
        finally:
            probed = probe.finish() if probe else None
        log(
            f"  {name}: all escalated at {swept['escalated_s']:.1f} s "
            f"({args.cases / swept['escalated_s']:.0f}/s), workers exited at "
            f"{swept['exit_s']:.1f} s, shares {swept['shares']}; checking"
        )
        opened = probed["commands"] if probed else 0
        check = check_escalated(target.url, args.cases, notices, opened)
    finally:
        work.discard(target)
    seconds = swept["escalated_s"]
    cpu = swept["worker_cpu_s"] - idle["worker_cpu_s"]
    return {
        "target": plan.label,
        "workers": workers,
        "notices": notices,
        "batch": args.batch,
        "cases": args.cases,
        "setup_s": setup["seconds"],
        "startup_s": round(idle["exit_s"], 2),
        "escalated_s": round(seconds, 2),
        "exit_s": round(swept["exit_s"], 2),
        "per_s": round(args.cases / seconds, 1),
        "per_s_net": round(args.cases / max(seconds - idle["exit_s"], 1e-9), 1),
        "worker_cpu_s": round(cpu, 2),
        "worker_cpu_us_each": round(cpu / args.cases * 1e6, 1),
        "shares": swept["shares"],
        "dispatched": swept["dispatched"],
        "errors": swept["errors"],
        "probe": probed,
        **check,
        "setup": setup,
    }


# -- steady lateness -------------------------------------------------------------------------


def _pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p * len(ordered) / 100)))
    return ordered[rank - 1]


def feed(db: Database, template: int, tick_count: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every second, the cases whose deadlines fall due, spread over the second at now + lead.

    Each tick copies the steady run's template (opened by the engine, due far in the future,
    so that the worker never touches it) with each copy's own opening and due instants.
    """
    span, lead = requested_deadline(), timedelta(seconds=args.steady_lead)
    per_s = args.steady_rate / 60.0
    fed, feed_ms, drift, overdue = 0, [], [], 0
    began = time.monotonic()
    for tick in range(tick_count):
        wake = began + tick
        time.sleep(max(wake - time.monotonic(), 0))
        drift.append(time.monotonic() - wake)
        t0 = time.perf_counter()
        k = int(per_s * (tick + 1)) - fed
        if k > 0:
            base = datetime.now(UTC) + lead
            dues = [base + timedelta(seconds=j / k) for j in range(k)]
            clone(db, template, k, [(due - span, due) for due in dues])
            overdue += sum(1 for due in dues if due < datetime.now(UTC))  # due before commit
            fed += k
        feed_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "fed": fed,
        "ticks": tick_count,
        "feed_ms_p50": round(_pct(feed_ms, 50), 1) if feed_ms else None,
        "feed_ms_max": round(max(feed_ms), 1) if feed_ms else None,
        "fed_already_due": overdue,
        "tick_drift_ms_max": round(max(drift) * 1000, 1) if drift else None,
    }


def steady(work: Any, plan: Plan, target: Any, args: argparse.Namespace) -> dict[str, Any]:
    """A worker on its interval; cases falling due at a steady rate; lateness of each."""
    notices = args.steady_notices == "on"
    db = Database(target.url, sqlite_synchronous=plan.sync or "FULL")
    backlog = (
        fill(target, args.steady_backlog, datetime.now(UTC) - timedelta(hours=3))
        if args.steady_backlog
        else None
    )
    template = open_template(db, datetime.now(UTC) + timedelta(days=30))
    proc = spawn(
        work.dir,
        target.url,
        ["worker", "--interval", str(args.steady_interval)],
        f"steady-{plan.label}",
        worker_env(plan, notices, args.batch, work.dir),
    )
    a, d = AUDIT_T.c, DEADLINE_T.c
    since = datetime.now(UTC)  # only the cases fed from now on are measured (not a backlog)
    fed_rows = sa.and_(
        a.actor == "system", a.action == "transition", d.due_at >= since, d.state == "requested"
    )
    on_case = sa.and_(d.case_id == a.case_id, d.state == "requested")
    escalations = sa.select(sa.func.count()).select_from(AUDIT_T.join(DEADLINE_T, on_case))
    escalations = escalations.where(fed_rows)
    try:
        started = time.monotonic()
        while "worker started" not in proc.stderr():
            if proc.popen.poll() is not None or time.monotonic() - started > 60:
                raise RuntimeError(f"the steady worker did not start:\n{proc.stderr()}")
            time.sleep(0.05)
        fed = feed(db, template, round(args.steady_minutes * 60), args)
        # All fed cases fall due within `lead` s; give the worker its interval and then some.
        wait_until = time.monotonic() + args.steady_lead + args.steady_interval + 120
        wait_until += args.steady_backlog * 0.02  # a backlog's notices are dispatched first
        while time.monotonic() < wait_until and proc.popen.poll() is None:
            with db.read() as conn:
                if conn.execute(escalations).scalar_one() >= fed["fed"]:
                    break
            time.sleep(0.2)
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.popen.wait(timeout=120)
        if code != 0:
            raise RuntimeError(f"the steady worker exited {code}:\n{proc.stderr()}")
        with db.read() as conn:
            rows = conn.execute(
                sa.select(a.case_id, a.at, a.data, d.due_at)
                .join(DEADLINE_T, on_case)
                .where(fed_rows)
            ).all()
            sent = (
                conn.execute(
                    sa.text("SELECT count(*) FROM notice WHERE status = 'sent'")
                ).scalar_one()
                if notices
                else None
            )
            report = audit.verify(conn)
        errors = [
            line
            for line in proc.stderr().splitlines()
            if any(bad in line for bad in ("Traceback", "ERROR", "failed"))
        ]
    finally:
        proc.close()
        db.dispose()
        work.discard(target)
    late = [(r.at - r.due_at).total_seconds() for r in rows]
    recorded = [float(r.data["late_s"]) for r in rows]
    return {
        "target": plan.label,
        "notices": notices,
        "notices_sent": sent,
        "interval_s": args.steady_interval,
        "rate_per_min": args.steady_rate,
        "lead_s": args.steady_lead,
        "minutes": args.steady_minutes,
        "backlog": args.steady_backlog,
        "backlog_setup": backlog,
        **fed,
        "escalations": len(rows),
        "distinct_cases": len({r.case_id for r in rows}),
        "p50_s": round(_pct(late, 50), 3) if late else None,
        "p99_s": round(_pct(late, 99), 3) if late else None,
        "max_s": round(max(late), 3) if late else None,
        "min_s": round(min(late), 3) if late else None,
        "mean_s": round(statistics.fmean(late), 3) if late else None,
        # The sweeper's late_s is measured from the batch's `now` (taken before the claim);
        # the event's `at` is the runner's clock when that row is applied, later in the batch.
        "late_s_p50": round(_pct(recorded, 50), 3) if recorded else None,
        "late_s_p99": round(_pct(recorded, 99), 3) if recorded else None,
        "at_after_late_s_max": (
            round(max(x - y for x, y in zip(late, recorded, strict=True)), 3) if late else None
        ),
        "verify_ok": report.ok,
        "worker_errors": errors[:3],
    }


def run_steady(work: Any, plans: list[Plan], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The steady phase on each backend at its default durability, side by side or in turn."""
    chosen = [p for p in plans if p.sync in (None, "FULL")]
    log(
        f"steady: {args.steady_rate}/min for {args.steady_minutes} min on "
        f"{', '.join(p.label for p in chosen)}, worker --interval {args.steady_interval}"
    )
    found: dict[str, dict[str, Any]] = {}
    failures: list[BaseException] = []

    def run(plan: Plan, target: Any) -> None:
        try:
            found[plan.label] = steady(work, plan, target, args)
        except BaseException as exc:  # re-raised once the other backend's run is over
            failures.append(exc)

    if args.steady_serial:
        for plan in chosen:
            run(plan, make_target(work, plan))
    else:
        targets = [make_target(work, p) for p in chosen]  # the workspace is not thread-safe
        threads = [
            threading.Thread(target=run, args=pt) for pt in zip(chosen, targets, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return [found[p.label] for p in chosen]


# -- profile ---------------------------------------------------------------------------------


def profile(args: argparse.Namespace, plans: list[Plan]) -> None:
    """cProfile of ``engine.sweeper.sweep`` run in this process over --cases due cases."""
    import cProfile
    import pstats

    from engine.sweeper import sweep

    plan = plans[0]
    notices = args.notices == "on"
    with core.workspace(args.tmpdir, args.pg_url) as work:
        target = make_target(work, plan)
        fill(target, args.cases, datetime.now(UTC) - timedelta(hours=3))
        db = Database(target.url, sqlite_synchronous=plan.sync or "FULL")
        registry = default_registry()
        notifier = None
        if notices:
            from notifications.outbox import Outbox
            from workflows import default_notices

            notifier = Outbox(registry, default_notices())
        runner = Runner(db, registry, SystemClock(), notifier=notifier, rules=CONFIRMS)
        profiler = cProfile.Profile()
        began = time.perf_counter()
        profiler.enable()
        report = sweep(runner, batch_size=args.batch, keep=False)
        profiler.disable()
        seconds = time.perf_counter() - began
        db.dispose()
        work.discard(target)
    print(
        f"{plan.label}, notices {'on' if notices else 'off'}: in-process sweep of {args.cases} "
        f"due cases in {seconds:.2f} s under cProfile ({report.batches} batches, "
        f"{report.errors} errors)"
    )
    pstats.Stats(profiler).sort_stats(args.profile_sort).print_stats(args.profile_lines)


# -- report ----------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    m, cfg = result["machine"], result["config"]
    lines = [
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, SQLite {m['sqlite']}, "
        f"PostgreSQL {m['postgresql']}, SQLAlchemy {m['sqlalchemy']}, psycopg {m['psycopg']}; "
        f"load average {m['loadavg_start'][0]} at start, {m['loadavg_end'][0]} at end; "
        f"code {m['code_sha256']}",
    ]
    if result["burst"]:
        lines += [
            "",
            f"Burst: {cfg['cases']} ECMO cases in `requested`, opened 3 h ago, all due 2 h ago; "
            "`regul worker --once` processes started together, "
            f"REGUL_SWEEP_BATCH={cfg['batch']}; seconds from the first spawn until no due row "
            "is left (process start-up included). Transitions/s: bench/transitions.py "
            f"`run_engine`, {cfg['rate_cases']} cases x (open + escalate x3 + resolve), one "
            "process, same backend, same run, same notices setting. Worker CPU: user + system "
            "of the worker processes until they exit (with notices: dispatch included), minus "
            "an idle start.",
            "",
            "| backend | notices | workers | start-up s | all escalated s | escalations/s "
            "| transitions/s | ratio | worker CPU µs/esc | workers exit s | exactly once "
            "| audit verify |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
    for row in result["burst"]:
        key = _rate_key(row["target"], row["notices"])
        rate = result["rates"].get(key, {}).get("per_s")
        ratio = f"{row['per_s'] / rate:.2f}" if rate else "-"
        once = "yes" if row["exactly_once"] else "NO"
        lines.append(
            f"| {row['target']} | {'on' if row['notices'] else 'off'} | {row['workers']} | "
            f"{row['startup_s']:.1f} | {row['escalated_s']:.1f} | {row['per_s']:.0f} | "
            f"{rate if rate is not None else '-'} | {ratio} | {row['worker_cpu_us_each']:.0f} | "
            f"{row['exit_s']:.1f} | {once} ({row['escalations']}, {row['duplicated_cases']} "
            f"dup) | {'ok' if row['verify_ok'] else 'BROKEN'} ({row['verify_events']} events) |"
        )
    probed = [row for row in result["burst"] if row.get("probe")]
    if probed:
        lines += ["", "A regulator's command (open a case) every 0.5 s during the burst:", ""]
        for row in probed:
            p = row["probe"]
            lines.append(
                f"- {row['target']} x{row['workers']} notices {'on' if row['notices'] else 'off'}"
                f": {p['commands']} commands, latency p50 {p['p50_s']} s, p90 {p['p90_s']} s, "
                f"max {p['max_s']} s; {p['failed']} failed {p['errors'][:1]}"
            )
    if result.get("steady"):
        backlog = cfg["steady_backlog"]
        lines += [
            "",
            f"Steady: {cfg['steady_rate']} deadlines/min, spread evenly, each due "
            f"{cfg['steady_lead']} s after it is written, for {cfg['steady_minutes']} min; one "
            f"`regul worker --interval {cfg['steady_interval']:g}` (notices "
            f"{cfg['steady_notices']}); lateness = audit `at` - deadline `due_at`"
            + (f"; {backlog} cases 2 h overdue when the worker starts" if backlog else "")
            + ("; the backends ran side by side" if not cfg["steady_serial"] else ""),
            "",
            "| backend | interval s | escalated | p50 s | p99 s | max s | mean s | verify |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in result["steady"]:
            ok = "ok" if row["verify_ok"] else "BROKEN"
            lines.append(
                f"| {row['target']} | {row['interval_s']:g} | {row['escalations']}/{row['fed']} "
                f"| {row['p50_s']} | {row['p99_s']} | {row['max_s']} | {row['mean_s']} | {ok} |"
            )
    lines.append("")
    lines.append(f"Whole run: {result['total_s']:.0f} s")
    return "\n".join(lines)


def _rate_key(label: str, notices: bool) -> str:
    return f"{label}/notices-{'on' if notices else 'off'}"


def plans_of(args: argparse.Namespace) -> list[Plan]:
    plans = []
    if args.backend in ("sqlite", "all"):
        for sync in args.sync:
            plans.append(Plan(f"sqlite-{sync.lower()}", "sqlite", sync, [1]))
    if args.backend in ("postgres", "all"):
        plans.append(Plan("postgres", "postgres", None, args.workers))
    return plans


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Deadline sweep: burst time and steady lateness.")
    add = parser.add_argument
    add("--cases", type=int, default=100_000, help="due cases of a burst, 0: none (100000)")
    add("--backend", choices=("sqlite", "postgres", "all"), default="all")
    add("--workers", default="1,4", help="PostgreSQL worker processes, comma-separated (1,4)")
    add("--sync", default="FULL,NORMAL", help="SQLite synchronous modes of the burst")
    add("--batch", type=int, default=200, help="REGUL_SWEEP_BATCH (200)")
    add(
        "--notices",
        choices=("off", "on", "both"),
        default="off",
        help="queue and dispatch notices during bursts (off: as the core benchmark)",
    )
    add("--rate-cases", type=int, default=500, help="cases of each transition-rate run (500)")
    add("--steady-minutes", type=float, default=3.0, help="minutes of steady feed, 0 to skip (3)")
    add("--steady-rate", type=int, default=1000, help="deadlines falling due per minute (1000)")
    add("--steady-interval", type=float, default=1.0, help="the worker's --interval (1)")
    add("--steady-lead", type=float, default=2.0, help="due this many s after written (2)")
    add(
        "--steady-notices",
        choices=("on", "off"),
        default="on",
        help="notices in the steady worker (on: the worker's default)",
    )
    add("--steady-serial", action="store_true", help="steady runs one after the other")
    add(
        "--steady-backlog",
        type=int,
        default=0,
        help="cases already 2 h overdue when the steady worker starts (0)",
    )
    add(
        "--probe",
        action="store_true",
        help="during each burst, time a regulator's command (open a case) every 0.5 s",
    )
    add("--timeout", type=float, default=3600, help="limit of one burst in seconds")
    add("--pg-url", default=core.PG_URL)
    add("--tmpdir", default=None, help="folder for the SQLite files")
    add("--json", action="store_true", help="print a JSON document on stdout")
    add("--profile", action="store_true", help="only cProfile an in-process sweep")
    add("--profile-lines", type=int, default=40)
    add("--profile-sort", default="cumulative")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    args.sync = [s.strip().upper() for s in args.sync.split(",") if s.strip()]
    if args.cases < 0 or not args.workers or min(args.workers) < 1:
        parser.error("--cases must be 0 (no burst) or more, --workers at least 1")
    if any(s not in {"FULL", "NORMAL"} for s in args.sync):
        parser.error("--sync takes FULL and/or NORMAL")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    core.PG_URL = args.pg_url  # machine() reads the server version from it
    info = core.machine()
    plans = plans_of(args)
    if any(p.backend == "postgres" for p in plans) and info["postgresql"] is None:
        log(f"PostgreSQL at {args.pg_url} is unreachable: skipped")
        plans = [p for p in plans if p.backend != "postgres"]
    if args.profile:
        profile(args, plans)
        return 0
    began = time.perf_counter()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.notices]
    result: dict[str, Any] = {
        "machine": info,
        "config": {
            **{k: v for k, v in vars(args).items() if k not in {"json", "profile"}},
            "argv": sys.argv[1:] if argv is None else argv,
        },
        "rates": {},
        "burst": [],
        "steady": [],
    }
    with core.workspace(args.tmpdir, args.pg_url) as work:
        for plan in plans if args.cases > 0 else []:
            for notices in modes:
                key = _rate_key(plan.label, notices)
                log(f"{key}: transition rate over {args.rate_cases} cases")
                result["rates"][key] = rate = transition_rate(work, plan, args.rate_cases, notices)
                log(f"  {key}: {rate['per_s']} transitions/s")
                for workers in plan.workers:
                    result["burst"].append(burst(work, plan, workers, notices, args))
        if args.steady_minutes > 0:
            result["steady"] = run_steady(work, plans, args)
    result["total_s"] = round(time.perf_counter() - began, 1)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    text = table(result)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
