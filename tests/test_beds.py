"""Critical-care capacity (issue 13): the bed ledger, reports, plans, targets, alerts,
deprogramming decisions, the daily snapshot obligation, transfer candidates and scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine import audit
from engine.errors import InputError, NotFound, NotPermitted
from notifications.outbox import NOTICE_TABLE
from resources import ledger
from resources.beds import capacity_kind
from resources.beds.service import Beds, CapacityLine
from resources.service import Resources
from tests.conftest import TOULOUSE, Ctx
from tests.test_notices import notices, use_outbox

MONTPELLIER = "349900001"
NIMES = "309900001"
BORDEAUX = "339900001"  # zone Sud-Ouest
LILLE = "599900001"  # zone Nord
KIND = capacity_kind()


def beds(ctx: Ctx, threshold: float = 0.9) -> Beds:
    return Beds(Resources(ctx.db, ctx.clock, ctx.runner.uow, {KIND.name: KIND}), threshold)


def figures(installed: int, armed: int, covid: int, other: int, reserve: int = 0) -> dict[str, int]:
    return {"installed": installed, "armed": armed, "occupied_covid": covid,
            "occupied_other": other, "covid_reserve": reserve}  # fmt: skip


def report(ctx: Ctx, holder: str, rea: dict[str, int], sc: dict[str, int] | None = None,
           **kw: Any) -> None:  # fmt: skip
    data = {"reanimation": rea}
    if sc is not None:
        data["surveillance_continue"] = sc
    beds(ctx).report(f"etab-{holder}", holder=holder, figures=data, **kw)


def balances(ctx: Ctx, holder: str) -> dict[tuple[str, str], int]:
    with ctx.db.read() as conn:
        return {
            (r.item, r.bucket): int(r.quantity)
            for r in conn.execute(
                sa.text("SELECT item, bucket, quantity FROM stock_balance WHERE holder = :h"),
                {"h": holder},
            )
            if r.quantity
        }


def test_a_report_sets_the_ledger_and_the_replay_gives_its_figures(ctx: Ctx) -> None:
    report(ctx, TOULOUSE, figures(40, 30, 12, 10, 2), figures(20, 16, 4, 6))
    report(ctx, TOULOUSE, figures(40, 34, 15, 10, 2))  # a change: more armed, more Covid
    got = balances(ctx, TOULOUSE)
    assert got[("bed:reanimation", "available")] == 34 - 15 - 10 - 2
    assert got[("bed:reanimation", "unarmed")] == 6
    assert got[("bed:surveillance_continue", "available")] == 6
    with ctx.db.read() as conn:
        replayed, stored = ledger.replay(conn, TOULOUSE)
        assert audit.verify(conn).ok
    assert replayed == stored == got
    (status,) = beds(ctx).statuses(region="OCC")
    assert status.beds["reanimation"] == {
        "installed": 40, "armed": 34, "occupied_covid": 15, "occupied_other": 10,
        "covid_reserve": 2, "reserved": 0, "available": 7,
    }  # fmt: skip
    assert ctx.count("resource_report", "kind = 'capacity'") == 2  # two versions of the day


@pytest.mark.parametrize(
    ("rea", "why"),
    [
        (figures(10, 12, 0, 0), "armed_over_installed"),
        (figures(10, 8, 5, 4), "occupied_over_armed"),
        ({"installed": "dix"}, "bad_bed_count"),
        ({"installed": -1}, "bad_bed_count"),
    ],
)
def test_a_bad_report_changes_nothing(ctx: Ctx, rea: dict[str, Any], why: str) -> None:
    report(ctx, TOULOUSE, figures(10, 8, 2, 2))
    before = ctx.snapshot()
    with pytest.raises(InputError) as bad:
        report(ctx, TOULOUSE, rea)
    assert bad.value.why == why
    assert ctx.snapshot() == before


def test_tiers_follow_the_plan_and_reach_the_ars(ctx: Ctx) -> None:
    ctx = use_outbox(ctx)
    service = beds(ctx)
    report(ctx, TOULOUSE, figures(40, 30, 10, 10))
    with pytest.raises(InputError) as bad:
        report(ctx, TOULOUSE, figures(40, 30, 10, 10), tier=2)
    assert bad.value.why == "unknown_tier"
    service.plan(f"etab-{TOULOUSE}", holder=TOULOUSE,
                 tiers={"1": {"reanimation": 30}, "2": {"reanimation": 40}})  # fmt: skip
    report(ctx, TOULOUSE, figures(40, 40, 20, 10), tier=2, plan_blanc=2)
    report(ctx, TOULOUSE, figures(40, 30, 12, 10), tier=1)  # lowered (reversibility)
    (status,) = service.statuses(region="OCC")
    assert (status.tier, status.plan_blanc) == (1, 2)
    assert status.plan_blanc_since is not None
    assert status.tiers["2"] == {"reanimation": 40}
    sent = notices(ctx, NOTICE_TABLE.c.kind == "capacity_tier")
    assert len(sent) == 2
    assert "PALIER CAPACITAIRE RELEVÉ (PALIER 2)" in sent[0].subject
    assert "ARS Occitanie" in sent[0].body_text
    assert "abaissé" in sent[1].body_text


def test_an_occupancy_over_the_threshold_alerts_the_ars_once(ctx: Ctx) -> None:
    ctx = use_outbox(ctx)
    report(ctx, TOULOUSE, figures(20, 20, 10, 5), figures(10, 10, 2, 2))  # 19/30
    assert ctx.count("notice", "kind = 'capacity_alert'") == 0
    report(ctx, TOULOUSE, figures(20, 20, 15, 4), figures(10, 10, 5, 4))  # 28/30
    report(ctx, TOULOUSE, figures(20, 20, 16, 4), figures(10, 10, 5, 4))  # still over
    (alert,) = notices(ctx, NOTICE_TABLE.c.kind == "capacity_alert")
    assert "93 %" in alert.subject
    assert "ARS Occitanie" in alert.body_text


def test_a_region_at_its_target_goes_to_the_zone_and_the_ccs_as_evasan_candidate(
    ctx: Ctx,
) -> None:
    ctx = use_outbox(ctx)
    service = beds(ctx)
    with pytest.raises(NotPermitted):
        service.target("ars-idf", region="OCC", targets={"reanimation": 30})
    service.target("ars-occ", region="OCC", targets={"reanimation": 30})
    report(ctx, TOULOUSE, figures(30, 30, 15, 5))
    assert ctx.count("notice", "kind = 'region_at_target'") == 0
    report(ctx, MONTPELLIER, figures(30, 30, 8, 4))  # region: 32 occupied >= 30
    (alert,) = notices(ctx, NOTICE_TABLE.c.kind == "region_at_target")
    assert "CANDIDATE EVASAN" in alert.subject
    assert "zone Sud" in alert.body_text
    assert "Centre de crise sanitaire" in alert.body_text
    with ctx.db.read() as conn:
        data = conn.execute(
            sa.text(
                "SELECT data FROM audit_event WHERE stream = 'holder:ARS-OCC' "
                "AND action = 'region_at_target'"
            )
        ).scalar_one()
    assert (data if isinstance(data, dict) else __import__("json").loads(data))[
        "evasan_candidate"
    ] is True


def test_deprogramming_decisions_reach_the_ars_and_are_reversed_once(ctx: Ctx) -> None:
    ctx = use_outbox(ctx)
    service = beds(ctx)
    decision = {
        "holder": TOULOUSE, "tier": 2,
        "activities": [{"activity": "chirurgie programmée", "extent": "50 %"}],
        "cell": ["Dr A (réanimation)", "Dr B (chirurgie)", "Cadre de santé C"],
        "benefit_risk": "Report de 3 semaines sans perte de chance pour la chirurgie réglée.",
        "safeguarded": ["cancer", "greffe", "soins_urgents", "mineur"],
    }  # fmt: skip
    before = ctx.snapshot()
    with pytest.raises(InputError) as bad:
        service.deprogram(f"etab-{TOULOUSE}", **{**decision, "cell": ["Dr A"]})
    assert bad.value.why == "cell_not_collegial"
    assert ctx.snapshot() == before
    service.deprogram(f"etab-{TOULOUSE}", **decision)
    (sent,) = notices(ctx, NOTICE_TABLE.c.kind == "deprogramming")
    assert "DÉCISION DE DÉPROGRAMMATION (PALIER 2)" in sent.subject
    assert "ARS Occitanie" in sent.body_text
    assert "chirurgie programmée : 50 %" in sent.body_text
    assert "NON garanties" in sent.body_text
    (item,) = service.feed("ars-occ")
    assert item.action == "deprogramming"
    assert item.data["tier"] == 2
    assert service.feed("ars-idf") == []
    service.reverse(f"etab-{TOULOUSE}", holder=TOULOUSE, decision=item.seq, reason="Tension levée")
    with pytest.raises(InputError) as again:
        service.reverse(f"etab-{TOULOUSE}", holder=TOULOUSE, decision=item.seq, reason="encore")
    assert again.value.why == "already_reversed"
    assert ctx.count("notice", "kind = 'deprogramming_reversed'") == 1
    assert [f.action for f in service.feed("ccs")] == ["deprogramming_reversed", "deprogramming"]


def test_reports_stay_in_scope(ctx: Ctx) -> None:
    service = beds(ctx)
    service.report("ars-occ", holder=TOULOUSE, figures={"reanimation": figures(5, 5, 1, 1)})
    before = ctx.snapshot()
    for login in ("ars-idf", f"etab-{MONTPELLIER}", "arsz-paris"):
        with pytest.raises(NotFound):
            service.report(login, holder=TOULOUSE, figures={"reanimation": figures(5, 5, 1, 1)})
    assert ctx.snapshot() == before


def test_candidates_follow_the_resolvers_scope_nearest_first(ctx: Ctx) -> None:
    for holder, free in ((TOULOUSE, 0), (MONTPELLIER, 3), (NIMES, 1), (BORDEAUX, 5), (LILLE, 2)):
        report(ctx, holder, figures(10, 10, 10 - free, 0))
    service = beds(ctx)
    ars = service.candidates("ars-occ", category="reanimation", origin=TOULOUSE)
    assert [(c.org, c.free) for c in ars] == [(MONTPELLIER, 3), (NIMES, 1)]
    assert ars[0].distance_km is not None
    assert ars[0].distance_km < ars[1].distance_km
    zone = service.candidates("arsz-sud", category="reanimation", origin=TOULOUSE)
    assert {c.org for c in zone} == {MONTPELLIER, NIMES}
    national = service.candidates("ccs", category="reanimation", origin=TOULOUSE)
    assert [c.org for c in national] == [MONTPELLIER, BORDEAUX, NIMES, LILLE]
    assert service.candidates("ccs", category="reanimation", origin="971990001", means="road") == []
    assert service.candidates("ars-occ", category="surveillance_continue", origin=TOULOUSE) == []


def test_the_daily_snapshot_is_reminded_exactly_once_then_escalated(ctx: Ctx) -> None:
    ctx = use_outbox(ctx)
    service = beds(ctx)
    ctx.clock.set(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))  # 10:00 Paris
    report(ctx, TOULOUSE, figures(10, 10, 5, 0))
    report(ctx, MONTPELLIER, figures(10, 10, 5, 0))
    ctx.clock.set(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))  # the next day, 10:00 Paris
    sweep = service.resources.sweep_obligations
    assert sweep() == []
    report(ctx, MONTPELLIER, figures(10, 10, 6, 0))  # this day's snapshot
    ctx.clock.advance(timedelta(hours=4))  # 14:00 Paris: due
    assert [(s.holder, s.outcome) for s in sweep()] == [(TOULOUSE, "reminded")]
    assert sweep() == []
    ctx.clock.advance(timedelta(hours=1))
    assert sweep() == []  # exactly once
    ctx.clock.advance(timedelta(hours=1, minutes=1))
    assert [(s.holder, s.outcome) for s in sweep()] == [(TOULOUSE, "escalated")]
    assert sweep() == []
    (late,) = notices(ctx, NOTICE_TABLE.c.kind == "report_late")
    assert "capacités de soins critiques" in late.body_text
    assert "ARS Occitanie" in late.body_text
    assert ctx.count("notice", "kind = 'report_missing'") == 1


def test_a_file_import_writes_all_lines_or_none(ctx: Ctx, tmp_path: Any) -> None:
    from resources.beds.importer import read_capacity_file

    good = tmp_path / "capacites.csv"
    good.write_text(
        "finess;categorie;installes;armes;occupes_covid;occupes_non_covid;reserve_covid;palier;plan_blanc\n"
        f"{TOULOUSE};reanimation;40;30;12;10;2;;\n"
        f"{TOULOUSE};surveillance_continue;20;16;4;6;0;;\n"
        f"{MONTPELLIER};reanimation;30;30;10;10;0;;1\n",
        encoding="utf-8",
    )
    lines = read_capacity_file(good)
    assert [line.holder for line in lines] == [TOULOUSE, MONTPELLIER]
    beds(ctx).report_many("ars-occ", lines)
    assert balances(ctx, MONTPELLIER)[("bed:reanimation", "available")] == 10
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "finess;categorie;installes;armes;occupes_covid;occupes_non_covid\n"
        f"{TOULOUSE};reanimation;40;50;12;10\n"
        f"{MONTPELLIER};lits;30;30;10;10\n"
        f"{NIMES};reanimation;30;x;10;10\n",
        encoding="utf-8",
    )
    before = ctx.snapshot()
    with pytest.raises(InputError) as refused:
        read_capacity_file(bad)
    errors = refused.value.data["errors"]
    assert [e.split(" :")[0] for e in errors] == ["ligne 2", "ligne 3", "ligne 4"]
    assert "armés" in errors[0]
    assert ctx.snapshot() == before
    with pytest.raises(NotFound):  # a line outside the importer's scope: nothing written
        beds(ctx).report_many(
            "ars-idf", [CapacityLine(TOULOUSE, {"reanimation": figures(1, 1, 0, 0)})]
        )
    assert ctx.snapshot() == before
