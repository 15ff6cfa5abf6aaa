"""DORA report drafts: IR-1.2.1 schema validity when complete, missing fields named when not."""

from __future__ import annotations

import json

import pytest
from compliance_helpers import FIXTURES, SCHEMA, make_settings

from compliance.report import SCHEMA_PATH, draft_report, missing_fields
from compliance.timeline import read_jsonl


@pytest.fixture(scope="module")
def validator():
    if not SCHEMA.exists():
        pytest.skip(f"the shared IR-1.2.1 schema is not at {SCHEMA}")
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _incident(incident_id: str):
    timelines, _ = read_jsonl(FIXTURES / "incidents.jsonl")
    return next(t for t in timelines if t.id == incident_id)


def test_the_packaged_schema_is_the_shared_one() -> None:
    if not SCHEMA.exists():
        pytest.skip("shared schema absent")
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(SCHEMA.read_text())


@pytest.mark.parametrize("stage", ["initial", "intermediate", "final"])
def test_complete_incident_drafts_validate_against_ir_121(validator, stage: str) -> None:
    document, missing = draft_report(_incident("pagerduty:PMAJ001"), make_settings(), stage)
    assert missing == []
    assert list(validator.iter_errors(document)) == []
    submission = {"initial": "initial_notification", "intermediate": "intermediate_report", "final": "final_report"}
    assert document["incidentSubmission"] == submission[stage]
    assert document["affectedEntity"][0]["affectedEntityType"] == ["payment_institution"]
    assert document["incident"]["detectionDateTime"] == "2026-03-10T08:00:00Z"


def test_final_draft_carries_the_fields_the_final_stage_needs(validator) -> None:
    document, _ = draft_report(_incident("pagerduty:PMAJ001"), make_settings(), "final")
    incident = document["incident"]
    assert incident["rootCauseHLClassification"] == ["system_failure_malfunction"]
    assert incident["incidentResolutionDateTime"] == "2026-03-10T16:00:00Z"
    assert incident["incidentDuration"] == "000:08:20"
    assert document["impactAssessment"]["serviceImpact"]["serviceDowntime"] == "000:07:18"
    criteria = {c["classificationCriterion"]: c for c in incident["classificationTypes"]}
    assert criteria["geographical_spread"]["countryCodeMaterialityThresholds"] == ["AT", "DE"]
    assert criteria["economic_impact"]["economicImpactMaterialityThreshold"] == "EUR 180,000"
    assert "critical_services_affected" in criteria


def test_incomplete_incident_names_missing_fields_by_number() -> None:
    ransomware = _incident("pagerduty:PMAJ003")
    assert missing_fields(ransomware, make_settings(), "initial") == []
    _document, missing = draft_report(ransomware, make_settings(), "intermediate")
    assert "3.35 indicators of compromise" in missing  # cyber incident: IoCs required
    assert "3.25 threats and techniques used" not in missing  # given
    assert "3.22 critical services affected" in missing


def test_entity_config_gaps_are_named_too() -> None:
    settings = make_settings(lei=None, contact={"email": "office@beispiel.example"})
    missing = missing_fields(_incident("pagerduty:PMAJ001"), settings, "initial")
    assert missing[:3] == ["1.3 code of the submitting entity", "1.6 LEI of the affected entity",
                           "1.7 primary contact name"]


def test_a_schema_violation_is_reported_instead_of_an_invalid_report() -> None:
    settings = make_settings(contact={"name": "E. M.", "email": "office@beispiel.example", "phone": "call me"})
    _document, problems = draft_report(_incident("pagerduty:PMAJ001"), settings, "initial")
    assert problems and problems[0].startswith("field 1.9")
