"""The deadline sweep: fires due deadline rows through the ordinary transition path, once.

``sweep`` claims the open rows whose ``next_at`` has come (PostgreSQL: ``FOR UPDATE … SKIP
LOCKED`` on the row *and* its case, in bounded batches, so any number of workers share the work
and never wait on a regulator's lock; SQLite: the write lock of ``BEGIN IMMEDIATE``) and, in the
same transaction, for each row:

- before its due time: records a reminder for the level that holds the case;
- a waiting state past due: fires its trigger as actor ``system`` (reason: the deadline passed,
  how late), which writes the audit event and the next level's deadline;
- past the top of a ladder (``incident``): records an incident, flags the case, and reminds the
  crisis centre every ``incident_period`` until someone acts;
- a date the case carries (``overdue``: a loan's return, a delivery): records it and reminds
  every ``overdue_period``;
- a row whose case moved on (other version or state): closed as a recorded no-op.

Nothing fires before ``next_at`` (time comes from the runner's clock), and a row leaves the
``open`` status in the transaction that handles it, so nothing fires twice. After downtime the
sweep loops over batches until nothing is due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.actors import SYSTEM
from engine.audit import Draft
from engine.cases import CASE_TABLE, CaseView, view_of
from engine.deadlines import DEADLINE_TABLE, DeadlinePlan, next_look, open_deadline_row
from engine.errors import RegulError
from engine.runner import Runner
from engine.transition import Command
from engine.workflow import INCIDENT, OVERDUE

__all__ = ["SQLITE_YIELD_S", "Fired", "SweepReport", "sweep"]

SQLITE_YIELD_S = 0.02

log = logging.getLogger("regul.sweeper")
_D, _C = DEADLINE_TABLE, CASE_TABLE


@dataclass(frozen=True)
class Fired:
    """One deadline row handled by a sweep."""

    case: str
    deadline_id: int
    outcome: str  # escalated | reminder | incident | overdue | repeat | noop
    state: str
    to_state: str
    due_at: datetime
    late_s: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "due_at": self.due_at.isoformat()}


@dataclass
class SweepReport:
    fired: list[Fired] = field(default_factory=list)
    batches: int = 0
    errors: int = 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.fired:
            out[item.outcome] = out.get(item.outcome, 0) + 1
        return out


class _DryRun(Exception):
    """Raised to roll back a what-if sweep."""


def sweep(
    runner: Runner,
    *,
    batch_size: int = 200,
    dry_run: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    keep: bool = True,
) -> SweepReport:
    """Handle every deadline row due at the runner's clock's ``now``, batch after batch."""
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    report, failed = SweepReport(), set[int]()
    while not should_stop():
        handled = _batch(runner, report, failed, 10_000 if dry_run else batch_size, dry_run, keep)
        report.batches += 1
        if dry_run or handled < batch_size:
            break
        if runner.db.is_sqlite:
            # SQLite has one writer: without a gap between batches a regulator's command,
            # retrying in SQLite's busy handler, could wait many seconds during a mass sweep.
            time.sleep(SQLITE_YIELD_S)
    return report


def _batch(
    runner: Runner, report: SweepReport, failed: set[int], size: int, dry_run: bool, keep: bool
) -> int:
    fired: list[Fired] = []
    try:
        with runner.db.write() as conn:
            now = runner.clock.now()
            rows = _claim(conn, now, size, failed)
            for row in rows:
                try:
                    with conn.begin_nested():
                        fired.append(_handle(runner, conn, row, runner.clock.now()))
                except RegulError as exc:  # one bad row must not block the others
                    failed.add(row.d_id)
                    report.errors += 1
                    log.error("deadline %s of case %s failed: %s", row.d_id, row.id, exc)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    if keep:
        report.fired.extend(fired)
    return len(rows)


def _claim(conn: Connection, now: datetime, size: int, failed: set[int]) -> list[Any]:
    query = (
        sa.select(
            _C,
            _D.c.id.label("d_id"),
            _D.c.state.label("d_state"),
            _D.c.version.label("d_version"),
            _D.c.due_at.label("d_due_at"),
            _D.c.next_at.label("d_next_at"),
            _D.c.reminders.label("d_reminders"),
            _D.c.action.label("d_action"),
            _D.c.created_at.label("d_created_at"),
        )
        .select_from(_D.join(_C, _C.c.id == _D.c.case_id))
        .where(_D.c.status == "open", _D.c.next_at <= now)
        .order_by(_D.c.next_at)
        .limit(size)
    )
    if failed:
        query = query.where(_D.c.id.not_in(failed))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=[_D, _C], skip_locked=True)
    return list(conn.execute(query))


def _handle(runner: Runner, conn: Connection, row: Any, now: datetime) -> Fired:
    """Handle one claimed row at ``now``, the instant its events are stamped with."""
    case = view_of(runner.registry, row)
    late = (now - row.d_due_at).total_seconds()

    def done(outcome: str, to_state: str | None = None) -> Fired:
        return Fired(
            case.reference,
            row.d_id,
            outcome,
            row.d_state,
            to_state or case.state,
            row.d_due_at,
            max(late, 0.0),
        )

    if (case.version, case.state) != (row.d_version, row.d_state) or case.on_hold or case.final:
        _close(conn, row.d_id, now, "noop")
        why = f"le dossier a évolué (version {case.version}, état {case.state})"
        runner.record(conn, case, _system(case, "deadline_noop", why, {"deadline": row.d_id}), now)
        return done("noop")
    if now < row.d_due_at:
        return done(_remind(runner, conn, case, row, now))
    _close(conn, row.d_id, now, "fired")
    context = {"deadline": row.d_id, "due_at": row.d_due_at.isoformat(), "late_s": round(late, 3)}
    action = row.d_action
    if action in (INCIDENT, OVERDUE, "remind"):
        return done(_raise(runner, conn, case, row, now, context))
    reason = (
        f"Délai dépassé au niveau {case.level} : échéance {row.d_due_at:%d/%m/%Y %H:%M:%S} UTC, "
        f"déclenché avec {_duration(late)} de retard"
    )
    command = Command(action, reason, {}, context=context)
    result = runner.apply(conn, case, SYSTEM, command, deadline_closed=True)
    if isinstance(result, RegulError):
        raise result
    return done("escalated", result.state)


def _remind(runner: Runner, conn: Connection, case: CaseView, row: Any, now: datetime) -> str:
    fractions = runner.policy.fractions
    start, due = row.d_created_at, row.d_due_at
    passed = sum(1 for f in fractions if start + (due - start) * f <= now)
    data = {
        "deadline": row.d_id,
        "due_at": due.isoformat(),
        "fraction": fractions[passed - 1] if passed else None,
        "for": case.level,
        "left_s": int((due - now).total_seconds()),
        "then": row.d_action,  # what passing the deadline will do: a trigger, incident, overdue
    }
    left = _duration((due - now).total_seconds())
    reason = f"Rappel : échéance le {due:%d/%m/%Y %H:%M} UTC, reste {left}"
    runner.record(conn, case, _system(case, "reminder", reason, data), now)
    conn.execute(
        _D.update()
        .where(_D.c.id == row.d_id)
        .values(
            reminders=max(passed, row.d_reminders + 1),
            next_at=next_look(start, due, passed, fractions),
        )
    )
    return "reminder"


def _raise(
    runner: Runner,
    conn: Connection,
    case: CaseView,
    row: Any,
    now: datetime,
    context: dict[str, Any],
) -> str:
    """Past the top of the ladder or past a carried date: record, flag, and remind periodically."""
    incident = row.d_action == INCIDENT or (row.d_action == "remind" and case.incident)
    period = runner.policy.incident_period if incident else runner.policy.overdue_period
    if row.d_action == "remind":
        outcome, reason = (
            "repeat",
            "Relance : toujours sans décision" if incident else "Relance : échéance dépassée",
        )
        action = "reminder"
    elif incident:
        outcome, action = "incident", "incident"
        reason = f"Incident : aucune décision au niveau {case.level}, dernier niveau de l'échelle"
    else:
        outcome, action = "overdue", "overdue"
        reason = (
            f"Échéance dépassée ({case.state}) : retour ou livraison attendu le "
            f"{row.d_due_at:%d/%m/%Y}"
        )
    data = {
        **context,
        "for": "ccs" if incident else case.level,
        "next_reminder_s": int(period.total_seconds()),
    }
    values = {"incident": True} if incident else {}
    runner.record(conn, case, _system(case, action, reason, data), now, values)
    plan = DeadlinePlan(
        case.state, case.version, now + period, "remind", next_at=now + period, start=now
    )
    open_deadline_row(conn, case_id=case.id, plan=plan, now=now)
    return outcome


def _close(conn: Connection, deadline_id: int, now: datetime, status: str) -> None:
    conn.execute(_D.update().where(_D.c.id == deadline_id).values(status=status, closed_at=now))


def _system(case: CaseView, action: str, reason: str, data: dict[str, Any]) -> Draft:
    return Draft(
        SYSTEM.login,
        SYSTEM.role,
        SYSTEM.org,
        action,
        case.state,
        case.state,
        case.version,
        reason,
        data,
    )


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"
