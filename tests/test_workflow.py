"""Workflows as data: the shipped three, load-time validation, diagrams, deadlines, fields."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.errors import InputError, RegulError, WorkflowError
from engine.workflow import (
    ACTING_ROLES,
    FieldSpec,
    WorkflowRegistry,
    WorkflowSpec,
    define,
    format_duration,
    parse_duration,
)
from interfaces.app import App, build_app
from workflows import ECMO, PPE, TRANSFER, default_registry

REGISTRY = default_registry()
H, M = timedelta(hours=1), timedelta(minutes=1)
# DESIGN.md, "The three workflows (defaults)".
DESIGN_DEADLINES = {
    "ecmo": {
        "requested": 1 * H,
        "umac_review": 2 * H,
        "ars_regulation": 4 * H,
        "national_regulation": 4 * H,
    },
    "ppe": {
        "requested": 4 * H,
        "ght_review": 24 * H,
        "ars_review": 24 * H,
        "national_review": 48 * H,
    },
    "transfer": {
        "requested": 30 * M,
        "ars_regulation": 2 * H,
        "zone_regulation": 4 * H,
        "national_regulation": 6 * H,
    },
}
LADDER_TOP = {
    "ecmo": "national_regulation",
    "ppe": "national_review",
    "transfer": "national_regulation",
}


# -- the shipped workflows -----------------------------------------------------------------


def test_shipped_workflows_load() -> None:
    """The default registry holds ecmo, ppe and transfer, each with its own prefix and machine."""
    assert REGISTRY.kinds() == ("ecmo", "ppe", "transfer")
    assert [REGISTRY[k] for k in REGISTRY.kinds()] == [ECMO, PPE, TRANSFER]
    assert {spec.prefix for spec in REGISTRY} == {"ECMO", "EPI", "TRF"}
    for spec in REGISTRY:
        assert spec.initial == "requested"
        assert spec.machine is not None
        assert REGISTRY.by_prefix(spec.prefix) is spec
        # the ARS also opens a PPE request on behalf of an establishment (seed 004)
        assert spec.open_roles == (
            ("establishment", "ars") if spec.kind == "ppe" else ("establishment",)
        )


@pytest.mark.parametrize("kind", ["ecmo", "ppe", "transfer"])
def test_every_state_is_held_and_every_wait_has_a_deadline(kind: str) -> None:
    """Every non-final state has a level; every waiting state a deadline and what happens then."""
    spec = REGISTRY[kind]
    for state in spec.states:
        if state.final:
            assert state.level is None, state.name
            assert spec.allowed(state.name) == ()
        else:
            assert state.level in ACTING_ROLES, state.name
            assert spec.allowed(state.name), state.name
        if state.waiting:
            assert state.deadline is not None, state.name
            assert state.on_deadline, state.name
            expected = "incident" if state.name == LADDER_TOP[kind] else "escalate"
            assert state.on_deadline == expected, state.name
        elif kind == "transfer" and state.name.startswith("proposed_"):
            # the receiving establishment answers within the hour, else back to the proposer
            assert (state.deadline, state.on_deadline) == (timedelta(hours=1), "withdraw")
        elif (kind, state.name) == ("ecmo", "dispatched"):  # the borrower confirms the start
            assert (state.deadline, state.on_deadline) == (timedelta(hours=12), "incident")
        else:
            assert state.deadline is None, state.name
    assert {s.name for s in spec.states if s.final} == {"closed", "cancelled", "rejected"}


@pytest.mark.parametrize("kind", ["ecmo", "ppe", "transfer"])
def test_default_deadlines_match_design(kind: str) -> None:
    """The default deadlines of the waiting states are DESIGN.md's."""
    spec = REGISTRY[kind]
    assert {s.name: s.deadline for s in spec.states if s.waiting} == DESIGN_DEADLINES[kind]
    assert [s.name for s in spec.states if s.waiting] == list(DESIGN_DEADLINES[kind])


@pytest.mark.parametrize("kind", ["ecmo", "ppe", "transfer"])
def test_static_machine_fires_every_declared_transition(kind: str) -> None:
    """The one machine per workflow takes every declared (state, trigger) to its destination."""
    spec = REGISTRY[kind]
    for t in spec.transitions:
        assert spec.fire(t.source, t.trigger) == t.dest


# -- validation at load --------------------------------------------------------------------

# A small valid workflow in the table style of workflows/ecmo.py; each case below breaks it.
# fmt: off
STATES = [
    # name          label          level            deadline on_deadline flags
    ("requested",  "Demande",     "establishment", "1h",    "escalate", "waiting"),
    ("review",     "Examen",      "ars",           "2h",    "incident", "waiting"),
    ("dispatched", "Attribué",    "establishment", "",      "",         ""),
    ("closed",     "Clôturé",     "",              "",      "",         "final"),
    ("cancelled",  "Annulé",      "",              "",      "",         "final"),
]
TRANSITIONS = [
    # trigger     source        dest          roles            flags
    ("escalate", "requested",  "review",     "establishment", ""),
    ("resolve",  "review",     "dispatched", "ars",           ""),
    ("cancel",   "requested",  "cancelled",  "establishment", "any_level"),
    ("cancel",   "review",     "cancelled",  "establishment", "any_level"),
    ("close",    "dispatched", "closed",     "establishment", ""),
]
# fmt: on


def small(
    states: list[tuple[str, ...]] | None = None,
    transitions: list[tuple[str, ...]] | None = None,
    **kwargs: Any,
) -> WorkflowSpec:
    return define(
        kind="essai",
        title="Essai",
        prefix="ESS",
        open_roles=kwargs.pop("open_roles", ("establishment",)),
        open_fields=kwargs.pop("open_fields", (FieldSpec("patient_ref", "ref"),)),
        states=STATES if states is None else states,
        transitions=TRANSITIONS if transitions is None else transitions,
        **kwargs,
    )


def replaced(
    rows: list[tuple[str, ...]], first: str, row: tuple[str, ...]
) -> list[tuple[str, ...]]:
    """The table with the row that starts with ``first`` replaced by ``row``."""
    assert [r[0] for r in rows].count(first) == 1
    return [row if r[0] == first else r for r in rows]


def test_small_definition_is_valid() -> None:
    """The base table of the validation cases below loads and its machine fires."""
    spec = small()
    assert spec.initial == "requested"
    assert spec.fire("requested", "escalate") == "review"
    assert spec.state("review").deadline == 2 * H


@pytest.mark.parametrize(
    ("states", "transitions", "message"),
    [
        pytest.param(
            None,
            replaced(TRANSITIONS, "resolve", ("resolve", "review", "shipped", "ars", "")),
            "trigger resolve: unknown state 'shipped'; states are ",
            id="unknown-destination",
        ),
        pytest.param(
            None,
            [*TRANSITIONS, ("escalate", "nowhere", "review", "ars", "")],
            "trigger escalate: unknown state 'nowhere'",
            id="unknown-source",
        ),
        pytest.param(
            [*STATES, ("archived", "Archivé", "", "", "", "final")],
            None,
            "unreachable state(s) archived",
            id="unreachable",
        ),
        pytest.param(
            [
                *STATES,
                ("limbo", "Limbes", "ars", "", "", ""),
                ("island", "Île", "ars", "", "", ""),
            ],
            [
                *TRANSITIONS,
                ("drift", "limbo", "island", "ars", ""),
                ("drift", "island", "limbo", "ars", ""),
            ],
            "unreachable state(s) limbo, island",
            id="unreachable-cycle",
        ),
        pytest.param(
            replaced(STATES, "review", ("review", "Examen", "ars", "", "", "waiting")),
            None,
            "waiting state review has no deadline",
            id="waiting-without-deadline",
        ),
        pytest.param(
            replaced(STATES, "review", ("review", "Examen", "ars", "2h", "", "waiting")),
            None,
            "state review says no on_deadline",
            id="deadline-without-on-deadline",
        ),
        pytest.param(
            None,
            replaced(TRANSITIONS, "resolve", ("resolve", "review", "dispatched", "", "")),
            "trigger resolve from review: no role",
            id="no-role",
        ),
        pytest.param(
            None,
            replaced(TRANSITIONS, "resolve", ("resolve", "review", "dispatched", "ars nurse", "")),
            "trigger resolve: 'nurse' is not a role that acts",
            id="unknown-role",
        ),
        pytest.param(
            None,
            replaced(TRANSITIONS, "resolve", ("resolve", "review", "dispatched", "auditor", "")),
            "trigger resolve: 'auditor' is not a role that acts",
            id="role-that-never-acts",
        ),
        pytest.param(
            None,
            [t for t in TRANSITIONS if t[0] != "close"],
            "state dispatched is a dead end; mark it final",
            id="dead-end",
        ),
        pytest.param(
            [*STATES, ("review", "Encore", "ars", "2h", "incident", "waiting")],
            None,
            "a state is declared twice",
            id="duplicate-state",
        ),
        pytest.param(
            replaced(STATES, "review", ("review", "Examen", "ars", "2h", "escalate", "waiting")),
            None,
            "state review escalates by 'escalate', which it has no transition for",
            id="on-deadline-without-transition",
        ),
        pytest.param(
            None,
            [*TRANSITIONS, ("reopen", "closed", "requested", "establishment", "")],
            "final state closed has trigger reopen",
            id="final-with-trigger",
        ),
        pytest.param(
            None,
            [*TRANSITIONS, ("escalate", "requested", "cancelled", "establishment", "")],
            "a (state, trigger) pair is declared twice",
            id="duplicate-transition",
        ),
        pytest.param(
            replaced(STATES, "dispatched", ("dispatched", "Attribué", "", "", "", "")),
            None,
            "state dispatched has no level to hold it",
            id="no-level",
        ),
        pytest.param(
            replaced(STATES, "review", ("review", "Examen", "mayor", "2h", "incident", "waiting")),
            None,
            "state review: unknown level 'mayor'",
            id="unknown-level",
        ),
        pytest.param(
            replaced(STATES, "review", ("review", "Examen", "ars", "2h", "incident", "urgent")),
            None,
            "state review: unknown flag(s) ['urgent']",
            id="unknown-state-flag",
        ),
        pytest.param(
            None,
            replaced(TRANSITIONS, "resolve", ("resolve", "review", "dispatched", "ars", "now")),
            "trigger resolve: unknown flag(s) ['now']",
            id="unknown-transition-flag",
        ),
        pytest.param([], [], "no states", id="empty"),
    ],
)
def test_invalid_definition_is_a_load_error(
    states: list[tuple[str, ...]] | None, transitions: list[tuple[str, ...]] | None, message: str
) -> None:
    """define() refuses a broken table with a WorkflowError naming the workflow and the problem."""
    with pytest.raises(WorkflowError, match=r"^workflow essai") as info:
        small(states, transitions)
    assert message in str(info.value)
    assert info.value.message == str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"open_roles": ("ars", "mayor")}, "unknown opening role 'mayor'"),
        ({"open_fields": (FieldSpec("size", "float"),)}, "field size has unknown type 'float'"),
        ({"open_fields": (FieldSpec("mode", "choice"),)}, "choice field mode lists no choices"),
        (
            {"trigger_fields": {"resolve": (FieldSpec("when", "datetime"),)}},
            "field when has unknown type 'datetime'",
        ),
    ],
    ids=["open-role", "open-field-type", "choice-without-choices", "trigger-field-type"],
)
def test_invalid_roles_and_fields_are_load_errors(kwargs: dict[str, Any], message: str) -> None:
    """Unknown opening roles, field types and empty choice lists are refused at load."""
    with pytest.raises(WorkflowError, match=r"^workflow essai") as info:
        small(**kwargs)
    assert message in str(info.value)


def test_bad_deadline_in_a_table_is_a_load_error_naming_the_state() -> None:
    """A deadline the table writes badly is a WorkflowError that says which workflow and state."""
    states = replaced(STATES, "review", ("review", "Examen", "ars", "soon", "incident", "waiting"))
    with pytest.raises(WorkflowError, match="'soon'") as info:
        small(states)
    assert "essai" in str(info.value)
    assert "review" in str(info.value)


# -- Mermaid -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ecmo", "ppe", "transfer"])
def test_mermaid_draws_every_state_and_transition(kind: str) -> None:
    """The diagram is stateDiagram-v2 with every state and every `source --> dest: trigger`."""
    spec = REGISTRY[kind]
    text = spec.mermaid()
    lines = [line.strip() for line in text.splitlines()]
    assert "stateDiagram-v2" in lines
    assert spec.title in text
    for state in spec.states:
        assert re.search(rf"^\s*state \S*\b{state.name}\b", text, re.MULTILINE), state.name
    arrows = []  # two triggers between the same states share one arrow: "a --> b: x | y"
    for line in lines:
        if "-->" in line and not line.startswith("[*]"):
            head, _, triggers = line.partition(": ")
            arrows += [f"{head}: {t}" for t in triggers.split(" | ")]
    expected = [f"{t.source} --> {t.dest}: {t.trigger}" for t in spec.transitions]
    assert sorted(arrows) == sorted(expected)
    assert f"[*] --> {spec.initial}" in lines


def test_mermaid_of_a_small_definition() -> None:
    """A definition draws its own diagram, with nothing from the shipped workflows."""
    text = small().mermaid()
    assert "review --> dispatched: resolve" in text
    assert "umac" not in text


# -- deadlines from configuration ----------------------------------------------------------


def deadlines(registry: WorkflowRegistry) -> dict[tuple[str, str], timedelta | None]:
    return {(spec.kind, s.name): s.deadline for spec in registry for s in spec.states}


def test_with_deadlines_changes_that_deadline_only() -> None:
    """Overriding ecmo.requested to 45m changes that one deadline; nothing else, not the original."""
    before = deadlines(REGISTRY)
    changed = REGISTRY.with_deadlines({"ecmo": {"requested": "45m"}})
    after = deadlines(changed)
    assert after[("ecmo", "requested")] == 45 * M
    assert {k: v for k, v in after.items() if v != before[k]} == {("ecmo", "requested"): 45 * M}
    assert deadlines(REGISTRY) == before
    assert REGISTRY["ecmo"].state("requested").deadline == H
    spec = changed["ecmo"]
    assert spec.state("requested").on_deadline == "escalate"
    assert spec.fire("requested", "escalate") == "umac_review"
    assert changed["ppe"] is REGISTRY["ppe"]
    assert changed.kinds() == REGISTRY.kinds()


def test_with_deadlines_several_at_once() -> None:
    """Several workflows and states may be overridden together, in any duration spelling."""
    changed = REGISTRY.with_deadlines(
        {
            "ppe": {"requested": "PT1H30M", "national_review": "3d"},
            "transfer": {"requested": "600"},
        }
    )
    assert changed["ppe"].state("requested").deadline == 90 * M
    assert changed["ppe"].state("national_review").deadline == 72 * H
    assert changed["transfer"].state("requested").deadline == 10 * M
    assert REGISTRY.with_deadlines({}) is not REGISTRY
    assert deadlines(REGISTRY.with_deadlines({})) == deadlines(REGISTRY)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lunch": {"requested": "1h"}}, "unknown workflow 'lunch'; workflows are ecmo, ppe"),
        ({"ecmo": {"nowhere": "1h"}}, "workflow ecmo has no state 'nowhere'"),
        (
            {"ecmo": {"closed": "1h"}},
            "deadline for ecmo.closed: that state has no deadline to change",
        ),
        ({"ecmo": {"returned": "1h"}}, "deadline for ecmo.returned"),
        ({"ecmo": {"requested": "soon"}}, "'soon' is not a duration"),
        ({"ecmo": {"requested": "0m"}}, "'0m' must be longer than zero"),
        ({"ecmo": {"requested": "-5m"}}, "'-5m' is not a duration"),
    ],
    ids=[
        "unknown-kind",
        "unknown-state",
        "final",
        "no-deadline",
        "soon",
        "zero",
        "negative",
    ],
)
def test_with_deadlines_refuses_bad_overrides(
    overrides: dict[str, dict[str, str]], message: str
) -> None:
    """Unknown kind or state, a state without deadline, or a bad duration: a clear error."""
    with pytest.raises(RegulError) as info:
        REGISTRY.with_deadlines(overrides)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45m", 45 * M),
        ("45min", 45 * M),
        ("2h", 2 * H),
        ("1d", 24 * H),
        ("90s", timedelta(seconds=90)),
        ("PT1H30M", 90 * M),
        ("pt45m", 45 * M),
        ("P1D", 24 * H),
        ("3600", H),
        (3600, H),
        (" 2h ", 2 * H),
        (timedelta(minutes=5), 5 * M),
    ],
)
def test_parse_duration_accepts(text: Any, expected: timedelta) -> None:
    """Durations are written 45m, 2h, 1d, 90s, ISO-8601 PT1H30M or plain seconds."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", "'soon' is not a duration; write 45m, 2h, 1d or PT1H30M"),
        ("0m", "duration '0m' must be longer than zero"),
        ("-5m", "'-5m' is not a duration"),
        (0, "must be longer than zero"),
        ("PT", "'PT' is not a duration"),
        ("", "'' is not a duration"),
        ("1.5h", "'1.5h' is not a duration"),
        (timedelta(0), "must be longer than zero"),
    ],
)
def test_parse_duration_rejects(text: Any, message: str) -> None:
    """A duration that is not one, or is not positive, is an InputError saying how to write it."""
    with pytest.raises(InputError) as info:
        parse_duration(text)
    assert message in str(info.value)


def test_parse_duration_rejects_absurd_length() -> None:
    """A duration too long for any clock is an InputError, not a crash."""
    with pytest.raises(InputError, match="99999999999d"):
        parse_duration("99999999999d")


@pytest.mark.parametrize(
    ("delta", "text"),
    [(45 * M, "45m"), (2 * H, "2h"), (48 * H, "2d"), (timedelta(seconds=90), "90s")],
)
def test_format_duration_round_trips(delta: timedelta, text: str) -> None:
    """format_duration writes the largest whole unit, and parse_duration reads it back."""
    assert format_duration(delta) == text
    assert parse_duration(text) == delta


# -- settings ------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty working folder and no REGUL_* variables."""
    for name in (
        "REGUL_DATABASE_URL",
        "REGUL_DEADLINES",
        "REGUL_CONFIG",
        "REGUL_SQLITE_SYNCHRONOUS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def built() -> Iterator[list[App]]:
    apps: list[App] = []
    yield apps
    for made in apps:
        made.db.dispose()


def app_of(built: list[App]) -> App:
    built.append(build_app(check_schema=False))
    return built[-1]


def test_settings_default_to_design_deadlines(clean_env: Path, built: list[App]) -> None:
    """With no configuration the application's registry has DESIGN.md's deadlines."""
    app = app_of(built)
    assert deadlines(app.registry) == deadlines(REGISTRY)
    assert app.settings.deadlines == {}


def test_settings_env_deadline_is_honoured(
    clean_env: Path, built: list[App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """REGUL_DEADLINES='{"transfer": {"requested": "10m"}}' makes that deadline 10 minutes."""
    monkeypatch.setenv("REGUL_DEADLINES", '{"transfer": {"requested": "10m"}}')
    app = app_of(built)
    assert app.registry["transfer"].state("requested").deadline == 10 * M
    assert app.runner.registry is app.registry
    before, after = deadlines(REGISTRY), deadlines(app.registry)
    assert {k for k in after if after[k] != before[k]} == {("transfer", "requested")}


def test_settings_toml_deadline_is_honoured(clean_env: Path, built: list[App]) -> None:
    """A regul.toml in the working folder with [deadlines.ppe] requested = "2h" is honoured."""
    (clean_env / "regul.toml").write_text('[deadlines.ppe]\nrequested = "2h"\n', encoding="utf-8")
    app = app_of(built)
    assert app.registry["ppe"].state("requested").deadline == 2 * H
    assert app.registry["ppe"].state("ght_review").deadline == 24 * H


def test_settings_env_beats_toml_and_both_apply(
    clean_env: Path, built: list[App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment wins over regul.toml for the same state; other states of the file stay."""
    (clean_env / "regul.toml").write_text(
        '[deadlines.ppe]\nrequested = "2h"\nght_review = "12h"\n', encoding="utf-8"
    )
    monkeypatch.setenv("REGUL_DEADLINES", '{"ppe": {"requested": "3h"}}')
    app = app_of(built)
    assert app.registry["ppe"].state("requested").deadline == 3 * H
    assert app.registry["ppe"].state("ght_review").deadline == 12 * H


def test_settings_config_file_named_by_env(
    clean_env: Path, built: list[App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """REGUL_CONFIG points at a TOML file elsewhere; a missing one is an InputError naming it."""
    config = clean_env / "conf" / "regul-prod.toml"
    config.parent.mkdir()
    config.write_text('[deadlines.ecmo]\numac_review = "90m"\n', encoding="utf-8")
    monkeypatch.setenv("REGUL_CONFIG", str(config))
    assert app_of(built).registry["ecmo"].state("umac_review").deadline == 90 * M
    monkeypatch.setenv("REGUL_CONFIG", str(clean_env / "missing.toml"))
    with pytest.raises(
        InputError, match=r"REGUL_CONFIG names .*missing\.toml, which is not a file"
    ):
        app_of(built)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ('{"transfer": {"requested": "soon"}}', ["requested", "soon"]),
        ('{"transfer": {"requested": "0m"}}', ["requested", "0m"]),
        ('{"transfer": {"closed": "1h"}}', ["closed"]),
        ('{"transfer": {"nowhere": "1h"}}', ["nowhere"]),
        ('{"lunch": {"requested": "1h"}}', ["lunch"]),
        ('{"transfer": "10m"}', ["transfer"]),
        ("{transfer: 10m", []),
    ],
    ids=[
        "bad-duration",
        "zero",
        "no-deadline",
        "unknown-state",
        "unknown-kind",
        "wrong-shape",
        "not-json",
    ],
)
def test_settings_bad_env_deadline_names_the_setting(
    clean_env: Path,
    built: list[App],
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    names: list[str],
) -> None:
    """A bad REGUL_DEADLINES is an InputError whose message names the deadlines setting and the
    offending entry, so that the CLI prints one line and exits 2."""
    monkeypatch.setenv("REGUL_DEADLINES", value)
    with pytest.raises(InputError) as info:
        app_of(built)
    message = str(info.value)
    assert re.search("(?i)deadline", message), message
    for name in names:
        assert name in message, message


def test_settings_bad_toml_deadline_names_the_setting(clean_env: Path, built: list[App]) -> None:
    """A bad duration in regul.toml is an InputError naming the deadlines setting and the state."""
    (clean_env / "regul.toml").write_text('[deadlines.ppe]\nrequested = "soon"\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        app_of(built)
    message = str(info.value)
    assert re.search("(?i)deadline", message), message
    assert "requested" in message, message


def test_settings_bad_toml_type_names_the_setting(clean_env: Path, built: list[App]) -> None:
    """A deadline written as a number in regul.toml is refused naming deadlines.ppe.requested."""
    (clean_env / "regul.toml").write_text("[deadlines.ppe]\nrequested = 2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad setting deadlines\.ppe\.requested"):
        app_of(built)


def test_settings_unknown_key_is_refused(clean_env: Path, built: list[App]) -> None:
    """A misspelt key in regul.toml is refused, not ignored."""
    (clean_env / "regul.toml").write_text('[deadline.ppe]\nrequested = "2h"\n', encoding="utf-8")
    with pytest.raises(InputError, match="bad setting deadline"):
        app_of(built)


# -- fields --------------------------------------------------------------------------------

_LINE = {"item": "gown", "quantity": 300, "stock_on_hand": 20, "weekly_consumption": 150}
GOOD: list[tuple[FieldSpec, object, object]] = [
    (FieldSpec("summary", "text"), "  Patient stable  ", "Patient stable"),
    (FieldSpec("summary", "text"), "é" * 2000, "é" * 2000),
    (FieldSpec("summary", "text"), 42, "42"),
    (FieldSpec("quantity", "int"), 1200, 1200),
    (FieldSpec("quantity", "int"), "1200", 1200),
    (FieldSpec("quantity", "int"), " 7 ", 7),
    (FieldSpec("covid", "bool"), True, True),
    (FieldSpec("covid", "bool"), False, False),
    (FieldSpec("covid", "bool"), "oui", True),
    (FieldSpec("covid", "bool"), "Yes", True),
    (FieldSpec("covid", "bool"), "true", True),
    (FieldSpec("covid", "bool"), "1", True),
    (FieldSpec("covid", "bool"), "non", False),
    (FieldSpec("covid", "bool"), "NO", False),
    (FieldSpec("covid", "bool"), "false", False),
    (FieldSpec("covid", "bool"), "0", False),
    (FieldSpec("return_by", "date"), "2026-12-15", "2026-12-15"),
    (FieldSpec("return_by", "date"), " 2026-12-15 ", "2026-12-15"),
    (FieldSpec("mode", "choice", choices=("VV", "VA")), "VA", "VA"),
    (FieldSpec("mode", "choice", choices=("VV", "VA")), " VV ", "VV"),
    (FieldSpec("patient_ref", "ref"), "PAT-0001", "PAT-0001"),
    (FieldSpec("patient_ref", "ref"), "a1b2", "a1b2"),
    (FieldSpec("patient_ref", "ref"), "X" * 31 + "1", "X" * 31 + "1"),
    (FieldSpec("receiving_hospital", "hospital"), "349900001", "349900001"),
    (FieldSpec("receiving_hospital", "hospital"), "2A0000012", "2A0000012"),
    (FieldSpec("receiving_hospital", "hospital"), "2B0000012", "2B0000012"),
    (FieldSpec("time_to_rupture", "duration"), "6h", "6h"),
    (FieldSpec("time_to_rupture", "duration"), "PT90M", "90m"),
    (FieldSpec("lines", "lines", choices=("gown",)), [_LINE], [_LINE]),
    (FieldSpec("lines", "lines", choices=("gown",)), json.dumps([_LINE]), [_LINE]),
    (
        FieldSpec("lines", "lines", choices=("gown",)),
        [{**_LINE, "stock_on_hand": "0", "quantity": "12"}],
        [{**_LINE, "stock_on_hand": 0, "quantity": 12}],
    ),
]
BAD: list[tuple[FieldSpec, object, str]] = [
    (FieldSpec("summary", "text"), "", "is empty"),
    (FieldSpec("summary", "text"), "   ", "is empty"),
    (FieldSpec("summary", "text"), "x" * 2001, "longer than 2000 characters"),
    (FieldSpec("quantity", "int"), "lots", "not a whole number"),
    (FieldSpec("quantity", "int"), "12.5", "not a whole number"),
    (FieldSpec("quantity", "int"), 12.5, "not a whole number"),
    (FieldSpec("quantity", "int"), True, "not a whole number"),
    (FieldSpec("quantity", "int"), 0, "must be greater than zero"),
    (FieldSpec("quantity", "int"), "-4", "must be greater than zero"),
    (FieldSpec("quantity", "int"), None, "not a whole number"),
    (FieldSpec("covid", "bool"), "maybe", "is not yes or no"),
    (FieldSpec("covid", "bool"), 2, "is not yes or no"),
    (FieldSpec("covid", "bool"), "", "is not yes or no"),
    (FieldSpec("return_by", "date"), "15/12/2026", "write YYYY-MM-DD"),
    (FieldSpec("return_by", "date"), "2026-02-30", "write YYYY-MM-DD"),
    (FieldSpec("return_by", "date"), "demain", "write YYYY-MM-DD"),
    (FieldSpec("mode", "choice", choices=("VV", "VA")), "vv", "is not one of VV, VA"),
    (FieldSpec("mode", "choice", choices=("VV", "VA")), "", "is not one of VV, VA"),
    (FieldSpec("patient_ref", "ref"), "Jean Dupont", "never the patient's name"),
    (FieldSpec("patient_ref", "ref"), "PAT", "4 to 32 letters"),
    (FieldSpec("patient_ref", "ref"), "X" * 33, "4 to 32 letters"),
    (FieldSpec("patient_ref", "ref"), "-PAT1", "pseudonymous reference"),
    (FieldSpec("patient_ref", "ref"), "PAT_0001", "pseudonymous reference"),
    (FieldSpec("receiving_hospital", "hospital"), "34990000", "is not a FINESS number"),
    (FieldSpec("receiving_hospital", "hospital"), "3499000011", "is not a FINESS number"),
    (FieldSpec("receiving_hospital", "hospital"), "2C0000012", "is not a FINESS number"),
    (FieldSpec("receiving_hospital", "hospital"), "CHU Toulouse", "is not a FINESS number"),
    (FieldSpec("time_to_rupture", "duration"), "bientôt", "is not a duration"),
    (FieldSpec("time_to_rupture", "duration"), True, "is not a duration"),
    (FieldSpec("lines", "lines", choices=("gown",)), [], "at least one line"),
    (FieldSpec("lines", "lines", choices=("gown",)), "[{", "is not a JSON list"),
    (FieldSpec("lines", "lines", choices=("gown",)), [_LINE, _LINE], "line 2: gown is already"),
    (
        FieldSpec("lines", "lines", choices=("gown",)),
        [{**_LINE, "quantity": 0}],
        "line 1, quantity",
    ),
]


@pytest.mark.parametrize(
    ("spec", "raw", "stored"), GOOD, ids=[f"{s.type}-{raw!r}"[:40] for s, raw, _ in GOOD]
)
def test_field_accepts_good_values(spec: FieldSpec, raw: object, stored: object) -> None:
    """Every field type parses its good spellings into the stored (JSON) value."""
    value = spec.parse(raw)
    assert value == stored
    assert type(value) is type(stored)


@pytest.mark.parametrize(
    ("spec", "raw", "message"), BAD, ids=[f"{s.type}-{raw!r}"[:40] for s, raw, _ in BAD]
)
def test_field_rejects_bad_values_naming_the_field(
    spec: FieldSpec, raw: object, message: str
) -> None:
    """A bad value is an InputError that names the field and says what is wrong."""
    with pytest.raises(InputError) as info:
        spec.parse(raw)
    assert str(info.value).startswith(f"field {spec.name!r}: ")
    assert message in str(info.value)
    assert info.value.data["field"] == spec.name  # a line's error also names its line
    assert set(info.value.data) <= {"field", "line", "column", "item", "limit"}


def test_field_types_are_all_covered() -> None:
    """The cases above exercise every declared field type, good and bad."""
    from engine.workflow import FIELD_TYPES

    assert {s.type for s, _, _ in GOOD} == set(FIELD_TYPES)
    assert {s.type for s, _, _ in BAD} == set(FIELD_TYPES)


def test_settings_env_names_any_case_and_bad_json_names_its_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """regul_smtp_port is read as REGUL_SMTP_PORT; a list given as bad JSON names its variable."""
    from engine.settings import load_settings

    monkeypatch.setenv("regul_smtp_port", "2525")
    assert load_settings().smtp_port == 2525
    monkeypatch.setenv("REGUL_REMINDER_FRACTIONS", "[0.3,")
    with pytest.raises(InputError, match=r"REGUL_REMINDER_FRACTIONS takes JSON") as info:
        load_settings()
    assert "DEADLINES" not in str(info.value)
    monkeypatch.setenv("REGUL_REMINDER_FRACTIONS", "[0.3]")
    assert load_settings().reminder_fractions == [0.3]
