"""Schemathesis against /openapi.json: no 5xx, no answer that breaks the schema, problems only.

The ASGI app is built as the ``web`` fixture builds it, over a database with a few cases in
different states (on SQLite and on PostgreSQL, like every ``ctx`` test). Schemathesis reads the
OpenAPI document from the app's own /openapi.json and fuzzes every operation with four kinds of
caller: a national regulator (``ccs``), a national auditor (``auditeur``, so that the audit
export and verification run too), nobody, and a forged token. Its coverage phase also sends the
methods a path does not have (405). Hooks bias the generated path, query, headers and bodies
toward the seeded references, triggers, kinds, versions (If-Match) and organisations, so that
requests reach the engine and not only the 404 of an unknown case or the 428 of a missing ETag.
A deterministic test then sends every GET on each seeded case, and the main POSTs, through the
same schemathesis validation.

Checks (schemathesis' own, plus ours):

* ``not_a_server_error``: no 5xx, whatever the input.
* ``status_code_conformance``: every status is documented (the routes list their problems).
* ``content_type_conformance``: every answer has a documented media type (problem+json for
  errors, NDJSON or CSV for the audit export).
* ``response_schema_conformance``: every JSON body matches its declared model.
* ``response_headers_conformance``: declared response headers are present and well formed.
* ``negative_data_rejection``: a request that breaks the schema is refused with a 4xx.
* ``problem_details`` (here): any status >= 400 is an RFC 9457 problem with type, title,
  status and detail, and no stack trace reaches the client.

Left out on purpose: ``positive_data_acceptance`` (a valid request legitimately gets 404 for an
unknown case, 403 out of role, 409 for a trigger the state does not allow, 412 for a stale
ETag); ``ignored_auth`` and ``object_level_authorization`` (the document declares no security
scheme: the Bearer token is read by ``interfaces.auth``, and scope is tested in test_api);
``use_after_free`` and ``ensure_resource_availability`` (no OpenAPI links, nothing is deleted);
``max_response_time`` (timing is for the benchmarks, not CI); ``unsupported_method`` (the
coverage phase already sends the methods a path lacks, and ours requires their 405 to be a
problem); ``missing_required_header`` (the document declares no header required: If-Match is
optional there, and its absence is answered by a 428 problem).

Generation is bounded (25 examples an operation with credentials, 8 without, plus the coverage
phase's cases) and derandomized (fixed seed, no deadline, no example database) so that CI
replays the same requests every run. Bugs found are kept at the end as xfail(strict) tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine.accounts import Accounts
from engine.clock import FixedClock
from engine.db import Database
from engine.runner import Runner
from engine.settings import load_settings
from interfaces.app import App
from interfaces.web import create_web
from tests.conftest import CONFIRMS, START, TOULOUSE, Ctx, drive, path_to
from workflows import default_registry

SEED = 20261122
TRIGGERS = ("escalate", "resolve", "reject", "cancel", "start", "return", "close", "deliver")
KINDS = ("ecmo", "ppe", "transfer")


# The references that seed_cases gives on a fresh database (the sequence is shared by the kinds).
REFERENCES = ("ECMO-000001", "ECMO-000002", "EPI-000003", "TRF-000004")
VERSIONS = ('"1"', '"2"', '"3"', '"4"', '"5"', 'W/"6"')


def _problem_details(ctx: Any, response: Any, case: Any) -> bool | None:
    """Any status >= 400 is an RFC 9457 problem with a detail, and shows no stack trace."""
    text = (response.content or b"").decode("utf-8", "replace")  # a PDF answer is binary
    assert "Traceback" not in text, "a stack trace reached the client"
    assert 'File "' not in text, "a stack trace reached the client"
    if response.status_code < 400:
        return None
    media = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
    assert media == "application/problem+json", f"error {response.status_code} served as {media!r}"
    body = response.json()
    assert isinstance(body, dict), "a problem is a JSON object"
    missing = [k for k in ("type", "title", "status", "detail") if k not in body]
    assert not missing, f"problem without {', '.join(missing)}"
    assert body["status"] == response.status_code, "the problem's status is the HTTP status"
    assert isinstance(body["detail"], str), "a problem's detail is a text"
    assert body["detail"].strip(), "a problem says what is wrong"
    return True


RESPONSE_CHECKS: list[Callable[..., bool | None]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    _problem_details,
]
CHECKS = [*RESPONSE_CHECKS, negative_data_rejection]


# -- the schema: the document the app serves at /openapi.json ------------------------------


def build_web(db: Database, registry: Any, runner: Runner, clock: Any) -> tuple[Any, Accounts]:
    """The FastAPI app and its accounts, exactly as the ``web`` fixture builds them."""
    config = load_settings(database_url=str(db.url), notices=False)
    accounts = Accounts(db, clock, memory_kib=64, time_cost=1)
    return create_web(App(config, db, registry, runner), accounts), accounts


def served_document() -> dict[str, Any]:
    """GET /openapi.json from an app over an in-memory database that it never reads."""
    db = Database("sqlite://")
    registry = default_registry()
    clock = FixedClock(START)
    app, _ = build_web(db, registry, Runner(db, registry, clock, rules=CONFIRMS), clock)
    try:
        answer = TestClient(app, base_url="https://testserver").get("/openapi.json")
        assert answer.status_code == 200, answer.text
        document: dict[str, Any] = answer.json()
        return document
    finally:
        db.dispose()


# Loaded when the module is imported, so that each operation is a test of its own; the requests
# go to the app of the ``served`` fixture (``case.call(app=...)``). schemathesis' lazy loader
# (schemathesis.pytest.from_fixture) would build the schema from the fixture's app, but 4.32.5
# sets ``Function._nodeid``, which pytest 9.2 no longer has: AttributeError at run time.
schema = schemathesis.openapi.from_dict(served_document())
# NUL characters are generated too: test_nul_character_is_a_problem_not_a_500 pins what the
# fuzzing first found (PostgreSQL text cannot hold U+0000; it used to be a 500).
schema.config.generation.update(deterministic=True, database="none")
schema.config.seed = SEED

# Values that reach the engine: a generated short string may be swapped for one of these.
KNOWN: dict[str, tuple[Any, ...]] = {
    "reference": REFERENCES,
    "case": REFERENCES,
    "trigger": TRIGGERS,
    "kind": KINDS,
    "org": (TOULOUSE, "789900001"),
    "region": ("OCC", "IDF"),
    "state": ("umac_review", "national_regulation", "dispatched", "closed"),
    "level": ("umac", "ccs", "establishment"),
    "user": ("ccs", "etab-319900001", "auditeur"),
    "If-Match": VERSIONS,
    "by": ("30m", "2h"),
}
# Optional parts that schemathesis often leaves out and that the engine needs to go further,
# by the operation's path and the part of the request.
ADDED: dict[tuple[str, str], dict[str, tuple[Any, ...]]] = {
    ("/triggers/", "headers"): {"If-Match": VERSIONS},
    ("/triggers/", "body"): {"data": ({}, {"source": "national"})},
    ("/controls/", "headers"): {"If-Match": VERSIONS},
    ("/controls/", "body"): {"by": ("30m",)},
}


def _biased(context: Any, part: str, generated: Any) -> st.SearchStrategy[Any]:
    """The generated values, or the same with seeded values in place of some of them.

    Only a short string, or an optional part that is absent or empty, is replaced: both are
    valid whatever their value, so a request generated to break the schema (negative mode)
    still breaks it, by the part that was mutated.
    """
    if generated is None and part == "headers":
        generated = {}
    if not isinstance(generated, dict):
        return st.just(generated)
    swaps = {
        name: st.sampled_from(values)
        for name, values in KNOWN.items()
        if isinstance(generated.get(name), str) and len(generated[name]) <= 40
    }
    for (marker, where), optional in ADDED.items():
        if where == part and marker in context.operation.path:
            swaps.update(
                (name, st.sampled_from(values))
                for name, values in optional.items()
                if generated.get(name) in (None, {})
            )
    if not swaps:
        return st.just(generated)
    seeded = st.fixed_dictionaries(swaps).map(lambda chosen: {**generated, **chosen})
    # Three times out of four: the engine is reached more often than a random string reaches it.
    return st.integers(0, 3).flatmap(lambda n: seeded if n else st.just(generated))


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy:
    return _biased(context, "path", path_parameters)


@schema.hook
def flatmap_query(context: Any, query: dict[str, Any]) -> st.SearchStrategy:
    return _biased(context, "query", query)


@schema.hook
def flatmap_headers(context: Any, headers: dict[str, Any]) -> st.SearchStrategy:
    return _biased(context, "headers", headers)


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy:
    return _biased(context, "body", body)


# -- the app under test: a database with cases in different states -------------------------


@dataclass
class Served:
    """The app under test, over the ``ctx`` database, and who calls it."""

    app: Any
    accounts: Accounts

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="https://testserver", raise_server_exceptions=False)

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "anonymous":
            return {}
        if caller == "forged":
            return {"Authorization": "Bearer regul_forged-0000000000000000"}
        secret, _ = self.accounts.issue_token(caller, label="schemathesis")
        return {"Authorization": f"Bearer {secret}"}


def seed_cases(ctx: Ctx) -> tuple[str, ...]:
    """ECMO at the UMAC and at the CCS, PPE dispatched (a dated deadline), a transfer closed."""
    specs = ctx.registry
    cases = [
        drive(ctx, ctx.open("ecmo"), path_to(specs["ecmo"], "umac_review")),
        drive(
            ctx,
            ctx.open("ecmo", patient_ref="PAT-0003"),
            path_to(specs["ecmo"], "national_regulation"),
        ),
        drive(ctx, ctx.open("ppe"), path_to(specs["ppe"], "dispatched")),
        drive(ctx, ctx.open("transfer"), path_to(specs["transfer"], "closed")),
    ]
    return tuple(c.reference for c in cases)


@pytest.fixture
def served(ctx: Ctx) -> Served:
    assert seed_cases(ctx) == REFERENCES
    app, accounts = build_web(ctx.db, ctx.registry, ctx.runner, ctx.clock)
    return Served(app, accounts)


@pytest.fixture
def caller_headers(served: Served, caller: str) -> dict[str, str]:
    return served.headers(caller)


# -- fuzzing -------------------------------------------------------------------------------

# One database per operation and caller, shared by that operation's generated requests on
# purpose: the cases they change (a trigger fired, a hold) are what the next requests find.
SHARED_FIXTURES = [HealthCheck.function_scoped_fixture]
UNAUTHENTICATED = {
    (401, "unauthenticated"),
    (400, "malformed_json"),
    (413, "too_large"),
}


def checks_for(case: Any) -> list[Callable[..., bool | None]]:
    """Every check, for every operation."""
    return CHECKS


@schema.parametrize()
@settings(max_examples=25, suppress_health_check=SHARED_FIXTURES)
@pytest.mark.parametrize("caller", ["ccs", "auditeur"])
def test_fuzz_with_credentials(case: Any, served: Served, caller_headers: dict[str, str]) -> None:
    """A national regulator and a national auditor: no 5xx, documented answers, problems."""
    case.call_and_validate(app=served.app, headers=caller_headers, checks=checks_for(case))


@schema.parametrize()
@settings(max_examples=8, suppress_health_check=SHARED_FIXTURES)
@pytest.mark.parametrize("caller", ["anonymous", "forged"])
def test_fuzz_without_valid_credentials(
    case: Any, served: Served, caller_headers: dict[str, str]
) -> None:
    """No token, a forged token: a 401 problem, and nothing of a case is ever looked at."""
    response = case.call_and_validate(
        app=served.app, headers=caller_headers, checks=checks_for(case)
    )
    if case.method.upper() != case.operation.method.upper():
        # The coverage phase also sends methods that the path does not have (TRACE, PATCH...).
        assert response.status_code == 405, case.as_curl_command()
        return
    # A body that is not JSON, or too big, is refused before the caller is known: it reveals
    # nothing. Anything else must be the 401, never the engine's 403, 404 or 409.
    code = response.json().get("code")
    assert (response.status_code, code) in UNAUTHENTICATED, case.as_curl_command()


# -- the seeded cases, every GET, and the main POSTs: deterministic ------------------------


def explicit(
    label: str,
    path: dict[str, str] | None = None,
    query: dict[str, Any] | None = None,
    **parts: Any,
) -> Any:
    """A schemathesis case for one operation, with the given parameters instead of generated."""
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    return operation.Case(path_parameters=path or {}, query=query or {}, **parts)


def conforming(served: Served, case: Any, headers: dict[str, str]) -> Any:
    """Send ``case`` to the app and validate the answer (schemathesis' checks and ours)."""
    response = case.call(app=served.app, headers=headers)
    case.validate_response(response, checks=RESPONSE_CHECKS)
    return response


def every_get() -> list[Any]:
    cases = [
        explicit("GET /api/v1/me"),
        explicit("GET /api/v1/workflows"),
        *(explicit("GET /api/v1/workflows/{kind}", {"kind": k}) for k in KINDS),
        explicit("GET /api/v1/cases"),
        explicit("GET /api/v1/cases", query={"open": "true", "kind": "ecmo", "level": "ccs"}),
        explicit("GET /api/v1/cases", query={"overdue": "true", "incidents": "true"}),
        explicit("GET /api/v1/cases", query={"region": "OCC", "limit": 1, "offset": 1}),
    ]
    for ref in REFERENCES:
        cases += [
            explicit("GET /api/v1/cases/{reference}", {"reference": ref}),
            explicit("GET /api/v1/cases/{reference}/history", {"reference": ref}),
            explicit("GET /api/v1/cases/{reference}/notices", {"reference": ref}),
            explicit("GET /api/v1/audit/events", query={"case": ref}),
            explicit("GET /api/v1/audit/verify", query={"case": ref}),
        ]
    return [
        *cases,
        explicit("GET /api/v1/audit/events"),
        explicit("GET /api/v1/audit/events", query={"format": "csv", "user": "ccs"}),
        explicit(
            "GET /api/v1/audit/events",
            query={"since": "2026-11-22T08:00:00Z", "until": "2026-11-23T08:00:00+01:00"},
        ),
        explicit("GET /api/v1/audit/verify"),
    ]


@pytest.mark.parametrize("caller", ["ccs", "auditeur"])
def test_every_get_on_the_seeded_cases_conforms(served: Served, caller: str) -> None:
    """Each GET on the seeded cases answers as documented: both read, only the auditor audits."""
    headers = served.headers(caller)
    for case in every_get():
        response = conforming(served, case, headers)
        refused = caller == "ccs" and case.operation.path.startswith("/api/v1/audit/")
        assert response.status_code == (403 if refused else 200), case.as_curl_command()
    listed = conforming(served, explicit("GET /api/v1/cases"), headers).json()
    assert sorted(c["reference"] for c in listed) == sorted(REFERENCES)


def test_main_posts_conform(served: Served) -> None:
    """Open a case; hold, extend, resume and resolve a case at the CCS: documented answers."""
    etab = served.headers("etab-319900001")
    opened = conforming(
        served,
        explicit(
            "POST /api/v1/cases",
            body={
                "kind": "ecmo",
                "org": TOULOUSE,
                "fields": {"patient_ref": "PAT-0009", "mode": "VA"},
            },
            media_type="application/json",
        ),
        {**etab, "Idempotency-Key": "schema-1"},
    )
    assert opened.status_code == 201, opened.text
    assert opened.headers["location"] == [f"/api/v1/cases/{opened.json()['reference']}"]

    ccs = served.headers("ccs")
    ref = "ECMO-000002"  # at the national level, held by the CCS
    etag = conforming(served, explicit("GET /api/v1/cases/{reference}", {"reference": ref}), ccs)
    version = etag.headers["etag"][0]
    for action, body in [
        ("extend", {"reason": "waiting for a console", "by": "30m"}),
        ("hold", {"reason": "patient being stabilised"}),
        ("resume", {"reason": "stable"}),
    ]:
        answer = conforming(
            served,
            explicit(
                "POST /api/v1/cases/{reference}/controls/{action}",
                {"reference": ref, "action": action},
                body=body,
                media_type="application/json",
            ),
            {**ccs, "If-Match": version},
        )
        assert answer.status_code == 200, answer.text
        version = answer.headers["etag"][0]
    resolved = conforming(
        served,
        explicit(
            "POST /api/v1/cases/{reference}/triggers/{trigger}",
            {"reference": ref, "trigger": "resolve"},
            body={
                "reason": "national stock",
                "data": {"source": "national", "return_by": "2026-12-15"},
            },
            media_type="application/json",
        ),
        {**ccs, "If-Match": version, "Idempotency-Key": "schema-2"},
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["state"] == "dispatched"


# -- what the fuzzing found ----------------------------------------------------------------


@pytest.mark.parametrize("query", ["since=20261122", "until=0.5"])
def test_audit_period_as_a_number_is_refused(served: Served, query: str) -> None:
    """A period bound that is a number, not an ISO 8601 date-time, is a 422 problem."""
    answer = served.client().get(
        f"/api/v1/audit/events?{query}", headers=served.headers("auditeur")
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def test_body_not_in_utf8_is_malformed_json(served: Served) -> None:
    """A body that cannot be decoded gets the same clear problem as any other bad JSON."""
    answer = served.client().post(
        "/api/v1/cases/ECMO-000002/triggers/resolve",
        content='{"reason": "console prêtée"}'.encode("latin-1"),
        headers={**served.headers("ccs"), "If-Match": '"4"', "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "malformed_json", answer.text


NUL_REQUESTS = {
    "list filter": ("ccs", "GET", "/api/v1/cases?org=%00", None),
    "audit filter": ("auditeur", "GET", "/api/v1/audit/events?user=%00", None),
    "open, organisation": (
        "etab-319900001",
        "POST",
        "/api/v1/cases",
        {"kind": "ecmo", "org": "3199\x0000001", "fields": {}},
    ),
    "open, text field": (
        "etab-319900001",
        "POST",
        "/api/v1/cases",
        {
            "kind": "ecmo",
            "org": TOULOUSE,
            "fields": {"patient_ref": "PAT-0010", "mode": "VV", "summary": "\x00"},
        },
    ),
    "trigger reason": (
        "ccs",
        "POST",
        "/api/v1/cases/ECMO-000002/triggers/reject",
        {"reason": "contre-indication\x00"},
    ),
    "refused control, reason": (
        "ccs",
        "POST",
        "/api/v1/cases/ECMO-000001/controls/hold",
        {"reason": "\x00"},
    ),
}


@pytest.mark.parametrize("name", NUL_REQUESTS)
def test_nul_character_is_a_problem_not_a_500(
    served: Served, backend: str, name: str, request: pytest.FixtureRequest
) -> None:
    """A NUL character (U+0000) in a filter, a field or a reason is refused, never a 500."""
    caller, method, url, body = NUL_REQUESTS[name]
    client = served.client()
    headers = served.headers(caller)
    if "/cases/" in url:
        reference = url.split("/")[4]
        headers["If-Match"] = client.get(f"/api/v1/cases/{reference}", headers=headers).headers[
            "etag"
        ]
    answer = client.request(method, url, json=body, headers=headers)
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == "application/problem+json"


def test_an_unexpected_error_is_a_problem_without_a_trace(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever breaks inside, the client gets a 500 problem that says to retry, no trace."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError('Traceback (most recent call last):\n  File "engine/secret.py"')

    headers = served.headers("ccs")
    monkeypatch.setattr(served.app.state.services.runner, "search", broken)
    case = explicit("GET /api/v1/cases")
    answer = served.client().get("/api/v1/cases", headers=headers)
    assert answer.status_code == 500
    case.validate_response(answer, checks=[_problem_details])  # problem+json, no trace
    body = answer.json()
    assert (body["code"], body["instance"]) == ("internal", "/api/v1/cases")
    assert "retry" in body["detail"]
    assert "secret.py" not in answer.text
