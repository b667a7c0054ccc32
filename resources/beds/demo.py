"""The demo's picture of critical-care capacity (``regul demo``): one strained region
(Occitanie: réanimation nearly full, tiers raised, plan blanc, a deprogramming decision, the
region at its target and flagged for EVASAN), neighbours with room (Nouvelle-Aquitaine,
Provence-Alpes-Côte d'Azur, Auvergne-Rhône-Alpes), a tier raised then lowered, and after the
cases an EVASAN mission of the national level carrying three patients, one proposal declined.

Called by ``interfaces.demo.run_demo`` through the same services as every interface.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine.clock import FixedClock
from resources.beds.effects import bed_of

if TYPE_CHECKING:
    from engine.values import CaseView
    from interfaces.app import App

__all__ = ["EVASAN_MISSION", "free_bed_for", "play_capacity", "play_evasan"]

STRAINED = "OCC"
ROOMY = ("NAQ", "PAC", "ARA")
TOULOUSE, MONTPELLIER, BORDEAUX, LIMOGES = "319900001", "349900001", "339900001", "879900001"
EVASAN_MISSION = "EVASAN-2026-0001"
_CELL = ["Pr Durand (réanimation)", "Dr Martin (chirurgie)", "Mme Petit (cadre de santé)"]


def _figures(rng: random.Random, region: str | None, size: int) -> dict[str, dict[str, int]]:
    strained = region == STRAINED
    out = {}
    for category, beds in (("reanimation", size), ("surveillance_continue", size // 2 + 2),
                           ("medecine_covid", size * 2)):  # fmt: skip
        armed = beds if strained else beds - rng.randrange(0, 3)
        busy = 0.9 if strained else rng.choice((0.5, 0.6, 0.7))
        covid = round(armed * busy * 0.6)
        other = min(armed - covid, round(armed * busy * 0.4) + (1 if strained else 0))
        reserve = 0 if strained else 1
        other = min(other, armed - covid - reserve)
        out[category] = {"installed": beds, "armed": armed, "occupied_covid": covid,
                         "occupied_other": other, "covid_reserve": reserve}  # fmt: skip
    return out


def play_capacity(app: App, clock: FixedClock, hospitals: list[Any], seed: int) -> int:
    """The base picture, two days before the present: every health establishment of a GHT
    reports its beds; Occitanie's plans, tiers, plan blanc, target and deprogramming."""
    rng = random.Random(seed)
    beds = app.beds
    # the ARS sets its region's target first: the reports below bring the region to it
    beds.target("ars-occ", region=STRAINED, targets={"reanimation": 300},
                reason="cible capacitaire régionale (MARS N°2021_18)")  # fmt: skip
    reported = 0
    for h in hospitals:
        size = 24 if h.id in (TOULOUSE, MONTPELLIER, BORDEAUX) else rng.choice((8, 10, 12))
        beds.report(f"etab-{h.id}", holder=h.id, figures=_figures(rng, h.region, size))
        reported += 1
    clock.advance(timedelta(hours=1))
    for holder in (TOULOUSE, MONTPELLIER):
        beds.plan(f"etab-{holder}", holder=holder, tiers={
            "1": {"reanimation": 24, "surveillance_continue": 14},
            "2": {"reanimation": 30, "surveillance_continue": 16},
            "3": {"reanimation": 36, "surveillance_continue": 18},
        })  # fmt: skip
    # Toulouse raises its tier and triggers its plan blanc, arms beds, deprograms
    clock.advance(timedelta(hours=2))
    toulouse = {"reanimation": {"installed": 36, "armed": 30, "occupied_covid": 20,
                                "occupied_other": 9, "covid_reserve": 0}}  # fmt: skip
    beds.report(f"etab-{TOULOUSE}", holder=TOULOUSE, figures=toulouse, tier=2, plan_blanc=2)
    beds.deprogram(
        f"etab-{TOULOUSE}", holder=TOULOUSE, tier=2,
        activities=[{"activity": "chirurgie programmée non urgente", "extent": 50},
                    {"activity": "endoscopies de dépistage différables", "extent": 30}],
        cell=_CELL,
        benefit_risk="Report de 2 à 4 semaines sans perte de chance documentée ; "
                     "les patients sont recontactés par leur chirurgien.",
        safeguarded=["cancer", "greffe", "maladie_chronique", "soins_urgents", "mineur",
                     "sante_mentale", "depistage_diagnostic"],
    )  # fmt: skip
    beds.deprogram(
        f"etab-{TOULOUSE}", holder=TOULOUSE, tier=2,
        activities=[{"activity": "consultations de suivi en présentiel", "extent": 40}],
        cell=_CELL[:2], benefit_risk="Téléconsultations proposées à la place.",
        safeguarded=["cancer", "greffe", "soins_urgents", "mineur"],
    )  # fmt: skip
    # Montpellier raises to tier 2, then lowers to tier 1 once the wave ebbs (reversibility)
    clock.advance(timedelta(hours=3))
    montpellier = {"reanimation": {"installed": 30, "armed": 30, "occupied_covid": 18,
                                   "occupied_other": 10, "covid_reserve": 0}}  # fmt: skip
    beds.report(f"etab-{MONTPELLIER}", holder=MONTPELLIER, figures=montpellier, tier=2,
                plan_blanc=1)  # fmt: skip
    clock.advance(timedelta(hours=6))
    montpellier["reanimation"].update(armed=24, occupied_covid=12, occupied_other=9)
    beds.report(f"etab-{MONTPELLIER}", holder=MONTPELLIER, figures=montpellier, tier=1,
                plan_blanc=0)  # fmt: skip
    feed = beds.feed("ars-occ")
    later = next(f for f in feed if f.data.get("activities", [{}])[0].get("activity", "")
                 .startswith("consultations"))  # fmt: skip
    beds.reverse(f"etab-{TOULOUSE}", holder=TOULOUSE, decision=later.seq,
                 reason="téléconsultations suffisantes, présentiel repris")  # fmt: skip
    return reported


def free_bed_for(app: App, case: CaseView, login: str, rng: random.Random) -> str | None:
    """A receiving establishment with a free bed of the case's category in ``login``'s scope
    (one of the three nearest), None when there is none."""
    category = bed_of(case.fields)
    if category is None:
        return None
    found = app.beds.candidates(login, category=category, origin=case.org, limit=3)
    return rng.choice(found).org if found else None


def play_evasan(app: App, clock: FixedClock, summary: Any) -> None:
    """Three Covid patients of Toulouse, no bed left in Occitanie nor in zone Sud: the national
    level carries them in one EVASAN mission to Nouvelle-Aquitaine; Limoges declines its
    proposal (team short-staffed), the CCS proposes Bordeaux instead."""
    runner = app.runner
    for n in range(3):
        case = runner.open_case(
            kind="transfer", login=f"etab-{TOULOUSE}", org=TOULOUSE,
            fields={"patient_ref": f"PAT-EV{n:04d}", "covid": True, "bed_category": "reanimation",
                    "summary": "SDRA Covid, ventilé, transportable"},
        )  # fmt: skip
        for login in ("ars-occ", "arsz-sud"):
            if runner.registry["transfer"].state(case.state).level in ("ars", "ars_zone"):
                clock.advance(timedelta(minutes=10))
                case = runner.advance(
                    reference=case.reference, trigger="escalate", login=login,
                    reason="aucun lit de réanimation disponible à ce niveau",
                )  # fmt: skip
                summary.transitions += 1
        receiving = LIMOGES if n == 2 else BORDEAUX
        for attempt in range(2):
            clock.advance(timedelta(minutes=15))
            case = runner.advance(
                reference=case.reference, trigger="resolve", login="ccs",
                reason="EVASAN interrégionale",
                data={"receiving_hospital": receiving, "means": "air",
                      "date": str(clock.now().date()), "evasan_mission": EVASAN_MISSION},
            )  # fmt: skip
            clock.advance(timedelta(minutes=10))
            declines = receiving == LIMOGES and attempt == 0
            case = runner.advance(
                reference=case.reference, trigger="decline" if declines else "accept",
                login=f"etab-{receiving}",
                reason="équipe de réanimation en sous-effectif" if declines else "lit réservé",
            )  # fmt: skip
            summary.transitions += 2
            if not declines:
                break
            receiving = BORDEAUX
