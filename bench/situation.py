#!/usr/bin/env python
"""The national situation page (issue 14) over 3,000 establishments, 8 weeks of reports and
10,000 cases, on SQLite and PostgreSQL, against the same aggregates in plain SQL.

For each backend a fresh database (a temporary SQLite file; a PostgreSQL schema of its own in
database ``test``) is migrated and given the demo directory, then synthetic data is inserted
directly: ``--establishments`` hospitals spread over the 18 regions, ``--cases`` cases of the
three workflows in their states (an open deadline for each case in progress, due within ±12 h:
some overdue), ``--weeks`` weekly reports per establishment (``obligation`` rows mostly met,
some late, the last week partly missing; a ``resource_report`` per report received, with
plausible PPE items; ``stock_balance`` rows for three items). ``regul serve --no-worker`` then
serves it as a separate process; this script is the client: it logs the CCS in on the desk and
times ``GET /situation`` (the national page, HTML with its maps and charts) and ``GET
/api/v1/situation`` (the same figures as JSON), one request at a time over a keep-alive
connection, each from just before it is sent to the end of its answer.

The floor, measured in the same run: the same aggregates (the counts, cases by region,
workflow and state, weekly openings, reports by region and kind, missing by period) as plain
SQL on the driver's cursor, in this process. The page's figures are checked against it.

    .venv/bin/python bench/situation.py                     # both backends
    .venv/bin/python bench/situation.py --backends sqlite --requests 50
    .venv/bin/python bench/situation.py --json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from engine import tables  # noqa: E402
from engine.accounts import Accounts  # noqa: E402
from engine.clock import SystemClock  # noqa: E402
from engine.db import Database  # noqa: E402
from resources.periods import week_of  # noqa: E402
from resources.situation import week_starts  # noqa: E402
from workflows import default_registry  # noqa: E402
from workflows.directory import load_directory  # noqa: E402

REGUL = Path(sys.executable).parent / "regul"
PG_URL = os.environ.get("REGUL_TEST_POSTGRES_URL", "postgresql://127.0.0.1/test")
PASSWORD = "bench situation password"
ITEMS = ("ffp2_mask", "surgical_mask", "gown")
TARGET_MS = 300.0


# -- data ----------------------------------------------------------------------------------------


def chunks(rows: list[dict[str, Any]], size: int = 2000) -> Any:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def seed(db: Database, args: argparse.Namespace, now: datetime) -> dict[str, int]:
    rng = random.Random(14)
    registry = default_registry()
    with db.write() as conn:
        load_directory(conn)
        regions = [
            (r.code, r.zone)
            for r in conn.execute(sa.select(tables.REGION.c.code, tables.REGION.c.zone))
        ]
        departments: dict[str, str] = {}
        for d in conn.execute(sa.select(tables.DEPARTMENT.c.code, tables.DEPARTMENT.c.region)):
            departments.setdefault(d.region, d.code)
        orgs = []
        for n in range(args.establishments):
            region, zone = regions[n % len(regions)]
            orgs.append(
                {
                    "id": f"8{n:08d}",
                    "kind": "hospital",
                    "name": f"Établissement synthétique {n}",
                    "region": region,
                    "zone": zone,
                    "department": departments[region],
                    "ght": None,
                    "email": f"crise{n}@example-sante.fr",
                }
            )
        for part in chunks(orgs):
            conn.execute(tables.ORGANISATION.insert(), part)

        states = {spec.kind: [(s.name, s.level, s.final) for s in spec.states] for spec in registry}
        cases, deadlines = [], []
        for n in range(args.cases):
            org = orgs[rng.randrange(len(orgs))]
            kind = rng.choice(("ecmo", "ecmo", "ppe", "transfer"))
            name, level, final = rng.choice(states[kind])
            opened = now - timedelta(seconds=rng.randrange(args.weeks * 7 * 86400))
            cases.append(
                {
                    "id": n + 1, "kind": kind, "state": name, "level": level, "final": final,
                    "version": 1, "org": org["id"], "region": org["region"],
                    "zone": org["zone"], "department": org["department"], "ght": None,
                    "fields": {}, "opened_by": "bench", "opened_at": opened,
                    "updated_at": opened, "audit_seq": 0, "audit_hash": "",
                    "incident": rng.random() < 0.02 and not final, "on_hold": False,
                }
            )  # fmt: skip
            if not final:
                due = now + timedelta(seconds=rng.randrange(-12 * 3600, 12 * 3600))
                deadlines.append(
                    {
                        "case_id": n + 1, "state": name, "version": 1, "due_at": due,
                        "next_at": due, "reminders": 0, "action": "escalate",
                        "status": "open", "created_at": opened,
                    }
                )  # fmt: skip
        for part in chunks(cases):
            conn.execute(tables.CASE.insert(), part)
        for part in chunks(deadlines):
            conn.execute(tables.DEADLINE.insert(), part)
        sizes = seed_reports(conn, orgs, args, now, rng)
        sizes.update(seed_ecmo(conn, orgs, args, now, rng))
    return {"establishments": len(orgs), "cases": len(cases), **sizes}


def seed_reports(
    conn: Any, orgs: list[dict[str, Any]], args: argparse.Namespace, now: datetime, rng: Any
) -> dict[str, int]:
    """Weekly obligations (mostly met, some late, the last week partly missing), a report per
    report received, and the stock balances of three items."""
    obligations, reports, balances = [], [], []
    for week in range(args.weeks):
        at = now - timedelta(weeks=args.weeks - 1 - week)
        period, due = week_of(at), at - timedelta(hours=1)
        last = week == args.weeks - 1
        for org in orgs:
            roll = rng.random()
            status = "met" if roll < (0.7 if last else 0.93) else ("open" if last else "late")
            obligations.append(
                {
                    "kind": "ppe_stock", "holder": org["id"], "period": period,
                    "due_at": due, "next_at": due, "reminders": 1 if status != "met" else 0,
                    "escalated": status == "late", "status": status, "created_at": due,
                    "closed_at": due if status != "open" else None,
                }
            )  # fmt: skip
            if status == "met":
                reports.append(
                    {
                        "kind": "ppe_stock", "holder": org["id"], "period": period,
                        "version": 1, "at": due, "actor": "bench", "stream_seq": week + 1,
                        "data": {"lines": {i: _line(rng) for i in ITEMS}},
                    }
                )  # fmt: skip
    for org in orgs:
        for item in ITEMS:
            balances.append(
                {
                    "holder": org["id"], "item": item, "bucket": "on_hand",
                    "quantity": rng.randrange(0, 50000), "updated_at": now,
                }
            )  # fmt: skip
    beds = seed_beds(conn, orgs, args, now, rng)
    for part in chunks(obligations):
        conn.execute(tables.OBLIGATION.insert(), part)
    for part in chunks(reports):
        conn.execute(tables.RESOURCE_REPORT.insert(), part)
    for part in chunks(balances):
        conn.execute(tables.STOCK_BALANCE.insert(), part)
    return {
        "obligations": len(obligations),
        "reports": len(reports) + beds["capacity_reports"],
        "balances": len(balances) + beds["bed_balances"],
        **beds,
    }


BED_ITEMS = ("bed:reanimation", "bed:surveillance_continue")
BED_BUCKETS = ("available", "reserved", "occupied_covid", "occupied_other", "covid_reserve",
               "unarmed")  # fmt: skip


def seed_beds(
    conn: Any, orgs: list[dict[str, Any]], args: argparse.Namespace, now: datetime, rng: Any
) -> dict[str, int]:
    """The capacity panel's data: a daily capacity report per establishment over the weeks
    (tier, plan blanc), a movement of its Covid+ réanimation patients each day, and its bed
    balances (two categories, six buckets)."""
    reports, movements, balances = [], [], []
    days = args.weeks * 7
    for org in orgs:
        covid = rng.randrange(0, 10)
        for day in range(days):
            at = now - timedelta(days=days - day)
            delta = rng.choice((-1, 1, 2)) if covid > 1 else 1
            covid += delta
            movements.append(
                {
                    "at": at, "holder": org["id"], "item": "bed:reanimation",
                    "bucket": "occupied_covid", "delta": delta, "kind": "report",
                    "case_id": None, "report_id": None, "stream_seq": day + 1, "actor": "bench",
                }
            )  # fmt: skip
            reports.append(
                {
                    "kind": "capacity", "holder": org["id"], "period": at.date().isoformat(),
                    "version": 1, "at": at, "actor": "bench", "stream_seq": day + 1,
                    "data": {"categories": {"reanimation": {"occupied_covid": covid}},
                             "tier": rng.choice((0, 0, 1, 2)), "plan_blanc": rng.choice((0, 0, 2)),
                             "plan_blanc_since": None},
                }
            )  # fmt: skip
        for item in BED_ITEMS:
            for bucket in BED_BUCKETS:
                quantity = covid if (item, bucket) == (BED_ITEMS[0], "occupied_covid") else None
                balances.append(
                    {
                        "holder": org["id"], "item": item, "bucket": bucket,
                        "quantity": rng.randrange(0, 12) if quantity is None else quantity,
                        "updated_at": now,
                    }
                )  # fmt: skip
    for part in chunks(reports):
        conn.execute(tables.RESOURCE_REPORT.insert(), part)
    for part in chunks(movements):
        conn.execute(tables.MOVEMENT.insert(), part)
    for part in chunks(balances):
        conn.execute(tables.STOCK_BALANCE.insert(), part)
    return {
        "capacity_reports": len(reports),
        "bed_movements": len(movements),
        "bed_balances": len(balances),
    }


def seed_ecmo(
    conn: Any, orgs: list[dict[str, Any]], args: argparse.Namespace, now: datetime, rng: Any
) -> dict[str, int]:
    """One establishment in eleven an ECMO centre (2 to 5 consoles in their statuses, circuits,
    weekly inventories, the last ones partly missing), and a national stock of 20 consoles."""
    buckets = ("available", "available", "in_use", "lent", "reserved", "maintenance")
    balances, reports = [], []
    centres = [org["id"] for org in orgs[::11]]  # every region
    for holder in [*centres, "CCS"]:
        for k in range(20 if holder == "CCS" else rng.randrange(2, 6)):
            balances.append(
                {"holder": holder, "item": f"console:{holder}-{k}", "bucket": rng.choice(buckets),
                 "quantity": 1, "updated_at": now}
            )  # fmt: skip
        balances.append(
            {"holder": holder, "item": "circuit", "bucket": "available",
             "quantity": rng.randrange(0, 30), "updated_at": now}
        )  # fmt: skip
        if holder == "CCS":
            continue
        for week in range(args.weeks):
            if week == args.weeks - 1 and rng.random() < 0.2:
                continue
            at = now - timedelta(weeks=args.weeks - 1 - week)
            reports.append(
                {"kind": "ecmo_inventory", "holder": holder, "period": week_of(at), "version": 1,
                 "at": at, "actor": "bench", "stream_seq": 100 + week, "data": {}}
            )  # fmt: skip
    for part in chunks(balances):
        conn.execute(tables.STOCK_BALANCE.insert(), part)
    for part in chunks(reports):
        conn.execute(tables.RESOURCE_REPORT.insert(), part)
    return {"ecmo_centres": len(centres), "ecmo_balances": len(balances)}


def _line(rng: Any) -> dict[str, Any]:
    """One item of a weekly PPE report as ``resources.ppe.stock`` stores it."""
    on_hand, consumed, crisis = (
        rng.randrange(0, 50000), rng.randrange(100, 9000), rng.randrange(100, 9000),
    )  # fmt: skip
    weeks = round(on_hand / crisis, 2)
    level = "critical" if weeks < 1 else "low" if weeks < 3 else "ok"
    return {
        "on_hand": on_hand, "consumed": consumed, "crisis": crisis, "weeks": weeks,
        "level": level, "crisis_source": "declared", "threshold": 3.0, "critical": 1.0,
    }  # fmt: skip


# -- the floor: the same aggregates in plain SQL ------------------------------------------------

FLOOR = (
    # counts (open, at the CCS level, overdue, incidents) by workflow
    "SELECT c.kind, count(*), sum(CASE WHEN c.level = 'ccs' THEN 1 ELSE 0 END), "
    "sum(CASE WHEN d.due_at IS NOT NULL AND d.due_at <= :now THEN 1 ELSE 0 END), "
    "sum(CASE WHEN c.incident THEN 1 ELSE 0 END) FROM regul_case c LEFT JOIN deadline d "
    "ON d.case_id = c.id AND d.status = 'open' WHERE NOT c.final GROUP BY c.kind",
    # cases by region, workflow and state
    "SELECT region, kind, state, count(*), sum(CASE WHEN final THEN 0 ELSE 1 END) "
    "FROM regul_case GROUP BY region, kind, state",
    "SELECT code, name FROM region",
    # weekly openings: one conditional sum per week
    "SELECT "
    + ", ".join(
        f"sum(CASE WHEN opened_at >= :w{i} AND opened_at < :w{i + 1} THEN 1 ELSE 0 END)"
        for i in range(7)
    )
    + ", sum(CASE WHEN opened_at >= :w7 THEN 1 ELSE 0 END) FROM regul_case "
    "WHERE opened_at >= :w0",
    # reports by region and kind
    "SELECT g.region, o.kind, count(*), sum(CASE WHEN o.status = 'met' THEN 1 ELSE 0 END), "
    "sum(CASE WHEN o.status = 'late' THEN 1 ELSE 0 END) FROM obligation o JOIN organisation g "
    "ON g.id = o.holder WHERE o.due_at <= :now GROUP BY g.region, o.kind",
    "SELECT code, name FROM region",
    # missing by period
    "SELECT o.period, count(*) FROM obligation o JOIN organisation g ON g.id = o.holder "
    "WHERE o.due_at <= :now AND o.status <> 'met' GROUP BY o.period",
    # capacity: beds by region (conditional sums per category and bucket)
    "SELECT g.region, count(DISTINCT b.holder), "
    + ", ".join(
        f"sum(CASE WHEN b.item = '{i}' AND b.bucket = '{k}' THEN b.quantity ELSE 0 END)"
        for i in BED_ITEMS
        for k in BED_BUCKETS
    )
    + " FROM stock_balance b JOIN organisation g ON g.id = b.holder "
    "WHERE b.item IN ('bed:reanimation', 'bed:surveillance_continue') GROUP BY g.region",
    # capacity: the latest report's tier and plan blanc, by region (read in Python)
    "SELECT g.region, r.data FROM resource_report r JOIN organisation g ON g.id = r.holder "
    "WHERE r.id IN (SELECT max(id) FROM resource_report WHERE kind = 'capacity' "
    "GROUP BY holder)",
    # capacity: the Covid+ legs since each week's end and since 7 days
    "SELECT "
    + ", ".join(f"sum(CASE WHEN m.at > :w{i} THEN m.delta ELSE 0 END)" for i in range(1, 8))
    + " FROM movement m JOIN organisation g ON g.id = m.holder WHERE m.item IN "
    "('bed:reanimation', 'bed:surveillance_continue') AND m.bucket = 'occupied_covid' "
    "AND m.at > :w1",
    # capacity: open transfers by state
    "SELECT state, count(*) FROM regul_case WHERE kind = 'transfer' AND NOT final GROUP BY state",
    # the ECMO fleet by holder, the last inventories, the open loans
    "SELECT b.holder, g.name, g.region, sum(CASE WHEN b.item LIKE 'console:%' THEN b.quantity "
    "ELSE 0 END), sum(CASE WHEN b.item LIKE 'console:%' AND b.bucket = 'available' "
    "THEN b.quantity ELSE 0 END), sum(CASE WHEN b.item LIKE 'console:%' AND b.bucket = 'in_use' "
    "THEN b.quantity ELSE 0 END), sum(CASE WHEN b.item LIKE 'console:%' AND b.bucket IN "
    "('lent', 'in_transit') THEN b.quantity ELSE 0 END), sum(CASE WHEN b.item LIKE 'console:%' "
    "AND b.bucket = 'reserved' THEN b.quantity ELSE 0 END), sum(CASE WHEN b.item LIKE "
    "'console:%' AND b.bucket = 'maintenance' THEN b.quantity ELSE 0 END), sum(CASE WHEN "
    "b.item = 'circuit' AND b.bucket = 'available' THEN b.quantity ELSE 0 END) "
    "FROM stock_balance b JOIN organisation g ON g.id = b.holder "
    "WHERE b.item LIKE 'console:%' OR b.item = 'circuit' GROUP BY b.holder, g.name, g.region",
    "SELECT r.holder, max(r.period), max(r.at) FROM resource_report r JOIN organisation g "
    "ON g.id = r.holder WHERE r.kind = 'ecmo_inventory' GROUP BY r.holder",
    "SELECT c.id, c.state, c.org, g.name, c.region, c.fields, d.due_at FROM regul_case c "
    "JOIN organisation g ON g.id = c.org LEFT JOIN deadline d ON d.case_id = c.id "
    "AND d.status = 'open' WHERE c.kind = 'ecmo' AND c.state IN ('dispatched', 'in_service', "
    "'return_declared') ORDER BY c.id",
)


def ppe_floor(pg: bool) -> tuple[str, ...]:
    """The « EPI » panel's aggregates in plain SQL: the latest report per establishment (its
    items' weeks, level, crisis read with JSON paths), the weekly consumption, the balances,
    this week's obligations."""
    from resources.ppe.items import ITEMS as REPORT_ITEMS

    def path(item: str, key: str, cast: str) -> str:
        if pg:
            return f"CAST(r.data #>> '{{lines,{item},{key}}}' AS {cast})"
        return f"CAST(json_extract(r.data, '$.lines.{item}.{key}') AS {cast})"

    def text(item: str, key: str) -> str:
        if pg:
            return f"r.data #>> '{{lines,{item},{key}}}'"
        return f"json_extract(r.data, '$.lines.{item}.{key}')"

    real = "DOUBLE PRECISION" if pg else "REAL"
    picked = ", ".join(
        f"{path(i.key, 'weeks', real)}, {text(i.key, 'level')}, {path(i.key, 'crisis', 'INTEGER')}"
        for i in REPORT_ITEMS
    )
    sums = ", ".join(f"sum({path(i.key, 'consumed', 'INTEGER')})" for i in REPORT_ITEMS)
    held = (
        "SELECT b.item, sum(b.quantity) FROM stock_balance b JOIN organisation g "
        "ON g.id = b.holder WHERE g.kind = '{kind}' AND b.bucket = '{bucket}' GROUP BY b.item"
    )
    return (
        f"SELECT g.region, {picked} FROM resource_report r JOIN (SELECT id, row_number() OVER "
        "(PARTITION BY holder ORDER BY period DESC, version DESC) AS rk FROM resource_report "
        "WHERE kind = 'ppe_stock') x ON x.id = r.id JOIN organisation g ON g.id = r.holder "
        "WHERE x.rk = 1",
        f"SELECT r.period, {sums} FROM resource_report r JOIN (SELECT id, row_number() OVER "
        "(PARTITION BY holder, period ORDER BY version DESC) AS rk FROM resource_report "
        "WHERE kind = 'ppe_stock' AND period >= :p0) x ON x.id = r.id WHERE x.rk = 1 "
        "GROUP BY r.period",
        held.format(kind="hospital", bucket="in_transit"),
        held.format(kind="ght", bucket="in_transit"),
        held.format(kind="ars", bucket="on_hand"),
        held.format(kind="spf", bucket="on_hand"),
        "SELECT count(*), sum(CASE WHEN o.status = 'met' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN o.status = 'late' THEN 1 ELSE 0 END) FROM obligation o JOIN organisation "
        "g ON g.id = o.holder WHERE o.kind = 'ppe_stock' AND o.period = :pw",
    )


def floor(db: Database, now: datetime, runs: int, weeks: int) -> tuple[list[float], Any]:
    """Each run: the statements above on one raw driver connection, in one read transaction."""
    pg = db.engine.dialect.name == "postgresql"
    starts = week_starts(now, weeks)
    instants: dict[str, Any] = {"now": now, **{f"w{i}": at for i, at in enumerate(starts)}}
    instants.update(p0=week_of(starts[0]), pw=week_of(now))

    def bind(text: str) -> tuple[str, dict[str, Any]]:
        used = {k: v for k, v in instants.items() if f":{k}" in text}
        if pg:
            return re.sub(r"(?<!\w):(\w+)", r"%(\1)s", text.replace("%", "%%")), used
        return text, {k: _sqlite_at(v) if isinstance(v, datetime) else v for k, v in used.items()}

    statements = [bind(s) for s in (*FLOOR, *ppe_floor(pg))]
    times, first = [], None
    raw = db.engine.raw_connection()
    try:
        for _ in range(runs):
            began = time.perf_counter()
            cursor = raw.cursor()
            found = []
            for text, params in statements:
                cursor.execute(text, params)
                found.append(cursor.fetchall())
            cursor.close()
            raw.rollback()
            times.append((time.perf_counter() - began) * 1000)
            first = first or found
    finally:
        raw.close()
    return times, first


def _sqlite_at(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(url: str, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGUL_")}
    config = work / "regul.toml"
    config.write_text("# bench/situation.py\n")
    env.update(REGUL_CONFIG=str(config), REGUL_DATABASE_URL=url, REGUL_NOTICES="false")
    err = (work / "serve.err").open("wb")
    popen = subprocess.Popen(
        [str(REGUL), "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
    )  # fmt: skip
    began = time.monotonic()
    while time.monotonic() - began < 60:
        if popen.poll() is not None:
            raise RuntimeError((work / "serve.err").read_text())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return popen, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("regul serve did not start within 60 s")


def desk_session(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login")
    page = conn.getresponse()
    body = page.read().decode()
    cookie = page.getheader("set-cookie", "").split(";")[0]
    csrf = body.split('name="csrf" value="')[1].split('"')[0]
    from urllib.parse import urlencode

    form = urlencode({"login": "ccs", "password": PASSWORD, "csrf": csrf})
    conn.request(
        "POST", "/login", form,
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
    )  # fmt: skip
    answer = conn.getresponse()
    answer.read()
    if answer.status != 303:
        raise RuntimeError(f"login failed: {answer.status}")
    for name, value in answer.getheaders():
        if name.lower() == "set-cookie" and value.startswith("regul_session="):
            return value.split(";")[0]
    raise RuntimeError("no session cookie")


def timed(port: int, path: str, headers: dict[str, str], runs: int) -> tuple[list[float], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times, body = [], b""
    for index in range(runs + 5):  # 5 warm-up requests
        began = time.perf_counter()
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        spent = (time.perf_counter() - began) * 1000
        if answer.status != 200:
            raise RuntimeError(f"GET {path}: {answer.status} {body[:300]!r}")
        if index >= 5:
            times.append(spent)
    conn.close()
    return times, body


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-situation-") as tmp:
        work = Path(tmp)
        schema = None
        if backend == "sqlite":
            url = f"sqlite:///{work / 'regul.db'}"
        else:
            schema = f"bench_situation_{os.getpid()}"
            admin = sa.create_engine(Database(PG_URL).url)
            with admin.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
                conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        db = Database(url)
        try:
            db.migrate()
            began = time.perf_counter()
            sizes = seed(db, args, datetime.now(UTC))
            seed_s = time.perf_counter() - began
            accounts = Accounts(db, SystemClock(), memory_kib=1024, time_cost=1)
            accounts.set_password("ccs", PASSWORD)
            token, _ = accounts.issue_token("ccs", label="bench")
            if backend != "sqlite":
                with db.engine.begin() as conn:
                    conn.execute(sa.text("ANALYZE"))
            measured = measure(db, url, work, token, args)
        finally:
            db.dispose()
            if schema is not None:
                with admin.begin() as conn:
                    conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
                admin.dispose()
    return {"backend": backend, **sizes, "seed_s": round(seed_s, 1), **measured}


def measure(
    db: Database, url: str, work: Path, token: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The page and the API timed from this process, then the floor; the figures compared."""
    server, port = serve(url, work)
    try:
        cookie = desk_session(port)
        page_ms, page = timed(port, "/situation", {"Cookie": cookie}, args.requests)
        api_ms, body = timed(
            port, "/api/v1/situation", {"Authorization": f"Bearer {token}"}, args.requests
        )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    floor_ms, found = floor(db, datetime.now(UTC), args.requests, args.weeks)
    figures = json.loads(body)
    open_cases = sum(int(r[1]) for r in found[0])
    if figures["counts"]["open"] != open_cases:
        raise RuntimeError(f"open cases: page {figures['counts']['open']}, SQL {open_cases}")
    missing = sum(int(r[2]) - int(r[3]) for r in found[4])
    shown = sum(figures["panels"]["reports"]["measure"]["by_region"].values())
    if shown != missing:
        raise RuntimeError(f"missing reports: page {shown}, SQL {missing}")
    weekly = [float(v or 0) for v in found[3][0]]
    if [p["value"] for p in figures["panels"]["cases"]["series"]["points"]] != weekly:
        raise RuntimeError("weekly openings differ from the SQL's")
    by_region: dict[str, list[float]] = {}
    for row in found[len(FLOOR)]:
        for weeks in row[1::3]:
            if weeks is not None:
                by_region.setdefault(row[0], []).append(float(weeks))
    wanted = {k: round(median(v), 2) for k, v in by_region.items()}
    if figures["panels"]["ppe"]["measure"]["by_region"] != wanted:
        raise RuntimeError("the PPE panel's median weeks of cover differ from the SQL's")
    covid = sum(int(r[2 + 2]) + int(r[2 + 6 + 2]) for r in found[7])  # occupied_covid
    capacity = {f["label"]: f["value"] for f in figures["panels"]["capacity"]["figures"]}
    shown_covid = capacity["Patients Covid+ en soins critiques"]
    if shown_covid != covid:
        raise RuntimeError(f"Covid+ patients: page {shown_covid}, SQL {covid}")
    if b"<svg" not in page:
        raise RuntimeError("the page has no chart")
    return {
        "page_bytes": len(page),
        "page_p50_ms": round(pct(page_ms, 0.5), 1),
        "page_p95_ms": round(pct(page_ms, 0.95), 1),
        "api_p50_ms": round(pct(api_ms, 0.5), 1),
        "api_p95_ms": round(pct(api_ms, 0.95), 1),
        "sql_p50_ms": round(pct(floor_ms, 0.5), 1),
        "sql_p95_ms": round(pct(floor_ms, 0.95), 1),
        "page_over_sql_p95": round(pct(page_ms, 0.95) / pct(floor_ms, 0.95), 2),
        "open_cases": open_cases,
        "missing_reports": missing,
        "target_met": pct(page_ms, 0.95) <= TARGET_MS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--establishments", type=int, default=3000)
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run(b.strip(), args) for b in args.backends.split(",") if b.strip()]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            "backend   | page p50 / p95 ms | API p50 / p95 ms | SQL p50 / p95 ms | "
            "page/SQL p95 | ≤ 300 ms"
        )
        for r in results:
            print(
                f"{r['backend']:9} | {r['page_p50_ms']:7} / {r['page_p95_ms']:7} | "
                f"{r['api_p50_ms']:6} / {r['api_p95_ms']:7} | {r['sql_p50_ms']:6} / "
                f"{r['sql_p95_ms']:7} | {r['page_over_sql_p95']:12} | "
                f"{'yes' if r['target_met'] else 'NO'}"
            )
        first = results[0] if results else {}
        print(
            f"data: {first.get('establishments')} establishments, {first.get('cases')} cases, "
            f"{first.get('obligations')} obligations, {first.get('reports')} reports, "
            f"{first.get('balances')} balances; page {first.get('page_bytes')} bytes"
        )
    return 0 if all(r["target_met"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
