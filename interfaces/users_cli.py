"""``regul users``: add, list, disable, password, unlock, token, tokens, revoke.

The administrator's commands on accounts. Passwords are read from a prompt (or
``REGUL_PASSWORD`` for scripts), never from an argument that would land in shell history;
an API token is printed once and only its SHA-256 is kept.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from interfaces.output import console, emit_json, fails_cleanly, table

if TYPE_CHECKING:  # the engine loads when a command runs, not when ``regul`` starts
    from engine.accounts import Accounts

__all__ = ["users_app"]

users_app = typer.Typer(help="Accounts: users, passwords and API tokens.", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _accounts() -> Accounts:
    """The accounts service of the composition root (``interfaces.app``: no web framework)."""
    from interfaces.app import build_app

    return build_app().accounts


def _password(ask: bool) -> str | None:
    if os.environ.get("REGUL_PASSWORD"):
        return os.environ["REGUL_PASSWORD"]
    if not ask:
        return None
    value: str = typer.prompt("Password (12 characters or more)", hide_input=True,
                              confirmation_prompt=True)  # fmt: skip
    return value


@users_app.command("add")
@fails_cleanly
def add(
    login: str,
    name: Annotated[str, typer.Option(help="Full name, e.g. 'Régulateur ARS Occitanie'.")],
    role: Annotated[
        str,
        typer.Option(help="establishment, ght, umac, ars, ars_zone, ccs, spf, auditor or admin."),
    ],
    org: Annotated[str, typer.Option(help="Organisation: a FINESS number or a code.")],
    password: Annotated[
        bool, typer.Option("--password/--no-password", help="Ask for a desk password.")
    ] = True,
    as_json: Json = False,
) -> None:
    """Add a user (with a desk password, unless --no-password for an API-only system)."""
    info = _accounts().add_user(
        login=login, name=name, role=role, org=org, password=_password(password)
    )
    if as_json:
        emit_json(info.__dict__)
        return
    console.print(f"user {info.login} added ({info.role}, {info.org})")


@users_app.command("list")
@fails_cleanly
def list_users(
    role: Annotated[str | None, typer.Option(help="Only this role.")] = None,
    org: Annotated[str | None, typer.Option(help="Only this organisation.")] = None,
    as_json: Json = False,
) -> None:
    """List users, their role, organisation, state, password and live tokens."""
    users = _accounts().list_users(role=role, org=org)
    if as_json:
        emit_json([u.__dict__ for u in users])
        return
    table(
        "users",
        ["login", "name", "role", "org", "active", "password", "tokens"],
        [[u.login, u.name, u.role, u.org, "yes" if u.active else "DISABLED",
          "yes" if u.has_password else "-", str(u.tokens)] for u in users],
    )  # fmt: skip


@users_app.command("disable")
@fails_cleanly
def disable(login: str, as_json: Json = False) -> None:
    """Disable a user: their desk sessions and API tokens end at once."""
    ended = _accounts().disable(login)
    if as_json:
        emit_json({"login": login, "active": False, "ended": ended})
        return
    console.print(f"user {login} disabled; {ended} session(s) and token(s) ended")


@users_app.command("password")
@fails_cleanly
def password(login: str) -> None:
    """Set a user's desk password (prompted, or REGUL_PASSWORD); clears failed logins."""
    value = _password(True)
    assert value is not None
    _accounts().set_password(login, value)
    console.print(f"password of {login} set; failed logins forgotten")


@users_app.command("unlock")
@fails_cleanly
def unlock(login: str, as_json: Json = False) -> None:
    """Forget LOGIN's failed desk logins from every address (recorded in the audit log)."""
    cleared = _accounts().unlock(login)
    if as_json:
        emit_json({"login": login, "cleared": cleared})
        return
    console.print(f"user {login} unlocked; {cleared} failed login(s) forgotten")


@users_app.command("token")
@fails_cleanly
def token(
    login: str,
    label: Annotated[str, typer.Option(help="What the token is for, e.g. samu-31.")] = "api",
    as_json: Json = False,
) -> None:
    """Issue an API token for LOGIN; it is shown once, keep it in the calling system."""
    secret, info = _accounts().issue_token(login, label=label)
    if as_json:
        emit_json({"id": info.id, "login": login, "label": info.label, "token": secret})
        return
    console.print(f"token {info.id} for {login} ({info.label}); it is shown only now:")
    typer.echo(secret)


@users_app.command("tokens")
@fails_cleanly
def tokens(login: Annotated[str | None, typer.Argument()] = None, as_json: Json = False) -> None:
    """List API tokens (never their secrets)."""
    found = _accounts().tokens(login)
    if as_json:
        emit_json([{**t.__dict__, "created_at": t.created_at.isoformat(),
                    "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None}
                   for t in found])  # fmt: skip
        return
    table(
        "API tokens",
        ["id", "login", "label", "created (UTC)", "revoked"],
        [[str(t.id), t.login, t.label, f"{t.created_at:%Y-%m-%d %H:%M}",
          f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "-"] for t in found],
    )  # fmt: skip


@users_app.command("revoke")
@fails_cleanly
def revoke(token_id: int, as_json: Json = False) -> None:
    """Revoke one API token by its id."""
    info = _accounts().revoke_token(token_id)
    if as_json:
        emit_json({"id": info.id, "revoked": True})
        return
    console.print(f"token {info.id} of {info.login} revoked")
