"""The situation room's ECMO panels (issue 14): the fleet by region or establishment, and the
loans to be returned.

``ecmo`` (« ECMO »): consoles owned, available, in use, lent (or in transit back), reserved,
in maintenance, and circuits available, read from the owners' ``stock_balance`` rows (a
console is item ``console:<serial>``, quantity 1, in the bucket of its status); one row per
region for a national or zone scope (the national security stock, held for the CCS, on a row
of its own, seen at national scope only), one per establishment for a region or narrower (or
``?region=``), with its last weekly inventory and whether it is stale (no inventory for the
last week whose report is due). The measure per region is the consoles available (the map).

``ecmo_loans`` (« Prêts ECMO »): the open loans (ECMO cases dispatched, in service or whose
return is declared) counted per region (the measure), and the rows of those to be returned:
« en retard » when the case's return deadline has passed (as ``Fleet.loans``), « sous 7
jours » when it falls within 7 days; the overdue first.

Two aggregate statements for the fleet (balances per holder, last inventory per holder), two
for the loans (counts per region, the rows due), whatever the number of establishments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.values import reference_of
from engine.vocab import ScopeKind
from resources.ecmo import CIRCUIT, INVENTORY, LOAN_STATES, NATIONAL, PREFIX, parse_serials
from resources.periods import PARIS, Due, week_of
from resources.situation import Column, PanelData, View, region_names, register_panel

__all__ = ["DUE_SOON", "fleet_panel", "last_due_week", "loans_panel"]

DUE_SOON = timedelta(days=7)  # a loan « à rendre » when its return date falls within this
_B, _ORG, _REPORT = tables.STOCK_BALANCE, tables.ORGANISATION, tables.RESOURCE_REPORT
_CASE, _DEADLINE = tables.CASE, tables.DEADLINE

FLEET_COLUMNS = (
    Column("region", "Région"),
    Column("name", "Nom"),
    Column("consoles", "Consoles", numeric=True),
    Column("available", "Disponibles", numeric=True),
    Column("in_use", "En service", numeric=True),
    Column("lent", "Prêtées", numeric=True),
    Column("reserved", "Réservées", numeric=True),
    Column("maintenance", "En maintenance", numeric=True),
    Column("circuits", "Circuits disponibles", numeric=True),
    Column("last_inventory", "Dernier inventaire"),
    Column("stale", "Inventaires en retard", numeric=True),
)
_COUNTS = ("consoles", "available", "in_use", "lent", "reserved", "maintenance", "circuits")

LOAN_COLUMNS = (
    Column("case", "Dossier"),
    Column("state", "État"),
    Column("borrower_name", "Emprunteur"),
    Column("lender_name", "Prêteur"),
    Column("consoles", "Consoles"),
    Column("return_by", "Retour prévu"),
    Column("due", "À rendre"),
)


@lru_cache(maxsize=1)
def _due() -> Due:
    from engine.settings import load_settings

    return Due.parse(load_settings().ecmo_inventory_due, weekly=True)


def last_due_week(now: datetime, due: Due | None = None) -> str:
    """The last ISO week whose inventory is due by ``now`` (this week once its due time has
    passed, else the previous one)."""
    due = due or _due()
    this = week_of(now)
    return this if due.due_at(this) <= now else week_of(now - timedelta(weeks=1))


def _by_establishment(view: View) -> bool:
    kind = view.actor.scope.kind
    return view.region is not None or kind in (ScopeKind.REGION, ScopeKind.GHT, ScopeKind.HOSPITAL)


def _sum(condition: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, _B.c.quantity), else_=0)), 0)


def _holders(conn: Connection, view: View) -> list[Any]:
    """One row per holder in view with an ECMO balance: its consoles by status, its circuits."""
    b, g = _B.c, _ORG.c
    console = b.item.like(f"{PREFIX}%")
    query = (
        sa.select(
            b.holder,
            g.name,
            g.region,
            _sum(console).label("consoles"),
            _sum(sa.and_(console, b.bucket == "available")).label("available"),
            _sum(sa.and_(console, b.bucket == "in_use")).label("in_use"),
            _sum(sa.and_(console, b.bucket.in_(("lent", "in_transit")))).label("lent"),
            _sum(sa.and_(console, b.bucket == "reserved")).label("reserved"),
            _sum(sa.and_(console, b.bucket == "maintenance")).label("maintenance"),
            _sum(sa.and_(b.item == CIRCUIT, b.bucket == "available")).label("circuits"),
        )
        .select_from(_B.join(_ORG, g.id == b.holder))
        .where(sa.or_(console, b.item == CIRCUIT))
        .group_by(b.holder, g.name, g.region)
    )
    where = view.holders(_ORG)
    if where is not None:
        query = query.where(where)
    return list(conn.execute(query))


def _inventories(conn: Connection, view: View) -> dict[str, tuple[str, Any]]:
    """holder -> (last week reported, when its last version was recorded)."""
    r, g = _REPORT.c, _ORG.c
    query = (
        sa.select(r.holder, sa.func.max(r.period).label("period"), sa.func.max(r.at).label("at"))
        .select_from(_REPORT.join(_ORG, g.id == r.holder))
        .where(r.kind == INVENTORY)
        .group_by(r.holder)
    )
    where = view.holders(_ORG)
    if where is not None:
        query = query.where(where)
    return {str(row.holder): (str(row.period), row.at) for row in conn.execute(query)}


def _date(at: Any) -> str:
    if not isinstance(at, datetime):
        return str(at or "")
    when: datetime = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return when.astimezone(PARIS).strftime("%d/%m/%Y")


def fleet_panel(conn: Connection, view: View, now: datetime) -> PanelData:
    names = region_names(conn)
    holders = _holders(conn, view)
    last = _inventories(conn, view)
    due_week = last_due_week(now)
    per_place = _by_establishment(view)
    rows: list[dict[str, Any]] = []
    regions: dict[str, dict[str, Any]] = {}
    national: dict[str, Any] | None = None
    stale_total = 0
    for h in sorted(holders, key=lambda h: (h.region or "", h.name or "", h.holder)):
        counts = {k: int(getattr(h, k)) for k in _COUNTS}
        if h.holder == NATIONAL:
            national = {
                "region": "—", "name": "Stock national de sécurité", "holder": NATIONAL,
                **counts, "last_inventory": "", "stale": 0,
            }  # fmt: skip
            continue
        period, at = last.get(h.holder, ("", None))
        # a centre owes the weekly inventory (it owns consoles): stale if it lacks the last week
        stale = int(counts["consoles"] > 0 and (not period or period < due_week))
        stale_total += stale
        region = h.region or "—"
        if per_place:
            rows.append({
                "region": region, "name": h.name or h.holder, "holder": h.holder, **counts,
                "last_inventory": f"{_date(at)} ({period})" if period else "aucun",
                "last_period": period or None, "stale": stale, "stale_flag": bool(stale),
            })  # fmt: skip
        else:
            row = regions.setdefault(region, {
                "region": region, "name": names.get(region, region),
                **dict.fromkeys(_COUNTS, 0), "last_inventory": "", "stale": 0,
            })  # fmt: skip
            for k in _COUNTS:
                row[k] += counts[k]
            row["stale"] += stale
    rows += regions.values()
    measure: dict[str, float] = {}
    for row in rows:
        if row["region"] != "—":
            measure[row["region"]] = measure.get(row["region"], 0) + row["available"]
    total = {k: sum(int(r[k]) for r in rows) for k in _COUNTS}
    figures: list[tuple[str, float | int | str]] = [
        ("Consoles ECMO des établissements", total["consoles"]),
        ("Consoles disponibles", total["available"]),
        ("Consoles en service", total["in_use"]),
        ("Consoles prêtées", total["lent"]),
        ("Circuits disponibles", total["circuits"]),
        ("Centres à l'inventaire en retard", stale_total),
    ]
    if national is not None:
        rows.append(national)
        figures += [
            ("Stock national : consoles disponibles", national["available"]),
            ("Stock national : consoles prêtées", national["lent"] + national["reserved"]),
        ]
    return PanelData(
        columns=FLEET_COLUMNS,
        rows=rows,
        measure=measure,
        measure_label="consoles disponibles",
        figures=figures,
    )


def _aware(at: Any) -> datetime | None:
    if not isinstance(at, datetime):
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def loans_panel(conn: Connection, view: View, now: datetime) -> PanelData:
    """Open loans counted per region (one aggregate); rows for those to be returned within 7
    days or overdue (a console in service past its return deadline), the overdue first."""
    spec = view.registry["ecmo"]
    c, d, g = _CASE.c, _DEADLINE.c, _ORG.c
    joined = _CASE.outerjoin(_DEADLINE, sa.and_(d.case_id == c.id, d.status == "open"))
    live = sa.and_(c.state == "in_service", d.due_at.is_not(None))
    late = sa.and_(live, d.due_at <= now)
    near = sa.and_(live, d.due_at > now, d.due_at <= now + DUE_SOON)
    where = view.cases()
    counted = (
        sa.select(
            c.region,
            sa.func.count().label("open"),
            sa.func.sum(sa.case((late, 1), else_=0)).label("late"),
            sa.func.sum(sa.case((near, 1), else_=0)).label("near"),
        )
        .select_from(joined)
        .where(c.kind == "ecmo", c.state.in_(LOAN_STATES))
        .group_by(c.region)
    )
    listed = (
        sa.select(c.id, c.state, c.org, g.name, c.region, c.fields, d.due_at)
        .select_from(joined.join(_ORG, g.id == c.org))
        .where(c.kind == "ecmo", live, d.due_at <= now + DUE_SOON)
        .order_by(d.due_at, c.id)
    )
    if where is not None:
        counted, listed = counted.where(where), listed.where(where)
    totals = list(conn.execute(counted))
    found = list(conn.execute(listed))
    lenders = {_lender((r.fields or {}).get("resolve") or {}) for r in found}
    lender_names = dict(
        conn.execute(sa.select(g.id, g.name).where(g.id.in_(sorted(lenders)))).all()
    )
    rows: list[dict[str, Any]] = []
    for r in found:
        fields = r.fields or {}
        resolve = fields.get("resolve") or {}
        lender = _lender(resolve)
        until = (fields.get("extend_loan") or {}).get("return_by") or resolve.get("return_by")
        due_at = _aware(r.due_at)
        overdue = due_at is not None and due_at <= now
        try:
            serials = ", ".join(parse_serials(resolve.get("console_serials")))
        except Exception:  # a case resolved before the fleet: its text as typed
            serials = str(resolve.get("console_serials") or "")
        rows.append({
            "case": reference_of("ECMO", r.id), "state": spec.state(r.state).label or r.state,
            "state_code": r.state, "borrower": r.org, "borrower_name": r.name or r.org,
            "lender": lender, "lender_name": lender_names.get(lender, lender),
            "consoles": serials, "return_by": str(until or ""),
            "due": "en retard" if overdue else "sous 7 jours",
            "overdue": overdue, "due_soon": not overdue, "region": r.region,
        })  # fmt: skip
    return PanelData(
        columns=LOAN_COLUMNS,
        rows=rows,
        measure={t.region: float(t.open) for t in totals},
        measure_label="prêts en cours",
        figures=[
            ("Prêts en cours", sum(int(t.open) for t in totals)),
            ("Prêts à rendre sous 7 jours", sum(int(t.near or 0) for t in totals)),
            ("Prêts en retard", sum(int(t.late or 0) for t in totals)),
        ],
    )


def _lender(resolve: dict[str, Any]) -> str:
    return NATIONAL if resolve.get("source") == "national" else str(resolve.get("lender") or "")


register_panel("ecmo", "ECMO", fleet_panel, order=30)
register_panel("ecmo_loans", "Prêts ECMO", loans_panel, order=31)
