"""One serialisation of a case and of an audit event, for the CLI's ``--json`` and the API.

Both interfaces answer with the same field names for the same facts (``from_state`` and
``to_state``, never ``from``/``to`` in one and the long names in the other); the API's pydantic
models are built from these dictionaries. A case in a list carries no clinical facts
(``facts=False``): only a recorded read returns them. Imports no web framework.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.values import CaseView

__all__ = ["EVENT_FIELDS", "SUMMARY_FIELDS", "case_json", "event_json"]

SUMMARY_FIELDS = (
    "reference", "kind", "state", "level", "final", "version", "org", "region", "zone",
    "department", "ght", "opened_by", "opened_at", "updated_at", "incident", "on_hold",
)  # fmt: skip
EVENT_FIELDS = (
    "seq", "at", "actor", "role", "org", "action", "from_state", "to_state", "version",
    "reason", "data", "hash",
)  # fmt: skip


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def case_json(
    case: CaseView, now: datetime, *, facts: bool = True, allowed: list[str] | None = None
) -> dict[str, Any]:
    """A case as JSON: where it stands, its deadline (with the seconds left at ``now``), and,
    when ``facts``, its fields (the pseudonymous patient reference, the clinical facts)."""
    data: dict[str, Any] = {name: getattr(case, name) for name in SUMMARY_FIELDS}
    data["opened_at"], data["updated_at"] = _iso(case.opened_at), _iso(case.updated_at)
    d = case.deadline
    data["deadline"] = (
        None
        if d is None
        else {
            "state": d.state,
            "due_at": _iso(d.due_at),
            "action": d.action,
            "seconds_left": int((d.due_at - now).total_seconds()),
        }
    )
    if facts:
        data["fields"] = case.fields
    if allowed is not None:
        data["allowed_triggers"] = allowed
    return data


def event_json(row: Any) -> dict[str, Any]:
    """An audit event as JSON (a row of ``audit_event``, or anything with its columns)."""
    data = {name: getattr(row, name) for name in EVENT_FIELDS}
    data["at"] = _iso(row.at)
    data["data"] = dict(row.data or {})
    return data
