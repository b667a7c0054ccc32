"""The transition runner: every command is one database transaction.

Open: check the actor, the hospital and the fields, insert the case, its first audit event and
its first deadline. Advance: lock the case, check the version the caller saw, authorize, fire
on the workflow's static machine (``engine.transition.decide``), append the audit event,
replace the deadline row, commit. A refusal commits only its own audit record, then raises.
Reads (show, list, history) follow the reader's scope. Talks to ``Database``, the clock and the
workflow registry; knows nothing of terminals or HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from engine import audit, idempotency
from engine.actors import Actor, load_actor, load_org
from engine.audit import Draft
from engine.cases import (
    CASE_TABLE,
    CaseFilter,
    CaseView,
    OpenDeadline,
    get_case,
    history,
    list_cases,
    lock_case,
    no_case,
    view_of,
)
from engine.clock import Clock
from engine.db import Database
from engine.deadlines import (
    DeadlinePlan,
    ReminderPolicy,
    close_open,
    next_look,
    plan_deadline,
    replace_deadline,
)
from engine.deadlines import current as current_deadline
from engine.errors import Conflict, InputError, NotFound, NotPermitted, StaleVersion
from engine.policy import can_audit, can_control, can_fire, can_open, can_read
from engine.transition import Command, Outcome, check_reason, decide, parse_fields
from engine.workflow import WorkflowRegistry, WorkflowSpec

__all__ = [
    "Notifier",
    "Runner",
    "SilentNotifier",
    "record_event",
    "refuse_outside_cases",
    "scope_where",
]

T = TypeVar("T")


class Notifier(Protocol):
    """What the runner tells about each recorded event, inside its transaction.

    The notices outbox implements it (``notifications.outbox``); it may write rows on
    ``conn`` but must do no other I/O: delivery happens later, from the outbox.
    """

    def on_event(
        self, conn: Connection, case: CaseView, draft: Draft, seq: int, now: datetime
    ) -> None: ...


class SilentNotifier:
    """A notifier that queues nothing (tests of the engine alone, benchmarks with notices off)."""

    def on_event(
        self, conn: Connection, case: CaseView, draft: Draft, seq: int, now: datetime
    ) -> None:
        return None


class Runner:
    """The engine's entry points, shared by the CLI, the API and the sweeper."""

    def __init__(
        self,
        db: Database,
        registry: WorkflowRegistry,
        clock: Clock,
        policy: ReminderPolicy | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.db, self.registry, self.clock = db, registry, clock
        self.policy = policy or ReminderPolicy()
        self.notifier: Notifier = notifier or SilentNotifier()

    # -- commands -------------------------------------------------------------------------

    def open_case(
        self,
        *,
        kind: str,
        login: str,
        org: str,
        fields: Mapping[str, object],
        idempotency_key: str | None = None,
    ) -> CaseView:
        spec = self.registry[kind]
        request = {"op": "open", "kind": kind, "org": org, "fields": dict(fields)}
        return self._idempotent(
            login,
            idempotency_key,
            request,
            lambda conn, actor, _locked: self._open(conn, actor, spec, org, fields),
        )

    def advance(
        self,
        *,
        reference: str,
        trigger: str,
        login: str,
        reason: str,
        data: Mapping[str, object] | None = None,
        expect_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> CaseView:
        command = Command(trigger, reason, dict(data or {}), expect_version)
        request = {
            "op": "advance",
            "case": reference,
            "trigger": trigger,
            "reason": reason,
            "data": dict(command.data),
            "expect_version": expect_version,
        }
        return self._idempotent(
            login,
            idempotency_key,
            request,
            lambda conn, actor, case: self.apply(conn, case, actor, command, as_written=reference),
            lock=lambda conn: lock_case(conn, self.registry, reference),
        )

    def _idempotent(
        self,
        login: str,
        key: str | None,
        request: dict[str, Any],
        work: Any,
        lock: Any = None,
    ) -> CaseView:
        """Run ``work`` in one write transaction, answering a retried key with its first result.

        The case is locked *before* the key is looked up: a concurrent retry with the same key
        waits for the first attempt's commit and then finds its answer (PostgreSQL reads
        committed rows per statement). Opening has no row to lock: the key's primary key
        makes the loser fail at insert, and it reads the winner's answer.
        """
        digest = idempotency.fingerprint(request) if key else ""
        refusal: NotPermitted | NotFound | None = None
        try:
            with self.db.write() as conn:
                actor = load_actor(conn, login)
                locked = lock(conn) if lock else None
                if key:
                    earlier = idempotency.lookup(conn, actor=login, key=key, request_hash=digest)
                    if earlier is not None:
                        return CaseView.from_dict(earlier)
                result = work(conn, actor, locked)
                if isinstance(result, (NotPermitted, NotFound)):
                    refusal = result  # commit the refusal's audit record, then raise
                elif key:
                    idempotency.store(
                        conn,
                        actor=login,
                        key=key,
                        request_hash=digest,
                        case_id=result.id,
                        result=result.to_dict(),
                        now=self.clock.now(),
                    )
        except IntegrityError:
            if not key:
                raise
            with self.db.read() as conn:  # a concurrent retry with the same key won the race
                earlier = idempotency.lookup(conn, actor=login, key=key, request_hash=digest)
            if earlier is None:
                raise
            return CaseView.from_dict(earlier)
        if refusal is not None:
            raise refusal
        assert isinstance(result, CaseView)
        return result

    def _open(
        self,
        conn: Connection,
        actor: Actor,
        spec: WorkflowSpec,
        org_id: str,
        raw: Mapping[str, object],
    ) -> CaseView | NotPermitted:
        now = self.clock.now()
        hospital = load_org(conn, org_id)
        if hospital.kind != "hospital":
            raise InputError(
                f"{org_id} is a {hospital.kind}, not a hospital: cases are opened for a hospital"
            )
        located = _Place(hospital.id, hospital.region, hospital.zone, hospital.ght)
        decision = can_open(actor, spec, located)
        if not decision:
            data = {"op": "open", "kind": spec.kind, "org": org_id, "why": decision.reason}
            refuse_outside_cases(conn, actor, now, data)
            return NotPermitted(f"{actor.login} may not open this case: {decision.reason}")
        fields = parse_fields(spec.open_fields, raw, what=f"opening a {spec.kind} case")
        row = {
            "kind": spec.kind,
            "state": spec.initial,
            "level": spec.state(spec.initial).level,
            "final": False,
            "version": 1,
            "org": hospital.id,
            "region": hospital.region,
            "zone": hospital.zone,
            "department": hospital.department,
            "ght": hospital.ght,
            "fields": fields,
            "opened_by": actor.login,
            "opened_at": now,
            "updated_at": now,
            "audit_seq": 0,
            "audit_hash": "",
            "incident": False,
            "on_hold": False,
        }
        row["id"] = conn.execute(_INSERT_CASE, row).scalar_one()
        case = view_of(self.registry, SimpleNamespace(**row))
        draft = Draft(
            actor.login,
            actor.role,
            actor.org,
            "opened",
            None,
            spec.initial,
            1,
            "",
            {"kind": spec.kind, "org": hospital.id, "fields": fields},
        )
        plan = plan_deadline(spec, spec.initial, 1, now, fields=fields, policy=self.policy)
        opened = self.record(conn, case, draft, now, plan=plan)
        replace_deadline(conn, case_id=case.id, plan=plan, now=now, first=True)
        return opened

    def apply(
        self,
        conn: Connection,
        case: CaseView,
        actor: Actor,
        command: Command,
        *,
        deadline_closed: bool = False,
        as_written: str | None = None,
    ) -> CaseView | NotPermitted | NotFound:
        """Decide and persist one command on a case the caller has locked (the sweeper too).

        ``deadline_closed``: the caller already closed the case's open deadline (the sweeper
        marks it fired), so there is none to supersede. ``as_written``: the reference as the
        caller wrote it, repeated in a 'no case' answer exactly as for a missing case.
        """
        now = self.clock.now()
        spec = self.registry[case.kind]
        readable = can_read(actor, case)
        if not readable:  # outside scope: first, and as if the case did not exist
            data = {"trigger": command.trigger, "why": readable.reason}
            draft = _draft(actor, "refused", case, case.version, command.reason[:2000], data)
            record_event(conn, case, draft, now)
            return no_case(as_written if as_written is not None else case.reference)
        result = decide(spec, case, actor, command, now, self.policy)
        if not isinstance(result, Outcome):
            record_event(conn, case, result.audit, now)
            return NotPermitted(
                f"{actor.login} may not {command.trigger} case {case.reference}: {result.why}",
                case=case.reference,
                trigger=command.trigger,
            )
        values = {
            "state": result.state,
            "level": result.level,
            "final": result.final,
            "version": result.version,
            "fields": result.fields,
            "updated_at": now,
            "incident": False,
            "on_hold": False,
        }
        after = self.record(conn, case, result.audit, now, values, plan=result.deadline)
        replace_deadline(
            conn, case_id=case.id, plan=result.deadline, now=now, first=deadline_closed
        )
        return after

    def record(
        self,
        conn: Connection,
        case: CaseView,
        draft: Draft,
        now: datetime,
        values: dict[str, Any] | None = None,
        *,
        plan: DeadlinePlan | None = None,
    ) -> CaseView:
        """Append an event to a locked case, update its row, and let the notifier queue notices."""
        seq, digest = record_event(conn, case, draft, now, values)
        after = _updated(case, values or {}, seq, digest, plan)
        self.notifier.on_event(conn, after, draft, seq, now)
        return after

    # -- manual control of deadlines ------------------------------------------------------

    def control(
        self,
        *,
        reference: str,
        action: str,
        login: str,
        reason: str,
        extend_by: timedelta | None = None,
        expect_version: int | None = None,
    ) -> CaseView:
        """Hold a case (its deadline suspended), resume it (deadline restarted), or extend it."""
        if action not in {"hold", "resume", "extend"}:
            raise InputError(f"unknown control {action!r}: hold, resume or extend")
        if action == "extend" and (extend_by is None or extend_by <= timedelta(0)):
            raise InputError("an extension must be longer than zero, e.g. --by 30m")
        text = check_reason(reason)
        refusal: NotPermitted | NotFound | None = None
        with self.db.write() as conn:
            actor = load_actor(conn, login)
            case = lock_case(conn, self.registry, reference)
            spec, now = self.registry[case.kind], self.clock.now()
            readable = can_read(actor, case)
            if readable:  # outside scope, the case's version and state stay unsaid
                if expect_version is not None and expect_version != case.version:
                    raise StaleVersion(case.reference, expect_version, case.version)
                _check_controllable(case, action)
            decision = can_control(actor, spec, case.state, case)
            if not decision:
                draft = _draft(
                    actor,
                    "refused",
                    case,
                    case.version,
                    text,
                    {"control": action, "why": decision.reason},
                )
                record_event(conn, case, draft, now)
                refusal = (
                    NotPermitted(
                        f"{actor.login} may not {action} case {case.reference}: {decision.reason}"
                    )
                    if readable
                    else no_case(reference)
                )
            else:
                case = self._control(conn, case, spec, actor, action, text, extend_by, now)
        if refusal is not None:
            raise refusal
        return case

    def _control(
        self, conn: Connection, case: CaseView, spec: WorkflowSpec, actor: Actor, action: str,
        reason: str, extend_by: timedelta | None, now: datetime,
    ) -> CaseView:  # fmt: skip
        version = case.version + 1
        data: dict[str, Any] = {}
        plan = None
        if action == "hold":
            close_open(conn, case_id=case.id, now=now, status="held")
        elif action == "resume":
            plan = plan_deadline(
                spec, case.state, version, now, fields=case.fields, policy=self.policy
            )
        else:
            row = current_deadline(conn, case.id)
            if row is None:
                raise InputError(f"case {case.reference} has no running deadline to extend")
            assert extend_by is not None
            due = row.due_at + extend_by
            done = sum(1 for f in self.policy.fractions if now + (due - now) * f <= now)
            plan = DeadlinePlan(
                row.state,
                version,
                due,
                row.action,
                next_at=next_look(now, due, done, self.policy.fractions),
                reminders=done,
                start=now,
            )
            data = {
                "from": row.due_at.isoformat(),
                "to": due.isoformat(),
                "by_s": int(extend_by.total_seconds()),
            }
        values = {"version": version, "updated_at": now, "on_hold": action == "hold"}
        after = self.record(
            conn, case, _draft(actor, action, case, version, reason, data), now, values, plan=plan
        )
        if action != "hold":
            replace_deadline(conn, case_id=case.id, plan=plan, now=now)
        return after

    # -- reads ----------------------------------------------------------------------------

    def actor(self, login: str) -> Actor:
        with self.db.read() as conn:
            return load_actor(conn, login)

    def show(
        self, reference: str, *, login: str | None = None, via: str = "cli", what: str = "case"
    ) -> CaseView:
        """A case; read by a person (``login``), the read is recorded in its audit chain."""
        if login is None:
            with self.db.read() as conn:
                return get_case(conn, self.registry, reference)
        return self._read(reference, login, via, what, lambda conn, case: case)

    def allowed_triggers(self, case: CaseView, login: str | Actor) -> list[str]:
        """The triggers ``login`` may fire on ``case`` now (an Actor saves a database read)."""
        spec = self.registry[case.kind]
        actor = login if isinstance(login, Actor) else self.actor(login)
        return [
            t.trigger
            for t in spec.allowed(case.state)
            if can_fire(actor, spec, case.state, t.trigger, case)
        ]

    def search(self, filters: CaseFilter, *, login: str | None = None) -> list[CaseView]:
        with self.db.read() as conn:
            where = None
            if login is not None:
                where = scope_where(load_actor(conn, login))
            return list_cases(conn, self.registry, filters=filters, scope_where=where)

    def history(
        self, reference: str, *, login: str | None = None, via: str = "cli"
    ) -> tuple[CaseView, list[Any]]:
        if login is None:
            with self.db.read() as conn:
                case = get_case(conn, self.registry, reference)
                return case, history(conn, case.id)
        return self._read(
            reference, login, via, "history", lambda conn, case: (case, history(conn, case.id))
        )

    def _read(
        self,
        reference: str,
        reader: str | Actor,
        via: str,
        what: str,
        then: Callable[[Connection, CaseView], T],
    ) -> T:
        """Read a case as a person: the read (or its refusal) is an event of the case's chain.

        French health-data rules want to know who read which case and when. Outside the
        reader's scope the case is indistinguishable from a missing one (``NotFound``), and
        the refused attempt is recorded like any refusal.
        """
        refused: NotFound | None = None
        with self.db.write() as conn:
            actor = reader if isinstance(reader, Actor) else load_actor(conn, reader)
            lock_case(conn, self.registry, reference)
            case = get_case(conn, self.registry, reference)  # with its open deadline
            decision = can_read(actor, case)
            data: dict[str, Any] = {"read": what, "via": via}
            if not decision:
                data.update(op="read", why=decision.reason)
            action = "read" if decision else "refused"
            draft = _draft(actor, action, case, case.version, "", data)
            seq, digest = record_event(conn, case, draft, self.clock.now())
            if decision:
                result = then(conn, replace(case, audit_seq=seq, audit_hash=digest))
            else:
                refused = no_case(reference)
        if refused is not None:
            raise refused
        return result

    # -- the audit log, for auditors -----------------------------------------------------

    def auditor(self, login: str, what: str) -> Actor:
        """The auditor ``login``; anyone else is refused, and the refusal is recorded."""
        with self.db.write() as conn:
            actor = load_actor(conn, login)
            decision = can_audit(actor)
            if not decision:
                refuse_outside_cases(
                    conn, actor, self.clock.now(), {"op": what, "why": decision.reason}
                )
        if not decision:
            raise NotPermitted(f"{login} may not {what}: {decision.reason}")
        return actor

    def audit_events(
        self,
        *,
        login: str,
        case: str | None = None,
        user: str | None = None,
        org: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        via: str = "cli",
    ) -> Iterator[Any]:
        """The events an auditor may read, filtered; streamed in id order.

        The checks run now (a refusal raises here, recorded); the events stream as the
        iterator is consumed. Naming a case reads it: the read is recorded in its chain first.
        """
        if any(t is not None and "\x00" in t for t in (user, org, case)):
            raise InputError("a filter contains the NUL character (U+0000): remove it")
        actor = self.auditor(login, "read the audit log")
        case_id = self._audited_case(actor, case, "export", via) if case else None
        filters = {"case_id": case_id, "since": since, "until": until, "actor": user, "org": org}
        return self._events(filters, scope_where(actor))

    def _events(self, filters: dict[str, Any], where: Any) -> Iterator[Any]:
        with self.db.read() as conn:
            yield from audit.iter_events(conn, scope_where=where, **filters)

    def audit_verify(
        self, *, login: str, case: str | None = None, via: str = "cli"
    ) -> audit.VerifyReport:
        actor = self.auditor(login, "verify the audit log")
        case_id = self._audited_case(actor, case, "verify", via) if case else None
        with self.db.read() as conn:
            if case_id is not None:
                return audit.verify(conn, case_id=case_id, registry=self.registry)
            if actor.scope.kind == "national":
                return audit.verify(conn, registry=self.registry)
        why = "a regional auditor verifies one case at a time: give a case reference"
        with self.db.write() as conn:
            data = {"op": "verify the whole audit log", "why": why}
            refuse_outside_cases(conn, actor, self.clock.now(), data)
        raise NotPermitted(why)

    def _audited_case(self, actor: Actor, reference: str, what: str, via: str) -> int:
        """The id of a case the auditor may read (the read recorded); else 'no case'."""
        return self._read(reference, actor, via, f"audit {what}", lambda conn, case: case.id)


class _Place:
    """A hospital's place in the directory, for the policy's scope test."""

    def __init__(self, org: str, region: str | None, zone: str | None, ght: str | None) -> None:
        self.org, self.region, self.zone, self.ght = org, region, zone, ght


def scope_where(actor: Actor) -> Any:
    """The condition on the case table that keeps ``actor``'s scope (None: national)."""
    scope, c = actor.scope, CASE_TABLE.c
    column = {"hospital": c.org, "ght": c.ght, "zone": c.zone, "region": c.region}.get(scope.kind)
    return None if column is None else column == scope.code


_INSERT_CASE = CASE_TABLE.insert().returning(CASE_TABLE.c.id)
_UPDATE_CASE = CASE_TABLE.update().where(  # built once; SET comes from the parameters
    CASE_TABLE.c.id == sa.bindparam("b_id"), CASE_TABLE.c.version == sa.bindparam("b_version")
)


def record_event(
    conn: Connection,
    case: CaseView,
    draft: Draft,
    now: datetime,
    values: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """Append ``draft`` to the case's chain and update the case row (head and ``values``)."""
    seq, digest = audit.append(
        conn,
        case_id=case.id,
        head_seq=case.audit_seq,
        head_hash=case.audit_hash,
        at=now,
        draft=draft,
    )
    params = {"b_id": case.id, "b_version": case.version, "audit_seq": seq, "audit_hash": digest}
    updated = conn.execute(_UPDATE_CASE, {**params, **(values or {})}).rowcount
    if updated != 1:  # the case lock makes this unreachable; it is the last guard
        raise StaleVersion(case.reference, case.version, -1)
    return seq, digest


def refuse_outside_cases(
    conn: Connection, actor: Actor, now: datetime, data: dict[str, Any]
) -> None:
    """Record a refusal that concerns no case in the ``security`` stream of the audit log."""
    draft = Draft(actor.login, actor.role, actor.org, "refused", None, None, 0, "", data)
    audit.append_security(conn, at=now, draft=draft)


def _draft(
    actor: Actor, action: str, case: CaseView, version: int, reason: str, data: dict[str, Any]
) -> Draft:
    return Draft(
        actor.login, actor.role, actor.org, action, case.state, case.state, version, reason, data
    )


def _updated(
    case: CaseView, values: dict[str, Any], seq: int, digest: str, plan: DeadlinePlan | None
) -> CaseView:
    deadline = OpenDeadline(plan.state, plan.due_at, plan.action) if plan else None
    if values.get("on_hold"):
        deadline = None
    fields = {k: v for k, v in values.items() if k in CaseView.__dataclass_fields__}
    return replace(case, **fields, audit_seq=seq, audit_hash=digest, deadline=deadline)


def _check_controllable(case: CaseView, action: str) -> None:
    if case.final:
        raise Conflict(
            f"case {case.reference} is {case.state} (closed): there is no deadline to {action}"
        )
    if action == "hold" and case.on_hold:
        raise Conflict(f"case {case.reference} is already on hold: resume it first")
    if action == "resume" and not case.on_hold:
        raise Conflict(f"case {case.reference} is not on hold")
    if action == "extend" and case.on_hold:
        raise Conflict(f"case {case.reference} is on hold: resume it before extending")
