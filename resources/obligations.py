"""Expected reports: which holders owe which report for which period, and the pure sweep.

An ``ObligationKind`` is data: the report's name in French, its period (a week or a day), when
it is due, how long after the reminder it is escalated, and who is told. The sweep plans the
current period's rows for every enrolled holder (``Outcome.obligations``: opened if new), then
for each open row whose look has come decides here, purely:

1. at the due time, a **reminder** to the holder (its stream records ``report_missing``); the
   row's next look moves to ``due + escalate_after``;
2. then, still missing, the **escalation**: ``report_late`` in its stream, a notice to its ARS
   (and whoever the kind names), the row leaves ``open`` as ``late`` (listed as missing, never
   swept again). A report for the period, even late, marks the row ``met``.

Each step happens exactly once: the row leaves the state the sweep claimed in the transaction
that handles it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from engine.values import (
    SYSTEM,
    Draft,
    HolderNotice,
    LedgerEntry,
    ObligationChange,
    ObligationPlan,
    ObligationRow,
    Outcome,
)
from resources.periods import PARIS, Due

__all__ = ["ObligationKind", "plan", "swept"]


@dataclass(frozen=True)
class ObligationKind:
    """A kind of expected report (``ecmo_inventory``, ``ppe_stock``, ``capacity``)."""

    name: str
    report: str  # in French, with its article: « L'inventaire hebdomadaire ECMO »
    due: Due
    escalate_after: timedelta
    remind: tuple[str, ...] = ("holder",)  # recipient tokens (notifications.outbox)
    remind_info: tuple[str, ...] = ()
    escalate: tuple[str, ...] = ("ars",)
    escalate_info: tuple[str, ...] = ("holder",)
    # the holders that owe it (enrolled), read in the sweep's transaction
    holders: Callable[[Any], Sequence[str]] = lambda _conn: ()

    @property
    def weekly(self) -> bool:
        return self.due.weekday is not None


def plan(kind: ObligationKind, holders: Sequence[str], now: datetime) -> Outcome:
    """The current period's rows for ``holders`` (existing rows are left as they are)."""
    period = kind.due.current(now)
    due = kind.due.due_at(period)
    return Outcome(
        case=None,
        obligations=tuple(ObligationPlan(kind.name, h, period, due) for h in holders),
    )


def _when(instant: datetime) -> str:
    return instant.astimezone(PARIS).strftime("%d/%m/%Y à %H h %M")


def _period_label(period: str) -> str:
    if "-W" in period:
        year, week = period.split("-W")
        return f"semaine {int(week)} de {year}"
    y, m, d = period.split("-")
    return f"journée du {d}/{m}/{y}"


def swept(row: ObligationRow, kind: ObligationKind, now: datetime) -> Outcome:
    """What the sweep does with one open obligation whose look has come (pure)."""
    values: dict[str, Any] = {
        "report": kind.report,
        "period": _period_label(row.period),
        "due": _when(row.due_at),
        "rows": [["Compte rendu", kind.report], ["Période", _period_label(row.period)],
                 ["Attendu le", _when(row.due_at) + " (heure de Paris)"]],
    }  # fmt: skip
    data = {"kind": row.kind, "period": row.period, "due_at": row.due_at.isoformat()}
    if row.reminders == 0 and not row.escalated:
        late = row.due_at + kind.escalate_after
        values["escalate"] = f"l'ARS en sera informée le {_when(late)}"
        draft = _draft("report_missing", row, data)
        notice = HolderNotice("report_missing", kind.remind, kind.remind_info, values)
        change = ObligationChange(row.id, 1, max(late, now), False, "open")
    else:
        draft = _draft("report_late", row, data)
        notice = HolderNotice("report_late", kind.escalate, kind.escalate_info, values)
        change = ObligationChange(row.id, row.reminders, row.next_at, True, "late")
    return Outcome(
        case=None,
        ledger=(LedgerEntry(row.holder, draft, notice=notice),),
        touched=(change,),
    )


def _draft(action: str, row: ObligationRow, data: dict[str, Any]) -> Draft:
    return Draft(SYSTEM.login, SYSTEM.role, SYSTEM.org, action, None, None, 0, "", dict(data))


def with_due(kind: ObligationKind, due: Due) -> ObligationKind:
    """``kind`` due at another time (a setting)."""
    return replace(kind, due=due)
