"""DORA-C1/C2 (the RTS 2024/1772 major test: the critical-services gate and the counting), R1, CL1, M1, RC1, REC1."""

from __future__ import annotations

import pytest
from compliance_helpers import major, make_settings, one, run

from compliance.classification import assess
from compliance.rules import Verdict
from compliance.timeline import Classification, Timeline


def c(**figures: object) -> Classification:
    return Classification.model_validate({"critical_services": True, **figures})


def test_gate_no_critical_service_is_never_major_however_many_thresholds() -> None:
    everything = c(critical_services=False, clients_affected_pct=50, reputational_impact=["media"], duration_hours=48,
                   member_states=["DE", "FR"], data_loss=True, economic_impact_eur=1e6, malicious_access_data_loss=True)
    result = assess(everything)
    assert not result.major and len(result.met) == 6
    assert "no critical service" in result.explain()


def test_exactly_two_thresholds_make_it_major_one_does_not() -> None:
    assert assess(c(clients_affected_pct=10.5, downtime_hours=2.5)).major
    one_only = assess(c(clients_affected_pct=10.5))
    assert not one_only.major and "two are needed" in one_only.explain()


def test_malicious_access_alone_is_major() -> None:
    assert assess(c(malicious_access_data_loss=True)).major
    assert not assess(c(critical_services=False, malicious_access_data_loss=True)).major


def test_several_figures_of_one_criterion_count_once() -> None:
    # 9(1) met four ways is still one threshold
    result = assess(c(clients_affected_pct=11, clients_affected=200_000, transactions_affected_pct=11,
                      relevant_clients_affected=True))
    assert list(result.met) == ["clients"] and not result.major


@pytest.mark.parametrize(("figures", "met"), [
    ({"clients_affected_pct": 10.0}, False), ({"clients_affected_pct": 10.01}, True),
    ({"clients_affected": 100_000}, False), ({"clients_affected": 100_001}, True),
    ({"counterparts_affected_pct": 30.0}, False), ({"counterparts_affected_pct": 30.1}, True),
    ({"transactions_value_pct": 10.0}, False), ({"transactions_value_pct": 10.1}, True),
    ({"duration_hours": 24.0}, False), ({"duration_hours": 24 + 1 / 60}, True),
    ({"downtime_hours": 2.0}, False), ({"downtime_hours": 2 + 1 / 60}, True),
    ({"member_states": ["DE"]}, False), ({"member_states": ["DE", "AT"]}, True),
    ({"economic_impact_eur": 100_000}, False), ({"economic_impact_eur": 100_000.01}, True),
])
def test_thresholds_are_strictly_more_than(figures: dict[str, object], met: bool) -> None:
    assert bool(assess(c(**figures)).met) is met


def test_c1_and_c2_verdicts(settings) -> None:
    unclassified_major = major(major=False, classified_major_at=None,
                               classification={"critical_services": True, "clients_affected_pct": 20,
                                               "economic_impact_eur": 200_000})
    assert one("DORA-C1", unclassified_major, settings).details["major"] is True
    c2 = one("DORA-C2", unclassified_major, settings)
    assert c2.verdict is Verdict.FAIL and "not classified as major" in c2.message
    over_classified = major(classification={"critical_services": True, "clients_affected_pct": 20})
    assert one("DORA-C2", over_classified, settings).verdict is Verdict.WARN
    no_data = major(classification=None)
    assert one("DORA-C1", no_data, settings).verdict is Verdict.WARN
    assert one("DORA-C2", no_data, settings).verdict is Verdict.NA


def _minor(incident: str, opened: str, cause: str = "Expired TLS certificate", **figures: object) -> Timeline:
    return Timeline.model_validate({"id": incident, "opened_at": opened, "occurred_at": opened, "major": False,
                                    "root_cause": cause, "classification": {"critical_services": True, **figures}})


def test_r1_recurring_incidents_that_together_are_major(settings) -> None:
    first = _minor("pd:A", "2026-01-10T10:00:00Z", clients_affected_pct=6, downtime_hours=1.5)
    second = _minor("pd:B", "2026-07-09T10:00:00Z", "expired  TLS certificate", clients_affected_pct=6,
                    downtime_hours=1.5)
    finding = one("DORA-R1", None, settings, all_timelines=[first, second])
    assert finding.verdict is Verdict.FAIL and "pd:A, pd:B" in finding.message
    reported = major(id="pd:M", recurring_incidents=["pd:A", "pd:B"],
                     reports=[{"stage": "initial", "submitted_at": "2026-07-10T10:00:00Z", "ref": "CA"}])
    assert one("DORA-R1", None, settings, all_timelines=[first, second, reported]).verdict is Verdict.PASS


def test_r1_six_months_window_and_exemptions(settings) -> None:
    first = _minor("pd:A", "2026-01-10T10:00:00Z", clients_affected_pct=6, downtime_hours=1.5)
    too_late = _minor("pd:B", "2026-07-11T10:00:00Z", clients_affected_pct=6, downtime_hours=1.5)
    assert one("DORA-R1", None, settings, all_timelines=[first, too_late]).verdict is Verdict.PASS
    weak = _minor("pd:C", "2026-02-10T10:00:00Z", clients_affected_pct=1)
    assert one("DORA-R1", None, settings, all_timelines=[first, weak]).verdict is Verdict.PASS
    micro = make_settings(microenterprise=True)
    assert one("DORA-R1", None, micro, all_timelines=[first, too_late]).verdict is Verdict.NA


def test_r1_monthly_assessment_record(settings) -> None:
    from compliance_helpers import at

    findings = run("DORA-R1", None, settings, "2026-04-15T00:00:00Z", all_timelines=[],
                   period=(at("2026-01-01T00:00:00+01:00"), at("2026-04-01T00:00:00+02:00")),
                   recurring_assessments=[at("2026-01-31T10:00:00Z"), at("2026-03-31T10:00:00Z")])
    assert [f.verdict for f in findings] == [Verdict.FAIL]
    assert "2026-02." in findings[0].message and "2026-01" not in findings[0].message


def test_cl1_clients_informed_when_financial_interests_hit(settings) -> None:
    def timeline(notified: str | None) -> Timeline:
        return major(dora={"financial_interest_impact": "yes"}, client_notified_at=notified)

    assert one("DORA-CL1", timeline("2026-03-11T08:59:00Z"), settings).verdict is Verdict.PASS
    assert one("DORA-CL1", timeline("2026-03-11T09:01:00Z"), settings).verdict is Verdict.WARN
    assert one("DORA-CL1", timeline(None), settings).verdict is Verdict.FAIL
    assert one("DORA-CL1", major(dora={"financial_interest_impact": "no"}), settings).verdict is Verdict.NA


def test_m1_management_informed(settings) -> None:
    assert one("DORA-M1", major(management_informed_at="2026-03-10T11:00:00Z"), settings).verdict is Verdict.PASS
    missing = one("DORA-M1", major(), settings)
    assert missing.verdict is Verdict.FAIL and "management_informed" in missing.message
    assert one("DORA-M1", major(), settings, now="2026-03-10T12:00:00Z").verdict is Verdict.NA


def test_rc1_closed_needs_root_cause_or_problem(settings) -> None:
    closed = Timeline(id="pd:X", state="closed", closed_at="2026-03-10T10:00:00Z")
    assert one("DORA-RC1", closed, settings).verdict is Verdict.FAIL
    assert one("DORA-RC1", closed.model_copy(update={"problem_id": "PRB1"}), settings).verdict is Verdict.PASS
    assert one("DORA-RC1", Timeline(id="pd:Y", state="in_progress"), settings).verdict is Verdict.NA


def test_rec1_desk_record_and_audit_entries(settings) -> None:
    bare = Timeline(id="pd:X", source="pagerduty")
    finding = one("DORA-REC1", bare, settings)
    assert finding.verdict is Verdict.FAIL and "no service desk ticket and no audit entries" in finding.message
    done = bare.model_copy(update={"desk_record": "INC001", "evidence": {"detected": ["audit#1 sha256:aa"]}})
    assert one("DORA-REC1", done, settings).verdict is Verdict.PASS
