"""Which events make which notice, to whom: the declarations each workflow makes.

A workflow lists, next to its states, rows ``(event, kind, action, info)``: ``event`` is a
trigger of the workflow or a system event (``open``, ``reminder``, ``incident``,
``overdue``), ``kind`` names the template ``templates/notices/<kind>.j2``, and ``action`` /
``info`` name who is *Pour action* and *Pour information*. Recipient tokens: a role
(``establishment``, ``ght``, ``umac``, ``ars``, ``ars_zone``, ``ccs``, ``spf``, ``sfctcv``)
placed by the case's hospital, region and zone; ``holder`` (the level holding the case after
the event), ``previous`` (the level that held it before), ``passed`` (every level the case
went through), ``requester`` (its hospital), ``regulator`` (the first level that regulates
it: what an opening notifies), ``national`` (the CCS while the case is at a national level),
and the parties a decision names (``notifications.recipients``): ``lender`` (ECMO),
``receiver`` (transfer, with its ARS), ``shipper`` (PPE).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from engine.errors import WorkflowError
from engine.workflow import ACTING_ROLES, WorkflowSpec

__all__ = ["SERIES", "SYSTEM_EVENTS", "TOKENS", "NoticeBook", "NoticeRule", "declares", "notices"]

SERIES = ("MARS", "MINSANTE")  # the national series, only the CCS's own acts take a number in them
SYSTEM_EVENTS = ("open", "reminder", "incident", "overdue")
TOKENS = (
    *ACTING_ROLES,
    "sfctcv",
    "holder",
    "previous",
    "passed",
    "requester",
    "regulator",
    "national",
    "lender",
    "receiver",
    "shipper",
)
# The audit action an event is recorded under, when the notice book names it otherwise.
_EVENT_OF_ACTION = {"opened": "open"}


@dataclass(frozen=True)
class NoticeRule:
    event: str
    kind: str
    action: tuple[str, ...]
    info: tuple[str, ...]


@dataclass(frozen=True)
class NoticeBook:
    """A workflow's notices: its series and its rules by event."""

    workflow: str
    rules: dict[str, NoticeRule]

    def rule(self, event: str) -> NoticeRule | None:
        return self.rules.get(_EVENT_OF_ACTION.get(event, event))

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.kind for r in self.rules.values()))


def declares(books: Mapping[str, NoticeBook], kind: str, event: str) -> bool:
    """Does workflow ``kind`` declare a notice for ``event``? (asked by the decisions)"""
    book = books.get(kind)
    return book is not None and book.rule(event) is not None


def _template_exists(kind: str) -> bool:
    return (resources.files("templates") / "notices" / f"{kind}.j2").is_file()


def notices(
    spec: WorkflowSpec, *, rows: Iterable[Sequence[str]], series: str | None = None
) -> NoticeBook:
    """Validate a workflow's notice table against the workflow and the shipped templates.

    ``series`` is accepted for older declarations and ignored: a notice's series follows its
    issuer (``notifications.outbox``), not its workflow.
    """
    rules: dict[str, NoticeRule] = {}
    for event, kind, action, info in rows:
        where = f"workflow {spec.kind}, notice on {event}"
        if event not in spec.triggers and event not in SYSTEM_EVENTS:
            raise WorkflowError(f"{where}: no such trigger or system event")
        if event in rules:
            raise WorkflowError(f"{where}: declared twice")
        if not _template_exists(kind):
            raise WorkflowError(f"{where}: no template templates/notices/{kind}.j2")
        rule = NoticeRule(event, kind, tuple(action.split()), tuple(info.split()))
        for token in (*rule.action, *rule.info):
            if token not in TOKENS:
                raise WorkflowError(
                    f"{where}: unknown recipient {token!r}; use {', '.join(TOKENS)}"
                )
        if not rule.action:
            raise WorkflowError(f"{where}: nobody is 'Pour action'")
        rules[event] = rule
    return NoticeBook(spec.kind, rules)
