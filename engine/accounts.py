"""Accounts: users, passwords, desk sessions and API tokens.

Passwords are hashed with argon2id (memory-hard, ``argon2-cffi``). Sessions and API tokens are
random secrets handed to the client once; the database keeps only their SHA-256, so a stolen
database dump opens nothing. Every request re-reads the session or token with its user, so
disabling a user ends their sessions and tokens at once. Failed logins and refused
credentials are recorded in the audit log's ``security`` stream. Talks to ``Database`` and
the clock; knows nothing of HTTP (the interfaces set cookies and read headers).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection

from engine import audit, tables
from engine.actors import Actor, load_actor, load_org
from engine.audit import Draft
from engine.clock import Clock
from engine.db import Database
from engine.errors import Conflict, InputError, NotFound, NotPermitted, Unauthenticated

__all__ = [
    "ROLES",
    "Accounts",
    "Login",
    "TokenInfo",
    "UserInfo",
]

# Which kind of organisation each role belongs to (DESIGN.md, "Who uses it").
ROLES: dict[str, frozenset[str]] = {
    "establishment": frozenset({"hospital"}),
    "ght": frozenset({"ght"}),
    "umac": frozenset({"umac"}),
    "ars": frozenset({"ars"}),
    "ars_zone": frozenset({"ars_zone"}),
    "ccs": frozenset({"ccs"}),
    "spf": frozenset({"spf"}),
    "auditor": frozenset({"ars", "ccs"}),
    "admin": frozenset({"ccs"}),
}
MIN_PASSWORD = 12
TOKEN_PREFIX = "regul_"

_USER = tables.USER
_SESSION = tables.SESSION
_TOKEN = tables.API_TOKEN
_EVENT = tables.AUDIT_EVENT
# Failed logins of one login name in the window: past the limit, every attempt is refused
# until the window has passed (the audit log's security stream is the counter).
LOCKOUT_LIMIT = 5
LOCKOUT_WINDOW = timedelta(minutes=15)
_FAILURES = (
    sa.select(sa.func.count())
    .select_from(_EVENT)
    .where(
        _EVENT.c.case_id.is_(None),
        _EVENT.c.action == "login_failed",
        _EVENT.c.actor == sa.bindparam("login"),
        _EVENT.c.at >= sa.bindparam("since"),
    )
)
_SESSION_OF = sa.select(_SESSION).where(_SESSION.c.id == sa.bindparam("id"))
_TOKEN_OF = sa.select(_TOKEN).where(_TOKEN.c.digest == sa.bindparam("digest"))
_TOUCH = (
    _SESSION.update()
    .where(_SESSION.c.id == sa.bindparam("b_id"))
    .values(last_seen_at=sa.bindparam("seen"))
)
# A session's last use is written at most once a minute: a desk page is not a write.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class UserInfo:
    login: str
    name: str
    role: str
    org: str
    active: bool
    has_password: bool
    tokens: int


@dataclass(frozen=True)
class TokenInfo:
    id: int
    login: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Login:
    """A new desk session: the secret goes in the cookie, the CSRF token in every form."""

    secret: str
    csrf: str
    actor: Actor


@dataclass(frozen=True)
class SessionInfo:
    actor: Actor
    csrf: str
    id: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    """Users, passwords, sessions and tokens, on one database and one clock."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        session_idle: timedelta = timedelta(minutes=30),
        session_max: timedelta = timedelta(hours=12),
        memory_kib: int = 65536,
        time_cost: int = 3,
    ) -> None:
        self.db, self.clock = db, clock
        self.session_idle, self.session_max = session_idle, session_max
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        # Checked against when the login is unknown, so that timing does not tell who exists.
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))

    # -- users ----------------------------------------------------------------------------

    def add_user(
        self, *, login: str, name: str, role: str, org: str, password: str | None = None
    ) -> UserInfo:
        login, name = login.strip(), name.strip()
        if not login or len(login) > 64 or not all(c.isalnum() or c in "-_.@" for c in login):
            raise InputError(f"login {login!r}: use 1 to 64 letters, digits, '-', '_', '.' or '@'")
        if not name:
            raise InputError("a user needs a name: give --name")
        if role not in ROLES:
            raise InputError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        hashed = self._hash(password) if password is not None else None
        with self.db.write() as conn:
            place = load_org(conn, org)
            if place.kind not in ROLES[role]:
                kinds = " or ".join(sorted(ROLES[role]))
                raise InputError(
                    f"{org} is a {place.kind}: a user with role {role} belongs to a {kinds}"
                )
            if conn.execute(sa.select(_USER.c.login).where(_USER.c.login == login)).first():
                raise Conflict(f"user {login!r} already exists: pick another login")
            conn.execute(
                _USER.insert().values(
                    login=login, name=name, role=role, org=org, active=True, password_hash=hashed
                )
            )
        return UserInfo(login, name, role, org, True, hashed is not None, 0)

    def set_password(self, login: str, password: str) -> None:
        hashed = self._hash(password)
        with self.db.write() as conn:
            self._user(conn, login)
            conn.execute(_USER.update().where(_USER.c.login == login).values(password_hash=hashed))

    def list_users(self, *, role: str | None = None, org: str | None = None) -> list[UserInfo]:
        live = (
            sa.select(sa.func.count())
            .where(_TOKEN.c.login == _USER.c.login, _TOKEN.c.revoked_at.is_(None))
            .scalar_subquery()
        )
        query = sa.select(_USER, live.label("tokens")).order_by(_USER.c.login)
        if role is not None:
            query = query.where(_USER.c.role == role)
        if org is not None:
            query = query.where(_USER.c.org == org)
        with self.db.read() as conn:
            return [
                UserInfo(
                    r.login, r.name, r.role, r.org, r.active, r.password_hash is not None, r.tokens
                )
                for r in conn.execute(query)
            ]

    def disable(self, login: str, *, by: str = "admin") -> int:
        """Disable a user and end their sessions and tokens; returns how many were ended."""
        now = self.clock.now()
        with self.db.write() as conn:
            self._user(conn, login)
            conn.execute(_USER.update().where(_USER.c.login == login).values(active=False))
            ended = conn.execute(
                _SESSION.update()
                .where(_SESSION.c.login == login, _SESSION.c.ended_at.is_(None))
                .values(ended_at=now)
            ).rowcount
            ended += conn.execute(
                _TOKEN.update()
                .where(_TOKEN.c.login == login, _TOKEN.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            _security(conn, now, by, "user_disabled", {"user": login, "ended": ended})
        return ended

    # -- API tokens -----------------------------------------------------------------------

    def issue_token(self, login: str, *, label: str) -> tuple[str, TokenInfo]:
        """A new token for ``login``: the secret is returned once and never stored."""
        label = label.strip()
        if not label or len(label) > 200:
            raise InputError("a token needs a label of 1 to 200 characters, e.g. --label samu-31")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        with self.db.write() as conn:
            user = self._user(conn, login)
            if not user.active:
                raise NotPermitted(f"user {login!r} is disabled: no token can be issued")
            token_id = conn.execute(
                _TOKEN.insert()
                .values(digest=digest(secret), login=login, label=label, created_at=now)
                .returning(_TOKEN.c.id)
            ).scalar_one()
            _security(conn, now, "admin", "token_issued", {"user": login, "token": token_id})
        return secret, TokenInfo(token_id, login, label, now, None)

    def tokens(self, login: str | None = None) -> list[TokenInfo]:
        query = sa.select(_TOKEN).order_by(_TOKEN.c.id)
        if login is not None:
            query = query.where(_TOKEN.c.login == login)
        with self.db.read() as conn:
            return [
                TokenInfo(r.id, r.login, r.label, r.created_at, r.revoked_at)
                for r in conn.execute(query)
            ]

    def revoke_token(self, token_id: int) -> TokenInfo:
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute(sa.select(_TOKEN).where(_TOKEN.c.id == token_id)).first()
            if row is None:
                raise NotFound(f"no token {token_id}: list them with 'regul users tokens'")
            if row.revoked_at is None:
                conn.execute(_TOKEN.update().where(_TOKEN.c.id == token_id).values(revoked_at=now))
                _security(conn, now, "admin", "token_revoked", {"token": token_id})
            return TokenInfo(row.id, row.login, row.label, row.created_at, row.revoked_at or now)

    def token_actor(self, secret: str) -> Actor:
        """The active user behind an API token, or ``Unauthenticated``."""
        with self.db.read() as conn:
            row = conn.execute(_TOKEN_OF, {"digest": digest(secret)}).first()
            if row is None or row.revoked_at is not None:
                raise Unauthenticated(
                    "this API token is unknown or revoked: ask an administrator for a new one "
                    "('regul users token LOGIN')"
                )
            return self._active_actor(conn, row.login)

    # -- desk sessions --------------------------------------------------------------------

    def login(self, login: str, password: str) -> Login:
        """Check a password and open a session; any failure says the same thing."""
        now = self.clock.now()
        login = login.replace("\x00", "")[:64]  # PostgreSQL text cannot hold U+0000
        with self.db.read() as conn:
            row = conn.execute(sa.select(_USER).where(_USER.c.login == login)).first()
            failures = conn.execute(
                _FAILURES, {"login": login or "-", "since": now - LOCKOUT_WINDOW}
            ).scalar_one()
        if failures >= LOCKOUT_LIMIT:
            with self.db.write() as conn:
                _security(conn, now, login or "-", "login_failed", {"user": login, "locked": True})
            raise Unauthenticated(
                f"too many failed logins for {login!r}: wait {LOCKOUT_WINDOW.seconds // 60} "
                "minutes, or ask an administrator"
            )
        ok = self._verify(row.password_hash if row is not None else None, password)
        if not ok or row is None or not row.active:
            with self.db.write() as conn:
                _security(conn, now, login or "-", "login_failed", {"user": login})
            raise Unauthenticated(
                "wrong login or password, or the account is disabled: try again or ask an "
                "administrator"
            )
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.db.write() as conn:
            actor = load_actor(conn, login)
            conn.execute(
                _SESSION.insert().values(
                    id=digest(secret), login=login, csrf=csrf, created_at=now, last_seen_at=now
                )
            )
            if self.hasher.check_needs_rehash(row.password_hash or ""):
                rehashed = self.hasher.hash(password)
                conn.execute(
                    _USER.update().where(_USER.c.login == login).values(password_hash=rehashed)
                )
        return Login(secret, csrf, actor)

    def session(self, secret: str) -> SessionInfo:
        """The live session behind a cookie (its last use refreshed), or ``Unauthenticated``."""
        now = self.clock.now()
        sid = digest(secret)
        with self.db.read() as conn:
            row = conn.execute(_SESSION_OF, {"id": sid}).first()
            if row is None or row.ended_at is not None:
                raise Unauthenticated("your session has ended: log in again")
            if now >= row.created_at + self.session_max:
                raise Unauthenticated("your session reached its maximum length: log in again")
            if now >= row.last_seen_at + self.session_idle:
                raise Unauthenticated("your session expired after inactivity: log in again")
            actor = self._active_actor(conn, row.login)
        if now - row.last_seen_at >= TOUCH_EVERY:
            with self.db.write() as conn:
                conn.execute(_TOUCH, {"b_id": sid, "seen": now})
        return SessionInfo(actor, row.csrf, sid)

    def logout(self, secret: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                _SESSION.update()
                .where(_SESSION.c.id == digest(secret), _SESSION.c.ended_at.is_(None))
                .values(ended_at=self.clock.now())
            )

    @staticmethod
    def csrf_ok(expected: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())

    # -- helpers --------------------------------------------------------------------------

    def _hash(self, password: str) -> str:
        if len(password) < MIN_PASSWORD:
            raise InputError(f"a password needs at least {MIN_PASSWORD} characters")
        if len(password) > 1024:
            raise InputError("a password may not exceed 1024 characters")
        return self.hasher.hash(password)

    def _verify(self, hashed: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(hashed or self._decoy, password) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _user(conn: Connection, login: str) -> sa.Row[tuple[object, ...]]:
        row = conn.execute(sa.select(_USER).where(_USER.c.login == login)).first()
        if row is None:
            raise NotFound(f"unknown user {login!r}: list users with 'regul users list'")
        return row

    @staticmethod
    def _active_actor(conn: Connection, login: str) -> Actor:
        try:
            return load_actor(conn, login)
        except (NotFound, NotPermitted):
            raise Unauthenticated(f"user {login!r} is disabled: ask an administrator") from None


def _security(
    conn: Connection, now: datetime, actor: str, action: str, data: dict[str, object]
) -> None:
    audit.append_security(
        conn, at=now, draft=Draft(actor, "", "", action, None, None, 0, "", dict(data))
    )
