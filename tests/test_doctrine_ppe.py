"""The doctrine of issue 10 for PPE, transfers and request data, on SQLite and PostgreSQL.

PPE: the GHT rung is passed over when the establishment has no GHT or the deployment turns it
off; SpF holds the national rung (the CCS no longer acts there); the ARS opens a request on
behalf of an establishment or a médico-social structure of its region; request lines; each
level ships from its own stock. Transfers: the receiving establishment exists, lies inside
the resolver's scope (region, zone, anywhere) and is reachable by the means. Patient
references refuse names. Every rule: allowed inside, refused outside, the refusal recorded,
bad input changing nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from engine import audit, tables
from engine.errors import InputError, NotPermitted
from engine.runner import Runner
from engine.values import CaseView
from engine.workflow import FieldSpec
from interfaces.catalogue import french
from interfaces.desk import facts
from tests.conftest import (
    ACTORS_OCC,
    CONFIRMS,
    DEFAULT_FIELDS,
    TOULOUSE,
    TRIGGER_FIELDS,
    Ctx,
    Web,
    drive,
)
from workflows import default_registry
from workflows.labels import value_label

NO_GHT = "759990999"  # a test hospital of Île-de-France without a GHT (as AP-HP's are)
EHPAD = "939900003"  # EHPAD Résidence des Tilleuls (Montreuil), Île-de-France, no GHT
APHP = "759900001"  # AP-HP Hôpital européen Georges-Pompidou: no GHT
POISSY = "789900001"  # Île-de-France, GHT-IDF-01
MONTPELLIER = "349900001"  # Occitanie, zone Sud
MARSEILLE = "139900001"  # Provence-Alpes-Côte d'Azur, zone Sud
BALLANGER = "939900001"  # Île-de-France, zone de Paris
GUADELOUPE = "971990001"  # CHU de la Guadeloupe, overseas
BASSE_TERRE = "971990003"  # Guadeloupe too
AJACCIO = "2A9900001"  # Corsica


def add_org(ctx: Ctx, org: str, kind: str, region: str, zone: str, department: str) -> str:
    """An organisation without a GHT and its establishment user (kept across tests)."""
    login = f"etab-{org}"
    with ctx.db.write() as conn:
        if conn.execute(
            sa.select(tables.ORGANISATION.c.id).where(tables.ORGANISATION.c.id == org)
        ).first():
            return login
        conn.execute(
            tables.ORGANISATION.insert(),
            {
                "id": org, "kind": kind, "name": f"Test {org}", "region": region, "zone": zone,
                "department": department, "ght": None, "email": f"{org}@example-sante.fr",
            },
        )  # fmt: skip
        conn.execute(
            tables.USER.insert(),
            {"login": login, "name": f"Test {org}", "role": "establishment", "org": org},
        )
    return login


def events(ctx: Ctx, case: CaseView) -> list[Any]:
    return ctx.runner.history(case.reference)[1]


def verified(ctx: Ctx) -> None:
    with ctx.db.read() as conn:
        report = audit.verify(conn, registry=ctx.registry)
    assert report.ok, report


def refused_unchanged(ctx: Ctx, case: CaseView, call: Any, error: type, why: str) -> Any:
    """``call`` raises ``error`` with ``why``: the case is unchanged; a refusal adds one
    recorded event (a NotPermitted), bad input none."""
    before = ctx.runner.show(case.reference)
    refusals = ctx.count("audit_event", "action = 'refused'")
    with pytest.raises(error) as info:
        call()
    assert info.value.why == why, info.value
    after = ctx.runner.show(case.reference)
    assert (after.state, after.version, after.fields) == (
        before.state,
        before.version,
        before.fields,
    )
    recorded = ctx.count("audit_event", "action = 'refused'") - refusals
    assert recorded == (1 if error is NotPermitted else 0)
    return info.value


# -- the PPE ladder -----------------------------------------------------------------------


def test_ppe_with_a_ght_goes_through_the_ght(ctx: Ctx) -> None:
    case = drive(ctx, ctx.open("ppe"), ["escalate"])
    assert (case.state, case.level) == ("ght_review", "ght")
    assert "level_skipped" not in events(ctx, case)[-1].data


def test_ppe_without_a_ght_goes_straight_to_its_ars(ctx: Ctx) -> None:
    """AP-HP has no GHT: its request reaches the ARS at once, the GHT rung recorded as passed
    over; the chain replays."""
    login = add_org(ctx, NO_GHT, "hospital", "IDF", "PARIS", "75")
    case = ctx.runner.open_case(kind="ppe", login=login, org=NO_GHT, fields=DEFAULT_FIELDS["ppe"])
    case = ctx.runner.advance(
        reference=case.reference, trigger="escalate", login=login, reason="urgent"
    )
    assert (case.state, case.level, case.version) == ("ars_review", "ars", 2)
    moved, step = events(ctx, case)[-2:]
    assert (moved.actor, moved.from_state, moved.to_state) == (login, "requested", "ght_review")
    assert (step.actor, step.from_state, step.to_state, step.version) == (
        "system", "ght_review", "ars_review", 2,
    )  # fmt: skip
    assert (step.data["level_skipped"], step.data["why"]) == ("ght", "no_organisation")
    assert case.deadline is not None
    assert case.deadline.state == "ars_review"
    case = ctx.runner.advance(
        reference=case.reference, trigger="resolve", login="ars-idf", reason="stock régional",
        data=TRIGGER_FIELDS[("ppe", "resolve")],
    )  # fmt: skip
    assert case.fields["resolve"]["source"] == "region"
    verified(ctx)


def test_the_sweep_passes_over_the_ght_rung_too(ctx: Ctx) -> None:
    from datetime import timedelta

    from engine.sweeper import sweep

    login = add_org(ctx, NO_GHT, "hospital", "IDF", "PARIS", "75")
    case = ctx.runner.open_case(kind="ppe", login=login, org=NO_GHT, fields=DEFAULT_FIELDS["ppe"])
    ctx.clock.advance(timedelta(hours=5))
    sweep(ctx.runner)
    assert ctx.runner.show(case.reference).state == "ars_review"
    verified(ctx)


def test_a_deployment_without_the_ght_step(ctx: Ctx) -> None:
    """ppe_ght_step off: every PPE request goes from the establishment to its ARS."""
    registry = default_registry().without_states({"ppe": ("ght_review",)})
    runner = Runner(ctx.db, registry, ctx.clock, rules=CONFIRMS)  # the hospital's confirm step
    case = runner.open_case(
        kind="ppe", login=ACTORS_OCC["establishment"], org=TOULOUSE, fields=DEFAULT_FIELDS["ppe"]
    )
    case = runner.advance(
        reference=case.reference, trigger="escalate", login=ACTORS_OCC["establishment"], reason="x"
    )
    assert case.state == "ars_review"
    with ctx.db.read() as conn:
        assert audit.verify(conn, registry=registry).ok


def test_the_setting_builds_the_registry(tmp_path: Any) -> None:
    from interfaces.app import build_app

    url = f"sqlite:///{tmp_path / 'r.db'}"
    app = build_app(database_url=url, check_schema=False, ppe_ght_step=False)
    assert app.registry["ppe"].skipped == frozenset({"ght_review"})
    default = build_app(database_url=url, check_schema=False)
    assert default.registry["ppe"].skipped == frozenset()


def test_only_an_optional_state_can_be_turned_off() -> None:
    with pytest.raises(InputError, match="not optional"):
        default_registry().without_states({"ppe": ("ars_review",)})


def test_spf_holds_the_national_rung_and_the_ccs_no_longer_acts(ctx: Ctx) -> None:
    case = drive(ctx, ctx.open("ppe"), ["escalate", "escalate", "escalate"])
    assert (case.state, case.level) == ("national_review", "spf")
    refused_unchanged(
        ctx, case,
        lambda: ctx.runner.advance(
            reference=case.reference, trigger="resolve", login="ccs", reason="stock national",
            data=TRIGGER_FIELDS[("ppe", "resolve")],
        ),
        NotPermitted, "role_may_not_fire",
    )  # fmt: skip
    ctx.runner.control(reference=case.reference, action="hold", login="spf", reason="arbitrage")
    ctx.runner.control(reference=case.reference, action="resume", login="spf", reason="fait")
    case = ctx.runner.advance(
        reference=case.reference, trigger="resolve", login="spf", reason="stock national",
        data=TRIGGER_FIELDS[("ppe", "resolve")],
    )  # fmt: skip
    assert (case.state, case.fields["resolve"]["source"]) == ("dispatched", "national")


# -- each level ships from its own stock ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "login", "source", "allowed"),
    [
        (["escalate"], "ght-occ-06", "ght", True),
        (["escalate"], "ght-occ-06", "region", False),
        (["escalate", "escalate"], "ars-occ", "region", True),
        (["escalate", "escalate"], "ars-occ", "national", False),
        (["escalate", "escalate"], "ars-occ", "ght", False),
        (["escalate", "escalate", "escalate"], "spf", "national", True),
        (["escalate", "escalate", "escalate"], "spf", "region", False),
    ],
)
def test_the_source_of_a_shipment(
    ctx: Ctx, path: list[str], login: str, source: str, allowed: bool
) -> None:
    case = drive(ctx, ctx.open("ppe"), path)
    data = {**TRIGGER_FIELDS[("ppe", "resolve")], "source": source}

    def resolve() -> CaseView:
        return ctx.runner.advance(
            reference=case.reference, trigger="resolve", login=login, reason="x", data=data
        )

    if allowed:
        assert resolve().fields["resolve"]["source"] == source
        return
    error = refused_unchanged(ctx, case, resolve, NotPermitted, "value_reserved")
    assert error.data["value"] == source
    last = events(ctx, case)[-1]
    assert (last.action, last.data["fields"]["source"]) == ("refused", source)
    assert "ne relève pas de votre niveau" in french(error)


# -- the ARS opens on behalf of an establishment --------------------------------------------


def test_the_ars_opens_a_ppe_request_for_an_establishment_of_its_region(ctx: Ctx) -> None:
    case = ctx.runner.open_case(
        kind="ppe", login="ars-occ", org=TOULOUSE, fields=DEFAULT_FIELDS["ppe"]
    )
    assert (case.org, case.opened_by, case.state, case.version) == (
        TOULOUSE, "ars-occ", "ars_review", 1,
    )  # fmt: skip
    opened, *steps = events(ctx, case)
    assert (opened.action, opened.actor, opened.data["on_behalf_of"]) == (
        "opened", "ars-occ", TOULOUSE,
    )  # fmt: skip
    assert [(e.actor, e.to_state, e.data["level_skipped"], e.data["why"]) for e in steps] == [
        ("system", "ght_review", "establishment", "opened_by_regulator"),
        ("system", "ars_review", "ght", "opened_by_regulator"),
    ]
    assert case.deadline is not None
    assert case.deadline.state == "ars_review"
    verified(ctx)


def test_the_ars_opens_for_a_medico_social_structure(ctx: Ctx) -> None:
    """An EHPAD of Île-de-France (no GHT) gets its request through its ARS; it receives no
    transferred patient (not a health establishment)."""
    case = ctx.runner.open_case(
        kind="ppe", login="ars-idf", org=EHPAD, fields=DEFAULT_FIELDS["ppe"]
    )
    assert (case.org, case.state, case.opened_by) == (EHPAD, "ars_review", "ars-idf")
    transfer = transfer_at(ctx, "national_regulation")
    refused_unchanged(
        ctx, transfer, resolve_to(ctx, transfer, "ccs", EHPAD), InputError, "unknown_establishment"
    )


def test_ap_hp_of_the_directory_goes_straight_to_its_ars(ctx: Ctx) -> None:
    """The directory's AP-HP hospitals have no GHT; their delivery address is their own."""
    fields = {"lines": [LINE]}
    case = ctx.runner.open_case(kind="ppe", login=f"etab-{APHP}", org=APHP, fields=fields)
    assert case.ght is None
    assert "Georges-Pompidou" in case.fields["delivery_address"]
    case = ctx.runner.advance(
        reference=case.reference, trigger="escalate", login=f"etab-{APHP}", reason="urgent"
    )
    assert case.state == "ars_review"


def test_the_delivery_address_of_a_ght_establishment_is_its_ght_one(ctx: Ctx) -> None:
    case = ctx.runner.open_case(
        kind="ppe", login=ACTORS_OCC["establishment"], org=TOULOUSE, fields={"lines": [LINE]}
    )
    assert case.fields["delivery_address"].startswith(
        "Pharmacie à usage intérieur, CHU de Toulouse"
    )
    given = ctx.open("ppe", lines=[LINE], delivery_address="Quai 7")
    assert given.fields["delivery_address"] == "Quai 7"


@pytest.mark.parametrize(
    ("login", "kind", "org", "why"),
    [
        ("ars-occ", "ppe", POISSY, "hospital_outside_scope"),  # another region
        ("ars-occ", "ecmo", TOULOUSE, "role_may_not_open"),  # PPE only
        ("ght-occ-06", "ppe", TOULOUSE, "role_may_not_open"),
    ],
)
def test_opening_on_behalf_outside_is_refused_and_recorded(
    ctx: Ctx, login: str, kind: str, org: str, why: str
) -> None:
    before = ctx.snapshot()
    security = ctx.count("audit_event", "case_id IS NULL AND action = 'refused'")
    with pytest.raises(NotPermitted) as info:
        ctx.runner.open_case(kind=kind, login=login, org=org, fields=DEFAULT_FIELDS[kind])
    assert info.value.why == why
    after = ctx.snapshot()
    assert after["regul_case"] == before["regul_case"]
    assert ctx.count("audit_event", "case_id IS NULL AND action = 'refused'") == security + 1


# -- request lines and the delivery address ------------------------------------------------


LINE = {"item": "gown", "quantity": 300, "stock_on_hand": 0, "weekly_consumption": 150}


@pytest.mark.parametrize(
    ("lines", "why", "params"),
    [
        ([], "lines_empty", {}),
        ("pas du JSON", "lines_not_a_list", {}),
        ([LINE, {**LINE, "quantity": 5}], "line_item_twice", {"line": 2, "item": "gown"}),
        ([LINE, {**LINE, "item": "cap", "quantity": 0}], "line_bad_value", {"line": 2, "column": "quantity"}),
        ([{**LINE, "stock_on_hand": -1}], "line_bad_value", {"line": 1, "column": "stock_on_hand"}),
        ([{**LINE, "item": "masque"}], "line_bad_value", {"line": 1, "column": "item"}),
        ([{k: v for k, v in LINE.items() if k != "weekly_consumption"}], "line_missing",
         {"line": 1, "column": "weekly_consumption"}),
        ([{**LINE, "price": 3}], "line_unknown_column", {"line": 1, "column": "price"}),
        (["gown"], "line_not_an_object", {"line": 1}),
    ],
)  # fmt: skip
def test_bad_lines_name_the_line_and_change_nothing(
    ctx: Ctx, lines: object, why: str, params: dict[str, object]
) -> None:
    before = ctx.snapshot()
    with pytest.raises(InputError) as info:
        ctx.open("ppe", lines=lines)
    assert info.value.why == why
    assert info.value.data.items() >= {"field": "lines", **params}.items()
    assert ctx.snapshot() == before
    assert french(info.value).startswith(("Ligne", "La ligne", "La demande", "Les lignes"))


def test_lines_as_json_text_and_zero_stock(ctx: Ctx) -> None:
    lines = [LINE, {**LINE, "item": "ffp2_mask", "stock_on_hand": "120"}]
    case = ctx.open("ppe", lines=json.dumps(lines))
    assert case.fields["lines"][0]["stock_on_hand"] == 0
    assert case.fields["lines"][1]["stock_on_hand"] == 120
    assert "surblouses : 300 demandés (stock 0" in value_label("lines", case.fields["lines"])


def test_the_delivery_address_is_required_without_a_directory_one(ctx: Ctx) -> None:
    login = add_org(ctx, NO_GHT, "hospital", "IDF", "PARIS", "75")  # no address, no GHT
    before = ctx.snapshot()
    with pytest.raises(InputError) as info:
        ctx.runner.open_case(kind="ppe", login=login, org=NO_GHT, fields={"lines": [LINE]})
    assert (info.value.why, info.value.data["field"]) == ("missing_field", "delivery_address")
    assert ctx.snapshot() == before


def test_the_delivery_address_falls_back_on_the_directory() -> None:
    from datetime import UTC, datetime

    from engine.decisions import Decider
    from engine.values import Actor, Place

    actor = Actor("etab", "Etab", "establishment", TOULOUSE, "hospital", "OCC", "SUD", "GHT-OCC-06")
    place = Place(TOULOUSE, "OCC", "SUD", "GHT-OCC-06", "31", delivery_address="Quai 3, CHU")
    outcome = Decider(default_registry()).open(
        actor, "ppe", place, {"lines": [LINE]}, datetime(2026, 11, 22, tzinfo=UTC)
    )
    assert outcome.opened is not None
    assert outcome.opened["fields"]["delivery_address"] == "Quai 3, CHU"


def test_an_old_ppe_case_stays_readable() -> None:
    """Cases opened with one item and its quantity read with their French labels."""
    shown = dict(facts(default_registry()["ppe"], {"item": "ffp2_mask", "quantity": 5000}))
    assert shown == {"Article": "masques FFP2", "Quantité demandée": "5000"}


# -- transfers: where the receiving establishment lies, and how to get there ----------------


def transfer_at(ctx: Ctx, state: str) -> CaseView:
    path = {"ars_regulation": ["escalate"], "zone_regulation": ["escalate", "escalate"]}
    return drive(ctx, ctx.open("transfer"), path.get(state, ["escalate"] * 3))


def resolve_to(ctx: Ctx, case: CaseView, login: str, receiving: str, means: str = "air") -> Any:
    data = {
        **TRIGGER_FIELDS[("transfer", "resolve")],
        "receiving_hospital": receiving,
        "means": means,
    }
    return lambda: ctx.runner.advance(
        reference=case.reference, trigger="resolve", login=login, reason="lit trouvé", data=data
    )


@pytest.mark.parametrize(
    ("state", "login", "receiving", "allowed"),
    [
        ("ars_regulation", "ars-occ", MONTPELLIER, True),
        ("ars_regulation", "ars-occ", MARSEILLE, False),  # same zone, another region
        ("ars_regulation", "ars-occ", BALLANGER, False),
        ("zone_regulation", "arsz-sud", MARSEILLE, True),
        ("zone_regulation", "arsz-sud", BALLANGER, False),  # another zone
        ("national_regulation", "ccs", BALLANGER, True),
        ("national_regulation", "ccs", GUADELOUPE, True),
    ],
)
def test_the_receiving_establishment_lies_inside_the_resolver_scope(
    ctx: Ctx, state: str, login: str, receiving: str, allowed: bool
) -> None:
    case = transfer_at(ctx, state)
    assert case.state == state
    if allowed:
        after = resolve_to(ctx, case, login, receiving)()
        # proposed to the receiving establishment, which accepts or declines (issue 13)
        proposed = {"ars_regulation": "proposed_ars", "zone_regulation": "proposed_zone"}
        assert (after.state, after.fields["resolve"]["receiving_hospital"]) == (
            proposed.get(state, "proposed_national"),
            receiving,
        )
        return
    error = refused_unchanged(ctx, case, resolve_to(ctx, case, login, receiving), NotPermitted,
                              "receiving_outside_scope")  # fmt: skip
    assert error.data["org"] == receiving
    last = events(ctx, case)[-1]
    assert (last.action, last.data["fields"]["receiving_hospital"]) == ("refused", receiving)
    assert "hors de votre périmètre" in french(error)


@pytest.mark.parametrize("receiving", ["999999999", "310000000", "GHT-OCC-06"])
def test_an_unknown_receiving_establishment_changes_nothing(ctx: Ctx, receiving: str) -> None:
    case = transfer_at(ctx, "national_regulation")
    why = "unknown_establishment" if receiving[0].isdigit() else "invalid_input"
    error = refused_unchanged(ctx, case, resolve_to(ctx, case, "ccs", receiving), InputError, why)
    if why == "unknown_establishment":
        assert "n'est pas un établissement de santé de l'annuaire" in french(error)


@pytest.mark.parametrize(
    ("receiving", "means", "fits"),
    [
        (GUADELOUPE, "road", False),
        (GUADELOUPE, "rail", False),
        (GUADELOUPE, "air", True),
        (GUADELOUPE, "sea", True),
        (AJACCIO, "road", False),  # Corsica is an island too
        (BALLANGER, "rail", True),
        (BALLANGER, "road", True),
    ],
)
def test_the_means_fits_the_geography(ctx: Ctx, receiving: str, means: str, fits: bool) -> None:
    case = transfer_at(ctx, "national_regulation")
    call = resolve_to(ctx, case, "ccs", receiving, means)
    if fits:
        assert call().fields["resolve"]["means"] == means
        return
    error = refused_unchanged(ctx, case, call, InputError, "means_unfit")
    assert "pas de route ni de train" in french(error)


def test_road_inside_one_overseas_region(ctx: Ctx) -> None:
    case = ctx.runner.open_case(
        kind="transfer", login=f"etab-{GUADELOUPE}", org=GUADELOUPE,
        fields=DEFAULT_FIELDS["transfer"],
    )  # fmt: skip
    case = ctx.runner.advance(
        reference=case.reference, trigger="escalate", login=f"etab-{GUADELOUPE}", reason="x"
    )
    ok = resolve_to(ctx, case, "ars-gua", BASSE_TERRE, "road")()
    assert ok.state == "proposed_ars"


# -- request data -----------------------------------------------------------------------------


def test_a_non_covid_transfer_needs_its_loss_of_chance(ctx: Ctx) -> None:
    before = ctx.snapshot()
    with pytest.raises(InputError) as info:
        ctx.open("transfer", covid="no")
    assert (info.value.why, info.value.data["field"]) == ("missing_field", "loss_of_chance")
    assert ctx.snapshot() == before
    case = ctx.open(
        "transfer", covid="no", loss_of_chance="chirurgie carcinologique reportée",
        protected_category="cancer", bed_category="ssr",
    )  # fmt: skip
    assert case.fields["protected_category"] == "cancer"
    assert value_label("protected_category", "cancer") == "patient atteint d'un cancer"
    assert value_label("bed_category", "surveillance_continue") == "surveillance continue"


def test_the_ecmo_request_data(ctx: Ctx) -> None:
    case = ctx.open(
        "ecmo", covid="non", consoles_needed="1", circuits_needed=2,
        local_options="pas de console libre au CHU", time_to_rupture="PT6H",
    )  # fmt: skip
    fields = case.fields
    assert (fields["covid"], fields["consoles_needed"], fields["time_to_rupture"]) == (
        False,
        1,
        "6h",
    )
    with pytest.raises(InputError):
        ctx.open("ecmo", time_to_rupture="bientôt")


# -- patient references ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("Jean-Dupont", "bad_reference"),
        ("Jean Dupont", "bad_reference"),
        ("DUPONT", "bad_reference"),
        ("Jean-Dupont-1", "reference_looks_like_name"),
        ("dupont-jean-1975", "reference_looks_like_name"),
    ],
)
def test_a_name_is_never_a_patient_reference(ctx: Ctx, ref: str, why: str) -> None:
    before = ctx.snapshot()
    with pytest.raises(InputError) as info:
        ctx.open("ecmo", patient_ref=ref)
    assert info.value.why == why
    assert ctx.snapshot() == before
    assert "jamais le nom du patient" in french(info.value)


@pytest.mark.parametrize("ref", ["PAT-0001", "PAT-RACE-3", "a1b2", "ECMO-2026-042", "7F3A9C"])
def test_pseudonymous_references_pass(ref: str) -> None:
    assert FieldSpec("patient_ref", "ref").parse(ref) == ref


# -- the desk ---------------------------------------------------------------------------------


def test_the_desk_opens_a_ppe_request_with_lines(web: Web) -> None:
    csrf = web.login(ACTORS_OCC["establishment"])
    page = web.client.get("/new/ppe")
    assert 'name="lines-1-item"' in page.text
    assert 'name="lines-5-weekly_consumption"' in page.text
    form = {
        "csrf": csrf, "field_delivery_address": "Quai 2",
        "lines-1-item": "gown", "lines-1-quantity": "300", "lines-1-stock_on_hand": "0",
        "lines-1-weekly_consumption": "150",
        "lines-2-item": "ffp2_mask", "lines-2-quantity": "1000", "lines-2-stock_on_hand": "50",
        "lines-2-weekly_consumption": "400",
    }  # fmt: skip
    answer = web.client.post("/new/ppe", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    reference = answer.headers["location"].split("/cases/")[1].split("?")[0]
    case = web.ctx.runner.show(reference)
    assert [line["item"] for line in case.fields["lines"]] == ["gown", "ffp2_mask"]
    shown = web.client.get(f"/cases/{reference}").text
    assert "surblouses : 300 demandés" in shown


def test_the_desk_names_the_bad_line_in_french(web: Web) -> None:
    csrf = web.login(ACTORS_OCC["establishment"])
    before = web.ctx.snapshot()
    form = {
        "csrf": csrf, "field_delivery_address": "Quai 2",
        "lines-1-item": "gown", "lines-1-quantity": "300", "lines-1-stock_on_hand": "0",
        "lines-1-weekly_consumption": "150",
        "lines-2-item": "gown", "lines-2-quantity": "10", "lines-2-stock_on_hand": "0",
        "lines-2-weekly_consumption": "1",
    }  # fmt: skip
    answer = web.client.post("/new/ppe", data=form, follow_redirects=False)
    assert answer.status_code == 422, answer.text
    assert "Ligne 2 : l&#39;article surblouses figure déjà" in answer.text
    assert web.ctx.snapshot() == before


def test_the_desk_refuses_a_name_as_reference_in_french(web: Web) -> None:
    csrf = web.login(ACTORS_OCC["establishment"])
    form = {
        "csrf": csrf,
        "field_patient_ref": "Jean-Dupont",
        "field_mode": "VV",
        "field_covid": "no",
    }
    answer = web.client.post("/new/ecmo", data=form, follow_redirects=False)
    assert answer.status_code == 422
    assert "jamais le nom du patient" in answer.text
    page = web.client.get("/new/transfer").text
    for name in ("bed_category", "loss_of_chance", "protected_category", "covid"):
        assert f'name="field_{name}"' in page
    assert "surveillance continue" in page


def test_the_api_takes_lines_as_a_list(web: Web) -> None:
    body = {"kind": "ppe", "org": TOULOUSE, "fields": {"lines": [LINE], "delivery_address": "Quai"}}
    answer = web.client.post(
        "/api/v1/cases", json=body, headers=web.token(ACTORS_OCC["establishment"])
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["fields"]["lines"] == [LINE]


def test_the_ars_opens_on_behalf_from_the_desk(web: Web) -> None:
    csrf = web.login("ars-occ")
    assert 'href="/new/ppe"' in web.client.get("/").text
    assert "structure médico-sociale de votre région" in web.client.get("/new/ppe").text
    form = {
        "csrf": csrf, "org": TOULOUSE, "lines-1-item": "gloves", "lines-1-quantity": "900",
        "lines-1-stock_on_hand": "0", "lines-1-weekly_consumption": "300",
    }  # fmt: skip
    answer = web.client.post("/new/ppe", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    case = web.ctx.runner.show(answer.headers["location"].split("/cases/")[1].split("?")[0])
    assert (case.org, case.opened_by, case.state) == (TOULOUSE, "ars-occ", "ars_review")
    before = web.ctx.snapshot()
    outside = web.client.post("/new/ppe", data={**form, "org": POISSY}, follow_redirects=False)
    assert outside.status_code == 403
    assert "ne relève pas de votre périmètre" in outside.text
    assert web.ctx.snapshot()["regul_case"] == before["regul_case"]


def test_the_cli_takes_lines_as_json(database_url: str) -> None:
    from typer.testing import CliRunner

    from interfaces.cli import app

    lines = json.dumps([LINE])
    result = CliRunner().invoke(
        app,
        ["case", "open", "ppe", "--as", ACTORS_OCC["establishment"], "--org", TOULOUSE,
         "--field", f"lines={lines}", "--field", "delivery_address=Quai 1", "--json"],
        env={"REGUL_DATABASE_URL": database_url, "REGUL_NOTICES": "false"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fields"]["lines"] == [LINE]


def test_the_desk_offers_only_the_resolver_own_stock(web: Web) -> None:
    case = drive(web.ctx, web.ctx.open("ppe"), ["escalate", "escalate"])
    web.login("ars-occ")
    page = web.client.get(f"/cases/{case.reference}").text
    assert '<option value="region"' in page
    assert '<option value="national"' not in page
    assert '<option value="ght"' not in page


def test_only_the_last_step_over_a_passed_rung_is_told() -> None:
    """Escalating past a rung nobody holds queues one notice (the ARS's), not one per step."""
    from datetime import UTC, datetime

    from engine.decisions import Decider, Rules
    from engine.values import Actor, Command, Place

    decider = Decider(
        default_registry(), declares=lambda kind, event: True, rules=Rules(hospital_confirms=True)
    )
    now = datetime(2026, 11, 22, tzinfo=UTC)
    etab = Actor(f"etab-{NO_GHT}", "x", "establishment", NO_GHT, "hospital", "IDF", "PARIS", None)
    place = Place(NO_GHT, "IDF", "PARIS", None, "75", delivery_address="Quai")
    opened = decider.open(etab, "ppe", place, {"lines": [LINE]}, now)
    assert opened.case is not None
    assert opened.notices == (0,)
    case = CaseView(**{**opened.case.__dict__, "id": 1, "reference": "EPI-000001"})
    fired = decider.fire(case, etab, Command("escalate", "urgent", {}), now)
    assert [e.to_state for e in fired.events] == ["ght_review", "ars_review"]
    assert fired.notices == (1,)
    ars = Actor("ars-idf", "x", "ars", "ARS-IDF", "ars", "IDF", "PARIS", None)
    by_ars = decider.open(ars, "ppe", place, {"lines": [LINE]}, now)
    assert [e.to_state for e in by_ars.events] == ["requested", "ght_review", "ars_review"]
    assert by_ars.notices == (2,)
