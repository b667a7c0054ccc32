#!/usr/bin/env python
"""Transition throughput of the engine against a plain-SQL floor, and the memory of a long run.

For each backend (SQLite file in WAL mode with ``synchronous`` FULL and NORMAL, PostgreSQL),
N cases are opened and driven up their whole escalation ladder by the real engine
(``Database`` + ``Runner`` + ``default_registry()``), one committed command per step. The floor
writes the same rows with plain ``sqlite3`` / ``psycopg`` statements, one transaction per step:
BEGIN (IMMEDIATE on SQLite), select the case row (FOR UPDATE on PostgreSQL), insert the SHA-256
chained audit event, update the case (state, version, audit head), supersede the open deadline
and insert the new one, COMMIT. Each run gets a freshly migrated database (or PostgreSQL
schema), so indexes, triggers and pragmas are identical; engine and floor runs alternate (the
order flips every repeat) and medians are reported, in wall-clock rate and in CPU time of this
process per command. After each pair the two databases are compared row by row, every column
of regul_case, audit_event and deadline ("same rows").

A separate child process then runs the engine over ``--rss-cases`` cases (open + one
escalation each, SQLite WAL with synchronous NORMAL) and reports its RSS at checkpoints and the
number of live ``CaseView`` objects, to show that nothing per case is kept.

    .venv/bin/python bench/transitions.py                  # the default run (5-7 minutes)
    .venv/bin/python bench/transitions.py --backend sqlite --cases 200 --rss-cases 0
    .venv/bin/python bench/transitions.py --json > result.json
    .venv/bin/python bench/transitions.py --profile --cases 500   # cProfile of the engine
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, and this file is named like the
# `transitions` library the engine imports: take the folder off, put the repository on.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from engine.clock import FixedClock  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.deadlines import ReminderPolicy  # noqa: E402
from engine.decisions import Rules  # noqa: E402
from engine.runner import Runner  # noqa: E402
from engine.workflow import WorkflowSpec  # noqa: E402
from workflows import default_registry  # noqa: E402
from workflows.directory import load_directory  # noqa: E402

CONFIRMS = Rules(hospital_confirms=True)  # the benches time the hospital's confirm step

PG_URL = os.environ.get("REGUL_BENCH_POSTGRES_URL", "postgresql://127.0.0.1/test")
START = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
TICK = timedelta(seconds=1)  # the clock moves one second per command
GENESIS = "0" * 64
# A deadline row's first look (next_at) falls at this fraction of its span (the first reminder).
FIRST_LOOK = ReminderPolicy().fractions[0] if ReminderPolicy().fractions else None
SQLITE_TARGET = 0.30  # the target: the engine reaches 30% of the floor on SQLite

HOSPITAL = "319900001"  # CHU de Toulouse (GHT-OCC-06, region OCC, zone SUD)
ACTORS = {  # demo users of Occitanie, by role (as in tests/conftest.py)
    "establishment": "etab-319900001",
    "ght": "ght-occ-06",
    "umac": "umac-sud",
    "ars": "ars-occ",
    "ars_zone": "arsz-sud",
    "ccs": "ccs",
    "spf": "spf",
}
OPEN_FIELDS: dict[str, dict[str, object]] = {
    "ecmo": {"patient_ref": "PAT-0001", "mode": "VV"},
    "ppe": {
        "lines": [
            {
                "item": "ffp2_mask",
                "quantity": 5000,
                "stock_on_hand": 800,
                "weekly_consumption": 3000,
            }
        ],
        "delivery_address": "Quai de livraison",
    },
    "transfer": {"patient_ref": "PAT-0002", "covid": True, "bed_category": "reanimation"},
}
RESOLVE_DATA: dict[str, dict[str, object]] = {
    "ecmo": {"source": "national", "return_by": "2026-12-15"},
    "ppe": {"quantity": 4000, "expected_delivery": "2026-11-24"},  # source: the level's own
    "transfer": {"receiving_hospital": "349900001", "means": "air", "date": "2026-11-23"},
}


# -- the ladder, computed once from the workflow tables (never inside a timed loop) ---------


@dataclass(frozen=True)
class Step:
    """One command of a ladder, with everything the floor needs to write its rows."""

    trigger: str | None  # None: the opening
    login: str
    role: str
    org: str
    from_state: str | None
    to_state: str
    level: str | None
    final: bool
    version: int
    reason: str
    data: dict[str, object]  # what the engine is given
    audit_data: dict[str, object]  # what the audit event records
    new_fields: dict[str, object]  # what is merged into the case's fields
    deadline: timedelta | None  # a waiting state's duration …
    due_at: datetime | None  # … or the end of a day the case carries (a return, a delivery)
    action: str | None


@dataclass(frozen=True)
class Ladder:
    kind: str
    open_fields: dict[str, object]
    steps: tuple[Step, ...]  # steps[0] is the opening


def build_ladder(spec: WorkflowSpec, users: dict[str, tuple[str, str]]) -> Ladder:
    """Open, escalate while the ladder goes up, then resolve at the top."""

    def step(trigger: str | None, source: str | None, dest: str, version: int) -> Step:
        target = spec.state(dest)
        if trigger is None:
            role = spec.open_roles[0]
            data: dict[str, object] = {}
            audit_data: dict[str, object] = {
                "kind": spec.kind,
                "org": HOSPITAL,
                "fields": dict(opened),
            }
        else:
            assert source is not None
            transition = spec.transition(source, trigger)
            assert transition is not None
            level = spec.state(source).level
            role = level if level in transition.roles else transition.roles[0]
            given = RESOLVE_DATA[spec.kind] if trigger == "resolve" else {}
            # in the order of the workflow's fields, as the engine stores them
            data = {f.name: given[f.name] for f in transition.fields if f.name in given}
            audit_data = {"trigger": trigger, "fields": dict(data)}
            if data:
                fields[trigger] = dict(data)
        login = ACTORS[role]
        actor_role, actor_org = users[login]
        return Step(
            trigger=trigger,
            login=login,
            role=actor_role,
            org=actor_org,
            from_state=source,
            to_state=dest,
            level=target.level,
            final=target.final,
            version=version,
            reason="" if trigger is None else f"bench {trigger}",
            data=data,
            audit_data=audit_data,
            new_fields={trigger: dict(data)} if trigger and data else {},
            deadline=target.deadline if target.on_deadline else None,
            due_at=_due_from_field(target, fields) if target.on_deadline else None,
            action=target.on_deadline,
        )

    given = OPEN_FIELDS[spec.kind]  # in the order of the workflow's fields
    opened = {f.name: given[f.name] for f in spec.open_fields if f.name in given}
    fields: dict[str, Any] = dict(opened)
    steps = [step(None, None, spec.initial, 1)]
    state, version = spec.initial, 1
    while True:
        trigger = "escalate" if spec.transition(state, "escalate") else "resolve"
        dest = spec.fire(state, trigger)
        version += 1
        steps.append(step(trigger, state, dest, version))
        state = dest
        if trigger == "resolve":
            return Ladder(spec.kind, dict(opened), tuple(steps))


def _due_from_field(target: Any, fields: dict[str, Any]) -> datetime | None:
    """A state due at the end (Paris time) of a date the case carries, e.g. 'resolve.return_by'."""
    due_field = getattr(target, "due_field", None)
    if target.deadline is not None or not due_field:
        return None
    value = None
    for one in due_field.split():  # the first date the case carries (an extension's first)
        trigger, _, name = one.partition(".")
        value = fields.get(trigger, {}).get(name)
        if value:
            break
    if not value:
        return None
    day = date.fromisoformat(str(value)) + timedelta(days=1)
    return datetime.combine(day, dtime(0), tzinfo=ZoneInfo("Europe/Paris")).astimezone(UTC)


def _users(conn: sa.Connection) -> dict[str, tuple[str, str]]:
    rows = conn.execute(sa.text("SELECT login, role, org FROM regul_user")).all()
    return {r.login: (r.role, r.org) for r in rows}


def _hospital(conn: sa.Connection) -> dict[str, Any]:
    row = conn.execute(
        sa.text("SELECT region, zone, department, ght FROM organisation WHERE id = :id"),
        {"id": HOSPITAL},
    ).one()
    return dict(row._mapping)


# -- targets: a freshly migrated SQLite file or PostgreSQL schema per run --------------------


@dataclass
class Target:
    backend: str  # sqlite | postgres
    sync: str | None  # FULL | NORMAL on SQLite
    url: str  # SQLAlchemy URL
    path: Path | None = None  # SQLite file
    schema: str | None = None  # PostgreSQL schema

    @property
    def label(self) -> str:
        return f"sqlite-{self.sync.lower()}" if self.sync else "postgres"

    def engine_db(self) -> Database:
        if self.backend == "sqlite":
            assert self.sync is not None
            return Database(self.url, sqlite_synchronous=self.sync)
        return Database(self.url)


class Workspace:
    """Creates and drops the databases of a run; a migrated SQLite template is copied."""

    def __init__(self, tmpdir: str | None, pg_url: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="regul-bench-", dir=tmpdir))
        self.pg_url = pg_url
        self._n = 0
        self._schemas: list[str] = []
        self._template: Path | None = None
        self._admin: sa.Engine | None = None

    def sqlite(self, sync: str) -> Target:
        if self._template is None:
            self._template = self.dir / "template.db"
            db = Database(f"sqlite:///{self._template}")
            db.migrate()
            with db.write() as conn:
                load_directory(conn)
            db.dispose()
        self._n += 1
        path = self.dir / f"run{self._n}.db"
        shutil.copy(self._template, path)
        return Target("sqlite", sync, f"sqlite:///{path}", path=path)

    def postgres(self) -> Target:
        self._n += 1
        schema = f"regul_bench_{os.getpid()}_{self._n}"
        if self._admin is None:
            self._admin = sa.create_engine(Database(self.pg_url).url, poolclass=sa.pool.NullPool)
        with self._admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        self._schemas.append(schema)
        sep = "&" if "?" in self.pg_url else "?"
        url = f"{self.pg_url}{sep}options=-csearch_path%3D{schema}"
        db = Database(url)
        db.migrate()
        with db.write() as conn:
            load_directory(conn)
        db.dispose()
        return Target("postgres", None, url, schema=schema)

    def discard(self, target: Target) -> None:
        if target.path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{target.path}{suffix}").unlink(missing_ok=True)
        if target.schema is not None and self._admin is not None:
            with self._admin.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {target.schema} CASCADE"))
            self._schemas.remove(target.schema)

    def close(self) -> None:
        if self._admin is not None:
            with self._admin.begin() as conn:
                for schema in self._schemas:
                    conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            self._admin.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)


def setup_facts(target: Target, kinds: list[str]) -> tuple[list[Ladder], dict[str, Any]]:
    """The ladders and the hospital row, read once before any timing."""
    db = Database(target.url)
    registry = default_registry()
    with db.read() as conn:
        users, hospital = _users(conn), _hospital(conn)
    db.dispose()
    return [build_ladder(registry[k], users) for k in kinds], hospital


# -- the engine ------------------------------------------------------------------------------


def run_engine(target: Target, ladders: list[Ladder], cases: int) -> tuple[float, float, int]:
    """Open ``cases`` cases, drive each up its ladder: (seconds, CPU seconds, commands)."""
    db = target.engine_db()
    clock = FixedClock(START)
    runner = Runner(db, default_registry(), clock, rules=CONFIRMS)
    commands = 0
    began, cpu = time.perf_counter(), time.process_time()
    for i in range(cases):
        ladder = ladders[i % len(ladders)]
        opening = ladder.steps[0]
        clock.advance(TICK)
        case = runner.open_case(
            kind=ladder.kind, login=opening.login, org=HOSPITAL, fields=ladder.open_fields
        )
        reference = case.reference
        for step in ladder.steps[1:]:
            clock.advance(TICK)
            runner.advance(
                reference=reference,
                trigger=step.trigger or "",
                login=step.login,
                reason=step.reason,
                data=step.data,
            )
        commands += len(ladder.steps)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    db.dispose()
    return elapsed, cpu, commands


# -- the floor: the same rows with plain driver statements -----------------------------------


def _canonical(case_id: int, seq: int, at: datetime, step: Step, data: dict[str, object]) -> bytes:
    record = {
        "case": case_id,
        "seq": seq,
        "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": step.login,
        "role": step.role,
        "org": step.org,
        "action": "opened" if step.trigger is None else "transition",
        "from": step.from_state,
        "to": step.to_state,
        "version": step.version,
        "reason": step.reason,
        "data": data,
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _chain(prev: str, body: bytes) -> str:
    return hashlib.sha256(prev.encode("ascii") + body).hexdigest()


_CASE_COLUMNS = (
    "kind, state, level, final, version, org, region, zone, department, ght, fields, "
    "opened_by, opened_at, updated_at, audit_seq, audit_hash"
)
_AUDIT_COLUMNS = (
    "case_id, seq, at, actor, role, org, action, from_state, to_state, version, reason, data, "
    "prev_hash, hash"
)
_DEADLINE_COLUMNS = "case_id, state, version, due_at, action, status, created_at"


class SqliteFloor:
    """sqlite3, autocommit off at the driver level, explicit BEGIN IMMEDIATE … COMMIT."""

    ph = "?"

    def __init__(self, target: Target) -> None:
        assert target.path is not None
        self.conn = sqlite3.connect(target.path, isolation_level=None)
        c = self.conn
        c.execute("PRAGMA busy_timeout = 30000")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        assert str(mode).lower() == "wal", mode
        c.execute(f"PRAGMA synchronous = {target.sync}")
        c.execute("PRAGMA foreign_keys = ON")

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self.conn.execute(sql, params)

    @staticmethod
    def at(moment: datetime) -> Any:  # SQLAlchemy's SQLite DateTime storage format
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")

    @staticmethod
    def json(value: dict[str, object]) -> Any:
        return json.dumps(value)

    @staticmethod
    def load(value: Any) -> dict[str, object]:
        return dict(json.loads(value))

    lock = ""

    def close(self) -> None:
        self.conn.close()


class PostgresFloor:
    """One psycopg 3 connection, a transaction per step (implicit BEGIN, explicit commit)."""

    ph = "%s"

    def __init__(self, target: Target) -> None:
        self.conn = psycopg.connect(target.url)

    def begin(self) -> None:  # psycopg opens the transaction with the first statement
        pass

    def commit(self) -> None:
        self.conn.commit()

    def execute(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self.conn.execute(sql, params)

    @staticmethod
    def at(moment: datetime) -> Any:
        return moment

    @staticmethod
    def json(value: dict[str, object]) -> Any:
        return Jsonb(value)

    @staticmethod
    def load(value: Any) -> dict[str, object]:
        return dict(value)

    lock = " FOR UPDATE"

    def close(self) -> None:
        self.conn.close()


class FloorWriter:
    """The floor's statements, built once; one method per command, one transaction each."""

    def __init__(self, target: Target, hospital: dict[str, Any]) -> None:
        self.db: SqliteFloor | PostgresFloor = (
            SqliteFloor(target) if target.backend == "sqlite" else PostgresFloor(target)
        )
        p, h = self.db.ph, hospital
        self.place = (HOSPITAL, h["region"], h["zone"], h["department"], h["ght"])

        def values(n: int) -> str:
            return ", ".join([p] * n)

        self.insert_case = (
            f"INSERT INTO regul_case ({_CASE_COLUMNS}) VALUES ({values(16)}) RETURNING id"
        )
        self.head = f"UPDATE regul_case SET audit_seq = {p}, audit_hash = {p} WHERE id = {p}"
        self.select_case = f"SELECT * FROM regul_case WHERE id = {p}{self.db.lock}"
        self.insert_audit = f"INSERT INTO audit_event ({_AUDIT_COLUMNS}) VALUES ({values(14)})"
        self.update_case = (
            f"UPDATE regul_case SET state = {p}, level = {p}, final = {p}, version = {p}, "
            f"fields = {p}, updated_at = {p}, audit_seq = {p}, audit_hash = {p} "
            f"WHERE id = {p} AND version = {p}"
        )
        self.supersede = (
            f"UPDATE deadline SET status = 'superseded', closed_at = {p} "
            f"WHERE case_id = {p} AND status = 'open'"
        )
        # Schema 0002 gave deadlines the sweeper's next look (next_at = due_at) and a count of
        # reminders: write them when the migrated schema has them, as the engine does.
        self.swept = {"next_at", "reminders"} <= set(columns_of(target, "deadline"))
        extra = ", next_at, reminders" if self.swept else ""
        self.insert_deadline = (
            f"INSERT INTO deadline ({_DEADLINE_COLUMNS}{extra}) "
            f"VALUES ({values(9 if self.swept else 7)})"
        )
        self.index: dict[str, int] = {}  # column positions of the case row, learnt once

    def _deadline(self, step: Step, case_id: int, at: Any, now: datetime) -> None:
        if step.deadline is not None:
            due = now + step.deadline
        elif step.due_at is not None:
            due = step.due_at
        else:
            return
        look = now + (due - now) * FIRST_LOOK if FIRST_LOOK and due > now else due
        row = (case_id, step.to_state, step.version, self.db.at(due), step.action, "open", at)
        self.db.execute(self.insert_deadline, (*row, self.db.at(look), 0) if self.swept else row)

    def _audit(self, case_id: int, seq: int, at: Any, step: Step, prev: str, digest: str) -> None:
        action = "opened" if step.trigger is None else "transition"
        self.db.execute(
            self.insert_audit,
            (case_id, seq, at, step.login, step.role, step.org, action, step.from_state,
             step.to_state, step.version, step.reason, self.db.json(step.audit_data), prev,
             digest),
        )  # fmt: skip

    def open_case(self, ladder: Ladder, now: datetime) -> int:
        db, opening = self.db, ladder.steps[0]
        at = db.at(now)
        db.begin()
        case_id: int = db.execute(
            self.insert_case,
            (ladder.kind, opening.to_state, opening.level, False, 1, *self.place,
             db.json(ladder.open_fields), opening.login, at, at, 0, ""),
        ).fetchone()[0]  # fmt: skip
        digest = _chain(GENESIS, _canonical(case_id, 1, now, opening, opening.audit_data))
        self._audit(case_id, 1, at, opening, GENESIS, digest)
        db.execute(self.head, (1, digest, case_id))
        self._deadline(opening, case_id, at, now)
        db.commit()
        return case_id

    def advance(self, case_id: int, step: Step, now: datetime) -> None:
        db, index = self.db, self.index
        at = db.at(now)
        db.begin()
        cursor = db.execute(self.select_case, (case_id,))
        row = cursor.fetchone()
        if not index:
            index.update({d[0]: i for i, d in enumerate(cursor.description)})
        assert row[index["state"]] == step.from_state
        prev = row[index["audit_hash"]]
        seq = row[index["audit_seq"]] + 1
        digest = _chain(prev, _canonical(case_id, seq, now, step, step.audit_data))
        self._audit(case_id, seq, at, step, prev, digest)
        fields = db.load(row[index["fields"]])
        fields.update(step.new_fields)
        db.execute(
            self.update_case,
            (step.to_state, step.level, step.final, step.version, db.json(fields), at, seq,
             digest, case_id, step.version - 1),
        )  # fmt: skip
        db.execute(self.supersede, (at, case_id))
        self._deadline(step, case_id, at, now)
        db.commit()


def run_floor(
    target: Target, ladders: list[Ladder], cases: int, hospital: dict[str, Any]
) -> tuple[float, float, int]:
    """The same commands as ``run_engine``, written by ``FloorWriter``."""
    writer = FloorWriter(target, hospital)
    now, commands = START, 0
    began, cpu = time.perf_counter(), time.process_time()
    for i in range(cases):
        ladder = ladders[i % len(ladders)]
        now += TICK
        case_id = writer.open_case(ladder, now)
        for step in ladder.steps[1:]:
            now += TICK
            writer.advance(case_id, step, now)
        commands += len(ladder.steps)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    writer.db.close()
    return elapsed, cpu, commands


def columns_of(target: Target, table: str) -> list[str]:
    engine = sa.create_engine(Database(target.url).url, poolclass=sa.pool.NullPool)
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns(table)]
    finally:
        engine.dispose()


def fingerprint(target: Target) -> dict[str, Any]:
    """What both sides must have written: case heads, and row counts by kind of row."""
    engine = sa.create_engine(Database(target.url).url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        heads = conn.execute(
            sa.text("SELECT id, state, version, audit_seq, audit_hash FROM regul_case ORDER BY id")
        ).all()
        events = conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one()
        deadlines = conn.execute(
            sa.text("SELECT status, count(*) FROM deadline GROUP BY status ORDER BY status")
        ).all()
        everything = hashlib.sha256()
        for table in ("regul_case", "audit_event", "deadline"):
            for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")):
                everything.update(repr(tuple(row)).encode())
    engine.dispose()
    digest = hashlib.sha256(repr([tuple(r) for r in heads]).encode()).hexdigest()[:16]
    return {
        "cases": len(heads),
        "audit_events": int(events),
        "deadlines": {s: int(n) for s, n in deadlines},
        "heads_sha256": digest,
        "rows_sha256": everything.hexdigest()[:16],  # every column of every row of the 3 tables
    }


# -- the RSS child ---------------------------------------------------------------------------


def _rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB from /proc/self/status."""
    found = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                found[key] = int(value.split()[0])
    return found["VmRSS"], found["VmHWM"]


def _live(type_: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is type_)


def rss_child(cases: int, steps_per_case: int, tmpdir: str | None) -> dict[str, Any]:
    """Run in its own process: the engine over ``cases`` cases, RSS at checkpoints."""
    from engine.cases import CaseView

    work = Workspace(tmpdir, PG_URL)
    try:
        target = work.sqlite("NORMAL")
        ladders, _ = setup_facts(target, ["ecmo"])
        ladder = ladders[0]
        path = ladder.steps[1 : 1 + steps_per_case]
        db = target.engine_db()
        clock = FixedClock(START)
        runner = Runner(db, default_registry(), clock, rules=CONFIRMS)
        marks = sorted({c for c in (1_000, 10_000, 50_000, 100_000) if c < cases} | {cases})
        gc.collect()
        rss, hwm = _rss_kib()
        points = [
            {
                "cases": 0,
                "rss_kib": rss,
                "hwm_kib": hwm,
                "seconds": 0.0,
                "gc_objects": len(gc.get_objects()),
                "live_caseviews": _live(CaseView),
            }
        ]
        began = time.perf_counter()

        def drive(count: int) -> None:  # a function, so that no view outlives its case
            for _ in range(count):
                clock.advance(TICK)
                reference = runner.open_case(
                    kind="ecmo",
                    login=ladder.steps[0].login,
                    org=HOSPITAL,
                    fields=ladder.open_fields,
                ).reference
                for step in path:
                    clock.advance(TICK)
                    runner.advance(
                        reference=reference,
                        trigger=step.trigger or "",
                        login=step.login,
                        reason=step.reason,
                        data=step.data,
                    )

        done = 0
        for mark in marks:
            drive(mark - done)
            done = mark
            seconds = time.perf_counter() - began
            rss, hwm = _rss_kib()  # read before anything is collected by hand
            points.append(
                {
                    "cases": done,
                    "rss_kib": rss,
                    "hwm_kib": hwm,
                    "seconds": round(seconds, 2),
                    "gc_objects": len(gc.get_objects()),
                    "live_caseviews": _live(CaseView),
                }
            )
        elapsed = time.perf_counter() - began
        gc.collect()
        result = {
            "backend": "sqlite-normal",
            "cases": cases,
            "commands_per_case": 1 + len(path),
            "commands": cases * (1 + len(path)),
            "seconds": round(elapsed, 2),
            "commands_per_s": round(cases * (1 + len(path)) / elapsed, 1),
            "checkpoints": points,
            "live_caseviews_after_gc": _live(CaseView),
            "db_bytes": sum(
                Path(f"{target.path}{s}").stat().st_size
                for s in ("", "-wal")
                if Path(f"{target.path}{s}").exists()
            ),
        }
        db.dispose()
        return result
    finally:
        work.close()


def run_rss(cases: int, steps_per_case: int, tmpdir: str | None) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--rss-child",
        str(cases),
        "--rss-steps",
        str(steps_per_case),
    ]
    if tmpdir:
        command += ["--tmpdir", tmpdir]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the RSS child failed:\n{done.stderr}")
    return dict(json.loads(done.stdout))


# -- orchestration ---------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def workspace(tmpdir: str | None, pg_url: str) -> Iterator[Workspace]:
    work = Workspace(tmpdir, pg_url)
    try:
        yield work
    finally:
        work.close()


def measure(
    work: Workspace,
    make: Callable[[], Target],
    kinds: list[str],
    cases: int,
    repeat: int,
) -> dict[str, Any]:
    """Alternate engine and floor runs (order flipped every repeat) on fresh databases."""
    runs: dict[str, list[float]] = {"engine": [], "floor": []}
    cpus: dict[str, list[float]] = {"engine": [], "floor": []}  # µs of this process per step
    checks: list[bool] = []
    label, commands, rows = "", 0, {}
    for r in range(repeat):
        order = ("engine", "floor") if r % 2 == 0 else ("floor", "engine")
        prints: dict[str, dict[str, Any]] = {}
        for side in order:
            target = make()
            label = target.label
            ladders, hospital = setup_facts(target, kinds)
            if side == "engine":
                seconds, cpu, commands = run_engine(target, ladders, cases)
            else:
                seconds, cpu, commands = run_floor(target, ladders, cases, hospital)
            prints[side] = fingerprint(target)
            work.discard(target)
            rate = commands / seconds
            runs[side].append(rate)
            cpus[side].append(cpu / commands * 1e6)
            log(
                f"  {label:<14} {side:<6} run {r + 1}/{repeat}: {commands} commands "
                f"in {seconds:6.2f} s = {rate:8.1f}/s, {cpus[side][-1]:5.0f} µs CPU each"
            )
        same = prints["engine"] == prints["floor"]
        if not same:
            log(f"  rows differ: engine {prints['engine']} floor {prints['floor']}")
        checks.append(same)
        rows = prints["engine"]
    engine_median = statistics.median(runs["engine"])
    floor_median = statistics.median(runs["floor"])
    return {
        "target": label,
        "cases": cases,
        "commands": commands,
        "engine_per_s": [round(x, 1) for x in runs["engine"]],
        "floor_per_s": [round(x, 1) for x in runs["floor"]],
        "engine_median": round(engine_median, 1),
        "floor_median": round(floor_median, 1),
        "ratio": round(engine_median / floor_median, 3),
        "engine_cpu_us": [round(x, 1) for x in cpus["engine"]],
        "floor_cpu_us": [round(x, 1) for x in cpus["floor"]],
        "engine_cpu_us_median": round(statistics.median(cpus["engine"]), 1),
        "floor_cpu_us_median": round(statistics.median(cpus["floor"]), 1),
        # floor CPU per step / engine CPU per command: the ratio when nothing else competes
        "cpu_ratio": round(statistics.median(cpus["floor"]) / statistics.median(cpus["engine"]), 3),
        "same_rows": all(checks),
        "rows": rows,
    }


def code_digest() -> str:
    """A digest of the engine and workflow sources measured (the tree has no commit to name)."""
    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("engine/**/*.py"), *ROOT.glob("workflows/*.py")]):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sa.__version__,
        "psycopg": psycopg.__version__,
        "platform": platform.platform(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "code_sha256": code_digest(),
    }
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    except psycopg.Error:
        info["postgresql"] = None
    return info


def table(result: dict[str, Any]) -> str:
    lines = []
    m = result["machine"]
    lines.append(
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, SQLite {m['sqlite']}, "
        f"PostgreSQL {m['postgresql']}, SQLAlchemy {m['sqlalchemy']}, psycopg {m['psycopg']}; "
        f"load average {m['loadavg_start'][0]} at start, {m.get('loadavg_end', ['?'])[0]} at end"
    )
    cfg = result["config"]
    lines.append(
        f"Workload: {cfg['cases']} cases x ({' / '.join(cfg['ladders'])}), "
        f"medians of {cfg['repeat']} alternated runs"
    )
    lines.append("")
    head = (
        f"{'backend':<15}{'engine trans/s':>15}{'floor steps/s':>15}{'ratio':>8}{'target':>9}"
        f"{'CPU µs engine':>15}{'CPU µs floor':>14}{'CPU ratio':>11}{'same rows':>11}"
        "   runs/s engine | floor"
    )
    lines.append(head)
    lines.append("-" * len(head))
    for row in result["throughput"]:
        target = f">={SQLITE_TARGET:.2f}" if row["target"].startswith("sqlite") else "-"
        runs = (
            ", ".join(f"{x:.0f}" for x in row["engine_per_s"])
            + " | "
            + ", ".join(f"{x:.0f}" for x in row["floor_per_s"])
        )
        lines.append(
            f"{row['target']:<15}{row['engine_median']:>15.1f}{row['floor_median']:>15.1f}"
            f"{row['ratio']:>8.3f}{target:>9}{row['engine_cpu_us_median']:>15.0f}"
            f"{row['floor_cpu_us_median']:>14.0f}{row['cpu_ratio']:>11.3f}"
            f"{'yes' if row['same_rows'] else 'NO':>11}   {runs}"
        )
    rss = result.get("rss")
    if rss:
        lines.append("")
        lines.append(
            f"RSS (child process, {rss['backend']}, {rss['commands_per_case']} commands per case, "
            f"{rss['commands']} commands in {rss['seconds']} s = {rss['commands_per_s']}/s):"
        )
        lines.append(
            f"{'cases':>10}{'VmRSS MiB':>11}{'VmHWM MiB':>11}{'gc objects':>12}"
            f"{'live CaseView':>15}"
        )
        for p in rss["checkpoints"]:
            lines.append(
                f"{p['cases']:>10}{p['rss_kib'] / 1024:>11.1f}{p['hwm_kib'] / 1024:>11.1f}"
                f"{p['gc_objects']:>12}{p['live_caseviews']:>15}"
            )
        lines.append(
            f"live CaseView objects at the end, after gc.collect(): "
            f"{rss['live_caseviews_after_gc']}"
        )
    return "\n".join(lines)


def profile(args: argparse.Namespace) -> None:
    """cProfile of the engine alone, SQLite WAL synchronous NORMAL."""
    import cProfile
    import pstats

    with workspace(args.tmpdir, args.pg_url) as work:
        target = work.sqlite("NORMAL") if args.backend != "postgres" else work.postgres()
        ladders, _ = setup_facts(target, args.kinds)
        profiler = cProfile.Profile()
        profiler.enable()
        seconds, _, commands = run_engine(target, ladders, args.cases)
        profiler.disable()
        work.discard(target)
    print(f"{target.label}: {commands} commands in {seconds:.2f} s under cProfile")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile_lines)


def throughput(args: argparse.Namespace, info: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    syncs = ["FULL", "NORMAL"] if args.sync == "both" else [args.sync]
    with workspace(args.tmpdir, args.pg_url) as work:
        if args.backend in ("sqlite", "all"):
            for sync in syncs:
                log(f"SQLite WAL synchronous={sync}: {args.cases} cases, {args.repeat} repeats")
                make = lambda s=sync: work.sqlite(s)  # noqa: E731
                rows.append(measure(work, make, args.kinds, args.cases, args.repeat))
        if args.backend in ("postgres", "all"):
            if info["postgresql"] is None:
                log(f"PostgreSQL at {args.pg_url} is unreachable: skipped")
            else:
                log(f"PostgreSQL {info['postgresql']}: {args.cases} cases, {args.repeat} repeats")
                rows.append(measure(work, work.postgres, args.kinds, args.cases, args.repeat))
    for row in rows:
        if row["target"].startswith("sqlite"):
            row["meets_target"] = row["ratio"] >= SQLITE_TARGET
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Transitions per second of the engine against a plain-SQL floor."
    )
    parser.add_argument("--cases", type=int, default=1000, help="cases per run (default 1000)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="all")
    parser.add_argument(
        "--sync",
        choices=("FULL", "NORMAL", "both"),
        default="both",
        help="SQLite synchronous mode(s) to measure (default both)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="alternated runs per side")
    parser.add_argument(
        "--rss-cases", type=int, default=100_000, help="cases for the RSS child process (0 to skip)"
    )
    parser.add_argument(
        "--rss-steps",
        type=int,
        default=1,
        help="transitions after the opening in the RSS run (default 1)",
    )
    parser.add_argument(
        "--kinds", default="ecmo", help="comma-separated workflows, used in turn (default ecmo)"
    )
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--tmpdir", default=None, help="folder for the SQLite files")
    parser.add_argument("--json", action="store_true", help="print a JSON document on stdout")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile the engine (cProfile, sorted by cumulative time)",
    )
    parser.add_argument("--profile-lines", type=int, default=40)
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]

    if args.rss_child is not None:
        print(json.dumps(rss_child(args.rss_child, args.rss_steps, args.tmpdir)))
        return 0
    if args.profile:
        profile(args)
        return 0

    info = machine()
    ladders = []
    for kind in args.kinds:
        spec = default_registry()[kind]
        ladders.append(
            f"{kind}: open + "
            + " + ".join(s.trigger or "" for s in build_ladder(spec, _FAKE_USERS).steps[1:])
        )
    result: dict[str, Any] = {
        "machine": info,
        "config": {
            "cases": args.cases,
            "repeat": args.repeat,
            "kinds": args.kinds,
            "ladders": ladders,
            "clock_tick_s": TICK.total_seconds(),
            "sqlite_target_ratio": SQLITE_TARGET,
            "argv": sys.argv[1:] if argv is None else argv,
        },
    }
    result["throughput"] = throughput(args, info)
    if args.rss_cases > 0:
        log(f"RSS child: {args.rss_cases} cases, open + {args.rss_steps} transition(s) each")
        result["rss"] = run_rss(args.rss_cases, args.rss_steps, args.tmpdir)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    text = table(result)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(result, indent=2))
    else:
        print(text)
    return 0


# Role and organisation of each demo user, only to describe the ladders in the report header.
_FAKE_USERS: dict[str, tuple[str, str]] = {login: (role, "") for role, login in ACTORS.items()}


if __name__ == "__main__":
    sys.exit(main())
