"""The French of the notices: articles before an organisation's name, letterheads, signatures.

Pure functions with no dependency, used by the outbox (the OBJET, gathered in the transaction)
and by the renderer (as Jinja filters, when a notice is rendered from its stored facts):
« du CHU de Toulouse », « à l'ARS Occitanie », « par Santé publique France ».
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "CLOSING",
    "MINISTRY",
    "SERIES_TITLES",
    "capital",
    "letterhead",
    "of",
    "signature",
    "the",
    "to",
]

SERIES_TITLES = {
    "MARS": "Message d'Alerte Rapide Sanitaire",
    "MINSANTE": "Message du ministère aux agences régionales de santé",
}
MINISTRY = (
    "MINISTÈRE DES SOLIDARITÉS ET DE LA SANTÉ",
    "DIRECTION GÉNÉRALE DE LA SANTÉ",
    "CENTRE DE CRISE SANITAIRE",
)
CLOSING = "Nous vous remercions de votre mobilisation."
# The line above an issuer's name in its letterhead, and who signs for it.
_HEADINGS = {
    "ars": "AGENCE RÉGIONALE DE SANTÉ",
    "ars_zone": "AGENCE RÉGIONALE DE SANTÉ DE ZONE DE DÉFENSE ET DE SÉCURITÉ",
    "umac": "UNITÉ MOBILE D'ASSISTANCE CIRCULATOIRE",
    "ght": "GROUPEMENT HOSPITALIER DE TERRITOIRE",
    "hospital": "ÉTABLISSEMENT DE SANTÉ",
    "spf": "AGENCE NATIONALE DE SANTÉ PUBLIQUE",
    "sfctcv": "SOCIÉTÉ FRANÇAISE DE CHIRURGIE THORACIQUE ET CARDIO-VASCULAIRE",
}
_SIGNERS = {
    "ccs": "Pour le ministre et par délégation,",
    "ars": "Pour le directeur général de l'agence et par délégation,",
    "ars_zone": "Pour le directeur général de l'agence et par délégation,",
    "spf": "Pour la directrice générale et par délégation,",
    "umac": "Le médecin responsable,",
    "sfctcv": "Le référent,",
}

_MASCULINE = {"CH", "CHU", "CHI", "CHIC", "CHR", "CHRU", "GHT", "Centre", "Groupe", "Groupement"}
_MASCULINE |= {"Référent", "Service", "SAMU", "Conseil", "Pôle"}
_PLURAL = {"Hospices", "Hôpitaux", "Établissements"}
_FEMININE = {"Clinique", "Polyclinique", "Maison", "Fondation", "Société", "Délégation", "SFCTCV"}
_VOWELS = "aeiouyhàâäéèêëîïôöùûüAEIOUYHÀÂÄÉÈÊËÎÏÔÖÙÛÜ"
_FORMS = {
    "of": {"le": "du ", "l'": "de l'", "la": "de la ", "les": "des ", "": "de "},
    "to": {"le": "au ", "l'": "à l'", "la": "à la ", "les": "aux ", "": "à "},
    "the": {"le": "le ", "l'": "l'", "la": "la ", "les": "les ", "": ""},
}
_CACHE: dict[tuple[str, str], str] = {}


def _article(name: str) -> tuple[str, str]:
    """(definite article, the name without one): ("le", "CHU de Toulouse"), ("l'", "ARS …")."""
    for article in ("le ", "la ", "les ", "l'"):  # a level named in words: « le GHT »
        if name.startswith(article):
            return article.strip(), name[len(article) :]
    first = name.split(" ", 1)[0] if name else ""
    if first in _MASCULINE:
        return "le", name
    if first in _PLURAL:
        return "les", name
    if first in _FEMININE:
        return "la", name
    if first[:1] in _VOWELS and first != "Santé":
        return "l'", name
    return "", name  # Santé publique France


def _form(which: str, name: str) -> str:
    key = (which, name)
    found = _CACHE.get(key)
    if found is None:
        article, bare = _article(name)
        found = _CACHE[key] = _FORMS[which][article] + bare
    return found


def of(name: str) -> str:
    """« du CHU de Toulouse », « de l'ARS Occitanie », « de Santé publique France »."""
    return _form("of", name)


def to(name: str) -> str:
    """« au CHU de Toulouse », « à l'ARS Occitanie », « à Santé publique France »."""
    return _form("to", name)


def the(name: str) -> str:
    """« le CHU de Toulouse », « l'ARS Occitanie », « Santé publique France »."""
    return _form("the", name)


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def letterhead(issuer: Mapping[str, Any]) -> list[str]:
    """The ministry's three lines for the CCS; else the kind of body and the issuer's name."""
    if issuer["kind"] == "ccs":
        return list(MINISTRY)
    heading = _HEADINGS.get(issuer["kind"], "")
    return [line for line in (heading, str(issuer["name"]).upper()) if line]


def signature(issuer: Mapping[str, Any]) -> list[str]:
    """Who signs: by delegation for a person's act, « Message automatique … » for the sweeper's."""
    if issuer["automatic"]:
        return [f"Message automatique émis par Régul pour le compte {of(issuer['name'])}."]
    if issuer["kind"] == "ccs":
        return [_SIGNERS["ccs"], "Le Centre de crise sanitaire"]
    return [_SIGNERS.get(issuer["kind"], "Pour le directeur et par délégation,"), issuer["name"]]
