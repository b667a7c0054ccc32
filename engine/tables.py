"""The tables as SQLAlchemy Core ``Table`` objects, for the statements the engine runs.

``engine/models.py`` (SQLModel) stays the schema's source: Alembic's migrations and their
autogenerate check read it. Building its classes costs SQLModel, the ORM and pydantic, about
as much again as SQLAlchemy itself at every start of ``regul``; the engine only ever needs the
``Table`` behind each class, so it takes them from here, declared in plain Core.
``tests/test_imports.py`` checks every table, column (type, nullability, default, key, index,
foreign key), index and constraint against the SQLModel metadata, and the DDL both compile to on
SQLite and PostgreSQL: a change to ``engine/models.py`` that is not made here fails it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import types, util
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.operators import OperatorType

__all__ = [
    "API_TOKEN",
    "AUDIT_EVENT",
    "AUDIT_HEAD",
    "CASE",
    "DEADLINE",
    "DEPARTMENT",
    "DESK_DRAFT",
    "ECMO_CONSOLE",
    "IDEMPOTENCY",
    "LOGIN_ATTEMPT",
    "MOVEMENT",
    "NOTICE",
    "NOTICE_ATTEMPT",
    "NOTICE_COUNTER",
    "OBLIGATION",
    "ORGANISATION",
    "REGION",
    "RESOURCE_REPORT",
    "SERVER_KEY",
    "SESSION",
    "STOCK_BALANCE",
    "USER",
    "ZONE",
    "UTCDateTime",
    "metadata",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(types.TypeDecorator[datetime]):
    """SQLModel's type for ``datetime`` fields: stores aware instants, returns them in UTC."""

    impl = types.DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def __repr__(self) -> str:
        return "UTCDateTime()"

    def coerce_compared_value(self, op: OperatorType | None, value: Any) -> types.TypeEngine[Any]:
        if isinstance(value, timedelta):
            return types.Interval()
        return self

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(
                "Datetime values must have timezone information. "
                "Use datetime.now(timezone.utc), or annotate the field with "
                "NaiveDatetime for naive storage."
            )
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:  # SQLite stores UTC without an offset
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONDocument(types.TypeDecorator[Any]):
    """``sa.JSON``, stored as ``JSONB`` on PostgreSQL: engine/models.py's
    ``sa.JSON().with_variant(JSONB(), "postgresql")``, the same DDL and driver types on both
    dialects, without importing the PostgreSQL dialect to declare the table (the variant needs
    the ``JSONB`` class at import, which loads the whole dialect, on SQLite too)."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB  # loaded with the dialect already

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())


def _json() -> Any:
    return JSONDocument()


def _str(name: str, *args: Any, nullable: bool = False, **kwargs: Any) -> sa.Column[Any]:
    return sa.Column(name, sa.String(), *args, nullable=nullable, **kwargs)


def _int(name: str, *args: Any, nullable: bool = False, **kwargs: Any) -> sa.Column[Any]:
    return sa.Column(name, sa.Integer(), *args, nullable=nullable, **kwargs)


def _bool(name: str, *, default: bool | None = None) -> sa.Column[Any]:
    return sa.Column(name, sa.Boolean(), nullable=False, default=default)


def _at(name: str, *, nullable: bool = False, index: bool = False) -> sa.Column[Any]:
    return sa.Column(name, UTCDateTime(), nullable=nullable, index=index)


def _data(name: str) -> sa.Column[Any]:
    return sa.Column(name, _json(), nullable=False, default=dict)


def _id() -> sa.Column[Any]:
    return sa.Column("id", sa.Integer(), primary_key=True, nullable=False)


_AVAILABLE = "bucket = 'available' AND quantity > 0"


class PartialIndex(sa.Index):
    """An index of the rows matching ``where``, on SQLite and PostgreSQL alike.

    The DDL of ``sa.Index(..., sqlite_where=text(where), postgresql_where=text(where))``
    (engine/models.py), but the condition is handed to a dialect's options when that dialect
    first reads them: given to the constructor, ``postgresql_where`` makes SQLAlchemy import the
    PostgreSQL dialect to validate it, on SQLite too (about a tenth of ``import sqlalchemy``
    at every start of ``regul``: bench/startup.py).
    """

    DIALECTS = ("sqlite", "postgresql")

    def __init__(self, name: str, *columns: str, where: str, **kwargs: Any) -> None:
        self.where = where
        super().__init__(name, *columns, **kwargs)

    @util.memoized_property
    def dialect_options(self) -> util.PopulateDict[str, Any]:
        def options(dialect_name: str) -> Any:
            found = self._kw_reg_for_dialect_cls(dialect_name)
            if dialect_name in self.DIALECTS:
                found["where"] = sa.text(self.where)
            return found

        return util.PopulateDict(options)


OPEN_ONLY = "status = 'open'"


ZONE = sa.Table(
    "zone", metadata,
    _str("code", primary_key=True), _str("name"), _str("seat_region"),
)  # fmt: skip

REGION = sa.Table(
    "region", metadata,
    _str("code", primary_key=True), _str("insee"), _str("name"),
    _str("zone", sa.ForeignKey("zone.code")),
)  # fmt: skip

DEPARTMENT = sa.Table(
    "department", metadata,
    _str("code", primary_key=True), _str("name"), _str("region", sa.ForeignKey("region.code")),
)  # fmt: skip

ORGANISATION = sa.Table(
    "organisation", metadata,
    _str("id", primary_key=True),
    _str("kind", index=True),
    _str("name"),
    _str("region", sa.ForeignKey("region.code"), nullable=True),
    _str("zone", sa.ForeignKey("zone.code"), nullable=True),
    _str("department", sa.ForeignKey("department.code"), nullable=True),
    _str("ght", nullable=True, index=True),
    _str("email", default=""),
    _str("status", nullable=True),
    _str("category", nullable=True),
    _str("support", nullable=True),
    _str("delivery_address", nullable=True),
    _str("logistics_name", nullable=True),
    _str("logistics_email", nullable=True),
    _str("logistics_phone", nullable=True),
    _str("deputy_name", nullable=True),
    _str("deputy_email", nullable=True),
    _str("deputy_phone", nullable=True),
)  # fmt: skip

USER = sa.Table(
    "regul_user", metadata,
    _str("login", primary_key=True),
    _str("name"),
    _str("role"),
    _str("org", sa.ForeignKey("organisation.id")),
    _bool("active", default=True),
    _str("password_hash", nullable=True),
)  # fmt: skip

CASE = sa.Table(
    "regul_case", metadata,
    _id(),
    _str("kind"),
    _str("state"),
    _str("level", nullable=True),
    _bool("final", default=False),
    _int("version"),
    _str("org", sa.ForeignKey("organisation.id"), index=True),
    _str("region"),
    _str("zone"),
    _str("department"),
    _str("ght", nullable=True),
    _data("fields"),
    _str("opened_by"),
    _at("opened_at"),
    _at("updated_at"),
    _int("audit_seq", default=0),
    _str("audit_hash", default=""),
    _bool("incident", default=False),
    _bool("on_hold", default=False),
    sa.Index("ix_case_kind_state", "kind", "state"),
    sa.Index("ix_case_region_state", "region", "state"),
)  # fmt: skip

AUDIT_EVENT = sa.Table(
    "audit_event", metadata,
    _id(),
    _int("case_id", nullable=True),
    _int("seq"),
    _at("at", index=True),
    _str("actor", index=True),
    _str("role"),
    _str("org", index=True),
    _str("action"),
    _str("from_state", nullable=True),
    _str("to_state", nullable=True),
    _int("version"),
    _str("reason", default=""),
    _data("data"),
    _str("prev_hash"),
    _str("hash"),
    _str("stream", nullable=True),  # a holder's stream (0009): ``holder:<org id>``
    sa.UniqueConstraint("case_id", "seq", name="uq_audit_event_case_seq"),
    sa.Index("uq_audit_event_stream_seq", "stream", "seq", unique=True),
)  # fmt: skip

AUDIT_HEAD = sa.Table(
    "audit_head", metadata,
    _str("stream", primary_key=True), _int("seq"), _str("hash"),
)  # fmt: skip

DEADLINE = sa.Table(
    "deadline", metadata,
    _id(),
    _int("case_id", sa.ForeignKey("regul_case.id")),
    _str("state"),
    _int("version"),
    _at("due_at"),
    _at("next_at"),
    _int("reminders", default=0),
    _str("action"),
    _str("status", default="open"),
    _at("created_at"),
    _at("closed_at", nullable=True),
    PartialIndex("uq_deadline_open_case", "case_id", unique=True, where=OPEN_ONLY),
    PartialIndex("ix_deadline_open_next", "next_at", where=OPEN_ONLY),
)  # fmt: skip

IDEMPOTENCY = sa.Table(
    "idempotency", metadata,
    _str("key", primary_key=True),
    _str("actor"),
    _str("request_hash"),
    _int("case_id", nullable=True),
    _data("result"),
    _at("created_at"),
)  # fmt: skip

NOTICE_COUNTER = sa.Table(
    "notice_counter", metadata,
    _str("series", primary_key=True), _int("year", primary_key=True), _int("last"),
)  # fmt: skip

NOTICE = sa.Table(
    "notice", metadata,
    _id(),
    _str("reference", unique=True),
    _str("series"),
    _int("year"),
    _int("number"),
    _str("kind"),
    _int("case_id", sa.ForeignKey("regul_case.id"), nullable=True, index=True),
    _int("event_seq"),
    _str("stream", nullable=True),  # a holder's notice (0009): its stream, no case
    _str("message_id", unique=True),
    _str("channel"),
    _str("subject"),
    _str("body_text"),
    _str("body_html"),
    _data("recipients"),
    _data("facts"),  # the rendering context (0008): rendered once, at dispatch
    _str("status", default="queued"),
    _int("attempts", default=0),
    _at("next_attempt_at"),
    _str("last_error", default=""),
    _at("created_at"),
    _at("sent_at", nullable=True),
    sa.UniqueConstraint("series", "year", "number", name="uq_notice_series_year_number"),
    PartialIndex("ix_notice_queued_next", "next_attempt_at", where="status = 'queued'"),
)  # fmt: skip

NOTICE_ATTEMPT = sa.Table(
    "notice_attempt", metadata,
    _id(),
    _int("notice_id", sa.ForeignKey("notice.id"), index=True),
    _at("at"),
    _str("channel"),
    _bool("ok"),
    _str("error", default=""),
)  # fmt: skip

SESSION = sa.Table(
    "regul_session", metadata,
    _str("id", primary_key=True),
    _str("login", sa.ForeignKey("regul_user.login"), index=True),
    _str("csrf"),
    _at("created_at"),
    _at("last_seen_at"),
    _at("ended_at", nullable=True),
)  # fmt: skip

API_TOKEN = sa.Table(
    "api_token", metadata,
    _id(),
    _str("digest", unique=True),
    _str("login", sa.ForeignKey("regul_user.login"), index=True),
    _str("label"),
    _at("created_at"),
    _at("revoked_at", nullable=True),
)  # fmt: skip


LOGIN_ATTEMPT = sa.Table(
    "login_attempt", metadata,
    _str("login", primary_key=True),
    _str("client", primary_key=True),
    _int("failures", default=0),
    _at("blocked_until", nullable=True),
    _at("since"),
)  # fmt: skip

DESK_DRAFT = sa.Table(
    "desk_draft", metadata,
    _id(),
    _str("session_id", index=True),
    _str("login"),
    _str("path"),
    _data("form"),
    _at("created_at"),
)  # fmt: skip

SERVER_KEY = sa.Table(
    "server_key", metadata,
    _str("name", primary_key=True),
    _str("value"),
)  # fmt: skip


# -- resources (0009): balances, movements, period reports, obligations --------------------------

STOCK_BALANCE = sa.Table(
    "stock_balance", metadata,
    _str("holder", sa.ForeignKey("organisation.id"), primary_key=True),
    _str("item", primary_key=True),
    _str("bucket", primary_key=True),
    _int("quantity"),
    _at("updated_at"),
    sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
    # what is available, found without walking the emptied rows (0010, the ECMO fleet)
    PartialIndex("ix_stock_balance_available", "holder", "item", where=_AVAILABLE),
    # 0011: who holds an item in a bucket (transfer candidates: free beds of a category)
    sa.Index("ix_stock_balance_item_bucket", "item", "bucket", "holder", "quantity"),
)  # fmt: skip

MOVEMENT = sa.Table(
    "movement", metadata,
    _id(),
    _at("at"),
    _str("holder", sa.ForeignKey("organisation.id")),
    _str("item"),
    _str("bucket"),
    _int("delta"),
    _str("kind"),
    _int("case_id", nullable=True, index=True),
    _int("report_id", nullable=True),
    _int("stream_seq"),
    _str("actor"),
    sa.CheckConstraint("delta <> 0", name="delta_not_zero"),
    sa.Index("ix_movement_holder_item", "holder", "item"),
)  # fmt: skip

RESOURCE_REPORT = sa.Table(
    "resource_report", metadata,
    _id(),
    _str("kind"),
    _str("holder", sa.ForeignKey("organisation.id")),
    _str("period"),
    _int("version"),
    _at("at"),
    _str("actor"),
    _int("stream_seq"),
    _data("data"),
    sa.UniqueConstraint("kind", "holder", "period", "version", name="uq_resource_report_version"),
    sa.Index("ix_resource_report_kind_period", "kind", "period"),
)  # fmt: skip

OBLIGATION = sa.Table(
    "obligation", metadata,
    _id(),
    _str("kind"),
    _str("holder", sa.ForeignKey("organisation.id")),
    _str("period"),
    _at("due_at"),
    _at("next_at"),
    _int("reminders", default=0),
    _bool("escalated", default=False),
    _str("status", default="open"),  # open | late | met
    _at("created_at"),
    _at("closed_at", nullable=True),
    _int("report_id", nullable=True),
    sa.UniqueConstraint("kind", "holder", "period", name="uq_obligation_period"),
    PartialIndex("ix_obligation_open_next", "next_at", where=OPEN_ONLY),
)  # fmt: skip

# -- the ECMO fleet (0010) --------------------------------------------------------------------

ECMO_CONSOLE = sa.Table(
    "ecmo_console", metadata,
    _str("serial", primary_key=True),
    _str("model"),
    _str("owner", sa.ForeignKey("organisation.id"), index=True),
    _at("registered_at"),
)  # fmt: skip
