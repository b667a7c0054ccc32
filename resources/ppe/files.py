"""Weekly PPE reports as a file (CSV or XLSX): one line per establishment, week and item.

Columns (French, English names accepted): ``etablissement`` (FINESS), ``semaine`` (2026-W49),
``article`` (an item key or its French label), ``stock``, ``consommation`` (over the week),
``consommation_crise`` (optional: else the declared one is kept, or estimated), ``unite``
(pièces by default; boîtes for masks, converted), ``atteste_par`` and ``qualite`` (directeur
or délégué). Every line is checked before anything is written; a wrong line is reported with
its number in French (« ligne 4 : … ») and the whole file is refused.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from engine.errors import InputError, RegulError
from resources.periods import parse_period
from resources.ppe.items import LEDGER_ITEMS
from resources.ppe.stock import StockReport, parse_line

__all__ = ["COLUMNS", "read_reports", "rows_of"]

COLUMNS = {
    "etablissement": "establishment", "établissement": "establishment", "finess": "establishment",
    "establishment": "establishment", "semaine": "week", "week": "week", "article": "item",
    "item": "item", "stock": "on_hand", "on_hand": "on_hand", "consommation": "consumed",
    "consumed": "consumed", "consommation_crise": "crisis", "crisis": "crisis",
    "unite": "unit", "unité": "unit", "unit": "unit", "atteste_par": "attested_by",
    "attesté_par": "attested_by", "attested_by": "attested_by", "qualite": "attested_as",
    "qualité": "attested_as", "attested_as": "attested_as",
}  # fmt: skip
REQUIRED = ("establishment", "week", "item", "on_hand", "consumed", "attested_by")
QUALITY = {"directeur": "director", "directrice": "director", "délégué": "delegate",
           "delegue": "delegate", "déléguée": "delegate", "director": "director",
           "delegate": "delegate", "": "director"}  # fmt: skip
_BY_LABEL = {i.label.lower(): k for k, i in LEDGER_ITEMS.items()}
MAX_LINES = 100_000
_FIELDS = {
    "on_hand": "le stock", "consumed": "la consommation", "crisis": "la consommation de crise",
    "establishment": "l'établissement", "attested_by": "l'attestation (atteste_par)",
}  # fmt: skip


def rows_of(name: str, content: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: text}) of a CSV (``;`` or ``,``, UTF-8) or XLSX file."""
    if name.lower().endswith((".xlsx", ".xlsm")):
        yield from _xlsx(content)
        return
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(
            "the file is not UTF-8 text: save it as CSV UTF-8, or as XLSX",
            why="ppe_file_encoding",
        ) from None
    sample = text[:2048]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    yield from _named(enumerate(reader, 1))


def _xlsx(content: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many kinds on a broken file
        raise InputError("the file is not a readable XLSX workbook", why="ppe_file_xlsx") from None
    sheet = book.worksheets[0]
    rows = (
        [("" if v is None else str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
         for v in row]
        for row in sheet.iter_rows(values_only=True)
    )  # fmt: skip
    yield from _named(enumerate(rows, 1))
    book.close()


def _named(rows: Iterable[tuple[int, list[str]]]) -> Iterator[tuple[int, dict[str, str]]]:
    header: list[str] | None = None
    for number, row in rows:
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [COLUMNS.get(c.strip().lower(), "") for c in row]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise InputError(
                    f"line {number}: missing columns {', '.join(missing)}",
                    why="ppe_file_columns", line=number, columns=", ".join(missing),
                )  # fmt: skip
            continue
        yield number, {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)
                       if h}  # fmt: skip


def read_reports(
    name: str, content: bytes, known: Callable[[set[str]], set[str]] | None = None
) -> list[StockReport]:
    """The reports of a file, or one ``InputError`` (why ``ppe_file_lines``) listing, in
    French, every wrong line; nothing is returned (so nothing written) if any line is wrong."""
    errors: list[str] = []
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    seen: dict[tuple[str, str, str], int] = {}
    periods: dict[str, str] = {}
    count = 0
    for number, row in rows_of(name, content):
        count += 1
        if count > MAX_LINES:
            raise InputError(f"more than {MAX_LINES} lines", why="ppe_file_too_long",
                             limit=MAX_LINES)  # fmt: skip
        raw_item = row.get("item", "")
        key = _BY_LABEL.get(raw_item.lower(), raw_item)
        quality = QUALITY.get(row.get("attested_as", "").lower())
        try:
            holder = row.get("establishment", "")
            if not holder:
                raise InputError("establishment", why="ppe_missing", what="establishment")
            week = row.get("week", "")
            period = periods.get(week)
            if period is None:
                period = periods[week] = parse_period(week)
            by = row.get("attested_by", "")
            if not by:
                raise InputError("attested_by", why="ppe_missing", what="attested_by")
            if quality is None:
                raise InputError("quality", why="ppe_attested_as")
            line = parse_line({"item": key, "on_hand": row.get("on_hand"),
                               "consumed": row.get("consumed"), "crisis": row.get("crisis"),
                               "unit": row.get("unit")})  # fmt: skip
        except RegulError as exc:
            errors.append(f"ligne {number} : {line_error(exc, row)}")
            continue
        report = StockReport(holder[:40], period, (line,), by[:120], quality)
        line = report.lines[0]
        where = (report.holder, report.period, line.item)
        if where in seen:
            errors.append(
                f"ligne {number} : {LEDGER_ITEMS[line.item].label.lower()} de "
                f"{report.holder} pour la {report.period} déjà déclaré ligne {seen[where]}"
            )
            continue
        seen[where] = number
        group = groups.setdefault(
            (report.holder, report.period),
            {"lines": [], "by": report.attested_by, "as": report.attested_as},
        )
        group["lines"].append(line)
    if known is not None and seen:
        errors = sorted(errors + _unknown(seen, known), key=lambda e: int(e.split()[1]))
    if not count and not errors:
        errors.append("le fichier ne contient aucune ligne de relevé")
    if errors:
        shown = errors[:200]
        more = len(errors) - len(shown)
        raise InputError(
            f"{len(errors)} wrong line(s); nothing was recorded",
            why="ppe_file_lines", count=len(errors),
            errors="\n".join(shown + ([f"… et {more} autre(s)"] if more else [])),
        )  # fmt: skip
    return [
        StockReport(holder, period, tuple(g["lines"]), g["by"], g["as"])
        for (holder, period), g in groups.items()
    ]


def _unknown(
    seen: dict[tuple[str, str, str], int], known: Callable[[set[str]], set[str]]
) -> list[str]:
    """The lines naming an establishment the directory does not know."""
    holders = {h for h, _, _ in seen}
    unknown = holders - known(holders)
    return [
        f"ligne {number} : établissement « {holder} » inconnu de l'annuaire"
        for (holder, _, _), number in seen.items()
        if holder in unknown
    ]


def line_error(exc: RegulError, row: dict[str, str]) -> str:  # noqa: PLR0911 - one per why
    """One wrong line in French."""
    why, data = exc.why, exc.data
    what = _FIELDS.get(str(data.get("what", "")), str(data.get("what", "")))
    if why == "ppe_unknown_item":
        return f"article « {row.get('item', '')} » inconnu (articles : {', '.join(LEDGER_ITEMS)})"
    if why == "ppe_report_parent":
        return f"« {data['item']} » est un sous-type : déclarez-le sous « {data['parent']} »"
    if why == "ppe_missing":
        return f"{what} manque"
    if why == "ppe_not_a_number":
        return f"{what} n'est pas un nombre entier : « {data.get('value')} »"
    if why == "ppe_out_of_range":
        return f"{what} doit être compris entre 0 et 1 000 000 000"
    if why == "bad_period":
        return f"semaine « {row.get('week', '')} » illisible : écrivez-la 2026-W49"
    if why == "ppe_unknown_unit":
        return f"unité « {row.get('unit', '')} » inconnue : écrivez pièces ou boîtes"
    if why == "ppe_no_boxes":
        return "cet article se compte en pièces, pas en boîtes"
    if why == "ppe_attested_as":
        return f"qualité « {row.get('attested_as', '')} » inconnue : directeur ou délégué"
    return exc.message
