"""Recipients from the directory: who is *Pour action* and *Pour information* on a notice.

Levels are placed by the case: the hospital itself, its GHT, the UMAC and ARS de zone of its
zone, the ARS and the SFCTCV referent of its region, the CCS and SpF. The parties a decision
names are found from the case's resolve fields: the ``lender`` of an ECMO console (the CCS for
the national stock), the ``receiver`` of a transfer (and its ARS), the ``shipper`` of PPE (the
GHT's support establishment, the region's ARS, or SpF). ``regulator`` is the first level that
regulates the case (what an opening notifies at once); ``national`` the CCS while the case is
at a national level (SpF holds PPE's, the CCS is informed). The directory is read once per
process and kept (it changes with ``regul init --directory``, which a running worker picks up
on restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.cases import CaseView
from engine.workflow import WorkflowSpec
from notifications.rules import NoticeRule

__all__ = [
    "Directory",
    "Recipient",
    "lender",
    "receiver",
    "regulator",
    "resolve",
    "shipper",
]

_ORG = tables.ORGANISATION
_REGION = tables.REGION
_AUDIT = tables.AUDIT_EVENT
_FROM_STATES_SQL = (  # on the driver's cursor: this runs once per notice, in the hot path
    "SELECT from_state FROM audit_event WHERE case_id = ? AND action = 'transition' ORDER BY seq"
)


@dataclass(frozen=True)
class Recipient:
    org: str
    name: str
    email: str
    kind: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"org": self.org, "name": self.name, "email": self.email}


_PLACES = {"umac": "zone", "ars_zone": "zone", "ars": "region", "sfctcv": "region"}


class Directory:
    """Organisations and region names, loaded on first use."""

    def __init__(self) -> None:
        self._orgs: dict[str, Any] | None = None
        self._regions: dict[str, str] = {}
        self._levels: dict[tuple[str, str | None], Recipient | None] = {}
        self._recipients: dict[str, Recipient] = {}

    def load(self, conn: Connection) -> None:
        if self._orgs is None:
            self._orgs = {row.id: row for row in conn.execute(sa.select(_ORG))}
            self._regions = {r.code: r.name for r in conn.execute(sa.select(_REGION))}

    def org(self, org_id: str) -> Any:
        assert self._orgs is not None
        return self._orgs[org_id]

    def find(self, org_id: str | None) -> Any | None:
        """The organisation ``org_id``, or None (an unknown FINESS, the system's ``REGUL``)."""
        assert self._orgs is not None
        return self._orgs.get(org_id) if org_id else None

    def region_name(self, code: str) -> str:
        return self._regions.get(code, code)

    def level_org(self, role: str, case: CaseView) -> Recipient | None:
        assert self._orgs is not None
        if role == "establishment":
            return self._recipient(case.org)
        if role == "ght":
            return self._recipient(case.ght) if case.ght else None
        place = _PLACES.get(role)
        return self.first(role, place, getattr(case, place) if place else None)

    def first(self, kind: str, place: str | None, where: str | None) -> Recipient | None:
        """The first organisation of ``kind`` at ``where`` (its region or zone), kept."""
        assert self._orgs is not None
        key = (kind, where)
        if key not in self._levels:
            self._levels[key] = next(
                (
                    _of(row)
                    for row in self._orgs.values()
                    if row.kind == kind and (place is None or getattr(row, place) == where)
                ),
                None,
            )
        return self._levels[key]

    def national(self, kind: str) -> Recipient | None:
        """The organisation of ``kind`` with no region (the national SFCTCV), kept."""
        assert self._orgs is not None
        key = (kind, "*national*")
        if key not in self._levels:
            self._levels[key] = next(
                (_of(r) for r in self._orgs.values() if r.kind == kind and not r.region), None
            )
        return self._levels[key]

    def recipient(self, org_id: str | None) -> Recipient | None:
        return self._recipient(org_id) if org_id else None

    def _recipient(self, org_id: str) -> Recipient | None:
        assert self._orgs is not None
        found = self._recipients.get(org_id)
        if found is None:
            row = self._orgs.get(org_id)
            if row is None:
                return None
            found = self._recipients[org_id] = _of(row)
        return found

    def ght_shipper(self, ght_id: str | None) -> Recipient | None:
        """A GHT's support establishment when the directory names one, else the GHT itself."""
        row = self.find(ght_id)
        if row is None:
            return None
        support = getattr(row, "support", None) or getattr(row, "support_establishment", None)
        return self.recipient(support) or _of(row)


def _of(row: Any) -> Recipient:
    return Recipient(row.id, row.name, row.email, row.kind)


def levels_passed(
    conn: Connection,
    spec: WorkflowSpec,
    case_id: int,
    level_of: dict[str, str | None] | None = None,
) -> list[str]:
    """The levels that held the case before, in order, from its audit log.

    ``level_of`` (each state's level in ``spec``, kept by the caller) spares a lookup per row.
    """
    raw = conn.connection.driver_connection  # in the unit of work's transaction: its cursor
    assert raw is not None
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    cursor = raw.cursor()
    cursor.execute(_FROM_STATES_SQL.replace("?", mark), (case_id,))
    rows = cursor.fetchall()
    cursor.close()
    if level_of is None:
        level_of = {state.name: state.level for state in spec.states}
    levels: list[str] = []
    for (state,) in rows:
        level = level_of[state] if state in level_of else spec.state(state).level
        if level and level not in levels:
            levels.append(level)
    return levels


def regulator(
    spec: WorkflowSpec, directory: Directory, case: CaseView, before: str | None = None
) -> str | None:
    """The first regulating level from the case's state up: the holder if it regulates, else
    the level its escalation leads to (a level with nobody for this case is passed over). For
    a case the event ended (a cancellation), from the state it was in (``before``)."""
    state: str | None = before if case.final and before else case.state
    seen: set[str] = set()
    while state is not None and state not in seen:
        seen.add(state)
        level = spec.state(state).level
        if level and level != "establishment" and directory.level_org(level, case):
            return level
        escalation = spec.transition(state, "escalate")
        state = escalation.dest if escalation else None
    return None


def _resolved(case: CaseView) -> dict[str, Any]:
    value = case.fields.get("resolve")
    return value if isinstance(value, dict) else {}


def lender(directory: Directory, case: CaseView) -> list[Recipient]:
    """ECMO: the lender of the console: the CCS for the national stock, else the hospital
    named by the resolve field ``lender`` (a FINESS)."""
    resolved = _resolved(case)
    if resolved.get("source") == "national":
        ccs = directory.first("ccs", None, None)
        return [ccs] if ccs else []
    found = directory.recipient(str(resolved.get("lender") or "")) if resolved else None
    return [found] if found else []


def receiver(directory: Directory, case: CaseView) -> list[Recipient]:
    """Transfer: the receiving establishment and the ARS of its region."""
    hospital = directory.find(str(_resolved(case).get("receiving_hospital") or ""))
    if hospital is None:
        return []
    ars = directory.first("ars", "region", hospital.region)
    return [r for r in (_of(hospital), ars) if r]


def shipper(directory: Directory, case: CaseView) -> list[Recipient]:
    """PPE: who ships: the GHT (its support establishment), the region's ARS, or SpF."""
    source = _resolved(case).get("source")
    if source == "ght":
        found = directory.ght_shipper(case.ght)
    elif source == "region":
        found = directory.first("ars", "region", case.region)
    elif source == "national":
        found = directory.first("spf", None, None)
    else:
        found = None
    return [found] if found else []


_FINDERS = {"lender": lender, "receiver": receiver, "shipper": shipper}


def resolve(
    directory: Directory,
    rule: NoticeRule,
    case: CaseView,
    *,
    previous: str | None,
    passed: list[str],
    spec: WorkflowSpec | None = None,
    before: str | None = None,
) -> tuple[list[Recipient], list[Recipient]]:
    """(pour action, pour information) for ``case`` after its event; nobody twice."""

    def expand(tokens: tuple[str, ...]) -> list[Recipient]:
        out: list[Recipient] = []
        for token in tokens:
            finder = _FINDERS.get(token)
            if finder is not None:
                out.extend(finder(directory, case))
                continue
            if token == "sfctcv":  # the region's referent; the national SFCTCV at the top
                found = directory.level_org("sfctcv", case)
                out.extend([found] if found else [])
                if case.level == "ccs" or previous == "ccs":
                    top = directory.national("sfctcv")
                    out.extend([top] if top else [])
                continue
            if token == "national":  # the CCS, informed while the case is at a national level
                roles = (
                    ["ccs"] if case.level in ("ccs", "spf") or previous in ("ccs", "spf") else []
                )
            elif token == "regulator":
                level = regulator(spec, directory, case, before) if spec is not None else None
                roles = [level] if level else []
            elif token == "holder":
                roles = [case.level] if case.level else []
            elif token == "previous":
                roles = [previous] if previous else []
            elif token == "passed":
                roles = passed
            elif token == "requester":
                roles = ["establishment"]
            else:
                roles = [token]
            out.extend(r for role in roles if role and (r := directory.level_org(role, case)))
        return out

    action: list[Recipient] = []
    seen: set[str] = set()
    for r in expand(rule.action):
        if r.org not in seen:
            action.append(r)
            seen.add(r.org)
    info: list[Recipient] = []
    for r in expand(rule.info):
        if r.org not in seen:
            info.append(r)
            seen.add(r.org)
    return action, info
