"""Who is calling: an API token (``Authorization: Bearer``) or a desk session cookie.

The API takes either; a cookie on a request that changes something must also carry the
session's CSRF token (``X-CSRF-Token`` header, or the ``csrf`` form field on the desk). The
checks themselves live in ``engine.accounts``; this module only reads headers and cookies.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from engine.accounts import Accounts, SessionInfo
from engine.actors import Actor
from engine.errors import Unauthenticated
from engine.runner import Runner
from engine.settings import Settings
from interfaces.problems import Problem
from notifications.service import Notices

__all__ = ["SESSION_COOKIE", "Caller", "Services", "api_caller", "services"]

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


def api_caller(request: Request) -> Caller:
    """The caller of an API route, or 401 with what to send."""
    accounts = services(request).accounts
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated("send 'Authorization: Bearer <token>' with an API token")
        return Caller(accounts.token_actor(secret.strip()), "api")
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
