"""MARS/MINSANTE notices on both databases: rendering, numbering, outbox delivery and the CLI."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from engine import audit
from engine.cases import CaseView
from engine.clock import FixedClock
from engine.db import Database
from engine.errors import InputError, NotFound, NotPermitted, StaleVersion
from engine.models import NoticeAttempt
from engine.runner import Runner
from engine.settings import load_settings
from engine.sweeper import sweep
from engine.values import Draft
from interfaces.cli import app
from notifications.channels import (
    DeliveryError,
    EmlChannel,
    SmtpChannel,
    WebhookChannel,
    sign,
)
from notifications.dispatcher import DispatchPolicy, dispatch
from notifications.outbox import (
    NOTICE_TABLE,
    Outbox,
    counter_year,
    format_reference,
    message_id,
)
from notifications.render import with_bodies
from notifications.setup import build_channels, build_outbox, dispatch_policy
from tests.conftest import (
    ACTORS_OCC,
    CONFIRMS,
    DEFAULT_FIELDS,
    START,
    TOULOUSE,
    TRIGGER_FIELDS,
    Ctx,
    drive,
    path_to,
    truncate_cases,
)
from workflows import default_notices, default_registry

REGISTRY = default_registry()
BOOKS = default_notices()
EVENTS = [
    pytest.param(kind, event, id=f"{kind}-{event}")
    for kind, book in BOOKS.items()
    for event in book.rules
]
TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "notices"
_ATTEMPT = NoticeAttempt.__table__  # type: ignore[attr-defined]
CLI = CliRunner()
# The header of the source message (seeds/000: MARS N°2020_113), as the PDF's text gives it.
SOURCE_HEADER = "DATE : 27/11/2020        REFERENCE : MARS N°2020_113 "
HEADER = re.compile(
    r"^DATE : (?P<date>\d{2}/\d{2}/\d{4}) +REFERENCE : "
    r"(?P<series>MARS|MINSANTE|[A-Z0-9-]+) N°((?P<year>\d{4})_)?(?P<number>[1-9]\d*)\s*$"
)
SIGNATURE = "Pour le ministre et par délégation,\nLe Centre de crise sanitaire"
CLOSING = "Nous vous remercions de votre mobilisation."
POLICY = DispatchPolicy(max_attempts=4, backoff=timedelta(seconds=30), lease=timedelta(minutes=2))


# -- helpers ---------------------------------------------------------------------------------


def use_outbox(ctx: Ctx, channel: str = "eml") -> Ctx:
    """Give ``ctx`` a runner whose notifier is the real outbox (all notices on ``channel``)."""
    outbox = Outbox(ctx.registry, default_notices(), channel_for=lambda _org: channel)
    ctx.runner = Runner(ctx.db, ctx.registry, ctx.clock, notifier=outbox, rules=CONFIRMS)
    return ctx


@pytest.fixture
def nctx(ctx: Ctx) -> Ctx:
    """The ``ctx`` of conftest with ``Runner(..., notifier=Outbox(registry, default_notices()))``."""
    return use_outbox(ctx)


def notices(ctx: Ctx, *where: Any) -> list[Any]:
    """The notices, with their text and HTML (as sent, or rendered from their stored facts)."""
    with ctx.db.read() as conn:
        query = sa.select(NOTICE_TABLE).order_by(NOTICE_TABLE.c.id)
        for clause in where:
            query = query.where(clause)
        return [with_bodies(row) for row in conn.execute(query)]


def notice(ctx: Ctx, reference: str) -> Any:
    (row,) = notices(ctx, NOTICE_TABLE.c.reference == reference)
    return row


def attempts(ctx: Ctx, row: Any) -> list[Any]:
    with ctx.db.read() as conn:
        return list(
            conn.execute(
                sa.select(_ATTEMPT).where(_ATTEMPT.c.notice_id == row.id).order_by(_ATTEMPT.c.id)
            )
        )


def case_state(ctx: Ctx) -> dict[str, Any]:
    """The case side of a snapshot: what delivery must never touch."""
    shot = ctx.snapshot()
    return {t: shot[t] for t in ("regul_case", "audit_event", "audit_head", "deadline")}


def sweep_at(ctx: Ctx, instant: datetime) -> list[str]:
    ctx.clock.set(instant)
    return [f.outcome for f in sweep(ctx.runner).fired]


def advance(ctx: Ctx, case: CaseView, trigger: str, login: str, reason: str) -> CaseView:
    return ctx.runner.advance(
        reference=case.reference,
        trigger=trigger,
        login=login,
        reason=reason,
        data=TRIGGER_FIELDS.get((case.kind, trigger), {}),
    )


def fire(ctx: Ctx, kind: str, event: str) -> tuple[CaseView, str]:
    """Make ``event`` happen on a new case through the real path; (case, the sweep's outcome)."""
    spec = REGISTRY[kind]
    if event == "open":
        return ctx.open(kind), "opened"
    if event in spec.triggers:
        source = next(t.source for t in spec.transitions if t.trigger == event)
        case = drive(ctx, ctx.open(kind), path_to(spec, source))
        return drive(ctx, case, [event]), "transition"
    if event == "reminder":
        case = ctx.open(kind)
        assert case.deadline is not None
        return case, sweep_at(ctx, case.deadline.due_at - timedelta(seconds=1))[-1]
    state = next(s.name for s in spec.states if s.on_deadline == event)  # incident | overdue
    case = drive(ctx, ctx.open(kind), path_to(spec, state))
    assert case.deadline is not None, f"{kind} {state} has no deadline"
    return case, sweep_at(ctx, case.deadline.due_at)[-1]


def lines_between(text: str, first: str, last: str) -> list[str]:
    lines = text.splitlines()
    start, end = lines.index(first), lines.index(last)
    return [line.removeprefix("  - ") for line in lines[start + 1 : end] if line.strip()]


def field(text: str, label: str) -> str:
    match = re.search(rf"^{re.escape(label)} : (.*)$", text, re.MULTILINE)
    assert match, f"no line {label!r} in\n{text}"
    return match.group(1)


def regul(url: str, *args: str) -> tuple[int, str, str]:
    result = CLI.invoke(app, list(args), env={"REGUL_DATABASE_URL": url, "COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def parsed(envelope: Any) -> EmailMessage:
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def addresses(message: EmailMessage, header: str) -> list[str]:
    value = message[header]
    return [a.addr_spec for a in value.addresses] if value is not None else []


# -- local servers ---------------------------------------------------------------------------


class Collect:
    """An aiosmtpd handler that keeps every envelope, or answers DATA with ``reply``."""

    def __init__(self, reply: str = "250 OK") -> None:
        self.reply = reply
        self.envelopes: list[Any] = []
        self.received = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reply.startswith("250"):
            self.envelopes.append(envelope)
            self.received.set()
        return self.reply


@contextmanager
def smtp_server(reply: str = "250 OK") -> Iterator[tuple[int, Collect]]:
    handler = Collect(reply)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, handler
    finally:
        controller.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never says a word (an SMTP server that hangs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@contextmanager
def http_server(status: int) -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A local HTTP endpoint answering every POST with ``status``; keeps (headers, raw body)."""
    seen: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((dict(self.headers.items()), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


# -- 1. every kind renders against a real case -----------------------------------------------


def test_every_template_is_declared_by_some_workflow() -> None:
    """Each shipped notice template (but the layout) is the kind of at least one workflow rule,
    or a notice about a holder whose OBJET is declared (``HOLDER_OBJETS``)."""
    from notifications.outbox import HOLDER_OBJETS
    from resources.catalogue import obligation_kinds

    obligation_kinds(load_settings())  # the resource modules declare their holder notices
    shipped = {p.stem for p in TEMPLATES.glob("*.j2")} - {"layout"}
    declared = {rule.kind for book in BOOKS.values() for rule in book.rules.values()}
    assert shipped == declared | set(HOLDER_OBJETS)
    assert not declared & set(HOLDER_OBJETS)


@pytest.mark.parametrize(("kind", "event"), EVENTS)
def test_every_notice_kind_renders_from_its_real_event(nctx: Ctx, kind: str, event: str) -> None:
    """Driving a case so that the event happens queues one notice of the declared kind, fully rendered."""
    ctx = nctx
    rule = BOOKS[kind].rules[event]
    case, outcome = fire(ctx, kind, event)
    triggers = REGISTRY[kind].triggers
    assert outcome == (
        "transition" if event in triggers else "opened" if event == "open" else event
    )
    with ctx.db.read() as conn:
        last = list(audit.iter_events(conn, case_id=case.id))[-1]
        stored = conn.execute(
            sa.select(NOTICE_TABLE).where(NOTICE_TABLE.c.case_id == case.id)
            .order_by(NOTICE_TABLE.c.id.desc()).limit(1)
        ).one()  # fmt: skip
    name = last.data.get("trigger") if last.action == "transition" else last.action
    assert name == ("opened" if event == "open" else event)
    # the transaction stored the facts, not the text: that is rendered once, at dispatch
    assert (stored.body_text, stored.body_html) == ("", "")
    assert stored.facts["objet"]
    assert stored.recipients["action"]
    row = notices(ctx, NOTICE_TABLE.c.case_id == case.id)[-1]
    assert (row.kind, row.event_seq, row.status, row.attempts) == (rule.kind, last.seq, "queued", 0)
    if last.actor == "system":  # issued for the level that holds the case, in its own series
        assert row.series not in ("MARS", "MINSANTE")
        assert row.facts["issuer"]["automatic"]
        assert "sans intervention humaine" in row.body_text
        assert "Message automatique émis par Régul pour le compte" in row.body_text
    elif last.org == "CCS":
        assert row.series in ("MARS", "MINSANTE")
    else:
        assert row.series == (f"ES-{last.org}" if last.org.isdigit() else last.org)
    assert row.reference == format_reference(row.series, 2026, row.number)
    assert row.subject == f"{row.reference} : {row.facts['objet']}"
    assert case.reference in row.subject
    assert row.body_html.startswith("<!DOCTYPE html>")
    assert case.reference in row.body_text
    assert case.reference in row.body_html
    assert row.recipients["action"], "nobody is 'Pour action'"
    assert f"Identifiant : {row.message_id}" in row.body_text
    assert f"Identifiant : {row.message_id}".replace("<", "&lt;").replace(">", "&gt;") in (
        row.body_html
    )
    assert CLOSING in row.body_text
    assert f"<p>{CLOSING}</p>" in row.body_html
    assert "aucune (heure de Paris)" not in row.body_text
    assert not re.search(r"\d{2}:\d{2}:\d{2}", row.body_text), "a time with seconds"


@pytest.mark.parametrize(
    ("kind", "carried"),
    [
        pytest.param("ecmo", ("resolve", "return_by"), id="ecmo-loan_overdue"),
        pytest.param("ppe", ("resolve", "expected_delivery"), id="ppe-delivery_overdue"),
    ],
)
def test_overdue_notice_names_the_date_the_case_carries(
    nctx: Ctx, kind: str, carried: tuple[str, str]
) -> None:
    """A late return or delivery notice gives the promised date (15/12, 24/11), not the day after."""
    ctx = nctx
    case, outcome = fire(ctx, kind, "overdue")
    assert outcome == "overdue"
    promised = datetime.strptime(str(TRIGGER_FIELDS[(kind, carried[0])][carried[1]]), "%Y-%m-%d")
    row = notices(ctx, NOTICE_TABLE.c.case_id == case.id)[-1]
    assert row.kind.endswith("_overdue")
    assert f"attendue le {promised:%d/%m/%Y}" in field(row.body_text, "Motif")  # Paris, French
    assert f"au plus tard le {promised:%d/%m/%Y}" in row.body_text


@pytest.mark.parametrize(
    ("state", "when"),
    [
        pytest.param("requested", "before", id="escalating"),
        pytest.param("national_regulation", "before", id="top-of-ladder"),
        pytest.param("in_service", "repeat", id="loan-overdue-repeat"),
    ],
)
def test_reminder_text_matches_what_the_deadline_does(nctx: Ctx, state: str, when: str) -> None:
    """A reminder promises escalation only where the deadline escalates; never an incident that is not open."""
    ctx = nctx
    spec = REGISTRY["ecmo"]
    case = drive(ctx, ctx.open("ecmo"), path_to(spec, state))
    assert case.deadline is not None
    due = case.deadline.due_at
    if when == "before":
        assert sweep_at(ctx, due - timedelta(minutes=1)) == ["reminder"]
    else:
        assert sweep_at(ctx, due) == ["overdue"]
        assert sweep_at(ctx, due + ctx.runner.policy.overdue_period) == ["repeat"]
    shown = ctx.runner.show(case.reference)
    row = notices(ctx, NOTICE_TABLE.c.case_id == case.id)[-1]
    body = row.body_text.split("Mesdames, Messieurs,")[1].split("Dossier :")[0]
    assert row.kind == "reminder"
    action = spec.state(state).on_deadline
    assert ("transmis automatiquement au niveau supérieur" in body) == (action == "escalate"), body
    assert ("incident" in body) == (shown.incident or action == "incident"), body


# -- 2. the header of the source MARS ------------------------------------------------------


def test_header_regex_matches_the_source_mars() -> None:
    """The header pattern the next test applies to rendered notices matches the real MARS N°2020_113."""
    match = HEADER.match(SOURCE_HEADER)
    assert match is not None
    assert match.groupdict() == {
        "date": "27/11/2020",
        "series": "MARS",
        "year": "2020",
        "number": "113",
    }


@pytest.mark.parametrize(
    ("instant", "date", "emitted", "deadline"),
    [
        pytest.param(
            datetime(2026, 11, 22, 8, 0, tzinfo=UTC),
            "22/11/2026",
            "22/11/2026 à 09:00",
            "22/11/2026 à 13:00",
            id="winter-0800utc",
        ),
        pytest.param(
            datetime(2026, 11, 22, 23, 30, tzinfo=UTC),
            "23/11/2026",
            "23/11/2026 à 00:30",
            "23/11/2026 à 04:30",
            id="paris-next-day",
        ),
        pytest.param(
            datetime(2026, 7, 1, 8, 0, tzinfo=UTC),
            "01/07/2026",
            "01/07/2026 à 10:00",
            "01/07/2026 à 14:00",
            id="summer-0800utc",
        ),
    ],
)
def test_ecmo_escalated_by_umac_is_issued_by_the_umac_in_its_own_series(
    nctx: Ctx, instant: datetime, date: str, emitted: str, deadline: str
) -> None:
    """The UMAC's act: its letterhead, its series, its signature; DATE and times in Paris."""
    ctx = nctx
    ctx.clock.set(instant)
    case = drive(ctx, ctx.open("ecmo"), ["escalate"])
    case = advance(ctx, case, "escalate", ACTORS_OCC["umac"], "aucune console dans la zone Sud")
    opened, confirmed, row = notices(ctx)
    assert [opened.reference, confirmed.reference, row.reference] == [
        f"ES-{TOULOUSE} N°2026_1",
        f"ES-{TOULOUSE} N°2026_2",
        "UMAC-SUD N°2026_1",
    ]
    text = row.body_text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("DATE : "))
    match = HEADER.match(header)
    assert match is not None, header
    assert match.groupdict() == {"date": date, "series": "UMAC-SUD", "year": "2026", "number": "1"}
    assert lines[:2] == ["UNITÉ MOBILE D'ASSISTANCE CIRCULATOIRE", "UMAC ZONE SUD"]
    assert "MINISTÈRE" not in text
    assert "MARS" not in text
    objet = field(text, "OBJET")
    assert objet == f"DEMANDE DE CONSOLE ECMO {case.reference} : TRANSMISSION À L'ARS OCCITANIE"
    assert row.subject == f"UMAC-SUD N°2026_1 : {objet}"
    # the blocks in the order of the source: header, OBJET, Pour action, Pour information, salutation
    order = [
        lines.index(header),
        lines.index(f"OBJET : {objet}"),
        lines.index("Pour action"),
        lines.index("Pour information"),
        lines.index("Mesdames, Messieurs,"),
        lines.index(CLOSING),
        lines.index("Le médecin responsable,"),
    ]
    assert order == sorted(order)
    assert lines_between(text, "Pour action", "Pour information") == ["ARS Occitanie"]
    assert lines_between(text, "Pour information", "Mesdames, Messieurs,") == [
        "CHU de Toulouse",
        "UMAC zone Sud",
        "Référent régional ECMO SFCTCV Occitanie",
    ]
    assert [r["org"] for r in row.recipients["action"]] == ["ARS-OCC"]
    assert [r["org"] for r in row.recipients["info"]] == [TOULOUSE, "UMAC-SUD", "SFCTCV-OCC"]
    assert "n'a pas trouvé de solution auprès de l'UMAC zone Sud" in text
    assert "Il est transmis pour régulation à l'ARS Occitanie" in text
    assert field(text, "Dossier") == f"{case.reference} (Demande de console ECMO)"
    assert field(text, "Établissement demandeur") == f"CHU de Toulouse (FINESS {TOULOUSE})"
    assert field(text, "Région") == "Occitanie"
    assert field(text, "Niveau") == "ARS Occitanie — Régulation ARS / SFCTCV"
    assert field(text, "Échéance") == f"{deadline} (heure de Paris)"
    assert field(text, "Motif") == "aucune console dans la zone Sud"
    assert "Le médecin responsable,\nUMAC zone Sud" in text
    assert SIGNATURE not in text
    assert f"Message émis par Régul le {emitted} (heure de Paris)" in text
    html = row.body_html
    assert (
        "<p><strong>UNITÉ MOBILE D&#39;ASSISTANCE CIRCULATOIRE<br>UMAC ZONE SUD</strong></p>"
        in html
    )
    assert f"DATE : {date}</td>" in html
    assert "REFERENCE : UMAC-SUD N°2026_1</td>" in html
    assert f"<strong>OBJET : {objet}</strong>".replace("'", "&#39;") in html
    assert "<strong>Pour action</strong><ul><li>ARS Occitanie</li></ul>" in html
    assert (
        "<strong>Pour information</strong><ul><li>CHU de Toulouse</li><li>UMAC zone Sud</li>"
        "<li>Référent régional ECMO SFCTCV Occitanie</li></ul>" in html
    )
    assert "<p>Mesdames, Messieurs,</p>" in html
    assert f"<td>{deadline} (heure de Paris)</td>" in html
    assert "<p>Le médecin responsable,<br>UMAC zone Sud</p>" in html


def test_ccs_resolving_for_an_establishment_is_a_mars_like_the_source(nctx: Ctx) -> None:
    """The CCS's act to an establishment: ministry letterhead, MARS N°2026_1, its signature."""
    ctx = nctx
    case = drive(ctx, ctx.open("ecmo"), path_to(REGISTRY["ecmo"], "national_regulation"))
    ctx.runner.advance(
        reference=case.reference,
        trigger="resolve",
        login="ccs",
        reason="test resolve",
        data={"source": "national", "return_by": "2026-12-15"},
    )
    row = notices(ctx)[-1]
    text, lines = row.body_text, row.body_text.splitlines()
    assert row.reference == "MARS N°2026_1"
    assert [r.reference for r in notices(ctx) if r.series in ("MARS", "MINSANTE")] == [
        "MARS N°2026_1"
    ]  # the escalations before were issued by the hospital, the UMAC and the ARS
    header = next(line for line in lines if line.startswith("DATE : "))
    source = HEADER.match(SOURCE_HEADER)
    match = HEADER.match(header)
    assert source is not None
    assert match is not None
    assert (match["series"], match["year"], match["number"]) == ("MARS", "2026", "1")
    assert (source["series"], source["year"], source["number"]) == ("MARS", "2020", "113")
    assert lines[:3] == [
        "MINISTÈRE DES SOLIDARITÉS ET DE LA SANTÉ",
        "DIRECTION GÉNÉRALE DE LA SANTÉ",
        "CENTRE DE CRISE SANITAIRE",
    ]
    assert "MARS — Message d'Alerte Rapide Sanitaire" in lines
    assert SIGNATURE in text
    assert text.index(CLOSING) < text.index(SIGNATURE)
    # the CCS lends from the national stock: the lender is the CCS, which keeps a copy
    assert [r["org"] for r in row.recipients["action"]] == [TOULOUSE]
    assert "CCS" in [r["org"] for r in row.recipients["info"]]
    assert "Une solution a été trouvée par le Centre de crise sanitaire" in text
    assert field(text, "Origine") == "stock national"
    assert field(text, "Date de retour du prêt") == "15/12/2026"
    assert "Échéance : aucune" not in text
    assert "<p>Pour le ministre et par délégation,<br>Le Centre de crise sanitaire</p>" in (
        row.body_html
    )


def test_ccs_act_addressed_to_an_ars_is_a_minsante_numbered_without_year(ctx: Ctx) -> None:
    """MINSANTE N°143: no year, one series that does not restart in January."""
    ctx = use_outbox(ctx)
    assert format_reference("MINSANTE", 2020, 143) == "MINSANTE N°143"
    assert format_reference("MARS", 2020, 113) == "MARS N°2020_113"
    assert counter_year("MINSANTE", 2027) == 0
    assert counter_year("MARS", 2027) == 2027
    assert message_id("MINSANTE", 2027, 143) == "<minsante.000143@regul.invalid>"
    book = BOOKS["transfer"]
    rule = book.rules["incident"]  # Pour action the CCS, for information the ARS
    case = drive(ctx, ctx.open("transfer"), ["escalate"])
    draft = Draft("ccs", "ccs", "CCS", "transition", "national_regulation", "dispatched", 9,
                  "décision", {"trigger": "resolve", "fields": {}})  # fmt: skip
    with ctx.db.read() as conn:
        outbox = Outbox(ctx.registry, BOOKS)
        series, facts, recipients = outbox.facts(conn, case, draft, rule, ctx.clock.now())
        resolved_rule = book.rules["reject"]  # Pour action the requesting hospital
        to_hospital, _, _ = outbox.facts(conn, case, draft, resolved_rule, ctx.clock.now())
    # the CCS acting, Pour action the CCS itself and the ARS: to the ARS, a MINSANTE
    assert series == "MINSANTE", recipients["action"]
    assert facts["issuer"]["kind"] == "ccs"
    assert not facts["issuer"]["automatic"]
    assert to_hospital == "MARS"


def test_ppe_escalated_by_the_ght_is_issued_by_the_ght(nctx: Ctx) -> None:
    """The GHT's act: its own series and letterhead; Pour action the ARS."""
    ctx = nctx
    case = drive(ctx, ctx.open("ppe"), ["escalate", "escalate"])
    opened, confirmed, row = notices(ctx)
    assert (opened.reference, confirmed.reference, row.reference) == (
        f"ES-{TOULOUSE} N°2026_1",
        f"ES-{TOULOUSE} N°2026_2",
        "GHT-OCC-06 N°2026_1",
    )
    text = row.body_text
    assert text.splitlines()[:2] == [
        "GROUPEMENT HOSPITALIER DE TERRITOIRE",
        "GHT HAUTE-GARONNE ET TARN OUEST",
    ]
    assert "MINSANTE" not in text
    assert lines_between(text, "Pour action", "Pour information") == ["ARS Occitanie"]
    assert lines_between(text, "Pour information", "Mesdames, Messieurs,") == [
        "CHU de Toulouse",
        "GHT Haute-Garonne et Tarn Ouest",
    ]
    assert field(text, "Niveau") == "ARS Occitanie — Examen par l'ARS"
    assert field(text, "Demande") == (
        "5\u202f000 masques FFP2 (stock disponible : 800 masques FFP2, consommation "
        "hebdomadaire : 3\u202f000 masques FFP2)"
    )
    assert field(text, "Échéance") == "23/11/2026 à 09:00 (heure de Paris)"
    assert row.message_id == "<ght-occ-06.2026.000001@regul.invalid>"
    assert case.reference.startswith("EPI-")


# -- 3. autoescaping -------------------------------------------------------------------------


def test_reason_is_escaped_in_html_and_verbatim_in_text(nctx: Ctx) -> None:
    """A regulator's <script> in a reason shows as text in the HTML and unchanged in the plain text."""
    ctx = nctx
    case = ctx.open("transfer")
    advance(ctx, case, "escalate", ACTORS_OCC["establishment"], "<script>alert(1)</script> & co")
    row = notices(ctx)[-1]
    assert "<script>" not in row.body_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in row.body_html
    assert field(row.body_text, "Motif") == "<script>alert(1)</script> & co"
    assert "<script>" not in row.subject


# -- 4. numbering ----------------------------------------------------------------------------


def test_references_are_gapless_per_series_and_year(nctx: Ctx) -> None:
    """Three workflows interleaved: each issuer's series counts 1..n, one counter row each."""
    ctx = nctx
    for kind in ("ecmo", "ppe", "transfer", "ppe", "ecmo"):
        case = drive(ctx, ctx.open(kind), ["escalate", "escalate"])
        ctx.clock.advance(timedelta(minutes=1))
        advance(ctx, case, "cancel", ACTORS_OCC["establishment"], "patient stabilisé")
    rows = notices(ctx)
    assert len(rows) == 20  # opened, confirmed, escalated by the first level, cancelled
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.series] = counts.get(row.series, 0) + 1
    # the hospital opens, confirms and cancels; the UMAC, the GHT and the ARS escalate
    assert counts == {f"ES-{TOULOUSE}": 15, "UMAC-SUD": 2, "GHT-OCC-06": 2, "ARS-OCC": 1}
    for series, count in counts.items():
        mine = [r for r in rows if r.series == series]
        assert [r.number for r in mine] == list(range(1, count + 1))
        assert [r.reference for r in mine] == [f"{series} N°2026_{n}" for n in range(1, count + 1)]
        assert {r.year for r in mine} == {2026}
    assert len({r.message_id for r in rows}) == len(rows)
    with ctx.db.read() as conn:
        counters = conn.execute(sa.text("SELECT series, year, last FROM notice_counter")).all()
    assert sorted(tuple(c) for c in counters) == sorted((k, 2026, v) for k, v in counts.items())


def test_refused_or_failed_commands_take_no_number(nctx: Ctx) -> None:
    """Refusals, StaleVersion and InputError write no notice and consume no number."""
    ctx = nctx
    case = drive(ctx, ctx.open("ppe"), ["escalate"])  # the hospital's 1 and 2, now at the GHT
    attempts_ = [
        (NotPermitted, {"trigger": "escalate", "login": "ars-occ"}),
        (NotFound, {"trigger": "escalate", "login": "ght-idf-01"}),  # outside scope
        (StaleVersion, {"trigger": "escalate", "login": "ght-occ-06", "expect_version": 1}),
        (
            InputError,
            {
                "trigger": "resolve",
                "login": "ght-occ-06",
                "data": {"quantity": 10, "source": "ght", "expected_delivery": "demain"},
            },
        ),
        (InputError, {"trigger": "escalate", "login": "ght-occ-06", "reason": "   "}),
    ]
    for error, kwargs in attempts_:
        before = ctx.snapshot()
        with pytest.raises(error):
            ctx.runner.advance(**{"reference": case.reference, "reason": "essai", **kwargs})
        after = ctx.snapshot()
        if error not in (NotPermitted, NotFound):
            assert after == before
            continue
        # only the refusal's audit event(s), and the audit heads that point at them (outside
        # scope: one in the case's chain, one in the security stream)
        for table in set(before) - {"audit_event", "regul_case", "audit_head"}:
            assert after[table] == before[table], table
        added = after["audit_event"][len(before["audit_event"]) :]
        assert after["audit_event"][: len(before["audit_event"])] == before["audit_event"]
        assert [e["action"] for e in added] == ["refused"] * (2 if error is NotFound else 1)
        head = ("audit_seq", "audit_hash")
        assert [{k: v for k, v in r.items() if k not in head} for r in after["regul_case"]] == [
            {k: v for k, v in r.items() if k not in head} for r in before["regul_case"]
        ]
    kwargs = {"reference": case.reference, "trigger": "escalate", "login": "ght-occ-06"}
    first = ctx.runner.advance(**kwargs, reason="stock GHT épuisé", idempotency_key="k-1")  # type: ignore[arg-type]
    again = ctx.runner.advance(**kwargs, reason="stock GHT épuisé", idempotency_key="k-1")  # type: ignore[arg-type]
    assert first == again  # a retried command with its key gets its answer, not a second notice
    assert [r.reference for r in notices(ctx)] == [
        f"ES-{TOULOUSE} N°2026_1",
        f"ES-{TOULOUSE} N°2026_2",
        "GHT-OCC-06 N°2026_1",
    ]


def test_numbering_restarts_at_the_new_year_in_paris(nctx: Ctx) -> None:
    """31/12 23:30 Paris is still 2026; 31/12 23:30 UTC is 01/01/2027 in Paris and restarts at 1."""
    ctx = nctx
    ctx.clock.set(datetime(2026, 12, 31, 22, 30, tzinfo=UTC))  # 23:30 in Paris
    drive(ctx, ctx.open("ecmo"), ["escalate", "escalate"])
    ctx.clock.set(datetime(2026, 12, 31, 23, 30, tzinfo=UTC))  # 00:30 on 1 January in Paris
    drive(ctx, ctx.open("transfer"), ["escalate"])
    ctx.clock.set(datetime(2027, 1, 1, 9, 0, tzinfo=UTC))
    drive(ctx, ctx.open("ecmo"), ["escalate", "escalate"])
    rows = notices(ctx)
    es = f"ES-{TOULOUSE}"
    assert [(r.reference, r.year, r.number) for r in rows] == [
        (f"{es} N°2026_1", 2026, 1),
        (f"{es} N°2026_2", 2026, 2),
        ("UMAC-SUD N°2026_1", 2026, 1),
        (f"{es} N°2027_1", 2027, 1),
        (f"{es} N°2027_2", 2027, 2),
        (f"{es} N°2027_3", 2027, 3),
        (f"{es} N°2027_4", 2027, 4),
        ("UMAC-SUD N°2027_1", 2027, 1),
    ]
    assert "DATE : 31/12/2026 " in rows[2].body_text
    assert "DATE : 01/01/2027 " in rows[3].body_text
    assert rows[3].message_id == f"<{es.lower()}.2027.000001@regul.invalid>"


WRITERS = 8
CASES_PER_WRITER = 4


@pytest.mark.postgres
def test_concurrent_writers_on_postgres_number_without_gap_or_duplicate(pg_url: str) -> None:
    """8 threads, each with its own Database and Runner, escalate their own cases at once: the
    hospital's series and the UMAC's each count 1..N."""
    setup = Database(pg_url)
    truncate_cases(setup)
    registry = default_registry()
    opener = Runner(setup, registry, FixedClock(START), rules=CONFIRMS)
    mine = [
        [
            opener.open_case(
                kind="ecmo", login=ACTORS_OCC["establishment"], org=TOULOUSE,
                fields=DEFAULT_FIELDS["ecmo"],
            ).reference
            for _ in range(CASES_PER_WRITER)
        ]
        for _ in range(WRITERS)
    ]  # fmt: skip
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def writer(references: list[str]) -> None:
        db = Database(pg_url, pool_size=1)
        runner = Runner(
            db, registry, FixedClock(START), notifier=Outbox(registry, BOOKS), rules=CONFIRMS
        )
        try:
            for login in (ACTORS_OCC["establishment"], ACTORS_OCC["umac"]):
                barrier.wait(timeout=30)
                for reference in references:
                    runner.advance(
                        reference=reference, trigger="escalate", login=login, reason="concurrent"
                    )
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
            barrier.abort()
        finally:
            db.dispose()

    threads = [threading.Thread(target=writer, args=(refs,)) for refs in mine]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not errors, errors
        total = WRITERS * CASES_PER_WRITER
        per_case: dict[int, int] = {}
        for series in (f"ES-{TOULOUSE}", "UMAC-SUD"):
            with setup.read() as conn:
                rows = conn.execute(
                    sa.select(
                        NOTICE_TABLE.c.number, NOTICE_TABLE.c.reference, NOTICE_TABLE.c.case_id
                    )
                    .where(NOTICE_TABLE.c.series == series, NOTICE_TABLE.c.year == 2026)
                    .order_by(NOTICE_TABLE.c.number)
                ).all()
                last = conn.execute(
                    sa.text("SELECT last FROM notice_counter WHERE series = :s AND year = 2026"),
                    {"s": series},
                ).scalar_one()
            assert [r.number for r in rows] == list(range(1, total + 1)), series
            assert len({r.reference for r in rows}) == total
            assert last == total
            for r in rows:
                per_case[r.case_id] = per_case.get(r.case_id, 0) + 1
        assert set(per_case.values()) == {2}
        assert len(per_case) == WRITERS * CASES_PER_WRITER
    finally:
        setup.dispose()


# -- 5. delivery to a real SMTP server ------------------------------------------------------


def test_smtp_delivery_carries_subject_recipients_and_message_id(ctx: Ctx) -> None:
    """Each queued notice reaches a real SMTP server with its headers; it is sent with one ok attempt."""
    ctx = use_outbox(ctx, "smtp")
    case = drive(ctx, ctx.open("ecmo"), ["escalate", "escalate"])
    rows = notices(ctx)
    assert [r.channel for r in rows] == ["smtp", "smtp", "smtp"]
    ctx.clock.advance(timedelta(seconds=5))
    with smtp_server() as (port, handler):
        channel = SmtpChannel("127.0.0.1", port, sender="regul@sante.example.fr", timeout=5)
        report = dispatch(ctx.db, ctx.clock, {"smtp": channel}, POLICY)
    assert report.counts() == {"sent": 3, "retried": 0, "failed": 0}
    by_id = {parsed(e)["Message-ID"]: (e, parsed(e)) for e in handler.envelopes}
    assert set(by_id) == {r.message_id for r in rows}
    for row in rows:
        envelope, message = by_id[row.message_id]
        action = [r["email"] for r in row.recipients["action"]]
        info = [r["email"] for r in row.recipients["info"]]
        assert message["Subject"] == row.subject
        assert str(message["From"]) == "regul@sante.example.fr"
        assert addresses(message, "To") == action
        assert addresses(message, "Cc") == info
        assert message["X-Regul-Reference"] == row.reference
        assert envelope.mail_from == "regul@sante.example.fr"
        assert sorted(envelope.rcpt_tos) == sorted(action + info)
        body = message.get_body(("plain",))
        assert body is not None
        assert row.reference in body.get_content()
        assert case.reference in body.get_content()
        html = message.get_body(("html",))
        assert html is not None
        assert html.get_content().replace("\r\n", "\n") == row.body_html
        sent = notice(ctx, row.reference)
        assert (sent.status, sent.attempts, sent.last_error) == ("sent", 1, "")
        assert sent.sent_at == ctx.clock.now()
        assert [(a.ok, a.channel, a.error, a.at) for a in attempts(ctx, sent)] == [
            (True, "smtp", "", ctx.clock.now())
        ]
    escalated_to_ars = by_id[rows[2].message_id][1]
    assert addresses(escalated_to_ars, "To") == ["ars-oc-alerte@ars.example-sante.fr"]
    assert addresses(escalated_to_ars, "Cc") == [
        "crise@chu-toulouse.example-sante.fr",
        "umac.sud@example-sante.fr",
        "ecmo.occ@sfctcv.example-sante.fr",
    ]
    assert dispatch(ctx.db, ctx.clock, {"smtp": channel}, POLICY).counts()["sent"] == 0


def test_eml_channel_writes_one_message_per_notice(nctx: Ctx, tmp_path: Path) -> None:
    """The embedded default channel writes <reference>.eml with the notice's Message-ID."""
    ctx = nctx
    drive(ctx, ctx.open("ppe"), [])  # the opening notice
    (row,) = notices(ctx)
    report = dispatch(ctx.db, ctx.clock, {"eml": EmlChannel(tmp_path / "out")}, POLICY)
    assert report.sent == [row.reference]
    (path,) = (tmp_path / "out").iterdir()
    assert path.name == "ES-319900001_No2026_1.eml"
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert (message["Message-ID"], message["Subject"]) == (row.message_id, row.subject)


def test_settings_wire_channels_policy_and_per_organisation_channel(tmp_path: Path) -> None:
    """REGUL_* settings give the channels, the retry policy and the channel of each 'Pour action'."""
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        eml_dir=str(tmp_path / "out"),
        smtp_host="smtp.sante.example",
        smtp_port=2525,
        smtp_timeout=3.0,
        notice_max_attempts=7,
        notice_backoff="1m",
        notice_channels={"CCS": "smtp"},
    )
    channels = build_channels(settings)
    assert set(channels) == {"eml", "smtp"}
    smtp = channels["smtp"]
    assert isinstance(smtp, SmtpChannel)
    assert (smtp.host, smtp.port, smtp.timeout) == ("smtp.sante.example", 2525, 3.0)
    policy = dispatch_policy(settings)
    assert (policy.max_attempts, policy.backoff) == (7, timedelta(minutes=1))
    assert [policy.delay(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    outbox = build_outbox(settings, REGISTRY, BOOKS)
    assert (outbox.channel_for("CCS"), outbox.channel_for("ARS-OCC")) == ("smtp", "eml")
    with pytest.raises(InputError, match="REGUL_WEBHOOK_URL or REGUL_WEBHOOK_SECRET"):
        build_channels(load_settings(notice_channel="webhook"))
    hooked = build_channels(
        load_settings(notice_channel="webhook", webhook_url="http://h/x", webhook_secret="k")
    )
    assert isinstance(hooked["webhook"], WebhookChannel)
    with pytest.raises(InputError, match="REGUL_NOTICE_BACKOFF"):
        dispatch_policy(load_settings(notice_backoff="bientôt"))


# -- 6. SMTP refusing, hanging or down ------------------------------------------------------


@contextmanager
def broken_smtp(mode: str) -> Iterator[SmtpChannel]:
    if mode == "refused":
        with smtp_server("550 5.7.1 message refused by policy") as (port, _handler):
            yield SmtpChannel("127.0.0.1", port, timeout=5)
    elif mode == "timeout":
        with silent_server() as port:
            yield SmtpChannel("127.0.0.1", port, timeout=0.5)
    else:
        yield SmtpChannel("127.0.0.1", free_port(), timeout=5)


@pytest.mark.parametrize("mode", ["refused", "timeout", "down"])
def test_smtp_trouble_is_retried_with_backoff_then_failed(
    ctx: Ctx, database_url: str, mode: str
) -> None:
    """Each attempt is recorded; waits double (30 s, 60 s, 120 s); failed after 4; the case is untouched."""
    ctx = use_outbox(ctx, "smtp")
    case = drive(ctx, ctx.open("ecmo"), [])  # the opening notice
    (row,) = notices(ctx)
    before = case_state(ctx)
    waits, reports = [], []
    with broken_smtp(mode) as channel:
        for attempt in range(1, POLICY.max_attempts + 1):
            report = dispatch(ctx.db, ctx.clock, {"smtp": channel}, POLICY)
            reports.append(report.counts())
            current = notice(ctx, row.reference)
            assert current.attempts == attempt
            if attempt < POLICY.max_attempts:
                assert current.status == "queued"
                waits.append((current.next_attempt_at - ctx.clock.now()).total_seconds())
                ctx.clock.set(current.next_attempt_at - timedelta(seconds=1))
                assert dispatch(ctx.db, ctx.clock, {"smtp": channel}, POLICY).counts() == {
                    "sent": 0, "retried": 0, "failed": 0,
                }  # fmt: skip
                ctx.clock.set(current.next_attempt_at)
    assert waits == [30, 60, 120]
    assert reports == [{"sent": 0, "retried": 1, "failed": 0}] * 3 + [
        {"sent": 0, "retried": 0, "failed": 1}
    ]
    failed = notice(ctx, row.reference)
    assert (failed.status, failed.attempts, failed.sent_at) == ("failed", 4, None)
    assert f"SMTP 127.0.0.1:{channel.port}" in failed.last_error
    if mode == "refused":
        assert "550" in failed.last_error
    logged = attempts(ctx, failed)
    assert [(a.ok, a.channel) for a in logged] == [(False, "smtp")] * 4
    assert all(a.error for a in logged)
    assert case_state(ctx) == before
    shown = ctx.runner.show(case.reference)
    assert (shown.state, shown.version) == (case.state, case.version)

    code, out, err = regul(database_url, "notices", "list", "--status", "failed", "--json")
    assert code == 0, err
    assert [(n["reference"], n["status"], n["attempts"]) for n in json.loads(out)] == [
        (row.reference, "failed", 4)
    ]
    code, out, err = regul(database_url, "notices", "list", "--status", "failed")
    assert code == 0, err
    assert row.reference in out
    code, out, err = regul(database_url, "notices", "retry", row.reference)
    assert code == 0, err
    assert "queued again" in out
    again = notice(ctx, row.reference)
    assert (again.status, again.attempts) == ("queued", 0)
    assert again.next_attempt_at <= datetime.now(UTC)  # the CLI runs on the real clock
    ctx.clock.set(max(ctx.clock.now(), datetime.now(UTC)))
    with smtp_server() as (port, handler):
        report = dispatch(ctx.db, ctx.clock, {"smtp": SmtpChannel("127.0.0.1", port)}, POLICY)
    assert report.sent == [row.reference]
    assert [parsed(e)["Message-ID"] for e in handler.envelopes] == [row.message_id]
    assert [a.ok for a in attempts(ctx, row)] == [False] * 4 + [True]
    code, _out, err = regul(database_url, "notices", "retry", row.reference)
    assert code == 4
    assert "is sent: only a failed notice is retried" in err
    assert notice(ctx, row.reference).status == "sent"
    assert case_state(ctx) == before


# -- 7. signed webhook --------------------------------------------------------------------


def test_webhook_posts_signed_json(ctx: Ctx) -> None:
    """The JSON body names the notice; X-Regul-Signature is the HMAC-SHA256 of the raw body."""
    ctx = use_outbox(ctx, "webhook")
    drive(ctx, ctx.open("transfer"), [])  # the opening notice
    (row,) = notices(ctx)
    with http_server(200) as (url, seen):
        channel = WebhookChannel(url, secret="s3cret", timeout=5)
        report = dispatch(ctx.db, ctx.clock, {"webhook": channel}, POLICY)
    assert report.sent == [row.reference]
    ((headers, raw),) = seen
    body = json.loads(raw)
    assert (body["reference"], body["message_id"], body["kind"]) == (
        row.reference,
        row.message_id,
        "opened",
    )
    assert (body["case_id"], body["subject"], body["text"]) == (
        row.case_id,
        row.subject,
        row.body_text,
    )
    expected = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    assert headers["X-Regul-Signature"] == expected == sign("s3cret", raw)
    assert headers["X-Regul-Message-Id"] == row.message_id
    assert headers["Content-Type"] == "application/json"
    sent = notice(ctx, row.reference)
    assert (sent.status, [a.ok for a in attempts(ctx, sent)]) == ("sent", [True])


def test_webhook_answering_500_is_retried_then_failed(ctx: Ctx) -> None:
    """A 500 answer is a failed attempt: retried after the backoff, then failed after max_attempts."""
    ctx = use_outbox(ctx, "webhook")
    case = drive(ctx, ctx.open("transfer"), [])  # the opening notice
    (row,) = notices(ctx)
    before = case_state(ctx)
    policy = DispatchPolicy(max_attempts=3, backoff=timedelta(seconds=10))
    outcomes: list[dict[str, int]] = []
    with http_server(500) as (url, seen):
        channel = WebhookChannel(url, secret="s3cret", timeout=5)
        for _ in range(policy.max_attempts):
            outcomes.append(dispatch(ctx.db, ctx.clock, {"webhook": channel}, policy).counts())
            ctx.clock.set(notice(ctx, row.reference).next_attempt_at)
    assert outcomes == [{"sent": 0, "retried": 1, "failed": 0}] * 2 + [
        {"sent": 0, "retried": 0, "failed": 1}
    ]
    assert len(seen) == 3
    assert {json.loads(raw)["message_id"] for _h, raw in seen} == {row.message_id}
    failed = notice(ctx, row.reference)
    assert failed.status == "failed"
    assert "answered 500" in failed.last_error
    assert [a.ok for a in attempts(ctx, failed)] == [False, False, False]
    assert case_state(ctx) == before
    assert ctx.runner.show(case.reference).version == case.version


def test_webhook_answering_garbage_is_a_failed_attempt(ctx: Ctx) -> None:
    """An endpoint that does not speak HTTP (e.g. the URL points at an SMTP port) is retried, not a crash."""
    ctx = use_outbox(ctx, "webhook")
    drive(ctx, ctx.open("transfer"), [])  # the opening notice
    (row,) = notices(ctx)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def answer_like_smtp() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"220 mail.example ESMTP ready\r\n")

    thread = threading.Thread(target=answer_like_smtp)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    try:
        try:
            report = dispatch(ctx.db, ctx.clock, {"webhook": WebhookChannel(url, "s", 5)}, POLICY)
        except Exception as exc:
            pytest.fail(
                f"dispatch raised {type(exc).__name__}: {exc!r} instead of recording a failed "
                "attempt; the notice stays leased, is never marked failed, and the rest of the "
                "batch waits for the lease"
            )
    finally:
        thread.join(timeout=10)
        listener.close()
    assert report.retried == [row.reference]
    current = notice(ctx, row.reference)
    assert (current.status, current.attempts) == ("queued", 1)
    assert [a.ok for a in attempts(ctx, current)] == [False]


def test_a_send_outlasting_its_lease_never_unmarks_a_sent_notice(ctx: Ctx) -> None:
    """Worker A is stuck past its lease, worker B delivers the notice; A's late failure keeps it sent."""
    ctx = use_outbox(ctx, "smtp")
    drive(ctx, ctx.open("ecmo"), [])  # the opening notice
    (row,) = notices(ctx)
    last_try = DispatchPolicy(max_attempts=1, lease=timedelta(minutes=2))

    with smtp_server() as (port, handler):
        working = SmtpChannel("127.0.0.1", port, timeout=5)

        class Stuck:
            """Worker A's channel: hangs past the lease (meanwhile B dispatches), then times out."""

            name = "smtp"

            def send(self, notice: Any) -> None:
                ctx.clock.advance(last_try.lease + timedelta(seconds=1))
                other = dispatch(ctx.db, ctx.clock, {"smtp": working}, last_try)
                assert other.sent == [notice.reference]
                raise DeliveryError("SMTP 127.0.0.1: timed out")

        dispatch(ctx.db, ctx.clock, {"smtp": Stuck()}, last_try)
    assert [parsed(e)["Message-ID"] for e in handler.envelopes] == [row.message_id]
    final = notice(ctx, row.reference)
    assert [a.ok for a in attempts(ctx, final)] == [True, False]
    assert final.status == "sent", (
        f"delivered by worker B, then marked {final.status!r} by worker A's stale lease"
    )


# -- 8. a crash between sending and marking sent ---------------------------------------------


class Crash(BaseException):
    """The process dies (as with SIGKILL seen from Python: nothing after this line runs)."""


class CrashAfterSend:
    """Sends through the real channel, then the process 'dies' before the outbox is updated."""

    name = "smtp"

    def __init__(self, inner: SmtpChannel) -> None:
        self.inner = inner

    def send(self, notice: Any) -> None:
        self.inner.send(notice)
        raise Crash


def test_crash_after_sending_resends_with_the_same_message_id(ctx: Ctx) -> None:
    """The notice stays leased, is sent again once the lease expires, with the same Message-ID."""
    ctx = use_outbox(ctx, "smtp")
    drive(ctx, ctx.open("ecmo"), [])  # the opening notice
    (row,) = notices(ctx)
    leased_at = ctx.clock.now()
    with smtp_server() as (port, handler):
        channel = SmtpChannel("127.0.0.1", port, timeout=5)
        with pytest.raises(Crash):
            dispatch(ctx.db, ctx.clock, {"smtp": CrashAfterSend(channel)}, POLICY)
        assert handler.received.is_set()
        held = notice(ctx, row.reference)
        assert (held.status, held.attempts, held.sent_at) == ("queued", 0, None)
        assert held.next_attempt_at == leased_at + POLICY.lease
        assert attempts(ctx, held) == []
        ctx.clock.set(leased_at + POLICY.lease - timedelta(seconds=1))
        assert dispatch(ctx.db, ctx.clock, {"smtp": channel}, POLICY).counts()["sent"] == 0
        ctx.clock.set(leased_at + POLICY.lease)
        report = dispatch(ctx.db, ctx.clock, {"smtp": channel}, POLICY)
    assert report.sent == [row.reference]
    ids = [parsed(e)["Message-ID"] for e in handler.envelopes]
    assert ids == [row.message_id, row.message_id]  # a receiver drops the second one
    assert len(set(ids)) == 1
    done = notice(ctx, row.reference)
    assert (done.status, done.attempts) == ("sent", 1)
    assert [a.ok for a in attempts(ctx, done)] == [True]


# -- 9. the CLI ------------------------------------------------------------------------------


def test_cli_preview_show_and_errors(nctx: Ctx, database_url: str) -> None:
    """preview renders without queuing; show --html prints the HTML; unknown kind/reference 3; bad status 2."""
    ctx = nctx
    case = drive(ctx, ctx.open("ecmo"), ["escalate"])
    row = notices(ctx)[-1]
    before = ctx.snapshot()
    code, out, err = regul(database_url, "notices", "preview", "resolved", "--case", case.reference)
    assert code == 0, err
    assert "SOLUTION TROUVÉE" in out
    assert "REFERENCE : APERÇU N°2026" in out
    assert case.reference in out
    code, out, err = regul(
        database_url, "notices", "preview", "incident", "--case", case.reference, "--html"
    )
    assert code == 0, err
    assert out.startswith("<!DOCTYPE html>")
    code, out, err = regul(
        database_url, "notices", "preview", "escalated", "--case", case.reference, "--json"
    )
    assert code == 0, err
    assert [r["org"] for r in json.loads(out)["pour_action"]] == ["UMAC-SUD"]
    assert ctx.snapshot() == before  # nothing queued, no number taken

    code, _out, err = regul(database_url, "notices", "preview", "party", "--case", case.reference)
    assert code == 3
    assert "no notice kind 'party' for ecmo" in err
    for kind in BOOKS["ecmo"].kinds:
        assert kind in err
    code, out, err = regul(database_url, "notices", "show", row.reference, "--html")
    assert code == 0, err
    assert out.rstrip("\n") == row.body_html.rstrip("\n")
    code, out, err = regul(database_url, "notices", "show", row.reference)
    assert code == 0, err
    assert out.startswith(row.body_text.rstrip("\n"))
    code, out, err = regul(database_url, "notices", "show", row.reference, "--json")
    assert code == 0, err
    assert json.loads(out)["message_id"] == row.message_id
    code, _out, err = regul(database_url, "notices", "show", "MARS N°2026_999")
    assert code == 3
    assert "no notice 'MARS N°2026_999'" in err
    code, _out, err = regul(database_url, "notices", "list", "--status", "bogus")
    assert code == 2
    assert "--status 'bogus'" in err
    assert ctx.snapshot() == before
