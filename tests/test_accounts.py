"""Accounts: argon2id passwords, sessions with timeouts, hashed tokens, and ``regul users``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from engine.accounts import Accounts, digest
from engine.errors import Conflict, InputError, NotFound, Unauthenticated
from interfaces.cli import app
from tests.conftest import PASSWORD, Ctx

CLI = CliRunner()


def accounts(ctx: Ctx) -> Accounts:
    return Accounts(ctx.db, ctx.clock, memory_kib=64, time_cost=1)


def regul(url: str, *args: str, password: str | None = None) -> tuple[int, str, str]:
    env = {"REGUL_DATABASE_URL": url, "COLUMNS": "200", "REGUL_PASSWORD_MEMORY_KIB": "64"}
    if password is not None:
        env["REGUL_PASSWORD"] = password
    result = CLI.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_passwords_are_argon2id_and_never_stored_plain(ctx: Ctx) -> None:
    """The stored hash is argon2id; the password itself appears nowhere in the database."""
    acc = accounts(ctx)
    acc.set_password("ars-occ", PASSWORD)
    with ctx.db.read() as conn:
        stored = conn.execute(
            sa.text("SELECT password_hash FROM regul_user WHERE login = 'ars-occ'")
        ).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    opened = acc.login("ars-occ", PASSWORD)
    assert opened.actor.login == "ars-occ"
    assert ctx.count("regul_session", f"id = '{digest(opened.secret)}'") == 1
    assert ctx.count("regul_session", f"id = '{opened.secret}'") == 0


@pytest.mark.parametrize(
    ("login", "password"),
    [("ars-occ", "wrong password here"), ("nobody", PASSWORD), ("ccs", PASSWORD)],
)
def test_failed_login_says_the_same_and_is_audited(ctx: Ctx, login: str, password: str) -> None:
    """Wrong password, unknown user or no password set: one message, no session, one audit event."""
    acc = accounts(ctx)
    acc.set_password("ars-occ", PASSWORD)
    with pytest.raises(Unauthenticated, match="wrong login or password"):
        acc.login(login, password)
    assert ctx.count("regul_session") == 0
    assert ctx.count("audit_event", "case_id IS NULL AND action = 'login_failed'") == 1


def test_five_failures_lock_the_login_for_fifteen_minutes(ctx: Ctx) -> None:
    """After 5 failed logins in 15 min even the right password is refused, until the window passes."""
    acc = accounts(ctx)
    acc.set_password("ars-occ", PASSWORD)
    for _ in range(5):
        with pytest.raises(Unauthenticated, match="wrong login"):
            acc.login("ars-occ", "not the password")
    with pytest.raises(Unauthenticated, match="too many failed logins"):
        acc.login("ars-occ", PASSWORD)
    assert ctx.count("regul_session") == 0
    ctx.clock.advance(timedelta(minutes=16))
    assert acc.login("ars-occ", PASSWORD).actor.login == "ars-occ"


def test_session_idle_and_absolute_timeouts(ctx: Ctx) -> None:
    """A session dies after 30 min unused, and after 12 h however busy."""
    acc = accounts(ctx)
    acc.set_password("ars-occ", PASSWORD)
    idle = acc.login("ars-occ", PASSWORD)
    ctx.clock.advance(timedelta(minutes=29))
    assert acc.session(idle.secret).actor.login == "ars-occ"
    ctx.clock.advance(timedelta(minutes=30))  # 30 min since the last use
    with pytest.raises(Unauthenticated, match="inactivity"):
        acc.session(idle.secret)
    busy = acc.login("ars-occ", PASSWORD)
    for _ in range(12 * 3 - 1):
        ctx.clock.advance(timedelta(minutes=20))
        acc.session(busy.secret)
    ctx.clock.advance(timedelta(minutes=20))
    with pytest.raises(Unauthenticated, match="maximum length"):
        acc.session(busy.secret)


def test_disabling_ends_sessions_and_tokens_at_once(ctx: Ctx) -> None:
    """After disable, the live session and the token are refused; nobody can log in again."""
    acc = accounts(ctx)
    acc.set_password("umac-sud", PASSWORD)
    opened = acc.login("umac-sud", PASSWORD)
    secret, _ = acc.issue_token("umac-sud", label="samu")
    assert acc.token_actor(secret).login == "umac-sud"
    assert acc.disable("umac-sud") == 2
    with pytest.raises(Unauthenticated):
        acc.session(opened.secret)
    with pytest.raises(Unauthenticated):
        acc.token_actor(secret)
    with pytest.raises(Unauthenticated):
        acc.login("umac-sud", PASSWORD)
    assert ctx.count("audit_event", "action = 'user_disabled'") == 1


def test_tokens_are_stored_hashed_and_revocable(ctx: Ctx) -> None:
    """The secret is shown once; the row keeps its SHA-256; a revoked token is refused."""
    acc = accounts(ctx)
    secret, info = acc.issue_token("ccs", label="plateforme-stock")
    assert secret.startswith("regul_")
    assert len(secret) > 40
    assert ctx.count("api_token", f"digest = '{digest(secret)}'") == 1
    assert ctx.count("api_token", f"digest = '{secret}'") == 0
    acc.revoke_token(info.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        acc.token_actor(secret)
    with pytest.raises(NotFound):
        acc.revoke_token(999)


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"login": "new-a", "role": "pilot"}, InputError, "unknown role"),
        ({"login": "new-a", "org": "ARS-OCC"}, InputError, "is a ars"),
        ({"login": "new-a", "org": "NOWHERE"}, NotFound, "unknown organisation"),
        ({"login": "ars-occ"}, Conflict, "already exists"),
        ({"login": "new a"}, InputError, "login"),
        ({"login": "new-a", "password": "short"}, InputError, "12 characters"),
        ({"login": "new-a", "name": " "}, InputError, "needs a name"),
    ],
)
def test_bad_user_is_refused_and_changes_nothing(
    ctx: Ctx, kwargs: dict[str, str], error: type[Exception], says: str
) -> None:
    """Unknown role, role/organisation mismatch, duplicates, weak passwords: refused, nothing written."""
    fields = {"login": "new-a", "name": "Nouveau", "role": "establishment", "org": "319900001"}
    before = ctx.count("regul_user")
    with pytest.raises(error, match=says):
        accounts(ctx).add_user(**{**fields, **kwargs})
    assert ctx.count("regul_user") == before


def test_users_cli_add_list_token_disable(ctx: Ctx, database_url: str) -> None:
    """regul users: add with a password, list, token shown once, disable ends the token."""
    code, out, err = regul(
        database_url, "users", "add", "new-samu31", "--name", "SAMU 31", "--role",
        "establishment", "--org", "319900001", "--json", password=PASSWORD,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["has_password"] is True
    code, out, err = regul(
        database_url, "users", "token", "new-samu31", "--label", "samu", "--json"
    )
    assert code == 0, err
    secret = json.loads(out)["token"]
    assert accounts(ctx).token_actor(secret).login == "new-samu31"
    code, out, _ = regul(database_url, "users", "list", "--org", "319900001", "--json")
    listed = {u["login"]: u for u in json.loads(out)}
    assert listed["new-samu31"]["tokens"] == 1
    assert secret not in out
    code, out, _ = regul(database_url, "users", "disable", "new-samu31")
    assert code == 0
    assert "1 session(s) and token(s) ended" in out
    with pytest.raises(Unauthenticated):
        accounts(ctx).token_actor(secret)
    code, _, err = regul(database_url, "users", "add", "new-x", "--name", "X", "--role", "ars",
                         "--org", "319900001", "--no-password")  # fmt: skip
    assert code == 2
    assert "belongs to a ars" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_demo_starts_desk_api_and_worker(tmp_path: Path) -> None:
    """regul serve --demo: prints one account per role, serves /login and the API, stops on SIGTERM."""
    port = _free_port()
    regul_bin = Path(sys.executable).with_name("regul")
    server = subprocess.Popen(
        [str(regul_bin), "serve", "--demo", "--port", str(port), "--db", str(tmp_path / "d.db")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": str(regul_bin.parent), "COLUMNS": "200", "REGUL_PASSWORD_TIME_COST": "1"},
    )
    try:
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/login", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("regul serve did not answer within 20 s")
        api = httpx.get(f"http://127.0.0.1:{port}/api/v1/cases", timeout=5)
        assert api.status_code == 401
        assert api.headers["content-type"] == "application/problem+json"
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).status_code == 200
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert server.returncode == 0, out
    for role in ("establishment", "ght", "umac", "ars", "ars_zone", "ccs", "spf", "auditor"):
        assert f"  {role} " in out, out
    assert "worker started" in out
