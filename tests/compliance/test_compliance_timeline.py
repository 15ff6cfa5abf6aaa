"""Timeline JSON Lines: malformed lines reported with line number and field, the rest still read; events."""

from __future__ import annotations

from pathlib import Path

import pytest
from compliance_helpers import FIXTURES, at

from compliance.timeline import EventError, Timeline, apply_event, read_jsonl, write_jsonl


def test_fixture_file_reads_cleanly_and_round_trips(tmp_path: Path) -> None:
    timelines, errors = read_jsonl(FIXTURES / "incidents.jsonl")
    assert errors == [] and len(timelines) == 6
    write_jsonl(timelines, tmp_path / "out.jsonl")
    again, errors = read_jsonl(tmp_path / "out.jsonl")
    assert errors == [] and again == timelines


def test_bad_lines_are_named_and_good_lines_still_read() -> None:
    timelines, errors = read_jsonl(FIXTURES / "malformed.jsonl")
    assert [t.id for t in timelines] == ["pagerduty:POK1", "pagerduty:POK2"]
    found = {(e.line, e.field): e.message for e in errors}
    assert "did you mean 'detected_at'?" in found[(2, "detcted_at")]
    assert "not valid JSON" in found[(3, "(line)")]
    assert "has no zone" in found[(4, "opened_at")]
    assert "did you mean 'initial'?" not in found.get((5, "reports[0].stage"), "")
    assert "'initial'" in found[(5, "reports[0].stage")]
    assert "did you mean 'staff'?" in found[(6, "dora.discovery")]
    assert "required field is missing" in found[(7, "id")]
    assert "already appears on line 1" in found[(9, "id")]
    assert str(errors[0]).startswith("line 2, detcted_at: unknown field")


def test_times_are_normalised_to_utc() -> None:
    timeline = Timeline(id="x", detected_at="2026-03-14T09:30:00+01:00")
    assert timeline.detected_at.isoformat() == "2026-03-14T08:30:00+00:00"


def test_apply_event_is_pure_and_fills_the_right_fields() -> None:
    base = Timeline(id="pd:1")
    step = apply_event(base, "classified_major", at("2026-03-10T10:00:00+01:00"))
    assert base.classified_major_at is None and step.major and step.classified_major_at == at("2026-03-10T09:00:00Z")
    step = apply_event(step, "delay_notice", at("2026-03-10T12:00:00Z"), "initial: portal down")
    step = apply_event(step, "report_initial", at("2026-03-10T14:30:00Z"), "CA-1")
    assert len(step.reports) == 1
    report = step.reports[0]
    assert (report.stage, report.ref, report.delay_reason) == ("initial", "CA-1", "portal down")
    step = apply_event(step, "problem", at("2026-03-11T10:00:00Z"), "PRB42")
    assert step.problem_id == "PRB42" and step.problem_linked_at is not None


def test_apply_event_refuses_what_an_officer_would_regret() -> None:
    base = Timeline(id="pd:1")
    with pytest.raises(EventError, match="did you mean 'report_initial'"):
        apply_event(base, "report_inital", at("2026-03-10T10:00:00Z"), "CA")
    with pytest.raises(EventError, match="needs --ref"):
        apply_event(base, "report_final", at("2026-03-10T10:00:00Z"))
    with pytest.raises(EventError, match="no zone"):
        apply_event(base, "detected", at("2026-03-10T10:00:00"))
    with pytest.raises(EventError, match="initial, intermediate or final"):
        apply_event(base, "delay_notice", at("2026-03-10T10:00:00Z"), "soon")
