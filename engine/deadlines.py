"""Deadline planning: pure arithmetic on a workflow's states, never timers.

A deadline is a row (case, state, version, due_at in UTC, action) plus the instant the sweep
must next look at it (``next_at``: the next reminder, else the due time). Entering a state
closes the case's open row as ``superseded`` and opens a new one when the state has a
deadline: a fixed duration (a waiting state) or a date the case carries (a loan's return, an
expected delivery: due at the end of that day, Paris time). A case has at most one open row (a
partial unique index guards it). This module only plans: the decisions
(``engine.decisions``) put the plan in their outcome and ``engine.unit_of_work``, the only
writer of the deadline table, applies it. Imports no database library.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.values import DeadlinePlan, ReminderPolicy
from engine.workflow import WorkflowSpec

__all__ = ["DeadlinePlan", "ReminderPolicy", "extended", "plan_deadline"]

PARIS = ZoneInfo("Europe/Paris")
_DEFAULT = ReminderPolicy()


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
    policy: ReminderPolicy = _DEFAULT,
) -> DeadlinePlan | None:
    """The deadline a case gets on entering ``state`` at ``now``, if that state has one."""
    target = spec.state(state)
    if target.on_deadline is None:
        return None
    if target.deadline is not None:
        due = now + target.deadline
    elif target.due_field:
        value = None
        for one in target.due_field.split():  # the first date the case carries wins
            trigger, _, name = one.partition(".")
            value = (fields or {}).get(trigger, {}).get(name)
            if value:
                break
        if not value:
            return None
        due = _end_of_day(str(value))
    else:
        return None
    first = policy.next_look(now, due, 0)
    return DeadlinePlan(state, version, due, target.on_deadline, next_at=first, start=now)


def extended(
    state: str, action: str, due: datetime, version: int, now: datetime, policy: ReminderPolicy
) -> DeadlinePlan:
    """The plan of a deadline pushed to ``due`` at ``now``: reminders count from ``now``.

    The reminders whose instant has already passed on the new span are counted as done, with
    the same arithmetic the sweep uses (``ReminderPolicy.passed``).
    """
    done = policy.passed(now, due, now)
    return DeadlinePlan(
        state, version, due, action, next_at=policy.next_look(now, due, done), reminders=done,
        start=now,
    )  # fmt: skip
