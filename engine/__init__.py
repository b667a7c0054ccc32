"""The case engine: cases, transitions, authorization, audit, deadlines, storage and the clock.

It knows nothing of terminals or HTTP (``interfaces/`` calls it). Public entry points:
``Runner`` (commands and reads), ``Database`` (storage and migrations), ``audit`` (verify,
export, replay), and the workflow definition machinery in ``engine.workflow``.

The names below load on first use (module ``__getattr__``): importing a light submodule such as
``engine.errors`` or ``engine.clock`` must not drag in SQLAlchemy, SQLModel or transitions.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.clock import Clock, FixedClock, SystemClock
    from engine.db import Database
    from engine.errors import RegulError
    from engine.runner import Runner

__all__ = ["Clock", "Database", "FixedClock", "RegulError", "Runner", "SystemClock"]

_HOME = {
    "Clock": "engine.clock",
    "FixedClock": "engine.clock",
    "SystemClock": "engine.clock",
    "Database": "engine.db",
    "RegulError": "engine.errors",
    "Runner": "engine.runner",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
