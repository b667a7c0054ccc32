"""Composition root: settings → database → workflows (deadlines from settings) → runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.clock import Clock, SystemClock
from engine.db import Database
from engine.errors import InputError, RegulError
from engine.runner import Runner
from engine.settings import Settings, load_settings, reminder_policy, rules
from engine.workflow import WorkflowRegistry
from notifications.rules import declares
from workflows import default_notices, default_registry

if TYPE_CHECKING:  # the scheduler loads only with the commands that run a worker
    from datetime import datetime

    from sqlalchemy.engine import Connection

    from engine.accounts import Accounts
    from engine.sweeper import SweepReport
    from engine.unit_of_work import PendingNotice
    from engine.values import CaseView, Draft, HolderNotice
    from interfaces.worker import Worker
    from notifications.outbox import Outbox
    from notifications.rules import NoticeBook
    from notifications.service import Notices
    from resources.beds.service import Beds
    from resources.service import Resources

__all__ = ["App", "LazyOutbox", "build_app", "build_worker", "closing_apps"]

_OPEN: ContextVar[list[App] | None] = ContextVar("regul_open_apps", default=None)


@dataclass
class App:
    """Everything one process serves from: settings, database, workflows and the services."""

    settings: Settings
    db: Database
    registry: WorkflowRegistry
    runner: Runner
    _accounts: Accounts | None = field(default=None, repr=False)
    _notices: Notices | None = field(default=None, repr=False)
    _resources: Resources | None = field(default=None, repr=False)

    @property
    def resources(self) -> Resources:
        """The resources service (holders' reports, balances, obligations), built once."""
        if self._resources is None:
            from resources.catalogue import obligation_kinds
            from resources.service import Resources

            self._resources = Resources(
                self.db, self.runner.clock, self.runner.uow, obligation_kinds(self.settings)
            )
        return self._resources

    @property
    def beds(self) -> Beds:
        """The critical-care capacity service (issue 13), over the resources service."""
        from resources.beds.service import Beds

        return Beds(self.resources, self.settings.beds_alert_threshold)

    @property
    def notices(self) -> Notices:
        """The notices service (list, show, retry, preview), built once."""
        if self._notices is None:
            from notifications.service import Notices

            # the case service's outbox (None: REGUL_NOTICES=false, nothing to preview)
            notifier = self.runner.notifier
            outbox = notifier.outbox if isinstance(notifier, LazyOutbox) else None
            self._notices = Notices(
                self.db, self.registry, self.runner.clock, default_notices(), outbox
            )
        return self._notices

    @property
    def accounts(self) -> Accounts:
        """The accounts service (argon2 and the session rules from the settings), built once."""
        if self._accounts is None:
            from engine.accounts import Accounts
            from engine.workflow import parse_duration

            s = self.settings
            self._accounts = Accounts(
                self.db,
                self.runner.clock,
                session_idle=parse_duration(s.session_idle),
                session_max=parse_duration(s.session_max),
                memory_kib=s.password_memory_kib,
                time_cost=s.password_time_cost,
            )
        return self._accounts


class LazyOutbox:
    """The case service's notifier: the outbox, built when a command first has a notice.

    Which events declare a notice is the workflows' notice books' to say, and a read asks
    only that: ``regul case show`` does not load the notice stack (rendering, recipients,
    Jinja2), a fifth of its start-up (bench/startup.py).
    """

    def __init__(
        self, settings: Settings, registry: WorkflowRegistry, books: dict[str, NoticeBook]
    ) -> None:
        self.settings, self.registry, self.books = settings, registry, books
        self._outbox: Outbox | None = None

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            from notifications.setup import build_outbox

            self._outbox = build_outbox(self.settings, self.registry, self.books)
        return self._outbox

    def declares(self, kind: str, event: str) -> bool:
        return declares(self.books, kind, event)

    def prepare(
        self, conn: Connection, case: CaseView, draft: Draft, seq: int, now: datetime
    ) -> PendingNotice | None:
        return self.outbox.prepare(conn, case, draft, seq, now)

    def prepare_holder(
        self,
        conn: Connection,
        holder: str,
        draft: Draft,
        seq: int,
        notice: HolderNotice,
        now: datetime,
    ) -> PendingNotice | None:
        return self.outbox.prepare_holder(conn, holder, draft, seq, notice, now)


def build_app(
    *,
    database_url: str | None = None,
    clock: Clock | None = None,
    check_schema: bool = True,
    **settings_overrides: Any,
) -> App:
    """The one composition root: settings → database → workflows → services.

    The CLI, the API and the desk (``interfaces.web``), the worker and the demo all build their
    process from here; ``settings_overrides`` replace settings (the demo's throw-away database
    runs with ``sqlite_synchronous="NORMAL"`` and notices on).
    """
    overrides = {"database_url": database_url} if database_url else {}
    settings = load_settings(**overrides, **settings_overrides)
    try:
        registry = default_registry().with_deadlines(settings.deadlines)
        if not settings.ppe_ght_step:  # the PPE ladder without its GHT rung
            registry = registry.without_states({"ppe": ("ght_review",)})
    except RegulError as exc:
        raise InputError(
            f"bad deadline setting (REGUL_DEADLINES or [deadlines] in regul.toml): {exc.message}"
        ) from None
    db = Database(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        must_exist=check_schema,  # only 'regul init' creates a database file
    )
    if check_schema:
        db.require_schema()
    notifier = LazyOutbox(settings, registry, default_notices()) if settings.notices else None
    from resources.catalogue import case_effects

    runner = Runner(
        db,
        registry,
        clock or SystemClock(),
        reminder_policy(settings),
        notifier,
        rules(settings),
        case_effects(settings),
    )
    app = App(settings, db, registry, runner)
    opened = _OPEN.get()
    if opened is not None:
        opened.append(app)
    return app


@contextmanager
def closing_apps() -> Iterator[None]:
    """Dispose of every database pool that a command opened, however the command ends."""
    opened: list[App] = []
    token = _OPEN.set(opened)
    try:
        yield
    finally:
        _OPEN.reset(token)
        for app in opened:
            app.db.dispose()


def build_worker(
    app: App,
    *,
    interval: float | None = None,
    on_sweep: Callable[[SweepReport], None] = lambda _report: None,
) -> Worker:
    """The deadline worker of ``app``, with the notice dispatch beside it when notices are on.

    ``regul worker`` and ``regul serve`` both run this one.
    """
    from interfaces.worker import Worker
    from notifications.dispatcher import dispatch
    from notifications.setup import build_channels, dispatch_policy

    jobs: dict[str, Callable[[], object]] = {}
    if app.settings.notices:
        channels, policy = build_channels(app.settings), dispatch_policy(app.settings)
        jobs["dispatch"] = lambda: dispatch(app.db, app.runner.clock, channels, policy)
    jobs["obligations"] = lambda: app.resources.sweep_obligations(
        batch_size=app.settings.sweep_batch
    )
    return Worker(
        app.runner,
        interval=interval if interval is not None else app.settings.sweep_interval,
        batch_size=app.settings.sweep_batch,
        on_sweep=on_sweep,
        jobs=jobs,
    )
