"""The PPE part of ``regul demo``: eight weeks of stock reports for the demo establishments
(a slow decline for some, so that a few fall under the threshold in the latest week and the
rule opens their cases), a few reports missing, Occitanie's deliveries of March 2020 and its
700 000-mask reserve, an outflow and a redistribution awaiting receipt."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine import tables
from engine.clock import FixedClock
from engine.values import SYSTEM
from resources.periods import PARIS, period_start, week_of
from resources.ppe.items import ITEMS
from resources.ppe.service import PpeService
from resources.ppe.stock import Movement, ReportLine, StockReport

if TYPE_CHECKING:
    from interfaces.app import App

__all__ = ["play_ppe"]

WEEKS = 8
BASE = {"surgical_mask": 3000, "ffp2_mask": 800, "gown": 600, "apron": 900, "gloves": 9000,
        "cap": 700, "goggles": 60}  # fmt: skip  # crisis weekly consumption of a mid-sized CH


def play_ppe(app: App, clock: FixedClock, seed: int = 2026) -> dict[str, Any]:
    """Play the weeks before ``clock.now()`` and come back to it; what was done."""
    rng = random.Random(seed)
    ppe = PpeService(app)
    start = clock.now()
    g = tables.ORGANISATION
    with app.db.read() as conn:
        hospitals = [r for (r,) in conn.execute(
            sa.select(g.c.id).where(g.c.kind == "hospital").order_by(g.c.id))]  # fmt: skip
    keys = [it.key for it in ITEMS]
    declining = {(h, rng.choice(keys)) for h in rng.sample(hospitals, 6)}
    silent = set(rng.sample([h for h in hospitals if h not in {d[0] for d in declining}], 5))
    sizes = {h: rng.choice((0.5, 1, 1, 2, 4)) for h in hospitals}
    current = week_of(start)
    weeks = [week_of(start - timedelta(weeks=k)) for k in range(WEEKS - 1, -1, -1)]
    for k, week in enumerate(weeks):
        monday = datetime.combine(period_start(week), time(10, 0), tzinfo=PARIS)
        clock.set(min(monday, start) if week != current else start)
        reports = []
        for h in hospitals:
            if week == current and h in silent:
                continue
            lines = []
            for it in ITEMS:
                crisis = int(BASE[it.key] * sizes[h])
                weeks_left = 6.0 - (4.6 * k / (WEEKS - 1) if (h, it.key) in declining else 0)
                weeks_left += rng.uniform(-0.4, 0.4)
                lines.append(ReportLine(
                    it.key, max(0, int(crisis * weeks_left)), int(crisis * rng.uniform(0.4, 0.9)),
                    crisis if k == 0 else None,
                ))  # fmt: skip
            reports.append(StockReport(h, week, tuple(lines), "Direction de l'établissement"))
        ppe.reports(SYSTEM, reports)
    clock.set(start)
    app.resources.sweep_obligations()  # this week's rows: the silent ones are reminded
    ppe.load_seed004()
    # Occitanie keeps its ledgers in Régul: what its GHTs and its ARS ship is debited there
    with app.db.read() as conn:
        query = sa.select(g.c.id).where(g.c.kind == "ght", g.c.region == "OCC").order_by(g.c.id)
        ghts = [r for (r,) in conn.execute(query)]
    for it in ITEMS:
        if it.key != "surgical_mask":  # its masks are the 700 000 of the reserve (seed 004)
            ppe.move(SYSTEM, Movement("in", "ARS-OCC", it.key, 300_000, how="purchase"))
        for ght in ghts:
            ppe.move(SYSTEM, Movement("in", ght, it.key, 60_000, how="purchase"))
    ppe.move(SYSTEM, Movement("out", "ARS-OCC", "surgical_mask", 20_000, how="ehpad_doctrine",
                              to="119900005", note="Changement de doctrine en EHPAD"))  # fmt: skip
    ppe.move(SYSTEM, Movement("redistribute", "GHT-OCC-06", "surgical_mask_loops", 15_000,
                              to="319900002"))  # fmt: skip
    with app.db.read() as conn:
        opened = conn.execute(sa.text(
            "SELECT count(*) FROM regul_case WHERE kind = 'ppe' AND opened_by = 'system'"
        )).scalar_one()  # fmt: skip
    return {"weeks": len(weeks), "establishments": len(hospitals), "missing": len(silent),
            "cases_opened": int(opened)}  # fmt: skip
