"""Transfer candidates over a national directory (issue 13): ``Beds.candidates`` against the
same query in plain SQL, in the same run, on SQLite and PostgreSQL.

A fresh database (SQLite file / PostgreSQL schema of its own) gets the demo directory's
regions, zones and departments plus N synthetic establishments (default 3,000) spread over the
departments, each holding the bed ledger's 3 categories × 6 buckets (``stock_balance``,
written directly: this measures the read, not the reports). About one establishment in six has
no free réanimation bed. Then, for random origins:

- **regul**: ``Beds.candidates(login, category="reanimation", origin=…, limit=…)`` as the API
  and the desk call it: the reader's actor read, the origin's place, the scope's filter, the
  ranking by distance between departments (a SQL CASE), the candidates built (national scope,
  the CCS: the 50 nearest as listed, and every one; regional scope, an ARS: the 50 nearest);
- **floor**: the same SELECT as plain SQL text on one connection (no actor, no origin read,
  rows left as tuples).

Each is timed per call; p50 / p99 in milliseconds, and the ratio of p99s.

    .venv/bin/python bench/beds.py --backend sqlite --establishments 3000 --runs 500
    .venv/bin/python bench/beds.py --backend postgres
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from engine.actors import load_actor  # noqa: E402
from engine.clock import FixedClock  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.runner import Runner  # noqa: E402
from resources.beds.core import BUCKETS, CATEGORIES, item_of  # noqa: E402
from resources.beds.reads import candidates_sql  # noqa: E402
from resources.beds.service import Beds  # noqa: E402
from resources.service import Resources  # noqa: E402
from workflows import default_registry  # noqa: E402
from workflows.directory import load_directory  # noqa: E402

PG_URL = os.environ.get("REGUL_BENCH_POSTGRES_URL", "postgresql://127.0.0.1/test")
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def build(db: Database, count: int, seed: int) -> list[str]:
    """The directory plus ``count`` establishments with their bed balances."""
    rng = random.Random(seed)
    db.migrate()
    with db.write() as conn:
        load_directory(conn)
        departments = conn.execute(sa.text("SELECT d.code, d.region, r.zone FROM department d "
                                           "JOIN region r ON r.code = d.region")).all()  # fmt: skip
        orgs, balances, ids = [], [], []
        for n in range(count):
            code, region, zone = departments[n % len(departments)]
            org = f"B{n:08d}"
            ids.append(org)
            name = f"Établissement {n}"
            orgs.append({"id": org, "kind": "hospital", "name": name, "region": region,
                         "zone": zone, "department": code, "email": ""})  # fmt: skip
            for category in CATEGORIES:
                free = 0 if rng.random() < 1 / 6 else rng.randrange(1, 6)
                for bucket in BUCKETS:
                    quantity = free if bucket == "available" else rng.randrange(0, 10)
                    if quantity:
                        row = {"holder": org, "item": item_of(category), "bucket": bucket}
                        balances.append({**row, "quantity": quantity, "at": NOW})
        conn.execute(
            sa.text("INSERT INTO organisation (id, kind, name, region, zone, department, email) "
                    "VALUES (:id, :kind, :name, :region, :zone, :department, :email)"),
            orgs,
        )  # fmt: skip
        conn.execute(
            sa.text("INSERT INTO stock_balance (holder, item, bucket, quantity, updated_at) "
                    "VALUES (:holder, :item, :bucket, :quantity, :at)"),
            balances,
        )  # fmt: skip
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    return ids


def timed(calls: int, work: Callable[[], Any]) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        work()
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(db: Database, ids: list[str], runs: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    runner = Runner(db, default_registry(), FixedClock(NOW))
    beds = Beds(Resources(db, runner.clock, runner.uow, {}))
    origins = [rng.choice(ids) for _ in range(runs)]
    with db.read() as conn:
        department = dict(conn.execute(sa.text("SELECT id, department FROM organisation")).all())
        # the caller as the API's authentication hands it over (its own read, not timed here)
        actors = {login: load_actor(conn, login) for login in ("ccs", "ars-occ")}
    sizes: dict[str, int] = {}
    out: dict[str, list[float]] = {}
    cases = (("national_50", "ccs", 50), ("region_50", "ars-occ", 50),
             ("national_all", "ccs", 10_000))  # fmt: skip
    for name, login, limit in cases:
        it = iter(origins * 2)

        def regul(login: str = login, limit: int = limit, it: Any = it, name: str = name) -> None:
            found = beds.candidates(
                actors[login], category="reanimation", origin=next(it), limit=limit
            )
            sizes[name] = len(found)

        timed(20, regul)  # warm-up: caches, pool, statements
        out[f"regul_{name}"] = timed(runs, regul)
    for name, limit in (("national_50", 50), ("national_all", 10_000)):
        it2 = iter(origins * 2)

        def floor(limit: int = limit, it2: Any = it2, name: str = name) -> None:
            origin = next(it2)
            with db.read() as conn:
                rows = conn.execute(
                    sa.text(candidates_sql(department[origin])),
                    {"item": item_of("reanimation"), "origin": origin, "limit": limit},
                ).all()
            sizes[f"floor_{name}"] = len(rows)

        timed(20, floor)
        out[f"floor_{name}"] = timed(runs, floor)
    summary: dict[str, Any] = {
        name: {"p50_ms": round(statistics.median(v), 2), "p99_ms": round(pct(v, 0.99), 2)}
        for name, v in out.items()
    }
    summary["rows"] = sizes
    for name in ("national_50", "national_all"):
        summary[f"ratio_p99_{name}"] = round(
            summary[f"regul_{name}"]["p99_ms"] / summary[f"floor_{name}"]["p99_ms"], 2
        )
        summary[f"ratio_p50_{name}"] = round(
            summary[f"regul_{name}"]["p50_ms"] / summary[f"floor_{name}"]["p50_ms"], 2
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--establishments", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    if args.backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="regul-bench-beds-")
        db = Database(f"sqlite:///{folder}/beds.db", sqlite_synchronous="NORMAL")

        def cleanup() -> None:
            return None

    else:
        schema = f"regul_bench_beds_{os.getpid()}"
        admin = sa.create_engine(Database(PG_URL).url)
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        separator = "&" if "?" in PG_URL else "?"
        db = Database(f"{PG_URL}{separator}options=-csearch_path%3D{schema}")

        def cleanup() -> None:
            with admin.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            admin.dispose()

    try:
        ids = build(db, args.establishments, args.seed)
        result = measure(db, ids, args.runs, args.seed)
    finally:
        db.dispose()
        cleanup()
    result.update(backend=args.backend, establishments=args.establishments, runs=args.runs)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
