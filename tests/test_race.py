"""Two OS processes race on the same cases on PostgreSQL: one transition, never two.

Each racer is a spawned process with its own engine, connection pool and notice outbox. A
barrier releases both at once for every round; a hook on the racer's engine holds its
transaction for a moment at the contended point (just after ``SELECT … FOR UPDATE`` on the
case, or just after storing the idempotency key of a new case), so that the other racer
really runs into it and waits for the first one's commit instead of arriving after it.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from engine import audit
from engine.clock import FixedClock
from engine.db import Database
from engine.errors import RegulError
from engine.runner import Runner
from engine.unit_of_work import Tx
from notifications.outbox import Outbox
from tests.conftest import ACTORS_OCC, CONFIRMS, DEFAULT_FIELDS, START, TOULOUSE, truncate_cases
from workflows import default_notices, default_registry

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROUNDS = 10  # races, one after the other, each on its own case
HOLD = 0.25  # seconds a racer stays at the contended point of its transaction
WAITED = HOLD / 2  # a statement this slow was waiting for the other racer's transaction
LOGIN = ACTORS_OCC["establishment"]
# Where a racer holds its transaction: after locking the case (advance), after writing the
# idempotency key (open: there is no row to lock, the key's primary key is what the loser meets).
LOCK_CASE = ("FROM regul_case", "FOR UPDATE")
STORE_KEY = ("INSERT INTO idempotency",)


def _runner(db: Database) -> Runner:
    registry = default_registry()
    return Runner(
        db,
        registry,
        FixedClock(START),
        notifier=Outbox(registry, default_notices()),
        rules=CONFIRMS,
    )


def _hold_at(db: Database, marker: tuple[str, ...], waits: list[float]) -> None:
    """Time every statement; stay ``HOLD`` seconds after the one that contains ``marker``.

    The case lock runs on the driver's cursor (``Tx.lock``), outside SQLAlchemy's events: it
    is timed and held by wrapping ``Tx.lock`` itself.
    """
    if marker == LOCK_CASE:
        locking, prefetching = Tx.lock, Tx.prefetch

        def prefetch(self: Tx, login: str, reference: str) -> None:
            started = time.monotonic()
            try:
                prefetching(self, login, reference)
            finally:
                waits.append(time.monotonic() - started)
                time.sleep(HOLD)

        def lock(self: Tx, reference: str) -> Any:
            held = self._prefetched is not None and self._prefetched[2] == reference
            started = time.monotonic()
            try:
                return locking(self, reference)
            finally:
                waits.append(time.monotonic() - started)
                if not held:  # locked here, not already by the prefetch
                    time.sleep(HOLD)

        Tx.lock = lock  # type: ignore[method-assign]  # this racer's own process
        Tx.prefetch = prefetch  # type: ignore[method-assign]

    @event.listens_for(db.engine, "before_cursor_execute")
    def _started(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["race_started"] = time.monotonic()

    @event.listens_for(db.engine, "after_cursor_execute")
    def _done(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        waits.append(time.monotonic() - conn.info.pop("race_started"))
        if all(part in statement for part in marker):
            time.sleep(HOLD)

    @event.listens_for(db.engine, "handle_error")
    def _failed(context: Any) -> None:  # the loser's key insert fails once the winner commits
        if context.connection is not None and "race_started" in context.connection.info:
            waits.append(time.monotonic() - context.connection.info.pop("race_started"))


def _racer(
    name: str, url: str, op: str, jobs: list[dict[str, Any]], barrier: Any, results: Any
) -> None:
    """One racing process: for each job, wait for the other racer, then send the command."""
    db = Database(url)
    waits: list[float] = []
    _hold_at(db, LOCK_CASE if op == "advance" else STORE_KEY, waits)
    runner = _runner(db)
    runner.actor(LOGIN)  # connect before the first round
    try:
        for number, job in enumerate(jobs):
            barrier.wait(timeout=60)
            waits.clear()
            try:
                send = runner.advance if op == "advance" else runner.open_case
                outcome: tuple[str, Any] = ("ok", send(**job).to_dict())
            except RegulError as exc:
                outcome = (type(exc).__name__, str(exc))
            except Exception as exc:  # reported to the test, which fails on it
                outcome = ("crash", repr(exc))
            results.put((name, number, *outcome, max(waits, default=0.0)))
    finally:
        db.dispose()


def _race(url: str, op: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two racers send each job at once; per job, each racer's (outcome, detail, longest wait)."""
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    results = spawn.Queue()
    racers = [
        spawn.Process(target=_racer, args=(name, url, op, jobs, barrier, results))
        for name in ("a", "b")
    ]
    for racer in racers:
        racer.start()
    rounds: list[dict[str, Any]] = [{} for _ in jobs]
    try:
        for _ in range(2 * len(jobs)):
            name, number, outcome, detail, waited = results.get(timeout=120)
            rounds[number][name] = (outcome, detail, waited)
    except queue.Empty:
        pytest.fail(f"the racers stopped answering; got {rounds}")
    finally:
        for racer in racers:
            racer.join(timeout=30)
            if racer.is_alive():
                racer.kill()
                racer.join()
        results.close()
        results.join_thread()
    assert [racer.exitcode for racer in racers] == [0, 0]
    return rounds


def _contended(rounds: list[dict[str, Any]]) -> int:
    """How many rounds saw a racer wait for the other's transaction (the race really happened)."""
    return sum(any(waited >= WAITED for *_, waited in r.values()) for r in rounds)


@pytest.fixture
def pg(pg_url: str) -> Any:
    """The session's PostgreSQL schema with empty case tables, and a runner on it."""
    db = Database(pg_url)
    truncate_cases(db)
    yield pg_url, db, _runner(db)
    db.dispose()


def _open_cases(runner: Runner) -> list[str]:
    return [
        runner.open_case(
            kind="ecmo", login=LOGIN, org=TOULOUSE, fields=DEFAULT_FIELDS["ecmo"]
        ).reference
        for _ in range(ROUNDS)
    ]


def _escalations(references: list[str], **options: Any) -> list[dict[str, Any]]:
    return [
        {
            "reference": reference,
            "trigger": "escalate",
            "login": LOGIN,
            "reason": "pas de solution locale",
            **options,
        }
        for reference in references
    ]


def _events(conn: Any, case_id: int) -> list[tuple[str, int]]:
    rows = conn.execute(
        sa.text("SELECT action, version FROM audit_event WHERE case_id = :id ORDER BY seq"),
        {"id": case_id},
    )
    return [(r.action, r.version) for r in rows]


def _check_log_and_notices(conn: Any, notices: int) -> None:
    """The audit chain verifies; one notice per escalation, and (the outbox's opening notice)
    at most one per opened case; each issuer's series numbered 1..n without gap."""
    report = audit.verify(conn)
    assert report.ok, report.findings
    rows = conn.execute(sa.text("SELECT series, number, kind FROM notice ORDER BY number")).all()
    assert len([r for r in rows if r.kind == "escalated"]) == notices, rows
    cases = conn.execute(sa.text("SELECT count(*) FROM regul_case")).scalar_one()
    assert len([r for r in rows if r.kind == "opened"]) in (0, cases), rows
    by_series: dict[str, list[int]] = {}
    for r in rows:
        by_series.setdefault(r.series, []).append(r.number)
    for series, numbers in by_series.items():
        assert numbers == list(range(1, len(numbers) + 1)), (series, numbers)


def _check_advanced_once(db: Database, runner: Runner, references: list[str]) -> None:
    """Each case moved exactly one step, with one transition event, and every chain verifies."""
    with db.read() as conn:
        for reference in references:
            case = runner.show(reference)
            assert (case.state, case.version) == ("umac_review", 2), reference
            assert _events(conn, case.id) == [("opened", 1), ("transition", 2)], reference
            assert audit.replay(conn, runner.registry, case.id).matches, reference
            assert case.deadline is not None
            assert case.deadline.state == "umac_review", reference
        _check_log_and_notices(conn, notices=len(references))


def test_same_expect_version_one_wins_the_other_gets_stale_version(pg: Any) -> None:
    """Two processes escalating a case from the same version: one transition, one StaleVersion."""
    url, db, runner = pg
    references = _open_cases(runner)
    rounds = _race(url, "advance", _escalations(references, expect_version=1))
    for reference, racers in zip(references, rounds, strict=True):
        outcomes = sorted(outcome for outcome, _, _ in racers.values())
        assert outcomes == ["StaleVersion", "ok"], f"{reference}: {racers}"
        for outcome, detail, _ in racers.values():
            if outcome == "ok":
                assert (detail["state"], detail["version"]) == ("umac_review", 2)
            else:
                assert "is at version 2, not 1" in detail, detail
    assert _contended(rounds) >= ROUNDS // 2, rounds
    _check_advanced_once(db, runner, references)


def test_same_idempotency_key_one_transition_and_the_same_answer(pg: Any) -> None:
    """Two processes sending one escalation with one idempotency key: one transition, one answer."""
    url, db, runner = pg
    references = _open_cases(runner)
    jobs = [
        {**job, "idempotency_key": f"race-{job['reference']}"} for job in _escalations(references)
    ]
    rounds = _race(url, "advance", jobs)
    for reference, racers in zip(references, rounds, strict=True):
        (a, a_detail, _), (b, b_detail, _) = racers["a"], racers["b"]
        assert (a, b) == ("ok", "ok"), f"{reference}: {racers}"
        assert a_detail == b_detail, reference
    assert _contended(rounds) >= ROUNDS // 2, rounds
    _check_advanced_once(db, runner, references)


def test_same_idempotency_key_on_open_creates_one_case(pg: Any) -> None:
    """Two processes opening with one idempotency key: one case, one answer for both."""
    url, db, runner = pg
    jobs = [
        {
            "kind": "ecmo",
            "login": LOGIN,
            "org": TOULOUSE,
            "fields": {**DEFAULT_FIELDS["ecmo"], "patient_ref": f"PAT-RACE-{n}"},
            "idempotency_key": f"open-{n}",
        }
        for n in range(ROUNDS)
    ]
    rounds = _race(url, "open", jobs)
    for number, racers in enumerate(rounds):
        (a, a_detail, _), (b, b_detail, _) = racers["a"], racers["b"]
        assert (a, b) == ("ok", "ok"), f"round {number}: {racers}"
        assert a_detail == b_detail, number
        assert a_detail["fields"]["patient_ref"] == f"PAT-RACE-{number}"
    assert _contended(rounds) >= ROUNDS // 2, rounds
    with db.read() as conn:
        ids = [r.id for r in conn.execute(sa.text("SELECT id FROM regul_case ORDER BY id"))]
        assert sorted(r["a"][1]["id"] for r in rounds) == ids
        for case_id in ids:
            assert _events(conn, case_id) == [("opened", 1)], case_id
            assert audit.replay(conn, runner.registry, case_id).matches
        open_deadlines = conn.execute(
            sa.text("SELECT count(*) FROM deadline WHERE status = 'open'")
        ).scalar_one()
        assert open_deadlines == ROUNDS
        _check_log_and_notices(conn, notices=0)
