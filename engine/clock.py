"""The injected clock: the only place the engine learns what time it is.

The engine and the SQL it runs take ``now`` from a ``Clock``; nothing calls
``datetime.now()`` elsewhere. Tests pass a ``FixedClock`` (or freeze ``SystemClock``
with freezegun) and move time by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FixedClock", "SystemClock", "utc"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to (tests, the demo's simulated day)."""

    def __init__(self, start: datetime) -> None:
        self._now = utc(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = utc(instant)


def utc(instant: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused, never guessed."""
    if instant.tzinfo is None:
        raise ValueError(f"naive datetime {instant!r}: give a timezone (for instance +00:00)")
    return instant.astimezone(UTC)
