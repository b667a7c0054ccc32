"""The three regulation workflows, declared as data, and the directory of organisations.

``default_registry()`` is what the interfaces load; deadlines come from settings through
``WorkflowRegistry.with_deadlines``.
"""

from __future__ import annotations

from engine.workflow import WorkflowRegistry
from workflows.ecmo import ECMO
from workflows.ppe import PPE
from workflows.transfer import TRANSFER

__all__ = ["ECMO", "PPE", "TRANSFER", "default_registry"]


def default_registry() -> WorkflowRegistry:
    return WorkflowRegistry([ECMO, PPE, TRANSFER])
