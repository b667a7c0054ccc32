"""The ECMO fleet (issue 11): consoles and circuits in the ledger, moved by the ECMO cases.

A resolve reserves exactly the consoles named (and the circuits) at the lender, in its
transaction; a console reserved twice is refused (threads racing: exactly one wins); the
lender is inside the resolver's scope; the loan's lifecycle (start, extension, declared and
confirmed return) moves the console back to available; the weekly inventory is versioned and
reconciled with the ledger; a missing one is reminded once; the holder's chain replays.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine import audit
from engine.errors import Conflict, InputError, NotPermitted
from engine.runner import Runner
from engine.settings import load_settings
from notifications.outbox import NOTICE_TABLE, Outbox
from resources import ledger
from resources.catalogue import case_effects, obligation_kinds
from resources.ecmo import INVENTORY, NATIONAL, Fleet, item
from resources.service import Resources
from tests.conftest import CONFIRMS, LENDER, TOULOUSE, Ctx, drive, make_case, path_to
from tests.test_notices import notices
from workflows import default_notices

MARSEILLE = "139900001"  # PAC: zone SUD, not Occitanie
MANTES = "789900002"  # IDF, zone PARIS
LOAN = {"source": "hospital", "lender": LENDER, "return_by": "2026-12-15"}


@dataclass
class F:
    ctx: Ctx
    fleet: Fleet
    resources: Resources


def with_fleet(ctx: Ctx, *, outbox: bool = False) -> F:
    settings = load_settings()
    notifier = (
        Outbox(ctx.registry, default_notices(), channel_for=lambda _org: "eml") if outbox else None
    )
    ctx.runner = Runner(ctx.db, ctx.registry, ctx.clock, notifier=notifier, rules=CONFIRMS,
                        effects=case_effects(settings))  # fmt: skip
    resources = Resources(ctx.db, ctx.clock, ctx.runner.uow, obligation_kinds(settings))
    return F(ctx, Fleet(resources), resources)


@pytest.fixture
def f(ctx: Ctx) -> F:
    return with_fleet(ctx)


def equip(f: F, holder: str, serials: list[str], circuits: int = 0) -> None:
    login = "ccs" if holder == NATIONAL else f"etab-{holder}"
    for s in serials:
        f.fleet.register(login, serial=s, model="Cardiohelp", owner=holder)
    if circuits:
        f.fleet.circuits(login, holder=holder, quantity=circuits, reason="livraison")


def status(f: F, serial: str) -> dict[str, int]:
    with f.ctx.db.read() as conn:
        return {
            b: int(q)
            for b, q in conn.execute(
                sa.text(
                    "SELECT bucket, quantity FROM stock_balance WHERE item = :i AND quantity > 0"
                ),
                {"i": item(serial)},
            )
        }


def circuits(f: F, holder: str) -> dict[str, int]:
    with f.ctx.db.read() as conn:
        return {
            b: int(q)
            for b, q in conn.execute(
                sa.text(
                    "SELECT bucket, quantity FROM stock_balance WHERE holder = :h "
                    "AND item = 'circuit' AND quantity > 0"
                ),
                {"h": holder},
            )
        }


def at_review(f: F, state: str = "umac_review", hospital: str = TOULOUSE) -> Any:
    case = make_case(f.ctx, "ecmo", hospital=hospital)
    spec = f.ctx.registry["ecmo"]
    return drive(f.ctx, case, path_to(spec, state))


def resolve(f: F, ref: str, login: str, **data: Any) -> Any:
    return f.ctx.runner.advance(
        reference=ref, trigger="resolve", login=login, reason="console trouvée",
        data={**LOAN, **data},
    )  # fmt: skip


def fire(f: F, ref: str, login: str, trigger: str, **data: Any) -> Any:
    return f.ctx.runner.advance(reference=ref, trigger=trigger, login=login, reason="essai",
                                data=data)  # fmt: skip


def test_resolve_reserves_exactly_the_consoles_named(f: F) -> None:
    equip(f, LENDER, ["SN-1", "SN-2", "SN-3"], circuits=5)
    case = at_review(f)
    done = resolve(f, case.reference, "umac-sud", console_serials="SN-1, SN-3", circuits_lent=2)
    assert done.state == "dispatched"
    assert (status(f, "SN-1"), status(f, "SN-2"), status(f, "SN-3")) == (
        {"reserved": 1}, {"available": 1}, {"reserved": 1},
    )  # fmt: skip
    assert circuits(f, LENDER) == {"available": 3, "reserved": 2}
    with f.ctx.db.read() as conn:
        replayed, stored = ledger.replay(conn, LENDER)
        assert audit.verify(conn).ok
    assert replayed == stored


def test_resolve_without_consoles_or_with_a_busy_one_changes_nothing(f: F) -> None:
    equip(f, LENDER, ["SN-1", "SN-2"], circuits=1)
    equip(f, MARSEILLE, ["SN-M"])
    first = at_review(f)
    resolve(f, first.reference, "umac-sud", console_serials="SN-1")
    case = at_review(f)
    before = f.ctx.snapshot()
    for data, error, why in (
        ({}, InputError, "no_console_named"),
        ({"console_serials": "SN-1"}, Conflict, "console_not_available"),  # reserved for the first
        ({"console_serials": "SN-9"}, InputError, "unknown_console"),
        (
            {"console_serials": "SN-M"},
            Conflict,
            "console_not_at_lender",
        ),  # Marseille's, not the lender's
        ({"console_serials": "SN-2", "circuits_lent": 3}, Conflict, "not_enough"),
        ({"console_serials": "SN 2 ;;"}, InputError, "unknown_console"),
        ({"console_serials": "SN-2!"}, InputError, "bad_serial"),
    ):
        with pytest.raises(error) as refused:
            resolve(f, case.reference, "umac-sud", **data)
        assert refused.value.why == why, (data, refused.value)
        assert f.ctx.snapshot() == before, data


def test_scope_the_lender_is_inside_the_resolver_scope(f: F) -> None:
    """A UMAC takes consoles in its zone, an ARS in its region, the CCS anywhere and in the
    national stock (which nobody else may take)."""
    equip(f, MARSEILLE, ["SN-M"])
    equip(f, MANTES, ["SN-IDF"])
    equip(f, NATIONAL, ["SN-NAT"])
    umac = at_review(f, "umac_review")
    with pytest.raises(NotPermitted):
        resolve(f, umac.reference, "umac-sud", lender=MANTES, console_serials="SN-IDF")
    assert resolve(
        f, umac.reference, "umac-sud", lender=MARSEILLE, console_serials="SN-M"
    ).state == ("dispatched")
    ars = at_review(f, "ars_regulation")
    with pytest.raises(NotPermitted):
        resolve(
            f, ars.reference, "ars-occ", source="national", lender=None, console_serials="SN-NAT"
        )
    national = at_review(f, "national_regulation")
    done = f.ctx.runner.advance(
        reference=national.reference, trigger="resolve", login="ccs", reason="stock national",
        data={"source": "national", "return_by": "2026-12-15", "console_serials": "SN-NAT"},
    )  # fmt: skip
    assert done.state == "dispatched"
    assert status(f, "SN-NAT") == {"reserved": 1}
    assert status(f, "SN-IDF") == {"available": 1}


def test_loan_lifecycle_extension_and_confirmed_return(f: F) -> None:
    equip(f, LENDER, ["SN-1"], circuits=2)
    case = at_review(f)
    ref = case.reference
    resolve(f, ref, "umac-sud", console_serials="SN-1", circuits_lent=2)
    fire(f, ref, "etab-319900001", "start")
    assert status(f, "SN-1") == {"lent": 1}
    assert circuits(f, LENDER) == {"used": 2}
    (loan,) = f.fleet.loans(f.fleet.actor(f"etab-{LENDER}"))
    assert (loan["case"], loan["consoles"], loan["return_by"]) == (ref, ["SN-1"], "2026-12-15")
    fire(f, ref, f"etab-{LENDER}", "extend_loan", return_by="2026-12-20")
    (loan,) = f.fleet.loans(f.fleet.actor("ars-occ"))
    assert loan["return_by"] == "2026-12-20"
    (row,) = f.fleet.consoles(f.fleet.actor("umac-sud"))
    assert (row["status"], row["holder"], row["case"]) == ("lent", TOULOUSE, ref)
    fire(f, ref, "etab-319900001", "declare_return")
    assert status(f, "SN-1") == {"in_transit": 1}
    with pytest.raises(NotPermitted):
        fire(f, ref, "etab-319900001", "return")  # the borrower does not confirm
    assert fire(f, ref, f"etab-{LENDER}", "return").state == "returned"
    assert status(f, "SN-1") == {"available": 1}
    assert f.fleet.loans(f.fleet.actor("ccs")) == []
    with f.ctx.db.read() as conn:
        replayed, stored = ledger.replay(conn, LENDER)
    assert replayed == stored
    assert stored[(item("SN-1"), "available")] == 1


def test_overdue_loans_are_listed(f: F) -> None:
    equip(f, LENDER, ["SN-1"])
    ref = at_review(f).reference
    resolve(f, ref, "umac-sud", console_serials="SN-1")
    fire(f, ref, "etab-319900001", "start")
    ccs = f.fleet.actor("ccs")
    assert f.fleet.loans(ccs, overdue=True) == []
    f.ctx.clock.set(datetime(2026, 12, 17, 9, 0, tzinfo=UTC))
    assert [loan["case"] for loan in f.fleet.loans(ccs, overdue=True)] == [ref]
    assert f.fleet.loans(f.fleet.actor("etab-819900001")) == []  # neither party nor scope


@pytest.mark.slow
def test_a_console_reserved_twice_at_once_one_wins(f: F, backend: str) -> None:
    """Eight regulators race for the same console: exactly one resolve wins."""
    equip(f, LENDER, ["SN-1"])
    refs = [at_review(f).reference for _ in range(8)]
    wins, losses, errors = [], [], []

    def one(ref: str) -> None:
        try:
            resolve(f, ref, "umac-sud", console_serials="SN-1")
            wins.append(ref)
        except Conflict as exc:
            losses.append(exc.why)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(r,)) for r in refs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(wins) == 1
    assert set(losses) <= {"console_not_available", "overdrawn"}
    assert len(losses) == 7
    assert status(f, "SN-1") == {"reserved": 1}
    assert f.ctx.count("regul_case", "state = 'dispatched'") == 1


def test_inventory_versions_and_reconciliation(f: F) -> None:
    equip(f, LENDER, ["SN-1", "SN-2"], circuits=4)
    f.fleet.set_status(f"etab-{LENDER}", serial="SN-2", status="maintenance")
    figures = {"available": 1, "reserved": 0, "in_use": 0, "lent": 0, "maintenance": 1,
               "circuits": 4}  # fmt: skip
    first = f.fleet.report(f"etab-{LENDER}", holder=LENDER, period="2026-W48", figures=figures)
    assert first["differences"] == []
    wrong = f.fleet.report(f"etab-{LENDER}", holder=LENDER, period="2026-W48",
                           figures={**figures, "circuits": 6})  # fmt: skip
    assert wrong["differences"] == [
        {"figure": "circuits", "label": "circuits disponibles", "reported": 6, "ledger": 4}
    ]
    versions = f.fleet.reports(f.fleet.actor("ars-occ"), holder=LENDER)
    assert [v["version"] for v in versions] == [2, 1]
    with pytest.raises(NotPermitted):
        f.fleet.reports(f.fleet.actor("ars-idf"), holder=LENDER)
    before = f.ctx.snapshot()
    with pytest.raises(NotPermitted):
        f.fleet.report("etab-319900001", holder=LENDER, period="2026-W48", figures=figures)
    with pytest.raises(InputError):
        f.fleet.report(f"etab-{LENDER}", holder=LENDER, period="2026-W48",
                       figures={**figures, "lent": -1})  # fmt: skip
    assert f.ctx.snapshot() == before


def test_missing_inventory_reminded_exactly_once(ctx: Ctx) -> None:
    f = with_fleet(ctx, outbox=True)
    equip(f, LENDER, ["SN-1"])
    f.ctx.clock.set(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))  # Monday 08:00 Paris
    assert f.resources.sweep_obligations() == []
    f.ctx.clock.advance(timedelta(hours=4))
    reminded = f.resources.sweep_obligations()
    assert [(r.kind, r.holder, r.outcome) for r in reminded] == [(INVENTORY, LENDER, "reminded")]
    assert f.resources.sweep_obligations() == []
    f.ctx.clock.advance(timedelta(hours=25))
    assert [r.outcome for r in f.resources.sweep_obligations()] == ["escalated"]
    assert f.resources.sweep_obligations() == []
    with f.ctx.db.read() as conn:
        kinds = [r.kind for r in conn.execute(sa.select(NOTICE_TABLE.c.kind))]
    assert kinds.count("report_missing") == 1
    assert kinds.count("report_late") == 1


def test_last_console_of_a_region_alerts_its_ars(ctx: Ctx) -> None:
    f = with_fleet(ctx, outbox=True)
    equip(f, LENDER, ["SN-1"])
    ref = at_review(f).reference
    resolve(f, ref, "umac-sud", console_serials="SN-1")
    with f.ctx.db.read() as conn:
        rows = conn.execute(
            sa.select(NOTICE_TABLE.c.kind, NOTICE_TABLE.c.subject).where(
                NOTICE_TABLE.c.kind == "ecmo_region_empty"
            )
        ).all()
    assert len(rows) == 1
    assert "AUCUNE CONSOLE ECMO DISPONIBLE" in rows[0].subject


def test_a_case_opened_in_a_region_without_a_free_console_alerts_its_ars(ctx: Ctx) -> None:
    """No console available in Occitanie when Toulouse opens: its ARS and the regional SFCTCV
    referent are alerted Pour action, the CCS informed; a region with one free console is not."""
    f = with_fleet(ctx, outbox=True)
    equip(f, MARSEILLE, ["SN-PAC"])  # another region's console does not count
    first = make_case(f.ctx, "ecmo", hospital=TOULOUSE)
    (row,) = notices(f.ctx, NOTICE_TABLE.c.kind == "ecmo_region_empty")
    assert [r["name"] for r in row.recipients["action"]] == [
        "ARS Occitanie",
        "Référent régional ECMO SFCTCV Occitanie",
    ]
    assert [r["org"] for r in row.recipients["info"]] == ["CCS"]
    assert f"Dossier : {first.reference}" in row.body_text
    assert "CHU de Toulouse" in row.body_text
    equip(f, LENDER, ["SN-1"])  # now Occitanie has one
    make_case(f.ctx, "ecmo", hospital=TOULOUSE)
    assert f.ctx.count("notice", "kind = 'ecmo_region_empty'") == 1
    with f.ctx.db.read() as conn:
        assert audit.verify(conn).ok


def test_the_national_stock_owes_its_weekly_inventory(ctx: Ctx) -> None:
    """The national stock is reminded to the CCS, then escalated to the national SFCTCV."""
    f = with_fleet(ctx, outbox=True)
    equip(f, NATIONAL, ["SN-N1"])
    f.ctx.clock.set(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))  # Monday 08:00 Paris
    f.resources.sweep_obligations()
    f.ctx.clock.advance(timedelta(hours=4))
    assert [(r.holder, r.outcome) for r in f.resources.sweep_obligations()] == [
        (NATIONAL, "reminded")
    ]
    f.ctx.clock.advance(timedelta(hours=25))
    assert [r.outcome for r in f.resources.sweep_obligations()] == ["escalated"]
    (late,) = notices(f.ctx, NOTICE_TABLE.c.kind == "report_late")
    assert [r["org"] for r in late.recipients["action"]] == ["SFCTCV"]


def test_registry_refuses_a_duplicate_and_outsiders(f: F) -> None:
    equip(f, LENDER, ["SN-1"])
    before = f.ctx.snapshot()
    with pytest.raises(Conflict) as dup:
        f.fleet.register("ccs", serial="SN-1", model="X", owner=TOULOUSE)
    assert dup.value.why == "console_exists"
    with pytest.raises(NotPermitted):
        f.fleet.register("etab-319900001", serial="SN-2", model="X", owner=LENDER)
    with pytest.raises(NotPermitted):
        f.fleet.register("umac-sud", serial="SN-3", model="X", owner=NATIONAL)
    assert f.ctx.snapshot() == before


HEADER = "finess;semaine;disponibles;reservees;en_service;pretees;maintenance;circuits\n"


def test_import_errors_are_listed_by_line_and_change_nothing(f: F, tmp_path: Any) -> None:
    from resources.ecmo_import import import_file

    equip(f, LENDER, ["SN-1"])
    bad = tmp_path / "inventaires.csv"
    bad.write_text(
        HEADER + f"{LENDER};2026-W47;1;0;0;0;0;0\n"
        "999999999;2026-W47;1;0;0;0;0;0\n"
        f"{LENDER};2026-W60;1;0;0;0;0;0\n"
        f"{LENDER};2026-W46;un;0;0;0;0;0\n"
        f"{MANTES};2026-W47;1;0;0;0;0;0\n",
        encoding="utf-8",
    )
    before = f.ctx.snapshot()
    with pytest.raises(InputError) as refused:
        import_file(f.fleet, "ars-occ", bad)
    assert refused.value.why == "import_errors"
    lines = refused.value.data["lines"]
    assert [line.split(" :")[0] for line in lines] == ["ligne 3", "ligne 4", "ligne 5", "ligne 6"]
    assert "inconnu de l'annuaire" in lines[0]
    assert "semaine « 2026-W60 » invalide" in lines[1]
    assert "« consoles disponibles » doit être un entier" in lines[2]
    assert "ne relève pas de votre périmètre" in lines[3]
    assert f.ctx.snapshot() == before
    good = tmp_path / "ok.csv"
    good.write_text(HEADER + f"{LENDER};2026-W47;1;0;0;0;0;0\n", encoding="utf-8")
    (done,) = import_file(f.fleet, "ars-occ", good)
    assert done["differences"] == []


def test_xlsx_import(f: F, tmp_path: Any) -> None:
    from openpyxl import Workbook  # type: ignore[import-untyped]

    from resources.ecmo_import import import_file

    equip(f, LENDER, ["SN-1"])
    book = Workbook()
    sheet = book.active
    sheet.append(HEADER.strip().split(";"))
    sheet.append([LENDER, "2026-W47", 0, 0, 1, 0, 0, 0])
    path = tmp_path / "inventaires.xlsx"
    book.save(path)
    (done,) = import_file(f.fleet, f"etab-{LENDER}", path)
    assert [d["figure"] for d in done["differences"]] == ["available", "in_use"]


def test_the_last_national_console_alerts_the_ccs_and_the_sfctcv(ctx: Ctx) -> None:
    f = with_fleet(ctx, outbox=True)
    equip(f, NATIONAL, ["NAT-1"])
    equip(f, LENDER, ["SN-OCC"])  # Occitanie has one: its opening raises no regional alert
    case = at_review(f, "national_regulation")
    f.ctx.runner.advance(
        reference=case.reference, trigger="resolve", login="ccs", reason="stock national",
        data={"source": "national", "return_by": "2026-12-15", "console_serials": "NAT-1"},
    )  # fmt: skip
    (row,) = notices(f.ctx, NOTICE_TABLE.c.kind == "ecmo_national_empty")
    assert row.subject.endswith("ALERTE : STOCK NATIONAL DE CONSOLES ECMO ÉPUISÉ")
    assert "Centre de crise sanitaire" in row.body_text
    assert "SFCTCV" in row.body_text
    assert f.ctx.count("notice", "kind = 'ecmo_region_empty'") == 0


def test_cli_fleet_commands(f: F, tmp_path: Any) -> None:
    """``regul ecmo``: register, list as a scope, report a file (errors: exit 2, nothing
    written), loans."""
    import json

    from tests.test_cli import regul

    url = str(f.ctx.db.url)
    code, _, err = regul(url, "ecmo", "register", "SN-9", "--model", "Cardiohelp",
                         "--owner", LENDER, "--as", f"etab-{LENDER}")  # fmt: skip
    assert code == 0, err
    code, out, _ = regul(url, "ecmo", "consoles", "--as", "umac-sud", "--json")
    assert [r["serial"] for r in json.loads(out)] == ["SN-9"]
    code, out, _ = regul(url, "ecmo", "consoles", "--as", "umac-paris", "--json")
    assert json.loads(out) == []
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + f"{LENDER};2026-W47;x;0;0;0;0;0\n", encoding="utf-8")
    before = f.ctx.snapshot()
    code, _, err = regul(url, "ecmo", "report", "--file", str(bad), "--as", "ars-occ")
    assert code == 2
    assert "ligne 2" in err
    assert f.ctx.snapshot() == before
    code, out, _ = regul(url, "ecmo", "loans", "--json")
    assert (code, json.loads(out)) == (0, [])


def test_the_inventory_due_time_is_a_setting() -> None:
    from resources.ecmo import inventory_kind

    kind = inventory_kind(load_settings(ecmo_inventory_due="tuesday 09:30"))
    assert kind.due.due_at("2026-W49").isoformat() == "2026-12-01T08:30:00+00:00"
    assert inventory_kind(load_settings()).due.due_at("2026-W49").isoformat() == (
        "2026-11-30T11:00:00+00:00"
    )
    assert kind.escalate == ("ars", "sfctcv")
