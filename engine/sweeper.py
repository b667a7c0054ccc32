"""The deadline sweep: claims due deadline rows and asks for decisions; writes nothing itself.

``sweep`` claims the open rows whose ``next_at`` has come (PostgreSQL: their case rows
``FOR UPDATE SKIP LOCKED`` first, then those deadline rows, in bounded batches, so any number
of workers share the work and never wait on a regulator's lock; SQLite: the write lock of
``BEGIN IMMEDIATE``) and, in the same transaction, for each row asks
``Decider.swept`` what to do at ``now`` — a reminder before the due time; past it the state's
trigger fired as ``system``, an incident past the top of a ladder, an overdue notice past a
date the case carries; a no-op when the case moved on — and hands the outcome to the unit of
work, exactly as a person's command. Nothing fires before ``next_at`` (time comes from the
clock, read once per batch), and a row leaves the ``open`` status in the transaction that
handles it, so nothing fires twice. After downtime the sweep loops over batches until nothing
is due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.errors import RegulError
from engine.runner import Runner
from engine.unit_of_work import Tx

__all__ = ["SQLITE_YIELD_S", "Fired", "SweepReport", "sweep"]

SQLITE_YIELD_S = 0.02

log = logging.getLogger("regul.sweeper")


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
    runner.decider  # noqa: B018 - the directory's geography read once, before the batches
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
    claimed = 0

    def work(tx: Tx) -> None:
        nonlocal claimed
        rows = tx.claim(size, failed)
        claimed = len(rows)
        for case, row in rows:
            tx.now = runner.clock.now()  # each row is a command: its own reading of the clock
            queued = len(tx.pending)
            try:
                with tx.conn.begin_nested():
                    outcome = runner.with_effects(tx, case, runner.decider.swept(case, row, tx.now))
                    after = tx.apply(outcome)
            except RegulError as exc:  # one bad row must not block the others
                del tx.pending[queued:]  # its notices went with its savepoint
                failed.add(row.id)
                report.errors += 1
                log.error("deadline %s of case %s failed: %s", row.id, case.id, exc)
                continue
            assert outcome.sweep is not None
            assert after is not None
            late = max((tx.now - row.due_at).total_seconds(), 0.0)
            fired.append(
                Fired(
                    case.reference, row.id, outcome.sweep, row.state, after.state, row.due_at, late
                )
            )
        if dry_run:
            tx.pending.clear()
            raise _DryRun

    with suppress(_DryRun):
        runner.uow.run(runner.clock.now(), work)
    if keep:
        report.fired.extend(fired)
    return claimed
