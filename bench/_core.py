"""Start-up shared by the benchmarks that build on ``bench/transitions.py``.

Run as a script, a benchmark has this folder first on ``sys.path``, and it holds
``transitions.py``, named like the ``transitions`` library the engine imports. ``repository_first``
takes the folder off and puts the repository on; ``load_core_bench`` loads the core benchmark
under another module name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def repository_first() -> None:
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def load_core_bench() -> ModuleType:
    """bench/transitions.py as module ``bench_transitions``."""
    spec = importlib.util.spec_from_file_location("bench_transitions", HERE / "transitions.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_transitions"] = module
    spec.loader.exec_module(module)
    return module


def engine_rate(core: ModuleType, work: Any, target: Any, *, kind: str, cases: int,
                notices: bool) -> dict[str, Any]:  # fmt: skip
    """The core benchmark's engine measurement (``run_engine``) on ``target``, once.

    With ``notices``, the runner gets the notice outbox as its notifier, as the CLI's and the
    server's do (run_engine's ``Runner`` is swapped for the time of the call). ``target`` is
    discarded afterwards.
    """
    from engine.decisions import Rules
    from engine.runner import Runner
    from notifications.outbox import Outbox
    from workflows import default_notices

    original = core.Runner
    if notices:

        def noticing(db: Any, registry: Any, clock: Any) -> Runner:
            return Runner(
                db,
                registry,
                clock,
                notifier=Outbox(registry, default_notices()),
                rules=Rules(hospital_confirms=True),
            )

        core.Runner = noticing
    try:
        ladders, _ = core.setup_facts(target, [kind])
        seconds, cpu, commands = core.run_engine(target, ladders, cases)
    finally:
        core.Runner = original
        work.discard(target)
    return {
        "cases": cases,
        "commands": commands,
        "notices": notices,
        "seconds": round(seconds, 2),
        "per_s": round(commands / seconds, 1),
        "cpu_us": round(cpu / commands * 1e6, 1),
    }
