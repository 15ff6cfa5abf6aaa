"""The canonical model survives the inbox: to_dict/from_dict round-trips every kind of change."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from bridge.model import Change, Incident, Ticket, TimelineEntry, format_time, parse_time

AWARE = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(timezone.utc))
TEXT = st.text(max_size=40)

incidents = st.builds(
    Incident, source=st.just("pagerduty"), id=TEXT, title=TEXT,
    status=st.sampled_from(["triggered", "acknowledged", "resolved"]), created_at=AWARE, updated_at=AWARE,
    number=st.none() | TEXT, description=TEXT, urgency=st.none() | st.sampled_from(["high", "low"]),
    priority=st.none() | st.sampled_from(["P1", "P2", "P5"]), service=st.none() | TEXT,
    assignees=st.lists(TEXT, max_size=3).map(tuple), escalation_level=st.none() | st.integers(0, 9),
    url=st.none() | TEXT, resolved_at=st.none() | AWARE,
    raw=st.dictionaries(st.text(max_size=5), st.integers() | TEXT, max_size=3),
)
entries = st.builds(TimelineEntry, id=TEXT, at=AWARE, kind=st.sampled_from(["note", "status", "comment"]),
                    text=TEXT, author=st.none() | TEXT, public=st.booleans())
tickets = st.builds(Ticket, connection=st.just("servicenow"), id=TEXT, number=TEXT, url=TEXT,
                    fields=st.dictionaries(st.text(max_size=8), TEXT, max_size=4), updated_at=AWARE,
                    updated_by=st.none() | TEXT)


@given(incident=st.none() | incidents, ticket=st.none() | tickets, found=st.lists(entries, max_size=3),
       occurred=AWARE, via=st.sampled_from(["webhook", "poll"]))
def test_change_round_trips_through_json(incident, ticket, found, occurred, via) -> None:  # type: ignore[no-untyped-def]
    change = Change(connection="pagerduty", event_id="e-1", event_type="incident.triggered", record_id="P1",
                    occurred_at=occurred, incident=incident, ticket=ticket, entries=tuple(found), via=via)
    assert Change.from_dict(json.loads(json.dumps(change.to_dict()))) == change


def test_times_are_normalised_to_utc() -> None:
    assert parse_time("2026-03-14T10:00:00+01:00") == datetime(2026, 3, 14, 9, 0, tzinfo=timezone.utc)
    assert parse_time("2026-03-14T09:00:00Z") == datetime(2026, 3, 14, 9, 0, tzinfo=timezone.utc)
    assert parse_time("2026-03-14 09:00:00") == datetime(2026, 3, 14, 9, 0, tzinfo=timezone.utc)
    assert parse_time(None) is None and parse_time("") is None
    later = datetime(2026, 3, 14, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(later) == "2026-03-14T07:00:00Z"


def test_tracked_attributes_are_what_makes_a_change_news() -> None:
    base = Incident(source="pagerduty", id="P1", title="t", status="triggered",
                    created_at=parse_time("2026-01-01T00:00:00Z"), updated_at=parse_time("2026-01-01T00:00:00Z"))
    assert base.with_attributes(status="resolved").tracked()["status"] == "resolved"
    assert base.with_attributes(updated_at=parse_time("2026-02-01T00:00:00Z")).tracked() == base.tracked()
