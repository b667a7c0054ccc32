"""The engine on both databases: every (state, trigger), refusals, conflicts, idempotency."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import audit
from engine.errors import (
    Conflict,
    InputError,
    NotFound,
    NotPermitted,
    StaleVersion,
    TriggerNotAllowed,
)
from tests.conftest import (
    ACTORS_OCC,
    OUTSIDERS,
    START,
    TOULOUSE,
    TRIGGER_FIELDS,
    Ctx,
    actor_for,
    drive,
    path_to,
)
from workflows import default_registry

REGISTRY = default_registry()
TRANSITIONS = [
    pytest.param(spec.kind, t.source, t.trigger, id=f"{spec.kind}-{t.source}-{t.trigger}")
    for spec in REGISTRY
    for t in spec.transitions
]
FORBIDDEN = [
    pytest.param(spec.kind, s.name, trigger, id=f"{spec.kind}-{s.name}-{trigger}")
    for spec in REGISTRY
    for s in spec.states
    for trigger in spec.triggers
    if spec.transition(s.name, trigger) is None
]


def test_open_case_writes_case_event_and_deadline(ctx: Ctx) -> None:
    """Opening a case stores it at the initial state, version 1, with its audit event and deadline."""
    case = ctx.open("ecmo")
    assert (case.state, case.version, case.level) == ("requested", 1, "establishment")
    assert case.reference == f"ECMO-{case.id:06d}"
    assert (case.region, case.zone, case.ght) == ("OCC", "SUD", "GHT-OCC-06")
    assert case.deadline is not None
    assert case.deadline.due_at == START + REGISTRY["ecmo"].state("requested").deadline  # type: ignore[operator]
    assert ctx.count("audit_event", f"case_id = {case.id}") == 1
    assert ctx.count("deadline", f"case_id = {case.id} AND status = 'open'") == 1


@pytest.mark.parametrize(("kind", "source", "trigger"), TRANSITIONS)
def test_every_transition(ctx: Ctx, kind: str, source: str, trigger: str) -> None:
    """Each declared (state, trigger) moves the case, bumps its version, audits and replaces the deadline."""
    spec = REGISTRY[kind]
    case = drive(ctx, ctx.open(kind), path_to(spec, source))
    assert case.state == source
    ctx.clock.advance(spec.state(source).deadline or START - START)
    after = ctx.runner.advance(
        reference=case.reference,
        trigger=trigger,
        login=actor_for(spec, source, trigger),
        reason="décision de test",
        data=TRIGGER_FIELDS.get((kind, trigger), {}),
    )
    transition = spec.transition(source, trigger)
    assert transition is not None
    assert (after.state, after.version) == (transition.dest, case.version + 1)
    assert after.level == spec.state(transition.dest).level
    with ctx.db.read() as conn:
        last = list(audit.iter_events(conn, case_id=case.id))[-1]
        assert (last.action, last.from_state, last.to_state) == (
            "transition",
            source,
            transition.dest,
        )
        assert last.data["trigger"] == trigger
        assert audit.verify(conn, case_id=case.id).ok
        assert audit.replay(conn, ctx.registry, case.id).matches
    open_rows = ctx.count("deadline", f"case_id = {case.id} AND status = 'open'")
    dest = spec.state(transition.dest)
    assert open_rows == (1 if dest.deadline or dest.due_field else 0)
    if dest.deadline:
        assert after.deadline is not None
        assert after.deadline.due_at == ctx.clock.now() + dest.deadline
        assert after.deadline.action == dest.on_deadline


@pytest.mark.parametrize(("kind", "state", "trigger"), FORBIDDEN)
def test_trigger_not_allowed_in_state_changes_nothing(
    ctx: Ctx, kind: str, state: str, trigger: str
) -> None:
    """A trigger the state does not allow is a conflict naming the possible ones, and writes nothing."""
    spec = REGISTRY[kind]
    case = drive(ctx, ctx.open(kind), path_to(spec, state))
    before = ctx.snapshot()
    with pytest.raises(TriggerNotAllowed, match=f"{trigger} is not possible there"):
        ctx.runner.advance(reference=case.reference, trigger=trigger, login="ccs", reason="essai")
    assert ctx.snapshot() == before


@pytest.mark.parametrize("role", ["ars", "umac", "ars_zone", "ght", "establishment"])
def test_out_of_scope_refusal_is_audited_and_changes_nothing_else(ctx: Ctx, role: str) -> None:
    """Another region/zone/GHT's user gets 'no case' (as if missing); only the refusal is recorded, its text kept out of the case's chain."""
    for spec in REGISTRY:
        for t in spec.transitions:
            level = spec.state(t.source).level
            if role in t.roles and (level == role or t.any_level):
                case = drive(ctx, ctx.open(spec.kind), path_to(spec, t.source))
                before = ctx.snapshot()
                with pytest.raises(NotFound, match=f"no case {case.reference}"):
                    ctx.runner.advance(
                        reference=case.reference,
                        trigger=t.trigger,
                        login=OUTSIDERS[role],
                        reason="hors périmètre",
                        data=TRIGGER_FIELDS.get((spec.kind, t.trigger), {}),
                    )
                after = ctx.snapshot()
                assert after["deadline"] == before["deadline"]
                assert after["idempotency"] == before["idempotency"]
                # one event in the case's chain (without the outsider's text), one in the
                # security stream (with it, bounded)
                assert len(after["audit_event"]) == len(before["audit_event"]) + 2
                with ctx.db.read() as conn:
                    event = list(audit.iter_events(conn, case_id=case.id))[-1]
                    assert (event.action, event.actor) == ("refused", OUTSIDERS[role])
                    assert "outside" in event.data["why"]
                    assert event.reason == ""
                    security = list(audit.iter_events(conn))[-1]
                    assert (security.case_id, security.reason) == (None, "hors périmètre")
                    assert security.data["case"] == case.reference
                    assert audit.verify(conn).ok
                shown = ctx.runner.show(case.reference)
                assert (shown.state, shown.version) == (case.state, case.version)
                return
    pytest.fail(f"no transition for role {role}")


def test_wrong_role_and_wrong_level_are_refused(ctx: Ctx) -> None:
    """The ARS cannot act while the UMAC holds an ECMO case; an auditor and admin act on nothing."""
    case = drive(ctx, ctx.open("ecmo"), ["escalate"])
    for login, why in (
        ("ars-occ", "umac may"),
        ("auditeur", "role auditor"),
        ("admin", "role admin"),
    ):
        with pytest.raises(NotPermitted, match=why):
            ctx.runner.advance(
                reference=case.reference, trigger="escalate", login=login, reason="essai"
            )
    assert ctx.runner.show(case.reference).version == case.version
    assert ctx.count("audit_event", "action = 'refused'") == 3


def test_requester_may_cancel_at_any_level(ctx: Ctx) -> None:
    """The hospital's cancel is declared any_level: it works while the ARS holds the case."""
    case = drive(ctx, ctx.open("transfer"), ["escalate"])
    assert case.level == "ars"
    done = ctx.runner.advance(
        reference=case.reference,
        trigger="cancel",
        login=ACTORS_OCC["establishment"],
        reason="stabilisé",
    )
    assert done.state == "cancelled"
    assert done.final
    assert done.deadline is None


def test_stale_version_is_a_conflict_and_changes_nothing(ctx: Ctx) -> None:
    """A regulator acting on an old view gets a clear conflict; no second transition happens."""
    case = drive(ctx, ctx.open("ecmo"), ["escalate"])
    before = ctx.snapshot()
    with pytest.raises(StaleVersion, match="is at version 2, not 1") as info:
        ctx.runner.advance(
            reference=case.reference,
            trigger="escalate",
            login="umac-sud",
            reason="x",
            expect_version=1,
        )
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert ctx.snapshot() == before


def test_idempotency_key_returns_first_answer_and_fires_once(ctx: Ctx) -> None:
    """A retried command with the same key gets the first result back; the case moved once."""
    case = ctx.open("ppe")
    kwargs = {
        "reference": case.reference,
        "trigger": "escalate",
        "login": ACTORS_OCC["establishment"],
        "reason": "rupture",
    }
    first = ctx.runner.advance(**kwargs, idempotency_key="k-1")  # type: ignore[arg-type]
    second = ctx.runner.advance(**kwargs, idempotency_key="k-1")  # type: ignore[arg-type]
    assert first == second
    assert ctx.runner.show(case.reference).version == 2
    assert ctx.count("audit_event", f"case_id = {case.id}") == 2
    with pytest.raises(Conflict, match="already used for another command"):
        ctx.runner.advance(**{**kwargs, "reason": "autre"}, idempotency_key="k-1")  # type: ignore[arg-type]


def test_idempotent_open_creates_one_case(ctx: Ctx) -> None:
    """Opening twice with one key returns the same case and creates one row."""
    fields = {"patient_ref": "PAT-7", "mode": "VA"}
    a = ctx.runner.open_case(
        kind="ecmo", login="etab-319900001", org=TOULOUSE, fields=fields, idempotency_key="o-1"
    )
    b = ctx.runner.open_case(
        kind="ecmo", login="etab-319900001", org=TOULOUSE, fields=fields, idempotency_key="o-1"
    )
    assert a.id == b.id
    assert ctx.count("regul_case") == 1


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda r, c: r.advance(
                reference="ECMO-999999", trigger="escalate", login="ccs", reason="x"
            ),
            NotFound,
            "no case ECMO-999999",
        ),
        (
            lambda r, c: r.advance(reference="XYZ-1", trigger="escalate", login="ccs", reason="x"),
            InputError,
            "unknown prefix",
        ),
        (
            lambda r, c: r.advance(
                reference=c.reference, trigger="explode", login="ccs", reason="x"
            ),
            NotFound,
            "unknown trigger 'explode'",
        ),
        (
            lambda r, c: r.advance(
                reference=c.reference, trigger="escalate", login="nobody", reason="x"
            ),
            NotFound,
            "unknown user 'nobody'",
        ),
        (
            lambda r, c: r.advance(
                reference=c.reference, trigger="escalate", login="etab-319900001", reason="  "
            ),
            InputError,
            "a reason is required",
        ),
        (
            lambda r, c: r.open_case(
                kind="ecmo", login="etab-319900001", org="000000000", fields={}
            ),
            NotFound,
            "unknown organisation",
        ),
        (
            lambda r, c: r.open_case(kind="ecmo", login="etab-319900001", org="ARS-OCC", fields={}),
            InputError,
            "not a hospital",
        ),
        (
            lambda r, c: r.open_case(kind="lunch", login="etab-319900001", org=TOULOUSE, fields={}),
            NotFound,
            "unknown workflow 'lunch'",
        ),
        (
            lambda r, c: r.open_case(
                kind="ecmo",
                login="etab-319900001",
                org=TOULOUSE,
                fields={"patient_ref": "PAT-1", "mode": "VV", "name": "Dupont"},
            ),
            InputError,
            "unknown field",
        ),
        (
            lambda r, c: r.open_case(
                kind="ecmo",
                login="etab-319900001",
                org=TOULOUSE,
                fields={"patient_ref": "Jean Dupont", "mode": "VV"},
            ),
            InputError,
            "never the patient's name",
        ),
        (
            lambda r, c: r.open_case(
                kind="ppe",
                login="etab-319900001",
                org=TOULOUSE,
                fields={
                    "lines": [
                        {
                            "item": "gloves",
                            "quantity": "-4",
                            "stock_on_hand": 0,
                            "weekly_consumption": 10,
                        }
                    ],
                    "delivery_address": "quai",
                },
            ),
            InputError,
            "greater than zero",
        ),
        (
            lambda r, c: r.open_case(
                kind="ppe",
                login="etab-319900001",
                org=TOULOUSE,
                fields={
                    "lines": [
                        {
                            "item": "gloves",
                            "quantity": "lots",
                            "stock_on_hand": 0,
                            "weekly_consumption": 10,
                        }
                    ],
                    "delivery_address": "quai",
                },
            ),
            InputError,
            "not a whole number",
        ),
        (
            lambda r, c: r.open_case(
                kind="ppe", login="etab-319900001", org=TOULOUSE, fields={"item": "gloves"}
            ),
            InputError,
            "unknown field.s. item",
        ),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(ctx: Ctx, call, error, message) -> None:  # type: ignore[no-untyped-def]
    """Unknown case, prefix, trigger, user, organisation, kind or field, and malformed values write nothing."""
    case = ctx.open("ecmo")
    before = ctx.snapshot()
    with pytest.raises(error, match=message):
        call(ctx.runner, case)
    after = ctx.snapshot()
    if message.startswith("no case"):  # a probe of a missing case: one security record
        probe_only(before, after)
    assert after == before


def probe_only(before: dict[str, Any], after: dict[str, Any]) -> None:
    """``after`` adds one 'probe' event to the security stream; drop it (and its head)."""
    added = after["audit_event"][len(before["audit_event"]) :]
    assert [(e["action"], e["case_id"]) for e in added] == [("probe", None)]
    after["audit_event"] = after["audit_event"][: len(before["audit_event"])]
    after["audit_head"] = before["audit_head"]


def test_malformed_trigger_field_changes_nothing(ctx: Ctx) -> None:
    """A resolve with a bad date names the field and leaves the case as it was."""
    case = drive(ctx, ctx.open("ppe"), ["escalate"])
    before = ctx.snapshot()
    with pytest.raises(InputError, match=r"'expected_delivery'.*YYYY-MM-DD"):
        ctx.runner.advance(
            reference=case.reference,
            trigger="resolve",
            login="ght-occ-06",
            reason="stock GHT",
            data={"quantity": 10, "source": "ght", "expected_delivery": "demain"},
        )
    assert ctx.snapshot() == before


def test_open_refused_for_wrong_role_is_audited_in_security_stream(ctx: Ctx) -> None:
    """An ARS cannot open a case; the refusal lands in the security stream and the chain verifies."""
    with pytest.raises(NotPermitted, match="may not open"):
        ctx.runner.open_case(
            kind="ecmo",
            login="ars-occ",
            org=TOULOUSE,
            fields={"patient_ref": "PAT-1", "mode": "VV"},
        )
    assert ctx.count("regul_case") == 0
    assert ctx.count("audit_event", "case_id IS NULL AND action = 'refused'") == 1
    with ctx.db.read() as conn:
        assert audit.verify(conn).ok


def test_reading_follows_scope(ctx: Ctx) -> None:
    """Out of scope, a case is as invisible as a missing one; lists are filtered by scope."""
    case = ctx.open("ecmo")
    assert ctx.runner.show(case.reference, login="ars-occ").id == case.id
    with pytest.raises(NotFound):
        ctx.runner.show(case.reference, login="ars-idf")
    from engine.cases import CaseFilter

    assert [c.id for c in ctx.runner.search(CaseFilter(), login="umac-sud")] == [case.id]
    assert ctx.runner.search(CaseFilter(), login="umac-paris") == []
    assert [c.id for c in ctx.runner.search(CaseFilter(), login="auditeur-occ")] == [case.id]


def test_list_filters_and_overdue(ctx: Ctx) -> None:
    """Lists filter by kind, state, level, region and overdue (deadline passed at the clock's now)."""
    from engine.cases import CaseFilter

    ecmo, ppe = ctx.open("ecmo"), ctx.open("ppe")
    drive(ctx, ppe, ["escalate"])
    assert [c.id for c in ctx.runner.search(CaseFilter(kind="ecmo"))] == [ecmo.id]
    assert [c.id for c in ctx.runner.search(CaseFilter(level="ght"))] == [ppe.id]
    assert ctx.runner.search(CaseFilter(region="IDF")) == []
    ctx.clock.advance(REGISTRY["ecmo"].state("requested").deadline)  # type: ignore[arg-type]
    overdue = ctx.runner.search(CaseFilter(overdue_at=ctx.clock.now()))
    assert [c.id for c in overdue] == [ecmo.id]
    with pytest.raises(NotFound, match="no state 'nowhere'"):
        ctx.runner.search(CaseFilter(kind="ecmo", state="nowhere"))


def test_nobody_can_borrow_the_sweepers_identity(ctx: Ctx) -> None:
    """A command sent as 'system' is refused before anything is read or written: no early escalation."""
    case = ctx.open("ecmo")
    before = ctx.snapshot()
    with pytest.raises(NotPermitted, match="deadline sweeper's identity"):
        ctx.runner.advance(reference=case.reference, trigger="escalate", login="system", reason="x")
    with pytest.raises(NotPermitted, match="deadline sweeper's identity"):
        ctx.runner.control(
            reference=case.reference,
            action="extend",
            login="system",
            reason="x",
            extend_by=timedelta(hours=1),
        )
    assert ctx.snapshot() == before
