"""The ECMO fleet in a real browser (tests/test_browser.py's server and Chromium): a UMAC
chooses a console of its zone on an ECMO case's page and finds it reserved on the fleet page;
the CCS sees the national stock, which the UMAC does not."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from tests.test_browser import (  # noqa: F401 - the fixtures, shared
    LENDER,
    RESOLVE,
    Desk,
    browser,
    desk,
    log_in,
    page,
    pytestmark,
    shoot,
    state_of,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page


def test_umac_chooses_a_console_and_the_ccs_sees_the_national_stock(page: Page, desk: Desk) -> None:  # noqa: F811
    from playwright.sync_api import expect

    ref = desk.decoys[1]  # a Toulouse case at the UMAC's level
    log_in(page, "umac-sud")
    page.get_by_role("link", name="Parc ECMO").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Parc de consoles ECMO")
    fleet = page.get_by_role("table", name="Consoles de CH Comminges Pyrénées (Saint-Gaudens)")
    expect(fleet.get_by_role("row").filter(has_text="SG-3")).to_contain_text("disponible")
    expect(page.get_by_text("Stock national de sécurité (CCS)")).to_have_count(0)
    shoot(page, "11-ecmo-fleet-umac")

    page.goto(f"/cases/{ref}")
    expect(state_of(page)).to_have_text("Examen par l'UMAC")
    resolve = page.get_by_role("group", name=RESOLVE)
    expect(resolve.get_by_text("Consoles disponibles dans votre périmètre")).to_be_visible()
    expect(resolve.get_by_role("listitem").filter(has_text="SG-3")).to_have_count(1)
    expect(resolve.get_by_role("listitem").filter(has_text="NAT-1")).to_have_count(0)
    resolve.get_by_label("Origine").select_option("hospital")
    resolve.get_by_label("Établissement prêteur").fill(LENDER)
    resolve.get_by_label("Consoles attribuées").fill("SG-3")
    resolve.get_by_label("Date de retour du prêt").fill(str(date.today() + timedelta(days=14)))
    resolve.get_by_label("Motif").fill("Console SG-3 du CH de Saint-Gaudens")
    resolve.get_by_role("button", name=RESOLVE).click()
    expect(page.get_by_role("status")).to_have_text(f"Action enregistrée : {RESOLVE}.")
    expect(state_of(page)).to_have_text("Console attribuée")
    shoot(page, "12-ecmo-case-resolved-with-console")

    page.goto("/ecmo")
    row = page.get_by_role("table", name="Consoles de CH Comminges Pyrénées (Saint-Gaudens)")
    expect(row.get_by_role("row").filter(has_text="SG-3")).to_contain_text("réservée")
    expect(row.get_by_role("row").filter(has_text="SG-3")).to_contain_text(ref)
    page.get_by_role("button", name="Se déconnecter").click()

    log_in(page, "ccs")
    page.goto("/ecmo")
    expect(page.get_by_role("heading", name="Stock national de sécurité (CCS)")).to_be_visible()
    national = page.get_by_role("table", name="Consoles de Centre de crise sanitaire (DGS)")
    expect(national.get_by_role("row").filter(has_text="NAT-1")).to_contain_text("disponible")
    shoot(page, "13-ecmo-fleet-ccs-national-stock")
