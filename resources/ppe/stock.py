"""PPE stocks: the weekly report, its alert rules, the holders' movements, a case's shipment.

Every decision here runs inside one transaction of the unit of work (``Resources.command``)
and returns ``Outcome``s the unit of work applies; it reads what it needs on ``tx`` (the
balances locked, the earlier reports, the open cases) after locking the holders' streams, so
that two reports of one establishment never decide on the same state.

**The weekly report** (« stocks et consommations … à une fréquence hebdomadaire », under the
director's responsibility) is a version of (``ppe_stock``, establishment, ISO week): per item
the stock on hand, the consumption over the week and the reference crisis consumption
(declared, else the one declared earlier is kept), attested by the director or a delegate. It
sets the establishment's ``on_hand`` balance (its legs are the difference to the current
balance) when it is about the latest week reported, meets the week's obligation, and runs the
alert rules: under the threshold a ``ppe`` case is opened by the rule as ``system``
(through ``Decider.open``: its audit, deadline and notices are the normal ones), once per
(establishment, item) while one is open; later reports attach to it as ``stock_report``
events; back above the threshold, the establishment is asked to confirm or cancel it.

**Holders**: an establishment (on_hand, in_transit), a GHT (its stock: deliveries in,
redistributions to its members out), the ARS's regional reserve (in: purchase, donation,
requisition; out with a purpose), SpF's national strategic stock (10 weeks of crisis
consumption for masks: under it, the CCS and SpF are told). A ``ppe`` case's resolve debits
the holder its source names (GHT, ARS, SpF) and puts the quantity in transit to the
establishment; its ``deliver`` records what was received and flags a shortfall. A holder that
keeps no ledger in Régul (no balance row at all) ships unchecked, and the event says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine import tables
from engine.audit import GENESIS
from engine.errors import Conflict, InputError, NotPermitted
from engine.policy import in_scope
from engine.values import (
    SYSTEM,
    Actor,
    CaseView,
    Draft,
    HolderNotice,
    LedgerEntry,
    Leg,
    Outcome,
    Place,
    ReportDraft,
)
from resources import ledger
from resources.obligations import ObligationKind
from resources.periods import PARIS, Due, parse_period
from resources.ppe.items import ITEMS, LEDGER_ITEMS, REPORT_KEYS, item, parent
from resources.ppe.rules import HISTORY_WEEKS, RuleBook, cover, to_rebuild

if TYPE_CHECKING:
    from engine.decisions import Decider
    from engine.settings import Settings
    from engine.unit_of_work import Effects, Tx

__all__ = [
    "KIND",
    "ReportLine",
    "StockReport",
    "decide_movement",
    "decide_reports",
    "obligation_kind",
    "parse_report",
    "shipment_effects",
]

KIND = "ppe_stock"
ON_HAND, IN_TRANSIT = "on_hand", "in_transit"
NATIONAL_TARGET_WEEKS = 10  # MINSANTE N°143: « 10 semaines de consommation de crise »
NATIONAL_ITEMS = ("surgical_mask", "ffp2_mask")
ATTESTED = ("director", "delegate")
REPORTING_ROLES = ("establishment", "ght", "ars", "system")
IN_HOW = ("purchase", "donation", "requisition", "initial")
OUT_PURPOSES = ("establishment_emergency", "ehpad_doctrine", "local_situation")
ORIGINS = ("manufacturer", "national_stock", "regional_reserve", "ght")
_CASE = tables.CASE
_EVENT = tables.AUDIT_EVENT
_REPORT = tables.RESOURCE_REPORT
_ORG = tables.ORGANISATION
_BALANCE = tables.STOCK_BALANCE


# -- the weekly report ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportLine:
    item: str
    on_hand: int
    consumed: int
    crisis: int | None = None  # the reference crisis weekly consumption, when declared


@dataclass(frozen=True)
class StockReport:
    holder: str
    period: str
    lines: tuple[ReportLine, ...]
    attested_by: str
    attested_as: str = "director"  # director | delegate


def _count(value: object, what: str, *, optional: bool = False) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise InputError(f"{what} is missing", why="ppe_missing", what=what)
    try:
        number = int(str(value).strip().replace(" ", "").replace("\u202f", ""))
    except ValueError:
        raise InputError(
            f"{what} is not a whole number: {value!r}", why="ppe_not_a_number", what=what,
            value=str(value)[:40],
        ) from None  # fmt: skip
    if number < 0 or number > 10**9:
        raise InputError(
            f"{what} must lie between 0 and 1 000 000 000: {number}",
            why="ppe_out_of_range", what=what, value=number,
        )  # fmt: skip
    return number


def parse_line(raw: Mapping[str, Any]) -> ReportLine:
    """One line as typed (item, on_hand, consumed, crisis, unit), checked, in pieces."""
    from resources.ppe.items import pieces

    key = item(str(raw.get("item") or "").strip()).key
    if key not in REPORT_KEYS:
        raise InputError(
            f"{key} is a sub-type: report it under {parent(key)}",
            why="ppe_report_parent", item=key, parent=parent(key),
        )  # fmt: skip
    unit = raw.get("unit")
    unit = str(unit) if unit not in (None, "") else None
    on_hand = pieces(key, _count(raw.get("on_hand"), "on_hand") or 0, unit)
    consumed = pieces(key, _count(raw.get("consumed"), "consumed") or 0, unit)
    crisis = _count(raw.get("crisis"), "crisis", optional=True)
    return ReportLine(key, on_hand, consumed, pieces(key, crisis, unit) if crisis else None)


def parse_report(raw: Mapping[str, Any]) -> StockReport:
    """A report as the API, the desk or a file gives it; every value checked."""
    holder = str(raw.get("establishment") or raw.get("holder") or "").strip()
    if not holder:
        raise InputError("establishment is missing", why="ppe_missing", what="establishment")
    period = parse_period(str(raw.get("week") or raw.get("period") or ""))
    lines_raw = raw.get("lines")
    if not isinstance(lines_raw, list) or not lines_raw:
        raise InputError("give at least one line", why="ppe_no_lines")
    lines = [parse_line(line) for line in lines_raw if isinstance(line, Mapping)]
    if len(lines) != len(lines_raw):
        raise InputError("each line is an object", why="ppe_no_lines")
    keys = [line.item for line in lines]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise InputError(f"{twice} appears twice", why="ppe_item_twice", item=twice)
    by = str(raw.get("attested_by") or "").strip()
    if not by:
        raise InputError(
            "attested_by is missing: the director or a delegate attests the report",
            why="ppe_missing", what="attested_by",
        )  # fmt: skip
    as_ = str(raw.get("attested_as") or "director").strip()
    if as_ not in ATTESTED:
        raise InputError(
            f"attested_as is director or delegate, not {as_!r}", why="ppe_attested_as",
            value=as_[:40],
        )  # fmt: skip
    return StockReport(holder, period, tuple(lines), by[:120], as_)


def lock_holders(tx: Tx, holders: Sequence[str]) -> None:
    """Lock the holders' stream heads (sorted: every command takes them in one order), so
    that what is read next (balances, reports, open cases) is not decided on twice."""
    d = tx.driver
    for holder in sorted(set(holders)):
        stream = ledger.stream_of(holder)
        d.run("security_seed", {"stream": stream, "seq": 0, "hash": GENESIS})
        if d.pg:
            d.run("security_head", {"stream": stream})


def _draft(actor: Actor, action: str, data: dict[str, Any], reason: str = "") -> Draft:
    return Draft(actor.login, actor.role, actor.org, action, None, None, 0, reason, data)


def _chunks(values: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def earlier_reports(
    conn: Any, holders: Sequence[str]
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Each holder's latest version per week, newest week first: [(period, figures)]."""
    out: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}
    r = _REPORT
    for chunk in _chunks(list(holders)):
        rows = conn.execute(
            sa.select(r.c.holder, r.c.period, r.c.version, r.c.data).where(
                r.c.kind == KIND, r.c.holder.in_(chunk)
            )
        )
        for holder, period, version, raw in rows:
            data = json.loads(raw) if isinstance(raw, str) else raw
            have = out.setdefault(holder, {})
            if period not in have or have[period][0] < version:
                have[period] = (version, data or {})
    return {
        h: [(p, v[1]) for p, v in sorted(weeks.items(), reverse=True)] for h, weeks in out.items()
    }


def open_cases(conn: Any, holders: Sequence[str]) -> dict[str, list[tuple[str, set[str]]]]:
    """Each establishment's open ``ppe`` cases: [(reference, items of its lines)]."""
    from engine.values import reference_of

    out: dict[str, list[tuple[str, set[str]]]] = {}
    c = _CASE
    for chunk in _chunks(list(holders)):
        rows = conn.execute(
            sa.select(c.c.id, c.c.org, c.c.fields)
            .where(c.c.kind == "ppe", c.c.final.is_(False), c.c.org.in_(chunk))
            .order_by(c.c.id)
        )
        for case_id, org, raw in rows:
            fields = json.loads(raw) if isinstance(raw, str) else raw
            items = {str(line.get("item")) for line in (fields or {}).get("lines") or ()}
            out.setdefault(org, []).append((reference_of("EPI", case_id), items))
    return out


def places(conn: Any, holders: Sequence[str]) -> dict[str, Place]:
    g = _ORG
    out: dict[str, Place] = {}
    for chunk in _chunks(list(holders)):
        for row in conn.execute(sa.select(g).where(g.c.id.in_(chunk))):
            out[row.id] = Place(
                row.id, row.region, row.zone, row.ght, row.department, row.kind,
                delivery_address=row.delivery_address, category=row.category,
            )  # fmt: skip
    return out


def _places(tx: Tx, holders: Sequence[str]) -> dict[str, Place]:
    """``places`` on the driver's cursor (a national file names 3,000 establishments)."""
    d, out = tx.driver, {}
    mark = "%s" if d.pg else "?"
    for chunk in _chunks(list(holders)):
        d.cursor.execute(
            "SELECT id, region, zone, ght, department, kind, delivery_address, category FROM "
            f"organisation WHERE id IN ({', '.join(mark for _ in chunk)})",
            tuple(chunk),
        )
        for r in d.cursor.fetchall():
            out[r[0]] = Place(r[0], r[1], r[2], r[3], r[4], r[5], delivery_address=r[6],
                              category=r[7])  # fmt: skip
    return out


def _may_report(actor: Actor, place: Place) -> bool:
    return actor.role in REPORTING_ROLES and in_scope(actor, place)


def _fr(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}".replace(".", ",")


def decide_reports(
    tx: Tx,
    actor: Actor,
    reports: Sequence[StockReport],
    *,
    decider: Decider,
    rules: RuleBook,
) -> list[Outcome]:
    """The outcomes of ``reports`` (one per establishment and week) in one transaction."""
    holders = sorted({r.holder for r in reports})
    found = _places(tx, holders)
    for report in reports:
        place = found.get(report.holder)
        if place is None:
            raise InputError(
                f"unknown establishment {report.holder!r}", why="ppe_unknown_establishment",
                org=report.holder,
            )  # fmt: skip
        if place.kind != "hospital":
            raise InputError(
                f"{report.holder} is not an establishment", why="ppe_not_an_establishment",
                org=report.holder,
            )  # fmt: skip
        if not _may_report(actor, place):
            raise NotPermitted(
                f"{actor.login} may not report the stocks of {report.holder}",
                why="ppe_not_yours", org=report.holder,
            )  # fmt: skip
    lock_holders(tx, holders)
    history = earlier_reports(tx.conn, holders)
    balances = tx.balances(holders, REPORT_KEYS) if holders else {}
    cases = open_cases(tx.conn, holders)
    outcomes: list[Outcome] = []
    for report in reports:
        place = found[report.holder]
        earlier = [(p, f) for p, f in history.get(report.holder, []) if p != report.period]
        outcomes += _one_report(
            actor, report, place, earlier, balances, cases, decider=decider, rules=rules,
            now=tx.now, tx=tx,
        )  # fmt: skip
        # a second report of the same holder in the batch sees this one
        history.setdefault(report.holder, []).insert(0, (report.period, {"lines": {}}))
    return outcomes


def _one_report(
    actor: Actor,
    report: StockReport,
    place: Place,
    earlier: list[tuple[str, dict[str, Any]]],
    balances: dict[tuple[str, str, str], int],
    cases: dict[str, list[tuple[str, set[str]]]],
    *,
    decider: Decider,
    rules: RuleBook,
    now: datetime,
    tx: Tx,
) -> list[Outcome]:
    holder = report.holder
    before = [(p, f) for p, f in earlier if p < report.period]
    latest = not any(p > report.period for p, _ in earlier)
    lines: dict[str, dict[str, Any]] = {}
    legs: list[Leg] = []
    alerts: list[dict[str, Any]] = []
    for line in report.lines:
        kept = next(
            (f["lines"][line.item].get("crisis_declared") for _, f in before
             if f.get("lines", {}).get(line.item, {}).get("crisis_declared")),
            None,
        )  # fmt: skip
        consumed = [line.consumed] + [
            int(f.get("lines", {}).get(line.item, {}).get("consumed") or 0)
            for _, f in before[: HISTORY_WEEKS - 1]
        ]
        c = cover(line.on_hand, line.crisis, kept, consumed)
        rule = rules.rule(line.item, holder, place.region)
        level = rule.level(c.weeks)
        previous = before[0][1].get("lines", {}).get(line.item) if before else None
        lines[line.item] = {
            "on_hand": line.on_hand, "consumed": line.consumed,
            "crisis_declared": line.crisis or kept, "crisis": c.crisis,
            "crisis_source": c.source, "weeks": c.weeks, "level": level,
            "threshold": rule.threshold, "critical": rule.critical,
        }  # fmt: skip
        if latest:
            have = balances.get((holder, line.item, ON_HAND), 0)
            if line.on_hand != have:
                legs.append(Leg(line.item, ON_HAND, line.on_hand - have))
                balances[(holder, line.item, ON_HAND)] = line.on_hand
        if level != "ok" or (previous and previous.get("level") not in (None, "ok")):
            alerts.append({"item": line.item, "level": level, "rule": rule, "cover": c,
                           "line": line, "was": (previous or {}).get("level")})  # fmt: skip
    figures = {
        "lines": lines, "attested_by": report.attested_by, "attested_as": report.attested_as,
    }  # fmt: skip
    data = {"week": report.period, "items": len(lines)}
    entry = LedgerEntry(
        holder, _draft(actor, "stock_report", data), tuple(legs),
        report=ReportDraft(KIND, report.period, figures), meets=(KIND, report.period),
    )  # fmt: skip
    outcomes = [Outcome(None, ledger=(entry,))]
    if latest and alerts:
        outcomes += _alerts(actor, report, place, alerts, cases, decider=decider, now=now, tx=tx)
    return outcomes


def _alerts(
    actor: Actor,
    report: StockReport,
    place: Place,
    alerts: list[dict[str, Any]],
    cases: dict[str, list[tuple[str, set[str]]]],
    *,
    decider: Decider,
    now: datetime,
    tx: Tx,
) -> list[Outcome]:
    """Cases opened, reports attached, recoveries asked, notices: what the rules say."""
    holder = report.holder
    own = cases.setdefault(holder, [])
    attach: dict[str, list[dict[str, Any]]] = {}
    outcomes: list[Outcome] = []
    notify: list[list[str]] = []
    for alert in alerts:
        key, level, rule, c, line = (
            alert["item"], alert["level"], alert["rule"], alert["cover"], alert["line"]
        )  # fmt: skip
        label = LEDGER_ITEMS[key].label
        open_ref = next((ref for ref, items in own if key in items), None)
        figures = {
            "item": key, "level": level, "weeks": c.weeks, "on_hand": line.on_hand,
            "crisis": c.crisis, "crisis_source": c.source, "week": report.period,
            "threshold": rule.threshold,
        }  # fmt: skip
        if level == "ok":  # back above the threshold: ask to confirm or cancel
            if open_ref is not None:
                attach.setdefault(open_ref, []).append({**figures, "recovered": True})
            continue
        if "notify" in rule.actions:
            notify.append([label, f"{_fr(c.weeks)} semaine(s) ({_level_fr(level)})"])
        if open_ref is not None:
            attach.setdefault(open_ref, []).append(figures)
            continue
        if "case" not in rule.actions:
            continue
        quantity = to_rebuild(line.on_hand, c.crisis, rule.threshold) or 1
        estimated = " (consommation de crise estimée)" if c.estimated else ""
        summary = (
            f"Alerte automatique sur le relevé de stock de la {_week_fr(report.period)} : "
            f"{label.lower()}, {_fr(c.weeks)} semaine(s) de couverture, sous le seuil de "
            f"{_fr(rule.threshold)} ({_level_fr(level)}) ; stock {line.on_hand}, consommation "
            f"de crise {c.crisis} par semaine{estimated} ; quantité pour reconstituer "
            f"{_fr(rule.threshold)} semaines : {quantity}."
        )
        raw = {
            "lines": [{"item": key, "quantity": quantity, "stock_on_hand": line.on_hand,
                       "weekly_consumption": c.crisis}],
            "summary": summary,
        }  # fmt: skip
        at = tx.place(holder)  # with its delivery address (its own, else its GHT's)
        if not at.delivery_address:
            raw["delivery_address"] = "Adresse de livraison de l'établissement (à préciser)"
        opened = decider.open(SYSTEM, "ppe", at, raw, now)
        if opened.refusal is not None:  # pragma: no cover - a system opening is allowed
            raise opened.refusal
        alert_entry = LedgerEntry(
            holder,
            _draft(SYSTEM, "stock_alert", {**figures, "to_rebuild": quantity}, summary),
        )
        outcomes.append(replace(opened, ledger=(alert_entry,)))
        own.append(("(new)", {key}))
    for ref, items in attach.items():
        case, _ = tx.lock(ref)
        recovered = all(i.get("recovered") for i in items)
        action = "stock_recovered" if recovered else "stock_report"
        reason = (
            "Stock revenu au-dessus du seuil : l'établissement confirme ou annule la demande"
            if recovered
            else f"Relevé de stock de la {_week_fr(report.period)} rattaché"
        )
        event = Draft(
            SYSTEM.login, SYSTEM.role, SYSTEM.org, action, None, None, case.version, reason,
            {"report": report.period, "items": items},
        )  # fmt: skip
        entry = None
        if recovered:
            rows = [["Dossier", case.reference], ["Semaine", _week_fr(report.period)]]
            rows += [[LEDGER_ITEMS[i["item"]].label, f"{_fr(i['weeks'])} semaine(s)"]
                     for i in items]  # fmt: skip
            notice = HolderNotice(
                "ppe_stock_recovered", ("holder",), ("ars",),
                {"case": case.reference, "week": _week_fr(report.period), "rows": rows},
            )  # fmt: skip
            entry = LedgerEntry(
                report.holder,
                _draft(SYSTEM, "stock_recovered", {"case": case.reference}),
                notice=notice,
            )
        outcomes.append(Outcome(case, (event,), ledger=(entry,) if entry else ()))
    if notify:
        rows = [["Semaine", _week_fr(report.period)], *notify]
        notice = HolderNotice(
            "ppe_stock_alert", ("ars",), ("holder",),
            {"week": _week_fr(report.period), "rows": rows},
        )  # fmt: skip
        outcomes.append(
            Outcome(
                None,
                ledger=(
                    LedgerEntry(
                        holder,
                        _draft(SYSTEM, "stock_alert_notice", {"week": report.period}),
                        notice=notice,
                    ),
                ),
            )
        )
    return outcomes


def _level_fr(level: str) -> str:
    return {"critical": "critique", "low": "sous le seuil", "ok": "normal"}[level]


def _week_fr(period: str) -> str:
    year, week = period.split("-W")
    return f"semaine {int(week)} de {year}"


# -- the obligation ----------------------------------------------------------------------------

ENROLMENT = ("none", "ght_support", "sanitaire", "all")


def enrolled(conn: Any, phase: str) -> list[str]:
    """The establishments that owe the weekly report in ``phase`` (seed 002: the GHT support
    establishments and AP-HP first, then every health establishment, then médico-social)."""
    if phase == "none":
        return []
    g = _ORG
    hospitals = sa.select(g.c.id, g.c.name, g.c.category).where(g.c.kind == "hospital")
    rows = conn.execute(hospitals).all()
    if phase == "all":
        return sorted(r.id for r in rows)
    if phase == "sanitaire":
        return sorted(r.id for r in rows if (r.category or "sanitaire") == "sanitaire")
    supports = {s for (s,) in conn.execute(sa.select(g.c.support).where(g.c.kind == "ght")) if s}
    return sorted(r.id for r in rows if r.id in supports or str(r.name).startswith("AP-HP"))


def obligation_kind(settings: Settings) -> ObligationKind:
    from engine.workflow import parse_duration

    phase = settings.ppe_enrolment
    due = Due.parse(settings.ppe_due, weekly=True)
    late = parse_duration(settings.ppe_escalate_after)
    return ObligationKind(
        name=KIND,
        report="Le relevé hebdomadaire des stocks d'EPI",
        due=due,
        escalate_after=late,
        holders=lambda conn: enrolled(conn, phase),
    )


# -- movements of a holder: reserve in and out, deliveries, redistributions, receipts ---------


@dataclass(frozen=True)
class Movement:
    """A movement as asked: ``kind`` in, out, delivery, redistribute, receive."""

    kind: str
    holder: str  # the holder it concerns (the reserve, the GHT, the receiving establishment)
    item: str
    quantity: int
    how: str = ""  # in: purchase|donation|requisition; out: a purpose; delivery: an origin
    to: str = ""  # out/redistribute: the establishment; delivery: the GHT (= holder)
    delivery: int = 0  # receive: the stream sequence of the delivery received
    note: str = ""
    at: str = ""  # a date the movement happened (loaded history), else now


def _tracked(tx: Tx, holder: str) -> bool:
    d = tx.driver
    mark = "%s" if d.pg else "?"
    d.cursor.execute(f"SELECT 1 FROM stock_balance WHERE holder = {mark} LIMIT 1", (holder,))
    return d.cursor.fetchone() is not None


def _holder_place(tx: Tx, holder: str) -> Place:
    found = places(tx.conn, [holder]).get(holder)
    if found is None:
        raise InputError(f"unknown holder {holder!r}", why="ppe_unknown_holder", org=holder)
    return found


def _may_move(actor: Actor, place: Place) -> bool:
    if actor.role == "system":
        return True
    if place.kind == "ars":
        return actor.role == "ars" and actor.org == place.org
    if place.kind == "spf":
        return actor.role in ("spf", "ccs")
    if place.kind == "ght":
        return (actor.role == "ght" and actor.ght == place.ght) or (
            actor.role == "ars" and actor.region == place.region
        )
    return in_scope(actor, place) and actor.role in ("establishment", "ght", "ars")


def decide_movement(tx: Tx, actor: Actor, move: Movement) -> list[Outcome]:
    """One movement of a holder, checked against its balance (locked) and its rules."""
    key = item(move.item).key
    if move.quantity <= 0:
        raise InputError("the quantity is a positive number of pieces", why="ppe_quantity")
    place = _holder_place(tx, move.holder)
    if not _may_move(actor, place):
        raise NotPermitted(
            f"{actor.login} may not move the stock of {move.holder}", why="ppe_not_yours",
            org=move.holder,
        )  # fmt: skip
    data: dict[str, Any] = {"item": key, "quantity": move.quantity}
    if move.note:
        data["note"] = move.note[:500]
    if move.at:
        data["at"] = move.at
    if move.kind == "in":
        _one_of(move.how, IN_HOW, "how")
        data["how"] = move.how
        legs: tuple[Leg, ...] = (Leg(key, ON_HAND, move.quantity),)
        return [_entry(move.holder, actor, "reserve_in", data, legs)]
    if move.kind in ("out", "redistribute"):
        to = _holder_place(tx, move.to) if move.to else None
        if move.kind == "out":
            _one_of(move.how, OUT_PURPOSES, "purpose")
            data["purpose"] = move.how
        elif to is None or to.ght != place.ght or to.kind != "hospital":
            raise InputError(
                f"{move.to or '?'} is not an establishment of {move.holder}",
                why="ppe_not_a_member", org=move.to, ght=move.holder,
            )  # fmt: skip
        lock_holders(tx, [move.holder, *([to.org] if to else [])])
        balances = tx.balances([move.holder], [key])
        ledger.require(balances, move.holder, key, ON_HAND, move.quantity, what=move.kind)
        action = "reserve_out" if move.kind == "out" else "redistribution"
        if to is not None:
            data["to"] = to.org
        out = [_entry(move.holder, actor, action, data, (Leg(key, ON_HAND, -move.quantity),))]
        if to is not None:
            sent = {**data, "from": move.holder, "via": action}
            out.append(_entry(to.org, actor, "ppe_delivery", sent,
                              (Leg(key, IN_TRANSIT, move.quantity),)))  # fmt: skip
        out += national_check(tx, move.holder, place, key, taken=move.quantity)
        return out
    if move.kind == "delivery":
        _one_of(move.how, ORIGINS, "origin")
        data["origin"] = move.how
        return [_entry(move.holder, actor, "ppe_delivery", data,
                       (Leg(key, IN_TRANSIT, move.quantity),))]  # fmt: skip
    if move.kind == "receive":
        return [receive(tx, actor, move.holder, move.delivery, move.quantity)]
    raise InputError(f"unknown movement {move.kind!r}", why="ppe_movement", kind=move.kind)


def _one_of(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise InputError(
            f"{what} is one of {', '.join(allowed)}, not {value!r}", why="ppe_choice",
            what=what, value=str(value)[:40], allowed=", ".join(allowed),
        )  # fmt: skip


def _entry(
    holder: str, actor: Actor, action: str, data: dict[str, Any], legs: tuple[Leg, ...]
) -> Outcome:
    return Outcome(None, ledger=(LedgerEntry(holder, _draft(actor, action, data), legs),))


def pending_deliveries(conn: Any, holders: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Deliveries not received yet: [{holder, seq, item, quantity, origin, from, at}]."""
    e = _EVENT
    query = sa.select(e.c.stream, e.c.seq, e.c.action, e.c.data, e.c.at).where(
        e.c.action.in_(("ppe_delivery", "ppe_receipt")), e.c.stream.like("holder:%")
    )
    if holders is not None:
        query = query.where(e.c.stream.in_([ledger.stream_of(h) for h in holders]))
    sent: dict[tuple[str, int], dict[str, Any]] = {}
    received: set[tuple[str, int]] = set()
    for stream, seq, action, raw, at in conn.execute(query.order_by(e.c.id)):
        data = json.loads(raw) if isinstance(raw, str) else raw
        holder = stream.split(":", 1)[1]
        if action == "ppe_delivery" and (data or {}).get("received") is None:
            sent[(holder, seq)] = {"holder": holder, "seq": seq, "at": at, **(data or {})}
        else:
            received.add((holder, int((data or {}).get("delivery") or 0)))
    return [v for k, v in sent.items() if k not in received]


def receive(tx: Tx, actor: Actor, holder: str, delivery: int, quantity: int) -> Outcome:
    """The receipt of delivery ``delivery`` (its sequence in the holder's stream): in transit
    to on hand for what came, a shortfall flagged (and told) where less came."""
    lock_holders(tx, [holder])
    pending = {d["seq"]: d for d in pending_deliveries(tx.conn, [holder])}
    sent = pending.get(delivery)
    if sent is None:
        raise Conflict(
            f"no delivery {delivery} awaits receipt at {holder}", why="ppe_no_delivery",
            org=holder, delivery=delivery,
        )  # fmt: skip
    shipped, key = int(sent["quantity"]), str(sent["item"])
    if quantity > shipped:
        raise InputError(
            f"{quantity} received but {shipped} were shipped", why="ppe_received_more",
            received=quantity, shipped=shipped,
        )  # fmt: skip
    legs = [Leg(key, IN_TRANSIT, -shipped)]
    if quantity:
        legs.append(Leg(key, ON_HAND, quantity))
    data = {"delivery": delivery, "item": key, "shipped": shipped, "received": quantity,
            "shortfall": shipped - quantity}  # fmt: skip
    notice = None
    if quantity < shipped:
        rows = [[LEDGER_ITEMS[key].label, f"{quantity} reçus sur {shipped} expédiés"]]
        notice = HolderNotice(
            "ppe_shortfall", ("ars",), ("holder",),
            {"shortfall": shipped - quantity, "rows": rows},
        )  # fmt: skip
    entry = LedgerEntry(holder, _draft(actor, "ppe_receipt", data), tuple(legs), notice=notice)
    return Outcome(None, ledger=(entry,))


def national_check(tx: Tx, holder: str, place: Place, key: str, *, taken: int = 0) -> list[Outcome]:
    """SpF's strategic stock of masks under 10 weeks of national crisis consumption: the CCS
    and SpF are told (once per movement that leaves it under)."""
    if place.kind != "spf" or parent(key) not in NATIONAL_ITEMS:
        return []
    weeks = national_weeks(tx.conn, parent(key), holder, taken=taken)  # after this movement
    if weeks is None or weeks >= NATIONAL_TARGET_WEEKS:
        return []
    rows = [[LEDGER_ITEMS[parent(key)].label, f"{_fr(weeks)} semaine(s) de couverture"],
            ["Cible", f"{NATIONAL_TARGET_WEEKS} semaines de consommation de crise"]]  # fmt: skip
    notice = HolderNotice(
        "ppe_national_low",
        ("ccs", "spf"),
        (),
        {"weeks": _fr(weeks), "rows": rows},
        issuer="ccs",
    )
    draft = _draft(SYSTEM, "national_stock_low", {"item": parent(key), "weeks": weeks})
    return [Outcome(None, ledger=(LedgerEntry(holder, draft, notice=notice),))]


def national_weeks(conn: Any, key: str, holder: str, *, taken: int = 0) -> float | None:
    """The national stock's weeks of cover for ``key``: its balance (sub-types counted) ÷ the
    sum of the establishments' crisis weekly consumption in their latest reports."""
    b = _BALANCE
    stock = sum(
        int(q) for i, q in conn.execute(
            sa.select(b.c.item, b.c.quantity).where(b.c.holder == holder, b.c.bucket == ON_HAND)
        ) if parent(i) == key
    ) - taken  # fmt: skip
    crisis = national_crisis(conn).get(key, 0)
    return round(stock / crisis, 2) if crisis else None


def national_crisis(conn: Any) -> dict[str, int]:
    holders = [h for (h,) in conn.execute(sa.select(_REPORT.c.holder).distinct()
                                          .where(_REPORT.c.kind == KIND))]  # fmt: skip
    total: dict[str, int] = {}
    for weeks in earlier_reports(conn, holders).values():
        for key, line in (weeks[0][1].get("lines") or {}).items():
            total[key] = total.get(key, 0) + int(line.get("crisis") or 0)
    return total


# -- a PPE case's shipment and receipt ---------------------------------------------------------


def _source_holder(tx: Tx, case: CaseView, source: str) -> str | None:
    g = _ORG
    if source == "ght":
        query = sa.select(g.c.id).where(g.c.kind == "ght", g.c.ght == case.ght)
    elif source == "region":
        query = sa.select(g.c.id).where(g.c.kind == "ars", g.c.region == case.region)
    else:
        query = sa.select(g.c.id).where(g.c.kind == "spf")
    return tx.conn.execute(query.order_by(g.c.id).limit(1)).scalar()


def shipment_effects(settings: Settings) -> Effects:
    def effects(tx: Tx, before: CaseView, outcome: Outcome) -> Outcome:
        after = outcome.case
        if after is None:
            return outcome
        if before.state != "dispatched" and after.state == "dispatched":
            return _ship(tx, before, outcome)
        if before.state == "dispatched" and after.state == "delivered":
            return _received(tx, before, outcome)
        return outcome

    return effects


def _lines(case: CaseView) -> list[dict[str, Any]]:
    return list(case.fields.get("lines") or [])


def _ship(tx: Tx, before: CaseView, outcome: Outcome) -> Outcome:
    """The resolve ships ``quantity`` of the request's first item from its source's holder
    (refused beyond its balance) into transit to the establishment."""
    resolve = (outcome.case.fields if outcome.case else {}).get("resolve") or {}
    lines = _lines(before)
    if not lines or not resolve.get("quantity"):
        return outcome
    key, quantity = str(lines[0]["item"]), int(resolve["quantity"])
    source = str(resolve.get("source") or "")
    holder = _source_holder(tx, before, source)
    actor = outcome.events[-1] if outcome.events else None
    who = Actor(actor.actor, "", actor.role, actor.org, "", None, None, None) if actor else SYSTEM
    data = {"item": key, "quantity": quantity, "case": before.reference, "source": source}
    entries: list[LedgerEntry] = []
    if holder is not None and _tracked(tx, holder):
        lock_holders(tx, [holder, before.org])
        balances = tx.balances([holder], [k for k in LEDGER_ITEMS if parent(k) == key])
        legs = _take(balances, holder, key, quantity, case=before.reference)
        entries.append(LedgerEntry(holder, _draft(who, "ppe_shipment", {**data, "to": before.org}),
                                   legs))  # fmt: skip
        if source == "national":  # SpF's strategic stock: under 10 weeks, the CCS and SpF told
            low = national_check(tx, holder, _holder_place(tx, holder), key, taken=quantity)
            entries += [entry for o in low for entry in o.ledger]
    else:
        data["untracked"] = holder or source
    delivery = {**data, "from": holder or source, "origin": source}
    entries.append(
        LedgerEntry(
            before.org, _draft(who, "ppe_delivery", delivery), (Leg(key, IN_TRANSIT, quantity),)
        )
    )
    return replace(outcome, ledger=(*outcome.ledger, *entries))


def _take(
    balances: Mapping[tuple[str, str, str], int], holder: str, key: str, quantity: int,
    *, case: str,
) -> tuple[Leg, ...]:  # fmt: skip
    """Legs taking ``quantity`` of ``key`` (the item itself first, then its sub-types)."""
    keys = [key] + [k for k in LEDGER_ITEMS if LEDGER_ITEMS[k].parent == key]
    have = sum(balances.get((holder, k, ON_HAND), 0) for k in keys)
    if quantity > have:
        ledger.require(
            {(holder, key, ON_HAND): have}, holder, key, ON_HAND, quantity,
            what=f"shipment of {case}",
        )  # fmt: skip
    legs, left = [], quantity
    for k in keys:
        take = min(left, balances.get((holder, k, ON_HAND), 0))
        if take:
            legs.append(Leg(k, ON_HAND, -take))
            left -= take
    return tuple(legs)


def _received(tx: Tx, before: CaseView, outcome: Outcome) -> Outcome:
    fields = outcome.case.fields if outcome.case else {}
    received = (fields.get("deliver") or {}).get("quantity_received")
    if received is None:
        return outcome
    deliveries = [
        d for d in pending_deliveries(tx.conn, [before.org]) if d.get("case") == before.reference
    ]
    if not deliveries:
        return outcome
    event = outcome.events[-1]
    who = Actor(event.actor, "", event.role, event.org, "", None, None, None)
    done = receive(tx, who, before.org, int(deliveries[-1]["seq"]), int(received))
    return replace(outcome, ledger=(*outcome.ledger, *done.ledger))


def week_now(now: datetime) -> str:
    from resources.periods import week_of

    return week_of(now)


def paris_date(at: datetime) -> str:
    return at.astimezone(PARIS).strftime("%d/%m/%Y")


ITEM_LABELS = {i.key: i.label for i in ITEMS}


def _register() -> None:
    from resources.catalogue import EFFECTS, KINDS

    KINDS[KIND] = obligation_kind
    EFFECTS["ppe"] = shipment_effects


_register()
