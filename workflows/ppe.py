"""Urgent PPE resupply (MINSANTE N°143): hospital → support hospital of its GHT → ARS →
national level (CCS with Santé publique France), then shipment and receipt."""

from __future__ import annotations

from engine.workflow import FieldSpec, define
from notifications.rules import notices

__all__ = ["ITEMS", "PPE", "PPE_NOTICES"]

ITEMS = ("surgical_mask", "ffp2_mask", "gown", "apron", "gloves", "cap", "goggles")

_OPEN = (
    FieldSpec("item", "choice", choices=ITEMS, label="Article"),
    FieldSpec("quantity", "int", label="Quantité demandée"),
    FieldSpec("summary", "text", required=False, label="Situation de stock"),
)
_RESOLVE = (
    FieldSpec("quantity", "int", label="Quantité expédiée"),
    FieldSpec("source", "choice", choices=("ght", "region", "national"), label="Stock d'origine"),
    FieldSpec("expected_delivery", "date", label="Livraison attendue le"),
)
_DELIVER = (FieldSpec("quantity_received", "int", label="Quantité reçue"),)

# fmt: off
_STATES = [
    # name               label                          level            deadline                      on_deadline flags
    ("requested",       "Demande émise",               "establishment", "4h",                         "escalate", "waiting"),
    ("ght_review",      "Examen par le GHT",           "ght",           "24h",                        "escalate", "waiting"),
    ("ars_review",      "Examen par l'ARS",            "ars",           "24h",                        "escalate", "waiting"),
    ("national_review", "Examen national (CCS / SpF)", "ccs",           "48h",                        "incident", "waiting"),
    ("dispatched",      "Expédié",                     "establishment", "@resolve.expected_delivery", "overdue",  ""),
    ("delivered",       "Livré",                       "establishment", "",                           "",         ""),
    ("closed",          "Clôturé",                     "",              "",                           "",         "final"),
    ("cancelled",       "Annulé",                      "",              "",                           "",         "final"),
    ("rejected",        "Refusé",                      "",              "",                           "",         "final"),
]

_TRANSITIONS = [
    # trigger     source             dest               roles            flags
    ("escalate", "requested",       "ght_review",      "establishment", ""),
    ("escalate", "ght_review",      "ars_review",      "ght",           ""),
    ("escalate", "ars_review",      "national_review", "ars",           ""),
    ("resolve",  "ght_review",      "dispatched",      "ght",           ""),
    ("resolve",  "ars_review",      "dispatched",      "ars",           ""),
    ("resolve",  "national_review", "dispatched",      "ccs spf",       "any_level"),
    ("reject",   "ght_review",      "rejected",        "ght",           ""),
    ("reject",   "ars_review",      "rejected",        "ars",           ""),
    ("reject",   "national_review", "rejected",        "ccs",           ""),
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
    open_roles=("establishment",),
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
