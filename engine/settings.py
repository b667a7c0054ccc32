"""Régul's settings: one validated object, built by whoever starts the application.

Sources, strongest first: keyword arguments, ``REGUL_*`` environment variables (names in any
case; the dictionaries and lists as JSON), then a TOML file (``REGUL_CONFIG``, else
``./regul.toml`` when it exists); dictionaries merge key by key across the sources. Nothing is
read at import. (The sources are read and the values checked here rather than by
pydantic-settings and a pydantic model, whose imports cost a CLI command a fifth and a quarter
of ``import sqlalchemy``: bench/startup.py.) Values are taken as pydantic's lax mode took them:
text for text, ``true``/``1``/``yes``/``on`` (and their opposites) for a flag, a number's
text for a number; a bad one is one clear line naming the setting.

    database_url = "postgresql://127.0.0.1/test"
    [deadlines.ecmo]
    requested = "45m"
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine.deadlines import ReminderPolicy
from engine.errors import InputError

if TYPE_CHECKING:
    from engine.decisions import Rules

__all__ = [
    "DEFAULT_DATABASE_URL",
    "SecretStr",
    "Settings",
    "load_settings",
    "reminder_policy",
    "rules",
    "unknown_variables",
]

DEFAULT_DATABASE_URL = "sqlite:///regul.db"

Channel = Literal["eml", "smtp", "webhook"]


class SecretStr:
    """A secret setting: shown as ``**********``, read with ``get_secret_value()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self._value else "SecretStr('')"

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(kw_only=True)
class Settings:
    """Everything a deployment may change without touching code (built by ``load_settings``,
    which checks each value against ``_CHECKS``)."""

    # SQLAlchemy URL; sqlite:///path (WAL) or postgresql://host/db
    database_url: str = DEFAULT_DATABASE_URL
    # per workflow, per waiting state: a duration such as 45m, 2h, 1d or PT90M
    deadlines: dict[str, dict[str, str]] = field(default_factory=dict)
    # reminders before a deadline passes, as fractions of it
    reminder_fractions: list[float] = field(default_factory=lambda: [0.5, 0.8])
    # keep the GHT rung of the PPE ladder (an establishment without a GHT goes straight to its
    # ARS either way)
    ppe_ght_step: bool = True
    incident_reminder_period: str = "1h"  # reminder period of an incident
    overdue_reminder_period: str = "1d"  # reminder period of a late return
    extend_max: str = "24h"  # the most one extension of a deadline may add
    hold_max: str = "24h"  # how long a hold lasts before the deadline resumes by itself
    # a new case waits for its hospital's escalate (else it goes straight to the first
    # regulating level)
    hospital_confirms_request: bool = False
    # who owes the weekly PPE stock report (MINSANTE N°143's phases): nobody yet, the GHT
    # support establishments and AP-HP, every health establishment, or médico-social too
    ppe_enrolment: Literal["none", "ght_support", "sanitaire", "all"] = "none"
    ppe_due: str = "monday 12:00"  # when the weekly PPE report is due (Paris time)
    ppe_escalate_after: str = "48h"  # a missing PPE report goes to the ARS's list after this
    ppe_alert_rules: str = ""  # CSV file of PPE alert rules (else the built-in ones)
    # when the weekly ECMO inventory of each ECMO centre is due (Paris time; issue 11)
    ecmo_inventory_due: str = "monday 12:00"
    sweep_interval: float = 5.0  # seconds between two sweeps (> 0)
    sweep_batch: int = 200  # deadline rows per transaction (1 to 10,000)
    notices: bool = True  # queue MARS/MINSANTE notices with transitions
    notice_channel: Channel = "eml"  # delivery channel of notices by default
    # per organisation (the 'Pour action' one), e.g. {"CCS": "webhook"}
    notice_channels: dict[str, Channel] = field(default_factory=dict)
    eml_dir: str = "outbox"  # folder of the .eml channel
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_sender: str = "regul@localhost"
    smtp_timeout: float = 10.0
    webhook_url: str = ""
    webhook_secret: str = ""
    notice_max_attempts: int = 5
    notice_backoff: str = "30s"  # wait after a first failed delivery, doubled
    session_idle: str = "30m"  # a desk session ends after this long unused
    session_max: str = "12h"  # a desk session ends this long after login
    # mark the desk's cookies Secure (browsers keep them on localhost too)
    cookie_secure: bool = True
    password_memory_kib: int = 65536  # argon2id memory cost of a password hash, in KiB
    password_time_cost: int = 3  # argon2id passes
    max_body_bytes: int = 65536  # largest request body the API accepts
    # HMAC key of signed audit checkpoints (prefer the _file form)
    checkpoint_key: SecretStr = field(default_factory=lambda: SecretStr(""))
    # file holding the HMAC key of audit checkpoints, outside the database
    checkpoint_key_file: str = ""
    # daily critical-care capacity snapshot due at (Paris time; issue 13)
    beds_capacity_due: str = "14:00"
    # réanimation + surveillance continue occupancy above which the ARS is alerted (0 to 1)
    beds_alert_threshold: float = 0.9
    # FULL survives a power cut with every committed transition; NORMAL is faster
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"


SETTINGS = tuple(f.name for f in fields(Settings))


# -- checking the values (pydantic's lax mode, its wording) ---------------------------------


class _Bad(Exception):
    """A value refused: where under the setting (keys, indexes), and why."""

    def __init__(self, msg: str, *where: str | int) -> None:
        super().__init__(msg)
        self.msg = msg
        self.where = where


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Bad("Input should be a valid string")


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise _Bad("Input should be a valid boolean, unable to interpret input")


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
        raise _Bad("Input should be a valid integer, unable to parse string as an integer")
    raise _Bad("Input should be a valid integer")


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
        raise _Bad("Input should be a valid number, unable to parse string as a number")
    raise _Bad("Input should be a valid number")


def _bounded(parse: Callable[[Any], Any], **limits: float) -> Callable[[Any], Any]:
    """``parse``, then pydantic's gt/ge/lt/le limits with its wording."""
    wording = {"gt": "greater than", "ge": "greater than or equal to", "lt": "less than",
               "le": "less than or equal to"}  # fmt: skip
    test = {"gt": float.__gt__, "ge": float.__ge__, "lt": float.__lt__, "le": float.__le__}

    def check(value: Any) -> Any:
        found = parse(value)
        for name, limit in limits.items():
            if not test[name](float(found), float(limit)):
                raise _Bad(f"Input should be {wording[name]} {limit}")
        return found

    return check


def _one_of(*choices: str) -> Callable[[Any], str]:
    listed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"

    def check(value: Any) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise _Bad(f"Input should be {listed}")

    return check


def _table_of(item: Callable[[Any], Any]) -> Callable[[Any], dict[str, Any]]:
    """A dictionary with text keys, each value checked by ``item``."""

    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _Bad("Input should be a valid dictionary")
        checked = {}
        for key, each in value.items():
            if not isinstance(key, str):
                raise _Bad("Input should be a valid string", key)
            try:
                checked[key] = item(each)
            except _Bad as bad:
                raise _Bad(bad.msg, key, *bad.where) from None
        return checked

    return check


def _list_of(item: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise _Bad("Input should be a valid list")
        checked = []
        for index, each in enumerate(value):
            try:
                checked.append(item(each))
            except _Bad as bad:
                raise _Bad(bad.msg, index, *bad.where) from None
        return checked

    return check


def _secret(value: Any) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(_text(value))


_CHANNEL = _one_of("eml", "smtp", "webhook")
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "database_url": _text,
    "deadlines": _table_of(_table_of(_text)),
    "reminder_fractions": _list_of(_number),
    "ppe_ght_step": _flag,
    "incident_reminder_period": _text,
    "overdue_reminder_period": _text,
    "extend_max": _text,
    "hold_max": _text,
    "hospital_confirms_request": _flag,
    "ppe_enrolment": _one_of("none", "ght_support", "sanitaire", "all"),
    "ppe_due": _text,
    "ppe_escalate_after": _text,
    "ppe_alert_rules": _text,
    "ecmo_inventory_due": _text,
    "sweep_interval": _bounded(_number, gt=0),
    "sweep_batch": _bounded(_integer, gt=0, le=10000),
    "notices": _flag,
    "notice_channel": _CHANNEL,
    "notice_channels": _table_of(_CHANNEL),
    "eml_dir": _text,
    "smtp_host": _text,
    "smtp_port": _bounded(_integer, gt=0, lt=65536),
    "smtp_starttls": _flag,
    "smtp_username": _text,
    "smtp_password": _text,
    "smtp_sender": _text,
    "smtp_timeout": _bounded(_number, gt=0),
    "webhook_url": _text,
    "webhook_secret": _text,
    "notice_max_attempts": _bounded(_integer, gt=0, le=100),
    "notice_backoff": _text,
    "session_idle": _text,
    "session_max": _text,
    "cookie_secure": _flag,
    "password_memory_kib": _bounded(_integer, ge=8, le=4194304),
    "password_time_cost": _bounded(_integer, ge=1, le=20),
    "max_body_bytes": _bounded(_integer, gt=0),
    "checkpoint_key": _secret,
    "checkpoint_key_file": _text,
    "beds_capacity_due": _text,
    "beds_alert_threshold": _bounded(_number, gt=0, le=1),
    "sqlite_synchronous": _one_of("FULL", "NORMAL"),
}


def _checked(values: Mapping[str, Any]) -> Settings:
    """``Settings`` from ``values``, each checked; the first bad one raises ``_Bad``."""
    clean = {}
    for name in SETTINGS:
        if name in values:
            try:
                clean[name] = _CHECKS[name](values[name])
            except _Bad as bad:
                raise _Bad(bad.msg, name, *bad.where) from None
    for name in values:
        if name not in _CHECKS:
            raise _Bad("Extra inputs are not permitted", name)
    return Settings(**clean)


# Settings given in the environment as JSON (a dictionary or a list), as pydantic-settings did.
_JSON_SETTINGS = frozenset({"deadlines", "reminder_fractions", "notice_channels"})


def _config_file() -> dict[str, Any]:
    """The TOML file's settings: ``REGUL_CONFIG``, else ``./regul.toml`` if there is one."""
    path = os.environ.get("REGUL_CONFIG") or "regul.toml"
    if not Path(path).is_file():
        if os.environ.get("REGUL_CONFIG"):
            raise InputError(f"REGUL_CONFIG names {path}, which is not a file: fix the path")
        return {}
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InputError(
            f"the configuration file {path} cannot be read: {exc}; fix it (TOML, "
            "UTF-8) or point REGUL_CONFIG at another file"
        ) from None


def _environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``REGUL_<SETTING>`` variables (any case), JSON decoded for dictionaries and lists."""
    named = {name.lower(): value for name, value in environ.items()}
    values: dict[str, Any] = {}
    for name in SETTINGS:
        value = named.get(f"regul_{name}")
        if value is None:
            continue
        if name in _JSON_SETTINGS:
            try:
                values[name] = json.loads(value)
            except ValueError as exc:
                raise InputError(
                    f"unreadable setting REGUL_{name.upper()}: it is not JSON ({exc}); "
                    f"REGUL_{name.upper()} takes JSON, e.g. " + _JSON_EXAMPLES[name]
                ) from None
        else:
            values[name] = value
    return values


_JSON_EXAMPLES = {
    "deadlines": """'{"ecmo": {"requested": "45m"}}'""",
    "reminder_fractions": "'[0.5, 0.8]'",
    "notice_channels": """'{"CCS": "webhook"}'""",
}


def _merged(base: dict[str, Any], stronger: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``stronger``; dictionaries present in both are merged key by key."""
    merged = dict(base)
    for key, value in stronger.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


# REGUL_* variables that are not settings but are read elsewhere (the CLI, tests, benches).
OTHER_VARIABLES = frozenset(
    {
        "REGUL_CONFIG",
        "REGUL_PASSWORD",
        "REGUL_TEST_POSTGRES_URL",
        "REGUL_REQUIRE_POSTGRES",
        "REGUL_REQUIRE_BROWSER",
        "REGUL_TEST_CHROMIUM",
        "REGUL_BENCH_POSTGRES_URL",
    }
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per ``REGUL_*`` variable that no setting reads, naming the nearest one."""
    known = {f"REGUL_{name.upper()}" for name in SETTINGS} | OTHER_VARIABLES
    warnings = []
    for name in sorted(environ):
        if name.upper().startswith("REGUL_") and name.upper() not in known:
            near = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}?" if near else "see the README's Configuration"
            warnings.append(f"warning: {name} is not a Régul setting and is ignored: {hint}")
    return warnings


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning a bad value into one clear line.

    A misspelt ``REGUL_*`` variable would otherwise be silently ignored: it is named on stderr.
    """
    for line in unknown_variables(os.environ):
        print(line, file=sys.stderr)
    values = _merged(_merged(_config_file(), _environment(os.environ)), overrides)
    try:
        return _checked(values)
    except _Bad as bad:
        where = ".".join(str(part) for part in bad.where)
        raise InputError(
            f"bad setting {where}: {bad.msg}; fix REGUL_{str(bad.where[0]).upper()} or regul.toml"
        ) from None


def reminder_policy(settings: Settings) -> ReminderPolicy:
    from engine.workflow import parse_duration

    try:
        return ReminderPolicy(
            fractions=tuple(settings.reminder_fractions),
            incident_period=parse_duration(settings.incident_reminder_period),
            overdue_period=parse_duration(settings.overdue_reminder_period),
        )
    except InputError as exc:
        raise InputError(
            f"bad reminder setting ({exc.message}); fix REGUL_REMINDER_FRACTIONS, "
            "REGUL_INCIDENT_REMINDER_PERIOD or REGUL_OVERDUE_REMINDER_PERIOD"
        ) from None


def rules(settings: Settings) -> Rules:
    """The doctrine's limits the decisions apply (``engine.decisions.Rules``)."""
    from engine.decisions import Rules
    from engine.workflow import parse_duration

    try:
        return Rules(
            extend_max=parse_duration(settings.extend_max),
            hold_max=parse_duration(settings.hold_max),
            hospital_confirms=settings.hospital_confirms_request,
        )
    except InputError as exc:
        raise InputError(
            f"bad setting ({exc.message}); fix REGUL_EXTEND_MAX or REGUL_HOLD_MAX"
        ) from None
