"""The errors Régul raises, all under one base.

Every error says what was wrong and what to do, carries its data as attributes, and is
raised before anything is written (an authorization refusal writes only its own audit
record). The interfaces turn them into an exit code or an HTTP status by their ``code`` (the
class of error), and into their own wording by ``why`` (the precise error: a key of their
catalogues, e.g. ``interfaces.catalogue``) and ``data`` (its typed parameters); the English
``message`` is the CLI's and the API's default wording. No interface reads ``message`` to
decide anything. This module imports nothing.

    RegulError
    ├── InputError            a malformed value, unknown field, bad option
    │   └── WorkflowError     a workflow definition that fails validation
    ├── NotFound              unknown case, kind, trigger, user or organisation
    ├── Conflict              stale version, trigger the state does not allow
    │   └── IdempotencyMismatch   a key reused for another command
    ├── NotPermitted          role, level or scope refuses (recorded in the audit log)
    ├── Unauthenticated       no, wrong, expired or revoked credentials
    └── StorageError          database unreachable, read-only or not initialised
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "IdempotencyMismatch",
    "InputError",
    "NotFound",
    "NotPermitted",
    "RegulError",
    "StaleVersion",
    "StorageError",
    "TriggerNotAllowed",
    "Unauthenticated",
    "WorkflowError",
    "no_case",
]


class RegulError(Exception):
    """Base of every error Régul raises on purpose."""

    code = "error"
    exit_code = 1

    def __init__(self, message: str, /, *, why: str = "", **data: object) -> None:
        super().__init__(message)
        self.message = message
        self.why = why or self.code
        self.data = data


class InputError(RegulError):
    code = "invalid_input"
    exit_code = 2


class WorkflowError(InputError):
    code = "invalid_workflow"


class NotFound(RegulError):
    code = "not_found"
    exit_code = 3


class Conflict(RegulError):
    code = "conflict"
    exit_code = 4


class StaleVersion(Conflict):
    code = "stale_version"

    def __init__(self, case_ref: str, expected: int, actual: int) -> None:
        super().__init__(
            f"case {case_ref} is at version {actual}, not {expected}: someone acted on it since "
            f"you read it; run 'regul case show {case_ref}' and decide again",
            why="stale_version",
            case=case_ref,
            expected=expected,
            actual=actual,
        )
        self.case_ref, self.expected, self.actual = case_ref, expected, actual


class TriggerNotAllowed(Conflict):
    code = "trigger_not_allowed"


class IdempotencyMismatch(Conflict):
    code = "idempotency_mismatch"


class NotPermitted(RegulError):
    code = "not_permitted"
    exit_code = 5


class Unauthenticated(RegulError):
    code = "unauthenticated"
    exit_code = 5


class StorageError(RegulError):
    code = "storage"
    exit_code = 6


def no_case(text: str, *, why: str = "no_case") -> NotFound:
    """'No case': for a missing reference, and for a case outside the caller's scope alike."""
    return NotFound(
        f"no case {text}: check the reference with 'regul case list'", why=why, case=text
    )
