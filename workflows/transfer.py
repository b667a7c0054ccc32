"""Patient transfer (MARS N°2021_18, non-Covid restart note): hospital → ARS (a bed in the
region) → ARS de zone → national level (CCS: EVASAN by air, rail or road)."""

from __future__ import annotations

from engine.workflow import FieldSpec, define
from notifications.rules import notices

__all__ = ["BED_CATEGORIES", "PROTECTED", "TRANSFER", "TRANSFER_NOTICES"]

# The patients whose care must go on (MARS N°2021_18, seed 001): cancer, awaiting a graft,
# chronic disease, urgent care, minors, mental health, screening and diagnosis.
PROTECTED = (
    "cancer",
    "greffe",
    "maladie_chronique",
    "soins_urgents",
    "mineur",
    "sante_mentale",
    "depistage_diagnostic",
)
BED_CATEGORIES = ("reanimation", "surveillance_continue", "medecine", "ssr")

_OPEN = (
    FieldSpec("patient_ref", "ref", label="Référence pseudonyme du patient"),
    FieldSpec("covid", "bool", label="Patient Covid"),
    FieldSpec("bed_category", "choice", choices=BED_CATEGORIES, label="Catégorie de lit"),
    # a non-Covid patient is transferred for the loss of chance his care would suffer (seed
    # 003): required then, optional for a Covid patient
    FieldSpec(
        "loss_of_chance",
        "text",
        required=False,
        label="Perte de chance (patient non Covid)",
        required_when=("covid", False),
    ),
    FieldSpec(
        "protected_category",
        "choice",
        choices=PROTECTED,
        required=False,
        label="Catégorie de patients protégée",
    ),
    FieldSpec("summary", "text", required=False, label="Éléments utiles au transfert"),
)
_RESOLVE = (
    FieldSpec("receiving_hospital", "hospital", label="Établissement d'accueil (FINESS)"),
    FieldSpec("means", "choice", choices=("road", "rail", "air", "sea"), label="Vecteur"),
    FieldSpec("date", "date", label="Date du transfert"),
    # why the patient is proposed to an establishment with no free bed of the category in the
    # capacity ledger (declared now; the bed ledger will require it then)
    FieldSpec(
        "bed_override_reason",
        "text",
        required=False,
        label="Motif de proposition sans lit disponible déclaré",
    ),
    # an EVASAN carries several patients: the national level names one mission for all its
    # cases (resources.beds.effects refuses it at another level; listed by regul beds missions)
    FieldSpec("evasan_mission", "ref", required=False, label="Mission EVASAN"),
)

# fmt: off
_STATES = [
    # name                   label                         level            deadline on_deadline flags
    ("requested",           "Demande émise",              "establishment", "30m", "escalate", "waiting"),
    ("ars_regulation",      "Régulation régionale (ARS)", "ars",           "2h",  "escalate", "waiting"),
    ("zone_regulation",     "Régulation zonale",          "ars_zone",      "4h",  "escalate", "waiting"),
    ("national_regulation", "Régulation nationale (CCS)", "ccs",           "6h",  "incident", "waiting"),
    # proposed to the receiving establishment, one state per proposing level (the static
    # machine then knows where a decline returns); held by that level, which may withdraw;
    # unanswered, the proposal lapses back to it (« sans réponse de l'établissement d'accueil »)
    ("proposed_ars",        "Proposé à l'établissement d'accueil (ARS)",      "ars",      "1h", "withdraw", ""),
    ("proposed_zone",       "Proposé à l'établissement d'accueil (zone)",     "ars_zone", "1h", "withdraw", ""),
    ("proposed_national",   "Proposé à l'établissement d'accueil (national)", "ccs",      "1h", "withdraw", ""),
    ("dispatched",          "Transfert organisé",         "establishment", "",    "",         ""),
    ("transferred",         "Patient transféré",          "establishment", "",    "",         ""),
    ("closed",              "Clôturé",                    "",              "",    "",         "final"),
    ("cancelled",           "Annulé",                     "",              "",    "",         "final"),
    ("rejected",            "Refusé",                     "",              "",    "",         "final"),
]

_TRANSITIONS = [
    # trigger        source                 dest                   roles            flags
    ("escalate",    "requested",           "ars_regulation",      "establishment", ""),
    ("escalate",    "ars_regulation",      "zone_regulation",     "ars",           ""),
    ("escalate",    "zone_regulation",     "national_regulation", "ars_zone",      ""),
    ("resolve",     "ars_regulation",      "proposed_ars",        "ars",           ""),
    ("resolve",     "zone_regulation",     "proposed_zone",       "ars_zone",      ""),
    ("resolve",     "national_regulation", "proposed_national",   "ccs",           ""),
    # only the receiving establishment answers (engine.policy.is_receiver), at any level
    ("accept",      "proposed_ars",        "dispatched",          "establishment", "receiver"),
    ("accept",      "proposed_zone",       "dispatched",          "establishment", "receiver"),
    ("accept",      "proposed_national",   "dispatched",          "establishment", "receiver"),
    ("decline",     "proposed_ars",        "ars_regulation",      "establishment", "receiver"),
    ("decline",     "proposed_zone",       "zone_regulation",     "establishment", "receiver"),
    ("decline",     "proposed_national",   "national_regulation", "establishment", "receiver"),
    ("withdraw",    "proposed_ars",        "ars_regulation",      "ars",           ""),
    ("withdraw",    "proposed_zone",       "zone_regulation",     "ars_zone",      ""),
    ("withdraw",    "proposed_national",   "national_regulation", "ccs",           ""),
    ("reject",      "ars_regulation",      "rejected",            "ars",           ""),
    ("reject",      "zone_regulation",     "rejected",            "ars_zone",      ""),
    ("reject",      "national_regulation", "rejected",            "ccs",           ""),
    ("cancel",      "requested",           "cancelled",           "establishment", "any_level"),
    ("cancel",      "ars_regulation",      "cancelled",           "establishment", "any_level"),
    ("cancel",      "zone_regulation",     "cancelled",           "establishment", "any_level"),
    ("cancel",      "national_regulation", "cancelled",           "establishment", "any_level"),
    ("cancel",      "proposed_ars",        "cancelled",           "establishment", "any_level"),
    ("cancel",      "proposed_zone",       "cancelled",           "establishment", "any_level"),
    ("cancel",      "proposed_national",   "cancelled",           "establishment", "any_level"),
    ("transferred", "dispatched",          "transferred",         "establishment", ""),
    ("close",       "transferred",         "closed",              "establishment", ""),
]
# fmt: on


TRANSFER = define(
    kind="transfer",
    title="Transfert de patient",
    prefix="TRF",
    open_roles=("establishment",),
    open_fields=_OPEN,
    trigger_fields={"resolve": _RESOLVE},
    states=_STATES,
    transitions=_TRANSITIONS,
)

# fmt: off
_NOTICES = [
    # event         kind           pour action           pour information
    ("open",        "opened",      "regulator",          "requester"),
    ("escalate",    "escalated",   "holder",             "requester passed"),
    ("resolve",     "proposed",    "receiver",           "requester holder"),
    ("accept",      "accepted",    "previous",           "requester receiver"),
    ("decline",     "declined",    "holder",             "requester"),
    ("withdraw",    "withdrawn",   "holder",             "requester receiver"),
    ("transferred", "transferred", "receiver",           "requester passed"),
    ("reject",      "rejected",    "requester",          "passed"),
    ("cancel",      "cancelled",   "previous regulator", "passed"),
    ("reminder",    "reminder",    "holder",             "requester"),
    ("incident",    "incident",    "ccs",                "ars ars_zone requester"),
]
# fmt: on

TRANSFER_NOTICES = notices(TRANSFER, rows=_NOTICES)
