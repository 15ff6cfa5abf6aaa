"""Deadline arithmetic of RTS 2025/301 Art. 5: weekend and bank-holiday shifts, and "one month".

Art. 5(4): where a time limit falls on a weekend or a bank holiday in the entity's Member State, the
report is due by **12:00 local time of the next working day**. Art. 5(5): that shift does not apply to
initial notifications and intermediate reports of credit institutions, central counterparties, operators
of trading venues and NIS2 essential/important entities (final reports still shift); Art. 5(6): the
competent authority may exclude other entities (``entity.weekend_rule_excluded``).

"Weekend", "bank holiday" and "noon" are read in the Member State's own time (a capital-city zone per
state, `vocab.MEMBER_STATE_ZONES`), with public holidays from the ``holidays`` package (national, or
national plus a region when ``entity.subdivision`` is set).

"One calendar month" is not defined by the RTS [!]. We follow Reg. (EEC, Euratom) 1182/71 Art. 3(2)(c):
the period ends at the end of the day with the same date in the next month, or of the last day of that
month when it has no such date (31 Jan -> 28/29 Feb). ``month_rule = "same_time"`` keeps the time of day
instead of running to the end of the day, for authorities that read it that way.
"""

from __future__ import annotations

import calendar as _calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import holidays

from compliance import vocab

Stage = Literal["initial", "intermediate", "final", "reclassified"]


@lru_cache(maxsize=64)
def _holidays(member_state: str, subdivision: str | None, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(member_state, subdiv=subdivision, years=year)


def zone_of(member_state: str) -> ZoneInfo:
    return ZoneInfo(vocab.MEMBER_STATE_ZONES[member_state])


def holiday_name(day: date, member_state: str, subdivision: str | None = None) -> str | None:
    """The public holiday on `day`, or None."""
    return _holidays(member_state, subdivision, day.year).get(day)


def is_working_day(day: date, member_state: str, subdivision: str | None = None) -> bool:
    return day.weekday() < 5 and holiday_name(day, member_state, subdivision) is None


def why_not_working(day: date, member_state: str, subdivision: str | None = None) -> str:
    """'Saturday' or 'Christmas Day (public holiday in DE)' -- words for messages."""
    name = holiday_name(day, member_state, subdivision)
    if name:
        return f"{name} (public holiday in {member_state})"
    return day.strftime("%A")


def next_working_day(day: date, member_state: str, subdivision: str | None = None) -> date:
    day += timedelta(days=1)
    while not is_working_day(day, member_state, subdivision):
        day += timedelta(days=1)
    return day


def shift_excluded(*, entity_type: str | None, nis2: str, ca_excluded: bool, stage: str) -> bool:
    """True when RTS 2025/301 Art. 5(5)/(6) keeps the raw limit (initial and intermediate reports only)."""
    if stage not in ("initial", "intermediate"):
        return False
    return entity_type in vocab.WEEKEND_RULE_EXCLUDED_TYPES or nis2 in ("essential", "important") or ca_excluded


@dataclass(frozen=True)
class Adjusted:
    """A limit after Art. 5(4): `due` is what binds; `note` explains any shift (or why none applied)."""

    limit: datetime
    due: datetime
    shifted: bool
    excluded: bool
    note: str


def adjust(limit: datetime, *, member_state: str, stage: str, entity_type: str | None = None,
           nis2: str = "none", ca_excluded: bool = False, subdivision: str | None = None) -> Adjusted:
    """Apply the next-working-day-noon rule to a raw limit (aware datetime); result in UTC."""
    zone = zone_of(member_state)
    local = limit.astimezone(zone)
    if is_working_day(local.date(), member_state, subdivision):
        return Adjusted(limit, limit.astimezone(timezone.utc), False, False, "")
    reason = why_not_working(local.date(), member_state, subdivision)
    if shift_excluded(entity_type=entity_type, nis2=nis2, ca_excluded=ca_excluded, stage=stage):
        who = entity_type.replace("_", " ") if entity_type in vocab.WEEKEND_RULE_EXCLUDED_TYPES else (
            f"NIS2 {nis2} entity" if nis2 != "none" else "entity excluded by its authority")
        return Adjusted(limit, limit.astimezone(timezone.utc), False, True,
                        f"the limit falls on {reason}, but a {who} gets no weekend/holiday extension for "
                        f"{stage} reports (RTS 2025/301 Art. 5(5))")
    day = next_working_day(local.date(), member_state, subdivision)
    due = datetime.combine(day, time(12, 0), tzinfo=zone)
    return Adjusted(limit, due.astimezone(timezone.utc), True, False,
                    f"the limit fell on {reason}, so it moved to noon of the next working day "
                    f"(RTS 2025/301 Art. 5(4))")


def add_calendar_month(moment: datetime, *, zone: ZoneInfo | None = None,
                       rule: Literal["end_of_day", "same_time"] = "end_of_day") -> datetime:
    """One calendar month after `moment`, counted in `zone` (see the module docstring); result in UTC."""
    zone = zone or ZoneInfo("UTC")
    local = moment.astimezone(zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    day = min(local.day, _calendar.monthrange(year, month)[1])
    if rule == "same_time":
        end = datetime.combine(date(year, month, day), local.timetz().replace(tzinfo=None), tzinfo=zone)
    else:
        end = datetime.combine(date(year, month, day), time(23, 59, 59), tzinfo=zone)
    return end.astimezone(timezone.utc)


def fmt_local(moment: datetime | None, zone: ZoneInfo) -> str:
    """'2026-03-14 13:00 CET': the Member State's wall clock, as an officer reads deadlines."""
    if moment is None:
        return "-"
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "")


def human_delta(delta: timedelta) -> str:
    """'42 minutes', '3 h 5 min', '2 days 4 h' (sign dropped; callers say early or late)."""
    minutes = int(abs(delta).total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    if minutes == 0:
        seconds = int(abs(delta).total_seconds())
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{mins} minute{'s' if mins != 1 else ''}"


def add_months(moment: datetime, months: int) -> datetime:
    """Same wall time `months` later, clamped to the month's last day (for rolling windows, e.g. 6 months)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, _calendar.monthrange(year, month)[1]))
