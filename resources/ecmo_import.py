"""Weekly ECMO inventories from a file (CSV or XLSX): every line checked, then all written in
one transaction, or nothing.

Columns (a header line, French or English names, any order; ``;`` or ``,`` between values):
``finess`` (the holder; ``CCS`` for the national stock), ``semaine`` (``2026-W49``), then the
figures: ``disponibles``, ``reservees``, ``en_service``, ``pretees``, ``maintenance``,
``circuits``. A wrong line is reported by its number, in French, with every other wrong line;
nothing is written unless every line is right.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.values import Actor
from resources.ecmo import FIGURES, FIGURES_FR, Fleet, Place, _place, may_report
from resources.periods import parse_period

__all__ = ["COLUMNS", "check_rows", "import_file", "read_rows"]

# the file's column names (accents and case ignored) -> the report's names
COLUMNS = {
    "finess": "holder", "holder": "holder", "etablissement": "holder",
    "semaine": "period", "period": "period", "week": "period",
    "disponibles": "available", "available": "available",
    "reservees": "reserved", "reserved": "reserved",
    "en_service": "in_use", "in_use": "in_use",
    "pretees": "lent", "lent": "lent",
    "maintenance": "maintenance", "en_maintenance": "maintenance",
    "circuits": "circuits", "circuits_disponibles": "circuits",
}  # fmt: skip
MAX_LINES = 20000


def _key(name: object) -> str:
    text = unicodedata.normalize("NFKD", str(name or "").strip().lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.replace(" ", "_").replace("-", "_")


def read_rows(path: Path | str, content: bytes | None = None) -> list[list[str]]:
    """The file's lines as lists of text (the header first); CSV (UTF-8, ``;`` or ``,``) or
    XLSX (the first sheet)."""
    name = str(path)
    try:
        data = content if content is not None else Path(name).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror}", why="bad_import_file",
                         detail=f"lecture impossible ({exc.strerror})") from None  # fmt: skip
    if name.lower().endswith(".xlsx") or data[:2] == b"PK":
        return _xlsx(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("the CSV file is not UTF-8", why="bad_import_file",
                         detail="le fichier CSV n'est pas encodé en UTF-8") from None  # fmt: skip
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def _xlsx(data: bytes) -> list[list[str]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many kinds on a file that is not a workbook
        raise InputError("the file is not an XLSX workbook", why="bad_import_file",
                         detail="ce n'est pas un classeur XLSX") from None  # fmt: skip
    sheet = book.worksheets[0]
    rows = []
    for values in sheet.iter_rows(values_only=True):
        rows.append(["" if v is None else str(v).strip() for v in values])
    book.close()
    return rows


def check_rows(  # noqa: PLR0912 - one check per column, each with its French line
    rows: Sequence[Sequence[str]], places: dict[str, Place | None], actor: Any
) -> tuple[list[tuple[str, str, dict[str, int]]], list[str]]:
    """(the reports, the French errors by line number): a report per line, or its errors."""
    errors: list[str] = []
    if not rows:
        return [], ["le fichier est vide : une ligne d'en-tête puis une ligne par inventaire"]
    header = [COLUMNS.get(_key(h), "") for h in rows[0]]
    missing = [c for c in ("holder", "period", *FIGURES) if c not in header]
    if missing:
        names = ", ".join(_FR_COLUMN[c] for c in missing)
        return [], [f"ligne 1 (en-tête) : colonne(s) manquante(s) : {names}"]
    if len(rows) > MAX_LINES + 1:
        return [], [f"le fichier a plus de {MAX_LINES} lignes : découpez-le"]
    out: list[tuple[str, str, dict[str, int]]] = []
    seen: dict[tuple[str, str], int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(str(v).strip() for v in row):
            continue
        values = {h: (str(row[i]).strip() if i < len(row) else "") for i, h in enumerate(header)
                  if h}  # fmt: skip
        line: list[str] = []
        holder = values["holder"]
        place = places.get(holder)
        if place is None:
            line.append(f"FINESS « {holder[:20]} » inconnu de l'annuaire")
        elif not may_report(actor, place):
            line.append(f"{place.name} ne relève pas de votre périmètre")
        try:
            period = parse_period(values["period"])
        except InputError:
            line.append(f"semaine « {values['period'][:20]} » invalide (attendu : 2026-W49)")
            period = ""
        figures: dict[str, int] = {}
        for name in FIGURES:
            raw = values[name]
            if raw.endswith(".0"):  # a spreadsheet's whole number
                raw = raw[:-2]
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
                line.append(f"« {FIGURES_FR[name]} » doit être un entier positif ou nul "
                            f"(reçu « {raw[:20]} »)")  # fmt: skip
            else:
                figures[name] = int(raw)
        if period and holder and (holder, period) in seen:
            line.append(f"inventaire de la même semaine déjà donné ligne {seen[(holder, period)]}")
        if line:
            errors.append(f"ligne {number} : " + " ; ".join(line))
        else:
            seen[(holder, period)] = number
            out.append((holder, period, figures))
    if not out and not errors:
        errors.append("aucun inventaire dans le fichier")
    return out, errors


_FR_COLUMN = {"holder": "finess", "period": "semaine", "available": "disponibles",
              "reserved": "reservees", "in_use": "en_service", "lent": "pretees",
              "maintenance": "maintenance", "circuits": "circuits"}  # fmt: skip


def import_file(
    fleet: Fleet, login: str | Actor, path: Path | str, content: bytes | None = None
) -> list[dict[str, Any]]:
    """Import the file's inventories as ``login``: all of them, or nothing and every error."""
    rows = read_rows(path, content)
    actor = login if isinstance(login, Actor) else fleet.actor(login)
    holders = {str(r[i]).strip() for r in rows[1:] for i, h in enumerate(rows[0] if rows else [])
               if COLUMNS.get(_key(h)) == "holder" and i < len(r)}  # fmt: skip
    places = fleet.resources.read(lambda conn: _places(conn, holders))
    reports, errors = check_rows(rows, places, actor)
    if errors:
        shown = errors[:50]
        more = f" (et {len(errors) - 50} autres)" if len(errors) > 50 else ""
        raise InputError(
            f"{len(errors)} line(s) in error, nothing imported: " + " | ".join(shown) + more,
            why="import_errors", count=len(errors), details=" ; ".join(shown) + more,
            lines=errors,
        )  # fmt: skip
    return fleet.import_reports(actor, reports)


def _places(conn: Any, holders: Iterable[str]) -> dict[str, Place | None]:
    out: dict[str, Place | None] = {}
    for h in holders:
        try:
            out[h] = _place(conn, h)
        except InputError:
            out[h] = None
    return out
