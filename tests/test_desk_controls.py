"""The desk's own forms beyond triggers: opening a case, and holding/extending a deadline."""

from __future__ import annotations

from tests.conftest import Web, drive


def test_establishment_opens_a_case_from_the_desk(web: Web) -> None:
    """The hospital's form opens a case for its own hospital; a bad field re-renders, nothing written."""
    csrf = web.login("etab-319900001")
    assert 'href="/new/ecmo"' in web.client.get("/").text
    page = web.client.get("/new/ecmo")
    assert 'for="f-patient_ref"' in page.text
    before = web.ctx.count("regul_case")
    bad = web.client.post(
        "/new/ecmo",
        data={"csrf": csrf, "field_patient_ref": "Jean Dupont", "field_mode": "VV"},
        follow_redirects=False,
    )
    assert bad.status_code == 422
    assert "pas une référence pseudonyme" in bad.text  # in French, from the catalogue
    assert web.ctx.count("regul_case") == before
    done = web.client.post(
        "/new/ecmo",
        data={"csrf": csrf, "field_patient_ref": "PAT-0077", "field_mode": "VA", "org": "x"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith("/cases/ECMO-")
    case = web.ctx.runner.show(done.headers["location"].split("/")[2].split("?")[0])
    assert (case.org, case.fields["mode"]) == ("319900001", "VA")


def test_regulator_holds_and_extends_from_the_case_page(web: Web) -> None:
    """The UMAC at its level sees hold/extend; holding suspends the deadline, resume restarts it."""
    case = drive(web.ctx, web.ctx.open("ecmo"), ["escalate"])
    csrf = web.login("umac-sud")
    page = web.client.get(f"/cases/{case.reference}").text
    assert f"/cases/{case.reference}/control/hold" in page
    held = web.client.post(
        f"/cases/{case.reference}/control/hold",
        data={"csrf": csrf, "version": str(case.version), "reason": "bilan demandé"},
        follow_redirects=False,
    )
    assert held.status_code == 303
    after = web.ctx.runner.show(case.reference)
    assert after.on_hold
    assert after.deadline is not None  # the hold's own end (REGUL_HOLD_MAX)
    assert after.deadline.action == "resume"
    page = web.client.get(f"/cases/{case.reference}").text
    assert "/control/resume" in page
    assert "/control/hold" not in page
    bad = web.client.post(
        f"/cases/{case.reference}/control/resume",
        data={"csrf": csrf, "version": str(case.version), "reason": "x"},
        follow_redirects=False,
    )
    assert bad.status_code == 412
    assert web.ctx.runner.show(case.reference).on_hold
