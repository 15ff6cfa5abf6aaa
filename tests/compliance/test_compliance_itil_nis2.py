"""ITIL-I1..I5 and NIS2-N1..N3 on their boundaries."""

from __future__ import annotations

import pytest
from compliance_helpers import major, make_settings, one, run

from compliance.rules import Verdict
from compliance.timeline import Timeline

RECORD = {"id": "pd:I", "title": "Slow reports", "opened_at": "2026-03-16T08:00:00Z", "category": "Data",
          "impact": 1, "urgency": 1, "priority": 1, "assignment_group": "DBA", "state": "in_progress"}


def test_i1_names_the_missing_fields(settings) -> None:
    finding = one("ITIL-I1", Timeline(id="pd:I", opened_at="2026-03-16T08:00:00Z"), settings)
    assert finding.verdict is Verdict.FAIL
    assert "category, impact, urgency, priority, assignment group, state, description" in finding.message
    assert one("ITIL-I1", Timeline.model_validate(RECORD), settings).verdict is Verdict.PASS


def test_i2_servicenow_matrix_and_the_configurable_corner(settings) -> None:
    low = Timeline.model_validate({**RECORD, "impact": 3, "urgency": 3, "priority": 4})
    assert one("ITIL-I2", low, settings).verdict is Verdict.PASS
    planning = make_settings(settings={"priority_matrix": [[1, 2, 3], [2, 3, 4], [3, 4, 5]]})
    finding = one("ITIL-I2", low, planning)
    assert finding.verdict is Verdict.FAIL and "give priority 5" in finding.message


def test_i2_three_three_corner_both_ways(settings) -> None:
    """The disputed 3/3 cell (4 Low in ServiceNow's incident docs, 5 Planning on instances with the
    problem-doc lookup): whichever the matrix says passes, the other is flagged."""
    low = Timeline.model_validate({**RECORD, "impact": 3, "urgency": 3, "priority": 4})
    planned = Timeline.model_validate({**RECORD, "impact": 3, "urgency": 3, "priority": 5})
    flagged = one("ITIL-I2", planned, settings)  # the default matrix: 3/3 -> 4
    assert flagged.verdict is Verdict.FAIL and "give priority 4" in flagged.message
    planning = make_settings(settings={"priority_matrix": [[1, 2, 3], [2, 3, 4], [3, 4, 5]]})
    assert one("ITIL-I2", planned, planning).verdict is Verdict.PASS
    flagged = one("ITIL-I2", low, planning)
    assert flagged.verdict is Verdict.FAIL and flagged.details["expected"] == 5


def test_i3_lifecycle(settings) -> None:
    illegal = Timeline.model_validate({**RECORD, "state": "closed", "state_history": [
        {"state": "new", "at": "2026-03-16T08:00:00Z"}, {"state": "7", "at": "2026-03-16T09:00:00Z"}]})
    finding = one("ITIL-I3", illegal, settings)
    assert finding.verdict is Verdict.FAIL
    assert "illegal transition new -> closed" in finding.message and "closed without resolution code" in finding.message
    resolved = Timeline.model_validate({**RECORD, "state": "resolved", "resolved_at": "2026-03-16T10:00:00Z",
                                        "close_code": "Solved", "close_notes": "Disk extended"})
    assert one("ITIL-I3", resolved, settings).verdict is Verdict.PASS
    reversed_ = resolved.model_copy(update={"state": "closed", "closed_at": resolved.resolved_at.replace(hour=9)})
    assert "before resolved" in one("ITIL-I3", reversed_, settings).message


@pytest.mark.parametrize(("ack", "verdict"), [("2026-03-16T08:15:00Z", Verdict.PASS),
                                              ("2026-03-16T08:16:00Z", Verdict.FAIL)])
def test_i4_response_one_minute_either_side(settings, ack: str, verdict: Verdict) -> None:
    timeline = Timeline.model_validate({**RECORD, "acknowledged_at": ack})
    response = run("ITIL-I4", timeline, settings, "2026-03-16T09:00:00Z")[0]
    assert response.verdict is verdict and "P1 response target 15 minutes" in response.message


HOLD = [{"state": "in_progress", "at": "2026-03-16T08:05:00Z"}, {"state": "on_hold", "at": "2026-03-16T09:00:00Z"},
        {"state": "in_progress", "at": "2026-03-16T10:00:00Z"}, {"state": "resolved", "at": "2026-03-16T17:00:00Z"}]


@pytest.mark.parametrize(("resolved", "pause", "verdict"), [
    ("2026-03-16T15:59:00Z", False, Verdict.PASS), ("2026-03-16T16:01:00Z", False, Verdict.FAIL),
    ("2026-03-16T16:59:00Z", True, Verdict.PASS), ("2026-03-16T17:01:00Z", True, Verdict.FAIL),
])
def test_i4_resolution_with_and_without_on_hold_pause(resolved: str, pause: bool, verdict: Verdict) -> None:
    history = HOLD if pause else []
    timeline = Timeline.model_validate({**RECORD, "resolved_at": resolved, "acknowledged_at": "2026-03-16T08:05:00Z",
                                        "state_history": history})
    finding = run("ITIL-I4", timeline, make_settings(), "2026-03-17T00:00:00Z")[1]
    assert finding.verdict is verdict, finding.message
    if pause:
        assert "(plus 1 h On Hold)" in finding.message


def test_i4_open_incident_breaches_when_time_runs_out(settings) -> None:
    timeline = Timeline.model_validate({**RECORD, "acknowledged_at": "2026-03-16T08:05:00Z"})
    assert run("ITIL-I4", timeline, settings, "2026-03-16T15:59:00Z")[1].verdict is Verdict.NA
    breach = run("ITIL-I4", timeline, settings, "2026-03-16T16:01:00Z")[1]
    assert breach.verdict is Verdict.FAIL and "breached, still open" in breach.message


def test_i4_priority_without_sla_is_not_applicable(settings) -> None:
    timeline = Timeline.model_validate({**RECORD, "priority": 4, "impact": 3, "urgency": 2})
    assert {f.verdict for f in run("ITIL-I4", timeline, settings, "2026-04-01T00:00:00Z")} == {Verdict.NA}


def test_i5_major_needs_review_and_problem_before_closure(settings) -> None:
    closed = major(closed_at="2026-03-20T10:00:00Z", state="closed")
    finding = one("ITIL-I5", closed, settings)
    assert finding.verdict is Verdict.FAIL and "no post-incident review and no problem record" in finding.message
    late_review = closed.model_copy(update={"pir_at": closed.closed_at.replace(day=21), "problem_id": "PRB1"})
    assert "came after closure" in one("ITIL-I5", late_review, settings).message
    good = late_review.model_copy(update={"pir_at": closed.closed_at.replace(day=19)})
    assert one("ITIL-I5", good, settings).verdict is Verdict.PASS


NIS2 = make_settings(type="credit_institution", nis2="essential")


def _nis2(*reports: tuple[str, str], **fields: object) -> Timeline:
    return major(nis2_reports=[{"stage": s, "submitted_at": t} for s, t in reports], **fields)


@pytest.mark.parametrize(("submitted", "verdict"), [("2026-03-11T08:59:00Z", Verdict.PASS),
                                                    ("2026-03-11T09:01:00Z", Verdict.FAIL)])
def test_n1_early_warning_24_hours(submitted: str, verdict: Verdict) -> None:
    assert one("NIS2-N1", _nis2(("early_warning", submitted)), NIS2).verdict is verdict


@pytest.mark.parametrize(("submitted", "verdict"), [("2026-03-13T08:59:00Z", Verdict.PASS),
                                                    ("2026-03-13T09:01:00Z", Verdict.FAIL)])
def test_n2_notification_72_hours_no_weekend_shift(submitted: str, verdict: Verdict) -> None:
    assert one("NIS2-N2", _nis2(("notification", submitted)), NIS2).verdict is verdict


def test_n3_final_one_month_or_progress_report() -> None:
    on_time = _nis2(("notification", "2026-03-12T09:00:00Z"), ("final", "2026-04-12T21:58:00Z"))  # 23:58 CEST
    assert one("NIS2-N3", on_time, NIS2).verdict is Verdict.PASS
    late = _nis2(("notification", "2026-03-12T09:00:00Z"), ("final", "2026-04-12T22:00:00Z"))
    assert one("NIS2-N3", late, NIS2).verdict is Verdict.FAIL
    ongoing = _nis2(("notification", "2026-03-12T09:00:00Z"), ("progress", "2026-04-10T09:00:00Z"))
    assert one("NIS2-N3", ongoing, NIS2).verdict is Verdict.PASS


def test_nis2_rules_do_not_apply_to_entities_outside_nis2(settings) -> None:
    assert one("NIS2-N1", _nis2(), settings).verdict is Verdict.NA
