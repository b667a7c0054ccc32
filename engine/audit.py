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
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from json.scanner import make_scanner
from typing import IO, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.errors import InputError, NotFound
from engine.values import Draft
from engine.workflow import WorkflowRegistry

__all__ = [
    "EXPORT_COLUMNS",
    "EXPORT_FORMATS",
    "GENESIS",
    "OPERATOR",
    "SECURITY_STREAM",
    "Draft",
    "Finding",
    "Replay",
    "VerifyReport",
    "canonical",
    "chain_hash",
    "export",
    "export_lines",
    "iter_events",
    "record_operator",
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
    "stream",
)
HOLDER_STREAM = "holder:"  # a holder's stream: ``holder:<org id>`` (0009)
_T = tables.AUDIT_EVENT
_CASE = tables.CASE
_HEAD = tables.AUDIT_HEAD
_INSERT = _T.insert()  # built once: the hot path only binds values
# Actions that change the case's version but not its state: manual control of its deadline.
VERSIONED_ACTIONS = frozenset({"hold", "resume", "extend"})


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(
    case_id: int | None, seq: int, at: datetime, draft: Draft, stream: str | None = None
) -> bytes:
    """The exact bytes that are hashed: sorted keys, no spaces, UTF-8, UTC microseconds.

    A holder's event (``stream``, 0009) also hashes its stream's name; case and security
    events have none, so their encoding (and every hash written before) is unchanged.
    """
    record: dict[str, Any] = {
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
    if stream is not None:
        record["stream"] = stream
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


OPERATOR = "operator"


def record_operator(conn: Connection, *, at: datetime, op: str, details: dict[str, Any]) -> None:
    """Record in the ``security`` stream that the machine's operator read the log (``op``).

    The operator (whoever runs ``regul audit … --operator`` on the machine, with its database
    access) passes no auditor check: what they did is recorded, with their system login.
    """
    import getpass

    try:
        system_user = getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment or the password database
        system_user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    from engine.unit_of_work import append_security  # the one writer of the audit tables

    data = {"op": op, "system_user": system_user, **details}
    draft = Draft(OPERATOR, OPERATOR, "", OPERATOR, None, None, 0, "", data)
    append_security(conn, draft, at)


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


class _CaseRow(NamedTuple):
    """What the case row says: its chain's head and what a replay of the chain must give."""

    kind: str
    state: str
    version: int
    fields: Any  # as the driver gives it: JSON text on SQLite
    head_seq: int
    head_hash: str


class _Stream:
    """Walks one stream in id order: the chain, and for a case the replay of its facts."""

    __slots__ = ("case", "fields", "finding", "hash", "head_seq", "machine", "name",
                 "past_head", "seq", "state", "version")  # fmt: skip

    def __init__(
        self, name: str, case: _CaseRow | None, machine: _Machine | None, head_seq: int
    ) -> None:
        self.name, self.case, self.machine, self.head_seq = name, case, machine, head_seq
        self.seq, self.hash = 0, GENESIS
        self.past_head: tuple[int, int] | None = None  # (id, seq) of the first event past the head
        self.finding: Finding | None = None
        self.state: str | None = None
        self.version = 0
        self.fields: dict[str, Any] = {}

    def check(self, row: tuple[Any, ...], sqlite: bool) -> None:
        """Recompute one event's hash from its stored columns and link it to the one before."""
        (event_id, key, seq, at, actor, role, org, action, src, dest, version, reason, data,
         prev, digest, stream) = row  # fmt: skip
        try:
            if sqlite:
                at = _sqlite_stamp(at)
                data = _decode(data) if type(data) is str else data  # a number if so stored
            if type(data) is not dict:
                raise _Malformed(f"its data is {type(data).__name__}, not a JSON object")
            record = {"case": key, "seq": seq, "at": at, "actor": actor, "role": role,
                      "org": org, "action": action, "from": src, "to": dest,
                      "version": version, "reason": reason, "data": data}  # fmt: skip
            if stream is not None:
                record["case"], record["stream"] = None, stream
            body = _dumps(record)
            expected = _sha256(prev.encode("ascii") + body.encode()).hexdigest()
        except Exception as exc:  # any unreadable column is the finding itself
            why = exc.message if isinstance(exc, _Malformed) else _unreadable(exc)
            self.finding = Finding(self.name, event_id, seq, f"malformed event: {why}")
            return
        if seq != self.seq + 1:
            problem = f"sequence {seq} where {self.seq + 1} was due (deleted or reordered)"
        elif prev != self.hash:
            problem = "its previous hash does not match the event before it (inserted or removed)"
        elif digest != expected:
            problem = "its content does not match its hash (edited)"
        elif self.case is not None and (wrong := self.replay(action, dest, version, data)):
            problem = f"replaying the case: {wrong}"
        else:
            self.seq, self.hash = seq, digest
            if seq > self.head_seq and self.past_head is None:
                self.past_head = (event_id, seq)
            return
        self.finding = Finding(self.name, event_id, seq, problem)

    def replay(self, action: str, dest: Any, version: Any, data: dict[str, Any]) -> str | None:
        """Replay one event's recorded facts; what is wrong with it, if anything."""
        machine = self.machine
        if action == "opened":
            fields = data.get("fields")
            self.state, self.version = dest, version
            self.fields = dict(fields) if isinstance(fields, dict) else {}
            if machine is not None and dest != machine.initial:
                return f"the case opens in {dest}, not in its workflow's initial state"
        elif action == "transition":
            trigger = data.get("trigger")
            if machine is not None:
                reached = machine.fire(self.state or "", str(trigger))
                if reached is None:
                    return f"its workflow has no trigger {trigger!r} from {self.state}"
                if reached != dest:
                    return f"it records {dest} but the workflow leads to {reached}"
            self.state, self.version = dest, version
            values = data.get("fields")
            if values:
                self.fields[str(trigger)] = values
        elif action in VERSIONED_ACTIONS:
            self.version = version
        return None

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
        case = self.case
        if case is None:
            return None
        try:
            fields = _loads(case.fields) if isinstance(case.fields, str) else case.fields
        except ValueError:
            fields = None
        if (self.state, self.version, self.fields) != (case.state, case.version, fields):
            other = " and other fields" if fields != self.fields else ""
            return Finding(
                self.name,
                None,
                None,
                f"the case row says state {case.state}, version {case.version}{other} but a "
                f"replay of its chain gives state {self.state}, version {self.version} (the "
                "case row was altered)",
            )
        return None


def verify(
    conn: Connection,
    *,
    case_id: int | None = None,
    batch: int = 5000,
    registry: WorkflowRegistry | None = None,
) -> VerifyReport:
    """Check every stream (or one case's) against its chain, its head and its case row.

    Each event's hash is recomputed from its stored columns (rows are read on the driver's
    cursor, in keyset pages); each case's chain is replayed (recorded state, version and
    fields; with ``registry`` every transition is also refired on its workflow) and must give
    what the case row says. A malformed row is reported as its stream's first bad event.
    """
    if conn.dialect.name == "postgresql" and not conn.in_transaction():
        # heads and events from one snapshot: a command committed in between is not a finding
        conn.execution_options(isolation_level="REPEATABLE READ")
    # The first statement goes through SQLAlchemy: it begins the transaction (and on SQLite
    # its read snapshot) that the driver-cursor reads below share.
    sec = conn.execute(
        sa.select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.stream == SECURITY_STREAM)
    ).first()
    cases = _case_rows(conn, case_id)
    heads: dict[int | str | None, tuple[int, str]] = {
        key: (row.head_seq, row.head_hash) for key, row in cases.items()
    }
    if case_id is None:
        heads[None] = (sec.seq, sec.hash) if sec else (0, GENESIS)
        holders = conn.execute(
            sa.select(_HEAD.c.stream, _HEAD.c.seq, _HEAD.c.hash).where(
                _HEAD.c.stream.startswith(HOLDER_STREAM)
            )
        )
        heads.update({row.stream: (row.seq, row.hash) for row in holders})
    walk = _Walk(heads, cases, registry, sqlite=conn.dialect.name == "sqlite")
    for row in _raw_events(conn, case_id=case_id, batch=batch):
        walk.feed(row)
    return walk.report()


class _Walk:
    """The streams of one verification, fed the events in id order."""

    def __init__(
        self,
        heads: dict[int | str | None, tuple[int, str]],
        cases: dict[int | None, _CaseRow],
        registry: WorkflowRegistry | None,
        *,
        sqlite: bool,
    ) -> None:
        self.heads, self.cases, self.sqlite = heads, cases, sqlite
        self.firing = _Firing(registry) if registry is not None else None
        self.streams: dict[int | str | None, _Stream] = {}
        self.orphans: list[Finding] = []
        self.total = 0

    def _stream(self, key: int | str | None) -> _Stream:
        if isinstance(key, str):  # a holder's stream
            return _Stream(key, None, None, self.heads[key][0])
        name = SECURITY_STREAM if key is None else f"case {key}"
        case = self.cases.get(key)
        fire = self.firing.of(case.kind) if case is not None and self.firing else None
        return _Stream(name, case, fire, self.heads[key][0])

    def feed(self, row: tuple[Any, ...]) -> None:
        self.total += 1
        event_id, seq = row[0], row[2]
        key: int | str | None = row[1] if row[15] is None else row[15]
        stream = self.streams.get(key)
        if stream is None:
            if key not in self.heads:
                found = (
                    Finding(key, event_id, seq, "no such stream (its head is missing)")
                    if isinstance(key, str)
                    else Finding(f"case {key}", event_id, seq, "no such case")
                )
                self.orphans.append(found)
                return
            stream = self.streams[key] = self._stream(key)
        if stream.finding is None:
            stream.check(row, self.sqlite)

    def report(self) -> VerifyReport:
        findings: list[Finding] = self.orphans[:1]
        for key, (seq, digest) in self.heads.items():
            stream = self.streams.get(key) or self._stream(key)
            found = stream.close(seq, digest)
            if found:
                findings.append(found)
        findings.sort(key=lambda f: (f.event_id is None, f.event_id or 0))
        return VerifyReport(streams=len(self.heads), events=self.total, findings=tuple(findings))


# Built once: json.dumps/loads would build an encoder per call (a fifth of the encoding time).
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_loads = json.JSONDecoder().decode
_sha256 = hashlib.sha256
_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # the stub types it oddly


def _decode(text: str) -> Any:
    """``json.loads`` without its two Python layers; anything unusual goes through it."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return _loads(text)  # raises the JSONDecodeError that says what is wrong
    return value if end == len(text) else _loads(text)


class _Malformed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _unreadable(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"its data is not JSON ({exc.msg})"
    if isinstance(exc, UnicodeEncodeError):
        return "its previous hash is not hexadecimal"
    return f"a column cannot be read ({type(exc).__name__}: {exc})"


def _sqlite_stamp(text: Any) -> str:
    """The canonical UTC stamp of an instant as SQLite stores it ('YYYY-MM-DD HH:MM:SS.ffffff').

    The stored text is checked to be a real instant; the usual form is then rewritten, not
    re-formatted (strftime costs more than the hash); any other form goes through ``_stamp``.
    """
    if not isinstance(text, str):
        raise _Malformed(f"its time {text!r} is not an instant")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _Malformed(f"its time {text!r} is not an instant") from None
    if len(text) == 26 and text[10] == " " and value.tzinfo is None:
        return f"{text[:10]}T{text[11:]}Z"
    return _stamp(value if value.tzinfo else value.replace(tzinfo=UTC))


class _Machine:
    """Where a workflow's triggers lead, asked of its static machine once per (state, trigger)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.initial: str | None = spec.initial if spec is not None else None
        self.known: dict[tuple[str, str], str | None] = {}

    def fire(self, state: str, trigger: str) -> str | None:
        key = (state, trigger)
        if key not in self.known:
            spec = self.spec
            valid = spec is not None and spec.transition(state, trigger) is not None
            self.known[key] = spec.fire(state, trigger) if valid else None
        return self.known[key]


class _Firing:
    """One ``_Machine`` per workflow kind met during a verification."""

    def __init__(self, registry: WorkflowRegistry) -> None:
        self.registry = registry
        self.machines: dict[str, _Machine] = {}

    def of(self, kind: str) -> _Machine:
        machine = self.machines.get(kind)
        if machine is None:
            spec = self.registry[kind] if kind in self.registry.kinds() else None
            machine = self.machines[kind] = _Machine(spec)
        return machine


def _case_rows(conn: Connection, case_id: int | None) -> dict[int | None, _CaseRow]:
    """The case rows on the driver's cursor (``fields`` decoded only when compared)."""
    sqlite = conn.dialect.name == "sqlite"
    statement = "SELECT id, kind, state, version, fields, audit_seq, audit_hash FROM regul_case"
    params: tuple[Any, ...] = ()
    if case_id is not None:
        statement += " WHERE id = ?" if sqlite else " WHERE id = %s"
        params = (case_id,)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        rows = cursor.execute(statement, params).fetchall()
    finally:
        cursor.close()
    return {row[0]: _CaseRow(*row[1:]) for row in rows}


_RAW_COLUMNS = (
    "id, case_id, seq, {at}, actor, role, org, action, from_state, to_state, version, reason, "
    "data, prev_hash, hash, stream"
)
_PG_AT = """to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _raw_events(conn: Connection, *, case_id: int | None, batch: int) -> Iterator[tuple[Any, ...]]:
    """Every event (or one case's) in id order as driver tuples, in keyset pages.

    SQLite gives ``at`` and ``data`` as the stored text; PostgreSQL gives ``at`` already as the
    canonical UTC stamp and ``data`` decoded from its JSONB (whose own text form is not the
    canonical encoding: keys ordered by length, spaces).
    """
    sqlite = conn.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    columns = _RAW_COLUMNS.format(at="at" if sqlite else _PG_AT)
    where = f"id > {mark}" + (f" AND case_id = {mark}" if case_id is not None else "")
    statement = f"SELECT {columns} FROM audit_event WHERE {where} ORDER BY id LIMIT {int(batch)}"
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        last = 0
        while True:
            params = (last,) if case_id is None else (last, case_id)
            rows = cursor.execute(statement, params).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]
    finally:
        cursor.close()


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
    offset: int = 0,
    limit: int | None = None,
) -> Iterator[Any]:
    """Events in id order, fetched in keyset pages so memory stays flat on a large log.

    ``scope_where`` is a condition on the case table (a regional auditor's region): events
    of cases outside it, and the ``security`` stream, are left out. ``offset`` and ``limit``
    cut one page of the filtered events (the desk's pages).
    """
    last, skip = 0, max(offset, 0)
    while True:
        size = batch if limit is None else min(batch, limit)
        if size <= 0:
            return
        query = sa.select(_T).where(_T.c.id > last).order_by(_T.c.id).limit(size)
        if skip:
            query, skip = query.offset(skip), 0
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
        if len(rows) < size:
            return
        last = rows[-1].id
        if limit is not None:
            limit -= len(rows)


def export_record(row: Any) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in EXPORT_COLUMNS}
    record["at"] = _stamp(row.at)
    return record


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXPORT_FORMATS = ("jsonl", "csv", "csv-fr")
# A formula character at a cell's start, or after a separator either software splits on (',' or
# ';', then blanks): a spreadsheet that splits the cell there would run what follows.
_AFTER_SEPARATOR = re.compile(r"([,;][ \t]*)([=+\-@])")
# In a JSON text a ',' outside a string is always followed by a space (json.dumps' default
# separators), so a formula character right after ',' or ';' lies inside a string and may be
# written as a \u escape; '=', '+' and '@' never occur outside strings at all.
_JSON_AFTER_SEPARATOR = re.compile(r"(?<=[,;])-|(?<=[,;])([ \t]*)([=+@])")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula (CWE-1236), whichever of ',' and
    ';' it splits on: a quote in front of a formula character at the start or after a separator.

    Only the CSV exports do this, for the auditor who opens them in a spreadsheet; the JSON
    Lines export stays byte-exact, and it is the one the chain can be re-verified from.
    """
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_START):
        value = "'" + value
    return _AFTER_SEPARATOR.sub(r"\1'\2", value) if ("," in value or ";" in value) else value


def _json_cell(data: Any) -> str:
    """The ``data`` column as JSON that parses to the same value and splits into no formula."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False)
    if "," not in text and ";" not in text:
        return text
    return _JSON_AFTER_SEPARATOR.sub(
        lambda m: "\\u002d" if m.group(0) == "-" else f"{m.group(1)}\\u{ord(m.group(2)):04x}", text
    )


def export_lines(rows: Iterable[Any], *, fmt: str) -> Iterator[str]:
    """Events as JSON Lines, or CSV (header first, cells made spreadsheet-safe), line by line.

    ``csv`` is RFC 4180 with ','; ``csv-fr`` is what French spreadsheet software opens directly:
    a UTF-8 byte order mark and ';' between cells.
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}: use {', '.join(EXPORT_FORMATS)}")
    buffer = io.StringIO()
    delimiter = ";" if fmt == "csv-fr" else ","
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, delimiter=delimiter)
    if fmt != "jsonl":
        writer.writeheader()
        yield ("\ufeff" if fmt == "csv-fr" else "") + buffer.getvalue()
    for row in rows:
        record = export_record(row)
        if fmt == "jsonl":
            yield json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
            continue
        data = _json_cell(record.pop("data"))
        buffer.seek(0)
        buffer.truncate()
        writer.writerow({**{k: spreadsheet_safe(v) for k, v in record.items()}, "data": data})
        yield buffer.getvalue()


def export(rows: Iterable[Any], out: IO[str], *, fmt: str) -> int:
    """Write events as JSON Lines or CSV; returns how many were written."""
    count = 0 if fmt == "jsonl" else -1  # the CSV header is a line too
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
