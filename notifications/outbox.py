"""The outbox: a notice's facts, numbered and queued in the transaction of its event.

``Outbox`` is the unit of work's ``Notifier``: it tells the decisions which events its
workflows declare a notice for, and for each such recorded event finds the recipients in the
directory, the issuer, the series and the facts the notice states (all in French: names,
labels, Paris times). Those facts are stored with the notice (JSON); nothing is rendered in
the transaction. The unit of work (the only writer of the notice tables) takes the next number
of the series and year at commit (a counter row updated in the same transaction, so numbers
have no gaps and no duplicates, also under concurrent transitions on PostgreSQL) and inserts
the notice as ``queued``. The text and HTML are rendered once from the facts, when the
dispatcher sends the notice (``notifications.render.bodies``).

**Issuer and series.** The issuer is the organisation whose act caused the notice: the actor's
organisation (ARS Occitanie signs what ARS Occitanie decided). An automatic step (the sweeper's
escalation, reminder, incident or overdue notice) is issued for the level that holds the case
after it and says it is automatic. Only the CCS's own acts carry the ministry's letterhead and
a national series: **MARS** when an establishment is *Pour action* (``MARS N°2026_17``: year,
underscore, number without padding, restarting each year in Paris), else **MINSANTE**
(``MINSANTE N°143``: one series that never restarts). Every other issuer, and every automatic
step (the CCS's hourly incident reminders included), numbers in its organisation's own series
per year (``ARS-OCC N°2026_4``, ``ES-319900001 N°2026_2``): an hourly reminder never takes a
national number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from engine import tables
from engine.decisions import event_name
from engine.values import CaseView, Draft, HolderNotice
from engine.workflow import FieldSpec, WorkflowRegistry, WorkflowSpec
from notifications.french import of, to
from notifications.recipients import Directory, Recipient, levels_passed, resolve
from notifications.render import Rendered, Renderer
from notifications.rules import NoticeBook, NoticeRule, declares
from workflows.labels import (
    ITEM_UNITS,
    LEVELS,
    NOTICE_FIELDS,
    NOTICE_UNITS,
    value_label,
)

__all__ = [
    "NOTICE_TABLE",
    "Outbox",
    "Pending",
    "event_name",
    "format_reference",
]

NOTICE_TABLE = tables.NOTICE
PARIS = ZoneInfo("Europe/Paris")
_SECOND = timedelta(seconds=1)
NATIONAL = ("MARS", "MINSANTE")
_AUTOMATIC = {
    "escalate": "Transmission automatique : délai échu",
    "reminder": "Rappel automatique : échéance en cours",
    "repeat": "Relance automatique",
    "incident": "Incident ouvert automatiquement : délai échu au dernier niveau",
    "overdue": "Relance automatique : date dépassée",
}
_NAMED = ("lender", "receiving_hospital", "provider")  # a FINESS shown as a name
_WHAT_IS_LATE = {"ecmo": "la restitution de la console", "ppe": "la livraison"}

# The OBJET of each kind: ``{title}`` (upper case), ``{ref}``, ``{to}``/``{level}`` (the level
# holding the case, upper case). The subject is "<reference> : <objet>".
OBJETS = {
    "opened": "{title} {ref} : NOUVELLE DEMANDE À RÉGULER",
    "escalated": "{title} {ref} : TRANSMISSION {to}",
    "resolved": "{title} {ref} : SOLUTION TROUVÉE",
    "rejected": "{title} {ref} : DEMANDE NON RETENUE",
    "cancelled": "{title} {ref} : DEMANDE ANNULÉE",
    "reminder": "RAPPEL : {title} {ref} EN ATTENTE DE DÉCISION ({level})",
    "incident": "INCIDENT : {title} {ref} SANS DÉCISION AU DERNIER NIVEAU",
    "loan_overdue": "ECMO {ref} : RESTITUTION DE LA CONSOLE EN RETARD",
    "delivery_overdue": "EPI {ref} : LIVRAISON ATTENDUE NON CONFIRMÉE",
    "delivered": "EPI {ref} : LIVRAISON RÉCEPTIONNÉE",
    "transferred": "TRANSFERT {ref} : PATIENT TRANSFÉRÉ",
    "proposed": "TRANSFERT {ref} : PATIENT PROPOSÉ À VOTRE ÉTABLISSEMENT",
    "accepted": "TRANSFERT {ref} : PATIENT ACCEPTÉ PAR L'ÉTABLISSEMENT D'ACCUEIL",
    "declined": "TRANSFERT {ref} : PROPOSITION DÉCLINÉE PAR L'ÉTABLISSEMENT D'ACCUEIL",
    "withdrawn": "TRANSFERT {ref} : PROPOSITION RETIRÉE",
    "loan_started": "ECMO {ref} : CONSOLE PRÊTÉE MISE EN SERVICE",
    "loan_returned": "ECMO {ref} : CONSOLE PRÊTÉE RESTITUÉE",
    "loan_extended": "ECMO {ref} : PRÊT DE LA CONSOLE PROLONGÉ",
    "return_declared": "ECMO {ref} : RETOUR DE LA CONSOLE DÉCLARÉ",
    "closed": "{title} {ref} : DOSSIER CLÔTURÉ",
}
# The OBJET of a notice about a holder (``{holder}``: its name, upper case, and any value of
# the notice's own ``values``); the resource modules add theirs with ``holder_objet``.
HOLDER_OBJETS: dict[str, str] = {
    "report_missing": "RAPPEL : {report} ATTENDU ({period}) — {holder}",
    "report_late": "{report} NON TRANSMIS ({period}) — {holder}",
    # PPE stocks (resources.ppe.stock)
    "ppe_stock_alert": "ALERTE STOCK EPI ({week}) — {holder}",
    "ppe_stock_recovered": "STOCK EPI AU-DESSUS DU SEUIL : CONFIRMER OU ANNULER {case} — {holder}",
    "ppe_shortfall": "MANQUANT À LA RÉCEPTION D'EPI — {holder}",
    "ppe_national_low": "STOCK STRATÉGIQUE NATIONAL DE MASQUES SOUS 10 SEMAINES ({weeks})",
    # the ECMO fleet's alerts (resources.ecmo)
    "ecmo_region_empty": "ALERTE : AUCUNE CONSOLE ECMO DISPONIBLE EN RÉGION {region} — {holder}",
    "ecmo_national_empty": "ALERTE : STOCK NATIONAL DE CONSOLES ECMO ÉPUISÉ",
}
_HOLDER_NOTES = {
    "report_missing": "Rappel automatique : compte rendu attendu",
    "report_late": "Signalement automatique : compte rendu non transmis",
    "ppe_stock_alert": "Alerte automatique : stock d'EPI sous le seuil",
    "ppe_stock_recovered": "Message automatique : stock d'EPI revenu au-dessus du seuil",
    "ppe_shortfall": "Message automatique : manquant à la réception",
    "ppe_national_low": "Alerte automatique : stock stratégique national",
    "ecmo_region_empty": "Alerte automatique : parc ECMO régional épuisé",
    "ecmo_national_empty": "Alerte automatique : stock national ECMO épuisé",
}


def holder_objet(kind: str, objet: str, note: str = "") -> None:
    """Declare the OBJET (and the automatic note) of a holder notice ``kind``."""
    HOLDER_OBJETS[kind] = objet
    if note:
        _HOLDER_NOTES[kind] = note


def format_reference(series: str, year: int, number: int) -> str:
    """``MARS N°2020_113``, ``MINSANTE N°143`` (no year), ``ARS-OCC N°2026_4``."""
    if series == "MINSANTE":
        return f"MINSANTE N°{number}"
    return f"{series} N°{year}_{number}"


def counter_year(series: str, year: int) -> int:
    """The year a series' counter is kept under: MINSANTE never restarts (0)."""
    return 0 if series == "MINSANTE" else year


def message_id(series: str, year: int, number: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", series.lower()).strip("-")
    if series == "MINSANTE":
        return f"<{slug}.{number:06d}@regul.invalid>"
    return f"<{slug}.{year}.{number:06d}@regul.invalid>"


def _count(number: int) -> str:
    """5000 → « 5 000 » (a narrow no-break space, as French typography groups digits)."""
    return f"{number:,}".replace(",", "\u202f")


def _units(count: Any, unit: tuple[str, str]) -> str:
    if isinstance(count, bool) or not isinstance(count, int):
        return str(count)
    return f"{_count(count)} {unit[0] if abs(count) <= 1 else unit[1]}"


def _single_item(fields: dict[str, Any]) -> str | None:
    """The one article a PPE request is about: its ``item``, or the item of its only line."""
    if fields.get("item"):
        return str(fields["item"])
    lines = fields.get("lines")
    if (
        isinstance(lines, list)
        and len({str(x.get("item")) for x in lines if isinstance(x, dict)}) == 1
    ):
        return str(lines[0].get("item"))
    return None


class _Blank(dict[str, Any]):
    """``str.format_map`` values where a missing name reads as nothing."""

    def __missing__(self, key: str) -> str:
        return ""


def paris(instant: datetime) -> str:
    """« 22/11/2026 à 09:00 »: Paris time, to the minute."""
    t = instant.astimezone(PARIS)
    return f"{t.day:02d}/{t.month:02d}/{t.year} à {t.hour:02d}:{t.minute:02d}"


def _day(due: datetime) -> str:
    """The calendar day a deadline belongs to: one due at midnight ends the day before."""
    t = (due - _SECOND).astimezone(PARIS)
    return f"{t.day:02d}/{t.month:02d}/{t.year}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return "moins d'une minute"
    minutes = max(round(seconds / 60), 0)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} j"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if minutes or not parts:
        parts.append(f"{minutes} min")
    return " ".join(parts)


# -- the notice's facts -----------------------------------------------------------------------


@dataclass
class Pending:
    """A notice's facts waiting for its number (``engine.unit_of_work.PendingNotice``).

    ``series`` and ``year`` key the counter row (``year`` 0 for MINSANTE); ``issued`` is the
    year the notice is dated (Paris).
    """

    series: str
    year: int
    issued: int
    objet: str
    facts: dict[str, Any]
    values: dict[str, Any]

    def row(self, number: int) -> dict[str, Any]:
        reference = format_reference(self.series, self.issued, number)
        return {
            **self.values,
            "reference": reference,
            "series": self.series,
            "year": self.issued,
            "number": number,
            "message_id": message_id(self.series, self.issued, number),
            "subject": f"{reference} : {self.objet}",
            "body_text": "",  # rendered once from the facts, at dispatch
            "body_html": "",
            "facts": self.facts,
        }


@dataclass(frozen=True)
class Issuer:
    org: str
    name: str
    kind: str
    automatic: bool

    @property
    def national(self) -> bool:
        return self.kind == "ccs" and not self.automatic


class Outbox:
    """Queues the notices a workflow declares, in the event's own transaction."""

    def __init__(
        self,
        registry: WorkflowRegistry,
        books: dict[str, NoticeBook],
        *,
        channel_for: Callable[[str], str] = lambda _org: "eml",
        renderer: Renderer | None = None,
    ) -> None:
        self.registry, self.books, self.channel_for = registry, books, channel_for
        self._renderer = renderer
        self.directory = Directory()
        # per workflow: its opening fields by name and in order (the request's rows); per
        # (workflow, trigger): the trigger's fields by name. Workflows do not change in a process.
        self._open_specs: dict[str, tuple[dict[str, FieldSpec], list[str]]] = {}
        self._trigger_specs: dict[tuple[str, Any], dict[str, FieldSpec]] = {}
        self._state_levels: dict[str, dict[str, str | None]] = {}

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = Renderer()
        return self._renderer

    def declares(self, kind: str, event: str) -> bool:
        """Does workflow ``kind`` declare a notice for ``event``? (asked by the decisions)"""
        return declares(self.books, kind, event)

    def prepare(
        self, conn: Connection, case: CaseView, draft: Draft, seq: int, now: datetime
    ) -> Pending | None:
        """The facts of an event's notice, to be numbered and inserted at commit.

        The unit of work numbers the pending notices of a transaction in one global order
        (series, year) just before commit: the counter row, which serialises a series, is
        locked for as short a time as it can be, and never in an order that could deadlock.
        """
        book = self.books.get(case.kind)
        rule = book.rule(event_name(draft)) if book and draft.action != "refused" else None
        if book is None or rule is None:
            return None
        series, facts, recipients = self.facts(conn, case, draft, rule, now)
        action = recipients["action"]
        channel = self.channel_for(action[0]["org"]) if action else "eml"
        issued = now.astimezone(PARIS).year
        return Pending(
            series,
            counter_year(series, issued),
            issued,
            facts["objet"],
            facts,
            {
                "kind": rule.kind,
                "case_id": case.id,
                "event_seq": seq,
                "stream": None,
                "channel": channel,
                "recipients": recipients,  # also what the template's Pour action lists
                "status": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": "",
                "created_at": now,
            },
        )

    def prepare_holder(
        self,
        conn: Connection,
        holder: str,
        draft: Draft,
        seq: int,
        notice: HolderNotice,
        now: datetime,
    ) -> Pending | None:
        """The facts of a notice about a holder (a missing report, an alert), no case.

        Recipient tokens are resolved around the holder: ``holder``, ``ars`` (its region's),
        ``ars_zone`` and ``umac`` (its zone's), ``ght``, ``sfctcv`` (its region's, else the
        national one), ``ccs``, ``spf``, or an organisation id. An automatic notice is issued
        for the notice's ``issuer`` token (the ARS that expects the report; the CCS if there is
        none), a person's for their organisation.
        """
        self.directory.load(conn)
        row = self.directory.find(holder)
        if row is None:
            return None
        action = self._holder_recipients(row, notice.action)
        info = [r for r in self._holder_recipients(row, notice.info) if r not in action]
        if not action:
            return None
        automatic = draft.role == "system" or draft.actor == "system"
        issuer_row = None if automatic else self.directory.find(draft.org)
        if issuer_row is not None:
            issuer = Issuer(issuer_row.id, issuer_row.name, issuer_row.kind, False)
        else:
            found = self._holder_recipients(row, (notice.issuer, "ccs"))
            first = found[0] if found else action[0]
            issuer = Issuer(first.org, first.name, first.kind, True)
        series = self._series(issuer, action)
        values = {str(k): v for k, v in notice.values.items()}
        upper = {k: v.upper() for k, v in values.items() if isinstance(v, str)}
        objet = HOLDER_OBJETS.get(notice.kind, "{holder}").format_map(
            _Blank({**upper, "holder": row.name.upper()})
        )
        at = paris(now)
        rows = [["Structure", f"{row.name} (FINESS {row.id})" if row.kind == "hospital"
                 else row.name]]  # fmt: skip
        if row.region:
            rows.append(["Région", self.directory.region_name(row.region)])
        rows += [[str(label), str(value)] for label, value in values.get("rows", [])]
        case = draft.data.get("case")  # the case the event is about, when there is one
        if case and not any(label == "Dossier" for label, _value in rows):
            rows.append(["Dossier", str(case)])
        facts = {
            "series": series,
            "national": issuer.national,
            "issuer": {
                "org": issuer.org,
                "name": issuer.name,
                "kind": issuer.kind,
                "automatic": issuer.automatic,
                "note": _HOLDER_NOTES.get(notice.kind, "Message automatique")
                if issuer.automatic
                else "",
            },
            "date": at[:10],
            "objet": objet,
            "case": None,
            "holder": {
                "name": row.name,
                "finess": row.id,
                "kind": row.kind,
                "region": self.directory.region_name(row.region) if row.region else "",
            },
            "holder_rows": rows,
            "values": values,
            "event": {
                "reason": draft.reason,
                "by_system": issuer.automatic,
                "actor": issuer.name,
                "at": at,
            },
        }
        recipients = {"action": [r.to_dict() for r in action], "info": [r.to_dict() for r in info]}
        issued = now.astimezone(PARIS).year
        return Pending(
            series,
            counter_year(series, issued),
            issued,
            objet,
            facts,
            {
                "kind": notice.kind,
                "case_id": None,
                "event_seq": seq,
                "stream": f"holder:{holder}",
                "channel": self.channel_for(action[0].org),
                "recipients": recipients,
                "status": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": "",
                "created_at": now,
            },
        )

    def _holder_recipients(self, row: Any, tokens: tuple[str, ...]) -> list[Recipient]:
        found: list[Recipient] = []
        d = self.directory
        for token in tokens:
            if token == "holder":
                got = [d.recipient(row.id)]
            elif token in ("ars", "sfctcv"):
                got = [d.first(token, "region", row.region) if row.region else None]
                if token == "sfctcv" and got[0] is None:
                    got = [d.national("sfctcv")]
            elif token in ("ars_zone", "umac"):
                got = [d.first(token, "zone", row.zone) if row.zone else None]
            elif token == "ght":
                got = [d.recipient(row.ght) if row.ght else None]
            elif token in ("ccs", "spf"):
                got = [d.national(token) or d.first(token, None, None)]
            else:
                got = [d.recipient(token)]
            found += [r for r in got if r is not None and r not in found]
        return found

    def compose(
        self,
        conn: Connection,
        case: CaseView,
        draft: Draft,
        rule: NoticeRule,
        now: datetime,
        *,
        reference: str,
        message_id: str,
    ) -> tuple[Rendered, list[dict[str, str]], list[dict[str, str]]]:
        """Render a notice now (``regul notices preview``, which queues nothing)."""
        _series, facts, recipients = self.facts(conn, case, draft, rule, now)
        context = {**facts, "reference": reference, "message_id": message_id}
        context.update(pour_action=recipients["action"], pour_information=recipients["info"])
        rendered = self.renderer.render(rule.kind, context)
        return rendered, recipients["action"], recipients["info"]

    def facts(
        self, conn: Connection, case: CaseView, draft: Draft, rule: NoticeRule, now: datetime
    ) -> tuple[str, dict[str, Any], dict[str, list[dict[str, str]]]]:
        """(series, facts, recipients): everything the notice says, in French, as JSON-able
        values, and its *Pour action* / *Pour information* (the notice's ``recipients``)."""
        self.directory.load(conn)
        spec = self.registry[case.kind]
        previous = spec.state(draft.from_state).level if draft.from_state else None
        wants = rule.action + rule.info  # the audit log is read only for a rule that needs it
        passed = (
            levels_passed(conn, spec, case.id, self._level_of(spec))
            if case.id and "passed" in wants
            else []
        )
        action, info = resolve(
            self.directory, rule, case, previous=previous, passed=passed, spec=spec,
            before=draft.from_state,
        )  # fmt: skip
        issuer = self._issuer(case, draft)
        if not issuer.automatic and any(r.org != issuer.org for r in action):
            # who decided is not asked to act on its own decision: it keeps a copy
            mine = [r for r in action if r.org == issuer.org]
            action = [r for r in action if r.org != issuer.org]
            info = [*mine, *info]
        series = self._series(issuer, action)
        facts = self._facts(case, draft, rule, now, previous, issuer, series, spec)
        recipients = {"action": [r.to_dict() for r in action], "info": [r.to_dict() for r in info]}
        return series, facts, recipients

    # -- issuer and series ------------------------------------------------------------------

    def _issuer(self, case: CaseView, draft: Draft) -> Issuer:
        automatic = draft.role == "system" or draft.actor == "system"
        if not automatic:
            row = self.directory.find(draft.org)
            if row is not None:
                return Issuer(row.id, row.name, row.kind, False)
        # an automatic step is issued for the level that holds the case after it
        holder = self.directory.level_org(case.level, case) if case.level else None
        found = holder or self.directory.first("ccs", None, None)
        if found is None:  # a directory without a CCS: the requesting hospital
            found = self.directory.level_org("establishment", case)
        assert found is not None, f"no organisation to issue a notice of {case.reference}"
        return Issuer(found.org, found.name, found.kind, True)

    @staticmethod
    def _series(issuer: Issuer, action: list[Recipient]) -> str:
        if issuer.national:
            return "MARS" if any(r.kind == "hospital" for r in action) else "MINSANTE"
        return f"ES-{issuer.org}" if issuer.kind == "hospital" else issuer.org

    @staticmethod
    def _issuer_facts(issuer: Issuer, draft: Draft) -> dict[str, Any]:
        note = ""
        if issuer.automatic:
            step = event_name(draft)
            if draft.action == "reminder" and "next_reminder_s" in draft.data:
                step = "repeat"
            note = _AUTOMATIC.get(step, "Message automatique")
        return {
            "org": issuer.org,
            "name": issuer.name,
            "kind": issuer.kind,
            "automatic": issuer.automatic,
            "note": note,
        }

    # -- the facts --------------------------------------------------------------------------

    def _facts(
        self,
        case: CaseView,
        draft: Draft,
        rule: NoticeRule,
        now: datetime,
        previous: str | None,
        issuer: Issuer,
        series: str,
        spec: WorkflowSpec,
    ) -> dict[str, Any]:
        hospital = self.directory.org(case.org)
        # A reminder, an incident or an overdue notice is about the deadline that was swept
        # (its event carries it); a transition's notice announces the next level's deadline.
        swept = draft.action != "transition" and draft.data.get("due_at")
        due = swept or (case.deadline.due_at if case.deadline else None)
        if isinstance(due, str):
            due = datetime.fromisoformat(due)
        level = self._level_name(case.level, case)
        from_level = self._level_name(previous, case)
        objet = OBJETS.get(rule.kind, "{title} {ref}").format(
            title=spec.title.upper(), ref=case.reference, level=level.upper(),
            to=to(level).upper(),
        )  # fmt: skip
        at = paris(now)
        return {
            "series": series,
            "national": issuer.national,
            "issuer": self._issuer_facts(issuer, draft),
            "date": at[:10],
            "objet": objet,
            "case": {
                "reference": case.reference,
                "title": spec.title,
                "hospital": hospital.name,
                "finess": case.org,
                "region": self.directory.region_name(case.region),
                "level": level,
                "state": spec.state(case.state).label,
                "deadline": paris(due) if due else "",
                "request": self._request(case),
            },
            "event": {
                "reason": self._reason(case, draft, due),
                "by_system": issuer.automatic,
                "actor": issuer.name,  # an organisation: logins stay in the audit log
                "at": at,
                "from_level": from_level,
                "from_requester": previous == "establishment",
                "fields": self._fields(case, draft),
                "then": self._then(case, draft),
                "due_date": _day(due) if due else "",
                "late": _WHAT_IS_LATE.get(case.kind, "la date prévue"),
            },
        }

    def _reason(  # noqa: PLR0911 (one wording per automatic step)
        self, case: CaseView, draft: Draft, due: datetime | None
    ) -> str:
        """A person's reason as written; an automatic step's in French, Paris time."""
        if draft.actor != "system":
            return draft.reason
        level = self._level_name(draft.data.get("for") or case.level, case)
        if draft.action == "transition":
            late = draft.data.get("late_s")
            was = self._level_name(
                self.registry[case.kind].state(draft.from_state).level
                if draft.from_state
                else None,
                case,
            )
            text = f"Délai échu {of(was)}"
            if due is not None and draft.data.get("due_at"):
                text += f" (échéance du {paris(datetime.fromisoformat(draft.data['due_at']))})"
            if isinstance(late, int | float):
                text += f", transmis avec {_duration(late)} de retard"
            return text
        if draft.action == "reminder":
            if "next_reminder_s" in draft.data:
                return (
                    "Relance : toujours sans décision"
                    if case.incident
                    else "Relance : échéance dépassée"
                )
            left = draft.data.get("left_s")
            text = f"Rappel : décision attendue {of(level)}"
            if due is not None:
                text += f" avant le {paris(due)}"
            if isinstance(left, int):
                text += f" (reste {_duration(left)})"
            return text
        if draft.action == "incident":  # the level that holds the top rung (SpF for PPE)
            top = self._level_name(case.level, case)
            return f"Incident : aucune décision {of(top)}, dernier niveau de régulation"
        if draft.action == "overdue" and due is not None:
            what = _WHAT_IS_LATE.get(case.kind, "la date prévue")
            return f"Échéance dépassée : {what} était attendue le {_day(due)}"
        return draft.reason

    def _label(self, name: str, spec: FieldSpec | None) -> str:
        if name in _NAMED:  # the value is shown as a name, with its FINESS
            return NOTICE_FIELDS[name]
        if spec is not None and spec.label:
            return spec.label
        return NOTICE_FIELDS.get(name, name.replace("_", " ").capitalize())

    def _value(  # noqa: PLR0911 (one rule per kind of value)
        self, name: str, value: Any, spec: FieldSpec | None
    ) -> str:
        """A field's value as a regulator reads it: labels, names, dates, counts with units."""
        if value is None or value == "":
            return "—"
        if name in _NAMED and isinstance(value, str):
            row = self.directory.find(value)
            if row is not None:
                return f"{row.name} (FINESS {row.id})" if row.kind == "hospital" else row.name
        if (spec is not None and spec.type == "date") or name in ("return_by", "date"):
            try:
                return date.fromisoformat(str(value)).strftime("%d/%m/%Y")
            except ValueError:
                return str(value)
        if name in NOTICE_UNITS:
            return _units(value, NOTICE_UNITS[name])
        if isinstance(value, int) and not isinstance(value, bool):
            return _count(value)
        if name == "time_to_rupture" and isinstance(value, int | float):
            return _duration(float(value))
        return value_label(name, value)

    def _lines(self, lines: Any) -> list[str]:
        """PPE request lines: « 5 000 masques FFP2 (stock disponible : 800, … ) »."""
        shown: list[str] = []
        for line in lines if isinstance(lines, list) else []:
            if not isinstance(line, dict):
                continue
            item = str(line.get("item", ""))
            unit = ITEM_UNITS.get(item, (value_label("item", item),) * 2)
            text = _units(line.get("quantity", "—"), unit)
            if not isinstance(line.get("quantity"), int):
                text = f"{value_label('item', item)} : {line.get('quantity', '—')}"
            extra = [
                f"{NOTICE_FIELDS[key]} : {_units(line[key], unit)}"
                for key in ("stock_on_hand", "weekly_consumption")
                if line.get(key) is not None
            ]
            shown.append(text + (f" ({', '.join(extra)})" if extra else ""))
        return shown

    def _level_of(self, spec: WorkflowSpec) -> dict[str, str | None]:
        """Each state's level in workflow ``spec``."""
        found = self._state_levels.get(spec.kind)
        if found is None:
            found = self._state_levels[spec.kind] = {s.name: s.level for s in spec.states}
        return found

    def _opening(self, kind: str) -> tuple[dict[str, FieldSpec], list[str]]:
        """A workflow's opening fields by name, and their names in the workflow's order."""
        found = self._open_specs.get(kind)
        if found is None:
            fields = self.registry[kind].open_fields
            found = self._open_specs[kind] = ({f.name: f for f in fields}, [f.name for f in fields])
        return found

    def _request(self, case: CaseView) -> list[list[str]]:
        """What the hospital asked for, from the case's opening fields: [label, value] rows."""
        specs, declared = self._opening(case.kind)
        fields = case.fields
        rows: list[list[str]] = []
        if "item" in fields and "quantity" in fields and isinstance(fields["quantity"], int):
            unit = ITEM_UNITS.get(str(fields["item"]), (value_label("item", fields["item"]),) * 2)
            rows.append(["Demande", _units(fields["quantity"], unit)])
        for line in self._lines(fields.get("lines")):
            rows.append(["Demande", line])
        # in the workflow's order (PostgreSQL's JSONB keeps keys in an order of its own)
        order = [name for name in declared if name in fields]
        order += sorted(name for name in fields if name not in specs)
        for name in order:
            value = fields[name]
            if isinstance(value, dict | list) or name in ("item", "quantity", "lines"):
                continue  # a trigger's own fields (``resolve``) and the lines shown above
            if name == "summary" and not value:
                continue
            rows.append(
                [self._label(name, specs.get(name)), self._value(name, value, specs.get(name))]
            )
        return rows

    def _fields(self, case: CaseView, draft: Draft) -> list[list[str]]:
        """The trigger's values under their French labels: [label, value] rows."""
        values = dict(draft.data.get("fields") or {})
        if draft.action == "opened":
            return []  # the request itself is shown with the case
        trigger = draft.data.get("trigger")
        key = (case.kind, trigger)
        specs = self._trigger_specs.get(key)
        if specs is None:
            specs = self._trigger_specs[key] = {
                f.name: f
                for t in self.registry[case.kind].transitions
                if t.trigger == trigger
                for f in t.fields
            }
        shown: list[list[str]] = []
        item = _single_item(case.fields)
        if isinstance(values.get("quantity"), int) and item in ITEM_UNITS:
            shown.append([self._label("quantity", specs.get("quantity")),
                          _units(values.pop("quantity"), ITEM_UNITS[str(item)])])  # fmt: skip
        for name, value in values.items():
            if name == "source" and value == "hospital" and values.get("lender"):
                continue  # the lender line says which establishment
            if name == "quantity_received" and isinstance(value, int) and item in ITEM_UNITS:
                shown.append([self._label(name, specs.get(name)),
                              _units(value, ITEM_UNITS[str(item)])])  # fmt: skip
                continue
            spec = specs.get(name)
            if name == "lines":
                for line in self._lines(value):
                    shown.append([self._label(name, spec), line])
                continue
            shown.append([self._label(name, spec), self._value(name, value, spec)])
        return shown

    @staticmethod
    def _then(case: CaseView, draft: Draft) -> str:
        """What happens if nobody acts: what a reminder must announce."""
        if draft.action != "reminder":
            return ""
        if "next_reminder_s" in draft.data:  # a periodic reminder after the deadline passed
            return "incident_open" if case.incident else "still_overdue"
        return str(draft.data.get("then", "escalate"))

    def _level_name(self, role: str | None, case: CaseView) -> str:
        if role is None:
            return "—"
        recipient = self.directory.level_org(role, case)
        return recipient.name if recipient else LEVELS.get(role, role)
