"""``regul ppe``: weekly PPE stock reports from a file, weeks of cover, deliveries, reserves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from interfaces.output import emit_json, fails_cleanly, table

# The engine and the resources load when a command runs, not when ``regul`` starts.

__all__ = ["ppe_app"]

ppe_app = typer.Typer(
    help="PPE stocks: weekly reports, weeks of cover, deliveries, reserves.", no_args_is_help=True
)
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
Region = Annotated[str | None, typer.Option("--region", help="Only this region (OCC, IDF...).")]


def _service() -> Any:
    from interfaces.app import build_app
    from resources.ppe.service import PpeService

    return PpeService(build_app())


@ppe_app.command("report")
@fails_cleanly
def ppe_report(
    file: Annotated[Path, typer.Argument(help="CSV (; or ,) or XLSX file of weekly reports.")],
    user: Annotated[str, typer.Option("--as", help="Login of the user reporting.")] = "system",
    as_json: Json = False,
) -> None:
    """Record a file of weekly reports: every line checked first, nothing written if one is
    wrong (the wrong lines are listed in French)."""
    from engine.errors import InputError
    from engine.values import SYSTEM

    try:
        content = file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}") from None
    service = _service()
    try:
        outcomes = service.import_file(SYSTEM if user == "system" else user, file.name, content)
    except InputError as exc:
        if exc.why == "ppe_file_lines" and not as_json:
            typer.echo(f"error: {exc.message}", err=True)
            typer.echo(str(exc.data.get("errors", "")), err=True)
            raise typer.Exit(exc.exit_code) from None
        raise
    reports = sum(1 for o in outcomes for e in o.ledger if e.report is not None)
    opened = sum(1 for o in outcomes if o.opened is not None)
    if as_json:
        emit_json({"reports": reports, "cases_opened": opened})
        return
    typer.echo(f"{reports} report(s) recorded, {opened} case(s) opened by the alert rule")


@ppe_app.command("cover")
@fails_cleanly
def ppe_cover(
    region: Region = None,
    below: Annotated[float | None, typer.Option(help="Only under this many weeks.")] = None,
    as_json: Json = False,
) -> None:
    """Weeks of cover per establishment and item (latest report of each)."""
    rows = _service().cover(region=region, below=below)
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    table(
        f"{len(rows)} line(s)",
        ["establishment", "name", "week", "item", "on hand", "crisis/wk", "weeks", "level"],
        [[r.establishment, r.name, r.week, r.item, r.on_hand, r.crisis,
          "—" if r.weeks is None else f"{r.weeks:.1f}{'*' if r.estimated else ''}", r.level]
         for r in rows],
    )  # fmt: skip


@ppe_app.command("deliveries")
@fails_cleanly
def ppe_deliveries(region: Region = None, as_json: Json = False) -> None:
    """The GHTs' deliveries with their origin, their totals and what awaits receipt."""
    data = _service().deliveries(region=region)
    if as_json:
        emit_json(data)
        return
    table(
        f"{len(data['deliveries'])} deliveries",
        ["GHT", "item", "origin", "quantity", "date"],
        [[d["holder"], d["item"], d.get("origin", ""), d["quantity"], d.get("at", "")]
         for d in data["deliveries"]],
    )  # fmt: skip
    typer.echo(
        f"masks delivered: {data['masks']}; awaiting receipt: {len(data['awaiting_receipt'])}"
    )


@ppe_app.command("reserve")
@fails_cleanly
def ppe_reserve(region: Region = None, as_json: Json = False) -> None:
    """The ARS reserves (balances, movements) and the national strategic stock."""
    data = _service().reserve(region=region)
    if as_json:
        emit_json(data)
        return
    table(
        "reserves",
        ["holder", "item", "bucket", "quantity"],
        [[r["holder"], r["item"], r["bucket"], r["quantity"]]
         for r in data["reserves"] + data["national"]],
    )  # fmt: skip
