"""Issue 13: a transfer is proposed to the receiving establishment, which accepts or declines.

``resolve`` at a regulating level names the receiving establishment and leads to the proposed
state of that level (``proposed_ars``, ``proposed_zone``, ``proposed_national``); only a user
of that establishment accepts (→ ``dispatched``) or declines (→ back to the proposing level,
its deadline afresh); the proposing level may withdraw; unanswered within the hour, the
proposal lapses back to it. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine.cases import CaseFilter
from engine.errors import InputError, NotFound, NotPermitted
from engine.sweeper import sweep
from engine.values import CaseView
from tests.conftest import RECEIVING, TOULOUSE, TRIGGER_FIELDS, Ctx, Web, drive
from tests.test_notices import notices as queued
from tests.test_notices import use_outbox

MONTPELLIER = RECEIVING["OCC"]  # the receiving establishment of TRIGGER_FIELDS' transfer
RECEIVER = f"etab-{MONTPELLIER}"
REQUESTER = f"etab-{TOULOUSE}"
# the states a transfer waits in at each regulating level, who regulates it there, and how
# it gets there from the opening (the hospital confirms its request: conftest's CONFIRMS)
LEVELS = {
    "ars_regulation": ("ars-occ", "proposed_ars", 1),
    "zone_regulation": ("arsz-sud", "proposed_zone", 2),
    "national_regulation": ("ccs", "proposed_national", 3),
}
RESOLVE = TRIGGER_FIELDS[("transfer", "resolve")]


def at(ctx: Ctx, state: str) -> CaseView:
    case = drive(ctx, ctx.open("transfer"), ["escalate"] * LEVELS[state][2])
    assert case.state == state
    return case


def propose(ctx: Ctx, case: CaseView, **extra: object) -> CaseView:
    login = LEVELS[case.state][0]
    return ctx.runner.advance(
        reference=case.reference, trigger="resolve", login=login, reason="lit trouvé",
        data={**RESOLVE, **extra},
    )  # fmt: skip


def fire(ctx: Ctx, case: CaseView, trigger: str, login: str, reason: str = "motif") -> CaseView:
    return ctx.runner.advance(reference=case.reference, trigger=trigger, login=login, reason=reason)


def open_deadline(ctx: Ctx, case: CaseView) -> tuple[str, datetime, str]:
    with ctx.db.read() as conn:
        row = conn.execute(
            sa.text(
                "SELECT state, due_at, action FROM deadline WHERE case_id = :id AND status = 'open'"
            ),
            {"id": case.id},
        ).one()
    due = row.due_at if isinstance(row.due_at, datetime) else datetime.fromisoformat(row.due_at)
    return row.state, due.replace(tzinfo=None), row.action


def stored(ctx: Ctx) -> dict[str, Any]:
    """Everything but the audit log (its chain's head on the case row too): what a refusal
    must leave as it was."""
    snap = ctx.snapshot()
    for row in snap["regul_case"]:
        del row["audit_seq"], row["audit_hash"]
    return {k: v for k, v in snap.items() if k in ("regul_case", "deadline", "notice")}


def transitions(ctx: Ctx, case: CaseView) -> list[Any]:
    with ctx.db.read() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT * FROM audit_event WHERE case_id = :id AND action = 'transition' "
                    "ORDER BY id"
                ),
                {"id": case.id},
            )
        )


# -- resolve proposes ---------------------------------------------------------------------


@pytest.mark.parametrize("state", list(LEVELS))
def test_resolve_proposes_to_the_receiving_establishment(ctx: Ctx, state: str) -> None:
    """Resolve at each level: the proposed state of that level, held by it, for one hour."""
    case = propose(ctx, at(ctx, state))
    _, proposed, _ = LEVELS[state]
    assert case.state == proposed
    assert case.level == ctx.registry["transfer"].state(state).level
    assert case.fields["resolve"]["receiving_hospital"] == MONTPELLIER
    deadline = open_deadline(ctx, case)
    now = ctx.clock.now().replace(tzinfo=None)
    assert deadline == (proposed, now + timedelta(hours=1), "withdraw")


def test_the_bed_override_reason_is_kept_in_the_fields_and_the_audit(ctx: Ctx) -> None:
    why = "réanimation saturée, lit supplémentaire armé"
    case = propose(ctx, at(ctx, "ars_regulation"), bed_override_reason=why)
    assert case.fields["resolve"]["bed_override_reason"] == why
    last = transitions(ctx, case)[-1]
    data = last.data if isinstance(last.data, dict) else json.loads(last.data)
    assert data["fields"]["bed_override_reason"] == why


# -- the receiver answers -----------------------------------------------------------------


def test_only_the_receiver_accepts(ctx: Ctx) -> None:
    """The requester, the GHT, the ARS: typed refusals, recorded, nothing else changed; an
    establishment outside every relation (of the same GHT or elsewhere) finds no case."""
    case = propose(ctx, at(ctx, "ars_regulation"))
    for login, why in (
        (REQUESTER, "not_the_receiver"),
        ("ght-occ-06", "role_may_not_fire"),
        ("ars-occ", "role_may_not_fire"),
    ):
        for trigger in ("accept", "decline"):
            before, refused = stored(ctx), ctx.count("audit_event", "action = 'refused'")
            with pytest.raises(NotPermitted) as info:
                fire(ctx, case, trigger, login)
            assert info.value.why == why, (login, trigger)
            assert stored(ctx) == before
            assert ctx.count("audit_event", "action = 'refused'") == refused + 1
    for outsider in ("etab-319900002", "etab-789900001"):  # same GHT; Poissy
        before = stored(ctx)
        with pytest.raises(NotFound):
            fire(ctx, case, "accept", outsider)
        assert stored(ctx) == before
    accepted = fire(ctx, case, "accept", RECEIVER, "lit réservé")
    assert (accepted.state, accepted.version) == ("dispatched", case.version + 1)
    assert transitions(ctx, accepted)[-1].actor == RECEIVER


def test_the_receiver_reads_and_lists_the_case(ctx: Ctx) -> None:
    case = at(ctx, "ars_regulation")
    with pytest.raises(NotFound):
        ctx.runner.show(case.reference, login=RECEIVER)
    case = propose(ctx, case)
    assert ctx.runner.show(case.reference, login=RECEIVER).state == "proposed_ars"
    assert ctx.runner.allowed_triggers(case, RECEIVER) == ["accept", "decline"]
    assert "accept" not in ctx.runner.allowed_triggers(case, REQUESTER)
    assert ctx.runner.allowed_triggers(case, "ars-occ") == ["withdraw"]
    listed = ctx.runner.search(CaseFilter(), login=RECEIVER)
    assert [c.reference for c in listed] == [case.reference]


def test_decline_needs_a_reason(ctx: Ctx) -> None:
    case = propose(ctx, at(ctx, "ars_regulation"))
    before = ctx.snapshot()
    with pytest.raises(InputError) as info:
        fire(ctx, case, "decline", RECEIVER, reason="  ")
    assert info.value.why == "reason_required"
    assert ctx.snapshot() == before


@pytest.mark.parametrize("state", list(LEVELS))
def test_decline_returns_to_the_proposing_level_with_a_fresh_deadline(ctx: Ctx, state: str) -> None:
    case = propose(ctx, at(ctx, state))
    ctx.clock.advance(timedelta(minutes=20))
    declined = fire(ctx, case, "decline", RECEIVER, "plus de lit de réanimation")
    assert declined.state == state
    spec = ctx.registry["transfer"]
    fresh = spec.state(state).deadline
    assert fresh is not None
    now = ctx.clock.now().replace(tzinfo=None)
    assert open_deadline(ctx, declined)[:2] == (state, now + fresh)
    # proposed again, elsewhere or not: the same path
    again = propose(ctx, declined)
    assert again.state == LEVELS[state][1]


def test_the_proposing_level_may_withdraw(ctx: Ctx) -> None:
    case = propose(ctx, at(ctx, "zone_regulation"))
    with pytest.raises(NotPermitted):
        fire(ctx, case, "withdraw", "ars-occ")  # not the level that proposed
    withdrawn = fire(ctx, case, "withdraw", "arsz-sud", "autre solution plus proche")
    assert withdrawn.state == "zone_regulation"


def test_unanswered_the_proposal_returns_to_the_proposing_level(ctx: Ctx) -> None:
    case = propose(ctx, at(ctx, "ars_regulation"))
    _, due, _ = open_deadline(ctx, case)
    ctx.clock.set(due.replace(tzinfo=ctx.clock.now().tzinfo) - timedelta(seconds=1))
    sweep(ctx.runner, batch_size=7)
    assert ctx.runner.show(case.reference).state == "proposed_ars"
    ctx.clock.set(due.replace(tzinfo=ctx.clock.now().tzinfo))
    sweep(ctx.runner, batch_size=7)
    back = ctx.runner.show(case.reference)
    assert back.state == "ars_regulation"
    last = transitions(ctx, back)[-1]
    assert (last.actor, last.from_state, last.to_state) == ("system", "proposed_ars", back.state)
    assert last.reason.startswith("Sans réponse de l'établissement d'accueil")
    now = ctx.clock.now().replace(tzinfo=None)
    assert open_deadline(ctx, back)[:2] == ("ars_regulation", now + timedelta(hours=2))


# -- notices --------------------------------------------------------------------------------


def told(ctx: Ctx, case: CaseView, kind: str) -> tuple[list[str], list[str]]:
    (row,) = [r for r in queued(ctx) if r.case_id == case.id and r.kind == kind]
    return (
        [r["org"] for r in row.recipients["action"]],
        [r["org"] for r in row.recipients["info"]],
    )


def test_notices_of_a_proposal_and_its_answers(ctx: Ctx) -> None:
    ctx = use_outbox(ctx)
    case = propose(ctx, at(ctx, "ars_regulation"))
    action, info = told(ctx, case, "proposed")
    assert action == [MONTPELLIER]
    assert {TOULOUSE, "ARS-OCC"} <= set(info)
    declined = fire(ctx, case, "decline", RECEIVER, "plus de lit")
    assert told(ctx, declined, "declined") == (["ARS-OCC"], [TOULOUSE])
    case = propose(ctx, declined)
    accepted = fire(ctx, case, "accept", RECEIVER, "lit réservé")
    action, info = told(ctx, accepted, "accepted")
    assert action == ["ARS-OCC"]
    assert TOULOUSE in info


# -- the desk ------------------------------------------------------------------------------


def test_the_desk_shows_accept_and_decline_to_the_receiver_only(web: Web) -> None:
    case = propose(web.ctx, at(web.ctx, "ars_regulation"))
    web.login(REQUESTER)
    page = web.client.get(f"/cases/{case.reference}").text
    assert f"/cases/{case.reference}/fire/accept" not in page
    web.client.cookies.clear()
    csrf = web.login(RECEIVER)
    page = web.client.get(f"/cases/{case.reference}").text
    for trigger in ("accept", "decline"):
        assert f'action="/cases/{case.reference}/fire/{trigger}"' in page
    assert 'id="decline-reason"' in page  # the decline asks its reason
    answer = web.client.post(
        f"/cases/{case.reference}/fire/decline",
        data={"csrf": csrf, "version": str(case.version), "reason": "plus de lit"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert web.ctx.runner.show(case.reference).state == "ars_regulation"


def test_the_api_fires_accept_unchanged(web: Web) -> None:
    case = propose(web.ctx, at(web.ctx, "ars_regulation"))
    answer = web.client.post(
        f"/api/v1/cases/{case.reference}/triggers/accept",
        json={"reason": "lit réservé"},
        headers={**web.token(RECEIVER), "If-Match": f'"{case.version}"'},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "dispatched"


def test_the_desk_ladder_leaves_out_the_proposals_of_other_levels() -> None:
    """At the zone, a proposal by the ARS can no longer happen; once proposed by the ARS and
    transferred, the zone's and the CCS's proposals never happened: neither is drawn."""
    from interfaces.desk import ladder
    from workflows import default_registry

    spec = default_registry()["transfer"]
    at_zone = ladder(spec, "zone_regulation", {"requested", "ars_regulation"})
    assert "proposed_ars" not in [s["name"] for s in at_zone]
    assert {"proposed_zone", "proposed_national"} <= {s["name"] for s in at_zone}
    done = ladder(spec, "closed", {"requested", "ars_regulation", "proposed_ars", "dispatched"})
    shown = {s["name"]: s["where"] for s in done}
    assert shown["proposed_ars"] == "passed"
    assert "proposed_zone" not in shown
    assert "proposed_national" not in shown
