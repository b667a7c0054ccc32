"""The French catalogue: each typed error (its ``why`` and parameters) in the desk's words.

Engine errors carry a class (``code``), a precise key (``why``) and typed parameters
(``data``); the English ``message`` is the CLI's and the API's wording. The desk renders the
same errors from this catalogue and never reads an error's English text. An error whose key is
not here is shown by its class's French title, then the engine's detail.
"""

from __future__ import annotations

from engine.errors import RegulError
from workflows.labels import LINE_COLUMNS, ROLES, SCOPES, TRIGGERS, value_label

__all__ = ["FRENCH", "SESSION_ENDS", "TITLES", "french", "french_why"]

# PPE stocks (resources.ppe): reports, files, movements. Nothing is recorded on any of them.
PPE_FRENCH: dict[str, str] = {
    "ppe_unknown_item": "Article inconnu : {item}. Rien n'a été enregistré.",
    "ppe_report_parent": "Ce sous-type se déclare sous son article ({parent}).",
    "ppe_unknown_unit": "Unité inconnue : écrivez pièces ou boîtes. Rien n'a été enregistré.",
    "ppe_no_boxes": "Cet article se compte en pièces, pas en boîtes. Rien n'a été enregistré.",
    "ppe_missing": "Une valeur manque ({what}). Rien n'a été enregistré.",
    "ppe_not_a_number": "{what} n'est pas un nombre entier. Rien n'a été enregistré.",
    "ppe_out_of_range": "{what} doit être compris entre 0 et 1 000 000 000.",
    "ppe_no_lines": "Le relevé n'a aucune ligne. Rien n'a été enregistré.",
    "ppe_item_twice": "Un article figure deux fois dans le relevé. Rien n'a été enregistré.",
    "ppe_attested_as": "Le relevé est attesté par le directeur ou un délégué.",
    "ppe_unknown_establishment": "Établissement inconnu : {org}. Rien n'a été enregistré.",
    "ppe_not_an_establishment": "{org} n'est pas un établissement. Rien n'a été enregistré.",
    "ppe_not_yours": (
        "Action non permise : la structure {org} ne relève pas de votre périmètre. Rien n'a "
        "été enregistré."
    ),
    "ppe_file_lines": (
        "Le fichier a {count} ligne(s) erronée(s) ; rien n'a été enregistré. Corrigez-les puis "
        "déposez de nouveau le fichier entier :\n{errors}"
    ),
    "ppe_file_columns": "Ligne {line} : colonnes manquantes ({columns}). Rien n'a été enregistré.",
    "ppe_file_encoding": "Le fichier n'est pas en UTF-8 : enregistrez-le en CSV UTF-8 ou en XLSX.",
    "ppe_file_xlsx": "Le fichier n'est pas un classeur XLSX lisible.",
    "ppe_file_too_long": "Le fichier dépasse {limit} lignes : découpez-le.",
    "ppe_quantity": "La quantité est un nombre positif de pièces. Rien n'a été enregistré.",
    "ppe_choice": "{what} : valeur « {value} » inconnue ({allowed}). Rien n'a été enregistré.",
    "ppe_not_a_member": "{org} n'est pas un établissement desservi par {ght}.",
    "ppe_unknown_holder": "Structure inconnue : {org}. Rien n'a été enregistré.",
    "ppe_no_delivery": "Aucune livraison n°{delivery} n'attend de réception chez {org}.",
    "ppe_received_more": "{received} pièces reçues pour {shipped} expédiées : vérifiez.",
    "ppe_seed_loaded": "Les livraisons d'Occitanie de mars 2020 sont déjà chargées.",
    "not_enough": (
        "Stock insuffisant : {holder} détient {have} pièces, {asked} demandées. Rien n'a été "
        "enregistré."
    ),
}

FRENCH: dict[str, str] = {
    "no_case": (
        "Dossier introuvable : la référence n'existe pas ou ne relève pas de votre périmètre."
    ),
    "not_found": (
        "Dossier introuvable : la référence n'existe pas ou ne relève pas de votre périmètre."
    ),
    "stale_version": (
        "Le dossier a été modifié depuis que vous l'avez ouvert : relisez-le ci-dessous puis "
        "décidez à nouveau. Rien n'a été enregistré."
    ),
    "trigger_not_allowed": (
        "Cette action n'est pas possible dans l'état actuel du dossier. Rien n'a été enregistré."
    ),
    "reason_required": "Un motif est obligatoire : dites pourquoi, en une phrase.",
    "reason_too_long": "Le motif dépasse {limit} caractères : raccourcissez-le.",
    "missing_field": "Le champ « {label} » est obligatoire.",
    "wrong_level": (
        "Action non permise (refus consigné au journal) : le dossier est au niveau {level}, "
        "pas au vôtre."
    ),
    "role_may_not_fire": (
        "Action non permise (refus consigné au journal) : votre rôle ne permet pas cette action "
        "dans cet état."
    ),
    "not_a_regulator": (
        "Action non permise (refus consigné au journal) : seuls les régulateurs du niveau qui "
        "tient le dossier gèrent son échéance."
    ),
    "case_closed": "Le dossier est clos : il n'a plus d'échéance.",
    "already_on_hold": "Le dossier est déjà suspendu : reprenez-le d'abord.",
    "not_on_hold": "Le dossier n'est pas suspendu.",
    "on_hold": "Le dossier est suspendu : reprenez-le avant de prolonger l'échéance.",
    "no_deadline_to_extend": "Le dossier n'a pas d'échéance en cours à prolonger.",
    "extension_not_positive": "La prolongation doit être positive, par exemple 30m ou 2h.",
    "not_a_hospital": (
        "{org} n'est pas un établissement de santé : une demande s'ouvre pour un établissement."
    ),
    "hospital_outside_scope": (
        "Action non permise (refus consigné au journal) : l'établissement {org} ne relève pas "
        "de votre périmètre."
    ),
    "role_may_not_open": (
        "Action non permise (refus consigné au journal) : votre rôle ne peut pas ouvrir ce "
        "type de demande."
    ),
    # the directory (regul init --directory): the file and line, and nothing changed
    "directory_missing": "Annuaire introuvable : {path} n'existe pas. Rien n'a été modifié.",
    "directory_file_missing": (
        "Annuaire incomplet : le fichier {path} manque. Rien n'a été modifié."
    ),
    "directory_not_utf8": (
        "Annuaire illisible : {path} n'est pas en UTF-8 ; enregistrez-le en « CSV UTF-8 ». "
        "Rien n'a été modifié."
    ),
    "directory_not_csv": (
        "Annuaire illisible : {path} n'est pas un fichier CSV. Rien n'a été modifié."
    ),
    "directory_empty": "Annuaire vide : {path} ne contient rien. Rien n'a été modifié.",
    "directory_columns": (
        "Annuaire refusé : les colonnes de {path} ne sont pas celles attendues. "
        "Rien n'a été modifié."
    ),
    "directory_row_cells": (
        "Annuaire refusé : {path}, ligne {line} : la ligne n'a pas autant de cellules que "
        "d'en-têtes. Rien n'a été modifié."
    ),
    "directory_control_character": (
        "Annuaire refusé : {path}, ligne {line} : une cellule contient un saut de ligne ou un "
        "caractère de contrôle. Rien n'a été modifié."
    ),
    "directory_row": (
        "Annuaire refusé : {path}, ligne {line} : une valeur est invalide ou renvoie à une "
        "entrée inconnue. Rien n'a été modifié."
    ),
    "init_demo_and_directory": "Choisissez --demo ou --directory, pas les deux.",
    # the ECMO doctrine and the limits of controls (engine.policy, engine.decisions)
    "national_stock_reserved": (
        "Action non permise (refus consigné au journal) : le stock national de consoles ECMO "
        "n'est mobilisé que par le centre de crise sanitaire, au niveau national."
    ),
    "lender_outside_scope": (
        "Action non permise (refus consigné au journal) : l'établissement prêteur {lender} est "
        "hors de votre périmètre ({scope})."
    ),
    "not_the_lender": (
        "Action non permise (refus consigné au journal) : seul le prêteur de la console "
        "(l'établissement prêteur, ou le centre de crise sanitaire pour le stock national) peut "
        "prolonger le prêt ou confirmer la restitution."
    ),
    "not_the_receiver": (
        "Action non permise (refus consigné au journal) : seul l'établissement d'accueil auquel "
        "le patient est proposé peut accepter ou décliner la proposition."
    ),
    "extension_too_long": (
        "Action non permise (refus consigné au journal) : une prolongation ne dépasse pas "
        "{limit} h à la fois."
    ),
    "unknown_lender": (
        "L'établissement prêteur {lender} n'est pas dans l'annuaire : indiquez son numéro "
        "FINESS. Rien n'a été enregistré."
    ),
    "lender_with_national_stock": (
        "Une console du stock national n'a pas d'établissement prêteur : laissez ce champ vide. "
        "Rien n'a été enregistré."
    ),
    "return_date_past": (
        "La date de retour du prêt est passée : indiquez la date à laquelle la console doit "
        "revenir. Rien n'a été enregistré."
    ),
    "loan_not_extended": (
        "Le prêt court jusqu'au {current} : une prolongation donne une date postérieure. Rien "
        "n'a été enregistré."
    ),
    **PPE_FRENCH,
    # critical-care capacity (issue 13, resources.beds)
    "armed_over_installed": (
        "{category} : {armed} lits armés pour {installed} lits installés. Rien n'a été enregistré."
    ),
    "occupied_over_armed": (
        "{category} : {used} lits occupés ou réservés Covid pour {armed} lits armés. "
        "Rien n'a été enregistré."
    ),
    "reserved_over_armed": (
        "{category} : {reserved} lit(s) réservé(s) pour des transferts acceptés ne tiennent "
        "plus dans les {armed} lits armés. Rien n'a été enregistré."
    ),
    "bad_bed_count": "« {value} » n'est pas un nombre de lits valable. Rien n'a été enregistré.",
    "bad_bed_category": "Catégorie de lits inconnue : « {category} ».",
    "no_bed_category": "Indiquez les lits d'au moins une catégorie.",
    "unknown_tier": (
        "Le palier {tier} n'existe pas dans le plan capacitaire de l'établissement "
        "(paliers déclarés : {tiers})."
    ),
    "bad_plan_blanc": "Niveau de plan blanc {level} : 0, 1 ou 2.",
    "bad_tier": "Palier « {tier} » : un palier va de 1 à 9.",
    "no_tier": "Un plan capacitaire déclare au moins un palier.",
    "no_activity": "Indiquez au moins une activité déprogrammée, avec son ampleur.",
    "bad_extent": "{activity} : l'ampleur « {extent} » est un pourcentage de 1 à 100.",
    "cell_not_collegial": (
        "La décision est collégiale : nommez au moins deux membres de la cellule de "
        "programmation/déprogrammation."
    ),
    "bad_protected": "Catégorie protégée inconnue : « {category} ».",
    "no_deprogramming": "Aucune décision de déprogrammation n° {decision} pour cet établissement.",
    "already_reversed": "La déprogrammation n° {decision} est déjà levée.",
    "establishment_outside_scope": (
        "Établissement {org} introuvable dans votre périmètre. Rien n'a été enregistré."
    ),
    "not_an_establishment": "{org} n'est pas un établissement de santé.",
    "not_the_ars": "Seule l'ARS de la région {region} fixe ses cibles capacitaires.",
    "bad_capacity_file": "Le fichier est refusé, rien n'a été enregistré :",
    "no_bed_available": (
        "L'établissement {org} ne déclare aucun lit disponible dans cette catégorie : choisissez "
        "un établissement qui en a un (liste des lits disponibles), ou motivez la proposition "
        "sans lit (« Motif de proposition sans lit disponible déclaré »)."
    ),
    "mission_national_only": (
        "Une mission EVASAN est organisée par le niveau national (CCS) seulement."
    ),
}
# The ECMO fleet (issue 11): consoles, circuits, the weekly inventory and its import.
FRENCH.update(
    {
        "no_console_named": (
            "Indiquez les consoles attribuées (leurs numéros de série) : la liste des consoles "
            "disponibles de votre périmètre figure sur la page du parc ECMO. Rien n'a été "
            "enregistré."
        ),
        "unknown_console": (
            "La console {serial} n'est pas dans le parc ECMO : vérifiez son numéro de série. "
            "Rien n'a été enregistré."
        ),
        "console_not_at_lender": (
            "La console {serial} appartient à {owner}, pas au prêteur {lender} : choisissez une "
            "console du prêteur. Rien n'a été enregistré."
        ),
        "console_not_available": (
            "La console {serial} n'est pas disponible (elle est {status}) : choisissez-en une "
            "autre. Rien n'a été enregistré."
        ),
        "bad_serial": (
            "Le numéro de série « {serial} » n'est pas valide : lettres, chiffres, « . », « _ », "
            "« / » ou « - », 40 caractères au plus."
        ),
        "console_exists": "La console {serial} figure déjà au parc (chez {owner}).",
        "bad_console": "Une console a un numéro de série et un modèle (80 caractères au plus).",
        "bad_console_owner": (
            "{holder} n'est pas un établissement de santé : une console appartient à un "
            "établissement ou au stock national (CCS)."
        ),
        "bad_console_status": (
            "Ce statut ne se choisit pas à la main : disponible, en service ou en maintenance."
        ),
        "console_on_loan": (
            "La console {serial} est {status} : elle suit son dossier ECMO (restitution). Rien "
            "n'a été enregistré."
        ),
        "bad_circuits": (
            "Indiquez un nombre de circuits reçus (par exemple 10) ou retirés (par exemple -2)."
        ),
        "unknown_holder": "{holder} n'est pas dans l'annuaire : vérifiez le numéro FINESS.",
        "fleet_not_yours": (
            "Action non permise : le parc ECMO de {name} ne relève pas de votre périmètre. Rien "
            "n'a été enregistré."
        ),
        "unknown_figure": "Rubrique « {figure} » inconnue : l'inventaire donne {expected}.",
        "bad_figure": (
            "La rubrique « {figure} » de l'inventaire est un nombre entier positif ou nul (reçu "
            "« {value} »)."
        ),
        "import_errors": (
            "Import refusé : {count} ligne(s) en erreur, rien n'a été enregistré. {details}"
        ),
        "bad_import_file": "Fichier illisible : {detail}. Rien n'a été enregistré.",
    }
)
# The request data and resolutions of the doctrine (issue 10): patient references, PPE lines,
# reserved stocks, receiving establishments and means of transfer.
FRENCH.update(
    {
        "bad_reference": (
            "La référence patient n'est pas une référence pseudonyme : 4 à 32 lettres, chiffres "
            "ou tirets, dont au moins un chiffre (par exemple PAT-0042), jamais le nom du "
            "patient. Rien n'a été enregistré."
        ),
        "reference_looks_like_name": (
            "La référence patient ressemble à un nom (deux mots de lettres accolés, comme "
            "« Jean-Dupont ») : saisissez la référence pseudonyme attribuée par "
            "l'établissement (par exemple PAT-0042), jamais le nom du patient. Rien n'a été "
            "enregistré."
        ),
        "lines_not_a_list": (
            "Les lignes de la demande sont illisibles : donnez pour chaque article la quantité "
            "demandée, le stock disponible et la consommation hebdomadaire."
        ),
        "lines_empty": "La demande doit comporter au moins une ligne (article et quantité).",
        "lines_too_many": "La demande comporte trop de lignes : {limit} au plus.",
        "line_not_an_object": "La ligne {line} de la demande est illisible.",
        "line_unknown_column": "La ligne {line} comporte une colonne inconnue ({column}).",
        "line_missing": "Ligne {line} : le champ « {column} » est obligatoire.",
        "line_bad_value": (
            "Ligne {line} : la valeur du champ « {column} » est invalide (un nombre entier, "
            "positif pour la quantité demandée)."
        ),
        "line_item_twice": (
            "Ligne {line} : l'article {item} figure déjà sur une ligne précédente ; une seule "
            "ligne par article."
        ),
        "unknown_establishment": (
            "{org} n'est pas un établissement de santé de l'annuaire : donnez le numéro FINESS "
            "d'un établissement connu (champ « {label} »). Rien n'a été enregistré."
        ),
        "means_unfit": (
            "Le vecteur « {means} » ne permet pas ce transfert vers {org} : pas de route ni de "
            "train vers ou depuis l'outre-mer (ou entre deux territoires séparés par la mer) ; "
            "choisissez l'avion ou le bateau. Rien n'a été enregistré."
        ),
        "value_reserved": (
            "Action non permise (refus consigné au journal) : « {value} » ne relève pas de "
            "votre niveau ({role})."
        ),
        "unknown_region": "{region} n'est pas un code de région (par exemple OCC, IDF, GUA).",
        "unknown_panel": "Aucun tableau « {panel} » dans la situation.",
        "receiving_outside_scope": (
            "Action non permise (refus consigné au journal) : l'établissement d'accueil {org} "
            "est hors de votre périmètre ; escaladez pour qu'un niveau supérieur cherche un lit "
            "plus loin."
        ),
    }
)
# Refusals the desk's users do not meet as a message of their own (an outsider gets 'no case',
# a regulator on the audit pages a 403) but that the auditor's page explains.
FRENCH.update(
    {
        "outside_scope": (
            "Action non permise (refus consigné au journal) : le dossier est hors du périmètre "
            "de {login} ({scope})."
        ),
        "not_an_auditor": (
            "Action non permise (refus consigné au journal) : seuls les auditeurs consultent le "
            "journal d'audit."
        ),
        "regional_auditor_whole_log": (
            "Action non permise (refus consigné au journal) : un auditeur régional vérifie un "
            "dossier à la fois ; indiquez une référence de dossier."
        ),
        "system_fires_deadlines": (
            "Action non permise (refus consigné au journal) : l'échéancier ne déclenche que les "
            "échéances."
        ),
        "not_permitted": "Action non permise (refus consigné au journal).",
    }
)
SESSION_ENDS: dict[str, str] = {  # an Unauthenticated error's key → the login page's message code
    "wrong_login": "wrong_login",
    "session_idle": "inactivity",
    "session_max": "max_length",
    "login_required": "login",
}
TITLES: dict[str, str] = {
    "not_permitted": "Action non permise (refus consigné au journal)",
    "invalid_input": "Saisie invalide",
    "conflict": "Conflit",
    "storage": "Base de données indisponible",
}


def french(exc: RegulError) -> str:
    """The desk's French wording of ``exc``, from its key and parameters."""
    found = french_why(exc.why, exc.data) or french_why(exc.code, exc.data)
    if found is not None:
        return found
    return f"{TITLES.get(exc.code, 'Erreur')} : {exc.message}"


def french_why(why: str, data: dict[str, object]) -> str | None:
    """The French wording of the key ``why`` with its parameters; None for an unknown key
    (a refused event of the audit log carries the same key and parameters as its error)."""
    template = FRENCH.get(why)
    if template is None:
        return None
    try:
        return template.format(**_in_french(data))
    except (KeyError, IndexError, ValueError):
        return template


def _in_french(data: dict[str, object]) -> dict[str, object]:
    """An error's parameters with their codes in French (a column, an item, a means, a role,
    a reserved value)."""
    out = {k: v for k, v in data.items() if isinstance(k, str)}
    if "column" in out:
        out["column"] = LINE_COLUMNS.get(str(out["column"]), out["column"])
    for name in ("item", "means"):
        if name in out:
            out[name] = value_label(name, out[name])
    if "value" in out and "field" in out:
        out["value"] = value_label(str(out["field"]), out["value"])
    for name in ("role", "level"):
        if name in out:
            out[name] = ROLES.get(str(out[name]), out[name])
    if "trigger" in out:
        out["trigger"] = TRIGGERS.get(str(out["trigger"]), out["trigger"])
    if "scope" in out:  # "region OCC" → "région OCC"
        kind, _, code = str(out["scope"]).partition(" ")
        out["scope"] = f"{SCOPES.get(kind, kind)} {code}".strip()
    return out
