"""The ``regul`` command line: commands, JSON output, one-line errors, exit codes, nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from freezegun import freeze_time
from typer.testing import CliRunner

from engine.db import HEAD_REVISION
from interfaces.cli import app
from tests.conftest import START, TOULOUSE, Ctx
from tests.test_engine import probe_only

CLI = CliRunner()


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    """The CLI reads the system clock: pin it (freezegun, ticking) to the engine tests' START."""
    assert psycopg.pq.__impl__  # the driver's C module loads before freezegun patches datetime
    with freeze_time(START, tick=True):
        yield


def regul(url: str, *args: str) -> tuple[int, str, str]:
    result = CLI.invoke(app, list(args), env={"REGUL_DATABASE_URL": url, "COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def open_case(url: str) -> dict[str, object]:
    code, out, err = regul(
        url, "case", "open", "ecmo", "--as", "etab-319900001", "--org", TOULOUSE,
        "--field", "patient_ref=PAT-42", "--field", "mode=VA", "--json",
    )  # fmt: skip
    assert code == 0, err
    return dict(json.loads(out))


def test_open_advance_show_history_list(ctx: Ctx, database_url: str) -> None:
    """A case opened (straight to the UMAC, the deployment's default) and read through the
    CLI, with --json everywhere."""
    case = open_case(database_url)
    assert (case["state"], case["version"]) == ("umac_review", 1)
    ref = str(case["reference"])
    code, out, _ = regul(database_url, "case", "show", ref, "--as", "umac-sud", "--json")
    shown = json.loads(out)
    assert (shown["version"], shown["allowed_triggers"]) == (1, ["escalate", "resolve", "reject"])
    assert shown["deadline"]["state"] == "umac_review"
    assert "seconds_left" in shown["deadline"]
    code, out, _ = regul(database_url, "case", "history", ref, "--json")
    events = json.loads(out)["events"]
    assert [e["action"] for e in events] == ["opened", "transition", "read"]
    assert (events[1]["actor"], events[1]["data"]["auto"]) == ("system", "open")
    assert (events[-1]["actor"], events[-1]["data"]) == ("umac-sud", {"read": "case", "via": "cli"})
    code, out, _ = regul(
        database_url, "case", "list", "--level", "umac", "--region", "OCC", "--json"
    )
    assert [c["reference"] for c in json.loads(out)] == [ref]
    code, out, _ = regul(database_url, "case", "list", "--as", "ars-idf", "--json")
    assert json.loads(out) == []
    code, out, _ = regul(database_url, "case", "show", ref)
    assert code == 0
    assert "umac_review" in out


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (
            ["case", "advance", "{ref}", "escalate", "--as", "ars-occ", "--reason", "x"],
            5,
            "may not escalate",
        ),
        (
            [
                "case",
                "advance",
                "{ref}",
                "escalate",
                "--as",
                "etab-319900001",
                "--reason",
                "x",
                "--expect-version",
                "7",
            ],
            4,
            "is at version 1, not 7",
        ),
        (
            ["case", "advance", "{ref}", "close", "--as", "etab-319900001", "--reason", "x"],
            4,
            "close is not possible there",
        ),
        (
            ["case", "advance", "{ref}", "fly", "--as", "etab-319900001", "--reason", "x"],
            3,
            "unknown trigger 'fly'",
        ),
        (
            ["case", "advance", "ECMO-000999", "escalate", "--as", "ccs", "--reason", "x"],
            3,
            "no case ECMO-000999",
        ),
        (
            ["case", "advance", "{ref}", "escalate", "--as", "ghost", "--reason", "x"],
            3,
            "unknown user 'ghost'",
        ),
        (
            [
                "case",
                "open",
                "ecmo",
                "--as",
                "etab-319900001",
                "--org",
                TOULOUSE,
                "--field",
                "mode",
            ],
            2,
            "is not key=value",
        ),
        (
            [
                "case",
                "open",
                "ecmo",
                "--as",
                "etab-319900001",
                "--org",
                TOULOUSE,
                "--field",
                "mode=VV",
                "--field",
                "patient_ref=P-1",
            ],
            2,
            "pseudonymous reference",
        ),
        (
            [
                "case",
                "open",
                "ecmo",
                "--as",
                "etab-319900001",
                "--org",
                "999999999",
                "--field",
                "mode=VV",
            ],
            3,
            "unknown organisation",
        ),
        (
            [
                "case",
                "open",
                "ecmo",
                "--as",
                "etab-319900001",
                "--org",
                TOULOUSE,
                "--field",
                "mode=VV",
                "--field",
                "patient_ref=PAT-1",
                "--field",
                "nom=Martin",
            ],
            2,
            "unknown field(s) nom",
        ),
        (
            ["case", "open", "picnic", "--as", "etab-319900001", "--org", TOULOUSE],
            3,
            "unknown workflow 'picnic'",
        ),
        (["case", "list", "--kind", "ecmo", "--state", "flying"], 3, "no state 'flying'"),
        (["audit", "export", "--operator", "--since", "yesterday"], 2, "not an ISO-8601 instant"),
    ],
)
def test_bad_input_one_line_error_nonzero_exit_nothing_written(
    ctx: Ctx, database_url: str, args: list[str], exit_code: int, message: str
) -> None:
    """Each bad command prints one line naming the problem, exits non-zero and changes nothing but a refusal record."""
    ref = str(open_case(database_url)["reference"])
    before = ctx.snapshot()
    code, out, err = regul(database_url, *[a.replace("{ref}", ref) for a in args])
    assert code == exit_code, (out, err)
    assert message in err
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1
    after = ctx.snapshot()
    if message.startswith("no case"):  # a probe of a missing case: one security record
        probe_only(before, after)
    if exit_code == 5:  # a refusal writes its own audit record, and nothing else
        assert len(after["audit_event"]) == len(before["audit_event"]) + 1
        after["audit_event"], before["audit_event"] = [], []
        for snap in (before, after):  # the case's audit head moved with the refusal record
            snap["regul_case"] = [
                {**row, "audit_seq": 0, "audit_hash": ""} for row in snap["regul_case"]
            ]
    assert after == before


def test_json_error_is_machine_readable(ctx: Ctx, database_url: str) -> None:
    """With --json an error is a JSON object on stdout with a code, and the exit is non-zero."""
    code, out, _ = regul(database_url, "case", "show", "ECMO-000404", "--json")
    assert code == 3
    assert json.loads(out) == {
        "error": "not_found",
        "message": "no case ECMO-000404: check the reference with 'regul case list'",
    }


def test_uninitialised_database_says_run_init(tmp_path: Path) -> None:
    """A database without the schema gets a one-line error telling to run 'regul init'."""
    (tmp_path / "empty.db").touch()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    code, _, err = regul(url, "case", "list")
    assert code == 6
    assert "not initialised: run 'regul init'" in err


def test_init_creates_then_reports_up_to_date(tmp_path: Path) -> None:
    """regul init creates the schema and loads the demo directory; a second run changes nothing."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    code, out, err = regul(url, "init", "--demo", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["schema_before"], data["schema"]) == (None, HEAD_REVISION)
    assert data["directory"]["regions"] == 18
    code, out, _ = regul(url, "init")
    assert code == 0
    assert "up to date" in out


def test_unreachable_postgres_is_a_clear_error() -> None:
    """A PostgreSQL URL nobody answers on gives a one-line error naming REGUL_DATABASE_URL."""
    code, _, err = regul("postgresql://127.0.0.1:1/nothing", "case", "list")
    assert code == 6
    assert "cannot reach the database" in err
    assert "REGUL_DATABASE_URL" in err


def test_read_only_database_refuses_writes_clearly(tmp_path: Path, sqlite_template: Path) -> None:
    """On a read-only SQLite database a command fails with one line saying so, and writes nothing."""
    path = tmp_path / "ro.db"
    path.write_bytes(sqlite_template.read_bytes())
    writable = f"sqlite:///{path}"
    ref = str(open_case(writable)["reference"])
    before = path.read_bytes()
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    code, _, err = regul(
        read_only, "case", "advance", ref, "escalate", "--as", "etab-319900001", "--reason", "x"
    )
    assert code == 6
    assert "read-only" in err
    code, out, _ = regul(writable, "case", "show", ref, "--json")
    assert json.loads(out)["version"] == 1
    assert path.read_bytes() == before


def test_workflows_list_and_show(tmp_path: Path) -> None:
    """Workflows are listed with their ladders, shown with states and drawn in Mermaid."""
    url = f"sqlite:///{tmp_path / 'unused.db'}"
    code, out, _ = regul(url, "workflows", "list", "--json")
    assert [w["kind"] for w in json.loads(out)] == ["ecmo", "ppe", "transfer"]
    code, out, _ = regul(url, "workflows", "show", "transfer", "--mermaid")
    assert code == 0
    assert out.startswith("---") or "stateDiagram-v2" in out
    assert "requested --> ars_regulation: escalate" in out
    code, _, err = regul(url, "workflows", "show", "boat")
    assert code == 3
    assert "workflows are ecmo, ppe, transfer" in err


def test_demo_plays_and_verifies(tmp_path: Path) -> None:
    """The main job: a fresh demo database, cases played, audit verified, replay matching."""
    db = tmp_path / "demo.db"
    code, out, err = regul(
        "sqlite:///unused.db", "demo", "--db", str(db), "--cases", "12", "--json"
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["audit_verified"] is True
    assert summary["replay_matches"] is True
    assert {k: sum(v.values()) for k, v in summary["cases"].items()} == {
        # + the cases left waiting for the printed demo accounts (2 lent), + the ECMO fleet's
        # overdue loan and the case waiting in the region without a console (issue 11)
        "ecmo": 12 + 9 + 2,
        "ppe": 12 + 3 + summary["ppe"]["cases_opened"],  # + those the PPE alert rule opened
        "transfer": 12 + 2 + 3,  # + the EVASAN mission's three patients (resources.beds.demo)
    }
    assert summary["refusals"] > 0
    code, out, _ = regul(f"sqlite:///{db}", "audit", "verify", "--operator", "--json")
    assert json.loads(out)["ok"] is True
