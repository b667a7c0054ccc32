"""What the resource modules plug into the engine: obligation kinds and case effects.

The composition root (``interfaces.app``) asks here, with the settings, for the kinds of
expected reports the sweep plans and reminds, and for the ``Effects`` a case's transition has
on the ledgers (an ECMO resolve reserving consoles, a transfer reserving a bed, a PPE shipment
debiting its holder). Each resource module adds its own to ``KINDS`` and ``EFFECTS``; nothing
here is imported by the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.settings import Settings
    from engine.unit_of_work import Effects, Tx
    from engine.values import CaseView, Outcome
    from resources.obligations import ObligationKind

__all__ = ["EFFECTS", "KINDS", "case_effects", "obligation_kinds"]

# name -> a function of the settings giving the kind (its due time is a setting)
KINDS: dict[str, Callable[[Settings], ObligationKind]] = {}
# case kind (workflow) -> a function of the settings giving that workflow's effects
EFFECTS: dict[str, Callable[[Settings], Effects]] = {}


def obligation_kinds(settings: Settings) -> dict[str, ObligationKind]:
    _load()
    return {name: make(settings) for name, make in KINDS.items()}


def case_effects(settings: Settings) -> Effects | None:
    """One ``Effects`` dispatching on the case's workflow (None when no module has any)."""
    _load()
    if not EFFECTS:
        return None
    by_kind = {kind: make(settings) for kind, make in EFFECTS.items()}

    def effects(tx: Tx, before: CaseView, outcome: Outcome) -> Outcome:
        found = by_kind.get(before.kind)
        return found(tx, before, outcome) if found is not None else outcome

    return effects


def _load() -> Any:
    """Import the resource modules, which register themselves (added by each module)."""
    import resources.beds
    import resources.beds.panel  # the situation room's « Capacités de réanimation »
    import resources.ecmo
    import resources.ecmo_panel
    import resources.ppe.panel  # situation room: the « EPI » panel
    import resources.ppe.stock  # noqa: F401 - PPE stocks: ppe_stock, the ppe case's shipments

    return None
