"""directory details: establishment status and category, GHT support and logistics contacts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

New nullable columns on ``organisation`` (issue 10, seed 004 l.48 and l.79):

- ``status``: an establishment's legal status, ``public``, ``private`` or ``espic``;
- ``category``: an establishment's category, ``sanitaire`` (MCO, SLD, SSR, HAD…), ``ehpad`` or
  ``medico_social`` (another médico-social structure); every establishment keeps the kind
  ``hospital``, so cases open for an EHPAD as for a hospital;
- ``support``: on a GHT, the FINESS id of its support establishment;
- ``delivery_address``: where deliveries go (a GHT's support establishment, an establishment
  without a GHT);
- ``logistics_name``, ``logistics_email``, ``logistics_phone``: the logistics referent;
- ``deputy_name``, ``deputy_email``, ``deputy_phone``: the referent's deputy (suppléant).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = (
    "status",
    "category",
    "support",
    "delivery_address",
    "logistics_name",
    "logistics_email",
    "logistics_phone",
    "deputy_name",
    "deputy_email",
    "deputy_phone",
)


def upgrade() -> None:
    with op.batch_alter_table("organisation") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organisation") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
