"""The situation room's figures: the counts of a scope and the panels, as plain data.

A **panel** is a name, a French title and a function ``(conn, view, now) -> PanelData``: its
rows (one dict per line, the columns named with their French headers), a **measure per
region** (what the map and the bars show) and, optionally, a **weekly series** (the line
chart). The situation page, the printable report, the PDF, the CSV and the JSON all read the
same ``PanelData``; none of them queries anything of its own.

The resource modules plug their panels in by calling ``register_panel`` at import (their
module is imported by ``resources.catalogue._load``); this module provides two that need no
resource module: ``cases`` (« Dossiers ») and ``reports`` (« Comptes rendus attendus », from
the ``obligation`` table, which the resource modules' panels may reuse through
``missing_reports``).

Every figure is scoped as the queue is: the cases by ``engine.runner.scope_where`` (the very
condition ``Runner.search`` uses), the holders of resources by ``View.holders`` (the
organisation's region, zone, GHT or itself). A ``region`` asked for (``/situation?region=OCC``)
narrows the scope, never widens it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.runner import scope_where
from engine.values import Actor
from engine.vocab import ScopeKind
from engine.workflow import WorkflowRegistry

__all__ = [
    "PANELS",
    "Column",
    "Counts",
    "Panel",
    "PanelData",
    "View",
    "counts",
    "missing_reports",
    "panel",
    "panels",
    "region_names",
    "register_panel",
    "scope_title",
]

_CASE, _DEADLINE, _ORG = tables.CASE, tables.DEADLINE, tables.ORGANISATION
_OBLIGATION, _REGION = tables.OBLIGATION, tables.REGION


@dataclass(frozen=True)
class Column:
    key: str
    title: str  # French header (desk table, CSV, PDF)
    numeric: bool = False


@dataclass(frozen=True)
class PanelData:
    """What one panel shows for one scope.

    ``rows`` may carry keys beyond ``columns`` (codes for the JSON); the CSV, the tables and
    the PDF show the columns only. ``measure`` keys are region codes (``regions.csv``).
    """

    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]
    measure: dict[str, float] = field(default_factory=dict)  # region code -> value
    measure_label: str = ""  # French: « dossiers ouverts »
    series: list[tuple[str, float]] = field(default_factory=list)  # (period, value), in order
    series_label: str = ""
    figures: list[tuple[str, float | int | str]] = field(default_factory=list)  # headline

    def json(self) -> dict[str, Any]:
        return {
            "columns": [{"key": c.key, "title": c.title} for c in self.columns],
            "rows": self.rows,
            "measure": {"label": self.measure_label, "by_region": self.measure},
            "series": {
                "label": self.series_label,
                "points": [{"period": p, "value": v} for p, v in self.series],
            },
            "figures": [{"label": label, "value": value} for label, value in self.figures],
        }


@dataclass(frozen=True)
class View:
    """Who looks, and at what: the actor's scope, optionally narrowed to one region."""

    actor: Actor
    registry: WorkflowRegistry
    region: str | None = None

    def cases(self) -> Any:
        """The condition on ``regul_case`` that keeps this view (None: everything)."""
        where = scope_where(self.actor)
        if self.region is not None:
            narrow = _CASE.c.region == self.region
            where = narrow if where is None else sa.and_(where, narrow)
        return where

    def holders(self, org: sa.Table | Any = _ORG) -> Any:
        """The condition on an ``organisation`` table (or alias) keeping the holders in view."""
        scope = self.actor.scope
        c = org.c
        where: Any = {
            ScopeKind.HOSPITAL: c.id == scope.code,
            ScopeKind.GHT: sa.or_(c.ght == scope.code, c.id == scope.code),
            ScopeKind.ZONE: c.zone == scope.code,
            ScopeKind.REGION: c.region == scope.code,
        }.get(scope.kind)
        if self.region is not None:
            narrow = c.region == self.region
            where = narrow if where is None else sa.and_(where, narrow)
        return where

    @property
    def label(self) -> str:
        from workflows.labels import SCOPES

        scope = self.actor.scope
        text = (
            "national"
            if scope.kind == ScopeKind.NATIONAL
            else f"{SCOPES.get(scope.kind, scope.kind)} {scope.code}"
        )
        return f"{text}, région {self.region}" if self.region else text


def scope_title(conn: Connection, view: View, names: dict[str, str]) -> str:
    """The scope in words: « national », « région Occitanie », « Zone de défense Sud »,
    « CHU de Toulouse », and the region it is narrowed to."""
    scope = view.actor.scope
    if scope.kind == ScopeKind.NATIONAL:
        text = "national"
    elif scope.kind == ScopeKind.REGION:
        text = f"région {names.get(scope.code or '', scope.code)}"
    elif scope.kind == ScopeKind.ZONE:
        z = tables.ZONE.c
        found = conn.execute(sa.select(z.name).where(z.code == scope.code)).scalar()
        text = str(found or f"zone {scope.code}")
    else:  # an establishment or a GHT: its name in the directory
        found = conn.execute(sa.select(_ORG.c.name).where(_ORG.c.id == scope.code)).scalar()
        text = str(found or view.label)
    if view.region:
        text += f", région {names.get(view.region, view.region)}"
    return text


Compute = Callable[[Connection, View, datetime], PanelData]


@dataclass(frozen=True)
class Panel:
    name: str  # in URLs: /api/v1/situation/{name}.csv
    title: str  # French
    compute: Compute
    order: int = 100


PANELS: dict[str, Panel] = {}


def register_panel(name: str, title: str, compute: Compute, *, order: int = 100) -> Panel:
    """Add (or replace) a panel; ``name`` is lowercase ASCII (it is a URL and a file name)."""
    if not name.replace("_", "").isascii() or not name.replace("_", "").isalnum():
        raise ValueError(f"panel name {name!r}: lowercase letters, digits and '_' only")
    if name != name.lower():
        raise ValueError(f"panel name {name!r}: lowercase letters, digits and '_' only")
    made = Panel(name, title, compute, order)
    PANELS[name] = made
    return made


def panels() -> list[Panel]:
    """Every registered panel, in display order (the resource modules loaded first)."""
    from resources import catalogue

    catalogue._load()
    return sorted(PANELS.values(), key=lambda p: (p.order, p.name))


def panel(name: str) -> Panel | None:
    panels()
    return PANELS.get(name)


def region_names(conn: Connection) -> dict[str, str]:
    return {r.code: r.name for r in conn.execute(sa.select(_REGION.c.code, _REGION.c.name))}


# -- the counts that come first ---------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    open: int
    mine: int  # waiting for the caller's level
    overdue: int
    incidents: int
    by_workflow: list[tuple[str, str, int]]  # (kind, French title, open cases)

    def json(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "waiting_for_my_level": self.mine,
            "overdue": self.overdue,
            "incidents": self.incidents,
            "by_workflow": {kind: n for kind, _, n in self.by_workflow},
        }


def counts(conn: Connection, view: View, now: datetime) -> Counts:
    """Open cases of the view: all, at the caller's level, past their deadline, in incident."""
    c, d = _CASE.c, _DEADLINE.c
    overdue = sa.and_(d.due_at.is_not(None), d.due_at <= now)
    query = (
        sa.select(
            c.kind,
            sa.func.count().label("open"),
            sa.func.sum(sa.case((c.level == view.actor.role, 1), else_=0)).label("mine"),
            sa.func.sum(sa.case((overdue, 1), else_=0)).label("overdue"),
            sa.func.sum(sa.case((c.incident.is_(True), 1), else_=0)).label("incidents"),
        )
        .select_from(_CASE.outerjoin(_DEADLINE, sa.and_(d.case_id == c.id, d.status == "open")))
        .where(c.final.is_(False))
        .group_by(c.kind)
    )
    where = view.cases()
    if where is not None:
        query = query.where(where)
    found = {r.kind: r for r in conn.execute(query)}
    by_workflow = [
        (spec.kind, spec.title, int(found[spec.kind].open) if spec.kind in found else 0)
        for spec in view.registry
        if view.actor.kinds is None or spec.kind in view.actor.kinds
    ]
    return Counts(
        open=sum(int(r.open) for r in found.values()),
        mine=sum(int(r.mine or 0) for r in found.values()),
        overdue=sum(int(r.overdue or 0) for r in found.values()),
        incidents=sum(int(r.incidents or 0) for r in found.values()),
        by_workflow=by_workflow,
    )


# -- « Dossiers »: cases by workflow and state per region -------------------------------------

CASE_COLUMNS = (
    Column("region", "Région"),
    Column("region_name", "Nom de la région"),
    Column("workflow", "Procédure"),
    Column("state", "État"),
    Column("open", "En cours", numeric=True),
    Column("total", "Total", numeric=True),
)


def cases_panel(conn: Connection, view: View, now: datetime) -> PanelData:
    c = _CASE.c
    query = sa.select(
        c.region,
        c.kind,
        c.state,
        sa.func.count().label("total"),
        sa.func.sum(sa.case((c.final.is_(False), 1), else_=0)).label("open"),
    ).group_by(c.region, c.kind, c.state)
    where = view.cases()
    if where is not None:
        query = query.where(where)
    names = region_names(conn)
    order = {spec.kind: i for i, spec in enumerate(view.registry)}
    rows: list[dict[str, Any]] = []
    measure: dict[str, float] = {}
    for r in sorted(conn.execute(query), key=lambda r: (r.region, order.get(r.kind, 99), r.state)):
        spec = view.registry[r.kind]
        rows.append(
            {
                "region": r.region,
                "region_name": names.get(r.region, r.region),
                "workflow": spec.title,
                "state": spec.state(r.state).label or r.state,
                "workflow_kind": r.kind,  # the codes, for the JSON (the CSV has the columns)
                "state_code": r.state,
                "open": int(r.open or 0),
                "total": int(r.total),
            }
        )
        measure[r.region] = measure.get(r.region, 0) + int(r.open or 0)
    series = _weekly_openings(conn, view, now)
    return PanelData(
        columns=CASE_COLUMNS,
        rows=rows,
        measure=measure,
        measure_label="dossiers en cours",
        series=series,
        series_label="dossiers ouverts par semaine",
        figures=[
            ("Dossiers en cours", sum(measure.values())),
            ("Dossiers au total", sum(int(r["total"]) for r in rows)),
        ],
    )


def week_starts(now: datetime, weeks: int = 8) -> list[datetime]:
    """The starts (Monday 00:00, Paris time, as UTC instants) of the last ``weeks`` ISO weeks,
    oldest first, the current one last."""
    from datetime import UTC, timedelta

    from resources.periods import PARIS

    local = now.astimezone(PARIS)
    monday = (local - timedelta(days=local.weekday())).date()
    return [
        datetime(day.year, day.month, day.day, tzinfo=PARIS).astimezone(UTC)
        for day in (monday - timedelta(weeks=k) for k in range(weeks - 1, -1, -1))
    ]


def _weekly_openings(conn: Connection, view: View, now: datetime, weeks: int = 8) -> list[Any]:
    """Cases opened in each of the last ``weeks`` ISO weeks (Paris time), oldest first: one
    row of conditional sums, whatever the number of cases."""
    from resources.periods import week_of

    starts = week_starts(now, weeks)
    ends = [*starts[1:], None]
    c = _CASE.c
    sums = [
        sa.func.sum(
            sa.case(
                (c.opened_at >= a if b is None else sa.and_(c.opened_at >= a, c.opened_at < b), 1),
                else_=0,
            )
        ).label(f"w{i}")
        for i, (a, b) in enumerate(zip(starts, ends, strict=True))
    ]
    query = sa.select(*sums).where(c.opened_at >= starts[0])
    where = view.cases()
    if where is not None:
        query = query.where(where)
    row = conn.execute(query).one()
    return [(week_of(a), float(row[i] or 0)) for i, a in enumerate(starts)]


# -- « Comptes rendus attendus »: reports due and not received ---------------------------------

REPORT_COLUMNS = (
    Column("region", "Région"),
    Column("region_name", "Nom de la région"),
    Column("kind", "Compte rendu"),
    Column("expected", "Attendus", numeric=True),
    Column("received", "Reçus", numeric=True),
    Column("missing", "Manquants", numeric=True),
    Column("late", "Dont signalés à l'ARS", numeric=True),
)


def report_label(kind: str) -> str:
    """The French name of a kind of report (its obligation kind's), else its code."""
    from resources import catalogue

    catalogue._load()
    make = catalogue.KINDS.get(kind)
    if make is None:
        return kind
    try:
        from engine.settings import Settings

        return make(Settings()).report  # the defaults: the name does not depend on them
    except Exception:  # a kind that needs settings we do not have: its code
        return kind


def missing_reports(
    conn: Connection, view: View, now: datetime, *, kinds: Iterable[str] | None = None
) -> PanelData:
    """Reports due by ``now`` per region and kind: expected, received, missing, escalated.

    ``kinds`` keeps some kinds of report (a resource module's own panel reuses this one).
    """
    o, g = _OBLIGATION.c, _ORG
    query = (
        sa.select(
            g.c.region,
            o.kind,
            sa.func.count().label("expected"),
            sa.func.sum(sa.case((o.status == "met", 1), else_=0)).label("received"),
            sa.func.sum(sa.case((o.status == "late", 1), else_=0)).label("late"),
        )
        .join(g, g.c.id == o.holder)
        .where(o.due_at <= now)
        .group_by(g.c.region, o.kind)
    )
    where = view.holders(g)
    if where is not None:
        query = query.where(where)
    if kinds is not None:
        query = query.where(o.kind.in_(sorted(kinds)))
    names = region_names(conn)
    labels: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    measure: dict[str, float] = {}
    for r in sorted(conn.execute(query), key=lambda r: (r.region or "", r.kind)):
        if r.kind not in labels:
            labels[r.kind] = report_label(r.kind)
        missing = int(r.expected) - int(r.received or 0)
        region = r.region or "—"
        rows.append(
            {
                "region": region,
                "region_name": names.get(region, region),
                "kind": labels[r.kind],
                "kind_code": r.kind,
                "expected": int(r.expected),
                "received": int(r.received or 0),
                "missing": missing,
                "late": int(r.late or 0),
            }
        )
        measure[region] = measure.get(region, 0) + missing
    series = _missing_by_period(conn, view, now, kinds)
    expected = sum(int(r["expected"]) for r in rows)
    received = sum(int(r["received"]) for r in rows)
    return PanelData(
        columns=REPORT_COLUMNS,
        rows=rows,
        measure=measure,
        measure_label="comptes rendus manquants",
        series=series,
        series_label="comptes rendus manquants par période",
        figures=[
            ("Comptes rendus attendus", expected),
            ("Manquants", expected - received),
            ("Signalés à l'ARS", sum(int(r["late"]) for r in rows)),
            ("Complétude", f"{round(100 * received / expected)} %" if expected else "—"),
        ],
    )


def _missing_by_period(
    conn: Connection, view: View, now: datetime, kinds: Iterable[str] | None, last: int = 8
) -> list[tuple[str, float]]:
    o, g = _OBLIGATION.c, _ORG
    query = (
        sa.select(o.period, sa.func.count().label("missing"))
        .join(g, g.c.id == o.holder)
        .where(o.due_at <= now, o.status != "met")
        .group_by(o.period)
    )
    where = view.holders(g)
    if where is not None:
        query = query.where(where)
    if kinds is not None:
        query = query.where(o.kind.in_(sorted(kinds)))
    points = sorted((r.period, float(r.missing)) for r in conn.execute(query))
    return points[-last:]


def reports_panel(conn: Connection, view: View, now: datetime) -> PanelData:
    return missing_reports(conn, view, now)


register_panel("cases", "Dossiers", cases_panel, order=10)
register_panel("reports", "Comptes rendus attendus", reports_panel, order=90)
