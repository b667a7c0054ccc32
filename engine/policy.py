"""Authorization: one pure policy for every interface.

A user acts on a case only when (1) the case's current level belongs to the user's role (a
trigger flagged ``any_level``, such as the requester's cancel, waives this), (2) the case lies
inside the user's scope, and (3) the workflow lets that role fire that trigger. Reading
follows scope. Functions here decide and explain; they never touch the database: the runner
records refusals and the interfaces turn them into an exit code or a status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from engine.values import Actor, Place
from engine.vocab import REGULATORS, Role, ScopeKind
from engine.workflow import FieldSpec, WorkflowSpec

__all__ = [
    "LAND_MEANS",
    "OVERSEAS",
    "REGULATORS",
    "Decision",
    "Geography",
    "Located",
    "LocatedCase",
    "can_audit",
    "can_choose",
    "can_control",
    "can_extend",
    "can_fire",
    "can_open",
    "can_read",
    "can_receive",
    "can_see_event",
    "ecmo_resolve",
    "in_scope",
    "is_lender",
    "is_receiver",
    "land_of",
    "lender_of",
    "means_fit",
]


class Located(Protocol):
    """Anything placed in the directory: a case, or the hospital a case would be opened for."""

    @property
    def org(self) -> str: ...
    @property
    def region(self) -> str | None: ...
    @property
    def zone(self) -> str | None: ...
    @property
    def ght(self) -> str | None: ...


class LocatedCase(Located, Protocol):
    """A case: placed, and of one workflow (``kind``)."""

    @property
    def kind(self) -> str: ...


@dataclass(frozen=True)
class Decision:
    """Allowed, or a typed refusal: ``why`` (a catalogue key), its ``params``, and ``reason``
    (the English explanation recorded in the audit log)."""

    allowed: bool
    reason: str = ""
    why: str = ""
    params: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return self.allowed


def _no(why: str, reason: str, **params: str) -> Decision:
    return Decision(False, reason, why, tuple(params.items()))


ALLOW = Decision(True)


def in_scope(actor: Actor, item: Located) -> bool:
    scope = actor.scope
    if scope.kind == ScopeKind.NATIONAL or actor.role == Role.SYSTEM:
        return True
    value = {
        "hospital": item.org,
        "ght": item.ght,
        "zone": item.zone,
        "region": item.region,
    }[scope.kind]
    return scope.code is not None and value == scope.code


def can_read(actor: Actor, item: LocatedCase) -> Decision:
    """Reading follows scope; a role that reads some workflows only (the SFCTCV referent reads
    ECMO cases) finds the others outside its scope, as if they did not exist. The lender of a
    case's console reads it too (``is_lender``), and so does the establishment a transfer is
    proposed to (``is_receiver``)."""
    kinds = actor.kinds
    if in_scope(actor, item) and (kinds is None or item.kind in kinds):
        return ALLOW
    if is_lender(actor, item) or is_receiver(actor, item):
        return ALLOW
    return _outside(actor)


def _outside(actor: Actor) -> Decision:
    return _no(
        "outside_scope",
        f"the case lies outside {actor.login}'s scope ({actor.scope})",
        login=actor.login,
        scope=str(actor.scope),
    )


def can_open(actor: Actor, spec: WorkflowSpec, hospital: Located) -> Decision:
    if actor.role not in spec.open_roles:
        return _no(
            "role_may_not_open",
            f"role {actor.role} may not open a {spec.kind} case; "
            f"{' or '.join(spec.open_roles)} may",
            role=actor.role,
            kind=spec.kind,
        )
    if not in_scope(actor, hospital):
        return _no(
            "hospital_outside_scope",
            f"{hospital.org} lies outside {actor.login}'s scope ({actor.scope})",
            org=hospital.org,
            scope=str(actor.scope),
        )
    return ALLOW


def can_fire(  # noqa: PLR0911 - one return per rule reads as the doctrine does
    actor: Actor, spec: WorkflowSpec, state: str, trigger: str, item: Located
) -> Decision:
    """May ``actor`` fire ``trigger`` on a case of ``spec`` in ``state``?"""
    transition = spec.transition(state, trigger)
    if transition is None:  # the runner reports this as a conflict before asking
        return _no("trigger_not_allowed", f"{trigger} is not possible from {state}")
    if actor.role == Role.SYSTEM:
        on_deadline = spec.state(state).on_deadline
        if on_deadline == trigger:
            return ALLOW
        return _no("system_fires_deadlines", "system fires only deadlines")
    if actor.role not in transition.roles:
        return _no(
            "role_may_not_fire",
            f"role {actor.role} may not {trigger} a {spec.kind} case in {state}; "
            f"{' or '.join(transition.roles)} may",
            role=actor.role,
            trigger=trigger,
            state=state,
        )
    if transition.lender:  # the relation replaces the level and the scope (see lender_of)
        return ALLOW if is_lender(actor, item) else _not_lender(actor, trigger)
    if transition.receiver:  # likewise: the establishment the patient is proposed to
        return ALLOW if is_receiver(actor, item) else _not_receiver(actor, trigger)
    level = spec.state(state).level
    if not transition.any_level and level != actor.role:
        return _wrong_level(level, actor)
    if not in_scope(actor, item):
        return _outside(actor)
    return ALLOW


def _wrong_level(level: str | None, actor: Actor) -> Decision:
    return _no(
        "wrong_level",
        f"the case is at the {level} level, not {actor.role}",
        level=str(level),
        role=actor.role,
    )


def can_control(actor: Actor, spec: WorkflowSpec, state: str, item: Located) -> Decision:
    """May ``actor`` hold, resume or extend the deadline of a case in ``state``?

    Only a regulator of the level that holds the case, inside their scope.
    """
    level = spec.state(state).level
    if actor.role not in REGULATORS:
        return _no(
            "not_a_regulator",
            f"role {actor.role} does not regulate; {', '.join(REGULATORS)} do",
            role=actor.role,
        )
    if level != actor.role:
        return _wrong_level(level, actor)
    if not in_scope(actor, item):
        return _outside(actor)
    return ALLOW


def can_audit(actor: Actor) -> Decision:
    """May ``actor`` search, export and verify the audit log (within their scope)?"""
    if actor.role != Role.AUDITOR:
        return _no(
            "not_an_auditor",
            f"role {actor.role} does not audit; only auditors read the log",
            role=actor.role,
        )
    return ALLOW


def can_see_event(actor: Actor, action: str, role: str, data: dict[str, object]) -> bool:
    """May ``actor``, who may read the case, see this event of its chain?

    Auditors see everything. Others do not see the auditors' reads, nor the refused attempts
    of people outside the case's scope (their existence is the auditors' business, and the
    attempt carries nothing the case's own regulators need).
    """
    if actor.role == Role.AUDITOR:
        return True
    if action == "read" and role == Role.AUDITOR:
        return False
    return not (action == "refused" and data.get("scope") == "outside")


# -- the directory as the decisions see it ---------------------------------------------------


@dataclass(frozen=True)
class Geography:
    """What the decisions need of the directory, as a value: where each hospital lies, which
    regions each defence zone holds, and which levels have an organisation where.

    Loaded once per process (``engine.geography.load_geography``); an empty one (``known``
    false: the pure tests, a database before ``regul init``) skips no level and knows no
    hospital.
    """

    hospitals: Mapping[str, Place] = field(default_factory=dict)
    zones: Mapping[str, frozenset[str]] = field(default_factory=dict)
    levels: frozenset[tuple[str, str | None]] = frozenset()  # (kind, zone/region/ght code)
    known: bool = False

    @classmethod
    def build(cls, organisations: Iterable[Any], regions: Iterable[Any]) -> Geography:
        """From directory rows (objects or mappings with the CSV's columns)."""

        def get(row: Any, key: str) -> Any:
            return row[key] if isinstance(row, Mapping) else getattr(row, key)

        hospitals: dict[str, Place] = {}
        levels: set[tuple[str, str | None]] = set()
        for row in organisations:
            kind = get(row, "kind")
            if kind == "hospital":
                hospitals[get(row, "id")] = Place(
                    get(row, "id"), get(row, "region"), get(row, "zone"), get(row, "ght"),
                    get(row, "department"),
                )  # fmt: skip
            place = _LEVEL_PLACE.get(kind)
            levels.add((kind, get(row, place) if place else None))
            if kind == "ght":
                levels.add((kind, get(row, "id")))
        zones: dict[str, set[str]] = {}
        for row in regions:
            zones.setdefault(get(row, "zone"), set()).add(get(row, "code"))
        return cls(hospitals, {z: frozenset(r) for z, r in zones.items()}, frozenset(levels), True)

    def skipped(self, level: str | None, item: Located) -> str | None:
        """Why the ``level`` holds nothing for a case at ``item``'s place, else None.

        ``zone_single_region``: the ARS de zone of a zone that is one region would only wait
        for the ARS that just passed the case on (Île-de-France); ``no_organisation``: no
        organisation of that level where the case lies (a hospital without a GHT).
        """
        if not self.known or level is None or level not in _LEVEL_PLACE:
            return None
        if level == Role.ARS_ZONE and len(self.zones.get(item.zone or "", ())) == 1:
            return "zone_single_region"
        place = _LEVEL_PLACE[level]
        code = None if place is None else item.ght if level == Role.GHT else getattr(item, place)
        if place is not None and code is None:
            return "no_organisation"
        if (level, code) not in self.levels:
            return "no_organisation"
        return None


# the place an organisation of each regulating level is found by (None: national)
_LEVEL_PLACE: dict[str, str | None] = {
    Role.GHT: "ght",
    Role.UMAC: "zone",
    Role.ARS: "region",
    Role.ARS_ZONE: "zone",
    Role.CCS: None,
    Role.SPF: None,
}


# -- ECMO: the resources a level may use, and the lender of a console ------------------------


def lender_of(item: Any) -> tuple[str, str | None] | None:
    """Who lent the case's console: ``("ccs", None)`` for the national stock, ``("hospital",
    FINESS)`` for a lending establishment, None when unknown (no loan yet, or a case resolved
    before the lender was recorded: its free-text ``provider`` names nobody in the directory)."""
    fields = getattr(item, "fields", None)
    resolved = fields.get("resolve") if isinstance(fields, Mapping) else None
    if not isinstance(resolved, Mapping) or getattr(item, "kind", "ecmo") != "ecmo":
        return None
    if resolved.get("source") == "national":
        return (Role.CCS, None)
    lender = resolved.get("lender")
    return ("hospital", str(lender)) if lender else None


def is_lender(actor: Actor, item: Any) -> bool:
    """Is ``actor`` the lender of the case's console (the CCS for the national stock, the
    lending establishment otherwise)? A case whose lender is unknown (resolved before lenders
    were recorded) keeps the former rule: the borrowing establishment itself."""
    if actor.role == Role.SYSTEM or getattr(item, "kind", None) != "ecmo":
        return False
    lender = lender_of(item)
    if lender is None:
        resolved = getattr(item, "fields", {}).get("resolve")
        legacy = resolved is not None and actor.role == Role.ESTABLISHMENT
        return legacy and actor.org == item.org
    kind, org = lender
    if kind == Role.CCS:
        return actor.role == Role.CCS
    return actor.role == Role.ESTABLISHMENT and actor.org == org


def _not_lender(actor: Actor, trigger: str) -> Decision:
    return _no(
        "not_the_lender",
        f"only the lender of the console may {trigger} this loan ({actor.login} is not)",
        login=actor.login,
        trigger=trigger,
    )


def ecmo_resolve(
    actor: Actor, state: str, item: Located, values: Mapping[str, Any], geography: Geography
) -> Decision:
    """May ``actor`` lend from ``values['source']`` (and ``lender``) to a case at ``item``?

    The national stock only at the national level and only by the CCS (seed 000); a UMAC
    lends within its zone, an ARS within its region, the CCS from anywhere. The values were
    parsed and checked (the lender exists) before this is asked.
    """
    source = values.get("source")
    if source == "national":
        if state != "national_regulation" or actor.role != Role.CCS:
            return _no(
                "national_stock_reserved",
                "the national ECMO stock is mobilised only by the CCS at the national level",
                source="national",
                role=actor.role,
            )
        return ALLOW
    lender = geography.hospitals.get(str(values.get("lender")))
    if lender is None:  # unknown to an empty geography: the checks before would have said so
        return ALLOW
    where = {"umac": "zone", "ars": "region"}.get(str(actor.role))
    if where is not None and getattr(lender, where) != getattr(item, where):
        return _no(
            "lender_outside_scope",
            f"{lender.org} lies outside the {where} of the case ({getattr(item, where)}): "
            f"the {actor.role} lends only within its {where}",
            lender=lender.org,
            scope=f"{where} {getattr(item, where)}",
        )
    return ALLOW


def can_extend(by: timedelta, limit: timedelta) -> Decision:
    """An extension of a deadline is at most ``limit`` at a time (a setting, 24 h by default)."""
    if by > limit:
        hours = f"{limit.total_seconds() / 3600:g}"
        return _no(
            "extension_too_long",
            f"an extension is at most {hours} h at a time",
            limit=hours,
        )
    return ALLOW


# -- what a resolution may name: a reserved stock, a receiving establishment, a means ---------


def can_choose(actor: Actor, field: FieldSpec, value: object) -> Decision:
    """May ``actor`` give ``value`` to ``field``? A PPE shipment comes from the stock of the
    level that decides it: the GHT's, the region's (ARS), the national one (SpF only)."""
    roles = field.roles_for(value)
    if roles is None or actor.role in roles or actor.role == Role.SYSTEM:
        return ALLOW
    return _no(
        "value_reserved",
        f"{field.name}={value} is for {' or '.join(roles)} to give, not {actor.role}",
        field=field.name,
        value=str(value),
        role=actor.role,
    )


def can_receive(actor: Actor, receiving: Located) -> Decision:
    """May ``actor`` send a patient to ``receiving``? An ARS finds a bed inside its region,
    the ARS de zone inside its zone, the national level anywhere (seed 003: transfers infra-
    or inter-regional, EVASAN across borders)."""
    if in_scope(actor, receiving):
        return ALLOW
    return _no(
        "receiving_outside_scope",
        f"{receiving.org} lies outside {actor.login}'s scope ({actor.scope}): the next level "
        "finds beds further away (escalate)",
        org=receiving.org,
        scope=str(actor.scope),
    )


# Overseas regions by INSEE code (Guadeloupe 01, Martinique 02, Guyane 03, La Réunion 04,
# Mayotte 06) and by name, for a directory that names them otherwise.
OVERSEAS = frozenset({"01", "02", "03", "04", "06"})
_OVERSEAS_NAMES = frozenset({"guadeloupe", "martinique", "guyane", "la réunion", "mayotte"})
MAINLAND = "mainland"
LAND_MEANS = frozenset({"road", "rail"})


def land_of(region: str | None, insee: str | None = None, name: str | None = None) -> str:
    """The land mass a region lies on: each overseas region is its own (and Corsica, an
    island), the other regions share the mainland. Road and rail stay on one land mass."""
    if (insee or "") in OVERSEAS or (name or "").strip().lower() in _OVERSEAS_NAMES:
        return str(region)
    if insee == "94" or (name or "").strip().lower() == "corse":
        return str(region)
    return MAINLAND


def means_fit(means: str, origin: str | None, destination: str | None) -> bool:
    """Road and rail only between two places of one land mass (no road to or from overseas);
    air and sea anywhere. An unknown land (None) fits nothing by land."""
    if means not in LAND_MEANS:
        return True
    return origin is not None and origin == destination


# -- transfer: the receiving establishment --------------------------------------------------


def receiver_of(item: Any) -> str | None:
    """The FINESS of the establishment a transfer case is proposed to (its ``resolve`` field
    ``receiving_hospital``), None before any proposal or for another workflow."""
    fields = getattr(item, "fields", None)
    resolved = fields.get("resolve") if isinstance(fields, Mapping) else None
    if not isinstance(resolved, Mapping) or getattr(item, "kind", None) != "transfer":
        return None
    receiving = resolved.get("receiving_hospital")
    return str(receiving) if receiving else None


def is_receiver(actor: Actor, item: Any) -> bool:
    """Is ``actor`` a user of the establishment the transfer is (or was last) proposed to?"""
    if actor.role != Role.ESTABLISHMENT:
        return False
    receiving = receiver_of(item)
    return receiving is not None and actor.org == receiving


def _not_receiver(actor: Actor, trigger: str) -> Decision:
    return _no(
        "not_the_receiver",
        f"only the receiving establishment may {trigger} this transfer ({actor.login} is not)",
        login=actor.login,
        trigger=trigger,
    )
