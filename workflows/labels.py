"""The French labels of the vocabularies, declared once beside the workflows.

The desk, the notices and the CLI all take their wording from here: the triggers, the audit
actions (``engine.vocab.Action``), the roles and levels, the scopes, the controls, the sweep's
outcomes and the values of choice fields (``source=national`` → « stock national »). A test
checks that every member of every vocabulary and every choice of every workflow has a label,
so a new value cannot reach a regulator as an English code. Imports no database library.
"""

from __future__ import annotations

from engine.vocab import Action, Control, Role, ScopeKind, SweepOutcome

__all__ = [
    "ACTIONS",
    "CONTROLS",
    "ITEM_UNITS",
    "LEVELS",
    "NOTICE_FIELDS",
    "NOTICE_UNITS",
    "OUTCOMES",
    "ROLES",
    "SCOPES",
    "TRIGGERS",
    "VALUES",
    "value_label",
]

TRIGGERS = {
    "escalate": "Escalader au niveau supérieur",
    "resolve": "Résoudre (attribuer une solution)",
    "reject": "Refuser",
    "cancel": "Annuler la demande",
    "close": "Clôturer",
    "start": "Mise en service",
    "return": "Restitution",
    "extend_loan": "Prolonger le prêt",
    "deliver": "Livraison reçue",
    "transferred": "Patient transféré",
}
ACTIONS: dict[str, str] = {
    Action.OPENED: "Ouverture",
    Action.TRANSITION: "Transition",
    Action.REFUSED: "Refus",
    Action.READ: "Consultation",
    Action.REMINDER: "Rappel",
    Action.INCIDENT: "Incident",
    Action.HOLD: "Mise en attente",
    Action.RESUME: "Reprise",
    Action.EXTEND: "Prolongation",
    Action.DEADLINE_NOOP: "Échéance sans effet",
    Action.OVERDUE: "Retard",
    Action.PROBE: "Demande sur un dossier inexistant",
    # the security stream's own events (accounts, the operator's audit commands)
    "operator": "Commande d'exploitation",
    "login_failed": "Échec de connexion",
    "login_ceiling": "Plafond d'échecs de connexion atteint",
    "login_unlocked": "Déblocage de connexion",
    "login_csrf": "Formulaire de connexion refusé",
}
ROLES: dict[str, str] = {
    Role.ESTABLISHMENT: "Établissement",
    Role.GHT: "GHT",
    Role.UMAC: "UMAC",
    Role.ARS: "ARS",
    Role.ARS_ZONE: "ARS de zone",
    Role.CCS: "Centre de crise sanitaire",
    Role.SPF: "Santé publique France",
    Role.SFCTCV: "Référent ECMO SFCTCV",
    Role.AUDITOR: "Auditeur",
    Role.ADMIN: "Administrateur",
    Role.SYSTEM: "Échéancier",
}
SCOPES: dict[str, str] = {
    ScopeKind.HOSPITAL: "établissement",
    ScopeKind.GHT: "GHT",
    ScopeKind.ZONE: "zone",
    ScopeKind.REGION: "région",
    ScopeKind.NATIONAL: "national",
}
CONTROLS: dict[str, str] = {
    Control.HOLD: "Suspendre l'échéance",
    Control.RESUME: "Reprendre (échéance relancée)",
    Control.EXTEND: "Prolonger l'échéance",
}
OUTCOMES: dict[str, str] = {
    SweepOutcome.ESCALATED: "escalade automatique",
    SweepOutcome.REMINDER: "rappel",
    SweepOutcome.INCIDENT: "incident",
    SweepOutcome.OVERDUE: "retard",
    SweepOutcome.REPEAT: "relance",
    SweepOutcome.RESUMED: "reprise automatique",
    SweepOutcome.NOOP: "sans effet",
}
VALUES: dict[str, dict[str, str]] = {
    # the values of the workflows' choice fields, by field name
    "source": {
        "hospital": "un établissement",
        "ght": "stock du GHT",
        "region": "stock régional",
        "national": "stock national",
    },
    "means": {"road": "route", "rail": "train", "air": "avion (EVASAN)", "sea": "bateau"},
    "care": {
        "reanimation": "réanimation",
        "soins_critiques": "soins critiques",
        "medecine": "médecine",
        "ssr": "SSR",
    },
    "item": {
        "surgical_mask": "masques chirurgicaux",
        "ffp2_mask": "masques FFP2",
        "gown": "surblouses",
        "apron": "tabliers",
        "gloves": "gants",
        "cap": "charlottes",
        "goggles": "lunettes de protection",
    },
    "mode": {"VV": "veino-veineuse (VV)", "VA": "veino-artérielle (VA)"},
    "bed_category": {
        "reanimation": "réanimation",
        "surveillance_continue": "surveillance continue",
        "medecine": "médecine",
        "ssr": "soins de suite et de réadaptation (SSR)",
    },
    "protected_category": {  # seed 001 l.95-101: patients whose care must be kept
        "none": "aucune",
        "cancer": "patient atteint d'un cancer",
        "transplant": "patient en attente de greffe",
        "chronic": "patient suivi pour une maladie chronique",
        "urgent": "soins urgents",
        "urgent_care": "soins urgents",
        "minor": "patient mineur",
        "mental_health": "santé mentale (mineur avec handicap psychique)",
        "screening": "dépistage ou diagnostic",
    },
}

# -- notices ------------------------------------------------------------------------------
# What a notice calls a field when the workflow gives it no label of its own, and the unit
# its quantity is counted in (``notifications.outbox`` prints "5 000 masques FFP2").
NOTICE_FIELDS: dict[str, str] = {
    "patient_ref": "Référence pseudonyme du patient",
    "mode": "Type d'ECMO",
    "covid": "Patient Covid",
    "consoles_needed": "Consoles nécessaires",
    "circuits_needed": "Circuits nécessaires",
    "local_options": "Solutions locales envisagées",
    "time_to_rupture": "Délai avant rupture de prise en charge",
    "summary": "Éléments utiles",
    "source": "Origine",
    "lender": "Établissement prêteur",
    "provider": "Établissement ou stock prêteur",
    "return_by": "Retour du prêt au plus tard le",
    "care": "Niveau de soins requis",
    "bed_category": "Catégorie de lit",
    "loss_of_chance": "Perte de chance",
    "protected_category": "Catégorie protégée",
    "receiving_hospital": "Établissement d'accueil",
    "means": "Vecteur",
    "date": "Date du transfert",
    "item": "Article",
    "quantity": "Quantité",
    "quantity_received": "Quantité reçue",
    "expected_delivery": "Livraison attendue le",
    "delivery_address": "Adresse de livraison",
    "lines": "Articles demandés",
    "stock_on_hand": "stock disponible",
    "weekly_consumption": "consommation hebdomadaire",
}
# The unit a count is given in, by field name (a PPE item is counted in its own unit).
NOTICE_UNITS: dict[str, tuple[str, str]] = {  # (singular, plural)
    "consoles_needed": ("console", "consoles"),
    "circuits_needed": ("circuit", "circuits"),
}
ITEM_UNITS: dict[str, tuple[str, str]] = {
    "surgical_mask": ("masque chirurgical", "masques chirurgicaux"),
    "ffp2_mask": ("masque FFP2", "masques FFP2"),
    "gown": ("surblouse", "surblouses"),
    "apron": ("tablier", "tabliers"),
    "gloves": ("paire de gants", "paires de gants"),
    "cap": ("charlotte", "charlottes"),
    "goggles": ("paire de lunettes de protection", "paires de lunettes de protection"),
}
# The levels a notice names when the directory has no organisation for them.
LEVELS: dict[str, str] = {
    "establishment": "l'établissement demandeur",
    "ght": "le GHT",
    "umac": "l'UMAC de la zone",
    "ars": "l'ARS",
    "ars_zone": "l'ARS de zone",
    "ccs": "le Centre de crise sanitaire",
    "spf": "Santé publique France",
    "sfctcv": "le référent SFCTCV",
}


def value_label(field: str, value: object) -> str:
    """A field value as a regulator reads it: the French label of a choice, else the value."""
    if isinstance(value, bool):
        return "oui" if value else "non"
    return VALUES.get(field, {}).get(str(value), str(value))
