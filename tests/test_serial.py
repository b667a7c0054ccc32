"""One serialisation of a case and an event: the CLI's --json and the API say the same fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from engine.values import CaseView, OpenDeadline
from interfaces.api import CaseOut, CaseSummary, EventOut
from interfaces.serial import case_json, event_json

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
CASE = CaseView(
    id=1, reference="ECMO-000001", kind="ecmo", state="umac_review", level="umac", final=False,
    version=2, org="319900001", region="OCC", zone="SUD", department="31", ght="GHT-OCC-06",
    fields={"patient_ref": "PAT-1"}, opened_by="etab", opened_at=NOW, updated_at=NOW,
    audit_seq=2, audit_hash="ab" * 32,
    deadline=OpenDeadline("umac_review", NOW + timedelta(hours=2), "escalate"),
)  # fmt: skip


def test_case_json_is_the_api_case_model() -> None:
    """The CLI's case JSON has exactly the API model's fields, with the same values."""
    data = case_json(CASE, NOW, allowed=["escalate"])
    assert set(data) == set(CaseOut.model_fields)
    api = CaseOut(**data).model_dump(mode="json")
    assert api["deadline"]["seconds_left"] == data["deadline"]["seconds_left"] == 7200
    assert api["fields"] == data["fields"]
    summary = case_json(CASE, NOW, facts=False)
    assert set(summary) == set(CaseSummary.model_fields)
    assert "fields" not in summary  # a list never carries the clinical facts


def test_event_json_is_the_api_event_model() -> None:
    """An event has one set of names (from_state/to_state) in the CLI and the API."""
    row = SimpleNamespace(
        seq=2, at=NOW, actor="umac-sud", role="umac", org="UMAC-SUD", action="transition",
        from_state="umac_review", to_state="ars_regulation", version=3, reason="r",
        data={"trigger": "escalate"}, hash="cd" * 32,
    )  # fmt: skip
    data = event_json(row)
    assert set(data) == set(EventOut.model_fields)
    assert (data["from_state"], data["to_state"]) == ("umac_review", "ars_regulation")
    assert EventOut(**data).model_dump(mode="json")["at"].startswith("2026-11-22T08:00:00")
