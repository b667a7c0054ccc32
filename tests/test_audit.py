"""The audit log on both databases: append-only triggers, tamper detection, verify, export, replay."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from typer.testing import CliRunner, Result

from engine import audit
from engine.cases import CaseView
from engine.db import HEAD_REVISION
from engine.errors import InputError, NotPermitted, StorageError
from engine.models import AuditEvent, Case
from interfaces.cli import app
from tests.conftest import CONFIRMS, START, TOULOUSE, Ctx, drive, path_to
from workflows import default_registry

REGISTRY = default_registry()
EVENTS = AuditEvent.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
STEP = timedelta(minutes=10)
STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
# Where each case of the log is driven to, one trigger per round, the three interleaved.
PLANS = {
    "ecmo": path_to(REGISTRY["ecmo"], "closed"),
    "ppe": path_to(REGISTRY["ppe"], "closed"),
    "transfer": path_to(REGISTRY["transfer"], "national_regulation"),
}
# The triggers of migration 0001, put back at the end of a tampering transaction (on PostgreSQL
# the schema is shared by every test of the session).
SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
)
PG_TRIGGERS = (
    "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION regul_audit_append_only()",
    "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION regul_audit_append_only()",
)


# -- the log under test --------------------------------------------------------------------


@dataclass
class Log:
    """Three interleaved cases with several events each, a case refusal and a security refusal."""

    cases: dict[str, CaseView]

    def events(self, ctx: Ctx, case: str | None = None) -> list[Any]:
        with ctx.db.read() as conn:
            case_id = self.cases[case].id if case else None
            return list(audit.iter_events(conn, case_id=case_id))

    def event(self, ctx: Ctx, case: str, seq: int) -> Any:
        (row,) = [e for e in self.events(ctx, case) if e.seq == seq]
        return row

    def stream(self, case: str) -> str:
        return f"case {self.cases[case].id}"


def build_log(ctx: Ctx) -> Log:
    cases: dict[str, CaseView] = {}
    for kind in PLANS:
        cases[kind] = ctx.open(kind)
        ctx.clock.advance(STEP)
    for step in range(max(len(plan) for plan in PLANS.values())):
        for kind, plan in PLANS.items():
            if step < len(plan):
                cases[kind] = drive(ctx, cases[kind], [plan[step]])
                ctx.clock.advance(STEP)
    with pytest.raises(NotPermitted, match="ccs may"):
        ctx.runner.advance(
            reference=cases["transfer"].reference,
            trigger="reject",
            login="ars-occ",
            reason="pas notre niveau",
        )
    ctx.clock.advance(STEP)
    with pytest.raises(NotPermitted, match="may not open"):
        ctx.runner.open_case(
            kind="ecmo", login="ars-occ", org=TOULOUSE, fields={"patient_ref": "PAT-9"}
        )
    ctx.clock.advance(STEP)
    return Log(cases)


@pytest.fixture
def log(ctx: Ctx) -> Log:
    return build_log(ctx)


@contextmanager
def triggers_dropped(ctx: Ctx) -> Iterator[Connection]:
    """A transaction in which someone with database access drops the append-only triggers,
    tampers, and puts the triggers back so that nothing looks out of place."""
    with ctx.db.engine.begin() as conn:
        if ctx.db.is_sqlite:
            conn.execute(sa.text("DROP TRIGGER audit_event_no_update"))
            conn.execute(sa.text("DROP TRIGGER audit_event_no_delete"))
        else:
            conn.execute(sa.text("DROP TRIGGER audit_event_append_only ON audit_event"))
            conn.execute(sa.text("DROP TRIGGER audit_event_no_truncate ON audit_event"))
        yield conn
        for statement in SQLITE_TRIGGERS if ctx.db.is_sqlite else PG_TRIGGERS:
            conn.execute(sa.text(statement))
    # The PostgreSQL schema is shared by the whole session: the log must be protected again.
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), ctx.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_event SET reason = reason"))


def verify(ctx: Ctx, case_id: int | None = None) -> audit.VerifyReport:
    with ctx.db.read() as conn:
        return audit.verify(conn, case_id=case_id)


def forged_row(
    *, case_id: int | None, seq: int, prev_hash: str, at: datetime, **changes: Any
) -> dict[str, Any]:
    """An event built the way the engine builds one, with a hash that is right for its content."""
    values: dict[str, Any] = {
        "actor": "ccs",
        "role": "ccs",
        "org": "CCS",
        "action": "transition",
        "from_state": "national_regulation",
        "to_state": "dispatched",
        "version": seq,
        "reason": "solution nationale",
        "data": {"trigger": "resolve", "fields": {}},
        **changes,
    }
    draft = audit.Draft(**values)
    digest = audit.chain_hash(prev_hash, audit.canonical(case_id, seq, at, draft))
    return {
        **values,
        "case_id": case_id,
        "seq": seq,
        "at": at,
        "prev_hash": prev_hash,
        "hash": digest,
    }


# -- append-only -------------------------------------------------------------------------


def test_untouched_log_verifies(ctx: Ctx, log: Log) -> None:
    """A log written only by the engine verifies: every case stream and the security stream."""
    report = verify(ctx)
    assert report.ok, report.findings
    assert report.findings == ()
    assert report.streams == 4  # three cases and the security stream
    assert report.events == len(log.events(ctx)) == 6 + 5 + 5 + 1
    for case in log.cases.values():
        assert verify(ctx, case.id).ok


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_event SET reason = 'réécrit'",
        "UPDATE audit_event SET hash = prev_hash WHERE seq = 2",
        "DELETE FROM audit_event WHERE seq = 3",
        "DELETE FROM audit_event",
    ],
)
def test_triggers_refuse_update_and_delete(ctx: Ctx, log: Log, statement: str) -> None:
    """A raw UPDATE or DELETE on audit_event is refused by the database; no row changes."""
    before = ctx.snapshot()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), ctx.db.engine.begin() as conn:
        conn.execute(sa.text(statement))
    assert ctx.snapshot() == before
    assert verify(ctx).ok


def test_engine_write_transaction_reports_append_only_refusal(ctx: Ctx, log: Log) -> None:
    """Through the engine's own write transaction the refusal becomes a StorageError that says why."""
    before = ctx.snapshot()
    with (
        pytest.raises(StorageError, match=r"refused by the database.*append-only"),
        ctx.db.write() as conn,
    ):
        conn.execute(sa.text("DELETE FROM audit_event WHERE seq = 1"))
    assert ctx.snapshot() == before


def test_emptying_the_log_is_refused(ctx: Ctx, log: Log) -> None:
    """Emptying the log at once is refused: TRUNCATE on PostgreSQL (which row triggers do not
    see), DELETE without WHERE on SQLite (its truncate shortcut)."""
    statement = "DELETE FROM audit_event" if ctx.db.is_sqlite else "TRUNCATE audit_event"
    before = ctx.snapshot()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), ctx.db.engine.begin() as conn:
        conn.execute(sa.text(statement))
    assert ctx.snapshot() == before


# -- tamper detection (triggers dropped) ---------------------------------------------------


@pytest.mark.parametrize(
    ("column", "change"),
    [
        ("reason", lambda e: "la console était disponible"),
        ("actor", lambda e: "ars-occ"),
        ("at", lambda e: e.at + timedelta(seconds=1)),
        ("to_state", lambda e: "rejected"),
        ("version", lambda e: e.version + 1),
        ("data", lambda e: {**e.data, "fields": {"source": "hospital"}}),
    ],
)
def test_edited_event_is_named(ctx: Ctx, log: Log, column: str, change: Any) -> None:
    """Changing any hashed field of one event makes verify name exactly that event as edited."""
    target = log.event(ctx, "ecmo", 3)
    with triggers_dropped(ctx) as conn:
        conn.execute(
            EVENTS.update().where(EVENTS.c.id == target.id).values({column: change(target)})
        )
    report = verify(ctx)
    assert not report.ok
    assert len(report.findings) == 1
    first = report.findings[0]
    assert (first.stream, first.event_id, first.seq) == (log.stream("ecmo"), target.id, 3)
    assert "edited" in first.problem
    assert str(first) == f"{log.stream('ecmo')}: event id {target.id} (seq 3): {first.problem}"
    assert verify(ctx, log.cases["ppe"].id).ok
    assert not verify(ctx, log.cases["ecmo"].id).ok


def test_edited_security_event_is_named(ctx: Ctx, log: Log) -> None:
    """The refusals that concern no case are a chain too: editing one is found in 'security'."""
    (refusal,) = [e for e in log.events(ctx) if e.case_id is None]
    with triggers_dropped(ctx) as conn:
        conn.execute(EVENTS.update().where(EVENTS.c.id == refusal.id).values(actor="ccs"))
    (first,) = verify(ctx).findings
    assert (first.stream, first.event_id) == (audit.SECURITY_STREAM, refusal.id)
    assert "edited" in first.problem


def test_deleted_middle_event_names_the_next_one(ctx: Ctx, log: Log) -> None:
    """Deleting an event in the middle of a stream: the first bad event is the next one (a gap)."""
    gone, following = log.event(ctx, "ppe", 3), log.event(ctx, "ppe", 4)
    with triggers_dropped(ctx) as conn:
        conn.execute(EVENTS.delete().where(EVENTS.c.id == gone.id))
    report = verify(ctx)
    assert len(report.findings) == 1
    first = report.findings[0]
    assert (first.stream, first.event_id, first.seq) == (log.stream("ppe"), following.id, 4)
    assert "sequence 4 where 3 was due" in first.problem
    assert "deleted" in first.problem


def test_deleted_last_event_is_found_at_the_stream_end(ctx: Ctx, log: Log) -> None:
    """Deleting the newest event of a case: the stream ends before the head kept on the case row."""
    last = log.events(ctx, "ecmo")[-1]
    assert last.seq == 6
    with triggers_dropped(ctx) as conn:
        conn.execute(EVENTS.delete().where(EVENTS.c.id == last.id))
    report = verify(ctx)
    assert len(report.findings) == 1
    first = report.findings[0]
    assert (first.stream, first.event_id, first.seq) == (log.stream("ecmo"), None, None)
    assert "ends at sequence 5 but its head says 6" in first.problem
    assert str(first).startswith(f"{log.stream('ecmo')}: its end: ")


def test_forged_event_with_wrong_link_is_named(ctx: Ctx, log: Log) -> None:
    """A forged event with the next seq and a hash right for its content, linked to the wrong
    predecessor, is named even when the case head is moved to it."""
    case = log.cases["transfer"]
    events = log.events(ctx, "transfer")
    # The forger links to the event before the last one (or anything but the real head).
    forged = forged_row(
        case_id=case.id, seq=events[-1].seq + 1, prev_hash=events[-2].hash, at=ctx.clock.now()
    )
    with triggers_dropped(ctx) as conn:
        forged_id = conn.execute(EVENTS.insert().returning(EVENTS.c.id), forged).scalar_one()
        conn.execute(
            CASES.update()
            .where(CASES.c.id == case.id)
            .values(audit_seq=forged["seq"], audit_hash=forged["hash"], state="dispatched")
        )
    report = verify(ctx)
    assert len(report.findings) == 1
    first = report.findings[0]
    assert (first.stream, first.event_id, first.seq) == (log.stream("transfer"), forged_id, 6)
    assert "previous hash" in first.problem
    assert "inserted" in first.problem


def test_forged_event_chained_to_head_is_found_against_the_case_head(ctx: Ctx, log: Log) -> None:
    """A forged event perfectly chained after the last one, the case row untouched: the stream
    runs past the head recorded on the case."""
    case = log.cases["ecmo"]
    last = log.events(ctx, "ecmo")[-1]
    forged = forged_row(case_id=case.id, seq=last.seq + 1, prev_hash=last.hash, at=ctx.clock.now())
    with triggers_dropped(ctx) as conn:
        conn.execute(EVENTS.insert(), forged)
    report = verify(ctx)
    assert len(report.findings) == 1
    first = report.findings[0]
    assert first.stream == log.stream("ecmo")
    assert first.seq == 7
    assert first.event_id == max(e.id for e in log.events(ctx, "ecmo"))
    assert "past the stream's head (sequence 6): added" in first.problem


def test_forged_event_of_no_case_is_named(ctx: Ctx, log: Log) -> None:
    """An event inserted for a case that does not exist is named as belonging to no case."""
    forged = forged_row(case_id=999, seq=1, prev_hash=audit.GENESIS, at=ctx.clock.now())
    with triggers_dropped(ctx) as conn:
        forged_id = conn.execute(EVENTS.insert().returning(EVENTS.c.id), forged).scalar_one()
    report = verify(ctx)
    assert report.findings[0] == audit.Finding("case 999", forged_id, 1, "no such case")


def test_swapped_events_are_found_as_reordered(ctx: Ctx, log: Log) -> None:
    """Swapping the sequence numbers of two events of a case names the first of them."""
    a, b = log.event(ctx, "ecmo", 2), log.event(ctx, "ecmo", 3)
    assert a.id < b.id
    with triggers_dropped(ctx) as conn:
        conn.execute(EVENTS.update().where(EVENTS.c.id == a.id).values(seq=-1))
        conn.execute(EVENTS.update().where(EVENTS.c.id == b.id).values(seq=2))
        conn.execute(EVENTS.update().where(EVENTS.c.id == a.id).values(seq=3))
    report = verify(ctx)
    assert len(report.findings) == 1
    first = report.findings[0]
    assert (first.stream, first.event_id, first.seq) == (log.stream("ecmo"), a.id, 3)
    assert "reordered" in first.problem


def test_verify_pages_through_the_log(ctx: Ctx, log: Log) -> None:
    """Verification reads the log in pages; a page size that splits streams changes nothing."""
    target = log.event(ctx, "transfer", 4)
    with ctx.db.read() as conn:
        clean = audit.verify(conn, batch=2)
    assert (clean.ok, clean.events, clean.streams) == (True, 17, 4)
    with triggers_dropped(ctx) as conn:
        conn.execute(EVENTS.update().where(EVENTS.c.id == target.id).values(reason="autre"))
    with ctx.db.read() as conn:
        for batch in (1, 2, 3, 5000):
            report = audit.verify(conn, batch=batch)
            assert [f.event_id for f in report.findings] == [target.id]
            assert report.events == 17


def test_altered_security_head_is_found(ctx: Ctx, log: Log) -> None:
    """Editing the security stream's head row breaks that stream at its end."""
    with ctx.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_head SET hash = :h"), {"h": "0" * 63 + "1"})
    (first,) = verify(ctx).findings
    assert (first.stream, first.event_id) == (audit.SECURITY_STREAM, None)
    assert "head" in first.problem


@pytest.mark.parametrize(
    "change",
    [
        {"audit_hash": "f" * 64},
        {"audit_seq": 4},
        {"audit_seq": 9},
    ],
    ids=["hash", "seq-back", "seq-ahead"],
)
def test_altered_case_head_is_found(ctx: Ctx, log: Log, change: dict[str, Any]) -> None:
    """Editing the audit head kept on the case row breaks that case's stream at its end."""
    case = log.cases["ppe"]
    with ctx.db.engine.begin() as conn:  # the case row is not append-only: no trigger to drop
        conn.execute(CASES.update().where(CASES.c.id == case.id).values(change))
    report = verify(ctx)
    assert len(report.findings) == 1
    first = report.findings[0]
    assert first.stream == log.stream("ppe")
    assert "head" in first.problem
    if change == {"audit_seq": 4}:  # events 5 and 6 now lie past the head: the first is named
        assert first.seq == 5
    else:
        assert first.event_id is None


# -- the CLI: verify -----------------------------------------------------------------------


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``regul`` in-process on the test's database, from an empty folder (no regul.toml)."""
    monkeypatch.chdir(tmp_path)
    env = {"REGUL_DATABASE_URL": database_url, "REGUL_CONFIG": None, "REGUL_DEADLINES": None}

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=env)

    return run


def test_cli_verify_clean_log_exits_zero(ctx: Ctx, log: Log, cli: Any) -> None:
    """`regul audit verify` on an untouched log says OK with the counts and exits 0."""
    result = cli("audit", "verify", "--as", "auditeur")
    assert result.exit_code == 0, result.output
    assert "audit OK: 17 event(s) in 4 chain(s) verified" in result.stdout
    data = json.loads(cli("audit", "verify", "--as", "auditeur", "--json").stdout)
    assert data == {
        "ok": True,
        "streams": 4,
        "events": 17,
        "first_bad": None,
        "findings": 0,
    }


def test_cli_verify_tampered_log_exits_one_naming_first_bad_event(
    ctx: Ctx, log: Log, cli: Any
) -> None:
    """After an edit, `regul audit verify` exits 1 and prints the first bad event (text and JSON)."""
    target = log.event(ctx, "ppe", 2)
    with triggers_dropped(ctx) as conn:
        conn.execute(EVENTS.update().where(EVENTS.c.id == target.id).values(reason="rien"))
    result = cli("audit", "verify", "--as", "auditeur")
    assert result.exit_code == 1
    assert (
        f"audit BROKEN: first bad event: {log.stream('ppe')}: event id {target.id} (seq 2): "
        "its content does not match its hash (edited)"
    ) in result.stderr
    assert "1 chain(s) broken of 4" in result.stderr
    as_json = cli("audit", "verify", "--as", "auditeur", "--json")
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)
    assert data["ok"] is False
    assert data["findings"] == 1
    assert data["first_bad"] == {
        "stream": log.stream("ppe"),
        "event_id": target.id,
        "seq": 2,
        "problem": "its content does not match its hash (edited)",
    }
    # One case at a time: the tampered one fails, another passes.
    one = ("audit", "verify", "--as", "auditeur-occ", "--case")
    assert cli(*one, log.cases["ppe"].reference).exit_code == 1
    assert cli(*one, log.cases["ecmo"].reference).exit_code == 0


@pytest.mark.parametrize("which", ["missing", "other-kind"])
def test_cli_verify_unknown_case_is_not_found(ctx: Ctx, log: Log, cli: Any, which: str) -> None:
    """`regul audit verify --case` on a case that does not exist is an error, not 'audit OK'."""
    ppe = log.cases["ppe"].reference
    reference = "ECMO-999999" if which == "missing" else ppe.replace("EPI", "TRF")
    result = cli("audit", "verify", "--as", "auditeur", "--case", reference)
    assert result.exit_code == 3, result.output
    assert f"no case {reference}" in result.stderr
    assert "audit OK" not in result.output


# -- export --------------------------------------------------------------------------------


def expected_record(row: Any) -> dict[str, Any]:
    """The export of one event, written out independently of the engine's own code."""
    return {
        "id": row.id,
        "case_id": row.case_id,
        "seq": row.seq,
        "at": row.at.astimezone(UTC).strftime(STAMP),
        "actor": row.actor,
        "role": row.role,
        "org": row.org,
        "action": row.action,
        "from_state": row.from_state,
        "to_state": row.to_state,
        "version": row.version,
        "reason": row.reason,
        "data": dict(row.data),
        "prev_hash": row.prev_hash,
        "hash": row.hash,
        "stream": row.stream,
    }


def from_csv(row: dict[str, str]) -> dict[str, Any]:
    """A CSV record with its types back: empty case/state cells are null, data is JSON."""
    return {
        **row,
        "id": int(row["id"]),
        "case_id": int(row["case_id"]) if row["case_id"] else None,
        "seq": int(row["seq"]),
        "version": int(row["version"]),
        "from_state": row["from_state"] or None,
        "to_state": row["to_state"] or None,
        "data": json.loads(row["data"]),
        "stream": row["stream"] or None,
    }


def read_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_csv(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == audit.EXPORT_COLUMNS
    return [from_csv(row) for row in reader]


def verify_offline(records: list[dict[str, Any]]) -> list[str]:
    """What an auditor can run on an export alone: no database, no Régul, only sha256 and JSON.

    Each record's hash must be sha256(prev_hash + canonical JSON of its fields), and within a
    case each record must follow the one before it (next seq, prev_hash = its hash); a stream
    that starts at seq 1 starts from the genesis hash.
    """
    problems: list[str] = []
    previous: dict[Any, dict[str, Any]] = {}
    for r in records:
        holder = {"stream": r["stream"]} if r.get("stream") else {}
        body = json.dumps(
            {
                **holder,
                "case": r["case_id"],
                "seq": r["seq"],
                "at": r["at"],
                "actor": r["actor"],
                "role": r["role"],
                "org": r["org"],
                "action": r["action"],
                "from": r["from_state"],
                "to": r["to_state"],
                "version": r["version"],
                "reason": r["reason"],
                "data": r["data"],
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        draft = audit.Draft(
            r["actor"],
            r["role"],
            r["org"],
            r["action"],
            r["from_state"],
            r["to_state"],
            r["version"],
            r["reason"],
            r["data"],
        )
        at = datetime.strptime(r["at"], STAMP).replace(tzinfo=UTC)
        assert body == audit.canonical(r["case_id"], r["seq"], at, draft, r.get("stream"))
        if hashlib.sha256(r["prev_hash"].encode("ascii") + body).hexdigest() != r["hash"]:
            problems.append(f"event {r['id']}: content does not match hash")
        key = r.get("stream") or r["case_id"]
        before = previous.get(key)
        if before is not None and (
            r["seq"] != before["seq"] + 1 or r["prev_hash"] != before["hash"]
        ):
            problems.append(f"event {r['id']}: does not follow event {before['id']}")
        if before is None and r["seq"] == 1 and r["prev_hash"] != audit.GENESIS:
            problems.append(f"event {r['id']}: first event not chained to genesis")
        previous[key] = r
    return problems


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_writes_every_column_and_verifies_offline(ctx: Ctx, log: Log, fmt: str) -> None:
    """engine.audit.export writes every event with every column, in order, and the export alone
    lets an auditor recompute every hash and link."""
    rows = log.events(ctx)
    out = io.StringIO(newline="")
    with ctx.db.read() as conn:
        count = audit.export(audit.iter_events(conn), out, fmt=fmt)
    assert count == len(rows) == 17
    records = read_jsonl(out.getvalue()) if fmt == "jsonl" else read_csv(out.getvalue())
    assert records == [expected_record(row) for row in rows]
    if fmt == "jsonl":
        assert all(tuple(sorted(r)) == tuple(sorted(audit.EXPORT_COLUMNS)) for r in records)
    assert verify_offline(records) == []
    # The offline check catches an export doctored after the fact.
    doctored = [dict(r) for r in records]
    doctored[4]["reason"] = "autre motif"
    assert verify_offline(doctored) == [f"event {records[4]['id']}: content does not match hash"]
    dropped = records[:3] + records[4:]
    assert verify_offline(dropped) != []


def test_export_refuses_unknown_format(ctx: Ctx, log: Log) -> None:
    """engine.audit.export with a format other than jsonl or csv says which ones exist."""
    with pytest.raises(InputError, match="unknown export format 'xml': use jsonl, csv, csv-fr"):
        audit.export([], io.StringIO(), fmt="xml")


def test_cli_export_one_case(ctx: Ctx, log: Log, cli: Any) -> None:
    """`regul audit export --case REF` writes exactly that case's events, seq 1 to n, as JSON Lines."""
    result = cli("audit", "export", "--operator", "--case", log.cases["ecmo"].reference)
    assert result.exit_code == 0, result.output
    records = read_jsonl(result.stdout)
    assert records == [expected_record(row) for row in log.events(ctx, "ecmo")]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert verify_offline(records) == []


def test_cli_export_time_range(ctx: Ctx, log: Log, cli: Any) -> None:
    """--since is inclusive, --until exclusive; the range cuts across cases, events stay in order."""
    rows = log.events(ctx)
    ats = sorted({row.at for row in rows})
    assert len(ats) == len(rows)  # the clock moved between actions: one instant per event
    since, until = ats[4], ats[11]
    result = cli(
        "audit",
        "export",
        "--as",
        "auditeur",
        "--since",
        since.isoformat(),
        "--until",
        until.strftime("%Y-%m-%dT%H:%MZ"),
    )
    assert result.exit_code == 0, result.output
    records = read_jsonl(result.stdout)
    expected = [row for row in rows if since <= row.at < until]
    assert len(expected) == 7
    assert records == [expected_record(row) for row in expected]
    assert {r["case_id"] for r in records} == {c.id for c in log.cases.values()}
    assert verify_offline(records) == []  # a partial stream checks from its first prev_hash
    # The same instant written with another offset selects the same events.
    paris = since.astimezone(UTC) + timedelta(hours=1)
    shifted = cli(
        "audit",
        "export",
        "--as",
        "auditeur",
        "--since",
        paris.strftime("%Y-%m-%dT%H:%M:%S+01:00"),
        "--until",
        until.isoformat(),
    )
    assert read_jsonl(shifted.stdout) == records
    # Only --since, or only --until, works alone too.
    export = ("audit", "export", "--as", "auditeur")
    tail = read_jsonl(cli(*export, "--since", until.isoformat()).stdout)
    head = read_jsonl(cli(*export, "--until", since.isoformat()).stdout)
    assert [r["id"] for r in head + records + tail] == [row.id for row in rows]


def test_cli_export_csv_to_file(ctx: Ctx, log: Log, cli: Any, tmp_path: Path) -> None:
    """--format csv --output FILE writes the case's events to the file and says how many."""
    target = tmp_path / "export" / "ppe.csv"
    target.parent.mkdir()
    args = [
        "audit",
        "export",
        "--operator",
        "--case",
        log.cases["ppe"].reference,
        "--format",
        "csv",
    ]
    result = cli(*args, "--output", str(target))
    assert result.exit_code == 0, result.output
    assert "5 events written to" in result.stdout
    records = read_csv(target.read_text(encoding="utf-8"))
    assert records == [expected_record(row) for row in log.events(ctx, "ppe")]
    assert verify_offline(records) == []
    summary = cli(*args, "--output", str(target), "--json")
    assert json.loads(summary.stdout) == {"events": 5, "file": str(target), "format": "csv"}
    assert read_csv(target.read_text(encoding="utf-8")) == records  # rewritten, not appended


@pytest.mark.parametrize(
    "bad",
    [
        (["--format", "xml"], 2, "--format 'xml': use jsonl, csv, csv-fr"),
        (["--since", "notadate"], 2, "--since 'notadate' is not an ISO-8601 instant"),
        (["--until", "demain"], 2, "--until 'demain' is not an ISO-8601 instant"),
        (
            ["--since", "2026-11-22T12:00Z", "--until", "2026-11-22T09:00Z"],
            2,
            "--since must be before --until",
        ),
        (["--case", "ECMO-999999"], 3, "no case ECMO-999999"),
        (["--case", "LUNCH-1"], 2, "unknown prefix 'LUNCH'"),
    ],
    ids=["format", "since", "until", "since-after-until", "unknown-case", "bad-reference"],
)
def test_cli_export_bad_input_is_one_line_error(
    log: Log, cli: Any, tmp_path: Path, bad: tuple[list[str], int, str]
) -> None:
    """Bad export options exit non-zero with one 'error:' line naming the problem; no file is made."""
    args, code, message = bad
    target = tmp_path / "never.jsonl"
    result = cli("audit", "export", "--operator", *args, "--output", str(target))
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert not target.exists()
    as_json = cli("audit", "export", "--operator", *args, "--json")
    assert as_json.exit_code == code
    assert message in json.loads(as_json.stdout)["message"]


# -- replay --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ecmo", "ppe", "transfer"])
def test_replay_lands_on_stored_state_despite_refusals(ctx: Ctx, kind: str) -> None:
    """Refiring a case's recorded transitions gives its stored state and version; refused
    attempts are in the stream but move nothing."""
    spec = REGISTRY[kind]
    plan = path_to(spec, "closed")
    case = ctx.open(kind)
    for i, trigger in enumerate(plan):
        ctx.clock.advance(STEP)
        if i == 1:  # the auditor acts on nothing; the refusal is recorded on the case
            with pytest.raises(NotPermitted, match="role auditor"):
                ctx.runner.advance(
                    reference=case.reference, trigger=trigger, login="auditeur", reason="essai"
                )
        case = drive(ctx, case, [trigger])
    assert (case.state, case.version) == ("closed", len(plan) + 1)
    with ctx.db.read() as conn:
        events = list(audit.iter_events(conn, case_id=case.id))
        replayed = audit.replay(conn, ctx.registry, case.id)
        assert audit.verify(conn, case_id=case.id).ok
    assert [e.action for e in events].count("refused") == 1
    assert len(events) == len(plan) + 2
    assert replayed.matches
    assert (replayed.state, replayed.version) == ("closed", len(plan) + 1)
    assert (replayed.stored_state, replayed.stored_version) == ("closed", len(plan) + 1)


def test_replay_of_a_moving_case(ctx: Ctx) -> None:
    """Replay matches at every step of a case, from its opening on."""
    spec = REGISTRY["transfer"]
    case = ctx.open("transfer")
    for trigger in [*path_to(spec, "national_regulation"), "resolve", "accept", "transferred"]:
        with ctx.db.read() as conn:
            replayed = audit.replay(conn, ctx.registry, case.id)
        assert replayed.matches
        assert (replayed.state, replayed.version) == (case.state, case.version)
        ctx.clock.advance(STEP)
        case = drive(ctx, case, [trigger])
    assert case.state == "transferred"


def test_replay_finds_a_rewritten_destination(ctx: Ctx, log: Log) -> None:
    """An event whose recorded destination is not where the workflow leads stops the replay."""
    target = log.event(ctx, "ecmo", 2)
    with triggers_dropped(ctx) as conn:
        conn.execute(EVENTS.update().where(EVENTS.c.id == target.id).values(to_state="rejected"))
    with (
        ctx.db.read() as conn,
        pytest.raises(
            InputError, match="event 2 records rejected but the workflow leads to umac_review"
        ),
    ):
        audit.replay(conn, ctx.registry, log.cases["ecmo"].id)


def test_log_timestamps_follow_the_injected_clock(ctx: Ctx, log: Log) -> None:
    """Events carry the engine clock's instant in UTC, never the database's time."""
    rows = log.events(ctx)
    assert rows[0].at == START
    assert [row.at for row in rows] == [START + i * STEP for i in range(len(rows))]


# -- the log against its owner -------------------------------------------------------------


def test_insert_or_replace_cannot_rewrite_an_event(ctx: Ctx, log: Log) -> None:
    """SQLite: INSERT OR REPLACE / REPLACE INTO / an upsert on an existing event's id or (case,
    seq) is refused, even from a plain sqlite3 connection without Régul's pragmas."""
    if not ctx.db.is_sqlite:
        pytest.skip("REPLACE is SQLite's; PostgreSQL's upsert is an UPDATE, refused by 0001")
    import sqlite3

    target = log.event(ctx, "ecmo", 2)
    forged = forged_row(
        case_id=target.case_id, seq=2, prev_hash=target.prev_hash, at=target.at, reason="autre"
    )
    columns = ", ".join(["id", *forged])
    marks = ", ".join("?" for _ in range(len(forged) + 1))
    values = [
        target.id,
        *(json.dumps(v) if k == "data" else v for k, v in forged.items()),
    ]
    values[list(forged).index("at") + 1] = target.at.strftime("%Y-%m-%d %H:%M:%S.%f")
    before = ctx.snapshot()
    path = ctx.db.url.split("///", 1)[1]
    statements = [
        (f"INSERT OR REPLACE INTO audit_event ({columns}) VALUES ({marks})", values),
        (f"REPLACE INTO audit_event ({columns}) VALUES ({marks})", values),
        (f"INSERT OR REPLACE INTO audit_event ({columns}) VALUES ({marks})", [None, *values[1:]]),
        (
            f"INSERT INTO audit_event ({columns}) VALUES ({marks}) "
            "ON CONFLICT(id) DO UPDATE SET reason = excluded.reason",
            values,
        ),
    ]

    def run(statement: str, params: list[Any]) -> None:
        raw = sqlite3.connect(path)
        try:
            raw.execute(statement, params)
            raw.commit()
        finally:
            raw.close()

    for statement, params in statements:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            run(statement, params)
    assert ctx.snapshot() == before
    assert verify(ctx).ok


def test_engine_connections_turn_recursive_triggers_on(ctx: Ctx) -> None:
    """SQLite: the engine's connections run with recursive_triggers, so a REPLACE's implicit
    delete meets the append-only DELETE trigger too."""
    if not ctx.db.is_sqlite:
        pytest.skip("a SQLite pragma")
    with ctx.db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA recursive_triggers").scalar_one() == 1


@pytest.fixture
def as_app_role(ctx: Ctx) -> Iterator[Any]:
    """A Database connected as regul_app, the non-owner role migration 0006 creates."""
    if ctx.db.is_sqlite:
        pytest.skip("a PostgreSQL role")
    from engine.db import Database

    url = ctx.db.url.replace("postgresql+psycopg://", "postgresql+psycopg://regul_app@", 1)
    db = Database(url)
    yield db
    db.dispose()


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE audit_event SET reason = 'réécrit'", "permission denied"),
        ("DELETE FROM audit_event WHERE seq = 3", "permission denied"),
        ("TRUNCATE audit_event", "permission denied"),
        ("SET session_replication_role = replica", "permission denied"),
        ("ALTER TABLE audit_event DISABLE TRIGGER ALL", "must be owner"),
        ("DROP TRIGGER audit_event_append_only ON audit_event", "must be owner"),
        (
            "INSERT INTO audit_event SELECT * FROM audit_event WHERE seq = 1 "
            "ON CONFLICT (id) DO UPDATE SET reason = 'x'",
            "permission denied",
        ),
    ],
    ids=["update", "delete", "truncate", "replica", "disable", "drop", "upsert"],
)
def test_app_role_cannot_touch_the_log(
    ctx: Ctx, log: Log, as_app_role: Any, statement: str, refusal: str
) -> None:
    """PostgreSQL: as regul_app no UPDATE, DELETE, TRUNCATE, trigger switch or replica trick
    gets through; nothing changes."""
    before = ctx.snapshot()
    with pytest.raises(sa.exc.DBAPIError, match=refusal), as_app_role.engine.begin() as conn:
        conn.execute(sa.text(statement))
    assert ctx.snapshot() == before
    assert verify(ctx).ok


def test_app_role_runs_the_engine(ctx: Ctx, as_app_role: Any) -> None:
    """PostgreSQL: Régul works as regul_app: open, advance, refuse, read, verify."""
    from engine.runner import Runner

    runner = Runner(as_app_role, ctx.registry, ctx.clock, rules=CONFIRMS)
    case = runner.open_case(
        kind="ecmo",
        login=f"etab-{TOULOUSE}",
        org=TOULOUSE,
        fields={"patient_ref": "PAT-0101", "mode": "VV"},
    )
    case = runner.advance(
        reference=case.reference, trigger="escalate", login=f"etab-{TOULOUSE}", reason="r"
    )
    with pytest.raises(NotPermitted):
        runner.open_case(
            kind="ecmo", login="ars-occ", org=TOULOUSE, fields={"patient_ref": "PAT-0102"}
        )
    runner.show(case.reference, login="umac-sud")
    assert runner.audit_verify(login="auditeur").ok
    assert as_app_role.revision() == HEAD_REVISION


# -- verify: malformed rows, replay against the case row -----------------------------------


def _insert_raw(ctx: Ctx, case: CaseView, *, seq: int, at: str, data: str) -> int:
    """An event row written straight into the table, columns as given."""
    with ctx.db.engine.begin() as conn:
        cast = "CAST(:data AS jsonb)" if not ctx.db.is_sqlite else ":data"
        at_value = ":at" if ctx.db.is_sqlite else "CAST(:at AS timestamptz)"
        return int(
            conn.execute(
                sa.text(
                    "INSERT INTO audit_event (case_id, seq, at, actor, role, org, action, "
                    "from_state, to_state, version, reason, data, prev_hash, hash) VALUES "
                    f"(:case, :seq, {at_value}, 'ccs', 'ccs', 'CCS', 'read', NULL, NULL, 1, '', "
                    f"{cast}, :prev, :hash) RETURNING id"
                ),
                {"case": case.id, "seq": seq, "at": at, "data": data, "prev": "0" * 64,
                 "hash": "f" * 64},
            ).scalar_one()
        )  # fmt: skip


@pytest.mark.parametrize(
    ("at", "data", "problem"),
    [
        ("2026-11-22 12:00:00.000000", "[1, 2]", "its data is list, not a JSON object"),
        ("2026-11-22 12:00:00.000000", "42", "its data is int, not a JSON object"),
        ("pas une date", "{}", "its time 'pas une date' is not an instant"),
        ("2026-11-22 12:00:00.000000", "{not json", "its data is not JSON"),
    ],
    ids=["list", "number", "at", "not-json"],
)
def test_malformed_row_is_the_first_bad_event(
    ctx: Ctx, log: Log, cli: Any, at: str, data: str, problem: str
) -> None:
    """An event whose data is not an object, or whose time is unreadable, is named as its
    stream's first bad event by verify and the CLI: never a traceback."""
    if not ctx.db.is_sqlite and (at == "pas une date" or data == "{not json"):
        pytest.skip("PostgreSQL's column types refuse this row")
    case = log.cases["ppe"]
    event_id = _insert_raw(ctx, case, seq=case.audit_seq + 1, at=at, data=data)
    (first,) = verify(ctx).findings
    assert (first.stream, first.event_id, first.seq) == (log.stream("ppe"), event_id, 6)
    assert first.problem.startswith("malformed event: ")
    assert problem in first.problem
    result = cli("audit", "verify", "--as", "auditeur")
    assert result.exit_code == 1
    assert f"first bad event: {log.stream('ppe')}: event id {event_id} (seq 6)" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "change",
    [{"state": "closed"}, {"version": 3}, {"fields": {"patient_ref": "PAT-9999", "mode": "VA"}}],
    ids=["state", "version", "fields"],
)
def test_case_row_disagreeing_with_its_replay_is_reported(
    ctx: Ctx, log: Log, change: dict[str, Any]
) -> None:
    """A case row whose state, version or fields differ from a replay of its chain is reported
    at the end of that stream; the other streams stay clean."""
    case = log.cases["transfer"]
    with ctx.db.engine.begin() as conn:
        conn.execute(CASES.update().where(CASES.c.id == case.id).values(change))
    for registry in (None, REGISTRY):
        with ctx.db.read() as conn:
            report = audit.verify(conn, registry=registry)
        (first,) = report.findings
        assert (first.stream, first.event_id) == (log.stream("transfer"), None)
        assert "a replay of its chain gives state national_regulation" in first.problem
        assert "case row was altered" in first.problem


def test_forged_transition_the_workflow_forbids_is_named(ctx: Ctx, log: Log) -> None:
    """A forged event correctly chained, with the case's head and state moved to it, passes the
    chain but not the replay on the workflow: verify with the registry names it."""
    case = log.cases["ecmo"]
    last = log.events(ctx, "ecmo")[-1]
    forged = forged_row(
        case_id=case.id, seq=last.seq + 1, prev_hash=last.hash, at=ctx.clock.now(),
        from_state="closed", to_state="umac_review", version=case.version + 1,
        data={"trigger": "escalate", "fields": {}},
    )  # fmt: skip
    with ctx.db.engine.begin() as conn:  # INSERT is allowed: the log is append-only
        forged_id = conn.execute(EVENTS.insert().returning(EVENTS.c.id), forged).scalar_one()
        conn.execute(
            CASES.update()
            .where(CASES.c.id == case.id)
            .values(audit_seq=forged["seq"], audit_hash=forged["hash"], state="umac_review",
                    version=case.version + 1)
        )  # fmt: skip
    assert verify(ctx).ok  # the recorded facts agree with the row: only the workflow tells
    with ctx.db.read() as conn:
        (first,) = audit.verify(conn, registry=REGISTRY).findings
    assert (first.stream, first.event_id, first.seq) == (log.stream("ecmo"), forged_id, 7)
    assert first.problem == "replaying the case: its workflow has no trigger 'escalate' from closed"


# -- the CLI as auditor or operator --------------------------------------------------------


def security_events(ctx: Ctx) -> list[Any]:
    return [e for e in Log({}).events(ctx) if e.case_id is None]


@pytest.mark.parametrize("command", [["verify"], ["export"]])
def test_cli_audit_needs_a_reader(ctx: Ctx, log: Log, cli: Any, command: list[str]) -> None:
    """`regul audit verify|export` without --as or --operator (or with both) is an input error
    that writes nothing."""
    before = ctx.snapshot()
    for extra in ([], ["--as", "auditeur", "--operator"]):
        result = cli("audit", *command, *extra)
        assert result.exit_code == 2, result.output
        assert "--as" in result.stderr
        assert "--operator" in result.stderr
    assert ctx.snapshot() == before


@pytest.mark.parametrize("command", [["verify"], ["export"]])
def test_cli_audit_refuses_a_non_auditor_and_records_it(
    ctx: Ctx, log: Log, cli: Any, command: list[str]
) -> None:
    """A non-auditor is refused (exit 5) and the refusal is recorded in the security stream."""
    before = security_events(ctx)
    result = cli("audit", *command, "--as", "ars-occ")
    assert result.exit_code == 5, result.output
    assert "role ars does not audit" in result.stderr
    after = security_events(ctx)
    assert len(after) == len(before) + 1
    assert (after[-1].actor, after[-1].action) == ("ars-occ", "refused")
    assert verify(ctx).ok


def test_cli_regional_auditor_is_limited_to_their_region(ctx: Ctx, log: Log, cli: Any) -> None:
    """A regional auditor exports only their region's cases, may not verify the whole log
    (refusal recorded), and verifying a named case records a read in its chain."""
    paris = ctx.open(hospital="789900001")
    rows = read_jsonl(cli("audit", "export", "--as", "auditeur-occ").stdout)
    assert {r["case_id"] for r in rows} == {c.id for c in log.cases.values()}
    national = read_jsonl(cli("audit", "export", "--as", "auditeur").stdout)
    assert paris.id in {r["case_id"] for r in national}
    refused = cli("audit", "verify", "--as", "auditeur-occ")
    assert refused.exit_code == 5
    assert security_events(ctx)[-1].actor == "auditeur-occ"
    ecmo = log.cases["ecmo"]
    assert cli("audit", "verify", "--as", "auditeur-occ", "--case", ecmo.reference).exit_code == 0
    last = log.events(ctx, "ecmo")[-1]
    assert (last.actor, last.action, last.data["read"]) == ("auditeur-occ", "read", "audit verify")
    outside = cli("audit", "verify", "--as", "auditeur-occ", "--case", paris.reference)
    assert outside.exit_code == 3


def test_cli_operator_mode_is_recorded(ctx: Ctx, log: Log, cli: Any) -> None:
    """--operator passes no auditor check and is recorded in the security stream, with what it
    did and the system login; naming a case leaves that case's chain alone."""
    ecmo = log.cases["ecmo"]
    before = len(log.events(ctx, "ecmo"))
    result = cli("audit", "verify", "--operator", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["events"] == 18  # the 17 and the operator's record
    hospital = f"etab-{TOULOUSE}"
    exported = cli("audit", "export", "--operator", "--case", ecmo.reference, "--user", hospital)
    assert exported.exit_code == 0, exported.output
    assert {r["actor"] for r in read_jsonl(exported.stdout)} == {hospital}
    first, second = security_events(ctx)[-2:]
    assert (first.actor, first.role, first.action) == ("operator", "operator", "operator")
    assert first.data["op"] == "verify"
    assert first.data["system_user"]
    assert second.data["op"] == "export"
    assert (second.data["case"], second.data["actor"]) == (ecmo.reference, hospital)
    assert len(log.events(ctx, "ecmo")) == before
    assert verify(ctx).ok


# -- CSV for either separator --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "csv-fr"])
def test_csv_cells_split_into_no_formula(ctx: Ctx, log: Log, fmt: str) -> None:
    """A cell like 'x;=1+1;y' (a login anyone can plant) splits into no formula whether the
    spreadsheet splits on ',' or ';'; csv-fr has a BOM and ';'; data still parses to itself."""
    planted = "x;=1+1;y,+2,@SUM(A1)"
    with pytest.raises(NotPermitted):
        ctx.runner.advance(
            reference=log.cases["transfer"].reference, trigger="reject", login="ars-occ",
            reason=planted,
        )  # fmt: skip
    with ctx.db.engine.begin() as conn:  # a planted value inside data, too
        row = forged_row(case_id=None, seq=2, prev_hash="0" * 64, at=ctx.clock.now(),
                         data={"login": planted, "n": [1, -2]})  # fmt: skip
        conn.execute(EVENTS.insert(), row)
    rows = log.events(ctx)
    text = "".join(audit.export_lines(rows, fmt=fmt))
    if fmt == "csv-fr":
        assert text.startswith("\ufeffid;case_id;seq;")
        text = text[1:]
    for separator in (",", ";"):
        for line in text.splitlines():
            for piece in line.split(separator):
                cell = piece.strip().strip('"').strip()
                assert not cell.startswith(("=", "+", "@")), (separator, line)
                assert not (cell.startswith("-") and not cell[1:2].isdigit()), (separator, line)
    parsed = list(csv.DictReader(io.StringIO(text), delimiter=";" if fmt == "csv-fr" else ","))
    assert [r["id"] for r in parsed] == [str(r.id) for r in rows]
    assert [json.loads(r["data"]) for r in parsed] == [dict(r.data) for r in rows]
    refusal = next(r for r in parsed if planted.split(";", maxsplit=1)[0] in r["reason"])
    assert refusal["reason"] == "x;'=1+1;y,'+2,'@SUM(A1)"


def test_cli_and_api_export_csv_fr(ctx: Ctx, log: Log, cli: Any, web: Any) -> None:
    """`--format csv-fr` on the CLI and `format=csv-fr` on the API give the same BOM'd ';' file."""
    result = cli("audit", "export", "--as", "auditeur", "--format", "csv-fr")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("\ufeffid;case_id;seq;at;")
    assert result.stdout.count("\n") == 1 + len(log.events(ctx))
    answer = web.client.get(
        "/api/v1/audit/events", params={"format": "csv-fr"}, headers=web.token("auditeur")
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.text.startswith("\ufeffid;case_id;seq;at;")
    assert answer.text.count("\n") == 1 + len(log.events(ctx))
