"""The ECMO fleet (issue 11, MARS N°2020_113): consoles and circuits as ledgers.

A console is an asset: its static attributes (serial, model, owner: an establishment or the
national security stock, held for the CCS) are a row of ``ecmo_console``; its status is where
it sits in its owner's ledger: item ``console:<serial>``, quantity 1, in exactly one bucket
(``available``, ``reserved``, ``in_use``, ``lent``, ``in_transit``, ``maintenance``). Every
change is a movement and an event of the owner's stream, so a console reserved twice is
refused by the decision (``Tx.balances``, locked on PostgreSQL) and, last guard, by
``CHECK (quantity >= 0)``. Circuits are the item ``circuit`` with buckets ``available``,
``reserved`` and ``used`` (consumed).

The ECMO case's transitions move the equipment (``effects``, plugged in as
``resources.catalogue.EFFECTS["ecmo"]``):

- ``resolve`` (→ dispatched): the consoles named (serials) and the circuits, at the lender
  (the national stock for ``source=national``), available now → ``reserved``;
- ``start`` (→ in_service): consoles → ``lent`` (another establishment's) or ``in_use``
  (its own), circuits → ``used``;
- ``declare_return`` (→ return_declared, the borrower): consoles → ``in_transit``;
- ``return`` (→ returned, the lender confirms): consoles → ``available`` at their owner.

A reservation that leaves a region (or the national stock) without any available console
while an ECMO case is open there queues a holder notice (``ecmo_region_empty``: its ARS and
the regional SFCTCV referent Pour action, the CCS informed; ``ecmo_national_empty``: the CCS
and the SFCTCV).

The weekly inventory (``ecmo_inventory``) is owed by every establishment owning a console,
due Monday 12:00 Paris by default (``REGUL_ECMO_INVENTORY_DUE``), escalated 24 h later to its
ARS and the regional referent; a correction is a new version; each version records where it
differs from the ledger (``differences``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine import tables
from engine.errors import Conflict, InputError, NotFound, NotPermitted
from engine.values import (
    SYSTEM,
    Actor,
    CaseView,
    Draft,
    HolderNotice,
    LedgerEntry,
    Leg,
    Outcome,
    ReportDraft,
)
from resources import catalogue, ledger
from resources.obligations import ObligationKind
from resources.periods import Due, parse_period

if TYPE_CHECKING:
    from engine.settings import Settings
    from engine.unit_of_work import Tx
    from resources.service import Resources

__all__ = [
    "BUCKETS",
    "CIRCUIT",
    "FIGURES",
    "INVENTORY",
    "NATIONAL",
    "Fleet",
    "effects",
    "inventory_kind",
    "item",
    "parse_serials",
]

NATIONAL = "CCS"  # the national security stock is held for the CCS (its holder in the ledger)
INVENTORY = "ecmo_inventory"
CIRCUIT = "circuit"
PREFIX = "console:"
BUCKETS = ("available", "reserved", "in_use", "lent", "in_transit", "maintenance")
STATUS_FR = {
    "available": "disponible",
    "reserved": "réservée",
    "in_use": "en service",
    "lent": "prêtée",
    "in_transit": "en transit",
    "maintenance": "en maintenance",
}
# an owner may set these by hand; the others belong to a case (reserved, lent, in transit)
SETTABLE = ("available", "in_use", "maintenance")
# the weekly report's figures: consoles by status, and the circuits available
FIGURES = ("available", "reserved", "in_use", "lent", "maintenance", "circuits")
FIGURES_FR = {
    "available": "consoles disponibles",
    "reserved": "consoles réservées",
    "in_use": "consoles en service",
    "lent": "consoles prêtées (ou en transit)",
    "maintenance": "consoles en maintenance",
    "circuits": "circuits disponibles",
}
WAITING = ("requested", "umac_review", "ars_regulation", "national_regulation")
LOAN_STATES = ("dispatched", "in_service", "return_declared")
_SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,39}$")
_CONSOLE = tables.ECMO_CONSOLE
_BALANCE = tables.STOCK_BALANCE
_ORG = tables.ORGANISATION
_CASE = tables.CASE
_REPORT = tables.RESOURCE_REPORT


def item(serial: str) -> str:
    return f"{PREFIX}{serial}"


def parse_serials(text: object) -> tuple[str, ...]:
    """Serial numbers as typed (commas, semicolons or spaces between), each checked, once."""
    seen: list[str] = []
    for raw in re.split(r"[,;\s]+", str(text or "").strip()):
        if not raw:
            continue
        if not _SERIAL.match(raw):
            raise InputError(
                f"console serial {raw[:60]!r} is not valid: letters, digits, '.', '_', '/', '-'"
                " (40 at most)",
                why="bad_serial", serial=raw[:60],
            )  # fmt: skip
        if raw not in seen:
            seen.append(raw)
    return tuple(seen)


def _draft(actor: Actor | Draft, action: str, reason: str = "", **data: Any) -> Draft:
    if isinstance(actor, Draft):
        login, role, org = actor.actor, actor.role, actor.org
    else:
        login, role, org = actor.login, actor.role, actor.org
    return Draft(login, role, org, action, None, None, 0, reason, data)


# -- the case's effects -----------------------------------------------------------------------


def effects(tx: Tx, before: CaseView, outcome: Outcome) -> Outcome:
    """What an ECMO transition does to the fleet (module docstring); raises to refuse."""
    after = outcome.case
    if outcome.opened is not None and after is not None:
        return _opened(tx, after, outcome)
    if after is None or after.state == before.state:
        return outcome
    by = next((e for e in outcome.events if e.actor != "system"), outcome.events[0])
    if after.state == "dispatched":
        return _reserve(tx, before, after, outcome, by)
    resolve = dict(before.fields.get("resolve") or {})
    serials = parse_serials(resolve.get("console_serials"))
    if not serials:  # resolved before the fleet (no equipment named): nothing to move
        return outcome
    holder = _holder(resolve)
    circuits = int(resolve.get("circuits_lent") or 0)
    own = holder == before.org
    legs: list[Leg] = []
    if after.state == "in_service":
        for s in serials:
            legs += ledger.move(item(s), "reserved", "in_use" if own else "lent", 1)
        if circuits:
            legs += ledger.move(CIRCUIT, "reserved", "used", circuits)
        action = "ecmo_started"
    elif after.state == "return_declared":
        for s in serials:
            legs += ledger.move(item(s), "in_use" if own else "lent", "in_transit", 1)
        action = "ecmo_return_declared"
    elif after.state == "returned":
        src = ("in_transit" if before.state == "return_declared"
               else "in_use" if own else "lent")  # fmt: skip
        for s in serials:
            legs += ledger.move(item(s), src, "available", 1)
        action = "ecmo_returned"
    else:
        return outcome
    entry = LedgerEntry(
        holder,
        _draft(by, action, case=before.reference, consoles=list(serials), borrower=before.org),
        tuple(legs),
    )
    return replace(outcome, ledger=(*outcome.ledger, entry))


def _opened(tx: Tx, case: CaseView, outcome: Outcome) -> Outcome:
    """A case opened in a region where no console is available: its ARS and the regional
    referent are alerted *Pour action*, the CCS informed (in the requester's stream)."""
    if _rows(tx, _REGION_AVAILABLE, (case.region, NATIONAL)):
        return outcome
    by = outcome.events[0]  # the opening
    values = {"rows": [["Consoles disponibles dans la région", "0"],
                       ["Demande ECMO", "ouverte ce jour, en attente de régulation"]]}  # fmt: skip
    notice = HolderNotice("ecmo_region_empty", ("ars", "sfctcv"), ("ccs",), values, issuer="ars")
    draft = _draft(SYSTEM, "ecmo_region_empty", region=case.region, requester=by.org)
    entry = LedgerEntry(case.org, draft, notice=notice)
    return replace(outcome, ledger=(*outcome.ledger, entry))


def _holder(resolve: Mapping[str, Any]) -> str:
    return NATIONAL if resolve.get("source") == "national" else str(resolve.get("lender") or "")


def _reserve(tx: Tx, before: CaseView, after: CaseView, outcome: Outcome, by: Draft) -> Outcome:
    resolve = dict(after.fields.get("resolve") or {})
    serials = parse_serials(resolve.get("console_serials"))
    if not serials:
        raise InputError(
            "name the consoles lent (their serial numbers, field 'console_serials'): "
            "'regul ecmo consoles' lists those available in your scope",
            why="no_console_named",
        )
    holder = _holder(resolve)
    circuits = int(resolve.get("circuits_lent") or 0)
    owners = dict(
        _rows(tx, f"SELECT serial, owner FROM ecmo_console WHERE serial IN "
              f"({', '.join('?' for _ in serials)})", tuple(serials))
    )  # fmt: skip
    for s in serials:
        if s not in owners:
            raise InputError(
                f"no console {s} in the fleet: check the serial with 'regul ecmo consoles'",
                why="unknown_console", serial=s,
            )  # fmt: skip
        if owners[s] != holder:
            raise Conflict(
                f"console {s} belongs to {owners[s]}, not to the lender {holder}",
                why="console_not_at_lender", serial=s, owner=owners[s], lender=holder,
            )  # fmt: skip
    balances = tx.balances([holder], [*(item(s) for s in serials), CIRCUIT])
    legs: list[Leg] = []
    for s in serials:
        if balances.get((holder, item(s), "available"), 0) < 1:
            status = next((b for b in BUCKETS if balances.get((holder, item(s), b), 0)), "")
            raise Conflict(
                f"console {s} is not available ({status or 'unknown'}): choose another one",
                why="console_not_available", serial=s, status=STATUS_FR.get(status, status),
            )  # fmt: skip
        legs += ledger.move(item(s), "available", "reserved", 1)
    if circuits:
        ledger.require(balances, holder, CIRCUIT, "available", circuits, what="circuits")
        legs += ledger.move(CIRCUIT, "available", "reserved", circuits)
    notice = _empty_alert(tx, holder, len(serials), before)
    entry = LedgerEntry(
        holder,
        _draft(
            by,
            "ecmo_reserved",
            case=before.reference,
            consoles=list(serials),
            circuits=circuits,
            borrower=before.org,
        ),
        tuple(legs),
        notice=notice,
    )
    return replace(outcome, ledger=(*outcome.ledger, entry))


def _available_count(conn: Any, *, region: str | None, holder: str | None = None) -> int:
    b, o = _BALANCE, _ORG
    query = (
        sa.select(sa.func.coalesce(sa.func.sum(b.c.quantity), 0))
        .select_from(b.join(o, o.c.id == b.c.holder))
        .where(b.c.item.like(f"{PREFIX}%"), b.c.bucket == "available")
    )
    if holder is not None:
        query = query.where(b.c.holder == holder)
    else:
        query = query.where(o.c.region == region, b.c.holder != NATIONAL)
    return int(conn.execute(query).scalar_one())


def _rows(tx: Tx, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """``sql`` (``?`` marks) on the unit of work's driver cursor: the resolve's hot reads skip
    SQLAlchemy's per-statement cost (bench/ecmo.py)."""
    d = tx.driver
    d.cursor.execute(sql.replace("%", "%%").replace("?", "%s") if d.pg else sql, params)
    return list(d.cursor.fetchall())


_MORE_AVAILABLE = (
    "SELECT 1 FROM stock_balance b JOIN organisation o ON o.id = b.holder "
    "WHERE o.region = (SELECT region FROM organisation WHERE id = ?) AND b.holder <> ? "
    "AND b.bucket = 'available' AND b.quantity > 0 AND b.item LIKE 'console:%' LIMIT ?"
)
_REGION_AVAILABLE = (
    "SELECT 1 FROM stock_balance b JOIN organisation o ON o.id = b.holder "
    "WHERE o.region = ? AND b.holder <> ? AND b.bucket = 'available' AND b.quantity > 0 "
    "AND b.item LIKE 'console:%' LIMIT 1"
)
_NATIONAL_AVAILABLE = (
    "SELECT 1 FROM stock_balance WHERE holder = ? AND bucket = 'available' AND quantity > 0 "
    "AND item LIKE 'console:%' LIMIT ?"
)


def _empty_alert(tx: Tx, holder: str, taken: int, case: CaseView) -> HolderNotice | None:
    """The alert a reservation raises when it leaves its region (or the national stock)
    without an available console: an ECMO case is open there (the one being resolved)."""
    if holder == NATIONAL:
        if len(_rows(tx, _NATIONAL_AVAILABLE, (NATIONAL, taken + 1))) > taken:
            return None
        values = {"case": case.reference,
                  "rows": [["Stock", "Stock national de sécurité ECMO"],
                           ["Consoles disponibles", "0"], ["Dossier", case.reference]]}  # fmt: skip
        return HolderNotice("ecmo_national_empty", ("ccs", "sfctcv"), (), values, issuer="ccs")
    if len(_rows(tx, _MORE_AVAILABLE, (holder, NATIONAL, taken + 1))) > taken:
        return None
    region = _rows(tx, "SELECT region FROM organisation WHERE id = ?", (holder,))
    code = str(region[0][0]) if region and region[0][0] else ""
    values = {"case": case.reference, "region": code,
              "rows": [["Région", code], ["Consoles disponibles", "0"],
                       ["Dossier ECMO ouvert", case.reference]]}  # fmt: skip
    return HolderNotice("ecmo_region_empty", ("ars", "sfctcv"), ("ccs",), values, issuer="ars")


# -- the weekly inventory ---------------------------------------------------------------------


def _centres(conn: Any) -> list[str]:
    """The ECMO centres: the establishments owning at least one console, and the national
    stock (held for the CCS: reminded to the CCS, escalated to the national SFCTCV)."""
    return list(
        conn.execute(sa.select(_CONSOLE.c.owner).distinct().order_by(_CONSOLE.c.owner)).scalars()
    )


def inventory_kind(settings: Settings) -> ObligationKind:
    return ObligationKind(
        name=INVENTORY,
        report="L'inventaire hebdomadaire ECMO",
        due=Due.parse(settings.ecmo_inventory_due, weekly=True),
        escalate_after=timedelta(hours=24),
        escalate=("ars", "sfctcv"),
        escalate_info=("holder",),
        holders=_centres,
    )


def check_figures(raw: Mapping[str, Any]) -> dict[str, int]:
    """The report's figures, each a whole number ≥ 0; unknown or missing ones refused."""
    unknown = sorted(set(raw) - set(FIGURES))
    if unknown:
        raise InputError(
            f"unknown figure {unknown[0]!r}: the report gives {', '.join(FIGURES)}",
            why="unknown_figure", figure=unknown[0], expected=", ".join(FIGURES),
        )  # fmt: skip
    out: dict[str, int] = {}
    for name in FIGURES:
        value = raw.get(name)
        text = str(value).strip() if value is not None else ""
        if not text.isdigit() or not text.isascii() or len(text) > 6:
            raise InputError(
                f"figure {name!r} must be a whole number ≥ 0 (got {text[:20]!r})",
                why="bad_figure", figure=name, value=text[:20],
            )  # fmt: skip
        out[name] = int(text)
    return out


def ledger_figures(balances: Mapping[tuple[str, str, str], int], holder: str) -> dict[str, int]:
    """What the ledger says of ``holder``, in the report's figures."""
    out = dict.fromkeys(FIGURES, 0)
    for (h, it, bucket), qty in balances.items():
        if h != holder or not qty:
            continue
        if it == CIRCUIT:
            if bucket == "available":
                out["circuits"] += qty
        elif it.startswith(PREFIX):
            key = "lent" if bucket == "in_transit" else bucket
            if key in out:
                out[key] += qty
    return out


def differences(reported: Mapping[str, int], booked: Mapping[str, int]) -> list[dict[str, Any]]:
    return [
        {"figure": name, "label": FIGURES_FR[name], "reported": reported[name],
         "ledger": booked[name]}
        for name in FIGURES
        if reported[name] != booked[name]
    ]  # fmt: skip


# -- who may do what on a holder ----------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    id: str
    name: str
    kind: str
    region: str | None
    zone: str | None


def _place(conn: Any, org: str) -> Place:
    row = conn.execute(
        sa.select(_ORG.c.id, _ORG.c.name, _ORG.c.kind, _ORG.c.region, _ORG.c.zone).where(
            _ORG.c.id == org
        )
    ).first()
    if row is None:
        raise InputError(
            f"no organisation {org[:40]!r} in the directory: check the FINESS",
            why="unknown_holder", holder=org[:40],
        )  # fmt: skip
    return Place(*row)


def sees(actor: Actor, place: Place) -> bool:
    """An establishment sees its own fleet, a UMAC its zone's, an ARS (or a regional
    referent) its region's, the CCS, the SFCTCV and the auditors everything."""
    scope = actor.scope
    if place.id == NATIONAL or scope.kind == "national":
        return scope.kind == "national"
    seen = {"hospital": place.id, "zone": place.zone, "region": place.region}
    return scope.kind in seen and seen[scope.kind] == scope.code


def may_report(actor: Actor, place: Place) -> bool:
    """The establishment itself, its ARS (for it), the CCS or the national SFCTCV referent."""
    if place.id == NATIONAL:
        return actor.role == "ccs" or (actor.role == "sfctcv" and not actor.region)
    if actor.role in ("establishment",):
        return place.id == actor.org
    if actor.role in ("ars", "sfctcv"):
        return sees(actor, place)
    return actor.role == "ccs"


def _refuse(actor: Actor, place: Place, what: str) -> NotPermitted:
    return NotPermitted(
        f"{actor.login} may not {what} for {place.id}",
        why="fleet_not_yours", holder=place.id, name=place.name, action=what,
    )  # fmt: skip


# -- the service ---------------------------------------------------------------------------------


@dataclass
class Fleet:
    """The fleet's commands and reads, on ``Resources`` (one transaction per command)."""

    resources: Resources

    # commands ------------------------------------------------------------------------------

    def register(self, login: str | Actor, *, serial: str, model: str, owner: str) -> None:
        """A console enters the fleet, available at its owner."""
        (serial_ok,) = parse_serials(serial) or ("",)
        model = str(model).strip()
        if not serial_ok or not model or len(model) > 80:
            raise InputError(
                "a console needs a serial number and a model (80 characters at most)",
                why="bad_console",
            )

        def decide(tx: Tx, actor: Actor) -> Outcome:
            place = _place(tx.conn, owner)
            if not (may_report(actor, place) and actor.role != "ars") and actor.role != "ccs":
                raise _refuse(actor, place, "register a console")
            if place.kind not in ("hospital", "ccs"):
                raise InputError(
                    f"{owner} is not an establishment: a console belongs to an establishment "
                    "or to the national stock (CCS)",
                    why="bad_console_owner", holder=owner,
                )  # fmt: skip
            exists = tx.conn.execute(
                sa.select(_CONSOLE.c.owner).where(_CONSOLE.c.serial == serial_ok)
            ).scalar()
            if exists is not None:
                raise Conflict(
                    f"console {serial_ok} is already in the fleet (at {exists})",
                    why="console_exists", serial=serial_ok, owner=exists,
                )  # fmt: skip
            tx.conn.execute(
                _CONSOLE.insert().values(
                    serial=serial_ok, model=model, owner=owner, registered_at=tx.now
                )
            )
            draft = _draft(actor, "ecmo_registered", serial=serial_ok, model=model)
            legs = (Leg(item(serial_ok), "available", 1),)
            return Outcome(None, ledger=(LedgerEntry(owner, draft, legs),))

        self.resources.command(login, decide)

    def set_status(self, login: str | Actor, *, serial: str, status: str, reason: str = "") -> str:
        """The owner marks a console available, in use (its own patients) or in maintenance;
        a console bound to a case (reserved, lent, in transit) moves only with the case."""
        if status not in SETTABLE:
            raise InputError(
                f"status {status[:20]!r} cannot be set by hand: one of {', '.join(SETTABLE)}",
                why="bad_console_status", status=status[:20], expected=", ".join(SETTABLE),
            )  # fmt: skip
        (serial_ok,) = parse_serials(serial) or ("",)
        before: list[str] = []

        def decide(tx: Tx, actor: Actor) -> Outcome:
            owner = self._owner(tx.conn, serial_ok)
            place = _place(tx.conn, owner)
            if not may_report(actor, place) or actor.role == "ars":
                raise _refuse(actor, place, "change a console's status")
            balances = tx.balances([owner], [item(serial_ok)])
            now = next((b for (_, _, b), q in balances.items() if q), "")
            if now not in SETTABLE:
                raise Conflict(
                    f"console {serial_ok} is {now}: it moves with its ECMO case",
                    why="console_on_loan", serial=serial_ok, status=STATUS_FR.get(now, now),
                )  # fmt: skip
            before.append(now)
            if now == status:
                return Outcome(None)
            draft = _draft(actor, "ecmo_status", reason, serial=serial_ok, status=status)
            legs = ledger.move(item(serial_ok), now, status, 1)
            notice = None
            if now == "available":
                notice = self._alert_on_leave(tx, owner)
            return Outcome(None, ledger=(LedgerEntry(owner, draft, legs, notice=notice),))

        self.resources.command(login, decide)
        return before[0] if before else ""

    def _alert_on_leave(self, tx: Tx, owner: str) -> HolderNotice | None:
        region = tx.conn.execute(sa.select(_ORG.c.region).where(_ORG.c.id == owner)).scalar()
        open_case = tx.conn.execute(
            sa.select(_CASE.c.id)
            .where(_CASE.c.kind == "ecmo", _CASE.c.final.is_(False), _CASE.c.region == region)
            .limit(1)
        ).scalar()
        if open_case is None or owner == NATIONAL:
            return None
        if _available_count(tx.conn, region=region) - 1 > 0:
            return None
        values = {"case": "", "region": region,
                  "rows": [["Région", str(region)], ["Consoles disponibles", "0"]]}  # fmt: skip
        return HolderNotice("ecmo_region_empty", ("ars", "sfctcv"), ("ccs",), values)

    def circuits(self, login: str | Actor, *, holder: str, quantity: int, reason: str) -> None:
        """Circuits received (a positive quantity) or written off (negative) by ``holder``."""
        if not isinstance(quantity, int) or quantity == 0 or abs(quantity) > 100000:
            raise InputError(
                "give a number of circuits received (e.g. 10) or written off (e.g. -2)",
                why="bad_circuits",
            )

        def decide(tx: Tx, actor: Actor) -> Outcome:
            place = _place(tx.conn, holder)
            if not may_report(actor, place) or actor.role == "ars":
                raise _refuse(actor, place, "record circuits")
            if quantity < 0:
                balances = tx.balances([holder], [CIRCUIT])
                ledger.require(balances, holder, CIRCUIT, "available", -quantity,
                               what="circuits written off")  # fmt: skip
            draft = _draft(actor, "ecmo_circuits", reason, quantity=quantity)
            legs = (Leg(CIRCUIT, "available", quantity),)
            return Outcome(None, ledger=(LedgerEntry(holder, draft, legs),))

        self.resources.command(login, decide)

    def report(
        self, login: str | Actor, *, holder: str, period: str, figures: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One weekly inventory (a new version if the period has one); returns what it
        recorded, with its differences from the ledger."""
        return self.import_reports(login, [(holder, period, figures)])[0]

    def import_reports(
        self, login: str | Actor, rows: Sequence[tuple[str, str, Mapping[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Several reports in one transaction: all recorded, or none (the first error)."""
        checked = [(h, parse_period(p), check_figures(f)) for h, p, f in rows]
        done: list[dict[str, Any]] = []

        def decide(tx: Tx, actor: Actor) -> list[Outcome]:
            done.clear()
            holders = sorted({h for h, _, _ in checked})
            places = {h: _place(tx.conn, h) for h in holders}
            for h in holders:
                if not may_report(actor, places[h]):
                    raise _refuse(actor, places[h], "report the ECMO inventory")
            balances = tx.balances(holders)
            entries = []
            for h, period, figures in checked:
                booked = ledger_figures(balances, h)
                diff = differences(figures, booked)
                data = {"figures": figures, "ledger": booked, "differences": diff}
                entries.append(
                    LedgerEntry(
                        h,
                        _draft(actor, "ecmo_inventory", period=period),
                        report=ReportDraft(INVENTORY, period, data),
                        meets=(INVENTORY, period),
                    )
                )
                done.append({"holder": h, "name": places[h].name, "period": period, **data})
            return [Outcome(None, ledger=tuple(entries))]

        self.resources.command(login, decide)
        return done

    # reads -----------------------------------------------------------------------------------

    @staticmethod
    def _owner(conn: Any, serial: str) -> str:
        owner = conn.execute(sa.select(_CONSOLE.c.owner).where(_CONSOLE.c.serial == serial))
        found = owner.scalar()
        if found is None:
            raise NotFound(
                f"no console {serial} in the fleet: check the serial with 'regul ecmo consoles'",
                why="unknown_console", serial=serial,
            )  # fmt: skip
        return str(found)

    def consoles(
        self, actor: Actor, *, region: str | None = None, available_only: bool = False
    ) -> list[dict[str, Any]]:
        """The consoles ``actor`` sees (its scope), with status, holder and last report."""

        def work(conn: Any) -> list[dict[str, Any]]:
            c, o, b = _CONSOLE, _ORG, _BALANCE
            rows = conn.execute(
                sa.select(
                    c.c.serial,
                    c.c.model,
                    c.c.owner,
                    o.c.name,
                    o.c.kind,
                    o.c.region,
                    o.c.zone,
                    b.c.bucket,
                )
                .select_from(
                    c.join(o, o.c.id == c.c.owner).outerjoin(
                        b,
                        sa.and_(
                            b.c.holder == c.c.owner,
                            b.c.item == sa.literal(PREFIX) + c.c.serial,
                            b.c.quantity > 0,
                        ),
                    )
                )
                .order_by(o.c.region, o.c.name, c.c.serial)
            ).all()
            where = self._whereabouts(conn)
            last = self._last_reports(conn)
            out = []
            for r in rows:
                place = Place(r.owner, r.name, r.kind, r.region, r.zone)
                if not sees(actor, place):
                    continue
                if region is not None and r.region != region:
                    continue
                if available_only and r.bucket != "available":
                    continue
                case = where.get(r.serial)
                out.append({
                    "serial": r.serial, "model": r.model, "owner": r.owner,
                    "owner_name": r.name, "region": r.region or "", "national": r.owner == NATIONAL,
                    "status": r.bucket or "", "status_fr": STATUS_FR.get(r.bucket or "", ""),
                    "holder": case[1] if case else r.owner, "case": case[0] if case else None,
                    "last_report": last.get(r.owner),
                })  # fmt: skip
            return out

        return self.resources.read(work)

    @staticmethod
    def _whereabouts(conn: Any) -> dict[str, tuple[str, str]]:
        """serial -> (case reference, borrower) for the consoles of an open loan."""
        from engine.values import reference_of

        out: dict[str, tuple[str, str]] = {}
        for cid, org, fields in conn.execute(
            sa.select(_CASE.c.id, _CASE.c.org, _CASE.c.fields).where(
                _CASE.c.kind == "ecmo", _CASE.c.state.in_(LOAN_STATES)
            )
        ):
            resolve = (fields or {}).get("resolve") or {}
            try:
                serials = parse_serials(resolve.get("console_serials"))
            except InputError:
                continue
            for s in serials:
                out[s] = (reference_of("ECMO", cid), org)
        return out

    @staticmethod
    def _last_reports(conn: Any) -> dict[str, str]:
        r = _REPORT
        rows = conn.execute(
            sa.select(r.c.holder, sa.func.max(r.c.period))
            .where(r.c.kind == INVENTORY)
            .group_by(r.c.holder)
        )
        return {str(h): str(p) for h, p in rows}

    def reports(
        self, actor: Actor, *, holder: str, period: str | None = None
    ) -> list[dict[str, Any]]:
        """Every version of ``holder``'s inventories (of ``period``), newest first."""

        def work(conn: Any) -> list[dict[str, Any]]:
            place = _place(conn, holder)
            if not sees(actor, place):
                raise _refuse(actor, place, "read the ECMO inventory")
            r = _REPORT
            query = sa.select(r.c.period, r.c.version, r.c.at, r.c.actor, r.c.data).where(
                r.c.kind == INVENTORY, r.c.holder == holder
            )
            if period is not None:
                query = query.where(r.c.period == parse_period(period))
            rows = conn.execute(query.order_by(r.c.period.desc(), r.c.version.desc()))
            return [
                {"holder": holder, "name": place.name, "period": p, "version": v,
                 "at": at.isoformat() if isinstance(at, datetime) else str(at), "actor": a,
                 **(data or {})}
                for p, v, at, a, data in rows
            ]  # fmt: skip

        return self.resources.read(work)

    def loans(self, actor: Actor, *, overdue: bool = False) -> list[dict[str, Any]]:
        """The open loans (resolved ECMO cases whose consoles are not back) ``actor`` sees:
        the borrower's, the lender's, and every loan of its zone/region/the country."""
        now = self.resources.clock.now()

        def work(conn: Any) -> list[dict[str, Any]]:
            from engine.values import reference_of

            c, o, d = _CASE, _ORG, tables.DEADLINE
            rows = conn.execute(
                sa.select(
                    c.c.id,
                    c.c.state,
                    c.c.org,
                    o.c.name,
                    c.c.region,
                    c.c.zone,
                    c.c.fields,
                    d.c.due_at,
                )
                .select_from(
                    c.join(o, o.c.id == c.c.org).outerjoin(
                        d, sa.and_(d.c.case_id == c.c.id, d.c.status == "open")
                    )
                )
                .where(c.c.kind == "ecmo", c.c.state.in_(LOAN_STATES))
                .order_by(c.c.id)
            ).all()
            names = dict(conn.execute(sa.select(o.c.id, o.c.name)).all())
            out = []
            for r in rows:
                fields = r.fields or {}
                resolve = fields.get("resolve") or {}
                lender = _holder(resolve)
                mine = {r.org, lender}
                place = Place(r.org, r.name, "hospital", r.region, r.zone)
                if actor.org not in mine and not sees(actor, place):
                    continue
                until = (fields.get("extend_loan") or {}).get("return_by") or resolve.get(
                    "return_by"
                )
                due = r.due_at
                if due is not None and due.tzinfo is None:
                    from datetime import UTC

                    due = due.replace(tzinfo=UTC)
                late = r.state == "in_service" and due is not None and due <= now
                if overdue and not late:
                    continue
                try:
                    serials = list(parse_serials(resolve.get("console_serials")))
                except InputError:
                    serials = []
                out.append({
                    "case": reference_of("ECMO", r.id), "state": r.state,
                    "borrower": r.org, "borrower_name": r.name,
                    "lender": lender, "lender_name": names.get(lender, lender),
                    "consoles": serials, "circuits": int(resolve.get("circuits_lent") or 0),
                    "return_by": until, "overdue": late,
                })  # fmt: skip
            return out

        return self.resources.read(work)

    def actor(self, login: str) -> Actor:
        from engine.actors import load_actor

        return self.resources.read(lambda conn: load_actor(conn, login))

    def region_summary(self, actor: Actor) -> dict[str, int]:
        """Available consoles per region of ``actor``'s scope (the national stock as 'CCS')."""
        out: dict[str, int] = {}
        for row in self.consoles(actor):
            key = "CCS" if row["national"] else row["region"]
            out.setdefault(key, 0)
            if row["status"] == "available":
                out[key] += 1
        return out


def _effects(settings: Settings) -> Any:
    return effects


# the alerts' OBJET is declared in notifications.outbox.HOLDER_OBJETS (importing the outbox
# here would load the notices' rendering on every command: tests/test_imports.py)
catalogue.KINDS[INVENTORY] = inventory_kind
catalogue.EFFECTS["ecmo"] = _effects


def reconcile(figures: Mapping[str, int], balances: Mapping[tuple[str, str, str], int],
              holder: str) -> list[dict[str, Any]]:  # fmt: skip
    """Where a report's figures differ from ``holder``'s ledger (empty: they agree)."""
    return differences(figures, ledger_figures(balances, holder))


def holders_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted({str(r["owner"]) for r in rows})
