"""The HTTP application: the JSON API and the desk in one FastAPI app.

``create_web`` wires the composition root's runner and the accounts into the routers, installs
the problem handlers (JSON for the API, a French page for the desk), the body-size guard and
security headers. The interactive API docs (Swagger UI) are served from Régul itself, their
scripts as files, so that the Content-Security-Policy stays strict and nothing comes from a
CDN. ``regul serve`` runs it under uvicorn, with the worker beside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.accounts import Accounts
from engine.errors import RegulError
from interfaces import api, desk, ecmo_api, ecmo_desk, problems, situation
from interfaces.app import App
from interfaces.auth import SESSION_COOKIE, Services, api_caller

__all__ = ["create_web", "from_environment"]

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",  # pages and answers carry health data
}
# Swagger UI's page: its own scripts and stylesheet, the schema fetched from here, and the
# data: images its stylesheet embeds. No inline script, nothing from another origin.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Régul API</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
"""
DOCS_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "init.js": "text/javascript",
}


def create_web(app: App, accounts: Accounts | None = None) -> FastAPI:
    web = FastAPI(
        title="Régul API",
        version="1",
        description=(
            "Cases of health-crisis regulation (ECMO, PPE, patient transfer) and their "
            "escalation ladder. Authenticate with 'Authorization: Bearer <token>'. Errors are "
            "RFC 9457 problems (application/problem+json)."
        ),
        docs_url=None,  # served below, without the CDN and the inline script
        redoc_url=None,
    )
    web.add_api_route("/api/docs", docs_page, methods=["GET"], include_in_schema=False)
    web.add_api_route("/api/docs/{name}", docs_asset, methods=["GET"], include_in_schema=False)
    web.state.services = Services(app.runner, accounts or app.accounts, app.settings, app.notices)
    web.include_router(api.router)
    web.include_router(desk.router)
    from interfaces import ppe_web  # PPE stocks: /api/v1/ppe and the desk's /ppe pages
    from resources.ppe.service import PpeService

    ppe_web.install(web, PpeService(app))
    web.include_router(ecmo_api.router)  # issue 11: the ECMO fleet (API, then desk pages)
    web.include_router(ecmo_desk.router)
    web.include_router(situation.router)  # the situation room: API and desk (issue 14)
    web.include_router(situation.desk_router)
    from interfaces import beds_web  # issue 13: critical-care capacity (API and desk)

    web.state.beds = app.beds
    web.include_router(beds_web.api_router)
    web.include_router(beds_web.desk_router)
    web.add_exception_handler(RegulError, _choose(problems.regul_error, desk.regul_error))
    web.add_exception_handler(
        problems.Problem, _choose(problems.interface_problem, desk.interface_problem)
    )
    web.add_exception_handler(
        RequestValidationError, _choose(_credentials_first, desk.invalid_request)
    )
    web.add_exception_handler(StarletteHTTPException, _choose(problems.http_error, desk.http_error))
    web.add_exception_handler(Exception, _choose(problems.internal_error, desk.internal_error))

    web.add_middleware(SecurityHeaders)
    web.add_middleware(problems.BodyLimit, limit=app.settings.max_body_bytes)
    return web


def docs_page() -> Response:
    return HTMLResponse(DOCS_PAGE, headers={"Content-Security-Policy": DOCS_CSP})


_ASSETS: dict[str, bytes] = {}


def docs_asset(name: str) -> Response:
    """Swagger UI's files, from the ``swagger-ui-bundle-v2`` package; ``init.js`` is ours."""
    if name not in DOCS_ASSETS:
        raise HTTPException(404)
    if name not in _ASSETS:
        if name == "init.js":
            _ASSETS[name] = resources.files("templates").joinpath("desk/api-docs.js").read_bytes()
        else:
            from swagger_ui_bundle import swagger_ui_path

            _ASSETS[name] = swagger_ui_path.joinpath(name).read_bytes()
    return Response(
        _ASSETS[name], media_type=DOCS_ASSETS[name], headers={"Cache-Control": "max-age=86400"}
    )


class SecurityHeaders:
    """Adds ``HEADERS`` to every answer that lacks them: plain ASGI, no per-request task.

    (Starlette's ``BaseHTTPMiddleware`` cost 0.5 ms of CPU per request in bench/api.py.)
    """

    _RAW = tuple((k.lower().encode(), v.encode()) for k, v in HEADERS.items())

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self._RAW if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, sending)


def from_environment() -> FastAPI:
    """The application from the environment's settings: what each ``--workers`` process runs."""
    from interfaces.app import build_app

    return create_web(build_app())


Handler = Callable[[Request, Exception], Awaitable[Response]]


async def _credentials_first(request: Request, exc: Exception) -> Response:
    """An API request whose input is invalid: bad credentials are answered first (401, 403).

    The case routes check an API token in the command's own transaction, after FastAPI has
    validated the input: here the credentials are checked as the other routes check them
    before their input, so that a caller who is not known learns nothing of what is valid.
    """
    if request.headers.get("authorization") is not None or request.cookies.get(SESSION_COOKIE):
        try:
            await run_in_threadpool(api_caller, request)
        except RegulError as error:
            return await problems.regul_error(request, error)
        except problems.Problem as error:
            return await problems.interface_problem(request, error)
    return await problems.invalid_request(request, exc)


def _choose(for_api: Handler, for_desk: Handler) -> Handler:
    """API paths get problem+json; the desk's pages get a French HTML page."""

    async def handle(request: Request, exc: Exception) -> Response:
        if desk.is_desk(request):
            return await for_desk(request, exc)
        return await for_api(request, exc)

    return handle
