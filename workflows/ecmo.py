"""ECMO console request (MARS N°2020_113): hospital → UMAC of the zone → ARS with the SFCTCV
referent → national crisis centre; a console lent from the national stock is awaited back."""

from __future__ import annotations

from engine.workflow import FieldSpec, define
from notifications.rules import notices

__all__ = ["ECMO", "ECMO_NOTICES"]

_OPEN = (
    FieldSpec("patient_ref", "ref", label="Référence pseudonyme du patient"),
    FieldSpec(
        "mode", "choice", choices=("VV", "VA"), label="ECMO veino-veineuse ou veino-artérielle"
    ),
    # the facts the UMAC weighs (MARS N°2020_113); optional so that an urgent request is never
    # held back by a form, and the desk's form always asks them
    FieldSpec("covid", "bool", required=False, label="Patient Covid"),
    FieldSpec("consoles_needed", "int", required=False, label="Consoles nécessaires"),
    FieldSpec("circuits_needed", "int", required=False, label="Circuits nécessaires"),
    FieldSpec("local_options", "text", required=False, label="Solutions locales envisagées"),
    FieldSpec(
        "time_to_rupture",
        "duration",
        required=False,
        label="Délai avant rupture de prise en charge",
    ),
    FieldSpec("summary", "text", required=False, label="Éléments cliniques utiles à la régulation"),
)
_RESOLVE = (
    FieldSpec("source", "choice", choices=("hospital", "region", "national"), label="Origine"),
    # the lending establishment (a FINESS of the directory), required unless the console comes
    # from the national stock; cases resolved before it carry a free-text ``provider`` instead
    FieldSpec("lender", "hospital", required=False, label="Établissement prêteur"),
    FieldSpec("return_by", "date", label="Date de retour du prêt"),
    # the equipment itself (issue 11): the consoles' serial numbers and the circuits, taken
    # from the lender's (or the national stock's) available equipment and reserved in the same
    # transaction (resources.ecmo); optional here so that the ladder stays usable on its own,
    # required by the fleet's effects wherever the resources are plugged in (interfaces.app)
    FieldSpec(
        "console_serials", "text", required=False, label="Consoles attribuées (numéros de série)"
    ),
    FieldSpec("circuits_lent", "int", required=False, label="Circuits attribués"),
)
_EXTEND_LOAN = (FieldSpec("return_by", "date", label="Nouvelle date de retour du prêt"),)

# fmt: off
_STATES = [
    # name                   label                         level            deadline                                     on_deadline flags
    ("requested",           "Demande émise",              "establishment", "1h",                                        "escalate", "waiting"),
    ("umac_review",         "Examen par l'UMAC",          "umac",          "2h",                                        "escalate", "waiting"),
    ("ars_regulation",      "Régulation ARS / SFCTCV",    "ars",           "4h",                                        "escalate", "waiting"),
    ("national_regulation", "Régulation nationale (CCS)", "ccs",           "4h",                                        "incident", "waiting"),
    ("dispatched",          "Console attribuée",          "establishment", "12h",                                       "incident", ""),
    ("in_service",          "Console en service",         "establishment", "@extend_loan.return_by resolve.return_by", "overdue",  ""),
    ("return_declared",     "Retour de la console déclaré", "establishment", "",                                          "",         ""),
    ("returned",            "Console restituée",          "ars",           "",                                          "",         ""),
    ("closed",              "Clôturé",                    "",              "",                                          "",         "final"),
    ("cancelled",           "Annulé",                     "",              "",                                          "",         "final"),
    ("rejected",            "Refusé (motif médical)",     "",              "",                                          "",         "final"),
]

_TRANSITIONS = [
    # trigger        source                 dest                   roles                flags
    ("escalate",    "requested",           "umac_review",         "establishment",     ""),
    ("escalate",    "umac_review",         "ars_regulation",      "umac",              ""),
    ("escalate",    "ars_regulation",      "national_regulation", "ars",               ""),
    ("resolve",     "umac_review",         "dispatched",          "umac",              ""),
    ("resolve",     "ars_regulation",      "dispatched",          "ars",               ""),
    ("resolve",     "national_regulation", "dispatched",          "ccs",               ""),
    ("reject",      "umac_review",         "rejected",            "umac",              ""),
    ("reject",      "ars_regulation",      "rejected",            "ars",               ""),
    ("reject",      "national_regulation", "rejected",            "ccs",               ""),
    ("cancel",      "requested",           "cancelled",           "establishment",     "any_level"),
    ("cancel",      "umac_review",         "cancelled",           "establishment",     "any_level"),
    ("cancel",      "ars_regulation",      "cancelled",           "establishment",     "any_level"),
    ("cancel",      "national_regulation", "cancelled",           "establishment",     "any_level"),
    ("start",       "dispatched",          "in_service",          "establishment",     ""),
    # the lender (the CCS for the national stock, the lending establishment otherwise)
    # extends the loan and confirms the console's return (engine.policy.is_lender)
    ("extend_loan", "in_service",          "in_service",          "establishment ccs", "lender"),
    ("return",      "in_service",          "returned",            "establishment ccs", "lender"),
    # the borrower declares the console sent back; the lender confirms it received it
    ("declare_return", "in_service",       "return_declared",     "establishment",     ""),
    ("return",      "return_declared",     "returned",            "establishment ccs", "lender"),
    ("close",       "returned",            "closed",              "ars",               ""),
]
# fmt: on


ECMO = define(
    kind="ecmo",
    title="Demande de console ECMO",
    prefix="ECMO",
    open_roles=("establishment",),
    open_fields=_OPEN,
    trigger_fields={"resolve": _RESOLVE, "extend_loan": _EXTEND_LOAN},
    states=_STATES,
    transitions=_TRANSITIONS,
)

# fmt: off
_NOTICES = [
    # event      kind             pour action          pour information
    ("open",     "opened",        "regulator",         "requester ars sfctcv"),
    ("escalate", "escalated",     "holder",            "requester passed ars sfctcv"),
    ("resolve",  "resolved",      "requester lender",  "passed sfctcv"),
    ("reject",   "rejected",      "requester",         "passed sfctcv"),
    ("cancel",   "cancelled",     "previous regulator", "passed sfctcv"),
    ("start",    "loan_started",  "lender",            "ars requester"),
    ("extend_loan", "loan_extended", "requester",      "lender ars"),
    ("return",   "loan_returned", "ars",               "lender requester"),
    ("close",    "closed",        "lender requester",  "ars passed"),
    ("declare_return", "return_declared", "lender",    "ars requester"),
    ("reminder", "reminder",      "holder",            "requester"),
    ("incident", "incident",      "ccs",               "ars sfctcv requester"),
    ("overdue",  "loan_overdue",  "requester",         "lender ars"),
]
# fmt: on

ECMO_NOTICES = notices(ECMO, rows=_NOTICES)
