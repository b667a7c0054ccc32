"""The JSON API: the main path, ETag/If-Match, idempotency, problems, and bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import TOULOUSE, Web

OPEN_ECMO = {"kind": "ecmo", "org": TOULOUSE, "fields": {"patient_ref": "PAT-0042", "mode": "VV"}}


def open_case(web: Web) -> dict[str, Any]:
    answer = web.client.post("/api/v1/cases", json=OPEN_ECMO, headers=web.token("etab-319900001"))
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def is_problem(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["detail"]
    assert "Traceback" not in answer.text
    return body


def test_open_read_fire_history_notices(web: Web) -> None:
    """A hospital opens a case; the UMAC reads it (ETag), escalates it with If-Match."""
    case = open_case(web)
    ref = case["reference"]
    assert (case["state"], case["version"]) == ("requested", 1)
    umac = web.token("umac-sud")
    web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate",
        json={"reason": "confirmed"},
        headers={**web.token("etab-319900001"), "If-Match": '"1"'},
    ).raise_for_status()
    read = web.client.get(f"/api/v1/cases/{ref}", headers=umac)
    assert read.status_code == 200
    assert read.headers["etag"] == '"2"'
    body = read.json()
    assert body["allowed_triggers"] == ["escalate", "resolve", "reject"]
    assert body["deadline"]["state"] == "umac_review"
    fired = web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate",
        json={"reason": "no console in the zone"},
        headers={**umac, "If-Match": read.headers["etag"]},
    )
    assert fired.status_code == 200, fired.text
    assert (fired.json()["state"], fired.headers["etag"]) == ("ars_regulation", '"3"')
    history = web.client.get(f"/api/v1/cases/{ref}/history", headers=umac).json()
    actions = [(e["action"], e["actor"]) for e in history["events"]]
    assert actions == [
        ("opened", "etab-319900001"),
        ("transition", "etab-319900001"),
        ("read", "umac-sud"),
        ("transition", "umac-sud"),
        ("read", "umac-sud"),
    ]
    notices = web.client.get(f"/api/v1/cases/{ref}/notices", headers=umac)
    assert notices.status_code == 200
    assert isinstance(notices.json(), list)


def test_list_gives_summaries_without_clinical_facts(web: Web) -> None:
    """GET /cases shows where cases stand; their facts only come with a (recorded) read."""
    ref = open_case(web)["reference"]
    headers = web.token("umac-sud")
    before = web.ctx.snapshot()
    (listed,) = web.client.get("/api/v1/cases", headers=headers).json()
    assert listed["reference"] == ref
    assert "fields" not in listed
    assert "PAT-0042" not in str(listed)
    assert web.ctx.snapshot() == before  # a list is not a read of each case
    assert web.client.get(f"/api/v1/cases/{ref}", headers=headers).json()["fields"] == {
        "patient_ref": "PAT-0042",
        "mode": "VV",
    }


def test_stale_if_match_is_412_and_changes_nothing(web: Web) -> None:
    """A stale ETag gets 412, a missing one 428; neither writes anything."""
    ref = open_case(web)["reference"]
    headers = web.token("etab-319900001")
    before = web.ctx.snapshot()
    stale = web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate",
        json={"reason": "x"},
        headers={**headers, "If-Match": '"7"'},
    )
    assert "version 1, not 7" in is_problem(stale, 412, "stale_version")["detail"]
    missing = web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate", json={"reason": "x"}, headers=headers
    )
    is_problem(missing, 428, "if_match_required")
    assert web.ctx.snapshot() == before


def test_idempotency_key_replays_first_answer_and_refuses_other_body(web: Web) -> None:
    """Same key and body: the first answer again; same key, another body: 422."""
    ref = open_case(web)["reference"]
    headers = {**web.token("etab-319900001"), "If-Match": '"1"', "Idempotency-Key": "k-1"}
    url = f"/api/v1/cases/{ref}/triggers/escalate"
    first = web.client.post(url, json={"reason": "go"}, headers=headers)
    again = web.client.post(url, json={"reason": "go"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    before = web.ctx.snapshot()
    other = web.client.post(url, json={"reason": "another"}, headers=headers)
    is_problem(other, 422, "idempotency_mismatch")
    assert web.ctx.snapshot() == before


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        (b"{not json", 400, "malformed_json", "not valid JSON"),
        (b'{"reason": 12}', 422, "invalid_input", "reason"),
        (b'{"reason": "x", "colour": "red"}', 422, "invalid_input", "colour: unknown field"),
        (b"{}", 422, "invalid_input", "reason: required"),
        (b'{"reason": "x", "data": {"a": [1]}}', 422, "invalid_input", "data.a"),
    ],
)
def test_bad_bodies_get_clear_problems_and_change_nothing(
    web: Web, body: bytes, status: int, code: str, says: str
) -> None:
    """Malformed JSON, wrong types, unknown and missing fields: a problem naming the field."""
    ref = open_case(web)["reference"]
    headers = {**web.token("etab-319900001"), "If-Match": '"1"', "Content-Type": "application/json"}
    before = web.ctx.snapshot()
    answer = web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate", content=body, headers=headers
    )
    assert says in is_problem(answer, status, code)["detail"]
    assert web.ctx.snapshot() == before


def test_oversize_body_is_413(web: Web) -> None:
    """A body over the limit is refused before it is read."""
    ref = open_case(web)["reference"]
    headers = {**web.token("etab-319900001"), "If-Match": '"1"', "Content-Type": "application/json"}
    before = web.ctx.snapshot()
    answer = web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate",
        content=b'{"reason": "' + b"x" * 70000 + b'"}',
        headers=headers,
    )
    is_problem(answer, 413, "too_large")
    assert web.ctx.snapshot() == before


def test_credentials_missing_forged_revoked_or_disabled(web: Web) -> None:
    """No token, a forged one, a revoked one, a disabled user's: 401, nothing read."""
    ref = open_case(web)["reference"]
    url = f"/api/v1/cases/{ref}"
    is_problem(web.client.get(url), 401, "unauthenticated")
    is_problem(
        web.client.get(url, headers={"Authorization": "Bearer regul_forged"}),
        401,
        "unauthenticated",
    )
    secret, info = web.accounts.issue_token("ars-occ", label="t")
    headers = {"Authorization": f"Bearer {secret}"}
    assert web.client.get(url, headers=headers).status_code == 200
    web.accounts.revoke_token(info.id)
    is_problem(web.client.get(url, headers=headers), 401, "unauthenticated")
    headers = web.token("umac-sud")
    web.accounts.disable("umac-sud")
    is_problem(web.client.get(url, headers=headers), 401, "unauthenticated")


def test_out_of_scope_is_404_like_a_missing_case_and_is_audited(web: Web) -> None:
    """An ARS of another region gets the same 404 as for a missing case; the attempt is logged."""
    ref = open_case(web)["reference"]
    outsider = web.token("ars-idf")
    hidden = is_problem(web.client.get(f"/api/v1/cases/{ref}", headers=outsider), 404, "not_found")
    missing = is_problem(
        web.client.get("/api/v1/cases/ECMO-999999", headers=outsider), 404, "not_found"
    )
    assert hidden["detail"].replace(ref, "X") == missing["detail"].replace("ECMO-999999", "X")
    events = web.ctx.runner.history(ref)[1]
    assert (events[-1].action, events[-1].actor, events[-1].data["op"]) == (
        "refused",
        "ars-idf",
        "read",
    )


def test_refused_trigger_is_403_and_audited(web: Web) -> None:
    """A trigger fired by a role that may not: 403, the refusal recorded, the case unchanged."""
    ref = open_case(web)["reference"]
    answer = web.client.post(
        f"/api/v1/cases/{ref}/triggers/resolve",
        json={"reason": "x", "data": {"source": "region"}},
        headers={**web.token("ars-occ"), "If-Match": '"1"'},
    )
    is_problem(answer, 409, "trigger_not_allowed")
    answer = web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate",
        json={"reason": "x"},
        headers={**web.token("ars-occ"), "If-Match": '"1"'},
    )
    is_problem(answer, 403, "not_permitted")
    case, events = web.ctx.runner.history(ref)
    assert (case.state, case.version) == ("requested", 1)
    assert (events[-1].action, events[-1].actor) == ("refused", "ars-occ")


def test_audit_endpoints_are_for_auditors(web: Web) -> None:
    """Auditors export and verify; a regulator is refused (403, recorded)."""
    ref = open_case(web)["reference"]
    auditor = web.token("auditeur")
    export = web.client.get(f"/api/v1/audit/events?case={ref}", headers=auditor)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [(e["action"], e["actor"]) for e in lines] == [
        ("opened", "etab-319900001"),
        ("read", "auditeur"),  # naming a case in the log reads it: recorded first
    ]
    verify = web.client.get("/api/v1/audit/verify", headers=auditor).json()
    assert verify["ok"] is True
    csv = web.client.get("/api/v1/audit/events?format=csv", headers=auditor)
    assert csv.text.splitlines()[0].startswith("id,case_id,seq")
    is_problem(
        web.client.get("/api/v1/audit/verify", headers=web.token("ars-occ")), 403, "not_permitted"
    )
    regional = web.token("auditeur-occ")
    is_problem(web.client.get("/api/v1/audit/verify", headers=regional), 403, "not_permitted")
    assert web.client.get(f"/api/v1/audit/verify?case={ref}", headers=regional).json()["ok"]


def test_workflows_and_openapi(web: Web) -> None:
    """Workflows come with their diagram; the OpenAPI document is published."""
    flows = web.client.get("/api/v1/workflows", headers=web.token("ccs")).json()
    assert [f["kind"] for f in flows] == ["ecmo", "ppe", "transfer"]
    assert flows[0]["mermaid"].startswith("---") or "stateDiagram" in flows[0]["mermaid"]
    spec = web.client.get("/openapi.json").json()
    assert "/api/v1/cases/{reference}/triggers/{trigger}" in spec["paths"]
    is_problem(web.client.get("/api/v1/nowhere", headers=web.token("ccs")), 404, "no_route")


def test_history_shows_each_reader_what_is_theirs(web: Web) -> None:
    """The hospital does not see auditors' reads nor outsiders' refused attempts; auditors see all."""
    ref = open_case(web)["reference"]
    assert web.client.get(f"/api/v1/cases/{ref}", headers=web.token("auditeur")).status_code == 200
    outsider = web.token("ars-idf")
    attempt = web.client.post(
        f"/api/v1/cases/{ref}/triggers/escalate",
        json={"reason": "<a href=//phishing>cliquez ici</a>"},
        headers={**outsider, "If-Match": '"1"'},
    )
    assert attempt.status_code == 404
    history = web.client.get(f"/api/v1/cases/{ref}/history", headers=web.token("etab-319900001"))
    seen = [(e["action"], e["actor"]) for e in history.json()["events"]]
    assert ("read", "auditeur") not in seen
    assert ("refused", "ars-idf") not in seen
    assert "phishing" not in history.text  # and never in the case's chain in the first place
    audited = web.client.get(f"/api/v1/cases/{ref}/history", headers=web.token("auditeur"))
    everything = [(e["action"], e["actor"]) for e in audited.json()["events"]]
    assert ("read", "auditeur") in everything
    assert ("refused", "ars-idf") in everything
    assert "phishing" not in audited.text


def test_hidden_and_missing_cases_cost_the_same(web: Web) -> None:
    """Another region's case and a missing one: same answer, one event committed each, similar time."""
    import statistics
    import time

    ref = open_case(web)["reference"]
    outsider = web.token("ars-idf")
    count = web.ctx.count
    chain, probes = (
        count("audit_event", "case_id IS NOT NULL"),
        count("audit_event", "action = 'probe'"),
    )
    hidden_t, missing_t = [], []
    for n in range(20):  # alternated, so that the machine's load hits both alike
        for path, times in (
            (f"/api/v1/cases/{ref}", hidden_t),
            (f"/api/v1/cases/ECMO-{900000 + n}", missing_t),
        ):
            started = time.perf_counter()
            answer = web.client.get(path, headers=outsider)
            times.append(time.perf_counter() - started)
            assert answer.status_code == 404
    assert count("audit_event", "case_id IS NOT NULL") == chain + 20  # refused, in the case's chain
    assert count("audit_event", "action = 'probe'") == probes + 20  # probes, in the security stream
    ratio = statistics.median(hidden_t) / statistics.median(missing_t)
    assert 0.5 < ratio < 2.0, (ratio, hidden_t, missing_t)


def test_a_read_and_a_transition_are_one_transaction_each(web: Web) -> None:
    """With an API token, GET and POST on a case check out one connection each: the token is
    checked by the command's own transaction; a bad token still answers 401 before a bad If-Match."""
    from sqlalchemy import event

    ref = open_case(web)["reference"]
    headers = web.token("etab-319900001")
    checkouts: list[object] = []

    def count(*_args: object) -> None:
        checkouts.append(object())

    event.listen(web.ctx.db.engine, "checkout", count)
    try:
        read = web.client.get(f"/api/v1/cases/{ref}", headers=headers)
        assert read.status_code == 200, read.text
        assert len(checkouts) == 1
        assert read.json()["allowed_triggers"]  # the actor the command found answers here
        fired = web.client.post(
            f"/api/v1/cases/{ref}/triggers/escalate",
            json={"reason": "sature", "data": {}},
            headers={**headers, "If-Match": read.headers["ETag"]},
        )
        assert fired.status_code == 200, fired.text
        assert len(checkouts) == 2
    finally:
        event.remove(web.ctx.db.engine, "checkout", count)
    before = web.ctx.snapshot()
    forged = {"Authorization": "Bearer regul_forged"}
    url = f"/api/v1/cases/{ref}/triggers/escalate"
    is_problem(web.client.post(url, json={"reason": "x"}, headers=forged), 401, "unauthenticated")
    is_problem(web.client.get(f"/api/v1/cases/{ref}", headers=forged), 401, "unauthenticated")
    assert web.ctx.snapshot() == before
