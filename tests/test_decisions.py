"""The pure decisions, table-driven and without a database: every workflow × state × trigger × role.

``engine.decisions`` imports no database library; these tests build cases as values, ask for
an outcome and check it against the workflow tables and the doctrine's rules (level, scope,
role), with an independent expectation computed here from the tables.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.decisions import Decider, Rules, check_reason
from engine.errors import InputError, NotFound, NotPermitted, StaleVersion, TriggerNotAllowed
from engine.policy import Geography
from engine.values import SYSTEM, Actor, CaseView, Command, DeadlineRow, Place
from engine.vocab import Action, Control, DeadlineStatus, Role, ScopeKind, SweepOutcome
from tests.conftest import DEFAULT_FIELDS, TRIGGER_FIELDS
from workflows import default_registry
from workflows.directory import read_directory
from workflows.labels import ACTIONS, CONTROLS, OUTCOMES, ROLES, SCOPES, VALUES

REGISTRY = default_registry()


_DEMO = read_directory().rows
GEOGRAPHY = Geography.build(_DEMO["organisations.csv"], _DEMO["regions.csv"])  # the demo's
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
HERE = {"org": "319900001", "region": "OCC", "zone": "SUD", "ght": "GHT-OCC-06"}
ACTORS = {  # one actor per role, inside the case's scope
    "establishment": Actor(
        "etab", "É", "establishment", HERE["org"], "hospital", "OCC", "SUD", HERE["ght"]
    ),
    "ght": Actor("ght", "G", "ght", HERE["ght"], "ght", "OCC", "SUD", HERE["ght"]),
    "umac": Actor("umac", "U", "umac", "UMAC-SUD", "umac", None, "SUD", None),
    "ars": Actor("ars", "A", "ars", "ARS-OCC", "ars", "OCC", "SUD", None),
    "ars_zone": Actor("arsz", "Z", "ars_zone", "ARSZ-SUD", "ars_zone", "OCC", "SUD", None),
    "ccs": Actor("ccs", "C", "ccs", "CCS", "ccs", None, None, None),
    "spf": Actor("spf", "S", "spf", "SPF", "spf", None, None, None),
    "auditor": Actor("aud", "Au", "auditor", "IGAS", "auditor", None, None, None),
}
OUTSIDER = Actor("ars-idf", "A", "ars", "ARS-IDF", "ars", "IDF", "PARIS", None)
CASES = [
    (spec.kind, state.name, t.trigger, role)
    for spec in REGISTRY
    for state in spec.states
    for t in spec.allowed(state.name)
    for role in ACTORS
]


def case_in(kind: str, state: str, version: int = 3, **kw: Any) -> CaseView:
    spec = REGISTRY[kind]
    values: dict[str, Any] = {
        "id": 7, "reference": f"{spec.prefix}-000007", "kind": kind, "state": state,
        "level": spec.state(state).level, "final": spec.state(state).final, "version": version,
        "org": HERE["org"], "region": "OCC", "zone": "SUD", "department": "31",
        "ght": HERE["ght"], "fields": {}, "opened_by": "etab", "opened_at": NOW,
        "updated_at": NOW, "audit_seq": 2, "audit_hash": "ab" * 32,
    }  # fmt: skip
    values.update(kw)
    return CaseView(**values)


def expected_allowed(kind: str, state: str, trigger: str, role: str) -> bool:
    """The doctrine from the tables: the role is listed and holds the level (or any_level);
    a trigger of the lender's is nobody's here (the lender is no actor of this table: see
    tests/test_doctrine_ecmo.py)."""
    spec = REGISTRY[kind]
    t = spec.transition(state, trigger)
    assert t is not None
    if t.lender or t.receiver:
        return False
    return role in t.roles and (t.any_level or spec.state(state).level == role)


def loan_fields(kind: str, state: str) -> dict[str, Any]:
    """A case past its resolve carries the loan it was resolved with (its lender)."""
    after = {"dispatched", "in_service", "returned", "delivered", "transferred"}
    after |= {"proposed_ars", "proposed_zone", "proposed_national"}
    fields = TRIGGER_FIELDS.get((kind, "resolve"))
    return {"resolve": dict(fields)} if fields and state in after else {}


@pytest.mark.parametrize(("kind", "state", "trigger", "role"), CASES)
def test_every_trigger_by_every_role_in_every_state(
    kind: str, state: str, trigger: str, role: str
) -> None:
    """A trigger is allowed exactly when the table says so; else a typed refusal, recorded, nothing changed."""
    decider = Decider(REGISTRY, geography=GEOGRAPHY)
    case = case_in(kind, state, fields=loan_fields(kind, state))
    command = Command(trigger, "parce que", TRIGGER_FIELDS.get((kind, trigger), {}))
    outcome = decider.fire(case, ACTORS[role], command, NOW)
    spec = REGISTRY[kind]
    if expected_allowed(kind, state, trigger, role):
        assert outcome.refusal is None
        target = spec.fire(state, trigger)
        assert outcome.case is not None
        assert (outcome.case.state, outcome.case.version) == (target, case.version + 1)
        (event,) = outcome.events
        assert (event.action, event.from_state, event.to_state) == (
            Action.TRANSITION,
            state,
            target,
        )
        assert outcome.deadline.close == DeadlineStatus.SUPERSEDED
        plan = outcome.deadline.open
        if spec.state(target).deadline is not None:
            assert plan is not None
            assert plan.due_at == NOW + spec.state(target).deadline
        assert outcome.values["state"] == target
    else:
        assert isinstance(outcome.refusal, NotPermitted)
        assert outcome.refusal.why in {
            "wrong_level",
            "role_may_not_fire",
            "not_the_lender",
            "not_the_receiver",
        }
        assert outcome.case == case  # unchanged
        assert [e.action for e in outcome.events] == [Action.REFUSED]
        assert outcome.values == {}
        assert outcome.deadline.open is None
        assert outcome.deadline.close is None


@pytest.mark.parametrize(("kind", "state", "trigger", "role"), CASES[:: max(len(CASES) // 60, 1)])
def test_outside_scope_is_no_case_and_keeps_the_text_out_of_the_chain(
    kind: str, state: str, trigger: str, role: str
) -> None:
    """Outside scope: 'no case', the refusal in the chain without the outsider's text, the text in the security stream."""
    outcome = Decider(REGISTRY).fire(
        case_in(kind, state), OUTSIDER, Command(trigger, "x" * 5000, {}), NOW, as_written="7"
    )
    assert isinstance(outcome.refusal, NotFound)
    assert outcome.refusal.why == "no_case"
    assert outcome.refusal.data == {"case": "7"}
    (event,) = outcome.events
    assert (event.action, event.reason) == (Action.REFUSED, "")
    (kept,) = outcome.security
    assert len(kept.reason) == 200


def test_malformed_commands_raise_before_any_outcome() -> None:
    """Unknown trigger, empty reason, stale version, impossible trigger: typed errors, no outcome."""
    decider, case = Decider(REGISTRY), case_in("ecmo", "umac_review")
    umac = ACTORS["umac"]
    with pytest.raises(NotFound) as unknown:
        decider.fire(case, umac, Command("fly", "r", {}), NOW)
    assert unknown.value.why == "unknown_trigger"
    with pytest.raises(InputError) as empty:
        decider.fire(case, umac, Command("escalate", "  ", {}), NOW)
    assert empty.value.why == "reason_required"
    with pytest.raises(StaleVersion):
        decider.fire(case, umac, Command("escalate", "r", {}, expect_version=1), NOW)
    with pytest.raises(TriggerNotAllowed) as impossible:
        decider.fire(case, umac, Command("start", "r", {}), NOW)
    assert impossible.value.why == "trigger_not_allowed"
    with pytest.raises(InputError):
        check_reason("\x00")


def test_open_decides_row_event_and_first_deadline() -> None:
    """Opening: the row to insert, an 'opened' event, the first level's deadline; a refusal for an outsider."""
    decider = Decider(REGISTRY, rules=Rules(hospital_confirms=True))
    place = Place(HERE["org"], "OCC", "SUD", HERE["ght"], "31")
    fields = {**DEFAULT_FIELDS["ecmo"], "patient_ref": "PAT-1"}
    outcome = decider.open(ACTORS["establishment"], "ecmo", place, fields, NOW)
    assert outcome.opened is not None
    assert outcome.opened["state"] == REGISTRY["ecmo"].initial
    assert [e.action for e in outcome.events] == [Action.OPENED]
    assert outcome.deadline.open is not None
    refused = decider.open(OUTSIDER, "ecmo", place, fields, NOW)
    assert isinstance(refused.refusal, NotPermitted)
    assert refused.opened is None
    assert [e.action for e in refused.security] == [Action.REFUSED]


@pytest.mark.parametrize("kind", REGISTRY.kinds())
def test_open_goes_straight_to_the_first_regulating_level(kind: str) -> None:
    """By default the opening's outcome carries the system's step to the first regulating level."""
    spec = REGISTRY[kind]
    decider = Decider(REGISTRY, geography=GEOGRAPHY)
    place = Place(HERE["org"], "OCC", "SUD", HERE["ght"], "31")
    outcome = decider.open(ACTORS["establishment"], kind, place, DEFAULT_FIELDS[kind], NOW)
    first = spec.fire(spec.initial, str(spec.state(spec.initial).on_deadline))
    assert outcome.opened is not None
    assert (outcome.opened["state"], outcome.opened["level"]) == (first, spec.state(first).level)
    assert outcome.opened["version"] == 1
    opened, step = outcome.events
    assert (opened.action, opened.to_state, opened.version) == (Action.OPENED, spec.initial, 1)
    assert (step.action, step.actor, step.from_state, step.to_state, step.version) == (
        Action.TRANSITION, SYSTEM.login, spec.initial, first, 1,
    )  # fmt: skip
    assert step.data["trigger"] == spec.state(spec.initial).on_deadline
    assert step.data["auto"] == "open"
    assert outcome.deadline.open is not None
    assert outcome.deadline.open.state == first
    assert outcome.deadline.open.due_at == NOW + spec.state(first).deadline
    assert outcome.sweep is None
    # a notice book that declares the step gets it, the opening's own too
    books = Decider(REGISTRY, declares=lambda k, e: e in {"opened", "escalate"})
    assert books.open(ACTORS["establishment"], kind, place, DEFAULT_FIELDS[kind], NOW).notices == (
        0,
        1,
    )


def row_for(case: CaseView, due: datetime, action: str = "escalate", **kw: Any) -> DeadlineRow:
    values = {
        "id": 11, "state": case.state, "version": case.version, "due_at": due, "next_at": due,
        "reminders": 0, "action": action, "created_at": due - timedelta(hours=2),
    }  # fmt: skip
    values.update(kw)
    return DeadlineRow(**values)


def test_swept_deadline_outcomes() -> None:
    """Before due: a reminder that moves the row; past due: an escalation as system; moved on: a no-op."""
    decider, case = Decider(REGISTRY), case_in("ecmo", "umac_review")
    due = NOW + timedelta(hours=1)
    remind = decider.swept(case, row_for(case, due), NOW)
    assert remind.sweep == SweepOutcome.REMINDER
    assert remind.deadline.touch is not None
    assert remind.deadline.touch[0] == 11
    assert remind.deadline.touch[2] == due - timedelta(hours=2) + timedelta(hours=2) * 0.8
    late = decider.swept(case, row_for(case, NOW - timedelta(minutes=5)), NOW)
    assert late.sweep == SweepOutcome.ESCALATED
    assert late.deadline.close == DeadlineStatus.FIRED
    assert late.events[0].actor == SYSTEM.login
    assert late.events[0].data["late_s"] == 300.0
    moved = decider.swept(case, row_for(case, NOW, version=1), NOW)
    assert moved.sweep == SweepOutcome.NOOP
    assert [e.action for e in moved.events] == [Action.DEADLINE_NOOP]
    top = case_in("ecmo", "national_regulation")
    incident = decider.swept(top, row_for(top, NOW, action="incident"), NOW)
    assert incident.sweep == SweepOutcome.INCIDENT
    assert incident.case is not None
    assert incident.case.incident
    assert incident.deadline.open is not None
    assert incident.deadline.open.action == "remind"


def test_controls_decide_the_deadline_plan() -> None:
    """Hold closes the row as held; resume restarts it in full; extend pushes the due time."""
    decider, case = Decider(REGISTRY), case_in("ecmo", "umac_review")
    umac = ACTORS["umac"]
    held = decider.control(case, umac, Control.HOLD, "attente", NOW)
    assert held.deadline.close == DeadlineStatus.HELD
    assert held.case is not None
    assert held.case.on_hold
    due = NOW + timedelta(hours=1)
    row = row_for(case, due)
    extended = decider.control(
        case, umac, Control.EXTEND, "r", NOW, extend_by=timedelta(minutes=30), deadline=row
    )
    assert extended.deadline.open is not None
    assert extended.deadline.open.due_at == due + timedelta(minutes=30)
    refused = decider.control(case, ACTORS["ars"], Control.HOLD, "r", NOW)
    assert isinstance(refused.refusal, NotPermitted)
    assert refused.refusal.why == "wrong_level"


def test_every_vocabulary_value_has_a_french_label() -> None:
    """Actions, roles, scopes, controls, sweep outcomes and every choice of every workflow have a label."""
    for enum, labels in (
        (Action, ACTIONS), (Role, ROLES), (ScopeKind, SCOPES), (Control, CONTROLS),
        (SweepOutcome, OUTCOMES),
    ):  # fmt: skip
        assert set(enum) <= set(labels), enum
    for spec in REGISTRY:
        for f in (*spec.open_fields, *(f for t in spec.transitions for f in t.fields)):
            for choice in f.choices:
                assert choice in VALUES.get(f.name, {}), (spec.kind, f.name, choice)


def test_the_values_and_decisions_import_no_database_library() -> None:
    """engine.values, engine.decisions and engine.errors load without SQLAlchemy or SQLModel."""
    code = (
        "import sys, engine.decisions, engine.values, engine.errors; "
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'psycopg') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
