"""What the interfaces call for PPE stocks: reports (one, many, a file), movements, reads.

``PpeService(app)`` uses the app's resources service (one transaction per command, the
outcomes applied by the unit of work) and the case service's decider (a case opened by an
alert rule is decided as any opening is).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine import tables
from engine.values import Actor, Outcome
from resources.ppe import stock
from resources.ppe.items import ITEMS, LEDGER_ITEMS, parent
from resources.ppe.rules import RuleBook, load_rules

if TYPE_CHECKING:
    from engine.unit_of_work import Tx
    from interfaces.app import App

__all__ = ["CoverRow", "PpeService"]

_ORG = tables.ORGANISATION
_BALANCE = tables.STOCK_BALANCE
_EVENT = tables.AUDIT_EVENT


@dataclass(frozen=True)
class CoverRow:
    establishment: str
    name: str
    region: str | None
    week: str
    item: str
    on_hand: int
    crisis: int | None
    weeks: float | None
    estimated: bool
    level: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PpeService:
    def __init__(self, app: App) -> None:
        self.app = app
        self.rules: RuleBook = load_rules(app.settings.ppe_alert_rules)

    # -- commands --------------------------------------------------------------------------

    def report(self, login: str | Actor, raw: Mapping[str, Any]) -> list[Outcome]:
        """One weekly report (parsed and checked before the transaction)."""
        return self.reports(login, [stock.parse_report(raw)])

    def reports(self, login: str | Actor, reports: Sequence[stock.StockReport]) -> list[Outcome]:
        """Several reports in one transaction: all written, or none."""
        decider = self.app.runner.decider  # the geography read before the transaction

        def decide(tx: Tx, actor: Actor) -> list[Outcome]:
            return stock.decide_reports(tx, actor, reports, decider=decider, rules=self.rules)

        return self.app.resources.command(login, decide)

    def import_file(self, login: str | Actor, name: str, content: bytes) -> list[Outcome]:
        """A CSV or XLSX file of reports: every line checked first (a French list of the
        wrong lines, nothing written), then one transaction."""
        from resources.ppe.files import read_reports

        def known(holders: set[str]) -> set[str]:
            with self.app.db.read() as conn:
                return set(stock.places(conn, sorted(holders)))

        return self.reports(login, read_reports(name, content, known))

    def move(self, login: str | Actor, movement: stock.Movement) -> list[Outcome]:
        return self.app.resources.command(
            login, lambda tx, actor: stock.decide_movement(tx, actor, movement)
        )

    # -- reads -----------------------------------------------------------------------------

    def cover(
        self, *, region: str | None = None, below: float | None = None,
        holders: Sequence[str] | None = None,
    ) -> list[CoverRow]:  # fmt: skip
        """Weeks of cover per establishment and item, from each one's latest report."""
        with self.app.db.read() as conn:
            g = _ORG
            query = sa.select(g.c.id, g.c.name, g.c.region).where(g.c.kind == "hospital")
            if region:
                query = query.where(g.c.region == region)
            if holders is not None:
                query = query.where(g.c.id.in_(list(holders)))
            orgs = {r.id: r for r in conn.execute(query)}
            latest = stock.earlier_reports(conn, list(orgs))
        rows: list[CoverRow] = []
        for holder, weeks in sorted(latest.items(), key=lambda kv: (orgs[kv[0]].region or "",
                                                                    orgs[kv[0]].name)):  # fmt: skip
            period, figures = weeks[0]
            org = orgs[holder]
            for it in ITEMS:
                line = (figures.get("lines") or {}).get(it.key)
                if not line:
                    continue
                w = line.get("weeks")
                if below is not None and (w is None or w >= below):
                    continue
                rows.append(CoverRow(
                    holder, org.name, org.region, period, it.key, int(line["on_hand"]),
                    line.get("crisis"), w, line.get("crisis_source") == "estimated",
                    str(line.get("level") or "ok"),
                ))  # fmt: skip
        return rows

    def balances(self, kind: str, *, region: str | None = None) -> list[dict[str, Any]]:
        """The balances of holders of ``kind`` (ars, ght, spf) per item and bucket."""
        with self.app.db.read() as conn:
            g, b = _ORG, _BALANCE
            query = (
                sa.select(g.c.id, g.c.name, g.c.region, b.c.item, b.c.bucket, b.c.quantity)
                .join(b, b.c.holder == g.c.id)
                .where(g.c.kind == kind)
                .order_by(g.c.id, b.c.item, b.c.bucket)
            )
            if region:
                query = query.where(g.c.region == region)
            return [
                {"holder": r.id, "name": r.name, "region": r.region, "item": r.item,
                 "label": LEDGER_ITEMS[r.item].label if r.item in LEDGER_ITEMS else r.item,
                 "bucket": r.bucket, "quantity": int(r.quantity)}
                for r in conn.execute(query)
            ]  # fmt: skip

    def movements(
        self, holders: Sequence[str], actions: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The holders' PPE events (newest first) with their data."""
        from resources.ledger import stream_of

        with self.app.db.read() as conn:
            e = _EVENT
            query = (
                sa.select(e.c.stream, e.c.seq, e.c.at, e.c.actor, e.c.action, e.c.data)
                .where(e.c.stream.in_([stream_of(h) for h in holders]))
                .order_by(e.c.id.desc())
            )
            if actions:
                query = query.where(e.c.action.in_(list(actions)))
            out = []
            for r in conn.execute(query):
                data = json.loads(r.data) if isinstance(r.data, str) else (r.data or {})
                out.append({"holder": r.stream.split(":", 1)[1], "seq": r.seq,
                            "at": r.at.isoformat() if hasattr(r.at, "isoformat") else str(r.at),
                            "actor": r.actor, "action": r.action, **data})  # fmt: skip
            return out

    def holders(self, kind: str, *, region: str | None = None) -> list[str]:
        with self.app.db.read() as conn:
            g = _ORG
            query = sa.select(g.c.id).where(g.c.kind == kind).order_by(g.c.id)
            if region:
                query = query.where(g.c.region == region)
            return [h for (h,) in conn.execute(query)]

    def reserve(self, *, region: str | None = None) -> dict[str, Any]:
        """The ARS reserves (balances and movements) and SpF's national stock."""
        ars = self.holders("ars", region=region)
        spf = self.holders("spf") if region is None else []
        national = {}
        with self.app.db.read() as conn:
            for holder in spf:
                for key in stock.NATIONAL_ITEMS:
                    national[key] = stock.national_weeks(conn, key, holder)
        return {
            "reserves": self.balances("ars", region=region),
            "movements": self.movements(ars, ("reserve_in", "reserve_out", "ppe_shipment")),
            "national": self.balances("spf") if region is None else [],
            "national_weeks": national,
            "national_target_weeks": stock.NATIONAL_TARGET_WEEKS,
        }

    def deliveries(self, *, region: str | None = None) -> dict[str, Any]:
        """The GHTs' deliveries (with their origin) and what awaits receipt."""
        ghts = self.holders("ght", region=region)
        hospitals = self.holders("hospital", region=region)
        with self.app.db.read() as conn:
            pending = stock.pending_deliveries(conn, [*ghts, *hospitals])
        delivered = self.movements(ghts, ("ppe_delivery",))
        totals: dict[str, int] = {}
        for d in delivered:
            totals[d["item"]] = totals.get(d["item"], 0) + int(d["quantity"])
        for d in pending:
            d["at"] = d["at"].isoformat() if hasattr(d["at"], "isoformat") else str(d["at"])
        return {"deliveries": delivered, "totals": totals, "awaiting_receipt": pending,
                "masks": sum(q for k, q in totals.items()
                             if parent(k) in ("surgical_mask", "ffp2_mask"))}  # fmt: skip

    def missing(self, *, region: str | None = None, period: str | None = None) -> list[Any]:
        return self.app.resources.missing(stock.KIND, region=region, period=period)

    def load_seed004(self, login: str | Actor = "system") -> list[Outcome]:
        """Occitanie's deliveries of 20-21 March 2020 and its 700 000-mask reserve (once)."""
        from engine.values import SYSTEM
        from resources.ppe.seed004 import decide_seed

        return self.app.resources.command(SYSTEM if login == "system" else login, decide_seed)

    def members(self, ght: str) -> list[str]:
        """The establishments a GHT serves (seed 004 l.74: « toutes les structures qu'il doit
        desservir »)."""
        with self.app.db.read() as conn:
            g = _ORG
            return [h for (h,) in conn.execute(
                sa.select(g.c.id).where(g.c.ght == ght, g.c.kind == "hospital").order_by(g.c.id)
            )]  # fmt: skip
