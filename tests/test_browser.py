"""The desk in a real browser: headless Chromium against a real ``regul serve`` process.

A UMAC regulator escalates an ECMO case; the ARS of the same region finds it at the top of
its queue and resolves it; the ARS of another region neither sees it in its queue nor can
open it. Every locator is an accessible one (label, role, name), so the test also checks
that the forms are labelled and the tables named. Screenshots of the queues and the case
page (laptop and tablet widths) are written to ``test-artifacts/browser/``.

The browser is Debian's ``chromium`` (``REGUL_TEST_CHROMIUM``, default ``/usr/bin/chromium``)
driven by Playwright; no browser is ever downloaded. Without it the test is skipped on a
developer's machine but FAILS in CI (``CI=true``) or with ``REGUL_REQUIRE_BROWSER=1``, where
``.ci/run`` installs it. The database is a temporary SQLite file prepared with the ``regul``
commands (``init --demo``, ``users password``, ``case open``/``advance``, run in-process through
Typer's test runner), then served by the installed ``regul serve --no-worker`` process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from interfaces.cli import app as regul_app
from tests.conftest import TOULOUSE

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path(os.environ.get("REGUL_TEST_CHROMIUM", "/usr/bin/chromium"))
BROWSER_REQUIRED = (
    os.environ.get("CI", "").lower() == "true" or os.environ.get("REGUL_REQUIRE_BROWSER") == "1"
)
MISSING = (
    f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) "
    "or point REGUL_TEST_CHROMIUM at a Chromium binary"
)

pytestmark = [
    pytest.mark.slow,
    # On a developer's machine without Chromium: skipped, with the reason. In CI the
    # ``browser`` fixture fails instead, so the test is never silently skipped there.
    pytest.mark.skipif(not CHROMIUM.exists() and not BROWSER_REQUIRED, reason=MISSING),
]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
REGUL = Path(sys.executable).parent / "regul"
PASSWORD = "correct horse battery staple"
LENDER = "319900002"  # CH Comminges Pyrénées (Saint-Gaudens), Occitanie: lends a console
MONTPELLIER = "349900001"  # CHU de Montpellier: Occitanie, like Toulouse
POISSY = "789900001"  # CHI de Poissy: Île-de-France
# Cheap argon2id hashes: the CLI that sets the passwords and the server that checks them.
FAST_HASH = {"REGUL_PASSWORD_MEMORY_KIB": "1024", "REGUL_PASSWORD_TIME_COST": "1"}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # Nothing leaves the machine: no updates, no sync, no metrics, no safe-browsing lists.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--no-pings",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter,CertificateTransparencyComponentUpdater",
]
QUEUE_TABLE = "Dossiers, du plus urgent au moins urgent"  # the queue table's caption
ESCALATE = "Escalader au niveau supérieur"
RESOLVE = "Résoudre (attribuer une solution)"
TABLET = {"width": 820, "height": 1180}
LAPTOP = {"width": 1280, "height": 800}


# -- the server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Desk:
    """A running ``regul serve`` and the cases prepared for the scenario."""

    url: str
    target: str  # the ECMO case the scenario escalates and resolves (Toulouse)
    decoys: tuple[str, ...]  # other Occitanie cases, due sooner but not at the ARS level
    elsewhere: str  # an Île-de-France case, in ars-idf's queue
    resolved: str  # an Occitanie case the ARS resolved through the CLI (console lent)


def _regul(env: dict[str, str], *args: str) -> dict[str, Any]:
    """One ``regul`` command, in-process; its JSON answer (``--json`` where it has one)."""
    ours: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REGUL_")}
    ours.update(env, COLUMNS="200")
    result = CliRunner().invoke(regul_app, list(args), env=ours)
    assert result.exit_code == 0, f"regul {' '.join(args)}: {result.stderr or result.stdout}"
    return dict(json.loads(result.stdout)) if "--json" in args else {}


def _open(env: dict[str, str], hospital: str, patient: str, escalate: bool) -> str:
    etab = f"etab-{hospital}"
    case = _regul(
        env, "case", "open", "ecmo", "--as", etab, "--org", hospital,
        "--field", f"patient_ref={patient}", "--field", "mode=VV", "--json",
    )  # fmt: skip
    reference = str(case["reference"])
    if escalate:
        _regul(
            env, "case", "advance", reference, "escalate", "--as", etab,
            "--reason", "aucune console disponible", "--expect-version", "1", "--json",
        )  # fmt: skip
    return reference


def _lent(env: dict[str, str]) -> str:
    """A Toulouse case escalated to the ARS, which has a console of its region lent to it."""
    reference = _open(env, TOULOUSE, "PAT-0301", escalate=True)
    _regul(
        env, "case", "advance", reference, "escalate", "--as", "umac-sud",
        "--reason", "zone saturée", "--expect-version", "2", "--json",
    )  # fmt: skip
    _regul(
        env, "case", "advance", reference, "resolve", "--as", "ars-occ",
        "--reason", "console d'un établissement de la région", "--expect-version", "3",
        "--field", "source=hospital", "--field", f"lender={LENDER}",
        "--field", "console_serials=SG-2",
        "--field", f"return_by={date.today() + timedelta(days=30)}", "--json",
    )  # fmt: skip
    return reference


def _fleet(env: dict[str, str]) -> None:
    """The ECMO fleet the scenarios lend from (issue 11): three consoles at the lender, two in
    the national stock."""
    for serial in ("SG-1", "SG-2", "SG-3"):
        _regul(env, "ecmo", "register", serial, "--model", "Cardiohelp", "--owner", LENDER,
               "--as", f"etab-{LENDER}")  # fmt: skip
    for serial in ("NAT-1", "NAT-2"):
        _regul(env, "ecmo", "register", serial, "--model", "CentriMag", "--owner", "CCS",
               "--as", "ccs")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"regul serve exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/login", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    pytest.fail(f"regul serve did not answer GET /login within 30 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """A fresh demo database with the scenario's cases, served by ``regul serve --no-worker``."""
    tmp = tmp_path_factory.mktemp("browser")
    config = tmp / "regul.toml"
    config.write_text("# empty: the REGUL_* variables below are the only settings\n")
    env = {
        "REGUL_CONFIG": str(config),  # no stray ./regul.toml can change the settings
        "REGUL_DATABASE_URL": f"sqlite:///{tmp / 'regul.db'}",
        "REGUL_EML_DIR": str(tmp / "outbox"),
        # the scenario's decoy waits at its hospital ("requested"): keep the confirm step
        "REGUL_HOSPITAL_CONFIRMS_REQUEST": "true",
        **FAST_HASH,
    }
    _regul(env, "init", "--demo", "--json")
    for login in ("umac-sud", "ars-occ", "ars-idf", "ccs"):
        _regul({**env, "REGUL_PASSWORD": PASSWORD}, "users", "password", login)
    _fleet(env)
    # Opened first, so due sooner than the target: only the "your level first" rule puts the
    # target above them in the ARS's queue.
    decoys = (
        _open(env, MONTPELLIER, "PAT-0101", escalate=False),  # requested: due in 1 h
        _open(env, TOULOUSE, "PAT-0102", escalate=True),  # umac_review: due in 2 h
    )
    target = _open(env, TOULOUSE, "PAT-0001", escalate=True)
    elsewhere = _open(env, POISSY, "PAT-0201", escalate=True)
    resolved = _lent(env)  # dispatched: at the hospital's level, no deadline, last in queues

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "serve.log"
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("REGUL_")}
    server_env.update(env)
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(REGUL), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env,
            cwd=tmp,
        )
    try:
        _wait_until_up(url, server, log)
        yield Desk(url, target, decoys, elsewhere, resolved)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


# -- the browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(MISSING + " (required in CI: .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is a test dependency
        message = f"the playwright package is missing ({exc}): pip install -e '.[test]'"
        if BROWSER_REQUIRED:
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, desk: Desk) -> Iterator[Page]:
    context = browser.new_context(base_url=desk.url, viewport=LAPTOP, locale="fr-FR")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Page, login: str) -> None:
    from playwright.sync_api import expect

    page.goto("/login")
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    expect(page.get_by_role("button", name="Se déconnecter")).to_be_visible()
    page.goto("/")  # a regulator lands on its situation page: these scenarios start at the queue
    expect(page.get_by_role("heading", level=1, name="File d'attente")).to_be_visible()


def log_out(page: Page) -> None:
    from playwright.sync_api import expect

    page.get_by_role("button", name="Se déconnecter").click()
    expect(page).to_have_url("/login?info=logged_out")
    expect(page.get_by_role("status")).to_have_text("Vous êtes déconnecté.")  # not an alert
    expect(page.get_by_role("button", name="Se déconnecter")).to_have_count(0)


def state_of(page: Page) -> Any:
    """The « État » of the case page's facts (the first definition of the « Faits » list)."""
    return page.get_by_role("region", name="Faits").get_by_role("definition").first


# -- the scenario -------------------------------------------------------------------------


def test_umac_escalates_ars_of_the_region_resolves_other_region_sees_nothing(
    page: Page, desk: Desk
) -> None:
    """UMAC escalates in the browser; ARS Occitanie sees it first and resolves; ARS IDF never sees it."""
    from playwright.sync_api import expect

    ref = desk.target
    queue = page.get_by_role("table", name=QUEUE_TABLE)

    # UMAC zone Sud: the case waits at its level; open it and escalate it to the ARS.
    log_in(page, "umac-sud")
    expect(queue.get_by_role("rowheader", name=ref)).to_be_visible()
    shoot(page, "01-umac-sud-queue")
    queue.get_by_role("link", name=ref).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{ref} — Demande de console ECMO")
    expect(state_of(page)).to_have_text("Examen par l'UMAC")
    escalate = page.get_by_role("group", name=ESCALATE)
    escalate.get_by_label("Motif").fill("Pas de console disponible dans la zone Sud")
    escalate.get_by_role("button", name=ESCALATE).click()
    expect(page.get_by_role("status")).to_have_text(f"Action enregistrée : {ESCALATE}.")
    expect(state_of(page)).to_have_text("Régulation ARS / SFCTCV")
    expect(page.get_by_role("group", name=ESCALATE)).to_have_count(0)  # no longer UMAC's move
    expect(page.get_by_role("row").filter(has_text="Pas de console disponible")).to_have_count(1)
    shoot(page, "02-case-escalated-by-umac")
    log_out(page)

    # ARS Occitanie: the case, now at its level, heads the queue above cases due sooner.
    log_in(page, "ars-occ")
    rows = queue.get_by_role("row")  # the header row, then one row per case
    expect(rows.nth(1).get_by_role("rowheader")).to_have_text(ref)
    expect(rows.nth(1)).to_contain_text("Régulation ARS / SFCTCV")
    for decoy in desk.decoys:
        expect(queue.get_by_role("rowheader", name=decoy)).to_be_visible()
    expect(queue.get_by_role("rowheader", name=desk.elsewhere)).to_have_count(0)
    shoot(page, "03-ars-occ-queue")

    queue.get_by_role("link", name=ref).click()
    expect(state_of(page)).to_have_text("Régulation ARS / SFCTCV")
    page.set_viewport_size(TABLET)
    shoot(page, "04-case-ars-occ-tablet")
    page.set_viewport_size(LAPTOP)

    resolve = page.get_by_role("group", name=RESOLVE)
    resolve.get_by_label("Origine").select_option("hospital")  # the ARS lends within its region
    resolve.get_by_label("Établissement prêteur").fill(LENDER)
    resolve.get_by_label("Consoles attribuées").fill("SG-1")
    return_by = (date.today() + timedelta(days=30)).isoformat()
    resolve.get_by_label("Date de retour du prêt").fill(return_by)
    resolve.get_by_label("Motif").fill("Console prêtée par le CH de Saint-Gaudens")
    resolve.get_by_role("button", name=RESOLVE).click()
    expect(page.get_by_role("status")).to_have_text(f"Action enregistrée : {RESOLVE}.")
    expect(state_of(page)).to_have_text("Console attribuée")
    facts = page.get_by_role("region", name="Faits")
    expect(facts).to_contain_text(LENDER)
    expect(page.locator('[aria-current="step"]')).to_contain_text("Console attribuée")
    shoot(page, "05-case-resolved-by-ars-occ")
    log_out(page)

    # ARS Île-de-France: not in its queue (which is not empty), and the page is a 404.
    log_in(page, "ars-idf")
    expect(queue.get_by_role("rowheader", name=desk.elsewhere)).to_be_visible()
    expect(page.get_by_text(ref)).to_have_count(0)
    shoot(page, "06-ars-idf-queue")
    page.goto("/?everything=true")
    expect(queue.get_by_role("rowheader", name=desk.elsewhere)).to_be_visible()
    expect(page.get_by_text(ref)).to_have_count(0)
    answer = page.goto(f"/cases/{ref}")
    assert answer is not None
    assert answer.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Introuvable")
    expect(page.get_by_text("Console attribuée")).to_have_count(0)
    expect(page.get_by_text("PAT-0001")).to_have_count(0)
    shoot(page, "07-ars-idf-case-not-found")


def test_case_page_shows_the_resolution_fields_under_their_labels(page: Page, desk: Desk) -> None:
    """The console lent through the ARS reads « Origine : … », not a Python dict."""
    from playwright.sync_api import expect

    log_in(page, "ars-occ")
    page.goto(f"/cases/{desk.resolved}")
    expect(state_of(page)).to_have_text("Console attribuée")
    facts = page.get_by_role("region", name="Faits")
    expect(facts).to_contain_text(LENDER)  # the value is there: only its presentation is wrong
    shoot(page, "08-case-lent-console-facts")
    # The page is loaded: plain assertions, which fail at once with what the page shows.
    text = facts.inner_text()
    assert "{'source'" not in text, text
    terms = facts.get_by_role("term").all_inner_texts()
    assert {
        "Référence pseudonyme du patient",
        "Solution — Origine",
        "Solution — Date de retour du prêt",
    } <= set(terms), terms


def test_ladder_does_not_show_skipped_levels_as_passed(page: Page, desk: Desk) -> None:
    """The lent console went requested → UMAC → ARS → dispatched: the CCS step is not behind it."""
    from playwright.sync_api import expect

    log_in(page, "ars-occ")
    page.goto(f"/cases/{desk.resolved}")
    ladder = page.get_by_role("region", name="Position sur l'échelle").get_by_role("listitem")
    expect(ladder.filter(has_text="Console attribuée")).to_have_attribute("aria-current", "step")
    # The page is loaded: plain assertions, which fail at once with what the page shows.
    passed = [
        item.locator("span").first.inner_text()  # the state's label, without its level
        for item in ladder.all()
        if "passed" in (item.get_attribute("class") or "").split()
    ]
    assert passed == ["Demande émise", "Examen par l'UMAC", "Régulation ARS / SFCTCV"], passed
