"""Deadline rows: written in the transaction that enters a state, swept, never timers.

A deadline is a row (case, state, version, due_at in UTC, action) plus the instant the sweeper
must next look at it (``next_at``: the next reminder, else the due time). Entering a state
closes the case's open row as ``superseded`` and opens a new one when the state has a
deadline: a fixed duration (a waiting state) or a date the case carries (a loan's return, an
expected delivery: due at the end of that day, Paris time). A case has at most one open row (a
partial unique index guards it). ``engine.sweeper`` fires them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.errors import InputError
from engine.workflow import WorkflowSpec

__all__ = [
    "DEADLINE_TABLE",
    "DeadlinePlan",
    "ReminderPolicy",
    "close_open",
    "next_look",
    "open_deadline_row",
    "plan_deadline",
    "replace_deadline",
]

DEADLINE_TABLE = tables.DEADLINE
PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True)
class ReminderPolicy:
    """When reminders fall: fractions of a deadline before it passes, periods after."""

    fractions: tuple[float, ...] = (0.5, 0.8)
    incident_period: timedelta = timedelta(hours=1)
    overdue_period: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if any(not 0 < f < 1 for f in self.fractions) or list(self.fractions) != sorted(
            set(self.fractions)
        ):
            raise InputError(
                f"reminder fractions {list(self.fractions)} must be increasing, between 0 and 1"
            )
        for name in ("incident_period", "overdue_period"):
            if getattr(self, name) <= timedelta(0):
                raise InputError(f"{name} must be longer than zero")


@dataclass(frozen=True)
class DeadlinePlan:
    state: str
    version: int
    due_at: datetime
    action: str
    next_at: datetime
    reminders: int = 0
    start: datetime | None = field(default=None, compare=False)


def next_look(start: datetime, due: datetime, done: int, fractions: tuple[float, ...]) -> datetime:
    """The next reminder's instant after ``done`` reminders, else the due time."""
    if done < len(fractions) and due > start:
        return start + (due - start) * fractions[done]
    return due


def _end_of_day(value: str) -> datetime:
    day = date.fromisoformat(value) + timedelta(days=1)
    return datetime.combine(day, time(0), tzinfo=PARIS).astimezone(ZoneInfo("UTC"))


def plan_deadline(
    spec: WorkflowSpec,
    state: str,
    version: int,
    now: datetime,
    *,
    fields: dict[str, Any] | None = None,
    policy: ReminderPolicy = ReminderPolicy(),
) -> DeadlinePlan | None:
    """The deadline a case gets on entering ``state`` at ``now``, if that state has one."""
    target = spec.state(state)
    if target.on_deadline is None:
        return None
    if target.deadline is not None:
        due = now + target.deadline
    elif target.due_field:
        trigger, _, name = target.due_field.partition(".")
        value = (fields or {}).get(trigger, {}).get(name)
        if not value:
            return None
        due = _end_of_day(str(value))
    else:
        return None
    first = next_look(now, due, 0, policy.fractions)
    return DeadlinePlan(state, version, due, target.on_deadline, next_at=first, start=now)


_CLOSE_OPEN = DEADLINE_TABLE.update().where(  # built once; SET comes from the parameters
    DEADLINE_TABLE.c.case_id == sa.bindparam("b_case"), DEADLINE_TABLE.c.status == "open"
)
_INSERT = DEADLINE_TABLE.insert()


def close_open(conn: Connection, *, case_id: int, now: datetime, status: str) -> None:
    conn.execute(_CLOSE_OPEN, {"b_case": case_id, "status": status, "closed_at": now})


def open_deadline_row(conn: Connection, *, case_id: int, plan: DeadlinePlan, now: datetime) -> None:
    conn.execute(
        _INSERT,
        {
            "case_id": case_id,
            "state": plan.state,
            "version": plan.version,
            "due_at": plan.due_at,
            "next_at": plan.next_at,
            "reminders": plan.reminders,
            "action": plan.action,
            "status": "open",
            "created_at": plan.start or now,
        },
    )


def replace_deadline(
    conn: Connection, *, case_id: int, plan: DeadlinePlan | None, now: datetime, first: bool = False
) -> None:
    """Supersede the case's open deadline (unless it is the first) and open ``plan``'s."""
    if not first:
        close_open(conn, case_id=case_id, now=now, status="superseded")
    if plan is not None:
        open_deadline_row(conn, case_id=case_id, plan=plan, now=now)


def current(conn: Connection, case_id: int) -> Any:
    return conn.execute(
        sa.select(DEADLINE_TABLE).where(
            DEADLINE_TABLE.c.case_id == case_id, DEADLINE_TABLE.c.status == "open"
        )
    ).first()
