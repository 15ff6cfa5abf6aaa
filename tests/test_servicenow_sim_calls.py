"""The ServiceNow simulator's request counter: what a change cost the desk, by kind of call.

bench/throughput.py divides these counts by the events it sent, so they must name every request the
connector makes (finds, creates, PATCHes, reads, journal look-ups) and count refused ones too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from bridge.http import build_session
from connectors.servicenow.connector import ServiceNowConnector
from connectors.servicenow.simulator import ServiceNowSimulator, call_kind

USER, PASSWORD = "itsm.bridge", "sim-sn-password"


@pytest.fixture
def sim() -> Iterator[ServiceNowSimulator]:
    simulator = ServiceNowSimulator().start()
    yield simulator
    simulator.stop()


@pytest.fixture
def connector(sim: ServiceNowSimulator) -> ServiceNowConnector:
    return ServiceNowConnector("servicenow", {"instance_url": sim.url, "username": USER, "password": PASSWORD},
                               session=build_session(attempts=1))


def test_kinds_name_the_record_and_the_first_query_field() -> None:
    assert call_kind("patch", "/api/now/table/incident/0123abcd") == "PATCH /api/now/table/incident/{sys_id}"
    assert call_kind("GET", "/api/now/table/incident", "correlation_id=pd:P1^ORDERBYnumber") == \
        "GET /api/now/table/incident?correlation_id"
    assert call_kind("GET", "/api/now/table/sys_journal_field", "element_id=abc^valueLIKEx") == \
        "GET /api/now/table/sys_journal_field?element_id"
    assert call_kind("GET", "/api/now/table/incident") == "GET /api/now/table/incident"
    assert call_kind("POST", "/api/now/table/incident", "ignored=1") == "POST /api/now/table/incident"


def test_a_create_costs_one_find_and_one_post_and_an_update_one_patch(sim: ServiceNowSimulator,
                                                                      connector: ServiceNowConnector) -> None:
    assert connector.find("pagerduty:P1") is None
    ref = connector.create({"short_description": "Checkout down"}, correlation_id="pagerduty:P1")
    connector.update(ref.id, {"state": "2", "work_notes": "Acknowledged in PagerDuty"})
    connector.get(ref.id)

    assert sim.calls.snapshot() == {
        "GET /api/now/table/incident?correlation_id": 1,
        "POST /api/now/table/incident": 1,
        "PATCH /api/now/table/incident/{sys_id}": 1,
        "GET /api/now/table/incident/{sys_id}": 1,
    }
    assert sim.calls.total("POST", "PATCH") == 2
    assert sim.calls.total() == 4


def test_a_poll_is_told_apart_from_a_find(sim: ServiceNowSimulator, connector: ServiceNowConnector) -> None:
    connector.create({"short_description": "Search slow"}, correlation_id="pagerduty:P2")
    sim.calls.reset()
    result = connector.poll(None, now=datetime.now(UTC))

    assert len(result.changes) == 1
    assert sim.calls.snapshot() == {"GET /api/now/table/incident?sys_updated_on": 1,
                                    "GET /api/now/table/sys_journal_field?sys_created_on": 1}


def test_refused_requests_count_too_and_reset_starts_over(sim: ServiceNowSimulator) -> None:
    answer = requests.get(f"{sim.url}/api/now/table/incident", auth=(USER, "wrong"), timeout=5)
    assert answer.status_code == 401
    assert sim.calls.snapshot() == {"GET /api/now/table/incident": 1}

    sim.calls.reset()
    assert sim.calls.snapshot() == {} and sim.calls.total() == 0
