"""The resources core: holders' streams, balances never negative, reports, obligations.

A tiny test resource (item ``widget``) exercises what every resource module builds on:
``LedgerEntry`` applied by the unit of work, ``Tx.balances`` read locked, the
``CHECK (quantity >= 0)`` guard, report versions, the obligation sweep (reminded once,
escalated once, met by a report), holder notices, the chain verified and replayed.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine import audit
from engine.errors import Conflict, InputError
from engine.unit_of_work import Tx
from engine.values import Actor, Draft, LedgerEntry, Leg, Outcome, ReportDraft
from notifications.outbox import NOTICE_TABLE
from resources import ledger
from resources.obligations import ObligationKind
from resources.periods import Due, parse_period, week_of
from resources.service import Resources
from tests.conftest import START, TOULOUSE, Ctx
from tests.test_notices import notices, use_outbox

LENDER = "319900002"
KIND = ObligationKind(
    name="widget_report",
    report="Le relevé hebdomadaire des widgets",
    due=Due.parse("monday 12:00", weekly=True),
    escalate_after=timedelta(hours=24),
    holders=lambda _conn: (TOULOUSE, LENDER),
)


def service(ctx: Ctx) -> Resources:
    return Resources(ctx.db, ctx.clock, ctx.runner.uow, {KIND.name: KIND})


def _draft(actor: Actor, action: str, **data: Any) -> Draft:
    return Draft(actor.login, actor.role, actor.org, action, None, None, 0, "", data)


def credit(ctx: Ctx, holder: str, quantity: int, *, login: str = "etab-319900001") -> None:
    def decide(tx: Tx, actor: Actor) -> Outcome:
        legs = (Leg("widget", "available", quantity),)
        return Outcome(None, ledger=(LedgerEntry(holder, _draft(actor, "adjust"), legs),))

    service(ctx).command(login, decide)


def take(ctx: Ctx, holder: str, quantity: int, *, check: bool = True) -> None:
    def decide(tx: Tx, actor: Actor) -> Outcome:
        if check:
            balances = tx.balances([holder], ["widget"])
            ledger.require(balances, holder, "widget", "available", quantity, what="take")
        legs = ledger.move("widget", "available", "reserved", quantity)
        return Outcome(None, ledger=(LedgerEntry(holder, _draft(actor, "reserve"), legs),))

    service(ctx).command("etab-319900001", decide)


def balance(ctx: Ctx, holder: str, bucket: str) -> int:
    with ctx.db.read() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT COALESCE(SUM(quantity), 0) FROM stock_balance "
                    "WHERE holder = :h AND item = 'widget' AND bucket = :b"
                ),
                {"h": holder, "b": bucket},
            ).scalar_one()
        )


def test_movements_keep_balances_and_the_chain_replays(ctx: Ctx) -> None:
    credit(ctx, TOULOUSE, 5)
    take(ctx, TOULOUSE, 2)
    assert (balance(ctx, TOULOUSE, "available"), balance(ctx, TOULOUSE, "reserved")) == (3, 2)
    assert ctx.count("movement") == 3
    with ctx.db.read() as conn:
        replayed, stored = ledger.replay(conn, TOULOUSE)
        report = audit.verify(conn)
    assert replayed == stored == {("widget", "available"): 3, ("widget", "reserved"): 2}
    assert report.ok, report.findings
    assert ctx.count("audit_event", f"stream = 'holder:{TOULOUSE}'") == 2


def test_a_refused_take_changes_nothing(ctx: Ctx) -> None:
    credit(ctx, TOULOUSE, 1)
    before = ctx.snapshot()
    with pytest.raises(Conflict) as refused:
        take(ctx, TOULOUSE, 2)
    assert refused.value.why == "not_enough"
    assert ctx.snapshot() == before


def test_the_database_refuses_an_overdraw_the_decision_missed(ctx: Ctx) -> None:
    credit(ctx, TOULOUSE, 1)
    before = ctx.snapshot()
    with pytest.raises(Conflict) as refused:
        take(ctx, TOULOUSE, 2, check=False)  # the CHECK constraint is the last guard
    assert refused.value.why == "overdrawn"
    assert ctx.snapshot() == before


def test_an_edited_holder_event_is_found(ctx: Ctx) -> None:
    credit(ctx, TOULOUSE, 5)
    credit(ctx, TOULOUSE, 1)
    with ctx.db.engine.begin() as conn:
        if ctx.db.is_sqlite:
            conn.execute(sa.text("DROP TRIGGER audit_event_no_update"))
        else:
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            sa.text("UPDATE audit_event SET reason = 'x' WHERE stream = :s AND seq = 1"),
            {"s": f"holder:{TOULOUSE}"},
        )
    with ctx.db.read() as conn:
        report = audit.verify(conn)
    assert [f.stream for f in report.findings] == [f"holder:{TOULOUSE}"]
    assert "edited" in report.findings[0].problem


@pytest.mark.slow
def test_racing_takes_never_overdraw(ctx: Ctx, backend: str) -> None:
    """Eight threads take the last widgets at once: exactly the stock is taken."""
    credit(ctx, TOULOUSE, 3)
    wins, losses, errors = [], [], []

    def one() -> None:
        try:
            take(ctx, TOULOUSE, 1)
            wins.append(1)
        except Conflict:
            losses.append(1)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (len(wins), len(losses)) == (3, 5)
    assert (balance(ctx, TOULOUSE, "available"), balance(ctx, TOULOUSE, "reserved")) == (0, 3)


def report(ctx: Ctx, holder: str, period: str, figures: dict[str, Any]) -> None:
    def decide(tx: Tx, actor: Actor) -> Outcome:
        entry = LedgerEntry(
            holder,
            _draft(actor, "report"),
            report=ReportDraft(KIND.name, period, figures),
            meets=(KIND.name, period),
        )
        return Outcome(None, ledger=(entry,))

    service(ctx).command("etab-319900001", decide)


def test_reports_are_versions_and_meet_the_obligation(ctx: Ctx) -> None:
    period = week_of(START)
    service(ctx).sweep_obligations()  # plans this week's rows
    assert ctx.count("obligation", "status = 'open'") == 2
    report(ctx, TOULOUSE, period, {"widgets": 4})
    report(ctx, TOULOUSE, period, {"widgets": 5})  # a correction
    with ctx.db.read() as conn:
        rows = conn.execute(
            sa.text("SELECT version, data FROM resource_report ORDER BY version")
        ).all()
    assert [r.version for r in rows] == [1, 2]
    assert ctx.count("obligation", f"status = 'met' AND holder = '{TOULOUSE}'") == 1


def test_a_missing_report_is_reminded_once_then_escalated_once(ctx: Ctx) -> None:
    ctx = use_outbox(ctx)
    resources = service(ctx)
    ctx.clock.set(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))  # Monday 08:00 Paris, week 48
    period = week_of(ctx.clock.now())
    assert resources.sweep_obligations() == []  # planned, due at 12:00 Paris
    assert ctx.count("obligation", "status = 'open'") == 2
    ctx.clock.advance(timedelta(hours=4))  # 12:00 Paris: due
    reminded = resources.sweep_obligations()
    assert sorted(e.outcome for e in reminded) == ["reminded", "reminded"]
    assert resources.sweep_obligations() == []  # exactly once
    assert ctx.count("audit_event", "action = 'report_missing'") == 2
    assert ctx.count("notice", "kind = 'report_missing' AND case_id IS NULL") == 2
    ctx.clock.advance(timedelta(hours=23))
    assert resources.sweep_obligations() == []
    ctx.clock.advance(timedelta(hours=2))
    escalated = resources.sweep_obligations()
    assert sorted(e.outcome for e in escalated) == ["escalated", "escalated"]
    ctx.clock.advance(timedelta(days=2))
    assert resources.sweep_obligations() == []
    assert ctx.count("notice", "kind = 'report_late'") == 2
    listed = resources.missing(KIND.name, period=period)
    assert {m.holder for m in listed} == {TOULOUSE, LENDER}
    assert {m.status for m in listed} == {"late"}
    report(ctx, TOULOUSE, period, {"widgets": 1})  # late, but received
    assert {m.holder for m in resources.missing(KIND.name, period=period)} == {LENDER}
    late = notices(ctx, NOTICE_TABLE.c.kind == "report_late")
    reminder = notices(ctx, NOTICE_TABLE.c.kind == "report_missing")[0]
    assert reminder.subject.startswith("ARS-OCC N°2026_1 : RAPPEL : LE RELEVÉ HEBDOMADAIRE")
    assert "CHU de Toulouse" in reminder.body_text
    assert late[0].series == "ARS-OCC"
    assert late[0].case_id is None
    text = late[0].body_text
    assert "Le relevé hebdomadaire des widgets" in text
    assert "ARS Occitanie" in text
    assert "n'a toujours pas été transmis" in text
    with ctx.db.read() as conn:
        assert audit.verify(conn).ok


def test_periods_and_due_times_are_checked() -> None:
    assert parse_period("2026-w9") == "2026-W09"
    with pytest.raises(InputError) as bad:
        parse_period("2026-W60")
    assert bad.value.why == "bad_period"
    with pytest.raises(InputError):
        Due.parse("someday 12:00", weekly=True)
    assert Due.parse("lundi 12:00", weekly=True).due_at("2026-W49").isoformat() == (
        "2026-11-30T11:00:00+00:00"
    )
