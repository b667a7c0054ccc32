"""The unit of work: applies an ``Outcome`` in one transaction, and is the only writer.

It is the one module that writes the case, audit, deadline, notice and idempotency tables.
A command opens one write transaction (``BEGIN IMMEDIATE`` on SQLite, issued where the write
starts; on PostgreSQL the case row is locked ``FOR UPDATE``), reads what the decision needs
(the actor, the case with its open deadline), lets ``engine.decisions`` decide, and calls
``Tx.apply``: the new case row, the audit events chained to the case's head, the case row
updated under its version, the deadline plan (close, touch, open), the security stream, and
the notices' facts, gathered by the notifier and numbered at commit in one global order
(rendered once, at dispatch).

Locks are always taken in one order: the case row, then its deadline row, then the security
stream's head, then the notice counters sorted by (series, year) at commit. The sweep takes
case rows with ``SKIP LOCKED`` before their deadline rows, so it never holds a row it skipped.
A PostgreSQL deadlock or serialisation failure is retried, bounded, and logged.

The hot statements run as prepared per-dialect SQL on the driver's cursor inside the
SQLAlchemy transaction (SQLAlchemy's per-statement cost was most of a transition's time: see
BENCHMARKS.md); the SQLModel tables stay the schema and the migrations.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from engine import idempotency
from engine.actors import load_actor, load_org
from engine.audit import GENESIS, HOLDER_STREAM, SECURITY_STREAM, canonical, chain_hash
from engine.cases import parse_reference
from engine.db import Database
from engine.errors import (
    Conflict,
    NotFound,
    NotPermitted,
    RegulError,
    StaleVersion,
    StorageError,
    Unauthenticated,
    no_case,
)
from engine.values import (
    SYSTEM,
    Actor,
    CaseView,
    DeadlineRow,
    Draft,
    HolderNotice,
    LedgerEntry,
    ObligationRow,
    OpenDeadline,
    Outcome,
    Place,
    reference_of,
)
from engine.workflow import WorkflowRegistry

__all__ = [
    "Effects",
    "Notifier",
    "PendingNotice",
    "SilentNotifier",
    "Token",
    "Tx",
    "UnitOfWork",
    "append_security",
]

T = TypeVar("T")
log = logging.getLogger("regul.unit_of_work")
DEADLOCK_RETRIES = 3


class PendingNotice(Protocol):
    """A notice's facts gathered in the transaction, waiting for its number at commit.

    ``series`` and ``year`` are the key of its counter row (``year`` 0 for a series that
    never restarts, such as MINSANTE); the text is rendered later, at dispatch.
    """

    series: str
    year: int

    def row(self, number: int) -> dict[str, Any]:
        """The notice row, numbered ``number`` in its series and year."""
        ...


class Notifier(Protocol):
    """The notice module as the unit of work sees it: declarations, then the notice's facts."""

    def declares(self, kind: str, event: str) -> bool: ...

    def prepare(
        self, conn: Connection, case: CaseView, draft: Draft, seq: int, now: datetime
    ) -> PendingNotice | None: ...

    def prepare_holder(
        self,
        conn: Connection,
        holder: str,
        draft: Draft,
        seq: int,
        notice: HolderNotice,
        now: datetime,
    ) -> PendingNotice | None: ...


class Effects(Protocol):
    """What a case's transition does to resources (the ``resources`` package's, injected).

    Called in the command's transaction with the case before the command and the decided
    outcome; returns the outcome with its ledger entries (a reservation, a loan, a release),
    reading the balances it needs through ``tx`` (locked). Refuses by raising a typed error
    before anything is written.
    """

    def __call__(self, tx: Tx, before: CaseView, outcome: Outcome) -> Outcome: ...


class SilentNotifier:
    """A notifier that queues nothing (tests of the engine alone, benchmarks with notices off)."""

    def declares(self, kind: str, event: str) -> bool:
        return False

    def prepare(
        self, conn: Connection, case: CaseView, draft: Draft, seq: int, now: datetime
    ) -> PendingNotice | None:
        return None

    def prepare_holder(
        self,
        conn: Connection,
        holder: str,
        draft: Draft,
        seq: int,
        notice: HolderNotice,
        now: datetime,
    ) -> PendingNotice | None:
        return None


# -- the hot statements, per dialect ----------------------------------------------------------

_CASE_COLS = (
    "id, kind, state, level, final, version, org, region, zone, department, ght, fields, "
    "opened_by, opened_at, updated_at, audit_seq, audit_hash, incident, on_hold"
)
_DL_COLS = "d.id, d.state, d.version, d.due_at, d.next_at, d.reminders, d.action, d.created_at"
_C_COLS = ", ".join(f"c.{c.strip()}" for c in _CASE_COLS.split(","))
_SQL = {
    "lock": f"SELECT {_C_COLS}, {_DL_COLS} FROM regul_case c LEFT JOIN deadline d "
    "ON d.case_id = c.id AND d.status = 'open' WHERE c.id = :id",
    "insert_case": "INSERT INTO regul_case (kind, state, level, final, version, org, region, "
    "zone, department, ght, fields, opened_by, opened_at, updated_at, audit_seq, audit_hash, "
    "incident, on_hold) VALUES (:kind, :state, :level, :final, :version, :org, :region, :zone, "
    ":department, :ght, :fields, :opened_by, :opened_at, :updated_at, :audit_seq, :audit_hash, "
    ":incident, :on_hold) RETURNING id",
    "insert_event": "INSERT INTO audit_event (case_id, seq, at, actor, role, org, action, "
    "from_state, to_state, version, reason, data, prev_hash, hash, stream) VALUES (:case_id, "
    ":seq, :at, :actor, :role, :org, :action, :from_state, :to_state, :version, :reason, :data, "
    ":prev_hash, :hash, :stream)",
    "head": "UPDATE regul_case SET audit_seq = :audit_seq, audit_hash = :audit_hash "
    "WHERE id = :id AND version = :old",
    "case": "UPDATE regul_case SET audit_seq = :audit_seq, audit_hash = :audit_hash, "
    "state = :state, level = :level, final = :final, version = :version, fields = :fields, "
    "updated_at = :updated_at, incident = :incident, on_hold = :on_hold "
    "WHERE id = :id AND version = :old",
    "close": "UPDATE deadline SET status = :status, closed_at = :now "
    "WHERE case_id = :case_id AND status = 'open'",
    "touch": "UPDATE deadline SET reminders = :reminders, next_at = :next_at WHERE id = :id",
    "open": "INSERT INTO deadline (case_id, state, version, due_at, next_at, reminders, action, "
    "status, created_at) VALUES (:case_id, :state, :version, :due_at, :next_at, :reminders, "
    ":action, 'open', :created_at)",
    "actor": "SELECT u.login, u.name, u.role, u.active, u.org, o.kind, o.region, o.zone, o.ght "
    "FROM regul_user u JOIN organisation o ON o.id = u.org WHERE u.login = :login",
    "token": "SELECT t.revoked_at, t.login, u.name, u.role, u.active, u.org, o.kind, o.region, "
    "o.zone, o.ght FROM api_token t LEFT JOIN regul_user u ON u.login = t.login "
    "LEFT JOIN organisation o ON o.id = u.org WHERE t.digest = :digest",
    # an establishment's place, and where it is delivered: its own address, else its GHT's
    "org": "SELECT o.id, o.kind, o.region, o.zone, o.department, o.ght, "
    "COALESCE(o.delivery_address, g.delivery_address) FROM organisation o "
    "LEFT JOIN organisation g ON g.id = o.ght AND g.kind = 'ght' WHERE o.id = :id",
    "security_head": "SELECT seq, hash FROM audit_head WHERE stream = :stream",
    "security_update": "UPDATE audit_head SET seq = :seq, hash = :hash WHERE stream = :stream",
    "security_seed": "INSERT INTO audit_head (stream, seq, hash) VALUES (:stream, :seq, :hash) "
    "ON CONFLICT (stream) DO NOTHING",
    "counter": "INSERT INTO notice_counter (series, year, last) VALUES (:series, :year, 1) "
    "ON CONFLICT (series, year) DO UPDATE SET last = notice_counter.last + 1 RETURNING last",
    "notice": "INSERT INTO notice (reference, series, year, number, kind, case_id, event_seq, "
    "stream, message_id, channel, subject, body_text, body_html, recipients, facts, status, "
    "attempts, next_attempt_at, last_error, created_at) VALUES (:reference, :series, :year, "
    ":number, :kind, :case_id, :event_seq, :stream, :message_id, :channel, :subject, "
    ":body_text, :body_html, :recipients, :facts, :status, :attempts, :next_attempt_at, "
    ":last_error, :created_at)",
    # -- resources (0009) --
    "report_version": "SELECT COALESCE(MAX(version), 0) + 1 FROM resource_report "
    "WHERE kind = :kind AND holder = :holder AND period = :period",
    "insert_report": "INSERT INTO resource_report (kind, holder, period, version, at, actor, "
    "stream_seq, data) VALUES (:kind, :holder, :period, :version, :at, :actor, :stream_seq, "
    ":data) RETURNING id",
    "insert_movement": "INSERT INTO movement (at, holder, item, bucket, delta, kind, case_id, "
    "report_id, stream_seq, actor) VALUES (:at, :holder, :item, :bucket, :delta, :kind, "
    ":case_id, :report_id, :stream_seq, :actor)",
    "balance": "INSERT INTO stock_balance (holder, item, bucket, quantity, updated_at) VALUES "
    "(:holder, :item, :bucket, :delta, :at) ON CONFLICT (holder, item, bucket) DO UPDATE SET "
    "quantity = stock_balance.quantity + excluded.quantity, updated_at = excluded.updated_at",
    "debit": "UPDATE stock_balance SET quantity = quantity + :delta, updated_at = :at "
    "WHERE holder = :holder AND item = :item AND bucket = :bucket",
    "meet": "UPDATE obligation SET status = 'met', closed_at = :at, report_id = :report_id "
    "WHERE kind = :kind AND holder = :holder AND period = :period AND status <> 'met'",
    "plan_obligation": "INSERT INTO obligation (kind, holder, period, due_at, next_at, "
    "reminders, escalated, status, created_at) VALUES (:kind, :holder, :period, :due_at, "
    ":due_at, 0, :no, 'open', :at) ON CONFLICT (kind, holder, period) DO NOTHING",
    "touch_obligation": "UPDATE obligation SET reminders = :reminders, next_at = :next_at, "
    "escalated = :escalated, status = :status WHERE id = :id AND status = 'open'",
    "due_obligations": "SELECT id, kind, holder, period, due_at, next_at, reminders, escalated, "
    "status FROM obligation WHERE status = 'open' AND next_at <= :now ORDER BY next_at "
    "LIMIT :size",
    "due": "SELECT c.id, d.id FROM deadline d JOIN regul_case c ON c.id = d.case_id "
    "WHERE d.status = 'open' AND d.next_at <= :now ORDER BY d.next_at LIMIT :size",
}
_PG_ONLY = {
    "lock": _SQL["lock"] + " FOR UPDATE OF c",
    "due_obligations": _SQL["due_obligations"] + " FOR UPDATE SKIP LOCKED",
    "security_head": _SQL["security_head"] + " FOR UPDATE",
}
_PARAM = re.compile(r"(?<!:):([a-z_]+)")
_PG_SQL = {name: _PARAM.sub(r"%(\1)s", _PG_ONLY.get(name, text)) for name, text in _SQL.items()}


class _Driver:
    """The driver's own cursor inside the SQLAlchemy transaction, with the value encodings."""

    def __init__(self, conn: Connection) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        self.raw = raw
        self.pg = conn.dialect.name == "postgresql"
        self.sql = _PG_SQL if self.pg else _SQL
        self.cursor = raw.cursor()
        self.guard: tuple[Any, int] | None = None
        if self.pg:
            from psycopg.types.json import Jsonb

            self.json: Callable[[Any], Any] = Jsonb
        else:
            self.json = json.dumps

    def run(self, name: str, params: dict[str, Any]) -> Any:
        self.cursor.execute(self.sql[name], params)
        return self.cursor

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Statements whose results nobody reads at once: one round trip on PostgreSQL.

        psycopg's pipeline mode sends them without waiting for each answer and syncs at the
        end (an error still aborts the transaction, raised at the sync); SQLite runs in-process.
        """
        if not self.pg:
            yield
            return
        with self.raw.pipeline():
            yield

    def append_event(
        self,
        case_id: int | None,
        seq: int,
        prev: str,
        draft: Draft,
        now: datetime,
        at: Any,
        stream: str | None = None,
    ) -> str:
        """Insert one audit event chained to ``prev`` (``at``: ``now`` as stored); its hash."""
        digest = chain_hash(prev, canonical(case_id, seq, now, draft, stream))
        self.run(
            "insert_event",
            {
                "case_id": case_id, "seq": seq, "at": at, "actor": draft.actor,
                "role": draft.role, "org": draft.org, "action": draft.action,
                "from_state": draft.from_state, "to_state": draft.to_state,
                "version": draft.version, "reason": draft.reason,
                "data": self.json(draft.data), "prev_hash": prev, "hash": digest,
                "stream": stream,
            },
        )  # fmt: skip
        return digest

    def run_guarded(self, name: str, params: dict[str, Any], old: int) -> None:
        """Run the case row's UPDATE on a cursor of its own, its rowcount checked later."""
        cursor = self.raw.cursor()
        cursor.execute(self.sql[name], params)
        self.guard = (cursor, old)

    def check_guard(self, case: CaseView) -> None:
        """The case row's UPDATE matched its version (the lock makes this the last guard)."""
        if self.guard is None:
            return
        cursor, old = self.guard
        self.guard = None
        if cursor.rowcount != 1:
            raise StaleVersion(case.reference, old, -1)

    def ts(self, value: datetime | None) -> Any:
        if value is None or self.pg:
            return value
        # SQLAlchemy's SQLite DateTime format, without the cost of strftime
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def read_ts(self, value: Any) -> datetime:
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def read_json(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def flag(self, value: bool) -> Any:
        return bool(value) if self.pg else int(bool(value))


_KEEP = object()  # the case's open deadline is unchanged


@dataclass
class _Head:
    seq: int
    hash: str


TOKEN_UNKNOWN = (
    "this API token is unknown or revoked: ask an administrator for a new one "
    "('regul users token LOGIN')"
)


def disabled(login: str) -> Unauthenticated:
    """The refusal of a credential whose user is disabled (or no longer in the directory)."""
    return Unauthenticated(f"user {login!r} is disabled: ask an administrator", why="user_disabled")


@dataclass
class Token:
    """An API token as its caller presented it (its SHA-256), checked by the command itself.

    A command given a ``Token`` instead of a login reads the token's row with its user in its
    own transaction (with the case, in one round trip on PostgreSQL) rather than in one of its
    own before; ``actor`` is the user found there, for the caller's answer. An unknown or
    revoked token, or a disabled user, is ``Unauthenticated`` before anything is read or
    written, as ``Accounts.token_actor`` says it.
    """

    digest: str
    actor: Actor | None = None


class Tx:
    """One write transaction: reads what a decision needs, then applies its outcome."""

    def __init__(
        self, conn: Connection, registry: WorkflowRegistry, notifier: Notifier, now: datetime
    ) -> None:
        self.conn, self.registry, self.notifier, self.now = conn, registry, notifier, now
        self.driver = _Driver(conn)
        self.pending: list[PendingNotice] = []
        self._locked: dict[str, tuple[CaseView, DeadlineRow | None]] = {}
        self._prefetched: tuple[str | Token, Any, str, Any] | None = None

    # -- reads ------------------------------------------------------------------------------

    def prefetch(self, login: str | Token, reference: str) -> None:
        """Read the actor (or the API token and its user) and lock the case in one round trip.

        PostgreSQL's pipeline mode: both reads are needed before any decision and neither
        depends on the other; the answers are kept for ``actor`` and ``lock``, which ask
        nothing more of the database.
        """
        d = self.driver
        if not d.pg or reference in self._locked:
            return
        if isinstance(login, Token):
            who_sql, who_params = d.sql["token"], {"digest": login.digest}
        elif login == SYSTEM.login or "\x00" in login:
            return
        else:
            who_sql, who_params = d.sql["actor"], {"login": login}
        try:
            case_id, _ = parse_reference(self.registry, reference)
        except RegulError:  # said by ``lock``, in its turn after the actor's errors
            return
        with d.raw.pipeline():
            who, case = d.raw.cursor(), d.raw.cursor()
            who.execute(who_sql, who_params)
            case.execute(d.sql["lock"], {"id": case_id})
        self._prefetched = (login, who.fetchone(), reference, case.fetchone())

    def actor(self, login: str | Token) -> Actor:
        """The active user ``login`` (re-read by every command: a disabled user stops at once).

        Given a ``Token``: its user, if the token is known and not revoked and the user active
        (else ``Unauthenticated``); the token's ``actor`` is set.
        """
        if isinstance(login, Token):
            login.actor = self._token_actor(login)
            return login.actor
        if login == SYSTEM.login or "\x00" in login:
            return load_actor(self.conn, login)  # its refusals and their wording
        if self._prefetched is not None and self._prefetched[0] == login:
            row = self._prefetched[1]
        else:
            row = self.driver.run("actor", {"login": login}).fetchone()
        if row is None or not row[3]:
            return load_actor(self.conn, login)  # unknown or disabled: the same errors
        return Actor(row[0], row[1], row[2], row[4], row[5], row[6], row[7], row[8])

    def _token_actor(self, token: Token) -> Actor:
        if self._prefetched is not None and self._prefetched[0] is token:
            row = self._prefetched[1]
        else:
            row = self.driver.run("token", {"digest": token.digest}).fetchone()
        if row is None or row[0] is not None:
            raise Unauthenticated(TOKEN_UNKNOWN, why="token_unknown")
        if row[2] is None or not row[4]:
            try:  # the directory's own checks, as Accounts.token_actor makes them
                load_actor(self.conn, row[1])
            except (NotFound, NotPermitted):
                raise disabled(row[1]) from None
        return Actor(row[1], row[2], row[3], row[5], row[6], row[7], row[8], row[9])

    def place(self, org_id: str) -> Place:
        row = None if "\x00" in org_id else self.driver.run("org", {"id": org_id}).fetchone()
        if row is None:
            load_org(self.conn, org_id)  # raises the directory's 'unknown organisation'
            raise AssertionError("unreachable")
        return Place(row[0], row[2], row[3], row[5], row[4], row[1], delivery_address=row[6])

    def lock(self, reference: str) -> tuple[CaseView, DeadlineRow | None]:
        """The case named ``reference``, locked, with its open deadline row."""
        if reference in self._locked:  # locked earlier in this transaction (an idempotent retry)
            return self._locked[reference]
        case_id, kind = parse_reference(self.registry, reference)
        if self._prefetched is not None and self._prefetched[2] == reference:
            row = self._prefetched[3]
        else:
            row = self.driver.run("lock", {"id": case_id}).fetchone()
        if row is None or (kind is not None and row[1] != kind):
            raise no_case(reference)
        self._locked[reference] = self._view(row)
        return self._locked[reference]

    def _view(self, row: Sequence[Any]) -> tuple[CaseView, DeadlineRow | None]:
        d = self.driver
        deadline = None
        if row[19] is not None:
            deadline = DeadlineRow(
                row[19], row[20], row[21], d.read_ts(row[22]), d.read_ts(row[23]), row[24],
                row[25], d.read_ts(row[26]),
            )  # fmt: skip
        case = CaseView(
            id=row[0],
            reference=reference_of(self.registry[row[1]].prefix, row[0]),
            kind=row[1], state=row[2], level=row[3], final=bool(row[4]), version=row[5],
            org=row[6], region=row[7], zone=row[8], department=row[9], ght=row[10],
            fields=dict(d.read_json(row[11]) or {}), opened_by=row[12],
            opened_at=d.read_ts(row[13]), updated_at=d.read_ts(row[14]), audit_seq=row[15],
            audit_hash=row[16], incident=bool(row[17]), on_hold=bool(row[18]),
            deadline=OpenDeadline(deadline.state, deadline.due_at, deadline.action)
            if deadline
            else None,
        )  # fmt: skip
        return case, deadline

    def claim(self, size: int, failed: set[int]) -> list[tuple[CaseView, DeadlineRow]]:
        """Due deadline rows with their cases, the case locked first; rows held elsewhere skipped.

        PostgreSQL: the cases of the first due rows are locked ``FOR UPDATE OF c SKIP LOCKED``
        (the limit counts only the rows this sweep gets, so a busy case never hides the rest),
        and only then, in a new statement that sees every commit, their open deadline rows: the
        sweep never holds a deadline row whose case it skipped, and takes its locks in the
        regulators' order (case, then deadline). SQLite holds the write lock.
        """
        d = self.driver
        mark = "%s" if d.pg else "?"
        skip = f" AND d.id NOT IN ({', '.join(mark for _ in failed)})" if failed else ""
        due = (
            "FROM regul_case c JOIN deadline d ON d.case_id = c.id AND d.status = 'open' "
            f"WHERE d.next_at <= {mark}{skip}"
        )
        params = (d.ts(self.now), *failed)
        if d.pg:
            d.cursor.execute(
                f"SELECT c.id {due} ORDER BY d.next_at LIMIT {int(size)} "
                "FOR UPDATE OF c SKIP LOCKED",
                params,
            )
            ids = [row[0] for row in d.cursor.fetchall()]
            if not ids:
                return []
            marks = ", ".join("%s" for _ in ids)
            d.cursor.execute(
                f"SELECT {_C_COLS}, {_DL_COLS} {due} AND c.id IN ({marks}) "
                "ORDER BY d.next_at FOR UPDATE OF d",
                (*params, *ids),
            )
        else:
            d.cursor.execute(
                f"SELECT {_C_COLS}, {_DL_COLS} {due} ORDER BY d.next_at LIMIT {int(size)}", params
            )
        claimed = [self._view(row) for row in d.cursor.fetchall()]
        return [(case, deadline) for case, deadline in claimed if deadline is not None]

    def recall(self, login: str, key: str, digest: str) -> CaseView | None:
        earlier = idempotency.lookup(self.conn, actor=login, key=key, request_hash=digest)
        return CaseView.from_dict(earlier) if earlier is not None else None

    # -- writes -----------------------------------------------------------------------------

    def apply(self, outcome: Outcome) -> CaseView | None:
        """Write everything ``outcome`` says, in the transaction; return the case after it."""
        d, now = self.driver, self.now
        case = outcome.case
        if outcome.opened is not None and case is not None:
            params = {
                **outcome.opened,
                "fields": d.json(outcome.opened["fields"]),
                "opened_at": d.ts(now),
                "updated_at": d.ts(now),
                "final": d.flag(False),
                "incident": d.flag(False),
                "on_hold": d.flag(False),
            }
            case_id = d.run("insert_case", params).fetchone()[0]
            case = replace(
                case, id=case_id, reference=reference_of(self.registry[case.kind].prefix, case_id)
            )
        if case is not None:
            seqs: list[int] = []
            head: tuple[int, str] | None = None
            with d.batch():  # PostgreSQL: the writes go in one round trip (pipeline mode)
                if outcome.events:
                    head, seqs = self._append(case, outcome)
                deadline = self._deadline(case, outcome)
            d.check_guard(case)
            if head is not None or deadline is not _KEEP:
                changes: dict[str, Any] = {}
                if head is not None:
                    changes.update(audit_seq=head[0], audit_hash=head[1])
                if deadline is not _KEEP:
                    changes["deadline"] = deadline
                case = replace(case, **changes)  # one copy of the view per command
            if outcome.notices:
                self._notices(case, outcome, seqs)
        for draft in outcome.security:
            self._append_security(draft)
        if outcome.ledger:
            for entry in outcome.ledger:
                self._ledger(entry, case)
        if outcome.obligations or outcome.touched:
            self._obligations(outcome)
        return case

    # -- resources: a holder's stream, its movements, reports and obligations ---------------

    def balances(
        self, holders: Sequence[str], items: Sequence[str] | None = None
    ) -> dict[tuple[str, str, str], int]:
        """The balances of ``holders`` (of ``items``), locked until commit on PostgreSQL.

        Keyed (holder, item, bucket); a missing row is a zero balance. A decision reads them
        here, checks what it takes, and the ``CHECK (quantity >= 0)`` stays the last guard.
        """
        if not holders:
            return {}
        d = self.driver
        mark = "%s" if d.pg else "?"
        where = f"holder IN ({', '.join(mark for _ in holders)})"
        params: list[Any] = list(holders)
        if items:
            where += f" AND item IN ({', '.join(mark for _ in items)})"
            params += list(items)
        lock = " ORDER BY holder, item, bucket FOR UPDATE" if d.pg else ""
        d.cursor.execute(
            f"SELECT holder, item, bucket, quantity FROM stock_balance WHERE {where}{lock}",
            tuple(params),
        )
        return {(r[0], r[1], r[2]): int(r[3]) for r in d.cursor.fetchall()}

    def _holder_head(self, stream: str) -> tuple[int, str]:
        d = self.driver
        d.run("security_seed", {"stream": stream, "seq": 0, "hash": GENESIS})
        row = d.run("security_head", {"stream": stream}).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def _ledger(self, entry: LedgerEntry, case: CaseView | None) -> None:
        """One event in the holder's stream (its head locked), with what it moves and stores."""
        d, now = self.driver, self.now
        stream = f"{HOLDER_STREAM}{entry.holder}"
        seq, prev = self._holder_head(stream)
        seq += 1
        draft, data = entry.draft, dict(entry.draft.data)
        report = entry.report
        version = 0
        if report is not None:
            key = {"kind": report.kind, "holder": entry.holder, "period": report.period}
            version = int(d.run("report_version", key).fetchone()[0])
            data["report"] = {
                "kind": report.kind, "period": report.period, "version": version,
                "figures": dict(report.data),
            }  # fmt: skip
        if entry.legs:
            data["legs"] = [[leg.item, leg.bucket, leg.delta] for leg in entry.legs]
        if case is not None and case.id:
            data.setdefault("case", case.reference)
        draft = replace(draft, data=data)
        at = d.ts(now)
        digest = d.append_event(None, seq, prev, draft, now, at, stream)
        d.run("security_update", {"stream": stream, "seq": seq, "hash": digest})
        report_id = None
        if report is not None:
            report_id = d.run(
                "insert_report",
                {
                    "kind": report.kind, "holder": entry.holder, "period": report.period,
                    "version": version, "at": at, "actor": draft.actor, "stream_seq": seq,
                    "data": d.json(dict(report.data)),
                },
            ).fetchone()[0]  # fmt: skip
        for leg in entry.legs:
            d.run(
                "insert_movement",
                {
                    "at": at, "holder": entry.holder, "item": leg.item, "bucket": leg.bucket,
                    "delta": leg.delta, "kind": draft.action,
                    "case_id": case.id if case is not None and case.id else None,
                    "report_id": report_id, "stream_seq": seq, "actor": draft.actor,
                },
            )  # fmt: skip
            params: dict[str, Any] = {
                "holder": entry.holder, "item": leg.item, "bucket": leg.bucket,
                "delta": leg.delta, "at": at,
            }  # fmt: skip
            if leg.delta > 0:
                d.run("balance", params)
            elif d.run("debit", params).rowcount != 1:  # nothing there to take from
                raise Conflict(
                    f"not enough in stock for this movement: {entry.holder} holds no "
                    f"{leg.item} ({leg.bucket}); read the holder's balances again and retry",
                    why="overdrawn",
                )
        if entry.meets is not None:
            kind, period = entry.meets
            d.run(
                "meet",
                {"at": at, "report_id": report_id, "kind": kind, "holder": entry.holder,
                 "period": period},
            )  # fmt: skip
        if entry.notice is not None:
            pending = self.notifier.prepare_holder(
                self.conn, entry.holder, draft, seq, entry.notice, now
            )
            if pending is not None:
                self.pending.append(pending)

    def _obligations(self, outcome: Outcome) -> None:
        d, at = self.driver, self.driver.ts(self.now)
        for plan in outcome.obligations:
            d.run(
                "plan_obligation",
                {"kind": plan.kind, "holder": plan.holder, "period": plan.period,
                 "due_at": d.ts(plan.due_at), "no": d.flag(False), "at": at},
            )  # fmt: skip
        for change in outcome.touched:
            d.run(
                "touch_obligation",
                {"id": change.id, "reminders": change.reminders,
                 "next_at": d.ts(change.next_at), "escalated": d.flag(change.escalated),
                 "status": change.status},
            )  # fmt: skip

    def claim_obligations(self, size: int) -> list[ObligationRow]:
        """Open obligations whose next look has come; rows held by another sweep skipped."""
        d = self.driver
        rows = d.run("due_obligations", {"now": d.ts(self.now), "size": int(size)}).fetchall()
        return [
            ObligationRow(
                r[0],
                r[1],
                r[2],
                r[3],
                d.read_ts(r[4]),
                d.read_ts(r[5]),
                int(r[6]),
                bool(r[7]),
                r[8],
            )
            for r in rows
        ]

    def _append(self, case: CaseView, outcome: Outcome) -> tuple[tuple[int, str], list[int]]:
        d, now = self.driver, self.now
        head = _Head(case.audit_seq, case.audit_hash or GENESIS)
        at = d.ts(now)
        seqs = []
        for draft in outcome.events:
            seq = head.seq + 1
            head = _Head(seq, d.append_event(case.id, seq, head.hash, draft, now, at))
            seqs.append(seq)
        old = case.version - 1 if "version" in outcome.values else case.version
        values = outcome.values
        params: dict[str, Any] = {
            "id": case.id, "old": old, "audit_seq": head.seq, "audit_hash": head.hash,
        }  # fmt: skip
        if values:  # ``case`` is already the case after the command: write its columns
            params.update(
                state=case.state, level=case.level, final=d.flag(case.final),
                version=case.version, fields=d.json(case.fields),
                updated_at=d.ts(case.updated_at), incident=d.flag(case.incident),
                on_hold=d.flag(case.on_hold),
            )  # fmt: skip
            statement = "case"
        else:
            statement = "head"
        d.run_guarded(statement, params, old)  # checked once the batch has its results
        return (head.seq, head.hash), seqs

    def _notices(self, case: CaseView, outcome: Outcome, seqs: list[int]) -> None:
        """Gather the facts of the outcome's notices, for the case after it (deadline too)."""
        for index in outcome.notices:
            pending = self.notifier.prepare(
                self.conn, case, outcome.events[index], seqs[index], self.now
            )
            if pending is not None:
                self.pending.append(pending)

    def _deadline(self, case: CaseView, outcome: Outcome) -> Any:
        """Apply the deadline plan; the case's open deadline after it, or ``_KEEP``."""
        d, now, change = self.driver, self.now, outcome.deadline
        if change.close is not None and outcome.opened is None:
            d.run("close", {"status": change.close, "now": d.ts(now), "case_id": case.id})
        if change.touch is not None:
            row_id, reminders, next_at = change.touch
            d.run("touch", {"id": row_id, "reminders": reminders, "next_at": d.ts(next_at)})
        plan = change.open
        if plan is not None:
            d.run(
                "open",
                {
                    "case_id": case.id, "state": plan.state, "version": plan.version,
                    "due_at": d.ts(plan.due_at), "next_at": d.ts(plan.next_at),
                    "reminders": plan.reminders, "action": plan.action,
                    "created_at": d.ts(plan.start or now),
                },
            )  # fmt: skip
            return OpenDeadline(plan.state, plan.due_at, plan.action)
        if change.close is not None:
            return None
        return _KEEP

    def _append_security(self, draft: Draft) -> None:
        append_security(self.conn, draft, self.now, self.driver)

    def remember(self, login: str, key: str, digest: str, result: CaseView) -> None:
        idempotency.store(
            self.conn, actor=login, key=key, request_hash=digest, case_id=result.id,
            result=result.to_dict(), now=self.now,
        )  # fmt: skip

    def flush(self) -> None:
        """Number the pending notices in one global order (series, year) and insert them.

        Every transaction takes the counter rows in the same order, so two sweeps or a sweep
        and a regulator never wait on each other's counters in a cycle.
        """
        if not self.pending:
            return
        d = self.driver
        pending = self.pending
        if len(pending) > 1:
            pending.sort(key=lambda p: (p.series, p.year))
        cursor, sql, json, ts = d.cursor, d.sql, d.json, d.ts
        for notice in pending:
            cursor.execute(sql["counter"], {"series": notice.series, "year": notice.year})
            row = notice.row(int(cursor.fetchone()[0]))
            row["recipients"] = json(row["recipients"])
            row["facts"] = json(row["facts"])
            row["next_attempt_at"] = ts(row["next_attempt_at"])
            row["created_at"] = ts(row["created_at"])
            cursor.execute(sql["notice"], row)
        pending.clear()


class UnitOfWork:
    """Runs a command's reads, decision and writes in one transaction; the only writer."""

    def __init__(
        self, db: Database, registry: WorkflowRegistry, notifier: Notifier | None = None
    ) -> None:
        self.db, self.registry = db, registry
        self.notifier: Notifier = notifier or SilentNotifier()

    @contextmanager
    def _begin(self, now: datetime) -> Iterator[Tx]:
        with self.db.write() as conn:
            tx = Tx(conn, self.registry, self.notifier, now)
            yield tx
            tx.flush()

    def run(self, now: datetime, work: Callable[[Tx], T]) -> T:
        """``work`` in one write transaction at ``now``, retried after a deadlock (bounded)."""
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                with self._begin(now) as tx:
                    return work(tx)
            except (DBAPIError, StorageError) as exc:
                if attempt == DEADLOCK_RETRIES or not _retryable(exc):
                    raise
                log.warning("transaction retried after %s (attempt %d)", _kind(exc), attempt)
                time.sleep(0.005 * attempt)
        raise AssertionError("unreachable")


def _retryable(exc: BaseException) -> bool:
    return _kind(exc) in {"deadlock", "serialization"}


def _kind(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, StorageError) else exc
    orig = getattr(cause, "orig", None)
    state = getattr(orig, "sqlstate", None)
    return {"40P01": "deadlock", "40001": "serialization"}.get(state or "", "other")


def append_security(
    conn: Connection, draft: Draft, now: datetime, driver: _Driver | None = None
) -> None:
    """Append ``draft`` to the security stream in ``conn``'s transaction (its head locked).

    The accounts (failed logins, unlocks) and the operator's audit commands record their
    events here too, in their own transactions: this module stays the only writer of the log.
    """
    d = driver or _Driver(conn)
    # the head row exists before it is locked: two first refusals never race to create it
    d.run("security_seed", {"stream": SECURITY_STREAM, "seq": 0, "hash": GENESIS})
    row = d.run("security_head", {"stream": SECURITY_STREAM}).fetchone()
    seq, prev = (row[0], row[1]) if row else (0, GENESIS)
    digest = d.append_event(None, seq + 1, prev, draft, now, d.ts(now))
    d.run("security_update", {"stream": SECURITY_STREAM, "seq": seq + 1, "hash": digest})
