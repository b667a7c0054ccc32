#!/usr/bin/env python
"""Speed of ``regul audit verify`` against a plain ``sqlite3`` verifier of the same chain.

A migrated SQLite database (WAL, the demo directory) is filled with ``--cases`` cases of the
shapes the engine writes (an ECMO opening, three escalations, a resolution with its fields, a
recorded read: 6 events a case) and one refusal in the ``security`` stream every 50 cases,
every event hashed with ``engine.audit.canonical`` and ``chain_hash`` as the engine does and
stored through the SQLModel tables (the same column types and JSON text). The case rows carry
the state, version and fields a replay of their chain gives.

Then, alternating, order flipped every repeat:
- the engine: ``engine.audit.verify`` on a ``Database.read()`` connection, with the workflow
  registry (as ``regul audit verify`` runs it: chains, heads, and the replay of every case);
- the floor: a plain ``sqlite3`` script that recomputes the same chain from the stored columns
  (``json.loads`` of ``data``, the canonical ``json.dumps``, ``sha256(prev_hash ‖ canonical)``,
  the link and sequence to the event before, and each stream's end against its head).
Both must find the log intact. Medians of ``--repeat`` runs, events per second, the ratio.

    .venv/bin/python bench/audit_verify.py                 # 20,000 cases = 120,000 events
    .venv/bin/python bench/audit_verify.py --cases 2000 --repeat 3 --json
    .venv/bin/python bench/audit_verify.py --profile       # cProfile of the engine's verify
"""

from __future__ import annotations

import _core

_core.repository_first()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from engine import audit  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.models import AuditEvent, AuditHead, Case  # noqa: E402
from workflows import default_registry  # noqa: E402
from workflows.directory import load_directory  # noqa: E402

START = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
HOSPITAL = {"org": "319900001", "region": "OCC", "zone": "SUD", "department": "31"}
GHT = "GHT-OCC-06"
# Who fires each step of the ECMO ladder (demo users of Occitanie).
LADDER = [
    ("etab-319900001", "establishment", "319900001"),
    ("umac-sud", "umac", "UMAC-SUD"),
    ("ars-occ", "ars", "ARS-OCC"),
    ("ccs", "ccs", "CCS"),
]
GENESIS = "0" * 64


# -- the log ---------------------------------------------------------------------------------


def build(path: Path, cases: int) -> int:
    """A migrated database with ``cases`` six-event cases; returns the number of events."""
    db = Database(f"sqlite:///{path}", sqlite_synchronous="NORMAL")
    db.migrate()
    spec = default_registry()["ecmo"]
    events_t = AuditEvent.__table__  # type: ignore[attr-defined]
    cases_t = Case.__table__  # type: ignore[attr-defined]
    head_t = AuditHead.__table__  # type: ignore[attr-defined]
    total = 0
    with db.write() as conn:
        load_directory(conn)
        at = START
        sec_seq, sec_hash = 0, GENESIS
        case_rows: list[dict[str, Any]] = []
        event_rows: list[dict[str, Any]] = []
        for case_id in range(1, cases + 1):
            fields: dict[str, Any] = {"patient_ref": f"PAT-{case_id:05d}", "mode": "VV"}
            drafts = [
                audit.Draft(
                    *LADDER[0], "opened", None, spec.initial, 1, "",
                    {"kind": "ecmo", "org": HOSPITAL["org"], "fields": dict(fields)},
                )
            ]  # fmt: skip
            state, version = spec.initial, 1
            for (login, role, org), trigger in zip(
                LADDER, ["escalate"] * 3 + ["resolve"], strict=True
            ):
                given = {"source": "national", "return_by": "2026-12-15"}
                values = given if trigger == "resolve" else {}
                dest = spec.fire(state, trigger)
                version += 1
                if values:
                    fields[trigger] = dict(values)
                drafts.append(
                    audit.Draft(
                        login, role, org, "transition", state, dest, version,
                        f"aucune solution à ce niveau ({trigger})",
                        {"trigger": trigger, "fields": dict(values)},
                    )
                )  # fmt: skip
                state = dest
            drafts.append(
                audit.Draft(
                    "auditeur", "auditor", "IGAS", "read", state, state, version, "",
                    {"read": "case", "via": "desk"},
                )
            )  # fmt: skip
            prev = GENESIS
            for seq, draft in enumerate(drafts, start=1):
                at += timedelta(seconds=7)
                digest = audit.chain_hash(prev, audit.canonical(case_id, seq, at, draft))
                event_rows.append(_event(case_id, seq, at, prev, digest, draft))
                prev = digest
            case_rows.append(
                {
                    "id": case_id, "kind": "ecmo", "state": state,
                    "level": spec.state(state).level, "final": spec.state(state).final,
                    "version": version, **HOSPITAL, "ght": GHT, "fields": fields,
                    "opened_by": LADDER[0][0], "opened_at": START, "updated_at": at,
                    "audit_seq": len(drafts), "audit_hash": prev, "incident": False,
                    "on_hold": False,
                }
            )  # fmt: skip
            if case_id % 50 == 0:
                draft = audit.Draft(
                    "ars-occ", "ars", "ARS-OCC", "refused", None, None, 0, "",
                    {"op": "open", "kind": "ecmo", "org": "319900001", "why": "role ars"},
                )  # fmt: skip
                sec_seq += 1
                digest = audit.chain_hash(sec_hash, audit.canonical(None, sec_seq, at, draft))
                event_rows.append(_event(None, sec_seq, at, sec_hash, digest, draft))
                sec_hash = digest
            if len(event_rows) >= 20000:
                total += _flush(conn, cases_t, events_t, case_rows, event_rows)
        total += _flush(conn, cases_t, events_t, case_rows, event_rows)
        if sec_seq:
            conn.execute(head_t.insert().values(stream="security", seq=sec_seq, hash=sec_hash))
    db.dispose()
    return total


def _event(
    case_id: int | None, seq: int, at: datetime, prev: str, digest: str, d: audit.Draft
) -> dict[str, Any]:
    return {
        "case_id": case_id, "seq": seq, "at": at, "actor": d.actor, "role": d.role,
        "org": d.org, "action": d.action, "from_state": d.from_state, "to_state": d.to_state,
        "version": d.version, "reason": d.reason, "data": d.data, "prev_hash": prev,
        "hash": digest,
    }  # fmt: skip


def _flush(conn: Any, cases_t: Any, events_t: Any, cases: list[Any], events: list[Any]) -> int:
    if cases:
        conn.execute(cases_t.insert(), cases)
    if events:
        conn.execute(events_t.insert(), events)
    n = len(events)
    cases.clear()
    events.clear()
    return n


# -- the two verifiers -----------------------------------------------------------------------


def run_engine(path: Path) -> tuple[float, int, bool]:
    db = Database(f"sqlite:///{path}")
    registry = default_registry()
    try:
        started = time.perf_counter()
        with db.read() as conn:
            try:
                report = audit.verify(conn, registry=registry)
            except TypeError:  # the engine before its verifier took the registry
                report = audit.verify(conn)
        return time.perf_counter() - started, report.events, report.ok
    finally:
        db.dispose()


_COLUMNS = (
    "id, case_id, seq, at, actor, role, org, action, from_state, to_state, version, reason, "
    "data, prev_hash, hash"
)


def run_floor(path: Path) -> tuple[float, int, bool]:
    """Recompute every chain with sqlite3, json and hashlib only."""
    started = time.perf_counter()
    con = sqlite3.connect(path)
    dumps, loads, sha256 = json.dumps, json.loads, hashlib.sha256
    try:
        heads: dict[int | None, tuple[int, str]] = {
            case_id: (seq, digest)
            for case_id, seq, digest in con.execute(
                "SELECT id, audit_seq, audit_hash FROM regul_case"
            )
        }
        sec = con.execute("SELECT seq, hash FROM audit_head WHERE stream = 'security'").fetchone()
        heads[None] = (sec[0], sec[1]) if sec else (0, GENESIS)
        last: dict[int | None, tuple[int, str]] = {}
        bad = events = 0
        for row in con.execute(f"SELECT {_COLUMNS} FROM audit_event ORDER BY id"):
            (_id, case_id, seq, at, actor, role, org, action, src, dest, version, reason,
             data, prev, digest) = row  # fmt: skip
            events += 1
            record = {
                "case": case_id, "seq": seq, "at": f"{at[:10]}T{at[11:]}Z", "actor": actor,
                "role": role, "org": org, "action": action, "from": src, "to": dest,
                "version": version, "reason": reason, "data": loads(data),
            }  # fmt: skip
            body = dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            before_seq, before_hash = last.get(case_id, (0, GENESIS))
            expected = sha256(prev.encode("ascii") + body.encode()).hexdigest()
            if seq != before_seq + 1 or prev != before_hash or digest != expected:
                bad += 1
            last[case_id] = (seq, digest)
        for key, (seq, digest) in heads.items():
            if last.get(key, (0, GENESIS)) != (seq, digest or GENESIS):
                bad += 1
    finally:
        con.close()
    return time.perf_counter() - started, events, bad == 0


# -- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20000, help="six events each")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile of one engine run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="regul-bench-audit-", dir=args.tmpdir) as tmp:
        path = Path(tmp) / "audit.db"
        started = time.perf_counter()
        total = build(path, args.cases)
        built_s = time.perf_counter() - started
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            run_engine(path)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return
        run_engine(path)
        run_floor(path)  # warm the page cache and the imports for both
        engine_runs: list[float] = []
        floor_runs: list[float] = []
        for i in range(args.repeat):
            order = (run_engine, run_floor) if i % 2 == 0 else (run_floor, run_engine)
            for run in order:
                seconds, events, ok = run(path)
                if not ok or events != total:
                    sys.exit(f"{run.__name__}: the log did not verify ({events} of {total})")
                (engine_runs if run is run_engine else floor_runs).append(total / seconds)
    engine_rate, floor_rate = statistics.median(engine_runs), statistics.median(floor_runs)
    result = {
        "events": total,
        "cases": args.cases,
        "build_s": round(built_s, 1),
        "repeat": args.repeat,
        "engine_events_per_s": round(engine_rate),
        "floor_events_per_s": round(floor_rate),
        "ratio": round(engine_rate / floor_rate, 2),
        "engine_runs": [round(r) for r in engine_runs],
        "floor_runs": [round(r) for r in floor_runs],
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{total:,} events ({args.cases:,} cases), medians of {args.repeat}: engine "
        f"{engine_rate:,.0f} events/s, floor {floor_rate:,.0f} events/s, "
        f"ratio {engine_rate / floor_rate:.2f}"
    )
    print(f"engine runs {result['engine_runs']}, floor runs {result['floor_runs']}")


if __name__ == "__main__":
    main()
