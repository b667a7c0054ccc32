"""The ECMO fleet's JSON API (``/api/v1/ecmo/...``): consoles, weekly inventories, loans.

Same callers, policy and problems as ``interfaces.api``. Writes need ``If-Match``: a console's
ETag is its status (``"available"``), an inventory's the version of (holder, week) the caller
read (``"0"`` for a first report), so that nobody overwrites what they did not see.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from interfaces.auth import Caller, Services, api_caller, services_of
from interfaces.problems import Problem
from resources.ecmo import Fleet

__all__ = ["fleet_of", "router"]

router = APIRouter(prefix="/api/v1/ecmo", tags=["ecmo"])
Who = Annotated[Caller, Depends(api_caller)]
Svc = Annotated[Services, Depends(services_of)]
PROBLEM = {"content": {"application/problem+json": {}}, "description": "RFC 9457 problem"}
ERRORS: dict[int | str, dict[str, Any]] = dict.fromkeys(
    (400, 401, 403, 404, 409, 412, 413, 422, 428), PROBLEM
)
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", max_length=40, description="the ETag you read; 428 without it"),
]
Serial = Annotated[str, Path(max_length=40)]


def fleet_of(request: Request) -> Fleet:
    """The fleet service on the app's database and clock, built once per application."""
    found = getattr(request.app.state, "ecmo_fleet", None)
    if found is None:
        from resources.catalogue import obligation_kinds
        from resources.service import Resources

        svc: Services = request.app.state.services
        runner = svc.runner
        resources = Resources(runner.db, runner.clock, runner.uow, obligation_kinds(svc.settings))
        found = request.app.state.ecmo_fleet = Fleet(resources)
    return found


Fl = Annotated[Fleet, Depends(fleet_of)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewConsole(Strict):
    serial: str = Field(max_length=40)
    model: str = Field(max_length=80)
    owner: str = Field(max_length=40, description="FINESS of its establishment, or CCS")


class Status(Strict):
    status: str = Field(max_length=20, description="available, in_use or maintenance")
    reason: str = Field("", max_length=2000)


class Inventory(Strict):
    holder: str = Field(max_length=40, description="FINESS, or CCS for the national stock")
    period: str = Field(max_length=10, description="ISO week, e.g. 2026-W49")
    figures: dict[str, int] = Field(
        description="available, reserved, in_use, lent, maintenance, circuits (all ≥ 0)"
    )


def _tag(value: str | None, what: str) -> str:
    if value is None:
        raise Problem(428, "if_match_required", f"send If-Match with the {what}'s ETag")
    text = value.strip()
    if text.startswith("W/"):
        raise Problem(412, "weak_if_match", f"If-Match {value!r} is weak: send the strong ETag")
    return text.strip('"')


@router.get("/consoles", responses=ERRORS)
def consoles(
    who: Who,
    fleet: Fl,
    region: Annotated[str | None, Query(max_length=10)] = None,
    available: bool = False,
) -> list[dict[str, Any]]:
    """The consoles of the caller's scope: status, owner, where (the case of a loan)."""
    return fleet.consoles(who.actor, region=region, available_only=available)


def _console(fleet: Fleet, who: Caller, serial: str) -> dict[str, Any]:
    from engine.errors import NotFound

    for row in fleet.consoles(who.actor):
        if row["serial"] == serial:
            return row
    raise NotFound(f"no console {serial} in your scope", why="unknown_console", serial=serial)


@router.get("/consoles/{serial}", responses=ERRORS)
def console(serial: Serial, who: Who, fleet: Fl, response: Response) -> dict[str, Any]:
    """One console; its ETag is its status."""
    row = _console(fleet, who, serial)
    response.headers["ETag"] = f'"{row["status"]}"'
    return row


@router.post("/consoles", status_code=201, responses=ERRORS)
def register(body: NewConsole, who: Who, fleet: Fl, response: Response) -> dict[str, Any]:
    """A console enters the fleet, available at its owner."""
    fleet.register(who.actor, serial=body.serial, model=body.model, owner=body.owner)
    response.headers["ETag"] = '"available"'
    return _console(fleet, who, body.serial.strip())


@router.put("/consoles/{serial}/status", responses=ERRORS)
def set_status(
    serial: Serial, body: Status, who: Who, fleet: Fl, response: Response, if_match: IfMatch = None
) -> dict[str, Any]:
    """The owner sets available, in use or maintenance; If-Match: the status it read."""
    seen = _tag(if_match, "console")
    now = _console(fleet, who, serial)["status"]
    if seen != now:
        raise Problem(412, "stale_status", f"console {serial} is now {now}, not {seen}: re-read")
    fleet.set_status(who.actor, serial=serial, status=body.status, reason=body.reason)
    response.headers["ETag"] = f'"{body.status}"'
    return _console(fleet, who, serial)


@router.get("/loans", responses=ERRORS)
def loans(who: Who, fleet: Fl, overdue: bool = False) -> list[dict[str, Any]]:
    """The consoles out on loan that the caller lends, borrows or oversees."""
    return fleet.loans(who.actor, overdue=overdue)


@router.get("/reports/{holder}", responses=ERRORS)
def reports(
    holder: Annotated[str, Path(max_length=40)],
    who: Who,
    fleet: Fl,
    response: Response,
    period: Annotated[str | None, Query(max_length=10)] = None,
) -> list[dict[str, Any]]:
    """Every version of the holder's weekly inventories (of one week), newest first; with a
    week, the ETag is its latest version ("0": none yet)."""
    rows = fleet.reports(who.actor, holder=holder, period=period)
    if period is not None:
        response.headers["ETag"] = f'"{rows[0]["version"] if rows else 0}"'
    return rows


@router.post("/reports", status_code=201, responses=ERRORS)
def report(
    body: Inventory, who: Who, fleet: Fl, response: Response, if_match: IfMatch = None
) -> dict[str, Any]:
    """A weekly inventory (a correction is the next version); says where it differs from
    the ledger. If-Match: the version of (holder, week) read, "0" for the first."""
    from resources.periods import parse_period

    seen = _tag(if_match, "inventory")
    period = parse_period(body.period)
    rows = fleet.reports(who.actor, holder=body.holder, period=period)
    current = str(rows[0]["version"] if rows else 0)
    if seen != current:
        raise Problem(
            412, "stale_version", f"the inventory of {period} is at version {current}: re-read"
        )
    done = fleet.report(who.actor, holder=body.holder, period=period, figures=body.figures)
    response.headers["ETag"] = f'"{int(current) + 1}"'
    return done


@router.post("/reports/import", status_code=201, responses=ERRORS)
async def import_reports(request: Request, who: Who, fleet: Fl) -> list[dict[str, Any]]:
    """A CSV (text/csv) or XLSX body of weekly inventories: all recorded, or none and the
    French errors by line (problem ``import_errors``, its ``lines``)."""
    from starlette.concurrency import run_in_threadpool

    from resources.ecmo_import import import_file

    content = await request.body()
    kind = request.headers.get("content-type", "")
    name = "upload.xlsx" if "spreadsheet" in kind or content[:2] == b"PK" else "upload.csv"
    result: list[dict[str, Any]] = await run_in_threadpool(
        import_file, fleet, who.actor, name, content
    )
    return result
