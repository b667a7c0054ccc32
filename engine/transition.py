"""Deciding a transition: pure, from the case, the command, the actor and ``now``.

``decide`` returns either an ``Outcome`` (new state, version, audit draft, deadline plan) or
a ``Refusal`` (the audit draft of the refused attempt); malformed or stale commands raise
before anything is decided. It does no I/O: the runner persists what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.actors import Actor
from engine.audit import Draft
from engine.cases import CaseView
from engine.deadlines import DeadlinePlan, ReminderPolicy, plan_deadline
from engine.errors import InputError, NotFound, StaleVersion, TriggerNotAllowed
from engine.policy import can_fire
from engine.workflow import FieldSpec, WorkflowSpec

__all__ = ["Command", "Outcome", "Refusal", "decide", "parse_fields"]

MAX_REASON = 2000


@dataclass(frozen=True)
class Command:
    trigger: str
    reason: str
    data: Mapping[str, object]
    expect_version: int | None = None
    context: Mapping[str, object] | None = None  # extra audit data (the sweeper's lateness)


@dataclass(frozen=True)
class Outcome:
    state: str
    level: str | None
    final: bool
    version: int
    fields: dict[str, Any]
    audit: Draft
    deadline: DeadlinePlan | None


@dataclass(frozen=True)
class Refusal:
    why: str
    audit: Draft


def parse_fields(
    specs: Sequence[FieldSpec], raw: Mapping[str, object], *, what: str
) -> dict[str, Any]:
    """Check ``raw`` against ``specs``: unknown, missing and malformed values are errors."""
    known = {f.name: f for f in specs}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        names = ", ".join(known) or "none"
        raise InputError(f"unknown field(s) {', '.join(unknown)} for {what}; fields: {names}")
    values: dict[str, Any] = {}
    for name, spec in known.items():
        if name in raw and raw[name] not in (None, ""):
            values[name] = spec.parse(raw[name])
        elif spec.required:
            raise InputError(f"{what} needs field {name!r} ({spec.label or spec.type})", field=name)
    return values


def check_reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InputError("a reason is required: say why, in a sentence")
    if "\x00" in text:
        raise InputError("the reason contains the NUL character (U+0000): remove it")
    if len(text) > MAX_REASON:
        raise InputError(f"the reason is longer than {MAX_REASON} characters: shorten it")
    return text


def decide(
    spec: WorkflowSpec,
    case: CaseView,
    actor: Actor,
    command: Command,
    now: datetime,
    policy: ReminderPolicy = ReminderPolicy(),  # noqa: B008 - frozen, immutable default
) -> Outcome | Refusal:
    trigger = command.trigger
    if trigger not in spec.triggers:
        raise NotFound(
            f"unknown trigger {trigger!r} for {spec.kind}; triggers: {', '.join(spec.triggers)}",
            trigger=trigger,
        )
    reason = check_reason(command.reason)
    if command.expect_version is not None and command.expect_version != case.version:
        raise StaleVersion(case.reference, command.expect_version, case.version)
    transition = spec.transition(case.state, trigger)
    if transition is None:
        possible = ", ".join(t.trigger for t in spec.allowed(case.state)) or "none (it is closed)"
        raise TriggerNotAllowed(
            f"case {case.reference} is {case.state}: {trigger} is not possible there; "
            f"possible: {possible}",
            case=case.reference,
            state=case.state,
            trigger=trigger,
        )
    decision = can_fire(actor, spec, case.state, trigger, case)
    if not decision:
        return Refusal(
            decision.reason,
            Draft(
                actor=actor.login,
                role=actor.role,
                org=actor.org,
                action="refused",
                from_state=case.state,
                to_state=case.state,
                version=case.version,
                reason=reason,
                data={"trigger": trigger, "why": decision.reason},
            ),
        )
    values = parse_fields(transition.fields, command.data, what=f"{spec.kind} {trigger}")
    new_state = spec.fire(case.state, trigger)
    target = spec.state(new_state)
    version = case.version + 1
    fields = dict(case.fields)
    if values:
        fields[trigger] = values
    return Outcome(
        state=new_state,
        level=target.level,
        final=target.final,
        version=version,
        fields=fields,
        audit=Draft(
            actor=actor.login,
            role=actor.role,
            org=actor.org,
            action="transition",
            from_state=case.state,
            to_state=new_state,
            version=version,
            reason=reason,
            data={"trigger": trigger, "fields": values, **(command.context or {})},
        ),
        deadline=plan_deadline(spec, new_state, version, now, fields=fields, policy=policy),
    )
