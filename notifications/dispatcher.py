"""The dispatcher: delivers queued notices with retries, backoff and a final failure.

It leases a batch of due notices in a short transaction (PostgreSQL: ``FOR UPDATE SKIP
LOCKED``, so several workers share the outbox; the lease moves ``next_attempt_at`` forward so
nobody else takes them meanwhile), renders each one from its stored facts and sends it outside
any transaction (the text as sent is written back to the notice), then records the
attempt and marks the notice sent, or schedules the next try (exponential backoff) or, after
``max_attempts``, marks it failed. A crash between sending and marking leaves the lease to
expire and the notice is sent again with the same Message-ID, never lost. Delivery trouble
never touches the transition that queued the notice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine import tables
from engine.clock import Clock
from engine.db import Database
from notifications.channels import Channel, DeliveryError
from notifications.outbox import NOTICE_TABLE
from notifications.render import with_bodies

__all__ = ["DispatchPolicy", "DispatchReport", "dispatch"]

log = logging.getLogger("regul.dispatcher")
_N = NOTICE_TABLE
_ATTEMPT = tables.NOTICE_ATTEMPT


@dataclass(frozen=True)
class DispatchPolicy:
    max_attempts: int = 5
    backoff: timedelta = timedelta(seconds=30)
    lease: timedelta = timedelta(minutes=2)
    batch_size: int = 50

    def delay(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th failure: backoff, 2×, 4×, … (capped at a day)."""
        delay: timedelta = self.backoff * (2 ** max(attempts - 1, 0))
        return min(delay, timedelta(days=1))


@dataclass
class DispatchReport:
    sent: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"sent": len(self.sent), "retried": len(self.retried), "failed": len(self.failed)}


def dispatch(
    db: Database,
    clock: Clock,
    channels: Mapping[str, Channel],
    policy: DispatchPolicy = DispatchPolicy(),
    *,
    max_batches: int | None = None,
) -> DispatchReport:
    """Deliver every notice due now, batch after batch."""
    report, batches = DispatchReport(), 0
    while max_batches is None or batches < max_batches:
        leased = _lease(db, clock.now(), policy)
        batches += 1
        for notice, until in leased:
            _deliver(db, clock, channels, policy, notice, report, until)
        if len(leased) < policy.batch_size:
            break
    return report


def _lease(db: Database, now: datetime, policy: DispatchPolicy) -> list[tuple[Any, datetime]]:
    with db.write() as conn:
        query = (
            sa.select(_N)
            .where(_N.c.status == "queued", _N.c.next_attempt_at <= now)
            .order_by(_N.c.next_attempt_at, _N.c.id)
            .limit(policy.batch_size)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(conn.execute(query))
        until = now + policy.lease
        if rows:
            conn.execute(
                _N.update().where(_N.c.id.in_([r.id for r in rows])).values(next_attempt_at=until)
            )
        return [(row, until) for row in rows]


def _deliver(
    db: Database,
    clock: Clock,
    channels: Mapping[str, Channel],
    policy: DispatchPolicy,
    notice: Any,
    report: DispatchReport,
    leased_until: datetime,
) -> None:
    channel = channels.get(notice.channel)
    error = ""
    rendered_now = not notice.body_text
    try:
        if channel is None:
            raise DeliveryError(f"no channel {notice.channel!r} is configured")
        notice = with_bodies(notice)  # rendered once, from the facts stored with it
        channel.send(notice)
    except DeliveryError as exc:
        error = str(exc)
    except Exception as exc:  # a channel's unexpected failure is a failed attempt, not a crash
        error = f"{type(exc).__name__}: {exc}"
    now = clock.now()
    attempts = notice.attempts + 1
    with db.write() as conn:
        conn.execute(
            _ATTEMPT.insert(),
            {
                "notice_id": notice.id,
                "at": now,
                "channel": notice.channel,
                "ok": not error,
                "error": error,
            },
        )
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if not error:
            values.update(status="sent", sent_at=now)
            if rendered_now:  # the text as it was sent stays with the notice
                values.update(body_text=notice.body_text, body_html=notice.body_html)
            report.sent.append(notice.reference)
        elif attempts >= policy.max_attempts:
            values.update(status="failed")
            report.failed.append(notice.reference)
            log.error("notice %s failed for good: %s", notice.reference, error)
        else:
            values.update(next_attempt_at=now + policy.delay(attempts))
            report.retried.append(notice.reference)
            log.warning("notice %s attempt %s failed: %s", notice.reference, attempts, error)
        # Only while our lease holds: a slower send must not overwrite what another worker,
        # which took over after the lease expired, has recorded since.
        still_ours = conn.execute(
            _N.update()
            .where(
                _N.c.id == notice.id, _N.c.status == "queued", _N.c.next_attempt_at == leased_until
            )
            .values(**values)
        ).rowcount
        if not still_ours:
            log.warning(
                "notice %s: lease lost during the send; left as the other worker set it",
                notice.reference,
            )
