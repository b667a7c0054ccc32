"""The situation room (issue 14): counts, panels, map, CSV, JSON and PDF, scoped as the queue.

Every figure the page, the API, the CSV and the PDF show is checked against the same figure
computed here from the tables, on SQLite and PostgreSQL; the scope is checked for the CCS
(everything), the ARS Occitanie (OCC only) and an establishment (itself only).
"""

from __future__ import annotations

import csv
import html
import io
import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine.tables import DEADLINE
from interfaces.situation import csv_text
from resources.situation import Column, PanelData
from tests.conftest import LENDER, START, TOULOUSE, Ctx, Web, drive, make_case

POISSY = "789900001"  # Île-de-France
MONTPELLIER = "349900001"  # Occitanie
ECMO_REPORT = "widget_count"  # a kind of report no module registers: shown by its code


def seed(ctx: Ctx) -> dict[str, Any]:
    """Cases in Occitanie and Île-de-France, one escalated, one in incident; obligations."""
    a = make_case(ctx, "ecmo", hospital=TOULOUSE)
    drive(ctx, a, ["escalate"])
    make_case(ctx, "ecmo", hospital=MONTPELLIER)
    make_case(ctx, "ppe", hospital=TOULOUSE)
    c = make_case(ctx, "transfer", hospital=POISSY)
    make_case(ctx, "ecmo", hospital=POISSY)
    with ctx.db.write() as conn:
        conn.execute(sa.text("UPDATE regul_case SET incident = true WHERE id = :i"), {"i": c.id})
        rows = [
            (TOULOUSE, "2026-W46", "met"),
            (TOULOUSE, "2026-W47", "open"),
            (LENDER, "2026-W47", "late"),
            (MONTPELLIER, "2026-W47", "met"),
            (POISSY, "2026-W47", "open"),
            (POISSY, "2026-W48", "open"),  # not yet due
        ]
        for holder, period, status in rows:
            due = START - timedelta(hours=1) if period != "2026-W48" else START + timedelta(days=3)
            conn.execute(
                sa.text(
                    "INSERT INTO obligation (kind, holder, period, due_at, next_at, reminders, "
                    "escalated, status, created_at) VALUES (:k, :h, :p, :d, :d, 0, :e, :s, :c)"
                ),
                {
                    "k": ECMO_REPORT, "h": holder, "p": period, "d": due,
                    "e": status == "late", "s": status, "c": START - timedelta(days=7),
                },
            )  # fmt: skip
    ctx.clock.set(START + timedelta(hours=3))  # the first deadlines have passed
    return {"incident": c.reference}


def expected_counts(ctx: Ctx, where: str, role: str) -> dict[str, Any]:
    """The counts, computed from the tables."""
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        cases = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(f"SELECT * FROM regul_case WHERE final = false AND {where}")
            )
        ]
        d = DEADLINE.c  # read through the table: aware datetimes on both databases
        due = {
            r.case_id: r.due_at
            for r in conn.execute(sa.select(d.case_id, d.due_at).where(d.status == "open"))
        }

    def overdue(case: dict[str, Any]) -> bool:
        at = due.get(case["id"])
        return at is not None and at <= now

    by_kind: dict[str, int] = {}
    for case in cases:
        by_kind[case["kind"]] = by_kind.get(case["kind"], 0) + 1
    return {
        "open": len(cases),
        "waiting_for_my_level": sum(1 for c in cases if c["level"] == role),
        "overdue": sum(1 for c in cases if overdue(c)),
        "incidents": sum(1 for c in cases if c["incident"]),
        "by_workflow": {k: by_kind.get(k, 0) for k in ("ecmo", "ppe", "transfer")},
    }


def expected_cases_rows(ctx: Ctx, where: str) -> dict[tuple[str, str, str], tuple[int, int]]:
    with ctx.db.read() as conn:
        found = conn.execute(
            sa.text(
                "SELECT region, kind, state, count(*) AS total, "
                "sum(CASE WHEN final THEN 0 ELSE 1 END) AS open "
                f"FROM regul_case WHERE {where} GROUP BY region, kind, state"
            )
        )
        return {(r.region, r.kind, r.state): (int(r.open), int(r.total)) for r in found}


def expected_reports(ctx: Ctx, where: str) -> dict[str, tuple[int, int, int]]:
    """(expected, received, late) per region, from the obligation table."""
    with ctx.db.read() as conn:
        found = conn.execute(
            sa.text(
                "SELECT g.region, count(*) AS expected, "
                "sum(CASE WHEN o.status = 'met' THEN 1 ELSE 0 END) AS received, "
                "sum(CASE WHEN o.status = 'late' THEN 1 ELSE 0 END) AS late "
                "FROM obligation o JOIN organisation g ON g.id = o.holder "
                f"WHERE o.due_at <= :now AND {where} GROUP BY g.region"
            ),
            {"now": ctx.clock.now()},
        )
        return {r.region: (int(r.expected), int(r.received), int(r.late)) for r in found}


SCOPES = {
    # login -> (condition on regul_case, condition on the holder's organisation g, role)
    "ccs": ("1=1", "1=1", "ccs"),
    "ars-occ": ("region = 'OCC'", "g.region = 'OCC'", "ars"),
    f"etab-{TOULOUSE}": (f"org = '{TOULOUSE}'", f"g.id = '{TOULOUSE}'", "establishment"),
}


@pytest.mark.parametrize("login", sorted(SCOPES))
def test_api_figures_are_the_tables_figures_in_the_callers_scope(web: Web, login: str) -> None:
    seed(web.ctx)
    cases_where, holders_where, role = SCOPES[login]
    answer = web.client.get("/api/v1/situation", headers=web.token(login))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["counts"] == expected_counts(web.ctx, cases_where, role)

    cases = body["panels"]["cases"]
    want = expected_cases_rows(web.ctx, cases_where)
    assert sum(r["total"] for r in cases["rows"]) == sum(t for _, t in want.values())
    assert len(cases["rows"]) == len(want)
    by_region: dict[str, int] = {}
    for (region, _, _), (open_, _) in want.items():
        by_region[region] = by_region.get(region, 0) + open_
    assert cases["measure"]["by_region"] == by_region

    reports = body["panels"]["reports"]
    want_reports = expected_reports(web.ctx, holders_where)
    got: dict[str, tuple[int, int, int]] = {}
    for r in reports["rows"]:
        e, rc, la = got.get(r["region"], (0, 0, 0))
        got[r["region"]] = (e + r["expected"], rc + r["received"], la + r["late"])
        assert r["missing"] == r["expected"] - r["received"]
    assert got == want_reports
    assert reports["measure"]["by_region"] == {k: e - r for k, (e, r, _) in want_reports.items()}


def test_scopes_show_nothing_outside(web: Web) -> None:
    seed(web.ctx)
    national = web.client.get("/api/v1/situation", headers=web.token("ccs")).json()
    assert set(national["panels"]["cases"]["measure"]["by_region"]) == {"OCC", "IDF"}
    assert set(national["panels"]["reports"]["measure"]["by_region"]) == {"OCC", "IDF"}

    ars = web.client.get("/api/v1/situation", headers=web.token("ars-occ")).json()
    assert {r["region"] for r in ars["panels"]["cases"]["rows"]} == {"OCC"}
    assert {r["region"] for r in ars["panels"]["reports"]["rows"]} == {"OCC"}

    etab = web.client.get("/api/v1/situation", headers=web.token(f"etab-{TOULOUSE}")).json()
    assert etab["counts"]["open"] == 2  # its ECMO and PPE requests, not Montpellier's
    reports = etab["panels"]["reports"]["rows"]
    assert sum(r["expected"] for r in reports) == 2  # its own two weeks, not the GHT's lender

    # asking for another region narrows to nothing, never widens
    other = web.client.get("/api/v1/situation?region=IDF", headers=web.token("ars-occ")).json()
    assert other["counts"]["open"] == 0
    assert other["panels"]["cases"]["rows"] == []
    # the CCS narrows to one region
    occ = web.client.get("/api/v1/situation?region=occ", headers=web.token("ccs")).json()
    assert set(occ["panels"]["cases"]["measure"]["by_region"]) == {"OCC"}


def test_bad_region_and_unknown_panel_are_refused(web: Web) -> None:
    headers = web.token("ccs")
    bad = web.client.get("/api/v1/situation?region=ZZZ", headers=headers)
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("'ZZZ' is not a region code")
    assert web.client.get("/api/v1/situation?region=<b>", headers=headers).status_code == 422
    missing = web.client.get("/api/v1/situation/nothing.csv", headers=headers)
    assert missing.status_code == 404
    assert web.client.get("/api/v1/situation").status_code == 401


def test_panel_csv_is_french_spreadsheet_csv_with_the_same_figures(web: Web) -> None:
    seed(web.ctx)
    headers = web.token("ars-occ")
    answer = web.client.get("/api/v1/situation/reports.csv", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    raw = answer.content
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0] == [
        "Région", "Nom de la région", "Compte rendu", "Attendus", "Reçus", "Manquants",
        "Dont signalés à l'ARS",
    ]  # fmt: skip
    assert rows[1] == ["OCC", "Occitanie", ECMO_REPORT, "4", "2", "2", "1"]
    cases = web.client.get("/api/v1/situation/cases.csv", headers=headers).content
    lines = list(csv.reader(io.StringIO(cases.decode("utf-8-sig")), delimiter=";"))
    assert lines[0][:2] == ["Région", "Nom de la région"]
    assert {line[0] for line in lines[1:]} == {"OCC"}


def test_csv_cells_cannot_run_as_formulas() -> None:
    data = PanelData(
        columns=(Column("a", "A"), Column("b", "B", numeric=True)),
        rows=[{"a": '=HYPERLINK("http://x")', "b": 2.5}, {"a": "ok; -1+1", "b": None}],
    )
    text = csv_text(data)
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    assert rows[1] == ['\'=HYPERLINK("http://x")', "2,5"]
    assert rows[2][0] == "ok; '-1+1"


def test_pdf_opens_and_holds_the_figures(web: Web) -> None:
    from pypdf import PdfReader

    seed(web.ctx)
    answer = web.client.get("/api/v1/situation.pdf", headers=web.token("ars-occ"))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(answer.content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Point de situation" in text
    assert "Périmètre : région Occitanie" in text
    assert "22/11/2026" in text  # the date, Paris time
    counts = expected_counts(web.ctx, "region = 'OCC'", "ars")
    assert f"Dossiers en cours {counts['open']}" in " ".join(text.split())
    assert "Comptes rendus attendus" in text
    assert "Occitanie" in text
    assert "Île-de-France" not in text
    assert "IDF" not in text


def test_desk_situation_page_after_login_with_map_and_table(web: Web) -> None:
    seed(web.ctx)
    web.accounts.set_password("ars-occ", "correct horse battery staple")
    page = web.client.get("/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    answer = web.client.post(
        "/login",
        data={"login": "ars-occ", "password": "correct horse battery staple", "csrf": csrf},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/situation"
    html = web.client.get("/situation").text
    assert "<svg" in html
    assert "style=" not in html.split("<main")[1]
    assert 'href="/situation?region=OCC"' in html
    assert 'href="/situation?region=IDF"' not in html  # not the ARS Occitanie's to open
    assert "Occitanie (OCC)" in html
    csv_link = web.client.get("/situation/cases.csv")
    assert csv_link.status_code == 200
    assert csv_link.content.startswith(b"\xef\xbb\xbf")
    report = web.client.get("/situation/report")
    assert report.status_code == 200
    assert "Point de situation" in report.text
    pdf = web.client.get("/situation.pdf")
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")


def test_establishment_lands_on_its_queue_and_sees_itself_only(web: Web) -> None:
    seed(web.ctx)
    login = f"etab-{TOULOUSE}"
    web.accounts.set_password(login, "correct horse battery staple")
    page = web.client.get("/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    answer = web.client.post(
        "/login",
        data={"login": login, "password": "correct horse battery staple", "csrf": csrf},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/"
    html = web.client.get("/situation").text
    assert "<h1>Situation — CHU de Toulouse</h1>" in html
    assert 'href="/situation?region=' not in html  # nothing wider to open
    assert "Île-de-France" not in html


def test_json_is_what_the_desk_csv_says(web: Web) -> None:
    seed(web.ctx)
    headers = web.token("ccs")
    body = web.client.get("/api/v1/situation", headers=headers).json()
    lines = web.client.get("/api/v1/situation/cases.csv", headers=headers).content
    rows = list(csv.reader(io.StringIO(lines.decode("utf-8-sig")), delimiter=";"))[1:]
    assert [int(r[5]) for r in rows] == [r["total"] for r in body["panels"]["cases"]["rows"]]
    json.dumps(body)  # plain JSON


def test_a_registered_panel_plugs_into_the_page_the_api_the_csv_and_the_pdf(web: Web) -> None:
    """What a resource module does: ``register_panel`` at import, nothing else."""
    from pypdf import PdfReader

    from resources import situation

    def consoles(conn: Any, view: situation.View, now: Any) -> PanelData:
        where = view.holders()
        query = sa.select(sa.func.count()).select_from(situation._ORG)
        query = query.where(situation._ORG.c.kind == "hospital")
        if where is not None:
            query = query.where(where)
        n = int(conn.execute(query).scalar_one())
        region = view.actor.region or "OCC"
        return PanelData(
            columns=(Column("region", "Région"), Column("consoles", "Consoles", numeric=True)),
            rows=[{"region": region, "consoles": n}],
            measure={region: n},
            measure_label="consoles disponibles",
            figures=[("Consoles disponibles", n)],
        )

    situation.register_panel("widgets", "Consoles de test", consoles, order=50)
    try:
        headers = web.token("ars-occ")
        body = web.client.get("/api/v1/situation", headers=headers).json()
        names = list(body["panels"])  # by order (the resource modules' panels in between)
        assert (names[0], names[-1]) == ("cases", "reports")
        assert names == [p.name for p in situation.panels()]
        assert "widgets" in names
        with web.ctx.db.read() as conn:
            hospitals = conn.execute(
                sa.text(
                    "SELECT count(*) FROM organisation WHERE kind = 'hospital' AND region = 'OCC'"
                )
            ).scalar_one()
        assert body["panels"]["widgets"]["measure"]["by_region"] == {"OCC": hospitals}
        lines = web.client.get("/api/v1/situation/widgets.csv", headers=headers).content
        assert lines.decode("utf-8-sig").splitlines() == ["Région;Consoles", f"OCC;{hospitals}"]
        pdf = web.client.get("/api/v1/situation.pdf", headers=headers).content
        text = " ".join(
            " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split()
        )
        assert f"Consoles disponibles {hospitals}" in text
        web.login("ars-occ")
        assert "Consoles de test" in web.client.get("/situation").text
    finally:
        situation.PANELS.pop("widgets")


def test_register_panel_refuses_names_unfit_for_a_url() -> None:
    from resources.situation import register_panel

    for name in ("Ecmo", "ppe/stock", "", "é"):
        with pytest.raises(ValueError, match="lowercase"):
            register_panel(name, "x", lambda *_: PanelData((), []))


def test_desk_bad_region_is_a_french_page(web: Web) -> None:
    web.login("ccs")
    answer = web.client.get("/situation?region=ZZZ")
    assert answer.status_code == 422
    assert "ZZZ n'est pas un code de région" in html.unescape(answer.text)
    missing = web.client.get("/situation/nothing.csv")
    assert missing.status_code == 404
    assert "Aucun tableau" in missing.text


def test_a_registered_kind_of_report_is_named_in_french(monkeypatch: pytest.MonkeyPatch) -> None:
    from resources import catalogue
    from resources.obligations import ObligationKind
    from resources.periods import Due
    from resources.situation import report_label

    kind = ObligationKind(
        name="widget_count",
        report="L'inventaire hebdomadaire des widgets",
        due=Due.parse("monday 12:00", weekly=True),
        escalate_after=timedelta(hours=24),
    )
    monkeypatch.setitem(catalogue.KINDS, "widget_count", lambda _settings: kind)
    assert report_label("widget_count") == "L'inventaire hebdomadaire des widgets"
    assert report_label("nothing_registered") == "nothing_registered"


def test_detail_rows_are_escaped_and_numbers_written_the_french_way() -> None:
    from interfaces.situation import _row_html

    data = PanelData(
        columns=(Column("name", "Nom"), Column("n", "Nombre", numeric=True)),
        rows=[{"name": "<b>CH</b> & co", "n": 1234}],
    )
    assert str(_row_html(data, data.rows[0])) == (
        '<tr><td>&lt;b&gt;CH&lt;/b&gt; &amp; co</td><td class="num">1\u202f234</td></tr>'
    )
