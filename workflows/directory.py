"""The directory of organisations and users, loaded from CSV files.

The embedded demo directory (``workflows/data``) covers the 18 regions with their ARS and some
of their departmental delegations, the defence zones with their ARS de zone and UMAC, the 101
departments, GHT with their support establishment, delivery address and logistics referents
(Occitanie in detail with its 14 GHT), AP-HP and other establishments without a GHT, public,
private and ESPIC establishments, EHPAD, SAMU, the regional SFCTCV ECMO referents and the
national SFCTCV, the CCS and SpF, and one demo user per acting organisation. **Its FINESS
numbers are synthetic** (the digits ``99`` after the department): a deployment loads the real
ones with ``regul init --directory PATH``.

``PATH`` is a folder holding the five files below, or one organisations file (the same columns
as ``organisations.csv``): then the embedded zones, regions and departments (real geography)
come with it, and no user (accounts are created with ``regul users``). Lines starting with
``#`` are comments. Loading reads and checks everything before writing anything, so a
malformed file changes nothing.

Organisations (``organisations.csv``): the columns ``id,kind,name,region,zone,department,ght,
email`` are required; the columns of ``ORG_DETAILS`` are optional (a file without them loads
them empty). Kinds are ``ORG_KINDS``: every establishment, sanitary or médico-social, has the
kind ``hospital`` and a ``category`` (``sanitaire``, ``ehpad``, ``medico_social``) and a
``status`` (``public``, ``private``, ``espic``); an establishment without a GHT (AP-HP) has an
empty ``ght``; a GHT names its ``support`` establishment (one of its members); the SFCTCV
referent (``sfctcv``) has a region, the national SFCTCV none.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.errors import InputError
from engine.workflow import ROLES

__all__ = [
    "CATEGORIES",
    "FILES",
    "GEOGRAPHY",
    "ORG_DETAILS",
    "ORG_KINDS",
    "STATUSES",
    "DirectoryCounts",
    "DirectoryRows",
    "demo_directory",
    "load_directory",
    "read_directory",
    "write_directory",
]

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
GEOGRAPHY = ("zones.csv", "regions.csv", "departments.csv")
ORG_DETAILS = (
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
OPTIONAL: dict[str, tuple[str, ...]] = {"organisations.csv": ORG_DETAILS}
ORG_KINDS = (
    "ars",
    "ars_dd",  # a departmental delegation of an ARS
    "ars_zone",
    "umac",
    "sfctcv",  # the regional ECMO referent; without a region, the national SFCTCV/CNP
    "samu",
    "ght",
    "hospital",  # every establishment with a FINESS number, sanitary or médico-social
    "ccs",
    "spf",
)
STATUSES = ("public", "private", "espic")
CATEGORIES = ("sanitaire", "ehpad", "medico_social")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class DirectoryCounts:
    zones: int
    regions: int
    departments: int
    organisations: int
    users: int


@dataclass(frozen=True)
class DirectoryRows:
    """A directory read and checked, not yet written: rows per file (absent files: none)."""

    source: Path
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def counts(self) -> DirectoryCounts:
        return DirectoryCounts(*(len(self.rows.get(name, ())) for name in FILES))


def demo_directory() -> Path:
    return Path(str(resources.files("workflows") / "data"))


def _lines(handle: IO[str], numbers: list[int]) -> Iterator[str]:
    """The lines of ``handle`` without ``#`` comments; ``numbers`` gets each one's line number."""
    for number, text in enumerate(handle, 1):
        if text.startswith("#"):
            continue
        numbers.append(number)
        yield text


def _read(path: Path, columns: tuple[str, ...], optional: tuple[str, ...]) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(
            f"directory file {path} is missing: a directory folder has {', '.join(FILES)} "
            "(or give one organisations file)",
            why="directory_file_missing",
            path=str(path),
        )
    numbers: list[int] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return _rows(path, csv.reader(_lines(handle, numbers)), numbers, columns, optional)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start}): save the file as CSV UTF-8",
            why="directory_not_utf8",
            path=str(path),
        ) from None
    except csv.Error as exc:
        raise InputError(
            f"{path}: not a CSV file ({exc}): save it as CSV UTF-8, comma-separated",
            why="directory_not_csv",
            path=str(path),
        ) from None


def _rows(
    path: Path,
    reader: Iterator[list[str]],
    numbers: list[int],
    columns: tuple[str, ...],
    optional: tuple[str, ...],
) -> list[dict[str, Any]]:
    header = next(reader, None)
    if header is None:
        raise InputError(f"{path}: the file is empty", why="directory_empty", path=str(path))
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    unknown = [h for h in header if h not in columns and h not in optional]
    if missing or unknown or len(set(header)) != len(header):
        said = []
        if missing:
            said.append(f"missing {', '.join(missing)}")
        if unknown:
            said.append(f"unknown {', '.join(unknown)}")
        if len(set(header)) != len(header):
            said.append("a column twice")
        extra = f"; optional: {','.join(optional)}" if optional else ""
        raise InputError(
            f"{path}: columns must be {','.join(columns)}{extra} ({'; '.join(said)}); "
            f"found {','.join(header)}",
            why="directory_columns",
            path=str(path),
        )
    rows: list[dict[str, Any]] = []
    consumed = len(numbers)
    for cells in reader:
        line = numbers[consumed]
        consumed = len(numbers)
        if cells == []:
            continue  # a blank line
        for index, value in enumerate(cells[: len(header)]):
            bad = _CONTROL.search(value)
            if bad:  # names and e-mails go into notices' headers and pages: one line of text
                raise InputError(
                    f"{path}, line {line}, column {index + 1} ({header[index]}): contains the "
                    f"control character U+{ord(bad.group()):04X} (a line break or tab inside a "
                    "quoted cell?); keep each value on one line",
                    why="directory_control_character",
                    path=str(path),
                    line=line,
                )
        if len(cells) != len(header):
            raise InputError(
                f"{path}, line {line}: the row has more or fewer cells than the columns "
                f"({len(cells)} for {len(header)})",
                why="directory_row_cells",
                path=str(path),
                line=line,
            )
        row: dict[str, Any] = dict.fromkeys((*columns, *optional))
        row.update({k: (v.strip() or None) for k, v in zip(header, cells, strict=True)})
        row["_line"], row["_path"] = line, path
        rows.append(row)
    return rows


def _fail(name: str, row: dict[str, Any], what: str) -> InputError:
    return InputError(
        f"{row['_path']}, line {row['_line']}: {what}",
        why="directory_row",
        path=str(row["_path"]),
        line=row["_line"],
    )


def _check(rows: dict[str, list[dict[str, Any]]]) -> None:  # noqa: PLR0912 - one rule a line
    def ids(name: str, key: str) -> set[str]:
        seen: set[str] = set()
        for row in rows.get(name, ()):
            if not row[key]:
                raise _fail(name, row, f"the {key} is empty")
            if row[key] in seen:
                raise _fail(name, row, f"duplicate {key} {row[key]!r}")
            seen.add(row[key])
        return seen

    zones, regions = ids("zones.csv", "code"), ids("regions.csv", "code")
    departments, orgs = ids("departments.csv", "code"), ids("organisations.csv", "id")
    ids("users.csv", "login")
    by_id = {r["id"]: r for r in rows["organisations.csv"]}
    region_zone = {r["code"]: r["zone"] for r in rows["regions.csv"]}
    department_region = {r["code"]: r["region"] for r in rows["departments.csv"]}
    ghts = {i for i, r in by_id.items() if r["kind"] == "ght"}

    def ref(name: str, row: dict[str, Any], key: str, known: set[str]) -> None:
        if row[key] is not None and row[key] not in known:
            raise _fail(
                name,
                row,
                f"{row.get('id') or row.get('login') or row.get('code')} "
                f"names unknown {key} {row[key]!r}",
            )

    for row in rows["regions.csv"]:
        ref("regions.csv", row, "zone", zones)
    for row in rows["departments.csv"]:
        ref("departments.csv", row, "region", regions)
    referents: set[str | None] = set()
    for row in rows["organisations.csv"]:
        org, kind = row["id"], row["kind"]
        if kind not in ORG_KINDS:
            raise _fail(
                "organisations.csv", row, f"{org} has kind {kind!r}; kinds: {', '.join(ORG_KINDS)}"
            )
        for key, known in (
            ("region", regions),
            ("zone", zones),
            ("department", departments),
            ("ght", ghts),
        ):
            ref("organisations.csv", row, key, known)
        if row["region"] and row["zone"] and region_zone[row["region"]] != row["zone"]:
            raise _fail(
                "organisations.csv",
                row,
                f"{org} is in region {row['region']}, which "
                f"lies in zone {region_zone[row['region']]}, not {row['zone']}",
            )
        if (
            row["department"]
            and row["region"]
            and (department_region[row["department"]] != row["region"])
        ):
            raise _fail(
                "organisations.csv",
                row,
                f"{org} is in department {row['department']}, "
                f"which lies in region {department_region[row['department']]}, "
                f"not {row['region']}",
            )
        if kind in ("hospital", "samu", "ars_dd") and not (
            row["region"] and row["zone"] and row["department"]
        ):
            raise _fail(
                "organisations.csv", row, f"{kind} {org} needs a region, zone and department"
            )
        if kind != "hospital" and (row["status"] or row["category"]):
            raise _fail(
                "organisations.csv",
                row,
                f"{org} is a {kind}: only an establishment "
                "(kind hospital) has a status and a category",
            )
        if row["status"] is not None and row["status"] not in STATUSES:
            raise _fail(
                "organisations.csv",
                row,
                f"{org} has status {row['status']!r}; statuses: {', '.join(STATUSES)}",
            )
        if row["category"] is not None and row["category"] not in CATEGORIES:
            raise _fail(
                "organisations.csv",
                row,
                f"{org} has category {row['category']!r}; categories: {', '.join(CATEGORIES)}",
            )
        if kind == "sfctcv":
            if row["region"] in referents:
                raise _fail(
                    "organisations.csv",
                    row,
                    f"a second SFCTCV referent for {row['region'] or 'the national level'}",
                )
            referents.add(row["region"])
        support = row["support"]
        if support is not None:
            if kind != "ght":
                raise _fail(
                    "organisations.csv",
                    row,
                    f"{org} is a {kind}: only a GHT has a support establishment",
                )
            member = by_id.get(support)
            if member is None or member["kind"] != "hospital" or member["ght"] != org:
                raise _fail(
                    "organisations.csv",
                    row,
                    f"the support establishment {support!r} "
                    f"of {org} must be an establishment of that GHT",
                )
    for row in rows.get("users.csv", ()):
        ref("users.csv", row, "org", orgs)
        if row["role"] not in ROLES or row["role"] == "system":
            raise _fail("users.csv", row, f"{row['login']} has unknown role {row['role']!r}")


def read_directory(path: Path | None = None) -> DirectoryRows:
    """Read and check a directory (a folder, or one organisations file); write nothing."""
    path = path or demo_directory()
    if not path.exists():
        raise InputError(
            f"directory {path} does not exist: give a folder with {', '.join(FILES)}, or one "
            "organisations CSV file",
            why="directory_missing",
            path=str(path),
        )
    if path.is_dir():
        sources = {name: path / name for name in FILES}
    else:  # one organisations file: the embedded geography with it, no users
        sources = {name: demo_directory() / name for name in GEOGRAPHY}
        sources["organisations.csv"] = path
    rows = {
        name: _read(source, FILES[name][1], OPTIONAL.get(name, ()))
        for name, source in sources.items()
    }
    _check(rows)
    return DirectoryRows(path, rows)


def write_directory(conn: Connection, directory: DirectoryRows) -> DirectoryCounts:
    """Insert or update the checked rows (an organisation's optional details included)."""
    for name, (table, columns) in FILES.items():
        if name not in directory.rows:
            continue
        names = (*columns, *OPTIONAL.get(name, ()))
        rows = [{k: r[k] for k in names} for r in directory.rows[name]]
        key = columns[0]
        existing = {r[0] for r in conn.execute(sa.select(table.c[key]))}
        new = [r for r in rows if r[key] not in existing]
        if new:
            conn.execute(table.insert(), new)
        for row in rows:
            if row[key] in existing:
                conn.execute(table.update().where(table.c[key] == row[key]).values(**row))
    return directory.counts()


def load_directory(conn: Connection, folder: Path | None = None) -> DirectoryCounts:
    """Insert or update the directory from ``folder`` (the embedded demo by default)."""
    return write_directory(conn, read_directory(folder))
