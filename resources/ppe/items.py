"""The PPE items of the weekly stock report (MINSANTE N°143: « masques chirurgicaux, masques
FFP2, blouses, tabliers, gants, charlottes, lunettes ») with the mask sub-types of the ARS
Occitanie delivery table (FFP2, surgical with ties, surgical with ear loops) and their units.

Everything is counted in pieces; masks also come in boxes of 50, which the report converts.
A sub-type is an item of the ledgers (what a delivery or a reserve holds) counted under its
parent item in the weekly report and in weeks of cover.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InputError

__all__ = ["ITEMS", "LEDGER_ITEMS", "Item", "item", "parent", "pieces"]


@dataclass(frozen=True)
class Item:
    key: str
    label: str  # French
    unit: str = "pièce"
    box: int | None = None  # pieces per box, where the item comes in boxes
    parent: str | None = None  # a sub-type's item in the weekly report


# The seven items of the weekly report, in the order of MINSANTE N°143.
ITEMS: tuple[Item, ...] = (
    Item("surgical_mask", "Masques chirurgicaux", box=50),
    Item("ffp2_mask", "Masques FFP2", box=50),
    Item("gown", "Blouses"),
    Item("apron", "Tabliers"),
    Item("gloves", "Gants"),
    Item("cap", "Charlottes"),
    Item("goggles", "Lunettes"),
)
# Sub-types held in ledgers (seed 004: « chir lanières », « chir élastiques »).
SUBTYPES: tuple[Item, ...] = (
    Item("surgical_mask_ties", "Masques chirurgicaux à lanières", box=50, parent="surgical_mask"),
    Item(
        "surgical_mask_loops", "Masques chirurgicaux à élastiques", box=50, parent="surgical_mask"
    ),
)
LEDGER_ITEMS: dict[str, Item] = {i.key: i for i in (*ITEMS, *SUBTYPES)}
REPORT_KEYS: tuple[str, ...] = tuple(i.key for i in ITEMS)
UNITS = {"piece": 1, "pieces": 1, "pièce": 1, "pièces": 1, "box": 0, "boxes": 0, "boîte": 0,
         "boîtes": 0, "boite": 0, "boites": 0}  # fmt: skip  # 0: the item's box size


def item(key: str) -> Item:
    found = LEDGER_ITEMS.get(str(key).strip())
    if found is None:
        raise InputError(
            f"unknown PPE item {key!r}; items: {', '.join(LEDGER_ITEMS)}",
            why="ppe_unknown_item", item=str(key), items=", ".join(LEDGER_ITEMS),
        )  # fmt: skip
    return found


def parent(key: str) -> str:
    """The report's item a ledger item counts under (a sub-type's parent, else itself)."""
    found = LEDGER_ITEMS[key]
    return found.parent or found.key


def pieces(key: str, quantity: int, unit: str | None) -> int:
    """``quantity`` in ``unit`` (pieces by default, boxes for masks) as pieces."""
    name = (unit or "pièces").strip().lower()
    if name not in UNITS:
        raise InputError(
            f"unknown unit {unit!r}: write pièces or boîtes",
            why="ppe_unknown_unit", unit=str(unit),
        )  # fmt: skip
    if UNITS[name] == 1:
        return quantity
    box = item(key).box
    if box is None:
        raise InputError(
            f"{key} is counted in pieces, not boxes",
            why="ppe_no_boxes", item=key,
        )  # fmt: skip
    return quantity * box
