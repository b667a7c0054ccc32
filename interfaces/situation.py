"""The situation room on the desk and the API: the page, the printable report, PDF, CSV, JSON.

Desk: ``/situation`` (``?region=OCC`` narrows a wide scope to one region), the printable
« point de situation » ``/situation/report``, ``/situation.pdf`` and each panel's
``/situation/{panel}.csv``. API: ``/api/v1/situation`` (every panel of the caller's scope, as
JSON), ``/api/v1/situation/{panel}.csv`` and ``/api/v1/situation.pdf``. All of them read
``build`` once: the figures come from ``resources.situation`` (the counts and the registered
panels), scoped by the caller, and nothing here queries anything.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from markupsafe import Markup, escape
from starlette.responses import JSONResponse, Response

from engine.actors import Actor
from engine.audit import spreadsheet_safe
from engine.errors import InputError, NotFound
from interfaces import charts
from interfaces.auth import Caller, Services, api_caller, services_of
from interfaces.desk import PARIS, Desk, render
from interfaces.desk import Svc as DeskSvc
from resources import situation as figures
from resources.situation import Counts, Panel, PanelData, View

__all__ = ["Situation", "build", "csv_text", "desk_router", "pdf_bytes", "router"]

router = APIRouter(include_in_schema=True)
Region = Annotated[str | None, Query(max_length=3, pattern="^[A-Za-z]{3}$")]


@dataclass(frozen=True)
class Situation:
    view: View
    now: datetime
    counts: Counts
    panels: list[tuple[Panel, PanelData]]
    names: dict[str, str]  # region code -> French name
    linkable: frozenset[str]  # the regions whose own page the caller may open
    title: str  # the scope in words

    def json(self) -> dict[str, Any]:
        return {
            "at": self.now.isoformat(),
            "scope": self.title,
            "region": self.view.region,
            "counts": self.counts.json(),
            "panels": {p.name: {"title": p.title, **d.json()} for p, d in self.panels},
        }


def build(svc: Services, actor: Actor, *, region: str | None = None, only: str = "") -> Situation:
    """The figures of ``actor``'s scope (narrowed to ``region``), in one read transaction."""
    registry = svc.runner.registry
    chosen = figures.panels()
    if only:
        chosen = [p for p in chosen if p.name == only]
        if not chosen:
            known = ", ".join(p.name for p in figures.panels())
            raise NotFound(f"no panel {only!r}; panels: {known}", why="unknown_panel", panel=only)
    now = svc.runner.clock.now()
    with svc.runner.db.read() as conn:
        names = figures.region_names(conn)
        if region is not None:
            region = region.upper()
            if region not in names:
                raise InputError(
                    f"{region!r} is not a region code: one of {', '.join(sorted(names))}",
                    why="unknown_region",
                    region=region,
                )
        view = View(actor, registry, region)
        linkable = _linkable(conn, actor)
        title = figures.scope_title(conn, view, names)
        counted = figures.counts(conn, view, now)
        data = [(p, p.compute(conn, view, now)) for p in chosen]
    return Situation(view, now, counted, data, names, linkable, title)


def _linkable(conn: Any, actor: Actor) -> frozenset[str]:
    """The regions a wide scope may narrow to: all (national), its zone's, its own region."""
    import sqlalchemy as sa

    from engine import tables
    from engine.vocab import ScopeKind

    scope, r = actor.scope, tables.REGION.c
    if scope.kind == ScopeKind.NATIONAL:
        return frozenset(conn.execute(sa.select(r.code)).scalars())
    if scope.kind == ScopeKind.ZONE:
        return frozenset(conn.execute(sa.select(r.code).where(r.zone == scope.code)).scalars())
    if scope.kind == ScopeKind.REGION and scope.code:
        return frozenset({scope.code})
    return frozenset()


# -- CSV and PDF ---------------------------------------------------------------------------------


def csv_text(data: PanelData) -> str:
    """UTF-8 with a BOM and ';' (what French spreadsheet software opens as is), French headers,
    every text cell made safe from formula injection."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow([c.title for c in data.columns])
    for row in data.rows:
        writer.writerow([_cell(row.get(c.key)) for c in data.columns])
    return "\ufeff" + buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return charts.number(value).replace("\u202f", "")
    return spreadsheet_safe("" if value is None else value)


def _latin(text: Any) -> str:
    """Text the PDF's core font can print (Latin-1): French letters stay, the rest is replaced."""
    swaps = {"\u202f": " ", "\u2014": "-", "\u2013": "-", "\u2019": "'", "\u2026": "..."}
    value = "".join(swaps.get(ch, ch) for ch in str(text))
    return value.encode("latin-1", "replace").decode("latin-1")


def pdf_bytes(found: Situation) -> bytes:
    """The « point de situation » as a PDF (fpdf2, its core font: nothing to download)."""
    from fpdf import FPDF

    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(_latin(f"Point de situation - {found.title}"))
    pdf.set_creator("Régul")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin("Point de situation"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    when = found.now.astimezone(PARIS).strftime("%d/%m/%Y à %H h %M")
    pdf.cell(0, 7, _latin(f"Périmètre : {found.title}"), new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 7, _latin(f"Établi le {when} (heure de Paris)"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    _pdf_heading(pdf, "Dossiers en cours")
    counts = found.counts
    lines = [
        ("Dossiers en cours", counts.open),
        ("En attente de mon niveau", counts.mine),
        ("En retard", counts.overdue),
        ("Incidents", counts.incidents),
        *((title, n) for _, title, n in counts.by_workflow),
    ]
    _pdf_table(pdf, ("Indicateur", "Valeur"), [(label, charts.number(n)) for label, n in lines])
    for panel, data in found.panels:
        _pdf_heading(pdf, panel.title)
        if data.figures:
            _pdf_table(pdf, ("Indicateur", "Valeur"), [(k, _shown(v)) for k, v in data.figures])
        if data.measure:
            pdf.set_font("Helvetica", "I", 10)
            pdf.cell(
                0, 6, _latin(f"Par région : {data.measure_label}"), new_x="LMARGIN", new_y="NEXT"
            )
            by_region = [
                (f"{code} - {found.names.get(code, code)}", charts.number(value))
                for code, value in sorted(data.measure.items())
            ]
            _pdf_table(pdf, ("Région", data.measure_label or "Valeur"), by_region)
        if data.rows:
            _pdf_table(
                pdf,
                tuple(c.title for c in data.columns),
                [tuple(_shown(row.get(c.key)) for c in data.columns) for row in data.rows],
            )
        else:
            pdf.set_font("Helvetica", "", 10)
            pdf.cell(
                0, 6, _latin("Aucune donnée dans ce périmètre."), new_x="LMARGIN", new_y="NEXT"
            )
    return bytes(pdf.output())


def _shown(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return charts.number(value)
    return "" if value is None else str(value)


def _pdf_heading(pdf: Any, text: str) -> None:
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 13)
    pdf.cell(0, 8, _latin(text), new_x="LMARGIN", new_y="NEXT")


def _pdf_table(pdf: Any, header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> None:
    from fpdf.fonts import FontFace

    pdf.set_font("Helvetica", "", 9)
    with pdf.table(first_row_as_headings=True, headings_style=FontFace(emphasis="BOLD")) as table:
        table.row([_latin(h) for h in header])
        for row in rows:
            table.row([_latin(cell) for cell in row])
    pdf.ln(2)


# -- the API -------------------------------------------------------------------------------------

Who = Annotated[Caller, Depends(api_caller)]
Svc = Annotated[Services, Depends(services_of)]


def csv_response(data: PanelData, name: str) -> Response:
    return Response(
        csv_text(data).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="situation-{name}.csv"'},
    )


def pdf_response(found: Situation) -> Response:
    day = found.now.strftime("%Y-%m-%d")
    return Response(
        pdf_bytes(found),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="point-de-situation-{day}.pdf"'},
    )


def _documented(media: str, what: str) -> dict[int | str, dict[str, Any]]:
    from interfaces.api import ERRORS

    return {**ERRORS, 200: {"content": {media: {}}, "description": what}}


@router.get(
    "/api/v1/situation",
    tags=["situation"],
    responses=_documented("application/json", "the counts and every panel of the scope"),
)
def api_situation(who: Who, svc: Svc, region: Region = None) -> Response:
    """Every panel of the caller's scope (counts first), as on the desk's /situation."""
    return JSONResponse(build(svc, who.actor, region=region).json())


@router.get(
    "/api/v1/situation.pdf",
    tags=["situation"],
    responses=_documented("application/pdf", "the situation report"),
    response_class=Response,
)
def api_situation_pdf(who: Who, svc: Svc, region: Region = None) -> Response:
    """The « point de situation » of the caller's scope, as a PDF."""
    return pdf_response(build(svc, who.actor, region=region))


@router.get(
    "/api/v1/situation/{panel}.csv",
    tags=["situation"],
    responses=_documented("text/csv", "the panel's rows (UTF-8 with BOM, ';')"),
    response_class=Response,
)
def api_panel_csv(
    panel: Annotated[str, Path(max_length=40)], who: Who, svc: Svc, region: Region = None
) -> Response:
    """One panel's rows as CSV (UTF-8 with BOM, ';'), in the caller's scope."""
    found = build(svc, who.actor, region=region, only=panel[:40])
    return csv_response(found.panels[0][1], found.panels[0][0].name)


# -- the desk ------------------------------------------------------------------------------------

desk_router = APIRouter(include_in_schema=False)


def _page(found: Situation, caller: Caller, template: str) -> Response:
    shown = []
    for panel, data in found.panels:
        measure = data.measure
        shown.append(
            {
                "panel": panel,
                "data": data,
                "map": charts.france(
                    measure,
                    title=f"{panel.title} : {data.measure_label} par région",
                    names=found.names,
                    href=lambda code: _region_link(found, code),
                )
                if measure and len(found.linkable) > 1  # a map for a scope of regions
                else None,
                "bars": charts.bars(
                    [
                        (f"{code} {found.names.get(code, code)}", value)
                        for code, value in sorted(measure.items(), key=lambda kv: -kv[1])
                    ],
                    title=f"{panel.title} : {data.measure_label} par région",
                )
                if measure
                else None,
                "line": charts.line(data.series, title=f"{panel.title} : {data.series_label}")
                if data.series
                else None,
                "regions": sorted(measure.items()),
                # the detail table's rows, escaped here once (a template loop per cell cost
                # a third of the national page's rendering)
                "cells": [_row_html(data, row) for row in data.rows],
            }
        )
    query = f"?region={found.view.region}" if found.view.region else ""
    return render(
        template,
        caller=caller,
        found=found,
        shown=shown,
        query=query,
        number=charts.number,
        region_link=lambda code: _region_link(found, code),
    )


def _row_html(data: PanelData, row: dict[str, Any]) -> Markup:
    cells = []
    for c in data.columns:
        if c.numeric:
            cells.append(f'<td class="num">{charts.number(row.get(c.key))}</td>')
        else:
            value = row.get(c.key)
            cells.append(f"<td>{escape('' if value is None else value)}</td>")
    return Markup("<tr>" + "".join(cells) + "</tr>")


def _region_link(found: Situation, code: str) -> str | None:
    return f"/situation?region={code}" if code in found.linkable else None


@desk_router.get("/situation")
def situation_page(caller: Desk, svc: DeskSvc, region: Region = None) -> Response:
    return _page(build(svc, caller.actor, region=region), caller, "situation.html.j2")


@desk_router.get("/situation/report")
def situation_report(caller: Desk, svc: DeskSvc, region: Region = None) -> Response:
    """The printable « point de situation »: the same figures, tables first, no navigation."""
    return _page(build(svc, caller.actor, region=region), caller, "situation_report.html.j2")


@desk_router.get("/situation.pdf")
def situation_pdf(caller: Desk, svc: DeskSvc, region: Region = None) -> Response:
    return pdf_response(build(svc, caller.actor, region=region))


@desk_router.get("/situation/{panel}.csv")
def situation_csv(panel: str, caller: Desk, svc: DeskSvc, region: Region = None) -> Response:
    found = build(svc, caller.actor, region=region, only=panel[:40])
    return csv_response(found.panels[0][1], found.panels[0][0].name)
