"""The tables: directory, cases, the audit log, deadlines and idempotency records.

Declared with SQLModel so that Alembic sees one metadata; the engine's hot path writes them
with SQLAlchemy Core statements on these tables (no identity map, no per-case objects kept).
The schema itself is created only by the Alembic migrations in ``engine/migrations``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

__all__ = [
    "ApiToken",
    "AuditEvent",
    "AuditHead",
    "Case",
    "Deadline",
    "Department",
    "DeskDraft",
    "IdempotencyRecord",
    "LoginAttempt",
    "Movement",
    "Notice",
    "NoticeAttempt",
    "NoticeCounter",
    "Obligation",
    "Organisation",
    "Region",
    "ResourceReport",
    "ServerKey",
    "Session",
    "StockBalance",
    "User",
    "Zone",
    "metadata",
]

metadata = SQLModel.metadata
metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _json() -> Any:
    return sa.JSON().with_variant(JSONB(), "postgresql")


class Zone(SQLModel, table=True):
    code: str = Field(primary_key=True)
    name: str
    seat_region: str


class Region(SQLModel, table=True):
    code: str = Field(primary_key=True)
    insee: str
    name: str
    zone: str = Field(foreign_key="zone.code")


class Department(SQLModel, table=True):
    code: str = Field(primary_key=True)
    name: str
    region: str = Field(foreign_key="region.code")


class Organisation(SQLModel, table=True):
    id: str = Field(primary_key=True)
    kind: str = Field(index=True)
    name: str
    region: str | None = Field(default=None, foreign_key="region.code")
    zone: str | None = Field(default=None, foreign_key="zone.code")
    department: str | None = Field(default=None, foreign_key="department.code")
    ght: str | None = Field(default=None, index=True)
    email: str = ""
    status: str | None = None
    category: str | None = None
    support: str | None = None
    delivery_address: str | None = None
    logistics_name: str | None = None
    logistics_email: str | None = None
    logistics_phone: str | None = None
    deputy_name: str | None = None
    deputy_email: str | None = None
    deputy_phone: str | None = None


class User(SQLModel, table=True):
    __tablename__ = "regul_user"

    login: str = Field(primary_key=True)
    name: str
    role: str
    org: str = Field(foreign_key="organisation.id")
    active: bool = True
    password_hash: str | None = None  # argon2id; None: the user cannot log in to the desk


class Case(SQLModel, table=True):
    __tablename__ = "regul_case"
    __table_args__ = (
        sa.Index("ix_case_kind_state", "kind", "state"),
        sa.Index("ix_case_region_state", "region", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    state: str
    level: str | None = None
    final: bool = False
    version: int
    org: str = Field(foreign_key="organisation.id", index=True)
    region: str
    zone: str
    department: str
    ght: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict, sa_type=_json())
    opened_by: str
    opened_at: datetime
    updated_at: datetime
    audit_seq: int = 0
    audit_hash: str = ""
    incident: bool = False  # past the top of its ladder and nobody has acted yet
    on_hold: bool = False  # awaiting information; its deadline is suspended


class AuditEvent(SQLModel, table=True):
    """One line of evidence. Append-only: database triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_event"
    __table_args__ = (
        sa.UniqueConstraint("case_id", "seq", name="uq_audit_event_case_seq"),
        sa.Index("uq_audit_event_stream_seq", "stream", "seq", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None)
    seq: int
    at: datetime = Field(index=True)
    actor: str = Field(index=True)
    role: str
    org: str = Field(index=True)
    action: str
    from_state: str | None = None
    to_state: str | None = None
    version: int
    reason: str = ""
    data: dict[str, Any] = Field(default_factory=dict, sa_type=_json())
    prev_hash: str
    hash: str
    stream: str | None = None  # a holder's stream (0009): ``holder:<org id>``


class AuditHead(SQLModel, table=True):
    """Last sequence and hash of each audit stream that has no case row to hold them."""

    __tablename__ = "audit_head"

    stream: str = Field(primary_key=True)
    seq: int
    hash: str


class Deadline(SQLModel, table=True):
    """A durable deadline: swept, never a timer. At most one 'open' row per case."""

    __table_args__ = (
        sa.Index(
            "uq_deadline_open_case",
            "case_id",
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        ),
        sa.Index(
            "ix_deadline_open_next",
            "next_at",
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="regul_case.id")
    state: str
    version: int
    due_at: datetime
    next_at: datetime  # when the sweeper must next look: a reminder's time, else due_at
    reminders: int = 0  # how many reminder fractions were recorded
    action: str  # a trigger to fire, "incident", "overdue" or "remind"
    status: str = "open"  # open | superseded | held | fired | noop
    created_at: datetime
    closed_at: datetime | None = None


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency"

    key: str = Field(primary_key=True)
    actor: str
    request_hash: str
    case_id: int | None = None
    result: dict[str, Any] = Field(default_factory=dict, sa_type=_json())
    created_at: datetime


class NoticeCounter(SQLModel, table=True):
    """The last reference number of each notice series and year (gapless: same transaction)."""

    __tablename__ = "notice_counter"

    series: str = Field(primary_key=True)
    year: int = Field(primary_key=True)
    last: int


class Notice(SQLModel, table=True):
    """A rendered notice in the outbox, queued in the transaction of the event that caused it."""

    __tablename__ = "notice"
    __table_args__ = (
        sa.UniqueConstraint("series", "year", "number", name="uq_notice_series_year_number"),
        sa.Index(
            "ix_notice_queued_next",
            "next_attempt_at",
            sqlite_where=sa.text("status = 'queued'"),
            postgresql_where=sa.text("status = 'queued'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(unique=True)
    series: str
    year: int
    number: int
    kind: str
    case_id: int | None = Field(default=None, foreign_key="regul_case.id", index=True)
    event_seq: int
    stream: str | None = None  # a holder's notice (0009): its stream, no case
    message_id: str = Field(unique=True)
    channel: str
    subject: str
    body_text: str
    body_html: str
    recipients: dict[str, Any] = Field(default_factory=dict, sa_type=_json())
    # the rendering context (0008); the bodies stay empty until the dispatcher renders them
    facts: dict[str, Any] = Field(default_factory=dict, sa_type=_json())
    status: str = "queued"  # queued | sent | failed
    attempts: int = 0
    next_attempt_at: datetime
    last_error: str = ""
    created_at: datetime
    sent_at: datetime | None = None


class NoticeAttempt(SQLModel, table=True):
    """One delivery attempt of a notice, successful or not."""

    __tablename__ = "notice_attempt"

    id: int | None = Field(default=None, primary_key=True)
    notice_id: int = Field(foreign_key="notice.id", index=True)
    at: datetime
    channel: str
    ok: bool
    error: str = ""


class Session(SQLModel, table=True):
    """A desk session: the cookie carries a random secret, the row only its SHA-256."""

    __tablename__ = "regul_session"

    id: str = Field(primary_key=True)  # sha256 hex of the cookie's secret
    login: str = Field(foreign_key="regul_user.login", index=True)
    csrf: str  # the token every form of this session must carry
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None = None


class ApiToken(SQLModel, table=True):
    """A system's API token: shown once, stored as its SHA-256, revocable."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(unique=True)  # sha256 hex of the secret
    login: str = Field(foreign_key="regul_user.login", index=True)
    label: str
    created_at: datetime
    revoked_at: datetime | None = None


class LoginAttempt(SQLModel, table=True):
    """Failed desk logins of one login name from one client address (``*``: from all of them).

    The counter a login is refused by: incremented before the password is checked, in the
    transaction that decides whether to check it (the audit log keeps the evidence).
    """

    __tablename__ = "login_attempt"

    login: str = Field(primary_key=True)
    client: str = Field(primary_key=True)
    failures: int = 0
    blocked_until: datetime | None = None
    since: datetime  # the start of the counting window


class DeskDraft(SQLModel, table=True):
    """A desk form posted after its session ended, kept for its author's next login (1 hour)."""

    __tablename__ = "desk_draft"

    id: int | None = Field(default=None, primary_key=True)
    session_id: str = Field(index=True)  # the ended session's, then the new one's
    login: str
    path: str  # the page the form belongs to, e.g. /cases/ECMO-000001
    form: dict[str, Any] = Field(default_factory=dict, sa_type=_json())  # field: value
    created_at: datetime


class ServerKey(SQLModel, table=True):
    """Random keys shared by every process of one database (the login form's CSRF tokens)."""

    __tablename__ = "server_key"

    name: str = Field(primary_key=True)
    value: str


# -- resources (0009) ---------------------------------------------------------------------------


class StockBalance(SQLModel, table=True):
    """A holder's balance of one item in one bucket, kept by its movements; never negative."""

    __tablename__ = "stock_balance"
    __table_args__ = (
        sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        # what is available, found without walking the emptied rows (0010, the ECMO fleet)
        sa.Index(
            "ix_stock_balance_available",
            "holder",
            "item",
            sqlite_where=sa.text("bucket = 'available' AND quantity > 0"),
            postgresql_where=sa.text("bucket = 'available' AND quantity > 0"),
        ),
        sa.Index("ix_stock_balance_item_bucket", "item", "bucket", "holder", "quantity"),
    )

    holder: str = Field(foreign_key="organisation.id", primary_key=True)
    item: str = Field(primary_key=True)
    bucket: str = Field(primary_key=True)
    quantity: int
    updated_at: datetime


class Movement(SQLModel, table=True):
    """One leg of a recorded movement (its event is in the holder's audit stream)."""

    __tablename__ = "movement"
    __table_args__ = (
        sa.CheckConstraint("delta <> 0", name="delta_not_zero"),
        sa.Index("ix_movement_holder_item", "holder", "item"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime
    holder: str = Field(foreign_key="organisation.id")
    item: str
    bucket: str
    delta: int
    kind: str  # the event's action: report, reserve, ship, receive, loan, return, adjust...
    case_id: int | None = Field(default=None, index=True)
    report_id: int | None = None
    stream_seq: int
    actor: str


class ResourceReport(SQLModel, table=True):
    """One version of a holder's report for a period (a week, a day); all versions kept."""

    __tablename__ = "resource_report"
    __table_args__ = (
        sa.UniqueConstraint(
            "kind", "holder", "period", "version", name="uq_resource_report_version"
        ),
        sa.Index("ix_resource_report_kind_period", "kind", "period"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    holder: str = Field(foreign_key="organisation.id")
    period: str
    version: int
    at: datetime
    actor: str
    stream_seq: int
    data: dict[str, Any] = Field(default_factory=dict, sa_type=_json())


class Obligation(SQLModel, table=True):
    """A report expected of a holder for a period: swept like a deadline until it is met."""

    __tablename__ = "obligation"
    __table_args__ = (
        sa.UniqueConstraint("kind", "holder", "period", name="uq_obligation_period"),
        sa.Index(
            "ix_obligation_open_next",
            "next_at",
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    holder: str = Field(foreign_key="organisation.id")
    period: str
    due_at: datetime
    next_at: datetime
    reminders: int = 0
    escalated: bool = False
    status: str = "open"  # open | late | met
    created_at: datetime
    closed_at: datetime | None = None
    report_id: int | None = None


# -- the ECMO fleet (0010) --------------------------------------------------------------------


class EcmoConsole(SQLModel, table=True):
    """An ECMO console's static attributes; where it is and its status are in the ledger
    (item ``console:<serial>``, quantity 1 in one bucket of its owner)."""

    __tablename__ = "ecmo_console"

    serial: str = Field(primary_key=True)
    model: str
    owner: str = Field(foreign_key="organisation.id", index=True)
    registered_at: datetime
