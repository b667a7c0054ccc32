"""The beds service the interfaces call (``App.beds``): commands on establishments' capacity,
one transaction each through ``Resources.command``, and the reads of the bed ledger."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.actors import load_actor
from engine.errors import InputError
from engine.unit_of_work import Tx
from engine.values import Actor, Outcome
from resources.beds import core, reads
from resources.service import Resources

__all__ = ["Beds", "CapacityLine"]


@dataclass(frozen=True)
class CapacityLine:
    """One establishment's report: the figures per category, its tier and plan blanc."""

    holder: str
    figures: Mapping[str, Mapping[str, Any]]
    tier: int | None = None
    plan_blanc: int | None = None


@dataclass
class Beds:
    resources: Resources
    threshold: float = 0.9

    # -- commands -------------------------------------------------------------------------

    def report(
        self,
        login: str | Actor,
        *,
        holder: str,
        figures: Mapping[str, Mapping[str, Any]],
        tier: int | None = None,
        plan_blanc: int | None = None,
        reason: str = "",
    ) -> list[Outcome]:
        parsed = core.parse_figures(figures)

        def decide(tx: Tx, actor: Actor) -> Outcome:
            return core.capacity_outcome(
                tx, actor, holder=holder, figures=parsed, tier=tier, plan_blanc=plan_blanc,
                threshold=self.threshold, reason=reason,
            )  # fmt: skip

        return self.resources.command(login, decide)

    def report_many(self, login: str | Actor, lines: Sequence[CapacityLine]) -> list[Outcome]:
        """Several establishments' reports (a file import) in one transaction: all or none."""
        parsed = [(line, core.parse_figures(line.figures)) for line in lines]

        def decide(tx: Tx, actor: Actor) -> list[Outcome]:
            for line, figures in parsed:
                outcome = core.capacity_outcome(
                    tx, actor, holder=line.holder, figures=figures, tier=line.tier,
                    plan_blanc=line.plan_blanc, threshold=self.threshold,
                )  # fmt: skip
                tx.apply(outcome)  # the next line's reads see this one's balances (a region)
            return []

        return self.resources.command(login, decide)

    def plan(
        self, login: str | Actor, *, holder: str, tiers: Mapping[str, Mapping[str, Any]]
    ) -> list[Outcome]:
        return self.resources.command(
            login, lambda tx, actor: core.plan_outcome(tx, actor, holder=holder, tiers=tiers)
        )

    def target(
        self, login: str | Actor, *, region: str, targets: Mapping[str, Any], reason: str = ""
    ) -> list[Outcome]:
        return self.resources.command(
            login,
            lambda tx, actor: core.target_outcome(
                tx, actor, region=region, targets=targets, reason=reason
            ),
        )

    def deprogram(
        self,
        login: str | Actor,
        *,
        holder: str,
        tier: int,
        activities: Sequence[Mapping[str, Any]],
        cell: Sequence[str],
        benefit_risk: str,
        safeguarded: Sequence[str],
    ) -> list[Outcome]:
        return self.resources.command(
            login,
            lambda tx, actor: core.deprogram_outcome(
                tx,
                actor,
                holder=holder,
                tier=tier,
                activities=activities,
                cell=cell,
                benefit_risk=benefit_risk,
                safeguarded=safeguarded,
            ),
        )

    def reverse(
        self, login: str | Actor, *, holder: str, decision: int, reason: str
    ) -> list[Outcome]:
        return self.resources.command(
            login,
            lambda tx, actor: core.reverse_outcome(
                tx, actor, holder=holder, decision=decision, reason=reason
            ),
        )

    # -- reads ----------------------------------------------------------------------------

    def _actor(self, conn: Any, login: str | Actor | None) -> Actor | None:
        if login is None or isinstance(login, Actor):
            return login
        return load_actor(conn, login)

    def statuses(
        self, login: str | Actor | None = None, *, region: str | None = None
    ) -> list[reads.Status]:
        def work(conn: Any) -> list[reads.Status]:
            actor = self._actor(conn, login)
            return reads.statuses(conn, scope=reads.scope_of(actor), region=region)

        return self.resources.read(work)

    def candidates(
        self,
        login: str | Actor | None,
        *,
        category: str,
        origin: str | None = None,
        means: str | None = None,
        limit: int = 50,
    ) -> list[reads.Candidate]:
        if category not in core.CATEGORIES:
            raise InputError(
                f"unknown bed category {category}; categories: {', '.join(core.CATEGORIES)}",
                why="bad_bed_category", category=category,
            )  # fmt: skip

        def work(conn: Any) -> list[reads.Candidate]:
            actor = self._actor(conn, login)
            return reads.candidates(conn, category=category, scope=reads.scope_of(actor),
                                    origin=origin, means=means, limit=limit)  # fmt: skip

        return self.resources.read(work)

    def feed(self, login: str | Actor | None = None) -> list[reads.FeedItem]:
        def work(conn: Any) -> list[reads.FeedItem]:
            return reads.deprogramming_feed(conn, scope=reads.scope_of(self._actor(conn, login)))

        return self.resources.read(work)

    def transfers(self, login: str | Actor | None = None) -> list[reads.TransferRow]:
        def work(conn: Any) -> list[reads.TransferRow]:
            return reads.transfers(conn, scope=reads.scope_of(self._actor(conn, login)))

        return self.resources.read(work)

    def missions(self) -> dict[str, list[reads.TransferRow]]:
        return self.resources.read(reads.missions)
