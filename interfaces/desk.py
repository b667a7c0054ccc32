"""The regulators' desk: French, server-rendered pages that work without JavaScript.

Login (argon2id password, session cookie Secure/HttpOnly/SameSite=Strict), the caller's queue
(most urgent first), a case page (facts, ladder, timeline, one form per trigger the caller
may fire), the auditor's page (search, verify, export) and the notices page. Every form
carries the session's CSRF token. The pages call the same engine functions as the API and the
CLI; the policy that decides is ``engine.policy``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from engine import audit
from engine.accounts import LoginBlocked
from engine.cases import CaseFilter
from engine.errors import InputError, NotPermitted, RegulError, Unauthenticated
from engine.policy import can_control
from engine.runner import scope_where
from engine.workflow import WorkflowSpec, parse_duration
from interfaces.auth import SESSION_COOKIE, Caller, Services, services
from interfaces.catalogue import SESSION_ENDS, french
from interfaces.problems import Problem, regul_status, validation_detail
from notifications.queries import STATUSES
from workflows.labels import (
    ACTIONS,
    CONTROLS,
    LEGACY_FIELDS,
    LINE_COLUMNS,
    ROLES,
    TRIGGERS,
    value_label,
)
from workflows.labels import SCOPES as LABEL_SCOPES

__all__ = ["is_desk", "router"]

log = logging.getLogger("regul.http")
PARIS = ZoneInfo("Europe/Paris")
LOGIN_COOKIE = "regul_login_csrf"
QUEUE_LIMIT = 500  # the most urgent first; the page says when there are more
router = APIRouter(include_in_schema=False)
SCOPES = {k: v for k, v in LABEL_SCOPES.items() if k != "national"}


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
_ENV.filters.update(
    scope=lambda scope: (
        "national"
        if scope.kind == "national"
        else f"{SCOPES.get(scope.kind, scope.kind)} {scope.code}"
    ),
)
_ENV.filters.update(choice=lambda value, field: value_label(field, value))


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
        raise Unauthenticated("log in to reach the regulation desk", why="login_required")
    session = services(request).accounts.session(cookie)
    return Caller(session.actor, "desk", session)


Desk = Annotated[Caller, Depends(desk_caller)]
Svc = Annotated[Services, Depends(services)]


async def _form(request: Request, caller: Caller | None) -> dict[str, str]:
    """The posted form, once its CSRF token matches the session's (or the login cookie's)."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    accounts = services(request).accounts
    if caller and caller.session:
        ok = accounts.csrf_ok(caller.session.csrf, values.get("csrf"))
    else:  # the login form: a token the server signed, the same in the cookie and the form
        ok = await run_in_threadpool(
            accounts.login_csrf_ok, request.cookies.get(LOGIN_COOKIE), values.get("csrf")
        )
    if not ok:
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


# What /login?message=…&info=… may show: codes only, never text from the address bar.
LOGIN_MESSAGES = {
    "login": "Identifiez-vous pour accéder au bureau de régulation : connectez-vous.",
    "inactivity": "Votre session a expiré après une période d'inactivité : reconnectez-vous.",
    "max_length": "Votre session a atteint sa durée maximale : reconnectez-vous.",
    "ended": "Votre session a pris fin : reconnectez-vous.",
}
LOGIN_INFOS = {
    "logged_out": "Vous êtes déconnecté.",
    "kept": (
        "Votre saisie a été conservée : après connexion, vous la retrouverez dans le "
        "formulaire, à relire et valider. Rien n'a été enregistré."
    ),
}
KEPT_NOTICE = (
    "Votre saisie d'avant l'expiration de la session a été remise dans le formulaire : "
    "relisez-la puis validez. Rien n'a encore été enregistré."
)
_NEXT = re.compile(r"/cases/[A-Za-z0-9-]{1,40}|/new/[a-z_]{1,40}")
_KEEPABLE = re.compile(
    r"(/cases/[A-Za-z0-9-]{1,40})/(fire|control)/([a-z_]{1,40})|(/new/[a-z_]{1,40})"
)


def _next(path: str) -> str:
    """Where to go after login: a case or new-case page of the desk, nowhere else."""
    return path if _NEXT.fullmatch(path) else ""


@router.get("/login")
def login_page(request: Request, message: str = "", info: str = "", next: str = "") -> Response:
    token = services(request).accounts.login_csrf()
    response = render(
        "login.html.j2",
        csrf=token,
        message=LOGIN_MESSAGES.get(message, ""),
        notice=LOGIN_INFOS.get(info, ""),
        login="",
        next=_next(next),
    )
    _cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    values = await _form(request, None)
    svc = services(request)
    after = _next(values.get("next", ""))
    try:
        opened = await run_in_threadpool(
            lambda: svc.accounts.login(
                values.get("login", "")[:64],
                values.get("password", "")[:1024],
                client=request.client.host if request.client else "-",
                resume=request.cookies.get(SESSION_COOKIE),
            )
        )
    except Unauthenticated as exc:
        return render(
            "login.html.j2",
            code=429 if isinstance(exc, LoginBlocked) else 401,
            csrf=request.cookies.get(LOGIN_COOKIE, ""),
            message=_french(exc),
            login=values.get("login", "")[:64],
            next=after,
        )
    redirect = RedirectResponse(after or "/", status_code=303)
    _cookie(request, redirect, SESSION_COOKIE, opened.secret)
    redirect.delete_cookie(LOGIN_COOKIE, path="/")
    return redirect


@router.post("/logout")
async def logout(request: Request, caller: Desk) -> Response:
    await _form(request, caller)
    svc = services(request)
    await run_in_threadpool(svc.accounts.logout, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login?info=logged_out", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def queue(caller: Desk, svc: Svc, everything: bool = False) -> Response:
    now = svc.runner.clock.now()
    filters = CaseFilter(
        open_only=not everything, limit=QUEUE_LIMIT + 1, urgent_for=caller.actor.role
    )
    cases = svc.runner.search(filters, login=caller.actor)
    cut = len(cases) > QUEUE_LIMIT
    cases = cases[:QUEUE_LIMIT]
    return render(
        "queue.html.j2",
        caller=caller,
        cases=cases,
        now=now,
        everything=everything,
        cut=cut,
        specs={s.kind: s for s in svc.runner.registry},
        openable=[s for s in svc.runner.registry if caller.actor.role in s.open_roles],
    )


@router.get("/cases/{reference}")
def case_page(
    reference: str,
    caller: Desk,
    svc: Svc,
    done: str = "",
) -> Response:
    reference = reference[:40]
    kept = _draft(svc, caller, f"/cases/{reference}")
    if kept is not None:
        return _case_page(svc, caller, reference, notice=KEPT_NOTICE, form=kept)
    return _case_page(svc, caller, reference, notice=_done(done))


def _draft(svc: Services, caller: Caller, path: str) -> dict[str, str] | None:
    """The form this user posted on ``path`` when their last session had ended, if kept."""
    if caller.session is None:
        return None
    return svc.accounts.take_draft(caller.session.id, path)


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
    case, events = svc.runner.history(reference, login=caller.actor, via="desk")
    spec = svc.runner.registry[case.kind]
    allowed = svc.runner.allowed_triggers(case, caller.actor)
    notices = svc.notices.search(case_id=case.id, limit=200)
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
        ladder=ladder(spec, case.state, {e.to_state for e in events if e.to_state}),
        facts=facts(spec, case.fields),
        events=events,
        notices=notices,
        transitions=[t for t in spec.allowed(case.state) if t.trigger in allowed],
        now=now,
        notice=notice,
        error=error,
        form=form or {},
    )


def _reachable(spec: WorkflowSpec, current: str) -> set[str]:
    """The states ``current`` may still lead to, itself included."""
    seen, frontier = {current}, [current]
    while frontier:
        for t in spec.allowed(frontier.pop()):
            if t.dest not in seen:
                seen.add(t.dest)
                frontier.append(t.dest)
    return seen


def ladder(spec: WorkflowSpec, current: str, entered: set[str]) -> list[dict[str, Any]]:
    """The workflow's states in declared order: passed, current, skipped, ahead, or a side exit.

    ``entered`` are the states the case has been in (from its history): a level the case
    jumped over (a console lent by the ARS never reached the CCS) shows as skipped.
    """
    # a state the case did not take is left out: never entered, no longer reachable, and no
    # rung of the ladder (a transfer proposed by another level; the loan of a refused case)
    ahead = _reachable(spec, current)
    main = [
        s
        for s in spec.states
        if s.name not in {"cancelled", "rejected"}
        and (s.waiting or s.final or s.name in entered or s.name in ahead)
    ]
    names = [s.name for s in main]
    at = names.index(current) if current in names else len(names)
    steps = []
    for index, state in enumerate(main):
        if index == at:
            where = "current"
        elif index < at:
            where = "passed" if state.name in entered else "skipped"
        else:
            where = "ahead"
        steps.append(
            {"name": state.name, "label": state.label, "level": state.level, "where": where}
        )
    for state in spec.states:
        if state.name not in names and (state.final or state.name == current):
            where = "current" if state.name == current else "exit"
            steps.append(
                {"name": state.name, "label": state.label, "level": state.level, "where": where}
            )
    return steps


STEP_TITLES = {
    "resolve": "Solution",
    "deliver": "Réception",
    "reject": "Refus",
    "cancel": "Annulation",
}


def facts(spec: WorkflowSpec, fields: dict[str, Any]) -> list[tuple[str, str]]:
    """The case's fields as (French label, value): opening fields, then each step's fields."""
    labels = {**LEGACY_FIELDS, **{f.name: f.label or f.name for f in spec.open_fields}}
    step_labels = {
        t.trigger: {f.name: f.label or f.name for f in t.fields} for t in spec.transitions
    }
    out: list[tuple[str, str]] = []
    for name, value in fields.items():
        if isinstance(value, dict):
            title = STEP_TITLES.get(name, TRIGGERS.get(name, name))
            for key, inner in value.items():
                label = step_labels.get(name, {}).get(key, key)
                out.append((f"{title} — {label}", value_label(key, inner)))
        else:
            out.append((labels.get(name, name), value_label(name, value)))
    return out


@router.post("/cases/{reference}/fire/{trigger}")
async def fire(request: Request, reference: str, trigger: str, caller: Desk) -> Response:
    values = await _form(request, caller)
    svc = services(request)
    reference, trigger = reference[:40], trigger[:40]
    data = {k[6:]: v for k, v in values.items() if k.startswith("field_") and v.strip()}
    version = values.get("version", "")
    values["_action"] = trigger
    return await _act(
        svc, caller, reference, trigger, values,
        lambda: svc.runner.advance(
            reference=reference, trigger=trigger, login=caller.actor,
            reason=values.get("reason", ""), data=data, expect_version=int(version),
        ),
    )  # fmt: skip


async def _act(
    svc: Services,
    caller: Caller,
    reference: str,
    action: str,
    values: dict[str, str],
    work: Callable[[], object],
) -> Response:
    """Run a case form's command; on refusal, the case page again with the French reason.

    A missing or out-of-scope case and an ended session go to the error handlers instead.
    """
    try:
        _check_form(values)
        await run_in_threadpool(work)
    except RegulError as exc:
        status, message = regul_status(exc), _french(exc)
        if isinstance(exc, Unauthenticated) or status == 404:
            raise
        return await run_in_threadpool(
            lambda: _case_page(svc, caller, reference, error=message, status=status, form=values)
        )
    return RedirectResponse(f"/cases/{quote(reference)}?done={quote(action)}", 303)


@router.post("/cases/{reference}/control/{action}")
async def control(request: Request, reference: str, action: str, caller: Desk) -> Response:
    values = await _form(request, caller)
    svc = services(request)
    reference = reference[:40]
    version = values.get("version", "")
    values["_action"] = action = action[:20]
    by = values.get("by", "").strip()
    return await _act(
        svc, caller, reference, action, values,
        lambda: svc.runner.control(
            reference=reference, action=action, login=caller.actor,
            reason=values.get("reason", ""), expect_version=int(version),
            extend_by=parse_duration(by) if by else None,
        ),
    )  # fmt: skip


@router.get("/new/{kind}")
def new_case_page(kind: str, caller: Desk, svc: Svc) -> Response:
    spec = svc.runner.registry[kind[:40]]
    kept = _draft(svc, caller, f"/new/{spec.kind}")
    return render(
        "new.html.j2",
        caller=caller,
        spec=spec,
        columns=LINE_COLUMNS,
        rows=range(1, FORM_LINES + 1),
        error="",
        form=kept or {},
        notice=KEPT_NOTICE if kept is not None else "",
    )


@router.post("/new/{kind}")
async def new_case(request: Request, kind: str, caller: Desk) -> Response:
    values = await _form(request, caller)
    svc = services(request)
    spec = svc.runner.registry[kind[:40]]
    org = caller.actor.org if caller.actor.role == "establishment" else values.get("org", "")
    fields: dict[str, object] = {
        k[6:]: v for k, v in values.items() if k.startswith("field_") and v.strip()
    }
    for f in spec.open_fields:
        if f.type == "lines":
            fields[f.name] = form_lines(values, f.name)
    try:
        case = await run_in_threadpool(
            lambda: svc.runner.open_case(
                kind=spec.kind, login=caller.actor, org=org.strip()[:40], fields=fields
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
            columns=LINE_COLUMNS,
            rows=range(1, FORM_LINES + 1),
            error=_french(exc),
            form=values,
        )
    return RedirectResponse(f"/cases/{quote(case.reference)}?done=opened", 303)


FORM_LINES = 5  # rows of a request's lines on the new-case form


def form_lines(values: dict[str, str], name: str) -> list[dict[str, str]]:
    """The rows of a lines field as typed on the form (``lines-2-quantity``), up to the last
    row with something in it: an empty row between two is kept, so that the engine's error
    names the row the regulator sees."""
    rows = [
        {c: values.get(f"{name}-{n}-{c}", "").strip() for c in LINE_COLUMNS}
        for n in range(1, FORM_LINES + 1)
    ]
    while rows and not any(rows[-1].values()):
        rows.pop()
    return [{c: v for c, v in row.items() if v} for row in rows]


def _check_form(values: dict[str, str]) -> None:
    """The desk's own French checks before the engine's (which check again)."""
    version = values.get("version", "")
    if not (version.isascii() and version.isdigit()) or len(version) > 9:
        raise InputError("version du dossier manquante ou illisible : rechargez la page")
    if not values.get("reason", "").strip():
        raise InputError("le motif est obligatoire : expliquez votre décision en une phrase")


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
    chosen = status if status in STATUSES else None
    rows = svc.notices.search(status=chosen, limit=500, scope_where=scope_where(caller.actor))
    return render(
        "notices.html.j2", caller=caller, notices=rows, status=chosen or "", statuses=STATUSES
    )


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
        rows = _audit_rows(svc, caller, filters)
        for row in rows:
            events.append(row)
            if len(events) >= 500:
                break
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # the generator holds a database connection
        if verify:
            try:
                report = svc.runner.audit_verify(
                    login=caller.actor, case=case.strip() or None, via="desk"
                )
            except NotPermitted as exc:  # a regional auditor verifies one case at a time
                error = _french(exc)
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
    filters = {"case": case, "user": user, "org": org, "since": since, "until": until}
    lines = audit.export_lines(_audit_rows(svc, caller, filters), fmt="csv")
    stamp = svc.runner.clock.now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="regul-audit-{stamp}.csv"'},
    )


def _audit_rows(svc: Services, caller: Caller, filters: dict[str, str]) -> Iterator[Any]:
    """The audit events the desk's auditor asked for (a case named there is read, audited)."""
    since, until = _window(filters["since"], filters["until"])
    return svc.runner.audit_events(
        login=caller.actor,
        case=filters["case"].strip() or None,
        user=filters["user"].strip() or None,
        org=filters["org"].strip() or None,
        since=since,
        until=until,
        via="desk",
    )


# -- errors on desk pages ---------------------------------------------------------------


_SESSION_ENDS = {
    "wrong_login": "Identifiant ou mot de passe incorrect, ou compte désactivé.",
    "session_idle": LOGIN_MESSAGES["inactivity"],
    "session_max": LOGIN_MESSAGES["max_length"],
    "login_required": LOGIN_MESSAGES["login"],
}
INTERNAL = (
    "Une erreur inattendue s'est produite. Si vous validiez une action, vérifiez sur la page "
    "du dossier si elle a été enregistrée avant de recommencer ; si l'erreur persiste, "
    "signalez-la à l'administrateur avec l'heure."
)


def _french(exc: RegulError) -> str:
    """The desk's French wording of an engine error: by its key, never by its English text."""
    if isinstance(exc, LoginBlocked):
        return (
            "Trop d'échecs de connexion depuis ce poste : réessayez dans "
            f"{exc.minutes} minute(s), ou appelez un administrateur."
        )
    if exc.code == "unauthenticated":
        return _SESSION_ENDS.get(exc.why, LOGIN_MESSAGES["ended"])
    return french(exc)


async def regul_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegulError)
    if isinstance(exc, Unauthenticated):
        code = SESSION_ENDS.get(exc.why, "ended")
        target = f"/login?message={code}"
        back = await _keep_form(request)
        if back:
            target += f"&info=kept&next={quote(back)}"
        response = RedirectResponse(target, 303)
        if request.cookies.get(SESSION_COOKIE) and not back:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    return await _error_page(request, regul_status(exc), _french(exc))


async def _keep_form(request: Request) -> str:
    """A case or new-case form posted with an ended session: kept for the next login.

    Returns the page to come back to after login (where the form is shown again, filled in,
    for the regulator to submit again), or "" when nothing was kept. Never replayed.
    """
    secret = request.cookies.get(SESSION_COOKIE)
    found = _KEEPABLE.fullmatch(request.url.path)
    if request.method != "POST" or not secret or found is None:
        return ""
    try:
        form = await request.form()
    except Exception:  # an unreadable body: nothing to keep
        return ""
    values = {k[:64]: v[:2000] for k, v in list(form.items())[:40] if isinstance(v, str)}
    csrf = values.pop("csrf", "")
    values.pop("version", None)
    back = found.group(1) or found.group(4)
    if found.group(3):
        values["_action"] = found.group(3)
    kept = await run_in_threadpool(
        services(request).accounts.keep_draft, secret, csrf, back, values
    )
    return back if kept else ""


async def internal_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected on a desk page: a French page, the trace only in the server's log."""
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return await _error_page(request, 500, INTERNAL)


async def interface_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return await _error_page(request, exc.status, exc.detail)


async def invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    status, _, detail = validation_detail(exc)
    return await _error_page(request, status, detail)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = "Cette page n'existe pas." if exc.status_code == 404 else str(exc.detail)
    return await _error_page(request, exc.status_code, detail)


async def _error_page(request: Request, status: int, detail: str) -> Response:
    """A French error page, with the navigation when the visitor is logged in."""
    caller = None
    if request.cookies.get(SESSION_COOKIE):
        try:
            caller = await run_in_threadpool(desk_caller, request)
        except Exception:  # the error page must render whatever failed
            caller = None
    return render("error.html.j2", code=status, caller=caller, title=_title(status), detail=detail)


def _title(status: int) -> str:
    return {
        401: "Connexion requise",
        403: "Action non permise",
        404: "Introuvable",
        409: "Conflit",
        412: "Dossier modifié entre-temps",
        422: "Saisie invalide",
        429: "Trop de tentatives",
        500: "Erreur inattendue",
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
