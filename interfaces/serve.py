"""``regul serve``: the desk and the API under uvicorn, with the worker beside them.

One process serves HTTP and (unless ``--no-worker``) runs the deadline sweep and the notice
dispatch on a background thread. ``--demo`` first builds a fresh demo database (``regul
demo``) and gives one demo account per role a fresh password, printed at start-up.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine.errors import InputError
from interfaces.output import console, fails_cleanly

if TYPE_CHECKING:  # the engine and the scheduler load when a server starts, not with every command
    from interfaces.app import App
    from interfaces.worker import Worker

__all__ = ["DEMO_ACCOUNTS", "serve"]

# One demo account per role in Occitanie (zone Sud) and in Bretagne (zone Ouest), so that the
# scope can be tried, then the national ones (DESIGN.md, "Who uses it"). interfaces/demo.py
# leaves a case waiting for each of them (the SFCTCV referents read the ECMO ones).
DEMO_ACCOUNTS = (
    "etab-319900001",
    "ght-occ-06",
    "umac-sud",
    "ars-occ",
    "arsz-sud",
    "sfctcv-occ",
    "etab-299900001",
    "ght-bre-02",
    "umac-ouest",
    "ars-bre",
    "arsz-ouest",
    "ccs",
    "spf",
    "sfctcv",
    "auditeur",
    "auditeur-occ",
    "admin",
)


@fails_cleanly
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="Serve a fresh demo database with demo accounts.")
    ] = False,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run the deadline and notice worker.")
    ] = False,
    db: Annotated[Path, typer.Option(help="With --demo: the SQLite file to (re)create.")] = Path(
        "regul-demo.db"
    ),
    workers: Annotated[
        int,
        typer.Option(
            help="HTTP processes (PostgreSQL only; the deadline worker still runs once, here).",
            min=1,
            max=64,
        ),
    ] = 1,
) -> None:
    """Serve the web desk (/login), the JSON API (/api/v1, /openapi.json) and the worker."""
    import uvicorn

    from interfaces.app import build_app
    from interfaces.web import create_web

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for chatty in ("transitions", "apscheduler", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    url = None
    if demo:
        from interfaces.demo import run_demo

        summary = run_demo(db, cases_per_kind=10, seed=2026)
        url = f"sqlite:///{db}"
        cases = sum(sum(states.values()) for states in summary.states.values())
        console.print(f"demo database {db}: {cases} cases, audit verified: {summary.audit_ok}")
    app = build_app(database_url=url)
    if workers > 1 and app.db.dialect == "sqlite":
        raise InputError(
            "--workers above 1 needs PostgreSQL (REGUL_DATABASE_URL): SQLite has one writer"
        )
    accounts = app.accounts
    if demo:
        console.print(f"demo accounts (passwords valid for this database only), "
                      f"desk at http://{host}:{port}/login :", soft_wrap=True)  # fmt: skip
        users = {u.login: u for u in accounts.list_users()}
        for login in DEMO_ACCOUNTS:
            password = secrets.token_urlsafe(9)
            accounts.set_password(login, password)
            user = users[login]
            console.print(
                f"  {user.role:<14} {login:<16} {password:<14} {user.name}", soft_wrap=True
            )
    worker = None if no_worker else _start_worker(app)
    # uvicorn re-raises SIGTERM/SIGINT once it has shut down; with these no-op handlers in
    # place that re-raise returns here, so the worker finishes its batch and we exit 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: None)
    try:
        if workers > 1:  # each process builds its own app from the same settings
            _run_workers(host, port, workers)
        else:
            web = create_web(app, accounts)
            uvicorn.run(web, host=host, port=port, log_level="info", access_log=False)
    except OSError as exc:  # the port is taken, or the address is not ours
        raise InputError(f"cannot listen on {host}:{port}: {exc}; pick another --port") from None
    finally:
        if worker is not None:
            worker[0].stop()
            worker[1].join(timeout=30)


def _run_workers(host: str, port: int, workers: int) -> None:
    """What ``uvicorn.run(..., workers=N)`` does, with a listening socket that says it is TCP.

    uvicorn binds ``socket.socket(AF_INET)``, whose ``proto`` is 0; asyncio then skips
    TCP_NODELAY on the accepted connections (it checks ``proto == IPPROTO_TCP``), and every
    keep-alive answer waited ~40 ms for a delayed ACK (bench/api.py: 44 ms per request with 2
    workers, 2 ms with 1). The same descriptor, re-wrapped with ``IPPROTO_TCP``, fixes it.
    """
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "interfaces.web:from_environment", factory=True, workers=workers,
        host=host, port=port, log_level="info", access_log=False,
    )  # fmt: skip
    bound = config.bind_socket()
    sock = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
    sock.set_inheritable(True)
    Multiprocess(config, sockets=[sock]).run()


def _start_worker(app: App) -> tuple[Worker, threading.Thread]:
    from interfaces.app import build_worker

    job = build_worker(app)
    thread = threading.Thread(
        target=job.run_forever, kwargs={"install_signals": False}, name="regul-worker", daemon=True
    )
    thread.start()
    return job, thread
