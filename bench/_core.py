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
