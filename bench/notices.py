#!/usr/bin/env python
"""What notices cost: queuing inside transitions, and delivery rates of the outbox.

(a) Within transitions. The core benchmark's ladder workload (``bench/transitions.py``: N
cases opened and driven up their whole escalation ladder through ``Runner``, one committed
command per step, the clock moving one second per command) runs on a fresh SQLite file in WAL
mode twice per repeat: notices ON (``Runner(..., notifier=Outbox(registry, default_notices()))``:
each opening, escalation and the final resolve gathers the notice's facts, numbers it and
inserts it in the command's own transaction; the text and HTML are rendered once, at dispatch)
and OFF (no notifier). The order flips every repeat; one case per
workflow is driven untimed first (directory load). Reported: commands per second for both, the
on/off ratio, and notices queued per second. Each ON run is checked: one notice per step whose
event declares one (open, escalate, resolve), numbered 1..n without gap in each series; OFF
queues none.

(b) Delivery. The notices of an ON run are delivered by ``notifications.dispatcher.dispatch``
(batches of 50, one leased batch per transaction, one recorded attempt per notice) to the .eml
channel (a temporary folder) and to SMTP: an ``aiosmtpd`` server in a child process on
127.0.0.1 (``SmtpChannel`` opens one connection per notice, as in production). Before each
channel run the first ``--dispatch`` notices (default 1000) are re-queued (``status =
'queued'``, attempts and rendered bodies cleared, so each send renders from the facts; the rest
count as sent). Checked: every queued notice sent, as many .eml files, as many messages
received by the server.

Medians of ``--repeat`` runs (default 3).

    .venv/bin/python bench/notices.py                    # the default run (1000 ECMO cases)
    .venv/bin/python bench/notices.py --cases 200 --kinds ecmo,ppe,transfer
    .venv/bin/python bench/notices.py --json > notices.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any

import _core  # this folder is still first on sys.path here

_core.repository_first()

import sqlalchemy as sa  # noqa: E402

from engine.clock import FixedClock  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.decisions import Rules  # noqa: E402
from engine.runner import Runner  # noqa: E402
from notifications.channels import Channel, EmlChannel, SmtpChannel  # noqa: E402
from notifications.dispatcher import DispatchPolicy, dispatch  # noqa: E402
from notifications.outbox import NOTICE_TABLE, Outbox  # noqa: E402
from workflows import default_notices, default_registry  # noqa: E402

CONFIRMS = Rules(hospital_confirms=True)  # the benches time the hospital's confirm step

BT = _core.load_core_bench()
POLICY = DispatchPolicy(max_attempts=5, backoff=timedelta(seconds=30), batch_size=50)

# A minimal SMTP sink in its own process: counts messages, prints the count when stdin closes.
SMTP_CHILD = r"""
import socket, sys, threading
from aiosmtpd.controller import Controller
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
class Count:
    n = 0
    lock = threading.Lock()
    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            Count.n += 1
        return "250 OK"
controller = Controller(Count(), hostname="127.0.0.1", port=port)
controller.start()
print(controller.port, flush=True)
sys.stdin.read()
controller.stop()
print(Count.n, flush=True)
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- (a) transitions with notices on and off ----------------------------------------------


def drive(runner: Runner, clock: FixedClock, ladder: Any) -> int:
    """Open one case and drive it up its ladder; the number of committed commands."""
    opening = ladder.steps[0]
    clock.advance(BT.TICK)
    case = runner.open_case(
        kind=ladder.kind, login=opening.login, org=BT.HOSPITAL, fields=ladder.open_fields
    )
    for step in ladder.steps[1:]:
        clock.advance(BT.TICK)
        runner.advance(
            reference=case.reference,
            trigger=step.trigger or "",
            login=step.login,
            reason=step.reason,
            data=step.data,
        )
    return len(ladder.steps)


def run_ladders(target: Any, ladders: list[Any], cases: int, notices_on: bool) -> dict[str, Any]:
    db = target.engine_db()
    registry = default_registry()
    clock = FixedClock(BT.START)
    notifier = Outbox(registry, default_notices()) if notices_on else None
    runner = Runner(db, registry, clock, notifier=notifier, rules=CONFIRMS)
    for ladder in ladders:  # untimed warm-up: templates compiled, directory loaded
        drive(runner, clock, ladder)
    with db.read() as conn:
        queued_before = conn.execute(sa.select(sa.func.count()).select_from(NOTICE_TABLE)).scalar()
    commands = 0
    began, cpu = time.perf_counter(), time.process_time()
    for i in range(cases):
        commands += drive(runner, clock, ladders[i % len(ladders)])
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    with db.read() as conn:
        rows = conn.execute(
            sa.select(NOTICE_TABLE.c.series, NOTICE_TABLE.c.number).order_by(NOTICE_TABLE.c.id)
        ).all()
    db.dispose()
    books = default_notices()
    expected_per_case = {  # the steps whose event declares a notice (the opening: "open")
        ladder.kind: sum(
            1 for step in ladder.steps if books[ladder.kind].rule(step.trigger or "open")
        )
        for ladder in ladders
    }
    expected = sum(expected_per_case[ladders[i % len(ladders)].kind] for i in range(cases))
    expected += sum(expected_per_case.values())  # the warm-up cases
    numbers: dict[str, list[int]] = {}
    for series, number in rows:
        numbers.setdefault(series, []).append(number)
    gapless = all(sorted(v) == list(range(1, len(v) + 1)) for v in numbers.values())
    ok = (len(rows) == expected and gapless) if notices_on else not rows
    return {
        "seconds": seconds,
        "cpu_us": cpu / commands * 1e6,
        "commands": commands,
        "notices": len(rows) - int(queued_before or 0),
        "ok": ok,
    }


# -- (b) delivery -------------------------------------------------------------------------


class SmtpSink:
    """aiosmtpd in a child process (so that it does not share this process's GIL)."""

    def __enter__(self) -> SmtpSink:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SMTP_CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        return self

    def received(self) -> int:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        count = int(self.proc.stdout.readline())
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
        return count

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


def requeue(db: Database, channel: str, limit: int) -> int:
    """Queue the first ``limit`` notices again on ``channel``; the others count as sent."""
    n = NOTICE_TABLE.c
    with db.write() as conn:
        conn.execute(sa.text("DELETE FROM notice_attempt"))
        cutoff = conn.execute(sa.select(n.id).order_by(n.id).limit(limit)).scalars().all()
        conn.execute(NOTICE_TABLE.update().where(n.id.not_in(cutoff)).values(status="sent"))
        return int(
            conn.execute(
                NOTICE_TABLE.update()
                .where(n.id.in_(cutoff))
                .values(
                    status="queued",
                    attempts=0,
                    channel=channel,
                    next_attempt_at=BT.START,
                    sent_at=None,
                    last_error="",
                    body_text="",  # rendered again from the facts, as a first send is
                    body_html="",
                )
            ).rowcount
        )


def run_dispatch(target: Any, name: str, channel: Channel, limit: int) -> dict[str, Any]:
    db = target.engine_db()
    queued = requeue(db, name, limit)
    clock = FixedClock(BT.START + timedelta(days=1))
    began, cpu = time.perf_counter(), time.process_time()
    report = dispatch(db, clock, {name: channel}, POLICY)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    db.dispose()
    return {
        "seconds": seconds,
        "cpu_us": cpu / max(queued, 1) * 1e6,
        "queued": queued,
        "sent": len(report.sent),
        "ok": len(report.sent) == queued and not report.retried and not report.failed,
    }


# -- the runs -----------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"on": [], "off": []}
    cpus: dict[str, list[float]] = {"on": [], "off": []}
    queued_rates: list[float] = []
    deliveries: dict[str, list[float]] = {"eml": [], "smtp": []}
    delivery_cpu: dict[str, list[float]] = {"eml": [], "smtp": []}
    checks: list[bool] = []
    commands = notices = 0
    with BT.workspace(args.tmpdir, BT.PG_URL) as work:
        for r in range(args.repeat):
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            kept = None
            for side in order:
                target = work.sqlite(args.sync)
                ladders, _hospital = BT.setup_facts(target, args.kinds)
                run = run_ladders(target, ladders, args.cases, side == "on")
                commands = run["commands"]
                rate = commands / run["seconds"]
                rates[side].append(rate)
                cpus[side].append(run["cpu_us"])
                checks.append(run["ok"])
                extra = ""
                if side == "on":
                    notices = run["notices"]
                    queued_rates.append(notices / run["seconds"])
                    extra = f", {notices} notices queued"
                    kept = target
                else:
                    work.discard(target)
                log(
                    f"  notices {side:<3} run {r + 1}/{args.repeat}: {commands} commands in "
                    f"{run['seconds']:6.2f} s = {rate:7.1f}/s{extra}"
                    + ("" if run["ok"] else "  CHECK FAILED")
                )
            assert kept is not None
            folder = work.dir / f"eml-{r}"
            eml = run_dispatch(kept, "eml", EmlChannel(folder), args.dispatch)
            files = len(list(folder.glob("*.eml")))
            shutil.rmtree(folder, ignore_errors=True)
            with SmtpSink() as sink:
                channel = SmtpChannel("127.0.0.1", sink.port, timeout=10)
                smtp = run_dispatch(kept, "smtp", channel, args.dispatch)
                received = sink.received()
            work.discard(kept)
            for name, result, arrived in (("eml", eml, files), ("smtp", smtp, received)):
                ok = result["ok"] and arrived == result["queued"]
                checks.append(ok)
                deliveries[name].append(result["sent"] / result["seconds"])
                delivery_cpu[name].append(result["cpu_us"])
                log(
                    f"  dispatch {name:<4} run {r + 1}/{args.repeat}: {result['sent']} sent in "
                    f"{result['seconds']:6.2f} s = {deliveries[name][-1]:7.1f}/s, {arrived} arrived"
                    + ("" if ok else "  CHECK FAILED")
                )
    on, off = median(rates["on"]), median(rates["off"])
    return {
        "cases": args.cases,
        "commands": commands,
        "notices_per_run": notices,
        "transitions": {
            "on_per_s": [round(x, 1) for x in rates["on"]],
            "off_per_s": [round(x, 1) for x in rates["off"]],
            "on_median": round(on, 1),
            "off_median": round(off, 1),
            "ratio_on_off": round(on / off, 3),
            "on_cpu_us_median": round(median(cpus["on"]), 1),
            "off_cpu_us_median": round(median(cpus["off"]), 1),
            "notices_queued_per_s_median": round(median(queued_rates), 1),
        },
        "dispatch": {
            name: {
                "per_s": [round(x, 1) for x in values],
                "median": round(median(values), 1),
                "cpu_us_median": round(median(delivery_cpu[name]), 1),
            }
            for name, values in deliveries.items()
        },
        "checks_ok": all(checks),
    }


def table(result: dict[str, Any]) -> str:
    cfg, res = result["config"], result["result"]
    t, d = res["transitions"], res["dispatch"]
    lines = [
        f"Notices — SQLite WAL synchronous={cfg['sync']}, {cfg['cases']} cases "
        f"({', '.join(cfg['kinds'])}), {res['commands']} commands and {res['notices_per_run']} "
        f"notices per run ({cfg['dispatch']} delivered per channel), medians of {cfg['repeat']}",
        "",
        f"{'measure':<40} {'median':>10} {'runs':<30}",
        f"{'commands/s, notices OFF':<40} {t['off_median']:>10.1f} {t['off_per_s']!s:<30}",
        f"{'commands/s, notices ON':<40} {t['on_median']:>10.1f} {t['on_per_s']!s:<30}",
        f"{'ratio ON / OFF':<40} {t['ratio_on_off']:>10.3f}",
        f"{'notices queued/s (ON)':<40} {t['notices_queued_per_s_median']:>10.1f}",
        f"{'CPU µs per command OFF / ON':<40} "
        f"{t['off_cpu_us_median']:>10.0f} / {t['on_cpu_us_median']:.0f}",
        f"{'dispatch to .eml folder, notices/s':<40} {d['eml']['median']:>10.1f} "
        f"{d['eml']['per_s']!s:<30}",
        f"{'dispatch to SMTP (aiosmtpd), notices/s':<40} {d['smtp']['median']:>10.1f} "
        f"{d['smtp']['per_s']!s:<30}",
        "",
        f"checks: {'all passed' if res['checks_ok'] else 'FAILED'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cost of notices and delivery rates.")
    parser.add_argument("--cases", type=int, default=1000, help="cases per run (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument(
        "--dispatch",
        type=int,
        default=1000,
        help="notices of an ON run delivered per channel and repeat (default 1000)",
    )
    parser.add_argument(
        "--kinds", default="ecmo", help="comma-separated workflows, used in turn (default ecmo)"
    )
    parser.add_argument(
        "--sync", choices=("FULL", "NORMAL"), default="FULL", help="SQLite synchronous mode"
    )
    parser.add_argument("--tmpdir", default=None, help="folder for the SQLite files")
    parser.add_argument("--json", action="store_true", help="print a JSON document on stdout")
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if min(args.cases, args.repeat, args.dispatch) <= 0:
        parser.error("--cases, --repeat and --dispatch must be positive")
    began = time.perf_counter()
    log(
        f"notices bench: {args.cases} cases x {args.repeat} repeats, SQLite WAL "
        f"synchronous={args.sync}, kinds {','.join(args.kinds)}"
    )
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "code_sha256": BT.code_digest(),
        },
        "config": {
            "cases": args.cases,
            "repeat": args.repeat,
            "kinds": args.kinds,
            "sync": args.sync,
            "dispatch": args.dispatch,
            "batch_size": POLICY.batch_size,
            "tmpdir": args.tmpdir or tempfile.gettempdir(),
            "argv": sys.argv[1:] if argv is None else argv,
        },
    }
    result["result"] = measure(args)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds_total"] = round(time.perf_counter() - began, 1)
    text = table(result)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(text)
    return 0 if result["result"]["checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
