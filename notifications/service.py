"""The notices service the interfaces call: list, show, retry and preview, one transaction each.

The CLI (``regul notices``), the API (a case's notices) and the desk (the notices page and a
case's timeline) ask this service instead of opening their own transactions on the notice
tables. Reading a case's notices through it comes after a recorded read of that case (the case
service's ``show``); lists follow the caller's scope. Built by the composition root
(``interfaces.app``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.cases import get_case
from engine.clock import Clock
from engine.db import Database
from engine.errors import InputError, NotFound
from engine.values import Draft
from engine.workflow import WorkflowRegistry
from notifications.outbox import PARIS, Outbox
from notifications.queries import attempts_of, get_notice, list_notices, retry_notice
from notifications.render import Rendered, with_bodies
from notifications.rules import NoticeBook

__all__ = ["Notices", "Preview"]


@dataclass(frozen=True)
class Preview:
    rendered: Rendered
    action: list[dict[str, str]]
    info: list[dict[str, str]]


class Notices:
    """Notices as the interfaces see them."""

    def __init__(
        self,
        db: Database,
        registry: WorkflowRegistry,
        clock: Clock,
        books: dict[str, NoticeBook],
        outbox: Outbox | None,
    ) -> None:
        self.db, self.registry, self.clock, self.books, self.outbox = (
            db, registry, clock, books, outbox
        )  # fmt: skip

    def search(
        self,
        *,
        case: str | None = None,
        case_id: int | None = None,
        status: str | None = None,
        series: str | None = None,
        limit: int = 100,
        scope_where: Any = None,
    ) -> list[Any]:
        """Notices, newest first (``case``: a reference; ``case_id``: a case already read)."""
        with self.db.read() as conn:
            if case is not None:
                case_id = get_case(conn, self.registry, case).id
            return list_notices(
                conn, case_id=case_id, status=status, series=series, limit=limit,
                scope_where=scope_where,
            )  # fmt: skip

    def show(self, reference: str) -> tuple[Any, list[Any]]:
        """One notice (text and HTML: as sent, or rendered from its facts) and its attempts."""
        with self.db.read() as conn:
            row = get_notice(conn, reference)
            tried = attempts_of(conn, row.id)
        return with_bodies(row), tried

    def retry(self, reference: str) -> Any:
        """Queue a failed notice again."""
        with self.db.write() as conn:
            return retry_notice(conn, reference, self.clock.now())

    def preview(self, kind: str, case: str) -> Preview:
        """Render a notice kind for a case without queuing anything."""
        if self.outbox is None:
            raise InputError("notices are off (REGUL_NOTICES=false)", why="notices_off")
        with self.db.read() as conn:
            view = get_case(conn, self.registry, case)
            book = self.books[view.kind]
            rule = next((r for r in book.rules.values() if r.kind == kind), None)
            if rule is None:
                raise NotFound(
                    f"no notice kind {kind!r} for {view.kind}; kinds: {', '.join(book.kinds)}",
                    why="unknown_notice_kind",
                )
            draft = Draft("aperçu", "system", "REGUL", "preview", view.state, view.state,
                          view.version, "Aperçu du message", {"trigger": rule.event})  # fmt: skip
            now = self.clock.now()
            rendered, action, info = self.outbox.compose(
                conn, view, draft, rule, now,
                reference=f"APERÇU N°{now.astimezone(PARIS).year}",
                message_id="<apercu@regul.invalid>",
            )  # fmt: skip
        return Preview(rendered, action, info)
