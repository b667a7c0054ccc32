"""The ECMO fleet's costs (issue 11), in one run on SQLite (or PostgreSQL):

1. an ECMO ``resolve`` that reserves consoles and circuits (the fleet's effects, one more
   holder event and its movements in the same transaction) against the same resolve without
   resources (a runner without effects), alternated in batches; target ≤ 1.3×;
2. importing 500 weekly inventories in one CSV file (all checked, then one transaction);
   target ≤ 2 s on SQLite.

    .venv/bin/python bench/ecmo.py [--cases 300] [--repeat 3] [--reports 500]
    .venv/bin/python bench/ecmo.py --backend postgres
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LENDER = "319900002"
TOULOUSE = "319900001"


def build(url: str) -> Any:
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from engine.clock import FixedClock
    from engine.db import Database
    from engine.runner import Runner
    from engine.settings import load_settings
    from resources.catalogue import case_effects, obligation_kinds
    from resources.ecmo import Fleet
    from resources.service import Resources
    from workflows import default_registry
    from workflows.directory import load_directory

    db = Database(url)
    if url.startswith("postgresql"):
        with db.engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS bench_ecmo CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA bench_ecmo"))
        db.dispose()
        db = Database(url + "?options=-csearch_path%3Dbench_ecmo")
    db.migrate()
    with db.write() as conn:
        load_directory(conn)
    clock = FixedClock(datetime(2026, 11, 22, 8, 0, tzinfo=UTC))
    registry = default_registry()
    settings = load_settings()
    plain = Runner(db, registry, clock)
    with_fleet = Runner(db, registry, clock, effects=case_effects(settings))
    fleet = Fleet(Resources(db, clock, with_fleet.uow, obligation_kinds(settings)))
    return db, clock, plain, with_fleet, fleet


def open_at_umac(runner: Any, n: int) -> str:
    case = runner.open_case(
        kind="ecmo", login=f"etab-{TOULOUSE}", org=TOULOUSE,
        fields={"patient_ref": f"PAT-{n:06d}", "mode": "VV"},
    )  # fmt: skip
    assert case.state == "umac_review", case.state
    return str(case.reference)


CPU: dict[str, float] = {"plain": 0.0, "fleet": 0.0}


def resolves(runner: Any, refs: list[str], serials: list[str] | None) -> float:
    """Seconds to resolve ``refs`` (one console and one circuit each when ``serials``); the
    process's CPU time is added to ``CPU``."""
    cpu = time.process_time()
    started = time.perf_counter()
    for i, ref in enumerate(refs):
        data: dict[str, object] = {"source": "hospital", "lender": LENDER,
                                   "return_by": "2026-12-15"}  # fmt: skip
        if serials is not None:
            data.update(console_serials=serials[i], circuits_lent=1)
        runner.advance(reference=ref, trigger="resolve", login="umac-sud", reason="bench",
                       data=data)  # fmt: skip
    CPU["plain" if serials is None else "fleet"] += time.process_time() - cpu
    return time.perf_counter() - started


def bench_resolve(url: str, cases: int, repeat: int) -> dict[str, Any]:
    db, _clock, plain, with_fleet, fleet = build(url)
    total = cases * repeat
    for i in range(total):
        fleet.register(f"etab-{LENDER}", serial=f"B-{i:05d}", model="Cardiohelp", owner=LENDER)
    fleet.circuits(f"etab-{LENDER}", holder=LENDER, quantity=total, reason="bench")
    ratios, with_rates, plain_rates = [], [], []
    n = 0
    for r in range(repeat):
        refs_plain = [open_at_umac(plain, n := n + 1) for _ in range(cases)]
        refs_fleet = [open_at_umac(plain, n := n + 1) for _ in range(cases)]
        serials = [f"B-{r * cases + i:05d}" for i in range(cases)]
        if r % 2:  # alternate which goes first
            t_fleet = resolves(with_fleet, refs_fleet, serials)
            t_plain = resolves(plain, refs_plain, None)
        else:
            t_plain = resolves(plain, refs_plain, None)
            t_fleet = resolves(with_fleet, refs_fleet, serials)
        ratios.append(t_fleet / t_plain)
        with_rates.append(cases / t_fleet)
        plain_rates.append(cases / t_plain)
    db.dispose()
    return {
        "cases": cases,
        "repeat": repeat,
        "resolve_without_resources_per_s": round(statistics.median(plain_rates), 1),
        "resolve_with_consoles_per_s": round(statistics.median(with_rates), 1),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratios": [round(x, 3) for x in ratios],
        "cpu_ratio": round(CPU["fleet"] / CPU["plain"], 3),
        "target": "<= 1.3",
    }


def bench_import(url: str, reports: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from engine import tables
    from resources.ecmo_import import import_file

    db, _clock, _plain, _with, fleet = build(url)
    with db.read() as conn:
        hospitals = list(
            conn.execute(
                sa.select(tables.ORGANISATION.c.id)
                .where(tables.ORGANISATION.c.kind == "hospital")
                .order_by(tables.ORGANISATION.c.id)
            ).scalars()
        )
    weeks = -(-reports // len(hospitals))
    lines = ["finess;semaine;disponibles;reservees;en_service;pretees;maintenance;circuits"]
    for w in range(weeks):
        for h in hospitals:
            if len(lines) > reports:
                break
            lines.append(f"{h};2026-W{40 + w:02d};2;0;1;0;0;6")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inventaires.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        started = time.perf_counter()
        done = import_file(fleet, "ccs", path)
        seconds = time.perf_counter() - started
    assert len(done) == reports, len(done)
    db.dispose()
    return {"reports": reports, "seconds": round(seconds, 3), "target": "<= 2 s (SQLite)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reports", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:

        def url(name: str) -> str:
            if args.backend == "postgres":
                return "postgresql://127.0.0.1/test"
            return f"sqlite:///{Path(tmp) / name}"

        resolve = bench_resolve(url("resolve.db"), args.cases, args.repeat)
        print("resolve:", resolve)
        imported = bench_import(url("import.db"), args.reports)
        print("import:", imported)


if __name__ == "__main__":
    main()
