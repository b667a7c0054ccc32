"""The situation room's capacity panel (issue 14): « Capacités de réanimation ».

Occupancy of the réanimation and surveillance continue beds by region (by establishment when
the view is a region or less), the tiers and plans blancs declared, the Covid+ patients in
critical care and their change since a date, the transfers and EVASAN missions in progress.
The measure per region is the occupancy (%), what the map colours.

Every figure is an aggregate computed by the database, whatever the number of establishments:

- the beds: one ``GROUP BY`` of ``stock_balance`` (conditional sums per category and bucket),
  turned into figures by ``reads._figures`` and the rate by ``core.occupancy`` (the alert's
  rule: occupied / armed, réa + SC);
- tiers and plan blanc: the latest ``capacity`` report of each establishment in view;
- the Covid+ change: the ``movement`` legs on ``occupied_covid`` since the date (the ledger's
  own history: reports and transfers alike), so the figure then is the figure now minus them;
- transfers and missions: the open ``transfer`` cases the view keeps (``View.cases``).

The panel framework passes no options: the change is since 7 days before ``now``
(``SINCE_DAYS``); ``compute(..., since=...)`` takes another date for a caller that has one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.vocab import ScopeKind
from resources.periods import PARIS, week_of
from resources.situation import (
    Column,
    PanelData,
    View,
    region_names,
    register_panel,
    week_starts,
)

__all__ = ["SINCE_DAYS", "by_establishment", "capacity_panel"]

SINCE_DAYS = 7
_ORG, _BALANCE, _REPORT = tables.ORGANISATION, tables.STOCK_BALANCE, tables.RESOURCE_REPORT
_MOVEMENT, _CASE = tables.MOVEMENT, tables.CASE
# the categories, buckets and figures are resources.beds.core's and .reads', imported when the
# panel is computed: catalogue._load imports this module, and core loads the notices' modules
# (which `regul case show` must not load)
CRITICAL = ("reanimation", "surveillance_continue")  # core.CRITICAL, checked by the tests
ITEMS = tuple(f"bed:{c}" for c in CRITICAL)  # core.item_of

# transfer states, grouped as the panel counts them (workflows/transfer.py)
REGULATION = ("requested", "ars_regulation", "zone_regulation", "national_regulation")
PROPOSED = ("proposed_ars", "proposed_zone", "proposed_national")
DISPATCHED = ("dispatched",)  # accepted: a bed reserved at the receiving establishment
TRANSFERRED = ("transferred",)  # the patient moved, the case not yet closed

_COMMON = (
    Column("rea_armed", "Réa : lits armés", numeric=True),
    Column("rea_occupied", "Réa : lits occupés", numeric=True),
    Column("sc_armed", "SC : lits armés", numeric=True),
    Column("sc_occupied", "SC : lits occupés", numeric=True),
    Column("available", "Lits disponibles (réa + SC)", numeric=True),
    Column("covid", "Patients Covid+ (réa + SC)", numeric=True),
    Column("occupancy", "Taux d'occupation (%)", numeric=True),
)
REGION_COLUMNS = (
    Column("region", "Région"),
    Column("region_name", "Nom de la région"),
    Column("establishments", "Établissements", numeric=True),
    *_COMMON,
    Column("tiered", "Établissements à un palier", numeric=True),
    Column("top_tier", "Palier le plus haut", numeric=True),
    Column("plan_blanc", "Établissements en plan blanc", numeric=True),
)
ESTABLISHMENT_COLUMNS = (
    Column("region", "Région"),
    Column("name", "Établissement"),
    Column("org", "FINESS"),
    *_COMMON,
    Column("tier", "Palier", numeric=True),
    Column("plan_blanc", "Plan blanc (niveau)", numeric=True),
)


def by_establishment(view: View) -> bool:
    """Rows per establishment when the view is a region or less, per region otherwise."""
    kind = view.actor.scope.kind
    return view.region is not None or kind not in (ScopeKind.NATIONAL, ScopeKind.ZONE)


def _scoped(query: Any, view: View) -> Any:
    where = view.holders(_ORG)
    return query if where is None else query.where(where)


def _beds(conn: Connection, view: View, keys: list[Any]) -> list[dict[str, Any]]:
    """Per group (``keys``): its key values, its establishments and, per (category, bucket),
    the sum of the balances (``"<category>__<bucket>"``): one GROUP BY of plain sums, pivoted
    here (a conditional sum per bucket costs the database more)."""
    o, b = _ORG.c, _BALANCE.c
    sums = (
        sa.select(*keys, b.item, b.bucket, sa.func.sum(b.quantity).label("quantity"))
        .select_from(_BALANCE.join(_ORG, o.id == b.holder))
        .where(b.item.in_(ITEMS))
        .group_by(*keys, b.item, b.bucket)
    )
    counted = (
        sa.select(*keys, sa.func.count(sa.distinct(b.holder)).label("establishments"))
        .select_from(_BALANCE.join(_ORG, o.id == b.holder))
        .where(b.item.in_(ITEMS))
        .group_by(*keys)
    )
    n = len(keys)
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in conn.execute(_scoped(counted, view)):
        out[tuple(row[:n])] = {
            **{k.name: v for k, v in zip(keys, row[:n], strict=True)},
            "establishments": int(row.establishments),
        }
    for row in conn.execute(_scoped(sums, view)):
        group = out.get(tuple(row[:n]))
        if group is not None:
            category = str(row.item).split(":", 1)[1]
            group[f"{category}__{row.bucket}"] = int(row.quantity or 0)
    return list(out.values())


def _tiers(conn: Connection, view: View, keys: list[Any]) -> dict[Any, Any]:
    """Per group: establishments at a tier, the highest tier, establishments in plan blanc
    (their latest capacity report)."""
    from resources.beds.core import REPORT

    o, r = _ORG.c, _REPORT.c
    last_q = sa.select(sa.func.max(r.id).label("id")).where(r.kind == REPORT).group_by(r.holder)
    where = view.holders(_ORG)
    if where is not None:  # the holders in view (nationally: every one, no join)
        last_q = last_q.join(_ORG, o.id == r.holder).where(where)
    last = last_q.subquery()
    tier = sa.func.coalesce(r.data["tier"].as_integer(), 0)
    blanc = sa.func.coalesce(r.data["plan_blanc"].as_integer(), 0)
    query = (
        sa.select(
            *keys,
            sa.func.sum(sa.case((tier > 0, 1), else_=0)).label("tiered"),
            sa.func.max(tier).label("top_tier"),
            sa.func.sum(sa.case((blanc > 0, 1), else_=0)).label("plan_blanc"),
            sa.func.max(blanc).label("top_blanc"),
        )
        .select_from(_REPORT.join(last, last.c.id == r.id).join(_ORG, o.id == r.holder))
        .group_by(*keys)
    )
    return {tuple(row[: len(keys)]): row for row in conn.execute(query)}


def _covid_changes(conn: Connection, view: View, instants: list[datetime]) -> list[int]:
    """For each instant, the change of Covid+ patients in réa + SC from then to now: the sum
    of the ``occupied_covid`` legs after it (one row of conditional sums)."""
    m, o = _MOVEMENT.c, _ORG.c
    sums = [
        sa.func.sum(sa.case((m.at > t, m.delta), else_=0)).label(f"d{i}")
        for i, t in enumerate(instants)
    ]
    query = sa.select(*sums).where(
        m.item.in_(ITEMS), m.bucket == "occupied_covid", m.at > min(instants)
    )
    where = view.holders(_ORG)
    if where is not None:  # the holders in view (nationally: every one, no join)
        query = query.select_from(_MOVEMENT.join(_ORG, o.id == m.holder)).where(where)
    row = conn.execute(query).one()
    return [int(row[i] or 0) for i in range(len(instants))]


def _transfers(conn: Connection, view: View) -> dict[str, int]:
    """Open transfer cases of the view per group of states; EVASAN missions and patients."""
    c = _CASE.c
    mission = c.fields["resolve"]["evasan_mission"].as_string()

    def count(states: tuple[str, ...]) -> Any:
        return sa.func.sum(sa.case((c.state.in_(states), 1), else_=0))

    has_mission = sa.and_(mission.is_not(None), mission != "")
    query = sa.select(
        count(REGULATION).label("regulation"),
        count(PROPOSED).label("proposed"),
        count(DISPATCHED).label("dispatched"),
        count(TRANSFERRED).label("transferred"),
        sa.func.count(sa.distinct(sa.case((has_mission, mission)))).label("missions"),
        sa.func.sum(sa.case((has_mission, 1), else_=0)).label("evasan"),
    ).where(c.kind == "transfer", c.final.is_(False))
    where = view.cases()
    if where is not None:
        query = query.where(where)
    row = conn.execute(query).one()
    return {key: int(row._mapping[key] or 0) for key in row._mapping}


def _row_figures(row: dict[str, Any]) -> dict[str, Any]:
    """The columns common to both kinds of rows, from one group's sums."""
    from resources.beds.core import BUCKETS, OCCUPIED, item_of, occupancy
    from resources.beds.reads import _figures

    found = {
        (item_of(c), bucket): int(row.get(f"{c}__{bucket}", 0))
        for c in CRITICAL
        for bucket in BUCKETS
    }
    rea, sc = (
        _figures({b: found[(item_of(c), b)] for b in BUCKETS}) for c in CRITICAL
    )  # réanimation, surveillance continue
    rate = occupancy(found)
    return {
        "rea_armed": rea["armed"],
        "rea_occupied": rea["occupied_covid"] + rea["occupied_other"],
        "sc_armed": sc["armed"],
        "sc_occupied": sc["occupied_covid"] + sc["occupied_other"],
        "available": rea["available"] + sc["available"],
        "covid": rea["occupied_covid"] + sc["occupied_covid"],
        "occupancy": None if rate is None else round(100 * rate, 1),
        # for the region's measure (and the JSON)
        "armed": rea["armed"] + sc["armed"],
        "occupied": sum(found[(i, b)] for i in ITEMS for b in OCCUPIED),
    }


def _percent(occupied: int, armed: int) -> float | None:
    return round(100 * occupied / armed, 1) if armed else None


def capacity_panel(
    conn: Connection, view: View, now: datetime, *, since: datetime | None = None
) -> PanelData:
    since = since if since is not None else now - timedelta(days=SINCE_DAYS)
    o = _ORG.c
    names = region_names(conn)
    detailed = by_establishment(view)
    keys = [o.region, o.id, o.name] if detailed else [o.region]
    beds = _beds(conn, view, keys)
    tiers = _tiers(conn, view, keys)
    rows: list[dict[str, Any]] = []
    per_region: dict[str, list[int]] = {}  # region -> [occupied, armed]
    names_of_keys = [k.name for k in keys]
    for row in sorted(beds, key=lambda r: tuple(str(r[k] or "") for k in names_of_keys)):
        key = tuple(row[k] for k in names_of_keys)
        found = _row_figures(row)
        tier = tiers.get(key)
        region = row["region"] or "—"
        sums = per_region.setdefault(region, [0, 0])
        sums[0] += found["occupied"]
        sums[1] += found["armed"]
        if detailed:
            rows.append(
                {
                    "region": region,
                    "name": row["name"],
                    "org": row["id"],
                    **found,
                    "tier": int(tier.top_tier or 0) if tier is not None else 0,
                    "plan_blanc": int(tier.top_blanc or 0) if tier is not None else 0,
                }
            )
        else:
            rows.append(
                {
                    "region": region,
                    "region_name": names.get(region, region),
                    "establishments": int(row["establishments"]),
                    **found,
                    "tiered": int(tier.tiered or 0) if tier is not None else 0,
                    "top_tier": int(tier.top_tier or 0) if tier is not None else 0,
                    "plan_blanc": int(tier.plan_blanc or 0) if tier is not None else 0,
                }
            )
    measure = {
        region: rate
        for region, (occupied, armed) in per_region.items()
        if (rate := _percent(occupied, armed)) is not None
    }
    # the Covid+ patients now, on the chosen date and at the end of each of the last 8 weeks
    starts = week_starts(now, 8)
    ends = [*starts[1:], now]
    covid = sum(int(r["covid"]) for r in rows)
    changes = _covid_changes(conn, view, [since, *ends])
    series = [(week_of(a), float(covid - d)) for a, d in zip(starts, changes[1:], strict=True)]
    change = changes[0]
    moves = _transfers(conn, view)
    occupied = sum(occupied for occupied, _ in per_region.values())
    armed = sum(armed for _, armed in per_region.values())
    rate = _percent(occupied, armed)
    tiered = sum(int(t.tiered or 0) for t in tiers.values())
    blanc = sum(int(t.plan_blanc or 0) for t in tiers.values())
    day = since.astimezone(PARIS).strftime("%d/%m/%Y")
    return PanelData(
        columns=ESTABLISHMENT_COLUMNS if detailed else REGION_COLUMNS,
        rows=rows,
        measure=measure,
        measure_label="taux d'occupation réa + SC (%)",
        series=series,
        series_label="patients Covid+ en soins critiques (fin de semaine)",
        figures=[
            (
                "Taux d'occupation réa + SC",
                "—" if rate is None else f"{rate:.1f} %".replace(".", ","),
            ),
            ("Lits armés (réa + SC)", armed),
            ("Lits occupés (réa + SC)", occupied),
            ("Lits disponibles (réa + SC)", sum(int(r["available"]) for r in rows)),
            ("Patients Covid+ en soins critiques", covid),
            (f"Évolution depuis le {day}", f"{change:+d}"),
            ("Établissements à un palier", tiered),
            ("Établissements en plan blanc", blanc),
            ("Transferts en régulation", moves["regulation"]),
            ("Transferts proposés", moves["proposed"]),
            ("Transferts organisés (lit réservé)", moves["dispatched"]),
            ("Patients transférés (dossier à clôturer)", moves["transferred"]),
            ("Missions EVASAN en cours", moves["missions"]),
            ("Patients en mission EVASAN", moves["evasan"]),
        ],
    )


register_panel("capacity", "Capacités de réanimation", capacity_panel, order=40)
