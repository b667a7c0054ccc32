"""Critical-care capacity over HTTP (issue 13): the JSON API under ``/api/v1/beds`` and the
desk's ``/beds`` page (beds by establishment with tiers and plan blanc, the capacity report
form and file import, the deprogramming feed and form, transfer candidates, transfers in and
out, EVASAN missions). Each route calls ``App.beds`` (``resources.beds.service``), in the
caller's scope; errors are the engine's typed errors (problems on the API, French on the desk).
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from engine.errors import InputError, RegulError, Unauthenticated
from interfaces import desk
from interfaces.api import ERRORS
from interfaces.auth import Caller, api_caller
from interfaces.problems import problem, regul_status
from resources.beds.core import CATEGORIES, CATEGORY_LABELS, PLAN_BLANC
from resources.beds.service import Beds
from workflows.labels import value_label
from workflows.transfer import PROTECTED

__all__ = ["api_router", "desk_router"]

api_router = APIRouter(prefix="/api/v1/beds", tags=["beds"], responses=ERRORS)
desk_router = APIRouter(include_in_schema=False)
Who = Annotated[Caller, Depends(api_caller)]
MAX_FILE = 2_000_000
FIGURES = ("installed", "armed", "occupied_covid", "occupied_other", "covid_reserve")


def _errors(exc: RegulError) -> list[str]:
    """The line-by-line French errors an import refusal carries."""
    found = exc.data.get("errors")
    return [str(e) for e in found] if isinstance(found, list) else []


def beds_of(request: Request) -> Beds:
    found: Beds = request.app.state.beds
    return found


BedsSvc = Annotated[Beds, Depends(beds_of)]


# -- API ---------------------------------------------------------------------------------------


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")
    holder: str = Field(max_length=40)
    figures: dict[str, dict[str, int]]
    tier: int | None = Field(None, ge=0, le=9)
    plan_blanc: int | None = Field(None, ge=0, le=2)
    reason: str = Field("", max_length=2000)


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    holder: str = Field(max_length=40)
    tiers: dict[str, dict[str, int]]


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: str = Field(max_length=10)
    targets: dict[str, int]
    reason: str = Field("", max_length=2000)


class Activity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    activity: str = Field(max_length=200)
    extent: int = Field(ge=1, le=100)


class Deprogramming(BaseModel):
    model_config = ConfigDict(extra="forbid")
    holder: str = Field(max_length=40)
    tier: int = Field(ge=1, le=9)
    activities: list[Activity] = Field(min_length=1, max_length=50)
    cell: list[str] = Field(min_length=1, max_length=30)
    benefit_risk: str = Field(max_length=2000)
    safeguarded: list[str] = Field(default_factory=list, max_length=len(PROTECTED))


class Reversal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(max_length=2000)


@api_router.get("")
def api_statuses(
    who: Who, beds: BedsSvc, region: Annotated[str | None, Query(max_length=10)] = None
) -> list[dict[str, Any]]:
    """Capacity per establishment of the caller's scope: figures per category, tier, plan blanc."""
    return [s.to_dict() for s in beds.statuses(who.actor, region=region)]


@api_router.post("/reports", status_code=201)
def api_report(body: Report, who: Who, beds: BedsSvc) -> dict[str, Any]:
    """A capacity report (the day's snapshot, or a change): figures per category."""
    beds.report(who.actor, holder=body.holder, figures=body.figures, tier=body.tier,
                plan_blanc=body.plan_blanc, reason=body.reason)  # fmt: skip
    return {"reported": body.holder}


_UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            }
        },
    }
}


def _no_file(detail: str) -> InputError:
    return InputError(detail, why="bad_capacity_file",
                      errors=["envoyez un fichier CSV ou XLSX dans le champ « file »"])  # fmt: skip


async def _upload(request: Request) -> tuple[bytes, str]:
    """The file of a multipart body (field ``file``), read after the caller is known (no
    credentials, no parsing), its temporary file closed."""
    try:
        async with request.form() as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise _no_file("no file in the multipart field 'file'")
            raw = await upload.read(MAX_FILE + 1)
            name = upload.filename or "import.csv"
    except InputError:
        raise
    except Exception:  # any malformed body is the same answer
        raise _no_file("the body is not multipart/form-data with a file") from None
    if len(raw) > MAX_FILE:
        raise InputError("file too large", why="bad_capacity_file",
                         errors=[f"le fichier dépasse {MAX_FILE} octets"])  # fmt: skip
    return raw, name


@api_router.post("/reports/file", status_code=201, response_model=None, openapi_extra=_UPLOAD)
async def api_report_file(
    request: Request, who: Who, beds: BedsSvc
) -> dict[str, Any] | JSONResponse:
    """A CSV or XLSX capacity file (multipart field ``file``): every line checked first; the
    errors listed in French, line by line (``errors``), nothing written."""
    from resources.beds.importer import read_capacity_bytes

    raw, name = await _upload(request)
    try:
        lines = read_capacity_bytes(raw, name=name)
    except InputError as exc:  # every line's error, in French, as a member of the problem
        answer = problem(422, exc.code, exc.message, "/api/v1/beds/reports/file")
        body = json.loads(bytes(answer.body))
        body["errors"] = _errors(exc)
        return JSONResponse(body, 422, media_type="application/problem+json")
    await run_in_threadpool(beds.report_many, who.actor, lines)
    return {"reported": [line.holder for line in lines]}


@api_router.post("/plans", status_code=201)
def api_plan(body: Plan, who: Who, beds: BedsSvc) -> dict[str, Any]:
    """An establishment's capacity plan: per tier, the beds per category."""
    beds.plan(who.actor, holder=body.holder, tiers=body.tiers)
    return {"planned": body.holder}


@api_router.post("/targets", status_code=201)
def api_target(body: Target, who: Who, beds: BedsSvc) -> dict[str, Any]:
    """The region's capacity targets (its ARS)."""
    beds.target(who.actor, region=body.region, targets=body.targets, reason=body.reason)
    return {"region": body.region}


@api_router.post("/deprogramming", status_code=201)
def api_deprogram(body: Deprogramming, who: Who, beds: BedsSvc) -> dict[str, Any]:
    """A deprogramming decision of the establishment's cell (told to the ARS at once)."""
    beds.deprogram(
        who.actor, holder=body.holder, tier=body.tier,
        activities=[a.model_dump() for a in body.activities], cell=body.cell,
        benefit_risk=body.benefit_risk, safeguarded=body.safeguarded,
    )  # fmt: skip
    return {"recorded": body.holder}


@api_router.post("/deprogramming/{holder}/{decision}/reversal", status_code=201)
def api_reverse(
    holder: str, decision: int, body: Reversal, who: Who, beds: BedsSvc
) -> dict[str, int]:
    """The reversal of a deprogramming decision."""
    beds.reverse(who.actor, holder=holder[:40], decision=decision, reason=body.reason)
    return {"reversed": decision}


@api_router.get("/deprogramming")
def api_feed(who: Who, beds: BedsSvc) -> list[dict[str, Any]]:
    """Deprogramming decisions and reversals of the caller's scope, newest first."""
    return [f.to_dict() for f in beds.feed(who.actor)]


@api_router.get("/candidates")
def api_candidates(
    who: Who,
    beds: BedsSvc,
    category: Annotated[str, Query(max_length=40)],
    origin: Annotated[str | None, Query(max_length=40)] = None,
    means: Annotated[str | None, Query(max_length=10)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """Where a transfer can go: establishments of the caller's scope with a free bed of the
    category, nearest first (distance between departments), with their free beds."""
    found = beds.candidates(who.actor, category=category, origin=origin, means=means,
                            limit=limit)  # fmt: skip
    return [c.to_dict() for c in found]


@api_router.get("/transfers")
def api_transfers(who: Who, beds: BedsSvc) -> list[dict[str, Any]]:
    """Transfer cases out of and into the caller's scope (state, receiving, category)."""
    return [t.to_dict() for t in beds.transfers(who.actor)]


@api_router.get("/missions")
def api_missions(who: Who, beds: BedsSvc) -> dict[str, list[dict[str, Any]]]:
    """EVASAN missions: the cases sharing a mission id (the national level's)."""
    return {m: [r.to_dict() for r in rows] for m, rows in beds.missions().items()}


# -- desk --------------------------------------------------------------------------------------

_ENV = Environment(
    loader=ChoiceLoader([PackageLoader("templates", "beds"), PackageLoader("templates", "desk")]),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    auto_reload=False,
)
_ENV.filters.update(desk._ENV.filters)
_ENV.globals.update(desk._ENV.globals)
_ENV.globals.update(
    CATEGORIES=CATEGORIES, CATEGORY_LABELS=CATEGORY_LABELS, PROTECTED=PROTECTED,
    PLAN_BLANC=PLAN_BLANC, protected=lambda code: value_label("protected_category", code),
)  # fmt: skip
DONE = {
    "report": "Capacités enregistrées.",
    "import": "Fichier importé : capacités enregistrées.",
    "deprogram": "Décision de déprogrammation enregistrée et transmise à l'ARS.",
    "reverse": "Déprogrammation levée ; l'ARS en est informée.",
}


def _page(
    request: Request,
    caller: Caller,
    *,
    error: str = "",
    errors: list[str] | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
    done: str = "",
    category: str = "",
    origin: str = "",
) -> HTMLResponse:
    beds = beds_of(request)
    actor = caller.actor
    found = None
    if category in CATEGORIES:
        found = beds.candidates(actor, category=category, origin=origin or None)
    html = _ENV.get_template("beds.html.j2").render(
        csrf=caller.session.csrf if caller.session else "",
        me=actor,
        notice=DONE.get(done, ""),
        statuses=beds.statuses(actor),
        feed=beds.feed(actor),
        transfers=beds.transfers(actor),
        missions=beds.missions() if actor.role == "ccs" else {},
        candidates=found,
        category=category,
        origin=origin,
        error=error,
        errors=errors or [],
        form=form or {},
    )
    return HTMLResponse(html, status_code=status)


@desk_router.get("/beds")
def beds_page(
    request: Request,
    caller: desk.Desk,
    done: Annotated[str, Query(max_length=20)] = "",
    category: Annotated[str, Query(max_length=40)] = "",
    origin: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    return _page(request, caller, done=done, category=category, origin=origin)


def _int(values: dict[str, str], key: str) -> int | None:
    text = values.get(key, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{key}: not a number", why="bad_bed_count", category="",
                         field=key, value=text) from None  # fmt: skip


async def _run(
    request: Request, caller: Caller, values: dict[str, str], action: str, work: Any
) -> Response:
    try:
        await run_in_threadpool(work)
    except RegulError as exc:
        if isinstance(exc, Unauthenticated):
            raise
        errors, message, status = _errors(exc), desk._french(exc), regul_status(exc)
        return await run_in_threadpool(
            lambda: _page(request, caller, error=message, errors=errors, status=status, form=values)
        )
    return RedirectResponse(f"/beds?done={quote(action)}", 303)


@desk_router.post("/beds/report")
async def beds_report(request: Request, caller: desk.Desk) -> Response:
    values = await desk._form(request, caller)
    beds = beds_of(request)

    def work() -> None:
        figures = {}
        for category in CATEGORIES:
            counts = {k: values.get(f"{category}_{k}", "").strip() for k in FIGURES}
            if any(counts.values()):
                figures[category] = {k: v or "0" for k, v in counts.items()}
        beds.report(
            caller.actor, holder=values.get("holder", "").strip(), figures=figures,
            tier=_int(values, "tier"), plan_blanc=_int(values, "plan_blanc"),
        )  # fmt: skip

    return await _run(request, caller, values, "report", work)


@desk_router.post("/beds/import")
async def beds_import(request: Request, caller: desk.Desk) -> Response:
    values = await desk._form(request, caller)
    form = await request.form()
    upload = form.get("file")
    beds = beds_of(request)
    raw = await upload.read(MAX_FILE + 1) if upload is not None and hasattr(upload, "read") else b""
    name = getattr(upload, "filename", None) or "import.csv"
    await form.close()

    def work() -> None:
        from resources.beds.importer import read_capacity_bytes

        if not raw or len(raw) > MAX_FILE:
            raise InputError(
                "no file or file too large", why="bad_capacity_file",
                errors=["choisissez un fichier CSV ou XLSX de moins de 2 Mo"],
            )  # fmt: skip
        beds.report_many(caller.actor, read_capacity_bytes(raw, name=name))

    return await _run(request, caller, values, "import", work)


@desk_router.post("/beds/deprogram")
async def beds_deprogram(request: Request, caller: desk.Desk) -> Response:
    values = await desk._form(request, caller)
    beds = beds_of(request)

    def work() -> None:
        activities = []
        for line in values.get("activities", "").splitlines():
            if line.strip():
                name, _, extent = line.rpartition(";")
                activities.append({"activity": name.strip() or extent.strip(),
                                   "extent": extent.strip() if name else ""})  # fmt: skip
        beds.deprogram(
            caller.actor, holder=values.get("holder", "").strip(),
            tier=_int(values, "tier") or 0, activities=activities,
            cell=[m for m in values.get("cell", "").splitlines() if m.strip()],
            benefit_risk=values.get("benefit_risk", ""),
            safeguarded=[p for p in PROTECTED if values.get(f"safe_{p}")],
        )  # fmt: skip

    return await _run(request, caller, values, "deprogram", work)


@desk_router.post("/beds/reverse")
async def beds_reverse(request: Request, caller: desk.Desk) -> Response:
    values = await desk._form(request, caller)
    beds = beds_of(request)

    def work() -> None:
        holder, decision = values.get("holder", "").strip(), _int(values, "decision") or 0
        beds.reverse(
            caller.actor, holder=holder, decision=decision, reason=values.get("reason", "")
        )

    return await _run(request, caller, values, "reverse", work)
