"""Signed checkpoints of the audit log: what a rewrite, a truncation or a deleted case leaves."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from engine import audit, checkpoints
from engine.errors import InputError
from interfaces.cli import app
from tests.conftest import Ctx
from tests.test_audit import (  # the same three-case log and tampering tools
    CASES,
    EVENTS,
    Log,
    build_log,
    triggers_dropped,
    verify,
)

KEY = b"k" * 32


@pytest.fixture
def log(ctx: Ctx) -> Log:
    return build_log(ctx)


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``regul`` in-process on the test's database, from an empty folder (no regul.toml)."""
    monkeypatch.chdir(tmp_path)
    env = {"REGUL_DATABASE_URL": database_url, "REGUL_CONFIG": None, "REGUL_DEADLINES": None}

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=env)

    return run


def take(ctx: Ctx, path: Path) -> Path:
    with ctx.db.read() as conn:
        checkpoints.write_checkpoint(conn, key=KEY, now=ctx.clock.now(), path=path)
    return path


def check(ctx: Ctx, path: Path, *, key: bytes = KEY, case_id: int | None = None) -> list[Any]:
    loaded = checkpoints.load(path)
    with ctx.db.read() as conn:
        return checkpoints.check(conn, *loaded, key=key, case_id=case_id)


def rechain(ctx: Ctx, case_id: int, *, keep: int | None = None, **changes: Any) -> None:
    """What an owner with database access does: rewrite a case's events (from seq 2 on) and
    rehash the whole chain and the head, so that the chains alone verify."""
    with triggers_dropped(ctx) as conn:
        rows = conn.execute(
            sa.select(EVENTS).where(EVENTS.c.case_id == case_id).order_by(EVENTS.c.seq)
        ).all()
        prev = audit.GENESIS
        for row in rows:
            if keep is not None and row.seq > keep:
                conn.execute(EVENTS.delete().where(EVENTS.c.id == row.id))
                continue
            values = {name: getattr(row, name) for name in audit.Draft.__dataclass_fields__}
            values.update({"from_state": row.from_state, "to_state": row.to_state})
            if row.seq >= 2:
                values.update(changes)
            draft = audit.Draft(**values)
            digest = audit.chain_hash(prev, audit.canonical(case_id, row.seq, row.at, draft))
            conn.execute(
                EVENTS.update()
                .where(EVENTS.c.id == row.id)
                .values(**values, prev_hash=prev, hash=digest)
            )
            last_seq, prev = row.seq, digest
        conn.execute(
            CASES.update().where(CASES.c.id == case_id).values(audit_seq=last_seq, audit_hash=prev)
        )


def test_untouched_log_matches_its_checkpoint(ctx: Ctx, log: Log, tmp_path: Path) -> None:
    """A checkpoint of the log matches it, also after more events are appended."""
    path = take(ctx, tmp_path / "cp.json")
    document = json.loads(path.read_text())
    assert document["format"] == checkpoints.FORMAT
    assert [c[0] for c in document["cases"]] == sorted(c.id for c in log.cases.values())
    assert document["security"]["seq"] == 1
    assert document["signature"].startswith("hmac-sha256:")
    ctx.runner.show(log.cases["ecmo"].reference, login="umac-sud")  # one more event
    assert check(ctx, path) == []


def test_rewritten_chain_is_found(ctx: Ctx, log: Log, tmp_path: Path) -> None:
    """An owner rewrites a case's events and rehashes its chain: the chains verify, the
    checkpoint names the case as rewritten."""
    path = take(ctx, tmp_path / "cp.json")
    case = log.cases["ppe"]
    rechain(ctx, case.id, reason="motif réécrit")
    assert verify(ctx).ok
    (finding,) = check(ctx, path)
    assert finding.stream == f"case {case.id}"
    assert "differs from the checkpoint" in finding.problem
    assert "(rewritten)" in finding.problem


def test_truncated_chain_is_found(ctx: Ctx, log: Log, tmp_path: Path) -> None:
    """An owner deletes a case's last events and moves its head back: found as truncated."""
    path = take(ctx, tmp_path / "cp.json")
    case = log.cases["ecmo"]
    rechain(ctx, case.id, keep=3)
    kept = log.events(ctx, "ecmo")
    fields = dict(kept[0].data["fields"])
    fields.update({e.data["trigger"]: e.data["fields"] for e in kept[1:] if e.data["fields"]})
    with ctx.db.engine.begin() as conn:  # and the case row put back to what the replay gives
        conn.execute(
            CASES.update()
            .where(CASES.c.id == case.id)
            .values(state=kept[-1].to_state, version=kept[-1].version,
                    fields=fields)
        )  # fmt: skip
    assert verify(ctx).ok
    (finding,) = check(ctx, path)
    assert (finding.stream, finding.event_id) == (f"case {case.id}", None)
    assert "no longer has the event of sequence 6" in finding.problem
    assert "(truncated)" in finding.problem


def test_deleted_case_is_found(ctx: Ctx, log: Log, tmp_path: Path) -> None:
    """An owner deletes a whole case, its events and its rows: the chains verify, the
    checkpoint names the case as gone."""
    path = take(ctx, tmp_path / "cp.json")
    case = log.cases["transfer"]
    with triggers_dropped(ctx) as conn:
        conn.execute(EVENTS.delete().where(EVENTS.c.case_id == case.id))
        for table in ("notice", "deadline"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE case_id = :c"), {"c": case.id})
        conn.execute(CASES.delete().where(CASES.c.id == case.id))
    assert verify(ctx).ok
    (finding,) = check(ctx, path)
    assert finding.stream == f"case {case.id}"
    assert "(deleted)" in finding.problem


def test_case_added_below_the_checkpoint_is_found(ctx: Ctx, log: Log, tmp_path: Path) -> None:
    """A case whose id is below the checkpoint's highest but which it does not list was added
    afterwards (e.g. re-inserted under an old id)."""
    path = take(ctx, tmp_path / "cp.json")
    document = json.loads(path.read_text())
    dropped = document["cases"].pop(0)  # as if the case had not existed at checkpoint time
    checkpoint = checkpoints.Checkpoint(
        document["at"],
        document["max_case_id"],
        (document["security"]["seq"], document["security"]["hash"]),
        tuple(tuple(c) for c in document["cases"]),  # type: ignore[misc]
    )
    document["signature"] = checkpoint.signature(KEY)
    path.write_text(json.dumps(document))
    (finding,) = check(ctx, path)
    assert finding.stream == f"case {dropped[0]}"
    assert "(added afterwards)" in finding.problem


def test_altered_checkpoint_or_other_key_is_refused(ctx: Ctx, log: Log, tmp_path: Path) -> None:
    """A checkpoint edited after signing, or checked with another key, fails on its signature."""
    path = take(ctx, tmp_path / "cp.json")
    (finding,) = check(ctx, path, key=b"x" * 32)
    assert finding.stream == "checkpoint"
    assert "signature" in finding.problem
    document = json.loads(path.read_text())
    document["cases"][0][2] = "0" * 64
    path.write_text(json.dumps(document))
    (finding,) = check(ctx, path)
    assert "signature" in finding.problem


def test_one_case_is_checked_alone(ctx: Ctx, log: Log, tmp_path: Path) -> None:
    """With a case named, only its stream is checked against the checkpoint."""
    path = take(ctx, tmp_path / "cp.json")
    rechain(ctx, log.cases["ppe"].id, reason="autre")
    assert check(ctx, path, case_id=log.cases["ecmo"].id) == []
    assert len(check(ctx, path, case_id=log.cases["ppe"].id)) == 1


@pytest.mark.parametrize(
    ("key", "key_file", "message"),
    [
        (None, None, "no checkpoint key"),
        ("court", None, "is 5 bytes long"),
        ("k" * 32, "/nowhere", "keep one"),
        (None, "/nowhere/key", "cannot read the checkpoint key file"),
    ],
    ids=["none", "short", "both", "unreadable"],
)
def test_key_problems_are_clear(key: str | None, key_file: str | None, message: str) -> None:
    """A missing, short, doubly set or unreadable key is an input error saying what to do."""
    with pytest.raises(InputError, match=message):
        checkpoints.load_key(key=key, key_file=key_file)


def test_key_from_a_file(tmp_path: Path) -> None:
    """The key file's content, without its trailing newline, is the key."""
    path = tmp_path / "key"
    path.write_text("s" * 40 + "\n")
    assert checkpoints.load_key(key=None, key_file=str(path)) == b"s" * 40


@pytest.mark.parametrize(
    ("content", "message"),
    [("{", "not JSON"), ('{"format": "x"}', "not a regul-audit-checkpoint/1"), ("{}", "lacks")],
)
def test_unreadable_checkpoint_is_an_input_error(
    tmp_path: Path, content: str, message: str
) -> None:
    """A file that is not a checkpoint is an input error, not a traceback."""
    path = tmp_path / "cp.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        checkpoints.load(path)


def test_cli_checkpoint_then_verify(
    ctx: Ctx, log: Log, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`regul audit checkpoint -o FILE --operator` signs the heads; `regul audit verify
    --checkpoint FILE` passes on the log, and fails (exit 1) once a case is rewritten."""
    key_file = tmp_path / "checkpoint.key"
    key_file.write_text("secret-" * 6)
    monkeypatch.setenv("REGUL_CHECKPOINT_KEY_FILE", str(key_file))
    path = tmp_path / "cp.json"
    refused = cli("audit", "checkpoint", "-o", str(path))
    assert refused.exit_code == 2
    assert "--operator" in refused.stderr
    made = cli("audit", "checkpoint", "-o", str(path), "--operator", "--json")
    assert made.exit_code == 0, made.output
    summary = json.loads(made.stdout)
    assert summary["cases"] == 3
    assert datetime.fromisoformat(summary["at"]).tzinfo == UTC
    ok = cli("audit", "verify", "--as", "auditeur", "--checkpoint", str(path))
    assert ok.exit_code == 0, ok.output
    rechain(ctx, log.cases["ecmo"].id, reason="autre")
    broken = cli("audit", "verify", "--operator", "--checkpoint", str(path))
    assert broken.exit_code == 1
    assert f"first bad event: case {log.cases['ecmo'].id}: event id" in broken.stderr
    assert "its event of sequence 6 differs from the checkpoint" in broken.stderr
    missing = cli("audit", "checkpoint", "-o", str(tmp_path / "no" / "cp.json"), "--operator")
    assert missing.exit_code == 2
    assert "does not exist" in missing.stderr
