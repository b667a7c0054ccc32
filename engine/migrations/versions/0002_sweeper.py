"""Deadline sweeper: reminders, incidents and holds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Adds the case's incident and hold flags, and to each deadline the time the sweeper must next
look at it (a reminder's time, else the due time) with the count of reminders recorded.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    with op.batch_alter_table("regul_case", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("incident", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("on_hold", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("deadline", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("reminders", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute("UPDATE deadline SET next_at = due_at")
    with op.batch_alter_table("deadline", schema=None) as batch_op:
        batch_op.alter_column(
            "next_at", existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False
        )
        batch_op.drop_index("ix_deadline_open_due", sqlite_where=_OPEN, postgresql_where=_OPEN)
        batch_op.create_index(
            "ix_deadline_open_next",
            ["next_at"],
            unique=False,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        )


def downgrade() -> None:
    with op.batch_alter_table("deadline", schema=None) as batch_op:
        batch_op.drop_index("ix_deadline_open_next", sqlite_where=_OPEN, postgresql_where=_OPEN)
        batch_op.create_index(
            "ix_deadline_open_due",
            ["due_at"],
            unique=False,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        )
        batch_op.drop_column("reminders")
        batch_op.drop_column("next_at")
    with op.batch_alter_table("regul_case", schema=None) as batch_op:
        batch_op.drop_column("on_hold")
        batch_op.drop_column("incident")
