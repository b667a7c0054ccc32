"""Periods of reports: ISO weeks (``2026-W49``) and days (``2026-12-02``), in Paris time.

A period is named by a string; its due time is a weekday and a time of day in Paris (a weekly
report due Monday 12:00 of the week it is about), or a time of day (a daily snapshot at 14:00).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.errors import InputError

__all__ = ["PARIS", "Due", "day_of", "parse_period", "period_start", "week_of"]

PARIS = ZoneInfo("Europe/Paris")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


def week_of(instant: datetime) -> str:
    """The ISO week (Paris time) that ``instant`` falls in: ``2026-W49``."""
    year, week, _ = instant.astimezone(PARIS).isocalendar()
    return f"{year}-W{week:02d}"


def day_of(instant: datetime) -> str:
    return instant.astimezone(PARIS).date().isoformat()


def parse_period(text: str, *, kind: str = "week") -> str:
    """A period as typed (``2026-W49``, ``2026-w9``, ``2026-12-02``), checked and normalised."""
    raw = str(text).strip().upper()
    if kind == "week":
        m = re.match(r"^(\d{4})-?W(\d{1,2})$", raw)
        if m:
            year, week = int(m.group(1)), int(m.group(2))
            try:
                date.fromisocalendar(year, week, 1)
            except ValueError:
                pass
            else:
                return f"{year}-W{week:02d}"
        raise InputError(
            f"period {text!r} is not an ISO week: write it as 2026-W49 (year, W, week 01-53)",
            why="bad_period", period=str(text), expected="2026-W49",
        )  # fmt: skip
    if _DAY.match(raw):
        try:
            return date.fromisoformat(raw).isoformat()
        except ValueError:
            pass
    raise InputError(
        f"period {text!r} is not a day: write it as 2026-12-02",
        why="bad_period", period=str(text), expected="2026-12-02",
    )  # fmt: skip


def period_start(period: str) -> date:
    m = _WEEK.match(period)
    if m:
        return date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    return date.fromisoformat(period)


@dataclass(frozen=True)
class Due:
    """When a period's report is due: ``weekday`` (0 Monday, weekly reports) and ``at``."""

    at: time
    weekday: int | None = None  # None: a daily report, due the same day

    @classmethod
    def parse(cls, text: str, *, weekly: bool) -> Due:
        """``"monday 12:00"`` / ``"lundi 12:00"`` for a weekly report, ``"14:00"`` for a daily."""
        words = str(text).strip().lower().split()
        try:
            hh, mm = (int(p) for p in words[-1].split(":"))
            at = time(hh, mm)
        except (ValueError, IndexError):
            at = None
        english = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        weekday = None
        if weekly and len(words) == 2:
            name = words[0]
            weekday = (english.index(name) if name in english
                       else WEEKDAYS.index(name) if name in WEEKDAYS else None)  # fmt: skip
        if at is None or (weekly and weekday is None) or (not weekly and len(words) != 1):
            example = "monday 12:00" if weekly else "14:00"
            raise InputError(
                f"due time {text!r} is not understood: write it as {example!r} (Paris time)",
                why="bad_due", due=str(text), expected=example,
            )  # fmt: skip
        return cls(at, weekday)

    def due_at(self, period: str) -> datetime:
        """The instant (UTC) a report for ``period`` is due."""
        start = period_start(period)
        day = start + timedelta(days=self.weekday or 0) if self.weekday is not None else start
        return datetime.combine(day, self.at, tzinfo=PARIS).astimezone(UTC)

    def current(self, now: datetime) -> str:
        """The period ``now`` falls in: its report is expected from the period's start."""
        return week_of(now) if self.weekday is not None else day_of(now)

    def french(self) -> str:
        when = f"{self.at.hour:02d} h {self.at.minute:02d}"
        if self.weekday is None:
            return f"chaque jour à {when}"
        return f"le {WEEKDAYS[self.weekday]} à {when}"
