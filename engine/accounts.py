"""Accounts: users, passwords, desk sessions and API tokens.

Passwords are hashed with argon2id (memory-hard, ``argon2-cffi``). Sessions and API tokens are
random secrets handed to the client once; the database keeps only their SHA-256, so a stolen
database dump opens nothing. Every request re-reads the session or token with its user, so
disabling a user ends their sessions and tokens at once. Failed logins and refused
credentials are recorded in the audit log's ``security`` stream.

Guessing is made expensive for the guesser, not for the account's owner: failures are counted
per (login, client address) in ``login_attempt``, incremented *before* the password is checked
in the transaction that decides whether to check it, so concurrent guesses cannot all slip
through. A client gets ``FREE_GUESSES`` tries, then waits a delay that doubles at each further
failure; another client (the owner's) is not slowed. Past ``LOGIN_CEILING`` failures of one
login from all clients (a spread-out attack), the event is reported and every client gets a
single try before its delay. An administrator's password reset or ``unlock`` clears the
counters. Talks to ``Database`` and the clock; knows nothing of HTTP (the interfaces set
cookies and read headers, and name the client address).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from engine import tables
from engine.actors import Actor, load_actor, load_org
from engine.audit import Draft
from engine.clock import Clock
from engine.db import Database
from engine.errors import Conflict, InputError, NotFound, NotPermitted, Unauthenticated

__all__ = [
    "ROLES",
    "Accounts",
    "Login",
    "LoginBlocked",
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
    "sfctcv": frozenset({"sfctcv"}),
    "auditor": frozenset({"ars", "ccs"}),
    "admin": frozenset({"ccs"}),
}
MIN_PASSWORD = 12
TOKEN_PREFIX = "regul_"

_USER = tables.USER
_SESSION = tables.SESSION
_TOKEN = tables.API_TOKEN
_ATTEMPT = tables.LOGIN_ATTEMPT
_DRAFT = tables.DESK_DRAFT
_KEY = tables.SERVER_KEY
# Per (login, client) and WINDOW: FREE_GUESSES tries, then a delay of BACKOFF doubling at each
# further failure, up to BACKOFF_MAX. Per login from every client: past LOGIN_CEILING failures in
# the window, reported, and each client gets one try before its delay. A success does not give
# the client its tries back (a guesser behind the same address would get them): it only
# withdraws its own attempt; the window's end does.
FREE_GUESSES = 5
BACKOFF = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
LOGIN_CEILING = 100
WINDOW = timedelta(hours=1)
ALL_CLIENTS = "*"
# A desk form kept across an ended session waits this long for its author's next login.
DRAFT_TTL = timedelta(hours=1)
LOGIN_CSRF_TTL = timedelta(hours=1)
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


class LoginBlocked(Unauthenticated):
    """Too many failed logins of this login from this client: wait until ``until``."""

    def __init__(self, message: str, until: datetime, minutes: int) -> None:
        super().__init__(message)
        self.until, self.minutes = until, minutes


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
        self._server_key: bytes | None = None

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
            conn.execute(_ATTEMPT.delete().where(_ATTEMPT.c.login == login))

    def unlock(self, login: str, *, by: str = "admin") -> int:
        """Forget the failed logins of ``login`` from every client; returns how many were."""
        with self.db.write() as conn:
            self._user(conn, login)
            rows = conn.execute(
                sa.select(_ATTEMPT.c.client, _ATTEMPT.c.failures).where(_ATTEMPT.c.login == login)
            ).all()
            cleared = int(sum(r.failures for r in rows if r.client != ALL_CLIENTS))
            conn.execute(_ATTEMPT.delete().where(_ATTEMPT.c.login == login))
            _security(
                conn, self.clock.now(), by, "login_unlocked", {"user": login, "cleared": cleared}
            )
        return cleared

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
                    "('regul users token LOGIN')",
                    why="token_unknown",
                )
            return self._active_actor(conn, row.login)

    # -- desk sessions --------------------------------------------------------------------

    def login(
        self, login: str, password: str, *, client: str = "-", resume: str | None = None
    ) -> Login:
        """Check a password and open a session; any failure says the same thing.

        ``client`` is the caller's address (failures are counted per login and client);
        ``resume`` the secret of the caller's ended session, whose kept form (``keep_draft``)
        moves to the new session if it is the same user's.
        """
        now = self.clock.now()
        login = login.replace("\x00", "")[:64] or "-"  # PostgreSQL text cannot hold U+0000
        client = client.replace("\x00", "")[:64] or "-"
        with self.db.write() as conn:
            failures, blocked = self._reserve(conn, login, client, now)
            row = conn.execute(sa.select(_USER).where(_USER.c.login == login)).first()
            if blocked is not None and failures == 0:
                wait = max(1, -(-int((blocked - now).total_seconds()) // 60))
                raise LoginBlocked(
                    f"too many failed logins for {login!r} from this address: wait {wait} "
                    "minute(s), or ask an administrator ('regul users unlock LOGIN')",
                    blocked,
                    wait,
                )
        ok = self._verify(row.password_hash if row is not None else None, password)
        if not ok or row is None or not row.active:
            with self.db.write() as conn:
                data: dict[str, object] = {"user": login, "client": client, "failures": failures}
                if blocked is not None:
                    data["blocked_until"] = blocked.isoformat()
                _security(conn, now, login, "login_failed", data)
            raise Unauthenticated(
                "wrong login or password, or the account is disabled: try again or ask an "
                "administrator",
                why="wrong_login",
            )
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.db.write() as conn:
            actor = load_actor(conn, login)
            self._succeeded(conn, login, client)
            conn.execute(
                _SESSION.insert().values(
                    id=digest(secret), login=login, csrf=csrf, created_at=now, last_seen_at=now
                )
            )
            if resume:
                conn.execute(
                    _DRAFT.update()
                    .where(
                        _DRAFT.c.session_id == digest(resume),
                        _DRAFT.c.login == login,
                        _DRAFT.c.created_at >= now - DRAFT_TTL,
                    )
                    .values(session_id=digest(secret))
                )
            if self.hasher.check_needs_rehash(row.password_hash or ""):
                rehashed = self.hasher.hash(password)
                conn.execute(
                    _USER.update().where(_USER.c.login == login).values(password_hash=rehashed)
                )
        return Login(secret, csrf, actor)

    def _reserve(
        self, conn: Connection, login: str, client: str, now: datetime
    ) -> tuple[int, datetime | None]:
        """Count this attempt before its password is checked: (failures with it, blocked until).

        ``failures == 0`` with a date: the client is blocked, the password must not be
        checked. Otherwise the attempt is counted (undone by ``_succeeded``) and the date, if
        any, is when this client may try again should this attempt fail. The upsert locks the
        row (PostgreSQL) or runs under the write lock (SQLite): attempts of one (login, client)
        are counted one after another, however many arrive at once.
        """
        stale = now - WINDOW
        counted = self._upsert(conn, login, client, now, stale, only_unblocked=True)
        if counted is None:
            until = conn.execute(
                sa.select(_ATTEMPT.c.blocked_until).where(
                    _ATTEMPT.c.login == login, _ATTEMPT.c.client == client
                )
            ).scalar_one()
            return 0, until
        overall = self._upsert(conn, login, ALL_CLIENTS, now, stale, only_unblocked=False)
        assert overall is not None
        if overall == LOGIN_CEILING + 1:
            _security(conn, now, login, "login_ceiling", {"user": login, "failures": overall})
        free = FREE_GUESSES if overall <= LOGIN_CEILING else 1
        if counted < free:
            return counted, None
        until = now + min(BACKOFF * 2 ** min(counted - free, 20), BACKOFF_MAX)
        conn.execute(
            _ATTEMPT.update()
            .where(_ATTEMPT.c.login == login, _ATTEMPT.c.client == client)
            .values(blocked_until=until)
        )
        return counted, until

    @staticmethod
    def _upsert(
        conn: Connection,
        login: str,
        client: str,
        now: datetime,
        stale: datetime,
        *,
        only_unblocked: bool,
    ) -> int | None:
        """Add one failure to (login, client) atomically; None when the row is blocked."""
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert: Any = dialect.insert(_ATTEMPT).values(
            login=login, client=client, failures=1, blocked_until=None, since=now
        )
        fresh = _ATTEMPT.c.since < stale
        statement = insert.on_conflict_do_update(
            index_elements=["login", "client"],
            set_={
                "failures": sa.case((fresh, 1), else_=_ATTEMPT.c.failures + 1),
                "blocked_until": sa.case((fresh, None), else_=_ATTEMPT.c.blocked_until),
                "since": sa.case((fresh, now), else_=_ATTEMPT.c.since),
            },
            where=(
                sa.or_(_ATTEMPT.c.blocked_until.is_(None), _ATTEMPT.c.blocked_until <= now)
                if only_unblocked
                else None
            ),
        ).returning(_ATTEMPT.c.failures)
        found: int | None = conn.execute(statement).scalar_one_or_none()
        return found

    @staticmethod
    def _succeeded(conn: Connection, login: str, client: str) -> None:
        """The right password: its attempt leaves the counts, and the delay it set, if any."""
        conn.execute(
            _ATTEMPT.update()
            .where(_ATTEMPT.c.login == login, _ATTEMPT.c.client == client)
            .values(
                failures=_ATTEMPT.c.failures - 1,
                blocked_until=sa.case(
                    (_ATTEMPT.c.failures <= FREE_GUESSES, None), else_=_ATTEMPT.c.blocked_until
                ),
            )
        )
        conn.execute(
            _ATTEMPT.update()
            .where(_ATTEMPT.c.login == login, _ATTEMPT.c.client == ALL_CLIENTS)
            .values(failures=_ATTEMPT.c.failures - 1)
        )

    # -- the login form's CSRF token and the forms kept across an ended session -------------

    def login_csrf(self) -> str:
        """A token for the login form: the same value goes in its cookie and its hidden field.

        ``nonce.issued.mac``, the MAC keyed by a server key: a pair an attacker makes up
        (cookie and field that agree) is refused, and a token lasts ``LOGIN_CSRF_TTL``.
        """
        body = f"{secrets.token_urlsafe(18)}.{int(self.clock.now().timestamp())}"
        return f"{body}.{self._mac(body)}"

    def login_csrf_ok(self, cookie: str | None, given: str | None) -> bool:
        if not cookie or not given or not hmac.compare_digest(cookie.encode(), given.encode()):
            return False
        body, _, mac = cookie.rpartition(".")
        issued = body.rpartition(".")[2]
        if not issued.isascii() or not issued.isdigit() or len(issued) > 12:
            return False
        age = self.clock.now().timestamp() - int(issued)
        return 0 <= age <= LOGIN_CSRF_TTL.total_seconds() and hmac.compare_digest(
            self._mac(body).encode(), mac.encode()
        )

    def keep_draft(self, secret: str, csrf: str, path: str, values: dict[str, str]) -> bool:
        """Keep a form posted with an ended session, for its author's next login.

        Only a session that ended by itself (idle or maximum length, not logout nor a disabled
        user) and a form carrying that session's CSRF token; returns whether it was kept.
        """
        now = self.clock.now()
        with self.db.write() as conn:
            row = conn.execute(_SESSION_OF, {"id": digest(secret)}).first()
            if row is None or row.ended_at is not None or not self.csrf_ok(row.csrf, csrf):
                return False
            user = conn.execute(sa.select(_USER).where(_USER.c.login == row.login)).first()
            if user is None or not user.active:
                return False
            conn.execute(_DRAFT.delete().where(_DRAFT.c.created_at < now - DRAFT_TTL))
            conn.execute(_DRAFT.delete().where(_DRAFT.c.session_id == row.id))
            conn.execute(
                _DRAFT.insert().values(
                    session_id=row.id, login=row.login, path=path, form=values, created_at=now
                )
            )
        return True

    def take_draft(self, session_id: str, path: str) -> dict[str, str] | None:
        """The form kept for this session and page, removed as it is handed back."""
        now = self.clock.now()
        with self.db.read() as conn:
            found = conn.execute(
                sa.select(_DRAFT.c.id).where(
                    _DRAFT.c.session_id == session_id, _DRAFT.c.path == path
                )
            ).first()
        if found is None:  # the usual case: a page view is not a write
            return None
        with self.db.write() as conn:
            row = conn.execute(
                _DRAFT.delete()
                .where(_DRAFT.c.id == found.id, _DRAFT.c.created_at >= now - DRAFT_TTL)
                .returning(_DRAFT.c.form)
            ).first()
        if row is None:
            return None
        kept = row.form if isinstance(row.form, dict) else {}
        return {str(k): str(v) for k, v in kept.items()}

    def session(self, secret: str) -> SessionInfo:
        """The live session behind a cookie (its last use refreshed), or ``Unauthenticated``."""
        now = self.clock.now()
        sid = digest(secret)
        with self.db.read() as conn:
            row = conn.execute(_SESSION_OF, {"id": sid}).first()
            if row is None or row.ended_at is not None:
                raise Unauthenticated("your session has ended: log in again", why="session_ended")
            if now >= row.created_at + self.session_max:
                raise Unauthenticated(
                    "your session reached its maximum length: log in again", why="session_max"
                )
            if now >= row.last_seen_at + self.session_idle:
                raise Unauthenticated(
                    "your session expired after inactivity: log in again", why="session_idle"
                )
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

    def _mac(self, body: str) -> str:
        return hmac.new(self._key(), body.encode(), hashlib.sha256).hexdigest()

    def _key(self) -> bytes:
        """The server key of the login form's tokens, created once per database."""
        if self._server_key is None:
            query = sa.select(_KEY.c.value).where(_KEY.c.name == "login_csrf")
            with self.db.read() as conn:
                value = conn.execute(query).scalar_one_or_none()
            if value is None:
                dialect = postgresql if self.db.dialect == "postgresql" else sqlite
                insert: Any = dialect.insert(_KEY).values(
                    name="login_csrf", value=secrets.token_hex(32)
                )
                with self.db.write() as conn:
                    conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
                    value = conn.execute(query).scalar_one()
            self._server_key = bytes.fromhex(value)
        return self._server_key

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
            raise Unauthenticated(
                f"user {login!r} is disabled: ask an administrator", why="user_disabled"
            ) from None


def _security(
    conn: Connection, now: datetime, actor: str, action: str, data: dict[str, object]
) -> None:
    from engine.unit_of_work import append_security  # the one writer of the audit log

    append_security(conn, Draft(actor, "", "", action, None, None, 0, "", dict(data)), now)
