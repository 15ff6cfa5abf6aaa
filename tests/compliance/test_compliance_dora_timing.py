"""DORA-T1..T7 on their boundaries: one minute either side of each limit, weekends, holidays, exclusions."""

from __future__ import annotations

import pytest
from compliance_helpers import major, make_settings, one, run

from compliance.rules import Verdict


def _initial(submitted: str, **fields: object) -> object:
    return major(reports=[{"stage": "initial", "submitted_at": submitted, "ref": "CA-1"}], **fields)


@pytest.mark.parametrize(("submitted", "verdict"), [("2026-03-10T13:59:00Z", Verdict.PASS),
                                                    ("2026-03-10T14:00:00Z", Verdict.PASS),
                                                    ("2026-03-10T14:01:00Z", Verdict.FAIL)])
def test_t1_four_hours_after_classification(settings, submitted: str, verdict: Verdict) -> None:
    finding = one("DORA-T1", _initial(submitted), settings)
    assert finding.verdict is verdict
    assert "due 2026-03-10 15:00 CET (4 h after classification as major)" in finding.message


def test_t1_message_says_how_late(settings) -> None:
    timeline = _initial("2026-03-10T14:42:00Z")
    finding = one("DORA-T1", timeline, settings)
    assert finding.message.startswith("The initial notification was due 2026-03-10 15:00 CET")
    assert finding.message.endswith("submitted 15:42: 42 minutes late.")
    assert finding.deadline.isoformat() == "2026-03-10T14:00:00+00:00"
    assert finding.actual.isoformat() == "2026-03-10T14:42:00+00:00"


@pytest.mark.parametrize(("submitted", "verdict"), [("2026-03-10T10:59:00Z", Verdict.PASS),
                                                    ("2026-03-10T11:01:00Z", Verdict.FAIL)])
def test_t1_capped_at_24_hours_after_awareness(settings, submitted: str, verdict: Verdict) -> None:
    timeline = _initial(submitted, detected_at="2026-03-09T11:00:00Z", classified_major_at="2026-03-10T09:00:00Z")
    finding = one("DORA-T1", timeline, settings)
    assert finding.verdict is verdict
    assert "24 h after becoming aware" in finding.message


def test_t1_classified_after_24_hours_gets_four_hours_from_classification(settings) -> None:
    timeline = _initial("2026-03-10T13:59:00Z", detected_at="2026-03-09T08:00:00Z",
                        classified_major_at="2026-03-10T10:00:00Z")
    assert one("DORA-T1", timeline, settings).verdict is Verdict.PASS
    late = one("DORA-C3", timeline, settings)
    assert late.verdict is Verdict.WARN and "more than 24 h" in late.message


def test_c3_exactly_24_hours_is_in_time(settings) -> None:
    timeline = major(detected_at="2026-03-09T10:00:00Z", classified_major_at="2026-03-10T10:00:00Z")
    assert one("DORA-C3", timeline, settings).verdict is Verdict.PASS
    timeline = major(detected_at="2026-03-09T09:59:00Z", classified_major_at="2026-03-10T10:00:00Z")
    assert one("DORA-C3", timeline, settings).verdict is Verdict.WARN


def test_t1_not_submitted_is_pending_then_overdue(settings) -> None:
    timeline = major()
    pending = one("DORA-T1", timeline, settings, now="2026-03-10T13:59:00Z")
    assert pending.verdict is Verdict.NA and "1 minute left" in pending.message
    overdue = one("DORA-T1", timeline, settings, now="2026-03-10T14:01:00Z")
    assert overdue.verdict is Verdict.FAIL and "has not been submitted: 1 minute overdue" in overdue.message


FRIDAY_NIGHT = {"detected_at": "2026-03-13T19:30:00Z", "opened_at": "2026-03-13T19:30:00Z",
                "classified_major_at": "2026-03-13T20:00:00Z"}  # limit Sat 14 March 01:00 CET


@pytest.mark.parametrize(("submitted", "verdict"), [("2026-03-16T10:59:00Z", Verdict.PASS),   # Mon 11:59 CET
                                                    ("2026-03-16T11:01:00Z", Verdict.FAIL)])  # Mon 12:01 CET
def test_t1_weekend_limit_moves_to_monday_noon(submitted: str, verdict: Verdict) -> None:
    finding = one("DORA-T1", _initial(submitted, **FRIDAY_NIGHT), make_settings(type="payment_institution"))
    assert finding.verdict is verdict
    assert "due 2026-03-16 12:00 CET" in finding.message and "Saturday" in finding.message


def test_t1_credit_institution_gets_no_weekend_extension() -> None:
    finding = one("DORA-T1", _initial("2026-03-16T10:59:00Z", **FRIDAY_NIGHT), make_settings(type="credit_institution"))
    assert finding.verdict is Verdict.FAIL
    assert "due 2026-03-14 01:00 CET" in finding.message and "Art. 5(5)" in finding.message


CHRISTMAS = {"detected_at": "2026-12-24T19:30:00Z", "opened_at": "2026-12-24T19:30:00Z",
             "classified_major_at": "2026-12-24T20:00:00Z"}  # limit Fri 25 Dec 01:00 CET, a holiday


@pytest.mark.parametrize(("submitted", "verdict"), [("2026-12-28T10:59:00Z", Verdict.PASS),
                                                    ("2026-12-28T11:01:00Z", Verdict.FAIL)])
def test_t1_christmas_holidays_move_the_limit_past_boxing_day_and_sunday(submitted: str, verdict: Verdict) -> None:
    finding = one("DORA-T1", _initial(submitted, **CHRISTMAS), make_settings())
    assert finding.verdict is verdict
    assert "due 2026-12-28 12:00 CET" in finding.message and "Christmas Day" in finding.message
    t5 = one("DORA-T5", _initial(submitted, **CHRISTMAS), make_settings())
    assert t5.verdict is Verdict.PASS and "Christmas Day (public holiday in DE)" in t5.message


def _with_reports(*reports: tuple[str, str], **fields: object) -> object:
    return major(reports=[{"stage": s, "submitted_at": t, "ref": f"CA-{i}"} for i, (s, t) in enumerate(reports)],
                 **fields)


@pytest.mark.parametrize(("submitted", "verdict"), [("2026-03-13T11:59:00Z", Verdict.PASS),
                                                    ("2026-03-13T12:01:00Z", Verdict.FAIL)])
def test_t2_72_hours_after_the_initial(settings, submitted: str, verdict: Verdict) -> None:
    timeline = _with_reports(("initial", "2026-03-10T12:00:00Z"), ("intermediate", submitted))
    finding = one("DORA-T2", timeline, settings)
    assert finding.verdict is verdict and "72 h after the initial notification" in finding.message


def test_t2_weekend_shift_applies_to_payment_institutions_not_credit_institutions() -> None:
    # initial Wed 11 March 13:00 CET -> 72 h = Sat 14 March 13:00 CET
    timeline = _with_reports(("initial", "2026-03-11T12:00:00Z"), ("intermediate", "2026-03-16T10:00:00Z"))
    assert one("DORA-T2", timeline, make_settings(type="payment_institution")).verdict is Verdict.PASS
    assert one("DORA-T2", timeline, make_settings(type="credit_institution")).verdict is Verdict.FAIL


def test_t2_waits_for_the_initial(settings) -> None:
    finding = one("DORA-T2", major(), settings)
    assert finding.verdict is Verdict.NA and "initial notification is submitted" in finding.message


@pytest.mark.parametrize(("submitted", "verdict"), [("2026-07-10T21:58:00Z", Verdict.PASS),   # Fri 23:58 CEST
                                                    ("2026-07-10T22:00:00Z", Verdict.FAIL)])  # Sat 00:00 CEST
def test_t4_one_month_to_the_end_of_the_same_date(settings, submitted: str, verdict: Verdict) -> None:
    timeline = _with_reports(("initial", "2026-06-08T10:00:00Z"), ("intermediate", "2026-06-10T08:00:00Z"),
                             ("final", submitted))
    finding = one("DORA-T4", timeline, settings)
    assert finding.verdict is verdict and "due 2026-07-10 23:59 CEST" in finding.message


def test_t4_counts_from_the_latest_intermediate(settings) -> None:
    timeline = _with_reports(("initial", "2026-06-08T10:00:00Z"), ("intermediate", "2026-06-10T08:00:00Z"),
                             ("intermediate", "2026-06-22T08:00:00Z"), ("final", "2026-07-20T08:00:00Z"))
    finding = one("DORA-T4", timeline, settings)
    assert finding.verdict is Verdict.PASS and "due 2026-07-22 23:59 CEST" in finding.message


def test_t4_month_end_january_to_february_then_weekend_shift() -> None:
    # 31 January + 1 month = 28 February 2026 (Saturday) 23:59 -> Monday 2 March 12:00, also for credit institutions
    timeline = _with_reports(("initial", "2026-01-29T10:00:00Z"), ("intermediate", "2026-01-31T10:00:00Z"),
                             ("final", "2026-03-02T10:59:00Z"))
    for entity_type in ("payment_institution", "credit_institution"):
        finding = one("DORA-T4", timeline, make_settings(type=entity_type))
        assert finding.verdict is Verdict.PASS, entity_type
        assert "due 2026-03-02 12:00 CET" in finding.message


def test_t4_leap_year_february(settings) -> None:
    timeline = _with_reports(("initial", "2028-01-28T10:00:00Z"), ("intermediate", "2028-01-31T10:00:00Z"),
                             ("final", "2028-02-29T22:58:00Z"))  # Tuesday 29 Feb 23:58 CET
    assert one("DORA-T4", timeline, settings).verdict is Verdict.PASS
    late = timeline.model_copy(update={"reports": [*timeline.reports[:2], timeline.reports[2].model_copy(
        update={"submitted_at": timeline.reports[2].submitted_at.replace(hour=23, minute=0)})]})
    assert one("DORA-T4", late, settings).verdict is Verdict.FAIL


def test_t3_update_after_recovery(settings) -> None:
    base = {"recovered_at": "2026-03-11T08:00:00Z"}
    on_time = _with_reports(("initial", "2026-03-10T12:00:00Z"), ("intermediate", "2026-03-12T07:59:00Z"), **base)
    assert one("DORA-T3", on_time, settings).verdict is Verdict.PASS
    slow = _with_reports(("initial", "2026-03-10T12:00:00Z"), ("intermediate", "2026-03-12T08:01:00Z"), **base)
    assert one("DORA-T3", slow, settings).verdict is Verdict.WARN
    before_recovery = _with_reports(("initial", "2026-03-10T12:00:00Z"), ("intermediate", "2026-03-10T20:00:00Z"),
                                    **base)
    assert one("DORA-T3", before_recovery, settings, now="2026-03-12T08:01:00Z").verdict is Verdict.FAIL
    assert one("DORA-T3", before_recovery, settings, now="2026-03-12T07:59:00Z").verdict is Verdict.NA


def test_t6_delay_notice_before_the_limit(settings) -> None:
    def late(notice: str | None) -> object:
        report = {"stage": "initial", "submitted_at": "2026-03-10T15:00:00Z", "ref": "CA-1"}
        if notice:
            report.update(delay_notice_at=notice, delay_reason="portal unavailable")
        return major(reports=[report])

    now = "2026-03-11T00:00:00Z"  # before the intermediate report is due
    ok = one("DORA-T6", late("2026-03-10T13:59:00Z"), settings, now=now)
    assert ok.verdict is Verdict.PASS and "portal unavailable" in ok.message
    assert one("DORA-T6", late("2026-03-10T14:01:00Z"), settings, now=now).verdict is Verdict.FAIL
    missing = one("DORA-T6", late(None), settings, now=now)
    assert missing.verdict is Verdict.FAIL and "no delay notice" in missing.message
    assert one("DORA-T6", _initial("2026-03-10T13:00:00Z"), settings, now=now).verdict is Verdict.NA


def test_t7_reclassification_needs_a_never_met_assessment(settings) -> None:
    minor_figures = {"critical_services": True, "clients_affected_pct": 2.0}
    reclassified = _with_reports(("initial", "2026-03-10T12:00:00Z"), ("reclassified", "2026-03-11T12:00:00Z"),
                                 classification=minor_figures)
    assert one("DORA-T7", reclassified, settings).verdict is Verdict.FAIL
    assessed = reclassified.model_copy(update={"thresholds_never_met": True})
    assert one("DORA-T7", assessed, settings).verdict is Verdict.PASS
    met = assessed.model_copy(update={"classification": assessed.classification.model_copy(
        update={"clients_affected_pct": 20.0, "downtime_hours": 3.0})})
    assert one("DORA-T7", met, settings).verdict is Verdict.FAIL
    # after reclassification the intermediate report is no longer owed
    assert one("DORA-T2", assessed, settings).verdict is Verdict.NA


def test_non_major_incidents_owe_no_report(settings) -> None:
    for rule in ("DORA-T1", "DORA-T2", "DORA-T4", "DORA-F1"):
        assert one(rule, major(major=False, classified_major_at=None), settings).verdict is Verdict.NA


def test_f4_order(settings) -> None:
    bad = _with_reports(("initial", "2026-03-10T09:30:00Z"), occurred_at="2026-03-10T08:00:00Z")
    finding = one("DORA-F4", bad, settings)
    assert finding.verdict is Verdict.FAIL and "initial report" in finding.message and "before classified major" in \
        finding.message
    good = _with_reports(("initial", "2026-03-10T12:00:00Z"), occurred_at="2026-03-10T08:00:00Z",
                         resolved_at="2026-03-10T20:00:00Z", classification={"duration_hours": 12})
    assert one("DORA-F4", good, settings).verdict is Verdict.PASS
    wrong_duration = good.model_copy(update={"classification": good.classification.model_copy(
        update={"duration_hours": 30})})
    assert one("DORA-F4", wrong_duration, settings).verdict is Verdict.WARN


def test_every_timing_finding_cites_its_audit_entries(settings) -> None:
    timeline = _initial("2026-03-10T14:01:00Z", evidence={"classified_major": ["audit#7 sha256:ab12"],
                                                          "report_initial": ["audit#9 sha256:cd34"]})
    assert run("DORA-T1", timeline, settings, "2027-01-01T00:00:00Z")[0].evidence == ["audit#7 sha256:ab12",
                                                                                       "audit#9 sha256:cd34"]
