"""The ECMO fleet's desk pages (French): the fleet of my scope by establishment, the weekly
inventory form (and a CSV/XLSX file), the loans with their due dates; and, on an ECMO case's
page, the consoles of my scope offered for the resolve (``desk.FIELD_OPTIONS``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from engine.errors import RegulError
from interfaces import desk
from interfaces.auth import Caller, Services
from interfaces.catalogue import french
from interfaces.ecmo_api import fleet_of
from interfaces.problems import Problem
from resources.ecmo import FIGURES, FIGURES_FR, NATIONAL, Fleet, may_report
from resources.periods import week_of

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _by_holder(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault(
            r["owner"],
            {"owner": r["owner"], "name": r["owner_name"], "region": r["region"],
             "national": r["national"], "last_report": r["last_report"], "consoles": [],
             "available": 0},
        )  # fmt: skip
        g["consoles"].append(r)
        g["available"] += r["status"] == "available"
    return list(groups.values())


@router.get("/ecmo")
def fleet_page(request: Request, caller: desk.Desk, region: str = "") -> Response:
    fleet = fleet_of(request)
    rows = fleet.consoles(caller.actor, region=region[:10] or None)
    groups = _by_holder(rows)
    regions: dict[str, int] = {}
    for g in groups:
        key = "Stock national" if g["national"] else g["region"]
        regions[key] = regions.get(key, 0) + g["available"]
    return desk.render(
        "ecmo/fleet.html.j2", caller=caller, groups=groups, regions=regions, region=region,
        week=week_of(fleet.resources.clock.now()),
    )  # fmt: skip


@router.get("/ecmo/loans")
def loans_page(request: Request, caller: desk.Desk, overdue: bool = False) -> Response:
    fleet = fleet_of(request)
    rows = fleet.loans(caller.actor, overdue=overdue)
    return desk.render("ecmo/loans.html.j2", caller=caller, loans=rows, overdue=overdue)


def _holders(fleet: Fleet, caller: Caller) -> list[tuple[str, str]]:
    """The establishments (and the national stock) the caller may report for."""
    from resources.ecmo import Place

    seen: dict[str, tuple[str, str]] = {}
    for r in fleet.consoles(caller.actor):
        place = Place(r["owner"], r["owner_name"], "hospital", r["region"] or None, None)
        if r["owner"] == NATIONAL:
            place = Place(NATIONAL, r["owner_name"], "ccs", None, None)
        if may_report(caller.actor, place):
            seen[r["owner"]] = (r["owner"], r["owner_name"])
    return sorted(seen.values(), key=lambda h: h[1])


def _report_page(
    fleet: Fleet, caller: Caller, *, done: list[dict[str, Any]] | None = None,
    error: str = "", errors: list[str] | None = None, form: dict[str, str] | None = None,
    code: int = 200,
) -> Response:  # fmt: skip
    now = fleet.resources.clock.now()
    return desk.render(
        "ecmo/report.html.j2", code=code, caller=caller, holders=_holders(fleet, caller),
        figures=[(f, FIGURES_FR[f]) for f in FIGURES], week=week_of(now),
        last_week=week_of(now - timedelta(days=7)), done=done or [], error=error,
        errors=errors or [], form=form or {},
    )  # fmt: skip


@router.get("/ecmo/report")
def report_form(request: Request, caller: desk.Desk) -> Response:
    return _report_page(fleet_of(request), caller)


@router.post("/ecmo/report")
async def report_post(request: Request, caller: desk.Desk) -> Response:
    values = await desk._form(request, caller)
    fleet = fleet_of(request)
    figures = {f: values.get(f, "") for f in FIGURES}
    try:
        done = await run_in_threadpool(
            fleet.report, caller.actor, holder=values.get("holder", "")[:40],
            period=values.get("period", "")[:10], figures=figures,
        )  # fmt: skip
    except RegulError as exc:
        return _report_page(fleet, caller, error=french(exc), form=values, code=400)
    return _report_page(fleet, caller, done=[done])


@router.post("/ecmo/import")
async def import_post(request: Request, caller: desk.Desk) -> Response:
    svc: Services = request.app.state.services
    fleet = fleet_of(request)
    async with request.form() as form:  # closes the uploaded file's spool
        token = form.get("csrf")
        if not (caller.session and svc.accounts.csrf_ok(caller.session.csrf, str(token or ""))):
            raise Problem(403, "csrf_failed", "jeton anti-falsification (CSRF) absent ou invalide")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return _report_page(fleet, caller, error="Choisissez un fichier CSV ou XLSX.", code=400)
        content = await upload.read()
        filename = upload.filename or "import.csv"
    from resources.ecmo_import import import_file

    try:
        done = await run_in_threadpool(import_file, fleet, caller.actor, filename, content)
    except RegulError as exc:
        found = exc.data.get("lines")
        lines = [str(x) for x in found] if isinstance(found, list) else None
        message = french(exc) if lines is None else (
            f"Import refusé : {len(lines)} ligne(s) en erreur, rien n'a été enregistré."
        )  # fmt: skip
        return _report_page(fleet, caller, error=message, errors=lines or [], code=400)
    return _report_page(fleet, caller, done=done)


def _resolve_options(svc: Services, caller: Caller, case: Any) -> dict[str, list[tuple[str, str]]]:
    """The consoles available now in the caller's scope, offered on an ECMO resolve."""
    from resources.catalogue import obligation_kinds
    from resources.service import Resources

    runner = svc.runner
    fleet = Fleet(Resources(runner.db, runner.clock, runner.uow, obligation_kinds(svc.settings)))
    rows = fleet.consoles(caller.actor, available_only=True)
    options = [
        (r["serial"], f"{r['serial']} — {r['model']} — {r['owner_name']} "
                      f"({'stock national' if r['national'] else 'FINESS ' + r['owner']})")
        for r in rows
        if r["owner"] != case.org
    ]  # fmt: skip
    lenders = sorted({(r["owner"], r["owner_name"]) for r in rows if not r["national"]
                      and r["owner"] != case.org})  # fmt: skip
    return {"console_serials": options, "lender": [(o, f"{o} — {n}") for o, n in lenders]}


desk.FIELD_OPTIONS["ecmo"] = _resolve_options
