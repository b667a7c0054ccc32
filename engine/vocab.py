"""The engine's vocabularies as enums: audit actions, roles, scopes, deadline statuses, outcomes.

Each is a ``StrEnum``: a member *is* its string, so rows, canonical audit bytes and JSON stay
exactly what they were, while the code names every value once. French labels for them are
declared beside the workflows (``workflows.labels``), not here: wording is not the engine's job.
Imports nothing.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "REGULATORS",
    "Action",
    "Control",
    "DeadlineStatus",
    "Role",
    "ScopeKind",
    "SweepOutcome",
]


class Action(StrEnum):
    """What an audit event records."""

    OPENED = "opened"
    TRANSITION = "transition"
    REFUSED = "refused"
    READ = "read"
    HOLD = "hold"
    RESUME = "resume"
    EXTEND = "extend"
    REMINDER = "reminder"
    INCIDENT = "incident"
    OVERDUE = "overdue"
    DEADLINE_NOOP = "deadline_noop"
    PROBE = "probe"  # a person's request about a case that does not exist (security stream)


class Control(StrEnum):
    """A regulator's manual control of a case's deadline."""

    HOLD = "hold"
    RESUME = "resume"
    EXTEND = "extend"


class Role(StrEnum):
    ESTABLISHMENT = "establishment"
    GHT = "ght"
    UMAC = "umac"
    ARS = "ars"
    ARS_ZONE = "ars_zone"
    CCS = "ccs"
    SPF = "spf"
    SFCTCV = "sfctcv"  # the ECMO referent: regional (one per region) or national
    AUDITOR = "auditor"
    ADMIN = "admin"
    SYSTEM = "system"


# SpF regulates the national rung of the PPE ladder (MINSANTE N°143), as the CCS does the others.
REGULATORS: tuple[Role, ...] = (
    Role.GHT, Role.UMAC, Role.ARS, Role.ARS_ZONE, Role.CCS, Role.SPF,
)  # fmt: skip


class ScopeKind(StrEnum):
    HOSPITAL = "hospital"
    GHT = "ght"
    ZONE = "zone"
    REGION = "region"
    NATIONAL = "national"


class DeadlineStatus(StrEnum):
    """A deadline row's status: ``open`` until the transaction that handles it."""

    OPEN = "open"
    FIRED = "fired"
    SUPERSEDED = "superseded"
    HELD = "held"
    NOOP = "noop"


class SweepOutcome(StrEnum):
    """What the sweep did with one due row."""

    ESCALATED = "escalated"
    REMINDER = "reminder"
    INCIDENT = "incident"
    OVERDUE = "overdue"
    REPEAT = "repeat"
    RESUMED = "resumed"  # a hold past its maximum: the deadline resumed by itself
    NOOP = "noop"
