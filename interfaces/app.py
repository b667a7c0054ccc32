"""Composition root: settings → database → workflows (deadlines from settings) → runner."""

from __future__ import annotations

from dataclasses import dataclass

from engine.clock import Clock, SystemClock
from engine.db import Database
from engine.runner import Runner
from engine.settings import Settings, load_settings
from engine.workflow import WorkflowRegistry
from workflows import default_registry

__all__ = ["App", "build_app"]


@dataclass
class App:
    settings: Settings
    db: Database
    registry: WorkflowRegistry
    runner: Runner


def build_app(
    *, database_url: str | None = None, clock: Clock | None = None, check_schema: bool = True
) -> App:
    overrides = {"database_url": database_url} if database_url else {}
    settings = load_settings(**overrides)
    registry = default_registry().with_deadlines(settings.deadlines)
    db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    if check_schema:
        db.require_schema()
    return App(settings, db, registry, Runner(db, registry, clock or SystemClock()))
