"""The situation room's PPE panel (« EPI », issue 14): weeks of cover, reporting, trend, stocks.

One row per item of the weekly report, from what ``resources.ppe.stock`` recorded (nothing is
re-derived: the weeks of cover and the level are the ones the report stored, computed by
``rules.cover`` and the alert rule when it was decided):

- **weeks of cover**: each establishment in view counts by its latest report (as
  ``PpeService.cover``); the median, the establishments under 3 weeks (the security stock of
  MINSANTE N°143) and those at the ``critical`` level of their alert rule;
- **the week's consumption**, and the 8-week trend (the series: every item, in pieces), from
  the latest version of each (establishment, week);
- **deliveries awaited**: the ``in_transit`` balances of the holders in view;
- **the regional reserve** (the ARS's ``on_hand``) in weeks of the establishments' crisis
  consumption in view, against ``RESERVE_TARGET_WEEKS``; **the national strategic stock**
  (SpF's ``on_hand``, national view only) in weeks of the national crisis consumption, against
  ``stock.NATIONAL_TARGET_WEEKS`` (the very ratio of ``stock.national_weeks``);
- **completeness this week**: the current week's ``ppe_stock`` obligations received.

The measure per region (the map) is the median weeks of cover over every item line of the
latest reports. Every query is an aggregate or one row per establishment (its latest report's
figures read with JSON paths in SQL, never the whole document): the national page stays fast.
"""

from __future__ import annotations

from datetime import datetime
from statistics import median
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from resources.periods import week_of
from resources.ppe.items import ITEMS, parent
from resources.ppe.stock import IN_TRANSIT, KIND, NATIONAL_ITEMS, NATIONAL_TARGET_WEEKS, ON_HAND
from resources.situation import Column, PanelData, View, register_panel, week_starts

__all__ = ["COLUMNS", "RESERVE_TARGET_WEEKS", "UNDER_WEEKS", "ppe_panel"]

UNDER_WEEKS = 3.0  # « stock de sécurité » of MINSANTE N°143: the default alert threshold
# No regional target is written in the seeds: the reserve is shown against the same 3 weeks
# of the region's crisis consumption (a constant to turn into a setting when one is decided).
RESERVE_TARGET_WEEKS = 3.0
WEEKS = 8

_REPORT, _ORG, _BALANCE, _OBLIGATION = (
    tables.RESOURCE_REPORT, tables.ORGANISATION, tables.STOCK_BALANCE, tables.OBLIGATION,
)  # fmt: skip

COLUMNS = (
    Column("item", "Équipement"),
    Column("reporting", "Établissements déclarants", numeric=True),
    Column("median_weeks", "Couverture médiane (semaines)", numeric=True),
    Column("under_3", "Sous 3 semaines", numeric=True),
    Column("critical", "Sous le niveau critique", numeric=True),
    Column("consumed", "Consommation de la semaine", numeric=True),
    Column("in_transit", "Livraisons attendues", numeric=True),
    Column("reserve", "Réserve régionale", numeric=True),
    Column("national", "Stock stratégique national", numeric=True),
)


def _path(item: str, key: str) -> Any:
    return _REPORT.c.data[("lines", item, key)]


def _scoped(query: Any, view: View, org: Any) -> Any:
    where = view.holders(org)
    return query if where is None else query.where(where)


def latest_lines(conn: Connection, view: View) -> list[Any]:
    """One row per establishment in view: its region and, per item, the weeks of cover, the
    level and the crisis consumption of its latest report (latest week, latest version)."""
    r, g = _REPORT.c, _ORG
    ranked = sa.select(
        r.id,
        sa.func.row_number()
        .over(partition_by=r.holder, order_by=(r.period.desc(), r.version.desc()))
        .label("rank"),
    ).where(r.kind == KIND)
    ranked = _scoped(ranked.join(g, g.c.id == r.holder), view, g).subquery()
    picked: list[Any] = [g.c.region]
    for it in ITEMS:
        picked += [
            _path(it.key, "weeks").as_float().label(f"w_{it.key}"),
            _path(it.key, "level").as_string().label(f"l_{it.key}"),
            _path(it.key, "crisis").as_integer().label(f"c_{it.key}"),
        ]
    query = (
        sa.select(*picked)
        .select_from(_REPORT.join(ranked, ranked.c.id == r.id).join(g, g.c.id == r.holder))
        .where(ranked.c.rank == 1)
    )
    return list(conn.execute(query))


def weekly_consumption(conn: Connection, view: View, now: datetime) -> dict[str, dict[str, int]]:
    """{week: {item: pieces consumed}} over the last ``WEEKS`` weeks, the latest version of
    each establishment's report of the week, summed in SQL."""
    r, g = _REPORT.c, _ORG
    first = week_of(week_starts(now, WEEKS)[0])
    ranked = sa.select(
        r.id,
        sa.func.row_number()
        .over(partition_by=(r.holder, r.period), order_by=r.version.desc())
        .label("rank"),
    ).where(r.kind == KIND, r.period >= first)
    ranked = _scoped(ranked.join(g, g.c.id == r.holder), view, g).subquery()
    sums = [
        sa.func.sum(_path(it.key, "consumed").as_integer()).label(f"s_{it.key}") for it in ITEMS
    ]
    query = (
        sa.select(r.period, *sums)
        .select_from(_REPORT.join(ranked, ranked.c.id == r.id))
        .where(ranked.c.rank == 1)
        .group_by(r.period)
    )
    return {
        row.period: {it.key: int(row._mapping[f"s_{it.key}"] or 0) for it in ITEMS}
        for row in conn.execute(query)
    }


def balances(
    conn: Connection, view: View | None, kind: str, bucket: str
) -> dict[str, int]:  # fmt: skip
    """{report item: quantity} held in ``bucket`` by the holders of ``kind`` in view (None:
    every one), sub-types counted under their item."""
    b, g = _BALANCE.c, _ORG
    query = (
        sa.select(b.item, sa.func.sum(b.quantity).label("quantity"))
        .join(g, g.c.id == b.holder)
        .where(g.c.kind == kind, b.bucket == bucket)
        .group_by(b.item)
    )
    if view is not None:
        query = _scoped(query, view, g)
    out: dict[str, int] = {}
    for row in conn.execute(query):
        try:
            key = parent(row.item)
        except KeyError:  # an item of another resource held by the same kind of holder
            continue
        out[key] = out.get(key, 0) + int(row.quantity or 0)
    return out


def in_transit(conn: Connection, view: View) -> dict[str, int]:
    """Deliveries awaited: what is in transit to the establishments and GHTs in view."""
    out: dict[str, int] = {}
    for kind in ("hospital", "ght"):
        for key, quantity in balances(conn, view, kind, IN_TRANSIT).items():
            out[key] = out.get(key, 0) + quantity
    return out


def completeness(conn: Connection, view: View, now: datetime) -> tuple[int, int, int]:
    """This week's ``ppe_stock`` obligations in view: (expected, received, late)."""
    o, g = _OBLIGATION.c, _ORG
    query = (
        sa.select(
            sa.func.count().label("expected"),
            sa.func.sum(sa.case((o.status == "met", 1), else_=0)).label("received"),
            sa.func.sum(sa.case((o.status == "late", 1), else_=0)).label("late"),
        )
        .join(g, g.c.id == o.holder)
        .where(o.kind == KIND, o.period == week_of(now))
    )
    row = conn.execute(_scoped(query, view, g)).one()
    return int(row.expected or 0), int(row.received or 0), int(row.late or 0)


def _weeks(stock: int, crisis: int) -> float | None:
    return round(stock / crisis, 2) if crisis else None


def _fr(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}".replace(".", ",")


def ppe_panel(conn: Connection, view: View, now: datetime) -> PanelData:
    latest = latest_lines(conn, view)
    trend = weekly_consumption(conn, view, now)
    awaited = in_transit(conn, view)
    reserve = balances(conn, view, "ars", ON_HAND)
    national_view = view.holders(_ORG) is None  # national scope, not narrowed to a region
    national = balances(conn, None, "spf", ON_HAND) if national_view else {}
    expected, received, late = completeness(conn, view, now)
    this_week = trend.get(week_of(now), {})

    by_region: dict[str, list[float]] = {}
    rows: list[dict[str, Any]] = []
    crisis_total: dict[str, int] = {}
    for it in ITEMS:
        weeks: list[float] = []
        critical = 0
        crisis = 0
        for line in latest:
            m = line._mapping
            w, level = m[f"w_{it.key}"], m[f"l_{it.key}"]
            crisis += int(m[f"c_{it.key}"] or 0)
            critical += level == "critical"
            if w is not None:
                weeks.append(float(w))
                by_region.setdefault(line.region or "—", []).append(float(w))
        crisis_total[it.key] = crisis
        rows.append(
            {
                "item": it.label,
                "item_code": it.key,
                "reporting": len(weeks),
                "median_weeks": round(median(weeks), 2) if weeks else None,
                "under_3": sum(1 for w in weeks if w < UNDER_WEEKS),
                "critical": critical,
                "consumed": this_week.get(it.key, 0),
                "in_transit": awaited.get(it.key, 0),
                "reserve": reserve.get(it.key, 0),
                "reserve_weeks": _weeks(reserve.get(it.key, 0), crisis),
                "national": national.get(it.key, 0) if national_view else None,
                "national_weeks": (
                    _weeks(national.get(it.key, 0), crisis) if national_view else None
                ),
            }
        )
    all_weeks = [w for ws in by_region.values() for w in ws]
    figures: list[tuple[str, float | int | str]] = [
        ("Établissements déclarants", len(latest)),
        ("Couverture médiane (semaines)", _fr(median(all_weeks) if all_weeks else None)),
        (
            "Établissements sous 3 semaines (un équipement au moins)",
            sum(
                1
                for line in latest
                if any(
                    line._mapping[f"w_{it.key}"] is not None
                    and float(line._mapping[f"w_{it.key}"]) < UNDER_WEEKS
                    for it in ITEMS
                )
            ),
        ),
        (
            "Établissements sous le niveau critique",
            sum(
                1
                for line in latest
                if any(line._mapping[f"l_{it.key}"] == "critical" for it in ITEMS)
            ),
        ),
        ("Relevés attendus cette semaine", expected),
        ("Relevés reçus cette semaine", received),
        ("Complétude cette semaine", f"{round(100 * received / expected)} %" if expected else "—"),
        ("Relevés signalés à l'ARS", late),
        ("Livraisons attendues (pièces)", sum(awaited.values())),
        ("Réserve régionale (pièces)", sum(reserve.values())),
    ]
    masks = sum(reserve.get(k, 0) for k in NATIONAL_ITEMS)
    masks_crisis = sum(crisis_total[k] for k in NATIONAL_ITEMS)
    figures.append(
        (
            f"Réserve régionale, masques : semaines (cible {_fr(RESERVE_TARGET_WEEKS)})",
            _fr(_weeks(masks, masks_crisis)),
        )
    )
    if national_view:
        for key in NATIONAL_ITEMS:
            label = next(it.label for it in ITEMS if it.key == key)
            figures.append(
                (
                    f"Stock national, {label.lower()} : semaines (cible {NATIONAL_TARGET_WEEKS})",
                    _fr(_weeks(national.get(key, 0), crisis_total[key])),
                )
            )
    series = [
        (period, float(sum(trend.get(period, {}).values())))
        for period in (week_of(at) for at in week_starts(now, WEEKS))
    ]
    return PanelData(
        columns=COLUMNS,
        rows=rows,
        measure={region: round(median(ws), 2) for region, ws in sorted(by_region.items())},
        measure_label="semaines de couverture (médiane)",
        series=series,
        series_label="EPI consommés par semaine (pièces)",
        figures=figures,
    )


register_panel("ppe", "EPI", ppe_panel, order=30)
