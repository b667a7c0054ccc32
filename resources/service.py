"""The resources service the interfaces call: commands on holders, reads, the obligation sweep.

Each command reads ``now`` once and runs in one transaction of the case engine's unit of work
(``UnitOfWork.run``): the actor is read in it, the decision (a resource module's, pure but for
the balances it reads locked through ``Tx.balances``) gives one or more ``Outcome``s, and
``Tx.apply`` writes them. Resource modules (``resources.ecmo``, ``resources.ppe``,
``resources.beds``) add their own commands on top of ``command``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from engine import tables
from engine.clock import Clock
from engine.db import Database
from engine.errors import RegulError
from engine.unit_of_work import Tx, UnitOfWork
from engine.values import Actor, Outcome
from resources.obligations import ObligationKind, plan, swept

__all__ = ["Missing", "Resources", "SweptObligation"]

T = TypeVar("T")
log = logging.getLogger("regul.resources")
_OBLIGATION = tables.OBLIGATION
_ORG = tables.ORGANISATION


@dataclass(frozen=True)
class SweptObligation:
    kind: str
    holder: str
    period: str
    outcome: str  # reminded | escalated


@dataclass(frozen=True)
class Missing:
    """A report due and not received: who, which period, since when, reminded or escalated."""

    kind: str
    holder: str
    name: str
    region: str | None
    period: str
    due_at: datetime
    status: str  # open (reminded or not yet) | late (escalated to the ARS)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "due_at": self.due_at.isoformat()}


@dataclass
class Resources:
    """Commands and reads on holders' resources, and the sweep of their obligations."""

    db: Database
    clock: Clock
    uow: UnitOfWork
    kinds: dict[str, ObligationKind] = field(default_factory=dict)

    def command(
        self, login: str | Actor, decide: Callable[[Tx, Actor], Outcome | Sequence[Outcome]]
    ) -> list[Outcome]:
        """One command: the actor read in the transaction, decided, applied; a refusal is
        committed with its audit record, then raised."""
        now = self.clock.now()

        def work(tx: Tx) -> list[Outcome]:
            actor = login if isinstance(login, Actor) else tx.actor(login)
            decided = decide(tx, actor)
            outcomes = [decided] if isinstance(decided, Outcome) else list(decided)
            for outcome in outcomes:
                tx.apply(outcome)
            return outcomes

        outcomes = self.uow.run(now, work)
        for outcome in outcomes:
            if outcome.refusal is not None:
                raise outcome.refusal
        return outcomes

    def read(self, work: Callable[[Any], T]) -> T:
        with self.db.read() as conn:
            return work(conn)

    # -- obligations ------------------------------------------------------------------------

    def sweep_obligations(self, *, batch_size: int = 200) -> list[SweptObligation]:
        """Plan the current periods' rows, then remind or escalate every due one (batches)."""
        done: list[SweptObligation] = []
        if not self.kinds:
            return done
        now = self.clock.now()

        def planning(tx: Tx) -> None:
            for kind in self.kinds.values():
                holders = list(kind.holders(tx.conn))
                if holders:
                    tx.apply(plan(kind, holders, now))

        self.uow.run(now, planning)
        while True:
            handled = self._batch(batch_size, done)
            if handled < batch_size:
                return done

    def _batch(self, size: int, done: list[SweptObligation]) -> int:
        claimed = 0

        def work(tx: Tx) -> None:
            nonlocal claimed
            rows = tx.claim_obligations(size)
            claimed = len(rows)
            for row in rows:
                kind = self.kinds.get(row.kind)
                if kind is None:  # a kind no longer configured: left for an operator
                    continue
                tx.now = self.clock.now()
                queued = len(tx.pending)
                try:
                    with tx.conn.begin_nested():
                        outcome = swept(row, kind, tx.now)
                        tx.apply(outcome)
                except RegulError as exc:
                    del tx.pending[queued:]
                    log.error("obligation %s of %s failed: %s", row.id, row.holder, exc)
                    continue
                step = "escalated" if outcome.touched[0].escalated else "reminded"
                done.append(SweptObligation(row.kind, row.holder, row.period, step))

        self.uow.run(self.clock.now(), work)
        return claimed

    def missing(
        self,
        kind: str,
        *,
        period: str | None = None,
        region: str | None = None,
        holders: Iterable[str] | None = None,
    ) -> list[Missing]:
        """Reports due and not received (open past their due time, or escalated)."""
        now = self.clock.now()
        o, g = _OBLIGATION, _ORG
        query = (
            sa.select(
                o.c.kind, o.c.holder, g.c.name, g.c.region, o.c.period, o.c.due_at, o.c.status
            )
            .join(g, g.c.id == o.c.holder)
            .where(o.c.kind == kind, o.c.status != "met", o.c.due_at <= now)
            .order_by(g.c.region, g.c.name, o.c.period)
        )
        if period is not None:
            query = query.where(o.c.period == period)
        if region is not None:
            query = query.where(g.c.region == region)
        if holders is not None:
            query = query.where(o.c.holder.in_(list(holders)))
        with self.db.read() as conn:
            return [Missing(*row) for row in conn.execute(query)]
