"""Random command sequences on both databases: the engine's invariants hold after every step.

A Hypothesis state machine opens cases of every kind at hospitals inside and outside
Occitanie, fires random triggers as random users (right and wrong role, level and scope,
auditors and the administrator), with stale versions, malformed data and reused idempotency
keys, moves the clock and runs the deadline sweep. A small model, written from DESIGN.md's
table of roles and scopes, predicts each answer; after each step the audit chain verifies,
replay lands on the stored state, audit sequences and notice numbers have no gaps, and
deadline rows follow the state. The runner queues notices through the real outbox.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from engine import audit, sweeper
from engine.cases import CaseView
from engine.clock import FixedClock
from engine.db import Database
from engine.errors import (
    IdempotencyMismatch,
    InputError,
    NotFound,
    NotPermitted,
    RegulError,
    StaleVersion,
    TriggerNotAllowed,
)
from engine.models import Deadline
from engine.runner import Runner
from engine.workflow import WorkflowSpec
from notifications.outbox import Outbox
from tests.conftest import (
    ACTORS_OCC,
    CONFIRMS,
    DEFAULT_FIELDS,
    OUTSIDERS,
    START,
    Ctx,
    truncate_cases,
)
from tests.conftest import trigger_data as region_data
from workflows import default_notices, default_registry

REGISTRY = default_registry()
KINDS = REGISTRY.kinds()
_DEADLINE = Deadline.__table__  # type: ignore[attr-defined]
PARIS = ZoneInfo("Europe/Paris")

# Where the demo hospitals lie (workflows/data): two in Occitanie (zone Sud), one in Île-de-France.
HOSPITALS: dict[str, dict[str, str]] = {
    "319900001": {"hospital": "319900001", "ght": "GHT-OCC-06", "zone": "SUD", "region": "OCC"},
    "349900001": {"hospital": "349900001", "ght": "GHT-OCC-04", "zone": "SUD", "region": "OCC"},
    "789900001": {"hospital": "789900001", "ght": "GHT-IDF-01", "zone": "PARIS", "region": "IDF"},
}
# Each user's role and scope, written from DESIGN.md's table, not from engine.policy.
USERS: dict[str, tuple[str, str, str | None]] = {
    ACTORS_OCC["establishment"]: ("establishment", "hospital", "319900001"),
    ACTORS_OCC["ght"]: ("ght", "ght", "GHT-OCC-06"),
    ACTORS_OCC["umac"]: ("umac", "zone", "SUD"),
    ACTORS_OCC["ars"]: ("ars", "region", "OCC"),
    ACTORS_OCC["ars_zone"]: ("ars_zone", "zone", "SUD"),
    ACTORS_OCC["ccs"]: ("ccs", "national", None),
    ACTORS_OCC["spf"]: ("spf", "national", None),
    OUTSIDERS["establishment"]: ("establishment", "hospital", "789900001"),
    OUTSIDERS["ght"]: ("ght", "ght", "GHT-IDF-01"),
    OUTSIDERS["umac"]: ("umac", "zone", "PARIS"),
    OUTSIDERS["ars"]: ("ars", "region", "IDF"),
    OUTSIDERS["ars_zone"]: ("ars_zone", "zone", "PARIS"),
    "etab-349900001": ("establishment", "hospital", "349900001"),
    "etab-319900002": ("establishment", "hospital", "319900002"),  # lends in Occitanie
    "etab-789900002": ("establishment", "hospital", "789900002"),  # lends in Île-de-France
    "ght-occ-04": ("ght", "ght", "GHT-OCC-04"),
    "auditeur": ("auditor", "national", None),
    "admin": ("admin", "national", None),
}
LOGINS = sorted(USERS)
KEYS = ("k-1", "k-2", "k-3")
UNKNOWN_CASE = "ECMO-999999"
MAX_CASES = 6  # past this, steps go to the cases already open, so that they climb their ladders
# Tables a refused advance leaves alone (it appends its event and moves its case's chain head).
UNTOUCHED_BY_REFUSAL = ("notice_attempt", "notice", "notice_counter", "idempotency", "deadline")


# Who lends an ECMO console to each hospital's case (seed 000: within the region), and the
# states in which the case has a lender: the lender reads it, and alone fires ``lender``
# triggers (extend_loan, return).
LENDERS = {"319900001": "319900002", "349900001": "319900002", "789900001": "789900002"}
LOANED = ("dispatched", "in_service", "returned", "closed")
ONE_REGION_ZONES = ("PARIS",)  # the zone level of a zone of one region is skipped


def in_scope(login: str, hospital: str) -> bool:
    _, kind, code = USERS[login]
    return kind == "national" or HOSPITALS[hospital].get(kind) == code


def lends(login: str, kind: str, state: str, hospital: str) -> bool:
    return kind == "ecmo" and state in LOANED and login == f"etab-{LENDERS[hospital]}"


def sees(login: str, kind: str, state: str, hospital: str) -> bool:
    return in_scope(login, hospital) or lends(login, kind, state, hospital)


def trigger_data(kind: str, trigger: str, hospital: str) -> dict[str, object]:
    """TRIGGER_FIELDS, the ECMO loan's lender and a transfer's receiving establishment taken
    in the hospital's region."""
    data = region_data(kind, trigger, HOSPITALS[hospital]["region"])
    if "lender" in data:
        data["lender"] = LENDERS[hospital]
    return data


def lands(spec: WorkflowSpec, dest: str, hospital: str) -> str:
    """Where a step to ``dest`` lands: past the zone level of a zone of one region."""
    if spec.state(dest).level == "ars_zone" and HOSPITALS[hospital]["zone"] in ONE_REGION_ZONES:
        return spec.fire(dest, "escalate")
    return dest


def permitted(login: str, spec: WorkflowSpec, state: str, trigger: str, hospital: str) -> bool:
    """The design's three conditions: role allowed, level held (unless any_level), in scope;
    a ``lender`` trigger: the lender alone."""
    transition = spec.transition(state, trigger)
    assert transition is not None
    if transition.lender:
        return lends(login, spec.kind, state, hospital)
    role = USERS[login][0]
    if role not in transition.roles:
        return False
    if not transition.any_level and spec.state(state).level != role:
        return False
    return in_scope(login, hospital)


def right_user(spec: WorkflowSpec, state: str, trigger: str, hospital: str) -> str | None:
    """A user who may fire ``trigger`` on a case at ``hospital`` in ``state``, if there is one."""
    for login in LOGINS:
        if permitted(login, spec, state, trigger, hospital):
            return login
    return None


def end_of_day(value: str) -> datetime:
    """A carried date (a return, a delivery) falls due at the end of that day, Paris time."""
    next_day = date.fromisoformat(value) + timedelta(days=1)
    return datetime.combine(next_day, time(0), tzinfo=PARIS)


@dataclass
class ModelCase:
    id: int
    kind: str
    hospital: str
    state: str
    version: int


@dataclass(frozen=True)
class Command:
    """One call to the runner, kept so that it can be sent again verbatim."""

    op: str  # open | advance
    login: str
    key: str | None
    kind: str = ""
    org: str = ""
    fields: dict[str, object] = field(default_factory=dict)
    reference: str = ""
    trigger: str = ""
    reason: str = ""
    data: dict[str, object] = field(default_factory=dict)
    expect_version: int | None = None
    valid: bool = True  # fields / data well formed for this kind and trigger

    def identity(self) -> str:
        """What the idempotency record compares: everything but the key and the sender."""
        body = {k: v for k, v in self.__dict__.items() if k not in {"login", "key", "valid"}}
        return json.dumps(body, sort_keys=True, default=str)

    def send(self, runner: Runner) -> CaseView:
        if self.op == "open":
            return runner.open_case(
                kind=self.kind,
                login=self.login,
                org=self.org,
                fields=self.fields,
                idempotency_key=self.key,
            )
        return runner.advance(
            reference=self.reference,
            trigger=self.trigger,
            login=self.login,
            reason=self.reason,
            data=self.data,
            expect_version=self.expect_version,
            idempotency_key=self.key,
        )


# What the model expects a command to do.
@dataclass(frozen=True)
class Moves:
    state: str
    version: int


@dataclass(frozen=True)
class Replays:
    answer: dict[str, Any]


@dataclass(frozen=True)
class Raises:
    error: type[RegulError]
    refusal: bool = False  # the engine records the refusal in the audit log


class CaseCommands(RuleBasedStateMachine):
    """Random commands from random users; a model of the expected answers; invariants."""

    # Set by the test for its backend: a fresh database per example, and how to drop it.
    fresh_database: Callable[[], Database]
    drop_database: Callable[[Database], None]

    def __init__(self) -> None:
        super().__init__()
        db = type(self).fresh_database()
        clock = FixedClock(START)
        outbox = Outbox(REGISTRY, default_notices())
        self.ctx = Ctx(
            db, Runner(db, REGISTRY, clock, notifier=outbox, rules=CONFIRMS), clock, REGISTRY
        )
        self.cases: dict[str, ModelCase] = {}
        self.records: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self.keyed: list[Command] = []

    def teardown(self) -> None:
        type(self).drop_database(self.ctx.db)

    # -- rules ----------------------------------------------------------------------------

    @precondition(lambda self: len(self.cases) < MAX_CASES)
    @rule(data=st.data())
    def open_case(self, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(KINDS), label="kind")
        org = data.draw(st.sampled_from(sorted(HOSPITALS)), label="hospital")
        by_owner = data.draw(st.sampled_from([True] * 4 + [False]), label="by its hospital")
        login = f"etab-{org}" if by_owner else data.draw(st.sampled_from(LOGINS), label="login")
        shape = data.draw(st.sampled_from(["valid"] * 6 + ["unknown", "missing"]), label="shape")
        fields = dict(DEFAULT_FIELDS[kind])
        if shape == "unknown":
            fields["nom_patient"] = "Dupont"
        elif shape == "missing":
            fields.pop(next(iter(fields)))
        key = data.draw(st.sampled_from([None] * 6 + list(KEYS)), label="key")
        command = Command(
            "open", login, key, kind=kind, org=org, fields=fields, valid=shape == "valid"
        )
        self.send(command)

    @precondition(lambda self: self.open_cases())
    @rule(data=st.data())
    def advance_properly(self, data: st.DataObject) -> None:
        """An allowed trigger by someone entitled to it, well formed: cases climb their ladders."""
        self.advance_case(data, proper=True)

    @precondition(lambda self: self.cases)
    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        """Any trigger by any user, sometimes on an unknown case."""
        self.advance_case(data, proper=False)

    def open_cases(self) -> list[str]:
        return sorted(r for r, m in self.cases.items() if REGISTRY[m.kind].allowed(m.state))

    def advance_case(self, data: st.DataObject, *, proper: bool) -> None:
        choices = self.open_cases() if proper else sorted(self.cases)
        reference = data.draw(st.sampled_from(choices), label="case")
        case = self.cases[reference]
        spec = REGISTRY[case.kind]
        possible = [t.trigger for t in spec.allowed(case.state)]
        if proper and possible:
            trigger = data.draw(st.sampled_from(possible), label="trigger")
            login = right_user(spec, case.state, trigger, case.hospital) or "ccs"
        else:
            if data.draw(st.sampled_from([False] * 9 + [True]), label="unknown case"):
                reference = UNKNOWN_CASE
            trigger = data.draw(st.sampled_from([*spec.triggers, "explode"]), label="trigger")
            login = data.draw(st.sampled_from(LOGINS), label="login")
        valid_data = trigger_data(case.kind, trigger, case.hospital)
        shapes = ["valid"] if proper else ["valid"] * 3 + ["empty", "unknown", "garbled"]
        shape = data.draw(st.sampled_from(shapes), label="data")
        payload, valid = valid_data, True
        if shape == "empty":
            payload, valid = {}, not valid_data
        elif shape == "unknown":
            payload, valid = {**valid_data, "nom_patient": "Dupont"}, False
        elif shape == "garbled" and valid_data:
            payload, valid = dict.fromkeys(valid_data, "n/a"), False
        reasons = ["décision"] if proper else ["décision"] * 4 + [" "]
        reason = data.draw(st.sampled_from(reasons), label="reason")
        versions = [None, "current"] if proper else [None] * 2 + ["current", "stale", "ahead"]
        expect = data.draw(st.sampled_from(versions), label="expect")
        expect_version = {
            None: None,
            "current": case.version,
            "stale": case.version - 1,
            "ahead": case.version + 1,
        }[expect]
        key = data.draw(st.sampled_from([None] * 6 + list(KEYS)), label="key")
        self.send(
            Command(
                "advance",
                login,
                key,
                reference=reference,
                trigger=trigger,
                reason=reason,
                data=payload,
                expect_version=expect_version,
                valid=valid,
            )
        )

    @precondition(lambda self: self.keyed)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        """Send an earlier command with an idempotency key again, verbatim."""
        self.send(data.draw(st.sampled_from(self.keyed), label="retried"))

    @rule(minutes=st.integers(min_value=1, max_value=24 * 60))
    def tick(self, minutes: int) -> None:
        self.ctx.clock.advance(timedelta(minutes=minutes))

    @rule()
    def sweep(self) -> None:
        """The deadline sweep at the clock's now: due rows fire once, nothing fires early."""
        now = self.ctx.clock.now()
        with self.ctx.db.read() as conn:
            due = {
                r.id
                for r in conn.execute(
                    sa.select(_DEADLINE.c.id).where(
                        _DEADLINE.c.status == "open", _DEADLINE.c.next_at <= now
                    )
                )
            }
        report = sweeper.sweep(self.ctx.runner)
        assert report.errors == 0, report
        fired = sorted(item.deadline_id for item in report.fired)
        assert fired == sorted(due), f"due rows {sorted(due)}, fired {report.fired}"
        escalated: dict[str, str] = {}
        for item in report.fired:
            if item.outcome != "reminder":
                assert item.due_at <= now, f"{item} fired before its due time {now}"
            if item.outcome == "escalated":
                assert item.case not in escalated, f"{item.case} escalated twice in one sweep"
                escalated[item.case] = item.to_state
        for reference, model in self.cases.items():
            shown = self.ctx.runner.show(reference)
            if reference in escalated:
                spec = REGISTRY[model.kind]
                trigger = spec.state(model.state).on_deadline
                transition = spec.transition(model.state, trigger or "")
                assert transition is not None, f"{reference}: escalated from {model.state}"
                expected = (lands(spec, transition.dest, model.hospital), model.version + 1)
            else:
                expected = (model.state, model.version)
            assert (shown.state, shown.version) == expected, (reference, report.fired)
            assert escalated.get(reference, shown.state) == shown.state, reference
            model.state, model.version = shown.state, shown.version
        with self.ctx.db.read() as conn:
            late = conn.execute(
                sa.select(_DEADLINE.c.id).where(
                    _DEADLINE.c.status == "open", _DEADLINE.c.next_at <= now
                )
            ).all()
        assert late == [], f"the sweep left due deadline rows {late}"

    # -- the model ------------------------------------------------------------------------

    def expect(self, c: Command) -> Moves | Replays | Raises:
        """The answer the design calls for, checking in the order the engine does."""
        if c.op == "advance" and c.reference not in self.cases:
            return Raises(NotFound)  # the case is locked before its key is looked up
        if c.key is not None and (c.login, c.key) in self.records:
            identity, answer = self.records[(c.login, c.key)]
            return Replays(answer) if identity == c.identity() else Raises(IdempotencyMismatch)
        checks: list[tuple[bool, type[RegulError]]]
        if c.op == "open":
            role = USERS[c.login][0]
            # an establishment opens; the ARS opens a PPE request on behalf of an
            # establishment of its region, which goes at once to the ARS's rung
            opener = role == "establishment" or (role == "ars" and c.kind == "ppe")
            checks = [
                (not opener or not in_scope(c.login, c.org), NotPermitted),
                (not c.valid, InputError),
            ]
            on_behalf = role == "ars" and c.kind == "ppe"
            outcome = Moves("ars_review" if on_behalf else REGISTRY[c.kind].initial, 1)
        else:
            case = self.cases[c.reference]
            spec = REGISTRY[case.kind]
            transition = spec.transition(case.state, c.trigger)
            if not sees(c.login, case.kind, case.state, case.hospital):  # as if missing
                return Raises(NotFound, refusal=True)
            checks = [
                (c.trigger not in spec.triggers, NotFound),
                (not c.reason.strip(), InputError),
                (c.expect_version not in (None, case.version), StaleVersion),
                (transition is None, TriggerNotAllowed),
                (
                    transition is not None
                    and not permitted(c.login, spec, case.state, c.trigger, case.hospital),
                    NotPermitted,
                ),
                (not c.valid, InputError),
            ]
            dest = lands(spec, transition.dest, case.hospital) if transition else ""
            outcome = Moves(dest, case.version + 1)
        for failed, error in checks:
            if failed:
                return Raises(error)
        return outcome

    def send(self, c: Command) -> None:
        expected = self.expect(c)
        before = self.ctx.snapshot()
        answer: CaseView | None = None
        error: RegulError | None = None
        try:
            answer = c.send(self.ctx.runner)
        except RegulError as exc:
            error = exc
        if c.key is not None and c not in self.keyed:
            self.keyed.append(c)
        if isinstance(expected, Raises):
            assert error is not None, f"{c} succeeded ({answer}); expected {expected.error}"
            assert type(error) is expected.error, f"{c}: {error!r}; expected {expected.error}"
            if expected.error is NotPermitted or expected.refusal:
                self.check_refusal_only(c, before, self.ctx.snapshot())
            else:
                after = self.ctx.snapshot()
                if error.why == "no_case":  # a probe of a missing case: one security record
                    added = after["audit_event"][len(before["audit_event"]) :]
                    assert [(e["action"], e["actor"]) for e in added] == [("probe", c.login)], c
                    after["audit_event"] = after["audit_event"][: len(before["audit_event"])]
                    after["audit_head"] = before["audit_head"]
                assert after == before, f"{c} raised {error!r} but wrote"
            return
        assert error is None, f"{c} raised {error!r}; expected {expected}"
        assert answer is not None
        if isinstance(expected, Replays):
            assert answer.to_dict() == expected.answer, f"{c}: a replay gave another answer"
            assert self.ctx.snapshot() == before, f"{c}: a replayed command wrote again"
            return
        assert (answer.state, answer.version) == (expected.state, expected.version), c
        assert self.ctx.runner.show(answer.reference).to_dict() == answer.to_dict(), c
        self.check_one_step(c, answer, before, self.ctx.snapshot())
        if c.op == "open":
            self.cases[answer.reference] = ModelCase(
                answer.id, c.kind, c.org, answer.state, answer.version
            )
        else:
            model = self.cases[c.reference]
            model.state, model.version = answer.state, answer.version
        if c.key is not None:
            self.records[(c.login, c.key)] = (c.identity(), answer.to_dict())

    def check_refusal_only(
        self, c: Command, before: dict[str, list[Any]], after: dict[str, list[Any]]
    ) -> None:
        """A refusal adds its one 'refused' event (and moves its stream's head), nothing else."""
        events = after["audit_event"]
        assert events[: len(before["audit_event"])] == before["audit_event"], c
        new = events[len(before["audit_event"]) :]
        kept: list[Any] = []
        if c.op != "open":  # an outsider's typed reason goes to the security stream, not the case's
            kept = [e for e in new if e["case_id"] is None]
            new = [e for e in new if e["case_id"] is not None]
            assert len(kept) <= 1, c
            if kept:
                assert (kept[0]["action"], kept[0]["actor"]) == ("refused", c.login), c
                assert new, c
                assert new[0]["reason"] == "", f"{c}: an outsider's text in the case's chain"
        assert len(new) == 1, f"{c}: {len(new)} events for one refusal"
        event = new[0]
        assert (event["action"], event["actor"]) == ("refused", c.login), c
        for table in UNTOUCHED_BY_REFUSAL:
            assert after[table] == before[table], f"{c}: a refusal changed {table}"
        if c.op == "open":
            assert event["case_id"] is None, c
            assert after["regul_case"] == before["regul_case"], c
            assert after["audit_head"] != before["audit_head"], c
            return
        case = self.cases[c.reference]
        assert event["case_id"] == case.id, c
        assert (event["from_state"], event["to_state"], event["version"]) == (
            case.state,
            case.state,
            case.version,
        ), c
        assert (after["audit_head"] == before["audit_head"]) == (not kept), c
        head = ("audit_seq", "audit_hash")
        for old, new_row in zip(before["regul_case"], after["regul_case"], strict=True):
            if old["id"] != case.id:
                assert new_row == old, f"{c}: a refusal changed another case"
                continue
            rest = {k: v for k, v in old.items() if k not in head}
            assert {k: v for k, v in new_row.items() if k not in head} == rest, c
            assert (new_row["audit_seq"], new_row["audit_hash"]) == (
                old["audit_seq"] + 1,
                event["hash"],
            ), c

    def check_one_step(
        self,
        c: Command,
        answer: CaseView,
        before: dict[str, list[Any]],
        after: dict[str, list[Any]],
    ) -> None:
        """A success writes one event for its case (then one automatic step per rung passed
        over, at the same version), its notices, one idempotency record if keyed."""
        events = after["audit_event"]
        assert events[: len(before["audit_event"])] == before["audit_event"], c
        new = events[len(before["audit_event"]) :]
        assert new, f"{c}: no event"
        event, steps = new[0], new[1:]
        action = "opened" if c.op == "open" else "transition"
        assert (event["case_id"], event["action"], event["actor"]) == (answer.id, action, c.login)
        assert all(
            (e["case_id"], e["action"], e["actor"], e["version"])
            == (answer.id, "transition", "system", answer.version)
            for e in steps
        ), c
        event = new[-1]
        assert (event["to_state"], event["version"]) == (answer.state, answer.version), c
        added = len(after["idempotency"]) - len(before["idempotency"])
        assert added == (1 if c.key else 0), c
        assert len(after["regul_case"]) - len(before["regul_case"]) == (c.op == "open"), c
        notices = after["notice"][len(before["notice"]) :]
        assert after["notice"][: len(before["notice"])] == before["notice"], c
        assert all((n["case_id"], n["event_seq"]) == (answer.id, event["seq"]) for n in notices)

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def audit_chain_verifies(self) -> None:
        with self.ctx.db.read() as conn:
            report = audit.verify(conn)
            assert report.ok, report.findings

    @invariant()
    def cases_replay_and_sequences_have_no_gaps(self) -> None:
        with self.ctx.db.read() as conn:
            stored = {
                r.id: r
                for r in conn.execute(
                    sa.text("SELECT id, kind, state, version, audit_seq FROM regul_case")
                )
            }
            seqs: dict[int | None, list[int]] = {}
            for r in conn.execute(sa.text("SELECT case_id, seq FROM audit_event ORDER BY id")):
                seqs.setdefault(r.case_id, []).append(r.seq)
            security = conn.execute(sa.text("SELECT seq FROM audit_head")).scalar()
            assert seqs.get(None, []) == list(range(1, (security or 0) + 1))
            assert sorted(stored) == sorted(m.id for m in self.cases.values())
            for model in self.cases.values():
                row = stored[model.id]
                assert (row.kind, row.state, row.version) == (
                    model.kind,
                    model.state,
                    model.version,
                ), f"case {model.id}: stored {row} but the model says {model}"
                replay = audit.replay(conn, REGISTRY, model.id)
                assert replay.matches, replay
                assert seqs[model.id] == list(range(1, row.audit_seq + 1)), (
                    f"case {model.id}: sequences {seqs[model.id]}, head {row.audit_seq}"
                )

    @invariant()
    def notices_are_numbered_without_gaps_one_per_event(self) -> None:
        with self.ctx.db.read() as conn:
            numbers: dict[tuple[str, int], list[int]] = {}
            events = set()
            for n in conn.execute(
                sa.text("SELECT series, year, number, case_id, event_seq FROM notice ORDER BY id")
            ):
                numbers.setdefault((n.series, n.year), []).append(n.number)
                assert (n.case_id, n.event_seq) not in events, f"two notices for one event {n}"
                events.add((n.case_id, n.event_seq))
            counters = {
                (r.series, r.year): r.last
                for r in conn.execute(sa.text("SELECT series, year, last FROM notice_counter"))
            }
            recorded = {
                (r.case_id, r.seq)
                for r in conn.execute(sa.text("SELECT case_id, seq FROM audit_event"))
            }
        assert events <= recorded, "a notice for an event that is not in the audit log"
        assert {k: sorted(v) for k, v in numbers.items()} == {
            k: list(range(1, last + 1)) for k, last in counters.items()
        }

    @invariant()
    def one_open_deadline_exactly_when_the_state_has_one(self) -> None:
        with self.ctx.db.read() as conn:
            open_rows: dict[int, list[Any]] = {}
            for r in conn.execute(sa.select(_DEADLINE).where(_DEADLINE.c.status == "open")):
                open_rows.setdefault(r.case_id, []).append(r)
            unclosed = conn.execute(
                sa.select(_DEADLINE.c.id).where(
                    _DEADLINE.c.status != "open", _DEADLINE.c.closed_at.is_(None)
                )
            ).all()
            assert unclosed == [], "a closed deadline row has no closed_at"
        for reference, model in self.cases.items():
            rows = open_rows.get(model.id, [])
            case = self.ctx.runner.show(reference)
            state = REGISTRY[model.kind].state(model.state)
            due: datetime | None = None
            if state.deadline is not None:
                due = case.updated_at + state.deadline
            elif state.due_field:  # the first date the case carries (an extension's first)
                carried = next(
                    (
                        value
                        for one in state.due_field.split()
                        if (value := case.fields.get(one.split(".")[0], {}).get(one.split(".")[1]))
                    ),
                    None,
                )
                due = end_of_day(carried) if carried else None
            if due is None:
                assert rows == [], f"{reference} in {model.state} keeps open deadlines {rows}"
                continue
            assert len(rows) == 1, f"{reference} in {model.state}: open deadlines {rows}"
            row = rows[0]
            assert (row.state, row.version) == (model.state, model.version), (reference, row)
            assert row.next_at <= row.due_at, (reference, row)
            if row.action == "remind":  # raised past due: an incident or an overdue date
                assert state.on_deadline in {"incident", "overdue"}, (reference, row)
                assert row.due_at > due, (reference, row)
            else:
                assert (row.action, row.due_at) == (state.on_deadline, due), (reference, row)
                assert row.next_at >= min(row.created_at, row.due_at), (reference, row)


def _sqlite_databases(template: Path, folder: Path) -> tuple[Callable[[], Database], Any]:
    numbers = count()

    def fresh() -> Database:
        path = folder / f"example-{next(numbers)}.db"
        shutil.copy(template, path)
        return Database(f"sqlite:///{path}")

    def drop(db: Database) -> None:
        db.dispose()
        path = Path(db.engine.url.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    return fresh, drop


def _postgres_databases(url: str) -> tuple[Callable[[], Database], Any]:
    def fresh() -> Database:
        db = Database(url)
        truncate_cases(db)
        return db

    def drop(db: Database) -> None:
        db.dispose()

    return fresh, drop


@pytest.mark.slow
def test_random_commands_keep_the_invariants(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Random opens, advances, retries, clock moves and sweeps never break an invariant."""
    if backend == "sqlite":
        fresh, drop = _sqlite_databases(request.getfixturevalue("sqlite_template"), tmp_path)
        examples = 30
    else:
        fresh, drop = _postgres_databases(request.getfixturevalue("pg_url"))
        examples = 15
    machine = type(
        f"CaseCommands_{backend}",
        (CaseCommands,),
        {"fresh_database": staticmethod(fresh), "drop_database": staticmethod(drop)},
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            database=None,
            print_blob=True,
            # No shrinking: each example builds a database, and shrinking one failure can take
            # minutes; the failing steps are printed in full.
            phases=(Phase.explicit, Phase.generate),
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
