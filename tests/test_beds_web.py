"""Critical-care capacity over HTTP: the API (reports, file import, candidates, deprogramming
feed) and the desk's /beds page (report form, French errors, nothing written on error)."""

from __future__ import annotations

from io import BytesIO

from tests.conftest import TOULOUSE, Web

MONTPELLIER = "349900001"
REA = {"installed": 20, "armed": 18, "occupied_covid": 8, "occupied_other": 6}


def test_api_reports_lists_and_finds_candidates(web: Web) -> None:
    headers = web.token(f"etab-{MONTPELLIER}")
    answer = web.client.post("/api/v1/beds/reports", headers=headers,
                             json={"holder": MONTPELLIER, "figures": {"reanimation": REA}})  # fmt: skip
    assert answer.status_code == 201, answer.text
    ars = web.token("ars-occ")
    (status,) = web.client.get("/api/v1/beds", headers=ars).json()
    assert status["beds"]["reanimation"]["available"] == 4
    found = web.client.get("/api/v1/beds/candidates", headers=ars,
                           params={"category": "reanimation", "origin": TOULOUSE}).json()  # fmt: skip
    assert [(c["org"], c["free"]) for c in found] == [(MONTPELLIER, 4)]
    assert web.client.get("/api/v1/beds/candidates", headers=web.token("ars-idf"),
                          params={"category": "reanimation"}).json() == []  # fmt: skip
    outside = web.client.post("/api/v1/beds/reports", headers=web.token("ars-idf"),
                              json={"holder": MONTPELLIER, "figures": {"reanimation": REA}})  # fmt: skip
    assert outside.status_code == 404
    bad = web.client.post("/api/v1/beds/reports", headers=headers,
                          json={"holder": MONTPELLIER, "figures": {"reanimation": {**REA, "armed": 30}}})  # fmt: skip
    assert bad.status_code == 422
    assert "armed beds" in bad.json()["detail"]


def test_api_file_import_lists_french_errors_and_writes_nothing(web: Web) -> None:
    headers = web.token("ars-occ")
    before = web.ctx.snapshot()
    text = ("finess;categorie;installes;armes;occupes_covid;occupes_non_covid\n"
            f"{TOULOUSE};reanimation;10;12;1;1\n{MONTPELLIER};reanimation;10;8;1;1\n")  # fmt: skip
    answer = web.client.post("/api/v1/beds/reports/file", headers=headers,
                             files={"file": ("c.csv", BytesIO(text.encode()), "text/csv")})  # fmt: skip
    assert answer.status_code == 422
    assert answer.json()["errors"] == ["ligne 2 : 12 lits armés pour 10 lits installés"]
    assert web.ctx.snapshot() == before


def test_api_xlsx_import(web: Web) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(
        ["FINESS", "Catégorie", "Installés", "Armés", "Occupés Covid", "Occupés non Covid"]
    )
    sheet.append([TOULOUSE, "reanimation", 30, 25, 10, 10])
    buffer = BytesIO()
    book.save(buffer)
    answer = web.client.post("/api/v1/beds/reports/file", headers=web.token("ars-occ"),
                             files={"file": ("c.xlsx", BytesIO(buffer.getvalue()), "application/octet-stream")})  # fmt: skip
    assert answer.status_code == 201, answer.text
    (status,) = web.client.get("/api/v1/beds", headers=web.token("ars-occ")).json()
    assert status["beds"]["reanimation"]["available"] == 5


def test_desk_page_report_form_and_deprogramming(web: Web) -> None:
    csrf = web.login(f"etab-{TOULOUSE}")
    page = web.client.get("/beds")
    assert page.status_code == 200
    assert "Lits de soins critiques" in page.text
    before = web.ctx.snapshot()
    refused = web.client.post("/beds/report", data={
        "csrf": csrf, "holder": TOULOUSE, "reanimation_installed": "10",
        "reanimation_armed": "12"}, follow_redirects=False)  # fmt: skip
    assert refused.status_code == 422
    assert "armés" in refused.text
    assert web.ctx.snapshot() == before
    done = web.client.post("/beds/report", data={
        "csrf": csrf, "holder": TOULOUSE, "reanimation_installed": "10",
        "reanimation_armed": "8", "reanimation_occupied_covid": "3"}, follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    decided = web.client.post("/beds/deprogram", data={
        "csrf": csrf, "holder": TOULOUSE, "tier": "1",
        "activities": "chirurgie ambulatoire ; 30", "cell": "Dr A\nDr B",
        "benefit_risk": "Report sans perte de chance.", "safe_cancer": "1"}, follow_redirects=False)  # fmt: skip
    assert decided.status_code == 303, decided.text
    page = web.client.get("/beds").text
    assert "chirurgie ambulatoire (30 %)" in page
    assert "CHU de Toulouse" in page
    feed = web.client.get("/api/v1/beds/deprogramming", headers=web.token("ars-occ")).json()
    assert feed[0]["data"]["activities"] == [{"activity": "chirurgie ambulatoire", "extent": 30}]


def test_desk_import_lists_french_errors_line_by_line(web: Web) -> None:
    csrf = web.login("ars-occ")
    before = web.ctx.snapshot()
    text = ("finess;categorie;installes;armes;occupes_covid;occupes_non_covid\n"
            f"{TOULOUSE};reanimation;10;12;1;1\n{MONTPELLIER};lits;10;8;1;1\n")  # fmt: skip
    answer = web.client.post("/beds/import", data={"csrf": csrf},
                             files={"file": ("c.csv", BytesIO(text.encode()), "text/csv")})  # fmt: skip
    assert answer.status_code == 422
    assert "ligne 2 : 12 lits armés pour 10 lits installés" in answer.text
    assert "ligne 3 : catégorie inconnue « lits »" in answer.text
    assert web.ctx.snapshot() == before
    good = f"finess;categorie;installes;armes;occupes_covid;occupes_non_covid\n{TOULOUSE};reanimation;10;8;1;1\n"
    done = web.client.post("/beds/import", data={"csrf": csrf}, follow_redirects=False,
                           files={"file": ("c.csv", BytesIO(good.encode()), "text/csv")})  # fmt: skip
    assert done.status_code == 303
