"""Shared fixtures: one engine test runs on SQLite and on PostgreSQL.

SQLite: a migrated template database with the demo directory, copied into each test's own
folder. PostgreSQL (``REGUL_TEST_POSTGRES_URL``, default 127.0.0.1/test): a schema of its own
per test session, migrated once; each test starts from truncated case tables. When the server
cannot be reached the PostgreSQL tests are skipped on a developer's machine but FAIL in CI
(``CI=true``) or with ``REGUL_REQUIRE_POSTGRES=1``: they are never silently skipped there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.cases import CaseView
from engine.clock import FixedClock
from engine.db import Database
from engine.decisions import Rules
from engine.runner import Runner
from engine.workflow import WorkflowRegistry, WorkflowSpec
from workflows import default_registry
from workflows.directory import load_directory

PG_URL = os.environ.get("REGUL_TEST_POSTGRES_URL", "postgresql://127.0.0.1/test")
PG_REQUIRED = (
    os.environ.get("CI", "").lower() == "true" or os.environ.get("REGUL_REQUIRE_POSTGRES") == "1"
)
CASE_TABLES = (
    "movement",
    "stock_balance",
    "resource_report",
    "obligation",
    "login_attempt",
    "desk_draft",
    "regul_session",
    "api_token",
    "notice_attempt",
    "notice",
    "notice_counter",
    "idempotency",
    "deadline",
    "audit_event",
    "audit_head",
    "regul_case",
)
START = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
CONFIRMS = Rules(hospital_confirms=True)  # a new case waits for its hospital's escalate

# Demo hospitals and the users who act on them (see workflows/data).
TOULOUSE = "319900001"  # CHU de Toulouse, GHT-OCC-06, region OCC, zone SUD
LENDER = "319900002"  # another hospital of its GHT: lends ECMO consoles in the tests
ACTORS_OCC = {
    "establishment": "etab-319900001",
    "ght": "ght-occ-06",
    "umac": "umac-sud",
    "ars": "ars-occ",
    "ars_zone": "arsz-sud",
    "ccs": "ccs",
    "spf": "spf",
}
OUTSIDERS = {  # same roles, elsewhere: Île-de-France, zone de Paris
    "establishment": "etab-789900001",
    "ght": "ght-idf-01",
    "umac": "umac-paris",
    "ars": "ars-idf",
    "ars_zone": "arsz-paris",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=("all", "sqlite", "postgres"), default="all")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--backend")
        backends = ["sqlite", "postgres"] if choice == "all" else [choice]
        metafunc.parametrize(
            "backend",
            [
                pytest.param(b, marks=[pytest.mark.postgres] if b == "postgres" else [])
                for b in backends
            ],
        )


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "regul.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    with db.write() as conn:
        load_directory(conn)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    schema = f"regul_test_{_worker()}_{os.getpid()}"
    admin = sa.create_engine(Database(PG_URL).url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL at {PG_URL} is unreachable: {str(exc.orig).splitlines()[0]}"
        if PG_REQUIRED:
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)
    separator = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{separator}options=-csearch_path%3D{schema}"
    db = Database(url)
    db.migrate()
    with db.write() as conn:
        load_directory(conn)
    db.dispose()
    yield url
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin.dispose()


def truncate_cases(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text(f"TRUNCATE {', '.join(CASE_TABLES)} RESTART IDENTITY CASCADE"))
        conn.execute(sa.text("UPDATE regul_user SET active = true, password_hash = NULL"))
        conn.execute(sa.text("DELETE FROM regul_user WHERE login LIKE 'new-%'"))


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "regul.db"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    db = Database(url)
    truncate_cases(db)
    db.dispose()
    return url


@dataclass
class Ctx:
    """What an engine test needs: the database, the runner, a clock it moves by hand."""

    db: Database
    runner: Runner
    clock: FixedClock
    registry: WorkflowRegistry

    def open(self, kind: str = "ecmo", *, hospital: str = TOULOUSE, **fields: object) -> CaseView:
        return make_case(self, kind, hospital=hospital, **fields)

    def count(self, table: str, where: str = "1=1") -> int:
        with self.db.read() as conn:
            return int(
                conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one()
            )

    def snapshot(self) -> dict[str, Any]:
        """Everything a refused command must leave as it was."""
        with self.db.read() as conn:
            return {
                table: [
                    dict(r._mapping)
                    for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))
                ]
                for table in CASE_TABLES
            }


@pytest.fixture
def ctx(database_url: str) -> Iterator[Ctx]:
    db = Database(database_url)
    clock = FixedClock(START)
    registry = default_registry()
    # the hospital confirms its own request (the former default), as these tests were written
    yield Ctx(db, Runner(db, registry, clock, rules=CONFIRMS), clock, registry)
    db.dispose()


DEFAULT_FIELDS: dict[str, dict[str, object]] = {
    "ecmo": {
        "patient_ref": "PAT-0001",
        "mode": "VV",
        "covid": "yes",
        "consoles_needed": 1,
        "circuits_needed": 2,
    },
    "ppe": {
        "lines": [
            {
                "item": "ffp2_mask",
                "quantity": 5000,
                "stock_on_hand": 800,
                "weekly_consumption": 3000,
            },
        ],
        "delivery_address": "Quai de livraison, 1 rue de l'Hôpital",
    },
    "transfer": {"patient_ref": "PAT-0002", "covid": "yes", "bed_category": "reanimation"},
}
TRIGGER_FIELDS: dict[tuple[str, str], dict[str, object]] = {
    # a console lent by another hospital of Toulouse's GHT (its region and zone): any level may
    ("ecmo", "resolve"): {"source": "hospital", "lender": LENDER, "return_by": "2026-12-15"},
    ("ecmo", "extend_loan"): {"return_by": "2026-12-22"},
    # the source (stock) left out: each level ships from its own (ght, region, national)
    ("ppe", "resolve"): {"quantity": 4000, "expected_delivery": "2026-11-24"},
    ("ppe", "deliver"): {"quantity_received": 4000},
    ("transfer", "resolve"): {
        "receiving_hospital": "349900001",
        "means": "air",
        "date": "2026-11-23",
    },
}


# A receiving establishment inside each test region (an ARS finds beds inside its region).
RECEIVING = {"OCC": "349900001", "IDF": "939900001"}


def trigger_data(kind: str, trigger: str, region: str | None = None) -> dict[str, object]:
    """The fields of ``trigger`` for a case of ``kind`` in ``region``."""
    data = dict(TRIGGER_FIELDS.get((kind, trigger), {}))
    if (kind, trigger) == ("transfer", "resolve") and region in RECEIVING:
        data["receiving_hospital"] = RECEIVING[region]
    return data


def make_case(
    ctx: Ctx, kind: str = "ecmo", *, hospital: str = TOULOUSE, **overrides: object
) -> CaseView:
    fields = {**DEFAULT_FIELDS[kind], **overrides}
    return ctx.runner.open_case(kind=kind, login=f"etab-{hospital}", org=hospital, fields=fields)


def path_to(spec: WorkflowSpec, state: str) -> list[str]:
    """The shortest list of triggers that leads from the initial state to ``state``."""
    paths: dict[str, list[str]] = {spec.initial: []}
    frontier = [spec.initial]
    while frontier:
        current = frontier.pop(0)
        for t in spec.allowed(current):
            if t.dest not in paths:
                paths[t.dest] = [*paths[current], t.trigger]
                frontier.append(t.dest)
    return paths[state]


def actor_for(spec: WorkflowSpec, state: str, trigger: str) -> str:
    """A demo user (in Occitanie) allowed to fire ``trigger`` from ``state``."""
    transition = spec.transition(state, trigger)
    assert transition is not None
    if transition.lender:  # the lender of TRIGGER_FIELDS' loan
        return f"etab-{LENDER}"
    if transition.receiver:  # the receiving establishment of TRIGGER_FIELDS' transfer
        return f"etab-{RECEIVING['OCC']}"
    level = spec.state(state).level
    role = level if level in transition.roles else transition.roles[0]
    return ACTORS_OCC[role]


def drive(ctx: Ctx, case: CaseView, triggers: list[str]) -> CaseView:
    spec = ctx.registry[case.kind]
    for trigger in triggers:
        case = ctx.runner.advance(
            reference=case.reference,
            trigger=trigger,
            login=actor_for(spec, case.state, trigger),
            reason=f"test {trigger}",
            data=TRIGGER_FIELDS.get((case.kind, trigger), {}),
        )
    return case


# -- the HTTP interfaces -------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


@dataclass
class Web:
    """A test client on the API and desk, over the same database and clock as ``ctx``."""

    client: Any  # fastapi.testclient.TestClient, base URL https://testserver
    ctx: Ctx
    accounts: Any  # engine.accounts.Accounts

    def token(self, login: str) -> dict[str, str]:
        """Authorization headers with a fresh API token of ``login``."""
        secret, _ = self.accounts.issue_token(login, label="test")
        return {"Authorization": f"Bearer {secret}"}

    def login(self, login: str) -> str:
        """Log ``login`` in on the desk (password set here); returns the session's CSRF token."""
        self.accounts.set_password(login, PASSWORD)
        page = self.client.get("/login")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        answer = self.client.post(
            "/login",
            data={"login": login, "password": PASSWORD, "csrf": csrf},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        home = self.client.get("/")
        return home.text.split('name="csrf" value="')[1].split('"')[0]


@pytest.fixture
def web(ctx: Ctx) -> Iterator[Web]:
    from fastapi.testclient import TestClient

    from engine.accounts import Accounts
    from engine.settings import load_settings
    from interfaces.app import App
    from interfaces.web import create_web

    settings = load_settings(database_url=str(ctx.db.url), notices=False)
    accounts = Accounts(ctx.db, ctx.clock, memory_kib=64, time_cost=1)
    app = create_web(App(settings, ctx.db, ctx.registry, ctx.runner), accounts)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        yield Web(client, ctx, accounts)
