#!/usr/bin/env python
"""CLI start-up: ``regul --help`` and ``regul case show`` against ``import sqlalchemy``.

The figures are for an installed Régul, as users get it: the script builds the wheel of the
repository (``pip wheel . --no-deps``) and installs it into a virtualenv of its own
(``--venv``, default /tmp/regul-wheel-venv), where pip byte-compiles every module once. (An
editable install under ``PYTHONDONTWRITEBYTECODE=1`` recompiles Régul's sources at every start
and would measure the compiler.) With ``--baseline REV`` the wheel of git revision REV
(``git archive``) goes into a second virtualenv (``VENV-REV``) and its commands are timed in the
same run, beside the current code.

A demo SQLite database is made once per virtualenv (``regul demo --cases 5``); the case read is
the newest case of Occitanie, read by ``ars-occ`` (the ARS of Occitanie, in scope), so that
``case show`` also lists the triggers the reader may fire. Commands run as whole processes,
output thrown away, in turn (floor, then each command), ``--runs`` rounds after one
warm-up round. Per command: the median wall time and the median CPU time (user + system, of the
child, from ``os.wait4``), and the medians over the rounds of its ratios (wall, CPU) to the
floor's run of the same round. Targets (issue 9): ``--help`` <= 1x, ``case show`` <= 2x.

    .venv/bin/python bench/startup.py                         # about a minute
    .venv/bin/python bench/startup.py --baseline 5ff3057 --runs 15
    .venv/bin/python bench/startup.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FLOOR = "import sqlalchemy"
READER = "ars-occ"


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs)


def _source(revision: str | None, scratch: Path) -> Path:
    """The repository's working tree, or revision ``revision`` exported into ``scratch``."""
    if revision is None:
        return ROOT
    archive = scratch / "source.tar"
    _run(["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), revision])
    tree = scratch / "source"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def install(venv: Path, revision: str | None) -> None:
    """Build the wheel of ``revision`` (None: the working tree) and install it into ``venv``."""
    with tempfile.TemporaryDirectory(prefix="regul-startup-") as tmp:
        scratch = Path(tmp)
        source = _source(revision, scratch)
        _run([sys.executable, "-m", "pip", "wheel", str(source), "-w", str(scratch / "dist"),
              "--no-deps", "-q"])  # fmt: skip
        wheel = next((scratch / "dist").glob("regul-*.whl"))
        if not (venv / "bin" / "python").exists():
            _run([sys.executable, "-m", "venv", str(venv)])
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        _run([*pip, str(wheel)])  # dependencies, the first time
        _run([*pip, "--force-reinstall", "--no-deps", str(wheel)])  # this build's Régul


def demo_case(venv: Path) -> tuple[dict[str, str], str]:
    """A fresh demo database beside ``venv``; the environment to use it and a case to read."""
    db = venv / "startup-demo.db"
    for stale in venv.glob("startup-demo.db*"):  # the database, its WAL, its outbox folder
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    env = {**os.environ, "REGUL_DATABASE_URL": f"sqlite:///{db}"}
    regul = str(venv / "bin" / "regul")
    _run([regul, "demo", "--db", str(db), "--cases", "5", "--json"], env=env, cwd=venv)
    listed = _run([regul, "case", "list", "--region", "OCC", "--as", READER, "--limit", "1",
                   "--json"], env=env, cwd=venv)  # fmt: skip
    cases = json.loads(listed.stdout)
    if not cases:
        raise SystemExit("the demo database has no case in Occitanie to read")
    return env, str(cases[0]["reference"])


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``cmd``; it must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stderr is not None
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def commands(venv: Path, case: str, label: str) -> dict[str, list[str]]:
    regul = str(venv / "bin" / "regul")
    show = [regul, "case", "show", case, "--as", READER]
    return {
        f"{label}regul --help": [regul, "--help"],
        f"{label}{' '.join(['regul', *show[1:]])}": show,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    venv = Path(args.venv)
    setups: list[tuple[Path, str | None, str]] = [(venv, None, "")]
    if args.baseline:
        setups.insert(0, (Path(f"{venv}-{args.baseline}"), args.baseline, f"[{args.baseline}] "))
    plan: dict[str, tuple[list[str], dict[str, str], Path]] = {}
    for where, revision, label in setups:
        if not args.no_build:
            print(f"building and installing {revision or 'the working tree'} into {where}",
                  file=sys.stderr)  # fmt: skip
            install(where, revision)
        env, case = demo_case(where)
        if not plan:
            plan[f"python -c '{FLOOR}'"] = (
                [str(where / "bin" / "python"), "-c", FLOOR],
                env,
                where,
            )
        for name, cmd in commands(where, case, label).items():
            plan[name] = (cmd, env, where)
    floor = next(iter(plan))
    walls: dict[str, list[float]] = {name: [] for name in plan}
    cpus: dict[str, list[float]] = {name: [] for name in plan}
    ratios: dict[str, list[float]] = {name: [] for name in plan}
    cpu_ratios: dict[str, list[float]] = {name: [] for name in plan}
    for round_ in range(args.runs + 1):
        this: dict[str, tuple[float, float]] = {}
        for name, (cmd, env, cwd) in plan.items():
            this[name] = timed(cmd, env, cwd)
        if not round_:  # round 0 warms the page cache
            continue
        for name, (wall, cpu) in this.items():
            walls[name].append(wall)
            cpus[name].append(cpu)
            ratios[name].append(wall / this[floor][0])
            cpu_ratios[name].append(cpu / this[floor][1])
    return {
        "runs": args.runs,
        "python": sys.version.split()[0],
        "floor": floor,
        "commands": {
            name: {
                "wall_ms": round(statistics.median(walls[name]) * 1000, 1),
                "cpu_ms": round(statistics.median(cpus[name]) * 1000, 1),
                "min_ms": round(min(walls[name]) * 1000, 1),
                "max_ms": round(max(walls[name]) * 1000, 1),
                "ratio": round(statistics.median(ratios[name]), 2),
                "cpu_ratio": round(statistics.median(cpu_ratios[name]), 2),
            }
            for name in plan
        },
    }


def report(result: dict[str, Any]) -> None:
    print(f"{result['runs']} rounds, medians; ratios to the floor's run of the same round")
    width = max(len(name) for name in result["commands"])
    print(f"{'command':<{width}}  {'wall ms':>8}  {'min-max ms':>11}  {'cpu ms':>7}  "
          f"{'wall ratio':>10}  cpu ratio")  # fmt: skip
    for name, row in result["commands"].items():
        spread = f"{row['min_ms']:.0f}-{row['max_ms']:.0f}"
        print(f"{name:<{width}}  {row['wall_ms']:>8.0f}  {spread:>11}  {row['cpu_ms']:>7.0f}  "
              f"{row['ratio']:>9.2f}x  {row['cpu_ratio']:>8.2f}x")  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--runs", type=int, default=15, help="counted rounds (default 15, at least 10 to quote)")
    add("--venv", default="/tmp/regul-wheel-venv", help="virtualenv of the wheel install")
    add("--baseline", default=None, help="also time the wheel of this git revision, same run")
    add("--no-build", action="store_true", help="reuse the virtualenvs as they are")
    add("--json", action="store_true", help="print the result as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
