"""``regul notices``: list, show, retry and preview MARS/MINSANTE notices."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from interfaces.output import console, emit_json, fails_cleanly, table

# The engine and the notice modules load when a command runs, not when ``regul`` starts.

__all__ = ["notices_app"]

notices_app = typer.Typer(help="Notices (MARS, MINSANTE) and their delivery.", no_args_is_help=True)
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _summary(row: Any) -> dict[str, Any]:
    return {
        "reference": row.reference,
        "kind": row.kind,
        "case_id": row.case_id,
        "status": row.status,
        "channel": row.channel,
        "attempts": row.attempts,
        "subject": row.subject,
        "message_id": row.message_id,
        "created_at": row.created_at.isoformat(),
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        "last_error": row.last_error,
        "recipients": row.recipients,
    }


@notices_app.command("list")
@fails_cleanly
def notices_list(
    case: Annotated[str | None, typer.Option(help="Only this case's notices.")] = None,
    status: Annotated[str | None, typer.Option(help="queued, sent or failed.")] = None,
    series: Annotated[str | None, typer.Option(help="MARS or MINSANTE.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: Json = False,
) -> None:
    """Notices, newest first, with their delivery state."""
    from interfaces.app import build_app

    rows = build_app().notices.search(case=case, status=status, series=series, limit=limit)
    if as_json:
        emit_json([_summary(r) for r in rows])
        return
    table(
        f"{len(rows)} notice(s)",
        ["reference", "kind", "status", "tries", "channel", "subject"],
        [[r.reference, r.kind, r.status, r.attempts, r.channel, r.subject] for r in rows],
    )


@notices_app.command("show")
@fails_cleanly
def notices_show(
    reference: str,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML version.")] = False,
    as_json: Json = False,
) -> None:
    """One notice as sent (text or HTML), with its delivery attempts."""
    from interfaces.app import build_app

    row, attempts = build_app().notices.show(reference)
    if as_json:
        data = _summary(row) | {"text": row.body_text, "html": row.body_html}
        data["attempts_log"] = [
            {"at": a.at.isoformat(), "channel": a.channel, "ok": a.ok, "error": a.error}
            for a in attempts
        ]
        emit_json(data)
        return
    typer.echo(row.body_html if html else row.body_text)
    for a in attempts:
        console.print(f"attempt {a.at:%Y-%m-%d %H:%M:%S}Z {a.channel}: {'ok' if a.ok else a.error}")


@notices_app.command("retry")
@fails_cleanly
def notices_retry(reference: str, as_json: Json = False) -> None:
    """Queue a failed notice again."""
    from interfaces.app import build_app

    row = build_app().notices.retry(reference)
    if as_json:
        emit_json(_summary(row))
    else:
        console.print(f"{row.reference} queued again; the next dispatch delivers it")


@notices_app.command("preview")
@fails_cleanly
def notices_preview(
    kind: str,
    case: Annotated[str, typer.Option("--case", help="Render for this case.")],
    html: Annotated[bool, typer.Option("--html", help="Print the HTML version.")] = False,
    as_json: Json = False,
) -> None:
    """Render a notice kind for a case without queuing anything."""
    from interfaces.app import build_app

    preview = build_app().notices.preview(kind, case)
    rendered, action, info = preview.rendered, preview.action, preview.info
    if as_json:
        emit_json({"subject": rendered.subject, "text": rendered.text, "html": rendered.html,
                   "pour_action": action, "pour_information": info})  # fmt: skip
        return
    typer.echo(rendered.html if html else rendered.text)
