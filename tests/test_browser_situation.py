"""The situation room in a real browser: CCS, ARS Occitanie and an establishment each see their
own figures and nothing outside their scope (issue 14).

Same machinery as ``tests/test_browser.py`` (Debian's Chromium driven by Playwright, a real
``regul serve --no-worker`` on a demo database prepared with the ``regul`` commands; skipped on
a developer's machine without Chromium, failing in CI). The expected figures are computed here
from the database file itself; screenshots go to ``test-artifacts/browser/situation-*.png``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import TOULOUSE
from tests.test_browser import (
    ARTIFACTS,
    BROWSER_REQUIRED,
    CHROMIUM,
    FAST_HASH,
    LAPTOP,
    MISSING,
    MONTPELLIER,
    PASSWORD,
    POISSY,
    REGUL,
    _free_port,
    _open,
    _regul,
    _wait_until_up,
    browser,  # noqa: F401 - the Chromium fixture, shared
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists() and not BROWSER_REQUIRED, reason=MISSING),
]
POINTE_A_PITRE = "971990001"  # CHU de la Guadeloupe
BY_REGION = "Dossiers : dossiers en cours par région"  # the cases panel's region table
REPORTS_BY_REGION = "Comptes rendus attendus : comptes rendus manquants par région"


@dataclass(frozen=True)
class Room:
    url: str
    db: Path


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Room]:
    tmp = tmp_path_factory.mktemp("situation")
    config = tmp / "regul.toml"
    config.write_text("# empty\n")
    db = tmp / "regul.db"
    env = {
        "REGUL_CONFIG": str(config),
        "REGUL_DATABASE_URL": f"sqlite:///{db}",
        "REGUL_EML_DIR": str(tmp / "outbox"),
        **FAST_HASH,
    }
    _regul(env, "init", "--demo", "--json")
    for login in ("ccs", "ars-occ", f"etab-{TOULOUSE}"):
        _regul({**env, "REGUL_PASSWORD": PASSWORD}, "users", "password", login)
    _open(env, TOULOUSE, "PAT-0401", escalate=False)
    _open(env, TOULOUSE, "PAT-0402", escalate=False)
    _open(env, MONTPELLIER, "PAT-0403", escalate=False)
    _open(env, POISSY, "PAT-0404", escalate=False)
    _open(env, POINTE_A_PITRE, "PAT-0405", escalate=False)
    due = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    with sqlite3.connect(db) as conn:  # weekly reports owed: two missing in OCC, one in IDF
        for holder, status in ((TOULOUSE, "open"), (MONTPELLIER, "late"), (POISSY, "open"),
                               (POINTE_A_PITRE, "met")):  # fmt: skip
            conn.execute(
                "INSERT INTO obligation (kind, holder, period, due_at, next_at, reminders, "
                "escalated, status, created_at) VALUES ('capacity', ?, '2026-W47', ?, ?, 0, ?, "
                "?, ?)",
                (holder, due, due, status == "late", status, due),
            )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "serve.log"
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("REGUL_")}
    server_env.update(env)
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(REGUL), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=server_env,
            cwd=tmp,
        )  # fmt: skip
    try:
        _wait_until_up(url, server, log)
        yield Room(url, db)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def open_by_region(db: Path, where: str = "1=1") -> dict[str, int]:
    """Open cases per region, from the database itself."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            f"SELECT region, count(*) FROM regul_case WHERE final = 0 AND {where} GROUP BY region"
        ).fetchall()
    return dict(rows)


@pytest.fixture
def page(browser: Browser, room: Room) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(base_url=room.url, viewport=LAPTOP, locale="fr-FR")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"situation-{name}.png"), full_page=True)


def log_in(page: Page, login: str) -> None:
    page.goto("/login")
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.get_by_role("button", name="Se déconnecter").wait_for()


def region_table(page: Page, caption: str) -> dict[str, str]:
    """A region table as {region code: figure}, read through its accessible name."""
    table = page.get_by_role("table", name=caption)
    found = {}
    for row in table.get_by_role("row").all()[1:]:
        header = row.get_by_role("rowheader").inner_text()
        code = header.rsplit("(", 1)[1].rstrip(")")
        found[code] = row.get_by_role("cell").inner_text()
    return found


def test_ccs_sees_the_country_and_narrows_to_a_region(page: Page, room: Room) -> None:
    from playwright.sync_api import expect

    log_in(page, "ccs")
    expect(page).to_have_url(f"{room.url}/situation")  # the CCS lands on its situation
    expect(page.get_by_role("heading", level=1)).to_have_text("Situation — national")
    want = open_by_region(room.db)
    assert region_table(page, BY_REGION) == {k: str(v) for k, v in want.items()}
    assert set(want) == {"OCC", "IDF", "GUA"}  # mainland and overseas
    assert region_table(page, REPORTS_BY_REGION) == {"OCC": "2", "IDF": "1", "GUA": "0"}
    counts = page.get_by_role("region", name="Dossiers en cours")
    expect(counts).to_contain_text(f"{sum(want.values())} dossiers en cours")
    the_map = page.get_by_role("img", name="Dossiers : dossiers en cours par région").first
    expect(the_map).to_be_visible()
    shoot(page, "01-ccs-national")

    the_map.get_by_role("link", name="Occitanie : 3").click()
    expect(page).to_have_url(f"{room.url}/situation?region=OCC")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Situation — national, région Occitanie"
    )
    assert region_table(page, BY_REGION) == {"OCC": str(want["OCC"])}
    shoot(page, "02-ccs-occitanie")


def test_ars_occitanie_sees_its_region_only(page: Page, room: Room) -> None:
    from playwright.sync_api import expect

    log_in(page, "ars-occ")
    expect(page).to_have_url(f"{room.url}/situation")
    expect(page.get_by_role("heading", level=1)).to_have_text("Situation — région Occitanie")
    want = open_by_region(room.db, "region = 'OCC'")
    assert region_table(page, BY_REGION) == {"OCC": str(want["OCC"])}
    assert region_table(page, REPORTS_BY_REGION) == {"OCC": "2"}
    main = page.get_by_role("main")
    expect(main).not_to_contain_text("Île-de-France")
    expect(main).not_to_contain_text("Guadeloupe")
    expect(page.get_by_role("link", name="Île-de-France")).to_have_count(0)
    shoot(page, "03-ars-occ")
    # another region's page shows nothing of it
    page.goto("/situation?region=IDF")
    expect(page.get_by_role("table", name=BY_REGION)).to_have_count(0)
    expect(page.get_by_role("main")).not_to_contain_text("PAT-0404")


def test_establishment_sees_itself_only(page: Page, room: Room) -> None:
    from playwright.sync_api import expect

    log_in(page, f"etab-{TOULOUSE}")
    expect(page.get_by_role("heading", level=1)).to_have_text("File d'attente")  # its queue
    page.get_by_role("link", name="Situation").click()
    expect(page).to_have_url(f"{room.url}/situation")
    expect(page.get_by_role("heading", level=1)).to_have_text("Situation — CHU de Toulouse")
    want = open_by_region(room.db, f"org = '{TOULOUSE}'")
    assert region_table(page, BY_REGION) == {"OCC": str(want["OCC"])}
    assert want["OCC"] == 2  # its two requests, not Montpellier's
    assert region_table(page, REPORTS_BY_REGION) == {"OCC": "1"}  # its own report only
    expect(page.get_by_role("img", name="Dossiers : dossiers en cours par région")).to_have_count(
        1
    )  # the bars; no map for one establishment
    expect(page.get_by_role("main")).not_to_contain_text("Île-de-France")
    shoot(page, "04-establishment")
    pdf = page.request.get("/situation.pdf")
    assert pdf.status == 200
    assert pdf.body().startswith(b"%PDF")
