"""Pure helpers of the ledgers: legs of the usual movements, and a holder stream's replay.

A movement is one event in a holder's stream with its legs ``(item, bucket, delta)``; the
balances are their sums, kept in ``stock_balance`` in the same transaction. ``replay`` sums the
legs recorded in a holder's chain: it must give the stored balances (the auditor's check).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import tables
from engine.audit import HOLDER_STREAM
from engine.errors import Conflict
from engine.values import Leg

__all__ = ["move", "replay", "require", "stream_of", "take"]

_EVENT = tables.AUDIT_EVENT
_BALANCE = tables.STOCK_BALANCE


def stream_of(holder: str) -> str:
    return f"{HOLDER_STREAM}{holder}"


def move(item: str, source: str, dest: str, quantity: int) -> tuple[Leg, Leg]:
    """``quantity`` of ``item`` from bucket ``source`` to bucket ``dest`` of one holder."""
    return (Leg(item, source, -quantity), Leg(item, dest, quantity))


def take(item: str, bucket: str, quantity: int) -> Leg:
    return Leg(item, bucket, -quantity)


def require(
    balances: Mapping[tuple[str, str, str], int],
    holder: str,
    item: str,
    bucket: str,
    quantity: int,
    *,
    what: str,
) -> None:
    """Refuse (``Conflict``, why ``not_enough``) when ``holder`` has less than ``quantity``."""
    have = balances.get((holder, item, bucket), 0)
    if quantity > have:
        raise Conflict(
            f"{what}: {holder} has {have} {item} {bucket}, {quantity} asked: "
            "choose a smaller quantity or another holder",
            why="not_enough", holder=holder, item=item, bucket=bucket, have=have,
            asked=quantity,
        )  # fmt: skip


def sums(legs: Iterable[Iterable[Any]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for item, bucket, delta in legs:
        key = (str(item), str(bucket))
        out[key] = out.get(key, 0) + int(delta)
    return out


def replay(
    conn: Connection, holder: str
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """(the balances the holder's chain gives, the stored balances), zero entries left out."""
    rows = conn.execute(
        sa.select(_EVENT.c.data).where(_EVENT.c.stream == stream_of(holder)).order_by(_EVENT.c.seq)
    )
    legs: list[Any] = []
    for (data,) in rows:
        legs.extend((data or {}).get("legs", ()))
    replayed = {k: v for k, v in sums(legs).items() if v}
    stored = {
        (r.item, r.bucket): int(r.quantity)
        for r in conn.execute(sa.select(_BALANCE).where(_BALANCE.c.holder == holder))
        if r.quantity
    }
    return replayed, stored
