"""beds: an index of the balances by item and bucket (transfer candidates)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

Issue 13 lists the establishments holding a free bed of a category (``stock_balance`` rows of
item ``bed:<category>``, bucket ``available``, quantity > 0) over a national directory: the
primary key starts with the holder, so without this index the listing scans every balance.
The index covers the query (holder and quantity included).
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"  # after the merge of ecmo11 (0010)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_stock_balance_item_bucket",
        "stock_balance",
        ["item", "bucket", "holder", "quantity"],
    )


def downgrade() -> None:
    op.drop_index("ix_stock_balance_item_bucket", table_name="stock_balance")
