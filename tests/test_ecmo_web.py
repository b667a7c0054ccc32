"""The ECMO fleet over HTTP: the API (/api/v1/ecmo, problems, ETag/If-Match) and the desk
pages (fleet, inventory form and import, loans, the consoles offered on an ECMO case)."""

from __future__ import annotations

from typing import Any

import pytest

from resources.ecmo import NATIONAL
from tests.conftest import LENDER, TOULOUSE, Ctx, Web
from tests.test_ecmo_fleet import HEADER, F, at_review, equip, status, with_fleet


@pytest.fixture
def fctx(ctx: Ctx) -> F:
    return with_fleet(ctx)


@pytest.fixture
def fw(fctx: F, web: Web) -> tuple[F, Web]:
    return fctx, web


def test_api_lists_the_scope_and_guards_writes(fw: tuple[F, Web]) -> None:
    f, web = fw
    equip(f, LENDER, ["SN-1"])
    equip(f, NATIONAL, ["NAT-1"])
    umac = web.token("umac-sud")
    listed = web.client.get("/api/v1/ecmo/consoles", headers=umac).json()
    assert [r["serial"] for r in listed] == ["SN-1"]  # the national stock is the CCS's
    ccs = web.token("ccs")
    assert {r["serial"] for r in web.client.get("/api/v1/ecmo/consoles", headers=ccs).json()} == {
        "SN-1", "NAT-1",
    }  # fmt: skip
    owner = web.token(f"etab-{LENDER}")
    one = web.client.get("/api/v1/ecmo/consoles/SN-1", headers=owner)
    assert one.headers["etag"] == '"available"'
    body = {"status": "maintenance", "reason": "révision"}
    missing = web.client.put("/api/v1/ecmo/consoles/SN-1/status", json=body, headers=owner)
    assert missing.status_code == 428
    assert missing.headers["content-type"].startswith("application/problem+json")
    stale = web.client.put(
        "/api/v1/ecmo/consoles/SN-1/status", json=body, headers={**owner, "If-Match": '"in_use"'}
    )
    assert stale.status_code == 412
    done = web.client.put(
        "/api/v1/ecmo/consoles/SN-1/status", json=body,
        headers={**owner, "If-Match": '"available"'},
    )  # fmt: skip
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "maintenance"
    assert status(f, "SN-1") == {"maintenance": 1}


def test_api_reports_versions_with_if_match(fw: tuple[F, Web]) -> None:
    f, web = fw
    equip(f, LENDER, ["SN-1"])
    owner = web.token(f"etab-{LENDER}")
    figures = {"available": 1, "reserved": 0, "in_use": 0, "lent": 0, "maintenance": 0,
               "circuits": 2}  # fmt: skip
    body = {"holder": LENDER, "period": "2026-W48", "figures": figures}
    first = web.client.post("/api/v1/ecmo/reports", json=body, headers={**owner, "If-Match": '"0"'})
    assert first.status_code == 201, first.text
    assert first.json()["differences"][0]["figure"] == "circuits"
    again = web.client.post("/api/v1/ecmo/reports", json=body, headers={**owner, "If-Match": '"0"'})
    assert again.status_code == 412
    read = web.client.get(f"/api/v1/ecmo/reports/{LENDER}?period=2026-W48", headers=owner)
    assert read.headers["etag"] == '"1"'
    outsider = web.token("etab-319900001")
    refused = web.client.post(
        "/api/v1/ecmo/reports", json=body, headers={**outsider, "If-Match": '"1"'}
    )
    assert refused.status_code == 403
    bad = web.client.post(
        "/api/v1/ecmo/reports/import", content=(HEADER + "999;2026-W48;1;0;0;0;0;0\n").encode(),
        headers={**web.token("ccs"), "Content-Type": "text/csv"},
    )  # fmt: skip
    assert bad.status_code == 422
    assert "ligne 2" in bad.json()["detail"]


def test_desk_fleet_report_and_case_choices(fw: tuple[F, Web]) -> None:
    f, web = fw
    equip(f, LENDER, ["SN-1", "SN-2"])
    csrf = web.login("umac-sud")
    page = web.client.get("/ecmo")
    assert page.status_code == 200
    assert "Parc de consoles ECMO" in page.text
    assert "SN-1" in page.text
    case = at_review(f)
    shown = web.client.get(f"/cases/{case.reference}")
    assert "Consoles disponibles dans votre périmètre" in shown.text
    assert 'list="resolve-console_serials-options"' in shown.text
    answer = web.client.post(
        f"/cases/{case.reference}/fire/resolve",
        data={"csrf": csrf, "version": str(case.version), "field_source": "hospital",
              "field_lender": LENDER, "field_return_by": "2026-12-15",
              "field_console_serials": "SN-2", "reason": "console de la zone"},
        follow_redirects=True,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert status(f, "SN-2") == {"reserved": 1}
    loans = web.client.get("/ecmo/loans")
    assert case.reference in loans.text


def test_desk_inventory_form_and_import(fw: tuple[F, Web]) -> None:
    f, web = fw
    equip(f, LENDER, ["SN-1"])
    csrf = web.login(f"etab-{LENDER}")
    form = web.client.get("/ecmo/report")
    assert "Déclarer un inventaire" in form.text
    data: dict[str, Any] = {"csrf": csrf, "holder": LENDER, "period": "2026-W48", "available": "1",
                            "reserved": "0", "in_use": "0", "lent": "0", "maintenance": "0",
                            "circuits": "3"}  # fmt: skip
    done = web.client.post("/ecmo/report", data=data)
    assert done.status_code == 200
    assert "Écarts avec le registre" in done.text
    before = f.ctx.snapshot()
    bad = web.client.post(
        "/ecmo/import", data={"csrf": csrf},
        files={"file": ("inv.csv", (HEADER + f"{TOULOUSE};2026-W48;1;0;0;0;0;0\n").encode())},
    )  # fmt: skip
    assert bad.status_code == 400
    assert "ligne 2 : CHU de Toulouse ne relève pas de votre périmètre" in bad.text
    assert f.ctx.snapshot() == before
