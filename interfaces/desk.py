"""The regulators' desk: French, server-rendered pages that work without JavaScript.

Login (argon2id password, session cookie Secure/HttpOnly/SameSite=Strict), the caller's queue
(most urgent first), a case page (facts, ladder, timeline, one form per trigger the caller
may fire), the auditor's page (search, verify, export) and the notices page. Every form
carries the session's CSRF token. The pages call the same engine functions as the API and the
CLI; the policy that decides is ``engine.policy``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from engine import audit
from engine.cases import CaseFilter, CaseView
from engine.errors import InputError, RegulError, Unauthenticated
from engine.policy import can_control
from engine.runner import scope_where
from engine.workflow import WorkflowSpec, parse_duration
from interfaces.auth import SESSION_COOKIE, Caller, Services, services
from interfaces.problems import Problem, regul_status, validation_detail
from notifications.queries import list_notices

__all__ = ["is_desk", "router"]

PARIS = ZoneInfo("Europe/Paris")
LOGIN_COOKIE = "regul_login_csrf"
router = APIRouter(include_in_schema=False)
TRIGGERS = {
    "escalate": "Escalader au niveau supérieur",
    "resolve": "Résoudre (attribuer une solution)",
    "reject": "Refuser",
    "cancel": "Annuler la demande",
    "close": "Clôturer",
    "start": "Mise en service",
    "return": "Restitution",
    "deliver": "Livraison reçue",
    "transferred": "Patient transféré",
}
CONTROLS = {
    "hold": "Suspendre l'échéance",
    "resume": "Reprendre (échéance relancée)",
    "extend": "Prolonger l'échéance",
}
ACTIONS = {
    "opened": "Ouverture",
    "transition": "Transition",
    "refused": "Refus",
    "read": "Consultation",
    "reminder": "Rappel",
    "incident": "Incident",
    "hold": "Mise en attente",
    "resume": "Reprise",
    "extend": "Prolongation",
    "noop": "Échéance sans effet",
    "overdue": "Retard",
}
ROLES = {
    "establishment": "Établissement",
    "ght": "GHT",
    "umac": "UMAC",
    "ars": "ARS",
    "ars_zone": "ARS de zone",
    "ccs": "Centre de crise sanitaire",
    "spf": "Santé publique France",
    "auditor": "Auditeur",
    "admin": "Administrateur",
    "system": "Échéancier",
}


def is_desk(request: Request) -> bool:
    path = request.url.path
    return not (path.startswith("/api/") or path in {"/openapi.json", "/api"})


# -- rendering --------------------------------------------------------------------------


def _paris(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


def _left(due: datetime | None, now: datetime) -> str:
    if due is None:
        return "—"
    seconds = int((due - now).total_seconds())
    late, seconds = seconds < 0, abs(seconds)
    hours, rest = divmod(seconds, 3600)
    text = f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"
    return f"en retard de {text}" if late else text


_ENV = Environment(
    loader=PackageLoader("templates", "desk"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    auto_reload=False,
)
_ENV.filters.update(paris=_paris)
_ENV.globals.update(TRIGGERS=TRIGGERS, ACTIONS=ACTIONS, ROLES=ROLES, left=_left)
_ENV.globals.update(CONTROLS=CONTROLS)


def render(
    name: str, code: int = 200, caller: Caller | None = None, **context: Any
) -> HTMLResponse:
    context.setdefault("csrf", caller.session.csrf if caller and caller.session else "")
    context.setdefault("me", caller.actor if caller else None)
    context.setdefault("notice", "")
    html = _ENV.get_template(name).render(**context)
    return HTMLResponse(html, status_code=code)


# -- who is at the desk -----------------------------------------------------------------


def desk_caller(request: Request) -> Caller:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthenticated("connectez-vous pour accéder au bureau de régulation")
    session = services(request).accounts.session(cookie)
    return Caller(session.actor, "desk", session)


Desk = Annotated[Caller, Depends(desk_caller)]
Svc = Annotated[Services, Depends(services)]


async def _form(request: Request, caller: Caller | None) -> dict[str, str]:
    """The posted form, once its CSRF token matches the session's (or the login cookie's)."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    expected = (
        caller.session.csrf if caller and caller.session else request.cookies.get(LOGIN_COOKIE)
    )
    if not expected or not secrets.compare_digest(expected, values.get("csrf", "")):
        raise Problem(
            403,
            "csrf_failed",
            "jeton anti-falsification (CSRF) absent ou invalide : rechargez la page et recommencez",
        )
    return values


# -- pages ------------------------------------------------------------------------------


@router.get("/static/desk.css")
def stylesheet() -> Response:
    css = _ENV.loader.get_source(_ENV, "desk.css")[0] if _ENV.loader else ""
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/login")
def login_page(request: Request, message: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    response = render("login.html.j2", csrf=token, message=message[:200], login="")
    _cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    values = await _form(request, None)
    svc = services(request)
    try:
        opened = await run_in_threadpool(
            svc.accounts.login, values.get("login", "")[:64], values.get("password", "")[:1024]
        )
    except Unauthenticated as exc:
        return render(
            "login.html.j2",
            code=401,
            csrf=request.cookies.get(LOGIN_COOKIE, ""),
            message=_french(exc),
            login=values.get("login", "")[:64],
        )
    redirect = RedirectResponse("/", status_code=303)
    _cookie(request, redirect, SESSION_COOKIE, opened.secret)
    redirect.delete_cookie(LOGIN_COOKIE, path="/")
    return redirect


@router.post("/logout")
async def logout(request: Request, caller: Desk) -> Response:
    await _form(request, caller)
    svc = services(request)
    await run_in_threadpool(svc.accounts.logout, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login?message=" + quote("Vous êtes déconnecté."), 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def queue(caller: Desk, svc: Svc, everything: bool = False) -> Response:
    now = svc.runner.clock.now()
    cases = svc.runner.search(CaseFilter(open_only=not everything, limit=500), login=caller.login)
    cases.sort(key=lambda c: _urgency(c, caller, now))
    return render(
        "queue.html.j2",
        caller=caller,
        cases=cases,
        now=now,
        everything=everything,
        specs={s.kind: s for s in svc.runner.registry},
        openable=[s for s in svc.runner.registry if caller.actor.role in s.open_roles],
    )


def _urgency(case: CaseView, caller: Caller, now: datetime) -> tuple[Any, ...]:
    """Cases at the caller's level first; then incidents, then the nearest deadline."""
    mine = case.level == caller.actor.role and not case.final
    due = case.deadline.due_at if case.deadline else datetime.max.replace(tzinfo=UTC)
    return (not mine, not case.incident, due, -case.id)


@router.get("/cases/{reference}")
def case_page(
    reference: str,
    caller: Desk,
    svc: Svc,
    done: str = "",
) -> Response:
    return _case_page(svc, caller, reference[:40], notice=_done(done))


def _case_page(
    svc: Services,
    caller: Caller,
    reference: str,
    *,
    notice: str = "",
    error: str = "",
    status: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    now = svc.runner.clock.now()
    case, events = svc.runner.history(reference, login=caller.login, via="desk")
    spec = svc.runner.registry[case.kind]
    allowed = svc.runner.allowed_triggers(case, caller.login)
    with svc.runner.db.read() as conn:
        notices = list_notices(conn, case_id=case.id, limit=200)
    controls: list[str] = []
    if not case.final and can_control(caller.actor, spec, case.state, case):
        controls = ["resume"] if case.on_hold else ["hold", "extend"]
    return render(
        "case.html.j2",
        controls=controls,
        code=status,
        caller=caller,
        case=case,
        spec=spec,
        ladder=ladder(spec, case.state),
        events=events,
        notices=notices,
        transitions=[t for t in spec.allowed(case.state) if t.trigger in allowed],
        now=now,
        notice=notice,
        error=error,
        form=form or {},
    )


def ladder(spec: WorkflowSpec, current: str) -> list[dict[str, Any]]:
    """The workflow's states in declared order, marked passed / current / ahead / side exit."""
    main = [s for s in spec.states if s.name not in {"cancelled", "rejected"}]
    names = [s.name for s in main]
    at = names.index(current) if current in names else len(names)
    steps = []
    for index, state in enumerate(main):
        where = "passed" if index < at else "current" if index == at else "ahead"
        steps.append(
            {"name": state.name, "label": state.label, "level": state.level, "where": where}
        )
    for state in spec.states:
        if state.name not in names:
            where = "current" if state.name == current else "exit"
            steps.append(
                {"name": state.name, "label": state.label, "level": state.level, "where": where}
            )
    return steps


@router.post("/cases/{reference}/fire/{trigger}")
async def fire(request: Request, reference: str, trigger: str, caller: Desk) -> Response:
    values = await _form(request, caller)
    svc = services(request)
    reference, trigger = reference[:40], trigger[:40]
    data = {k[6:]: v for k, v in values.items() if k.startswith("field_") and v.strip()}
    version = values.get("version", "")
    try:
        if not version.isdigit():
            raise InputError("version manquante : rechargez la page")
        await run_in_threadpool(
            lambda: svc.runner.advance(
                reference=reference,
                trigger=trigger,
                login=caller.login,
                reason=values.get("reason", ""),
                data=data,
                expect_version=int(version),
            )
        )
    except RegulError as exc:
        if isinstance(exc, Unauthenticated):
            raise
        status, message = regul_status(exc), _french(exc)
        if status == 404:
            raise
        return await run_in_threadpool(
            lambda: _case_page(svc, caller, reference, error=message, status=status, form=values)
        )
    return RedirectResponse(f"/cases/{quote(reference)}?done={quote(trigger)}", 303)


@router.post("/cases/{reference}/control/{action}")
async def control(request: Request, reference: str, action: str, caller: Desk) -> Response:
    values = await _form(request, caller)
    svc = services(request)
    reference = reference[:40]
    version = values.get("version", "")
    try:
        if not version.isdigit():
            raise InputError("version manquante : rechargez la page")
        by = values.get("by", "").strip()
        await run_in_threadpool(
            lambda: svc.runner.control(
                reference=reference,
                action=action[:20],
                login=caller.login,
                reason=values.get("reason", ""),
                extend_by=parse_duration(by) if by else None,
                expect_version=int(version),
            )
        )
    except RegulError as exc:
        if isinstance(exc, Unauthenticated):
            raise
        status, message = regul_status(exc), _french(exc)
        if status == 404:
            raise
        return await run_in_threadpool(
            lambda: _case_page(svc, caller, reference, error=message, status=status, form=values)
        )
    return RedirectResponse(f"/cases/{quote(reference)}?done={quote(action[:20])}", 303)


@router.get("/new/{kind}")
def new_case_page(kind: str, caller: Desk, svc: Svc) -> Response:
    spec = svc.runner.registry[kind[:40]]
    return render("new.html.j2", caller=caller, spec=spec, error="", form={})


@router.post("/new/{kind}")
async def new_case(request: Request, kind: str, caller: Desk) -> Response:
    values = await _form(request, caller)
    svc = services(request)
    spec = svc.runner.registry[kind[:40]]
    org = caller.actor.org if caller.actor.role == "establishment" else values.get("org", "")
    fields = {k[6:]: v for k, v in values.items() if k.startswith("field_") and v.strip()}
    try:
        case = await run_in_threadpool(
            lambda: svc.runner.open_case(
                kind=spec.kind, login=caller.login, org=org.strip()[:40], fields=fields
            )
        )
    except RegulError as exc:
        if isinstance(exc, Unauthenticated):
            raise
        return render(
            "new.html.j2",
            code=regul_status(exc),
            caller=caller,
            spec=spec,
            error=_french(exc),
            form=values,
        )
    return RedirectResponse(f"/cases/{quote(case.reference)}?done=opened", 303)


def _done(trigger: str) -> str:
    if trigger in TRIGGERS:
        return f"Action enregistrée : {TRIGGERS[trigger]}."
    if trigger in CONTROLS:
        return f"Action enregistrée : {CONTROLS[trigger]}."
    if trigger == "opened":
        return "Demande enregistrée : le dossier est ouvert."
    return ""


@router.get("/notices")
def notices_page(caller: Desk, svc: Svc, status: str = "") -> Response:
    from notifications.queries import STATUSES

    chosen = status if status in STATUSES else None
    rows = _scoped_notices(svc, caller, chosen)
    return render(
        "notices.html.j2", caller=caller, notices=rows, status=chosen or "", statuses=STATUSES
    )


def _scoped_notices(svc: Services, caller: Caller, status: str | None) -> list[Any]:
    import sqlalchemy as sa

    from engine.cases import CASE_TABLE
    from engine.models import Notice

    n = Notice.__table__  # type: ignore[attr-defined]
    query = (
        sa.select(n, CASE_TABLE.c.kind, CASE_TABLE.c.org.label("case_org"))
        .join(CASE_TABLE, CASE_TABLE.c.id == n.c.case_id)
        .order_by(n.c.id.desc())
        .limit(500)
    )
    where = scope_where(caller.actor)
    if where is not None:
        query = query.where(where)
    if status:
        query = query.where(n.c.status == status)
    with svc.runner.db.read() as conn:
        return list(conn.execute(query))


@router.get("/audit")
def audit_page(
    request: Request,
    caller: Desk,
    svc: Svc,
    case: Annotated[str, Query(max_length=40)] = "",
    user: Annotated[str, Query(max_length=64)] = "",
    org: Annotated[str, Query(max_length=40)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    verify: bool = False,
) -> Response:
    filters = {"case": case, "user": user, "org": org, "since": since, "until": until}
    error, events, report = "", [], None
    try:
        window = _window(since, until)
        rows = svc.runner.audit_events(
            login=caller.login,
            case=case.strip() or None,
            user=user.strip() or None,
            org=org.strip() or None,
            since=window[0],
            until=window[1],
        )
        for row in rows:
            events.append(row)
            if len(events) >= 500:
                break
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # the generator holds a database connection
        if verify:
            report = svc.runner.audit_verify(login=caller.login, case=case.strip() or None)
    except RegulError as exc:
        if regul_status(exc) in {401, 403}:
            raise
        error = _french(exc)
    export = "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v)
    return render(
        "audit.html.j2",
        code=422 if error else 200,
        caller=caller,
        filters=filters,
        events=events,
        report=report,
        error=error,
        export=export,
    )


def _window(since: str, until: str) -> tuple[datetime | None, datetime | None]:
    out: list[datetime | None] = []
    for name, text in (("depuis", since), ("jusqu'à", until)):
        if not text.strip():
            out.append(None)
            continue
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            raise InputError(
                f"« {name} » : {text!r} n'est pas une date (AAAA-MM-JJ ou AAAA-MM-JJTHH:MM)"
            ) from None
        out.append(value if value.tzinfo else value.replace(tzinfo=PARIS))
    return out[0], out[1]


@router.get("/audit/export")
def audit_export(
    caller: Desk,
    svc: Svc,
    case: Annotated[str, Query(max_length=40)] = "",
    user: Annotated[str, Query(max_length=64)] = "",
    org: Annotated[str, Query(max_length=40)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    import io

    window = _window(since, until)
    rows = svc.runner.audit_events(
        login=caller.login,
        case=case.strip() or None,
        user=user.strip() or None,
        org=org.strip() or None,
        since=window[0],
        until=window[1],
    )
    out = io.StringIO()
    audit.export(rows, out, fmt="csv")
    stamp = svc.runner.clock.now().strftime("%Y%m%dT%H%M%SZ")
    return PlainTextResponse(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="regul-audit-{stamp}.csv"'},
    )


# -- errors on desk pages ---------------------------------------------------------------


def _french(exc: RegulError) -> str:
    return exc.message


async def regul_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegulError)
    if isinstance(exc, Unauthenticated):
        response = RedirectResponse("/login?message=" + quote(_french(exc)[:200]), 303)
        if request.cookies.get(SESSION_COOKIE):
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    status = regul_status(exc)
    return render("error.html.j2", code=status, title=_title(status), detail=_french(exc))


async def interface_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return render("error.html.j2", code=exc.status, title=_title(exc.status), detail=exc.detail)


async def invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    status, _, detail = validation_detail(exc)
    return render("error.html.j2", code=status, title=_title(status), detail=detail)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = "Cette page n'existe pas." if exc.status_code == 404 else str(exc.detail)
    return render(
        "error.html.j2", code=exc.status_code, title=_title(exc.status_code), detail=detail
    )


def _title(status: int) -> str:
    return {
        401: "Connexion requise",
        403: "Action non permise",
        404: "Introuvable",
        409: "Conflit",
        412: "Dossier modifié entre-temps",
        422: "Saisie invalide",
        503: "Service indisponible",
    }.get(status, "Erreur")


def _cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None = None
) -> None:
    settings = services(request).settings
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )
