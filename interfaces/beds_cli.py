"""``regul beds``: critical-care capacity per establishment, capacity reports (one line or a
CSV/XLSX file), transfer candidates and EVASAN missions (issue 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from interfaces.output import console, emit_json, fails_cleanly, table

# The engine loads when a command runs, not when ``regul`` starts (tests/test_imports.py).

__all__ = ["beds_app"]

beds_app = typer.Typer(
    help="Critical-care beds: capacity per establishment, reports, transfer candidates.",
    invoke_without_command=True,
)
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
ReadAs = Annotated[
    str | None, typer.Option("--as", help="Read as this user (limits to their scope).")
]
SHORT = {"reanimation": "réa", "surveillance_continue": "SC", "medecine_covid": "méd. Covid"}


def _cell(figures: dict[str, int] | None) -> str:
    if not figures:
        return "-"
    occupied = figures["occupied_covid"] + figures["occupied_other"]
    return f"{figures['installed']}/{figures['armed']}/{occupied}/{figures['available']}"


@beds_app.callback()
@fails_cleanly
def beds_list(
    ctx: typer.Context,
    region: Annotated[str | None, typer.Option(help="Only this region (code: OCC).")] = None,
    login: ReadAs = None,
    as_json: Json = False,
) -> None:
    """Each establishment with installed/armed/occupied/available beds per category."""
    if ctx.invoked_subcommand is not None:
        return
    from interfaces.app import build_app
    from resources.beds.core import CATEGORIES

    statuses = build_app().beds.statuses(login, region=region)
    if as_json:
        emit_json([s.to_dict() for s in statuses])
        return
    table(
        f"{len(statuses)} établissement(s) — lits installés/armés/occupés/disponibles",
        ["FINESS", "établissement", "région", "palier", "plan blanc"]
        + [SHORT[c] for c in CATEGORIES],
        [
            [s.org, s.name, s.region, s.tier, s.plan_blanc or "-"]
            + [_cell(s.beds.get(c)) for c in CATEGORIES]
            for s in statuses
        ],
    )


@beds_app.command("report")
@fails_cleanly
def beds_report(
    login: Annotated[str, typer.Option("--as", help="Login of the user reporting.")],
    file: Annotated[
        Path | None, typer.Argument(help="A CSV or XLSX file (one line per FINESS, category).")
    ] = None,
    holder: Annotated[str | None, typer.Option(help="FINESS of the establishment.")] = None,
    category: Annotated[str | None, typer.Option(help="reanimation, ...")] = None,
    installed: Annotated[int, typer.Option(help="Installed beds.")] = 0,
    armed: Annotated[int, typer.Option(help="Armed beds.")] = 0,
    covid: Annotated[int, typer.Option(help="Beds occupied by Covid patients.")] = 0,
    other: Annotated[int, typer.Option(help="Beds occupied by other patients.")] = 0,
    reserve: Annotated[int, typer.Option(help="Covid beds kept in reserve.")] = 0,
    tier: Annotated[int | None, typer.Option(help="Tier of the capacity plan.")] = None,
    plan_blanc: Annotated[int | None, typer.Option(help="Plan blanc level (0-2).")] = None,
    as_json: Json = False,
) -> None:
    """Report capacity: one establishment's category, or a whole file (all lines or none)."""
    from engine.errors import InputError
    from interfaces.app import build_app

    beds = build_app().beds
    if file is not None:
        from resources.beds.importer import read_capacity_file

        try:
            lines = read_capacity_file(file)
        except InputError as exc:
            found = exc.data.get("errors")
            for line in found if isinstance(found, list) and not as_json else []:
                console.print(str(line), markup=False)
            raise
        beds.report_many(login, lines)
        done: dict[str, Any] = {"file": str(file), "establishments": len(lines)}
    else:
        if holder is None or category is None:
            raise InputError(
                "give a file, or --holder and --category with the figures",
                why="missing_field", label="holder", field="holder",
            )  # fmt: skip
        figures = {category: {"installed": installed, "armed": armed, "occupied_covid": covid,
                              "occupied_other": other, "covid_reserve": reserve}}  # fmt: skip
        beds.report(login, holder=holder, figures=figures, tier=tier, plan_blanc=plan_blanc)
        done = {"holder": holder, "category": category}
    if as_json:
        emit_json({"reported": done})
    else:
        console.print(f"capacity reported: {done}", markup=False)


@beds_app.command("candidates")
@fails_cleanly
def beds_candidates(
    category: Annotated[str, typer.Option(help="reanimation, surveillance_continue, ...")],
    origin: Annotated[str | None, typer.Option(help="FINESS of the sending establishment.")] = None,
    means: Annotated[str | None, typer.Option(help="road, rail, air or sea.")] = None,
    login: ReadAs = None,
    as_json: Json = False,
) -> None:
    """Establishments with a free bed of the category in the resolver's scope, nearest first."""
    from interfaces.app import build_app

    found = build_app().beds.candidates(login, category=category, origin=origin, means=means)
    if as_json:
        emit_json([c.to_dict() for c in found])
        return
    table(
        f"{len(found)} établissement(s) avec un lit disponible",
        ["FINESS", "établissement", "région", "dépt", "lits libres", "distance (km)"],
        [[c.org, c.name, c.region, c.department, c.free, c.distance_km] for c in found],
    )


@beds_app.command("missions")
@fails_cleanly
def beds_missions(as_json: Json = False) -> None:
    """EVASAN missions: the transfers that share a mission id."""
    from interfaces.app import build_app

    found = build_app().beds.missions()
    if as_json:
        emit_json({m: [r.to_dict() for r in rows] for m, rows in found.items()})
        return
    table(
        f"{len(found)} mission(s) EVASAN",
        ["mission", "dossiers", "établissements d'accueil"],
        [[m, ", ".join(r.reference for r in rows),
          ", ".join(sorted({str(r.receiving) for r in rows}))] for m, rows in found.items()],
    )  # fmt: skip
