"""RTS 2025/301 Art. 5(4)/(5) weekend and holiday shifts, and the one-month rule, on German calendars."""

from __future__ import annotations

from compliance_helpers import at

from compliance.calendar import add_calendar_month, adjust, fmt_local, zone_of

BERLIN = zone_of("DE")


def test_a_limit_on_a_working_day_is_not_moved() -> None:
    result = adjust(at("2026-03-13T22:59:00Z"), member_state="DE", stage="initial")  # Friday 23:59 CET
    assert not result.shifted and result.due == at("2026-03-13T22:59:00Z") and result.note == ""


def test_a_limit_on_saturday_moves_to_monday_noon_local_time() -> None:
    result = adjust(at("2026-03-14T00:30:00Z"), member_state="DE", stage="initial")  # Saturday 01:30 CET
    assert result.shifted
    assert fmt_local(result.due, BERLIN) == "2026-03-16 12:00 CET"
    assert "Saturday" in result.note


def test_christmas_day_and_boxing_day_saturday_move_to_monday_28th() -> None:
    for limit in ("2026-12-25T00:00:00Z", "2026-12-26T10:00:00Z"):  # Fri 25th (holiday), Sat 26th (holiday)
        result = adjust(at(limit), member_state="DE", stage="intermediate")
        assert fmt_local(result.due, BERLIN) == "2026-12-28 12:00 CET", limit
    assert "Christmas Day (public holiday in DE)" in adjust(at("2026-12-25T00:00:00Z"), member_state="DE",
                                                           stage="initial").note


def test_easter_monday_pushes_past_the_long_weekend() -> None:
    result = adjust(at("2026-04-03T08:00:00Z"), member_state="DE", stage="final")  # Good Friday
    assert fmt_local(result.due, BERLIN) == "2026-04-07 12:00 CEST"  # Sat, Sun, Easter Monday skipped


def test_regional_holiday_only_with_a_subdivision() -> None:
    epiphany = at("2026-01-06T10:00:00Z")  # Tuesday, a holiday in Bavaria only
    assert not adjust(epiphany, member_state="DE", stage="initial").shifted
    assert adjust(epiphany, member_state="DE", subdivision="BY", stage="initial").shifted


def test_credit_institutions_get_no_shift_for_initial_and_intermediate_but_do_for_final() -> None:
    saturday = at("2026-03-14T09:00:00Z")
    for stage in ("initial", "intermediate"):
        result = adjust(saturday, member_state="DE", stage=stage, entity_type="credit_institution")
        assert not result.shifted and result.excluded and result.due == saturday
        assert "Art. 5(5)" in result.note
    final = adjust(saturday, member_state="DE", stage="final", entity_type="credit_institution")
    assert final.shifted and fmt_local(final.due, BERLIN) == "2026-03-16 12:00 CET"


def test_ccp_trading_venue_nis2_and_ca_exclusions() -> None:
    saturday = at("2026-03-14T09:00:00Z")
    for kwargs in ({"entity_type": "central_counterparty"}, {"entity_type": "trading_venue"},
                   {"entity_type": "payment_institution", "nis2": "essential"},
                   {"entity_type": "payment_institution", "nis2": "important"},
                   {"entity_type": "investment_firm", "ca_excluded": True}):
        assert adjust(saturday, member_state="DE", stage="initial", **kwargs).excluded, kwargs
    assert adjust(saturday, member_state="DE", stage="initial", entity_type="payment_institution").shifted


def test_other_member_states_use_their_own_calendar_and_zone() -> None:
    # 14 July (Bastille Day) 2026 is a Tuesday: a holiday in France, a working day in Germany.
    assert adjust(at("2026-07-14T08:00:00Z"), member_state="FR", stage="final").shifted
    assert not adjust(at("2026-07-14T08:00:00Z"), member_state="DE", stage="final").shifted
    helsinki = adjust(at("2026-03-14T08:00:00Z"), member_state="FI", stage="final")
    assert fmt_local(helsinki.due, zone_of("FI")) == "2026-03-16 12:00 EET"


def test_one_month_same_date_end_of_day() -> None:
    assert fmt_local(add_calendar_month(at("2026-03-11T09:00:00Z"), zone=BERLIN), BERLIN) == "2026-04-11 23:59 CEST"
    assert fmt_local(add_calendar_month(at("2026-12-15T09:00:00Z"), zone=BERLIN), BERLIN) == "2027-01-15 23:59 CET"


def test_one_month_from_a_month_end_is_the_last_day_of_a_shorter_month() -> None:
    assert fmt_local(add_calendar_month(at("2026-01-31T09:00:00Z"), zone=BERLIN), BERLIN) == "2026-02-28 23:59 CET"
    assert fmt_local(add_calendar_month(at("2028-01-31T09:00:00Z"), zone=BERLIN), BERLIN) == "2028-02-29 23:59 CET"
    assert fmt_local(add_calendar_month(at("2026-03-31T09:00:00Z"), zone=BERLIN), BERLIN) == "2026-04-30 23:59 CEST"


def test_one_month_counts_the_local_date_not_the_utc_date() -> None:
    # 31 Jan 23:30 UTC is already 1 Feb in Berlin: one month later is 1 March, not 28 February.
    assert fmt_local(add_calendar_month(at("2026-01-31T23:30:00Z"), zone=BERLIN), BERLIN) == "2026-03-01 23:59 CET"


def test_same_time_rule_keeps_the_time_of_day() -> None:
    end = add_calendar_month(at("2026-01-31T09:00:00Z"), zone=BERLIN, rule="same_time")
    assert fmt_local(end, BERLIN) == "2026-02-28 10:00 CET"
