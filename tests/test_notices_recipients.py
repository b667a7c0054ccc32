"""Who is told: the parties a decision names (lender, receiver, shipper), the SFCTCV referent,
the first regulating level an opening notifies, and the facts of fields other branches add."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from engine.values import CaseView, Draft
from notifications.outbox import Outbox
from notifications.recipients import Directory, regulator, resolve
from notifications.rules import NoticeRule, notices
from tests.conftest import TOULOUSE, Ctx, drive, path_to
from tests.test_notices import BOOKS, REGISTRY, use_outbox
from tests.test_notices import notices as queued

MONTPELLIER = "349900001"


def rule(action: str, info: str = "") -> NoticeRule:
    return NoticeRule("resolve", "resolved", tuple(action.split()), tuple(info.split()))


def orgs(found: list[Any]) -> list[str]:
    return [r.org for r in found]


def directory(ctx: Ctx) -> Directory:
    d = Directory()
    with ctx.db.read() as conn:
        d.load(conn)
    return d


def with_resolve(case: CaseView, **fields: object) -> CaseView:
    return replace(case, fields={**case.fields, "resolve": dict(fields)})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"source": "national"}, ["CCS"], id="national-stock-the-ccs"),
        pytest.param({"source": "hospital", "lender": MONTPELLIER}, [MONTPELLIER], id="hospital"),
        pytest.param({"source": "region", "lender": MONTPELLIER}, [MONTPELLIER], id="region"),
        pytest.param({"source": "hospital", "lender": "999999999"}, [], id="unknown-finess"),
        pytest.param({}, [], id="not-resolved-yet"),
    ],
)
def test_lender_is_the_ccs_for_the_national_stock_else_the_lending_hospital(
    ctx: Ctx, fields: dict[str, object], expected: list[str]
) -> None:
    """ECMO: ``lender`` is the CCS for source=national, else the FINESS in field lender."""
    case = with_resolve(ctx.open("ecmo"), **fields) if fields else ctx.open("ecmo")
    action, _ = resolve(directory(ctx), rule("lender"), case, previous=None, passed=[])
    assert orgs(action) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [("ght", [TOULOUSE]), ("region", ["ARS-OCC"]), ("national", ["SPF"]), ("x", [])],
)
def test_shipper_follows_the_stock_the_ppe_comes_from(
    ctx: Ctx, source: str, expected: list[str]
) -> None:
    """PPE: the GHT's support establishment (the CHU de Toulouse for GHT-OCC-06; the GHT
    itself when the directory names none), the region's ARS, or Santé publique France."""
    case = with_resolve(ctx.open("ppe"), source=source, quantity=10)
    action, _ = resolve(directory(ctx), rule("shipper"), case, previous=None, passed=[])
    assert orgs(action) == expected


def test_receiver_is_the_receiving_establishment_and_its_ars(ctx: Ctx) -> None:
    """Transfer: the establishment in receiving_hospital and the ARS of its region."""
    case = with_resolve(ctx.open("transfer"), receiving_hospital=MONTPELLIER, means="road")
    action, info = resolve(
        directory(ctx), rule("requester", "receiver"), case, previous=None, passed=[]
    )
    assert orgs(action) == [TOULOUSE]
    assert orgs(info) == [MONTPELLIER, "ARS-OCC"]
    lyon = with_resolve(ctx.open("transfer"), receiving_hospital="699900001")
    d = directory(ctx)
    if d.find("699900001") is not None:  # another region: its own ARS is told
        _, info = resolve(d, rule("requester", "receiver"), lyon, previous=None, passed=[])
        assert d.find("699900001").region != "OCC"
        assert "ARS-OCC" not in orgs(info)


def test_regulator_is_the_first_level_that_regulates_the_case(ctx: Ctx) -> None:
    """Opening notifies the level the case goes to; a level with nobody is passed over."""
    d = directory(ctx)
    ecmo, ppe, transfer = ctx.open("ecmo"), ctx.open("ppe"), ctx.open("transfer")
    assert regulator(REGISTRY["ecmo"], d, ecmo) == "umac"
    assert regulator(REGISTRY["ppe"], d, ppe) == "ght"
    assert regulator(REGISTRY["ppe"], d, replace(ppe, ght=None)) == "ars"  # no GHT: the ARS
    assert regulator(REGISTRY["transfer"], d, transfer) == "ars"
    at_umac = replace(ecmo, state="umac_review", level="umac")
    assert regulator(REGISTRY["ecmo"], d, at_umac) == "umac"
    # a cancelled case: from the state it was in
    cancelled = replace(ecmo, state="cancelled", level=None, final=True)
    assert regulator(REGISTRY["ecmo"], d, cancelled, "requested") == "umac"


def test_opening_notifies_the_first_regulating_level_at_once(ctx: Ctx) -> None:
    """ECMO: the UMAC for action, the hospital, the ARS and the regional SFCTCV referent for
    information (DESIGN: informed from the start); transfer: the ARS."""
    ctx = use_outbox(ctx)
    ecmo = ctx.open("ecmo")
    (row,) = queued(ctx)
    assert row.kind == "opened"
    assert row.case_id == ecmo.id
    assert [r["org"] for r in row.recipients["action"]] == ["UMAC-SUD"]
    assert [r["org"] for r in row.recipients["info"]] == [TOULOUSE, "ARS-OCC", "SFCTCV-OCC"]
    transfer = ctx.open("transfer")
    assert queued(ctx)[-1].case_id == transfer.id
    assert [r["org"] for r in queued(ctx)[-1].recipients["action"]] == ["ARS-OCC"]


def test_sfctcv_referent_of_the_region_is_informed_when_the_directory_has_one(ctx: Ctx) -> None:
    """Role string "sfctcv", organisation kind "sfctcv", placed by region; absent: nobody."""
    d = directory(ctx)
    case = ctx.open("ecmo")
    _, info = resolve(d, rule("umac", "sfctcv"), case, previous=None, passed=[])
    referents = [o for o in d._orgs.values() if o.kind == "sfctcv" and o.region == "OCC"]  # type: ignore[union-attr]
    assert orgs(info) == [r.id for r in referents[:1]]


def test_national_is_the_ccs_only_at_a_national_level(ctx: Ctx) -> None:
    """PPE: SpF holds the national level, the CCS is informed; below it, the CCS is not."""
    d = directory(ctx)
    case = ctx.open("ppe")
    _, info = resolve(d, rule("holder", "national"), case, previous=None, passed=[])
    assert orgs(info) == []
    national = replace(case, state="national_review", level="spf")
    action, info = resolve(d, rule("holder", "national"), national, previous="ars", passed=[])
    assert orgs(action) == ["SPF"]
    assert orgs(info) == ["CCS"]


def test_an_unknown_recipient_token_is_refused_when_the_workflow_loads() -> None:
    """A misspelt token fails at import with the list of tokens, not at the first notice."""
    from engine.errors import WorkflowError

    with pytest.raises(WorkflowError, match="unknown recipient 'lendr'"):
        notices(REGISTRY["ecmo"], rows=[("start", "loan_started", "lendr", "")])


def test_fields_other_branches_add_render_in_french(ctx: Ctx) -> None:
    """PPE lines with units, a delivery address, ECMO's Covid flag, consoles and circuits,
    the lender by name and the return date as dd/mm/yyyy; legacy PPE item/quantity too."""
    outbox = Outbox(ctx.registry, BOOKS)
    ppe = ctx.open("ppe")
    lines = [
        {"item": "ffp2_mask", "quantity": 2000, "stock_on_hand": 300, "weekly_consumption": 900},
        {"item": "gown", "quantity": 1, "stock_on_hand": 0},
    ]
    ppe = replace(ppe, fields={"lines": lines, "delivery_address": "Quai 3, CHU de Toulouse"})
    ecmo = ctx.open("ecmo")
    ecmo = replace(
        ecmo,
        fields={**ecmo.fields, "covid": True, "consoles_needed": 1, "circuits_needed": 2,
                "local_options": "aucune console disponible", "time_to_rupture": "6 h"},
    )  # fmt: skip
    with ctx.db.read() as conn:
        outbox.directory.load(conn)
    request = {label: value for label, value in outbox._request(ppe) if label != "Demande"}
    shown = [value for label, value in outbox._request(ppe) if label == "Demande"]
    assert shown == [
        "2\u202f000 masques FFP2 (stock disponible : 300 masques FFP2, "
        "consommation hebdomadaire : 900 masques FFP2)",
        "1 surblouse (stock disponible : 0 surblouse)",
    ]
    assert request["Adresse de livraison"] == "Quai 3, CHU de Toulouse"
    facts = dict(outbox._request(ecmo))
    assert facts["Patient Covid"] == "oui"
    assert facts["Consoles nécessaires"] == "1 console"
    assert facts["Circuits nécessaires"] == "2 circuits"
    draft = Draft("ars-occ", "ars", "ARS-OCC", "transition", "ars_regulation", "dispatched", 4,
                  "prêt", {"trigger": "resolve", "fields": {"source": "hospital",
                           "lender": MONTPELLIER, "return_by": "2026-12-15"}})  # fmt: skip
    fields = dict(outbox._fields(ecmo, draft))
    assert fields["Établissement prêteur"] == f"CHU de Montpellier (FINESS {MONTPELLIER})"
    assert fields["Date de retour du prêt"] == "15/12/2026"
    assert "Origine" not in fields  # the lender line says which establishment


def test_ecmo_loan_notices_reach_the_lender(ctx: Ctx) -> None:
    """Start, return and close of a console lent from the national stock reach the CCS."""
    ctx = use_outbox(ctx)
    spec = REGISTRY["ecmo"]
    case = drive(ctx, ctx.open("ecmo"), path_to(spec, "national_regulation"))
    case = ctx.runner.advance(
        reference=case.reference,
        trigger="resolve",
        login="ccs",
        reason="stock national",
        data={"source": "national", "return_by": "2026-12-15"},
    )
    assert case.state == "dispatched"
    case = drive(ctx, case, ["start"])
    case = ctx.runner.advance(  # the lender of the national stock confirms the return
        reference=case.reference, trigger="return", login="ccs", reason="console rendue"
    )
    case = drive(ctx, case, ["close"])
    rows = {r.kind: r for r in queued(ctx) if r.case_id == case.id}
    for kind in ("loan_started", "loan_returned", "closed"):
        told = rows[kind].recipients["action"] + rows[kind].recipients["info"]
        assert "CCS" in [r["org"] for r in told], kind
    assert "ARS-OCC" in [r["org"] for r in rows["loan_returned"].recipients["action"]]
    assert spec.state(case.state).final


def test_the_national_sfctcv_is_informed_at_the_national_level(ctx: Ctx) -> None:
    """The regional referent while the case is regional; with the CCS, the national SFCTCV too."""
    d = directory(ctx)
    case = ctx.open("ecmo")
    _, info = resolve(d, rule("holder", "sfctcv"), case, previous=None, passed=[])
    assert orgs(info) == ["SFCTCV-OCC"]
    top = replace(case, state="national_regulation", level="ccs")
    _, info = resolve(d, rule("holder", "sfctcv"), top, previous="ars", passed=[])
    assert orgs(info) == ["SFCTCV-OCC", "SFCTCV"]


def test_a_shipment_of_a_one_article_request_is_counted_in_that_article(ctx: Ctx) -> None:
    """« 4 000 masques FFP2 » for a request with one line (the lines of branch doctrine-ppe)
    as for a legacy item/quantity request; several articles: the bare count."""
    outbox = Outbox(ctx.registry, BOOKS)
    with ctx.db.read() as conn:
        outbox.directory.load(conn)
    case = ctx.open("ppe")
    draft = Draft("ars-occ", "ars", "ARS-OCC", "transition", "ars_review", "dispatched", 3,
                  "envoi", {"trigger": "resolve", "fields": {"quantity": 4000, "source": "region",
                            "expected_delivery": "2026-11-24"}})  # fmt: skip
    one = replace(case, fields={"lines": [{"item": "ffp2_mask", "quantity": 5000}]})
    two = replace(case, fields={"lines": [{"item": "ffp2_mask", "quantity": 5}, {"item": "gown",
                                           "quantity": 5}]})  # fmt: skip
    assert dict(outbox._fields(case, draft))["Quantité expédiée"] == "4\u202f000 masques FFP2"
    assert dict(outbox._fields(one, draft))["Quantité expédiée"] == "4\u202f000 masques FFP2"
    assert dict(outbox._fields(two, draft))["Quantité expédiée"] == "4\u202f000"


def test_the_facts_column_matches_its_migration(ctx: Ctx) -> None:
    """Migration 0008 adds ``notice.facts`` as engine.models declares it (JSON, JSONB on
    PostgreSQL, not null): autogenerate finds nothing to change on the notice table."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from engine.models import metadata

    with ctx.db.read() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
        columns = {c["name"]: c for c in sa.inspect(conn).get_columns("notice")}
    assert [d for d in diffs if "notice" in str(d)] == []
    assert columns["facts"]["nullable"] is False
