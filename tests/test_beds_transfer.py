"""Transfers go where the beds are (issue 13): a proposal names an establishment with a free
bed of the category (else a reason, recorded); the receiving establishment's acceptance
reserves the bed in the same transaction (two acceptances never take the last bed); a decline
returns the case with a fresh deadline and reserves nothing; the transfer done occupies the
bed; an EVASAN mission is the national level's and lists its cases together."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from engine.errors import Conflict, InputError
from engine.runner import Runner
from engine.settings import load_settings
from engine.values import CaseView
from resources import ledger
from resources.beds.service import Beds
from resources.catalogue import case_effects
from resources.service import Resources
from tests.conftest import CONFIRMS, TOULOUSE, Ctx, drive
from tests.test_beds import balances, figures, report

MONTPELLIER = "349900001"
BORDEAUX = "339900001"
REA = "bed:reanimation"
RESOLVE = {"receiving_hospital": MONTPELLIER, "means": "road", "date": "2026-11-23"}


@pytest.fixture
def bctx(ctx: Ctx) -> Ctx:
    """``ctx`` whose runner carries the resources' case effects (as ``build_app`` does)."""
    effects = case_effects(load_settings(database_url=str(ctx.db.url)))
    ctx.runner = Runner(ctx.db, ctx.registry, ctx.clock, rules=CONFIRMS, effects=effects)
    return ctx


def at_ars(ctx: Ctx, patient: str = "PAT-0002") -> CaseView:
    case = drive(ctx, ctx.open("transfer", patient_ref=patient), ["escalate"])
    assert case.state == "ars_regulation"
    return case


def propose(ctx: Ctx, case: CaseView, login: str = "ars-occ", **extra: object) -> CaseView:
    return ctx.runner.advance(reference=case.reference, trigger="resolve", login=login,
                              reason="lit trouvé", data={**RESOLVE, **extra})  # fmt: skip


def fire(ctx: Ctx, case: CaseView, trigger: str, login: str, reason: str = "motif") -> CaseView:
    return ctx.runner.advance(reference=case.reference, trigger=trigger, login=login,
                              reason=reason)  # fmt: skip


def free(ctx: Ctx, holder: str = MONTPELLIER) -> int:
    return balances(ctx, holder).get((REA, "available"), 0)


def test_a_proposal_needs_a_bed_or_a_recorded_reason(bctx: Ctx) -> None:
    case = at_ars(bctx)
    before = bctx.snapshot()
    with pytest.raises(Conflict) as refused:
        propose(bctx, case)  # Montpellier declares no bed
    assert refused.value.why == "no_bed_available"
    assert bctx.snapshot() == before
    proposed = propose(bctx, case, bed_override_reason="accord du réanimateur de garde")
    assert proposed.state == "proposed_ars"
    assert bctx.count("audit_event", f"stream = 'holder:{MONTPELLIER}' AND "
                      "action = 'bed_override'") == 1  # fmt: skip
    accepted = fire(bctx, proposed, "accept", f"etab-{MONTPELLIER}", "lit libéré")
    assert accepted.state == "dispatched"
    assert balances(bctx, MONTPELLIER) == {}  # no bed that does not exist is reserved


def test_accept_reserves_the_bed_and_the_transfer_occupies_it(bctx: Ctx) -> None:
    report(bctx, MONTPELLIER, figures(10, 10, 5, 3))  # 2 free
    case = propose(bctx, at_ars(bctx))
    assert free(bctx) == 2  # a proposal reserves nothing yet
    case = fire(bctx, case, "accept", f"etab-{MONTPELLIER}", "lit réservé")
    assert (free(bctx), balances(bctx, MONTPELLIER)[(REA, "reserved")]) == (1, 1)
    case = fire(bctx, case, "transferred", f"etab-{TOULOUSE}", "patient parti")
    got = balances(bctx, MONTPELLIER)
    assert (got[(REA, "occupied_covid")], got.get((REA, "reserved"), 0)) == (6, 0)
    with bctx.db.read() as conn:
        replayed, stored = ledger.replay(conn, MONTPELLIER)
    assert replayed == stored
    (row,) = [t for t in _beds(bctx).transfers("ars-occ") if t.direction == "in"]
    assert (row.reference, row.receiving) == (case.reference, MONTPELLIER)


def test_the_second_acceptance_of_the_last_bed_is_refused(bctx: Ctx) -> None:
    report(bctx, MONTPELLIER, figures(10, 10, 6, 3))  # 1 free
    first = propose(bctx, at_ars(bctx, "PAT-0101"))
    second = propose(bctx, at_ars(bctx, "PAT-0102"))  # both proposed while one bed is free
    fire(bctx, first, "accept", f"etab-{MONTPELLIER}", "lit réservé")
    before = bctx.snapshot()
    with pytest.raises(Conflict) as refused:
        fire(bctx, second, "accept", f"etab-{MONTPELLIER}", "lit réservé")
    assert refused.value.why == "not_enough"
    assert bctx.snapshot() == before
    assert (free(bctx), balances(bctx, MONTPELLIER)[(REA, "reserved")]) == (0, 1)


@pytest.mark.slow
def test_two_racing_acceptances_never_take_the_last_bed(bctx: Ctx) -> None:
    report(bctx, MONTPELLIER, figures(10, 10, 6, 3))  # 1 free
    cases = [propose(bctx, at_ars(bctx, f"PAT-02{n:02d}")) for n in range(4)]
    wins, losses, errors = [], [], []
    barrier = threading.Barrier(len(cases))

    def accept(case: CaseView) -> None:
        barrier.wait()
        try:
            fire(bctx, case, "accept", f"etab-{MONTPELLIER}", "lit réservé")
            wins.append(case.reference)
        except Conflict as exc:
            losses.append(exc.why)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=accept, args=(c,)) for c in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (len(wins), losses) == (1, ["not_enough"] * 3)
    assert (free(bctx), balances(bctx, MONTPELLIER)[(REA, "reserved")]) == (0, 1)
    assert bctx.count("regul_case", "state = 'dispatched'") == 1


def test_decline_returns_the_case_with_a_fresh_deadline_and_no_bed(bctx: Ctx) -> None:
    report(bctx, MONTPELLIER, figures(10, 10, 5, 3))
    case = propose(bctx, at_ars(bctx))
    bctx.clock.advance(timedelta(minutes=40))
    declined = fire(bctx, case, "decline", f"etab-{MONTPELLIER}", "plus d'infirmier de nuit")
    assert declined.state == "ars_regulation"
    assert declined.deadline is not None
    assert declined.deadline.due_at == bctx.clock.now() + timedelta(hours=2)
    assert free(bctx) == 2


def test_an_evasan_mission_is_national_and_lists_its_cases(bctx: Ctx) -> None:
    report(bctx, BORDEAUX, figures(20, 20, 5, 5))
    case = at_ars(bctx, "PAT-0301")
    with pytest.raises(InputError) as refused:
        propose(bctx, case, receiving_hospital=MONTPELLIER, bed_override_reason="x",
                evasan_mission="EVASAN-0001")  # fmt: skip
    assert refused.value.why == "mission_national_only"
    national = []
    for n in range(2):
        case = drive(bctx, bctx.open("transfer", patient_ref=f"PAT-04{n:02d}"), ["escalate"] * 3)
        assert case.state == "national_regulation"
        case = propose(bctx, case, login="ccs", receiving_hospital=BORDEAUX, means="air",
                       evasan_mission="EVASAN-0001")  # fmt: skip
        national.append(fire(bctx, case, "accept", f"etab-{BORDEAUX}", "lit réservé").reference)
    missions = _beds(bctx).missions()
    assert [r.reference for r in missions["EVASAN-0001"]] == national
    assert balances(bctx, BORDEAUX)[(REA, "reserved")] == 2


def test_candidates_are_refused_for_an_unknown_category(bctx: Ctx) -> None:
    with pytest.raises(InputError):
        _beds(bctx).candidates("ars-occ", category="ssr")


def _beds(ctx: Ctx) -> Beds:
    return Beds(Resources(ctx.db, ctx.clock, ctx.runner.uow, {}))
