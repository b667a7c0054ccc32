"""Signed checkpoints of the audit log: every stream's head, anchored outside the database.

The hash chains find an edit made without recomputing the hashes; someone who can write the
database can recompute them, rewrite a case's whole chain and its row, or delete a case. A
checkpoint records, at one moment, every case stream's head (case id, sequence, hash), the
``security`` stream's head and the highest case id, signed with HMAC-SHA256 under a key kept
outside the database (``REGUL_CHECKPOINT_KEY`` or ``REGUL_CHECKPOINT_KEY_FILE``). Checking it
later: the signature, then that every checkpointed stream still holds, at that sequence, the
event with that hash. With chains that verify, that pins every event up to the checkpoint, so a
rewrite, a truncation or a deleted case after it is found; and a case whose id is below the
checkpoint's highest but which the checkpoint does not list was added afterwards.

``write_checkpoint`` is what a periodic job calls (``regul audit checkpoint -o FILE`` today,
from cron); ``check`` is what ``regul audit verify --checkpoint FILE`` runs. Talks to the
database through a SQLAlchemy connection, to the file system for the checkpoint and the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.audit import SECURITY_STREAM, Finding
from engine.errors import InputError
from engine.models import AuditEvent, AuditHead, Case

__all__ = ["FORMAT", "Checkpoint", "check", "load", "load_key", "take", "write_checkpoint"]

FORMAT = "regul-audit-checkpoint/1"
MIN_KEY_BYTES = 16
_T = AuditEvent.__table__  # type: ignore[attr-defined]
_CASE = Case.__table__  # type: ignore[attr-defined]
_HEAD = AuditHead.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Checkpoint:
    """The heads of every stream at one moment (unsigned: ``sign`` and ``load`` add the proof)."""

    at: str  # UTC, ISO-8601 with microseconds
    max_case_id: int
    security: tuple[int, str]  # (seq, hash); (0, "") when the stream is empty
    cases: tuple[tuple[int, int, str], ...]  # (case id, seq, hash), by case id

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "at": self.at,
            "max_case_id": self.max_case_id,
            "security": {"seq": self.security[0], "hash": self.security[1]},
            "cases": [list(entry) for entry in self.cases],
        }

    def signature(self, key: bytes) -> str:
        message = json.dumps(self.body(), sort_keys=True, separators=(",", ":")).encode()
        return "hmac-sha256:" + hmac.new(key, message, hashlib.sha256).hexdigest()


def load_key(*, key: str | None, key_file: str | None) -> bytes:
    """The signing key from the settings: the value itself, or a file that holds it."""
    if key and key_file:
        raise InputError(
            "both REGUL_CHECKPOINT_KEY and REGUL_CHECKPOINT_KEY_FILE are set: keep one"
        )
    if key_file:
        try:
            secret = Path(key_file).read_bytes().strip()
        except OSError as exc:
            raise InputError(
                f"cannot read the checkpoint key file {key_file} ({exc.strerror}): check "
                "REGUL_CHECKPOINT_KEY_FILE and the file's permissions"
            ) from None
        where = f"the file {key_file}"
    elif key:
        secret, where = key.encode(), "REGUL_CHECKPOINT_KEY"
    else:
        raise InputError(
            "no checkpoint key: set REGUL_CHECKPOINT_KEY_FILE to a file holding a secret kept "
            "outside the database (e.g. 32 random bytes, base64), or REGUL_CHECKPOINT_KEY"
        )
    if len(secret) < MIN_KEY_BYTES:
        raise InputError(
            f"the checkpoint key in {where} is {len(secret)} bytes long: use at least "
            f"{MIN_KEY_BYTES} (e.g. 'openssl rand -base64 32')"
        )
    return secret


def take(conn: Connection, *, now: datetime) -> Checkpoint:
    """Every stream's head as the case rows and the security head record them now."""
    rows = conn.execute(
        sa.select(_CASE.c.id, _CASE.c.audit_seq, _CASE.c.audit_hash)
        .where(_CASE.c.audit_seq > 0)
        .order_by(_CASE.c.id)
    ).all()
    sec = conn.execute(
        sa.select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.stream == SECURITY_STREAM)
    ).first()
    top = conn.execute(sa.select(sa.func.max(_CASE.c.id))).scalar()
    return Checkpoint(
        at=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        max_case_id=int(top or 0),
        security=(sec.seq, sec.hash) if sec else (0, ""),
        cases=tuple((r.id, r.audit_seq, r.audit_hash) for r in rows),
    )


def write_checkpoint(conn: Connection, *, key: bytes, now: datetime, path: Path) -> Checkpoint:
    """Take a checkpoint, sign it and write it to ``path`` (atomically: a whole file or none)."""
    if not path.parent.is_dir():
        raise InputError(f"the folder {path.parent} does not exist: create it or choose another")
    checkpoint = take(conn, now=now)
    document = {**checkpoint.body(), "signature": checkpoint.signature(key)}
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, separators=(",", ":"))
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return checkpoint


def load(path: Path) -> tuple[Checkpoint, str]:
    """A checkpoint file and the signature it carries (not yet checked)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read the checkpoint {path} ({exc.strerror})") from None
    except ValueError:
        raise InputError(f"{path} is not a checkpoint: it is not JSON") from None
    try:
        if document["format"] != FORMAT:
            raise InputError(f"{path} is not a {FORMAT} file (format {document['format']!r})")
        checkpoint = Checkpoint(
            at=str(document["at"]),
            max_case_id=int(document["max_case_id"]),
            security=(int(document["security"]["seq"]), str(document["security"]["hash"])),
            cases=tuple((int(c), int(s), str(h)) for c, s, h in document["cases"]),
        )
        return checkpoint, str(document["signature"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path} is not a checkpoint: it lacks or mangles {exc}") from None


def check(
    conn: Connection,
    checkpoint: Checkpoint,
    signature: str,
    *,
    key: bytes,
    case_id: int | None = None,
) -> list[Finding]:
    """What no longer matches the checkpoint (only ``case_id``'s stream when given)."""
    if not hmac.compare_digest(checkpoint.signature(key), signature):
        return [
            Finding(
                "checkpoint",
                None,
                None,
                "its signature does not match the key (the file was altered, or it was signed "
                "with another key)",
            )
        ]
    when = checkpoint.at
    wanted: dict[int | None, tuple[int, str]] = {
        c: (s, h) for c, s, h in checkpoint.cases if case_id is None or c == case_id
    }
    if case_id is None and checkpoint.security[0] > 0:
        wanted[None] = checkpoint.security
    found = _hashes_at(conn, wanted, case_id)
    existing = _case_ids(conn, case_id)
    findings: list[Finding] = []
    for stream, (seq, digest) in wanted.items():
        name = SECURITY_STREAM if stream is None else f"case {stream}"
        event = found.get(stream)
        if stream is not None and stream not in existing:
            problem = f"the case was in the checkpoint of {when} (sequence {seq}) but is gone"
            findings.append(Finding(name, None, None, problem + " (deleted)"))
        elif event is None:
            problem = f"it no longer has the event of sequence {seq} of the checkpoint of {when}"
            findings.append(Finding(name, None, None, problem + " (truncated)"))
        elif event[1] != digest:
            problem = f"its event of sequence {seq} differs from the checkpoint of {when}"
            findings.append(Finding(name, event[0], seq, problem + " (rewritten)"))
    listed = {c for c, _, _ in checkpoint.cases}
    for extra in sorted(existing - listed):
        if extra <= checkpoint.max_case_id:
            findings.append(
                Finding(
                    f"case {extra}",
                    None,
                    None,
                    f"its id is below the checkpoint's highest ({checkpoint.max_case_id}) but the "
                    f"checkpoint of {when} does not list it (added afterwards)",
                )
            )
    return findings


def _hashes_at(
    conn: Connection, wanted: dict[int | None, tuple[int, str]], case_id: int | None
) -> dict[int | None, tuple[int, str]]:
    """(event id, hash) of the event at each stream's checkpointed sequence, one scan."""
    query = sa.select(_T.c.id, _T.c.case_id, _T.c.seq, _T.c.hash)
    if case_id is not None:
        query = query.where(_T.c.case_id == case_id)
    found: dict[int | None, tuple[int, str]] = {}
    for event_id, stream, seq, digest in conn.execute(query):
        mark = wanted.get(stream)
        if mark is not None and seq == mark[0]:
            found[stream] = (event_id, digest)
    return found


def _case_ids(conn: Connection, case_id: int | None) -> set[int]:
    query = sa.select(_CASE.c.id)
    if case_id is not None:
        query = query.where(_CASE.c.id == case_id)
    return set(conn.execute(query).scalars())
