"""ecmo fleet: the consoles' registry (serial, model, owner)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Issue 11: a console's static attributes. Its status and whereabouts are in the ledger of
0009 (item ``console:<serial>``, quantity 1 in one bucket of its owner's ``stock_balance``),
so the same constraint that keeps a balance from going below zero refuses a console
reserved twice.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
_AVAILABLE = "bucket = 'available' AND quantity > 0"


def upgrade() -> None:
    op.create_table(
        "ecmo_console",
        sa.Column("serial", sqlmodel.sql.sqltypes.AutoString(), primary_key=True, nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "owner",
            sqlmodel.sql.sqltypes.AutoString(),
            sa.ForeignKey("organisation.id"),
            nullable=False,
        ),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ecmo_console_owner", "ecmo_console", ["owner"])
    # the consoles available in a region, found without walking the rows a reservation
    # emptied (a debited balance stays as a row at 0)
    op.create_index(
        "ix_stock_balance_available",
        "stock_balance",
        ["holder", "item"],
        sqlite_where=sa.text(_AVAILABLE),
        postgresql_where=sa.text(_AVAILABLE),
    )


def downgrade() -> None:
    op.drop_index("ix_stock_balance_available", table_name="stock_balance")
    op.drop_index("ix_ecmo_console_owner", table_name="ecmo_console")
    op.drop_table("ecmo_console")
