"""Régul's settings: one validated pydantic object, built by whoever starts the application.

Sources, strongest first: keyword arguments, ``REGUL_*`` environment variables (names in any
case; the dictionaries and lists as JSON), then a TOML file (``REGUL_CONFIG``, else
``./regul.toml`` when it exists); dictionaries merge key by key across the sources. Nothing is
read at import. (The sources are read here rather than by pydantic-settings, whose import cost
a CLI command a fifth of its start-up: bench/startup.py.)

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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from engine.deadlines import ReminderPolicy
from engine.errors import InputError

if TYPE_CHECKING:
    from engine.decisions import Rules

__all__ = [
    "DEFAULT_DATABASE_URL",
    "Settings",
    "load_settings",
    "reminder_policy",
    "rules",
    "unknown_variables",
]

DEFAULT_DATABASE_URL = "sqlite:///regul.db"


@contextmanager
def _no_pydantic_plugins() -> Iterator[None]:
    """Build a model without looking for pydantic plugins (as Typer does for its options).

    The first model that pydantic builds with plugins allowed reads the entry points of every
    installed distribution: a sixth of ``import sqlalchemy``'s time on a CLI command's start.
    """
    before = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYDANTIC_DISABLE_PLUGINS"]
        else:
            os.environ["PYDANTIC_DISABLE_PLUGINS"] = before


class Settings(BaseModel):
    """Everything a deployment may change without touching code (built by ``load_settings``)."""

    # built at the first load_settings, without the plugin scan (_no_pydantic_plugins)
    model_config = ConfigDict(extra="forbid", validate_default=True, defer_build=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL; sqlite:///path (WAL) or postgresql://host/db",
    )
    deadlines: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="per workflow, per waiting state: a duration such as 45m, 2h, 1d or PT90M",
    )
    reminder_fractions: list[float] = Field(
        default_factory=lambda: [0.5, 0.8],
        description="reminders before a deadline passes, as fractions of it",
    )
    ppe_ght_step: bool = Field(
        True,
        description="keep the GHT rung of the PPE ladder (an establishment without a GHT goes "
        "straight to its ARS either way)",
    )
    incident_reminder_period: str = Field("1h", description="reminder period of an incident")
    overdue_reminder_period: str = Field("1d", description="reminder period of a late return")
    extend_max: str = Field("24h", description="the most one extension of a deadline may add")
    hold_max: str = Field(
        "24h", description="how long a hold lasts before the deadline resumes by itself"
    )
    hospital_confirms_request: bool = Field(
        False,
        description="a new case waits for its hospital's escalate (else it goes straight to "
        "the first regulating level)",
    )
    sweep_interval: float = Field(5.0, gt=0, description="seconds between two sweeps")
    sweep_batch: int = Field(200, gt=0, le=10000, description="deadline rows per transaction")
    notices: bool = Field(True, description="queue MARS/MINSANTE notices with transitions")
    notice_channel: Literal["eml", "smtp", "webhook"] = Field(
        "eml", description="delivery channel of notices by default"
    )
    notice_channels: dict[str, Literal["eml", "smtp", "webhook"]] = Field(
        default_factory=dict,
        description='per organisation (the \'Pour action\' one), e.g. {"CCS": "webhook"}',
    )
    eml_dir: str = Field("outbox", description="folder of the .eml channel")
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, gt=0, lt=65536)
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_sender: str = "regul@localhost"
    smtp_timeout: float = Field(10.0, gt=0)
    webhook_url: str = ""
    webhook_secret: str = ""
    notice_max_attempts: int = Field(5, gt=0, le=100)
    notice_backoff: str = Field("30s", description="wait after a first failed delivery, doubled")
    session_idle: str = Field("30m", description="a desk session ends after this long unused")
    session_max: str = Field("12h", description="a desk session ends this long after login")
    cookie_secure: bool = Field(
        True, description="mark the desk's cookies Secure (browsers keep them on localhost too)"
    )
    password_memory_kib: int = Field(
        65536, ge=8, le=4194304, description="argon2id memory cost of a password hash, in KiB"
    )
    password_time_cost: int = Field(3, ge=1, le=20, description="argon2id passes")
    max_body_bytes: int = Field(65536, gt=0, description="largest request body the API accepts")
    checkpoint_key: SecretStr = Field(
        SecretStr(""), description="HMAC key of signed audit checkpoints (prefer the _file form)"
    )
    checkpoint_key_file: str = Field(
        "", description="file holding the HMAC key of audit checkpoints, outside the database"
    )
    beds_capacity_due: str = Field(
        "14:00", description="daily critical-care capacity snapshot due at (Paris time)"
    )
    beds_alert_threshold: float = Field(
        0.9, gt=0, le=1, description="réanimation + surveillance continue occupancy alert"
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL",
        description="FULL survives a power cut with every committed transition; NORMAL is faster",
    )


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
    for field in Settings.model_fields:
        value = named.get(f"regul_{field}")
        if value is None:
            continue
        if field in _JSON_SETTINGS:
            try:
                values[field] = json.loads(value)
            except ValueError as exc:
                raise InputError(
                    f"unreadable setting REGUL_{field.upper()}: it is not JSON ({exc}); "
                    f"REGUL_{field.upper()} takes JSON, e.g. " + _JSON_EXAMPLES[field]
                ) from None
        else:
            values[field] = value
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
    known = {f"REGUL_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
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
    if not Settings.__pydantic_complete__:
        with _no_pydantic_plugins():
            Settings.model_rebuild(force=True)
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        top = str(first["loc"][0]) if first["loc"] else "settings"
        raise InputError(
            f"bad setting {where}: {first['msg']}; fix REGUL_{top.upper()} or regul.toml"
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
