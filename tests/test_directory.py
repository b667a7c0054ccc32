"""The directory (issue 10): the SFCTCV referents and their scope, the establishments' details,
the loader's checks (a malformed file changes nothing), and ``regul init --directory``."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from engine.cases import CaseFilter
from engine.errors import InputError, NotFound, NotPermitted
from engine.values import Scope
from engine.vocab import ScopeKind
from interfaces.cli import app
from tests.conftest import TOULOUSE, Ctx, Web
from workflows.directory import (
    CATEGORIES,
    STATUSES,
    demo_directory,
    load_directory,
    read_directory,
)

POISSY = "789900001"  # CHI de Poissy, GHT-IDF-01, region IDF
ORGS = "organisations.csv"
API = "/api/v1"


def _demo_rows(name: str) -> list[dict[str, Any]]:
    return read_directory().rows[name]


def _orgs() -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in _demo_rows(ORGS)}


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "directory"
    shutil.copytree(demo_directory(), folder, ignore=shutil.ignore_patterns("*.py", "__*"))
    return folder


def _organisations(conn: sa.Connection) -> list[tuple[Any, ...]]:
    return list(conn.execute(sa.text("SELECT * FROM organisation ORDER BY id")).all())


@pytest.fixture
def restored(ctx: Ctx) -> Iterator[Ctx]:
    """A test that writes the directory: the demo directory again afterwards (PostgreSQL keeps
    the directory between tests)."""
    yield ctx
    with ctx.db.write() as conn:
        load_directory(conn)


# -- the SFCTCV referent: reads ECMO cases in its scope, acts on none ----------------------------


def test_sfctcv_scope_is_its_region_or_the_country(ctx: Ctx) -> None:
    assert ctx.runner.actor("sfctcv-occ").scope == Scope(ScopeKind.REGION, "OCC")
    assert ctx.runner.actor("sfctcv").scope == Scope(ScopeKind.NATIONAL)


def test_regional_sfctcv_reads_the_ecmo_cases_of_its_region_only(ctx: Ctx) -> None:
    """Allowed inside (the read recorded), 'no case' outside its region or its workflow (the
    refusal recorded); its list holds only the ECMO cases of its region."""
    ecmo_occ = ctx.open("ecmo")
    ecmo_idf = ctx.open("ecmo", hospital=POISSY)
    ppe_occ = ctx.open("ppe")
    transfer_occ = ctx.open("transfer")
    reads = "action = 'read' AND actor = 'sfctcv-occ'"
    refused = "action = 'refused' AND actor = 'sfctcv-occ'"

    assert ctx.runner.show(ecmo_occ.reference, login="sfctcv-occ").reference == ecmo_occ.reference
    assert ctx.count("audit_event", reads) == 1
    for outside in (ecmo_idf, ppe_occ, transfer_occ):
        before = ctx.count("audit_event", refused)
        with pytest.raises(NotFound):
            ctx.runner.show(outside.reference, login="sfctcv-occ")
        assert ctx.count("audit_event", refused) == before + 1, outside.reference
    assert ctx.count("audit_event", reads) == 1
    listed = ctx.runner.search(CaseFilter(), login="sfctcv-occ")
    assert [c.reference for c in listed] == [ecmo_occ.reference]


def test_national_sfctcv_reads_every_ecmo_case_and_nothing_else(ctx: Ctx) -> None:
    ecmo_occ, ecmo_idf = ctx.open("ecmo"), ctx.open("ecmo", hospital=POISSY)
    ppe = ctx.open("ppe")
    for case in (ecmo_occ, ecmo_idf):
        ctx.runner.show(case.reference, login="sfctcv")
    with pytest.raises(NotFound):
        ctx.runner.show(ppe.reference, login="sfctcv")
    listed = {c.reference for c in ctx.runner.search(CaseFilter(), login="sfctcv")}
    assert listed == {ecmo_occ.reference, ecmo_idf.reference}


def test_sfctcv_fires_no_trigger_and_the_refusal_is_recorded(ctx: Ctx) -> None:
    """The referent advises; it acts on no case: refused, recorded, nothing else changed."""
    case = ctx.open("ecmo")
    for login in ("sfctcv-occ", "sfctcv"):
        before = ctx.snapshot()
        with pytest.raises(NotPermitted):
            ctx.runner.advance(
                reference=case.reference, trigger="escalate", login=login, reason="avis"
            )
        after = ctx.snapshot()
        added = [e for e in after["audit_event"] if e not in before["audit_event"]]
        assert [(e["action"], e["actor"]) for e in added] == [("refused", login)]
        head = ("audit_seq", "audit_hash")  # the chain's head moves with the refused event
        assert [{k: v for k, v in c.items() if k not in head} for c in after["regul_case"]] == [
            {k: v for k, v in c.items() if k not in head} for c in before["regul_case"]
        ]
        assert after["deadline"] == before["deadline"]


# -- the demo directory ------------------------------------------------------------------------


def test_one_sfctcv_referent_per_region_and_a_national_one_each_with_a_user() -> None:
    orgs = _orgs()
    referents = [o for o in orgs.values() if o["kind"] == "sfctcv"]
    regions = {r["code"] for r in _demo_rows("regions.csv")}
    assert sorted(o["region"] for o in referents if o["region"]) == sorted(regions)
    assert [o["id"] for o in referents if o["region"] is None] == ["SFCTCV"]
    users = {u["org"]: u for u in _demo_rows("users.csv") if u["role"] == "sfctcv"}
    assert set(users) == {o["id"] for o in referents}


def test_establishments_have_a_status_and_a_category_some_without_a_ght() -> None:
    hospitals = [o for o in _orgs().values() if o["kind"] == "hospital"]
    assert {h["status"] for h in hospitals} == set(STATUSES)
    assert {h["category"] for h in hospitals} == set(CATEGORIES)
    aphp = [h for h in hospitals if h["name"].startswith("AP-HP")]
    assert aphp, "AP-HP establishments are in the directory"
    assert all(h["ght"] is None and h["delivery_address"] for h in aphp)
    assert any(h["category"] == "ehpad" and h["ght"] for h in hospitals)  # served by its GHT


def test_every_ght_names_its_support_establishment_address_and_logistics_contacts() -> None:
    orgs = _orgs()
    ghts = [o for o in orgs.values() if o["kind"] == "ght"]
    assert len(ghts) >= 14
    for ght in ghts:
        support = orgs[ght["support"]]
        assert (support["kind"], support["ght"]) == ("hospital", ght["id"])
        for column in ("delivery_address", "logistics_name", "logistics_email", "deputy_name"):
            assert ght[column], (ght["id"], column)
        assert ght["logistics_email"] != ght["deputy_email"]


def test_samu_departmental_delegations_and_a_single_region_zone() -> None:
    orgs = _orgs()
    assert orgs["SAMU-31"]["department"] == "31"
    dd = [o for o in orgs.values() if o["kind"] == "ars_dd" and o["region"] == "OCC"]
    assert len(dd) == 13  # the 13 departments of Occitanie (seed 004: "avec l'aide des DD")
    zones: dict[str, list[str]] = {}
    for region in _demo_rows("regions.csv"):
        zones.setdefault(region["zone"], []).append(region["code"])
    assert zones["PARIS"] == ["IDF"]  # the zone level is skipped there (DESIGN.md)
    assert orgs["ARSZ-PARIS"]["region"] == "IDF"


def test_ids_the_tests_and_the_demo_use_are_kept() -> None:
    orgs = _orgs()
    for org in (TOULOUSE, POISSY, "299900001", "349900001", "GHT-OCC-06", "ARS-OCC", "CCS"):
        assert org in orgs
    assert orgs[TOULOUSE]["ght"] == "GHT-OCC-06"


def test_the_csv_says_its_finess_numbers_are_synthetic() -> None:
    head = (demo_directory() / ORGS).read_text(encoding="utf-8").splitlines()[:4]
    assert all(line.startswith("#") for line in head[:2])
    assert "SYNTHETIC" in " ".join(head)
    assert "regul init --directory" in " ".join(head)


# -- the loader: comments, optional columns, a single file -------------------------------------


def test_comments_blank_lines_and_the_old_columns_load(tmp_path: Path) -> None:
    """A file with only the eight original columns, comments and a blank line loads; the
    details are empty."""
    folder = _copy(tmp_path)
    with (folder / ORGS).open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(line for line in handle if line[0] != "#"))
    columns = ["id", "kind", "name", "region", "zone", "department", "ght", "email"]
    with (folder / ORGS).open("w", encoding="utf-8", newline="") as handle:
        handle.write("# a comment before the header\n")
        writer = csv.DictWriter(handle, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        handle.write("\n# a comment between rows\n")
        writer.writerows(rows)
    loaded = read_directory(folder).rows[ORGS]
    assert len(loaded) == len(rows)
    assert all(r["status"] is None and r["support"] is None for r in loaded)


def test_one_organisations_file_brings_the_geography_and_no_user(tmp_path: Path) -> None:
    path = tmp_path / "finess.csv"
    shutil.copy(demo_directory() / ORGS, path)
    directory = read_directory(path)
    counts = directory.counts()
    assert (counts.regions, counts.departments, counts.users) == (18, 101, 0)
    assert counts.organisations == len(_demo_rows(ORGS))


# -- a malformed directory: a clear error and nothing changed ----------------------------------

_BAD: list[tuple[str, str, str, str]] = [
    # (what, needle in organisations.csv, replacement, words of the error)
    ("status", ",public,sanitaire,", ",publique,sanitaire,", "status 'publique'"),
    ("category", ",public,sanitaire,", ",public,clinique,", "category 'clinique'"),
    ("kind", "SAMU-31,samu,", "SAMU-31,smur,", "kind 'smur'"),
    (
        "support",
        ",GHT-OCC-06,crise.ght-occ-06@example-sante.fr,,,319900001,",
        ",GHT-OCC-06,crise.ght-occ-06@example-sante.fr,,,349900001,",
        "must be an establishment of that GHT",
    ),
    (
        "department",
        "319900001,hospital,CHU de Toulouse,OCC,SUD,31,",
        "319900001,hospital,CHU de Toulouse,OCC,SUD,75,",
        "lies in region IDF",
    ),
    (
        "zone",
        "319900001,hospital,CHU de Toulouse,OCC,SUD,",
        "319900001,hospital,CHU de Toulouse,OCC,PARIS,",
        "lies in zone SUD",
    ),
    (
        "referent",
        "SFCTCV-IDF,sfctcv,Référent régional ECMO SFCTCV Île-de-France,IDF,PARIS,",
        "SFCTCV-IDF,sfctcv,Référent régional ECMO SFCTCV Île-de-France,OCC,SUD,",
        "a second SFCTCV referent for OCC",
    ),
    ("column", ",deputy_phone\n", ",deputy_fax\n", "unknown deputy_fax"),
    ("required", "id,kind,name,", "id,type,name,", "missing kind"),
]


@pytest.mark.parametrize(("what", "needle", "replacement", "words"), _BAD, ids=[b[0] for b in _BAD])
def test_a_malformed_organisations_file_is_refused_and_changes_nothing(
    restored: Ctx, tmp_path: Path, what: str, needle: str, replacement: str, words: str
) -> None:
    folder = _copy(tmp_path)
    text = (folder / ORGS).read_text(encoding="utf-8")
    assert needle in text, what
    (folder / ORGS).write_text(text.replace(needle, replacement, 1), encoding="utf-8")
    with restored.db.read() as conn:
        before = _organisations(conn)
    with pytest.raises(InputError) as caught, restored.db.write() as conn:
        load_directory(conn, folder)
    assert words in caught.value.message
    assert caught.value.why.startswith("directory_")
    if what not in ("column", "required"):
        assert ", line " in caught.value.message  # says where
    with restored.db.read() as conn:
        assert _organisations(conn) == before


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "finess.csv"
    path.write_bytes((demo_directory() / ORGS).read_text(encoding="utf-8").encode("cp1252"))
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_directory(path)


def test_the_details_are_written_and_rewritten(restored: Ctx, tmp_path: Path) -> None:
    """A reload updates an organisation's details (here a GHT's deputy)."""
    folder = _copy(tmp_path)
    text = (folder / ORGS).read_text(encoding="utf-8")
    old = "Suppléant logistique du GHT Haute-Garonne et Tarn Ouest"
    assert old in text
    (folder / ORGS).write_text(text.replace(old, "Suppléante PUI CHU de Toulouse"), "utf-8")
    with restored.db.write() as conn:
        load_directory(conn, folder)
    with restored.db.read() as conn:
        row = conn.execute(
            sa.text("SELECT support, deputy_name FROM organisation WHERE id = 'GHT-OCC-06'")
        ).one()
    assert tuple(row) == (TOULOUSE, "Suppléante PUI CHU de Toulouse")


# -- regul init --directory --------------------------------------------------------------------


def _regul(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"REGUL_DATABASE_URL": url, "COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_init_directory_loads_one_organisations_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    path = tmp_path / "finess.csv"
    shutil.copy(demo_directory() / ORGS, path)
    code, out, err = _regul(url, "init", "--directory", str(path))
    assert code == 0, err
    assert "0 users" in out
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM organisation")).scalar_one() == len(
            _demo_rows(ORGS)
        )
        assert conn.execute(sa.text("SELECT count(*) FROM regul_user")).scalar_one() == 0
    engine.dispose()


def test_init_with_a_malformed_directory_changes_nothing(tmp_path: Path) -> None:
    """One line naming the file and the line, exit 2; an existing database keeps its directory
    and a new one is not even created."""
    bad = tmp_path / "finess.csv"
    text = (demo_directory() / ORGS).read_text(encoding="utf-8")
    bad.write_text(text.replace("SAMU-31,samu,", "SAMU-31,smur,", 1), encoding="utf-8")

    fresh = tmp_path / "fresh.db"
    code, _, err = _regul(f"sqlite:///{fresh}", "init", "--directory", str(bad))
    assert code == 2
    assert f"{bad}, line " in err
    assert "kind 'smur'" in err
    assert not fresh.exists() or fresh.stat().st_size == 0

    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert _regul(url, "init", "--demo")[0] == 0
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        before = _organisations(conn)
    code, _, err = _regul(url, "init", "--directory", str(bad))
    assert code == 2, err
    with engine.connect() as conn:
        assert _organisations(conn) == before
    engine.dispose()
    code, _, err = _regul(url, "init", "--directory", str(tmp_path / "nowhere.csv"))
    assert code == 2
    assert "does not exist" in err


# -- the desk and the API for a referent -----------------------------------------------------


def test_sfctcv_desk_and_api_show_ecmo_cases_of_its_region_and_no_action(web: Web) -> None:
    """The referent's desk lists the ECMO case of its region, opens it with no action button,
    and the other workflows' cases are 'no case' (404), on the desk as in the API."""
    ecmo, ppe = web.ctx.open("ecmo"), web.ctx.open("ppe")
    web.login("sfctcv-occ")
    queue = web.client.get("/")
    assert queue.status_code == 200
    assert ecmo.reference in queue.text
    assert ppe.reference not in queue.text
    page = web.client.get(f"/cases/{ecmo.reference}")
    assert page.status_code == 200
    assert f"/cases/{ecmo.reference}/fire/" not in page.text
    assert web.client.get(f"/cases/{ppe.reference}").status_code == 404
    headers = web.token("sfctcv-occ")
    listed = web.client.get(f"{API}/cases", headers=headers).json()
    assert [c["reference"] for c in listed] == [ecmo.reference]
    assert web.client.get(f"{API}/cases/{ppe.reference}", headers=headers).status_code == 404
    me = web.client.get(f"{API}/me", headers=headers).json()
    assert (me["role"], me["scope"]) == ("sfctcv", "region OCC")


def test_directory_errors_have_a_french_wording_with_file_and_line(tmp_path: Path) -> None:
    from interfaces.catalogue import french

    folder = _copy(tmp_path)
    text = (folder / ORGS).read_text(encoding="utf-8")
    (folder / ORGS).write_text(text.replace("SAMU-31,samu,", "SAMU-31,smur,", 1), "utf-8")
    with pytest.raises(InputError) as caught:
        read_directory(folder)
    wording = french(caught.value)
    assert wording.startswith("Annuaire refusé")
    assert f"{folder / ORGS}, ligne {caught.value.data['line']}" in wording
    assert "Rien n'a été modifié" in wording
