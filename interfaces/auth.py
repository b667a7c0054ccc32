"""Who is calling: an API token (``Authorization: Bearer``) or a desk session cookie.

The API takes either; a cookie on a request that changes something must also carry the
session's CSRF token (``X-CSRF-Token`` header, or the ``csrf`` form field on the desk). The
checks themselves live in ``engine.accounts``; this module only reads headers and cookies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from engine.accounts import Accounts, SessionInfo
from engine.actors import Actor
from engine.errors import Unauthenticated
from engine.runner import Runner
from engine.settings import Settings
from engine.unit_of_work import Token
from interfaces.problems import Problem
from notifications.service import Notices

__all__ = [
    "SESSION_COOKIE",
    "Caller",
    "CaseCaller",
    "Services",
    "api_caller",
    "case_caller",
    "services",
    "services_of",
]

SESSION_COOKIE = "regul_session"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Services:
    """What the HTTP layer needs, built once by ``interfaces.web.create_web``."""

    runner: Runner
    accounts: Accounts
    settings: Settings
    notices: Notices


@dataclass(frozen=True)
class Caller:
    actor: Actor
    via: str  # api (token) or desk (session)
    session: SessionInfo | None = None

    @property
    def login(self) -> str:
        return self.actor.login


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def services_of(request: Request) -> Services:
    """``services`` as a dependency of the API's routes (async: no hand-off to a thread)."""
    return services(request)


def _bearer(header: str) -> str:
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("send 'Authorization: Bearer <token>' with an API token")
    return secret.strip()


def api_caller(request: Request) -> Caller:
    """The caller of an API route, or 401 with what to send."""
    accounts = services(request).accounts
    header = request.headers.get("authorization")
    if header is not None:
        return Caller(accounts.token_actor(_bearer(header)), "api")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = accounts.session(cookie)
        if request.method in UNSAFE and not accounts.csrf_ok(
            session.csrf, request.headers.get("x-csrf-token")
        ):
            raise Problem(
                403,
                "csrf_failed",
                "a desk session changing something must send its CSRF token in X-CSRF-Token",
            )
        return Caller(session.actor, "desk", session)
    raise Unauthenticated(
        "no credentials: send 'Authorization: Bearer <token>' (ask an administrator for a "
        "token: 'regul users token LOGIN')"
    )


@dataclass
class CaseCaller:
    """The caller of a case command or a recorded read (``login=`` of the runner's method).

    An API token is checked by the command's own transaction, with the case (one transaction
    per request, no lookup of its own before it); a desk session's cookie is checked here as
    ``api_caller`` does (its expiry, its last use, its CSRF token on a write), in the route's
    thread. The answers (401, 403) are the same; ``actor`` is known once the command ran.
    """

    request: Request
    token: Token | None = None
    _caller: Caller | None = field(default=None, repr=False)

    @property
    def login(self) -> Token | Actor:
        """What the route hands to the runner (call it in the route's thread)."""
        if self.token is not None:
            return self.token
        if self._caller is None:
            self._caller = api_caller(self.request)
        return self._caller.actor

    @property
    def via(self) -> str:
        return "api" if self.token is not None else "desk"

    @property
    def actor(self) -> Actor:
        """The caller, as the command found it."""
        found = self.token.actor if self.token is not None else self.login
        assert isinstance(found, Actor), "the command checks the token first"
        return found


async def case_caller(request: Request) -> CaseCaller:
    """The caller of a case route: a malformed or missing credential is 401 here, at once."""
    header = request.headers.get("authorization")
    if header is not None:
        return CaseCaller(request, Accounts.token(_bearer(header)))
    if not request.cookies.get(SESSION_COOKIE):
        api_caller(request)  # raises its 401, with what to send
    return CaseCaller(request)
