"""Workflow definitions: declared tables turned into validated, frozen specs and one static machine.

A workflow module in ``workflows/`` writes its states and transitions as plain tables and calls
``define``; this module checks them (unknown or unreachable states, a waiting state without a
deadline, a trigger no role may fire are load errors), builds the one ``transitions.Machine``
that every case of the kind is fired on (never a machine per case), and draws the Mermaid
diagram from the same definition. Values typed by users are parsed here against ``FieldSpec``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from itertools import pairwise
from typing import Any

from transitions import Machine

from engine.errors import InputError, NotFound, WorkflowError

__all__ = [
    "ACTING_ROLES",
    "DATE_RANGE",
    "FIELD_TYPES",
    "INT_RANGE",
    "ROLES",
    "FieldSpec",
    "StateSpec",
    "TransitionSpec",
    "WorkflowRegistry",
    "WorkflowSpec",
    "define",
    "format_duration",
    "parse_duration",
]

ROLES = (
    "establishment",
    "ght",
    "umac",
    "ars",
    "ars_zone",
    "ccs",
    "spf",
    "sfctcv",
    "auditor",
    "admin",
    "system",
)
# Roles that may fire triggers at all; auditor and admin act on no case, and the SFCTCV
# referent advises the ARS and the CCS on ECMO and reads those cases (DESIGN.md).
ACTING_ROLES = ("establishment", "ght", "umac", "ars", "ars_zone", "ccs", "spf")
FIELD_TYPES = ("text", "int", "bool", "date", "choice", "ref", "hospital", "lines", "duration")
INCIDENT = "incident"  # on_deadline at the top of a ladder: nobody left to escalate to
OVERDUE = "overdue"  # on_deadline of a date the case carries (a loan's return, a delivery)
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{3,31}$")
MAX_LINES = 20  # lines of one PPE request
LINE_COLUMNS = ("item", "quantity", "stock_on_hand", "weekly_consumption")
_DURATION = re.compile(r"^(\d+)\s*(s|m|min|h|d)$")
_DIGITS = re.compile(r"[+-]?[0-9]+")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Sane bounds of what users type: a quantity of masks or gowns, a return or delivery date.
INT_RANGE = (1, 10_000_000)
_INT_MAX = f"{INT_RANGE[1]:,}".replace(",", " ")
DATE_RANGE = (date(2000, 1, 1), date(2100, 12, 31))
_ISO_DURATION = re.compile(r"^PT?(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")


@dataclass(frozen=True)
class FieldSpec:
    """A value a user gives when opening a case or firing a trigger."""

    name: str
    type: str
    required: bool = True
    choices: tuple[str, ...] = ()  # a choice's values; the items of a "lines" field
    label: str = ""
    # choice values only some roles may give, e.g. (("national", ("spf",)),): a refusal else
    reserved: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # when not given: this attribute of the case's place in the directory (delivery_address)
    fallback: str = ""
    # required when another field has this value, e.g. ("covid", False): the loss of chance
    required_when: tuple[str, object] | tuple[()] = ()

    def roles_for(self, value: object) -> tuple[str, ...] | None:
        """The roles that may give ``value`` (None: anyone)."""
        for reserved, roles in self.reserved:
            if reserved == value:
                return roles
        return None

    def parse(self, raw: object) -> Any:
        """The stored (JSON) form of ``raw``, or an InputError naming the field."""
        if isinstance(raw, str) and "\x00" in raw:
            raise InputError(
                f"field {self.name!r}: contains the NUL character (U+0000); remove it",
                field=self.name,
            )
        if isinstance(raw, str) and _SURROGATE.search(raw):
            raise InputError(
                f"field {self.name!r}: contains a lone surrogate (U+D800 to U+DFFF), which is "
                "not text; send the value in UTF-8",
                field=self.name,
            )
        try:
            return _PARSERS[self.type](self, raw)
        except FieldError as exc:
            raise InputError(
                f"field {self.name!r}: {exc}", why=exc.why, field=self.name, **exc.params
            ) from None
        except (ValueError, TypeError) as exc:
            raise InputError(f"field {self.name!r}: {exc}", field=self.name) from None


class FieldError(ValueError):
    """A malformed value with its own catalogue key (``why``) and parameters."""

    def __init__(self, message: str, why: str, **params: object) -> None:
        super().__init__(message)
        self.why, self.params = why, params


def _text(spec: FieldSpec, raw: object) -> str:
    text = str(raw).strip()
    if not text:
        raise ValueError("is empty; give a value")
    if len(text) > 2000:
        raise ValueError("is longer than 2000 characters; shorten it")
    return text


def _int(spec: FieldSpec, raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ValueError(f"{raw!r} is not a whole number")
    if isinstance(raw, str) and not _DIGITS.fullmatch(raw.strip()):
        # int() also takes '1_000' and digits of other scripts ('٣'): only 0-9 are a quantity
        raise ValueError(f"{raw!r} is not a whole number written with digits 0-9, e.g. 1200")
    if isinstance(raw, str) and len(raw.strip()) > 18:  # int() refuses past 4300 digits
        raise ValueError(f"the number is out of range: give a whole number from 1 to {_INT_MAX}")
    value = int(raw)
    if value <= 0:
        raise ValueError(f"{value} must be greater than zero")
    if value > INT_RANGE[1]:
        shown = f"{value}" if len(str(raw)) <= 20 else "the number"
        raise ValueError(f"{shown} is out of range: give a whole number from 1 to {_INT_MAX}")
    return value


def _bool(spec: FieldSpec, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"yes", "oui", "true", "1"}:
        return True
    if text in {"no", "non", "false", "0"}:
        return False
    raise ValueError(f"{raw!r} is not yes or no")


def _date(spec: FieldSpec, raw: object) -> str:
    text = str(raw).strip()
    try:
        if not _ISO_DATE.fullmatch(text):
            raise ValueError
        value = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{raw!r} is not a date; write YYYY-MM-DD") from None
    if not DATE_RANGE[0] <= value <= DATE_RANGE[1]:
        # a deadline is computed from it: 9999-12-31 would overflow and leave the case stuck
        raise ValueError(
            f"{value.isoformat()} is out of range: give a date from "
            f"{DATE_RANGE[0].isoformat()} to {DATE_RANGE[1].isoformat()}"
        )
    return value.isoformat()


def _choice(spec: FieldSpec, raw: object) -> str:
    text = str(raw).strip()
    if text not in spec.choices:
        raise ValueError(f"{text!r} is not one of {', '.join(spec.choices)}")
    return text


def _ref(spec: FieldSpec, raw: object) -> str:
    """A pseudonymous patient reference (PAT-0042): never anything that looks like a name.

    4 to 32 letters, digits or dashes, with at least one digit, and no two words of letters
    side by side unless both are in capitals (a code such as PAT-RACE-3): "Jean-Dupont",
    "Jean Dupont", "dupont-jean-7" are refused. A pseudonym is made by the establishment's own
    numbering; a name must never reach the regulation's log.
    """
    text = str(raw).strip()
    if not _REF.match(text) or not any(c.isdigit() for c in text):
        raise FieldError(
            f"{text[:40]!r} is not a pseudonymous reference: 4 to 32 letters, digits or dashes "
            "with at least one digit (e.g. PAT-0042), never the patient's name",
            "bad_reference",
        )
    if _looks_like_name(text):
        raise FieldError(
            f"{text[:40]!r} looks like a name (two words of letters side by side): give the "
            "pseudonymous reference (e.g. PAT-0042), never the patient's name",
            "reference_looks_like_name",
        )
    return text


def _field_duration(spec: FieldSpec, raw: object) -> str:
    """A duration typed by a user (6h, 45m, 2d, PT1H30M), stored in its short form."""
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a duration; write 45m, 6h or 2d")
    try:
        return format_duration(parse_duration(raw))
    except InputError as exc:
        raise ValueError(exc.message) from None


def _looks_like_name(text: str) -> bool:
    """Two words of letters side by side, not both in capitals: "Jean-Dupont-1", "dupont-jean-2"
    (a pseudonym's letters are a code such as PAT or ECMO, in capitals, beside its digits)."""
    parts = text.split("-")
    return any(
        a.isalpha() and b.isalpha() and len(a) > 1 and len(b) > 1
        and not (a.isupper() and b.isupper())
        for a, b in pairwise(parts)
    )  # fmt: skip


def _count(spec: FieldSpec, raw: object, *, zero: bool) -> int:
    """A whole number of the lines: 0 allowed where ``zero`` (a stock can be empty)."""
    if zero and (raw == 0 or (isinstance(raw, str) and raw.strip() == "0")):
        return 0
    return _int(spec, raw)


def _lines(spec: FieldSpec, raw: object) -> list[dict[str, Any]]:
    """Request lines: [{item, quantity, stock_on_hand, weekly_consumption}], as a list or JSON.

    At least one line, at most ``MAX_LINES``, each item once; an error names the line (from
    1) and the column.
    """
    value: object = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            raise FieldError(
                "is not a JSON list of lines, e.g. "
                '[{"item": "ffp2_mask", "quantity": 5000, "stock_on_hand": 800, '
                '"weekly_consumption": 3000}]',
                "lines_not_a_list",
            ) from None
    if not isinstance(value, list) or not value:
        raise FieldError("give at least one line (item, quantity...)", "lines_empty")
    if len(value) > MAX_LINES:
        raise FieldError(
            f"has {len(value)} lines; at most {MAX_LINES}", "lines_too_many", limit=MAX_LINES
        )
    lines, seen = [], set()
    for number, line in enumerate(value, 1):
        parsed = _line(spec, number, line)
        if parsed["item"] in seen:
            raise FieldError(
                f"line {number}: {parsed['item']} is already on an earlier line; one line per item",
                "line_item_twice",
                line=number,
                item=parsed["item"],
            )
        seen.add(parsed["item"])
        lines.append(parsed)
    return lines


def _line(spec: FieldSpec, number: int, line: object) -> dict[str, Any]:
    """One request line, its columns checked; an error names the line and the column."""
    if not isinstance(line, dict):
        raise FieldError(
            f"line {number} is not an object with {', '.join(LINE_COLUMNS)}",
            "line_not_an_object",
            line=number,
        )
    unknown = sorted(set(map(str, line)) - set(LINE_COLUMNS))
    if unknown:
        raise FieldError(
            f"line {number}: unknown column(s) {', '.join(unknown)}; columns: "
            + ", ".join(LINE_COLUMNS),
            "line_unknown_column",
            line=number,
            column=unknown[0],
        )
    parsed: dict[str, Any] = {}
    for column in LINE_COLUMNS:
        cell = line.get(column)
        if cell is None or cell == "":
            raise FieldError(
                f"line {number}: {column} is missing", "line_missing", line=number, column=column
            )
        try:
            if column == "item":
                text = str(cell).strip()
                if text not in spec.choices:
                    raise ValueError(f"{text[:40]!r} is not one of {', '.join(spec.choices)}")
                parsed[column] = text
            else:
                parsed[column] = _count(spec, cell, zero=column != "quantity")
        except ValueError as exc:
            raise FieldError(
                f"line {number}, {column}: {exc}", "line_bad_value", line=number, column=column
            ) from None
    return parsed


def _hospital(spec: FieldSpec, raw: object) -> str:
    text = str(raw).strip()
    if not re.fullmatch(r"[0-9][0-9AB][0-9]{7}", text):
        raise ValueError(f"{text!r} is not a FINESS number (9 characters, e.g. 310781406)")
    return text


_PARSERS: dict[str, Callable[[FieldSpec, object], Any]] = {
    "text": _text,
    "int": _int,
    "bool": _bool,
    "date": _date,
    "choice": _choice,
    "ref": _ref,
    "hospital": _hospital,
    "lines": _lines,
    "duration": _field_duration,
}


@dataclass(frozen=True)
class StateSpec:
    name: str
    label: str
    level: str | None = None
    waiting: bool = False
    deadline: timedelta | None = None
    on_deadline: str | None = None
    # "trigger.field": a date the case carries, due at its end; several, space-separated,
    # are looked up in turn (a loan extended by ``extend_loan.return_by`` before the
    # ``resolve.return_by`` it replaces)
    due_field: str | None = None
    final: bool = False
    # a rung a case passes over when nobody holds it for that case (a hospital with no GHT)
    # or when the deployment turns it off (``WorkflowSpec.skipped``)
    optional: bool = False


@dataclass(frozen=True)
class TransitionSpec:
    trigger: str
    source: str
    dest: str
    roles: tuple[str, ...]
    fields: tuple[FieldSpec, ...] = ()
    any_level: bool = False  # e.g. the requester may cancel whoever holds the case
    lender: bool = False  # only the case's lender fires it (policy.is_lender), at any level
    receiver: bool = False  # only the transfer's receiving establishment (policy.is_receiver)


@dataclass(frozen=True)
class WorkflowSpec:
    kind: str
    title: str
    prefix: str
    initial: str
    open_roles: tuple[str, ...]
    open_fields: tuple[FieldSpec, ...]
    states: tuple[StateSpec, ...]
    transitions: tuple[TransitionSpec, ...]
    skipped: frozenset[str] = frozenset()  # optional states this deployment turns off
    open_for: tuple[str, ...] = ("hospital",)  # the kinds of organisation a case is opened for
    _machine: Machine = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def state(self, name: str) -> StateSpec:
        for state in self.states:
            if state.name == name:
                return state
        raise NotFound(
            f"workflow {self.kind} has no state {name!r}; states: "
            + ", ".join(s.name for s in self.states)
        )

    @property
    def triggers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.trigger for t in self.transitions))

    def transition(self, source: str, trigger: str) -> TransitionSpec | None:
        for spec in self.transitions:
            if spec.source == source and spec.trigger == trigger:
                return spec
        return None

    def allowed(self, source: str) -> tuple[TransitionSpec, ...]:
        return tuple(t for t in self.transitions if t.source == source)

    def skips(self, name: str, place: Any) -> bool:
        """Does a case at ``place`` pass over state ``name``? Only an optional state, turned off
        by the deployment or with nobody at its level for that place (no GHT)."""
        state = self.state(name)
        if not state.optional:
            return False
        if name in self.skipped:
            return True
        holder = {"ght": "ght", "umac": "zone", "ars_zone": "zone", "ars": "region"}.get(
            state.level or ""
        )
        return holder is not None and not getattr(place, holder, None)

    @property
    def machine(self) -> Machine:
        return self._machine

    def fire(self, state: str, trigger: str) -> str:
        """The state the static machine reaches from ``state`` by ``trigger``."""
        cursor = _Cursor(state)
        self._machine.events[trigger].trigger(cursor)
        return cursor.state

    def mermaid(self) -> str:
        """The diagram in Mermaid, drawn once per spec (drawing costs milliseconds) and kept."""
        drawn: str | None = self.__dict__.get("_mermaid")
        if drawn is None:
            drawn = self._draw_mermaid()
            object.__setattr__(self, "_mermaid", drawn)  # a cache, not a field: frozen stays
        return drawn

    def _draw_mermaid(self) -> str:
        from transitions.extensions import GraphMachine

        holder = _Cursor(self.initial)
        GraphMachine(
            model=holder,
            states=[s.name for s in self.states],
            transitions=_machine_transitions(self),
            initial=self.initial,
            auto_transitions=False,
            graph_engine="mermaid",
            title=self.title,
            show_conditions=False,
        )
        return str(holder.get_graph().draw(None))  # type: ignore[attr-defined]


class _Cursor:
    """The thin adapter the static machine fires on: only a state, no row, no callbacks."""

    def __init__(self, state: str) -> None:
        self.state = state


def _machine_transitions(spec: WorkflowSpec) -> list[dict[str, str]]:
    return [{"trigger": t.trigger, "source": t.source, "dest": t.dest} for t in spec.transitions]


MAX_DURATION = timedelta(days=3660)


def parse_duration(value: str | int | timedelta) -> timedelta:
    """``45m``, ``2h``, ``1d``, ``90s``, ``PT1H30M`` or a number of seconds (at most 10 years)."""
    try:
        result = _duration(value)
    except (OverflowError, ValueError):
        result = MAX_DURATION * 2
    if result <= timedelta(0):
        raise InputError(f"duration {value!r} must be longer than zero")
    if result > MAX_DURATION:
        raise InputError(f"duration {value!r} is longer than 10 years: write a realistic one")
    return result


def _duration(value: str | int | timedelta) -> timedelta:
    if isinstance(value, bool):
        raise InputError(f"{value!r} is not a duration; write 45m, 2h, 1d or PT1H30M")
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int):
        result = timedelta(seconds=value)
    else:
        text = value.strip()
        short = _DURATION.match(text)
        iso = _ISO_DURATION.match(text.upper()) if not short else None
        if short:
            unit = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[short.group(2)]
            result = timedelta(seconds=int(short.group(1)) * unit)
        elif text.isdigit():
            result = timedelta(seconds=int(text))
        elif iso and any(iso.groups()):
            d, h, m, s = (int(g or 0) for g in iso.groups())
            result = timedelta(days=d, hours=h, minutes=m, seconds=s)
        else:
            raise InputError(f"{value!r} is not a duration; write 45m, 2h, 1d or PT1H30M")
    return result


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def define(
    *,
    kind: str,
    title: str,
    prefix: str,
    open_roles: Sequence[str],
    open_fields: Sequence[FieldSpec],
    states: Iterable[Sequence[Any]],
    transitions: Iterable[Sequence[Any]],
    trigger_fields: Mapping[str, Sequence[FieldSpec]] | None = None,
    open_for: Sequence[str] = ("hospital",),
) -> WorkflowSpec:
    """Build and validate a workflow from its tables.

    ``states`` rows: (name, label, level, deadline, on_deadline, flags) where flags holds
    "waiting" and/or "final". ``transitions`` rows: (trigger, source, dest, roles, flags)
    where roles is a space-separated string and flags may hold "any_level". The first
    state is the initial one.
    """
    fields_by_trigger = {k: tuple(v) for k, v in (trigger_fields or {}).items()}
    state_specs = tuple(_state_row(kind, row) for row in states)
    transition_specs = tuple(_transition_row(kind, row, fields_by_trigger) for row in transitions)
    if not state_specs:
        raise WorkflowError(f"workflow {kind}: no states")
    spec = WorkflowSpec(
        kind=kind,
        title=title,
        prefix=prefix,
        initial=state_specs[0].name,
        open_roles=tuple(open_roles),
        open_fields=tuple(open_fields),
        states=state_specs,
        transitions=transition_specs,
        open_for=tuple(open_for),
    )
    return _validated(spec)


def _state_row(kind: str, row: Sequence[Any]) -> StateSpec:
    name, label, level, deadline, on_deadline, flags = row
    try:
        duration = parse_duration(deadline) if deadline and not deadline.startswith("@") else None
    except InputError as exc:
        raise WorkflowError(f"workflow {kind}, state {name}: {exc.message}") from None
    words = set(flags.split())
    unknown = words - {"waiting", "final", "optional"}
    if unknown:
        raise WorkflowError(f"workflow {kind}, state {name}: unknown flag(s) {sorted(unknown)}")
    return StateSpec(
        name=name,
        label=label,
        level=level or None,
        waiting="waiting" in words,
        deadline=duration,
        on_deadline=on_deadline or None,
        due_field=deadline[1:] if deadline and deadline.startswith("@") else None,
        final="final" in words,
        optional="optional" in words,
    )


def _transition_row(
    kind: str, row: Sequence[Any], fields: Mapping[str, tuple[FieldSpec, ...]]
) -> TransitionSpec:
    trigger, source, dest, roles, flags = row
    words = set(flags.split())
    if words - {"any_level", "lender", "receiver"}:
        raise WorkflowError(f"workflow {kind}, trigger {trigger}: unknown flag(s) {sorted(words)}")
    return TransitionSpec(
        trigger=trigger,
        source=source,
        dest=dest,
        roles=tuple(roles.split()),
        fields=fields.get(trigger, ()),
        any_level="any_level" in words,
        lender="lender" in words,
        receiver="receiver" in words,
    )


def _validated(spec: WorkflowSpec) -> WorkflowSpec:
    kind = spec.kind
    names = [s.name for s in spec.states]
    if len(set(names)) != len(names):
        raise WorkflowError(f"workflow {kind}: a state is declared twice in {names}")
    known = set(names)
    for role in spec.open_roles:
        if role not in ACTING_ROLES:
            raise WorkflowError(f"workflow {kind}: unknown opening role {role!r}")
    for t in spec.transitions:
        _check_transition(spec, known, t)
    seen = {(t.source, t.trigger) for t in spec.transitions}
    if len(seen) != len(spec.transitions):
        raise WorkflowError(f"workflow {kind}: a (state, trigger) pair is declared twice")
    for f in spec.open_fields:
        _check_field(kind, f)
    for state in spec.states:
        _check_state(spec, state)
    _check_reachable(spec)
    _check_optional(spec)
    machine = Machine(
        model=None,
        states=names,
        transitions=_machine_transitions(spec),
        initial=spec.initial,
        auto_transitions=False,
    )
    return replace(spec, _machine=machine)


def _check_transition(spec: WorkflowSpec, known: set[str], t: TransitionSpec) -> None:
    kind = spec.kind
    for end in (t.source, t.dest):
        if end not in known:
            raise WorkflowError(
                f"workflow {kind}, trigger {t.trigger}: unknown state {end!r}; "
                f"states are {', '.join(sorted(known))}"
            )
    if not t.roles:
        raise WorkflowError(f"workflow {kind}, trigger {t.trigger} from {t.source}: no role")
    for role in t.roles:
        if role not in ACTING_ROLES:
            raise WorkflowError(
                f"workflow {kind}, trigger {t.trigger}: {role!r} is not a role that acts; "
                f"roles are {', '.join(ACTING_ROLES)}"
            )
    if spec.state(t.source).final:
        raise WorkflowError(f"workflow {kind}: final state {t.source} has trigger {t.trigger}")
    for f in t.fields:
        _check_field(kind, f)


def _check_field(kind: str, f: FieldSpec) -> None:
    if f.type not in FIELD_TYPES:
        raise WorkflowError(f"workflow {kind}: field {f.name} has unknown type {f.type!r}")
    if f.type in ("choice", "lines") and not f.choices:
        raise WorkflowError(f"workflow {kind}: {f.type} field {f.name} lists no choices")
    for value, _roles in f.reserved:
        if f.type != "choice" or value not in f.choices:
            raise WorkflowError(
                f"workflow {kind}: field {f.name} reserves {value!r}, which is not one of its "
                "choices"
            )


def _check_state(spec: WorkflowSpec, state: StateSpec) -> None:
    kind, out = spec.kind, spec.allowed(state.name)
    if state.level is not None and state.level not in ACTING_ROLES:
        raise WorkflowError(f"workflow {kind}, state {state.name}: unknown level {state.level!r}")
    if not state.final and not out:
        raise WorkflowError(f"workflow {kind}: state {state.name} is a dead end; mark it final")
    if not state.final and state.level is None:
        raise WorkflowError(f"workflow {kind}: state {state.name} has no level to hold it")
    if state.waiting and state.deadline is None:
        raise WorkflowError(f"workflow {kind}: waiting state {state.name} has no deadline")
    if (state.deadline is not None or state.due_field) and not state.on_deadline:
        raise WorkflowError(f"workflow {kind}: state {state.name} says no on_deadline")
    if state.due_field:
        _check_due_field(spec, state)
    on_deadline = state.on_deadline
    if on_deadline == OVERDUE and not state.due_field:
        raise WorkflowError(f"workflow {kind}: state {state.name} is 'overdue' of no date field")
    special = (INCIDENT, OVERDUE)
    if on_deadline and on_deadline not in special and not spec.transition(state.name, on_deadline):
        raise WorkflowError(
            f"workflow {kind}: state {state.name} escalates by {on_deadline!r}, "
            "which it has no transition for"
        )


def _check_due_field(spec: WorkflowSpec, state: StateSpec) -> None:
    for one in (state.due_field or "").split():
        trigger, _, name = one.partition(".")
        dates = {
            f.name
            for t in spec.transitions
            if t.trigger == trigger
            for f in t.fields
            if f.type == "date"
        }
        if name not in dates:
            raise WorkflowError(
                f"workflow {spec.kind}: state {state.name} is due at {one!r}, "
                "which is no date field of that trigger"
            )


def _check_optional(spec: WorkflowSpec) -> None:
    """An optional state is passed over by the trigger that leads into it: it must be left by
    that trigger too; the initial and final states are never optional."""
    for state in spec.states:
        if not state.optional:
            if state.name in spec.skipped:
                raise WorkflowError(
                    f"workflow {spec.kind}: state {state.name} is not optional and cannot be "
                    "turned off"
                )
            continue
        if state.name == spec.initial or state.final:
            raise WorkflowError(
                f"workflow {spec.kind}: the initial or a final state ({state.name}) is never "
                "optional"
            )
        for t in spec.transitions:
            if t.dest == state.name and spec.transition(state.name, t.trigger) is None:
                raise WorkflowError(
                    f"workflow {spec.kind}: optional state {state.name} is entered by "
                    f"{t.trigger} but not left by it, so it cannot be passed over"
                )


def _check_reachable(spec: WorkflowSpec) -> None:
    reached, frontier = {spec.initial}, [spec.initial]
    while frontier:
        for t in spec.allowed(frontier.pop()):
            if t.dest not in reached:
                reached.add(t.dest)
                frontier.append(t.dest)
    missing = [s.name for s in spec.states if s.name not in reached]
    if missing:
        raise WorkflowError(f"workflow {spec.kind}: unreachable state(s) {', '.join(missing)}")


class WorkflowRegistry:
    """The loaded workflows, keyed by kind; an unknown kind says which kinds exist."""

    def __init__(self, specs: Iterable[WorkflowSpec]) -> None:
        self._specs = {spec.kind: spec for spec in specs}

    def __getitem__(self, kind: str) -> WorkflowSpec:
        try:
            return self._specs[kind]
        except KeyError:
            raise NotFound(
                f"unknown workflow {kind!r}; workflows are {', '.join(self._specs)}", kind=kind
            ) from None

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def by_prefix(self, prefix: str) -> WorkflowSpec | None:
        for spec in self._specs.values():
            if spec.prefix == prefix:
                return spec
        return None

    def with_deadlines(self, overrides: Mapping[str, Mapping[str, str]]) -> WorkflowRegistry:
        """A registry whose deadlines come from configuration; unknown names are errors."""
        specs = dict(self._specs)
        for kind, states in overrides.items():
            spec = self[kind]
            new_states = list(spec.states)
            for name, value in states.items():
                old = spec.state(name)
                if old.deadline is None:
                    raise WorkflowError(
                        f"deadline for {kind}.{name}: that state has no deadline to change; "
                        "states with one: " + ", ".join(s.name for s in spec.states if s.deadline)
                    )
                try:
                    duration = parse_duration(value)
                except InputError as exc:
                    raise WorkflowError(f"deadline for {kind}.{name}: {exc.message}") from None
                new_states[new_states.index(old)] = replace(old, deadline=duration)
            specs[kind] = _validated(replace(spec, states=tuple(new_states)))
        return WorkflowRegistry(specs.values())

    def without_states(self, off: Mapping[str, Iterable[str]]) -> WorkflowRegistry:
        """A registry whose optional states named in ``off`` (per kind) are passed over by
        every case (a deployment without the GHT step of the PPE ladder)."""
        specs = dict(self._specs)
        for kind, names in off.items():
            spec = self[kind]
            for name in names:
                spec.state(name)  # an unknown state says which exist
            skipped = spec.skipped | frozenset(names)
            specs[kind] = _validated(replace(spec, skipped=skipped))
        return WorkflowRegistry(specs.values())
