"""The situation room's PPE panel (« EPI », issue 14) on SQLite and PostgreSQL.

Reports, reserve movements and deliveries go through the real PPE service; the panel's figures
(weeks of cover per item, establishments under 3 weeks and critical, completeness this week,
the 8-week consumption, deliveries awaited, the regional reserve, the national stock) are
checked against the same figures computed here from the tables, for the CCS (everything), the
ARS Occitanie (OCC only) and an establishment (itself only); and its CSV.
"""

from __future__ import annotations

import csv
import io
import json
from statistics import median
from typing import Any

import pytest
import sqlalchemy as sa

from interfaces.app import App
from resources.periods import week_of
from resources.ppe import stock
from resources.ppe.items import ITEMS, parent
from resources.ppe.service import PpeService
from resources.situation import week_starts
from tests.conftest import TOULOUSE, Web

CASTRES = "819900002"  # OCC
MONTPELLIER = "349900001"  # OCC
POISSY = "789900001"  # IDF
W46, W47 = "2026-W46", "2026-W47"  # START (conftest) is in week 47


def service(web: Web) -> tuple[App, PpeService]:
    from engine.settings import load_settings

    ctx = web.ctx
    settings = load_settings(database_url=str(ctx.db.url), notices=False, ppe_enrolment="all")
    app = App(settings, ctx.db, ctx.registry, ctx.runner)
    return app, PpeService(app)


def report(ppe: PpeService, holder: str, week: str, **items: tuple[int, int, int | None]) -> None:
    lines = [
        {"item": k, "on_hand": s, "consumed": c, "crisis": r} for k, (s, c, r) in items.items()
    ]
    ppe.report(
        f"etab-{holder}",
        {"establishment": holder, "week": week, "attested_by": "La directrice", "lines": lines},
    )


def seed(web: Web) -> None:
    app, ppe = service(web)
    app.resources.sweep_obligations()  # this week's reports are expected of every establishment
    report(ppe, TOULOUSE, W46, ffp2_mask=(9000, 3000, 3000), gown=(800, 200, None))
    report(ppe, TOULOUSE, W47, ffp2_mask=(6000, 3000, None), gown=(500, 300, None))
    # a correction: the second version of Toulouse's week 47 is the one that counts
    report(ppe, TOULOUSE, W47, ffp2_mask=(7500, 2500, None), gown=(400, 300, None))
    report(ppe, CASTRES, W47, ffp2_mask=(500, 1800, 2000), gloves=(20000, 5000, 4000))
    report(ppe, MONTPELLIER, W46, ffp2_mask=(40000, 4000, 4000), surgical_mask=(1000, 900, 500))
    report(ppe, POISSY, W47, ffp2_mask=(12000, 2000, 2000), gown=(100, 100, 100))
    move = stock.Movement
    ppe.move("ars-occ", move("in", "ARS-OCC", "ffp2_mask", 100_000, how="purchase"))
    ppe.move("ars-idf", move("in", "ARS-IDF", "surgical_mask", 50_000, how="donation"))
    ppe.move("ccs", move("in", "SPF", "ffp2_mask", 40_000, how="initial"))
    ppe.move("ccs", move("in", "SPF", "surgical_mask_loops", 7_000, how="initial"))
    ppe.move("ars-occ", move("delivery", "GHT-OCC-06", "surgical_mask_ties", 2000,
                             how="manufacturer"))  # fmt: skip
    ppe.move("ars-occ", move("delivery", TOULOUSE, "gloves", 500, how="regional_reserve"))
    ppe.move("ars-idf", move("delivery", "GHT-IDF-01", "gown", 300, how="manufacturer"))


SCOPES = {
    # login -> which organisation rows are in view
    "ccs": lambda org: True,
    "ars-occ": lambda org: org["region"] == "OCC",
    f"etab-{TOULOUSE}": lambda org: org["id"] == TOULOUSE,
}


def expected(web: Web, login: str) -> dict[str, Any]:
    """The panel's figures, computed here from resource_report, stock_balance, obligation."""
    keep = SCOPES[login]
    now = web.ctx.clock.now()
    with web.ctx.db.read() as conn:
        orgs = {r.id: dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM organisation"))}
        reports = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    "SELECT holder, period, version, data FROM resource_report WHERE kind = :k"
                ),
                {"k": stock.KIND},
            )
        ]
        balances = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text("SELECT holder, item, bucket, quantity FROM stock_balance")
            )
        ]
        obligations = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text("SELECT holder, status FROM obligation WHERE kind = :k AND period = :p"),
                {"k": stock.KIND, "p": week_of(now)},
            )
        ]
        national_weeks = {
            key: stock.national_weeks(conn, key, "SPF") for key in stock.NATIONAL_ITEMS
        }
    for r in reports:
        r["data"] = json.loads(r["data"]) if isinstance(r["data"], str) else r["data"]
    reports = [r for r in reports if keep(orgs[r["holder"]])]
    latest: dict[str, dict[str, Any]] = {}
    by_week: dict[tuple[str, str], dict[str, Any]] = {}
    for r in reports:
        have = latest.get(r["holder"])
        if have is None or (r["period"], r["version"]) > (have["period"], have["version"]):
            latest[r["holder"]] = r
        at = by_week.get((r["holder"], r["period"]))
        if at is None or r["version"] > at["version"]:
            by_week[(r["holder"], r["period"])] = r

    def held(kinds: tuple[str, ...], bucket: str, scoped: bool = True) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in balances:
            org = orgs[b["holder"]]
            if org["kind"] in kinds and b["bucket"] == bucket and (not scoped or keep(org)):
                out[parent(b["item"])] = out.get(parent(b["item"]), 0) + int(b["quantity"])
        return out

    transit = held(("hospital", "ght"), "in_transit")
    reserve = held(("ars",), "on_hand")
    rows, regions = {}, {}
    for it in ITEMS:
        lines = [r["data"]["lines"].get(it.key) for r in latest.values()]
        for holder, r in latest.items():
            line = r["data"]["lines"].get(it.key)
            if line and line["weeks"] is not None:
                regions.setdefault(orgs[holder]["region"], []).append(line["weeks"])
        weeks = [line["weeks"] for line in lines if line and line["weeks"] is not None]
        rows[it.key] = {
            "reporting": len(weeks),
            "median_weeks": round(median(weeks), 2) if weeks else None,
            "under_3": sum(1 for w in weeks if w < 3),
            "critical": sum(1 for line in lines if line and line["level"] == "critical"),
            "consumed": sum(
                int(r["data"]["lines"].get(it.key, {}).get("consumed") or 0)
                for (_, period), r in by_week.items()
                if period == week_of(now)
            ),
            "in_transit": transit.get(it.key, 0),
            "reserve": reserve.get(it.key, 0),
        }
    series = [
        (
            week_of(at),
            float(
                sum(
                    int(line.get("consumed") or 0)
                    for (_, period), r in by_week.items()
                    if period == week_of(at)
                    for line in r["data"]["lines"].values()
                )
            ),
        )
        for at in week_starts(now, 8)
    ]
    scoped = [o for o in obligations if keep(orgs[o["holder"]])]
    return {
        "rows": rows,
        "measure": {k: round(median(v), 2) for k, v in regions.items()},
        "series": series,
        "expected": len(scoped),
        "received": sum(1 for o in scoped if o["status"] == "met"),
        "national": held(("spf",), "on_hand", scoped=False),
        "national_weeks": national_weeks,
        "establishments": len(latest),
    }


def figures(panel: dict[str, Any]) -> dict[str, Any]:
    return {f["label"]: f["value"] for f in panel["figures"]}


@pytest.mark.parametrize("login", sorted(SCOPES))
def test_ppe_panel_figures_are_the_tables_figures_in_the_callers_scope(
    web: Web, login: str
) -> None:
    seed(web)
    answer = web.client.get("/api/v1/situation", headers=web.token(login))
    assert answer.status_code == 200, answer.text
    panel = answer.json()["panels"]["ppe"]
    want = expected(web, login)
    got = {r["item_code"]: r for r in panel["rows"]}
    assert [r["item_code"] for r in panel["rows"]] == [it.key for it in ITEMS]
    for key, row in want["rows"].items():
        assert {k: got[key][k] for k in row} == row, key
    assert panel["measure"]["by_region"] == want["measure"]
    assert [(p["period"], p["value"]) for p in panel["series"]["points"]] == want["series"]
    shown = figures(panel)
    assert shown["Établissements déclarants"] == want["establishments"]
    assert shown["Relevés attendus cette semaine"] == want["expected"]
    assert shown["Relevés reçus cette semaine"] == want["received"]
    assert want["expected"] > 0
    national_shown = any(label.startswith("Stock national") for label in shown)
    if login == "ccs":
        assert national_shown
        for key in stock.NATIONAL_ITEMS:
            assert got[key]["national"] == want["national"].get(key, 0)
            # the ratio stock.national_weeks computes, read from the panel
            assert got[key]["national_weeks"] == want["national_weeks"][key]
        assert want["national_weeks"]["ffp2_mask"] is not None
    else:
        assert not national_shown  # the national stock is the national level's
        assert all(r["national"] is None for r in panel["rows"])


def test_ppe_panel_scopes_show_nothing_outside(web: Web) -> None:
    seed(web)
    national = web.client.get("/api/v1/situation", headers=web.token("ccs")).json()
    ppe = national["panels"]["ppe"]
    assert set(ppe["measure"]["by_region"]) == {"OCC", "IDF"}
    ffp2 = next(r for r in ppe["rows"] if r["item_code"] == "ffp2_mask")
    assert ffp2["reporting"] == 4
    assert ffp2["critical"] == 1
    assert ffp2["reserve"] == 100_000
    assert ffp2["national"] == 40_000

    ars = web.client.get("/api/v1/situation", headers=web.token("ars-occ")).json()["panels"]["ppe"]
    assert set(ars["measure"]["by_region"]) == {"OCC"}
    rows = {r["item_code"]: r for r in ars["rows"]}
    assert rows["ffp2_mask"]["reporting"] == 3
    assert rows["gown"]["in_transit"] == 0  # Poissy's GHT's delivery is not Occitanie's
    assert rows["surgical_mask"]["reserve"] == 0  # the ARS Île-de-France's reserve neither
    assert rows["surgical_mask"]["in_transit"] == 2000

    etab = web.client.get("/api/v1/situation", headers=web.token(f"etab-{TOULOUSE}")).json()
    mine = {r["item_code"]: r for r in etab["panels"]["ppe"]["rows"]}
    assert mine["ffp2_mask"]["reporting"] == 1
    assert mine["ffp2_mask"]["median_weeks"] == 2.5  # 7 500 (corrected) ÷ 3 000 (crisis kept)
    assert mine["gloves"]["in_transit"] == 500
    assert mine["surgical_mask"]["in_transit"] == 0
    assert mine["ffp2_mask"]["reserve"] == 0
    assert figures(etab["panels"]["ppe"])["Relevés attendus cette semaine"] == 1

    narrowed = web.client.get("/api/v1/situation?region=IDF", headers=web.token("ars-occ")).json()
    assert narrowed["panels"]["ppe"]["measure"]["by_region"] == {}
    assert all(r["reporting"] == 0 for r in narrowed["panels"]["ppe"]["rows"])


def test_ppe_panel_csv(web: Web) -> None:
    seed(web)
    headers = web.token("ars-occ")
    answer = web.client.get("/api/v1/situation/ppe.csv", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.content.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig")), delimiter=";"))
    assert lines[0] == [
        "Équipement", "Établissements déclarants", "Couverture médiane (semaines)",
        "Sous 3 semaines", "Sous le niveau critique", "Consommation de la semaine",
        "Livraisons attendues", "Réserve régionale", "Stock stratégique national",
    ]  # fmt: skip
    assert [line[0] for line in lines[1:]] == [it.label for it in ITEMS]
    panel = web.client.get("/api/v1/situation", headers=headers).json()["panels"]["ppe"]
    for line, row in zip(lines[1:], panel["rows"], strict=True):
        assert line[1] == str(row["reporting"])
        assert line[3:8] == [
            str(row[k]) for k in ("under_3", "critical", "consumed", "in_transit", "reserve")
        ]
        assert line[8] == ""  # no national stock at the ARS's level
    ffp2 = lines[1 + [it.key for it in ITEMS].index("ffp2_mask")]
    assert ffp2[2] == "2,5"  # median of 2.5 (Toulouse), 0.25 (Castres), 10.0 (Montpellier)


def test_ppe_panel_without_reports_is_empty_not_an_error(web: Web) -> None:
    answer = web.client.get("/api/v1/situation", headers=web.token("ccs"))
    assert answer.status_code == 200, answer.text
    panel = answer.json()["panels"]["ppe"]
    assert panel["measure"]["by_region"] == {}
    assert all(r["reporting"] == 0 and r["median_weeks"] is None for r in panel["rows"])
    assert [p["value"] for p in panel["series"]["points"]] == [0.0] * 8
    assert figures(panel)["Complétude cette semaine"] == "—"
