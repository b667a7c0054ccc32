#!/usr/bin/env python
"""A national week of PPE stock reports (issue 12): 3,000 establishments x 7 items.

A fresh SQLite database (``regul init --demo``, default settings: ``synchronous=FULL``) gets
3,000 synthetic establishments (FINESS ``31B000001``... in Occitanie, no GHT), then:

1. **file**: one CSV file of 21,000 lines (week 1), read, checked and recorded by
   ``PpeService.import_file`` in this process, in one transaction: reports, balances,
   obligations met, the alert rule evaluated on every line and the ``ppe`` cases it opens
   (about 3% of the lines are under the threshold; a case per line, notices on, as served);
2. **floor**: the same rows (3,000 reports, 21,000 movements and balances) inserted with plain
   SQL (``sqlite3``, ``executemany``, one transaction) into a copy of the database taken
   before step 1: what storing the figures costs without any decision;
3. **in-process rate**: week 2, one ``PpeService.report`` per establishment (3,000 commands,
   one transaction each), in this process: reports per second;
4. **API rate**: week 3, ``regul serve --no-worker`` (a subprocess, same database) and 4
   client threads (httpx, keep-alive) posting ``/api/v1/ppe/reports``: 3,000 calls; the ratio
   to step 3's rate must be at least 50%.

    .venv/bin/python bench/ppe.py            # the run of BENCHMARKS.md, "Issue 12"
    .venv/bin/python bench/ppe.py --json
    .venv/bin/python bench/ppe.py --establishments 300   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/ (its transitions.py would shadow the library)
REGUL = Path(sys.executable).with_name("regul")
ITEMS = ("surgical_mask", "ffp2_mask", "gown", "apron", "gloves", "cap", "goggles")
CRISIS = {"surgical_mask": 3000, "ffp2_mask": 800, "gown": 600, "apron": 900, "gloves": 9000,
          "cap": 700, "goggles": 60}  # fmt: skip
WEEKS = ("2026-W45", "2026-W46", "2026-W47")


def env(url: str, work: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("REGUL_")}
    out.update(REGUL_DATABASE_URL=url, REGUL_EML_DIR=str(work / "outbox"), COLUMNS="200")
    return out


def establishments(n: int) -> list[str]:
    return [f"31B{i:06d}" for i in range(1, n + 1)]


def add_establishments(url: str, ids: list[str]) -> None:
    engine = sa.create_engine(url)
    rows = [{"id": h, "kind": "hospital", "name": f"Établissement synthétique {h}",
             "region": "OCC", "zone": "SUD", "department": "31", "ght": None,
             "email": f"{h}@example-sante.fr", "category": "sanitaire"} for h in ids]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO organisation (id, kind, name, region, zone, department, ght, email, "
            "category) VALUES (:id, :kind, :name, :region, :zone, :department, :ght, :email, "
            ":category)"), rows)  # fmt: skip
    engine.dispose()


def figures(rng: random.Random, under: float) -> dict[str, tuple[int, int, int]]:
    out = {}
    for item in ITEMS:
        crisis = CRISIS[item] * rng.choice((1, 2, 3))
        weeks = rng.uniform(0.3, 2.8) if rng.random() < under else rng.uniform(3.5, 8)
        out[item] = (int(crisis * weeks), int(crisis * rng.uniform(0.4, 0.9)), crisis)
    return out


def csv_week(ids: list[str], week: str, rng: random.Random, under: float) -> tuple[bytes, list]:
    lines = ["etablissement;semaine;article;stock;consommation;consommation_crise;unite;"
             "atteste_par;qualite"]  # fmt: skip
    rows = []
    for h in ids:
        for item, (stock, used, crisis) in figures(rng, under).items():
            lines.append(f"{h};{week};{item};{stock};{used};{crisis};;Direction;directeur")
            rows.append((h, item, stock, used, crisis))
    return ("\n".join(lines) + "\n").encode(), rows


def floor(path: Path, week: str, rows: list[tuple[str, str, int, int, int]]) -> float:
    """The same rows with plain SQL: reports, movements, balances, one transaction."""
    by: dict[str, dict[str, Any]] = {}
    for h, item, stock, used, crisis in rows:
        by.setdefault(h, {})[item] = {"on_hand": stock, "consumed": used, "crisis": crisis}
    began = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("BEGIN IMMEDIATE")
    at = "2026-11-16 10:00:00.000000"
    conn.executemany(
        "INSERT INTO resource_report (kind, holder, period, version, at, actor, stream_seq, "
        "data) VALUES ('ppe_stock', ?, ?, 1, ?, 'bench', 1, ?)",
        [(h, week, at, json.dumps({"lines": lines})) for h, lines in by.items()],
    )
    conn.executemany(
        "INSERT INTO movement (at, holder, item, bucket, delta, kind, stream_seq, actor) "
        "VALUES (?, ?, ?, 'on_hand', ?, 'stock_report', 1, 'bench')",
        [(at, h, item, stock) for h, item, stock, _, _ in rows],
    )
    conn.executemany(
        "INSERT INTO stock_balance (holder, item, bucket, quantity, updated_at) VALUES "
        "(?, ?, 'on_hand', ?, ?) ON CONFLICT (holder, item, bucket) DO UPDATE SET "
        "quantity = excluded.quantity",
        [(h, item, stock, at) for h, item, stock, _, _ in rows],
    )
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - began


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def api_week(url: str, work: Path, ids: list[str], week: str, rng: random.Random,
             under: float, clients: int) -> dict[str, Any]:  # fmt: skip
    import httpx

    from engine.accounts import Accounts
    from engine.clock import SystemClock
    from engine.db import Database

    db = Database(url)
    token = Accounts(db, SystemClock()).issue_token("ars-occ", label="bench-ppe")[0]
    db.dispose()
    port = free_port()
    err = (work / "serve.err").open("wb")
    server = subprocess.Popen(
        [str(REGUL), "serve", "--no-worker", "--port", str(port)], env=env(url, work),
        cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
    )  # fmt: skip
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/api/v1/me", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        bodies = [
            {"establishment": h, "week": week, "attested_by": "Direction",
             "lines": [{"item": k, "on_hand": s, "consumed": u, "crisis": c}
                       for k, (s, u, c) in figures(rng, under).items()]}
            for h in ids
        ]  # fmt: skip
        statuses: dict[int, int] = {}
        lock = threading.Lock()

        def run(part: list[dict[str, Any]]) -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                for body in part:
                    code = client.post("/api/v1/ppe/reports", json=body).status_code
                    with lock:
                        statuses[code] = statuses.get(code, 0) + 1

        threads = [threading.Thread(target=run, args=(bodies[i::clients],))
                   for i in range(clients)]  # fmt: skip
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - began
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        err.close()
    return {"seconds": round(seconds, 2), "rate": round(len(ids) / seconds, 1),
            "statuses": statuses, "clients": clients}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--establishments", type=int, default=3000)
    parser.add_argument("--under", type=float, default=0.03, help="share of lines under threshold")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(2026)
    work = Path(tempfile.mkdtemp(prefix="regul-bench-ppe-"))
    path = work / "regul.db"
    url = f"sqlite:///{path}"
    result: dict[str, Any] = {"establishments": args.establishments,
                              "lines": args.establishments * len(ITEMS)}  # fmt: skip
    try:
        done = subprocess.run([str(REGUL), "init", "--demo", "--json"], env=env(url, work),
                              cwd=work, capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"regul init --demo failed: {done.stderr}")
        ids = establishments(args.establishments)
        add_establishments(url, ids)
        content, rows = csv_week(ids, WEEKS[0], rng, args.under)
        shutil.copy(path, work / "floor.db")
        result["floor_s"] = round(floor(work / "floor.db", WEEKS[0], rows), 3)

        from engine.values import SYSTEM
        from interfaces.app import build_app
        from resources.ppe.service import PpeService

        app = build_app(database_url=url)
        ppe = PpeService(app)
        began = time.perf_counter()
        outcomes = ppe.import_file(SYSTEM, "week.csv", content)
        result["file_s"] = round(time.perf_counter() - began, 2)
        result["file_cases_opened"] = sum(1 for o in outcomes if o.opened is not None)
        result["file_over_floor"] = round(result["file_s"] / result["floor_s"], 1)
        raws = [
            {"establishment": h, "week": WEEKS[1], "attested_by": "Direction",
             "lines": [{"item": k, "on_hand": s, "consumed": u, "crisis": c}
                       for k, (s, u, c) in figures(rng, args.under).items()]}
            for h in ids
        ]  # fmt: skip
        began = time.perf_counter()
        for raw in raws:
            ppe.report("ars-occ", raw)
        seconds = time.perf_counter() - began
        result["inprocess"] = {"seconds": round(seconds, 2), "rate": round(len(ids) / seconds, 1)}
        app.db.dispose()
        result["api"] = api_week(url, work, ids, WEEKS[2], rng, args.under, args.clients)
        result["api_over_inprocess"] = round(result["api"]["rate"] / result["inprocess"]["rate"], 2)
        result["targets"] = {"file_le_10s": result["file_s"] <= 10,
                             "api_ge_half": result["api_over_inprocess"] >= 0.5}  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['establishments']} establishments x 7 items = {result['lines']} lines")
    print(f"file (one transaction, rule and cases): {result['file_s']} s, "
          f"{result['file_cases_opened']} cases opened; floor (plain SQL) {result['floor_s']} s; "
          f"x{result['file_over_floor']}")  # fmt: skip
    print(f"in-process: {result['inprocess']['rate']} reports/s; API ({args.clients} clients): "
          f"{result['api']['rate']} reports/s {result['api']['statuses']}; ratio "
          f"{result['api_over_inprocess']}")  # fmt: skip
    print(f"targets: {result['targets']}")


if __name__ == "__main__":
    main()
