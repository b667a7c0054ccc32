"""The JSON API (``/api/v1``): cases, triggers, history, notices, workflows, the audit log.

Thin: each route reads the caller (``interfaces.auth``), calls one engine function and shapes
its answer. A case's ETag is its version; firing a trigger requires ``If-Match`` and accepts
``Idempotency-Key``. Errors are RFC 9457 problems (``interfaces.problems``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from engine import audit
from engine.cases import CaseFilter, CaseView
from engine.errors import RegulError
from engine.workflow import WorkflowSpec, parse_duration
from interfaces.auth import Caller, CaseCaller, Services, api_caller, case_caller, services_of
from interfaces.problems import Problem
from interfaces.serial import case_json, event_json

__all__ = ["router"]

Scalar = str | int | float | bool
Who = Annotated[Caller, Depends(api_caller)]
Svc = Annotated[Services, Depends(services_of)]
# Case reads and commands: an API token is checked by the command's own transaction.
CaseWho = Annotated[CaseCaller, Depends(case_caller)]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=40,
        description='required: the ETag you read (the case version, e.g. "3"); 428 without it',
    ),
]


def _iso_instant(value: object) -> object:
    """Only an ISO 8601 text is a date-time here: a bare number is not a Unix timestamp."""
    if not isinstance(value, str) or not re.match(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("give an ISO 8601 date-time with its zone, e.g. 2026-11-25T08:00Z")
    return value


Instant = Annotated[datetime | None, BeforeValidator(_iso_instant)]
Ref = Annotated[str, Path(max_length=40)]

router = APIRouter(prefix="/api/v1")
PROBLEM = {"content": {"application/problem+json": {}}, "description": "RFC 9457 problem"}
ERRORS: dict[int | str, dict[str, Any]] = dict.fromkeys(
    (400, 401, 403, 404, 409, 412, 413, 422, 428, 503), PROBLEM
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenCase(Strict):
    kind: str = Field(max_length=40, description="ecmo, ppe or transfer")
    org: str = Field(max_length=40, description="the hospital's FINESS number")
    fields: dict[str, Scalar | list[dict[str, Scalar]]] = Field(
        default_factory=dict,
        description="the workflow's fields; a PPE request's lines as a list of objects "
        "(item, quantity, stock_on_hand, weekly_consumption) or as JSON text",
    )


class Fire(Strict):
    reason: str = Field(max_length=2000, description="why; recorded in the audit log")
    data: dict[str, Scalar] = Field(default_factory=dict, description="the trigger's fields")


class Control(Strict):
    reason: str = Field(max_length=2000)
    by: str | None = Field(None, max_length=40, description="extend only: e.g. 30m, 2h")


class DeadlineOut(BaseModel):
    state: str
    due_at: datetime
    action: str
    seconds_left: int


class CaseSummary(BaseModel):
    """A case in a list: where it stands, not its clinical facts (reading those is recorded)."""

    reference: str
    kind: str
    state: str
    level: str | None
    final: bool
    version: int
    org: str
    region: str
    zone: str
    department: str
    ght: str | None
    opened_by: str
    opened_at: datetime
    updated_at: datetime
    incident: bool
    on_hold: bool
    deadline: DeadlineOut | None


class CaseOut(CaseSummary):
    """One case: its facts (pseudonymous patient reference, clinical fields) too."""

    fields: dict[str, Any]
    allowed_triggers: list[str] | None = None


class EventOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    org: str
    action: str
    from_state: str | None
    to_state: str | None
    version: int
    reason: str
    data: dict[str, Any]
    hash: str


class HistoryOut(BaseModel):
    case: CaseOut
    events: list[EventOut]


class NoticeOut(BaseModel):
    reference: str
    kind: str
    subject: str
    status: str
    attempts: int
    channel: str
    created_at: datetime
    sent_at: datetime | None
    last_error: str


class Me(BaseModel):
    login: str
    name: str
    role: str
    org: str
    scope: str


class TransitionOut(BaseModel):
    trigger: str
    source: str
    dest: str
    roles: list[str]
    fields: list[dict[str, Any]]


class WorkflowOut(BaseModel):
    kind: str
    title: str
    prefix: str
    initial: str
    open_roles: list[str]
    open_fields: list[dict[str, Any]]
    states: list[dict[str, Any]]
    transitions: list[TransitionOut]
    mermaid: str


class VerifyOut(BaseModel):
    ok: bool
    streams: int
    events: int
    findings: list[str]


def case_out(case: CaseView, now: datetime, allowed: list[str] | None = None) -> CaseOut:
    return CaseOut(**case_json(case, now, allowed=allowed))


def case_summary(case: CaseView, now: datetime) -> CaseSummary:
    return CaseSummary(**case_json(case, now, facts=False))


def _etag(response: Response, case: CaseView) -> None:
    response.headers["ETag"] = f'"{case.version}"'


def _if_match(value: str | None) -> int:
    if value is None:
        raise Problem(
            428,
            "if_match_required",
            "send If-Match with the case's ETag (its version, from GET /api/v1/cases/{ref}), "
            "so that nobody acts on a stale view",
        )
    text = value.strip()
    if text.startswith("W/"):  # RFC 9110 §13.1.1: If-Match compares strongly; weak never matches
        raise Problem(
            412,
            "weak_if_match",
            f"If-Match {value!r} is a weak ETag, which never matches: send the case's ETag "
            'as GET /api/v1/cases/{ref} gives it, e.g. "3"',
        )
    text = text.strip('"')
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise Problem(
            400,
            "bad_if_match",
            f'If-Match {value!r} is not a case version such as "3" (digits 0-9)',
        )
    return int(text)


@contextmanager
def _credentials_first(who: CaseCaller, svc: Services) -> Iterator[None]:
    """Input refused before the command: bad credentials are answered first (401, 403),
    as the routes that check their caller before their input answer them."""
    try:
        yield
    except (Problem, RegulError):
        if who.token is not None:
            svc.accounts.token_actor(who.token)  # an unknown token is 401 first
        else:
            _ = who.login  # the session's own 401 or 403 first
        raise


def _fields(specs: Any) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "type": f.type, "required": f.required, "choices": list(f.choices)}
        for f in specs
    ]


def workflow_out(spec: WorkflowSpec) -> WorkflowOut:
    return WorkflowOut(
        kind=spec.kind,
        title=spec.title,
        prefix=spec.prefix,
        initial=spec.initial,
        open_roles=list(spec.open_roles),
        open_fields=_fields(spec.open_fields),
        states=[
            {
                "name": s.name,
                "label": s.label,
                "level": s.level,
                "final": s.final,
                "deadline": str(s.deadline) if s.deadline else None,
                "on_deadline": s.on_deadline,
            }
            for s in spec.states
        ],
        transitions=[
            TransitionOut(
                trigger=t.trigger,
                source=t.source,
                dest=t.dest,
                roles=list(t.roles),
                fields=_fields(t.fields),
            )
            for t in spec.transitions
        ],
        mermaid=spec.mermaid(),
    )


@router.get("/me", responses=ERRORS)
def me(who: Who) -> Me:
    """Who the credentials belong to, and what part of the country they see."""
    a = who.actor
    return Me(login=a.login, name=a.name, role=a.role, org=a.org, scope=str(a.scope))


@router.get("/workflows", responses=ERRORS)
def workflows(who: Who, svc: Svc) -> list[WorkflowOut]:
    """The declared workflows: states, deadlines, triggers and who may fire them."""
    return [workflow_out(spec) for spec in svc.runner.registry]


@router.get("/workflows/{kind}", responses=ERRORS)
def workflow(kind: Annotated[str, Path(max_length=40)], who: Who, svc: Svc) -> WorkflowOut:
    """One workflow, with its Mermaid diagram."""
    return workflow_out(svc.runner.registry[kind])


@router.post("/cases", status_code=201, responses=ERRORS)
def open_case(
    body: OpenCase, who: Who, svc: Svc, response: Response, key: IdemKey = None
) -> CaseOut:
    """Open a case for a hospital (establishments for their own, regulators in scope)."""
    case = svc.runner.open_case(
        kind=body.kind, login=who.actor, org=body.org, fields=body.fields, idempotency_key=key
    )
    response.headers["Location"] = f"/api/v1/cases/{case.reference}"
    _etag(response, case)
    return case_out(case, svc.runner.clock.now())


@router.get("/cases", responses=ERRORS)
def list_cases(
    who: Who,
    svc: Svc,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    state: Annotated[str | None, Query(max_length=40)] = None,
    level: Annotated[str | None, Query(max_length=40)] = None,
    region: Annotated[str | None, Query(max_length=40)] = None,
    org: Annotated[str | None, Query(max_length=40)] = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    incidents: bool = False,
    overdue: bool = False,
    mine: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[CaseSummary]:
    """The cases in the caller's scope, newest first, each with its open deadline;
    ``mine``: those waiting for the caller's level (the desk queue's « À mon niveau »).

    Summaries: the clinical facts come with GET /cases/{ref}, whose read is recorded.
    """
    now = svc.runner.clock.now()
    if mine:
        if level is not None and level != who.actor.role:
            return []
        level = who.actor.role
    filters = CaseFilter(
        kind=kind,
        state=state,
        level=level,
        region=region,
        org=org,
        open_only=open_only,
        incidents=incidents,
        overdue_at=now if overdue else None,
        limit=limit,
        offset=offset,
    )
    return [case_summary(c, now) for c in svc.runner.search(filters, login=who.actor)]


@router.get("/cases/{reference}", responses=ERRORS)
def read_case(reference: Ref, who: CaseWho, svc: Svc, response: Response) -> CaseOut:
    """One case, its open deadline and the triggers the caller may fire (the read is audited)."""
    case = svc.runner.show(reference, login=who.login, via=who.via)
    _etag(response, case)
    allowed = svc.runner.allowed_triggers(case, who.actor)
    return case_out(case, svc.runner.clock.now(), allowed)


@router.post("/cases/{reference}/triggers/{trigger}", responses=ERRORS)
def fire(
    reference: Ref,
    trigger: Annotated[str, Path(max_length=40)],
    body: Fire,
    who: CaseWho,
    svc: Svc,
    response: Response,
    if_match: IfMatch = None,
    key: IdemKey = None,
) -> CaseOut:
    """Fire a trigger; If-Match (the ETag you read) is required, Idempotency-Key welcome."""
    with _credentials_first(who, svc):
        version = _if_match(if_match)
    case = svc.runner.advance(
        reference=reference,
        trigger=trigger,
        login=who.login,
        reason=body.reason,
        data=body.data,
        expect_version=version,
        idempotency_key=key,
    )
    _etag(response, case)
    return case_out(case, svc.runner.clock.now())


@router.post("/cases/{reference}/controls/{action}", responses=ERRORS)
def control(
    reference: Ref,
    action: Literal["hold", "resume", "extend"],
    body: Control,
    who: CaseWho,
    svc: Svc,
    response: Response,
    if_match: IfMatch = None,
) -> CaseOut:
    """Hold, resume or extend the case's deadline (the regulator holding it)."""
    with _credentials_first(who, svc):
        version = _if_match(if_match)
        by = parse_duration(body.by) if body.by is not None else None
    case = svc.runner.control(
        reference=reference,
        action=action,
        login=who.login,
        reason=body.reason,
        extend_by=by,
        expect_version=version,
    )
    _etag(response, case)
    return case_out(case, svc.runner.clock.now())


@router.get("/cases/{reference}/history", responses=ERRORS)
def case_history(reference: Ref, who: CaseWho, svc: Svc) -> HistoryOut:
    """The case's audit events, oldest first (the read is audited)."""
    case, events = svc.runner.history(reference, login=who.login, via=who.via)
    return HistoryOut(
        case=case_out(case, svc.runner.clock.now()),
        events=[EventOut(**event_json(e)) for e in events],
    )


@router.get("/cases/{reference}/notices", responses=ERRORS)
def case_notices(reference: Ref, who: CaseWho, svc: Svc) -> list[NoticeOut]:
    """The notices the case produced and their delivery state."""
    case = svc.runner.show(reference, login=who.login, via=who.via, what="notices")
    rows = svc.notices.search(case_id=case.id, limit=1000)
    return [NoticeOut(**{k: getattr(r, k) for k in NoticeOut.model_fields}) for r in rows]


@router.get(
    "/audit/events",
    responses={
        **ERRORS,
        200: {
            "content": {"application/x-ndjson": {}, "text/csv": {}},
            "description": "the events, one JSON object a line (or CSV)",
        },
    },
    response_class=StreamingResponse,
)
def audit_events(
    who: Who,
    svc: Svc,
    case: Annotated[str | None, Query(max_length=40)] = None,
    user: Annotated[str | None, Query(max_length=64)] = None,
    org: Annotated[str | None, Query(max_length=40)] = None,
    since: Instant = None,
    until: Instant = None,
    fmt: Annotated[Literal["jsonl", "csv", "csv-fr"], Query(alias="format")] = "jsonl",
) -> StreamingResponse:
    """Auditors: the events in their scope, filtered by case, user, organisation and period."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise Problem(422, "invalid_input", f"{name}: give a time zone, e.g. 2026-11-25T08:00Z")
    rows = svc.runner.audit_events(
        login=who.actor, case=case, user=user, org=org, since=since, until=until, via=who.via
    )
    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    return StreamingResponse(audit.export_lines(rows, fmt=fmt), media_type=media)


@router.get("/audit/verify", responses=ERRORS)
def audit_verify(
    who: Who, svc: Svc, case: Annotated[str | None, Query(max_length=40)] = None
) -> VerifyOut:
    """Auditors: walk the hash chains (one case, or the whole log for a national auditor)."""
    report = svc.runner.audit_verify(login=who.actor, case=case, via=who.via)
    return VerifyOut(
        ok=report.ok,
        streams=report.streams,
        events=report.events,
        findings=[str(f) for f in report.findings],
    )
