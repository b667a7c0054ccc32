"""notice facts: a notice's rendering context, stored in the transaction of its event

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

A notice used to be rendered (text and HTML, two Jinja renders) inside the transaction of the
event that caused it. It now stores its facts (the JSON rendering context: issuer, recipients,
the case and the event in French) and is rendered once, at dispatch (and by ``regul notices
show`` / ``preview``); the dispatcher writes the text it sent into ``body_text`` and
``body_html``, which stay empty until then. Rows written before this revision keep their
rendered bodies and get empty facts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"  # after the merge of branch directory (0007)
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.add_column(
        "notice", sa.Column("facts", json, nullable=False, server_default=sa.text("'{}'"))
    )


def downgrade() -> None:
    with op.batch_alter_table("notice") as batch:
        batch.drop_column("facts")
