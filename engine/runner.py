"""The case service: what the CLI, the API, the desk and the demo ask of cases.

Every command reads ``now`` once, opens one write transaction through the unit of work,
reads the actor and the locked case, asks ``engine.decisions`` for the ``Outcome``, and has
the unit of work apply it; a refusal is raised after its audit record is committed. Reads by
people are commands too (a ``read`` event in the case's chain). Lists follow the reader's
scope. Talks to ``engine.unit_of_work`` (writes), ``engine.cases`` (lists and history), the
clock and the workflow registry; knows nothing of terminals or HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from engine import audit, idempotency
from engine.actors import load_actor, load_places, org_names
from engine.cases import (
    CASE_TABLE,
    CaseCount,
    CaseFilter,
    count_cases,
    get_case,
    history,
    kinds_of,
    list_cases,
)
from engine.clock import Clock
from engine.db import Database
from engine.decisions import OWN_RULE, Decider, Rules
from engine.errors import InputError, NotFound, NotPermitted, StorageError
from engine.policy import can_fire, can_see_event
from engine.unit_of_work import Effects, Notifier, SilentNotifier, Token, Tx, UnitOfWork
from engine.values import Actor, CaseView, Command, Outcome, Place, ReminderPolicy
from engine.vocab import Role, ScopeKind
from engine.workflow import WorkflowRegistry

__all__ = ["Notifier", "Runner", "SilentNotifier", "scope_where"]


class Runner:
    """The engine's entry points for cases, shared by every interface."""

    def __init__(
        self,
        db: Database,
        registry: WorkflowRegistry,
        clock: Clock,
        policy: ReminderPolicy | None = None,
        notifier: Notifier | None = None,
        rules: Rules | None = None,
        effects: Effects | None = None,
    ) -> None:
        self.db, self.registry, self.clock = db, registry, clock
        self.effects = effects
        self.policy = policy or ReminderPolicy()
        self.notifier: Notifier = notifier or SilentNotifier()
        self.rules = rules or Rules()
        self._decider: Decider | None = None
        self.uow = UnitOfWork(db, registry, self.notifier)

    @property
    def decider(self) -> Decider:
        """The decisions, with the directory's geography read once (on first use: a runner
        may be built before ``regul init`` loads the directory; an empty one is not kept)."""
        if self._decider is None:
            from engine.geography import load_geography

            try:
                with self.db.read() as conn:
                    geography = load_geography(conn)
            except StorageError:  # no schema yet: decide without, ask again next time
                return Decider(self.registry, self.policy, self.notifier.declares, self.rules)
            decider = Decider(
                self.registry, self.policy, self.notifier.declares, self.rules, geography
            )
            if not geography.known:
                return decider
            self._decider = decider
        return self._decider

    # -- commands -------------------------------------------------------------------------

    def open_case(
        self,
        *,
        kind: str,
        login: str | Actor,
        org: str,
        fields: Mapping[str, object],
        idempotency_key: str | None = None,
    ) -> CaseView:
        self.registry[kind]  # an unknown workflow says which ones exist, before any write
        request = {"op": "open", "kind": kind, "org": org, "fields": dict(fields)}
        return self._command(
            login,
            idempotency_key,
            request,
            lambda tx, actor: self._opened(
                tx, self.decider.open(actor, kind, tx.place(org), fields, tx.now)
            ),
        )

    def _opened(self, tx: Tx, outcome: Outcome) -> Outcome:
        """An opening's effects on resources (an ECMO case opened where no console is free)."""
        if self.effects is None or outcome.refusal is not None or outcome.case is None:
            return outcome
        return self.effects(tx, outcome.case, outcome)

    def advance(
        self,
        *,
        reference: str,
        trigger: str,
        login: str | Actor | Token,
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

        def decide(tx: Tx, actor: Actor) -> Outcome:
            case, _ = tx.lock(reference)
            places = self._named(tx, case, command)
            outcome = self.decider.fire(
                case, actor, command, tx.now, as_written=reference, places=places
            )
            return self.with_effects(tx, case, outcome)

        return self._command(login, idempotency_key, request, decide, locks=reference)

    def with_effects(self, tx: Tx, before: CaseView, outcome: Outcome) -> Outcome:
        """The outcome with what its transition does to resources (``effects``, injected by
        the composition root: the ledgers live beside the engine, not in it). A refusal or
        an outcome that changes no state is returned as it is. An opening's outcome
        (``opened`` set, ``before`` the new case) goes to the same effects (``_opened``)."""
        if self.effects is None or outcome.refusal is not None or not outcome.values:
            return outcome
        return self.effects(tx, before, outcome)

    def _named(self, tx: Tx, case: CaseView, command: Command) -> dict[str, Place | None] | None:
        """The directory entries a trigger's establishment fields name, and the case's own
        (None when the trigger names none: most commands read nothing more)."""
        spec = self.registry[case.kind]
        transition = spec.transition(case.state, command.trigger)
        fields = transition.fields if transition else ()
        names = [f.name for f in fields if f.type == "hospital" and f.name not in OWN_RULE]
        if not names:
            return None
        ids = {str(command.data[n]).strip()[:40] for n in names if command.data.get(n)}
        return load_places(tx.conn, ids | {case.org})

    def control(
        self,
        *,
        reference: str,
        action: str,
        login: str | Actor | Token,
        reason: str,
        extend_by: timedelta | None = None,
        expect_version: int | None = None,
    ) -> CaseView:
        """Hold a case (its deadline suspended), resume it (deadline restarted), or extend it."""

        def decide(tx: Tx, actor: Actor) -> Outcome:
            case, deadline = tx.lock(reference)
            return self.decider.control(
                case, actor, action, reason, tx.now, extend_by=extend_by,
                expect_version=expect_version, deadline=deadline, as_written=reference,
            )  # fmt: skip

        return self._command(login, None, {"op": action}, decide, locks=reference)

    def _command(
        self,
        login: str | Actor | Token,
        key: str | None,
        request: dict[str, Any],
        decide: Any,
        *,
        locks: str | None = None,
    ) -> CaseView:
        """Decide and apply one command in one transaction; a retried key gets its first answer.

        The case is locked *before* the key is looked up: a concurrent retry with the same key
        waits for the first attempt's commit and then finds its answer (PostgreSQL reads
        committed rows per statement). Opening has no row to lock: the key's primary key makes
        the loser fail at insert, and it reads the winner's answer.
        """
        digest = idempotency.fingerprint(request) if key else ""
        decider = self.decider  # the geography read (once) before the write transaction
        now = self.clock.now()

        def work(tx: Tx) -> CaseView | Outcome:
            if locks is not None and not isinstance(login, Actor):
                tx.prefetch(login, locks)  # the actor and the case in one round trip
            actor = login if isinstance(login, Actor) else tx.actor(login)
            name = actor.login
            if key and locks is not None:  # the case first: a retry waits for the first answer
                with suppress(NotFound):
                    tx.lock(locks)
            if key:
                earlier = tx.recall(name, key, digest)
                if earlier is not None:
                    return earlier
            try:
                outcome: Outcome = decide(tx, actor)
            except NotFound as missing:
                if missing.why != "no_case" or locks is None:
                    raise
                outcome = decider.probe(actor, locks, str(request.get("op", "command")))
            after = tx.apply(outcome)
            if outcome.refusal is not None:
                return outcome  # committed with its audit record; raised below
            assert after is not None
            if key:
                tx.remember(name, key, digest, after)
            return after

        try:
            result = self.uow.run(now, work)
        except IntegrityError:
            if not key:
                raise
            name = _login_of(login)
            with self.db.read() as conn:  # a concurrent retry with the same key won the race
                earlier = idempotency.lookup(conn, actor=name, key=key, request_hash=digest)
            if earlier is None:
                raise
            return CaseView.from_dict(earlier)
        if isinstance(result, Outcome):
            assert result.refusal is not None
            raise result.refusal
        return result

    # -- reads ----------------------------------------------------------------------------

    def actor(self, login: str) -> Actor:
        with self.db.read() as conn:
            return load_actor(conn, login)

    def show(
        self,
        reference: str,
        *,
        login: str | Actor | Token | None = None,
        via: str = "cli",
        what: str = "case",
    ) -> CaseView:
        """A case; read by a person (``login``), the read is recorded in its audit chain."""
        if login is None:
            with self.db.read() as conn:
                return get_case(conn, self.registry, reference)
        case, _ = self._read(reference, login, via, what)
        return case

    def allowed_triggers(self, case: CaseView, login: str | Actor) -> list[str]:
        """The triggers ``login`` may fire on ``case`` now (an Actor saves a database read)."""
        spec = self.registry[case.kind]
        actor = login if isinstance(login, Actor) else self.actor(login)
        return [
            t.trigger
            for t in spec.allowed(case.state)
            if can_fire(actor, spec, case.state, t.trigger, case)
        ]

    def search(self, filters: CaseFilter, *, login: str | Actor | None = None) -> list[CaseView]:
        with self.db.read() as conn:
            where = None
            if login is not None:
                actor = login if isinstance(login, Actor) else load_actor(conn, login)
                where = scope_where(actor)
            return list_cases(conn, self.registry, filters=filters, scope_where=where)

    def counts(self, *, login: Actor, open_only: bool = True) -> list[CaseCount]:
        """The cases of ``login``'s scope counted by workflow, state and the queue's flags
        (at its level, overdue, incident): the counts a queue's filters show."""
        with self.db.read() as conn:
            return count_cases(
                conn, role=login.role, now=self.clock.now(), open_only=open_only,
                scope_where=scope_where(login),
            )  # fmt: skip

    def names(self, orgs: set[str]) -> dict[str, str]:
        """The directory's names of organisations (an unknown id is left out)."""
        with self.db.read() as conn:
            return org_names(conn, orgs)

    def kinds(self, case_ids: set[int]) -> dict[int, str]:
        """The workflow of each case id (audit events carry the id only)."""
        with self.db.read() as conn:
            return kinds_of(conn, case_ids)

    def history(
        self, reference: str, *, login: str | Actor | Token | None = None, via: str = "cli"
    ) -> tuple[CaseView, list[Any]]:
        if login is None:
            with self.db.read() as conn:
                case = get_case(conn, self.registry, reference)
                return case, history(conn, case.id)
        return self._read(reference, login, via, "history", events=True)

    def _read(
        self,
        reference: str,
        reader: str | Actor | Token,
        via: str,
        what: str,
        *,
        events: bool = False,
    ) -> tuple[CaseView, list[Any]]:
        """Read a case as a person, in one transaction: the read (or its refusal) is recorded.

        French health-data rules want to know who read which case and when. Outside the
        reader's scope the case is indistinguishable from a missing one (``NotFound``), and
        the refused attempt is recorded like any refusal.
        """

        def work(tx: Tx) -> tuple[Outcome, CaseView | None, list[Any]]:
            if not isinstance(reader, Actor):
                tx.prefetch(reader, reference)  # the reader and the case in one round trip
            actor = reader if isinstance(reader, Actor) else tx.actor(reader)
            try:
                case, _ = tx.lock(reference)
            except NotFound as missing:
                if missing.why != "no_case":
                    raise
                probe = self.decider.probe(actor, reference, "read")
                tx.apply(probe)
                return probe, None, []
            outcome = self.decider.read(case, actor, what, via, as_written=reference)
            after = tx.apply(outcome)
            rows = history(tx.conn, case.id) if events and outcome.refusal is None else []
            rows = [e for e in rows if can_see_event(actor, e.action, e.role, e.data or {})]
            return outcome, after, rows

        outcome, after, rows = self.uow.run(self.clock.now(), work)
        if outcome.refusal is not None:
            raise outcome.refusal
        assert after is not None
        return after, rows

    # -- the audit log, for auditors -----------------------------------------------------

    def auditor(self, login: str | Actor, what: str) -> Actor:
        """The auditor ``login``; anyone else is refused, and the refusal is recorded."""

        def work(tx: Tx) -> tuple[Actor, Outcome | None]:
            actor = login if isinstance(login, Actor) else tx.actor(login)
            refusal = self.decider.audit(actor, what)
            if refusal is not None:
                tx.apply(refusal)
            return actor, refusal

        actor, refusal = self.uow.run(self.clock.now(), work)
        if refusal is not None:
            assert refusal.refusal is not None
            raise refusal.refusal
        return actor

    def audit_events(
        self,
        *,
        login: str | Actor,
        case: str | None = None,
        user: str | None = None,
        org: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        via: str = "cli",
        offset: int = 0,
        limit: int | None = None,
    ) -> Iterator[Any]:
        """The events an auditor may read, filtered; streamed in id order.

        The checks run now (a refusal raises here, recorded); the events stream as the
        iterator is consumed. Naming a case reads it: the read is recorded in its chain first.
        ``offset`` and ``limit``: one page of them (the desk's).
        """
        if any(t is not None and "\x00" in t for t in (user, org, case)):
            raise InputError(
                "a filter contains the NUL character (U+0000): remove it", why="nul_character"
            )
        actor = self.auditor(login, "read the audit log")
        case_id = self._audited_case(actor, case, "export", via) if case else None
        filters = {"case_id": case_id, "since": since, "until": until, "actor": user, "org": org}
        return self._events({**filters, "offset": offset, "limit": limit}, scope_where(actor))

    def _events(self, filters: dict[str, Any], where: Any) -> Iterator[Any]:
        with self.db.read() as conn:
            yield from audit.iter_events(conn, scope_where=where, **filters)

    def audit_verify(
        self, *, login: str | Actor, case: str | None = None, via: str = "cli"
    ) -> audit.VerifyReport:
        actor = self.auditor(login, "verify the audit log")
        case_id = self._audited_case(actor, case, "verify", via) if case else None
        with self.db.read() as conn:
            if case_id is not None:
                return audit.verify(conn, case_id=case_id, registry=self.registry)
            if actor.scope.kind == ScopeKind.NATIONAL:
                return audit.verify(conn, registry=self.registry)
        why = "a regional auditor verifies one case at a time: give a case reference"
        data = {"op": "verify the whole audit log", "why": why}
        data["refusal"] = "regional_auditor_whole_log"
        refusal = self.decider.refuse(actor, data)
        self.uow.run(self.clock.now(), lambda tx: tx.apply(refusal))
        raise NotPermitted(why, why="regional_auditor_whole_log")

    def _audited_case(self, actor: Actor, reference: str, what: str, via: str) -> int:
        """The id of a case the auditor may read (the read recorded); else 'no case'."""
        case, _ = self._read(reference, actor, via, f"audit {what}")
        return case.id


def _login_of(login: str | Actor | Token) -> str:
    """The login of a command's caller (a token's, once its command has checked it)."""
    if isinstance(login, Token):
        assert login.actor is not None  # checked first thing in the command's transaction
        return login.actor.login
    return login.login if isinstance(login, Actor) else login


def scope_where(actor: Actor) -> Any:
    """The condition on the case table that keeps ``actor``'s scope (None: national and every
    workflow); a role that reads some workflows only (``Actor.kinds``) keeps those."""
    scope, c = actor.scope, CASE_TABLE.c
    column = {"hospital": c.org, "ght": c.ght, "zone": c.zone, "region": c.region}.get(scope.kind)
    where = None if column is None else column == scope.code
    # and the consoles it lent, the transfers proposed to it
    if actor.role == Role.ESTABLISHMENT and where is not None:
        lent = c.fields["resolve"]["lender"].as_string() == actor.org
        receiving = c.fields["resolve"]["receiving_hospital"].as_string() == actor.org
        where = sa.or_(
            where, sa.and_(c.kind == "ecmo", lent), sa.and_(c.kind == "transfer", receiving)
        )
    if actor.kinds is not None:
        of_kinds = c.kind.in_(sorted(actor.kinds))
        return of_kinds if where is None else sa.and_(where, of_kinds)
    return where
