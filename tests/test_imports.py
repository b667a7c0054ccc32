"""Import hygiene: what each entry point loads, and the Core tables kept equal to the SQLModel ones.

Start-up time is mostly imports (bench/startup.py): ``regul --help`` must not load a database
library, an administrator's command not the web framework, a read not the ORM, SQLModel or
Alembic. Each check runs a fresh interpreter and lists the modules it ended with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from engine import tables
from engine.models import metadata as sqlmodel_metadata

DATABASE = ("sqlalchemy", "sqlmodel", "transitions")
CLI = "import sys; from interfaces.cli import main; sys.argv[0] = 'regul'; main()"


def loaded(code: str, *args: str, env: dict[str, str] | None = None) -> set[str]:
    """The top-level packages (and ``sqlalchemy.orm``) a new interpreter holds after ``code``."""
    probe = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print('\\nMODULES ' + json.dumps(sorted(sys.modules)), "
        "file=sys.stderr))\n" + code
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "COLUMNS": "200"},
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    names: list[str] = json.loads(result.stderr.rsplit("MODULES ", 1)[1])
    kept = ("sqlalchemy.orm", "sqlalchemy.dialects.postgresql")
    return {n.split(".")[0] for n in names} | {n for n in names if n in kept}


def test_engine_errors_loads_no_database_library() -> None:
    """``import engine.errors`` (and the package) loads neither SQLAlchemy, SQLModel nor transitions."""
    found = loaded("import engine.errors, engine.clock")
    assert not found & set(DATABASE), found & set(DATABASE)


def test_engine_names_still_resolve() -> None:
    """The lazy package still gives every name of its ``__all__``, and refuses unknown ones."""
    import engine

    for name in engine.__all__:
        assert getattr(engine, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = engine.nothing  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "absent"),
    [
        (["--help"], ("sqlalchemy", "sqlmodel", "transitions", "alembic", "fastapi", "jinja2")),
        (["users", "--help"], ("sqlalchemy", "fastapi")),
        (["case", "show", "--help"], ("sqlalchemy", "fastapi")),
    ],
)
def test_help_loads_no_database_library(args: list[str], absent: tuple[str, ...]) -> None:
    """``regul --help`` and a command's help load no database library nor the web framework."""
    found = loaded(CLI, *args)
    assert "typer" in found  # the probe ran the command line
    assert not found & set(absent), found & set(absent)


def test_help_lists_every_command() -> None:
    """The lazily imported command modules still show every command in ``regul --help``."""
    out = subprocess.run(
        [sys.executable, "-c", CLI, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    for command in ("serve", "init", "demo", "sweep", "worker", "workflows", "case", "audit",
                    "notices", "users"):  # fmt: skip
        assert f" {command} " in out, command


def test_reads_and_users_load_no_orm_alembic_or_web(database_url: str) -> None:
    """A case read and ``regul users list`` run without the ORM, SQLModel, Alembic or FastAPI,
    nor pydantic-settings (the settings read their sources themselves)."""
    env = {"REGUL_DATABASE_URL": database_url}
    heavy = {"sqlalchemy.orm", "sqlmodel", "alembic", "fastapi", "starlette", "uvicorn"}
    heavy |= {"pydantic_settings", "jinja2"}
    for args in (["case", "list", "--json"], ["users", "list", "--json"]):
        found = loaded(CLI, *args, env=env)
        assert "sqlalchemy" in found  # the command did read the database
        assert not found & heavy, (args, found & heavy)


def test_case_show_loads_no_pydantic_nor_another_dialect(ctx: Any, database_url: str) -> None:
    """``regul case show REF --as USER`` reads its options and settings without pydantic
    (interfaces/cli_params.py, engine/settings.py), and on SQLite without the PostgreSQL
    dialect (engine/tables.py declares JSONB and partial indexes without loading it)."""
    from tests.conftest import TOULOUSE

    case = ctx.runner.open_case(
        kind="ecmo", login="etab-319900001", org=TOULOUSE,
        fields={"patient_ref": "PAT-1", "mode": "VV"},
    )  # fmt: skip
    args = ("case", "show", case.reference, "--as", "etab-319900001")
    found = loaded(CLI, *args, env={"REGUL_DATABASE_URL": database_url})
    assert "sqlalchemy" in found
    assert not found & {"pydantic", "pydantic_core", "annotated_types"}, found
    if database_url.startswith("sqlite"):
        assert "sqlalchemy.dialects.postgresql" not in found


# -- engine/tables.py against engine/models.py -------------------------------------------------


DIALECTS = (sqlite.dialect(), postgresql.dialect())


def _column(column: sa.Column[Any]) -> dict[str, Any]:
    kind = column.type
    base = kind.impl_instance if isinstance(kind, sa.TypeDecorator) else kind
    keys = sorted((f.target_fullname, f.ondelete, f.onupdate) for f in column.foreign_keys)
    return {
        "type": [kind.compile(dialect=d) for d in DIALECTS],
        "base": repr(base),
        "decorator": type(kind).__name__ if type(kind).__name__ == "UTCDateTime" else None,
        "stored": [_stored(kind, d) for d in DIALECTS],
        "nullable": column.nullable,
        "primary_key": column.primary_key,
        "autoincrement": column.autoincrement,
        "default": _default(column.default),
        "server_default": column.server_default,
        "onupdate": column.onupdate,
        "index": bool(column.index),
        "unique": bool(column.unique),
        "foreign_keys": keys,
    }


def _stored(kind: sa.types.TypeEngine[Any], dialect: sa.engine.Dialect) -> str:
    """The type ``dialect`` stores and binds under any decorator (a variant's, e.g. JSONB, or
    what a decorator's ``load_dialect_impl`` picks), and whether a bind casts to it."""
    found = kind.dialect_impl(dialect)
    while isinstance(found, sa.TypeDecorator):
        found = found.impl_instance
    return f"{type(found).__name__}: {found!r}, cast {found.render_bind_cast}"


def _default(default: Any) -> Any:
    if default is None or not default.is_callable:
        return None if default is None else default.arg
    return ("callable", default.arg.__name__, default.arg(None))  # SQLAlchemy wraps the callable


def _table(table: sa.Table) -> dict[str, Any]:
    ddl = {
        d.name: [
            str(CreateTable(table).compile(dialect=d)),
            *sorted(str(CreateIndex(i).compile(dialect=d)) for i in table.indexes),
        ]
        for d in DIALECTS
    }
    constraints = [
        (type(k).__name__, str(k.name), tuple(c.name for c in k.columns)) for k in table.constraints
    ]
    indexes = [  # each dialect's options, defaults included (a partial index's where)
        (str(i.name), tuple(c.name for c in i.columns), i.unique,
         sorted((d.name, k, str(v)) for d in DIALECTS for k, v in i.dialect_options[d.name].items()))
        for i in table.indexes
    ]  # fmt: skip
    return {
        "columns": [(c.name, _column(c)) for c in table.columns],
        "constraints": sorted(constraints),
        "indexes": sorted(indexes),
        "ddl": ddl,
    }


def test_core_tables_match_the_sqlmodel_schema() -> None:
    """engine/tables.py declares exactly the tables, columns, defaults, keys and DDL of engine/models.py."""
    assert sorted(tables.metadata.tables) == sorted(sqlmodel_metadata.tables)
    assert tables.metadata.naming_convention == sqlmodel_metadata.naming_convention
    for name, model in sqlmodel_metadata.tables.items():
        ours, theirs = _table(tables.metadata.tables[name]), _table(model)
        assert [c for c, _ in ours["columns"]] == [c for c, _ in theirs["columns"]], name
        for (column, mine), (_, expected) in zip(ours["columns"], theirs["columns"], strict=True):
            assert mine == expected, f"{name}.{column} differs from engine/models.py"
        assert ours == theirs, f"{name}: constraints, indexes or DDL differ from engine/models.py"
    exported = {getattr(tables, n).name for n in tables.__all__ if n.isupper()}
    assert exported == set(sqlmodel_metadata.tables)


def test_core_tables_differ_when_a_column_does() -> None:
    """The comparison sees a change of default, nullability or type (it can fail)."""
    model = _table(sqlmodel_metadata.tables["deadline"])
    for change in (
        sa.Column("status", sa.String(), nullable=False, default="held"),
        sa.Column("status", sa.String(), nullable=True, default="open"),
        sa.Column("status", sa.Text(), nullable=False, default="open"),
    ):
        other = sa.Table(
            "deadline", sa.MetaData(naming_convention=tables.metadata.naming_convention)
        )
        for column in tables.DEADLINE.columns:
            other.append_column(change if column.name == "status" else column._copy())
        assert _table(other)["columns"] != model["columns"]


OPEN = "status = 'open'"


def test_core_tables_differ_when_an_index_or_a_json_type_does() -> None:
    """The comparison sees a partial index's condition on either dialect, and JSON not stored
    as JSONB on PostgreSQL (tables.py declares both without loading the PostgreSQL dialect)."""
    model = _table(sqlmodel_metadata.tables["deadline"])

    def indexes(next_index: sa.Index) -> tuple[Any, Any]:
        other = sa.Table(
            "deadline", sa.MetaData(naming_convention=tables.metadata.naming_convention)
        )
        for column in tables.DEADLINE.columns:
            other.append_column(column._copy())
        for index in (tables.PartialIndex("uq_deadline_open_case", "case_id", unique=True,
                                          where="status = 'open'"), next_index):  # fmt: skip
            other.append_constraint(index)
        found = _table(other)
        return found["indexes"], {dialect: ddl[1:] for dialect, ddl in found["ddl"].items()}

    expected = (model["indexes"], {dialect: ddl[1:] for dialect, ddl in model["ddl"].items()})
    assert indexes(tables.PartialIndex("ix_deadline_open_next", "next_at", where=OPEN)) == expected
    for index in (
        tables.PartialIndex("ix_deadline_open_next", "next_at", where="status = 'held'"),
        sa.Index("ix_deadline_open_next", "next_at", sqlite_where=sa.text(OPEN)),
        sa.Index("ix_deadline_open_next", "next_at", postgresql_where=sa.text(OPEN)),
    ):
        found = indexes(index)
        assert found[0] != expected[0]
        assert found[1] != expected[1]
    events = sqlmodel_metadata.tables["audit_event"]
    ours = _column(sa.Column("data", sa.JSON(), nullable=False, default=dict))
    assert ours != _column(events.c.data)
    assert _column(tables.AUDIT_EVENT.c.data) == _column(events.c.data)


def test_utc_datetime_behaves_as_sqlmodels() -> None:
    """The Core UTCDateTime binds and returns instants exactly as SQLModel's type does."""
    theirs = sqlmodel_metadata.tables["deadline"].c.due_at.type
    ours = tables.DEADLINE.c.due_at.type
    dialect = sqlite.dialect()
    paris = timezone(timedelta(hours=1))
    for value in (
        None,
        datetime(2026, 11, 22, 8, tzinfo=UTC),
        datetime(2026, 11, 22, 9, tzinfo=paris),
    ):
        assert ours.process_bind_param(value, dialect) == theirs.process_bind_param(value, dialect)
    for value in (None, datetime(2026, 11, 22, 8), datetime(2026, 11, 22, 9, tzinfo=paris)):
        mine, model = (
            ours.process_result_value(value, dialect),
            theirs.process_result_value(value, dialect),
        )
        assert mine == model
        assert (mine.tzinfo if mine else None) == (model.tzinfo if model else None)
    with pytest.raises(ValueError, match="timezone"):
        ours.process_bind_param(datetime(2026, 11, 22, 8), dialect)
    assert type(ours.coerce_compared_value(None, timedelta(1))) is type(
        theirs.coerce_compared_value(None, timedelta(1))
    )


def test_case_show_loads_no_notice_rendering(ctx: Any, database_url: str) -> None:
    """``regul case show REF --as USER`` (a recorded read) builds no outbox: no rendering,
    recipients or channels, though notices are on (the default)."""
    from tests.conftest import TOULOUSE

    case = ctx.runner.open_case(
        kind="ecmo", login="etab-319900001", org=TOULOUSE,
        fields={"patient_ref": "PAT-1", "mode": "VV"},
    )  # fmt: skip
    probe = (
        "import atexit, sys\natexit.register(lambda: print('\\nNOTICE-MODULES', sorted(m for m "
        "in sys.modules if m.startswith('notifications.')), file=sys.stderr))\n" + CLI
    )
    env = {**os.environ, "REGUL_DATABASE_URL": database_url, "COLUMNS": "200"}
    env.pop("REGUL_NOTICES", None)
    result = subprocess.run(
        [sys.executable, "-c", probe, "case", "show", case.reference, "--as", "etab-319900001"],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert case.reference in result.stdout, result.stderr
    assert "NOTICE-MODULES ['notifications.rules']" in result.stderr, result.stderr
    assert "notifications.outbox" not in result.stderr
    assert "notifications.render" not in result.stderr
