"""Durable deadlines on both databases: escalation on time, reminders, incidents, holds, catch-up."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from engine import audit
from engine.cases import CaseFilter, CaseView
from engine.errors import Conflict, InputError, NotFound, NotPermitted
from engine.sweeper import SweepReport, sweep
from tests.conftest import ACTORS_OCC, START, TRIGGER_FIELDS, Ctx, drive, path_to
from workflows import default_registry

REGISTRY = default_registry()
ESCALATIONS = [
    pytest.param(spec.kind, s.name, id=f"{spec.kind}-{s.name}")
    for spec in REGISTRY
    for s in spec.states
    if s.waiting and s.on_deadline != "incident"
]
TOPS = [
    pytest.param(spec.kind, s.name, id=f"{spec.kind}-{s.name}")
    for spec in REGISTRY
    for s in spec.states
    if s.on_deadline == "incident" and s.waiting  # the tops of the ladders
]


def sweep_at(ctx: Ctx, instant: datetime) -> SweepReport:
    ctx.clock.set(instant)
    return sweep(ctx.runner, batch_size=7)


def events(ctx: Ctx, case: CaseView, action: str | None = None) -> list[sa.Row[tuple[object, ...]]]:
    with ctx.db.read() as conn:
        rows = list(audit.iter_events(conn, case_id=case.id))
    return [r for r in rows if action is None or r.action == action]


def reach(ctx: Ctx, kind: str, state: str) -> CaseView:
    case = drive(ctx, ctx.open(kind), path_to(REGISTRY[kind], state))
    assert case.state == state
    assert case.deadline is not None
    return case


def assert_invariants(ctx: Ctx) -> None:
    with ctx.db.read() as conn:
        assert audit.verify(conn).ok
        for (case_id,) in conn.execute(sa.text("SELECT id FROM regul_case")):
            assert audit.replay(conn, ctx.registry, case_id).matches
            opened = conn.execute(
                sa.text("SELECT count(*) FROM deadline WHERE case_id = :c AND status = 'open'"),
                {"c": case_id},
            ).scalar_one()
            assert opened <= 1


@pytest.mark.parametrize(("kind", "state"), ESCALATIONS)
def test_waiting_state_escalates_exactly_at_due_time(ctx: Ctx, kind: str, state: str) -> None:
    """Not one second before the due time; at it, the system escalates to the next level, once."""
    spec = REGISTRY[kind]
    case = reach(ctx, kind, state)
    due = case.deadline.due_at  # type: ignore[union-attr]
    early = sweep_at(ctx, due - timedelta(seconds=1))
    assert all(f.outcome == "reminder" for f in early.fired)
    assert ctx.runner.show(case.reference).state == state
    report = sweep_at(ctx, due)
    assert [(f.outcome, f.case) for f in report.fired] == [("escalated", case.reference)]
    after = ctx.runner.show(case.reference)
    expected = spec.transition(state, "escalate")
    assert expected is not None
    assert (after.state, after.version) == (expected.dest, case.version + 1)
    last = events(ctx, case)[-1]
    assert (last.actor, last.role, last.action, last.data["trigger"]) == (
        "system",
        "system",
        "transition",
        "escalate",
    )
    assert last.data["late_s"] == 0
    assert "Délai dépassé" in last.reason
    assert not sweep_at(ctx, due).fired  # never twice
    assert_invariants(ctx)


def test_reminders_at_half_and_eighty_percent(ctx: Ctx) -> None:
    """Reminders are recorded for the level holding the case at 50% and 80% of its deadline."""
    case = reach(ctx, "ppe", "ght_review")  # 24 h
    start = ctx.clock.now()
    assert not sweep_at(ctx, start + timedelta(hours=12) - timedelta(seconds=1)).fired
    assert [f.outcome for f in sweep_at(ctx, start + timedelta(hours=12)).fired] == ["reminder"]
    assert not sweep_at(ctx, start + timedelta(hours=19)).fired
    assert [f.outcome for f in sweep_at(ctx, start + timedelta(hours=19, minutes=12)).fired] == [
        "reminder"
    ]
    reminders = events(ctx, case, "reminder")
    assert [(r.data["fraction"], r.data["for"]) for r in reminders] == [(0.5, "ght"), (0.8, "ght")]
    assert ctx.runner.show(case.reference).version == case.version  # reminders change no version
    assert [f.outcome for f in sweep_at(ctx, start + timedelta(hours=24)).fired] == ["escalated"]
    assert_invariants(ctx)


def test_catch_up_after_downtime_fires_each_due_deadline_once(ctx: Ctx) -> None:
    """After a long stop one sweep fires everything that fell due, each once, and records lateness."""
    cases = []
    for _ in range(5):
        cases.append(ctx.open("transfer"))
        ctx.clock.advance(timedelta(minutes=3))
    report = sweep_at(ctx, START + timedelta(hours=1, minutes=30))
    assert sorted(f.case for f in report.fired if f.outcome == "escalated") == sorted(
        c.reference for c in cases
    )
    assert all(f.late_s > 0 for f in report.fired)
    assert {ctx.runner.show(c.reference).state for c in cases} == {"ars_regulation"}
    assert report.batches >= 1
    assert not sweep_at(ctx, START + timedelta(hours=1, minutes=30)).fired
    assert_invariants(ctx)


def test_clock_jumping_back_fires_nothing_early(ctx: Ctx) -> None:
    """A sweep at an earlier instant than the last one fires nothing that is not due then."""
    case = ctx.open("ecmo")
    sweep_at(ctx, START + timedelta(minutes=50))  # the 80% reminder
    assert not sweep_at(ctx, START + timedelta(minutes=10)).fired
    assert ctx.runner.show(case.reference).state == "requested"
    assert [f.outcome for f in sweep_at(ctx, START + timedelta(hours=5)).fired] == ["escalated"]


@pytest.mark.parametrize(("kind", "state"), TOPS)
def test_top_of_ladder_raises_incident_and_reminds_until_someone_acts(
    ctx: Ctx, kind: str, state: str
) -> None:
    """Past the national deadline an incident is flagged, listed, repeated each period, and cleared by action."""
    case = reach(ctx, kind, state)
    due = case.deadline.due_at  # type: ignore[union-attr]
    report = sweep_at(ctx, due)
    assert [f.outcome for f in report.fired] == ["incident"]
    flagged = ctx.runner.show(case.reference)
    assert flagged.incident
    assert (flagged.state, flagged.version) == (state, case.version)
    assert [c.id for c in ctx.runner.search(CaseFilter(incidents=True))] == [case.id]
    assert events(ctx, case, "incident")[0].data["for"] == "ccs"
    assert not sweep_at(ctx, due + timedelta(minutes=59)).fired
    assert [f.outcome for f in sweep_at(ctx, due + timedelta(hours=1)).fired] == ["repeat"]
    assert [f.outcome for f in sweep_at(ctx, due + timedelta(hours=2)).fired] == ["repeat"]
    resolved = ctx.runner.advance(
        reference=case.reference, trigger="resolve", login=str(flagged.level),  # ccs, spf (PPE)
        reason="stock national", data=TRIGGER_FIELDS.get((kind, "resolve"), {}),
    )  # fmt: skip
    assert not resolved.incident
    assert ctx.runner.search(CaseFilter(incidents=True)) == []
    assert all(f.outcome != "repeat" for f in sweep_at(ctx, due + timedelta(hours=3)).fired)
    assert_invariants(ctx)


def test_ecmo_loan_and_ppe_delivery_overdue_get_reminders(ctx: Ctx) -> None:
    """A lent console past its return date and a shipment past its delivery date are flagged and reminded."""
    ecmo = drive(ctx, ctx.open("ecmo"), ["escalate", "escalate", "escalate", "resolve", "start"])
    ppe = drive(ctx, ctx.open("ppe"), ["escalate", "escalate", "escalate", "resolve"])
    assert ecmo.deadline is not None
    assert ppe.deadline is not None
    assert (ecmo.deadline.action, ppe.deadline.action) == ("overdue", "overdue")
    # return_by 2026-12-15 and expected_delivery 2026-11-24: due at the end of that day, Paris time
    assert ppe.deadline.due_at == datetime.fromisoformat("2026-11-24T23:00:00+00:00")
    report = sweep_at(ctx, ppe.deadline.due_at)
    assert ("overdue", ppe.reference) in [(f.outcome, f.case) for f in report.fired]
    report = sweep_at(ctx, ecmo.deadline.due_at)
    assert ("overdue", ecmo.reference) in [(f.outcome, f.case) for f in report.fired]
    later = sweep_at(ctx, ecmo.deadline.due_at + timedelta(days=1))
    assert ("repeat", ecmo.reference) in [(f.outcome, f.case) for f in later.fired]
    assert not ctx.runner.show(ecmo.reference).incident
    assert_invariants(ctx)


def test_stale_deadline_is_a_recorded_noop(ctx: Ctx) -> None:
    """A deadline row whose case has moved on is closed as a no-op, recorded, and fires nothing."""
    case = ctx.open("ecmo")
    with ctx.db.engine.begin() as conn:  # as if written for an older version of the case
        conn.execute(sa.text("UPDATE deadline SET version = version - 1 WHERE status = 'open'"))
    report = sweep_at(ctx, START + timedelta(hours=1))
    assert [f.outcome for f in report.fired] == ["noop"]
    assert ctx.runner.show(case.reference).state == "requested"
    assert ctx.count("deadline", "status = 'noop'") == 1
    assert len(events(ctx, case, "deadline_noop")) == 1
    assert_invariants(ctx)


def test_hold_suspends_and_resume_restarts_the_deadline(ctx: Ctx) -> None:
    """A case on hold is not escalated; resuming gives its level the full deadline again; both audited."""
    case = reach(ctx, "transfer", "ars_regulation")  # 2 h
    held = ctx.runner.control(
        reference=case.reference, action="hold", login="ars-occ", reason="attente du bilan"
    )
    assert held.on_hold
    assert held.version == case.version + 1
    assert held.deadline is not None  # the hold's own end: it resumes by itself after 24 h
    assert (held.deadline.action, held.deadline.due_at) == ("resume", START + timedelta(hours=24))
    assert not sweep_at(ctx, START + timedelta(hours=5)).fired
    resumed = ctx.runner.control(
        reference=case.reference, action="resume", login="ars-occ", reason="bilan reçu"
    )
    assert not resumed.on_hold
    assert resumed.deadline is not None
    assert resumed.deadline.due_at == START + timedelta(hours=7)
    assert [e.action for e in events(ctx, case)][-2:] == ["hold", "resume"]
    assert [f.outcome for f in sweep_at(ctx, START + timedelta(hours=7)).fired] == ["escalated"]
    assert_invariants(ctx)


def test_extend_moves_the_due_time_and_is_audited(ctx: Ctx) -> None:
    """An extension pushes the due time by its amount, with the reason and both times recorded."""
    case = reach(ctx, "ecmo", "umac_review")  # 2 h
    due = case.deadline.due_at  # type: ignore[union-attr]
    extended = ctx.runner.control(
        reference=case.reference, action="extend", login="umac-sud", reason="console en route",
        extend_by=timedelta(minutes=30),
    )  # fmt: skip
    assert extended.deadline is not None
    assert extended.deadline.due_at == due + timedelta(minutes=30)
    event = events(ctx, case, "extend")[0]
    assert (event.reason, event.data["by_s"]) == ("console en route", 1800)
    assert all(f.outcome != "escalated" for f in sweep_at(ctx, due).fired)
    assert [f.outcome for f in sweep_at(ctx, due + timedelta(minutes=30)).fired] == ["escalated"]
    assert_invariants(ctx)


@pytest.mark.parametrize(
    ("action", "login", "extend_by", "error", "message"),
    [
        ("extend", "umac-sud", timedelta(0), InputError, "longer than zero"),
        ("extend", "umac-sud", timedelta(minutes=-5), InputError, "longer than zero"),
        ("resume", "umac-sud", None, Conflict, "is not on hold"),
        ("hold", "ars-occ", None, NotPermitted, "at the umac level"),
        ("hold", "umac-paris", None, NotFound, "no case"),  # outside scope: as if missing
        ("hold", ACTORS_OCC["establishment"], None, NotPermitted, "does not regulate"),
        ("pause", "umac-sud", None, InputError, "unknown control"),
    ],
)
def test_bad_control_is_a_clear_error_and_changes_nothing(
    ctx: Ctx,
    action: str,
    login: str,
    extend_by: timedelta | None,
    error: type[Exception],
    message: str,
) -> None:
    """Zero or negative extensions, resuming what is not held, wrong level or scope: refused, nothing changed."""
    case = reach(ctx, "ecmo", "umac_review")
    before = ctx.snapshot()
    with pytest.raises(error, match=message):
        ctx.runner.control(
            reference=case.reference,
            action=action,
            login=login,
            reason="essai",
            extend_by=extend_by,
        )
    after = ctx.snapshot()
    if error in (NotPermitted, NotFound):  # only the refusal's own audit record(s)
        # outside scope ('no case'): one in the case's chain, one in the security stream
        records = 2 if error is NotFound else 1
        assert len(after["audit_event"]) == len(before["audit_event"]) + records
        assert after["deadline"] == before["deadline"]
    else:
        assert after == before


def test_hold_on_a_closed_case_is_refused_and_changes_nothing(ctx: Ctx) -> None:
    """A cancelled case has no deadline to hold: a conflict, nothing written."""
    case = ctx.runner.advance(
        reference=ctx.open("ecmo").reference,
        trigger="cancel",
        login=ACTORS_OCC["establishment"],
        reason="stabilisé",
    )
    before = ctx.snapshot()
    with pytest.raises(Conflict, match="closed"):
        ctx.runner.control(reference=case.reference, action="hold", login="umac-sud", reason="x")
    assert ctx.snapshot() == before


def test_dry_run_sweep_writes_nothing(ctx: Ctx) -> None:
    """A what-if sweep reports what would fire and leaves every table as it was."""
    case = ctx.open("ecmo")
    before = ctx.snapshot()
    ctx.clock.set(START + timedelta(hours=2))
    report = sweep(ctx.runner, dry_run=True)
    assert [(f.outcome, f.case) for f in report.fired] == [("escalated", case.reference)]
    assert ctx.snapshot() == before
