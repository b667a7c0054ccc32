"""The ``regul`` command: init, demo, workflows, case, audit, notices, users, sweep, worker, serve.

Every command has ``--json`` for scripts, a one-line error and a non-zero exit on bad input
(exit codes: 2 input, 3 not found, 4 conflict, 5 not permitted, 6 storage).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.errors import InputError
from interfaces import cli_params
from interfaces.beds_cli import beds_app
from interfaces.notices_cli import notices_app
from interfaces.output import (
    console,
    emit_json,
    fails_cleanly,
    progress,
    table,
    time_left,
)
from interfaces.ppe_cli import ppe_app
from interfaces.serial import case_json, event_json
from interfaces.serve import serve
from interfaces.users_cli import users_app

if TYPE_CHECKING:
    from engine.audit import VerifyReport
    from engine.clock import Clock
    from interfaces.app import App

__all__ = ["app", "main"]

# Start-up: declaring the commands imports no database library (``regul --help`` stays fast);
# each command imports the engine when it runs; plain options are read without pydantic
# (interfaces/cli_params.py). tests/test_imports.py pins it.
cli_params.install()

app = typer.Typer(help="Régul: the case engine for health-crisis regulation.", no_args_is_help=True)
workflows_app = typer.Typer(help="The declared workflows.", no_args_is_help=True)
case_app = typer.Typer(help="Open, advance and read cases.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify and export the audit log.", no_args_is_help=True)
app.add_typer(workflows_app, name="workflows")
app.add_typer(case_app, name="case")
app.add_typer(audit_app, name="audit")
app.add_typer(notices_app, name="notices")
app.add_typer(users_app, name="users")
app.add_typer(ppe_app, name="ppe")
app.add_typer(__import__("interfaces.ecmo_cli").ecmo_cli.ecmo_app, name="ecmo")  # issue 11
app.add_typer(beds_app, name="beds")  # issue 13: critical-care capacity
app.command("serve")(serve)

Json = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
AsUser = Annotated[str, typer.Option("--as", help="Login of the user acting.")]
ReadAs = Annotated[
    str | None, typer.Option("--as", help="Read as this user (limits to their scope).")
]
Fields = Annotated[
    list[str] | None, typer.Option("--field", help="key=value, repeatable.", show_default=False)
]
Reason = Annotated[str, typer.Option("--reason", help="Why, in a sentence (audited).")]
IdemKey = Annotated[
    str | None, typer.Option("--idempotency-key", help="Retry-safe: same key, same answer.")
]


def build_app(
    *, database_url: str | None = None, clock: Clock | None = None, check_schema: bool = True
) -> App:
    """``interfaces.app.build_app``, imported when a command runs rather than at start-up."""
    from interfaces.app import build_app as build

    return build(database_url=database_url, clock=clock, check_schema=check_schema)


def _fields(pairs: list[str] | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--field {pair!r} is not key=value, e.g. --field mode=VV")
        if key.strip() in values:
            raise InputError(f"--field {key.strip()} is given twice")
        values[key.strip()] = value
    return values


def _instant(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"{option} {text!r} is not an ISO-8601 instant, e.g. 2026-11-22T08:00Z"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@app.command()
@fails_cleanly
def init(
    demo: Annotated[bool, typer.Option("--demo", help="Load the embedded demo directory.")] = False,
    directory: Annotated[
        Path | None,
        typer.Option(
            help="Load a directory: a folder of CSV files, or one organisations CSV file "
            "(README, 'The directory')."
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Create or upgrade the schema (Alembic), optionally loading a directory.

    The directory is read and checked before anything is done: a malformed file is reported
    (file, line, column) and changes nothing, not even the schema.
    """
    from workflows.directory import read_directory, write_directory

    if demo and directory:
        raise InputError("give --demo or --directory, not both", why="init_demo_and_directory")
    rows = read_directory(directory) if (demo or directory) else None
    ctx = build_app(check_schema=False)
    before = ctx.db.migrate()
    counts = None
    if rows is not None:
        with ctx.db.write() as conn:
            counts = write_directory(conn, rows)
    result = {
        "database": ctx.db.describe(),
        "schema_before": before,
        "schema": ctx.db.revision(),
        "directory": counts.__dict__ if counts else None,
    }
    if as_json:
        emit_json(result)
        return
    state = (
        "created"
        if before is None
        else ("upgraded" if before != result["schema"] else "up to date")
    )
    console.print(f"schema {result['schema']} {state} in {result['database']}")
    if counts:
        console.print(
            f"directory: {counts.regions} regions, {counts.zones} zones, {counts.departments} "
            f"departments, {counts.organisations} organisations, {counts.users} users"
        )


@app.command()
@fails_cleanly
def demo(
    db: Annotated[Path, typer.Option(help="SQLite file to (re)create.")] = Path("regul-demo.db"),
    cases: Annotated[int, typer.Option(help="Cases per workflow.", min=1, max=2000)] = 30,
    seed: Annotated[int, typer.Option(help="Random seed of the scenario.")] = 2026,
    as_json: Json = False,
) -> None:
    """The main job: a fresh embedded database and demo cases played up their ladders."""
    from interfaces.demo import run_demo

    with progress("demo", cases * 3, quiet=as_json) as tick:
        summary = run_demo(db, cases_per_kind=cases, seed=seed, on_case=tick)
    if as_json:
        emit_json(summary.to_dict())
    else:
        summary.print(console)
    if not summary.audit_ok:
        raise typer.Exit(1)


@workflows_app.command("list")
@fails_cleanly
def workflows_list(as_json: Json = False) -> None:
    """The workflows, their ladders and deadlines."""
    from engine.workflow import format_duration

    registry = build_app(check_schema=False).registry
    rows = [
        {
            "kind": spec.kind,
            "title": spec.title,
            "prefix": spec.prefix,
            "ladder": [s.name for s in spec.states if s.waiting],
            "deadlines": {s.name: format_duration(s.deadline) for s in spec.states if s.deadline},
        }
        for spec in registry
    ]
    if as_json:
        emit_json(rows)
        return
    table(
        "Workflows",
        ["kind", "title", "ladder (deadline)"],
        [
            [r["kind"], r["title"], " → ".join(f"{s} ({r['deadlines'][s]})" for s in r["ladder"])]
            for r in rows
        ],
    )


@workflows_app.command("show")
@fails_cleanly
def workflows_show(
    kind: str,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Print the Mermaid diagram.")] = False,
    as_json: Json = False,
) -> None:
    """One workflow: states with level and deadline, transitions with roles."""
    from engine.workflow import format_duration

    spec = build_app(check_schema=False).registry[kind]
    if mermaid and not as_json:
        typer.echo(spec.mermaid())
        return
    states = [
        {
            "state": s.name,
            "label": s.label,
            "level": s.level,
            "deadline": format_duration(s.deadline) if s.deadline else None,
            "on_deadline": s.on_deadline,
            "final": s.final,
        }
        for s in spec.states
    ]
    transitions: list[dict[str, Any]] = [
        {
            "trigger": t.trigger,
            "from": t.source,
            "to": t.dest,
            "roles": list(t.roles),
            "fields": [f.name for f in t.fields],
            "any_level": t.any_level,
        }
        for t in spec.transitions
    ]
    if as_json:
        data = {
            "kind": spec.kind,
            "title": spec.title,
            "states": states,
            "transitions": transitions,
        }
        if mermaid:
            data["mermaid"] = spec.mermaid()
        emit_json(data)
        return
    table(
        f"{spec.title} ({spec.kind}): states",
        ["state", "label", "level", "deadline", "then"],
        [[s["state"], s["label"], s["level"], s["deadline"], s["on_deadline"]] for s in states],
    )
    table(
        "transitions",
        ["trigger", "from", "to", "roles", "fields"],
        [
            [t["trigger"], t["from"], t["to"], " ".join(t["roles"]), " ".join(t["fields"])]
            for t in transitions
        ],
    )
    opening = ", ".join(f.name + ("" if f.required else "?") for f in spec.open_fields)
    console.print(f"opened by {' or '.join(spec.open_roles)} with fields: {opening}")


@case_app.command("open")
@fails_cleanly
def case_open(
    kind: str,
    user: AsUser,
    org: Annotated[str, typer.Option("--org", help="FINESS of the requesting hospital.")],
    field: Fields = None,
    idempotency_key: IdemKey = None,
    as_json: Json = False,
) -> None:
    """Open a case for a hospital."""
    ctx = build_app()
    case = ctx.runner.open_case(
        kind=kind, login=user, org=org, fields=_fields(field), idempotency_key=idempotency_key
    )
    _print_case(case, ctx.runner.clock.now(), as_json)


@case_app.command("advance")
@fails_cleanly
def case_advance(
    case: str,
    trigger: str,
    user: AsUser,
    reason: Annotated[str, typer.Option("--reason", help="Why, in a sentence (audited).")],
    field: Fields = None,
    expect_version: Annotated[
        int | None, typer.Option("--expect-version", help="Refuse if the case moved on.")
    ] = None,
    idempotency_key: IdemKey = None,
    as_json: Json = False,
) -> None:
    """Fire a trigger on a case."""
    ctx = build_app()
    view = ctx.runner.advance(
        reference=case,
        trigger=trigger,
        login=user,
        reason=reason,
        data=_fields(field),
        expect_version=expect_version,
        idempotency_key=idempotency_key,
    )
    _print_case(view, ctx.runner.clock.now(), as_json)


@case_app.command("hold")
@fails_cleanly
def case_hold(
    case: str, user: AsUser, reason: Reason,
    expect_version: Annotated[int | None, typer.Option("--expect-version")] = None,
    as_json: Json = False,
) -> None:  # fmt: skip
    """Put a case on hold (awaiting information): its deadline is suspended."""
    _control(case, "hold", user, reason, None, expect_version, as_json)


@case_app.command("resume")
@fails_cleanly
def case_resume(
    case: str, user: AsUser, reason: Reason,
    expect_version: Annotated[int | None, typer.Option("--expect-version")] = None,
    as_json: Json = False,
) -> None:  # fmt: skip
    """Resume a case on hold: its level's deadline restarts in full."""
    _control(case, "resume", user, reason, None, expect_version, as_json)


@case_app.command("extend")
@fails_cleanly
def case_extend(
    case: str, user: AsUser,
    by: Annotated[str, typer.Option("--by", help="How much longer: 30m, 2h, 1d.")],
    reason: Reason,
    expect_version: Annotated[int | None, typer.Option("--expect-version")] = None,
    as_json: Json = False,
) -> None:  # fmt: skip
    """Extend the case's running deadline."""
    _control(case, "extend", user, reason, by, expect_version, as_json)


def _control(
    case: str,
    action: str,
    user: str,
    reason: str,
    by: str | None,
    version: int | None,
    as_json: bool,
) -> None:
    from engine.workflow import parse_duration

    extend_by = None
    if by is not None:
        if by.strip().startswith("-"):
            raise InputError(f"--by {by!r}: an extension must be longer than zero")
        extend_by = parse_duration(by)
    ctx = build_app()
    view = ctx.runner.control(
        reference=case, action=action, login=user, reason=reason, extend_by=extend_by,
        expect_version=version,
    )  # fmt: skip
    _print_case(view, ctx.runner.clock.now(), as_json)


@case_app.command("show")
@fails_cleanly
def case_show(case: str, user: ReadAs = None, as_json: Json = False) -> None:
    """A case with its open deadline (and the triggers the reader may fire)."""
    ctx = build_app()
    view = ctx.runner.show(case, login=user)
    now = ctx.runner.clock.now()
    allowed = ctx.runner.allowed_triggers(view, user) if user else None
    if as_json:
        data = case_json(view, now)
        if allowed is not None:
            data["allowed_triggers"] = allowed
        emit_json(data)
        return
    _print_case(view, now, False)
    if allowed is not None:
        console.print(f"{user} may fire: {', '.join(allowed) or 'nothing'}")


def _print_case(view: object, now: datetime, as_json: bool) -> None:
    from engine.cases import CaseView

    assert isinstance(view, CaseView)
    if as_json:
        emit_json(case_json(view, now))
        return
    d = view.deadline
    due = (
        f"{d.due_at:%Y-%m-%d %H:%M}Z ({time_left(d.due_at, now)} left, then {d.action})"
        if d
        else "none"
    )
    if view.on_hold:
        due = "suspended: the case is on hold"
    flags = " [bold red]INCIDENT[/]" if view.incident else ""
    console.print(
        f"[bold]{view.reference}[/]{flags} {view.kind} — state [bold]{view.state}[/] "
        f"(level {view.level or '-'}), version {view.version}\n"
        f"hospital {view.org}, region {view.region}, zone {view.zone}, GHT {view.ght or '-'}\n"
        f"deadline: {due}\nfields: {view.fields}",
        highlight=False,
    )


@case_app.command("history")
@fails_cleanly
def case_history(case: str, user: ReadAs = None, as_json: Json = False) -> None:
    """The case's audit events, in order."""
    ctx = build_app()
    view, events = ctx.runner.history(case, login=user)
    if as_json:
        emit_json({"case": view.reference, "events": [event_json(e) for e in events]})
        return
    table(
        f"{view.reference} history",
        ["seq", "at (UTC)", "actor", "role", "action", "from → to", "reason"],
        [
            [
                e.seq,
                f"{e.at:%Y-%m-%d %H:%M:%S}",
                e.actor,
                e.role,
                e.action,
                f"{e.from_state or ''} → {e.to_state or ''}",
                e.reason,
            ]
            for e in events
        ],
    )


@case_app.command("list")
@fails_cleanly
def case_list(
    kind: Annotated[str | None, typer.Option(help="ecmo, ppe or transfer.")] = None,
    state: Annotated[str | None, typer.Option(help="Only this state.")] = None,
    level: Annotated[str | None, typer.Option(help="Only cases held at this level (role).")] = None,
    region: Annotated[str | None, typer.Option(help="Region code, e.g. OCC.")] = None,
    org: Annotated[str | None, typer.Option(help="Requesting hospital (FINESS).")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only cases not closed.")] = False,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only cases past a deadline.")] = False,
    incidents: Annotated[bool, typer.Option("--incidents", help="Only open incidents.")] = False,
    user: ReadAs = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many.")] = 0,
    as_json: Json = False,
) -> None:
    """Cases, newest first, filtered."""
    from engine.cases import CaseFilter

    ctx = build_app()
    now = ctx.runner.clock.now()
    filters = CaseFilter(
        kind=kind, state=state, level=level, region=region, org=org, open_only=open_only,
        overdue_at=now if overdue else None, incidents=incidents, limit=limit, offset=offset,
    )  # fmt: skip
    views = ctx.runner.search(filters, login=user)
    if as_json:
        emit_json([case_json(v, now, facts=False) for v in views])
        return
    table(
        f"{len(views)} case(s)",
        ["case", "state", "level", "hospital", "region", "v", "time left", "flags"],
        [
            [v.reference, v.state, v.level, v.org, v.region, v.version,
             time_left(v.deadline.due_at, now) if v.deadline else "",
             " ".join(f for f, on in (("INCIDENT", v.incident), ("hold", v.on_hold)) if on)]
            for v in views
        ],
    )  # fmt: skip


AuditAs = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="Read as this auditor: checked, scoped and recorded as on the desk and the API "
        "(a regional auditor sees their region; naming a case records a read in its chain).",
    ),
]
Operator = Annotated[
    bool,
    typer.Option(
        "--operator",
        help="Read as the machine's operator, who holds the database itself: no auditor check, "
        "the whole log, and the run is recorded in the security stream (action 'operator', "
        "with the system login).",
    ),
]


def _reader(user: str | None, operator: bool) -> None:
    if (user is None) == (not operator):
        raise InputError(
            "say who reads the audit log: --as AUDITOR (checked and recorded as on the desk) "
            "or --operator (the machine's operator, recorded in the security stream)"
            if user is None
            else "--as and --operator exclude each other: give one"
        )


def _as_operator(ctx: Any, op: str, **details: Any) -> int | None:
    """Record the operator's run in the security stream; the id of the named case, if any."""
    from engine import audit
    from engine.cases import get_case

    case = details.get("case")
    with ctx.db.write() as conn:
        case_id = get_case(conn, ctx.registry, case).id if case else None
        audit.record_operator(
            conn,
            at=ctx.runner.clock.now(),
            op=op,
            details={k: v for k, v in details.items() if v is not None},
        )
    return case_id


def _checkpoint_key(ctx: Any) -> bytes:
    from engine.checkpoints import load_key

    settings = ctx.settings
    return load_key(
        key=settings.checkpoint_key.get_secret_value() or None,
        key_file=settings.checkpoint_key_file or None,
    )


@audit_app.command("verify")
@fails_cleanly
def audit_verify(
    user: AuditAs = None,
    operator: Operator = False,
    case: Annotated[str | None, typer.Option(help="Only this case.")] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Also check a signed checkpoint (regul audit checkpoint): every stream it "
            "lists must still hold its event at that sequence with that hash.",
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Check every chain and replay every case; exit 1 and name the first bad event."""
    from engine import audit, checkpoints
    from engine.cases import get_case

    _reader(user, operator)
    ctx = build_app()
    loaded = checkpoints.load(checkpoint) if checkpoint else None
    key = _checkpoint_key(ctx) if loaded else None
    with progress("verifying", None, quiet=as_json):
        if user is not None:
            report = ctx.runner.audit_verify(login=user, case=case, via="cli")
            with ctx.db.read() as conn:
                case_id = get_case(conn, ctx.registry, case).id if case else None
        else:
            case_id = _as_operator(
                ctx, "verify", case=case, checkpoint=str(checkpoint) if checkpoint else None
            )
            with ctx.db.read() as conn:
                report = audit.verify(conn, case_id=case_id, registry=ctx.registry)
        if loaded is not None and key is not None:
            with ctx.db.read() as conn:
                extra = checkpoints.check(conn, *loaded, key=key, case_id=case_id)
            report = audit.VerifyReport(report.streams, report.events, (*report.findings, *extra))
    _print_report(report, as_json)


def _print_report(report: VerifyReport, as_json: bool) -> None:
    first = report.findings[0] if report.findings else None
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "streams": report.streams,
                "events": report.events,
                "first_bad": None
                if first is None
                else {
                    "stream": first.stream,
                    "event_id": first.event_id,
                    "seq": first.seq,
                    "problem": first.problem,
                },
                "findings": len(report.findings),
            }
        )
    elif report.ok:
        console.print(f"audit OK: {report.events} event(s) in {report.streams} chain(s) verified")
    else:
        typer.echo(f"audit BROKEN: first bad event: {first}", err=True)
        for finding in report.findings[1:]:
            typer.echo(f"also: {finding}", err=True)
        typer.echo(f"{len(report.findings)} chain(s) broken of {report.streams}", err=True)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
@fails_cleanly
def audit_checkpoint(
    output: Annotated[Path, typer.Option("--output", "-o", help="The checkpoint file to write.")],
    operator: Operator = False,
    as_json: Json = False,
) -> None:
    """Sign every stream's head with the checkpoint key (run it periodically, e.g. from cron).

    Needs --operator: the key is the machine's (REGUL_CHECKPOINT_KEY_FILE), kept outside the
    database; keep the files elsewhere too. 'regul audit verify --checkpoint FILE' checks one.
    """
    from engine.checkpoints import write_checkpoint

    if not operator:
        raise InputError(
            "a checkpoint is signed with the machine's key: run it as the operator, --operator"
        )
    ctx = build_app()
    key = _checkpoint_key(ctx)
    _as_operator(ctx, "checkpoint", file=str(output))
    with ctx.db.read() as conn:
        taken = write_checkpoint(conn, key=key, now=ctx.runner.clock.now(), path=output)
    summary = {
        "file": str(output),
        "at": taken.at,
        "cases": len(taken.cases),
        "security_seq": taken.security[0],
        "max_case_id": taken.max_case_id,
    }
    if as_json:
        emit_json(summary)
        return
    console.print(
        f"checkpoint of {len(taken.cases)} case stream(s) and the security stream "
        f"(sequence {taken.security[0]}) signed to {output}",
        highlight=False,
    )


@audit_app.command("export")
@fails_cleanly
def audit_export(
    user: AuditAs = None,
    operator: Operator = False,
    case: Annotated[str | None, typer.Option(help="Only this case.")] = None,
    actor: Annotated[str | None, typer.Option("--user", help="Only this user's events.")] = None,
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation's.")] = None,
    since: Annotated[str | None, typer.Option(help="From this instant (ISO-8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this instant (ISO-8601).")] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="jsonl (byte-exact, re-verifiable), csv, or csv-fr (UTF-8 BOM and ';', for "
            "French spreadsheet software).",
        ),
    ] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Write audit events as JSON Lines or CSV, for one case or a time range."""
    from engine import audit

    if fmt not in audit.EXPORT_FORMATS:
        raise InputError(f"--format {fmt!r}: use {', '.join(audit.EXPORT_FORMATS)}")
    _reader(user, operator)
    start, end = _instant(since, "--since"), _instant(until, "--until")
    if start and end and start >= end:
        raise InputError("--since must be before --until")
    if output is not None:
        _check_output(output)  # said before anything is read or recorded
    ctx = build_app()
    filters = {"since": start, "until": end, "actor": actor, "org": org}
    if user is not None:
        rows = ctx.runner.audit_events(
            login=user, case=case, user=actor, org=org, since=start, until=end, via="cli"
        )
    else:
        shown = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items()}
        case_id = _as_operator(ctx, "export", case=case, **shown)
        rows = _operator_rows(ctx, case_id, filters)
    handle = _open_output(output) if output else sys.stdout
    try:
        with progress("exporting", None, quiet=as_json or output is None) as tick:
            count = audit.export(_ticking(rows, tick), handle, fmt=fmt)
    finally:
        if output:
            handle.close()
    if output:
        summary = {"events": count, "file": str(output), "format": fmt}
        emit_json(summary) if as_json else console.print(f"{count} events written to {output}")


def _check_output(path: Path) -> None:
    """An InputError if the -o file's folder is missing or the path is a folder."""
    if not path.parent.is_dir():
        raise InputError(f"-o {path}: the folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise InputError(f"-o {path} is a folder: give a file name, e.g. {path / 'audit.jsonl'}")


def _open_output(path: Path) -> Any:
    """The -o file, or an InputError that says why it cannot be written (nothing created)."""
    _check_output(path)
    try:
        return path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"-o {path}: cannot write it ({exc.strerror}); choose another") from None


def _operator_rows(ctx: Any, case_id: int | None, filters: dict[str, Any]) -> Iterator[Any]:
    from engine import audit

    with ctx.db.read() as conn:
        yield from audit.iter_events(conn, case_id=case_id, **filters)


def _ticking(rows: Iterator[Any], tick: Callable[[int], None]) -> Iterator[Any]:
    for row in rows:
        tick(1)
        yield row


_SWEEP_RANGE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 12, 31, 23, 59, 59, tzinfo=UTC))


@app.command()
@fails_cleanly
def sweep(
    at: Annotated[str | None, typer.Option("--at", help="Sweep as of this ISO instant.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, write nothing.")] = False,
    as_json: Json = False,
) -> None:  # fmt: skip
    """Run one deadline sweep now (or as of --at) and print what fired."""
    from engine.clock import FixedClock, SystemClock
    from engine.sweeper import sweep as run_sweep

    instant = _instant(at, "--at")
    if instant is not None and not _SWEEP_RANGE[0] <= instant <= _SWEEP_RANGE[1]:
        raise InputError(  # deadlines are computed from it: year 9999 overflows
            f"--at {at} is out of range: give an instant between "
            f"{_SWEEP_RANGE[0]:%Y-%m-%d} and {_SWEEP_RANGE[1]:%Y-%m-%d}"
        )
    if instant is not None and instant > SystemClock().now() and not dry_run:
        raise InputError(
            f"--at {at} is in the future and a sweep never fires early: add --dry-run to see "
            "what would fire then"
        )
    ctx = build_app(clock=FixedClock(instant) if instant else None)
    report = run_sweep(ctx.runner, batch_size=ctx.settings.sweep_batch, dry_run=dry_run)
    # expected reports (obligations): reminded and escalated by the same sweep
    reports = (
        [] if dry_run else ctx.resources.sweep_obligations(batch_size=ctx.settings.sweep_batch)
    )
    if as_json:
        emit_json({
            "dry_run": dry_run, "at": ctx.runner.clock.now().isoformat(),
            "counts": report.counts(), "fired": [f.to_dict() for f in report.fired],
            "reports": [r.__dict__ for r in reports],
        })  # fmt: skip
        return
    title = f"{'would fire' if dry_run else 'fired'}: {len(report.fired)} deadline(s)"
    table(
        title, ["case", "outcome", "from", "to", "due (UTC)", "late"],
        [[f.case, f.outcome, f.state, f.to_state, f"{f.due_at:%Y-%m-%d %H:%M:%S}",
          f"{f.late_s:.0f}s"] for f in report.fired],
    )  # fmt: skip
    if reports:
        table(
            f"missing reports: {len(reports)} reminded or escalated",
            ["report", "holder", "period", "outcome"],
            [[r.kind, r.holder, r.period, r.outcome] for r in reports],
        )


@app.command()
@fails_cleanly
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run every job once and exit.")] = False,
    interval: Annotated[float | None, typer.Option(help="Seconds between sweeps.")] = None,
    as_json: Json = False,
) -> None:
    """Run the deadline worker until SIGTERM (or every job once, for cron)."""
    import logging

    from engine.sweeper import SweepReport
    from interfaces.app import build_worker

    ctx = build_app()
    every = interval if interval is not None else ctx.settings.sweep_interval
    if every <= 0:
        raise InputError(f"--interval {every}: give a number of seconds above zero")
    if not as_json and not once:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        for chatty in ("transitions", "apscheduler"):  # per-event and per-tick lines
            logging.getLogger(chatty).setLevel(logging.WARNING)

    def told(report: SweepReport) -> None:
        if not once and (report.fired or report.errors):
            logging.getLogger("regul.worker").info(
                "sweep: %s, %s error(s)", report.counts(), report.errors
            )

    job = build_worker(ctx, interval=every, on_sweep=told)
    if once:
        report, others = job.run_once()
        if as_json:
            emit_json({
                "counts": report.counts(), "errors": report.errors,
                **{name: getattr(r, "counts", dict)() for name, r in others.items()},
            })  # fmt: skip
        else:
            typer.echo(_worker_line(ctx.runner.clock.now(), report, others))
        return
    job.run_forever()


def _worker_line(now: datetime, report: Any, others: dict[str, object]) -> str:
    """What one ``regul worker --once`` did, in one line."""
    fired = ", ".join(f"{n} {what}" for what, n in sorted(report.counts().items()))
    parts = [f"deadlines: {fired or 'nothing due'}, {report.errors} error(s)"]
    for name, result in others.items():
        counts: dict[str, int] = getattr(result, "counts", dict)()
        parts.append(f"{name}: " + (", ".join(f"{n} {k}" for k, n in counts.items()) or "done"))
    return f"worker --once at {now:%Y-%m-%dT%H:%M:%SZ}: " + "; ".join(parts)


def main() -> None:
    app()
