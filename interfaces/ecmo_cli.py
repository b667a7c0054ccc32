"""``regul ecmo``: the ECMO fleet (consoles, circuits), its weekly inventories and its loans."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from interfaces.output import emit_json, fails_cleanly, table

if TYPE_CHECKING:
    from engine.values import Actor
    from resources.ecmo import Fleet

# The engine and the resources load when a command runs, not when ``regul`` starts.

__all__ = ["ecmo_app"]

ecmo_app = typer.Typer(
    help="ECMO fleet: consoles, circuits, weekly inventories, loans.", no_args_is_help=True
)
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
AsUser = Annotated[str, typer.Option("--as", help="Login of the user acting.")]
ReadAs = Annotated[
    str | None, typer.Option("--as", help="Read as this user (limits to their scope).")
]


def fleet() -> Fleet:
    from interfaces.app import build_app
    from resources.ecmo import Fleet

    return Fleet(build_app().resources)


def reader(f: Fleet, login: str | None) -> Actor:
    """The user reading, or the operator at the console (who sees the whole fleet)."""
    from engine.values import Actor

    if login:
        return f.actor(login)
    return Actor("operator", "Exploitant", "auditor", "REGUL", "system", None, None, None)


@ecmo_app.command("consoles")
@fails_cleanly
def consoles(
    region: Annotated[str | None, typer.Option(help="Only this region (OCC, IDF...).")] = None,
    available: Annotated[bool, typer.Option("--available", help="Available ones only.")] = False,
    login: ReadAs = None,
    as_json: Json = False,
) -> None:
    """The consoles of the fleet (your scope with --as): status, where, last inventory."""
    f = fleet()
    rows = f.consoles(reader(f, login), region=region, available_only=available)
    if as_json:
        emit_json(rows)
        return
    table(
        f"{len(rows)} console(s)",
        ["serial", "model", "owner", "region", "status", "holder", "case", "last report"],
        [[r["serial"], r["model"], r["owner_name"], r["region"] or "national", r["status_fr"],
          r["holder"], r["case"] or "", r["last_report"] or ""] for r in rows],
    )  # fmt: skip


@ecmo_app.command("register")
@fails_cleanly
def register(
    serial: str,
    model: Annotated[str, typer.Option(help="The console's model.")],
    owner: Annotated[str, typer.Option(help="FINESS of its establishment, or CCS (national).")],
    login: AsUser,
) -> None:
    """A console enters the fleet, available at its owner."""
    fleet().register(login, serial=serial, model=model, owner=owner)
    typer.echo(f"console {serial} registered at {owner}")


@ecmo_app.command("status")
@fails_cleanly
def status(
    serial: str,
    new: Annotated[str, typer.Argument(help="available, in_use or maintenance.")],
    login: AsUser,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
) -> None:
    """The owner sets a console available, in use (its own patients) or in maintenance."""
    was = fleet().set_status(login, serial=serial, status=new, reason=reason)
    typer.echo(f"console {serial}: {was} -> {new}")


@ecmo_app.command("circuits")
@fails_cleanly
def circuits(
    holder: str,
    quantity: Annotated[int, typer.Argument(help="Received (10) or written off (-2).")],
    login: AsUser,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
) -> None:
    """Circuits received or written off by an establishment (or the national stock)."""
    fleet().circuits(login, holder=holder, quantity=quantity, reason=reason)
    typer.echo(f"{holder}: {quantity:+d} circuit(s)")


def _print_report(done: dict[str, Any]) -> None:
    figures = done["figures"]
    typer.echo(f"{done['name']} ({done['holder']}), {done['period']}: " + ", ".join(
        f"{k}={v}" for k, v in figures.items()))  # fmt: skip
    for d in done["differences"]:
        typer.echo(f"  differs from the ledger: {d['label']}: reported {d['reported']}, "
                   f"ledger {d['ledger']}")  # fmt: skip


@ecmo_app.command("report")
@fails_cleanly
def report(
    login: AsUser,
    file: Annotated[
        Path | None, typer.Option("--file", help="CSV or XLSX of inventories (all or none).")
    ] = None,
    holder: Annotated[str | None, typer.Option(help="FINESS (or CCS).")] = None,
    week: Annotated[str | None, typer.Option(help="ISO week, e.g. 2026-W49.")] = None,
    available: Annotated[int, typer.Option(help="Consoles available.")] = 0,
    reserved: Annotated[int, typer.Option(help="Consoles reserved.")] = 0,
    in_use: Annotated[int, typer.Option(help="Consoles in use.")] = 0,
    lent: Annotated[int, typer.Option(help="Consoles lent (or in transit).")] = 0,
    maintenance: Annotated[int, typer.Option(help="Consoles in maintenance.")] = 0,
    circuits: Annotated[int, typer.Option(help="Circuits available.")] = 0,
    as_json: Json = False,
) -> None:
    """One weekly inventory (a correction is a new version), or a file of them; says where
    each differs from the ledger."""
    from engine.errors import InputError

    f = fleet()
    if file is not None:
        from resources.ecmo_import import import_file

        done = import_file(f, login, file)
    else:
        if not holder or not week:
            raise InputError("give --holder and --week, or --file", why="missing_field",
                             label="--holder/--week")  # fmt: skip
        figures = {"available": available, "reserved": reserved, "in_use": in_use, "lent": lent,
                   "maintenance": maintenance, "circuits": circuits}  # fmt: skip
        done = [f.report(login, holder=holder, period=week, figures=figures)]
    if as_json:
        emit_json(done)
        return
    for d in done:
        _print_report(d)
    typer.echo(f"{len(done)} inventory report(s) recorded")


@ecmo_app.command("reports")
@fails_cleanly
def reports(
    holder: str,
    week: Annotated[str | None, typer.Option(help="Only this ISO week.")] = None,
    login: ReadAs = None,
    as_json: Json = False,
) -> None:
    """Every version of an establishment's weekly inventories, newest first."""
    f = fleet()
    rows = f.reports(reader(f, login), holder=holder, period=week)
    if as_json:
        emit_json(rows)
        return
    table(
        f"{len(rows)} version(s)",
        ["week", "version", "at", "by", "figures", "differences"],
        [[r["period"], r["version"], r["at"], r["actor"],
          " ".join(f"{k}={v}" for k, v in r["figures"].items()),
          "; ".join(f"{d['figure']} {d['reported']}≠{d['ledger']}" for d in r["differences"])]
         for r in rows],
    )  # fmt: skip


@ecmo_app.command("loans")
@fails_cleanly
def loans(
    overdue: Annotated[bool, typer.Option("--overdue", help="Only the overdue ones.")] = False,
    login: ReadAs = None,
    as_json: Json = False,
) -> None:
    """The consoles out on loan: borrower, lender, return date, overdue or not."""
    f = fleet()
    rows = f.loans(reader(f, login), overdue=overdue)
    if as_json:
        emit_json(rows)
        return
    table(
        f"{len(rows)} loan(s)",
        ["case", "state", "borrower", "lender", "consoles", "circuits", "return by", "overdue"],
        [[r["case"], r["state"], r["borrower_name"], r["lender_name"], " ".join(r["consoles"]),
          r["circuits"], r["return_by"] or "", "yes" if r["overdue"] else ""] for r in rows],
    )  # fmt: skip


@ecmo_app.command("missing")
@fails_cleanly
def missing(
    week: Annotated[str | None, typer.Option(help="Only this ISO week.")] = None,
    region: Annotated[str | None, typer.Option(help="Only this region.")] = None,
    as_json: Json = False,
) -> None:
    """Weekly inventories due and not received (reminded, or escalated to the ARS)."""
    from interfaces.app import build_app
    from resources.ecmo import INVENTORY

    rows = build_app().resources.missing(INVENTORY, period=week, region=region)
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    table(
        f"{len(rows)} missing inventory report(s)",
        ["holder", "name", "region", "week", "due", "status"],
        [[r.holder, r.name, r.region or "", r.period, r.due_at.isoformat(), r.status]
         for r in rows],
    )  # fmt: skip
