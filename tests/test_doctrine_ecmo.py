"""The ECMO doctrine (seed 000) and the rules every ladder shares, on SQLite and PostgreSQL.

Each rule is pinned three ways: allowed inside, refused outside (a typed refusal), and the
refusal recorded in the case's chain with nothing else changed. Rules: the national stock only
by the CCS at the national level; a UMAC lends within its zone, an ARS within its region; a
lender from the directory and a return date for every loan; the borrower confirms the start
within 12 h; the lender extends the loan and confirms the return; a level with nobody (a zone
that is one region) is skipped and the skip recorded; an extension is at most 24 h; a hold
ends by itself after 24 h; a new case goes straight to its first regulating level.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine import audit
from engine.cases import CaseFilter, CaseView
from engine.decisions import Decider, Rules
from engine.errors import InputError, NotFound, NotPermitted
from engine.policy import Geography
from engine.runner import Runner
from engine.settings import load_settings, rules
from engine.sweeper import sweep
from engine.values import Actor, Command
from tests.conftest import LENDER, TOULOUSE, TRIGGER_FIELDS, Ctx, drive, make_case, path_to
from tests.test_decisions import GEOGRAPHY, case_in
from workflows import default_registry

POISSY = "789900001"  # IDF, zone PARIS (a zone of one region)
MANTES = "789900002"  # IDF: lends to Poissy
MARSEILLE = "139900001"  # PAC: zone SUD, another region than Toulouse
LOAN = TRIGGER_FIELDS[("ecmo", "resolve")]
PARIS = ZoneInfo("Europe/Paris")


def at(ctx: Ctx, state: str, kind: str = "ecmo", hospital: str = TOULOUSE) -> CaseView:
    case = make_case(ctx, kind, hospital=hospital)
    return drive(ctx, case, path_to(ctx.registry[kind], state))


def events(ctx: Ctx, ref: str) -> list[Any]:
    return ctx.runner.history(ref)[1]


def refused(ctx: Ctx, ref: str, login: str, trigger: str, data: dict[str, Any], why: str) -> None:
    """``login`` firing ``trigger`` is refused with ``why``; one refused event, nothing else."""
    before, seen = ctx.snapshot(), len(events(ctx, ref))
    with pytest.raises(NotPermitted) as refusal:
        ctx.runner.advance(reference=ref, trigger=trigger, login=login, reason="essai", data=data)
    assert refusal.value.why == why, refusal.value
    after = ctx.snapshot()
    new = events(ctx, ref)[seen:]
    assert [(e.action, e.actor, e.data.get("trigger")) for e in new] == [
        ("refused", login, trigger)
    ]
    assert new[0].reason == "essai"
    for table in ("regul_case", "deadline", "notice"):
        rows = [{k: v for k, v in r.items() if k not in {"audit_seq", "audit_hash"}} for r in
                after[table]]  # fmt: skip
        was = [{k: v for k, v in r.items() if k not in {"audit_seq", "audit_hash"}} for r in
               before[table]]  # fmt: skip
        assert rows == was, table


def outsider(ctx: Ctx, ref: str, login: str, trigger: str) -> None:
    """Neither in scope nor the lender: the case does not exist for ``login``; recorded."""
    before, seen = ctx.snapshot()["regul_case"], len(events(ctx, ref))
    with pytest.raises(NotFound):
        fire(ctx, ref, login, trigger, {"return_by": "2026-12-30"})
    (event,) = events(ctx, ref)[seen:]
    assert (event.action, event.actor, event.data["scope"]) == ("refused", login, "outside")
    assert [r["state"] for r in ctx.snapshot()["regul_case"]] == [r["state"] for r in before]


def bad_input(ctx: Ctx, ref: str, login: str, trigger: str, data: dict[str, Any], why: str) -> None:
    """Malformed input: a clear error and nothing written, not even a refusal."""
    before = ctx.snapshot()
    with pytest.raises(InputError) as error:
        ctx.runner.advance(reference=ref, trigger=trigger, login=login, reason="essai", data=data)
    assert error.value.why == why, error.value
    assert ctx.snapshot() == before


def fire(ctx: Ctx, ref: str, login: str, trigger: str, data: dict[str, Any] | None = None) -> Any:
    return ctx.runner.advance(
        reference=ref, trigger=trigger, login=login, reason="essai", data=data or {}
    )


# -- the national stock, and the lender within the level's scope ---------------------------


@pytest.mark.parametrize(
    ("state", "login"), [("umac_review", "umac-sud"), ("ars_regulation", "ars-occ")]
)
def test_national_stock_refused_below_the_national_level(ctx: Ctx, state: str, login: str) -> None:
    """The UMAC and the ARS may not mobilise the national stock: refused, recorded."""
    case = at(ctx, state)
    national = {"source": "national", "return_by": "2026-12-15"}
    refused(ctx, case.reference, login, "resolve", national, "national_stock_reserved")


def test_national_stock_by_the_ccs_at_the_national_level(ctx: Ctx) -> None:
    """The CCS mobilises the national stock at national_regulation; no lender is named."""
    case = at(ctx, "national_regulation")
    national = {"source": "national", "return_by": "2026-12-15"}
    bad_input(
        ctx, case.reference, "ccs", "resolve", {**national, "lender": LENDER},
        "lender_with_national_stock",
    )  # fmt: skip
    done = fire(ctx, case.reference, "ccs", "resolve", national)
    assert done.state == "dispatched"
    assert done.fields["resolve"] == national


@pytest.mark.parametrize(
    ("state", "login", "inside", "outside"),
    [
        ("umac_review", "umac-sud", MARSEILLE, MANTES),  # the zone SUD, not PARIS
        ("ars_regulation", "ars-occ", LENDER, MARSEILLE),  # OCC, not PAC
    ],
)
def test_lender_within_the_level_scope(
    ctx: Ctx, state: str, login: str, inside: str, outside: str
) -> None:
    """A UMAC lends within its zone, an ARS within its region; outside: refused, recorded."""
    case = at(ctx, state)
    loan = {"source": "hospital", "return_by": "2026-12-15"}
    refused(
        ctx, case.reference, login, "resolve", {**loan, "lender": outside}, "lender_outside_scope"
    )
    done = fire(ctx, case.reference, login, "resolve", {**loan, "lender": inside})
    assert (done.state, done.fields["resolve"]["lender"]) == ("dispatched", inside)


def test_ccs_lends_from_anywhere(ctx: Ctx) -> None:
    case = at(ctx, "national_regulation")
    done = fire(
        ctx, case.reference, "ccs", "resolve",
        {"source": "hospital", "lender": MANTES, "return_by": "2026-12-15"},
    )  # fmt: skip
    assert done.fields["resolve"]["lender"] == MANTES


def test_loan_inputs_are_checked_before_anything_is_written(ctx: Ctx) -> None:
    """A lender of the directory, required unless national; a return date, not past."""
    ref = at(ctx, "umac_review").reference
    loan = {"source": "hospital", "lender": LENDER, "return_by": "2026-12-15"}
    bad_input(ctx, ref, "umac-sud", "resolve", {**loan, "lender": "319999999"}, "unknown_lender")
    bad_input(ctx, ref, "umac-sud", "resolve", {**loan, "lender": "Jean"}, "invalid_input")
    no_lender = {k: v for k, v in loan.items() if k != "lender"}
    bad_input(ctx, ref, "umac-sud", "resolve", no_lender, "missing_field")
    no_date = {k: v for k, v in loan.items() if k != "return_by"}
    bad_input(ctx, ref, "umac-sud", "resolve", no_date, "missing_field")
    past = {**loan, "return_by": "2026-11-21"}
    bad_input(ctx, ref, "umac-sud", "resolve", past, "return_date_past")
    bad_input(ctx, ref, "umac-sud", "resolve", {**loan, "provider": "CHU"}, "unknown_field")


# -- the loan: start within 12 h, extended and returned by the lender ----------------------


def test_dispatched_waits_12h_for_the_start_then_an_incident(ctx: Ctx) -> None:
    """The borrower confirms the start within 12 h; past it the sweep raises an incident."""
    case = at(ctx, "dispatched")
    assert case.deadline is not None
    assert case.deadline.due_at == ctx.clock.now() + timedelta(hours=12)
    assert case.deadline.action == "incident"
    ctx.clock.advance(timedelta(hours=12, seconds=1))
    report = sweep(ctx.runner)
    assert report.counts().get("incident") == 1
    last = events(ctx, case.reference)[-1]
    assert (last.action, last.actor) == ("incident", "system")
    assert "Console attribuée" in last.reason
    assert ctx.runner.show(case.reference).incident


def test_only_the_lender_extends_the_loan(ctx: Ctx) -> None:
    """The lending hospital extends (the overdue deadline moves); the borrower and the
    regulators may not (recorded); a date not later than the current one is bad input."""
    case = at(ctx, "in_service")
    ref = case.reference
    assert case.deadline is not None
    end = datetime(2026, 12, 16, tzinfo=PARIS)
    assert case.deadline.due_at == end
    later = {"return_by": "2026-12-20"}
    for login, why in (
        ("etab-319900001", "not_the_lender"),  # the borrower
        ("ccs", "not_the_lender"),  # not the national stock's loan
        ("umac-sud", "role_may_not_fire"),
        ("ars-occ", "role_may_not_fire"),
    ):
        refused(ctx, ref, login, "extend_loan", later, why)
    bad_input(ctx, ref, f"etab-{LENDER}", "extend_loan", {"return_by": "2026-12-15"},
              "loan_not_extended")  # fmt: skip
    done = fire(ctx, ref, f"etab-{LENDER}", "extend_loan", later)
    assert done.state == "in_service"
    assert done.deadline is not None
    assert done.deadline.due_at == datetime(2026, 12, 21, tzinfo=PARIS)
    assert done.deadline.action == "overdue"
    last = events(ctx, ref)[-1]
    assert (last.actor, last.data["trigger"], last.reason) == (
        f"etab-{LENDER}", "extend_loan", "essai",
    )  # fmt: skip


def test_only_the_lender_confirms_the_return(ctx: Ctx) -> None:
    """The lending hospital reads the case and confirms the return; the borrower may not."""
    ref = at(ctx, "in_service").reference
    refused(ctx, ref, "etab-319900001", "return", {}, "not_the_lender")
    outsider(ctx, ref, "etab-819900001", "return")  # another hospital: no case of theirs
    assert ctx.runner.show(ref, login=f"etab-{LENDER}").state == "in_service"
    assert fire(ctx, ref, f"etab-{LENDER}", "return").state == "returned"


def test_the_ccs_is_the_lender_of_the_national_stock(ctx: Ctx) -> None:
    case = at(ctx, "national_regulation")
    ref = case.reference
    fire(ctx, ref, "ccs", "resolve", {"source": "national", "return_by": "2026-12-15"})
    fire(ctx, ref, "etab-319900001", "start")
    outsider(ctx, ref, f"etab-{LENDER}", "extend_loan")  # lends nothing here: no case of theirs
    assert fire(ctx, ref, "ccs", "extend_loan", {"return_by": "2026-12-20"}).state == "in_service"
    refused(ctx, ref, "etab-319900001", "return", {}, "not_the_lender")
    assert fire(ctx, ref, "ccs", "return").state == "returned"


def test_a_case_resolved_with_a_free_text_provider_keeps_the_former_rule() -> None:
    """Cases resolved before lenders were recorded: read as they are, the borrower returns."""
    decider = Decider(default_registry(), geography=GEOGRAPHY)
    old = {"resolve": {"source": "region", "provider": "Stock ARS", "return_by": "2026-12-15"}}
    case = case_in("ecmo", "in_service", fields=old)
    borrower = Actor("etab", "É", "establishment", TOULOUSE, "hospital", "OCC", "SUD", None)
    other = Actor("l", "L", "establishment", LENDER, "hospital", "OCC", "SUD", None)
    now = case.updated_at
    assert decider.fire(case, borrower, Command("return", "r", {}), now).refusal is None
    assert decider.fire(case, other, Command("return", "r", {}), now).refusal is not None


# -- a level with nobody is skipped ----------------------------------------------------------


def poissy_transfer(ctx: Ctx) -> CaseView:
    """A transfer of Poissy (zone of Paris) at the ARS Île-de-France."""
    case = make_case(ctx, "transfer", hospital=POISSY)
    case = fire(ctx, case.reference, f"etab-{POISSY}", "escalate")
    assert case.state == "ars_regulation"
    return case


def test_zone_of_one_region_is_skipped_and_recorded(ctx: Ctx) -> None:
    """ARS Île-de-France escalates a transfer: the zone of Paris is one region, so the case
    goes to the national level at once; the skip is a system step in the chain, and the
    chain still replays."""
    case = poissy_transfer(ctx)
    done = fire(ctx, case.reference, "ars-idf", "escalate")
    assert (done.state, done.level, done.version) == (
        "national_regulation",
        "ccs",
        case.version + 1,
    )
    assert done.deadline is not None
    assert done.deadline.due_at == ctx.clock.now() + timedelta(hours=6)
    escalate, skip = events(ctx, case.reference)[-2:]
    assert (escalate.actor, escalate.from_state, escalate.to_state) == (
        "ars-idf", "ars_regulation", "zone_regulation",
    )  # fmt: skip
    assert (skip.actor, skip.from_state, skip.to_state) == (
        "system", "zone_regulation", "national_regulation",
    )  # fmt: skip
    assert (skip.data["level_skipped"], skip.data["why"]) == ("ars_zone", "zone_single_region")
    assert "sauté" in skip.reason
    with ctx.db.read() as conn:
        report = audit.verify(conn, registry=ctx.registry)
    assert report.ok, report.findings


def test_the_sweep_skips_the_same_level(ctx: Ctx) -> None:
    case = poissy_transfer(ctx)
    ctx.clock.advance(timedelta(hours=2, seconds=1))
    sweep(ctx.runner)
    assert ctx.runner.show(case.reference).state == "national_regulation"


def test_a_zone_of_several_regions_is_not_skipped(ctx: Ctx) -> None:
    case = at(ctx, "ars_regulation", "transfer", TOULOUSE)
    assert fire(ctx, case.reference, "ars-occ", "escalate").state == "zone_regulation"


# -- controls: the most an extension adds, the longest a hold lasts --------------------------


def control(ctx: Ctx, ref: str, login: str, action: str, by: timedelta | None = None) -> Any:
    return ctx.runner.control(reference=ref, action=action, login=login, reason="essai",
                              extend_by=by)  # fmt: skip


def test_extension_at_most_24h(ctx: Ctx) -> None:
    """Over 24 h: refused and recorded, nothing else; 24 h: allowed."""
    case = at(ctx, "umac_review")
    ref = case.reference
    before, seen = ctx.snapshot(), len(events(ctx, ref))
    with pytest.raises(NotPermitted) as refusal:
        control(ctx, ref, "umac-sud", "extend", timedelta(hours=24, minutes=1))
    assert refusal.value.why == "extension_too_long"
    assert refusal.value.data["limit"] == "24"
    (event,) = events(ctx, ref)[seen:]
    assert (event.action, event.data["control"], event.data["why"]) == (
        "refused", "extend", "an extension is at most 24 h at a time",
    )  # fmt: skip
    assert ctx.snapshot()["deadline"] == before["deadline"]
    assert case.deadline is not None
    done = control(ctx, ref, "umac-sud", "extend", timedelta(hours=24))
    assert done.deadline.due_at == case.deadline.due_at + timedelta(hours=24)


def test_hold_resumes_by_itself_after_24h(ctx: Ctx) -> None:
    """A hold lasts 24 h at most: then the sweep resumes it (« reprise automatique »)."""
    case = at(ctx, "umac_review")
    ref = case.reference
    held = control(ctx, ref, "umac-sud", "hold")
    assert held.on_hold
    ctx.clock.advance(timedelta(hours=23, minutes=59))
    assert sweep(ctx.runner).fired == []
    assert ctx.runner.show(ref).on_hold
    ctx.clock.advance(timedelta(minutes=1))
    report = sweep(ctx.runner)
    assert report.counts() == {"resumed": 1}
    after = ctx.runner.show(ref)
    assert (after.on_hold, after.version) == (False, held.version + 1)
    assert after.deadline is not None
    assert after.deadline.due_at == ctx.clock.now() + timedelta(hours=2)  # restarted in full
    last = events(ctx, ref)[-1]
    assert (last.action, last.actor) == ("resume", "system")
    assert last.reason.startswith("Reprise automatique")


def test_a_hold_resumed_by_hand_leaves_nothing_for_the_sweep(ctx: Ctx) -> None:
    ref = at(ctx, "umac_review").reference
    control(ctx, ref, "umac-sud", "hold")
    control(ctx, ref, "umac-sud", "resume")
    assert ctx.count("deadline", "status = 'open'") == 1
    assert ctx.count("deadline", "status = 'open' AND action = 'resume'") == 0
    ctx.clock.advance(timedelta(hours=24, minutes=1))
    assert "resumed" not in sweep(ctx.runner).counts()


# -- opening goes straight to the first regulating level -------------------------------------


@pytest.mark.parametrize("kind", ["ecmo", "ppe", "transfer"])
def test_open_goes_to_the_first_regulating_level(ctx: Ctx, kind: str) -> None:
    """By default a new case is at the first regulating level at once: two events."""
    runner = Runner(ctx.db, ctx.registry, ctx.clock)
    spec = ctx.registry[kind]
    case = runner.open_case(
        kind=kind, login="etab-319900001", org=TOULOUSE,
        fields=make_fields(kind),
    )  # fmt: skip
    first = spec.fire(spec.initial, "escalate")
    assert (case.state, case.version) == (first, 1)
    assert case.deadline is not None
    assert case.deadline.due_at == ctx.clock.now() + spec.state(first).deadline
    opened, step = ctx.runner.history(case.reference)[1]
    assert (opened.action, step.action, step.actor) == ("opened", "transition", "system")
    assert (step.from_state, step.to_state) == (spec.initial, first)
    with ctx.db.read() as conn:
        assert audit.verify(conn, registry=ctx.registry).ok


def test_the_hospital_confirm_step_is_a_setting(ctx: Ctx) -> None:
    runner = Runner(ctx.db, ctx.registry, ctx.clock, rules=Rules(hospital_confirms=True))
    case = runner.open_case(
        kind="ecmo", login="etab-319900001", org=TOULOUSE, fields=make_fields("ecmo")
    )
    assert case.state == "requested"


def make_fields(kind: str) -> dict[str, object]:
    from tests.conftest import DEFAULT_FIELDS

    return dict(DEFAULT_FIELDS[kind])


# -- pure: the geography's skips, the settings' limits --------------------------------------


def test_geography_says_which_levels_hold_nobody() -> None:
    """A zone of one region has no ARS de zone of its own; a hospital without a GHT no GHT
    level; an empty geography (no directory read) skips nothing."""
    paris = case_in("transfer", "ars_regulation", org=POISSY, region="IDF", zone="PARIS")
    sud = case_in("transfer", "ars_regulation")
    assert GEOGRAPHY.skipped("ars_zone", paris) == "zone_single_region"
    assert GEOGRAPHY.skipped("ars_zone", sud) is None
    assert GEOGRAPHY.skipped("umac", paris) is None
    assert GEOGRAPHY.skipped("ght", replace(sud, ght=None)) == "no_organisation"
    assert GEOGRAPHY.skipped("ght", sud) is None
    assert GEOGRAPHY.skipped("establishment", sud) is None
    assert Geography().skipped("ars_zone", paris) is None


def test_the_limits_are_settings() -> None:
    limits = rules(load_settings(extend_max="2h", hold_max="3d", hospital_confirms_request=True))
    assert limits == Rules(timedelta(hours=2), timedelta(days=3), hospital_confirms=True)
    assert rules(load_settings()) == Rules()
    with pytest.raises(InputError, match="REGUL_EXTEND_MAX"):
        rules(load_settings(extend_max="0m"))


def test_a_skip_tells_only_its_last_step() -> None:
    """The ARS's escalate into a skipped level and the system's step over it: one notice, for
    the level that holds the case after them."""
    decider = Decider(
        default_registry(), geography=GEOGRAPHY, declares=lambda kind, event: event == "escalate"
    )
    case = case_in("transfer", "ars_regulation", org=POISSY, region="IDF", zone="PARIS")
    ars = Actor("ars-idf", "A", "ars", "ARS-IDF", "ars", "IDF", "PARIS", None)
    outcome = decider.fire(case, ars, Command("escalate", "r", {}), case.updated_at)
    assert [(e.actor, e.to_state) for e in outcome.events] == [
        ("ars-idf", "zone_regulation"), ("system", "national_regulation"),
    ]  # fmt: skip
    assert outcome.notices == (1,)
    assert outcome.case is not None
    assert (outcome.case.state, outcome.case.version) == ("national_regulation", case.version + 1)


def test_the_lender_finds_its_loans_in_its_list(ctx: Ctx) -> None:
    """The lending hospital's queue lists the cases it lent a console to, and no other case
    of another hospital (a case not yet resolved, a loan of another lender)."""
    lent = at(ctx, "in_service")
    waiting = at(ctx, "umac_review")
    own = make_case(ctx, "ecmo", hospital=LENDER)
    listed = {c.reference for c in ctx.runner.search(CaseFilter(), login=f"etab-{LENDER}")}
    assert listed == {lent.reference, own.reference}
    assert waiting.reference not in listed
    other = {c.reference for c in ctx.runner.search(CaseFilter(), login="etab-819900001")}
    assert other == set()
