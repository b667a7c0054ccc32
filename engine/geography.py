"""Reading the directory's geography for the decisions: one read, kept for the process.

``engine.policy.Geography`` is the value the pure decisions take (where each hospital lies,
which regions each zone holds, which levels have an organisation where); this module reads it
from the directory tables. Like the notices' directory, it is read once per process: a
directory changed with ``regul init --directory`` is seen by a process started after it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.policy import Geography

__all__ = ["load_geography"]


def load_geography(conn: Connection) -> Geography:
    org, region = tables.ORGANISATION, tables.REGION
    organisations = conn.execute(
        sa.select(org.c.id, org.c.kind, org.c.region, org.c.zone, org.c.department, org.c.ght)
    ).all()
    regions = conn.execute(sa.select(region.c.code, region.c.zone)).all()
    if not organisations:  # a database before its directory: nothing known, nothing skipped
        return Geography()
    return Geography.build(organisations, regions)
