"""What the desk's queue, case timeline and auditor's page show, computed from engine values.

Pure functions (no database, no HTTP): durations in days and hours, the queue's filters read
from the query string and their counts, a timeline's repeated reads folded into one line, and
an audit event described in French (its case reference, states, what was attempted and why it
was refused). ``interfaces.desk`` calls them and hands the results to the templates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from engine.cases import CaseCount
from engine.values import SYSTEM, reference_of
from engine.vocab import Role
from engine.workflow import WorkflowRegistry, WorkflowSpec
from interfaces.catalogue import french_why
from workflows.labels import ACTIONS, CONTROLS, OPERATIONS, READS, ROLES, TRIGGERS, VIAS

__all__ = [
    "AuditLine",
    "QueueFilters",
    "TimelineLine",
    "describe",
    "facets",
    "fold_reads",
    "span",
]

PARIS = ZoneInfo("Europe/Paris")
REFUSED_PREFIX = "Action non permise (refus consigné au journal) : "


# -- durations -----------------------------------------------------------------------------


def span(seconds: float) -> str:
    """A duration as a regulator reads it: « 2 j 4 h », « 3 h 05 min », « 12 min »."""
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} j {hours} h" if hours else f"{days} j"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"


def left(due: datetime | None, now: datetime) -> str:
    """The time left before ``due``, or how late it is."""
    if due is None:
        return "—"
    seconds = (due - now).total_seconds()
    return f"en retard de {span(seconds)}" if seconds < 0 else span(seconds)


def paris(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


# -- the queue's filters -------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilters:
    """The queue's filters as the query string gives them (unknown values dropped)."""

    kind: str = ""
    state: str = ""  # a state of ``kind``, or "kind:state" (the state list spans workflows)
    mine: bool = False
    overdue: bool = False
    incidents: bool = False
    everything: bool = False

    @classmethod
    def read(
        cls,
        registry: WorkflowRegistry,
        *,
        kind: str = "",
        state: str = "",
        mine: bool = False,
        overdue: bool = False,
        incidents: bool = False,
        everything: bool = False,
    ) -> QueueFilters:
        kinds = set(registry.kinds())
        kind = kind if kind in kinds else ""
        of, _, name = state.rpartition(":")
        of = of or kind
        known = of in kinds and (not kind or of == kind)
        if not known or name not in {s.name for s in registry[of].states}:
            of, name = "", ""
        return cls(
            kind=kind,
            state=f"{of}:{name}" if name else "",
            mine=mine,
            overdue=overdue,
            incidents=incidents,
            everything=everything,
        )

    @property
    def state_kind(self) -> str | None:
        return self.state.partition(":")[0] or None

    @property
    def state_name(self) -> str | None:
        return self.state.partition(":")[2] or None

    def matches(self, row: CaseCount, *, but: str = "") -> bool:
        """Does a group of counted cases pass every filter (except ``but``)?"""
        checks = {
            "kind": not self.kind or row.kind == self.kind,
            "state": not self.state or (row.kind, row.state) == self.split(),
            "mine": not self.mine or row.mine,
            "overdue": not self.overdue or row.overdue,
            "incidents": not self.incidents or row.incident,
        }
        if but == "kind":  # a workflow's count does not depend on a state chosen in another
            checks["state"] = True
        return all(ok for name, ok in checks.items() if name != but)

    def split(self) -> tuple[str, str]:
        kind, _, name = self.state.partition(":")
        return kind, name

    def query(self, **changes: Any) -> str:
        """The query string of these filters (with ``changes``): links keep the filters."""
        chosen = replace(self, **changes)
        pairs = [
            (name, "true" if value is True else value)
            for name, value in (
                ("kind", chosen.kind),
                ("state", chosen.state),
                ("mine", chosen.mine),
                ("overdue", chosen.overdue),
                ("incidents", chosen.incidents),
                ("everything", chosen.everything),
            )
            if value
        ]
        return urlencode(pairs)

    @property
    def active(self) -> bool:
        return bool(self.kind or self.state or self.mine or self.overdue or self.incidents)


@dataclass(frozen=True)
class Facets:
    """The counts each filter shows: how many cases choosing it would list."""

    total: int
    kinds: dict[str, int]
    states: dict[tuple[str, str], int]
    mine: int
    overdue: int
    incidents: int
    all_kinds: int = 0
    all_states: int = 0


def facets(filters: QueueFilters, rows: Sequence[CaseCount]) -> Facets:
    """The counts of every option from the scope's grouped counts (``engine.cases.count_cases``):
    each option counts the cases it would list with the other filters kept."""
    kinds: dict[str, int] = {}
    states: dict[tuple[str, str], int] = {}
    for row in rows:
        if filters.matches(row, but="kind"):
            kinds[row.kind] = kinds.get(row.kind, 0) + row.count
        if filters.matches(row, but="state"):
            states[(row.kind, row.state)] = states.get((row.kind, row.state), 0) + row.count

    def flag(name: str, attribute: str) -> int:
        return sum(r.count for r in rows if getattr(r, attribute) and filters.matches(r, but=name))

    return Facets(
        total=sum(r.count for r in rows if filters.matches(r)),
        kinds=kinds,
        states=states,
        mine=flag("mine", "mine"),
        overdue=flag("overdue", "overdue"),
        incidents=flag("incidents", "incident"),
        all_kinds=sum(kinds.values()),
        all_states=sum(states.values()),
    )


# -- the case timeline ---------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineLine:
    """One line of a case's timeline: an event, or several reads by one person in a row."""

    event: Any  # the first event of the line
    last: Any  # the last (the same event when the line holds one)
    count: int = 1


def fold_reads(events: Iterable[Any]) -> list[TimelineLine]:
    """Consecutive ``read`` events by the same person fold into one line (« consulté N fois,
    du … au … »); every other event is a line of its own."""
    lines: list[TimelineLine] = []
    for event in events:
        if lines and event.action == "read":
            previous = lines[-1]
            if previous.event.action == "read" and previous.event.actor == event.actor:
                lines[-1] = TimelineLine(previous.event, event, previous.count + 1)
                continue
        lines.append(TimelineLine(event, event))
    return lines


# -- the auditor's page ----------------------------------------------------------------------


@dataclass(frozen=True)
class AuditLine:
    """An audit event as the auditor's page shows it, every code in French."""

    id: int
    case: str  # the case reference, or « sécurité »
    at: datetime
    action: str
    actor: str
    org: str
    passage: str
    details: str
    reason: str
    refused: bool = False


def _state_label(spec: WorkflowSpec | None, name: str | None) -> str:
    if not name:
        return ""
    if spec is None:
        return name
    for state in spec.states:
        if state.name == name:
            return state.label
    return name


def describe(
    event: Any,
    registry: WorkflowRegistry,
    kinds: Mapping[int, str],
    names: Mapping[str, str],
) -> AuditLine:
    """``event`` (an audit row) in French: its case reference (from ``kinds``), the states'
    labels, the organisation's name (``names``), and what it was about (``details``)."""
    kind = kinds.get(event.case_id) if event.case_id is not None else None
    spec = registry[kind] if kind in set(registry.kinds()) else None
    if event.case_id is None:
        case = "sécurité"
    elif spec is not None:
        case = reference_of(spec.prefix, event.case_id)
    else:
        case = f"dossier n° {event.case_id}"
    passage = _state_label(spec, event.from_state)
    if event.to_state and event.to_state != event.from_state:
        passage = f"{passage} → " if passage else ""
        passage += _state_label(spec, event.to_state)
    data = event.data if isinstance(event.data, dict) else {}
    return AuditLine(
        id=event.id,
        case=case,
        at=event.at,
        action=ACTIONS.get(event.action, event.action),
        actor=ROLES[Role.SYSTEM] if event.actor == SYSTEM.login else event.actor,
        org=names.get(event.org, event.org) if event.org else "",
        passage=passage,
        details=details(event.action, data),
        reason=event.reason or "",
        refused=event.action in {"refused", "probe"},
    )


def details(action: str, data: Mapping[str, Any]) -> str:  # noqa: PLR0911 - one per kind
    """What an event was about, in French, from its data."""
    if action == "refused":
        return f"Tentative : {attempted(data)}. Refusé : {refusal(data)}"
    if action == "probe":
        what = OPERATIONS.get(str(data.get("op", "")), "agir sur un dossier")
        return f"Tentative : {what} ({data.get('case', '')}) — ce dossier n'existe pas."
    if action == "read":
        read = READS.get(str(data.get("read", "")), "le dossier")
        via = VIAS.get(str(data.get("via", "")), "")
        return f"Consulté : {read}" + (f" ({via})" if via else "")
    if action in {"transition", "opened"}:
        parts = []
        if data.get("trigger"):
            parts.append(TRIGGERS.get(str(data["trigger"]), str(data["trigger"])))
        if data.get("on_behalf_of"):
            parts.append(f"pour l'établissement {data['on_behalf_of']}")
        return " — ".join(parts)
    if action == "extend" and isinstance(data.get("by_s"), int):
        return f"Échéance prolongée de {span(data['by_s'])}"
    if action == "login_failed":
        return f"{data.get('failures', '?')} échec(s) depuis l'adresse {data.get('client', '?')}"
    if action == "login_ceiling":
        return f"{data.get('failures', '?')} échecs en une heure pour {data.get('user', '?')}"
    if action in {"login_unlocked", "user_disabled"}:
        return f"Compte {data.get('user', '?')}"
    if action in {"token_issued", "token_revoked"}:
        return f"Jeton n° {data.get('token', '?')}"
    if action == "operator":
        what = OPERATIONS.get(str(data.get("op", "")), str(data.get("op", "")))
        return f"{what} — compte système {data.get('system_user', '?')}"
    return ""


def attempted(data: Mapping[str, Any]) -> str:
    """What a refused attempt tried to do, in French."""
    if data.get("trigger"):
        return TRIGGERS.get(str(data["trigger"]), str(data["trigger"])).lower()
    if data.get("control"):
        return CONTROLS.get(str(data["control"]), str(data["control"])).lower()
    op = str(data.get("op", ""))
    what = OPERATIONS.get(op, "agir")
    if op == "read" and data.get("read"):
        what = f"consulter {READS.get(str(data['read']), 'le dossier')}"
    if data.get("case"):
        what += f" ({data['case']})"
    if op == "open" and data.get("org"):
        what += f" pour l'établissement {data['org']}"
    return what


def refusal(data: Mapping[str, Any]) -> str:
    """Why an attempt was refused, in French, from the key it recorded (``refusal``)."""
    key = str(data.get("refusal") or ("outside_scope" if data.get("scope") == "outside" else ""))
    given = data.get("params")
    params: dict[str, object] = dict(given) if isinstance(given, dict) else {}
    text = french_why(key, params) if key else None
    if text is None or "{" in text:
        if key == "outside_scope":
            return "le dossier est hors du périmètre de son auteur."
        return "motif non codé (refus enregistré avant le codage des motifs)."
    text = text.removeprefix(REFUSED_PREFIX)
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text
