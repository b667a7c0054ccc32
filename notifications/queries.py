"""Reading and re-queuing notices: what ``regul notices`` and the desk's notices page show."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.cases import CASE_TABLE
from engine.errors import Conflict, InputError, NotFound
from notifications.outbox import NOTICE_TABLE
from notifications.rules import SERIES

__all__ = ["STATUSES", "attempts_of", "get_notice", "list_notices", "retry_notice"]

STATUSES = ("queued", "sent", "failed")
_SERIES = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_N = NOTICE_TABLE
_ATTEMPT = tables.NOTICE_ATTEMPT


def list_notices(
    conn: Connection,
    *,
    case_id: int | None = None,
    status: str | None = None,
    series: str | None = None,
    limit: int = 100,
    scope_where: Any = None,
) -> list[Any]:
    """Newest first; ``scope_where`` (a condition on the case table) keeps a reader's scope."""
    if status is not None and status not in STATUSES:
        raise InputError(f"--status {status!r}: use one of {', '.join(STATUSES)}")
    if series is not None and not _SERIES.fullmatch(series):
        raise InputError(
            f"--series {series!r}: use {' or '.join(SERIES)}, or an issuer's own series "
            "(its organisation: ARS-OCC, UMAC-SUD, ES-319900001)"
        )
    if not 0 < limit <= 10000:
        raise InputError("--limit must be between 1 and 10000")
    query = sa.select(_N).order_by(_N.c.id.desc()).limit(limit)
    if scope_where is not None:
        query = query.join(CASE_TABLE, CASE_TABLE.c.id == _N.c.case_id).where(scope_where)
    for column, value in ((_N.c.case_id, case_id), (_N.c.status, status), (_N.c.series, series)):
        if value is not None:
            query = query.where(column == value)
    return list(conn.execute(query))


def get_notice(conn: Connection, reference: str) -> Any:
    row = conn.execute(sa.select(_N).where(_N.c.reference == reference.strip())).first()
    if row is None:
        raise NotFound(
            f"no notice {reference!r}: references look like 'MARS N°2026_17' or "
            "'MINSANTE N°143' "
            "(list them with 'regul notices list')"
        )
    return row


def attempts_of(conn: Connection, notice_id: int) -> list[Any]:
    return list(
        conn.execute(
            sa.select(_ATTEMPT).where(_ATTEMPT.c.notice_id == notice_id).order_by(_ATTEMPT.c.id)
        )
    )


def retry_notice(conn: Connection, reference: str, now: datetime) -> Any:
    """Queue a failed notice again, for delivery at the next dispatch."""
    row = get_notice(conn, reference)
    if row.status != "failed":
        raise Conflict(f"notice {row.reference} is {row.status}: only a failed notice is retried")
    conn.execute(
        _N.update()
        .where(_N.c.id == row.id)
        .values(status="queued", next_attempt_at=now, attempts=0)
    )
    return get_notice(conn, reference)
