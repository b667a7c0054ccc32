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
    "LEGACY_FIELDS",
    "LEVELS",
    "LINE_COLUMNS",
    "NOTICE_FIELDS",
    "NOTICE_UNITS",
    "OPERATIONS",
    "OUTCOMES",
    "READS",
    "ROLES",
    "SCOPES",
    "TRIGGERS",
    "VALUES",
    "VIAS",
    "lines_label",
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
    "declare_return": "Déclarer le retour de la console",
    "deliver": "Livraison reçue",
    "transferred": "Patient transféré",
    "accept": "Accepter le patient",
    "decline": "Décliner la proposition",
    "withdraw": "Retirer la proposition",
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
    "user_disabled": "Compte désactivé",
    "token_issued": "Jeton d'API émis",
    "token_revoked": "Jeton d'API révoqué",
    # PPE stocks: holders' streams and the cases their alert rule opens (resources.ppe)
    "stock_report": "Relevé de stock EPI",
    "stock_alert": "Alerte de stock EPI",
    "stock_alert_notice": "Alerte de stock EPI signalée à l'ARS",
    "stock_recovered": "Stock EPI revenu au-dessus du seuil",
    "reserve_in": "Entrée en réserve",
    "reserve_out": "Sortie de réserve",
    "redistribution": "Redistribution par le GHT",
    "ppe_delivery": "Livraison d'EPI",
    "ppe_receipt": "Réception d'EPI",
    "ppe_shipment": "Expédition d'EPI",
    "national_stock_low": "Stock stratégique national sous la cible",
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
}

# -- the auditor's page: what a recorded event was about ----------------------------------
# ``data.op`` of a refused attempt, a probe of a missing case or the operator's command.
OPERATIONS: dict[str, str] = {
    "open": "ouvrir une demande",
    "advance": "faire avancer un dossier",
    "read": "consulter un dossier",
    "command": "agir sur un dossier",
    Control.HOLD: "suspendre l'échéance d'un dossier",
    Control.RESUME: "reprendre l'échéance d'un dossier",
    Control.EXTEND: "prolonger l'échéance d'un dossier",
    "read the audit log": "consulter le journal d'audit",
    "verify the audit log": "vérifier le journal d'audit",
    "verify the whole audit log": "vérifier tout le journal d'audit",
    "verify": "vérification du journal d'audit (exploitant)",
    "export": "export du journal d'audit (exploitant)",
    "checkpoint": "point de contrôle signé du journal (exploitant)",
}
# ``data.read`` of a read event: what the person read.
READS: dict[str, str] = {
    "case": "le dossier",
    "history": "le dossier et sa chronologie",
    "notices": "les messages du dossier",
    "audit export": "le journal d'audit du dossier (recherche ou export)",
    "audit verify": "le journal d'audit du dossier (vérification)",
}
# ``data.via``: the interface a read or a command came through.
VIAS: dict[str, str] = {"desk": "bureau", "api": "API", "cli": "ligne de commande"}

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
    "bed_override_reason": "Motif de proposition sans lit disponible déclaré",
    "evasan_mission": "Mission EVASAN",
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
# The request data of the doctrine (issue 10): transfer bed categories and protected patients
# (MARS N°2021_18), PPE request lines (MINSANTE N°143).
VALUES.update(
    {
        "bed_category": {
            "reanimation": "réanimation",
            "surveillance_continue": "surveillance continue",
            "medecine": "médecine",
            "ssr": "soins de suite et de réadaptation (SSR)",
        },
        "protected_category": {
            "cancer": "patient atteint d'un cancer",
            "greffe": "patient en attente de greffe",
            "maladie_chronique": "patient suivi pour une maladie chronique",
            "soins_urgents": "patient requérant des soins urgents",
            "mineur": "patient mineur",
            "sante_mentale": "prise en charge en santé mentale",
            "depistage_diagnostic": "dépistage ou diagnostic",
        },
    }
)
# Fields of cases opened before the request data of issue 10 (one PPE item and its quantity,
# a transfer's level of care): their cases stay readable.
VALUES["lines"] = VALUES["item"]  # the items of a PPE request's lines
LEGACY_FIELDS = {
    "item": "Article",
    "quantity": "Quantité demandée",
    "care": "Niveau de soins requis",
}
LINE_COLUMNS = {
    "item": "Article",
    "quantity": "Quantité demandée",
    "stock_on_hand": "Stock disponible",
    "weekly_consumption": "Consommation hebdomadaire",
}


def lines_label(lines: object) -> str:
    """PPE request lines as a regulator reads them: « masques FFP2 : 5 000 demandés (stock
    800, consommation 3 000 par semaine) ; … »."""
    if not isinstance(lines, list):
        return str(lines)
    parts = []
    for line in lines:
        if not isinstance(line, dict):
            parts.append(str(line))
            continue
        item = str(line.get("item", ""))
        parts.append(
            f"{VALUES['item'].get(item, item)} : {_n(line.get('quantity'))} demandés "
            f"(stock {_n(line.get('stock_on_hand'))}, consommation "
            f"{_n(line.get('weekly_consumption'))} par semaine)"
        )
    return " ; ".join(parts)


def _n(value: object) -> str:
    return f"{value:,}".replace(",", "\u202f") if isinstance(value, int) else str(value)


def value_label(field: str, value: object) -> str:
    """A field value as a regulator reads it: the French label of a choice, else the value."""
    if isinstance(value, bool):
        return "oui" if value else "non"
    if field == "lines" or isinstance(value, list):
        return lines_label(value)
    return VALUES.get(field, {}).get(str(value), str(value))
