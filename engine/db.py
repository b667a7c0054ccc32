"""The database boundary: one SQLAlchemy engine, write transactions that lock, and migrations.

SQLite runs in WAL mode; a write transaction starts with ``BEGIN IMMEDIATE`` so that the
write lock is taken before the case is read (no 'database is locked' half-way through).
PostgreSQL write transactions lock the case row with ``SELECT … FOR UPDATE`` (in the runner).
Driver errors become a ``StorageError`` that says what to check. The schema is created and
upgraded only by the Alembic migrations shipped in ``engine/migrations``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from engine.errors import InputError, StorageError

__all__ = ["HEAD_REVISION", "Database", "normalise_url"]

HEAD_REVISION = "0006"
_MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept the usual spellings; PostgreSQL always goes through psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """One engine per process; ``write()`` and ``read()`` give a connection in a transaction."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 5) -> None:
        self.url = normalise_url(url)
        self.dialect = self.url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect not in {"sqlite", "postgresql"}:
            raise StorageError(
                f"unsupported database URL {url!r}: use sqlite:///path or postgresql://host/db"
            )
        kwargs: dict[str, Any] = {}
        if self.dialect == "postgresql":
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False)
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, sqlite_synchronous)
        self._writer = self.engine.execution_options(regul_write=True)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def describe(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that holds the write lock on SQLite; commits on success."""
        with self._translated(), self._writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._translated(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            raise StorageError(self._explain(exc)) from exc
        except DBAPIError as exc:
            if "append-only" in str(exc.orig):
                raise StorageError(f"refused by the database: {exc.orig}") from exc
            if isinstance(exc, DataError) and "0x00" in str(exc.orig):
                # PostgreSQL text cannot hold U+0000 ("cannot contain NUL (0x00) bytes")
                raise InputError(
                    "a value contains the NUL character (U+0000), which no text may hold: remove it"
                ) from exc
            raise

    def _explain(self, exc: OperationalError) -> str:
        text = str(exc.orig)
        where = self.describe()
        if "readonly" in text or "read-only" in text:
            return (
                f"the database {where} is read-only: give the process write access to the "
                "file and its folder, or point REGUL_DATABASE_URL elsewhere"
            )
        if "no such table" in text or "does not exist" in text:
            return f"the database {where} has no Régul schema: run 'regul init'"
        if "unable to open" in text:
            return f"cannot open the database {where}: check that its folder exists and is writable"
        if "locked" in text:
            return f"the database {where} stayed locked too long: retry the command"
        first = text.strip().splitlines()[0] if text.strip() else type(exc.orig).__name__
        return (
            f"cannot reach the database {where} ({first}): check REGUL_DATABASE_URL and that "
            "the server is running"
        )

    def migrate(self) -> str | None:
        """Create or upgrade the schema to the newest migration; return the old revision."""
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext

        with self._translated(), self.engine.begin() as conn:
            before = MigrationContext.configure(conn).get_current_revision()
            config = Config()
            config.set_main_option("script_location", str(_MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        return before

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.read() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def require_schema(self) -> None:
        """Fail clearly when the schema is missing or older than this code."""
        current = self.revision()
        if current is None:
            raise StorageError(
                f"the database {self.describe()} is not initialised: run 'regul init'"
            )
        if current != HEAD_REVISION:
            raise StorageError(
                f"the database {self.describe()} is at schema {current}, this Régul needs "
                f"{HEAD_REVISION}: run 'regul init' to upgrade it"
            )

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode and str(mode[0]).lower() not in {"wal", "memory"}:
            cursor.close()
            raise sa.exc.OperationalError("PRAGMA journal_mode", {}, Exception("readonly: no WAL"))
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # REPLACE deletes the row it collides with; with recursive triggers that delete fires
        # the append-only DELETE trigger (migration 0006 also refuses such an INSERT outright)
        cursor.execute("PRAGMA recursive_triggers = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("regul_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
