"""Idempotency keys: a retried command gets its first answer back and never fires twice.

A key belongs to the actor who sent it. Its record stores a hash of the command and the
answer, written in the command's own transaction; the same key with another command is an
error, never a silent second transition.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.errors import IdempotencyMismatch, InputError

__all__ = ["fingerprint", "lookup", "store"]

_T = tables.IDEMPOTENCY
_LOOKUP = sa.select(_T.c.request_hash, _T.c.result).where(_T.c.key == sa.bindparam("key"))


def _key(actor: str, key: str) -> str:
    if not key or len(key) > 200:
        raise InputError("an idempotency key must be 1 to 200 characters")
    return f"{actor}\x1f{key}"


def fingerprint(command: dict[str, Any]) -> str:
    body = json.dumps(command, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def lookup(conn: Connection, *, actor: str, key: str, request_hash: str) -> dict[str, Any] | None:
    row = conn.execute(_LOOKUP, {"key": _key(actor, key)}).first()
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise IdempotencyMismatch(
            f"idempotency key {key!r} was already used for another command: "
            "use a new key for a new command",
            key=key,
        )
    return dict(row.result)


def store(
    conn: Connection,
    *,
    actor: str,
    key: str,
    request_hash: str,
    case_id: int | None,
    result: dict[str, Any],
    now: datetime,
) -> None:
    conn.execute(
        _T.insert(),
        {
            "key": _key(actor, key),
            "actor": actor,
            "request_hash": request_hash,
            "case_id": case_id,
            "result": result,
            "created_at": now,
        },
    )
