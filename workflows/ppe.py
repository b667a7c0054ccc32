"""Urgent PPE resupply (MINSANTE N°143, ARS Occitanie 24/03/2020): hospital → support hospital
of its GHT (where the deployment keeps that step and the hospital has a GHT) → ARS → Santé
publique France, which holds the national level (the CCS is informed), then shipment and receipt.
The ARS may open a request on behalf of an establishment or a médico-social structure of its
region: the case then starts at the ARS's own level."""

from __future__ import annotations

from engine.workflow import FieldSpec, define
from notifications.rules import notices

__all__ = ["ITEMS", "PPE", "PPE_NOTICES", "SOURCES"]

ITEMS = ("surgical_mask", "ffp2_mask", "gown", "apron", "gloves", "cap", "goggles")
# Which level may ship from which stock: the GHT's own, the regional reserve, the national one.
SOURCES = (("ght", ("ght",)), ("region", ("ars",)), ("national", ("spf",)))

_OPEN = (
    FieldSpec("lines", "lines", choices=ITEMS, label="Articles demandés"),
    FieldSpec(
        "delivery_address", "text", label="Adresse de livraison", fallback="delivery_address"
    ),
    FieldSpec("summary", "text", required=False, label="Situation de stock"),
)
_RESOLVE = (
    FieldSpec("quantity", "int", label="Quantité expédiée"),
    FieldSpec(
        "source",
        "choice",
        choices=tuple(value for value, _ in SOURCES),
        label="Stock d'origine",
        reserved=SOURCES,
    ),
    FieldSpec("expected_delivery", "date", label="Livraison attendue le"),
)
_DELIVER = (FieldSpec("quantity_received", "int", label="Quantité reçue"),)

# fmt: off
_STATES = [
    # name               label                              level            deadline                      on_deadline flags
    ("requested",       "Demande émise",                   "establishment", "4h",                         "escalate", "waiting"),
    ("ght_review",      "Examen par le GHT",               "ght",           "24h",                        "escalate", "waiting optional"),
    ("ars_review",      "Examen par l'ARS",                "ars",           "24h",                        "escalate", "waiting"),
    ("national_review", "Examen national (Santé publique France)", "spf",   "48h",                        "incident", "waiting"),
    ("dispatched",      "Expédié",                         "establishment", "@resolve.expected_delivery", "overdue",  ""),
    ("delivered",       "Livré",                           "establishment", "",                           "",         ""),
    ("closed",          "Clôturé",                         "",              "",                           "",         "final"),
    ("cancelled",       "Annulé",                          "",              "",                           "",         "final"),
    ("rejected",        "Refusé",                          "",              "",                           "",         "final"),
]

_TRANSITIONS = [
    # trigger     source             dest               roles            flags
    ("escalate", "requested",       "ght_review",      "establishment", ""),
    ("escalate", "ght_review",      "ars_review",      "ght",           ""),
    ("escalate", "ars_review",      "national_review", "ars",           ""),
    ("resolve",  "ght_review",      "dispatched",      "ght",           ""),
    ("resolve",  "ars_review",      "dispatched",      "ars",           ""),
    ("resolve",  "national_review", "dispatched",      "spf",           ""),
    ("reject",   "ght_review",      "rejected",        "ght",           ""),
    ("reject",   "ars_review",      "rejected",        "ars",           ""),
    ("reject",   "national_review", "rejected",        "spf",           ""),
    ("cancel",   "requested",       "cancelled",       "establishment", "any_level"),
    ("cancel",   "ght_review",      "cancelled",       "establishment", "any_level"),
    ("cancel",   "ars_review",      "cancelled",       "establishment", "any_level"),
    ("cancel",   "national_review", "cancelled",       "establishment", "any_level"),
    ("deliver",  "dispatched",      "delivered",       "establishment", ""),
    ("close",    "delivered",       "closed",          "establishment", ""),
]
# fmt: on


PPE = define(
    kind="ppe",
    title="Réapprovisionnement urgent en EPI",
    prefix="EPI",
    open_roles=("establishment", "ars"),
    open_fields=_OPEN,
    trigger_fields={"resolve": _RESOLVE, "deliver": _DELIVER},
    states=_STATES,
    transitions=_TRANSITIONS,
)

# fmt: off
_NOTICES = [
    # event      kind                pour action          pour information
    ("open",     "opened",           "regulator",         "requester"),
    ("escalate", "escalated",        "holder",            "requester passed national"),
    ("resolve",  "resolved",         "requester shipper", "passed national"),
    ("deliver",  "delivered",        "shipper",           "requester passed"),
    ("reject",   "rejected",         "requester",         "passed"),
    ("cancel",   "cancelled",        "previous regulator", "passed"),
    ("reminder", "reminder",         "holder",            "requester national"),
    ("incident", "incident",         "spf ccs",           "ars requester"),
    ("overdue",  "delivery_overdue", "shipper",           "requester passed"),
]
# fmt: on

PPE_NOTICES = notices(PPE, rows=_NOTICES)
