"""The deadline clock reads only major incidents' timelines, and every one of them.

The clock runs every minute for the daemon's whole life; bench/throughput.py showed that reading every
stored timeline each time grew the daemon's memory with its history. These tests pin that the SQL
pre-filter never drops a major incident, however its timeline came to be major.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.deadline_clock import major_timelines
from bridge.store import Store
from compliance.store import IncidentTimeline, save_timeline
from compliance.timeline import Timeline

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_only_and_all_major_timelines_come_back_in_id_order(store: Store) -> None:
    with store.transaction() as session:
        for timeline in (Timeline(id="pagerduty:P3", opened_at=AT, classified_major_at=AT),
                         Timeline(id="pagerduty:P1", opened_at=AT, major=True),
                         Timeline(id="pagerduty:P2", opened_at=AT, state="resolved", title="major outage?"),
                         Timeline(id="pagerduty:P4", opened_at=AT, major=False),
                         Timeline(id="pagerduty:P5", opened_at=AT)):
            save_timeline(session, timeline)

    assert [timeline.id for timeline in major_timelines(store)] == ["pagerduty:P1", "pagerduty:P3"]


def test_a_timeline_stored_with_every_key_or_spaced_json_is_still_judged_by_the_model(store: Store) -> None:
    with store.transaction() as session:
        session.add(IncidentTimeline(incident_id="pagerduty:P6", timeline=Timeline(id="pagerduty:P6", major=True)
                                     .model_dump_json(indent=2)))
        session.add(IncidentTimeline(incident_id="pagerduty:P7", timeline=Timeline(id="pagerduty:P7")
                                     .model_dump_json()))  # "major": null present, not major

    assert [timeline.id for timeline in major_timelines(store)] == ["pagerduty:P6"]
