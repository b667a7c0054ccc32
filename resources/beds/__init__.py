"""Critical-care capacity (issue 13, MARS N°2021_18): the bed ledger, capacity reports and
the daily snapshot, capacity plans and regional targets, deprogramming decisions, alerts, and
transfers that go where the beds are.

- ``resources.beds.core``: the decisions (pure but for the reads of their transaction);
- ``resources.beds.reads``: status per establishment, transfer candidates, feeds;
- ``resources.beds.effects``: a transfer's bed check, reservation and occupation;
- ``resources.beds.service``: ``Beds``, the service the interfaces call (``App.beds``);
- ``resources.beds.importer``: capacity reports from a CSV or XLSX file;
- ``resources.beds.places``: departments' coordinates, distances.

Importing this package registers the ``capacity`` obligation (the daily snapshot) and the
transfer's effects with ``resources.catalogue``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine import tables
from resources import catalogue
from resources.obligations import ObligationKind
from resources.periods import Due

if TYPE_CHECKING:
    from engine.settings import Settings

__all__ = ["capacity_kind"]


def _enrolled(conn: Any) -> list[str]:
    """Establishments that owe the daily snapshot: those that hold beds in the ledger."""
    b = tables.STOCK_BALANCE
    return list(
        conn.execute(
            sa.select(b.c.holder).where(b.c.item.like("bed:%")).distinct().order_by(b.c.holder)
        ).scalars()
    )


def capacity_kind(settings: Settings | None = None) -> ObligationKind:
    due = getattr(settings, "beds_capacity_due", "14:00") if settings is not None else "14:00"
    return ObligationKind(
        name="capacity",
        report="Le relevé quotidien des capacités de soins critiques",
        due=Due.parse(due, weekly=False),
        escalate_after=timedelta(hours=2),
        holders=_enrolled,
    )


def _effects(settings: Settings) -> Any:
    """The transfer's bed effects, imported at the first transition (not at start-up)."""

    def effects(tx: Any, before: Any, outcome: Any) -> Any:
        from resources.beds.effects import transfer_effects

        return transfer_effects(tx, before, outcome)

    return effects


catalogue.KINDS["capacity"] = capacity_kind
catalogue.EFFECTS["transfer"] = _effects
