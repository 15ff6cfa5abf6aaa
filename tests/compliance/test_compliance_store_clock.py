"""Recording events (audit entry in the same transaction, cited as evidence), AUD-1, and the deadline clock."""

from __future__ import annotations

import pytest
from compliance_helpers import at, major, make_settings, one
from sqlmodel import Session, select

from bridge.audit_verify import verify_store
from bridge.store import AuditEntry
from compliance.clock import due_alerts
from compliance.rules import Verdict
from compliance.store import UnknownIncident, load_timelines, record_event
from compliance.timeline import EventError


def test_record_event_writes_an_audit_entry_and_cites_it(cstore) -> None:
    record_event(cstore, "pagerduty:P1", "detected", at("2026-03-10T09:00:00+01:00"), create=True)
    entry = record_event(cstore, "pagerduty:P1", "report_initial", at("2026-03-10T12:00:00Z"), "CA-77")
    assert entry["kind"] == "compliance.recorded" and entry["data"] == {"event": "report_initial",
                                                                         "at": "2026-03-10T12:00:00Z", "ref": "CA-77"}
    [timeline] = load_timelines(cstore)
    assert timeline.detected_at == at("2026-03-10T08:00:00Z")
    assert timeline.evidence["report_initial"] == [f"audit#{entry['seq']} sha256:{entry['hash'][:16]}"]
    assert timeline.audit_events == 2
    assert verify_store(cstore).ok


def test_a_refused_event_writes_nothing(cstore) -> None:
    with pytest.raises(UnknownIncident):
        record_event(cstore, "pagerduty:NOPE", "detected", at("2026-03-10T09:00:00Z"))
    record_event(cstore, "pagerduty:P1", "detected", at("2026-03-10T09:00:00Z"), create=True)
    with pytest.raises(EventError):
        record_event(cstore, "pagerduty:P1", "report_final", at("2026-03-10T09:00:00Z"))
    assert verify_store(cstore).entries == 1


def test_load_timelines_filters_by_opened_time(cstore) -> None:
    from compliance.store import import_timelines
    from compliance.timeline import Timeline

    import_timelines(cstore, [Timeline(id="a", opened_at="2026-02-28T23:30:00Z"),
                              Timeline(id="b", opened_at="2026-03-01T00:30:00Z")])
    assert [t.id for t in load_timelines(cstore, at("2026-03-01T00:00:00Z"), None)] == ["b"]


def test_aud1_reports_a_tampered_trail(cstore, settings) -> None:
    for name in ("detected", "acknowledged", "resolved"):
        record_event(cstore, "pagerduty:P1", name, at("2026-03-10T09:00:00Z"), create=True)
    assert one("AUD-1", None, settings, audit_verification=verify_store(cstore)).verdict is Verdict.PASS
    with cstore.transaction() as session:
        row = session.exec(select(AuditEntry).where(AuditEntry.seq == 2)).one()
        row.data = row.data.replace("acknowledged", "detected")
        session.add(row)
    finding = one("AUD-1", None, settings, audit_verification=verify_store(cstore))
    assert finding.verdict is Verdict.FAIL and "broken at entry 2" in finding.message
    with Session(cstore.engine) as session:
        assert session.exec(select(AuditEntry)).all()


def test_clock_warns_within_the_lead_time_then_when_overdue_once_each() -> None:
    settings = make_settings(settings={"deadline_lead_minutes": 60})
    timeline = major()  # initial due 2026-03-10 14:00 UTC
    assert due_alerts([timeline], settings, at("2026-03-10T12:59:00Z")) == []
    [soon] = due_alerts([timeline], settings, at("2026-03-10T13:00:00Z"))
    assert soon.kind == "due_soon" and soon.stage == "initial" and "1 h left" in soon.message
    assert due_alerts([timeline], settings, at("2026-03-10T13:30:00Z"), {soon.key}) == []
    [late] = due_alerts([timeline], settings, at("2026-03-10T14:01:00Z"), {soon.key})
    assert late.kind == "overdue" and "OVERDUE" in late.message and "15:00 CET" in late.message
    assert due_alerts([timeline], settings, at("2026-03-10T15:00:00Z"), {soon.key, late.key}) == []


def test_clock_moves_on_to_the_next_report_and_ignores_non_major() -> None:
    settings = make_settings()
    submitted = major(reports=[{"stage": "initial", "submitted_at": "2026-03-10T12:00:00Z", "ref": "CA"}])
    [alert] = due_alerts([submitted, major(id="pd:minor", major=False, classified_major_at=None)], settings,
                         at("2026-03-13T11:30:00Z"))
    assert (alert.incident_id, alert.stage, alert.rule_id) == ("pagerduty:PT1", "intermediate", "DORA-T2")
