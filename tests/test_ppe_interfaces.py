"""PPE stocks through the interfaces: the API, the desk pages and form, the file upload, the
``regul ppe`` commands; a wrong file changes nothing and says which lines, in French."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from typer.testing import CliRunner

from interfaces.cli import app as cli_app
from tests.conftest import CASE_TABLES, TOULOUSE, Ctx, Web

WEEK = "2026-W47"  # START (22/11/2026) falls in week 47
HEADER = "etablissement;semaine;article;stock;consommation;consommation_crise;unite;atteste_par;qualite\n"


def snapshot(ctx: Ctx) -> dict[str, Any]:
    with ctx.db.read() as conn:
        return {
            t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY 1"))]
            for t in CASE_TABLES
        }


def test_the_api_takes_a_report_and_answers_weeks_of_cover(web: Web) -> None:
    headers = web.token(f"etab-{TOULOUSE}")
    body = {"establishment": TOULOUSE, "week": WEEK, "attested_by": "M. le Directeur",
            "lines": [{"item": "ffp2_mask", "on_hand": 1000, "consumed": 900, "crisis": 1000},
                      {"item": "gown", "on_hand": 5000, "consumed": 100, "crisis": 1000}]}  # fmt: skip
    answer = web.client.post("/api/v1/ppe/reports", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    data = answer.json()
    assert data["lines"]["ffp2_mask"]["weeks"] == 1.0
    assert data["lines"]["ffp2_mask"]["level"] == "low"
    assert len(data["cases_opened"]) == 1
    cover = web.client.get("/api/v1/ppe/cover", headers=headers).json()
    assert {r["item"] for r in cover} == {"ffp2_mask", "gown"}
    before = snapshot(web.ctx)
    bad = web.client.post("/api/v1/ppe/reports", json={**body, "establishment": "819900002"},
                          headers=headers)  # fmt: skip
    assert bad.status_code == 403
    unknown = web.client.post("/api/v1/ppe/reports", json={**body, "extra": 1}, headers=headers)
    assert unknown.status_code == 422
    assert snapshot(web.ctx) == before


def test_the_desk_form_records_a_report_and_shows_weeks_of_cover(web: Web) -> None:
    csrf = web.login(f"etab-{TOULOUSE}")
    page = web.client.get("/ppe/report")
    assert page.status_code == 200
    assert "Masques FFP2" in page.text
    assert "boîtes de 50" in page.text
    form = {"csrf": csrf, "week": WEEK, "attested_by": "Mme la Directrice",
            "attested_as": "delegate", "gown-on_hand": "4000", "gown-consumed": "800",
            "gown-crisis": "1000", "ffp2_mask-on_hand": "20", "ffp2_mask-consumed": "10",
            "ffp2_mask-unit": "boîtes"}  # fmt: skip
    answer = web.client.post("/ppe/report", data=form)
    assert answer.status_code == 200, answer.text
    assert "Relevé enregistré" in answer.text
    assert "4,0" in answer.text  # weeks of cover of the gowns
    stocks = web.client.get("/ppe")
    assert stocks.status_code == 200
    assert "Blouses" in stocks.text
    before = snapshot(web.ctx)
    wrong = web.client.post("/ppe/report", data={**form, "gown-on_hand": "beaucoup"})
    assert wrong.status_code == 422
    assert "nombre entier" in wrong.text
    assert snapshot(web.ctx) == before


def test_the_desk_upload_lists_the_wrong_lines_and_records_nothing(web: Web) -> None:
    csrf = web.login("ars-occ")
    before = snapshot(web.ctx)
    text = (
        HEADER
        + f"{TOULOUSE};{WEEK};gown;100;10;10;;Dir;directeur\n{TOULOUSE};{WEEK};gown;x;1;1;;Dir;directeur\n"
    )
    answer = web.client.post(
        "/ppe/upload", data={"csrf": csrf},
        files={"file": ("stocks.csv", text.encode(), "text/csv")},
    )  # fmt: skip
    assert answer.status_code == 422
    assert "ligne 3 : le stock n&#39;est pas un nombre entier" in answer.text
    assert snapshot(web.ctx) == before
    good = HEADER + f"{TOULOUSE};{WEEK};gown;100;10;10;;Dir;directeur\n"
    answer = web.client.post(
        "/ppe/upload", data={"csrf": csrf},
        files={"file": ("stocks.csv", good.encode(), "text/csv")},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert "1 relevé(s)" in answer.text
    page = web.client.get("/ppe")
    assert "Relevés non transmis" in page.text


def test_the_cli_reports_a_file_and_reads_cover_deliveries_and_reserve(
    ctx: Ctx, tmp_path: Path
) -> None:
    url = str(ctx.db.url)
    cli = CliRunner()

    def regul(*args: str) -> tuple[int, str, str]:
        result = cli.invoke(cli_app, list(args), env={"REGUL_DATABASE_URL": url, "COLUMNS": "200"})
        return result.exit_code, result.stdout, result.stderr

    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + f"{TOULOUSE};2026-W99;gown;1;1;1;;Dir;directeur\n", encoding="utf-8")
    before = snapshot(ctx)
    code, _, err = regul("ppe", "report", str(bad))
    assert code == 2
    assert "ligne 2 : semaine « 2026-W99 » illisible" in err
    assert snapshot(ctx) == before
    good = tmp_path / "good.csv"
    good.write_text(
        HEADER + f"{TOULOUSE};{WEEK};gown;100;50;100;;Dir;directeur\n", encoding="utf-8"
    )
    code, out, err = regul("ppe", "report", str(good), "--json")
    assert code == 0, err
    assert json.loads(out) == {"reports": 1, "cases_opened": 1}
    code, out, _ = regul("ppe", "cover", "--region", "OCC", "--below", "3", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["establishment"], row["item"], row["weeks"]) == (TOULOUSE, "gown", 1.0)
    from interfaces.app import build_app
    from resources.ppe.service import PpeService

    app = build_app(database_url=url, check_schema=False)
    try:
        PpeService(app).load_seed004()
    finally:
        app.db.dispose()
    code, out, _ = regul("ppe", "deliveries", "--region", "OCC", "--json")
    assert code == 0
    assert json.loads(out)["masks"] == 1_896_600
    code, out, _ = regul("ppe", "reserve", "--region", "OCC", "--json")
    assert code == 0
    assert json.loads(out)["reserves"][0]["quantity"] == 700_000


def test_the_api_moves_a_reserve_and_never_overdraws(web: Web) -> None:
    headers = web.token("ars-occ")
    stocked = web.client.post("/api/v1/ppe/movements", headers=headers, json={
        "kind": "in", "holder": "ARS-OCC", "item": "gown", "quantity": 100, "how": "donation"})  # fmt: skip
    assert stocked.status_code == 201, stocked.text
    brittany = web.token("ars-bre")  # issuing a token is recorded: before the snapshot
    before = snapshot(web.ctx)
    out = {"kind": "out", "holder": "ARS-OCC", "item": "gown", "quantity": 101,
           "how": "local_situation", "to": TOULOUSE}  # fmt: skip
    refused = web.client.post("/api/v1/ppe/movements", headers=headers, json=out)
    assert refused.status_code == 409
    outsider = web.client.post("/api/v1/ppe/movements", headers=brittany,
                               json={**out, "quantity": 1})  # fmt: skip
    assert outsider.status_code == 403
    assert snapshot(web.ctx) == before
    sent = web.client.post("/api/v1/ppe/movements", headers=headers, json={**out, "quantity": 60})
    assert sent.status_code == 201
    assert [e["action"] for e in sent.json()["events"]] == ["reserve_out", "ppe_delivery"]
