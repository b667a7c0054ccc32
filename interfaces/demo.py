"""``regul demo``: a fresh embedded database on which the demo regulators play their ladders.

Cases of each workflow are opened by demo hospitals (half in Occitanie) and played on a
simulated clock over the last six hours (a day and a half earlier for the cases to be solved,
so that their loans and shipments can come back and close) that never passes the present: a
step that would fall after it has not happened yet, and the case waits there. Some are solved
at each level of the ladder, some cancelled or rejected, some left waiting with their deadline
running (a few already overdue), and a few attempts are refused or stale, as in real life.
Last, the hospitals of the demo accounts printed by ``regul serve --demo`` (Toulouse, Brest)
get one fresh case waiting at each level of their ladders, so that every account has something
to do. The dispatcher runs until the outbox is empty (every notice delivered). Then the audit
log is verified and every case replayed.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from engine import audit, tables
from engine.cases import CaseView
from engine.clock import FixedClock, SystemClock
from engine.db import Database
from engine.errors import Conflict, NotFound, NotPermitted
from engine.runner import Runner
from engine.sweeper import sweep
from engine.workflow import WorkflowSpec
from interfaces.app import build_app
from notifications.channels import EmlChannel
from notifications.dispatcher import dispatch
from resources import ecmo_demo
from resources.beds import demo as beds_demo
from workflows import default_registry
from workflows.directory import load_directory

__all__ = ["WAITING_HOSPITALS", "DemoSummary", "run_demo"]

_ORG = tables.ORGANISATION
_USER = tables.USER
_AUDIT = tables.AUDIT_EVENT
_NOTICE = tables.NOTICE


@dataclass
class DemoSummary:
    database: str
    states: dict[str, Counter[str]] = field(default_factory=dict)
    transitions: int = 0
    refusals: int = 0
    conflicts: int = 0
    swept: dict[str, int] = field(default_factory=dict)
    notices: int = 0
    outbox: str = ""
    events: int = 0
    audit_ok: bool = False
    replay_ok: bool = False
    seconds: float = 0.0
    ppe: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "cases": {kind: dict(counts) for kind, counts in self.states.items()},
            "transitions": self.transitions,
            "refusals": self.refusals,
            "conflicts": self.conflicts,
            "sweep": self.swept,
            "notices_sent": self.notices,
            "outbox": self.outbox,
            "audit_events": self.events,
            "audit_verified": self.audit_ok,
            "replay_matches": self.replay_ok,
            "seconds": round(self.seconds, 2),
            "ppe": self.ppe,
        }

    def _swept(self) -> str:
        return ", ".join(f"{n} {what}" for what, n in sorted(self.swept.items())) or "nothing due"

    def print(self, console: Console) -> None:
        kinds = list(self.states)
        order = [s.name for spec in default_registry() for s in spec.states]
        states = sorted({s for c in self.states.values() for s in c}, key=order.index)
        out = Table(title=f"Régul demo — cases by state ({self.database})", title_justify="left")
        out.add_column("state")
        for kind in kinds:
            out.add_column(kind, justify="right")
        for state in states:
            out.add_row(state, *(str(self.states[k].get(state, "")) for k in kinds))
        out.add_row("total", *(str(sum(self.states[k].values())) for k in kinds), style="bold")
        console.print(out)
        verdict = "[green]verified[/]" if self.audit_ok else "[red]BROKEN[/]"
        console.print(
            f"{self.transitions} transitions, {self.refusals} refused attempts (audited), "
            f"{self.conflicts} stale clicks turned away; "
            f"the deadline sweep at the end: {self._swept()}; "
            f"{self.notices} MARS/MINSANTE notices written to {self.outbox}/; "
            f"audit log: {self.events} events {verdict}; "
            f"replay {'matches' if self.replay_ok else 'DIFFERS'}; {self.seconds:.1f} s",
            highlight=False,
        )
        if self.ppe:
            console.print(
                f"PPE stocks: {self.ppe['weeks']} weeks of reports from "
                f"{self.ppe['establishments']} establishments ({self.ppe['missing']} missing "
                f"this week), {self.ppe['cases_opened']} cases opened by the alert rule; "
                "regul ppe cover --below 3, regul ppe deliveries --region OCC",
                highlight=False,
            )
        console.print(
            f"Explore it: export REGUL_DATABASE_URL=sqlite:///{self.database}; "
            "regul case list --open",
            highlight=False,
        )


class _Cast:
    """The demo users, found in the directory by role and organisation."""

    def __init__(self, db: Database) -> None:
        with db.read() as conn:
            users = conn.execute(sa.select(_USER.c.login, _USER.c.role, _USER.c.org)).all()
            # the hospitals of a GHT: the PPE ladder's GHT step has someone to act (an
            # establishment without a GHT, AP-HP, or an EHPAD plays no part in the demo yet)
            self.hospitals = conn.execute(
                sa.select(_ORG)
                .where(
                    _ORG.c.kind == "hospital",
                    _ORG.c.ght.is_not(None),
                    sa.or_(_ORG.c.category.is_(None), _ORG.c.category == "sanitaire"),
                )
                .order_by(_ORG.c.id)
            ).all()
        self.by_org = {(u.role, u.org): u.login for u in users}
        self.fleet: Any = None  # the ECMO fleet (resources.ecmo_demo), set by run_demo
        # a receiving establishment with a free bed (set by run_demo: resources.beds.demo)
        self.free_bed: Callable[[CaseView, str, random.Random], str | None] | None = None

    def who(self, role: str, case: CaseView) -> str:
        org = {
            "establishment": case.org,
            "ght": case.ght,
            "umac": f"UMAC-{case.zone}",
            "ars": f"ARS-{case.region}",
            "ars_zone": f"ARSZ-{case.zone}",
            "ccs": "CCS",
            "spf": "SPF",
        }[role]
        return str(self.by_org[(role, org or "")])


def _open_fields(kind: str, rng: random.Random, n: int) -> dict[str, object]:
    if kind == "ppe":
        items = rng.sample(("ffp2_mask", "surgical_mask", "gown", "gloves"), rng.randrange(1, 3))
        return {
            "lines": [
                {
                    "item": item,
                    "quantity": rng.choice((2000, 5000, 12000)),
                    "stock_on_hand": rng.choice((0, 400, 1500)),
                    "weekly_consumption": rng.choice((1000, 3000, 8000)),
                }
                for item in items
            ],
            "delivery_address": "Pharmacie à usage intérieur, quai de livraison",
            "summary": "stock < 3 semaines",
        }
    ref = f"PAT-{rng.randrange(10**6):06d}"  # a pseudonym has digits (never a name)
    covid = rng.random() < 0.5
    if kind == "ecmo":
        return {
            "patient_ref": ref,
            "mode": rng.choice(("VV", "VA")),
            "covid": covid,
            "consoles_needed": 1,
            "circuits_needed": rng.choice((1, 2)),
            "local_options": "aucune console disponible dans l'établissement",
            "time_to_rupture": rng.choice(("6h", "12h", "1d")),
            "summary": f"SDRA sévère, lit {n}",
        }
    fields: dict[str, object] = {
        "patient_ref": ref,
        "covid": covid,
        "bed_category": rng.choice(("reanimation", "surveillance_continue")),
    }
    if not covid:
        fields["loss_of_chance"] = "déprogrammation d'une chirurgie carcinologique"
        fields["protected_category"] = "cancer"
    return fields


_PPE_SOURCE = {"ght": "ght", "ars": "region", "spf": "national"}


def _resolve_fields(
    kind: str, today: date, rng: random.Random, cast: _Cast, case: CaseView, level: str
) -> dict[str, object]:
    if kind == "ecmo":  # a real console: the national stock (the CCS's), else another centre's
        from resources.ecmo_demo import resolve_fields

        national = case.state == "national_regulation"
        back = today + timedelta(days=21)
        return resolve_fields(cast.fleet, case, back, national=national, level=level, rng=rng)
    if kind == "ppe":
        return {
            "quantity": 5000,
            "source": _PPE_SOURCE.get(level, "region"),
            "expected_delivery": str(today + timedelta(days=2)),
        }
    # a bed inside the resolver's scope: the region (ARS), the zone (ARS de zone), anywhere
    where = {"ars": "region", "ars_zone": "zone"}.get(level)
    beds = [
        h
        for h in cast.hospitals
        if h.id != case.org and (where is None or getattr(h, where) == getattr(case, where))
    ]
    target = rng.choice(beds or cast.hospitals)
    # where the beds are (issue 13): an establishment with a free bed in the resolver's scope,
    # else one without, the override's reason recorded
    free = cast.free_bed(case, cast.who(level, case), rng) if cast.free_bed else None
    target = next((h for h in cast.hospitals if h.id == free), target)
    by_land = target.region == case.region or not ({target.region, case.region} & _ISLANDS)
    fields: dict[str, object] = {
        "receiving_hospital": target.id,
        "means": rng.choice(("road", "air", "rail") if by_land else ("air", "sea")),
        "date": str(today),
    }
    if free is None:
        fields["bed_override_reason"] = (
            "accord direct du réanimateur de garde, lit en cours de libération"
        )
    return fields


_ISLANDS = frozenset({"GUA", "MTQ", "GUF", "REU", "MYT", "COR"})  # the demo's own region codes


# Cases left at each rung for the hospitals of the printed demo accounts (``regul serve
# --demo``), so that every account opens a desk with something waiting for it: (kind, state).
WAITING_HOSPITALS = ("319900001", "299900001")  # CHU de Toulouse (Occitanie), CHU de Brest
_WAITING_REGIONAL = (
    ("ecmo", "requested"),  # the hospital itself (kept only where it confirms its requests)
    ("ppe", "ght_review"),
    ("ecmo", "umac_review"),
    ("ecmo", "ars_regulation"),
    ("transfer", "zone_regulation"),
)
_WAITING_NATIONAL = (("ecmo", "national_regulation"), ("ppe", "national_review"))  # CCS, SpF

SOLVED_EARLIER = timedelta(hours=36)
_AFTER_DISPATCH = {
    "ecmo": ("start", "return", "close"),
    "ppe": ("deliver", "close"),
    "transfer": ("transferred", "close"),
}


_ENDINGS = {
    "cancel": "patient stabilisé, demande retirée",
    "reject": "contre-indication médicale",
}


def _later(clock: FixedClock, delta: timedelta, end: datetime) -> bool:
    """Move the simulated clock by ``delta`` unless that passes ``end`` (the present): what
    would happen after the present has not happened yet."""
    if clock.now() + delta > end:
        return False
    clock.advance(delta)
    return True


def _outsider_tries(runner: Runner, reference: str, region: str) -> int:
    """An ARS of another region tries to cancel the case: refused ("no case") and audited."""
    try:
        runner.advance(
            reference=reference,
            trigger="cancel",
            login="ars-idf" if region != "IDF" else "ars-occ",
            reason="erreur de périmètre",
        )
    except (NotPermitted, NotFound):
        return 1
    return 0


def _play(
    runner: Runner,
    clock: FixedClock,
    spec: WorkflowSpec,
    cast: _Cast,
    rng: random.Random,
    n: int,
    summary: DemoSummary,
    end: datetime,
) -> None:
    # The fate of the case: solved at some rung, cancelled, rejected, or still waiting. A case
    # to be solved was opened the day before, so that its loan or shipment has had time to
    # start, come back and close before the present.
    fate = rng.choices(["solve", "cancel", "reject", "wait"], weights=(6, 1, 1, 2))[0]
    if fate == "solve":
        clock.set(clock.now() - SOLVED_EARLIER)
    occitanie = [h for h in cast.hospitals if h.region == "OCC"]
    hospital = rng.choice(occitanie if n % 2 == 0 else cast.hospitals)
    requester = cast.by_org[("establishment", hospital.id)]
    case = runner.open_case(
        kind=spec.kind, login=requester, org=hospital.id, fields=_open_fields(spec.kind, rng, n)
    )
    ladder = [s for s in spec.states if s.waiting]
    stop = rng.randrange(1, len(ladder)) if fate != "wait" else rng.randrange(len(ladder))
    if n % 7 == 3 and _later(clock, timedelta(minutes=3), end):
        summary.refusals += _outsider_tries(runner, case.reference, hospital.region)
    for rung in ladder[:stop]:
        if case.state != rung.name:  # passed on by itself (the opening, a level skipped)
            continue
        if not _later(clock, timedelta(minutes=rng.randrange(5, 50)), end):
            return  # the present: the case waits at this rung
        actor = cast.who(rung.level or "establishment", case)
        case = runner.advance(
            reference=case.reference,
            trigger="escalate",
            login=actor,
            reason="aucune solution trouvée à ce niveau",
            expect_version=case.version,
        )
        summary.transitions += 1
    if fate == "wait" or not _later(clock, timedelta(minutes=rng.randrange(5, 40)), end):
        return
    level = spec.state(case.state).level or "establishment"
    if fate in ("cancel", "reject"):  # withdrawn by the hospital, or refused on medical grounds
        runner.advance(
            reference=case.reference,
            trigger=fate,
            login=requester if fate == "cancel" else cast.who(level, case),
            reason=_ENDINGS[fate],
        )
        summary.transitions += 1
        return
    actor = cast.who(level, case)
    stale = case.version
    case = runner.advance(
        reference=case.reference,
        trigger="resolve",
        login=actor,
        reason="solution trouvée",
        data=_resolve_fields(spec.kind, clock.now().date(), rng, cast, case, level),
        expect_version=case.version,
    )
    summary.transitions += 1
    if n % 5 == 1:  # a second regulator clicks on the same, now stale, view
        try:
            runner.advance(
                reference=case.reference,
                trigger="reject",
                login=actor,
                reason="doublon",
                expect_version=stale,
            )
        except Conflict:
            summary.conflicts += 1
    _follow_up(runner, cast, rng, clock, end, case, n, summary)


def _follow_up(
    runner: Runner, cast: _Cast, rng: random.Random, clock: FixedClock, end: datetime,
    case: CaseView, n: int, summary: DemoSummary,
) -> None:  # fmt: skip
    """After the resolve: a transfer's proposal answered, then what follows a dispatch (a
    console started and returned, a delivery, a transfer done), as far as the present."""
    spec = runner.registry[case.kind]
    if spec.kind == "transfer":  # proposed: the receiving establishment answers
        answered = _answer_proposal(runner, cast, rng, clock, end, case, n, summary)
        if answered is None:
            return  # the present: the proposal waits for its answer
        case = answered
    for trigger in _AFTER_DISPATCH[spec.kind][: rng.randrange(len(_AFTER_DISPATCH[spec.kind]) + 1)]:
        if not _later(clock, timedelta(hours=rng.randrange(1, 12)), end):
            return  # not yet: the present comes first
        transition = spec.transition(case.state, trigger)
        assert transition is not None
        data = {"quantity_received": 5000} if trigger == "deliver" else {}
        login = cast.who(transition.roles[0], case)
        if transition.lender:  # the lender confirms the console's return
            lender = case.fields["resolve"].get("lender")
            login = cast.by_org[("establishment", lender)] if lender else cast.who("ccs", case)
        case = runner.advance(
            reference=case.reference,
            trigger=trigger,
            login=login,
            reason="suite normale",
            data=data,
        )
        summary.transitions += 1


def _answer_proposal(
    runner: Runner, cast: _Cast, rng: random.Random, clock: FixedClock, end: datetime,
    case: CaseView, n: int, summary: DemoSummary,
) -> CaseView | None:  # fmt: skip
    """A transfer proposed to an establishment: it accepts within the hour; one case in three
    is first declined (no bed after all), proposed again by the same level, then accepted.
    None when the present comes first (the proposal is left waiting)."""
    spec = runner.registry[case.kind]
    for attempt in range(2):
        if not _later(clock, timedelta(minutes=rng.randrange(5, 45)), end):
            return None
        receiver = cast.by_org[("establishment", case.fields["resolve"]["receiving_hospital"])]
        decline = attempt == 0 and n % 3 == 2
        case = runner.advance(
            reference=case.reference,
            trigger="decline" if decline else "accept",
            login=receiver,
            reason="plus de lit de réanimation disponible" if decline else "lit réservé",
            expect_version=case.version,
        )
        summary.transitions += 1
        if not decline:
            return case
        if not _later(clock, timedelta(minutes=rng.randrange(5, 40)), end):
            return None  # back at the proposing level: it waits for a new proposal
        level = spec.state(case.state).level or "establishment"
        case = runner.advance(
            reference=case.reference,
            trigger="resolve",
            login=cast.who(level, case),
            reason="nouvelle proposition",
            data=_resolve_fields(case.kind, clock.now().date(), rng, cast, case, level),
            expect_version=case.version,
        )
        summary.transitions += 1
    return case


def _leave_waiting(runner: Runner, cast: _Cast, rng: random.Random, summary: DemoSummary) -> None:
    """For each printed account's hospital, one case waiting at each level of its ladders."""
    for n, hospital in enumerate(WAITING_HOSPITALS):
        wanted = _WAITING_REGIONAL + (_WAITING_NATIONAL if n == 0 else ())
        for kind, state in wanted:
            spec = runner.registry[kind]
            case = runner.open_case(
                kind=kind,
                login=cast.by_org[("establishment", hospital)],
                org=hospital,
                fields=_open_fields(kind, rng, n),
            )
            order = [s.name for s in spec.states]
            while order.index(case.state) < order.index(state):  # a new case may start past it
                case = runner.advance(
                    reference=case.reference,
                    trigger="escalate",
                    login=cast.who(spec.state(case.state).level or "establishment", case),
                    reason="pas de solution à ce niveau",
                    expect_version=case.version,
                )
                summary.transitions += 1
        # a console lent by the UMAC, waiting for the hospital to confirm it is in service
        case = runner.open_case(
            kind="ecmo", login=cast.by_org[("establishment", hospital)], org=hospital,
            fields=_open_fields("ecmo", rng, n),
        )  # fmt: skip
        if case.state == "umac_review":
            runner.advance(
                reference=case.reference, trigger="resolve", login=cast.who("umac", case),
                reason="console disponible dans la zone",
                data=_resolve_fields("ecmo", runner.clock.now().date(), rng, cast, case, "umac"),
            )  # fmt: skip
            summary.transitions += 1


def _deliver_all(db: Database, clock: FixedClock, channel: EmlChannel) -> int:
    """Run the dispatcher until the outbox is empty: nothing queued at the end of the demo
    (every notice is dated at or before the present, so every one is due)."""
    sent = 0
    for _ in range(10):
        sent += dispatch(db, clock, {"eml": channel}).counts()["sent"]
        with db.read() as conn:
            queued = conn.execute(
                sa.select(sa.func.count()).select_from(_NOTICE).where(_NOTICE.c.status == "queued")
            ).scalar_one()
        if not queued:
            return sent
    raise RuntimeError(f"the demo's outbox still holds {queued} queued notices")


def run_demo(
    path: Path, *, cases_per_kind: int, seed: int, on_case: Callable[[int], None] = lambda _n: None
) -> DemoSummary:
    started = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    end = SystemClock().now().replace(microsecond=0)
    clock = FixedClock(end - timedelta(hours=6))
    # the composition root, on a throw-away database: NORMAL sync, notices on, demo deadlines
    app = build_app(
        database_url=f"sqlite:///{path}", clock=clock, check_schema=False,
        sqlite_synchronous="NORMAL", notices=True, deadlines={}, ppe_enrolment="ght_support",
    )  # fmt: skip
    db, registry, runner = app.db, app.registry, app.runner
    db.migrate()
    with db.write() as conn:
        load_directory(conn)
    cast, rng = _Cast(db), random.Random(seed)
    cast.fleet = ecmo_demo.seed_fleet(app, clock, cast.hospitals, cast.by_org)  # issue 11
    summary = DemoSummary(database=str(path))
    from resources.ppe.demo import play_ppe  # eight weeks of PPE stock reports (issue 12)

    summary.ppe = play_ppe(app, clock, seed)
    clock.set(end - timedelta(hours=60))  # critical-care capacity first (issue 13)
    beds_demo.play_capacity(app, clock, list(cast.hospitals), seed)
    cast.free_bed = lambda case, login, r: beds_demo.free_bed_for(app, case, login, r)
    clock.set(end - timedelta(hours=6))
    step = timedelta(hours=6) / (cases_per_kind * 3)
    for n in range(cases_per_kind):
        for spec in registry:
            start = clock.now()
            _play(runner, clock, spec, cast, rng, n, summary, end)
            clock.set(start + step)  # cases interleave on one simulated morning
            on_case(1)
    clock.set(end - timedelta(hours=4))  # one EVASAN mission, a proposal declined (issue 13)
    beds_demo.play_evasan(app, clock, summary)
    clock.set(end)  # the worker catches up with the present: overdue cases climb by themselves
    summary.swept = sweep(runner).counts()
    _leave_waiting(runner, cast, rng, summary)  # fresh: their deadlines run from now
    ecmo_demo.finish(cast.fleet, runner, cast.hospitals, cast.by_org)  # a region at zero
    folder = Path(f"{path}.outbox")
    shutil.rmtree(folder, ignore_errors=True)
    summary.notices = _deliver_all(db, clock, EmlChannel(folder))
    summary.outbox = str(folder)
    with db.read() as conn:
        for spec in registry:
            rows = conn.execute(
                sa.text("SELECT state, count(*) FROM regul_case WHERE kind = :k GROUP BY state"),
                {"k": spec.kind},
            )
            summary.states[spec.kind] = Counter({r[0]: r[1] for r in rows})
        report = audit.verify(conn)
        summary.events, summary.audit_ok = report.events, report.ok
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM regul_case"))]
        summary.replay_ok = all(audit.replay(conn, registry, i).matches for i in ids)
    db.dispose()
    summary.seconds = time.perf_counter() - started
    return summary
