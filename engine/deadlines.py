"""Deadline rows: written in the transaction that enters a waiting state.

A deadline is a row (case, state, version, due_at in UTC, action), never a timer. Entering a
state closes the case's open row as ``superseded`` and opens a new one when the state has a
deadline, so a case has at most one open deadline (a partial unique index guards it). The
sweeper that fires due rows builds on these rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from engine.models import Deadline
from engine.workflow import WorkflowSpec

__all__ = ["DeadlinePlan", "plan_deadline", "replace_deadline"]

_T = Deadline.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DeadlinePlan:
    state: str
    version: int
    due_at: datetime
    action: str


def plan_deadline(
    spec: WorkflowSpec, state: str, version: int, now: datetime
) -> DeadlinePlan | None:
    """The deadline a case gets on entering ``state`` at ``now``, if that state has one."""
    target = spec.state(state)
    if target.deadline is None or target.on_deadline is None:
        return None
    return DeadlinePlan(state, version, now + target.deadline, target.on_deadline)


def replace_deadline(
    conn: Connection, *, case_id: int, plan: DeadlinePlan | None, now: datetime, first: bool = False
) -> None:
    if not first:
        conn.execute(
            _T.update()
            .where(_T.c.case_id == case_id, _T.c.status == "open")
            .values(status="superseded", closed_at=now)
        )
    if plan is not None:
        conn.execute(
            _T.insert(),
            {
                "case_id": case_id,
                "state": plan.state,
                "version": plan.version,
                "due_at": plan.due_at,
                "action": plan.action,
                "status": "open",
                "created_at": now,
            },
        )
