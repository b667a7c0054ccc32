"""Golden files: one rendered notice per kind and per issuer, text and HTML, on a fixed clock.

Each notice is produced through the real path (a case opened and driven on the test clock, the
sweep for the automatic steps), its facts stored by the unit of work, then rendered from them
as the dispatcher does. The files under ``tests/golden/notices/`` pin the result byte for byte;
after a deliberate change to a template or to the facts, rewrite them with
``REGUL_GOLDEN_UPDATE=1 .venv/bin/python -m pytest tests/test_notices_golden.py`` and read the
diff. A second test reads every notice of those scenarios for raw vocabulary codes: a code
that reaches a notice is a missing French label.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.values import Draft
from engine.vocab import Action, Role
from notifications.outbox import NOTICE_TABLE, Outbox
from notifications.render import Renderer, with_bodies
from tests.conftest import Ctx, drive, path_to
from tests.test_notices import BOOKS, REGISTRY, fire, use_outbox
from workflows.labels import VALUES

GOLDEN = Path(__file__).resolve().parent / "golden" / "notices"
UPDATE = os.environ.get("REGUL_GOLDEN_UPDATE") == "1"


def _last(ctx: Ctx, case_id: int) -> Any:
    with ctx.db.read() as conn:
        row = conn.execute(
            sa.select(NOTICE_TABLE)
            .where(NOTICE_TABLE.c.case_id == case_id)
            .order_by(NOTICE_TABLE.c.id.desc())
            .limit(1)
        ).one()
    return with_bodies(row)


def scenarios(ctx: Ctx) -> Iterator[tuple[str, Any]]:
    """(name, rendered notice): every kind of every workflow, then one per issuer type."""
    for kind, book in BOOKS.items():
        for event in book.rules:
            case, _outcome = fire(ctx, kind, event)
            yield f"{kind}-{event}", _last(ctx, case.id)
    # the CCS decides for an establishment: a MARS with the ministry's letterhead
    ecmo = REGISTRY["ecmo"]
    case = drive(ctx, ctx.open("ecmo"), [*path_to(ecmo, "national_regulation"), "resolve"])
    yield "issuer-ccs-mars", _last(ctx, case.id)
    # the ARS decides (a PPE request served from the regional reserve)
    case = ctx.open("ppe")
    case = drive(ctx, case, ["escalate", "escalate", "resolve"])
    yield "issuer-ars", _last(ctx, case.id)


def minsante(ctx: Ctx) -> tuple[str, str]:
    """The CCS addressing the ARS (Pour action the CCS and the ARS, no establishment): a
    MINSANTE. No ladder step produces one today, so the facts are gathered for a CCS act
    on a transfer's incident rule and rendered with a fixed reference."""
    case = ctx.open("transfer")
    draft = Draft("ccs", "ccs", "CCS", "transition", "national_regulation", "dispatched", 4,
                  "Demande relayée aux ARS de la zone", {"trigger": "resolve", "fields": {}})  # fmt: skip
    outbox = Outbox(ctx.registry, BOOKS)
    with ctx.db.read() as conn:
        series, facts, recipients = outbox.facts(
            conn, case, draft, BOOKS["transfer"].rules["incident"], ctx.clock.now()
        )
    assert series == "MINSANTE"
    context = {**facts, "reference": "MINSANTE N°143", "message_id": "<minsante.000143@x>"}
    context.update(pour_action=recipients["action"], pour_information=recipients["info"])
    rendered = Renderer().render("incident", context)
    return rendered.text, rendered.html


def test_rendered_notices_match_their_golden_files(ctx: Ctx) -> None:
    """Every kind, and each issuer (establishment, UMAC, ARS, CCS MARS, CCS MINSANTE,
    automatic), rendered as text and HTML, equals its file under tests/golden/notices/."""
    ctx = use_outbox(ctx)
    produced: dict[str, str] = {}
    for name, row in scenarios(ctx):
        produced[f"{name}.txt"] = row.body_text
        produced[f"{name}.html"] = row.body_html
    text, html = minsante(ctx)
    produced["issuer-ccs-minsante.txt"], produced["issuer-ccs-minsante.html"] = text, html
    issuers = {name: produced[name] for name in produced if name.endswith(".txt")}
    # the issuers the files pin: a person's act of each kind of organisation, and automatic
    assert "ÉTABLISSEMENT DE SANTÉ\nCHU DE TOULOUSE" in issuers["ecmo-open.txt"]
    assert "UNITÉ MOBILE D'ASSISTANCE CIRCULATOIRE" in issuers["ecmo-resolve.txt"]
    assert issuers["issuer-ars.txt"].startswith("AGENCE RÉGIONALE DE SANTÉ\nARS OCCITANIE")
    assert "REFERENCE : MARS N°2026_1" in issuers["issuer-ccs-mars.txt"]
    assert "REFERENCE : MINSANTE N°143" in issuers["issuer-ccs-minsante.txt"]
    assert "Message automatique émis par Régul" in issuers["ecmo-incident.txt"]
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, content in produced.items():
            (GOLDEN / name).write_text(content, encoding="utf-8")
    differ = [
        name
        for name, content in produced.items()
        if not (GOLDEN / name).is_file() or (GOLDEN / name).read_text(encoding="utf-8") != content
    ]
    unused = sorted({p.name for p in GOLDEN.iterdir()} - set(produced)) if GOLDEN.is_dir() else []
    assert not differ, f"rendered notices differ from their golden files: {differ}"
    assert not unused, f"golden files no scenario produces: {unused}"


# -- every value in French --------------------------------------------------------------------

# Words that are codes and French words at once (and label text that contains its code).
FRENCH = {
    "incident", "national", "transition", "date", "source", "urgent", "cancer", "SSR", "VV", "VA"
}  # fmt: skip


def _codes() -> set[str]:
    codes: set[str] = set()
    for spec in REGISTRY:
        codes.update(s.name for s in spec.states)
        codes.update(t.trigger for t in spec.transitions)
        codes.update(f.name for f in spec.open_fields)
        for t in spec.transitions:
            codes.update(f.name for f in t.fields)
            for f in t.fields:
                codes.update(f.choices)
        for f in spec.open_fields:
            codes.update(f.choices)
    codes.update(str(r) for r in Role)
    codes.update(str(a) for a in Action)
    for choices in VALUES.values():
        codes.update(choices)
    codes.update({"hospital", "sfctcv", "opened", "escalated", "resolved", "cancelled"})
    return {c for c in codes if c not in FRENCH and len(c) > 1}


def _words(text: str) -> set[str]:
    kept = [
        line
        for line in text.splitlines()
        if not line.startswith(("Identifiant :", "DATE :")) and "REFERENCE :" not in line
    ]
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", "\n".join(kept)))


def test_no_vocabulary_code_reaches_a_notice(ctx: Ctx) -> None:
    """No state, trigger, role, action, field name or choice value in a notice's text or HTML:
    every value goes through its French label (and the seeds' known slips stay gone)."""
    ctx = use_outbox(ctx)
    codes = _codes()
    assert {"national_regulation", "establishment", "rail", "region", "ffp2_mask"} <= codes | {
        "region"
    }
    found: dict[str, set[str]] = {}
    for name, row in scenarios(ctx):
        text, html = row.body_text, row.body_html
        mid = row.message_id
        text, html = (
            text.replace(mid, ""),
            html.replace(mid.replace("<", "&lt;").replace(">", "&gt;"), ""),
        )
        if not row.facts["issuer"]["automatic"]:  # a person's reason is what they wrote
            reason = row.facts["event"]["reason"]
            text, html = text.replace(reason, ""), html.replace(reason, "")
        html = re.sub(r"<[^>]+>", " ", html)  # the words, not the markup
        leaked = (_words(text) | _words(html)) & codes
        if leaked:
            found[name] = leaked
        for slip in ("Origine : national", "Stock d'origine : region", "Vecteur : rail",
                     "niveau establishment", "aucune (heure de Paris)", " UTC"):  # fmt: skip
            assert slip not in row.body_text, (name, slip)
        assert "Nous vous remercions de votre mobilisation." in row.body_text
    assert not found, f"raw codes in notices: {found}"


def test_the_french_check_catches_a_raw_code(ctx: Ctx) -> None:
    """The check above can fail: a notice carrying a raw state code is caught."""
    assert {"in_service", "rail"} <= _codes()
    assert "in_service" in _words("Niveau : CHU de Toulouse — in_service") & _codes()
    assert not _words("Identifiant : <umac-sud.2026.000001@regul.invalid>") & _codes()


@pytest.mark.parametrize("name", ["CHU de Toulouse", "ARS Occitanie", "Santé publique France"])
def test_articles_read_as_french(name: str) -> None:
    """« du CHU », « de l'ARS », « de Santé publique France »: never « de CHU »."""
    from notifications.french import of, the, to

    expected = {
        "CHU de Toulouse": ("du CHU de Toulouse", "au CHU de Toulouse", "le CHU de Toulouse"),
        "ARS Occitanie": ("de l'ARS Occitanie", "à l'ARS Occitanie", "l'ARS Occitanie"),
        "Santé publique France": (
            "de Santé publique France",
            "à Santé publique France",
            "Santé publique France",
        ),
    }[name]
    assert (of(name), to(name), the(name)) == expected
