"""The audit log: hash-chained, append-only evidence of everything done to a case.

Each case has its own stream (sequence 1, 2, 3 …) whose head (last sequence and hash) is kept
on the case row; refusals that concern no case go to the ``security`` stream, whose head is in
``audit_head``. An event's hash is SHA-256 over the previous hash and a canonical JSON encoding
of every field, so the verifier finds any edited, deleted, inserted or reordered event, also
when the append-only triggers were dropped to do it. ``replay`` refires a case's transitions on
its workflow's machine and must land on the stored state and version.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.errors import InputError, NotFound
from engine.values import Draft
from engine.workflow import WorkflowRegistry

__all__ = [
    "EXPORT_COLUMNS",
    "GENESIS",
    "SECURITY_STREAM",
    "Draft",
    "Finding",
    "Replay",
    "VerifyReport",
    "append",
    "append_security",
    "canonical",
    "chain_hash",
    "export",
    "export_lines",
    "iter_events",
    "replay",
    "spreadsheet_safe",
    "verify",
]

GENESIS = "0" * 64
SECURITY_STREAM = "security"
EXPORT_COLUMNS = (
    "id",
    "case_id",
    "seq",
    "at",
    "actor",
    "role",
    "org",
    "action",
    "from_state",
    "to_state",
    "version",
    "reason",
    "data",
    "prev_hash",
    "hash",
)
_T = tables.AUDIT_EVENT
_CASE = tables.CASE
_HEAD = tables.AUDIT_HEAD
_INSERT = _T.insert()  # built once: the hot path only binds values
# Actions that change the case's version but not its state: manual control of its deadline.
VERSIONED_ACTIONS = frozenset({"hold", "resume", "extend"})


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(case_id: int | None, seq: int, at: datetime, draft: Draft) -> bytes:
    """The exact bytes that are hashed: sorted keys, no spaces, UTF-8, UTC microseconds."""
    record = {
        "case": case_id,
        "seq": seq,
        "at": _stamp(at),
        "actor": draft.actor,
        "role": draft.role,
        "org": draft.org,
        "action": draft.action,
        "from": draft.from_state,
        "to": draft.to_state,
        "version": draft.version,
        "reason": draft.reason,
        "data": draft.data,
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def _row(case_id: int | None, seq: int, at: datetime, prev: str, draft: Draft) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "seq": seq,
        "at": at,
        "actor": draft.actor,
        "role": draft.role,
        "org": draft.org,
        "action": draft.action,
        "from_state": draft.from_state,
        "to_state": draft.to_state,
        "version": draft.version,
        "reason": draft.reason,
        "data": draft.data,
        "prev_hash": prev,
        "hash": chain_hash(prev, canonical(case_id, seq, at, draft)),
    }


def append(
    conn: Connection, *, case_id: int, head_seq: int, head_hash: str, at: datetime, draft: Draft
) -> tuple[int, str]:
    """Append to a case's stream; the caller holds the case lock and stores the new head."""
    row = _row(case_id, head_seq + 1, at, head_hash or GENESIS, draft)
    conn.execute(_INSERT, row)
    return row["seq"], row["hash"]


def append_security(conn: Connection, *, at: datetime, draft: Draft) -> None:
    """Append to the stream of refusals that concern no case (its head row is locked)."""
    head = conn.execute(
        sa.select(_HEAD.c.seq, _HEAD.c.hash)
        .where(_HEAD.c.stream == SECURITY_STREAM)
        .with_for_update()
    ).first()
    seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
    row = _row(None, seq + 1, at, prev, draft)
    conn.execute(_INSERT, row)
    if head:
        conn.execute(
            _HEAD.update()
            .where(_HEAD.c.stream == SECURITY_STREAM)
            .values(seq=row["seq"], hash=row["hash"])
        )
    else:
        conn.execute(
            _HEAD.insert().values(stream=SECURITY_STREAM, seq=row["seq"], hash=row["hash"])
        )


def _draft_of(row: Any) -> Draft:
    return Draft(
        actor=row.actor,
        role=row.role,
        org=row.org,
        action=row.action,
        from_state=row.from_state,
        to_state=row.to_state,
        version=row.version,
        reason=row.reason,
        data=dict(row.data or {}),
    )


@dataclass(frozen=True)
class Finding:
    """The first thing wrong with one stream."""

    stream: str
    event_id: int | None
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"event id {self.event_id} (seq {self.seq})" if self.event_id else "its end"
        return f"{self.stream}: {where}: {self.problem}"


@dataclass(frozen=True)
class VerifyReport:
    streams: int
    events: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings


class _StreamCheck:
    """Walks one stream in id order, remembering the first break."""

    def __init__(self, name: str, case_id: int | None, head_seq: int) -> None:
        self.name, self.case_id, self.head_seq = name, case_id, head_seq
        self.past_head: tuple[int, int] | None = None  # (id, seq) of the first event past the head
        self.seq, self.hash, self.events = 0, GENESIS, 0
        self.finding: Finding | None = None

    def feed(self, row: Any) -> None:
        self.events += 1
        if row.seq > self.head_seq and self.past_head is None:
            self.past_head = (row.id, row.seq)
        if self.finding:
            return
        expected = chain_hash(self.hash, canonical(row.case_id, row.seq, row.at, _draft_of(row)))
        if row.seq != self.seq + 1:
            problem = f"sequence {row.seq} where {self.seq + 1} was due (deleted or reordered)"
        elif row.prev_hash != self.hash:
            problem = "its previous hash does not match the event before it (inserted or removed)"
        elif row.hash != expected:
            problem = "its content does not match its hash (edited)"
        else:
            self.seq, self.hash = row.seq, row.hash
            return
        self.finding = Finding(self.name, row.id, row.seq, problem)

    def close(self, head_seq: int, head_hash: str) -> Finding | None:
        if self.finding:
            return self.finding
        if self.past_head is not None:
            event_id, seq = self.past_head
            return Finding(
                self.name,
                event_id,
                seq,
                f"it lies past the stream's head (sequence {head_seq}): added",
            )
        if (self.seq, self.hash) != (head_seq, head_hash or GENESIS):
            return Finding(
                self.name,
                None,
                None,
                f"the stream ends at sequence {self.seq} but its head says {head_seq} "
                "(events deleted from the end, or the head was altered)",
            )
        return None


def verify(conn: Connection, *, case_id: int | None = None, batch: int = 5000) -> VerifyReport:
    """Check every stream (or one case's) against its chain and its head."""
    heads: dict[int | None, tuple[int, str]] = {}
    case_query = sa.select(_CASE.c.id, _CASE.c.audit_seq, _CASE.c.audit_hash)
    if case_id is not None:
        case_query = case_query.where(_CASE.c.id == case_id)
    for row in conn.execute(case_query):
        heads[row.id] = (row.audit_seq, row.audit_hash)
    if case_id is None:
        sec = conn.execute(
            sa.select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.stream == SECURITY_STREAM)
        ).first()
        heads[None] = (sec.seq, sec.hash) if sec else (0, GENESIS)
    checks: dict[int | None, _StreamCheck] = {}
    orphans: list[Finding] = []
    total = 0
    for row in iter_events(conn, case_id=case_id, batch=batch):
        total += 1
        if row.case_id not in heads:
            orphans.append(Finding(f"case {row.case_id}", row.id, row.seq, "no such case"))
            continue
        check = checks.get(row.case_id)
        if check is None:
            name = SECURITY_STREAM if row.case_id is None else f"case {row.case_id}"
            check = checks[row.case_id] = _StreamCheck(name, row.case_id, heads[row.case_id][0])
        check.feed(row)
    findings: list[Finding] = orphans[:1]
    for key, (seq, digest) in heads.items():
        check = checks.get(key) or _StreamCheck(
            SECURITY_STREAM if key is None else f"case {key}", key, seq
        )
        found = check.close(seq, digest)
        if found:
            findings.append(found)
    findings.sort(key=lambda f: (f.event_id is None, f.event_id or 0))
    return VerifyReport(streams=len(heads), events=total, findings=tuple(findings))


def iter_events(
    conn: Connection,
    *,
    case_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    org: str | None = None,
    scope_where: Any = None,
    batch: int = 5000,
) -> Iterator[Any]:
    """Events in id order, fetched in keyset pages so memory stays flat on a large log.

    ``scope_where`` is a condition on the case table (a regional auditor's region): events
    of cases outside it, and the ``security`` stream, are left out.
    """
    last = 0
    while True:
        query = sa.select(_T).where(_T.c.id > last).order_by(_T.c.id).limit(batch)
        if scope_where is not None:
            query = query.where(
                _T.c.case_id.in_(sa.select(_CASE.c.id).where(scope_where).scalar_subquery())
            )
        if actor is not None:
            query = query.where(_T.c.actor == actor)
        if org is not None:
            query = query.where(_T.c.org == org)
        if case_id is not None:
            query = query.where(_T.c.case_id == case_id)
        if since is not None:
            query = query.where(_T.c.at >= since)
        if until is not None:
            query = query.where(_T.c.at < until)
        rows = conn.execute(query).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def export_record(row: Any) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in EXPORT_COLUMNS}
    record["at"] = _stamp(row.at)
    return record


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula (CWE-1236): a quote in front.

    Only the CSV export does this, for the auditor who opens it in a spreadsheet; the JSON
    Lines export stays byte-exact, and it is the one the chain can be re-verified from.
    """
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def export_lines(rows: Iterable[Any], *, fmt: str) -> Iterator[str]:
    """Events as JSON Lines, or CSV (header first, cells made spreadsheet-safe), line by line."""
    if fmt not in {"jsonl", "csv"}:
        raise InputError(f"unknown export format {fmt!r}: use jsonl or csv")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS)
    if fmt == "csv":
        writer.writeheader()
        yield buffer.getvalue()
    for row in rows:
        record = export_record(row)
        if fmt == "jsonl":
            yield json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
            continue
        record["data"] = json.dumps(record["data"], sort_keys=True, ensure_ascii=False)
        buffer.seek(0)
        buffer.truncate()
        writer.writerow({k: spreadsheet_safe(v) for k, v in record.items()})
        yield buffer.getvalue()


def export(rows: Iterable[Any], out: IO[str], *, fmt: str) -> int:
    """Write events as JSON Lines or CSV; returns how many were written."""
    count = -1 if fmt == "csv" else 0  # the CSV header is a line too
    for line in export_lines(rows, fmt=fmt):
        out.write(line)
        count += 1
    return count


@dataclass(frozen=True)
class Replay:
    case_id: int
    state: str
    version: int
    stored_state: str
    stored_version: int

    @property
    def matches(self) -> bool:
        return (self.state, self.version) == (self.stored_state, self.stored_version)


def replay(conn: Connection, registry: WorkflowRegistry, case_id: int) -> Replay:
    """Refire the case's recorded transitions on its static machine from the initial state."""
    case = conn.execute(
        sa.select(_CASE.c.kind, _CASE.c.state, _CASE.c.version).where(_CASE.c.id == case_id)
    ).first()
    if case is None:
        raise NotFound(f"no case {case_id}")
    spec = registry[case.kind]
    state, version = None, 0
    for row in iter_events(conn, case_id=case_id):
        if row.action == "opened":
            state, version = spec.initial, row.version
        elif row.action == "transition":
            if state is None:
                raise InputError(f"case {case_id}: a transition is recorded before the opening")
            state = spec.fire(state, row.data["trigger"])
            if state != row.to_state:
                raise InputError(
                    f"case {case_id}: event {row.seq} records {row.to_state} but the workflow "
                    f"leads to {state}"
                )
            version = row.version
        elif row.action in VERSIONED_ACTIONS:
            version = row.version
    return Replay(case_id, state or "", version, case.state, case.version)
