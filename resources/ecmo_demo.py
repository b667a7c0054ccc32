"""The ECMO fleet of ``regul demo``: the national stock, a few consoles per ECMO centre,
weekly inventories of the past weeks, a loan overdue, and one region left without a console.

Called by ``interfaces.demo`` (``seed`` before the morning is played, ``resolve_fields`` for
each ECMO resolve, ``finish`` at the end); everything goes through the same commands as the
CLI and the desk (``resources.ecmo.Fleet``), so the holders' chains verify and replay.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine import tables
from engine.clock import FixedClock
from engine.values import CaseView
from resources.ecmo import CIRCUIT, NATIONAL, PREFIX, Fleet, ledger_figures
from resources.periods import week_of

__all__ = ["EMPTY_REGION", "finish", "resolve_fields", "seed", "seed_fleet"]

EMPTY_REGION = "BFC"  # every console of its centres in maintenance, an ECMO case waiting
MODELS = ("Cardiohelp (Getinge)", "Rotaflow II (Getinge)", "CentriMag (Abbott)")
_BALANCE = tables.STOCK_BALANCE
_ORG = tables.ORGANISATION


def _centres(hospitals: Sequence[Any]) -> list[Any]:
    """Two ECMO centres per region: its first two hospitals (by FINESS)."""
    by_region: dict[str, list[Any]] = {}
    for h in hospitals:
        by_region.setdefault(h.region, []).append(h)
    return [h for rows in by_region.values() for h in rows[:2]]


def seed(
    fleet: Fleet, runner: Any, clock: FixedClock, hospitals: Sequence[Any], by_org: Any
) -> int:
    """Consoles and circuits, two weeks of inventories, an overdue loan; returns the clock
    where it found it. Returns the number of consoles."""
    back_to = clock.now()
    clock.set(back_to - timedelta(days=15))
    count = 0
    for n in range(6):
        fleet.register("ccs", serial=f"NAT-{n + 1:03d}", model=MODELS[n % 3], owner=NATIONAL)
        count += 1
    fleet.circuits("ccs", holder=NATIONAL, quantity=40, reason="constitution du stock national")
    centres = _centres(hospitals)
    for h in centres:
        login = by_org[("establishment", h.id)]
        for n in range(3):
            fleet.register(login, serial=f"{h.id}-{n + 1}", model=MODELS[n % 3], owner=h.id)
            count += 1
        fleet.circuits(login, holder=h.id, quantity=8, reason="inventaire initial")
    # the weekly inventories of the two past weeks (the second with a slip in one report)
    for week in (1, 2):
        clock.set(back_to - timedelta(days=15) + timedelta(days=7 * week - 5))
        period = week_of(clock.now() - timedelta(days=7))
        balances = fleet.resources.read(_balances)
        rows = [(h.id, period, ledger_figures(balances, h.id)) for h in centres]
        if week == 2 and rows:
            holder, p, figures = rows[0]
            rows[0] = (holder, p, {**figures, "circuits": figures["circuits"] + 2})
        fleet.import_reports("ccs", rows)
        fleet.import_reports("ccs", [(NATIONAL, period, ledger_figures(balances, NATIONAL))])
    _overdue_loan(fleet, runner, clock, centres, by_org, back_to)
    clock.set(back_to)
    return count


def _overdue_loan(
    fleet: Fleet, runner: Any, clock: FixedClock, centres: Sequence[Any], by_org: Any,
    now: datetime,
) -> None:  # fmt: skip
    """A console lent ten days ago, due back three days ago: the sweep reminds daily."""
    borrower = next(h for h in centres if h.region == "OCC")
    clock.set(now - timedelta(days=10))
    case = runner.open_case(
        kind="ecmo", login=by_org[("establishment", borrower.id)], org=borrower.id,
        fields={"patient_ref": "PAT-900001", "mode": "VV", "consoles_needed": 1,
                "circuits_needed": 1, "summary": "SDRA, prêt prolongé de fait"},
    )  # fmt: skip
    while case.state != "umac_review":
        case = runner.advance(
            reference=case.reference, trigger="escalate", login=by_org[("establishment",
            borrower.id)], reason="pas de console disponible",
        )  # fmt: skip
    data = resolve_fields(fleet, case, now.date() - timedelta(days=3), national=False)
    case = runner.advance(reference=case.reference, trigger="resolve", login="umac-sud",
                          reason="console disponible dans la zone", data=data)  # fmt: skip
    clock.advance(timedelta(hours=3))
    login = by_org[("establishment", borrower.id)]
    runner.advance(
        reference=case.reference, trigger="start", login=login, reason="console en service"
    )


def resolve_fields(
    fleet: Fleet,
    case: CaseView,
    back: date,
    *,
    national: bool,
    level: str = "umac",
    rng: random.Random | None = None,
) -> dict[str, object]:
    """A resolve naming a real console: the national stock's, or an available one of another
    establishment of the case's region (else of its zone), and a circuit if there is one."""

    def pick(conn: Any) -> tuple[str, str, int] | None:
        b, o = _BALANCE, _ORG
        query = (
            sa.select(b.c.holder, b.c.item)
            .select_from(b.join(o, o.c.id == b.c.holder))
            .where(b.c.item.like(f"{PREFIX}%"), b.c.bucket == "available", b.c.quantity > 0)
            .order_by(b.c.holder, b.c.item)
        )
        if national:
            query = query.where(b.c.holder == NATIONAL)
        else:
            query = query.where(b.c.holder != case.org, b.c.holder != NATIONAL)
        rows = conn.execute(query).all()
        region = [r for r in rows if national or _region(conn, r.holder) == case.region]
        zone = [r for r in rows if level == "umac" and _zone(conn, r.holder) == case.zone]
        anywhere = rows if level == "ccs" else []
        choice = region or zone or anywhere
        if not choice:
            return None
        holder, item = (rng.choice(choice) if rng else choice[0])[:2]
        circuits = conn.execute(
            sa.select(b.c.quantity).where(
                b.c.holder == holder, b.c.item == CIRCUIT, b.c.bucket == "available"
            )
        ).scalar()
        return str(holder), str(item)[len(PREFIX) :], int(circuits or 0)

    found = fleet.resources.read(pick)
    fields: dict[str, object] = {"return_by": str(back)}
    if found is None:  # nothing left: the resolve is refused, as it would be on the desk
        return {**fields, "source": "national" if national else "hospital"}
    holder, serial, circuits = found
    fields["console_serials"] = serial
    if circuits:
        fields["circuits_lent"] = 1
    if national:
        return {**fields, "source": "national"}
    return {**fields, "source": "hospital", "lender": holder}


def _region(conn: Any, org: str) -> str | None:
    found = conn.execute(sa.select(_ORG.c.region).where(_ORG.c.id == org)).scalar()
    return None if found is None else str(found)


def _zone(conn: Any, org: str) -> str | None:
    found = conn.execute(sa.select(_ORG.c.zone).where(_ORG.c.id == org)).scalar()
    return None if found is None else str(found)


def finish(fleet: Fleet, runner: Any, hospitals: Sequence[Any], by_org: Any) -> None:
    """One region without an available console while an ECMO case waits there: its centres
    put their consoles in maintenance (the last one raises the alert to its ARS)."""
    region = [h for h in hospitals if h.region == EMPTY_REGION]
    if not region:
        return
    centres = {h.id for h in _centres(hospitals)}
    hospital = region[-1]
    runner.open_case(
        kind="ecmo", login=by_org[("establishment", hospital.id)], org=hospital.id,
        fields={"patient_ref": "PAT-900002", "mode": "VA", "consoles_needed": 1,
                "circuits_needed": 1},
    )  # fmt: skip
    for row in fleet.consoles(fleet.actor("ccs"), region=EMPTY_REGION):
        if row["owner"] in centres and row["status"] == "available":
            fleet.set_status(
                by_org[("establishment", row["owner"])], serial=row["serial"],
                status="maintenance", reason="révision du constructeur",
            )  # fmt: skip


def seed_fleet(app: Any, clock: FixedClock, hospitals: Sequence[Any], by_org: Any) -> Fleet:
    """The demo's fleet on ``app`` (its resources and runner): ``seed``, then the ``Fleet``."""
    fleet = Fleet(app.resources)
    seed(fleet, app.runner, clock, hospitals, by_org)
    return fleet


def _balances(conn: Any) -> dict[tuple[str, str, str], int]:
    rows = conn.execute(sa.select(_BALANCE))
    return {(r.holder, r.item, r.bucket): int(r.quantity) for r in rows}
