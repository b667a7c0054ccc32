"""resources: balances, movements, period reports, obligations; holder streams in the log

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

The ledgers of DESIGN.md "Resources" (issues 11-13):

- ``stock_balance``: a holder's quantity of an item in a bucket (available, reserved, on
  hand...), kept in the transaction of each movement; ``CHECK (quantity >= 0)`` is the last
  guard against an overdraw;
- ``movement``: one row per leg of a movement, with the seq of the event that records it in
  the holder's audit stream;
- ``resource_report``: a holder's report for a period, one row per version;
- ``obligation``: a report expected of a holder for a period, swept until it is met (partial
  index on ``next_at`` of the open rows, as for deadlines);
- ``audit_event.stream``: the holder streams (``holder:<org id>``), chained like a case's,
  their heads in ``audit_head``; ``(stream, seq)`` unique;
- ``notice.case_id`` nullable and ``notice.stream``: a notice about a holder (a missing report,
  an alert) has no case.

``audit_event`` gets its column by ``ALTER TABLE ADD COLUMN`` (no batch copy on SQLite, which
would drop its append-only triggers).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_OPEN = "status = 'open'"
# SQLite's guard against INSERT OR REPLACE (0006) compared (case_id, seq): every holder event
# (case_id NULL) would collide with the security stream's. It now compares the stream too.
_NO_REPLACE = """
CREATE TRIGGER audit_event_no_replace BEFORE INSERT ON audit_event
WHEN EXISTS (SELECT 1 FROM audit_event WHERE id = NEW.id)
  OR EXISTS (SELECT 1 FROM audit_event
             WHERE case_id IS NEW.case_id AND stream IS NEW.stream AND seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit_event is append-only (an event cannot be replaced)'); END
"""
_NO_REPLACE_0006 = """
CREATE TRIGGER audit_event_no_replace BEFORE INSERT ON audit_event
WHEN EXISTS (SELECT 1 FROM audit_event WHERE id = NEW.id)
  OR EXISTS (SELECT 1 FROM audit_event WHERE case_id IS NEW.case_id AND seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit_event is append-only (an event cannot be replaced)'); END
"""


def _str(name: str, *args: object, nullable: bool = False, **kw: object) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(), *args, nullable=nullable, **kw)


def _at(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.add_column("audit_event", _str("stream", nullable=True))
    op.create_index("uq_audit_event_stream_seq", "audit_event", ["stream", "seq"], unique=True)
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_replace")
        op.execute(_NO_REPLACE)
    with op.batch_alter_table("notice") as batch:
        batch.alter_column("case_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(_str("stream", nullable=True))
    op.create_table(
        "stock_balance",
        _str("holder", sa.ForeignKey("organisation.id"), primary_key=True),
        _str("item", primary_key=True),
        _str("bucket", primary_key=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        _at("updated_at"),
        sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
    )
    op.create_table(
        "movement",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        _at("at"),
        _str("holder", sa.ForeignKey("organisation.id")),
        _str("item"),
        _str("bucket"),
        sa.Column("delta", sa.Integer(), nullable=False),
        _str("kind"),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("report_id", sa.Integer(), nullable=True),
        sa.Column("stream_seq", sa.Integer(), nullable=False),
        _str("actor"),
        sa.CheckConstraint("delta <> 0", name="delta_not_zero"),
    )
    op.create_index("ix_movement_case_id", "movement", ["case_id"])
    op.create_index("ix_movement_holder_item", "movement", ["holder", "item"])
    op.create_table(
        "resource_report",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        _str("kind"),
        _str("holder", sa.ForeignKey("organisation.id")),
        _str("period"),
        sa.Column("version", sa.Integer(), nullable=False),
        _at("at"),
        _str("actor"),
        sa.Column("stream_seq", sa.Integer(), nullable=False),
        sa.Column("data", json, nullable=False),
        sa.UniqueConstraint(
            "kind", "holder", "period", "version", name="uq_resource_report_version"
        ),
    )
    op.create_index("ix_resource_report_kind_period", "resource_report", ["kind", "period"])
    op.create_table(
        "obligation",
        sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
        _str("kind"),
        _str("holder", sa.ForeignKey("organisation.id")),
        _str("period"),
        _at("due_at"),
        _at("next_at"),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        _str("status"),
        _at("created_at"),
        _at("closed_at", nullable=True),
        sa.Column("report_id", sa.Integer(), nullable=True),
        sa.UniqueConstraint("kind", "holder", "period", name="uq_obligation_period"),
    )
    op.create_index(
        "ix_obligation_open_next",
        "obligation",
        ["next_at"],
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )
    # regul_app gets the new tables by 0006's default privileges


def downgrade() -> None:
    op.drop_table("obligation")
    op.drop_table("resource_report")
    op.drop_table("movement")
    op.drop_table("stock_balance")
    with op.batch_alter_table("notice") as batch:
        batch.drop_column("stream")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_replace")
        op.execute(_NO_REPLACE_0006)
    op.drop_index("uq_audit_event_stream_seq", table_name="audit_event")
    op.drop_column("audit_event", "stream")
