"""accounts: passwords, desk sessions, API tokens

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

A password hash (argon2id) per user, the desk's sessions and the API tokens of systems. The
secrets themselves are never stored: sessions and tokens keep only their SHA-256.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("regul_user") as batch_op:
        batch_op.add_column(
            sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    op.create_table(
        "regul_session",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("login", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("csrf", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["login"], ["regul_user.login"], name=op.f("fk_regul_session_login_regul_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_regul_session")),
    )
    op.create_index(op.f("ix_regul_session_login"), "regul_session", ["login"])
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("login", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["login"], ["regul_user.login"], name=op.f("fk_api_token_login_regul_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("digest", name=op.f("uq_api_token_digest")),
    )
    op.create_index(op.f("ix_api_token_login"), "api_token", ["login"])


def downgrade() -> None:
    op.drop_index(op.f("ix_api_token_login"), table_name="api_token")
    op.drop_table("api_token")
    op.drop_index(op.f("ix_regul_session_login"), table_name="regul_session")
    op.drop_table("regul_session")
    with op.batch_alter_table("regul_user") as batch_op:
        batch_op.drop_column("password_hash")
