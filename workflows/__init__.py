"""The three regulation workflows, declared as data, and the directory of organisations.

``default_registry()`` is what the interfaces load; deadlines come from settings through
``WorkflowRegistry.with_deadlines``.
"""

from __future__ import annotations

from engine.workflow import WorkflowRegistry
from notifications.rules import NoticeBook
from workflows.ecmo import ECMO, ECMO_NOTICES
from workflows.ppe import PPE, PPE_NOTICES
from workflows.transfer import TRANSFER, TRANSFER_NOTICES

__all__ = ["ECMO", "PPE", "TRANSFER", "default_notices", "default_registry"]


def default_registry() -> WorkflowRegistry:
    return WorkflowRegistry([ECMO, PPE, TRANSFER])


def default_notices() -> dict[str, NoticeBook]:
    return {book.workflow: book for book in (ECMO_NOTICES, PPE_NOTICES, TRANSFER_NOTICES)}
