"""The directory of organisations and users, loaded from CSV files.

The embedded demo directory (``workflows/data``) covers the 18 regions with their ARS, the
defence zones with their ARS de zone and UMAC, the 101 departments, GHT with their support
hospital (the first hospital listed in the GHT; Occitanie in detail with its 14 GHT), the
CCS and SpF, and one demo user per organisation. A deployment loads its own files with the
same columns. Loading checks every reference and writes nothing when a row is wrong.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.errors import InputError
from engine.workflow import ROLES

__all__ = ["FILES", "DirectoryCounts", "demo_directory", "load_directory"]

FILES: dict[str, tuple[sa.Table, tuple[str, ...]]] = {
    "zones.csv": (tables.ZONE, ("code", "name", "seat_region")),
    "regions.csv": (tables.REGION, ("code", "insee", "name", "zone")),
    "departments.csv": (tables.DEPARTMENT, ("code", "name", "region")),
    "organisations.csv": (
        tables.ORGANISATION,
        ("id", "kind", "name", "region", "zone", "department", "ght", "email"),
    ),
    "users.csv": (tables.USER, ("login", "name", "role", "org")),
}
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ORG_KINDS = ("ars", "ars_zone", "umac", "ght", "hospital", "ccs", "spf")


@dataclass(frozen=True)
class DirectoryCounts:
    zones: int
    regions: int
    departments: int
    organisations: int
    users: int


def demo_directory() -> Path:
    return Path(str(resources.files("workflows") / "data"))


def _read(folder: Path, name: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    path = folder / name
    if not path.is_file():
        raise InputError(
            f"directory file {path} is missing: every directory has {', '.join(FILES)}"
        )
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != columns:
            raise InputError(
                f"{path}: columns must be {','.join(columns)}, found {reader.fieldnames}"
            )
        rows, line = [], reader.line_num + 1
        for row in reader:
            for column, value in row.items():
                _check_cell(path, line, columns, column, value)
            rows.append({k: (v.strip() or None) for k, v in row.items()})
            line = reader.line_num + 1
        return rows


def _check_cell(path: Path, line: int, columns: tuple[str, ...], column: str, value: Any) -> None:
    """Names and e-mails go into notices' headers and pages: one line of text, no control bytes."""
    if column is None or not isinstance(value, str):
        raise InputError(f"{path}, line {line}: the row has more or fewer cells than the columns")
    bad = _CONTROL.search(value)
    if bad:
        raise InputError(
            f"{path}, line {line}, column {columns.index(column) + 1} ({column}): contains the "
            f"control character U+{ord(bad.group()):04X} (a line break or tab inside a quoted "
            "cell?); keep each value on one line"
        )


def _check(rows: dict[str, list[dict[str, Any]]]) -> None:
    def ids(name: str, key: str) -> set[str]:
        values = [r[key] for r in rows[name]]
        dupes = {v for v in values if values.count(v) > 1}
        if dupes:
            raise InputError(f"{name}: duplicate {key} {sorted(dupes)[0]!r}")
        return set(values)

    zones, regions = ids("zones.csv", "code"), ids("regions.csv", "code")
    departments, orgs = ids("departments.csv", "code"), ids("organisations.csv", "id")
    ids("users.csv", "login")
    ghts = {r["id"] for r in rows["organisations.csv"] if r["kind"] == "ght"}

    def ref(name: str, row: dict[str, Any], key: str, known: set[str]) -> None:
        if row[key] is not None and row[key] not in known:
            raise InputError(f"{name}: row {row} names unknown {key} {row[key]!r}")

    for row in rows["regions.csv"]:
        ref("regions.csv", row, "zone", zones)
    for row in rows["departments.csv"]:
        ref("departments.csv", row, "region", regions)
    for row in rows["organisations.csv"]:
        if row["kind"] not in ORG_KINDS:
            raise InputError(
                f"organisations.csv: {row['id']} has kind {row['kind']!r}; kinds: {ORG_KINDS}"
            )
        for key, known in (
            ("region", regions),
            ("zone", zones),
            ("department", departments),
            ("ght", ghts),
        ):
            ref("organisations.csv", row, key, known)
        if row["kind"] == "hospital" and not (row["region"] and row["zone"] and row["department"]):
            raise InputError(
                f"organisations.csv: hospital {row['id']} needs a region, zone and department"
            )
    for row in rows["users.csv"]:
        ref("users.csv", row, "org", orgs)
        if row["role"] not in ROLES or row["role"] == "system":
            raise InputError(f"users.csv: {row['login']} has unknown role {row['role']!r}")


def load_directory(conn: Connection, folder: Path | None = None) -> DirectoryCounts:
    """Insert or update the directory from ``folder`` (the embedded demo by default)."""
    folder = folder or demo_directory()
    rows = {name: _read(folder, name, columns) for name, (_, columns) in FILES.items()}
    _check(rows)
    for name, (table, columns) in FILES.items():
        key = columns[0]
        existing = {r[0] for r in conn.execute(sa.select(table.c[key]))}
        new = [r for r in rows[name] if r[key] not in existing]
        if new:
            conn.execute(table.insert(), new)
        for row in rows[name]:
            if row[key] in existing:
                conn.execute(table.update().where(table.c[key] == row[key]).values(**row))
    return DirectoryCounts(*(len(rows[name]) for name in FILES))
