"""The deadline worker as real processes on PostgreSQL: racing workers, SIGKILL, SIGTERM.

Cases are opened in-process three hours in the past, so their ``requested`` deadline (1 h) is
already due on the wall clock that a worker process reads. Each worker is the installed
``regul`` console script, run in a scratch directory with only the ``REGUL_*`` variables the test
sets (CI and the rest of the environment are inherited). Every wait is bounded; every process
is killed and reaped at teardown if a test left it running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
import sqlalchemy as sa

from engine import audit
from engine.clock import FixedClock, SystemClock
from engine.db import Database
from engine.errors import Conflict, NotPermitted, RegulError
from engine.runner import Runner
from notifications.outbox import Outbox
from tests.conftest import ACTORS_OCC, CONFIRMS, TOULOUSE, truncate_cases
from workflows import default_notices, default_registry

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REGUL = Path(sys.executable).parent / "regul"
ECMO_FIELDS = {"patient_ref": "PAT-0001", "mode": "VV"}
PPE_FIELDS = {
    "lines": '[{"item": "ffp2_mask", "quantity": 5000, "stock_on_hand": 0, '
    '"weekly_consumption": 2000}]',
    "delivery_address": "quai de livraison",
}


@dataclass
class Proc:
    """A worker process with its output in files (never a pipe that could fill and block it)."""

    name: str
    popen: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path
    files: tuple[IO[bytes], IO[bytes]]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout} s; stderr:\n{self.stderr()}")

    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")


Spawn = Callable[..., Proc]


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    """A pool on the session's PostgreSQL schema, case tables emptied first."""
    database = Database(pg_url)
    truncate_cases(database)
    yield database
    database.dispose()


@pytest.fixture
def spawn(pg_url: str, tmp_path: Path) -> Iterator[Spawn]:
    """Start ``regul`` subprocesses; whatever is still alive at teardown is killed and reaped."""
    procs: list[Proc] = []

    def start(*args: str, name: str = "regul", **env_extra: str) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGUL_")}
        env.update({"REGUL_DATABASE_URL": pg_url, "COLUMNS": "200", **env_extra})
        index = len(procs)
        out_path = tmp_path / f"{name}-{index}.out"
        err_path = tmp_path / f"{name}-{index}.err"
        out, err = out_path.open("wb"), err_path.open("wb")
        popen = subprocess.Popen(
            [str(REGUL), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=tmp_path,  # no stray regul.toml can change the settings
        )
        proc = Proc(name, popen, out_path, err_path, (out, err))
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
            try:
                proc.popen.wait(timeout=10)
            finally:
                for handle in proc.files:
                    handle.close()


def open_due_cases(db: Database, count: int) -> datetime:
    """``count`` ECMO cases opened three hours ago: their ``requested`` deadline is 2 h past due."""
    opened_at = datetime.now(UTC) - timedelta(hours=3)
    runner = Runner(db, default_registry(), FixedClock(opened_at), rules=CONFIRMS)
    for _ in range(count):
        runner.open_case(
            kind="ecmo", login=ACTORS_OCC["establishment"], org=TOULOUSE, fields=ECMO_FIELDS
        )
    return opened_at


def scalar(db: Database, sql: str) -> Any:
    with db.read() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def escalations(db: Database) -> int:
    return int(
        scalar(
            db,
            "SELECT count(*) FROM audit_event WHERE action = 'transition' AND actor = 'system'",
        )
    )


def wait_for(what: str, check: Callable[[], bool], *, timeout: float, every: float = 0.05) -> float:
    """Poll ``check`` until true; fail after ``timeout`` seconds. Returns the seconds waited."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


def foreign_locks(db: Database) -> int:
    """Locks that another backend holds on this schema's case or deadline tables."""
    return int(
        scalar(
            db,
            "SELECT count(*) FROM pg_locks l "
            "JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() "
            "AND c.relname IN ('deadline', 'regul_case') AND l.pid <> pg_backend_pid()",
        )
    )


def assert_escalated_exactly_once(db: Database, total: int, *, since: datetime) -> None:
    """Every case escalated once by ``system``, nothing else fired, chain intact, no due row."""
    with db.read() as conn:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.execute(sa.text(sql))]

        assert rows(
            "SELECT action, count(*) FROM audit_event WHERE actor = 'system' GROUP BY action"
        ) == [("transition", total)]
        assert (
            rows(
                "SELECT case_id, count(*) FROM audit_event "
                "WHERE action = 'transition' AND actor = 'system' "
                "GROUP BY case_id HAVING count(*) > 1"
            )
            == []
        )
        assert rows(
            "SELECT count(DISTINCT case_id), min(from_state), max(from_state), "
            "min(to_state), max(to_state), min(version), max(version) "
            "FROM audit_event WHERE action = 'transition' AND actor = 'system'"
        ) == [(total, "requested", "requested", "umac_review", "umac_review", 2, 2)]
        assert rows(
            "SELECT state, version, incident, count(*) FROM regul_case GROUP BY 1, 2, 3"
        ) == [("umac_review", 2, False, total)]
        # Fired on the wall clock, after the test began, and recorded as about 2 h late.
        first_at, min_late = rows(
            "SELECT min(at), min((data->>'late_s')::float) FROM audit_event "
            "WHERE action = 'transition' AND actor = 'system'"
        )[0]
        assert first_at >= since
        assert min_late >= 2 * 3600 - 60
        assert rows("SELECT state, status, count(*) FROM deadline GROUP BY 1, 2 ORDER BY 1") == [
            ("requested", "fired", total),
            ("umac_review", "open", total),
        ]
        assert rows(
            "SELECT count(*) FROM deadline d JOIN regul_case c ON c.id = d.case_id "
            "WHERE d.status = 'open' AND (d.state <> c.state OR d.version <> c.version)"
        ) == [(0,)]
        report = audit.verify(conn)
        assert report.ok, [str(f) for f in report.findings]
        assert report.events == 2 * total


def quiet_log(proc: Proc) -> None:
    """A worker that logged no error, failed sweep or traceback."""
    err = proc.stderr()
    for bad in ("Traceback", "sweep failed", " failed: ", "ERROR", "error:"):
        assert bad not in err, f"{proc.name} logged {bad!r}:\n{err}"


def test_four_racing_workers_escalate_each_case_exactly_once(db: Database, spawn: Spawn) -> None:
    """Four ``regul worker --once`` processes sharing 2,000 due deadlines fire each exactly once."""
    total = 2000
    open_due_cases(db, total)
    began = datetime.now(UTC)
    workers = [
        spawn("worker", "--once", "--json", name="racer", REGUL_SWEEP_BATCH="50") for _ in range(4)
    ]
    codes = [w.wait(timeout=60) for w in workers]
    assert codes == [0, 0, 0, 0], [w.stderr() for w in workers]
    reports = [json.loads(w.stdout()) for w in workers]
    for worker, report in zip(workers, reports, strict=True):
        assert report["errors"] == 0, worker.stderr()
        assert set(report["counts"]) <= {"escalated"}, report
        quiet_log(worker)
    shares = [r["counts"].get("escalated", 0) for r in reports]
    assert sum(shares) == total
    assert escalations(db) == total
    assert_escalated_exactly_once(db, total, since=began)
    if sum(1 for s in shares if s) < 2:  # exactly-once is the guarantee; sharing is a bonus
        print(f"note: one worker did all the work: {shares}")
    else:
        print(f"escalations per worker: {shares}")


def test_sigkill_mid_sweep_loses_nothing_and_fires_nothing_twice(
    db: Database, spawn: Spawn
) -> None:
    """A worker killed mid-sweep commits whole batches only; the next sweep finishes the rest once."""
    total, batch = 1500, 20
    open_due_cases(db, total)
    began = datetime.now(UTC)
    victim = spawn("worker", "--interval", "60", name="victim", REGUL_SWEEP_BATCH=str(batch))
    wait_for(
        "the first escalations",
        lambda: victim.popen.poll() is not None or escalations(db) >= 100,
        timeout=30,
        every=0.01,
    )
    assert victim.popen.poll() is None, f"the worker exited early:\n{victim.stderr()}"
    # Kill it inside a batch: while its transaction holds the claimed rows.
    wait_for("a batch in hand", lambda: foreign_locks(db) > 0, timeout=10, every=0.001)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    # The server rolls back the dead worker's open transaction; until then SKIP LOCKED would
    # (rightly) pass over its rows, so wait for its locks to go before the catch-up sweep.
    released_in = wait_for("the dead worker's locks", lambda: foreign_locks(db) == 0, timeout=10)
    done_before = escalations(db)
    assert 100 <= done_before < total, "the worker was not killed in the middle of its sweep"
    assert done_before % batch == 0, f"a partial batch was committed: {done_before} escalations"
    quiet_log(victim)

    catch_up = spawn("worker", "--once", "--json", name="catch-up", REGUL_SWEEP_BATCH=str(batch))
    assert catch_up.wait(timeout=60) == 0, catch_up.stderr()
    report = json.loads(catch_up.stdout())
    assert (report["counts"], report["errors"]) == ({"escalated": total - done_before}, 0)
    quiet_log(catch_up)
    assert_escalated_exactly_once(db, total, since=began)
    assert (
        scalar(
            db,
            "SELECT count(*) FROM deadline d JOIN regul_case c ON c.id = d.case_id "
            "WHERE c.state = 'requested' AND d.status = 'open' AND d.due_at <= now()",
        )
        == 0
    )
    print(f"killed after {done_before}/{total}; dead worker's locks gone in {released_in:.3f} s")


def test_sigterm_stops_the_scheduled_worker_cleanly(db: Database, spawn: Spawn) -> None:
    """The real scheduler sweeps at start-up and on its interval; SIGTERM exits 0 with work committed."""
    open_due_cases(db, 3)
    began = datetime.now(UTC)
    worker = spawn("worker", "--interval", "0.5", name="scheduled")
    first = wait_for(
        "the start-up sweep",
        lambda: worker.popen.poll() is not None or escalations(db) >= 3,
        timeout=15,
    )
    assert worker.popen.poll() is None, worker.stderr()
    open_due_cases(db, 2)  # only a later tick of the interval can fire these
    later = wait_for(
        "a later sweep",
        lambda: worker.popen.poll() is not None or escalations(db) >= 5,
        timeout=15,
    )
    assert worker.popen.poll() is None, worker.stderr()
    os.kill(worker.pid, signal.SIGTERM)
    stopped_at = time.monotonic()
    code = worker.wait(timeout=10)
    took = time.monotonic() - stopped_at
    err = worker.stderr()
    assert code == 0, err
    assert "worker started: sweep every 0.5 s" in err
    assert f"signal {int(signal.SIGTERM)}: finishing the batch in hand" in err
    assert err.rstrip().endswith("worker stopped"), err
    quiet_log(worker)
    assert_escalated_exactly_once(db, 5, since=began)
    print(f"start-up sweep {first:.2f} s, later tick {later:.2f} s, SIGTERM exit {took:.2f} s")


def _deadlocks(db: Database) -> int:
    """PostgreSQL's own count of deadlocks detected in this database (all backends' stats)."""
    with db.read() as conn:
        conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        return int(
            conn.execute(
                sa.text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            ).scalar_one()
        )


def test_four_workers_and_eight_regulators_never_deadlock(db: Database, spawn: Spawn) -> None:
    """4 workers and 8 regulators on one backlog of two series (MARS, MINSANTE), notices on: no deadlock."""
    registry = default_registry()
    opened = Runner(
        db, registry, FixedClock(datetime.now(UTC) - timedelta(hours=5)), rules=CONFIRMS
    )
    references = [
        opened.open_case(
            kind=kind, login=ACTORS_OCC["establishment"], org=TOULOUSE, fields=fields
        ).reference
        for _ in range(150)
        for kind, fields in (("ecmo", ECMO_FIELDS), ("ppe", PPE_FIELDS))
    ]
    before = _deadlocks(db)
    workers = [
        spawn("worker", "--once", "--json", name="worker", REGUL_SWEEP_BATCH="20") for _ in range(4)
    ]
    failures: list[str] = []

    def regulate(seed: int) -> None:
        runner = Runner(
            db,
            registry,
            SystemClock(),
            notifier=Outbox(registry, default_notices()),
            rules=CONFIRMS,
        )
        order = references[seed::2] + references[1 - seed % 2 :: 2]
        for reference in order:  # the hospital confirms its request while the sweep escalates it
            try:
                runner.advance(
                    reference=reference,
                    trigger="escalate",
                    login=ACTORS_OCC["establishment"],
                    reason="le service confirme la demande",
                )
            except (Conflict, NotPermitted):
                continue  # the sweep was first: the case is no longer the hospital's
            except RegulError as exc:
                failures.append(f"{reference}: {exc}")

    threads = [threading.Thread(target=regulate, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    codes = [w.wait(timeout=120) for w in workers]
    assert codes == [0, 0, 0, 0], [w.stderr() for w in workers]
    for worker in workers:
        assert json.loads(worker.stdout())["errors"] == 0, worker.stderr()
    assert failures == []
    db.dispose()  # this process's backends end and flush their statistics
    time.sleep(1.5)
    assert _deadlocks(db) - before == 0
    with db.read() as conn:
        assert audit.verify(conn).ok
        confirmed = conn.execute(
            sa.text("SELECT count(*) FROM regul_case WHERE state = 'requested'")
        ).scalar_one()
    assert confirmed == 0  # every case escalated, by its hospital or by the sweep, once
