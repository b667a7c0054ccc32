"""The outbox: notices numbered, rendered and queued in the transaction of their event.

``Outbox`` is the unit of work's ``Notifier``: it tells the decisions which events its
workflows declare a notice for, and for each such recorded event finds the recipients in the
directory and renders text and HTML with stand-ins for the reference. The unit of work (the
only writer of the notice tables) then takes the next reference of the series and year
(``MARS N°2026_017``: a counter row updated in the same transaction, so numbers have no gaps
and no duplicates, also under concurrent transitions on PostgreSQL) and inserts the notice as
``queued``. Delivery is the dispatcher's job, later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from engine import tables
from engine.decisions import event_name
from engine.values import CaseView, Draft
from engine.workflow import WorkflowRegistry
from notifications.recipients import Directory, levels_passed, resolve
from notifications.render import MID_STANDIN, REF_STANDIN, Rendered, Renderer
from notifications.rules import NoticeBook, NoticeRule
from workflows.labels import value_label

__all__ = ["NOTICE_TABLE", "Outbox", "Pending", "event_name", "format_reference"]

NOTICE_TABLE = tables.NOTICE
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


@dataclass
class Pending:
    """A rendered notice waiting for its number (``engine.unit_of_work.PendingNotice``)."""

    series: str
    year: int
    rendered: Rendered
    values: dict[str, Any]

    def row(self, number: int) -> dict[str, Any]:
        reference = format_reference(self.series, self.year, number)
        message_id = f"<{self.series.lower()}.{self.year}.{number:06d}@regul.invalid>"
        rendered = self.rendered.with_reference(reference, message_id)
        return {
            **self.values,
            "reference": reference,
            "series": self.series,
            "year": self.year,
            "number": number,
            "message_id": message_id,
            "subject": rendered.subject,
            "body_text": rendered.text,
            "body_html": rendered.html,
        }


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
        self._renderer = renderer
        self.directory = Directory()

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = Renderer()
        return self._renderer

    def declares(self, kind: str, event: str) -> bool:
        """Does workflow ``kind`` declare a notice for ``event``? (asked by the decisions)"""
        book = self.books.get(kind)
        return book is not None and book.rule(event) is not None

    def prepare(
        self, conn: Connection, case: CaseView, draft: Draft, seq: int, now: datetime
    ) -> Pending | None:
        """Render the notice of an event, to be numbered and inserted at commit.

        The unit of work numbers the pending notices of a transaction in one global order
        (series, year) just before commit: the counter row, which serialises a series, is
        locked for as short a time as it can be, and never in an order that could deadlock.
        """
        book = self.books.get(case.kind)
        rule = book.rule(event_name(draft)) if book and draft.action != "refused" else None
        if book is None or rule is None:
            return None
        rendered, action, info = self.compose(
            conn, case, draft, rule, book.series, now, reference=REF_STANDIN, message_id=MID_STANDIN
        )
        channel = self.channel_for(action[0]["org"]) if action else "eml"
        return Pending(
            book.series,
            now.astimezone(PARIS).year,
            rendered,
            {
                "kind": rule.kind,
                "case_id": case.id,
                "event_seq": seq,
                "channel": channel,
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
        # A reminder, an incident or an overdue notice is about the deadline that was swept
        # (its event carries it); a transition's notice announces the next level's deadline.
        swept = draft.action != "transition" and draft.data.get("due_at")
        due = swept or (case.deadline.due_at if case.deadline else None)
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
            text = value_label(name, value)  # the French label of a choice, oui/non
            if spec is not None and spec.type == "date":
                text = datetime.fromisoformat(text).strftime("%d/%m/%Y")
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
