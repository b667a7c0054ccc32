"""Cases as the engine reads them: an immutable view of a row, references, and queries.

A case's public reference is its workflow prefix and number (``ECMO-000042``); the bare
number works too. Queries take a connection and keyword-only filters and return plain views,
so that nothing per case outlives the call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.errors import InputError, no_case
from engine.values import CaseView, OpenDeadline, reference_of
from engine.workflow import WorkflowRegistry

__all__ = [
    "CASE_TABLE",
    "CaseCount",
    "CaseFilter",
    "CaseView",
    "OpenDeadline",
    "count_cases",
    "get_case",
    "history",
    "kinds_of",
    "list_cases",
    "parse_reference",
    "view_of",
]

CASE_TABLE = tables.CASE
_DEADLINE = tables.DEADLINE
_AUDIT = tables.AUDIT_EVENT
# Statements built once; the hot path binds values (building them per call cost more than SQLite).
_BY_ID = sa.select(CASE_TABLE).where(CASE_TABLE.c.id == sa.bindparam("case_id"))
_OPEN_DEADLINE = sa.select(_DEADLINE.c.state, _DEADLINE.c.due_at, _DEADLINE.c.action).where(
    _DEADLINE.c.case_id == sa.bindparam("case_id"), _DEADLINE.c.status == "open"
)
_REFERENCE = re.compile(r"^(?:([A-Za-z]+)-)?0*(\d+)$")


def parse_reference(registry: WorkflowRegistry, text: str) -> tuple[int, str | None]:
    """``ECMO-000042`` or ``42`` → (42, "ecmo" or None).

    A number past the case id column's range (a 32-bit integer on PostgreSQL) names no case:
    it is 'no case' here, before any driver sees a value it cannot bind.
    """
    match = _REFERENCE.match(text.strip())
    if not match or not match.group(0).isascii():
        raise InputError(f"{text!r} is not a case reference: write ECMO-000042 or 42")
    prefix, number = match.groups()
    if len(number) > 10 or int(number) > 2**31 - 1:
        # past the id column: no case can have it (not a probe of an existing one's number)
        raise no_case(text, why="reference_out_of_range")
    kind = None
    if prefix:
        spec = registry.by_prefix(prefix.upper())
        if spec is None:
            prefixes = ", ".join(s.prefix for s in registry)
            raise InputError(f"{text!r}: unknown prefix {prefix!r}; prefixes are {prefixes}")
        kind = spec.kind
    return int(number), kind


def view_of(registry: WorkflowRegistry, row: Any, deadline: OpenDeadline | None = None) -> CaseView:
    """A case view from any row carrying the case's columns."""
    return CaseView(
        id=row.id,
        reference=reference_of(registry[row.kind].prefix, row.id),
        kind=row.kind,
        state=row.state,
        level=row.level,
        final=row.final,
        version=row.version,
        org=row.org,
        region=row.region,
        zone=row.zone,
        department=row.department,
        ght=row.ght,
        fields=dict(row.fields or {}),
        opened_by=row.opened_by,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        audit_seq=row.audit_seq,
        audit_hash=row.audit_hash,
        incident=row.incident,
        on_hold=row.on_hold,
        deadline=deadline,
    )


def get_case(conn: Connection, registry: WorkflowRegistry, reference: str) -> CaseView:
    case_id, kind = parse_reference(registry, reference)
    row = conn.execute(_BY_ID, {"case_id": case_id}).first()
    if row is None or (kind is not None and row.kind != kind):
        raise no_case(reference)
    return view_of(registry, row, _open_deadline(conn, case_id))


def _open_deadline(conn: Connection, case_id: int) -> OpenDeadline | None:
    row = conn.execute(_OPEN_DEADLINE, {"case_id": case_id}).first()
    return OpenDeadline(row.state, row.due_at, row.action) if row else None


@dataclass(frozen=True)
class CaseFilter:
    kind: str | None = None
    state: str | None = None
    level: str | None = None
    region: str | None = None
    org: str | None = None
    open_only: bool = False
    overdue_at: datetime | None = None  # set to `now` to list only overdue cases
    incidents: bool = False  # only cases with an open incident
    urgent_for: str | None = None  # order for this role's queue: its level, incidents, due time
    limit: int = 100
    offset: int = 0


def list_cases(
    conn: Connection,
    registry: WorkflowRegistry,
    *,
    filters: CaseFilter,
    scope_where: Any = None,
) -> list[CaseView]:
    """Cases matching ``filters`` (newest first), each with its open deadline."""
    if filters.kind is not None:
        spec = registry[filters.kind]
        if filters.state is not None:
            spec.state(filters.state)
    texts = (filters.kind, filters.state, filters.level, filters.region, filters.org)
    if any(t is not None and "\x00" in t for t in texts):
        raise InputError("a filter contains the NUL character (U+0000): remove it")
    if filters.limit <= 0 or filters.limit > 10000 or filters.offset < 0:
        raise InputError("--limit must be between 1 and 10000 and --offset not negative")
    c, d = CASE_TABLE.c, _DEADLINE.c
    join = CASE_TABLE.outerjoin(_DEADLINE, sa.and_(d.case_id == c.id, d.status == "open"))
    query = sa.select(CASE_TABLE, d.state.label("d_state"), d.due_at, d.action).select_from(join)
    for column, value in (
        (c.kind, filters.kind),
        (c.state, filters.state),
        (c.level, filters.level),
        (c.region, filters.region),
        (c.org, filters.org),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.incidents:
        query = query.where(c.incident.is_(True))
    if filters.open_only:
        query = query.where(c.final.is_(False))
    if filters.overdue_at is not None:
        query = query.where(d.due_at <= filters.overdue_at)
    if scope_where is not None:
        query = query.where(scope_where)
    query = query.order_by(*_order(filters)).limit(filters.limit).offset(filters.offset)
    views = []
    for row in conn.execute(query):
        deadline = OpenDeadline(row.d_state, row.due_at, row.action) if row.due_at else None
        views.append(view_of(registry, row, deadline))
    return views


def _order(filters: CaseFilter) -> tuple[Any, ...]:
    """Newest first; or a role's queue: its level first, then incidents, then the due time."""
    c, d = CASE_TABLE.c, _DEADLINE.c
    if filters.urgent_for is None:
        return (c.id.desc(),)
    return (
        sa.case((sa.and_(c.level == filters.urgent_for, c.final.is_(False)), 0), else_=1),
        sa.case((c.incident.is_(True), 0), else_=1),
        sa.case((d.due_at.is_(None), 1), else_=0),
        d.due_at,
        c.id.desc(),
    )


def history(conn: Connection, case_id: int) -> list[Any]:
    return list(
        conn.execute(sa.select(_AUDIT).where(_AUDIT.c.case_id == case_id).order_by(_AUDIT.c.seq))
    )


@dataclass(frozen=True)
class CaseCount:
    """How many cases of a scope share a workflow, a state and the queue's flags."""

    kind: str
    state: str
    mine: bool  # at the counting role's level (and not closed)
    overdue: bool  # its open deadline has passed
    incident: bool
    count: int


def count_cases(
    conn: Connection,
    *,
    role: str,
    now: datetime,
    open_only: bool = True,
    scope_where: Any = None,
) -> list[CaseCount]:
    """The cases of a scope counted by (workflow, state, mine, overdue, incident): one grouped
    statement, from which a queue's filters take their counts (a few dozen groups at most)."""
    c, d = CASE_TABLE.c, _DEADLINE.c
    join = CASE_TABLE.outerjoin(_DEADLINE, sa.and_(d.case_id == c.id, d.status == "open"))
    flags = sa.select(
        c.kind,
        c.state,
        sa.case((sa.and_(c.level == role, c.final.is_(False)), 1), else_=0).label("mine"),
        sa.case((d.due_at <= now, 1), else_=0).label("overdue"),
        sa.case((c.incident.is_(True), 1), else_=0).label("incident"),
    ).select_from(join)
    if open_only:
        flags = flags.where(c.final.is_(False))
    if scope_where is not None:
        flags = flags.where(scope_where)
    inner = flags.subquery()
    i = inner.c
    query = sa.select(
        i.kind, i.state, i.mine, i.overdue, i.incident, sa.func.count().label("n")
    ).group_by(i.kind, i.state, i.mine, i.overdue, i.incident)
    return [
        CaseCount(r.kind, r.state, bool(r.mine), bool(r.overdue), bool(r.incident), int(r.n))
        for r in conn.execute(query)
    ]


def kinds_of(conn: Connection, case_ids: set[int]) -> dict[int, str]:
    """The workflow of each case id (for references and state labels of audit events)."""
    wanted = sorted(case_ids)
    if not wanted:
        return {}
    query = sa.select(CASE_TABLE.c.id, CASE_TABLE.c.kind).where(CASE_TABLE.c.id.in_(wanted))
    return {row.id: row.kind for row in conn.execute(query)}
