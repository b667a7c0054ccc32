"""The situation room's ECMO panels (issue 14): a small fleet built through the real services,
then every figure of the panels checked against the same figure computed here from the
ledger tables (``stock_balance``, ``resource_report``, ``regul_case`` and its deadline), in
the scope of the CCS (everything, the national stock included), the ARS Occitanie (OCC only)
and an establishment (itself only); the CSV carries the panel.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from engine.tables import DEADLINE
from resources.ecmo import NATIONAL
from resources.ecmo_panel import last_due_week
from resources.periods import Due
from tests.conftest import LENDER, TOULOUSE, Ctx, Web
from tests.test_ecmo_fleet import MANTES, MARSEILLE, F, at_review, equip, fire, resolve, with_fleet

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # a Thursday: week 2026-W48's inventory is due
DUE_WEEK = "2026-W48"


@pytest.fixture
def fleet(ctx: Ctx) -> F:
    return with_fleet(ctx)


@pytest.fixture
def fweb(fleet: F, web: Web) -> tuple[F, Web]:
    return fleet, web


def figures_of(panel: dict[str, Any]) -> dict[str, Any]:
    return {f["label"]: f["value"] for f in panel["figures"]}


def build(f: F) -> dict[str, str]:
    """Consoles in OCC (two centres), PAC and IDF and the national stock; three loans (one
    overdue at NOW, one due within 7 days, one later); inventories current or stale."""
    equip(f, LENDER, ["SN-1", "SN-2", "SN-3"], circuits=5)
    equip(f, TOULOUSE, ["SN-T1"], circuits=1)
    equip(f, MARSEILLE, ["SN-M1", "SN-M2"], circuits=2)
    equip(f, MANTES, ["SN-I1"])
    equip(f, NATIONAL, ["NAT-1", "NAT-2"], circuits=4)
    f.fleet.set_status(f"etab-{LENDER}", serial="SN-2", status="maintenance", reason="révision")
    f.fleet.set_status(f"etab-{TOULOUSE}", serial="SN-T1", status="in_use", reason="patient")

    late = at_review(f).reference
    resolve(f, late, "umac-sud", console_serials="SN-1", circuits_lent=2, return_by="2026-11-24")
    fire(f, late, f"etab-{TOULOUSE}", "start")
    soon = at_review(f, "national_regulation").reference
    f.ctx.runner.advance(
        reference=soon, trigger="resolve", login="ccs", reason="stock national",
        data={"source": "national", "return_by": "2026-11-30", "console_serials": "NAT-1"},
    )  # fmt: skip
    fire(f, soon, f"etab-{TOULOUSE}", "start")
    later = at_review(f).reference
    resolve(f, later, "umac-sud", console_serials="SN-3", return_by="2026-12-20")  # dispatched

    f.ctx.clock.set(NOW)
    figures = {"available": 0, "reserved": 1, "in_use": 0, "lent": 1, "maintenance": 1,
               "circuits": 3}  # fmt: skip
    f.fleet.report(f"etab-{LENDER}", holder=LENDER, period=DUE_WEEK, figures=figures)
    f.fleet.report(f"etab-{MANTES}", holder=MANTES, period=DUE_WEEK, figures=figures)
    f.fleet.report(f"etab-{TOULOUSE}", holder=TOULOUSE, period="2026-W47", figures=figures)
    return {"late": late, "soon": soon, "later": later}  # MARSEILLE never reported


# -- the same figures, from the tables ---------------------------------------------------------


def ledger_figures(ctx: Ctx, where: str) -> dict[str, dict[str, int]]:
    """holder -> its consoles by status and circuits available, from ``stock_balance``."""
    out: dict[str, dict[str, int]] = {}
    with ctx.db.read() as conn:
        found = conn.execute(
            sa.text(
                "SELECT b.holder, b.item, b.bucket, b.quantity FROM stock_balance b "
                "JOIN organisation g ON g.id = b.holder "
                f"WHERE (b.item LIKE 'console:%' OR b.item = 'circuit') AND {where}"
            )
        )
        for holder, it, bucket, qty in found:
            row = out.setdefault(
                holder, dict.fromkeys(("consoles", "available", "in_use", "lent", "reserved",
                                       "maintenance", "circuits"), 0),
            )  # fmt: skip
            if it == "circuit":
                row["circuits"] += qty if bucket == "available" else 0
                continue
            row["consoles"] += qty
            key = "lent" if bucket == "in_transit" else bucket
            row[key] += qty
    return out


def regions_of(ctx: Ctx) -> dict[str, str | None]:
    with ctx.db.read() as conn:
        return dict(conn.execute(sa.text("SELECT id, region FROM organisation")).all())


def stale_centres(ctx: Ctx, holders: list[str]) -> set[str]:
    with ctx.db.read() as conn:
        last = dict(
            conn.execute(
                sa.text(
                    "SELECT holder, max(period) FROM resource_report "
                    "WHERE kind = 'ecmo_inventory' GROUP BY holder"
                )
            ).all()
        )
    return {h for h in holders if h != NATIONAL and (last.get(h) or "") < DUE_WEEK}


def loans_of(ctx: Ctx, where: str) -> dict[str, tuple[bool, bool]]:
    """case id -> (overdue, due within 7 days), from the cases and their open deadline."""
    with ctx.db.read() as conn:
        cases = conn.execute(
            sa.text(
                "SELECT id, state FROM regul_case WHERE kind = 'ecmo' "
                f"AND state IN ('dispatched', 'in_service', 'return_declared') AND {where}"
            )
        ).all()
        d = DEADLINE.c
        due = dict(conn.execute(sa.select(d.case_id, d.due_at).where(d.status == "open")).all())
    out = {}
    for cid, state in cases:
        at = due.get(cid)
        live = state == "in_service" and at is not None
        days = (at - NOW).total_seconds() / 86400 if live else None
        out[f"ECMO-{cid:06d}"] = (
            days is not None and days <= 0,
            days is not None and 0 < days <= 7,
        )
    return out


SCOPES = {
    # login -> (condition on the holder's organisation g, on regul_case, rows by establishment)
    "ccs": ("1=1", "1=1", False),
    "ars-occ": ("g.region = 'OCC'", "region = 'OCC'", True),
    f"etab-{LENDER}": (
        f"g.id = '{LENDER}'",
        f"(org = '{LENDER}' OR id IN ({{lent}}))",
        True,
    ),
}


@pytest.mark.parametrize("login", sorted(SCOPES))
def test_ecmo_panel_figures_are_the_ledgers_in_the_callers_scope(
    fweb: tuple[F, Web], login: str
) -> None:
    f, web = fweb
    refs = build(f)
    holders_where, cases_where, per_place = SCOPES[login]
    lent_ids = ", ".join(str(int(refs[k].split("-")[1])) for k in ("late", "later"))
    cases_where = cases_where.replace("{lent}", lent_ids)

    body = web.client.get("/api/v1/situation", headers=web.token(login)).json()
    panel = body["panels"]["ecmo"]
    want = ledger_figures(f.ctx, holders_where)
    where = regions_of(f.ctx)
    stale = stale_centres(f.ctx, [h for h, row in want.items() if row["consoles"]])
    centres = {h: row for h, row in want.items() if h != NATIONAL}

    keys = ("consoles", "available", "in_use", "lent", "reserved", "maintenance", "circuits")
    if per_place:
        got = {r["holder"]: {k: r[k] for k in keys} for r in panel["rows"]}
        assert got == want
        assert {r["holder"] for r in panel["rows"] if r["stale_flag"]} == stale
    else:
        by_region: dict[str, dict[str, int]] = {}
        for h, row in centres.items():
            acc = by_region.setdefault(str(where[h]), dict.fromkeys(keys, 0))
            for k in keys:
                acc[k] += row[k]
        got = {r["region"]: {k: r[k] for k in keys} for r in panel["rows"] if r["region"] != "—"}
        assert got == by_region
        stale_by_region: dict[str, int] = {}
        for h in stale:
            stale_by_region[str(where[h])] = stale_by_region.get(str(where[h]), 0) + 1
        assert {r["region"]: r["stale"] for r in panel["rows"] if r["stale"]} == stale_by_region

    measure: dict[str, int] = {}
    for h, row in centres.items():
        measure[str(where[h])] = measure.get(str(where[h]), 0) + row["available"]
    assert panel["measure"]["by_region"] == measure
    figures = figures_of(panel)
    assert figures["Consoles ECMO des établissements"] == sum(
        r["consoles"] for r in centres.values()
    )
    assert figures["Consoles disponibles"] == sum(r["available"] for r in centres.values())
    assert figures["Consoles en service"] == sum(r["in_use"] for r in centres.values())
    assert figures["Consoles prêtées"] == sum(r["lent"] for r in centres.values())
    assert figures["Circuits disponibles"] == sum(r["circuits"] for r in centres.values())
    assert figures["Centres à l'inventaire en retard"] == len(stale)
    if NATIONAL in want:
        national = want[NATIONAL]
        assert figures["Stock national : consoles disponibles"] == national["available"] == 1
        assert figures["Stock national : consoles prêtées"] == national["lent"] == 1
    else:
        assert not any(label.startswith("Stock national") for label in figures)

    loans = body["panels"]["ecmo_loans"]
    expected = loans_of(f.ctx, cases_where)
    due = {k: v for k, v in expected.items() if any(v)}  # the rows: overdue or within 7 days
    assert {r["case"]: (r["overdue"], r["due_soon"]) for r in loans["rows"]} == due
    loan_figures = figures_of(loans)
    assert loan_figures["Prêts en cours"] == len(expected)
    assert loan_figures["Prêts en retard"] == sum(1 for o, _ in expected.values() if o)
    assert loan_figures["Prêts à rendre sous 7 jours"] == sum(1 for _, s in expected.values() if s)


def test_ecmo_panel_scopes_and_what_the_build_gives(fweb: tuple[F, Web]) -> None:
    f, web = fweb
    refs = build(f)
    ccs = web.client.get("/api/v1/situation", headers=web.token("ccs")).json()["panels"]
    rows = {r["region"]: r for r in ccs["ecmo"]["rows"]}
    assert set(rows) == {"OCC", "PAC", "IDF", "—"}  # the national stock on a row of its own
    assert (rows["OCC"]["consoles"], rows["OCC"]["available"], rows["OCC"]["in_use"]) == (4, 0, 1)
    assert (rows["OCC"]["lent"], rows["OCC"]["reserved"], rows["OCC"]["maintenance"]) == (1, 1, 1)
    assert (rows["OCC"]["circuits"], rows["OCC"]["stale"]) == (4, 1)  # Toulouse's W47
    assert rows["PAC"]["stale"] == 1  # Marseille never reported
    assert ccs["ecmo"]["measure"]["by_region"] == {"OCC": 0, "PAC": 2, "IDF": 1}
    loans = {r["case"]: r["due"] for r in ccs["ecmo_loans"]["rows"]}
    assert loans == {refs["late"]: "en retard", refs["soon"]: "sous 7 jours"}  # not "later"
    assert figures_of(ccs["ecmo_loans"])["Prêts en cours"] == 3
    assert ccs["ecmo_loans"]["measure"]["by_region"] == {"OCC": 3}
    assert ccs["ecmo_loans"]["rows"][0]["case"] == refs["late"]  # the overdue first

    ars = web.client.get("/api/v1/situation", headers=web.token("ars-occ")).json()["panels"]
    assert {r["region"] for r in ars["ecmo"]["rows"]} == {"OCC"}
    assert {r["holder"] for r in ars["ecmo"]["rows"]} == {LENDER, TOULOUSE}
    toulouse = next(r for r in ars["ecmo"]["rows"] if r["holder"] == TOULOUSE)
    assert (toulouse["last_period"], toulouse["stale_flag"]) == ("2026-W47", True)
    assert toulouse["last_inventory"] == "26/11/2026 (2026-W47)"
    assert set(ars["ecmo"]["measure"]["by_region"]) == {"OCC"}
    assert not any(k.startswith("Stock national") for k in figures_of(ars["ecmo"]))

    etab = web.client.get("/api/v1/situation", headers=web.token(f"etab-{LENDER}")).json()
    assert [r["holder"] for r in etab["panels"]["ecmo"]["rows"]] == [LENDER]
    assert [r["case"] for r in etab["panels"]["ecmo_loans"]["rows"]] == [refs["late"]]
    assert figures_of(etab["panels"]["ecmo_loans"])["Prêts en cours"] == 2  # it lends both
    mantes = web.client.get("/api/v1/situation", headers=web.token(f"etab-{MANTES}")).json()
    assert mantes["panels"]["ecmo_loans"]["rows"] == []

    # the CCS narrowed to Occitanie: its establishments, without the national stock
    occ = web.client.get("/api/v1/situation?region=OCC", headers=web.token("ccs")).json()
    assert {r["holder"] for r in occ["panels"]["ecmo"]["rows"]} == {LENDER, TOULOUSE}


def test_ecmo_csv_has_the_panel(fweb: tuple[F, Web]) -> None:
    f, web = fweb
    build(f)
    answer = web.client.get("/api/v1/situation/ecmo.csv", headers=web.token("ars-occ"))
    assert answer.status_code == 200, answer.text
    assert answer.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == [
        "Région", "Nom", "Consoles", "Disponibles", "En service", "Prêtées", "Réservées",
        "En maintenance", "Circuits disponibles", "Dernier inventaire", "Inventaires en retard",
    ]  # fmt: skip
    assert len(rows) == 3
    assert {r[0] for r in rows[1:]} == {"OCC"}
    toulouse = next(r for r in rows[1:] if r[1] == "CHU de Toulouse")
    assert toulouse[2:5] == ["1", "0", "1"]
    assert toulouse[-2:] == ["26/11/2026 (2026-W47)", "1"]
    loans = web.client.get("/api/v1/situation/ecmo_loans.csv", headers=web.token("ccs"))
    lines = list(csv.reader(io.StringIO(loans.content.decode("utf-8-sig")), delimiter=";"))
    assert lines[0][0] == "Dossier"
    assert len(lines) == 3
    assert "en retard" in lines[1]


def test_last_due_week_turns_at_the_due_time() -> None:
    due = Due.parse("monday 12:00", weekly=True)  # 11:00 UTC in winter
    assert last_due_week(datetime(2026, 11, 23, 10, 59, tzinfo=UTC), due) == "2026-W47"
    assert last_due_week(datetime(2026, 11, 23, 11, 0, tzinfo=UTC), due) == "2026-W48"
    assert last_due_week(NOW, due) == DUE_WEEK
