"""What a transfer's transitions do to the bed ledger (``resources.catalogue.EFFECTS``).

- **resolve** (a proposal to a receiving establishment): the establishment must hold an
  available bed of the case's category, else the resolver gives ``bed_override_reason``, which
  is recorded in the receiving establishment's stream (``bed_override``). An EVASAN mission id
  (``evasan_mission``) is the national level's only.
- **accept** (the receiving establishment takes the patient): the bed moves from ``available``
  to ``reserved`` in the same transaction, the balance read locked (``Tx.balances``): of two
  acceptances racing for the last bed, one wins, the other is refused (``not_enough``) and
  nothing of it is written. A proposal made over a missing bed (override) is accepted without a
  reservation, recorded. Where the workflow has no proposal step, resolve reserves.
- **transferred**: the reserved bed becomes occupied (Covid or not, as the case says).

A category the ledger does not track (SSR, non-Covid medicine) is not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from engine import tables
from engine.errors import Conflict, InputError
from engine.unit_of_work import Tx
from engine.values import CaseView, Draft, LedgerEntry, Outcome
from resources import ledger
from resources.beds.core import item_of

__all__ = ["bed_of", "transfer_effects"]

_MOVEMENT = tables.MOVEMENT


def bed_of(fields: Mapping[str, Any]) -> str | None:
    """The ledger's category for a transfer's ``bed_category`` (None: not tracked)."""
    category = fields.get("bed_category")
    if category in ("reanimation", "surveillance_continue"):
        return str(category)
    if category == "medecine" and fields.get("covid") in (True, "yes", "true"):
        return "medecine_covid"
    return None


def _draft(event: Draft, action: str, data: dict[str, Any]) -> Draft:
    return Draft(event.actor, event.role, event.org, action, None, None, 0, "", data)


def _free(tx: Tx, holder: str, category: str) -> int:
    balances = tx.balances([holder], [item_of(category)])
    return balances.get((holder, item_of(category), "available"), 0)


def _reserve(event: Draft, holder: str, category: str, case: CaseView) -> LedgerEntry:
    legs = ledger.move(item_of(category), "available", "reserved", 1)
    data = {"category": category, "case": case.reference}
    return LedgerEntry(holder, _draft(event, "bed_reserved", data), legs)


def _reserved_for(tx: Tx, case: CaseView, holder: str, category: str) -> int:
    m = _MOVEMENT
    return int(
        tx.conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(m.c.delta), 0)).where(
                m.c.case_id == case.id,
                m.c.holder == holder,
                m.c.item == item_of(category),
                m.c.bucket == "reserved",
            )
        ).scalar_one()
    )


def _on_resolve(
    tx: Tx, event: Draft, before: CaseView, after: CaseView, receiving: str, category: str | None
) -> list[LedgerEntry]:
    resolved = after.fields.get("resolve") or {}
    if resolved.get("evasan_mission") and before.state != "national_regulation":
        raise InputError(
            "an EVASAN mission is organised by the national level (CCS) only",
            why="mission_national_only", state=before.state,
        )  # fmt: skip
    if category is None:
        return []
    free = _free(tx, receiving, category)
    override = str(resolved.get("bed_override_reason") or "").strip()
    if free < 1 and not override:
        raise Conflict(
            f"{receiving} declares no available {category} bed: choose an establishment "
            "with one (candidates) or give bed_override_reason",
            why="no_bed_available", org=receiving, category=category,
        )  # fmt: skip
    if free < 1:
        data = {"category": category, "case": after.reference, "reason": override}
        return [LedgerEntry(receiving, _draft(event, "bed_override", data))]
    if after.state == "dispatched":  # a workflow without the proposal step
        return [_reserve(event, receiving, category, after)]
    return []


def _on_accept(
    tx: Tx, event: Draft, after: CaseView, receiving: str, category: str
) -> list[LedgerEntry]:
    free = _free(tx, receiving, category)
    resolved = after.fields.get("resolve") or {}
    if free < 1 and resolved.get("bed_override_reason"):
        data = {"category": category, "case": after.reference}
        return [LedgerEntry(receiving, _draft(event, "accepted_without_bed", data))]
    item = item_of(category)
    ledger.require({(receiving, item, "available"): free}, receiving, item, "available", 1,
                   what=f"accepting {after.reference}")  # fmt: skip
    return [_reserve(event, receiving, category, after)]


def _on_transferred(
    tx: Tx, event: Draft, before: CaseView, after: CaseView, receiving: str, category: str
) -> list[LedgerEntry]:
    if _reserved_for(tx, before, receiving, category) < 1:
        return []
    covid = after.fields.get("covid") in (True, "yes", "true")
    bucket = "occupied_covid" if covid else "occupied_other"
    legs = ledger.move(item_of(category), "reserved", bucket, 1)
    data = {"category": category, "case": after.reference}
    return [LedgerEntry(receiving, _draft(event, "bed_occupied", data), legs)]


def transfer_effects(tx: Tx, before: CaseView, outcome: Outcome) -> Outcome:
    if not outcome.events or outcome.case is None:
        return outcome
    event = outcome.events[0]
    trigger = (event.data or {}).get("trigger")
    after = outcome.case
    receiving = (after.fields.get("resolve") or {}).get("receiving_hospital")
    category = bed_of(after.fields)
    entries: list[LedgerEntry] = []
    if not receiving:
        return outcome
    if trigger == "resolve":
        entries = _on_resolve(tx, event, before, after, str(receiving), category)
    elif trigger == "accept" and category is not None:
        entries = _on_accept(tx, event, after, str(receiving), category)
    elif trigger == "transferred" and category is not None:
        entries = _on_transferred(tx, event, before, after, str(receiving), category)
    if not entries:
        return outcome
    return replace(outcome, ledger=(*outcome.ledger, *entries))
