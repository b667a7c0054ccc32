"""The demo as the README tells it: accounts of several regions, each with something waiting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

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
