"""The queue and the auditor's page, fixed (issue 14): names, durations, filters with their
counts, folded reads; a paginated audit log in French with case references and readable
refusals."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import pytest

from engine.errors import NotFound, NotPermitted
from interfaces.desk_views import fold_reads, span
from tests.conftest import Web
from tests.test_desk import (
    ENGLISH_WORDS,
    IDF_HOSPITAL,
    at,
    audit_rows,
    build_morning,
    queue_rows,
    umac_case,
)

# -- helpers ---------------------------------------------------------------------------------


def option_counts(page: str, name: str) -> dict[str, int]:
    """{value: count} of the options of the select ``name`` (« ECMO (3) »)."""
    select = re.search(rf'<select id="f-{name}" name="{name}">(.*?)</select>', page, re.S)
    assert select, f"no select {name}"
    found = re.findall(r'<option value="([^"]*)"[^>]*>[^<]*\((\d+)\)</option>', select.group(1))
    return {value: int(n) for value, n in found}


def flag_count(page: str, name: str) -> int:
    found = re.search(rf'name="{name}" value="true"[^>]*> [^<(]*\((\d+)\)</label>', page)
    assert found, f"no checkbox {name}"
    return int(found.group(1))


def listed(web: Web, query: str = "") -> list[str]:
    answer = web.client.get(f"/?{query}")
    assert answer.status_code == 200, answer.text
    return [ref for ref, _ in queue_rows(answer.text)]


def cells(page: str) -> list[list[str]]:
    """The text of each cell of the audit table's body, row by row."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", r, re.S)] for r in rows]


def ids_on(page: str) -> list[int]:
    return [int(row[0]) for row in cells(page)]


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 min"),
        (59, "0 min"),
        (12 * 60, "12 min"),
        (3 * 3600 + 5 * 60, "3 h 05 min"),
        (24 * 3600, "1 j"),
        (502 * 3600, "20 j 22 h"),
        (2 * 86400 + 4 * 3600 + 29 * 60, "2 j 4 h"),
        (-(2 * 86400 + 4 * 3600), "2 j 4 h"),
    ],
)
def test_durations_are_in_days_and_hours(seconds: int, shown: str) -> None:
    assert span(seconds) == shown


def test_queue_shows_names_and_late_durations_in_days(web: Web) -> None:
    """The establishment's name, not its FINESS number; « en retard de 2 j 4 h », not 52 h."""
    refs = build_morning(web.ctx)
    at(web.ctx, 6.5 + 52)  # two days and four hours later: 'mine_late' was due at 14:01
    web.login("umac-sud")
    page = web.client.get("/").text
    rows = dict(queue_rows(page))
    row = rows[refs["mine_late"]]
    assert "<td>CHU de Toulouse</td>" in row
    assert "319900001" not in row
    assert "en retard de 2 j 4 h" in row
    assert not re.search(r"\d{2,} h", page)  # no « 52 h »: days come first


def test_case_page_names_the_establishment(web: Web) -> None:
    ref = web.ctx.open().reference
    web.login("ars-occ")
    page = web.client.get(f"/cases/{ref}").text
    assert "CHU de Toulouse (FINESS 319900001" in page


# -- filters and their counts ------------------------------------------------------------------


def morning_with_ppe(web: Web) -> dict[str, str]:
    refs = build_morning(web.ctx)
    refs["ppe"] = web.ctx.open("ppe").reference
    return refs


def test_each_filter_lists_what_its_count_says(web: Web) -> None:
    """Every option of every filter: choosing it lists as many cases as its count said."""
    morning_with_ppe(web)
    web.login("umac-sud")
    for base in ("", "everything=true"):
        page = web.client.get(f"/?{base}").text
        for name in ("kind", "state"):
            for value, count in option_counts(page, name).items():
                query = "&".join(q for q in (base, f"{name}={value}" if value else "") if q)
                assert len(listed(web, query)) == count, (name, value)
        for name in ("mine", "overdue", "incidents"):
            query = "&".join(q for q in (base, f"{name}=true") if q)
            assert len(listed(web, query)) == flag_count(page, name), name


def test_filters_narrow_the_queue_and_their_counts(web: Web) -> None:
    """umac-sud: 6 open cases (5 ECMO, 1 PPE); 2 at its level; 1 incident; the counts of the
    other filters follow the ones chosen."""
    refs = morning_with_ppe(web)
    web.login("umac-sud")
    page = web.client.get("/").text
    assert option_counts(page, "kind") == {"": 6, "ecmo": 5, "ppe": 1, "transfer": 0}
    assert flag_count(page, "mine") == 2
    assert flag_count(page, "incidents") == 1
    assert listed(web, "mine=true") == [refs["mine_late"], refs["mine"]]
    assert listed(web, "incidents=true") == [refs["incident"]]
    assert listed(web, "kind=ppe") == [refs["ppe"]]
    assert refs["mine_late"] in listed(web, "overdue=true")
    assert refs["mine"] not in listed(web, "overdue=true")
    assert listed(web, "state=ecmo:umac_review") == [refs["mine_late"], refs["mine"]]
    mine = web.client.get("/?mine=true").text
    assert option_counts(mine, "kind") == {"": 2, "ecmo": 2, "ppe": 0, "transfer": 0}
    assert flag_count(mine, "overdue") == 1  # mine_late only
    assert flag_count(mine, "mine") == 2  # a filter's own count ignores itself
    assert "2 dossier(s) correspondant aux filtres" in mine
    assert refs["closed"] in listed(web, "everything=true&kind=ecmo")
    assert refs["closed"] not in listed(web, "kind=ecmo")


def test_filters_survive_a_refresh(web: Web) -> None:
    """The filters are the query string: the page shows them chosen, and « Actualiser » and
    the case links keep them (no JavaScript)."""
    morning_with_ppe(web)
    web.login("umac-sud")
    page = web.client.get("/?kind=ecmo&mine=true&overdue=true").text
    assert '<option value="ecmo" selected>' in page
    assert re.search(r'name="mine" value="true" checked>', page)
    assert re.search(r'name="overdue" value="true" checked>', page)
    assert not re.search(r'name="incidents" value="true" checked>', page)
    refresh = re.search(r'<a href="/\?([^"]*)">Actualiser</a>', page)
    assert refresh
    assert dict(parse_qsl(html.unescape(refresh.group(1)))) == {
        "kind": "ecmo",
        "mine": "true",
        "overdue": "true",
    }
    assert listed(web, html.unescape(refresh.group(1))) == listed(
        web, "kind=ecmo&mine=true&overdue=true"
    )
    assert "<script" not in page


@pytest.mark.parametrize(
    "query", ["kind=nope", "state=ecmo:nope", "state=ppe:requested&kind=ecmo", "state=%00"]
)
def test_unknown_filter_values_are_dropped(web: Web, query: str) -> None:
    """A made-up value filters nothing out of scope and breaks nothing: it is ignored."""
    refs = morning_with_ppe(web)
    web.login("umac-sud")
    shown = listed(web, query)
    expected = listed(web, "kind=ecmo") if "kind=ecmo" in query else listed(web)
    assert shown == expected
    assert refs["paris"] not in shown


def test_counts_stay_inside_the_scope(web: Web) -> None:
    """ars-idf counts its one case and none of Occitanie's."""
    morning_with_ppe(web)
    web.login("ars-idf")
    page = web.client.get("/").text
    assert option_counts(page, "kind")[""] == 1


# -- the case timeline folds repeated reads ----------------------------------------------------


def test_repeated_reads_fold_into_one_line(web: Web) -> None:
    """Three reads by ars-occ in a row: one line « consulté 3 fois, du … au … »; a read by
    someone else, or after another event, starts a new line."""
    ref = web.ctx.open().reference
    web.login("ars-occ")
    for minutes in (0, 5, 10):
        web.ctx.clock.set(web.ctx.clock.now() + timedelta(minutes=minutes))
        web.client.get(f"/cases/{ref}")
    web.ctx.runner.show(ref, login="umac-sud", via="api")  # someone else reads it
    web.ctx.runner.advance(
        reference=ref, trigger="escalate", login="etab-319900001", reason="confirmée"
    )
    page = web.client.get(f"/cases/{ref}").text
    timeline = page.split('id="chrono"', 1)[1]
    assert timeline.count("consulté 3 fois, du ") == 1
    folded = re.search(r"consulté 3 fois, du ([0-9/ :]+) au ([0-9/ :]+)</td>", timeline)
    assert folded
    assert folded.group(1) != folded.group(2)
    assert timeline.count('<tr class="ev-read">') == 2  # umac-sud's, then this last view


def test_fold_reads_keeps_everything_else() -> None:
    def event(seq: int, action: str, actor: str) -> Any:
        at = datetime(2026, 11, 22, 8, seq, tzinfo=UTC)
        return SimpleNamespace(seq=seq, action=action, actor=actor, at=at)

    events = [
        event(1, "opened", "a"),
        event(2, "read", "b"),
        event(3, "read", "b"),
        event(4, "read", "c"),
        event(5, "read", "b"),
        event(6, "transition", "b"),
        event(7, "read", "b"),
        event(8, "read", "b"),
    ]
    lines = fold_reads(events)
    assert [(line.event.seq, line.last.seq, line.count) for line in lines] == [
        (1, 1, 1),
        (2, 3, 2),
        (4, 4, 1),
        (5, 5, 1),
        (6, 6, 1),
        (7, 8, 2),
    ]


# -- the auditor's page --------------------------------------------------------------------------


def test_audit_page_is_paginated_without_overlap(web: Web) -> None:
    """60 openings: page 1 holds 50, page 2 the next 10; the links keep the filters."""
    for _ in range(60):
        web.ctx.open()
    web.login("auditeur")
    first = web.client.get("/audit", params={"user": "etab-319900001"}).text
    second = web.client.get("/audit", params={"user": "etab-319900001", "page": "2"}).text
    one, two = ids_on(first), ids_on(second)
    assert len(one) == 50
    assert len(two) == 10
    assert one + two == sorted(one + two)  # in order, page 2 after page 1
    assert not set(one) & set(two)
    assert 'href="/audit?user=etab-319900001&amp;page=2" rel="next"' in first
    assert 'rel="prev"' not in first
    assert 'href="/audit?user=etab-319900001&amp;page=1" rel="prev"' in second
    assert 'rel="next"' not in second
    assert ids_on(web.client.get("/audit", params={"page": "3"}).text) == []
    assert "n° 51 à 60" in second
    bad = web.client.get("/audit", params={"page": "0"})
    assert bad.status_code == 422


def morning_for_the_auditor(web: Web) -> dict[str, str]:
    """Transitions, reads, a hold and an extension, refusals in a case and in the security
    stream, a probe of a missing case."""
    ref = umac_case(web.ctx).reference
    paris = umac_case(web.ctx, IDF_HOSPITAL).reference
    runner = web.ctx.runner
    runner.show(ref, login="ars-occ", via="api")
    with pytest.raises(NotPermitted):  # at the UMAC's level, not the ARS's
        runner.advance(reference=ref, trigger="escalate", login="ars-occ", reason="essai")
    with pytest.raises(NotFound):  # outside its scope: 'no case', recorded in the chain
        runner.show(ref, login="ars-idf", via="desk")
    with pytest.raises(NotFound):  # a case that does not exist: a probe
        runner.show("ECMO-999999", login="ars-occ", via="desk")
    with pytest.raises(NotPermitted):  # a regulator asks for the audit log
        runner.audit_events(login="ars-occ")
    runner.control(reference=ref, action="extend", login="umac-sud", reason="attente",
                   extend_by=timedelta(hours=2))  # fmt: skip
    with pytest.raises(NotPermitted):
        runner.control(reference=ref, action="extend", login="umac-sud", reason="trop",
                       extend_by=timedelta(hours=30))  # fmt: skip
    runner.advance(reference=ref, trigger="escalate", login="umac-sud", reason="pas de console")
    return {"ref": ref, "paris": paris}


def test_audit_page_speaks_french_with_case_references(web: Web) -> None:
    """No raw code in the table: actions, states, triggers, roles and organisations in
    French; cases by their reference; the security stream named."""
    refs = morning_for_the_auditor(web)
    web.login("auditeur")
    page = web.client.get("/audit").text
    table = cells(page)
    assert table, page
    text = " | ".join(" ".join(row) for row in table)
    registry = web.ctx.registry
    codes = {s.name for spec in registry for s in spec.states}
    codes |= {t.trigger for spec in registry for t in spec.transitions}
    codes |= {"refused", "transition", "opened", "read", "probe", "extend", "umac", "ars"}
    words = set(re.findall(r"[\w-]+", text))
    assert not words & codes, words & codes
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", text)  # no snake_case code
    cases = {row[1] for row in table}
    assert cases <= {refs["ref"], refs["paris"], "sécurité"}
    assert {refs["ref"], refs["paris"], "sécurité"} <= cases
    assert "UMAC zone Sud" in text  # the organisation's name
    assert "Examen par l'UMAC → " in text  # the states' labels
    assert "Escalader au niveau supérieur" in text
    assert "Consulté : le dossier (API)" in text
    assert "Échéance prolongée de 2 h 00 min" in text


def test_each_refusal_says_what_was_attempted_and_why(web: Web) -> None:
    refs = morning_for_the_auditor(web)
    web.login("auditeur")
    table = cells(web.client.get("/audit").text)
    refusals = [row for row in table if row[3] in {"Refus", "Demande sur un dossier inexistant"}]
    details = [row[7] for row in refusals]
    assert len(details) == 5, details
    for text in details:
        assert text.startswith("Tentative : "), text
        assert not ENGLISH_WORDS.search(text), text
    assert (
        "Tentative : escalader au niveau supérieur. Refusé : votre rôle ne permet pas cette "
        "action dans cet état." in details
    )
    assert any(
        d.startswith("Tentative : consulter le dossier. Refusé : ")
        and "hors du périmètre de ars-idf (région IDF)" in d
        for d in details
    ), details
    assert any("ECMO-999999" in d and "n'existe pas" in d for d in details), details
    assert any(
        d.startswith("Tentative : consulter le journal d'audit. Refusé : seuls les auditeurs")
        for d in details
    ), details
    too_long = "Tentative : prolonger l'échéance. Refusé : une prolongation ne dépasse pas 24 h"
    assert any(d.startswith(too_long) for d in details), details
    by_ref = [row for row in refusals if row[1] == refs["ref"]]
    assert len(by_ref) == 3  # the ARS's escalate, the outsider's read, the long extension


def test_regional_auditor_pages_its_region_only(web: Web) -> None:
    """auditeur-occ: references of Occitanie cases only, across pages."""
    for _ in range(30):
        web.ctx.open()
        web.ctx.open(hospital=IDF_HOSPITAL)
    web.login("auditeur-occ")
    pages = [audit_rows(web.client.get("/audit", params={"page": str(n)}).text) for n in (1, 2)]
    assert [len(p) for p in pages] == [30, 0]
    numbers = [int(r[0].removeprefix("ECMO-")) for r in pages[0]]
    assert numbers == list(range(1, 61, 2))  # the Toulouse cases, odd ids


def test_api_lists_the_cases_at_my_level_as_the_desk_does(web: Web) -> None:
    """GET /api/v1/cases?mine=true: the cases the desk's « À mon niveau » lists."""
    refs = morning_with_ppe(web)
    web.login("umac-sud")
    keys = web.token("umac-sud")
    answer = web.client.get("/api/v1/cases", params={"mine": "true", "open": "true"}, headers=keys)
    assert answer.status_code == 200, answer.text
    assert {c["reference"] for c in answer.json()} == {refs["mine_late"], refs["mine"]}
    assert set(listed(web, "mine=true")) == {refs["mine_late"], refs["mine"]}
    other = web.client.get("/api/v1/cases", params={"mine": "true", "level": "ars"}, headers=keys)
    assert other.json() == []
