"""PPE stocks (issue 12) on SQLite and PostgreSQL: the weekly report and its balance, weeks of
cover, the alert rule opening one case per (establishment, item), later reports attached, the
obligation reminded once, movements never overdrawn, a case's shipment debiting its holder,
files refused whole, seed 004's totals from the loaded ledger, holder chains replayed.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine import audit
from engine.clock import FixedClock
from engine.errors import Conflict, InputError, NotPermitted
from interfaces.app import App, build_app
from resources import ledger
from resources.ppe import stock
from resources.ppe.rules import RuleBook, cover, parse_rules
from resources.ppe.seed004 import PUBLISHED
from resources.ppe.service import PpeService
from tests.conftest import CASE_TABLES, TOULOUSE

MONDAY = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday 08:00 Paris, week 48
WEEK = "2026-W48"
CASTRES = "819900002"  # CHIC de Castres-Mazamet, GHT-OCC-01 (support: CH d'Albi)


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    built = build_app(
        database_url=database_url, clock=FixedClock(MONDAY), check_schema=False,
        ppe_enrolment="all",
    )  # fmt: skip
    yield built
    built.db.dispose()


@pytest.fixture
def ppe(app: App) -> PpeService:
    return PpeService(app)


def lines(**items: tuple[int, int, int | None]) -> list[dict[str, Any]]:
    return [{"item": k, "on_hand": s, "consumed": c, "crisis": r} for k, (s, c, r) in items.items()]


def report(ppe: PpeService, holder: str = TOULOUSE, week: str = WEEK, login: str = "",
           **items: tuple[int, int, int | None]) -> None:  # fmt: skip
    raw = {"establishment": holder, "week": week, "attested_by": "Mme la Directrice",
           "lines": lines(**items)}  # fmt: skip
    ppe.report(login or f"etab-{holder}", raw)


def count(app: App, table: str, where: str = "1=1") -> int:
    with app.db.read() as conn:
        return int(
            conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one()
        )


def balance(app: App, holder: str, item: str, bucket: str = "on_hand") -> int:
    with app.db.read() as conn:
        return int(conn.execute(sa.text(
            "SELECT COALESCE(SUM(quantity), 0) FROM stock_balance WHERE holder = :h AND "
            "item = :i AND bucket = :b"), {"h": holder, "i": item, "b": bucket}).scalar_one())  # fmt: skip


def snapshot(app: App) -> dict[str, Any]:
    with app.db.read() as conn:
        return {
            t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY 1"))]
            for t in CASE_TABLES
        }


def verified(app: App) -> None:
    with app.db.read() as conn:
        result = audit.verify(conn, registry=app.registry)
    assert result.ok, result.findings


# -- weeks of cover and rules (pure) ------------------------------------------------------------


def test_weeks_of_cover_declared_kept_or_estimated() -> None:
    assert cover(3000, 1000, None, [500]).weeks == 3.0
    assert cover(3000, None, 1500, [500]).source == "kept"
    estimated = cover(3000, None, None, [500, 1200, 900])
    assert (estimated.weeks, estimated.source, estimated.estimated) == (2.5, "estimated", True)
    assert cover(10, None, None, [0, 0]).weeks is None


def test_alert_rules_are_data_and_the_most_precise_wins() -> None:
    book = parse_rules(
        ["scope,code,item,threshold,critical,action", "national,,*,3,1,case",
         "region,OCC,ffp2_mask,4,2,case notify", f"establishment,{TOULOUSE},*,2,1,notify"],
        source="test",
    )  # fmt: skip
    assert book.rule("ffp2_mask", "x", "OCC").threshold == 4
    assert book.rule("ffp2_mask", TOULOUSE, "OCC").actions == ("notify",)
    assert book.rule("gown", "x", "IDF").threshold == 3
    with pytest.raises(InputError) as bad:
        parse_rules(["scope,code,item,threshold,critical,action", "region,,*,3,1,case"], source="t")
    assert bad.value.why == "ppe_bad_rule"
    assert isinstance(RuleBook(()).rule("gown", "x", None).threshold, float)


# -- the weekly report ------------------------------------------------------------------------------


def test_a_report_sets_the_balance_and_corrections_are_versions(app: App, ppe: PpeService) -> None:
    report(ppe, gown=(5000, 1000, 1000), gloves=(90000, 20000, None))
    assert balance(app, TOULOUSE, "gown") == 5000
    report(ppe, gown=(4000, 1000, 1000), gloves=(90000, 20000, None))  # a correction
    assert balance(app, TOULOUSE, "gown") == 4000
    assert count(app, "resource_report", f"holder = '{TOULOUSE}'") == 2
    assert count(app, "obligation", "status = 'met'") == 0  # not planned yet: nothing to meet
    rows = {r.item: r for r in ppe.cover(holders=[TOULOUSE])}
    assert rows["gown"].weeks == 4.0
    assert not rows["gown"].estimated
    assert rows["gloves"].weeks == 4.5
    assert rows["gloves"].estimated
    with app.db.read() as conn:
        assert ledger.replay(conn, TOULOUSE)[0] == ledger.replay(conn, TOULOUSE)[1]
    verified(app)


def test_an_older_week_does_not_reset_the_balance(app: App, ppe: PpeService) -> None:
    report(ppe, week="2026-W48", gown=(5000, 1000, 1000))
    report(ppe, week="2026-W47", gown=(9000, 1000, 1000))
    assert balance(app, TOULOUSE, "gown") == 5000


def test_the_declared_crisis_consumption_is_kept(app: App, ppe: PpeService) -> None:
    report(ppe, week="2026-W47", gown=(9000, 1000, 2000))
    report(ppe, week="2026-W48", gown=(9000, 1000, None))
    (row,) = ppe.cover(holders=[TOULOUSE])
    assert (row.crisis, row.weeks, row.estimated) == (2000, 4.5, False)


def test_bad_reports_change_nothing(app: App, ppe: PpeService) -> None:
    report(ppe, gown=(5000, 1000, 1000))
    before = snapshot(app)
    for bad, why in [
        ({"week": "2026-W60"}, "bad_period"),
        ({"lines": lines(mask=(1, 1, 1))}, "ppe_unknown_item"),
        ({"lines": lines(gown=(-1, 1, 1))}, "ppe_out_of_range"),
        ({"attested_by": ""}, "ppe_missing"),
        ({"establishment": "GHT-OCC-06"}, "ppe_not_an_establishment"),
    ]:
        raw = {"establishment": TOULOUSE, "week": WEEK, "attested_by": "D",
               "lines": lines(gown=(1, 1, 1)), **bad}  # fmt: skip
        with pytest.raises(InputError) as refused:
            ppe.report("ars-occ", raw)
        assert refused.value.why == why
    with pytest.raises(NotPermitted):
        report(ppe, holder=TOULOUSE, login="etab-819900002", gown=(1, 1, 1))
    assert snapshot(app) == before


def test_masks_in_boxes_convert_to_pieces(app: App, ppe: PpeService) -> None:
    raw = {"establishment": TOULOUSE, "week": WEEK, "attested_by": "D", "attested_as": "delegate",
           "lines": [{"item": "ffp2_mask", "on_hand": 100, "consumed": 20, "crisis": 20,
                      "unit": "boîtes"}]}  # fmt: skip
    ppe.report("etab-" + TOULOUSE, raw)
    assert balance(app, TOULOUSE, "ffp2_mask") == 5000


# -- the alert rule opens one case ------------------------------------------------------------------


def test_under_threshold_opens_one_case_then_attaches_then_asks(app: App, ppe: PpeService) -> None:
    report(ppe, week="2026-W47", ffp2_mask=(1000, 500, 1000), gown=(100, 10, 10))
    assert count(app, "regul_case") == 1
    with app.db.read() as conn:
        case = conn.execute(sa.text("SELECT * FROM regul_case")).one()
    assert case.opened_by == "system"
    assert case.org == TOULOUSE
    assert case.state in ("ght_review", "ars_review")  # at the GHT (kept) else the ARS
    fields = case.fields if isinstance(case.fields, dict) else __import__("json").loads(case.fields)
    assert fields["lines"] == [{"item": "ffp2_mask", "quantity": 2000, "stock_on_hand": 1000,
                                "weekly_consumption": 1000}]  # fmt: skip
    assert "1,0 semaine(s)" in fields["summary"]
    report(ppe, week="2026-W48", ffp2_mask=(800, 500, None), gown=(100, 10, 10))
    assert count(app, "regul_case") == 1
    assert count(app, "audit_event", "action = 'stock_report' AND case_id IS NOT NULL") == 1
    report(ppe, week="2026-W49", ffp2_mask=(5000, 500, None), gown=(100, 10, 10))
    assert count(app, "audit_event", "action = 'stock_recovered' AND case_id IS NOT NULL") == 1
    assert count(app, "notice", "kind = 'ppe_stock_recovered'") == 1
    verified(app)


@pytest.mark.slow
def test_racing_reports_open_exactly_one_case(app: App, ppe: PpeService, backend: str) -> None:
    """Eight threads report the same establishment under threshold at once: one case."""
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            report(ppe, ffp2_mask=(100 + i, 500, 1000), gloves=(10, 500, 1000))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(app, "regul_case") == 2  # one per item
    assert count(app, "audit_event", "action = 'stock_report' AND case_id IS NOT NULL") == 14
    assert count(app, "resource_report") == 8
    verified(app)


# -- the obligation -----------------------------------------------------------------------------------


def test_a_missing_report_is_reminded_once_then_listed(app: App, ppe: PpeService) -> None:
    app.settings.ppe_enrolment  # noqa: B018 - "all": every establishment owes it
    clock = app.runner.clock
    assert isinstance(clock, FixedClock)
    assert [s for s in app.resources.sweep_obligations() if s.kind == "ppe_stock"] == []
    report(ppe, gown=(100, 10, 10))
    clock.advance(timedelta(hours=4))  # Monday 12:00 Paris
    reminded = [s for s in app.resources.sweep_obligations() if s.kind == "ppe_stock"]
    assert reminded
    assert {s.outcome for s in reminded} == {"reminded"}
    assert TOULOUSE not in {s.holder for s in reminded}
    assert [s for s in app.resources.sweep_obligations() if s.kind == "ppe_stock"] == []
    clock.advance(timedelta(hours=48))
    escalated = [s for s in app.resources.sweep_obligations() if s.kind == "ppe_stock"]
    assert len(escalated) == len(reminded)
    missing = ppe.missing(region="OCC", period=WEEK)
    assert missing
    assert TOULOUSE not in {m.holder for m in missing}
    assert {m.status for m in missing} == {"late"}


def test_enrolment_phases(app: App) -> None:
    with app.db.read() as conn:
        first = stock.enrolled(conn, "ght_support")
        health = stock.enrolled(conn, "sanitaire")
        every = stock.enrolled(conn, "all")
    assert "819900001" in first
    assert CASTRES not in first
    assert any(h.startswith("75") for h in first)  # AP-HP
    assert set(first) < set(health) < set(every)


# -- holders and movements ---------------------------------------------------------------------------


def test_reserve_in_and_out_never_overdraw(app: App, ppe: PpeService) -> None:
    ppe.move("ars-occ", stock.Movement("in", "ARS-OCC", "ffp2_mask", 100, how="donation"))
    before = snapshot(app)
    with pytest.raises(Conflict) as refused:
        ppe.move("ars-occ", stock.Movement("out", "ARS-OCC", "ffp2_mask", 101,
                                           how="local_situation", to=TOULOUSE))  # fmt: skip
    assert refused.value.why == "not_enough"
    with pytest.raises(InputError):
        ppe.move("ars-occ", stock.Movement("out", "ARS-OCC", "ffp2_mask", 1, how="whim"))
    assert snapshot(app) == before
    ppe.move("ars-occ", stock.Movement("out", "ARS-OCC", "ffp2_mask", 60,
                                       how="ehpad_doctrine", to=TOULOUSE))  # fmt: skip
    assert balance(app, "ARS-OCC", "ffp2_mask") == 40
    assert balance(app, TOULOUSE, "ffp2_mask", "in_transit") == 60
    (pending,) = ppe.deliveries(region="OCC")["awaiting_receipt"]
    ppe.move(f"etab-{TOULOUSE}", stock.Movement("receive", TOULOUSE, "ffp2_mask", 50,
                                                delivery=pending["seq"]))  # fmt: skip
    assert balance(app, TOULOUSE, "ffp2_mask") == 50
    assert balance(app, TOULOUSE, "ffp2_mask", "in_transit") == 0
    assert count(app, "notice", "kind = 'ppe_shortfall'") == 1
    assert ppe.deliveries(region="OCC")["awaiting_receipt"] == []
    with pytest.raises(NotPermitted):
        ppe.move("etab-" + TOULOUSE, stock.Movement("in", "ARS-OCC", "gown", 1, how="purchase"))
    for holder in ("ARS-OCC", TOULOUSE):
        with app.db.read() as conn:
            replayed, stored = ledger.replay(conn, holder)
        assert replayed == stored
    verified(app)


@pytest.mark.slow
def test_racing_outflows_never_overdraw(app: App, ppe: PpeService) -> None:
    ppe.move("ars-occ", stock.Movement("in", "ARS-OCC", "gown", 3, how="purchase"))
    wins, losses, errors = [], [], []

    def one() -> None:
        try:
            ppe.move("ars-occ", stock.Movement("out", "ARS-OCC", "gown", 1,
                                               how="establishment_emergency", to=TOULOUSE))  # fmt: skip
            wins.append(1)
        except Conflict:
            losses.append(1)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (len(wins), len(losses)) == (3, 5)
    assert balance(app, "ARS-OCC", "gown") == 0


def test_a_case_shipment_debits_its_holder_and_the_receipt_flags_a_shortfall(
    app: App, ppe: PpeService
) -> None:
    ppe.move("ars-occ", stock.Movement("in", "ARS-OCC", "ffp2_mask", 3000, how="purchase"))
    runner = app.runner
    case = runner.open_case(kind="ppe", login="ars-occ", org=TOULOUSE, fields={
        "lines": [{"item": "ffp2_mask", "quantity": 5000, "stock_on_hand": 10,
                   "weekly_consumption": 3000}]})  # fmt: skip
    assert case.state == "ars_review"
    before = snapshot(app)
    resolve = {"quantity": 5000, "source": "region", "expected_delivery": "2026-11-30"}
    with pytest.raises(Conflict) as refused:
        runner.advance(reference=case.reference, trigger="resolve", login="ars-occ",
                       reason="Expédition", data=resolve)  # fmt: skip
    assert refused.value.why == "not_enough"
    assert snapshot(app) == before
    case = runner.advance(reference=case.reference, trigger="resolve", login="ars-occ",
                          reason="Expédition", data={**resolve, "quantity": 2000})  # fmt: skip
    assert balance(app, "ARS-OCC", "ffp2_mask") == 1000
    assert balance(app, TOULOUSE, "ffp2_mask", "in_transit") == 2000
    runner.advance(reference=case.reference, trigger="deliver", login=f"etab-{TOULOUSE}",
                   reason="Reçu", data={"quantity_received": 1800})  # fmt: skip
    assert balance(app, TOULOUSE, "ffp2_mask") == 1800
    assert balance(app, TOULOUSE, "ffp2_mask", "in_transit") == 0
    assert count(app, "notice", "kind = 'ppe_shortfall'") == 1
    verified(app)


# -- seed 004 -----------------------------------------------------------------------------------------


def test_seed_004_totals_come_out_of_the_loaded_ledger(app: App, ppe: PpeService) -> None:
    ppe.load_seed004()
    delivered = ppe.deliveries(region="OCC")["deliveries"]
    assert len({d["holder"] for d in delivered}) == 14

    def total(item: str | None, origin: str | None) -> int:
        return sum(int(d["quantity"]) for d in delivered
                   if item in (None, d["item"]) and origin in (None, d["origin"]))  # fmt: skip

    assert (
        total("ffp2_mask", "manufacturer"), total("surgical_mask_ties", "manufacturer"),
        total("surgical_mask_loops", "manufacturer"), total(None, "national_stock"),
        total(None, None),
    ) == PUBLISHED  # fmt: skip
    reserve = ppe.reserve(region="OCC")["reserves"]
    assert [(r["item"], r["quantity"]) for r in reserve] == [("surgical_mask", 700_000)]
    before = snapshot(app)
    with pytest.raises(Conflict):
        ppe.load_seed004()
    assert snapshot(app) == before
    verified(app)


# -- files ----------------------------------------------------------------------------------------------


HEADER = "etablissement;semaine;article;stock;consommation;consommation_crise;unite;atteste_par;qualite\n"


def test_a_csv_file_with_a_wrong_line_changes_nothing(app: App, ppe: PpeService) -> None:
    before = snapshot(app)
    text = HEADER + (
        f"{TOULOUSE};{WEEK};gown;100;10;10;;Dir;directeur\n"
        f"{TOULOUSE};{WEEK};Masques FFP2;abc;10;10;;Dir;directeur\n"
        f"{TOULOUSE};{WEEK};masque;1;1;;;Dir;directeur\n"
        f"999999999;{WEEK};gown;1;1;;;Dir;directeur\n"
    )
    with pytest.raises(InputError) as refused:
        ppe.import_file("ars-occ", "stocks.csv", text.encode())
    assert refused.value.why == "ppe_file_lines"
    errors = str(refused.value.data["errors"]).splitlines()
    assert errors[0].startswith("ligne 3 : le stock n'est pas un nombre entier")
    assert errors[1].startswith("ligne 4 : article « masque » inconnu")
    assert errors[2] == "ligne 5 : établissement « 999999999 » inconnu de l'annuaire"
    assert snapshot(app) == before
    good = HEADER + f"{TOULOUSE};{WEEK};Masques FFP2;10;1;1;boîtes;Dir;délégué\n"
    ppe.import_file("ars-occ", "stocks.csv", good.encode())
    assert balance(app, TOULOUSE, "ffp2_mask") == 500


def test_an_xlsx_file_is_read(app: App, ppe: PpeService) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER.strip().split(";"))
    sheet.append([TOULOUSE, WEEK, "gloves", 1000, 100, 200, "", "Dir", "directeur"])
    buffer = io.BytesIO()
    book.save(buffer)
    ppe.import_file("ars-occ", "stocks.xlsx", buffer.getvalue())
    assert balance(app, TOULOUSE, "gloves") == 1000


def test_the_national_stock_under_ten_weeks_alerts_the_ccs_and_spf(
    app: App, ppe: PpeService
) -> None:
    report(ppe, ffp2_mask=(100_000, 1000, 1000))  # national crisis consumption: 1,000 a week
    ppe.move("spf", stock.Movement("in", "SPF", "ffp2_mask", 12_000, how="purchase"))
    assert count(app, "notice", "kind = 'ppe_national_low'") == 0
    ppe.move("spf", stock.Movement("out", "SPF", "ffp2_mask", 3_000, how="establishment_emergency",
                                   to=TOULOUSE))  # fmt: skip
    assert count(app, "notice", "kind = 'ppe_national_low'") == 1
    assert ppe.reserve()["national_weeks"]["ffp2_mask"] == 9.0


def test_a_ght_redistributes_to_its_members_only(app: App, ppe: PpeService) -> None:
    ppe.load_seed004()
    before = snapshot(app)
    with pytest.raises(InputError) as refused:  # Montpellier is not served by GHT-OCC-06
        ppe.move("ght-occ-06", stock.Movement("redistribute", "GHT-OCC-06", "ffp2_mask", 100,
                                              to="349900001"))  # fmt: skip
    assert refused.value.why == "ppe_not_a_member"
    with pytest.raises(Conflict):
        ppe.move("ght-occ-06", stock.Movement("redistribute", "GHT-OCC-06", "ffp2_mask", 29_351,
                                              to="319900002"))  # fmt: skip
    assert snapshot(app) == before
    ppe.move("ght-occ-06", stock.Movement("redistribute", "GHT-OCC-06", "ffp2_mask", 29_350,
                                          to="319900002"))  # fmt: skip
    assert balance(app, "GHT-OCC-06", "ffp2_mask") == 0
    assert balance(app, "319900002", "ffp2_mask", "in_transit") == 29_350
    (waiting,) = ppe.deliveries(region="OCC")["awaiting_receipt"]
    assert (waiting["holder"], waiting["from"]) == ("319900002", "GHT-OCC-06")
