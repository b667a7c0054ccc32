"""The situation room's capacity panel (issue 14): « Capacités de réanimation ».

Capacity reports, plans, transfers and an EVASAN mission go through the real services; the
panel's figures (API, CSV) are checked against the same figures computed here from the tables
(balances, the reports as stored, the cases), on SQLite and PostgreSQL, for the CCS
(everything, by region), the ARS Occitanie (OCC only, by establishment) and an establishment
(itself only).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine import tables
from engine.runner import Runner
from engine.settings import load_settings
from resources.catalogue import case_effects
from resources.periods import PARIS
from tests.conftest import CONFIRMS, START, TOULOUSE, Ctx, Web, drive
from tests.test_beds import beds, figures, report

MONTPELLIER = "349900001"  # Occitanie
POISSY = "789900001"  # Île-de-France
BORDEAUX = "339900001"  # Nouvelle-Aquitaine
CRITICAL = ("bed:reanimation", "bed:surveillance_continue")


@pytest.fixture
def bweb(ctx: Ctx) -> Ctx:
    """``ctx`` whose runner carries the resources' case effects (as ``build_app`` does),
    set before the ``web`` fixture builds its app on it."""
    effects = case_effects(load_settings(database_url=str(ctx.db.url)))
    ctx.runner = Runner(ctx.db, ctx.registry, ctx.clock, rules=CONFIRMS, effects=effects)
    return ctx


def seed(ctx: Ctx) -> None:
    """Ten days of capacity in three regions, a plan and its tier, a plan blanc, transfers in
    each state group and a two-patient EVASAN mission."""
    ctx.clock.set(START - timedelta(days=10))
    beds(ctx).plan(f"etab-{TOULOUSE}", holder=TOULOUSE,
                   tiers={"1": {"reanimation": 34}, "2": {"reanimation": 40}})  # fmt: skip
    report(ctx, TOULOUSE, figures(40, 30, 12, 10, 2), figures(20, 16, 4, 6), tier=1, plan_blanc=2)
    report(ctx, MONTPELLIER, figures(10, 10, 5, 3), figures(8, 6, 1, 2))
    report(ctx, POISSY, figures(30, 25, 10, 10))
    report(ctx, BORDEAUX, figures(20, 20, 5, 5))
    ctx.clock.set(START - timedelta(days=2))
    report(ctx, TOULOUSE, figures(40, 34, 15, 10, 2), figures(20, 16, 5, 6))
    report(ctx, POISSY, figures(30, 25, 12, 8), plan_blanc=1)
    ctx.clock.set(START)
    drive(ctx, ctx.open("transfer", patient_ref="PAT-0101"), ["escalate"])  # at the ARS
    case = drive(ctx, ctx.open("transfer", patient_ref="PAT-0102"), ["escalate"])
    case = ctx.runner.advance(reference=case.reference, trigger="resolve", login="ars-occ",
                              reason="lit trouvé", data={"receiving_hospital": MONTPELLIER,
                              "means": "road", "date": "2026-11-23"})  # fmt: skip
    assert case.state == "proposed_ars"
    case = drive(ctx, ctx.open("transfer", patient_ref="PAT-0103"), ["escalate"])
    case = ctx.runner.advance(reference=case.reference, trigger="resolve", login="ars-occ",
                              reason="lit trouvé", data={"receiving_hospital": MONTPELLIER,
                              "means": "road", "date": "2026-11-23"})  # fmt: skip
    case = ctx.runner.advance(reference=case.reference, trigger="accept",
                              login=f"etab-{MONTPELLIER}", reason="lit réservé")  # fmt: skip
    assert case.state == "dispatched"
    for n in range(2):
        case = drive(ctx, ctx.open("transfer", patient_ref=f"PAT-02{n:02d}"), ["escalate"] * 3)
        case = ctx.runner.advance(reference=case.reference, trigger="resolve", login="ccs",
                                  reason="EVASAN", data={"receiving_hospital": BORDEAUX,
                                  "means": "air", "date": "2026-11-23",
                                  "evasan_mission": "EVASAN-0007"})  # fmt: skip
        assert case.state == "proposed_national"
    ctx.clock.set(START + timedelta(hours=1))


# -- the same figures, from the tables ---------------------------------------------------------


def expected(ctx: Ctx, holders: str, cases: str, since: datetime) -> dict[str, Any]:
    """Per establishment of the scope (``holders``: a condition on organisation g), its beds;
    its tier and plan blanc from its latest report; its Covid+ patients on ``since`` from the
    latest report then; the open transfers of the cases' scope."""
    with ctx.db.read() as conn:
        balances = conn.execute(
            sa.text(
                "SELECT g.id, g.region, b.item, b.bucket, b.quantity FROM stock_balance b "
                f"JOIN organisation g ON g.id = b.holder WHERE b.item IN "
                f"('bed:reanimation', 'bed:surveillance_continue') AND {holders}"
            )
        ).all()
        r = tables.RESOURCE_REPORT.c  # through the table: JSON and aware datetimes
        in_scope = {
            row.id: row.region
            for row in conn.execute(
                sa.text(f"SELECT g.id, g.region FROM organisation g WHERE {holders}")
            )
        }
        reports = conn.execute(
            sa.select(r.holder, r.at, r.data).where(r.kind == "capacity").order_by(r.id)
        ).all()
        c = tables.CASE.c
        transfers = conn.execute(
            sa.select(c.state, c.fields).where(
                c.kind == "transfer", c.final.is_(False), sa.text(cases)
            )
        ).all()
    est: dict[str, dict[str, Any]] = {}
    for row in balances:
        e = est.setdefault(row.id, {"region": row.region, "armed": 0, "occupied": 0,
                                    "covid": 0, "available": 0})  # fmt: skip
        q = int(row.quantity)
        if row.bucket != "unarmed":
            e["armed"] += q
        if row.bucket in ("occupied_covid", "occupied_other"):
            e["occupied"] += q
        if row.bucket == "occupied_covid":
            e["covid"] += q
        if row.bucket == "available":
            e["available"] += q
    latest: dict[str, dict[str, Any]] = {}
    then: dict[str, int] = {}
    for row in reports:
        if row.holder not in in_scope:
            continue
        latest[row.holder] = dict(row.data)
        if row.at <= since:
            then[row.holder] = sum(
                int(v.get("occupied_covid", 0))
                for k, v in dict(row.data)["categories"].items()
                if k in ("reanimation", "surveillance_continue")
            )
    for org, e in est.items():
        e["tier"] = int(latest.get(org, {}).get("tier", 0))
        e["plan_blanc"] = int(latest.get(org, {}).get("plan_blanc", 0))
    states = [t.state for t in transfers]
    missions = {(t.fields or {}).get("resolve", {}).get("evasan_mission") for t in transfers} - {
        None,
        "",
    }
    return {
        "establishments": est,
        "covid_then": sum(then.values()),
        "regulation": sum(s.endswith("regulation") or s == "requested" for s in states),
        "proposed": sum(s.startswith("proposed_") for s in states),
        "dispatched": states.count("dispatched"),
        "transferred": states.count("transferred"),
        "missions": len(missions),
        "evasan": sum(
            bool((t.fields or {}).get("resolve", {}).get("evasan_mission")) for t in transfers
        ),
    }


def percent(occupied: int, armed: int) -> float:
    return round(100 * occupied / armed, 1)


SCOPES = {
    # login -> (condition on the holder's organisation g, condition on regul_case)
    "ccs": ("1=1", "1=1"),
    "ars-occ": ("g.region = 'OCC'", "regul_case.region = 'OCC'"),
    f"etab-{TOULOUSE}": (
        f"g.id = '{TOULOUSE}'",
        f"(regul_case.org = '{TOULOUSE}')",  # it sends every transfer of the seed
    ),
}


@pytest.mark.parametrize("login", sorted(SCOPES))
def test_capacity_figures_are_the_tables_figures_in_the_callers_scope(
    bweb: Ctx, web: Web, login: str
) -> None:
    seed(web.ctx)
    holders, cases = SCOPES[login]
    now = web.ctx.clock.now()
    since = now - timedelta(days=7)
    want = expected(web.ctx, holders, cases, since)
    est = want["establishments"]
    body = web.client.get("/api/v1/situation", headers=web.token(login)).json()
    panel = body["panels"]["capacity"]
    got = {f["label"]: f["value"] for f in panel["figures"]}

    armed = sum(e["armed"] for e in est.values())
    occupied = sum(e["occupied"] for e in est.values())
    covid = sum(e["covid"] for e in est.values())
    day = since.astimezone(PARIS).strftime("%d/%m/%Y")
    assert got == {
        "Taux d'occupation réa + SC": f"{percent(occupied, armed):.1f} %".replace(".", ","),
        "Lits armés (réa + SC)": armed,
        "Lits occupés (réa + SC)": occupied,
        "Lits disponibles (réa + SC)": sum(e["available"] for e in est.values()),
        "Patients Covid+ en soins critiques": covid,
        f"Évolution depuis le {day}": f"{covid - want['covid_then']:+d}",
        "Établissements à un palier": sum(e["tier"] > 0 for e in est.values()),
        "Établissements en plan blanc": sum(e["plan_blanc"] > 0 for e in est.values()),
        "Transferts en régulation": want["regulation"],
        "Transferts proposés": want["proposed"],
        "Transferts organisés (lit réservé)": want["dispatched"],
        "Patients transférés (dossier à clôturer)": want["transferred"],
        "Missions EVASAN en cours": want["missions"],
        "Patients en mission EVASAN": want["evasan"],
    }
    by_region: dict[str, list[int]] = {}
    for e in est.values():
        sums = by_region.setdefault(e["region"], [0, 0])
        sums[0] += e["occupied"]
        sums[1] += e["armed"]
    assert panel["measure"]["by_region"] == {k: percent(o, a) for k, (o, a) in by_region.items()}
    assert panel["measure"]["label"] == "taux d'occupation réa + SC (%)"
    # the series ends on the Covid+ patients now
    assert panel["series"]["points"][-1]["value"] == covid
    assert len(panel["series"]["points"]) == 8

    if login == "ccs":  # by region
        assert {r["region"] for r in panel["rows"]} == {"OCC", "IDF", "NAQ"}
        for row in panel["rows"]:
            mine = [e for e in est.values() if e["region"] == row["region"]]
            assert row["establishments"] == len(mine)
            assert row["covid"] == sum(e["covid"] for e in mine)
            assert row["plan_blanc"] == sum(e["plan_blanc"] > 0 for e in mine)
            assert row["tiered"] == sum(e["tier"] > 0 for e in mine)
    else:  # by establishment
        assert {r["org"]: (r["tier"], r["plan_blanc"], r["covid"]) for r in panel["rows"]} == {
            org: (e["tier"], e["plan_blanc"], e["covid"]) for org, e in est.items()
        }


def test_the_seed_says_what_the_figures_should_be(bweb: Ctx, web: Web) -> None:
    """The same check with the figures written out, so a wrong expectation cannot hide."""
    seed(web.ctx)
    body = web.client.get("/api/v1/situation", headers=web.token("ars-occ")).json()
    panel = body["panels"]["capacity"]
    got = {f["label"]: f["value"] for f in panel["figures"]}
    # Toulouse: réa 34 armed, 25 occupied (15 Covid), SC 16 armed, 11 occupied (5 Covid);
    # Montpellier: réa 10 armed, 8 occupied (5 Covid), SC 6, 3 (1 Covid); one bed reserved
    assert got["Lits armés (réa + SC)"] == 66
    assert got["Lits occupés (réa + SC)"] == 47
    assert got["Patients Covid+ en soins critiques"] == 26
    assert got["Évolution depuis le 15/11/2026"] == "+4"  # 22 on the 15th: Toulouse +3 réa +1 SC
    assert got["Établissements à un palier"] == 1
    assert got["Établissements en plan blanc"] == 1
    assert (got["Transferts en régulation"], got["Transferts proposés"]) == (1, 3)
    assert got["Transferts organisés (lit réservé)"] == 1
    assert (got["Missions EVASAN en cours"], got["Patients en mission EVASAN"]) == (1, 2)
    assert panel["measure"]["by_region"] == {"OCC": round(100 * 47 / 66, 1)}
    mtp = next(r for r in panel["rows"] if r["org"] == MONTPELLIER)
    assert mtp["available"] == 10 - 8 - 1 + 6 - 3  # the reserved bed is not available


def test_scopes_show_nothing_outside(bweb: Ctx, web: Web) -> None:
    seed(web.ctx)
    ccs = web.client.get("/api/v1/situation", headers=web.token("ccs")).json()
    assert set(ccs["panels"]["capacity"]["measure"]["by_region"]) == {"OCC", "IDF", "NAQ"}
    assert "region_name" in ccs["panels"]["capacity"]["rows"][0]
    ars = web.client.get("/api/v1/situation", headers=web.token("ars-occ")).json()
    panel = ars["panels"]["capacity"]
    assert {r["org"] for r in panel["rows"]} == {TOULOUSE, MONTPELLIER}
    assert set(panel["measure"]["by_region"]) == {"OCC"}
    etab = web.client.get("/api/v1/situation", headers=web.token(f"etab-{TOULOUSE}")).json()
    assert [r["org"] for r in etab["panels"]["capacity"]["rows"]] == [TOULOUSE]
    # the CCS narrowed to a region sees it by establishment
    occ = web.client.get("/api/v1/situation?region=OCC", headers=web.token("ccs")).json()
    assert {r["org"] for r in occ["panels"]["capacity"]["rows"]} == {TOULOUSE, MONTPELLIER}
    # an ARS asking for another region gets nothing
    other = web.client.get("/api/v1/situation?region=IDF", headers=web.token("ars-occ")).json()
    assert other["panels"]["capacity"]["rows"] == []
    assert other["panels"]["capacity"]["measure"]["by_region"] == {}


def test_capacity_csv_is_the_panel_in_french_spreadsheet_csv(bweb: Ctx, web: Web) -> None:
    seed(web.ctx)
    answer = web.client.get("/api/v1/situation/capacity.csv", headers=web.token("ars-occ"))
    assert answer.status_code == 200
    assert answer.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == [
        "Région", "Établissement", "FINESS", "Réa : lits armés", "Réa : lits occupés",
        "SC : lits armés", "SC : lits occupés", "Lits disponibles (réa + SC)",
        "Patients Covid+ (réa + SC)", "Taux d'occupation (%)", "Palier", "Plan blanc (niveau)",
    ]  # fmt: skip
    by_org = {r[2]: r for r in rows[1:]}
    assert set(by_org) == {TOULOUSE, MONTPELLIER}
    assert by_org[TOULOUSE][3:] == ["34", "25", "16", "11", "12", "20", "72", "1", "2"]
    assert by_org[MONTPELLIER][9] == "68,8"  # 11 / 16, the French way
    national = web.client.get("/api/v1/situation/capacity.csv", headers=web.token("ccs"))
    lines = list(csv.reader(io.StringIO(national.content.decode("utf-8-sig")), delimiter=";"))
    assert lines[0][:3] == ["Région", "Nom de la région", "Établissements"]
    assert [line[0] for line in lines[1:]] == ["IDF", "NAQ", "OCC"]


def test_the_change_since_another_date(bweb: Ctx, web: Web) -> None:
    """``since`` is a keyword of the compute function (the framework passes no options)."""
    from engine.actors import load_actor
    from resources.beds.panel import capacity_panel
    from resources.situation import View

    seed(web.ctx)
    now = web.ctx.clock.now()
    with web.ctx.db.read() as conn:
        view = View(load_actor(conn, "ccs"), web.ctx.registry)
        before_all = capacity_panel(conn, view, now, since=START - timedelta(days=30))
        default = capacity_panel(conn, view, now)
    found = dict(before_all.figures)
    covid = found["Patients Covid+ en soins critiques"]
    assert found["Évolution depuis le 23/10/2026"] == f"{covid:+d}"  # nothing then
    assert "Évolution depuis le 15/11/2026" in dict(default.figures)


def test_an_empty_scope_has_no_rate(web: Web) -> None:
    body = web.client.get("/api/v1/situation", headers=web.token("ccs")).json()
    panel = body["panels"]["capacity"]
    assert panel["rows"] == []
    figures_ = {f["label"]: f["value"] for f in panel["figures"]}
    assert figures_["Taux d'occupation réa + SC"] == "—"
    assert figures_["Patients Covid+ en soins critiques"] == 0
    pdf = web.client.get("/api/v1/situation.pdf", headers=web.token("ccs"))
    assert pdf.status_code == 200


def test_the_panel_names_the_ledgers_categories() -> None:
    from resources.beds import core, panel

    assert panel.CRITICAL == core.CRITICAL
    assert tuple(core.item_of(c) for c in core.CRITICAL) == panel.ITEMS


def test_every_open_transfer_state_is_counted_once() -> None:
    from resources.beds import panel
    from workflows import default_registry

    spec = default_registry()["transfer"]
    groups = panel.REGULATION + panel.PROPOSED + panel.DISPATCHED + panel.TRANSFERRED
    assert sorted(groups) == sorted(s.name for s in spec.states if not s.final)
