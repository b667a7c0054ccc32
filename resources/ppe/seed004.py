"""Seed 004 as data: Occitanie's 14 GHT deliveries of 20-21 March 2020 and its reserve.

``data/occitanie_2020_03.csv`` is the table of the ARS Occitanie's situation of 24/03/2020
(« Volumes livrés par GHT »); each figure is loaded as one ``ppe_delivery`` event in the GHT's
stream with its origin (``manufacturer``: KOLMI; ``national_stock``: the strategic stock) and
its item (FFP2, surgical with ties, surgical with ear loops), already received (« Toutes les
livraisons ont été réceptionnées »); the row's published total is checked against its parts
before anything is written. The regional reserve of 700 000 masks is one ``reserve_in`` of
the ARS (its type and origin are not published: surgical masks, ``initial``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine import tables
from engine.errors import Conflict, InputError
from engine.values import Actor, Draft, LedgerEntry, Leg, Outcome

if TYPE_CHECKING:
    from engine.unit_of_work import Tx

__all__ = ["PUBLISHED", "SOURCE", "Delivery", "decide_seed", "deliveries"]

FILE = Path(__file__).with_name("data") / "occitanie_2020_03.csv"
SOURCE = "ARS Occitanie, point de situation du 24/03/2020"
RESERVE = 700_000
# the table's published totals: KOLMI FFP2, ties, ear loops; strategic stock; all masks
PUBLISHED = (103_500, 20_650, 130_850, 1_641_600, 1_896_600)
_COLUMNS = (
    ("kolmi_ffp2", "ffp2_mask", "manufacturer", "2020-03-20"),
    ("kolmi_ties", "surgical_mask_ties", "manufacturer", "2020-03-20"),
    ("kolmi_loops", "surgical_mask_loops", "manufacturer", "2020-03-20"),
    ("strategic_loops", "surgical_mask_loops", "national_stock", "2020-03-21"),
)


@dataclass(frozen=True)
class Delivery:
    ght_name: str
    item: str
    origin: str
    quantity: int
    at: str


def _number(text: str) -> int:
    text = text.replace(" ", "").replace("\u202f", "").strip()
    return 0 if text in ("", "-") else int(text)


def deliveries(path: Path = FILE) -> list[Delivery]:
    """The table's deliveries, each row's total checked against its parts."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    out: list[Delivery] = []
    for row in csv.DictReader(lines):
        parts = [(_number(row[c]), item, origin, at) for c, item, origin, at in _COLUMNS]
        if sum(q for q, *_ in parts) != _number(row["total"]):
            raise InputError(f"{row['ght']}: its parts do not add up to its total",
                             why="ppe_seed_total", ght=row["ght"])  # fmt: skip
        out += [Delivery(row["ght"], item, origin, q, at) for q, item, origin, at in parts if q]
    return out


def decide_seed(tx: Tx, actor: Actor) -> list[Outcome]:
    """The deliveries and the reserve, once (a second load is refused)."""
    g = tables.ORGANISATION
    ghts = {
        name: gid
        for gid, name in tx.conn.execute(
            sa.select(g.c.id, g.c.name).where(g.c.kind == "ght", g.c.region == "OCC")
        )
    }
    ars = tx.conn.execute(sa.select(g.c.id).where(g.c.kind == "ars", g.c.region == "OCC")).scalar()
    e = tables.AUDIT_EVENT
    if tx.conn.execute(
        sa.select(e.c.id).where(e.c.stream == f"holder:{ars}", e.c.action == "reserve_in").limit(1)
    ).first():
        raise Conflict("the Occitanie seed is loaded already", why="ppe_seed_loaded")
    outcomes: list[Outcome] = []
    for d in deliveries():
        holder = ghts.get(d.ght_name)
        if holder is None:
            raise InputError(f"the directory has no {d.ght_name}", why="ppe_seed_ght",
                             ght=d.ght_name)  # fmt: skip
        data: dict[str, Any] = {
            "item": d.item, "quantity": d.quantity, "origin": d.origin, "received": d.quantity,
            "at": d.at, "source": SOURCE,
        }  # fmt: skip
        draft = Draft(actor.login, actor.role, actor.org, "ppe_delivery", None, None, 0,
                      "Livraison reçue (historique chargé)", data)  # fmt: skip
        outcomes.append(
            Outcome(
                None, ledger=(LedgerEntry(holder, draft, (Leg(d.item, "on_hand", d.quantity),)),)
            )
        )
    if ars is not None:
        data = {"item": "surgical_mask", "quantity": RESERVE, "how": "initial", "source": SOURCE,
                "at": "2020-03-24", "note": "Réserve régionale de 700 000 masques"}  # fmt: skip
        draft = Draft(actor.login, actor.role, actor.org, "reserve_in", None, None, 0,
                      "Constitution de la réserve régionale", data)  # fmt: skip
        outcomes.append(
            Outcome(
                None, ledger=(LedgerEntry(ars, draft, (Leg("surgical_mask", "on_hand", RESERVE),)),)
            )
        )
    return outcomes
