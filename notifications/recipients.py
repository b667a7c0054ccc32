"""Recipients from the directory: who is *Pour action* and *Pour information* on a notice.

Levels are placed by the case: the hospital itself, its GHT, the UMAC and ARS de zone of its
zone, the ARS of its region, the CCS and SpF. The directory is read once per process and kept
(it changes with ``regul init --directory``, which a running worker picks up on restart).
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

__all__ = ["Directory", "Recipient", "resolve"]

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

    def to_dict(self) -> dict[str, str]:
        return {"org": self.org, "name": self.name, "email": self.email}


_PLACES = {"umac": "zone", "ars_zone": "zone", "ars": "region"}


class Directory:
    """Organisations and region names, loaded on first use."""

    def __init__(self) -> None:
        self._orgs: dict[str, Any] | None = None
        self._regions: dict[str, str] = {}
        self._levels: dict[tuple[str, str | None], Recipient | None] = {}

    def load(self, conn: Connection) -> None:
        if self._orgs is None:
            self._orgs = {row.id: row for row in conn.execute(sa.select(_ORG))}
            self._regions = {r.code: r.name for r in conn.execute(sa.select(_REGION))}

    def org(self, org_id: str) -> Any:
        assert self._orgs is not None
        return self._orgs[org_id]

    def region_name(self, code: str) -> str:
        return self._regions.get(code, code)

    def level_org(self, role: str, case: CaseView) -> Recipient | None:
        assert self._orgs is not None
        if role == "establishment":
            return self._recipient(case.org)
        if role == "ght":
            return self._recipient(case.ght) if case.ght else None
        place = _PLACES.get(role)
        key = (role, getattr(case, place) if place else None)
        if key not in self._levels:  # the first organisation of that kind and place, kept
            self._levels[key] = next(
                (
                    Recipient(row.id, row.name, row.email)
                    for row in self._orgs.values()
                    if row.kind == role and (place is None or getattr(row, place) == key[1])
                ),
                None,
            )
        return self._levels[key]

    def _recipient(self, org_id: str) -> Recipient | None:
        assert self._orgs is not None
        row = self._orgs.get(org_id)
        return Recipient(row.id, row.name, row.email) if row else None


def levels_passed(conn: Connection, spec: WorkflowSpec, case_id: int) -> list[str]:
    """The levels that held the case before, in order, from its audit log."""
    raw = conn.connection.driver_connection  # in the unit of work's transaction: its cursor
    assert raw is not None
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    cursor = raw.cursor()
    cursor.execute(_FROM_STATES_SQL.replace("?", mark), (case_id,))
    rows = cursor.fetchall()
    levels: list[str] = []
    for (state,) in rows:
        level = spec.state(state).level
        if level and level not in levels:
            levels.append(level)
    return levels


def resolve(
    directory: Directory,
    rule: NoticeRule,
    case: CaseView,
    *,
    previous: str | None,
    passed: list[str],
) -> tuple[list[Recipient], list[Recipient]]:
    """(pour action, pour information) for ``case`` after its event; nobody twice."""

    def roles(tokens: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for token in tokens:
            expanded = {
                "holder": [case.level] if case.level else [],
                "previous": [previous] if previous else [],
                "passed": passed,
                "requester": ["establishment"],
            }.get(token, [token])
            out.extend(r for r in expanded if r and r not in out)
        return out

    action = [r for role in roles(rule.action) if (r := directory.level_org(role, case))]
    seen = {r.org for r in action}
    info: list[Recipient] = []
    for role in roles(rule.info):
        r = directory.level_org(role, case)
        if r and r.org not in seen:
            info.append(r)
            seen.add(r.org)
    return action, info
