"""Critical-care capacity, decided: the bed ledger, capacity reports, plans, targets,
deprogramming decisions and the alerts they raise (MARS N°2021_18, seed 001; seed 003).

Beds are a ledger (``resources.ledger``): an establishment holds, per category, the item
``bed:<category>`` in six buckets whose sum is its installed beds:

- ``available``: armed, free, offered to transfers;
- ``reserved``: armed, held for a transfer the receiving establishment accepted;
- ``occupied_covid`` / ``occupied_other``: armed, a patient in it;
- ``covid_reserve``: armed and kept for Covid patients (not offered to transfers);
- ``unarmed``: installed, not armed (no staff).

A capacity report states installed, armed, occupied (Covid, non-Covid) and the Covid reserve
per category: its legs are the differences with the stored balances (reservations stay), so
the replay of the holder's chain gives its figures. It carries the tier of the capacity plan
and the plan blanc level; it is stored as a version of the day's ``capacity`` report (the daily
snapshot, an obligation the sweep reminds) and raises the alerts. Everything here is decided
in the command's transaction from what it reads there; ``Tx.apply`` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.errors import InputError, NotFound, NotPermitted
from engine.policy import in_scope
from engine.unit_of_work import Tx
from engine.values import Actor, Draft, HolderNotice, LedgerEntry, Leg, Outcome, Place, ReportDraft
from engine.vocab import Role
from notifications.outbox import holder_objet
from resources.periods import PARIS, day_of
from workflows.transfer import PROTECTED

__all__ = [
    "BUCKETS",
    "CATEGORIES",
    "CRITICAL",
    "Figures",
    "capacity_outcome",
    "deprogram_outcome",
    "item_of",
    "parse_figures",
    "plan_outcome",
    "reverse_outcome",
    "target_outcome",
]

CATEGORIES = ("reanimation", "surveillance_continue", "medecine_covid")
CRITICAL = ("reanimation", "surveillance_continue")  # the occupancy alert's categories
BUCKETS = (
    "available",
    "reserved",
    "occupied_covid",
    "occupied_other",
    "covid_reserve",
    "unarmed",
)
OCCUPIED = ("occupied_covid", "occupied_other")
PLAN_BLANC = (0, 1, 2)  # 0: not triggered; the MARS asks for level 2
REPORT = "capacity"
PLAN = "capacity_plan"
TARGET = "capacity_target"
MAX_BEDS = 100_000

_ORG = tables.ORGANISATION
_REPORT = tables.RESOURCE_REPORT
_BALANCE = tables.STOCK_BALANCE
_EVENT = tables.AUDIT_EVENT


holder_objet(
    "capacity_tier",
    "PALIER CAPACITAIRE {direction} (PALIER {tier}) — {holder}",
    "Information transmise à l'ARS en temps réel",
)
holder_objet(
    "capacity_alert",
    "ALERTE : TAUX D'OCCUPATION EN SOINS CRITIQUES {rate} — {holder}",
    "Alerte automatique : seuil d'occupation dépassé",
)
holder_objet(
    "region_at_target",
    "RÉGION À SA CIBLE CAPACITAIRE ({category}) — CANDIDATE EVASAN — {holder}",
    "Alerte automatique : cible capacitaire régionale atteinte",
)
holder_objet(
    "deprogramming",
    "DÉCISION DE DÉPROGRAMMATION (PALIER {tier}) — {holder}",
    "Information transmise à l'ARS en temps réel",
)
holder_objet("deprogramming_reversed", "LEVÉE DE LA DÉPROGRAMMATION N° {decision} — {holder}",
             "Information transmise à l'ARS en temps réel")  # fmt: skip


def item_of(category: str) -> str:
    return f"bed:{category}"


@dataclass(frozen=True)
class Figures:
    """One category's figures as reported."""

    installed: int
    armed: int
    occupied_covid: int
    occupied_other: int
    covid_reserve: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _bad(message: str, *, why: str = "bad_capacity", **data: object) -> InputError:
    return InputError(message, why=why, **data)


def _count(raw: object, *, category: str, name: str) -> int:
    if isinstance(raw, bool):
        raw = None
    try:
        value = int(str(raw).strip()) if not isinstance(raw, int) else raw
    except (TypeError, ValueError):
        raise _bad(
            f"{category}.{name}: {raw!r} is not a whole number of beds",
            why="bad_bed_count", category=category, field=name, value=str(raw),
        ) from None  # fmt: skip
    if not 0 <= value <= MAX_BEDS:
        raise _bad(
            f"{category}.{name}: {value} is out of bounds (0 to {MAX_BEDS})",
            why="bad_bed_count", category=category, field=name, value=str(value),
        )  # fmt: skip
    return value


def parse_figures(raw: Mapping[str, Any]) -> dict[str, Figures]:
    """The per-category figures of a report, checked: every count a whole number, armed at
    most installed, occupied beds and the reserve at most armed. Unknown categories refused."""
    unknown = sorted(set(raw) - set(CATEGORIES))
    if unknown:
        raise _bad(
            f"unknown bed category {', '.join(unknown)}; categories: {', '.join(CATEGORIES)}",
            why="bad_bed_category", category=unknown[0],
        )  # fmt: skip
    if not raw:
        raise _bad("a capacity report names at least one bed category", why="no_bed_category")
    out: dict[str, Figures] = {}
    for category, values in raw.items():
        if not isinstance(values, Mapping):
            raise _bad(f"{category}: figures expected", why="bad_bed_count", category=category,
                       field="", value=str(values))  # fmt: skip
        extra = sorted(set(values) - set(Figures.__dataclass_fields__))
        if extra:
            raise _bad(
                f"{category}: unknown figure {', '.join(extra)}",
                why="bad_bed_count", category=category, field=extra[0], value="",
            )  # fmt: skip
        counts = {
            name: _count(values.get(name, 0), category=category, name=name)
            for name in Figures.__dataclass_fields__
        }
        figures = Figures(**counts)
        if figures.armed > figures.installed:
            raise _bad(
                f"{category}: {figures.armed} armed beds for {figures.installed} installed",
                why="armed_over_installed", category=category, armed=figures.armed,
                installed=figures.installed,
            )  # fmt: skip
        used = figures.occupied_covid + figures.occupied_other + figures.covid_reserve
        if used > figures.armed:
            raise _bad(
                f"{category}: {used} beds occupied or kept in reserve for {figures.armed} armed",
                why="occupied_over_armed", category=category, used=used, armed=figures.armed,
            )  # fmt: skip
        out[category] = figures
    return out


# -- reads in the command's transaction -------------------------------------------------------


def place_of(conn: Connection, org: str) -> Place:
    row = conn.execute(
        sa.select(_ORG.c.id, _ORG.c.kind, _ORG.c.region, _ORG.c.zone, _ORG.c.ght, _ORG.c.department)
        .where(_ORG.c.id == org)
    ).first()  # fmt: skip
    if row is None:
        raise NotFound(f"no organisation {org} in the directory", why="no_organisation", org=org)
    return Place(row.id, row.region, row.zone, row.ght, row.department, kind=row.kind)


def latest(conn: Connection, kind: str, holder: str) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(_REPORT.c.data)
        .where(_REPORT.c.kind == kind, _REPORT.c.holder == holder)
        .order_by(_REPORT.c.id.desc())
        .limit(1)
    ).first()
    return dict(row.data) if row is not None else None


def ars_of(conn: Connection, region: str | None) -> str | None:
    if region is None:
        return None
    return conn.execute(
        sa.select(_ORG.c.id).where(_ORG.c.kind == "ars", _ORG.c.region == region).limit(1)
    ).scalar()


def region_occupied(conn: Connection, region: str, category: str) -> int:
    o, b = _ORG, _BALANCE
    return int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(b.c.quantity), 0))
            .select_from(b.join(o, o.c.id == b.c.holder))
            .where(o.c.region == region, b.c.item == item_of(category), b.c.bucket.in_(OCCUPIED))
        ).scalar_one()
    )


# -- who may act for whom ----------------------------------------------------------------------


def require_establishment(place: Place) -> None:
    if place.kind != "hospital":
        raise InputError(
            f"{place.org} is not a health establishment: beds are reported by establishments",
            why="not_an_establishment", org=place.org,
        )  # fmt: skip


def may_act_for(actor: Actor, place: Place) -> None:
    """An establishment reports for itself; its ARS (region), the ARS de zone (zone) and the
    CCS may report on its behalf. Anyone else: refused (as not found, the case rule)."""
    allowed = actor.role in {Role.ESTABLISHMENT, Role.ARS, Role.ARS_ZONE, Role.CCS}
    if not allowed or not in_scope(actor, place):
        raise NotFound(
            f"no establishment {place.org} in {actor.login}'s scope",
            why="establishment_outside_scope", org=place.org,
        )  # fmt: skip


def _draft(actor: Actor, action: str, reason: str, data: dict[str, Any]) -> Draft:
    return Draft(actor.login, actor.role, actor.org, action, None, None, 0, reason, data)


def _paris(now: datetime) -> str:
    return now.astimezone(PARIS).strftime("%d/%m/%Y à %H h %M")


CATEGORY_LABELS = {
    "reanimation": "réanimation",
    "surveillance_continue": "surveillance continue",
    "medecine_covid": "médecine Covid",
}


def _label(category: str) -> str:
    return CATEGORY_LABELS.get(category, category)


# -- capacity report ---------------------------------------------------------------------------


def _target_buckets(f: Figures, reserved: int) -> dict[str, int]:
    return {
        "available": f.armed - f.occupied_covid - f.occupied_other - f.covid_reserve - reserved,
        "reserved": reserved,
        "occupied_covid": f.occupied_covid,
        "occupied_other": f.occupied_other,
        "covid_reserve": f.covid_reserve,
        "unarmed": f.installed - f.armed,
    }


def occupancy(balances: Mapping[tuple[str, str], int]) -> float | None:
    """Occupied share of the armed réanimation and surveillance continue beds (None: none)."""
    armed = occupied = 0
    for category in CRITICAL:
        item = item_of(category)
        for bucket in BUCKETS:
            if bucket != "unarmed":
                armed += balances.get((item, bucket), 0)
        occupied += sum(balances.get((item, b), 0) for b in OCCUPIED)
    return occupied / armed if armed else None


def capacity_outcome(
    tx: Tx,
    actor: Actor,
    *,
    holder: str,
    figures: Mapping[str, Figures],
    tier: int | None,
    plan_blanc: int | None,
    threshold: float,
    reason: str = "",
) -> Outcome:
    """A capacity report: legs to the reported figures, the day's report version, the
    obligation met, and the alerts it raises (occupancy over ``threshold``, a region at its
    target, a tier or plan blanc changed)."""
    conn, now = tx.conn, tx.now
    place = place_of(conn, holder)
    require_establishment(place)
    may_act_for(actor, place)
    items = [item_of(c) for c in CATEGORIES]
    balances = tx.balances([holder], items)
    before = {(i, b): q for (h, i, b), q in balances.items() if h == holder}
    previous = latest(conn, REPORT, holder) or {}
    plan = latest(conn, PLAN, holder)
    tiers = {int(t) for t in (plan or {}).get("tiers", {})}
    old_tier = int(previous.get("tier", 0))
    new_tier = old_tier if tier is None else tier
    if tier is not None and tier != 0 and tier not in tiers:
        raise _bad(
            f"tier {tier} is not a tier of {holder}'s capacity plan "
            f"(tiers: {', '.join(map(str, sorted(tiers))) or 'none declared'})",
            why="unknown_tier", tier=tier, tiers=", ".join(map(str, sorted(tiers))) or "aucun",
        )  # fmt: skip
    old_blanc = int(previous.get("plan_blanc", 0))
    new_blanc = old_blanc if plan_blanc is None else plan_blanc
    if new_blanc not in PLAN_BLANC:
        raise _bad(f"plan blanc level {new_blanc}: 0, 1 or 2", why="bad_plan_blanc",
                   level=str(new_blanc))  # fmt: skip
    since = previous.get("plan_blanc_since")
    if new_blanc != old_blanc:
        since = now.isoformat() if new_blanc else None
    legs: list[Leg] = []
    stated: dict[str, dict[str, int]] = {}
    after = dict(before)
    for category, f in figures.items():
        item = item_of(category)
        reserved = before.get((item, "reserved"), 0)
        target = _target_buckets(f, reserved)
        if target["available"] < 0:
            raise _bad(
                f"{category}: {reserved} beds are reserved for accepted transfers; "
                f"{f.armed} armed beds cannot hold them with the occupied and reserve beds",
                why="reserved_over_armed", category=category, reserved=reserved, armed=f.armed,
            )  # fmt: skip
        for bucket, quantity in target.items():
            delta = quantity - before.get((item, bucket), 0)
            if delta:
                legs.append(Leg(item, bucket, delta))
            after[(item, bucket)] = quantity
        stated[category] = {**f.to_dict(), "reserved": reserved, "available": target["available"]}
    period = day_of(now)
    data: dict[str, Any] = {
        "categories": stated,
        "tier": new_tier,
        "plan_blanc": new_blanc,
        "plan_blanc_since": since,
    }
    entries = [
        LedgerEntry(
            holder,
            _draft(actor, "capacity_reported", reason, {"tier": new_tier, "plan_blanc": new_blanc}),
            tuple(legs),
            report=ReportDraft(REPORT, period, data),
            meets=(REPORT, period),
        )
    ]
    if new_tier != old_tier or new_blanc != old_blanc:
        entries.append(_tier_entry(actor, holder, old_tier, new_tier, old_blanc, new_blanc, plan))
    rate_before, rate_after = occupancy(before), occupancy(after)
    if (
        rate_after is not None
        and rate_after >= threshold
        and (rate_before is None or rate_before < threshold)
    ):
        entries.append(_occupancy_entry(actor, holder, rate_after, threshold, after))
    entries.extend(_region_entries(conn, actor, place, before, after, now))
    return Outcome(None, ledger=tuple(entries))


def _tier_entry(
    actor: Actor,
    holder: str,
    old: int,
    new: int,
    old_blanc: int,
    new_blanc: int,
    plan: Mapping[str, Any] | None,
) -> LedgerEntry:
    beds = (plan or {}).get("tiers", {}).get(str(new), {})
    rows = [["Palier", f"{old} → {new}"], ["Plan blanc", f"niveau {old_blanc} → {new_blanc}"]]
    rows += [[f"Lits du palier {new} : {_label(c)}", str(n)] for c, n in sorted(beds.items())]
    direction = "relevé" if (new, new_blanc) > (old, old_blanc) else "abaissé"
    values = {"tier": str(new), "direction": direction, "plan_blanc": str(new_blanc), "rows": rows}
    data = {"tier_from": old, "tier_to": new, "plan_blanc_from": old_blanc,
            "plan_blanc_to": new_blanc}  # fmt: skip
    return LedgerEntry(
        holder,
        _draft(actor, "capacity_tier", "", data),
        notice=HolderNotice("capacity_tier", ("ars",), ("holder",), values),
    )


def _occupancy_entry(
    actor: Actor,
    holder: str,
    rate: float,
    threshold: float,
    after: Mapping[tuple[str, str], int],
) -> LedgerEntry:
    percent, limit = round(rate * 100), round(threshold * 100)
    rows = [["Taux d'occupation (réanimation + surveillance continue)", f"{percent} %"],
            ["Seuil d'alerte", f"{limit} %"]]  # fmt: skip
    for category in CRITICAL:
        free = after.get((item_of(category), "available"), 0)
        rows.append([f"Lits disponibles : {_label(category)}", str(free)])
    values = {"rate": f"{percent} %", "threshold": f"{limit} %", "rows": rows}
    return LedgerEntry(
        holder,
        _draft(actor, "occupancy_alert", "", {"rate": round(rate, 4), "threshold": threshold}),
        notice=HolderNotice("capacity_alert", ("ars",), ("holder",), values),
    )


def _region_entries(
    conn: Connection,
    actor: Actor,
    place: Place,
    before: Mapping[tuple[str, str], int],
    after: Mapping[tuple[str, str], int],
    now: datetime,
) -> list[LedgerEntry]:
    """A region reaching its target (occupied beds at or above the target the ARS set, per
    category): an entry in its ARS's stream, a notice to the ARS de zone and the CCS, flagged
    as a candidate for EVASAN."""
    ars = ars_of(conn, place.region)
    target = (latest(conn, TARGET, ars) or {}).get("targets", {}) if ars else {}
    out: list[LedgerEntry] = []
    for category, goal in sorted(target.items()):
        if not goal or category not in CATEGORIES:
            continue
        item = item_of(category)
        mine_before = sum(before.get((item, b), 0) for b in OCCUPIED)
        mine_after = sum(after.get((item, b), 0) for b in OCCUPIED)
        total_before = region_occupied(conn, str(place.region), category)
        total_after = total_before - mine_before + mine_after
        if total_before < int(goal) <= total_after:
            rows = [["Catégorie", _label(category)], ["Lits occupés dans la région",
                    str(total_after)], ["Cible capacitaire régionale", str(goal)],
                    ["Candidate EVASAN", "oui"]]  # fmt: skip
            values = {"category": _label(category), "occupied": str(total_after),
                      "target": str(goal), "rows": rows}  # fmt: skip
            data = {
                "region": place.region, "category": category, "occupied": total_after,
                "target": int(goal), "evasan_candidate": True, "reported_by": place.org,
            }  # fmt: skip
            assert ars is not None
            out.append(
                LedgerEntry(
                    ars,
                    _draft(actor, "region_at_target", "", data),
                    notice=HolderNotice("region_at_target", ("ars_zone", "ccs"), ("ars",), values),
                )
            )
    return out


# -- plan and targets --------------------------------------------------------------------------


def plan_outcome(
    tx: Tx, actor: Actor, *, holder: str, tiers: Mapping[str, Mapping[str, Any]]
) -> Outcome:
    """An establishment's capacity plan: per tier (1, 2, 3...), the beds per category."""
    place = place_of(tx.conn, holder)
    require_establishment(place)
    may_act_for(actor, place)
    if not tiers:
        raise _bad("a capacity plan declares at least one tier", why="no_tier")
    clean: dict[str, dict[str, int]] = {}
    for raw_tier, beds in tiers.items():
        try:
            tier = int(str(raw_tier))
        except ValueError:
            tier = -1
        if not 1 <= tier <= 9:
            raise _bad(f"tier {raw_tier!r}: a tier is 1 to 9", why="bad_tier", tier=str(raw_tier))
        unknown = sorted(set(beds) - set(CATEGORIES))
        if unknown:
            raise _bad(f"unknown bed category {unknown[0]}", why="bad_bed_category",
                       category=unknown[0])  # fmt: skip
        clean[str(tier)] = {
            c: _count(n, category=c, name=f"palier {tier}") for c, n in sorted(beds.items())
        }
    data = {"tiers": clean}
    entry = LedgerEntry(
        holder,
        _draft(actor, "capacity_plan", "", {"tiers": sorted(clean)}),
        report=ReportDraft(PLAN, day_of(tx.now), data),
    )
    return Outcome(None, ledger=(entry,))


def target_outcome(
    tx: Tx, actor: Actor, *, region: str, targets: Mapping[str, Any], reason: str = ""
) -> Outcome:
    """The regional capacity targets, set by the region's ARS (or the CCS): per category, the
    number of occupied beds at which the region is saturated."""
    conn = tx.conn
    ars = ars_of(conn, region)
    if ars is None:
        raise NotFound(f"no ARS for region {region}", why="no_region", region=region)
    if actor.role not in {Role.ARS, Role.CCS} or (
        actor.role == Role.ARS and actor.region != region
    ):
        raise NotPermitted(
            f"{actor.login} may not set region {region}'s targets: its ARS sets them",
            why="not_the_ars", region=region,
        )  # fmt: skip
    unknown = sorted(set(targets) - set(CATEGORIES))
    if unknown or not targets:
        raise _bad(f"unknown bed category {', '.join(unknown) or '(none)'}",
                   why="bad_bed_category", category=(unknown or [""])[0])  # fmt: skip
    clean = {c: _count(n, category=c, name="cible") for c, n in sorted(targets.items())}
    entry = LedgerEntry(
        ars,
        _draft(actor, "capacity_target", reason, {"region": region, "targets": clean}),
        report=ReportDraft(TARGET, day_of(tx.now), {"region": region, "targets": clean}),
    )
    return Outcome(None, ledger=(entry,))


# -- deprogramming -----------------------------------------------------------------------------


def _text(raw: object, *, field: str, limit: int = 2000) -> str:
    text = str(raw or "").strip()
    if not text:
        raise _bad(f"{field} is required", why="missing_field", label=field, field=field)
    if len(text) > limit or "\x00" in text:
        raise _bad(f"{field}: at most {limit} characters", why="bad_text", field=field)
    return text


def deprogram_outcome(
    tx: Tx,
    actor: Actor,
    *,
    holder: str,
    tier: int,
    activities: Sequence[Mapping[str, Any]],
    cell: Sequence[str],
    benefit_risk: str,
    safeguarded: Sequence[str],
) -> Outcome:
    """A deprogramming decision of the establishment's programming cell: recorded in its
    stream, told to its ARS at once."""
    place = place_of(tx.conn, holder)
    require_establishment(place)
    may_act_for(actor, place)
    if not 1 <= int(tier) <= 9:
        raise _bad(f"tier {tier}: a tier is 1 to 9", why="bad_tier", tier=str(tier))
    if not activities:
        raise _bad("name at least one deprogrammed activity", why="no_activity")
    clean: list[dict[str, Any]] = []
    for line in activities:
        name = _text(line.get("activity"), field="activité", limit=200)
        extent = line.get("extent")
        try:
            percent = int(str(extent).strip().rstrip("%").strip())
        except ValueError:
            percent = -1
        if not 1 <= percent <= 100:
            raise _bad(f"{name}: extent {extent!r} is a percentage from 1 to 100",
                       why="bad_extent", activity=name, extent=str(extent))  # fmt: skip
        clean.append({"activity": name, "extent": percent})
    members = [m.strip() for m in cell if str(m).strip()]
    if len(members) < 2:
        raise _bad("the programming cell is collegial: name at least two members",
                   why="cell_not_collegial", members=len(members))  # fmt: skip
    note = _text(benefit_risk, field="analyse bénéfices/risques")
    unknown = sorted(set(safeguarded) - set(PROTECTED))
    if unknown:
        raise _bad(f"unknown protected category {unknown[0]}", why="bad_protected",
                   category=unknown[0])  # fmt: skip
    kept = [p for p in PROTECTED if p in set(safeguarded)]
    left = [p for p in PROTECTED if p not in set(safeguarded)]
    data = {"tier": int(tier), "activities": clean, "cell": members, "benefit_risk": note,
            "safeguarded": kept, "not_safeguarded": left}  # fmt: skip
    values = _deprogramming_values(data)
    entry = LedgerEntry(
        holder,
        _draft(actor, "deprogramming", note, data),
        notice=HolderNotice("deprogramming", ("ars",), ("holder",), values),
    )
    return Outcome(None, ledger=(entry,))


# The protected patients (MARS N°2021_18) as a deprogramming notice lists them
PROTECTED_LABELS = {
    "cancer": "patients atteints d'un cancer",
    "greffe": "patients en attente de transplantation",
    "maladie_chronique": "patients suivis pour une maladie chronique",
    "soins_urgents": "patients requérant des soins urgents",
    "mineur": "patients de moins de 18 ans",
    "sante_mentale": "prises en charge en santé mentale",
    "depistage_diagnostic": "activités de dépistage et de diagnostic",
}


def _protected_label(code: str) -> str:
    return PROTECTED_LABELS.get(code, code)


def _deprogramming_values(data: Mapping[str, Any]) -> dict[str, Any]:
    rows = [["Palier", str(data["tier"])]]
    rows += [[f"Activité déprogrammée : {a['activity']}", f"{a['extent']} %"]
             for a in data["activities"]]  # fmt: skip
    rows.append(["Cellule de programmation", ", ".join(data["cell"])])
    rows.append(["Analyse bénéfices/risques", data["benefit_risk"]])
    rows.append(["Prises en charge garanties",
                 ", ".join(map(_protected_label, data["safeguarded"])) or "aucune"])  # fmt: skip
    if data["not_safeguarded"]:
        rows.append(["Prises en charge NON garanties",
                     ", ".join(map(_protected_label, data["not_safeguarded"]))])  # fmt: skip
    return {"tier": str(data["tier"]), "rows": rows}


def reverse_outcome(tx: Tx, actor: Actor, *, holder: str, decision: int, reason: str) -> Outcome:
    """The reversal of deprogramming decision ``decision`` (its seq in the holder's stream)."""
    place = place_of(tx.conn, holder)
    require_establishment(place)
    may_act_for(actor, place)
    note = _text(reason, field="motif")
    stream = f"holder:{holder}"
    rows = tx.conn.execute(
        sa.select(_EVENT.c.seq, _EVENT.c.action, _EVENT.c.data).where(
            _EVENT.c.stream == stream,
            _EVENT.c.action.in_(("deprogramming", "deprogramming_reversed")),
        )
    ).all()
    found = next((r for r in rows if r.seq == decision and r.action == "deprogramming"), None)
    if found is None:
        raise NotFound(f"no deprogramming decision {decision} at {holder}",
                       why="no_deprogramming", decision=decision)  # fmt: skip
    if any(r.action == "deprogramming_reversed" and (r.data or {}).get("reverses") == decision
           for r in rows):  # fmt: skip
        raise _bad(f"deprogramming decision {decision} is already reversed",
                   why="already_reversed", decision=decision)  # fmt: skip
    data = {"reverses": decision, "tier": (found.data or {}).get("tier")}
    rows_out = [["Décision levée", f"n° {decision} (palier {data['tier']})"], ["Motif", note]]
    values = {"decision": str(decision), "rows": rows_out}
    entry = LedgerEntry(
        holder,
        _draft(actor, "deprogramming_reversed", note, data),
        notice=HolderNotice("deprogramming_reversed", ("ars",), ("holder",), values),
    )
    return Outcome(None, ledger=(entry,))
