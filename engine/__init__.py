"""The case engine: cases, decisions, the unit of work, authorization, audit, deadlines, clock.

It knows nothing of terminals or HTTP (``interfaces/`` calls it). Public entry points:
``Runner`` (the case service), ``Database`` (storage and migrations), ``audit`` (verify,
export, replay), and the workflow definition machinery in ``engine.workflow``. They are
imported lazily, so that ``import engine.errors`` (or the pure ``engine.decisions``) loads no
database library.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["Clock", "Database", "FixedClock", "RegulError", "Runner", "SystemClock"]

_HOMES = {
    "Clock": "engine.clock",
    "FixedClock": "engine.clock",
    "SystemClock": "engine.clock",
    "Database": "engine.db",
    "RegulError": "engine.errors",
    "Runner": "engine.runner",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
