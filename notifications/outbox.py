"""The outbox: notices numbered, rendered and queued in the transaction of their event.

``Outbox`` is the runner's ``Notifier``. For each recorded event that its workflow declares a
notice for, it takes the next reference of the series and year (``MARS N°2026_017``: a counter
row updated in the same transaction, so numbers have no gaps and no duplicates, also under
concurrent transitions on PostgreSQL), finds the recipients in the directory, renders text and
HTML, and inserts the notice as ``queued``. Delivery is the dispatcher's job, later.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from engine import tables
from engine.audit import Draft
from engine.cases import CaseView
from engine.workflow import WorkflowRegistry
from notifications.recipients import Directory, levels_passed, resolve
from notifications.render import MID_STANDIN, REF_STANDIN, Rendered, Renderer
from notifications.rules import NoticeBook, NoticeRule

__all__ = ["NOTICE_TABLE", "Outbox", "event_name", "format_reference"]

NOTICE_TABLE = tables.NOTICE
_COUNTER = tables.NOTICE_COUNTER
PARIS = ZoneInfo("Europe/Paris")
SERIES_TITLES = {
    "MARS": "Message d'Alerte Rapide Sanitaire",
    "MINSANTE": "Message du ministère aux agences régionales de santé",
}
SIGNATURE = {
    "line1": "Pour le ministre et par délégation,",
    "line2": "Le Centre de crise sanitaire",
}


def format_reference(series: str, year: int, number: int) -> str:
    return f"{series} N°{year}_{number:03d}"


def event_name(draft: Draft) -> str:
    return str(draft.data.get("trigger")) if draft.action == "transition" else draft.action


def next_number(conn: Connection, series: str, year: int) -> int:
    """Take the next number of a series and year; the row stays locked until commit."""
    statement = _NEXT_NUMBER[conn.dialect.name]
    return int(conn.execute(statement, {"series": series, "year": year}).scalar_one())


def _upsert(insert: Any) -> Any:
    return (
        insert(_COUNTER)
        .values(series=sa.bindparam("series"), year=sa.bindparam("year"), last=1)
        .on_conflict_do_update(
            index_elements=["series", "year"], set_={"last": _COUNTER.c.last + 1}
        )
        .returning(_COUNTER.c.last)
    )


_NEXT_NUMBER = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}
_INSERT_NOTICE = NOTICE_TABLE.insert()


class Outbox:
    """Queues the notices a workflow declares, in the event's own transaction."""

    def __init__(
        self,
        registry: WorkflowRegistry,
        books: dict[str, NoticeBook],
        *,
        channel_for: Callable[[str], str] = lambda _org: "eml",
        renderer: Renderer | None = None,
    ) -> None:
        self.registry, self.books, self.channel_for = registry, books, channel_for
        self.renderer = renderer or Renderer()
        self.directory = Directory()

    def on_event(
        self, conn: Connection, case: CaseView, draft: Draft, seq: int, now: datetime
    ) -> None:
        book = self.books.get(case.kind)
        rule = book.rule(event_name(draft)) if book and draft.action != "refused" else None
        if book is None or rule is None:
            return
        year = now.astimezone(PARIS).year
        # Render first with placeholders, then take the number: the counter row stays locked
        # (until commit) for as short a time as it can, since it serialises a whole series.
        rendered, action, info = self.compose(
            conn, case, draft, rule, book.series, now, reference=REF_STANDIN, message_id=MID_STANDIN
        )
        number = next_number(conn, book.series, year)
        reference = format_reference(book.series, year, number)
        message_id = f"<{book.series.lower()}.{year}.{number:06d}@regul.invalid>"
        rendered = rendered.with_reference(reference, message_id)
        conn.execute(
            _INSERT_NOTICE,
            {
                "reference": reference,
                "series": book.series,
                "year": year,
                "number": number,
                "kind": rule.kind,
                "case_id": case.id,
                "event_seq": seq,
                "message_id": message_id,
                "channel": self.channel_for(action[0]["org"]) if action else "eml",
                "subject": rendered.subject,
                "body_text": rendered.text,
                "body_html": rendered.html,
                "recipients": {"action": action, "info": info},
                "status": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": "",
                "created_at": now,
            },
        )

    def compose(
        self,
        conn: Connection,
        case: CaseView,
        draft: Draft,
        rule: NoticeRule,
        series: str,
        now: datetime,
        *,
        reference: str,
        message_id: str,
    ) -> tuple[Rendered, list[dict[str, str]], list[dict[str, str]]]:
        """Render a notice (also used by ``regul notices preview``, which queues nothing)."""
        self.directory.load(conn)
        spec = self.registry[case.kind]
        previous_state = draft.from_state
        previous = spec.state(previous_state).level if previous_state else None
        passed = levels_passed(conn, spec, case.id)
        action, info = resolve(self.directory, rule, case, previous=previous, passed=passed)
        context = self._context(case, draft, series, now, reference, message_id, previous)
        context["pour_action"] = [r.to_dict() for r in action]
        context["pour_information"] = [r.to_dict() for r in info]
        rendered = self.renderer.render(rule.kind, context)
        return rendered, context["pour_action"], context["pour_information"]

    def _context(
        self,
        case: CaseView,
        draft: Draft,
        series: str,
        now: datetime,
        reference: str,
        message_id: str,
        previous: str | None,
    ) -> dict[str, Any]:
        spec = self.registry[case.kind]
        hospital = self.directory.org(case.org)
        due = case.deadline.due_at if case.deadline else draft.data.get("due_at")
        if isinstance(due, str):
            due = datetime.fromisoformat(due)
        actor = draft.actor if draft.actor != "system" else "l'échéancier automatique"
        return {
            "series": series,
            "series_title": SERIES_TITLES[series],
            "date": now.astimezone(PARIS).strftime("%d/%m/%Y"),
            "reference": reference,
            "message_id": message_id,
            "signature": SIGNATURE,
            "case": {
                "reference": case.reference,
                "title": spec.title,
                "hospital": hospital.name,
                "finess": case.org,
                "region": self.directory.region_name(case.region),
                "level": self._level_name(case.level, case),
                "state": spec.state(case.state).label,
                "deadline": _paris(due) if due else "aucune",
            },
            "event": {
                "reason": draft.reason or "—",
                "actor": actor,
                "at": _paris(now),
                "from_level": self._level_name(previous, case),
                "by_system": draft.actor == "system",
                "fields": self._fields(case, draft),
                "then": self._then(case, draft),
                "due_date": _day(due) if due else "—",
            },
        }

    def _fields(self, case: CaseView, draft: Draft) -> dict[str, str]:
        """The trigger's values under their French labels, dates as dd/mm/yyyy."""
        values = dict(draft.data.get("fields") or {})
        specs = {
            f.name: f
            for t in self.registry[case.kind].transitions
            if t.trigger == draft.data.get("trigger")
            for f in t.fields
        }
        shown: dict[str, str] = {}
        for name, value in values.items():
            spec = specs.get(name)
            text = str(value)
            if spec is not None and spec.type == "date":
                text = datetime.fromisoformat(text).strftime("%d/%m/%Y")
            elif isinstance(value, bool):
                text = "oui" if value else "non"
            shown[spec.label if spec and spec.label else name] = text
        return shown

    @staticmethod
    def _then(case: CaseView, draft: Draft) -> str:
        """What happens if nobody acts: what a reminder must announce."""
        if draft.action != "reminder":
            return ""
        if "next_reminder_s" in draft.data:  # a periodic reminder after the deadline passed
            return "incident_open" if case.incident else "still_overdue"
        return str(draft.data.get("then", "escalate"))

    def _level_name(self, role: str | None, case: CaseView) -> str:
        if role is None:
            return "—"
        recipient = self.directory.level_org(role, case)
        return recipient.name if recipient else role


def _day(due: datetime) -> str:
    """The calendar day a deadline belongs to: one due at midnight ends the day before."""
    return (due - timedelta(seconds=1)).astimezone(PARIS).strftime("%d/%m/%Y")


def _paris(instant: datetime) -> str:
    return instant.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M")
