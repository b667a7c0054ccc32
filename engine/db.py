"""The database boundary: one SQLAlchemy engine, write transactions that lock, and migrations.

SQLite runs in WAL mode; a write transaction starts with ``BEGIN IMMEDIATE`` so that the
write lock is taken before the case is read (no 'database is locked' half-way through).
PostgreSQL write transactions lock the case row with ``SELECT … FOR UPDATE`` (in the runner).
Driver errors become a ``StorageError`` that says what to check. The schema is created and
upgraded only by the Alembic migrations shipped in ``engine/migrations``; the other commands
only read the revision from Alembic's version table (``revision``), without importing Alembic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from engine.errors import Conflict, InputError, StorageError

__all__ = ["HEAD_REVISION", "Database", "normalise_url"]

HEAD_REVISION = "0011"
_MIGRATIONS = Path(__file__).parent / "migrations"
_SQLITE_HEADER = b"SQLite format 3\x00"
_MISSING_PG = re.compile(r'(database|role) "([^"]+)" does not exist')


def normalise_url(url: str) -> str:
    """Accept the usual spellings; PostgreSQL always goes through psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """One engine per process; ``write()`` and ``read()`` give a connection in a transaction."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        pool_size: int = 5,
        must_exist: bool = False,
    ) -> None:
        """``must_exist``: refuse a missing SQLite file rather than create an empty one."""
        self.url = normalise_url(url)
        self.dialect = self.url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect not in {"sqlite", "postgresql"}:
            raise StorageError(
                f"unsupported database URL {url!r}: use sqlite:///path or postgresql://host/db"
            )
        if self.dialect == "sqlite":
            _check_sqlite_file(self.url, must_exist=must_exist)
        kwargs: dict[str, Any] = {}
        if self.dialect == "postgresql":
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False)
            # every transaction ends in a commit or a rollback of its own (``_transaction``):
            # the pool's ROLLBACK on return would be one more round trip per command
            kwargs.update(pool_reset_on_return=None)
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, sqlite_synchronous)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def describe(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that holds the write lock on SQLite; commits on success.

        SQLite gets ``BEGIN IMMEDIATE`` here, where the write starts (an engine-wide "begin"
        listener would turn on SQLAlchemy's event dispatch for every statement).
        """
        with self._translated(), self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._translated(), self._transaction("BEGIN") as conn:
            yield conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Connection]:
        """One transaction on a pooled connection, begun and ended on the driver itself.

        The unit of work runs its hot statements on the driver's cursor; SQLAlchemy's own
        transaction starts only if a Core statement runs inside, and then ends with it.
        """
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            if self.is_sqlite:  # the driver runs in autocommit mode: we say where it begins
                raw.execute(begin)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction():
                    conn.rollback()
                else:
                    raw.rollback()
                raise
            if conn.in_transaction():
                conn.commit()
            else:
                raw.commit()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            try:
                yield
            except self.engine.dialect.loaded_dbapi.Error as raw:
                # the unit of work's statements run on the driver's cursor: its errors are
                # wrapped as SQLAlchemy wraps its own, so that one translation serves both
                raise DBAPIError.instance(
                    None, None, raw, self.engine.dialect.loaded_dbapi.Error
                ) from raw
        except OperationalError as exc:
            raise StorageError(self._explain(exc)) from exc
        except UnicodeEncodeError as exc:  # a lone surrogate: neither driver can encode it
            raise InputError(
                "a value contains a lone surrogate (U+D800 to U+DFFF), which is not text: "
                "send it in UTF-8"
            ) from exc
        except DBAPIError as exc:
            if self.is_sqlite and (
                "not a database" in str(exc.orig) or "malformed" in str(exc.orig)
            ):
                raise StorageError(
                    f"the database {self.describe()} is not a SQLite database or is corrupt "
                    f"({exc.orig}): restore it from a backup or point REGUL_DATABASE_URL at "
                    "the right file"
                ) from exc
            if "quantity_not_negative" in str(exc.orig):
                # the last guard of a ledger: a decision checks the balance first, under lock
                raise Conflict(
                    "not enough in stock for this movement: a balance would go below zero; "
                    "read the holder's balances again and retry",
                    why="overdrawn",
                ) from exc
            if "append-only" in str(exc.orig):
                raise StorageError(f"refused by the database: {exc.orig}") from exc
            if isinstance(exc, DataError) and "0x00" in str(exc.orig):
                # PostgreSQL text cannot hold U+0000 ("cannot contain NUL (0x00) bytes")
                raise InputError(
                    "a value contains the NUL character (U+0000), which no text may hold: remove it"
                ) from exc
            raise

    def _explain(self, exc: OperationalError) -> str:  # noqa: PLR0911 - one answer per cause
        text = str(exc.orig)
        where = self.describe()
        state = getattr(exc.orig, "sqlstate", None)
        if state == "40P01":
            return (
                f"the database {where} broke a deadlock between this command and another "
                "transaction (retried, and it happened again): retry the command"
            )
        if state in {"55P03", "57014"}:
            return f"a lock on the database {where} was not granted in time: retry the command"
        if "readonly" in text or "read-only" in text:
            return (
                f"the database {where} is read-only: give the process write access to the "
                "file and its folder, or point REGUL_DATABASE_URL elsewhere"
            )
        missing = _MISSING_PG.search(text)
        if missing:
            what, name = missing.groups()
            todo = f"createdb {name}" if what == "database" else f"createuser {name}"
            return (
                f"the PostgreSQL server of {where} has no {what} {name!r}: create it "
                f"({todo}), then run 'regul init'; or fix REGUL_DATABASE_URL"
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

        with self._translated(), self._transaction("BEGIN IMMEDIATE") as conn:
            before = MigrationContext.configure(conn).get_current_revision()
            config = Config()
            config.set_main_option("script_location", str(_MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        return before

    def revision(self) -> str | None:
        """The schema revision Alembic recorded, or None when the database is not initialised.

        One SELECT on Alembic's version table: reading it is all a command needs, and Alembic
        itself (a large import) loads only for ``migrate``.
        """
        with self._translated():
            try:
                with self.engine.connect() as conn:
                    found = conn.exec_driver_sql(_VERSION_QUERY).scalars().all()
            except DBAPIError as exc:
                if _no_version_table(exc):
                    return None
                raise
        if len(found) > 1:
            raise StorageError(
                f"the database {self.describe()} records several schema revisions "
                f"({', '.join(sorted(found))}) in alembic_version: this Régul keeps one; "
                "restore the database or keep only the row of the revision it is at"
            )
        return found[0] if found else None

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


_VERSION_QUERY = "SELECT version_num FROM alembic_version"


def _no_version_table(exc: DBAPIError) -> bool:
    """Whether ``exc`` says that alembic_version does not exist (SQLite, PostgreSQL 42P01)."""
    if getattr(exc.orig, "sqlstate", None) == "42P01":  # undefined_table
        return True
    return "no such table" in str(exc.orig) and "alembic_version" in str(exc.orig)


def _check_sqlite_file(url: str, *, must_exist: bool) -> None:
    """A SQLite file that is missing (when it must exist) or that is not a SQLite database."""
    name = sa.engine.make_url(url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    if not path.exists():
        if must_exist:
            raise StorageError(
                f"the database file {path} does not exist: run 'regul init' to create it, "
                "or point REGUL_DATABASE_URL at an existing database"
            )
        return
    if path.is_dir():
        raise StorageError(f"the database {path} is a folder: point REGUL_DATABASE_URL at a file")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise StorageError(
            f"cannot read the database {path} ({exc.strerror}): give the process access to it"
        ) from None
    if header and header != _SQLITE_HEADER:  # an empty file is a new database to SQLite
        raise StorageError(
            f"{path} is not a SQLite database (corrupt, or another kind of file): restore it "
            "from a backup or point REGUL_DATABASE_URL at the right file"
        )


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
