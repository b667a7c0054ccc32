"""The transition runner: every command is one database transaction.

Open: check the actor, the hospital and the fields, insert the case, its first audit event and
its first deadline. Advance: lock the case, check the version the caller saw, authorize, fire
on the workflow's static machine (``engine.transition.decide``), append the audit event,
replace the deadline row, commit. A refusal commits only its own audit record, then raises.
Reads (show, list, history) follow the reader's scope. Talks to ``Database``, the clock and the
workflow registry; knows nothing of terminals or HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from engine import audit, idempotency
from engine.actors import Actor, load_actor, load_org
from engine.audit import Draft
from engine.cases import (
    CASE_TABLE,
    CaseFilter,
    CaseView,
    get_case,
    history,
    list_cases,
    lock_case,
    reference_of,
)
from engine.clock import Clock
from engine.db import Database
from engine.deadlines import plan_deadline, replace_deadline
from engine.errors import InputError, NotFound, NotPermitted
from engine.policy import can_fire, can_open, can_read
from engine.transition import Command, Outcome, decide, parse_fields
from engine.workflow import WorkflowRegistry, WorkflowSpec

__all__ = ["Runner"]


class Runner:
    """The engine's entry points, shared by the CLI, the API and the sweeper."""

    def __init__(self, db: Database, registry: WorkflowRegistry, clock: Clock) -> None:
        self.db, self.registry, self.clock = db, registry, clock

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
            lambda conn, actor: self._open(conn, actor, spec, org, fields),
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
            lambda conn, actor: self._advance(conn, actor, reference, command),
        )

    def _idempotent(
        self, login: str, key: str | None, request: dict[str, Any], work: Any
    ) -> CaseView:
        digest = idempotency.fingerprint(request) if key else ""
        refusal: NotPermitted | None = None
        try:
            with self.db.write() as conn:
                actor = load_actor(conn, login)
                if key:
                    earlier = idempotency.lookup(conn, actor=login, key=key, request_hash=digest)
                    if earlier is not None:
                        return CaseView.from_dict(earlier)
                result = work(conn, actor)
                if isinstance(result, NotPermitted):
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
            audit.append_security(
                conn,
                at=now,
                draft=Draft(
                    actor.login,
                    actor.role,
                    actor.org,
                    "refused",
                    None,
                    None,
                    0,
                    "",
                    {"op": "open", "kind": spec.kind, "org": org_id, "why": decision.reason},
                ),
            )
            return NotPermitted(f"{actor.login} may not open this case: {decision.reason}")
        fields = parse_fields(spec.open_fields, raw, what=f"opening a {spec.kind} case")
        case_id = conn.execute(
            CASE_TABLE.insert().returning(CASE_TABLE.c.id),
            {
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
            },
        ).scalar_one()
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
        seq, digest = audit.append(
            conn, case_id=case_id, head_seq=0, head_hash="", at=now, draft=draft
        )
        conn.execute(
            CASE_TABLE.update()
            .where(CASE_TABLE.c.id == case_id)
            .values(audit_seq=seq, audit_hash=digest)
        )
        plan = plan_deadline(spec, spec.initial, 1, now)
        replace_deadline(conn, case_id=case_id, plan=plan, now=now, first=True)
        return get_case(conn, self.registry, reference_of(spec.prefix, case_id))

    def _advance(
        self, conn: Connection, actor: Actor, reference: str, command: Command
    ) -> CaseView | NotPermitted:
        now = self.clock.now()
        case = lock_case(conn, self.registry, reference)
        spec = self.registry[case.kind]
        result = decide(spec, case, actor, command, now)
        seq, digest = audit.append(
            conn,
            case_id=case.id,
            head_seq=case.audit_seq,
            head_hash=case.audit_hash,
            at=now,
            draft=result.audit,
        )
        table = CASE_TABLE
        if not isinstance(result, Outcome):
            conn.execute(
                table.update().where(table.c.id == case.id).values(audit_seq=seq, audit_hash=digest)
            )
            return NotPermitted(
                f"{actor.login} may not {command.trigger} case {case.reference}: {result.why}",
                case=case.reference,
                trigger=command.trigger,
            )
        updated = conn.execute(
            table.update()
            .where(table.c.id == case.id, table.c.version == case.version)
            .values(
                state=result.state,
                level=result.level,
                final=result.final,
                version=result.version,
                fields=result.fields,
                updated_at=now,
                audit_seq=seq,
                audit_hash=digest,
            )
        ).rowcount
        if updated != 1:  # the lock makes this unreachable; kept as the last guard
            raise InputError(f"case {case.reference} changed under the lock; retry")
        replace_deadline(conn, case_id=case.id, plan=result.deadline, now=now)
        deadline = None
        if result.deadline:
            from engine.cases import OpenDeadline

            deadline = OpenDeadline(
                result.deadline.state, result.deadline.due_at, result.deadline.action
            )
        return CaseView(
            **{
                **case.__dict__,
                "state": result.state,
                "level": result.level,
                "final": result.final,
                "version": result.version,
                "fields": result.fields,
                "updated_at": now,
                "audit_seq": seq,
                "audit_hash": digest,
                "deadline": deadline,
            }
        )

    # -- reads ----------------------------------------------------------------------------

    def actor(self, login: str) -> Actor:
        with self.db.read() as conn:
            return load_actor(conn, login)

    def show(self, reference: str, *, login: str | None = None) -> CaseView:
        with self.db.read() as conn:
            case = get_case(conn, self.registry, reference)
            if login is not None:
                self._check_read(load_actor(conn, login), case, reference)
            return case

    def allowed_triggers(self, case: CaseView, login: str) -> list[str]:
        spec = self.registry[case.kind]
        actor = self.actor(login)
        return [
            t.trigger
            for t in spec.allowed(case.state)
            if can_fire(actor, spec, case.state, t.trigger, case)
        ]

    def search(self, filters: CaseFilter, *, login: str | None = None) -> list[CaseView]:
        with self.db.read() as conn:
            where = None
            if login is not None:
                where = _scope_where(load_actor(conn, login))
            return list_cases(conn, self.registry, filters=filters, scope_where=where)

    def history(self, reference: str, *, login: str | None = None) -> tuple[CaseView, list[Any]]:
        with self.db.read() as conn:
            case = get_case(conn, self.registry, reference)
            if login is not None:
                self._check_read(load_actor(conn, login), case, reference)
            return case, history(conn, case.id)

    @staticmethod
    def _check_read(actor: Actor, case: CaseView, reference: str) -> None:
        if not can_read(actor, case):
            # Outside the reader's scope a case is indistinguishable from a missing one.
            raise NotFound(f"no case {reference}: check the reference with 'regul case list'")


class _Place:
    """A hospital's place in the directory, for the policy's scope test."""

    def __init__(self, org: str, region: str | None, zone: str | None, ght: str | None) -> None:
        self.org, self.region, self.zone, self.ght = org, region, zone, ght


def _scope_where(actor: Actor) -> Any:
    scope, c = actor.scope, CASE_TABLE.c
    column = {"hospital": c.org, "ght": c.ght, "zone": c.zone, "region": c.region}.get(scope.kind)
    return None if column is None else column == scope.code
