"""The ServiceNow simulator over real HTTP: does it answer the way api-facts §2 says the Table API does?

The connector's tests trust the simulator, so its fidelity is tested on its own: the query language,
pagination headers, auth, value shapes, display values, journal, data policy and rate-limit headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from connectors.servicenow.query import parse_query, select
from connectors.servicenow.sim_state import DataPolicyError
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import Faults

USER, PASSWORD = "itsm.bridge", "sim-sn-password"
JSON = {"Accept": "application/json", "Content-Type": "application/json"}
DESK_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


class FrozenClock:
    """A clock tests move by hand, to pin second-resolution timestamps."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 14, 9, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def sim(clock: FrozenClock) -> Iterator[ServiceNowSimulator]:
    simulator = ServiceNowSimulator(clock=clock).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def api(sim: ServiceNowSimulator) -> requests.Session:
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    session.headers.update(JSON)
    return session


def table(sim: ServiceNowSimulator, name: str = "incident") -> str:
    return f"{sim.url}/api/now/table/{name}"


def create(api: requests.Session, sim: ServiceNowSimulator, **fields: Any) -> dict[str, Any]:
    response = api.post(table(sim), json=fields)
    assert response.status_code == 201, response.text
    return response.json()["result"]


# -- the query language (pure) ---------------------------------------------------------------------------
ROWS = [
    {"number": "INC1", "state": "1", "sys_mod_count": "9", "correlation_display": "itsm-bridge",
     "short_description": "Disk full"},
    {"number": "INC2", "state": "2", "sys_mod_count": "10", "correlation_display": "",
     "short_description": "disk slow"},
    {"number": "INC3", "state": "6", "sys_mod_count": "2", "correlation_display": "itsm-bridge-2",
     "short_description": "CPU"},
]


@pytest.mark.parametrize(("query", "numbers"), [
    ("state=1^ORstate=6", ["INC1", "INC3"]),
    ("correlation_displaySTARTSWITHitsm-bridge^state!=6", ["INC1"]),
    ("short_descriptionLIKEdisk", ["INC2"]),  # case-sensitive
    ("stateIN2,6^ORDERBYDESCnumber", ["INC3", "INC2"]),
    ("sys_mod_count>=9^ORDERBYsys_mod_count", ["INC1", "INC2"]),  # numbers compare as numbers
    ("sys_mod_count<3", ["INC3"]),
    ("nosuchfield=1^state=2", ["INC2"]),  # an unknown field is ignored, as on a real instance
    ("garbage^state>1^ORDERBYDESCsys_mod_count", ["INC2", "INC3"]),
])
def test_encoded_query_subset(query: str, numbers: list[str]) -> None:
    known = {"number", "state", "sys_mod_count", "correlation_display", "short_description"}
    assert [row["number"] for row in select(parse_query(query, known), ROWS)] == numbers


def test_dropped_terms_widen_the_match_like_the_real_api() -> None:
    assert len(select(parse_query("correlation_ID=x", {"correlation_id"}), ROWS)) == 3


# -- auth and request rules ----------------------------------------------------------------------------
def test_every_api_path_needs_basic_auth(sim: ServiceNowSimulator) -> None:
    for auth in (None, (USER, "wrong"), ("nobody", PASSWORD)):
        response = requests.get(table(sim), auth=auth, timeout=5)
        assert response.status_code == 401
        assert response.json() == {"error": {"message": "User Not Authenticated",
                                             "detail": "Required to provide Auth information"}, "status": "failure"}
    assert requests.get(table(sim), auth=("jane.doe", "sim-desk-password"), timeout=5).status_code == 200


def test_writes_need_json_content_type(api: requests.Session, sim: ServiceNowSimulator) -> None:
    response = api.post(table(sim), data="short_description=x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 400 and response.json()["status"] == "failure"
    assert sim.records() == []


def test_unknown_record_is_404_and_no_match_is_an_empty_list(api: requests.Session, sim: ServiceNowSimulator) -> None:
    missing = api.get(f"{table(sim)}/{'0' * 32}")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"message": "No Record found",
                                       "detail": "Record doesn't exist or ACL restricts the record retrieval"}
    empty = api.get(table(sim), params={"sysparm_query": "number=INC9"})
    assert (empty.status_code, empty.json()) == (200, {"result": []})
    assert api.get(table(sim, "incidnet")).status_code == 400


# -- records -------------------------------------------------------------------------------------------
def test_a_new_incident_has_the_instance_defaults(api: requests.Session, sim: ServiceNowSimulator) -> None:
    record = create(api, sim, short_description="Disk full", unknown_field="dropped")
    assert re.fullmatch(r"[0-9a-f]{32}", record["sys_id"]) and record["number"] == "INC0010001"
    assert (record["state"], record["impact"], record["urgency"], record["priority"]) == ("1", "3", "3", "4")  # Low/Low: 4 Low
    assert record["sys_created_by"] == USER and record["sys_mod_count"] == "0" and record["active"] == "true"
    assert DESK_TIME.fullmatch(record["sys_created_on"]) and record["opened_at"] == "2025-03-14 09:00:00"
    opened_by = record["opened_by"]
    assert set(opened_by) == {"link", "value"} and opened_by["link"].endswith(f"/sys_user/{opened_by['value']}")
    assert "unknown_field" not in record
    assert create(api, sim, short_description="second")["number"] == "INC0010002"


@pytest.mark.parametrize(("impact", "urgency", "priority"), [
    ("1", "1", "1"), ("1", "2", "2"), ("2", "1", "2"), ("1", "3", "3"), ("2", "2", "3"), ("3", "1", "3"),
    ("2", "3", "4"), ("3", "2", "4"), ("3", "3", "4"),
])
def test_priority_follows_the_default_matrix(api: requests.Session, sim: ServiceNowSimulator,
                                             impact: str, urgency: str, priority: str) -> None:
    assert create(api, sim, impact=impact, urgency=urgency, priority="1")["priority"] == priority


def test_every_update_counts_and_same_second_writes_keep_order(api: requests.Session, sim: ServiceNowSimulator,
                                                               clock: FrozenClock) -> None:
    sys_id = create(api, sim, short_description="x")["sys_id"]
    first = api.patch(f"{table(sim)}/{sys_id}", json={"state": "2"}).json()["result"]
    second = api.put(f"{table(sim)}/{sys_id}", json={"work_notes": "looking"}).json()["result"]
    assert (first["sys_mod_count"], second["sys_mod_count"]) == ("1", "2")
    assert first["sys_updated_on"] == second["sys_updated_on"] == "2025-03-14 09:00:00"
    unchanged = api.patch(f"{table(sim)}/{sys_id}", json={"state": "2"}).json()["result"]
    assert unchanged["sys_mod_count"] == "2"  # nothing changed: no update
    clock.now = clock.now.replace(minute=5)
    third = sim.desk_update(sys_id, {"urgency": "1"})
    assert (third["sys_mod_count"], third["sys_updated_on"], third["sys_updated_by"]) == (
        "3", "2025-03-14 09:05:00", "jane.doe")
    assert api.delete(f"{table(sim)}/{sys_id}").status_code == 204 and sim.records() == []


def test_resolving_needs_close_code_and_notes(api: requests.Session, sim: ServiceNowSimulator) -> None:
    sys_id = create(api, sim, short_description="x")["sys_id"]
    refused = api.patch(f"{table(sim)}/{sys_id}", json={"state": "6"})
    assert refused.status_code == 403
    assert refused.json() == {"error": {"message": "Operation Failed", "detail": "Data Policy Exception: \n "
                                        "The following fields are mandatory: Resolution code, Resolution notes"},
                              "status": "failure"}
    assert sim.record(sys_id)["state"] == "1" and sim.record(sys_id)["sys_mod_count"] == "0"
    with pytest.raises(DataPolicyError):
        sim.desk_update(sys_id, {"state": "6", "close_code": "Duplicate"})
    resolved = api.patch(f"{table(sim)}/{sys_id}", json={"state": "6", "close_code": "Solution provided",
                                                         "close_notes": "Restarted"}).json()["result"]
    assert resolved["resolved_at"] == "2025-03-14 09:00:00" and resolved["resolved_by"]["value"]
    closed = sim.desk_update(sys_id, {"state": "7"})
    assert (closed["active"], closed["closed_at"]) == ("false", "2025-03-14 09:00:00")


# -- journal -------------------------------------------------------------------------------------------
def test_journal_fields_append_rows_and_read_back_empty(api: requests.Session, sim: ServiceNowSimulator,
                                                        clock: FrozenClock) -> None:
    sys_id = create(api, sim, short_description="x", work_notes="first note")["sys_id"]
    clock.now = clock.now.replace(minute=1)
    sim.desk_comment(sys_id, "Customers affected")
    record = api.get(f"{table(sim)}/{sys_id}").json()["result"]
    assert (record["work_notes"], record["comments"], record["sys_mod_count"]) == ("", "", "1")
    rows = api.get(table(sim, "sys_journal_field"), params={
        "sysparm_query": f"element_id={sys_id}^name=incident^elementINwork_notes,comments^ORDERBYDESCsys_created_on",
        "sysparm_fields": "element,value,sys_created_on,sys_created_by"}).json()["result"]
    assert rows == [
        {"element": "comments", "value": "Customers affected", "sys_created_on": "2025-03-14 09:01:00",
         "sys_created_by": "jane.doe"},
        {"element": "work_notes", "value": "first note", "sys_created_on": "2025-03-14 09:00:00",
         "sys_created_by": USER},
    ]
    assert [row["value"] for row in sim.journal(sys_id)] == ["first note", "Customers affected"]
    assert api.post(table(sim, "sys_journal_field"), json={"value": "forged"}).status_code == 403


def test_display_values_show_labels_names_and_journal_blocks(api: requests.Session, sim: ServiceNowSimulator,
                                                             clock: FrozenClock) -> None:
    sys_id = create(api, sim, impact="1", urgency="1", state="2", assignment_group="Payments",
                    work_notes="one")["sys_id"]
    clock.now = clock.now.replace(second=30)
    sim.desk_comment(sys_id, "two", work_note=True)
    shown = api.get(f"{table(sim)}/{sys_id}", params={"sysparm_display_value": "true"}).json()["result"]
    assert (shown["state"], shown["priority"], shown["impact"]) == ("In Progress", "1 - Critical", "1 - High")
    assert shown["opened_by"]["display_value"] == "Itsm Bridge" and "link" in shown["opened_by"]
    assert shown["work_notes"] == ("2025-03-14 09:00:30 - Jane Doe (Work notes)\ntwo\n\n"
                                   "2025-03-14 09:00:00 - Itsm Bridge (Work notes)\none\n\n")
    plain = api.get(f"{table(sim)}/{sys_id}", params={"sysparm_display_value": "true",
                                                      "sysparm_exclude_reference_link": "true"}).json()["result"]
    assert plain["opened_by"] == "Itsm Bridge"
    both = api.get(f"{table(sim)}/{sys_id}", params={"sysparm_display_value": "all",
                                                     "sysparm_fields": "state,opened_by"}).json()["result"]
    assert set(both) == {"state", "opened_by"}
    assert both["state"] == {"display_value": "In Progress", "value": "2"}
    assert set(both["opened_by"]) == {"display_value", "value", "link"}
    raw = api.get(f"{table(sim)}/{sys_id}", params={"sysparm_exclude_reference_link": "true"}).json()["result"]
    assert raw["opened_by"] == sim.record(sys_id)["opened_by"]
    assert raw["assignment_group"] == "Payments"  # without sysparm_input_display_value the name stays as given


def test_input_display_value_resolves_names(api: requests.Session, sim: ServiceNowSimulator) -> None:
    created = api.post(table(sim), params={"sysparm_input_display_value": "true"},
                       json={"assignment_group": "Payments", "state": "In Progress"}).json()["result"]
    assert created["state"] == "2"
    shown = api.get(f"{table(sim)}/{created['sys_id']}", params={"sysparm_display_value": "true"}).json()["result"]
    assert shown["assignment_group"]["display_value"] == "Payments"


def test_display_value_all_on_lists_and_write_answers(api: requests.Session, sim: ServiceNowSimulator) -> None:
    sys_id = create(api, sim, assignment_group="Service Desk", state="2", correlation_id="pd:7")["sys_id"]
    network = next(group for group, name in sim.state.refs["sys_user_group"].items() if name == "Network")
    patched = api.patch(f"{table(sim)}/{sys_id}", params={"sysparm_display_value": "all"},
                        json={"assignment_group": network}).json()["result"]
    assert patched["assignment_group"] == {"display_value": "Network", "value": network,
                                           "link": f"{sim.url}/api/now/table/sys_user_group/{network}"}
    assert patched["state"] == {"display_value": "In Progress", "value": "2"}
    assert patched["sys_id"] == {"display_value": sys_id, "value": sys_id}
    listed = api.get(table(sim), params={"sysparm_display_value": "all", "sysparm_query": "correlation_id=pd:7"})
    (row,) = listed.json()["result"]
    assert row["assignment_group"]["display_value"] == "Network" and row["work_notes"]["value"] == ""
    assert sim.record(sys_id)["assignment_group"] == network  # stored raw, whatever the reads show
    unknown = api.patch(f"{table(sim)}/{sys_id}", params={"sysparm_display_value": "all"},
                        json={"assignment_group": "Nowhere"}).json()["result"]
    assert unknown["assignment_group"]["display_value"] == ""  # a reference to no record has no name


# -- lists ---------------------------------------------------------------------------------------------
def test_lists_page_with_link_headers_and_total_count(api: requests.Session, sim: ServiceNowSimulator) -> None:
    for index in range(5):
        create(api, sim, short_description=f"n{index}", correlation_id="pd:1" if index != 2 else "pd:2")
    url: str | None = table(sim)
    params: dict[str, str] | None = {"sysparm_query": "correlation_id=pd:1^ORDERBYDESCnumber", "sysparm_limit": "2"}
    seen: list[str] = []
    while url:
        response = api.get(url, params=params)
        assert response.headers["X-Total-Count"] == "4"
        seen += [row["number"] for row in response.json()["result"]]
        links = response.links
        assert {"first", "last"} <= set(links)
        url, params = links.get("next", {}).get("url"), None
    assert seen == ["INC0010005", "INC0010004", "INC0010002", "INC0010001"]
    last = api.get(table(sim), params={"sysparm_limit": "2", "sysparm_offset": "4"})
    assert "next" not in last.links and "prev" in last.links and len(last.json()["result"]) == 1


# -- faults --------------------------------------------------------------------------------------------
def test_rate_limited_answers_carry_the_rate_limit_headers() -> None:
    sim = ServiceNowSimulator(faults=Faults(rate_limit_rate=1.0, retry_after=3, seed=1)).start()
    try:
        response = requests.get(table(sim), auth=(USER, PASSWORD), timeout=5)
    finally:
        sim.stop()
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert all(name in response.headers for name in ("X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Rule"))
    assert int(response.headers["X-RateLimit-Reset"]) > 0
    assert response.json()["error"]["message"] == "Rate limit exceeded"
    assert sim.faults.injected["429"] == 1
