"""The authorization matrix of the JSON API: every endpoint × role × scope × workflow state.

Who may do what is computed here from a table of the demo users' scopes and from the
workflows' declared transitions, independently of ``engine.policy``; the API must agree with
it exactly. Reading follows scope; outside it a case is indistinguishable from a missing one
(404). Every refusal adds exactly one ``refused`` audit event and changes nothing else; every
read of one case by a person (the case, its history, its notices) is recorded in its chain.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import sqlalchemy as sa

from engine.cases import CaseView
from engine.workflow import WorkflowSpec
from tests.conftest import (
    ACTORS_OCC,
    DEFAULT_FIELDS,
    LENDER,
    OUTSIDERS,
    RECEIVING,
    TOULOUSE,
    Ctx,
    Web,
    path_to,
)
from tests.conftest import trigger_data as region_data
from workflows import default_registry

API = "/api/v1"


class Who(NamedTuple):
    role: str
    scope: str  # hospital | ght | zone | region | national
    code: str | None


# The demo users the matrix runs over, with the scope each one's organisation gives (written
# out here from the directory, not derived from engine.actors). "Near" outsiders sit next to
# the Toulouse case: another hospital of its GHT, another GHT of its region, another region of
# its zone.
USERS: dict[str, Who] = {
    "etab-319900001": Who("establishment", "hospital", "319900001"),  # CHU de Toulouse
    "etab-319900002": Who("establishment", "hospital", "319900002"),  # same GHT
    "etab-789900001": Who("establishment", "hospital", "789900001"),  # Poissy, IDF
    "etab-789900002": Who("establishment", "hospital", "789900002"),  # Mantes: lends to Poissy
    # the receiving establishments of the transfers (conftest.RECEIVING, per region)
    "etab-349900001": Who("establishment", "hospital", "349900001"),  # Montpellier, OCC
    "etab-939900001": Who("establishment", "hospital", "939900001"),  # IDF
    "ght-occ-06": Who("ght", "ght", "GHT-OCC-06"),
    "ght-occ-01": Who("ght", "ght", "GHT-OCC-01"),  # same region, other GHT
    "ght-idf-01": Who("ght", "ght", "GHT-IDF-01"),
    "umac-sud": Who("umac", "zone", "SUD"),
    "umac-paris": Who("umac", "zone", "PARIS"),
    "ars-occ": Who("ars", "region", "OCC"),
    "ars-pac": Who("ars", "region", "PAC"),  # same zone, other region
    "ars-idf": Who("ars", "region", "IDF"),
    "arsz-sud": Who("ars_zone", "zone", "SUD"),
    "arsz-paris": Who("ars_zone", "zone", "PARIS"),
    "ccs": Who("ccs", "national", None),
    "spf": Who("spf", "national", None),
    "auditeur": Who("auditor", "national", None),
    "auditeur-occ": Who("auditor", "region", "OCC"),
    "admin": Who("admin", "national", None),
}
AUDITORS = ("auditeur", "auditeur-occ")
REGULATORS = ("ght", "umac", "ars", "ars_zone", "ccs", "spf")  # SpF: the PPE national rung
CONTROLS = ("hold", "resume", "extend")

POISSY = "789900001"
MANTES = "789900002"
# Who lends the ECMO console of each matrix hospital's case (TRIGGER_FIELDS' loan, per region),
# and the states in which an ECMO case has a lender: the lender reads it and fires the
# triggers flagged ``lender`` (extend_loan, return), and nobody else does.
LENDERS = {TOULOUSE: LENDER, POISSY: MANTES}
LOANED = ("dispatched", "in_service", "returned", "closed")
# Where each hospital lies: its own FINESS, GHT, region and zone.
PLACES: dict[str, dict[str, str]] = {
    TOULOUSE: {"hospital": TOULOUSE, "ght": "GHT-OCC-06", "region": "OCC", "zone": "SUD"},
    POISSY: {"hospital": POISSY, "ght": "GHT-IDF-01", "region": "IDF", "zone": "PARIS"},
    "319900002": {"hospital": "319900002", "ght": "GHT-OCC-06", "region": "OCC", "zone": "SUD"},
    MANTES: {"hospital": MANTES, "ght": "GHT-IDF-01", "region": "IDF", "zone": "PARIS"},
    "819900001": {"hospital": "819900001", "ght": "GHT-OCC-01", "region": "OCC", "zone": "SUD"},
    "139900001": {"hospital": "139900001", "ght": "GHT-PAC-01", "region": "PAC", "zone": "SUD"},
    "349900001": {"hospital": "349900001", "ght": "GHT-OCC-04", "region": "OCC", "zone": "SUD"},
    "939900001": {"hospital": "939900001", "ght": "GHT-IDF-02", "region": "IDF", "zone": "PARIS"},
}
MATRIX_HOSPITALS = (TOULOUSE, POISSY)

REGISTRY = default_registry()
KINDS = REGISTRY.kinds()
LIVE_STATES = [
    (spec.kind, state.name) for spec in REGISTRY for state in spec.states if not state.final
]
LIVE_IDS = [f"{kind}-{state}" for kind, state in LIVE_STATES]


# -- the expected answers, from the table above and the workflows' declarations ----------


def sees(login: str, hospital: str) -> bool:
    """Does ``login``'s scope contain ``hospital``?"""
    who = USERS[login]
    return who.scope == "national" or PLACES[hospital][who.scope] == who.code


def lends(login: str, hospital: str, kind: str, state: str) -> bool:
    """Is ``login`` the lender of the console of ``hospital``'s case of ``kind`` in ``state``?"""
    return kind == "ecmo" and state in LOANED and login == f"etab-{LENDERS.get(hospital)}"


# the states in which a transfer names its receiving establishment (proposed, then accepted)
RECEIVED = ("proposed_ars", "proposed_zone", "proposed_national", "dispatched", "transferred",
            "closed")  # fmt: skip


def receives(login: str, hospital: str, kind: str, state: str) -> bool:
    """Is ``login`` the establishment ``hospital``'s transfer in ``state`` is proposed to?"""
    receiving = RECEIVING.get(PLACES[hospital]["region"])
    return kind == "transfer" and state in RECEIVED and login == f"etab-{receiving}"


def sees_case(login: str, hospital: str, kind: str, state: str) -> bool:
    """Scope, or the lender of the case's console, or the receiver of the transfer."""
    return (
        sees(login, hospital)
        or lends(login, hospital, kind, state)
        or receives(login, hospital, kind, state)
    )


def trigger_data(kind: str, trigger: str, hospital: str) -> dict[str, object]:
    """TRIGGER_FIELDS, with the ECMO loan's lender and a transfer's receiving establishment
    taken in the hospital's region."""
    data = region_data(kind, trigger, PLACES[hospital]["region"])
    if "lender" in data:
        data["lender"] = LENDERS[hospital]
    return data


def may_fire(spec: WorkflowSpec, state: str, trigger: str, login: str, hospital: str) -> bool:
    """Role listed for the transition, the case at that role's level (unless any_level), in
    scope; a trigger flagged ``lender``: the lender alone."""
    role = USERS[login].role
    for t in spec.transitions:
        if t.source == state and t.trigger == trigger:
            if t.lender:
                return lends(login, hospital, spec.kind, state)
            if t.receiver:
                return receives(login, hospital, spec.kind, state)
            at_level = t.any_level or spec.state(state).level == role
            return role in t.roles and at_level and sees(login, hospital)
    return False


def may_control(spec: WorkflowSpec, state: str, login: str, hospital: str) -> bool:
    """A regulator of the level holding the case, in scope."""
    role = USERS[login].role
    return role in REGULATORS and spec.state(state).level == role and sees(login, hospital)


def acting(hospital: str) -> dict[str, str]:
    """The user of each role who acts on a case of ``hospital`` (to drive it along)."""
    place = PLACES[hospital]
    return {
        "establishment": f"etab-{hospital}",
        "ght": place["ght"].lower(),
        "umac": f"umac-{place['zone'].lower()}",
        "ars": f"ars-{place['region'].lower()}",
        "ars_zone": f"arsz-{place['zone'].lower()}",
        "ccs": "ccs",
        "spf": "spf",
    }


# -- helpers --------------------------------------------------------------------------------


def open_at(ctx: Ctx, kind: str, hospital: str, state: str | None = None) -> CaseView:
    """A case of ``kind`` for ``hospital``, driven through the engine to ``state``."""
    spec = ctx.registry[kind]
    users = acting(hospital)
    case = ctx.runner.open_case(
        kind=kind, login=users["establishment"], org=hospital, fields=DEFAULT_FIELDS[kind]
    )
    for trigger in path_to(spec, state or spec.initial):
        if case.state == state:  # arrived early: a level of its ladder was skipped
            break
        transition = spec.transition(case.state, trigger)
        if transition is None and trigger == "escalate":  # a rung skipped: one escalate less
            continue
        assert transition is not None
        level = spec.state(case.state).level
        role = level if level in transition.roles else transition.roles[0]
        login = f"etab-{LENDERS[hospital]}" if transition.lender else users[role]
        if transition.receiver:
            login = f"etab-{RECEIVING[PLACES[hospital]['region']]}"
        case = ctx.runner.advance(
            reference=case.reference,
            trigger=trigger,
            login=login,
            reason=f"test {trigger}",
            data=trigger_data(kind, trigger, hospital),
        )
    assert case.state == (state or spec.initial)
    return case


def tokens(web: Web, logins: Any = USERS) -> dict[str, dict[str, str]]:
    """One API token per user (issuing one costs a write: once per test)."""
    return {login: web.token(login) for login in logins}


def stable(ctx: Ctx) -> dict[str, Any]:
    """Everything but the audit log (and the case rows' audit heads): what a refusal keeps."""
    snap = ctx.snapshot()
    del snap["audit_event"], snap["audit_head"]
    for row in snap["regul_case"]:
        del row["audit_seq"], row["audit_hash"]
    return snap


def events_of(ctx: Ctx, reference: str) -> list[Any]:
    return ctx.runner.history(reference)[1]


def security(ctx: Ctx) -> int:
    return ctx.count("audit_event", "case_id IS NULL AND action <> 'probe'")


def is_problem(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert (body["status"], body["code"]) == (status, code), body
    return body


def missing_ref(reference: str) -> str:
    return reference.split("-", maxsplit=1)[0] + "-999999"


def masked(body: dict[str, Any], reference: str) -> dict[str, Any]:
    """A problem body with the case reference blanked, to compare hidden and missing cases."""
    return {k: v.replace(reference, "<ref>") if isinstance(v, str) else v for k, v in body.items()}


def assert_like_missing(hidden: Any, missing: Any, ref: str) -> None:
    """The answer about a hidden case is the answer about a missing one, reference aside."""
    assert (hidden.status_code, missing.status_code) == (404, 404), (hidden.text, missing.text)
    assert hidden.headers["content-type"] == missing.headers["content-type"]
    assert masked(hidden.json(), ref) == masked(missing.json(), missing_ref(ref))


def check_new_events(
    ctx: Ctx, reference: str, before: int, expected: list[tuple[str, str, dict[str, Any]]]
) -> None:
    """The case's chain grew by exactly ``expected``: (action, actor, data subset) each."""
    new = events_of(ctx, reference)[before:]
    assert [(e.action, e.actor) for e in new] == [(a, u) for a, u, _ in expected]
    for event, (_, _, data) in zip(new, expected, strict=True):
        assert {k: event.data.get(k) for k in data} == data, event.data


# -- who one is ----------------------------------------------------------------------------


def test_demo_users_match_the_conftest_actors() -> None:
    """The matrix's users include every role's actor in Occitanie and its outsider."""
    for role, login in {**ACTORS_OCC}.items():
        assert USERS[login].role == role
        assert sees(login, TOULOUSE)
    for role, login in OUTSIDERS.items():
        assert USERS[login].role == role
        assert not sees(login, TOULOUSE)
        assert sees(login, POISSY)


def test_me_and_workflows_for_every_user(web: Web) -> None:
    """Every user reads /me (with the scope the matrix assumes) and the workflows; no audit."""
    keys = tokens(web)
    before = web.ctx.count("audit_event")
    for login, who in USERS.items():
        me = web.client.get(f"{API}/me", headers=keys[login])
        assert me.status_code == 200, me.text
        scope = "national" if who.scope == "national" else f"{who.scope} {who.code}"
        assert (me.json()["login"], me.json()["role"], me.json()["scope"]) == (
            login,
            who.role,
            scope,
        )
        flows = web.client.get(f"{API}/workflows", headers=keys[login])
        assert [f["kind"] for f in flows.json()] == ["ecmo", "ppe", "transfer"]
        assert web.client.get(f"{API}/workflows/ppe", headers=keys[login]).status_code == 200
    assert web.ctx.count("audit_event") == before


# -- opening -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_open_matrix(web: Web, kind: str) -> None:
    """An establishment opens for its own hospital (and an ARS a PPE request for an
    establishment of its region); every refusal is one security event."""
    ctx, keys = web.ctx, tokens(web)
    before, sec = stable(ctx), security(ctx)
    allowed: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for hospital in MATRIX_HOSPITALS:
        for login, who in USERS.items():
            ok = who.role == "establishment" and who.code == hospital
            if kind == "ppe" and who.role == "ars":
                ok = sees(login, hospital)
            (allowed if ok else refused).append((login, hospital))
    for login, hospital in refused:
        body = {"kind": kind, "org": hospital, "fields": DEFAULT_FIELDS[kind]}
        answer = web.client.post(f"{API}/cases", json=body, headers=keys[login])
        is_problem(answer, 403, "not_permitted")
    assert stable(ctx) == before
    assert security(ctx) == sec + len(refused)
    with ctx.db.read() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT actor, action, data FROM audit_event WHERE case_id IS NULL "
                "ORDER BY id DESC LIMIT :n"
            ),
            {"n": len(refused)},
        ).all()
    recorded = []
    for row in reversed(rows):
        data = row.data if isinstance(row.data, dict) else json.loads(row.data)
        assert (row.action, data["op"], data["kind"]) == ("refused", "open", kind)
        recorded.append((row.actor, data["org"]))
    assert recorded == refused
    by_ars = [("ars-occ", TOULOUSE), ("ars-idf", POISSY)] if kind == "ppe" else []
    assert sorted(allowed) == sorted(
        [("etab-319900001", TOULOUSE), ("etab-789900001", POISSY), *by_ars]
    )
    for login, hospital in allowed:
        body = {"kind": kind, "org": hospital, "fields": DEFAULT_FIELDS[kind]}
        answer = web.client.post(f"{API}/cases", json=body, headers=keys[login])
        assert answer.status_code == 201, answer.text
        assert (answer.json()["org"], answer.json()["opened_by"]) == (hospital, login)


# -- reading one case's history and notices ------------------------------------------------


@pytest.mark.parametrize("hospital", MATRIX_HOSPITALS)
@pytest.mark.parametrize("kind", KINDS)
def test_history_and_notices_follow_read_scope(web: Web, kind: str, hospital: str) -> None:
    """History and notices: 200 in scope (the read recorded), else a 404 like a missing case."""
    ctx = web.ctx
    spec = ctx.registry[kind]
    state = spec.allowed(spec.initial)[0].dest  # the first regulating level
    ref, keys = open_at(ctx, kind, hospital, state).reference, tokens(web)
    before, sec, seen = stable(ctx), security(ctx), len(events_of(ctx, ref))
    expected: list[tuple[str, str, dict[str, Any]]] = []
    for login in USERS:
        for what, read in (("history", "history"), ("notices", "notices")):
            answer = web.client.get(f"{API}/cases/{ref}/{what}", headers=keys[login])
            if sees(login, hospital):
                assert answer.status_code == 200, (login, what, answer.text)
                if what == "history":
                    events = answer.json()["events"]
                    assert events[0]["action"] == "opened"
                    assert events[-1]["action"] == "read"
                    assert events[-1]["actor"] == login
                else:
                    assert isinstance(answer.json(), list)
                expected.append(("read", login, {"read": read}))
            else:
                url = f"{API}/cases/{missing_ref(ref)}/{what}"
                assert_like_missing(answer, web.client.get(url, headers=keys[login]), ref)
                expected.append(("refused", login, {"op": "read", "read": read}))
    check_new_events(ctx, ref, seen, expected)
    assert stable(ctx) == before
    assert security(ctx) == sec


# -- listing -------------------------------------------------------------------------------

LISTED = ("319900001", "319900002", "819900001", "139900001", "789900001")


@pytest.fixture
def listed(web: Web) -> dict[str, dict[str, Any]]:
    """An open case of each kind in five hospitals, one ECMO of Toulouse closed by cancel."""
    cases: dict[str, dict[str, Any]] = {}
    for hospital in LISTED:
        for kind in KINDS:
            state = "requested" if kind != "transfer" else "ars_regulation"
            case = open_at(web.ctx, kind, hospital, state)
            cases[case.reference] = {"hospital": hospital, "kind": kind, "state": state}
    gone = open_at(web.ctx, "ecmo", TOULOUSE, "cancelled")
    cases[gone.reference] = {"hospital": TOULOUSE, "kind": "ecmo", "state": "cancelled"}
    return cases


LIST_FILTERS: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("", lambda c: True),
    ("?kind=ppe", lambda c: c["kind"] == "ppe"),
    ("?state=ars_regulation", lambda c: c["state"] == "ars_regulation"),
    ("?open=true", lambda c: c["state"] != "cancelled"),
    ("?region=IDF", lambda c: PLACES[c["hospital"]]["region"] == "IDF"),
    ("?region=OCC", lambda c: PLACES[c["hospital"]]["region"] == "OCC"),
    ("?org=789900001", lambda c: c["hospital"] == POISSY),
    ("?org=139900001&kind=ecmo", lambda c: c["hospital"] == "139900001" and c["kind"] == "ecmo"),
    ("?level=ars", lambda c: c["state"] == "ars_regulation"),
]


def test_list_shows_exactly_the_cases_in_scope(web: Web, listed: dict[str, dict[str, Any]]) -> None:
    """GET /cases, with or without filters (region, org of elsewhere...), never leaves scope."""
    keys = tokens(web)
    before = stable(web.ctx)
    for login in USERS:
        for query, keep in LIST_FILTERS:
            answer = web.client.get(f"{API}/cases{query}", headers=keys[login])
            assert answer.status_code == 200, answer.text
            got = [c["reference"] for c in answer.json()]
            want = {r for r, c in listed.items() if keep(c) and sees(login, c["hospital"])}
            assert sorted(got) == sorted(want), (login, query)
            ids = [int(ref.split("-")[1]) for ref in got]
            assert ids == sorted(ids, reverse=True)  # newest first
        # paging one by one never reaches beyond the scope either
        paged = []
        for offset in range(len(listed) + 1):
            page = web.client.get(f"{API}/cases?limit=1&offset={offset}", headers=keys[login])
            paged += [c["reference"] for c in page.json()]
        assert set(paged) == {r for r, c in listed.items() if sees(login, c["hospital"])}
    assert stable(web.ctx) == before


def test_list_hospitals_tell_every_scope_apart() -> None:
    """In zone Sud the listed hospitals tell every scope apart: a widened scope would show."""
    views: dict[frozenset[str], set[tuple[str, str | None]]] = {}
    for login, who in USERS.items():
        seen = frozenset(h for h in LISTED if sees(login, h))
        if login in {f"etab-{MANTES}", *(f"etab-{r}" for r in RECEIVING.values())}:
            continue  # a lender or receiver of the matrix, with no listed case
        assert seen, login
        if who.code not in {POISSY, "GHT-IDF-01", "IDF", "PARIS"}:  # one IDF hospital only
            views.setdefault(seen, set()).add((who.scope, who.code))
    assert all(len(scopes) == 1 for scopes in views.values()), views


# -- one case × every user × every endpoint acting on it, in every live state --------------


def fire(
    web: Web, headers: dict[str, str], ref: str, trigger: str, version: int,
    hospital: str = TOULOUSE,
) -> Any:  # fmt: skip
    kind = REGISTRY.by_prefix(ref.split("-", maxsplit=1)[0].upper())
    data = trigger_data(kind.kind if kind else "", trigger, hospital)
    return web.client.post(
        f"{API}/cases/{ref}/triggers/{trigger}",
        json={"reason": "matrix", "data": data},
        headers={**headers, "If-Match": f'"{version}"'},
    )


def control(
    web: Web, headers: dict[str, str], ref: str, action: str, version: int, by: str = "30m"
) -> Any:
    body: dict[str, Any] = {"reason": "matrix"}
    if action == "extend":
        body["by"] = by
    return web.client.post(
        f"{API}/cases/{ref}/controls/{action}",
        json=body,
        headers={**headers, "If-Match": f'"{version}"'},
    )


class Matrix:
    """One case of ``kind`` in ``state`` for ``hospital``, and every user's token."""

    def __init__(self, web: Web, kind: str, state: str, hospital: str) -> None:
        self.web, self.ctx, self.spec = web, web.ctx, web.ctx.registry[kind]
        self.kind, self.state, self.hospital = kind, state, hospital
        self.case = open_at(self.ctx, kind, hospital, state)
        self.ref = self.case.reference
        self.keys = tokens(web)
        self.missing: dict[str, Any] = {}  # the answer about a missing case, per request

    def sees(self, login: str) -> bool:
        return sees_case(login, self.hospital, self.kind, self.state)

    def like_missing(
        self, answer: Any, send: Callable[[str, str], Any], login: str, key: str
    ) -> None:
        """``answer`` is what ``send`` gets for a missing case (asked once per ``key``: the
        answer about a missing reference depends on neither the user nor the version)."""
        if key not in self.missing:
            self.missing[key] = send(login, missing_ref(self.ref))
        assert_like_missing(answer, self.missing[key], self.ref)

    def refused(self, send: Callable[[str, str], Any], login: str, key: str) -> None:
        """``send(login, ref)`` was refused: 403 in scope, else the 404 of a missing case."""
        answer = send(login, self.ref)
        if self.sees(login):
            is_problem(answer, 403, "not_permitted")
        else:
            self.like_missing(answer, send, login, key)

    def unchanged(self, act: Callable[[], list[tuple[str, str, dict[str, Any]]]]) -> None:
        """``act()`` leaves everything as it was but the events it says it added to the case."""
        before, sec = stable(self.ctx), security(self.ctx)
        seen = len(events_of(self.ctx, self.ref))
        expected = act()
        check_new_events(self.ctx, self.ref, seen, expected)
        assert stable(self.ctx) == before
        # refusals about a case go to its own chain; an outsider's typed reason goes to the
        # security stream instead (one event each), never into the case's chain
        typed = [
            login
            for action, login, data in expected
            if action == "refused" and ("trigger" in data or "control" in data)
            and not self.sees(login)
        ]  # fmt: skip
        assert security(self.ctx) == sec + len(typed)
        for event in events_of(self.ctx, self.ref)[seen:]:
            if event.action == "refused" and not self.sees(event.actor):
                assert event.reason == "", event

    def reads(self) -> list[tuple[str, str, dict[str, Any]]]:
        spec, state, expected = self.spec, self.state, []

        def read(login: str, ref: str) -> Any:
            return self.web.client.get(f"{API}/cases/{ref}", headers=self.keys[login])

        for login in USERS:
            answer = read(login, self.ref)
            if self.sees(login):
                assert answer.status_code == 200, (login, answer.text)
                assert answer.headers["etag"] == f'"{self.case.version}"'
                body = answer.json()
                assert (body["reference"], body["state"]) == (self.ref, state)
                mine = [
                    t.trigger
                    for t in spec.allowed(state)
                    if may_fire(spec, state, t.trigger, login, self.hospital)
                ]
                assert body["allowed_triggers"] == mine, login
                expected.append(("read", login, {"read": "case", "via": "api"}))
            else:
                self.like_missing(answer, read, login, "read")
                expected.append(("refused", login, {"op": "read", "read": "case", "via": "api"}))
        return expected

    def refused_triggers(self) -> list[tuple[str, str, dict[str, Any]]]:
        expected = []
        for t in self.spec.allowed(self.state):
            for login in USERS:
                if may_fire(self.spec, self.state, t.trigger, login, self.hospital):
                    continue
                self.refused(
                    lambda u, ref, t=t: fire(  # type: ignore[misc]
                        self.web, self.keys[u], ref, t.trigger, self.case.version, self.hospital
                    ),
                    login,
                    f"trigger {t.trigger}",
                )
                expected.append(("refused", login, {"trigger": t.trigger}))
        return expected

    def refused_controls(self, actions: tuple[str, ...], version: int) -> Any:
        def act() -> list[tuple[str, str, dict[str, Any]]]:
            expected = []
            for action in actions:
                for login in USERS:
                    if may_control(self.spec, self.state, login, self.hospital):
                        continue
                    self.refused(
                        lambda u, ref, a=action: control(  # type: ignore[misc]
                            self.web, self.keys[u], ref, a, version
                        ),
                        login,
                        f"control {action}",
                    )
                    expected.append(("refused", login, {"control": action}))
            return expected

        return act


@pytest.mark.parametrize("hospital", MATRIX_HOSPITALS)
@pytest.mark.parametrize(("kind", "state"), LIVE_STATES, ids=LIVE_IDS)
def test_case_matrix(web: Web, kind: str, state: str, hospital: str) -> None:
    """Read, fire, hold/resume/extend × every user: allowed exactly by role, level and scope."""
    if kind == "transfer" and state in ("zone_regulation", "proposed_zone") and hospital == POISSY:
        pytest.skip(
            "the zone of Paris is one region: its zone level is skipped (test_doctrine_ecmo)"
        )
    m = Matrix(web, kind, state, hospital)
    spec, ctx, case = m.spec, m.ctx, m.case
    # reads: 200 with the caller's triggers in scope, else a 404 like a missing case
    m.unchanged(m.reads)
    # every trigger possible here, by every user who may not: one refusal each, nothing else
    m.unchanged(m.refused_triggers)
    # hold and extend by every user who may not
    m.unchanged(m.refused_controls(("hold", "extend"), case.version))
    controllers = [u for u in USERS if may_control(spec, state, u, hospital)]
    level = spec.state(state).level
    assert controllers == ([acting(hospital)[level]] if level in REGULATORS else [])
    version, done = case.version, []
    if controllers:  # the regulator holding the case holds, resumes and extends it
        (boss,) = controllers
        held = control(web, m.keys[boss], m.ref, "hold", version)
        assert held.status_code == 200, held.text
        assert (held.json()["on_hold"], held.json()["version"]) == (True, version + 1)
        m.unchanged(m.refused_controls(("resume",), version + 1))
        resumed = control(web, m.keys[boss], m.ref, "resume", version + 1)
        assert resumed.status_code == 200, resumed.text
        assert (resumed.json()["on_hold"], resumed.json()["version"]) == (False, version + 2)
        version, done = version + 2, [("hold", boss), ("resume", boss)]
        extended = control(web, m.keys[boss], m.ref, "extend", version)
        if spec.state(state).deadline is not None:
            assert extended.status_code == 200, extended.text
            version, done = version + 1, [*done, ("extend", boss)]
        else:  # allowed, but there is no running deadline to extend
            is_problem(extended, 422, "invalid_input")
    assert [(e.action, e.actor) for e in events_of(ctx, m.ref) if e.action in CONTROLS] == done
    # every allowed (trigger, user) pair, each on a case of its own in this state
    allowed = [
        (t.trigger, login)
        for t in spec.allowed(state)
        for login in USERS
        if may_fire(spec, state, t.trigger, login, hospital)
    ]
    assert allowed, f"nobody may act on a {kind} case in {state}"
    for n, (trigger, login) in enumerate(allowed):
        target = case if n == 0 else open_at(ctx, kind, hospital, state)
        at = version if n == 0 else target.version
        answer = fire(web, m.keys[login], target.reference, trigger, at, hospital)
        assert answer.status_code == 200, (trigger, login, answer.text)
        dest = spec.transition(state, trigger).dest  # type: ignore[union-attr]
        if (kind, dest, hospital) == ("transfer", "zone_regulation", POISSY):
            dest = "national_regulation"  # the zone of Paris is one region: skipped
        assert (answer.json()["state"], answer.json()["version"]) == (dest, at + 1)
        last = [e for e in events_of(ctx, target.reference) if e.actor != "system"][-1]
        assert (last.action, last.actor, last.data["trigger"]) == ("transition", login, trigger)


def test_matrix_expectations_are_sane() -> None:
    """Every live state's triggers have an allowed user in scope, and only there."""
    total = 0
    for kind, state in LIVE_STATES:
        spec = REGISTRY[kind]
        for t in spec.allowed(state):
            for hospital in MATRIX_HOSPITALS:
                who = [u for u in USERS if may_fire(spec, state, t.trigger, u, hospital)]
                assert who, (kind, state, t.trigger, hospital)
                assert all(sees_case(u, hospital, kind, state) for u in who)
                total += 1
    assert total == 2 * sum(len(REGISTRY[k].allowed(s)) for k, s in LIVE_STATES)


# -- closed cases ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_final_cases_keep_their_scope(web: Web, kind: str) -> None:
    """A closed case reads in scope only; outsiders get a missing case's 404 to every write."""
    ctx, spec = web.ctx, web.ctx.registry[kind]
    cases = [open_at(ctx, kind, TOULOUSE, s.name) for s in spec.states if s.final]
    keys, trigger = tokens(web), spec.transitions[0].trigger
    for case in cases:
        ref, gone, version = case.reference, missing_ref(case.reference), case.version
        before, sec, seen = stable(ctx), security(ctx), len(events_of(ctx, ref))
        outsider = keys["ars-idf"]  # the answers about a missing case depend on nobody
        missing = (
            web.client.get(f"{API}/cases/{gone}", headers=outsider),
            fire(web, outsider, gone, trigger, version),
            control(web, outsider, gone, "hold", version),
        )
        expected: list[tuple[str, str, dict[str, Any]]] = []
        for login in USERS:
            answers = (
                web.client.get(f"{API}/cases/{ref}", headers=keys[login]),
                fire(web, keys[login], ref, trigger, version),
                control(web, keys[login], ref, "hold", version),
            )
            if sees_case(login, TOULOUSE, kind, case.state):
                assert answers[0].status_code == 200, answers[0].text
                assert answers[0].json()["allowed_triggers"] == []
                is_problem(answers[1], 409, "trigger_not_allowed")  # closed: nothing to refuse
                is_problem(answers[2], 409, "conflict")
                expected.append(("read", login, {"read": "case"}))
            else:
                for answer, absent in zip(answers, missing, strict=True):
                    assert_like_missing(answer, absent, ref)
                expected += [
                    ("refused", login, {"op": "read"}),
                    ("refused", login, {"trigger": trigger}),
                    ("refused", login, {"control": "hold"}),
                ]
        check_new_events(ctx, ref, seen, expected)
        assert stable(ctx) == before
        # each outsider's trigger and hold carried a reason: kept in the security stream
        typed = [e for e in expected if e[0] == "refused" and "op" not in e[2]]
        assert security(ctx) == sec + len(typed)


# -- roles that never act on a case --------------------------------------------------------

NEVER = ("admin", "auditeur", "auditeur-occ", "spf")


@pytest.mark.parametrize("kind", KINDS)
def test_admin_auditors_and_spf_never_act(web: Web, kind: str) -> None:
    """Admin and auditors never fire or control; SpF acts only on PPE at national_review,
    the rung it holds (resolve, reject, its deadline's controls)."""
    ctx, spec = web.ctx, web.ctx.registry[kind]
    keys = tokens(web, NEVER)
    cases = [open_at(ctx, kind, TOULOUSE, s) for k, s in LIVE_STATES if k == kind]
    before, sec = stable(ctx), security(ctx)
    refused = 0
    for case in cases:
        for login in NEVER:
            for t in spec.allowed(case.state):
                if (login, kind, case.state) == ("spf", "ppe", "national_review") and (
                    t.trigger in {"resolve", "reject"}
                ):
                    continue
                answer = fire(web, keys[login], case.reference, t.trigger, case.version)
                is_problem(answer, 403, "not_permitted")
                refused += 1
            for action in ("hold", "extend"):
                if (login, kind, case.state) == ("spf", "ppe", "national_review"):
                    continue
                answer = control(web, keys[login], case.reference, action, case.version)
                is_problem(answer, 403, "not_permitted")
                refused += 1
    assert stable(ctx) == before
    assert security(ctx) == sec
    assert ctx.count("audit_event", "action = 'refused'") == refused


def test_spf_resolves_ppe_only_at_national_level(web: Web) -> None:
    """SpF's single right: resolve a PPE case at national_review (any region)."""
    ctx, spf = web.ctx, web.token("spf")
    for hospital in MATRIX_HOSPITALS:
        case = open_at(ctx, "ppe", hospital, "national_review")
        answer = fire(web, spf, case.reference, "resolve", case.version)
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "dispatched"


# -- out of scope writes: indistinguishable from a missing case, whatever is sent ----------

TRIGGER_PROBES = [
    # name, user, state, trigger, If-Match offset, how the reference is written
    pytest.param("policy", "ars-idf", "ars_regulation", "escalate", 0, "", id="policy"),
    pytest.param("role", "etab-789900001", "umac_review", "escalate", 0, "", id="wrong-role"),
    pytest.param("stale", "ars-idf", "ars_regulation", "escalate", 5, "", id="stale-version"),
    pytest.param("state", "ars-idf", "requested", "close", 0, "", id="impossible-trigger"),
    pytest.param("unknown", "ars-idf", "requested", "fly", 0, "", id="unknown-trigger"),
    pytest.param(
        "number",
        "ars-idf",
        "ars_regulation",
        "escalate",
        0,
        "number",
        id="bare-number-reference",
    ),
    pytest.param(
        "lower",
        "ars-idf",
        "ars_regulation",
        "escalate",
        0,
        "lower",
        id="lowercase-reference",
    ),
]


def spelled(reference: str, how: str) -> str:
    """The reference as a caller may write it: as is, its bare number, or in lower case."""
    if how == "number":
        return str(int(reference.split("-")[1]))
    return reference.lower() if how == "lower" else reference


def assert_same_answer(hidden: Any, missing: Any, sent: str, sent_missing: str) -> None:
    """The hidden case's answer is the missing one's, with the text sent swapped back."""
    assert (hidden.status_code, missing.status_code) == (404, 404), (hidden.text, missing.text)
    assert hidden.headers["content-type"] == missing.headers["content-type"]
    expected = {
        k: v.replace(sent_missing, sent) if isinstance(v, str) else v
        for k, v in missing.json().items()
    }
    assert hidden.json() == expected


@pytest.mark.parametrize(("probe", "login", "state", "trigger", "skew", "how"), TRIGGER_PROBES)
def test_out_of_scope_trigger_is_like_a_missing_case(
    web: Web, probe: str, login: str, state: str, trigger: str, skew: int, how: str
) -> None:
    """Firing outside one's scope (any version, trigger, spelling): a missing case's 404, logged."""
    ctx = web.ctx
    case = open_at(ctx, "ecmo", TOULOUSE, state)
    headers = web.token(login)
    before, seen = stable(ctx), len(events_of(ctx, case.reference))
    sent, sent_missing = spelled(case.reference, how), spelled("ECMO-999999", how)
    hidden = fire(web, headers, sent, trigger, case.version + skew)
    missing = fire(web, headers, sent_missing, trigger, case.version + skew)
    assert stable(ctx) == before
    new = events_of(ctx, case.reference)[seen:]
    assert [(e.action, e.actor, e.data["trigger"]) for e in new] == [("refused", login, trigger)]
    assert_same_answer(hidden, missing, sent, sent_missing)


CONTROL_PROBES = [
    # name, user, action, If-Match offset, how the reference is written
    pytest.param("policy", "umac-paris", "hold", 0, "", id="policy"),
    pytest.param("stale", "umac-paris", "hold", 3, "", id="stale-version"),
    pytest.param("state", "umac-paris", "resume", 0, "", id="not-on-hold"),
    pytest.param("extend", "arsz-paris", "extend", 0, "", id="extend"),
    pytest.param("number", "umac-paris", "hold", 0, "number", id="bare-number-reference"),
    pytest.param("lower", "umac-paris", "hold", 0, "lower", id="lowercase-reference"),
]


@pytest.mark.parametrize(("probe", "login", "action", "skew", "how"), CONTROL_PROBES)
def test_out_of_scope_control_is_like_a_missing_case(
    web: Web, probe: str, login: str, action: str, skew: int, how: str
) -> None:
    """Controls outside one's scope (any version, hold state, spelling): a missing case's 404."""
    ctx = web.ctx
    case = open_at(ctx, "ecmo", TOULOUSE, "umac_review")
    headers = web.token(login)
    before, seen = stable(ctx), len(events_of(ctx, case.reference))
    sent, sent_missing = spelled(case.reference, how), spelled("ECMO-999999", how)
    hidden = control(web, headers, sent, action, case.version + skew)
    missing = control(web, headers, sent_missing, action, case.version + skew)
    assert stable(ctx) == before
    new = events_of(ctx, case.reference)[seen:]
    assert [(e.action, e.actor, e.data["control"]) for e in new] == [("refused", login, action)]
    assert_same_answer(hidden, missing, sent, sent_missing)


@pytest.mark.parametrize("how", ["number", "lower"])
@pytest.mark.parametrize("what", ["", "/history", "/notices"])
def test_out_of_scope_read_by_another_spelling_is_like_missing(
    web: Web, what: str, how: str
) -> None:
    """Reading a hidden case by its bare number or in lower case: a missing case's 404."""
    case = open_at(web.ctx, "ppe", TOULOUSE)
    headers = web.token("ght-idf-01")
    sent, sent_missing = spelled(case.reference, how), spelled("EPI-999999", how)
    hidden = web.client.get(f"{API}/cases/{sent}{what}", headers=headers)
    missing = web.client.get(f"{API}/cases/{sent_missing}{what}", headers=headers)
    assert_same_answer(hidden, missing, sent, sent_missing)
    last = events_of(web.ctx, case.reference)[-1]
    assert (last.action, last.actor, last.data["op"]) == ("refused", "ght-idf-01", "read")


# -- the audit log -------------------------------------------------------------------------


@pytest.fixture
def audited(web: Web) -> dict[str, str]:
    """A Toulouse and a Poissy case, each with a refused read by the other region's ARS."""
    toulouse = open_at(web.ctx, "ecmo", TOULOUSE, "umac_review").reference
    poissy = open_at(web.ctx, "ppe", POISSY, "ght_review").reference
    for login, ref in (("ars-idf", toulouse), ("ars-occ", poissy), ("ars-occ", toulouse)):
        web.client.get(f"{API}/cases/{ref}", headers=web.token(login))
    return {"toulouse": toulouse, "poissy": poissy}


def export(web: Web, headers: dict[str, str], query: str = "") -> list[dict[str, Any]]:
    answer = web.client.get(f"{API}/audit/events{query}", headers=headers)
    assert answer.status_code == 200, answer.text
    if "format=csv" in query:
        assert answer.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(answer.text)))
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in answer.text.splitlines()]


def case_ids(ctx: Ctx, region: str | None = None) -> set[int]:
    with ctx.db.read() as conn:
        query = "SELECT id FROM regul_case" + (" WHERE region = :r" if region else "")
        return {r.id for r in conn.execute(sa.text(query), {"r": region})}


def test_audit_endpoints_refuse_non_auditors(web: Web, audited: dict[str, str]) -> None:
    """Everyone but auditors: 403 on export and verify, each refusal one security event."""
    ctx = web.ctx
    keys = tokens(web, [u for u in USERS if u not in AUDITORS])
    before, sec = stable(ctx), security(ctx)
    cases_before = {ref: len(events_of(ctx, ref)) for ref in audited.values()}
    expected = []
    for login in keys:
        for url, op in (
            ("/audit/events", "read the audit log"),
            (f"/audit/events?case={audited['toulouse']}", "read the audit log"),
            ("/audit/events?format=csv", "read the audit log"),
            ("/audit/verify", "verify the audit log"),
            (f"/audit/verify?case={audited['toulouse']}", "verify the audit log"),
        ):
            is_problem(web.client.get(f"{API}{url}", headers=keys[login]), 403, "not_permitted")
            expected.append((login, op))
    assert stable(ctx) == before
    assert security(ctx) == sec + len(expected)
    assert {ref: len(events_of(ctx, ref)) for ref in audited.values()} == cases_before
    rows = export(web, web.token("auditeur"))
    tail = [r for r in rows if r["case_id"] is None and r["action"] == "refused"]
    assert [(r["actor"], r["data"]["op"]) for r in tail[-len(expected) :]] == expected


def test_national_auditor_reads_and_verifies_everything(web: Web, audited: dict[str, str]) -> None:
    """The national auditor exports every event (security stream included) and verifies all."""
    ctx, key = web.ctx, web.token("auditeur")
    total = ctx.count("audit_event")
    rows = export(web, key)
    assert len(rows) == total
    assert any(r["case_id"] is None for r in rows)
    assert len(export(web, key, "?format=csv")) == total
    for ref in audited.values():
        one = export(web, key, f"?case={ref}")
        assert len(one) == len(events_of(ctx, ref)) > 0
    verify = web.client.get(f"{API}/audit/verify", headers=key).json()
    assert (verify["ok"], verify["findings"]) == (True, [])
    assert verify["streams"] >= 3


def test_regional_auditor_sees_only_its_region(web: Web, audited: dict[str, str]) -> None:
    """The OCC auditor exports only OCC cases' events (never security), verifies one case."""
    ctx, key = web.ctx, web.token("auditeur-occ")
    occ = case_ids(ctx, "OCC")
    with ctx.db.read() as conn:
        mine = {
            r.id
            for r in conn.execute(
                sa.text(
                    "SELECT e.id FROM audit_event e JOIN regul_case c ON c.id = e.case_id "
                    "WHERE c.region = 'OCC'"
                )
            )
        }
    rows = export(web, key)
    assert mine
    assert {r["id"] for r in rows} == mine
    for query in (
        "?format=csv",
        "?user=ars-idf",
        "?user=ars-occ",
        "?org=ARS-IDF",
        "?org=789900001",
        "?user=admin",
        f"?case={audited['toulouse']}",
        "?since=2000-01-01T00:00Z",
    ):
        for row in export(web, key, query):
            assert row["case_id"] not in (None, ""), (query, row)
            assert int(row["case_id"]) in occ, (query, row)
    # ars-idf's refused read of the Toulouse case is an Occitanie event; ars-occ's of Poissy not
    assert [r["action"] for r in export(web, key, "?user=ars-idf")] == ["refused"]
    assert [r["action"] for r in export(web, key, "?user=ars-occ")] == ["read"]
    assert export(web, key, "?org=789900001") == []
    ok = web.client.get(f"{API}/audit/verify?case={audited['toulouse']}", headers=key)
    assert ok.status_code == 200, ok.text
    assert ok.json()["ok"] is True
    is_problem(web.client.get(f"{API}/audit/verify", headers=key), 403, "not_permitted")


@pytest.mark.parametrize("how", ["", "number", "lower"])
@pytest.mark.parametrize("endpoint", ["events", "verify"])
def test_regional_auditor_case_elsewhere_is_like_missing(
    web: Web, audited: dict[str, str], endpoint: str, how: str
) -> None:
    """A regional auditor naming another region's case: a missing case's 404, one refusal."""
    ctx, key = web.ctx, web.token("auditeur-occ")
    ref = audited["poissy"]
    before, seen, sec = stable(ctx), len(events_of(ctx, ref)), security(ctx)
    sent, sent_missing = spelled(ref, how), spelled(missing_ref(ref), how)
    hidden = web.client.get(f"{API}/audit/{endpoint}?case={sent}", headers=key)
    missing = web.client.get(f"{API}/audit/{endpoint}?case={sent_missing}", headers=key)
    assert stable(ctx) == before
    assert_same_answer(hidden, missing, sent, sent_missing)
    new = events_of(ctx, ref)[seen:]
    assert security(ctx) == sec
    assert [(e.action, e.actor) for e in new] == [("refused", "auditeur-occ")]


def test_regional_auditor_whole_log_refusal_is_recorded(web: Web) -> None:
    """A regional auditor asking to verify the whole log: 403 and one security event."""
    ctx, key = web.ctx, web.token("auditeur-occ")
    sec = security(ctx)
    is_problem(web.client.get(f"{API}/audit/verify", headers=key), 403, "not_permitted")
    assert security(ctx) == sec + 1
