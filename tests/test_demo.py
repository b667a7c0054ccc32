"""The demo as the README tells it: accounts of several regions, each with something waiting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from engine import tables
from engine.cases import CaseFilter
from engine.clock import SystemClock
from engine.db import Database
from engine.runner import Runner
from interfaces.cli import app
from interfaces.demo import run_demo
from interfaces.serve import DEMO_ACCOUNTS
from workflows import default_registry

ACTING = ("establishment", "ght", "umac", "ars", "ars_zone", "ccs", "spf")


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "regul-demo.db"
    summary = run_demo(path, cases_per_kind=2, seed=2026)
    assert summary.audit_ok
    assert summary.replay_ok
    return path


def test_demo_accounts_cover_several_regions() -> None:
    """The printed accounts reach Occitanie and Bretagne (and their zones), so scope can be tried."""
    assert {"ars-occ", "ars-bre", "arsz-sud", "arsz-ouest", "etab-299900001"} <= set(DEMO_ACCOUNTS)


def test_every_printed_acting_account_has_something_waiting(demo_db: Path) -> None:
    """Each printed regulator's queue has an open case at its level, in scope, it may act on."""
    db = Database(f"sqlite:///{demo_db}")
    runner = Runner(db, default_registry(), SystemClock())
    try:
        for login in DEMO_ACCOUNTS:
            actor = runner.actor(login)
            if actor.role not in ACTING:
                continue
            queue = runner.search(
                CaseFilter(open_only=True, urgent_for=actor.role, limit=50), login=login
            )
            actionable = [
                c
                for c in queue
                if runner.allowed_triggers(c, actor)
                and actor.role in (c.level, "spf")  # SpF acts at the CCS level
            ]
            assert actionable, f"{login} ({actor.role}) opens an empty desk"
    finally:
        db.dispose()


def test_the_printed_sfctcv_accounts_read_ecmo_cases_only(demo_db: Path) -> None:
    """The referent of Occitanie lists the ECMO cases of its region, the national one all of
    them; neither lists a PPE or transfer case."""
    assert {"sfctcv-occ", "sfctcv"} <= set(DEMO_ACCOUNTS)
    db = Database(f"sqlite:///{demo_db}")
    runner = Runner(db, default_registry(), SystemClock())
    try:
        every = runner.search(CaseFilter(limit=1000))
        regional = runner.search(CaseFilter(limit=1000), login="sfctcv-occ")
        national = runner.search(CaseFilter(limit=1000), login="sfctcv")
    finally:
        db.dispose()
    assert regional
    assert {c.reference for c in regional} == {
        c.reference for c in every if c.kind == "ecmo" and c.region == "OCC"
    }
    assert {c.reference for c in national} == {c.reference for c in every if c.kind == "ecmo"}


def test_worker_once_says_what_it_did_in_one_line(demo_db: Path, tmp_path: Path) -> None:
    """regul worker --once prints one line: what fell due and what was delivered."""
    result = CliRunner().invoke(
        app,
        ["worker", "--once"],
        env={
            "REGUL_DATABASE_URL": f"sqlite:///{demo_db}",
            "REGUL_EML_DIR": str(tmp_path / "outbox"),
        },
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, lines
    assert re.match(r"worker --once at \S+Z: deadlines: .+; dispatch: \d+ sent", lines[0])


@pytest.fixture(scope="module")
def demo12(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A larger demo run (12 cases per workflow), played once for the tests that read it."""
    path = tmp_path_factory.mktemp("demo12") / "regul-demo.db"
    return path, run_demo(path, cases_per_kind=12, seed=2026)


def test_the_demo_never_passes_the_present_and_delivers_every_notice(
    demo12: tuple[Path, Any],
) -> None:
    """No audit event nor notice dated after the real now; no notice left queued at the end."""
    path, summary = demo12
    now = SystemClock().now()
    db = Database(f"sqlite:///{path}")
    try:
        with db.read() as conn:
            latest_event = conn.execute(sa.select(sa.func.max(tables.AUDIT_EVENT.c.at))).scalar()
            notice = tables.NOTICE.c
            latest_notice = conn.execute(
                sa.select(sa.func.max(notice.created_at), sa.func.max(notice.sent_at))
            ).one()
            by_status = sa.select(notice.status, sa.func.count()).group_by(notice.status)
            statuses = {row[0]: row[1] for row in conn.execute(by_status)}
            closed = conn.execute(
                sa.select(sa.func.count())
                .select_from(tables.CASE)
                .where(tables.CASE.c.state == "closed")
            ).scalar_one()
    finally:
        db.dispose()
    assert latest_event is not None
    assert latest_event <= now
    assert all(t is not None and t <= now for t in latest_notice), latest_notice
    assert statuses == {"sent": summary.notices}
    assert closed > 0  # the day-earlier cases had the time to come back and close


def test_no_raw_code_in_any_notice_of_a_demo_run(demo12: tuple[Path, Any]) -> None:
    """Every notice of a demo run, as delivered (text and HTML), speaks French: no state,
    trigger, role, action, field name or choice value of any vocabulary leaks into it."""
    from tests.test_notices_golden import _codes, _words

    path, _ = demo12
    db = Database(f"sqlite:///{path}")
    try:
        with db.read() as conn:
            notice = tables.NOTICE.c
            rows = conn.execute(
                sa.select(notice.reference, notice.message_id, notice.body_text, notice.body_html)
            ).all()
    finally:
        db.dispose()
    assert len(rows) > 50
    codes = _codes()
    leaked: dict[str, set[str]] = {}
    for reference, message_id, text, html in rows:
        assert text, f"{reference} was delivered without its rendered text"
        assert html, f"{reference} was delivered without its rendered HTML"
        escaped = message_id.replace("<", "&lt;").replace(">", "&gt;")
        words = _words(text.replace(message_id, "")) | _words(
            re.sub(r"<[^>]+>", " ", html.replace(escaped, ""))
        )
        if words & codes:
            leaked[reference] = words & codes
    assert not leaked, f"raw codes in the demo's notices: {leaked}"
