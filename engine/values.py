"""The engine's values: cases, actors, commands, deadline plans and outcomes, without SQL.

Everything the pure decisions (``engine.decisions``) take and return lives here, so that they
and their tests import no database library: a case (``CaseView``), the actor and their scope,
a command, an audit event before it is chained (``Draft``), a deadline plan, a claimed deadline
row, and the ``Outcome`` of a command that ``engine.unit_of_work`` applies in one transaction.
Imports only the standard library, ``engine.errors`` and ``engine.vocab``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.errors import InputError, RegulError
from engine.vocab import DeadlineStatus, Role, ScopeKind, SweepOutcome

__all__ = [
    "NO_CHANGE",
    "READ_KINDS",
    "SYSTEM",
    "Actor",
    "CaseView",
    "Command",
    "DeadlineChange",
    "DeadlinePlan",
    "DeadlineRow",
    "Draft",
    "HolderNotice",
    "LedgerEntry",
    "Leg",
    "ObligationChange",
    "ObligationPlan",
    "ObligationRow",
    "OpenDeadline",
    "Outcome",
    "Place",
    "ReminderPolicy",
    "ReportDraft",
    "Scope",
    "reference_of",
]


@dataclass(frozen=True)
class Draft:
    """An audit event before it is chained: what a pure decision produces."""

    actor: str
    role: str
    org: str
    action: str
    from_state: str | None
    to_state: str | None
    version: int
    reason: str
    data: dict[str, Any]


@dataclass(frozen=True)
class OpenDeadline:
    state: str
    due_at: datetime
    action: str


def reference_of(prefix: str, case_id: int) -> str:
    return f"{prefix}-{case_id:06d}"


@dataclass(frozen=True)
class CaseView:
    """A case as one command or read sees it; nothing per case outlives the call."""

    id: int
    reference: str
    kind: str
    state: str
    level: str | None
    final: bool
    version: int
    org: str
    region: str
    zone: str
    department: str
    ght: str | None
    fields: dict[str, Any]
    opened_by: str
    opened_at: datetime
    updated_at: datetime
    audit_seq: int
    audit_hash: str
    incident: bool = False
    on_hold: bool = False
    deadline: OpenDeadline | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("opened_at", "updated_at"):
            data[key] = data[key].isoformat()
        if self.deadline:
            data["deadline"]["due_at"] = self.deadline.due_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseView:
        values = dict(data)
        for key in ("opened_at", "updated_at"):
            values[key] = datetime.fromisoformat(values[key])
        if values.get("deadline"):
            d = values["deadline"]
            values["deadline"] = OpenDeadline(
                d["state"], datetime.fromisoformat(d["due_at"]), d["action"]
            )
        return cls(**values)


@dataclass(frozen=True)
class Place:
    """A hospital's place in the directory (the policy's scope test before a case exists)."""

    org: str
    region: str | None
    zone: str | None
    ght: str | None
    department: str | None = None
    kind: str = "hospital"
    land: str | None = None  # the land mass of its region (engine.policy.land_of), when read
    delivery_address: str | None = None  # its own, else its GHT's, when the directory has one
    category: str | None = None  # sanitaire, ehpad, medico_social (an establishment's), if read


@dataclass(frozen=True)
class Scope:
    """What part of the country an actor may see: a kind and a code (or national)."""

    kind: ScopeKind
    code: str | None = None

    def __str__(self) -> str:
        return "national" if self.kind == ScopeKind.NATIONAL else f"{self.kind} {self.code}"


@dataclass(frozen=True)
class Actor:
    login: str
    name: str
    role: str
    org: str
    org_kind: str
    region: str | None
    zone: str | None
    ght: str | None

    @property
    def scope(self) -> Scope:
        if self.role == Role.ESTABLISHMENT:
            return Scope(ScopeKind.HOSPITAL, self.org)
        if self.role == Role.GHT:
            return Scope(ScopeKind.GHT, self.ght)
        if self.role in {Role.UMAC, Role.ARS_ZONE}:
            return Scope(ScopeKind.ZONE, self.zone)
        if self.role == Role.ARS or (self.role == Role.AUDITOR and self.org_kind == "ars"):
            return Scope(ScopeKind.REGION, self.region)
        if self.role == Role.SFCTCV and self.region:  # a regional referent; else the national
            return Scope(ScopeKind.REGION, self.region)
        return Scope(ScopeKind.NATIONAL)

    @property
    def kinds(self) -> frozenset[str] | None:
        """The workflows whose cases this actor may read at all (None: every workflow)."""
        return READ_KINDS.get(self.role)


# Roles that read the cases of some workflows only: the SFCTCV referent advises on ECMO.
READ_KINDS: dict[str, frozenset[str]] = {Role.SFCTCV: frozenset({"ecmo"})}


SYSTEM = Actor(
    login="system",
    name="Échéancier Régul",
    role=Role.SYSTEM,
    org="REGUL",
    org_kind="system",
    region=None,
    zone=None,
    ght=None,
)


@dataclass(frozen=True)
class Command:
    """A person's trigger on a case (the sweeper's too, as ``system``)."""

    trigger: str
    reason: str
    data: Mapping[str, object]
    expect_version: int | None = None
    context: Mapping[str, object] | None = None  # extra audit data (the sweeper's lateness)


@dataclass(frozen=True)
class ReminderPolicy:
    """When reminders fall: fractions of a deadline before it passes, periods after."""

    fractions: tuple[float, ...] = (0.5, 0.8)
    incident_period: timedelta = timedelta(hours=1)
    overdue_period: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if any(not 0 < f < 1 for f in self.fractions) or list(self.fractions) != sorted(
            set(self.fractions)
        ):
            raise InputError(
                f"reminder fractions {list(self.fractions)} must be increasing, between 0 and 1"
            )
        for name in ("incident_period", "overdue_period"):
            if getattr(self, name) <= timedelta(0):
                raise InputError(f"{name} must be longer than zero")

    def next_look(self, start: datetime, due: datetime, done: int) -> datetime:
        """The next reminder's instant after ``done`` reminders, else the due time."""
        if done < len(self.fractions) and due > start:
            return start + (due - start) * self.fractions[done]
        return due

    def passed(self, start: datetime, due: datetime, now: datetime) -> int:
        """How many reminder fractions of the span ``start``→``due`` have passed at ``now``."""
        return sum(1 for f in self.fractions if start + (due - start) * f <= now)


@dataclass(frozen=True)
class DeadlinePlan:
    """A deadline row to open: its state and version, due time, action, next look."""

    state: str
    version: int
    due_at: datetime
    action: str
    next_at: datetime
    reminders: int = 0
    start: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DeadlineRow:
    """An open deadline row as the sweep claimed it (or as a control reads it)."""

    id: int
    state: str
    version: int
    due_at: datetime
    next_at: datetime
    reminders: int
    action: str
    created_at: datetime


@dataclass(frozen=True)
class DeadlineChange:
    """What a command does to the case's deadline rows, in this order.

    ``close``: the case's open row leaves ``open`` with this status; ``touch``: the open row
    ``(id, reminders, next_at)`` stays open with its next look moved (a reminder); ``open``: a
    new row is opened.
    """

    close: DeadlineStatus | None = None
    open: DeadlinePlan | None = None
    touch: tuple[int, int, datetime] | None = None


NO_CHANGE = DeadlineChange()


# -- resources: ledgers, reports, obligations (the ``resources`` package decides them) --------


@dataclass(frozen=True)
class Leg:
    """One leg of a movement: ``delta`` units of ``item`` into (or out of) ``bucket`` of the
    entry's holder (``available``, ``reserved``, ``on_hand``, ``in_transit``...)."""

    item: str
    bucket: str
    delta: int


@dataclass(frozen=True)
class ReportDraft:
    """A period report to store as the next version of (kind, holder, period)."""

    kind: str
    period: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class HolderNotice:
    """A notice about a holder (a missing report, an alert), not about a case.

    ``action``/``info`` are recipient tokens of ``notifications.recipients`` (``holder``,
    ``holder_ars``, ``ccs``, ``spf``, ``sfctcv``, ``referent``, or an organisation id);
    ``values`` the notice's own facts, already in French; an automatic notice is issued for
    ``issuer`` (the ARS that expects a report, the CCS for the national stock).
    """

    kind: str
    action: tuple[str, ...]
    info: tuple[str, ...] = ()
    values: Mapping[str, Any] = field(default_factory=dict)
    issuer: str = "ars"  # a token too: for whom an automatic notice is issued


@dataclass(frozen=True)
class LedgerEntry:
    """An event in a holder's audit stream (``holder:<org id>``) and what it moves.

    ``legs`` change the holder's balances (never below zero: the database refuses it) and are
    recorded in the event's data; ``report`` is stored as a new version and its id and version
    put in the event; ``meets`` closes the holder's open obligation (kind, period) with it;
    ``notice`` queues a notice issued about the holder.
    """

    holder: str
    draft: Draft
    legs: tuple[Leg, ...] = ()
    report: ReportDraft | None = None
    meets: tuple[str, str] | None = None
    notice: HolderNotice | None = None


@dataclass(frozen=True)
class ObligationPlan:
    """A report expected of ``holder`` for ``period``, due at ``due_at`` (opened if new)."""

    kind: str
    holder: str
    period: str
    due_at: datetime


@dataclass(frozen=True)
class ObligationRow:
    """An open obligation as the sweep claimed it."""

    id: int
    kind: str
    holder: str
    period: str
    due_at: datetime
    next_at: datetime
    reminders: int
    escalated: bool
    status: str


@dataclass(frozen=True)
class ObligationChange:
    """A swept obligation's row after the sweep: its reminders, next look and status."""

    id: int
    reminders: int
    next_at: datetime
    escalated: bool
    status: str


@dataclass(frozen=True)
class Outcome:
    """Everything one command changes, decided purely; ``engine.unit_of_work`` applies it.

    ``case`` is the case after the command (its audit head filled in when applied); ``events``
    are appended to its chain in order and ``notices`` name those of them that queue a notice;
    ``values`` are the case columns that change besides its head; ``security`` events go to the
    stream of refusals that concern no case; ``opened`` is the row of a case to insert first;
    ``refusal`` is raised once the outcome (its audit record) is committed; ``sweep`` says what
    the sweep did. ``ledger`` entries go to holders' streams with their movements, reports and
    notices; ``obligations`` open expected reports, ``touched`` moves swept ones on. A stale
    view or a malformed command raises before any outcome exists.
    """

    case: CaseView | None
    events: tuple[Draft, ...] = ()
    values: Mapping[str, Any] = field(default_factory=dict)
    deadline: DeadlineChange = NO_CHANGE
    notices: tuple[int, ...] = ()
    security: tuple[Draft, ...] = ()
    opened: Mapping[str, Any] | None = None
    refusal: RegulError | None = None
    sweep: SweepOutcome | None = None
    ledger: tuple[LedgerEntry, ...] = ()
    obligations: tuple[ObligationPlan, ...] = ()
    touched: tuple[ObligationChange, ...] = ()
