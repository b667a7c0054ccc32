"""RFC 9457 problem details: every error of the HTTP API, and the body-size guard.

Engine errors map to a status by their ``code``; request validation errors name the field
and what is wrong with it; anything unexpected becomes a 500 whose detail says to retry and
report, never a stack trace (the trace goes to the server's log). The desk asks for HTML and
gets the same facts on a French page (``interfaces.desk``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.errors import RegulError

__all__ = ["BodyLimit", "Problem", "problem", "regul_status", "validation_detail"]

log = logging.getLogger("regul.http")
MEDIA = "application/problem+json"
STATUS = {
    "invalid_input": 422,
    "invalid_workflow": 422,
    "not_found": 404,
    "conflict": 409,
    "trigger_not_allowed": 409,
    "stale_version": 412,
    "idempotency_mismatch": 422,
    "not_permitted": 403,
    "unauthenticated": 401,
    "storage": 503,
}
TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Not permitted",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    412: "Precondition failed",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    428: "Precondition required",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(Exception):
    """An HTTP-level problem raised by the interface itself (missing If-Match, bad header)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def regul_status(exc: RegulError) -> int:
    return STATUS.get(exc.code, 400)


def problem(
    status: int, code: str, detail: str, instance: str = "", headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        # a detail that quotes the caller's text may carry a lone surrogate, which UTF-8 cannot
        "detail": detail.encode("utf-8", "backslashreplace").decode("utf-8"),
        "code": code,
    }
    if instance:
        body["instance"] = instance
    extra = dict(headers or {})
    if status == 401:
        extra.setdefault("WWW-Authenticate", 'Bearer realm="regul"')
    return JSONResponse(body, status_code=status, media_type=MEDIA, headers=extra)


def validation_detail(exc: RequestValidationError) -> tuple[int, str, str]:
    """The status, code and one-line detail of a request that failed validation."""
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed_json", "the body is not valid JSON: send a JSON object"
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        kind = error.get("type", "")
        if kind == "extra_forbidden":
            parts.append(f"{where}: unknown field, remove it")
        elif kind == "missing":
            parts.append(f"{where}: required, add it")
        else:
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return 422, "invalid_input", "; ".join(parts) or "the request is invalid"


async def regul_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegulError)
    return problem(regul_status(exc), exc.code, exc.message, request.url.path)


async def interface_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem(exc.status, exc.code, exc.detail, request.url.path)


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    status, code, detail = validation_detail(exc)
    return problem(status, code, detail, request.url.path)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = {
        404: f"no such resource {request.url.path}: see /openapi.json for the API's paths",
        405: f"{request.method} is not allowed on {request.url.path}: see /openapi.json",
    }.get(exc.status_code, str(exc.detail))
    code = {404: "no_route", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):
        code, detail = "malformed_json", "the body is not valid JSON: send a JSON object in UTF-8"
    return problem(exc.status_code, code, detail, request.url.path, dict(exc.headers or {}))


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        500,
        "internal",
        "an unexpected error occurred; nothing was changed if the request failed before "
        "its commit: retry, and report it with the time if it persists",
        request.url.path,
    )


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with a 413 problem, before anyone reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(scope, receive, send)
            return
        seen, over, started = 0, False, False

        async def counted() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise _TooLarge
            return message

        async def sending(message: Message) -> None:
            # A chunked body has no Content-Length: the limit trips while the route reads it,
            # and FastAPI turns any error there into "400 error parsing the body". Whatever
            # answer the route makes of it is dropped for the 413 it should be.
            nonlocal started
            if over and not started:
                return
            started = True
            await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, counted, sending)
        if over and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = json.dumps(
            {
                "type": "/problems/too_large",
                "title": TITLES[413],
                "status": 413,
                "detail": f"the body exceeds {self.limit} bytes: send less",
                "code": "too_large",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", MEDIA.encode()),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
