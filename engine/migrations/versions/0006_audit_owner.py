"""audit log against its owner: no REPLACE path on SQLite, a non-owner role on PostgreSQL

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02

SQLite: ``INSERT OR REPLACE`` (and ``REPLACE INTO``) deletes the event it collides with without
firing the DELETE trigger (unless ``recursive_triggers`` is on, which the engine now sets, but
another connection need not): a BEFORE INSERT trigger refuses any insert whose id, or whose
(case, sequence), already exists, so an event can no longer be rewritten past the append-only
triggers.

PostgreSQL: the table owner (or a superuser) can disable triggers, drop them, or set
``session_replication_role = replica``. The role ``regul_app`` is created (when the migrating
role may create roles) and granted what Régul needs and nothing more: on ``audit_event`` only
SELECT and INSERT; no ownership, so no trigger can be dropped or disabled, and as a non-superuser
it cannot change ``session_replication_role``. Run ``regul init`` as the owner and everything
else as ``regul_app`` (README, "Growing past one machine"). Tables created later by the owner in
this schema are granted to it by default privileges.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APP_ROLE = "regul_app"

_SQLITE_NO_REPLACE = """
CREATE TRIGGER audit_event_no_replace BEFORE INSERT ON audit_event
WHEN EXISTS (SELECT 1 FROM audit_event WHERE id = NEW.id)
  OR EXISTS (SELECT 1 FROM audit_event WHERE case_id IS NEW.case_id AND seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit_event is append-only (an event cannot be replaced)'); END
"""

_PG_ROLE = f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    BEGIN
      CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    EXCEPTION
      WHEN duplicate_object OR unique_violation THEN NULL;  -- created meanwhile elsewhere
      WHEN insufficient_privilege THEN
        RAISE NOTICE 'cannot create role {APP_ROLE}: ask a superuser to CREATE ROLE {APP_ROLE} '
                     'LOGIN and run regul init again';
    END;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO {APP_ROLE}', current_schema());
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I '
                   'TO {APP_ROLE}', current_schema());
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO {APP_ROLE}',
                   current_schema());
    REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_event FROM {APP_ROLE};
    REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {APP_ROLE};
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, '
                   'DELETE ON TABLES TO {APP_ROLE}', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES '
                   'TO {APP_ROLE}', current_schema());
  END IF;
END $$
"""

_PG_REVOKE = f"""
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM {APP_ROLE}',
                   current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON SEQUENCES '
                   'FROM {APP_ROLE}', current_schema());
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM {APP_ROLE}', current_schema());
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM {APP_ROLE}', current_schema());
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {APP_ROLE}', current_schema());
  END IF;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_SQLITE_NO_REPLACE)
    else:
        op.execute(_PG_ROLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_replace")
    else:
        op.execute(_PG_REVOKE)  # the role stays: other databases of the cluster may use it
