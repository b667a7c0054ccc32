"""Capacity reports from a file: CSV (``;`` or ``,``, UTF-8) or XLSX (first sheet), one line
per establishment and category, columns named in French:

``finess, categorie, installes, armes, occupes_covid, occupes_non_covid[, reserve_covid,
palier, plan_blanc]``

Every line is checked before anything is written; the errors are listed line by line in French
(``ligne 3 : ...``, the header being line 1) and the file is refused as a whole.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from engine.errors import InputError
from resources.beds.core import CATEGORIES, CATEGORY_LABELS, parse_figures
from resources.beds.service import CapacityLine

__all__ = ["COLUMNS", "read_capacity_file", "read_capacity_rows"]

COLUMNS = {
    "finess": "holder",
    "categorie": "category",
    "installes": "installed",
    "armes": "armed",
    "occupes_covid": "occupied_covid",
    "occupes_non_covid": "occupied_other",
    "reserve_covid": "covid_reserve",
    "palier": "tier",
    "plan_blanc": "plan_blanc",
}
REQUIRED = ("finess", "categorie", "installes", "armes", "occupes_covid", "occupes_non_covid")
FIELD_LABELS = {
    "installed": "lits installés",
    "armed": "lits armés",
    "occupied_covid": "lits occupés Covid",
    "occupied_other": "lits occupés non Covid",
    "covid_reserve": "lits réservés Covid",
}
MAX_LINES = 20_000
FIGURE_COLUMNS = ("installes", "armes", "occupes_covid", "occupes_non_covid", "reserve_covid")
_STATE_COLUMNS = (
    ("palier", "tier", "palier"),
    ("plan_blanc", "plan_blanc", "niveau de plan blanc"),
)


def _french(exc: InputError) -> str:
    d = exc.data
    why = exc.why
    if why == "armed_over_installed":
        return f"{d['armed']} lits armés pour {d['installed']} lits installés"
    if why == "occupied_over_armed":
        return f"{d['used']} lits occupés ou réservés Covid pour {d['armed']} lits armés"
    if why == "bad_bed_count":
        label = FIELD_LABELS.get(str(d.get("field")), str(d.get("field")))
        return f"« {d.get('value')} » n'est pas un nombre de lits valable ({label})"
    return exc.message


def _norm(name: object) -> str:
    text = str(name or "").strip().lower().replace(" ", "_").replace("-", "_")
    for accented, plain in (("é", "e"), ("è", "e"), ("ê", "e"), ("à", "a")):
        text = text.replace(accented, plain)
    return text


def _rows_csv(data: bytes) -> list[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(
            "the file is not UTF-8 text", why="bad_capacity_file",
            errors=["le fichier n'est pas un texte UTF-8 (enregistrez-le en CSV UTF-8)"],
        ) from None  # fmt: skip
    first = text.splitlines()[0] if text else ""
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    return [list(r) for r in csv.reader(io.StringIO(text), delimiter=delimiter)]


def _rows_xlsx(data: bytes) -> list[list[str]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:
        raise InputError(
            "the file is not a readable XLSX workbook", why="bad_capacity_file",
            errors=["le fichier n'est pas un classeur XLSX lisible"],
        ) from None  # fmt: skip
    sheet = book.worksheets[0]
    rows = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    book.close()
    return rows


def read_capacity_file(path: str | Path, *, name: str | None = None) -> list[CapacityLine]:
    raw = Path(path).read_bytes()
    return read_capacity_bytes(raw, name=name or str(path))


def read_capacity_bytes(raw: bytes, *, name: str) -> list[CapacityLine]:
    rows = _rows_xlsx(raw) if name.lower().endswith(".xlsx") else _rows_csv(raw)
    return read_capacity_rows(rows)


def _int_or_none(text: str, what: str, errors: list[str], line: int) -> int | None:
    if not text.strip():
        return None
    try:
        return int(float(text.strip())) if "." in text else int(text.strip())
    except ValueError:
        errors.append(f"ligne {line} : « {text} » n'est pas un {what} valable")
        return None


def read_capacity_rows(rows: Sequence[Sequence[Any]]) -> list[CapacityLine]:
    """The lines of a capacity file (header first), checked; all errors at once, in French."""
    rows = [r for r in rows if any(str(c).strip() for c in r)]
    if not rows:
        raise InputError("the file is empty", why="bad_capacity_file",
                         errors=["le fichier est vide"])  # fmt: skip
    header = [_norm(c) for c in rows[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}", why="bad_capacity_file",
            errors=[f"ligne 1 : colonne(s) manquante(s) : {', '.join(missing)}"],
        )  # fmt: skip
    if len(rows) > MAX_LINES + 1:
        raise InputError("too many lines", why="bad_capacity_file",
                         errors=[f"le fichier dépasse {MAX_LINES} lignes"])  # fmt: skip
    errors: list[str] = []
    by_holder: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    for number, row in enumerate(rows[1:], start=2):
        cells = {h: (str(row[i]).strip() if i < len(row) else "") for i, h in enumerate(header)}
        holder, category = cells.get("finess", ""), cells.get("categorie", "")
        if not holder:
            errors.append(f"ligne {number} : FINESS manquant")
            continue
        if category not in CATEGORIES:
            labels = ", ".join(CATEGORIES)
            errors.append(
                f"ligne {number} : catégorie inconnue « {category} » (attendu : {labels})"
            )
            continue
        if (holder, category) in seen:
            errors.append(f"ligne {number} : {holder} {CATEGORY_LABELS[category]} figure deux fois")
            continue
        seen.add((holder, category))
        values = {COLUMNS[c]: cells.get(c, "") or "0" for c in FIGURE_COLUMNS}
        try:
            parse_figures({category: values})
        except InputError as exc:
            errors.append(f"ligne {number} : {_french(exc)}")
            continue
        entry = by_holder.setdefault(holder, {"figures": {}, "tier": None, "plan_blanc": None})
        entry["figures"][category] = values
        for column, key, what in _STATE_COLUMNS:
            value = _int_or_none(cells.get(column, ""), what, errors, number)
            if value is None:
                continue
            if entry[key] is not None and entry[key] != value:
                errors.append(f"ligne {number} : {what} {value} différent de celui d'une ligne "
                              f"précédente de {holder} ({entry[key]})")  # fmt: skip
            entry[key] = value
    if errors:
        raise InputError(
            f"{len(errors)} error(s) in the capacity file; nothing was written: "
            + "; ".join(errors[:5]),
            why="bad_capacity_file", errors=errors,
        )  # fmt: skip
    return [CapacityLine(h, e["figures"], e["tier"], e["plan_blanc"]) for h, e in
            by_holder.items()]  # fmt: skip


def lines_of(items: Iterable[CapacityLine]) -> list[CapacityLine]:
    return list(items)
