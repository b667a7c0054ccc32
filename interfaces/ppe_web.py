"""PPE stocks over HTTP: the API (``/api/v1/ppe/...``) and the desk pages (``/ppe``).

The desk shows, per scope, the weeks of cover of the caller's establishments, the
non-reporters, the reserve and its movements, the deliveries awaiting receipt; the weekly report
form (one line per item, in French; weeks of cover computed by the server once posted) and the
file upload (CSV or XLSX, a French list of the wrong lines and nothing written). No JavaScript.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from engine.errors import InputError, RegulError, Unauthenticated
from engine.values import Actor, Outcome
from interfaces import desk
from interfaces.api import ERRORS
from interfaces.auth import Caller, api_caller
from interfaces.problems import regul_status
from resources.periods import week_of
from resources.ppe.items import ITEMS
from resources.ppe.service import PpeService

__all__ = ["install"]

api_router = APIRouter(prefix="/api/v1/ppe", tags=["ppe"])
desk_router = APIRouter(include_in_schema=False)
Who = Annotated[Caller, Depends(api_caller)]
LEVELS = {"ok": "normal", "low": "sous le seuil", "critical": "critique"}
MAX_UPLOAD = 5_000_000


def install(web: FastAPI, service: PpeService) -> None:
    web.state.ppe = service
    web.include_router(api_router)
    web.include_router(desk_router)


def _ppe(request: Request) -> PpeService:
    found: PpeService = request.app.state.ppe
    return found


Ppe = Annotated[PpeService, Depends(_ppe)]


# -- API ------------------------------------------------------------------------------------


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str = Field(max_length=40)
    on_hand: int = Field(ge=0, le=10**9)
    consumed: int = Field(ge=0, le=10**9)
    crisis: int | None = Field(default=None, ge=0, le=10**9)
    unit: str | None = Field(default=None, max_length=20)


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    establishment: str = Field(max_length=40)
    week: str = Field(max_length=10)
    attested_by: str = Field(max_length=120)
    attested_as: str = Field(default="director", max_length=20)
    lines: list[LineIn] = Field(min_length=1, max_length=20)


def _summary(outcomes: list[Outcome]) -> dict[str, Any]:
    lines: dict[str, Any] = {}
    for o in outcomes:
        for entry in o.ledger:
            if entry.report is not None:
                lines = dict(entry.report.data.get("lines") or {})
    cases = [o.case.reference for o in outcomes if o.opened is not None and o.case]
    return {"lines": lines, "cases_opened": cases}


@api_router.post("/reports", status_code=201, responses=ERRORS)
def post_report(body: ReportIn, who: Who, ppe: Ppe) -> dict[str, Any]:
    """A weekly stock report (a new version if the week has one): weeks of cover per item and
    the cases the alert rule opened."""
    outcomes = ppe.report(who.actor, body.model_dump())
    return {"establishment": body.establishment, "week": body.week, **_summary(outcomes)}


class MovementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(max_length=20, description="in, out, redistribute, delivery or receive")
    holder: str = Field(max_length=40, description="the reserve, the GHT or the receiver")
    item: str = Field(max_length=40)
    quantity: int = Field(ge=0, le=10**9)
    how: str = Field(default="", max_length=40, description="in: purchase, donation, "
                     "requisition; out: a purpose; delivery: an origin")  # fmt: skip
    to: str = Field(default="", max_length=40)
    delivery: int = Field(default=0, ge=0, description="receive: the delivery's number")
    note: str = Field(default="", max_length=500)


@api_router.post("/movements", status_code=201, responses=ERRORS)
def post_movement(body: MovementIn, who: Who, ppe: Ppe) -> dict[str, Any]:
    """A movement of a holder's stock (reserve in or out, a GHT's delivery or redistribution,
    a receipt), refused beyond the balance."""
    from resources.ppe.stock import Movement

    outcomes = ppe.move(who.actor, Movement(**body.model_dump()))
    return {"events": [{"holder": e.holder, "action": e.draft.action,
                        "legs": [[leg.item, leg.bucket, leg.delta] for leg in e.legs]}
                       for o in outcomes for e in o.ledger]}  # fmt: skip


@api_router.get("/cover", responses=ERRORS)
def get_cover(
    who: Who, ppe: Ppe, region: Annotated[str | None, Query(max_length=10)] = None,
    below: float | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Weeks of cover per establishment and item, in the caller's scope."""
    return [r.to_dict() for r in _cover(ppe, who.actor, region=region, below=below)]


def _scope(actor: Actor) -> tuple[str | None, list[str] | None]:
    """(region, holders) the actor sees: an establishment its own, a GHT its members."""
    if actor.role == "establishment":
        return actor.region, [actor.org]
    if actor.role in ("ars", "ght") or (actor.role == "auditor" and actor.region):
        return actor.region, None
    return None, None


def _cover(ppe: PpeService, actor: Actor, **kw: Any) -> list[Any]:
    region, holders = _scope(actor)
    rows = ppe.cover(region=region or kw.get("region"), below=kw.get("below"), holders=holders)
    if actor.role == "ght":
        members = set(ppe.members(actor.ght or ""))
        rows = [r for r in rows if r.establishment in members]
    return rows


# -- desk -----------------------------------------------------------------------------------


def _page(caller: Caller, ppe: PpeService, **context: Any) -> dict[str, Any]:
    actor = caller.actor
    region, _ = _scope(actor)
    cover = _cover(ppe, actor)
    regulator = actor.role in ("ars", "ccs", "spf", "ght", "ars_zone", "auditor")
    missing = ppe.missing(region=region) if regulator else []
    reserve = ppe.reserve(region=region) if actor.role in ("ars", "ccs", "spf") else None
    deliveries = ppe.deliveries(region=region)["awaiting_receipt"]
    if actor.role == "establishment":
        deliveries = [d for d in deliveries if d["holder"] == actor.org]
    return {
        "cover": cover, "missing": missing, "reserve": reserve, "awaiting": deliveries,
        "levels": LEVELS, "labels": {i.key: i.label for i in ITEMS}, **context,
    }  # fmt: skip


@desk_router.get("/ppe")
def ppe_page(caller: desk.Desk, request: Request) -> Response:
    ppe = _ppe(request)
    return desk.render("ppe/stocks.html.j2", caller=caller, **_page(caller, ppe))


def _form_context(caller: Caller, ppe: PpeService, **context: Any) -> dict[str, Any]:
    return {
        "items": ITEMS, "week": week_of(ppe.app.runner.clock.now()), "error": "", "errors": [],
        "form": {}, "result": None, "levels": LEVELS, **context,
    }  # fmt: skip


@desk_router.get("/ppe/report")
def report_page(caller: desk.Desk, request: Request) -> Response:
    ppe = _ppe(request)
    return desk.render("ppe/report.html.j2", caller=caller, **_form_context(caller, ppe))


@desk_router.post("/ppe/report")
async def report_post(request: Request, caller: desk.Desk) -> Response:
    values = await desk._form(request, caller)
    ppe = _ppe(request)
    org = caller.actor.org if caller.actor.role == "establishment" else values.get("org", "")
    lines = []
    for it in ITEMS:
        cells = {c: values.get(f"{it.key}-{c}", "").strip() for c in ("on_hand", "consumed",
                                                                     "crisis", "unit")}  # fmt: skip
        if cells["on_hand"] or cells["consumed"]:
            lines.append({"item": it.key, **{k: v for k, v in cells.items() if v}})
    raw = {
        "establishment": org.strip()[:40], "week": values.get("week", ""),
        "attested_by": values.get("attested_by", ""),
        "attested_as": values.get("attested_as", "director"), "lines": lines,
    }  # fmt: skip
    try:
        outcomes = await run_in_threadpool(ppe.report, caller.actor, raw)
    except RegulError as exc:
        if isinstance(exc, Unauthenticated):
            raise
        return desk.render(
            "ppe/report.html.j2", code=regul_status(exc), caller=caller,
            **_form_context(caller, ppe, error=desk._french(exc), form=values),
        )  # fmt: skip
    return desk.render(
        "ppe/report.html.j2", caller=caller,
        **_form_context(caller, ppe, form=values, result=_summary(outcomes),
                        notice="Relevé enregistré."),
    )  # fmt: skip


@desk_router.post("/ppe/upload")
async def upload_post(request: Request, caller: desk.Desk) -> Response:
    values = await desk._form(request, caller)
    ppe = _ppe(request)
    form = await request.form()
    upload = form.get("file")
    error, errors, done = "", [], None
    if not isinstance(upload, UploadFile) or not upload.filename:
        await form.close()
        error = "Choisissez un fichier CSV ou XLSX."
    else:
        content = await upload.read(MAX_UPLOAD + 1)
        await form.close()  # the spooled upload's temporary file
        if len(content) > MAX_UPLOAD:
            error = "Le fichier dépasse 5 Mo : découpez-le."
        else:
            try:
                outcomes = await run_in_threadpool(
                    ppe.import_file, caller.actor, upload.filename, content
                )
                reports = sum(1 for o in outcomes for e in o.ledger if e.report is not None)
                opened = sum(1 for o in outcomes if o.opened is not None)
                done = f"Fichier enregistré : {reports} relevé(s), {opened} dossier(s) ouvert(s)."
            except InputError as exc:
                if exc.why == "ppe_file_lines":
                    count = exc.data.get("count")
                    error = f"Le fichier a {count} ligne(s) erronée(s) ; rien n'a été enregistré."
                    errors = str(exc.data.get("errors", "")).splitlines()
                else:
                    error = desk._french(exc)
            except RegulError as exc:
                if isinstance(exc, Unauthenticated):
                    raise
                error = desk._french(exc)
    del values
    return desk.render(
        "ppe/report.html.j2", code=422 if error else 200, caller=caller,
        **_form_context(caller, ppe, error=error, errors=errors, notice=done or ""),
    )  # fmt: skip
