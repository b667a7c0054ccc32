"""The case engine: cases, transitions, authorization, audit, deadlines, storage and the clock.

It knows nothing of terminals or HTTP (``interfaces/`` calls it). Public entry points:
``Runner`` (commands and reads), ``Database`` (storage and migrations), ``audit`` (verify,
export, replay), and the workflow definition machinery in ``engine.workflow``.
"""

from engine.clock import Clock, FixedClock, SystemClock
from engine.db import Database
from engine.errors import RegulError
from engine.runner import Runner

__all__ = ["Clock", "Database", "FixedClock", "RegulError", "Runner", "SystemClock"]
