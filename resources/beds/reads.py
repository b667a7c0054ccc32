"""Reads of the bed ledger: the capacity status per establishment, the candidates of a transfer
(free beds of a category inside a scope, ordered by distance), the deprogramming feed, the
transfers in and out of a scope and the EVASAN missions.

Each is one or two SELECTs on a read connection; none is recorded (they carry no patient).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.policy import land_of, means_fit
from engine.values import Actor, Scope
from engine.vocab import ScopeKind
from resources.beds.core import BUCKETS, CATEGORIES, OCCUPIED, PLAN, REPORT, item_of
from resources.beds.places import CENTRES, distance_km

__all__ = [
    "Candidate",
    "Status",
    "candidates",
    "candidates_sql",
    "deprogramming_feed",
    "missions",
    "statuses",
    "transfers",
]

_ORG = tables.ORGANISATION
_REGION = tables.REGION
_BALANCE = tables.STOCK_BALANCE
_REPORT = tables.RESOURCE_REPORT
_EVENT = tables.AUDIT_EVENT
_CASE = tables.CASE


def _scope_filter(query: Any, scope: Scope | None, region: str | None = None) -> Any:
    o = _ORG
    if region is not None:
        query = query.where(o.c.region == region)
    if scope is None or scope.kind == ScopeKind.NATIONAL:
        return query
    column = {"hospital": o.c.id, "ght": o.c.ght, "zone": o.c.zone, "region": o.c.region}
    return query.where(column[scope.kind] == scope.code)


@dataclass
class Status:
    """An establishment's capacity: per category, its figures; its tier and plan blanc."""

    org: str
    name: str
    region: str | None
    department: str | None
    beds: dict[str, dict[str, int]] = field(default_factory=dict)
    tier: int = 0
    plan_blanc: int = 0
    plan_blanc_since: str | None = None
    reported_at: str | None = None
    tiers: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _figures(buckets: dict[str, int]) -> dict[str, int]:
    installed = sum(buckets.get(b, 0) for b in BUCKETS)
    return {
        "installed": installed,
        "armed": installed - buckets.get("unarmed", 0),
        "occupied_covid": buckets.get("occupied_covid", 0),
        "occupied_other": buckets.get("occupied_other", 0),
        "covid_reserve": buckets.get("covid_reserve", 0),
        "reserved": buckets.get("reserved", 0),
        "available": buckets.get("available", 0),
    }


def statuses(
    conn: Connection, *, scope: Scope | None = None, region: str | None = None
) -> list[Status]:
    """Every establishment of the scope that holds beds or declared a plan, by region and name."""
    o, b, r = _ORG, _BALANCE, _REPORT
    rows = conn.execute(
        _scope_filter(
            sa.select(
                o.c.id, o.c.name, o.c.region, o.c.department, b.c.item, b.c.bucket, b.c.quantity
            )
            .select_from(b.join(o, o.c.id == b.c.holder))
            .where(b.c.item.in_([item_of(c) for c in CATEGORIES])),
            scope,
            region,
        )
    ).all()
    out: dict[str, Status] = {}
    buckets: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        out.setdefault(row.id, Status(row.id, row.name, row.region, row.department))
        category = row.item.split(":", 1)[1]
        buckets.setdefault((row.id, category), {})[row.bucket] = int(row.quantity)
    last = (
        sa.select(sa.func.max(r.c.id))
        .where(r.c.kind.in_((REPORT, PLAN)))
        .group_by(r.c.holder, r.c.kind)
        .scalar_subquery()
    )
    reports = conn.execute(
        _scope_filter(
            sa.select(o.c.id, o.c.name, o.c.region, o.c.department, r.c.kind, r.c.at, r.c.data)
            .select_from(r.join(o, o.c.id == r.c.holder))
            .where(r.c.id.in_(last)),
            scope,
            region,
        )
    ).all()
    for row in reports:
        status = out.setdefault(row.id, Status(row.id, row.name, row.region, row.department))
        data = dict(row.data or {})
        if row.kind == PLAN:
            status.tiers = data.get("tiers", {})
            continue
        status.tier = int(data.get("tier", 0))
        status.plan_blanc = int(data.get("plan_blanc", 0))
        status.plan_blanc_since = data.get("plan_blanc_since")
        at = row.at if isinstance(row.at, datetime) else None
        status.reported_at = at.isoformat() if at else str(row.at)
    for (org, category), counts in buckets.items():
        out[org].beds[category] = _figures(counts)
    return sorted(out.values(), key=lambda s: (s.region or "", s.name))


def region_totals(items: Iterable[Status]) -> dict[str, dict[str, dict[str, int]]]:
    """Per region, per category, the sums of the establishments' figures."""
    totals: dict[str, dict[str, dict[str, int]]] = {}
    for status in items:
        region = totals.setdefault(status.region or "", {})
        for category, figures in status.beds.items():
            sums = region.setdefault(category, {})
            for key, value in figures.items():
                sums[key] = sums.get(key, 0) + value
    return totals


@dataclass(frozen=True)
class Candidate:
    """An establishment with free beds of the category, and how far it is."""

    org: str
    name: str
    region: str | None
    department: str | None
    free: int
    distance_km: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


FAR = 1 << 30  # a department without coordinates: listed last


@lru_cache(maxsize=256)
def distance_case(department: str | None) -> Any:
    """The distance (km) from ``department`` to a row's department, as one SQL CASE on the
    departments' coordinates (resources.beds.places): the database ranks, and only the
    listed candidates come back. Literal SQL (codes and integers of our own table, no input),
    kept per department: no bound parameters to key and bind at each call."""
    if department is None or department not in CENTRES:
        return sa.literal_column(str(FAR), sa.Integer)
    return sa.literal_column(_case_sql(department), sa.Integer)


def _case_sql(department: str) -> str:
    whens = " ".join(f"WHEN '{code}' THEN {distance_km(department, code)}" for code in CENTRES)
    return f"CASE organisation.department {whens} ELSE {FAR} END"


def _candidate_query(
    item: str, scope: Scope | None, origin: Any, exclude: str | None, regions: Any, limit: int
) -> Any:
    o, b = _ORG, _BALANCE
    km = distance_case(origin.department if origin is not None else None).label("km")
    query = (
        sa.select(o.c.id, o.c.name, o.c.region, o.c.department, b.c.quantity, km)
        .select_from(b.join(o, o.c.id == b.c.holder))
        .where(
            b.c.item == item, b.c.bucket == "available", b.c.quantity > 0, o.c.kind == "hospital"
        )
        .order_by(km, b.c.quantity.desc(), o.c.name, o.c.id)
        .limit(limit)
    )
    if exclude is not None:
        query = query.where(o.c.id != exclude)
    if regions is not None:
        query = query.where(o.c.region.in_(regions))
    return _scope_filter(query, scope)


def _lands(conn: Connection, origin: Any, means: str | None) -> list[str] | None:
    """The regions a ``means`` reaches from the origin (road and rail stay on one land mass),
    None when any region does."""
    if not means or origin is None or means_fit(means, None, None):
        return None
    g = _REGION
    land = land_of(origin.region, origin.insee, origin.rn)
    rows = conn.execute(sa.select(g.c.code, g.c.insee, g.c.name)).all()
    return [r.code for r in rows if means_fit(means, land, land_of(r.code, r.insee, r.name))]


def _origin(conn: Connection, org: str | None) -> Any:
    if org is None:
        return None
    o, g = _ORG, _REGION
    return conn.execute(
        sa.select(o.c.region, o.c.department, g.c.insee, g.c.name.label("rn"))
        .select_from(o.outerjoin(g, g.c.code == o.c.region))
        .where(o.c.id == org)
    ).first()


def scope_of(actor: Actor | None) -> Scope | None:
    """The part of the country an actor may send a patient to (``policy.can_receive``)."""
    return None if actor is None else actor.scope


def candidates(
    conn: Connection,
    *,
    category: str,
    scope: Scope | None = None,
    origin: str | None = None,
    means: str | None = None,
    limit: int = 50,
) -> list[Candidate]:
    """Establishments of ``scope`` with an available bed of ``category`` (``origin``, the
    requesting establishment, left out), nearest first (by department), then most free beds."""
    place = _origin(conn, origin)
    regions = _lands(conn, place, means)
    query = _candidate_query(item_of(category), scope, place, origin, regions, limit)
    return [
        Candidate(r[0], r[1], r[2], r[3], int(r[4]), None if int(r[5]) >= FAR else int(r[5]))
        for r in conn.execute(query)
    ]


def candidates_sql(department: str) -> str:
    """The same listing as one plain SQL text (the benchmark's floor, national scope)."""
    return (
        "SELECT organisation.id, organisation.name, organisation.region, "
        f"organisation.department, b.quantity, {_case_sql(department)} AS km "
        "FROM stock_balance b JOIN organisation ON organisation.id = b.holder "
        "WHERE b.item = :item AND b.bucket = 'available' AND b.quantity > 0 "
        "AND organisation.kind = 'hospital' AND organisation.id <> :origin "
        "ORDER BY km, b.quantity DESC, organisation.name, organisation.id LIMIT :limit"
    )


# -- deprogramming feed, transfers, missions ---------------------------------------------------


@dataclass(frozen=True)
class FeedItem:
    org: str
    name: str
    region: str | None
    seq: int
    at: datetime
    action: str
    actor: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


def deprogramming_feed(
    conn: Connection, *, scope: Scope | None = None, limit: int = 200
) -> list[FeedItem]:
    """Deprogramming decisions and their reversals in the scope, newest first."""
    e, o = _EVENT, _ORG
    holder = sa.func.substr(e.c.stream, len("holder:") + 1)
    query = (
        sa.select(o.c.id, o.c.name, o.c.region, e.c.seq, e.c.at, e.c.action, e.c.actor, e.c.data)
        .select_from(e.join(o, o.c.id == holder))
        .where(
            e.c.stream.like("holder:%"), e.c.action.in_(("deprogramming", "deprogramming_reversed"))
        )
        .order_by(e.c.id.desc())
        .limit(limit)
    )
    rows = conn.execute(_scope_filter(query, scope)).all()
    return [FeedItem(r.id, r.name, r.region, r.seq, r.at, r.action, r.actor, dict(r.data or {}))
            for r in rows]  # fmt: skip


@dataclass(frozen=True)
class TransferRow:
    reference: str
    state: str
    org: str
    receiving: str | None
    bed_category: str | None
    covid: Any
    mission: str | None
    direction: str  # out | in

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _transfer_rows(conn: Connection) -> Sequence[Any]:
    c = _CASE
    return conn.execute(
        sa.select(c.c.id, c.c.state, c.c.org, c.c.region, c.c.zone, c.c.ght, c.c.fields)
        .where(c.c.kind == "transfer")
        .order_by(c.c.id)
    ).all()


def _reference(case_id: int) -> str:
    return f"TRF-{case_id:06d}"


def transfers(conn: Connection, *, scope: Scope | None = None) -> list[TransferRow]:
    """Transfer cases of the scope: those it sends (out) and those proposed to or received by
    its establishments (in)."""
    places = {
        r.id: r for r in conn.execute(sa.select(_ORG.c.id, _ORG.c.region, _ORG.c.zone, _ORG.c.ght))
    }

    def inside(org: str | None) -> bool:
        if scope is None or scope.kind == ScopeKind.NATIONAL:
            return True
        row = places.get(org or "")
        if row is None:
            return False
        value = {"hospital": row.id, "ght": row.ght, "zone": row.zone, "region": row.region}
        return bool(value[scope.kind] == scope.code)

    out: list[TransferRow] = []
    for row in _transfer_rows(conn):
        fields = dict(row.fields or {})
        resolved = fields.get("resolve") or {}
        receiving = resolved.get("receiving_hospital")
        mission = resolved.get("evasan_mission")
        common = (_reference(row.id), row.state, row.org, receiving,
                  fields.get("bed_category"), fields.get("covid"), mission)  # fmt: skip
        if inside(row.org):
            out.append(TransferRow(*common, "out"))
        if receiving and inside(receiving) and receiving != row.org:
            out.append(TransferRow(*common, "in"))
    return out


def missions(conn: Connection) -> dict[str, list[TransferRow]]:
    """EVASAN missions: the transfer cases that share a mission id, listed together."""
    out: dict[str, list[TransferRow]] = {}
    for row in transfers(conn):
        if row.mission and row.direction == "out":
            out.setdefault(row.mission, []).append(row)
    return dict(sorted(out.items()))


__all__ += ["OCCUPIED", "FeedItem", "TransferRow", "region_totals", "scope_of"]
