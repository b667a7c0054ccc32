"""Turning engine views into terminal tables or JSON, and errors into one line and an exit code.

Light to import (the command modules import it to declare their commands, and ``regul --help``
imports them all): the engine, the composition root and rich's tables and progress bars load
when a command first needs them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from engine.errors import RegulError

if TYPE_CHECKING:
    pass

__all__ = ["emit_json", "fails_cleanly", "progress", "table"]

P = ParamSpec("P")
R = TypeVar("R")
console = Console()
err_console = Console(stderr=True)


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def fails_cleanly(func: Callable[P, R]) -> Callable[P, R]:
    """Print a RegulError as one line (JSON when --json) and exit with its code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from interfaces.app import closing_apps

        try:
            with closing_apps():
                return func(*args, **kwargs)
        except RegulError as exc:
            if kwargs.get("as_json"):
                emit_json({"error": exc.code, "message": exc.message})
            else:
                typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def time_left(due: datetime, now: datetime) -> str:
    seconds = int((due - now).total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{sign}{hours}h{rest // 60:02d}"


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    console.print(out)


@contextmanager
def progress(label: str, total: int | None, *, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; nothing when quiet (--json) or not a terminal."""
    if quiet or not sys.stderr.isatty():
        yield lambda _n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
