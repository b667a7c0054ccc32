"""Hostile or careless input at every door: a clear error that says what to fix, nothing written.

Each test pins one input that once reached a 500 or a traceback (issue 15): references past the
id column, Unicode digits and weak ETags, lone surrogates, dates and quantities out of range,
an instant past the deadline arithmetic, bad configuration, a bad -o, a missing or corrupt
database, a chunked body over the limit and line breaks in the directory.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from engine import settings
from engine.db import Database
from engine.errors import InputError, StorageError
from engine.workflow import FieldSpec
from interfaces.cli import app
from tests.conftest import PG_URL, TOULOUSE, Ctx, Web, drive
from workflows.directory import demo_directory, load_directory

CLI = CliRunner()
OPEN_ECMO = {"kind": "ecmo", "org": TOULOUSE, "fields": {"patient_ref": "PAT-0042", "mode": "VV"}}


def regul(url: str, *args: str, **env: str) -> tuple[int, str, str]:
    result = CLI.invoke(app, list(args), env={"REGUL_DATABASE_URL": url, "COLUMNS": "200", **env})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def is_problem(answer: Any, status: int, code: str | None = None) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    assert "Traceback" not in answer.text
    return str(body["detail"])


def open_case(web: Web) -> dict[str, Any]:
    answer = web.client.post("/api/v1/cases", json=OPEN_ECMO, headers=web.token("etab-319900001"))
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


# -- case references past the integer column ------------------------------------------------

HUGE_REFERENCES = ["ECMO-2147483648", "2147483648", "9223372036854775808", "ECMO-" + "9" * 35]


@pytest.mark.parametrize("reference", HUGE_REFERENCES, ids=["2^31", "bare-2^31", "2^63", "10^35"])
def test_reference_past_the_id_column_is_no_case_on_the_api(web: Web, reference: str) -> None:
    """A reference ≥ 2^31 (PostgreSQL's integer) or ≥ 2^63 (SQLite's) is 404 'no case', not 500."""
    open_case(web)
    headers = web.token("umac-sud")
    assert "no case" in is_problem(
        web.client.get(f"/api/v1/cases/{reference}", headers=headers), 404, "not_found"
    )
    etab = web.token("etab-319900001")
    before = web.ctx.snapshot()
    fired = web.client.post(
        f"/api/v1/cases/{reference}/triggers/escalate",
        json={"reason": "x"},
        headers={**etab, "If-Match": '"1"'},
    )
    is_problem(fired, 404, "not_found")
    assert web.ctx.snapshot() == before


@pytest.mark.parametrize("reference", [*HUGE_REFERENCES, "9" * 5000], ids=range(5))
def test_reference_past_the_id_column_is_no_case_on_the_cli(
    ctx: Ctx, database_url: str, reference: str
) -> None:
    """The CLI says 'no case' and exits 3 for a reference past the column, without a traceback."""
    for args in (("case", "show", reference), ("case", "history", reference, "--as", "ccs")):
        code, _, err = regul(database_url, *args)
        assert (code, err.startswith("error: no case ")) == (3, True), err


def test_reference_with_other_scripts_digits_is_not_a_reference(ctx: Ctx) -> None:
    """Arabic-Indic digits are not a case number (int() would read '٣' as 3)."""
    ctx.open()
    with pytest.raises(InputError, match="not a case reference"):
        ctx.runner.show("ECMO-٣")


# -- If-Match and the desk's version ---------------------------------------------------------


@pytest.mark.parametrize("header", [b"\xb2", b'"\xb9"', b'"1_0"', b"+1"], ids=repr)
def test_if_match_takes_only_ascii_digits(web: Web, header: bytes) -> None:
    """If-Match with Latin-1 digits ('²' passes isdigit, not int()) or '1_0': 400, no change."""
    ref = open_case(web)["reference"]
    etab = web.token("etab-319900001")
    before = web.ctx.snapshot()
    answer = web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate",
        json={"reason": "x"},
        headers={**etab, "If-Match": header},
    )
    assert "digits 0-9" in is_problem(answer, 400, "bad_if_match")
    assert web.ctx.snapshot() == before


def test_weak_etag_never_matches(web: Web) -> None:
    """RFC 9110: If-Match compares strongly, so W/"1" fails with 412 even on version 1."""
    ref = open_case(web)["reference"]
    etab = web.token("etab-319900001")
    before = web.ctx.snapshot()
    answer = web.client.post(
        f"/api/v1/cases/{ref}/controls/hold",
        json={"reason": "x"},
        headers={**etab, "If-Match": 'W/"1"'},
    )
    assert "weak" in is_problem(answer, 412, "weak_if_match")
    assert web.ctx.snapshot() == before


@pytest.mark.parametrize("version", ["²", "٣", "1" * 40])
def test_desk_version_takes_only_ascii_digits(web: Web, version: str) -> None:
    """The desk's hidden version field with Unicode digits: the case page and a message, no 500."""
    ref = open_case(web)["reference"]
    csrf = web.login("etab-319900001")
    before = web.ctx.snapshot()
    answer = web.client.post(
        f"/cases/{ref}/fire/escalate",
        data={"csrf": csrf, "version": version, "reason": "patient instable"},
        follow_redirects=False,
    )
    assert answer.status_code == 422, answer.text
    assert "version du dossier" in answer.text
    after = web.ctx.snapshot()

    def moves(snapshot: dict[str, Any]) -> list[Any]:  # the re-rendered page records a read
        cases = [(c["state"], c["version"]) for c in snapshot["regul_case"]]
        return [cases, [e for e in snapshot["audit_event"] if e["action"] != "read"]]

    assert moves(after) == moves(before)


# -- lone surrogates ---------------------------------------------------------------------------

SURROGATE = "\ud800"
FIELDS = {"patient_ref": "PAT-0042", "mode": "VV"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/cases", {"kind": "ecmo", "org": TOULOUSE, "fields": {**FIELDS, "summary": SURROGATE}}),
        ("/api/v1/cases", {"kind": f"ecmo{SURROGATE}", "org": TOULOUSE, "fields": FIELDS}),
        ("/api/v1/cases", {"kind": "ecmo", "org": SURROGATE, "fields": FIELDS}),
        ("/api/v1/cases/{ref}/triggers/escalate", {"reason": SURROGATE}),
        ("/api/v1/cases/{ref}/triggers/cancel", {"reason": "r", "data": {f"x{SURROGATE}": 1}}),
        ("/api/v1/cases/{ref}/controls/hold", {"reason": f"a{SURROGATE}b"}),
    ],
    ids=["field", "kind", "org", "reason", "data-key", "control-reason"],
)  # fmt: skip
def test_lone_surrogate_in_json_is_a_clear_error(web: Web, path: str, body: dict[str, Any]) -> None:
    """A JSON string escape for a lone surrogate is a 4xx naming the problem, nothing written."""
    ref = open_case(web)["reference"]
    etab = web.token("etab-319900001")
    before = web.ctx.snapshot()
    answer = web.client.post(
        path.format(ref=ref),
        content=json.dumps(body).encode(),  # ASCII JSON: the surrogate travels escaped
        headers={
            **etab,
            "If-Match": '"1"',
            "Content-Type": "application/json",
        },
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert "Traceback" not in answer.text
    assert web.ctx.snapshot() == before


def test_lone_surrogate_in_desk_login_is_refused(web: Web) -> None:
    """The desk login form decoded with a surrogate (as from a raw client): 4xx, no session."""
    page = web.client.get("/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    before = web.ctx.snapshot()
    answer = web.client.post(
        "/login",
        content=f"login=%ED%A0%80&password=x{SURROGATE}&csrf={csrf}".encode(
            "utf-8", "surrogatepass"
        ),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert web.ctx.snapshot()["regul_session"] == before["regul_session"]


@pytest.mark.parametrize(
    "args",
    [
        ("case", "open", "ecmo", "--as", "etab-319900001", "--org", TOULOUSE,
         "--field", "patient_ref=PAT-42", "--field", "mode=VV", "--field", f"summary={SURROGATE}"),
        ("case", "advance", "{ref}", "escalate", "--as", "etab-319900001",
         "--reason", f"r{SURROGATE}"),
        ("case", "advance", "{ref}", "escalate", "--as", f"etab{SURROGATE}", "--reason", "r"),
        ("case", "list", "--region", SURROGATE),
        ("case", "list", "--as", SURROGATE),
        ("case", "show", "{ref}", "--as", SURROGATE),
    ],
    ids=["field", "reason", "login", "filter", "list-as", "show-as"],
)  # fmt: skip
def test_lone_surrogate_on_the_cli_is_a_clear_error(
    ctx: Ctx, database_url: str, args: tuple[str, ...]
) -> None:
    """A surrogate from undecodable argv bytes: one error line, exit 2 or 3, nothing written."""
    ref = ctx.open().reference
    before = ctx.snapshot()
    code, out, err = regul(database_url, *(a.format(ref=ref) for a in args))
    assert code in (2, 3), (out, err)
    assert err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert ctx.snapshot() == before


# -- dates and quantities ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "raw", "says"),
    [
        (FieldSpec("return_by", "date"), "9999-12-31", "from 2000-01-01 to 2100-12-31"),
        (FieldSpec("return_by", "date"), "1000-01-01", "from 2000-01-01 to 2100-12-31"),
        (FieldSpec("return_by", "date"), "20261215", "YYYY-MM-DD"),
        (FieldSpec("quantity", "int"), 10**30, "from 1 to 10 000 000"),
        (FieldSpec("quantity", "int"), "1" * 400, "from 1 to 10 000 000"),
        (FieldSpec("quantity", "int"), "٣", "digits 0-9"),
        (FieldSpec("quantity", "int"), "1_000", "digits 0-9"),
        (FieldSpec("summary", "text"), f"a{SURROGATE}", "lone surrogate"),
    ],
)
def test_field_values_out_of_range_name_the_field_and_range(
    spec: FieldSpec, raw: object, says: str
) -> None:
    """Dates and quantities beyond sane ranges are refused with the field and the range."""
    with pytest.raises(InputError, match=f"field '{spec.name}'") as caught:
        spec.parse(raw)
    assert says in caught.value.message


def test_field_bounds_are_inclusive() -> None:
    """The ends of the ranges are accepted."""
    assert FieldSpec("q", "int").parse("10000000") == 10_000_000
    assert FieldSpec("d", "date").parse("2100-12-31") == "2100-12-31"
    assert FieldSpec("d", "date").parse("2000-01-01") == "2000-01-01"


def test_far_return_date_is_refused_at_resolve_so_start_still_works(ctx: Ctx) -> None:
    """A return date of 9999-12-31 is refused at resolve (it used to make every start fail)."""
    case = drive(ctx, ctx.open(), ["escalate"])
    before = ctx.snapshot()
    with pytest.raises(InputError, match="return_by"):
        ctx.runner.advance(
            reference=case.reference, trigger="resolve", login="umac-sud", reason="r",
            data={"source": "national", "return_by": "9999-12-31"},
        )  # fmt: skip
    assert ctx.snapshot() == before
    case = drive(ctx, case, ["resolve", "start"])
    assert case.state == "in_service"


def test_huge_ppe_quantity_is_refused(ctx: Ctx) -> None:
    """A PPE request of 10^30 masks is refused and nothing is written."""
    before = ctx.snapshot()
    with pytest.raises(InputError, match="quantity"):
        ctx.open("ppe", quantity=10**30)
    assert ctx.snapshot() == before


# -- the command line: --at, -o, configuration ------------------------------------------------


def test_sweep_at_the_end_of_time_is_an_input_error(ctx: Ctx, database_url: str) -> None:
    """--at 9999-12-31T23:59:59Z --dry-run: exit 2 naming the range, no traceback, no write."""
    ctx.open()
    before = ctx.snapshot()
    code, _, err = regul(database_url, "sweep", "--at", "9999-12-31T23:59:59Z", "--dry-run")
    assert code == 2
    assert "out of range" in err
    assert "2100-12-31" in err
    assert ctx.snapshot() == before


def test_sweep_far_but_sane_dry_run_still_works(ctx: Ctx, database_url: str) -> None:
    """A dry run in 2100 still shows what would fire."""
    ctx.open()
    code, out, err = regul(
        database_url, "sweep", "--at", "2100-01-01T00:00Z", "--dry-run", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["counts"]


def test_audit_export_into_a_missing_folder(ctx: Ctx, database_url: str, tmp_path: Path) -> None:
    """-o into a folder that does not exist: exit 2, says to create it, writes nothing."""
    ctx.open()
    target = tmp_path / "missing" / "audit.csv"
    code, _, err = regul(
        database_url, "audit", "export", "--operator", "--format", "csv", "-o", str(target)
    )
    assert code == 2
    assert "does not exist" in err
    assert "create it" in err
    assert not target.parent.exists()
    code, _, err = regul(database_url, "audit", "export", "--operator", "-o", str(tmp_path))
    assert (code, "is a folder" in err) == (2, True)


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A working directory of our own, without regul.toml."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGUL_CONFIG", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"database_url = \n", "line 1"), (b"\xff\xfe[x]", "utf-8")],
    ids=["toml", "encoding"],
)
def test_unparsable_config_is_exit_2_naming_the_file(
    no_config: Path, content: bytes, says: str
) -> None:
    """An unparsable REGUL_CONFIG: exit 2, one line naming the file and the problem."""
    path = no_config / "bad.toml"
    path.write_bytes(content)
    code, _, err = regul("sqlite:///x.db", "case", "list", REGUL_CONFIG=str(path))
    assert code == 2
    assert str(path) in err
    assert says in err.lower()
    assert len(err.strip().splitlines()) == 1
    assert not (no_config / "x.db").exists()


def test_misspelt_setting_is_named_with_the_nearest_one(
    ctx: Ctx, database_url: str, no_config: Path
) -> None:
    """REGUL_SQLITE_SYNCRONOUS is warned about on stderr, with REGUL_SQLITE_SYNCHRONOUS."""
    code, _, err = regul(database_url, "case", "list", REGUL_SQLITE_SYNCRONOUS="NORMAL")
    assert code == 0
    assert "REGUL_SQLITE_SYNCRONOUS" in err
    assert "did you mean REGUL_SQLITE_SYNCHRONOUS" in err
    assert (
        settings.unknown_variables({"REGUL_DATABASE_URL": "x", "REGUL_CONFIG": "y", "HOME": "/"})
        == []
    )
    assert "README" in settings.unknown_variables({"REGUL_ZZZZZZZZ": "1"})[0]


# -- the database itself -----------------------------------------------------------------------


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    """A command against a missing SQLite file says so and to run 'regul init'; no file appears."""
    path = tmp_path / "nowhere.db"
    code, _, err = regul(f"sqlite:///{path}", "case", "list")
    assert code == 6
    assert "does not exist" in err
    assert "regul init" in err
    assert list(tmp_path.iterdir()) == []
    code, _, err = regul(f"sqlite:///{path}", "init")
    assert code == 0, err
    assert path.exists()


@pytest.mark.parametrize("damage", ["text", "random", "pages"])
def test_corrupt_sqlite_file_is_a_storage_error(
    sqlite_template: Path, tmp_path: Path, damage: str
) -> None:
    """A text file, random bytes, or a database with trashed pages: exit 6 and one line."""
    path = tmp_path / "regul.db"
    if damage == "text":
        path.write_text("database_url = 'not this file'\n")
    elif damage == "random":
        path.write_bytes(bytes(range(256)) * 40)
    else:
        shutil.copy(sqlite_template, path)
        with path.open("r+b") as handle:
            handle.seek(100)
            handle.write(b"\xa5" * 60000)
    original = path.read_bytes()
    code, _, err = regul(f"sqlite:///{path}", "case", "list")
    assert code == 6, err
    assert "corrupt" in err
    assert len(err.strip().splitlines()) == 1
    assert path.read_bytes() == original
    with pytest.raises(StorageError, match="corrupt"):
        _revision_of(f"sqlite:///{path}")


def _revision_of(url: str) -> str | None:
    db = Database(url)
    try:
        return db.revision()
    finally:
        db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://127.0.0.1/regul_no_such_database", "no database 'regul_no_such_database'"),
        ("postgresql://regul_no_such_role@127.0.0.1/test", "no role 'regul_no_such_role'"),
    ],
)
def test_missing_postgres_database_or_role_is_named(pg_url: str, url: str, says: str) -> None:
    """A missing database or role is said to be missing, not 'no Régul schema'."""
    base = sa.engine.make_url(PG_URL)
    wanted = sa.engine.make_url(url).set(host=base.host, port=base.port)
    code, _, err = regul(wanted.render_as_string(hide_password=False), "case", "list")
    assert code == 6
    assert says in err
    assert "schema" not in err


# -- HTTP bodies ---------------------------------------------------------------------------------


def _chunks(total: int) -> Iterator[bytes]:
    yield b'{"reason": "'
    for _ in range(total // 1000):
        yield b"x" * 1000
    yield b'"}'


def test_chunked_body_over_the_limit_is_413(web: Web) -> None:
    """A body without Content-Length (chunked) over the limit is 413 like any other, no change."""
    ref = open_case(web)["reference"]
    etab = web.token("etab-319900001")
    before = web.ctx.snapshot()
    answer = web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate",
        content=_chunks(70000),
        headers={
            **etab,
            "If-Match": '"1"',
            "Content-Type": "application/json",
        },
    )
    assert "exceeds" in is_problem(answer, 413, "too_large")
    assert web.ctx.snapshot() == before


def test_chunked_body_under_the_limit_is_served(web: Web) -> None:
    """A small chunked body goes through as usual."""
    ref = open_case(web)["reference"]
    answer = web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate",
        content=_chunks(2000),
        headers={
            **web.token("etab-319900001"),
            "If-Match": '"1"',
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code == 200, answer.text


# -- the directory -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "needle", "replacement", "where"),
    [
        ("organisations.csv", "ARS Île-de-France,", '"ARS Île-\r\nde-France",', "line 6, column 3"),
        ("organisations.csv", ",ars-idf-alerte@", ',"ars-idf\nalerte@', "line 6, column 8"),
        ("users.csv", "Régulateur ARS Île-de-France", '"Régulateur\rARS"', "line 2, column 2"),
    ],
    ids=["name-crlf", "email-lf", "user-cr"],
)
def test_line_breaks_in_directory_cells_are_refused(
    ctx: Ctx, tmp_path: Path, file: str, needle: str, replacement: str, where: str
) -> None:
    """CR or LF inside a quoted cell: refused with the file, line and column; nothing written."""
    folder = tmp_path / "directory"
    shutil.copytree(demo_directory(), folder, ignore=shutil.ignore_patterns("*.py", "__*"))
    text = (folder / file).read_text(encoding="utf-8")
    assert needle in text
    (folder / file).write_text(text.replace(needle, replacement, 1), encoding="utf-8", newline="")
    with ctx.db.read() as conn:
        before = conn.execute(sa.text("SELECT id, name, email FROM organisation ORDER BY id")).all()
    with pytest.raises(InputError) as caught, ctx.db.write() as conn:
        load_directory(conn, folder)
    assert f"{folder / file}, {where}" in caught.value.message
    assert "control character" in caught.value.message
    with ctx.db.read() as conn:
        after = conn.execute(sa.text("SELECT id, name, email FROM organisation ORDER BY id")).all()
    assert after == before


def test_short_directory_row_is_refused_with_its_line(ctx: Ctx, tmp_path: Path) -> None:
    """A row with a missing cell names its line instead of failing on None."""
    folder = tmp_path / "directory"
    shutil.copytree(demo_directory(), folder, ignore=shutil.ignore_patterns("*.py", "__*"))
    with (folder / "zones.csv").open("a", encoding="utf-8") as handle:
        handle.write("EXTRA,Zone sans siège\n")
    with (
        pytest.raises(InputError, match=r"zones\.csv, line 12: the row has more or fewer cells"),
        ctx.db.write() as conn,
    ):
        load_directory(conn, folder)


def test_settings_object_still_loads(no_config: Path) -> None:
    """The warnings do not stop a good configuration from loading."""
    assert settings.load_settings(database_url="sqlite:///x.db").database_url == "sqlite:///x.db"


def test_deadlock_and_lock_timeout_say_what_happened(tmp_path: Path) -> None:
    """A deadlock or a lock not granted in time is named as such, not 'stayed locked too long'."""
    import sqlalchemy as sa

    from engine.db import Database

    class DriverError(Exception):
        def __init__(self, text: str, sqlstate: str) -> None:
            super().__init__(text)
            self.sqlstate = sqlstate

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    deadlock = sa.exc.OperationalError("UPDATE", {}, DriverError("deadlock detected", "40P01"))
    assert "deadlock" in db._explain(deadlock)
    assert "locked too long" not in db._explain(deadlock)
    timeout = sa.exc.OperationalError("SELECT", {}, DriverError("lock timeout", "55P03"))
    assert "not granted in time" in db._explain(timeout)
    db.dispose()


@pytest.mark.parametrize(
    ("given", "value"),
    [
        ({"notices": "false"}, ("notices", False)),
        ({"notices": " Yes "}, ("notices", True)),
        ({"cookie_secure": "0"}, ("cookie_secure", False)),
        ({"smtp_port": "2525"}, ("smtp_port", 2525)),
        ({"smtp_port": 2525.0}, ("smtp_port", 2525)),
        ({"sweep_interval": "0.5"}, ("sweep_interval", 0.5)),
        ({"reminder_fractions": [0.3, "0.6"]}, ("reminder_fractions", [0.3, 0.6])),
        ({"notice_channels": {"CCS": "webhook"}}, ("notice_channels", {"CCS": "webhook"})),
        ({"sqlite_synchronous": "NORMAL"}, ("sqlite_synchronous", "NORMAL")),
    ],
)
def test_settings_take_values_as_given_in_text(
    no_config: Path, given: dict[str, Any], value: tuple[str, Any]
) -> None:
    """Flags, numbers and choices are read from their text (as the environment gives them)."""
    assert getattr(settings.load_settings(**given), value[0]) == value[1]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"notices": "maybe"}, "bad setting notices: Input should be a valid boolean"),
        ({"smtp_port": "25x"}, "bad setting smtp_port: Input should be a valid integer"),
        ({"smtp_port": "0"}, "bad setting smtp_port: Input should be greater than 0"),
        ({"smtp_port": 70000}, "bad setting smtp_port: Input should be less than 65536"),
        (
            {"password_time_cost": 0},
            "password_time_cost: Input should be greater than or equal to 1",
        ),
        ({"sweep_batch": 10001}, "sweep_batch: Input should be less than or equal to 10000"),
        ({"sweep_interval": "soon"}, "sweep_interval: Input should be a valid number"),
        ({"notice_channel": "fax"}, "notice_channel: Input should be 'eml', 'smtp' or 'webhook'"),
        ({"notice_channels": {"CCS": "fax"}}, "bad setting notice_channels.CCS: Input should be"),
        ({"reminder_fractions": [0.5, "x"]}, "bad setting reminder_fractions.1: Input should be"),
        ({"reminder_fractions": 0.5}, "reminder_fractions: Input should be a valid list"),
        ({"deadlines": {"ppe": "2h"}}, "bad setting deadlines.ppe: Input should be a valid dict"),
        ({"database_url": 5}, "bad setting database_url: Input should be a valid string"),
        ({"smtp_prot": 25}, "bad setting smtp_prot: Extra inputs are not permitted"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    no_config: Path, given: dict[str, Any], says: str
) -> None:
    """A bad value names the setting (and the key or index within it), why, and what to fix."""
    with pytest.raises(InputError) as info:
        settings.load_settings(**given)
    assert says in str(info.value)
    top = next(iter(given)).upper()
    assert str(info.value).endswith(f"fix REGUL_{top} or regul.toml")


def test_secret_settings_do_not_show(no_config: Path) -> None:
    """The checkpoint key reads back with get_secret_value() and prints as stars."""
    key = settings.load_settings(checkpoint_key="k3y").checkpoint_key
    assert key.get_secret_value() == "k3y"
    assert "k3y" not in repr(key) + str(key)
    assert settings.load_settings().checkpoint_key.get_secret_value() == ""
