"""Deciding: every command kind is a pure function to one ``Outcome``.

A person's trigger, a control (hold, resume, extend), opening a case, a recorded read, and
every swept deadline (escalate, remind, incident, overdue, no-op) are decided here from the
case, the command, the actor and ``now`` (read once per command by the caller), with the
policy's one-pass answer (allowed, or a typed refusal). Nothing here does I/O: the outcome
carries the audit events, the case change, the deadline plan and the notices to queue, and
``engine.unit_of_work`` applies it in one transaction. A malformed or stale command raises
before any outcome exists. Imports no database library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from engine.deadlines import PARIS, extended, plan_deadline
from engine.errors import (
    Conflict,
    InputError,
    NotFound,
    NotPermitted,
    StaleVersion,
    TriggerNotAllowed,
    no_case,
)
from engine.policy import (
    ALLOW,
    Decision,
    Geography,
    can_audit,
    can_choose,
    can_control,
    can_extend,
    can_fire,
    can_open,
    can_read,
    can_receive,
    ecmo_resolve,
    means_fit,
)
from engine.values import (
    SYSTEM,
    Actor,
    CaseView,
    Command,
    DeadlineChange,
    DeadlinePlan,
    DeadlineRow,
    Draft,
    Outcome,
    Place,
    ReminderPolicy,
)
from engine.vocab import Action, Control, DeadlineStatus, Role, SweepOutcome
from engine.workflow import INCIDENT, OVERDUE, FieldSpec, WorkflowRegistry, WorkflowSpec

__all__ = [
    "MAX_REASON",
    "OWN_RULE",
    "RESUME",
    "Decider",
    "Declares",
    "Rules",
    "check_reason",
    "decide",
    "event_name",
    "parse_fields",
]

MAX_REASON = 2000
MAX_REFUSED_TEXT = 200  # a refused caller's free text, kept in the security stream only
REMIND = "remind"  # the action of a periodic reminder row after a deadline passed
RESUME = "resume"  # the action of a held case's row: the hold ends by itself at its due time


@dataclass(frozen=True)
class Rules:
    """The doctrine's limits that a deployment sets (``engine.settings``), as the decisions
    apply them.

    ``extend_max``: the most one extension of a deadline may add; ``hold_max``: how long a
    hold lasts before the deadline resumes by itself (the sweep's « reprise automatique »);
    ``hospital_confirms``: a new case waits in its initial state for the hospital's own
    ``escalate`` (the former behaviour) instead of going straight to the first regulating
    level in the opening's outcome.
    """

    extend_max: timedelta = timedelta(hours=24)
    hold_max: timedelta = timedelta(hours=24)
    hospital_confirms: bool = False

    def __post_init__(self) -> None:
        for name in ("extend_max", "hold_max"):
            if getattr(self, name) <= timedelta(0):
                raise InputError(f"{name} must be longer than zero", why="bad_setting")


Declares = Callable[[str, str], bool]
"""Does workflow ``kind`` declare a notice for ``event``? (the notice book's answer)"""


def _none(_kind: str, _event: str) -> bool:
    return False


def parse_fields(
    specs: Sequence[FieldSpec], raw: Mapping[str, object], *, what: str
) -> dict[str, Any]:
    """Check ``raw`` against ``specs``: unknown, missing and malformed values are errors."""
    known = {f.name: f for f in specs}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        names = ", ".join(known) or "none"
        raise InputError(
            f"unknown field(s) {', '.join(unknown)} for {what}; fields: {names}",
            why="unknown_field",
            fields=unknown,
        )
    values: dict[str, Any] = {}
    for name, spec in known.items():
        if name in raw and raw[name] not in (None, ""):
            values[name] = spec.parse(raw[name])
        elif spec.required:
            raise _missing(what, name, spec)
    for name, spec in known.items():  # required by another field's value (a loss of chance)
        if name not in values and spec.required_when:
            other, value = spec.required_when
            if values.get(other) == value:
                raise _missing(what, name, spec)
    return values


def _missing(what: str, name: str, spec: FieldSpec) -> InputError:
    return InputError(
        f"{what} needs field {name!r} ({spec.label or spec.type})",
        why="missing_field",
        field=name,
        label=spec.label or name,
    )


def check_reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InputError("a reason is required: say why, in a sentence", why="reason_required")
    if "\x00" in text:
        raise InputError(
            "the reason contains the NUL character (U+0000): remove it", why="nul_character"
        )
    if len(text) > MAX_REASON:
        raise InputError(
            f"the reason is longer than {MAX_REASON} characters: shorten it",
            why="reason_too_long",
            limit=MAX_REASON,
        )
    return text


def _draft(
    actor: Actor, action: str, case: CaseView, version: int, reason: str, data: dict[str, Any]
) -> Draft:
    return Draft(
        actor.login, actor.role, actor.org, action, case.state, case.state, version, reason, data
    )


def _security(actor: Actor, data: dict[str, Any], reason: str = "") -> Draft:
    return Draft(actor.login, actor.role, actor.org, Action.REFUSED, None, None, 0, reason, data)


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


@dataclass(frozen=True)
class Decider:
    """The pure decisions of one deployment: its workflows, reminder policy and notice book."""

    registry: WorkflowRegistry
    policy: ReminderPolicy = ReminderPolicy()  # noqa: RUF009 - frozen, immutable default
    declares: Declares = _none
    rules: Rules = Rules()
    geography: Geography = Geography()  # noqa: RUF009 - frozen; empty: no level skipped

    # -- helpers ----------------------------------------------------------------------------

    def _notices(self, kind: str, events: Sequence[Draft]) -> tuple[int, ...]:
        return tuple(
            i
            for i, draft in enumerate(events)
            if draft.action != Action.REFUSED and self.declares(kind, event_name(draft))
        )

    def _outcome(
        self, case: CaseView, events: tuple[Draft, ...], *, quiet: int = 0, **kw: Any
    ) -> Outcome:
        """The outcome; ``quiet``: how many leading events are passed through without a
        notice (the steps of a command that end in a level skipped: only its last step is told)."""
        notices = tuple(i for i in self._notices(case.kind, events) if i >= quiet)
        return Outcome(case, events, notices=notices, **kw)

    def _outside(
        self, case: CaseView, actor: Actor, decision: Decision, data: dict[str, Any],
        text: str, as_written: str,
    ) -> Outcome:  # fmt: skip
        """An attempt on a case outside the caller's scope: 'no case', recorded twice.

        The case's chain gets the refusal without the caller's free text (an outsider must
        not be able to write into another scope's evidence); the security stream keeps what
        they typed, bounded, when they typed something.
        """
        data = {**data, "why": decision.reason, "scope": "outside"}
        seen = {**data, "case": case.reference}
        kept = (_security(actor, seen, text[:MAX_REFUSED_TEXT]),) if text else ()
        return Outcome(
            case,
            (_draft(actor, Action.REFUSED, case, case.version, "", data),),
            security=kept,
            refusal=no_case(as_written),
        )

    def _refused(
        self, case: CaseView, actor: Actor, decision: Decision, what: str, text: str,
        data: dict[str, Any],
    ) -> Outcome:  # fmt: skip
        return Outcome(
            case,
            (_draft(actor, Action.REFUSED, case, case.version, text, data),),
            refusal=NotPermitted(
                f"{actor.login} may not {what} case {case.reference}: {decision.reason}",
                why=decision.why or "not_permitted",
                case=case.reference,
                action=what,
                **dict(decision.params),
            ),
        )

    # -- opening ----------------------------------------------------------------------------

    def open(
        self, actor: Actor, kind: str, place: Place, raw: Mapping[str, object], now: datetime
    ) -> Outcome:
        """Open a case of ``kind`` for the establishment at ``place``: its row, event, deadline.

        A regulator allowed to open (the ARS for PPE) opens on behalf of an establishment of
        its scope: the case is recorded as opened by the regulator for that establishment and
        goes at once up the ladder to the regulator's own level (``_opened_at``).
        """
        spec = self.registry[kind]
        if place.kind not in spec.open_for:
            raise InputError(
                f"{place.org} is a {place.kind}, not a hospital: cases are opened for "
                + " or ".join(spec.open_for),
                why="not_a_hospital",
                org=place.org,
            )
        decision = can_open(actor, spec, place)
        if not decision:
            data = {"op": "open", "kind": kind, "org": place.org, "why": decision.reason}
            return Outcome(
                None,
                security=(_security(actor, data),),
                refusal=NotPermitted(
                    f"{actor.login} may not open this case: {decision.reason}",
                    why=decision.why,
                    **dict(decision.params),
                ),
            )
        fields = parse_fields(
            spec.open_fields, _with_fallbacks(spec, raw, place), what=f"opening a {kind} case"
        )
        level = spec.state(spec.initial).level
        row: dict[str, Any] = {
            "kind": kind, "state": spec.initial, "level": level, "final": False, "version": 1,
            "org": place.org, "region": place.region, "zone": place.zone,
            "department": place.department, "ght": place.ght, "fields": fields,
            "opened_by": actor.login, "opened_at": now, "updated_at": now, "audit_seq": 0,
            "audit_hash": "", "incident": False, "on_hold": False,
        }  # fmt: skip
        case = CaseView(id=0, reference="", **row)  # id and reference once inserted
        opened: dict[str, Any] = {"kind": kind, "org": place.org, "fields": fields}
        on_behalf = actor.role != level
        if on_behalf:
            opened["on_behalf_of"] = place.org  # the regulator opened it for the establishment
        draft = Draft(
            actor.login, actor.role, actor.org, Action.OPENED, None, spec.initial, 1, "", opened
        )
        steps = _up_to(spec, actor, place) if on_behalf else []
        if not steps and not self.rules.hospital_confirms and self._passes_on(spec, spec.initial):
            return self._open_to_first_level(spec, case, draft, row, now)
        state = str(steps[-1].to_state) if steps else spec.initial
        target = spec.state(state)
        row.update(state=state, level=target.level)
        case = replace(case, state=state, level=target.level)
        plan = plan_deadline(spec, state, 1, now, fields=fields, policy=self.policy)
        return self._outcome(
            case, (draft, *steps), quiet=len(steps), opened=row,
            deadline=DeadlineChange(open=plan),
        )  # fmt: skip

    def _open_to_first_level(
        self, spec: WorkflowSpec, case: CaseView, draft: Draft, row: dict[str, Any],
        now: datetime,
    ) -> Outcome:  # fmt: skip
        """The opening goes straight to the first regulating level: the initial state's own
        trigger fired as ``system`` in the same outcome (two events: opened, then the
        automatic step), so that the notices of that step leave with the opening.

        The automatic step belongs to the opening command: the case keeps version 1 (one
        command, one version), as a level skipped within a command does.
        """
        trigger = str(spec.state(spec.initial).on_deadline)
        reason = "Transmission automatique au premier niveau de régulation, à l'ouverture"
        command = Command(trigger, reason, {}, context={"auto": "open"})
        fired = self.fire(replace(case, version=0), SYSTEM, command, now)
        if fired.refusal is not None or fired.case is None:  # the workflow forbids it: a bug
            raise AssertionError(f"the opening's automatic {trigger} was refused")
        after = fired.case
        opened = {**row, "state": after.state, "level": after.level, "fields": after.fields}
        events = (draft, *fired.events)
        notices = tuple(
            sorted({*self._notices(case.kind, (draft,)), *(i + 1 for i in fired.notices)})
        )
        return Outcome(
            after, events, notices=notices, opened=opened,
            deadline=DeadlineChange(open=fired.deadline.open),
        )  # fmt: skip

    @staticmethod
    def _passes_on(spec: WorkflowSpec, state: str) -> bool:
        """Does ``state`` wait for a level that passes the case on by a trigger of its own
        (the ladder's ``escalate``), which the engine may fire for it?"""
        target = spec.state(state)
        trigger = target.on_deadline
        return (
            target.waiting
            and trigger not in (None, INCIDENT, OVERDUE)
            and spec.transition(state, str(trigger)) is not None
        )

    def _skips(self, spec: WorkflowSpec, case: CaseView, state: str) -> str | None:
        """Why the level holding ``state`` is skipped for this case (the directory says it
        holds nobody, or only the level before it), else None."""
        if spec.skips(state, case):  # an optional rung: no GHT, or turned off by the deployment
            return "turned_off" if state in spec.skipped else "no_organisation"
        if not self._passes_on(spec, state):
            return None
        return self.geography.skipped(spec.state(state).level, case)

    # -- a person's trigger (and the sweep's escalation) --------------------------------------

    def fire(
        self, case: CaseView, actor: Actor, command: Command, now: datetime, *,
        as_written: str | None = None, close: DeadlineStatus = DeadlineStatus.SUPERSEDED,
        places: Mapping[str, Place | None] | None = None,
    ) -> Outcome:  # fmt: skip
        """Fire ``command.trigger`` on ``case``; ``close``: what becomes of its open deadline.

        ``places``: the directory entries of the establishments the command names (its
        ``hospital`` fields) and of the case's own, read by the runner; a name missing from the
        directory maps to None. Without it (a pure test), those checks are not made.
        """
        readable = can_read(actor, case)
        if not readable:  # outside scope: first, and as if the case did not exist
            data = {"trigger": command.trigger}
            written = as_written if as_written is not None else case.reference
            return self._outside(case, actor, readable, data, command.reason, written)
        spec = self.registry[case.kind]
        trigger = command.trigger
        if trigger not in spec.triggers:
            raise NotFound(
                f"unknown trigger {trigger!r} for {spec.kind}; triggers: "
                f"{', '.join(spec.triggers)}",
                why="unknown_trigger",
                trigger=trigger,
            )
        reason = check_reason(command.reason)
        if command.expect_version is not None and command.expect_version != case.version:
            raise StaleVersion(case.reference, command.expect_version, case.version)
        transition = spec.transition(case.state, trigger)
        if transition is None:
            possible = ", ".join(t.trigger for t in spec.allowed(case.state))
            raise TriggerNotAllowed(
                f"case {case.reference} is {case.state}: {trigger} is not possible there; "
                f"possible: {possible or 'none (it is closed)'}",
                why="trigger_not_allowed",
                case=case.reference,
                state=case.state,
                trigger=trigger,
            )
        decision = can_fire(actor, spec, case.state, trigger, case)
        if not decision:
            data = {"trigger": trigger, "why": decision.reason}
            return self._refused(case, actor, decision, trigger, reason, data)
        values = parse_fields(
            transition.fields, _own_choices(transition.fields, command.data, actor),
            what=f"{spec.kind} {trigger}",
        )  # fmt: skip
        named = _named_places(transition.fields, values, case, places)
        chosen = _check_named(transition.fields, values, actor, named)
        if not chosen:
            refused: dict[str, Any] = {"trigger": trigger, "why": chosen.reason, "fields": values}
            return self._refused(case, actor, chosen, trigger, reason, refused)
        resources = self._resources(spec, case, actor, trigger, values, now)
        if not resources:
            data = {"trigger": trigger, "why": resources.reason}
            return self._refused(case, actor, resources, trigger, reason, data)
        new_state = spec.fire(case.state, trigger)
        version = case.version + 1
        fields = dict(case.fields)
        if values:
            fields[trigger] = values
        draft = Draft(
            actor.login, actor.role, actor.org, Action.TRANSITION, case.state, new_state,
            version, reason, {"trigger": trigger, "fields": values, **(command.context or {})},
        )  # fmt: skip
        drafts = [draft, *self._skipped_levels(spec, case, new_state, version)]
        new_state = str(drafts[-1].to_state)
        target = spec.state(new_state)
        plan = plan_deadline(spec, new_state, version, now, fields=fields, policy=self.policy)
        change = {
            "state": new_state, "level": target.level, "final": target.final,
            "version": version, "fields": fields, "updated_at": now, "incident": False,
            "on_hold": False,
        }  # fmt: skip
        after = replace(case, **change)  # type: ignore[arg-type]
        return self._outcome(
            after,
            tuple(drafts),
            quiet=len(drafts) - 1,
            values=change,
            deadline=DeadlineChange(close=close, open=plan),
            sweep=SweepOutcome.ESCALATED if actor.role == Role.SYSTEM else None,
        )

    def _skipped_levels(
        self, spec: WorkflowSpec, case: CaseView, state: str, version: int
    ) -> list[Draft]:
        """The steps over levels that hold nobody for this case, each one recorded.

        Where the directory says a level is empty or the same as the one before (a defence
        zone that is one region: ARS Île-de-France must not wait for itself as ARS de zone),
        its state's own trigger is fired at once as ``system``, at the command's version: one
        ``transition`` event per level skipped, saying which level and why, so that the audit
        replay walks the same ladder.
        """
        steps: list[Draft] = []
        for _ in spec.states:  # bounded: a ladder never loops
            why = self._skips(spec, case, state)
            if why is None:
                break
            level, trigger = spec.state(state).level, str(spec.state(state).on_deadline)
            dest = spec.fire(state, trigger)
            steps.append(_step(state, dest, version, level, why, {"trigger": trigger}))
            state = dest
        return steps

    # -- the resources a level may use (per workflow and trigger) -----------------------------

    def _resources(
        self, spec: WorkflowSpec, case: CaseView, actor: Actor, trigger: str,
        values: dict[str, Any], now: datetime,
    ) -> Decision:  # fmt: skip
        """The doctrine's rules on what the trigger names (a lender, a stock), once the
        fields are parsed: malformed or unknown values raise, a rule broken is a refusal."""
        rule = _RESOURCE_RULES.get((spec.kind, trigger))
        return ALLOW if rule is None else rule(self, case, actor, values, now)

    def _ecmo_resolve(
        self, case: CaseView, actor: Actor, values: dict[str, Any], now: datetime
    ) -> Decision:
        """ECMO resolve: a return date not past; a lender from the directory unless the
        console comes from the national stock; the lender within the level's scope."""
        if str(values["return_by"]) < _today(now):
            raise InputError(
                f"the return date {values['return_by']} is past: give the date the console "
                "is due back",
                why="return_date_past",
                field="return_by",
            )
        lender = values.get("lender")
        if values.get("source") == "national":
            if lender:
                raise InputError(
                    "a console from the national stock has no lending establishment: "
                    "leave 'lender' empty",
                    why="lender_with_national_stock",
                    field="lender",
                )
        elif not lender:
            raise InputError(
                "a loan from an establishment or a regional stock needs field 'lender' (the "
                "FINESS of the lending establishment)",
                why="missing_field",
                field="lender",
                label="Établissement prêteur",
            )
        elif self.geography.known and lender not in self.geography.hospitals:
            raise InputError(
                f"{lender} is no establishment of the directory: give the FINESS of the "
                "lending establishment",
                why="unknown_lender",
                field="lender",
                lender=str(lender),
            )
        return ecmo_resolve(actor, case.state, case, values, self.geography)

    def _ecmo_extend_loan(
        self, case: CaseView, actor: Actor, values: dict[str, Any], now: datetime
    ) -> Decision:
        """ECMO extend_loan: the new return date is later than the current one."""
        current = _return_by(case)
        if current is not None and str(values["return_by"]) <= current:
            raise InputError(
                f"the loan is due back on {current}: an extension gives a later date",
                why="loan_not_extended",
                field="return_by",
                current=current,
            )
        return ALLOW

    # -- manual control of the deadline --------------------------------------------------------

    def control(
        self, case: CaseView, actor: Actor, action: str, reason: str, now: datetime, *,
        extend_by: timedelta | None = None, expect_version: int | None = None,
        deadline: DeadlineRow | None = None, as_written: str | None = None,
    ) -> Outcome:  # fmt: skip
        """Hold a case (its deadline suspended), resume it (restarted in full), or extend it."""
        if action not in set(Control):
            raise InputError(
                f"unknown control {action!r}: hold, resume or extend", why="unknown_control"
            )
        if action == Control.EXTEND and (extend_by is None or extend_by <= timedelta(0)):
            raise InputError(
                "an extension must be longer than zero, e.g. --by 30m", why="extension_not_positive"
            )
        text = check_reason(reason)
        readable = can_read(actor, case)
        written = as_written if as_written is not None else case.reference
        if not readable:  # outside scope, the case's version and state stay unsaid
            return self._outside(case, actor, readable, {"control": action}, text, written)
        if expect_version is not None and expect_version != case.version:
            raise StaleVersion(case.reference, expect_version, case.version)
        _check_controllable(case, action)
        spec = self.registry[case.kind]
        decision = can_control(actor, spec, case.state, case)
        if not decision:
            refused = {"control": action, "why": decision.reason}
            return self._refused(case, actor, decision, action, text, refused)
        if action == Control.EXTEND and extend_by is not None:
            longest = can_extend(extend_by, self.rules.extend_max)
            if not longest:
                too_long = {"control": action, "why": longest.reason}
                too_long["by_s"] = str(int(extend_by.total_seconds()))
                return self._refused(case, actor, longest, action, text, too_long)
        version = case.version + 1
        data: dict[str, Any] = {}
        change: DeadlineChange
        if action == Control.HOLD:
            # the hold ends by itself after hold_max: a row the sweep resumes (swept)
            until = now + self.rules.hold_max
            ends = DeadlinePlan(case.state, version, until, RESUME, next_at=until, start=now)
            change = DeadlineChange(close=DeadlineStatus.HELD, open=ends)
            data = {"resumes_at": until.isoformat()}
        elif action == Control.RESUME:
            plan = plan_deadline(
                spec, case.state, version, now, fields=case.fields, policy=self.policy
            )
            change = DeadlineChange(close=DeadlineStatus.SUPERSEDED, open=plan)
        else:
            if deadline is None:
                raise InputError(
                    f"case {case.reference} has no running deadline to extend",
                    why="no_deadline_to_extend",
                    case=case.reference,
                )
            assert extend_by is not None
            due = deadline.due_at + extend_by
            plan = extended(deadline.state, deadline.action, due, version, now, self.policy)
            change = DeadlineChange(close=DeadlineStatus.SUPERSEDED, open=plan)
            data = {
                "from": deadline.due_at.isoformat(),
                "to": due.isoformat(),
                "by_s": int(extend_by.total_seconds()),
            }
        values = {"version": version, "updated_at": now, "on_hold": action == Control.HOLD}
        after = replace(case, version=version, updated_at=now, on_hold=action == Control.HOLD)
        draft = _draft(actor, action, case, version, text, data)
        return self._outcome(after, (draft,), values=values, deadline=change)

    # -- a person's read --------------------------------------------------------------------

    def read(
        self, case: CaseView, actor: Actor, what: str, via: str, *, as_written: str
    ) -> Outcome:
        """A person reads a case: a ``read`` event in its chain, or 'no case' outside scope."""
        data: dict[str, Any] = {"read": what, "via": via}
        decision = can_read(actor, case)
        if decision:
            return Outcome(case, (_draft(actor, Action.READ, case, case.version, "", data),))
        data.update(op="read")
        return self._outside(case, actor, decision, data, "", as_written)

    def probe(self, actor: Actor, reference: str, op: str) -> Outcome:
        """A person names a case that does not exist: 'no case', and the probe is recorded.

        The answer is the one an existing case outside the caller's scope gets, and so is its
        cost: one event appended and committed (to the security stream here, to the case's
        chain there), so that neither the answer nor its time tells the two apart.
        """
        data = {"op": op, "case": reference[:40]}
        draft = Draft(actor.login, actor.role, actor.org, Action.PROBE, None, None, 0, "", data)
        return Outcome(None, security=(draft,), refusal=no_case(reference))

    def audit(self, actor: Actor, what: str) -> Outcome | None:
        """None when ``actor`` may read the audit log; else the recorded refusal."""
        decision = can_audit(actor)
        if decision:
            return None
        return self.refuse(actor, {"op": what, "why": decision.reason}, decision, what)

    def refuse(
        self, actor: Actor, data: dict[str, Any], decision: Decision | None = None,
        what: str = "",
    ) -> Outcome:  # fmt: skip
        """A refusal that concerns no case, for the security stream."""
        why = decision.reason if decision else str(data.get("why", ""))
        return Outcome(
            None,
            security=(_security(actor, data),),
            refusal=NotPermitted(
                f"{actor.login} may not {what or data.get('op', 'do this')}: {why}",
                why=(decision.why if decision else "") or "not_permitted",
                **(dict(decision.params) if decision else {}),
            ),
        )

    # -- a swept deadline -------------------------------------------------------------------

    def swept(self, case: CaseView, row: DeadlineRow, now: datetime) -> Outcome:
        """What the sweep does with a claimed ``row`` of ``case`` at ``now``.

        Before its due time: a reminder for the level holding the case. Past due: the
        state's trigger fired as ``system``, or past the top of a ladder an incident (the
        case flagged, the crisis centre reminded every ``incident_period``), or past a date
        the case carries an overdue notice (reminded every ``overdue_period``). A row whose
        case moved on (another version or state, on hold, closed) closes as a recorded no-op.
        """
        late = (now - row.due_at).total_seconds()
        current = (case.version, case.state) == (row.version, row.state) and not case.final
        if row.action == RESUME and current and case.on_hold and now >= row.due_at:
            return self._resume_by_itself(case, row, now)
        if (case.version, case.state) != (row.version, row.state) or case.on_hold or case.final:
            why = f"le dossier a évolué (version {case.version}, état {case.state})"
            draft = _system(case, Action.DEADLINE_NOOP, why, {"deadline": row.id})
            return self._outcome(
                case, (draft,), deadline=DeadlineChange(close=DeadlineStatus.NOOP),
                sweep=SweepOutcome.NOOP,
            )  # fmt: skip
        if now < row.due_at:
            return self._remind(case, row, now)
        context = {"deadline": row.id, "due_at": row.due_at.isoformat(), "late_s": round(late, 3)}
        if row.action in (INCIDENT, OVERDUE, REMIND):
            return self._raise(case, row, now, context)
        what = _LAPSED.get(row.action, f"Délai dépassé au niveau {case.level}")
        reason = (
            f"{what} : échéance {row.due_at:%d/%m/%Y %H:%M:%S} "
            f"UTC, déclenché avec {_duration(late)} de retard"
        )
        command = Command(row.action, reason, {}, context=context)
        outcome = self.fire(case, SYSTEM, command, now, close=DeadlineStatus.FIRED)
        if outcome.refusal is not None:
            raise outcome.refusal
        return outcome

    def _resume_by_itself(self, case: CaseView, row: DeadlineRow, now: datetime) -> Outcome:
        """A hold past ``hold_max``: the deadline resumes by itself, restarted in full."""
        spec, version = self.registry[case.kind], case.version + 1
        plan = plan_deadline(spec, case.state, version, now, fields=case.fields, policy=self.policy)
        hours = f"{self.rules.hold_max.total_seconds() / 3600:g}"
        reason = f"Reprise automatique : suspension de plus de {hours} h"
        data = {"deadline": row.id, "held_since": row.created_at.isoformat(), "auto": True}
        values = {"version": version, "updated_at": now, "on_hold": False}
        after = replace(case, version=version, updated_at=now, on_hold=False)
        draft = Draft(
            SYSTEM.login, SYSTEM.role, SYSTEM.org, Action.RESUME, case.state, case.state,
            version, reason, data,
        )  # fmt: skip
        return self._outcome(
            after, (draft,), values=values,
            deadline=DeadlineChange(close=DeadlineStatus.FIRED, open=plan),
            sweep=SweepOutcome.RESUMED,
        )  # fmt: skip

    def _remind(self, case: CaseView, row: DeadlineRow, now: datetime) -> Outcome:
        policy, start, due = self.policy, row.created_at, row.due_at
        passed = policy.passed(start, due, now)
        data = {
            "deadline": row.id,
            "due_at": due.isoformat(),
            "fraction": policy.fractions[passed - 1] if passed else None,
            "for": case.level,
            "left_s": int((due - now).total_seconds()),
            "then": row.action,  # what passing the deadline will do: a trigger, incident, overdue
        }
        left = _duration((due - now).total_seconds())
        reason = f"Rappel : échéance le {due:%d/%m/%Y %H:%M} UTC, reste {left}"
        touch = (row.id, max(passed, row.reminders + 1), policy.next_look(start, due, passed))
        return self._outcome(
            case,
            (_system(case, Action.REMINDER, reason, data),),
            deadline=DeadlineChange(touch=touch),
            sweep=SweepOutcome.REMINDER,
        )

    def _raise(
        self, case: CaseView, row: DeadlineRow, now: datetime, context: dict[str, Any]
    ) -> Outcome:
        """Past the top of the ladder or a carried date: record, flag, remind periodically."""
        incident = row.action == INCIDENT or (row.action == REMIND and case.incident)
        policy = self.policy
        period = policy.incident_period if incident else policy.overdue_period
        if row.action == REMIND:
            outcome, action = SweepOutcome.REPEAT, Action.REMINDER
            reason = (
                "Relance : toujours sans décision" if incident else "Relance : échéance dépassée"
            )
        elif incident and not self.registry[case.kind].state(case.state).waiting:
            outcome, action = SweepOutcome.INCIDENT, Action.INCIDENT
            label = self.registry[case.kind].state(case.state).label
            reason = f"Incident : aucune suite dans le délai à l'état « {label} »"
        elif incident:
            outcome, action = SweepOutcome.INCIDENT, Action.INCIDENT
            reason = (
                f"Incident : aucune décision au niveau {case.level}, dernier niveau de l'échelle"
            )
        else:
            outcome, action = SweepOutcome.OVERDUE, Action.OVERDUE
            reason = (
                f"Échéance dépassée ({case.state}) : retour ou livraison attendu le "
                f"{row.due_at:%d/%m/%Y}"
            )
        data = {
            **context,
            "for": Role.CCS if incident else case.level,
            "next_reminder_s": int(period.total_seconds()),
        }
        values = {"incident": True} if incident else {}
        after = replace(case, incident=True) if incident else case
        plan = DeadlinePlan(
            case.state, case.version, now + period, REMIND, next_at=now + period, start=now
        )
        return self._outcome(
            after,
            (_system(case, action, reason, data),),
            values=values,
            deadline=DeadlineChange(close=DeadlineStatus.FIRED, open=plan),
            sweep=outcome,
        )


_LEVEL_NAMES = {
    "establishment": "établissement", "ght": "GHT", "umac": "UMAC", "ars": "ARS",
    "ars_zone": "ARS de zone",
    "ccs": "national (CCS)", "spf": "national (Santé publique France)",
}  # fmt: skip
_SKIP_WHY = {
    "zone_single_region": "la zone de défense ne compte qu'une région, déjà régulée par son ARS",
    "no_organisation": "aucun organisme de ce niveau pour cet établissement dans l'annuaire",
    "turned_off": "étape désactivée dans ce déploiement",
    "opened_by_regulator": "demande ouverte par le régulateur pour l'établissement",
}
# What a deadline fired by the sweep says, when its trigger is no escalation: a transfer
# proposed to an establishment that did not answer returns to the level that proposed it.
_LAPSED = {"withdraw": "Sans réponse de l'établissement d'accueil"}
_RESOURCE_RULES: dict[
    tuple[str, str],
    Callable[[Decider, CaseView, Actor, dict[str, Any], datetime], Decision],
] = {
    ("ecmo", "resolve"): Decider._ecmo_resolve,
    ("ecmo", "extend_loan"): Decider._ecmo_extend_loan,
}


def _today(now: datetime) -> str:
    return now.astimezone(PARIS).date().isoformat()


def _return_by(case: CaseView) -> str | None:
    """The date a loan is due back now: the last extension's, else the resolve's."""
    for trigger in ("extend_loan", "resolve"):
        value = case.fields.get(trigger, {}).get("return_by")
        if value:
            return str(value)
    return None


def event_name(draft: Draft) -> str:
    """The name a notice book knows an event by: its trigger, else its action."""
    return str(draft.data.get("trigger")) if draft.action == Action.TRANSITION else draft.action


def _system(case: CaseView, action: str, reason: str, data: dict[str, Any]) -> Draft:
    return Draft(
        SYSTEM.login, SYSTEM.role, SYSTEM.org, action, case.state, case.state, case.version,
        reason, data,
    )  # fmt: skip


def _own_choices(
    specs: Sequence[FieldSpec], data: Mapping[str, object], actor: Actor
) -> Mapping[str, object]:
    """``data`` with each reserved choice left out filled with the one value reserved to the
    actor's role (a PPE shipment comes from the stock of the level that decides it)."""
    filled = dict(data)
    for f in specs:
        if f.reserved and filled.get(f.name) in (None, ""):
            own = [value for value, roles in f.reserved if actor.role in roles]
            if len(own) == 1:
                filled[f.name] = own[0]
    return filled


# hospital fields checked by a rule of their own (Decider._resources, on the geography), not as
# a destination: the runner reads no directory entry for them
OWN_RULE = frozenset({"lender"})


def _named_places(
    specs: Sequence[FieldSpec],
    values: Mapping[str, Any],
    case: CaseView,
    places: Mapping[str, Place | None] | None,
) -> dict[str, Place]:
    """The directory entries of the establishments ``values`` names (by field), checked: each
    exists and is a hospital, and a transfer's means fits the geography (no road or rail to
    or from overseas). Bad input raises; nothing is written."""
    if places is None:
        return {}
    named: dict[str, Place] = {}
    for f in specs:
        if f.type != "hospital" or f.name not in values or f.name in OWN_RULE:
            continue
        place = places.get(values[f.name])
        if place is None or place.kind != "hospital" or place.category not in (None, "sanitaire"):
            raise InputError(
                f"field {f.name!r}: {values[f.name]} is not a health establishment (sanitaire) of "
                "the directory; give the FINESS number of a hospital",
                why="unknown_establishment",
                field=f.name,
                org=values[f.name],
                label=f.label or f.name,
            )
        named[f.name] = place
    means = values.get("means")
    origin = places.get(case.org)
    for place in named.values():
        if isinstance(means, str) and not means_fit(
            means, origin.land if origin else None, place.land
        ):
            raise InputError(
                f"means {means} cannot go from {case.org} to {place.org}: no road or rail to "
                "or from overseas (or between two lands); choose air or sea",
                why="means_unfit",
                means=means,
                org=place.org,
            )
    return named


def _check_named(
    specs: Sequence[FieldSpec], values: Mapping[str, Any], actor: Actor, named: Mapping[str, Place]
) -> Decision:
    """The policy on what a command names: reserved choice values (a PPE stock) and the
    receiving establishment (inside the actor's scope)."""
    for f in specs:
        if f.name in values and f.reserved:
            decision = can_choose(actor, f, values[f.name])
            if not decision:
                return decision
    for place in named.values():
        decision = can_receive(actor, place)
        if not decision:
            return decision
    return Decision(True)


def _with_fallbacks(
    spec: WorkflowSpec, raw: Mapping[str, object], place: Place
) -> Mapping[str, object]:
    """``raw`` with each missing field that falls back on the directory (a delivery address)
    filled from ``place``, when the directory has the value."""
    filled = dict(raw)
    for f in spec.open_fields:
        if f.fallback and filled.get(f.name) in (None, ""):
            value = getattr(place, f.fallback, None)
            if value:
                filled[f.name] = value
    return filled


def _step(state: str, dest: str, version: int, level: str | None, why: str,
          data: dict[str, Any]) -> Draft:  # fmt: skip
    """One automatic step over a rung (``system``), at the command's version: the audit
    replay walks the same static ladder, one transition per rung."""
    reason = f"Niveau {_LEVEL_NAMES.get(str(level), level)} sauté : {_SKIP_WHY[why]}"
    data = {"fields": {}, **data, "level_skipped": level, "why": why}
    return Draft(
        SYSTEM.login, SYSTEM.role, SYSTEM.org, Action.TRANSITION, state, dest, version, reason,
        data,
    )  # fmt: skip


def _up_to(spec: WorkflowSpec, actor: Actor, place: Place) -> list[Draft]:
    """A regulator opening on behalf of an establishment: the steps from the initial state up
    the ladder (its deadline trigger) to the first rung the regulator holds, none if the
    ladder never reaches it."""
    steps: list[Draft] = []
    state = spec.initial
    for _ in spec.states:
        held = spec.state(state)
        if held.level == actor.role and state != spec.initial:
            return steps
        trigger = held.on_deadline
        if not trigger or spec.transition(state, trigger) is None:
            return []
        dest = spec.fire(state, trigger)
        why = "opened_by_regulator"
        if state != spec.initial and spec.skips(state, place):
            why = "turned_off" if state in spec.skipped else "no_organisation"
        data = {"trigger": trigger, "on_behalf_of": place.org}
        steps.append(_step(state, dest, 1, held.level, why, data))
        state = dest
    return []


def _check_controllable(case: CaseView, action: str) -> None:
    if case.final:
        raise Conflict(
            f"case {case.reference} is {case.state} (closed): there is no deadline to {action}",
            why="case_closed",
            case=case.reference,
        )
    if action == Control.HOLD and case.on_hold:
        raise Conflict(
            f"case {case.reference} is already on hold: resume it first",
            why="already_on_hold",
            case=case.reference,
        )
    if action == Control.RESUME and not case.on_hold:
        raise Conflict(
            f"case {case.reference} is not on hold", why="not_on_hold", case=case.reference
        )
    if action == Control.EXTEND and case.on_hold:
        raise Conflict(
            f"case {case.reference} is on hold: resume it before extending",
            why="on_hold",
            case=case.reference,
        )


def decide(
    spec: WorkflowSpec,
    case: CaseView,
    actor: Actor,
    command: Command,
    now: datetime,
    policy: ReminderPolicy = ReminderPolicy(),  # noqa: B008 - frozen, immutable default
) -> Outcome:
    """One trigger on one case, decided with ``spec`` alone (the table-driven tests' entry)."""
    return Decider(WorkflowRegistry([spec]), policy).fire(case, actor, command, now)
