"""Who acts: a user with a role, an organisation, and the scope that organisation gives.

The scope is derived from the user's organisation in the directory: a hospital for the
establishment role, a GHT, a defence zone (UMAC, ARS de zone), a region (ARS, a regional
auditor) or the whole country (CCS, SpF, national auditor, admin). ``SYSTEM`` is the deadline
sweeper.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.errors import NotFound, NotPermitted
from engine.policy import land_of
from engine.values import SYSTEM, Actor, Place, Scope

__all__ = ["SYSTEM", "Actor", "Scope", "load_actor", "load_org", "load_places", "org_names"]

_USER = tables.USER
_ORG = tables.ORGANISATION
_ACTOR = (  # built once, bound per command
    sa.select(_USER, _ORG.c.kind, _ORG.c.region, _ORG.c.zone, _ORG.c.ght)
    .join(_ORG, _ORG.c.id == _USER.c.org)
    .where(_USER.c.login == sa.bindparam("login"))
)


def load_actor(conn: Connection, login: str) -> Actor:
    """The active user named ``login``, with their organisation's place in the directory.

    ``system`` is the deadline sweeper's identity: no command may be sent under it (the
    sweeper passes ``SYSTEM`` itself), so a person cannot escalate early by borrowing it.
    """
    if login == SYSTEM.login:
        raise NotPermitted(
            "'system' is the deadline sweeper's identity, not a user: act as yourself with --as"
        )
    row = None if "\x00" in login else conn.execute(_ACTOR, {"login": login}).first()
    if row is None:
        raise NotFound(
            f"unknown user {login!r}: check the login, or list users in the directory "
            "(regul init --demo loads the demo users)",
            user=login,
        )
    if not row.active:
        raise NotPermitted(f"user {login!r} is disabled: ask an administrator", user=login)
    return Actor(
        login=row.login,
        name=row.name,
        role=row.role,
        org=row.org,
        org_kind=row.kind,
        region=row.region,
        zone=row.zone,
        ght=row.ght,
    )


def load_org(conn: Connection, org_id: str) -> sa.Row[tuple[object, ...]]:
    row = (
        None
        if "\x00" in org_id
        else conn.execute(sa.select(_ORG).where(_ORG.c.id == org_id)).first()
    )
    if row is None:
        raise NotFound(
            f"unknown organisation {org_id!r}: hospitals go by their FINESS number, "
            "others by codes such as ARS-OCC or UMAC-SUD",
            org=org_id,
        )
    return row


_REGION = tables.REGION
_PLACES = (  # an establishment with its region's land mass (road and rail stay on one)
    sa.select(
        _ORG.c.id, _ORG.c.kind, _ORG.c.region, _ORG.c.zone, _ORG.c.ght, _ORG.c.department,
        _ORG.c.category, _REGION.c.insee, _REGION.c.name,
    )
    .outerjoin(_REGION, _REGION.c.code == _ORG.c.region)
    .where(_ORG.c.id.in_(sa.bindparam("ids", expanding=True)))
)  # fmt: skip


def load_places(conn: Connection, ids: set[str]) -> dict[str, Place | None]:
    """The directory entries of ``ids`` (None for an id the directory does not know)."""
    found: dict[str, Place | None] = dict.fromkeys(ids)
    wanted = sorted(i for i in ids if "\x00" not in i)
    if wanted:
        for row in conn.execute(_PLACES, {"ids": wanted}):
            found[row.id] = Place(
                org=row.id, region=row.region, zone=row.zone, ght=row.ght,
                department=row.department, kind=row.kind, category=row.category,
                land=land_of(row.region, row.insee, row.name) if row.region else None,
            )  # fmt: skip
    return found


def org_names(conn: Connection, ids: set[str]) -> dict[str, str]:
    """The directory's names of the organisations ``ids`` (an unknown id is left out)."""
    wanted = sorted(i for i in ids if i and "\x00" not in i)
    if not wanted:
        return {}
    query = sa.select(_ORG.c.id, _ORG.c.name).where(_ORG.c.id.in_(wanted))
    return {row.id: row.name for row in conn.execute(query) if row.name}
