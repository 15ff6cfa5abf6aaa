"""The Jira simulator over real HTTP: answers shaped as Jira Cloud answers, rules as Jira applies them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from connectors.jsm.sim_state import BadRequest
from connectors.jsm.simulator import AGENT, AGENT_TOKEN, JsmSimulator
from connectors.simulator import Faults

AUTH = ("bridge@example.com", "sim-jira-token")
START = datetime(2025, 3, 14, 9, 0, 0, tzinfo=timezone.utc)
ISSUE = {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "Checkout latency",
         "description": "p99 above 2s", "labels": ["itsm-bridge", "payments"]}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> Iterator[JsmSimulator]:
    simulator = JsmSimulator(clock=clock).start()
    yield simulator
    simulator.stop()


def api(sim: JsmSimulator, method: str, path: str, *, version: int = 2, auth: Any = AUTH, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{sim.url}/rest/api/{version}/{path}", auth=auth, timeout=5, **kwargs)


def create(sim: JsmSimulator, **fields: Any) -> str:
    response = api(sim, "POST", "issue", json={"fields": {**ISSUE, **fields}})
    assert response.status_code == 201, response.text
    return response.json()["key"]


def search(sim: JsmSimulator, jql: str, **params: Any) -> list[str]:
    response = api(sim, "GET", "search/jql", params={"jql": jql, "fields": "summary", **params})
    assert response.status_code == 200, response.text
    return [issue["key"] for issue in response.json()["issues"]]


def test_basic_auth_is_required_and_answered_with_jiras_error_body(sim: JsmSimulator) -> None:
    refused = api(sim, "GET", "myself", auth=("bridge@example.com", "wrong"))
    assert refused.status_code == 401 and refused.json()["errors"] == {} and refused.json()["errorMessages"]
    assert api(sim, "GET", "myself", auth=(AGENT, AGENT_TOKEN)).json()["emailAddress"] == AGENT
    info = api(sim, "GET", "serverInfo").json()
    assert info["deploymentType"] == "Cloud" and info["versionNumbers"][0] >= 1000


def test_create_read_and_bad_values(sim: JsmSimulator) -> None:
    created = api(sim, "POST", "issue", json={"fields": {**ISSUE, "priority": {"name": "High"}}})
    assert created.status_code == 201 and created.json()["key"] == "OPS-1" and created.json()["id"]
    issue = api(sim, "GET", "issue/OPS-1").json()["fields"]
    assert issue["status"]["name"] == "To Do" and issue["status"]["statusCategory"]["key"] == "new"
    assert issue["priority"]["name"] == "High" and issue["created"].endswith("+0000")
    assert issue["created"] == "2025-03-14T09:00:00.000+0000"
    bad = api(sim, "POST", "issue", json={"fields": {**ISSUE, "priority": {"name": "Urgent"}}})
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"priority"} and bad.json()["errorMessages"] == []
    missing = api(sim, "GET", "issue/OPS-99")
    assert missing.status_code == 404 and missing.json()["errorMessages"]
    status_edit = api(sim, "PUT", "issue/OPS-1", json={"fields": {"status": {"name": "Done"}}})
    assert status_edit.status_code == 400 and "status" in status_edit.json()["errors"]


def test_workflow_moves_only_through_available_transitions(sim: JsmSimulator, clock: Clock) -> None:
    key = create(sim)
    names = {t["name"]: t["id"] for t in api(sim, "GET", f"issue/{key}/transitions").json()["transitions"]}
    assert set(names) == {"Start progress", "Resolve"}
    before = api(sim, "GET", f"issue/{key}").json()["fields"]["updated"]
    clock.advance(5)
    assert api(sim, "POST", f"issue/{key}/transitions", json={"transition": {"id": names["Start progress"]}}).status_code == 204
    no_resolution = api(sim, "POST", f"issue/{key}/transitions", json={"transition": {"id": names["Resolve"]}})
    assert no_resolution.status_code == 400 and "resolution" in no_resolution.json()["errors"]
    wrong = api(sim, "POST", f"issue/{key}/transitions", json={"transition": {"id": "11"}})
    assert wrong.status_code == 400 and "not valid" in wrong.json()["errorMessages"][0]
    assert api(sim, "POST", f"issue/{key}/transitions", json={"transition": {"id": names["Resolve"]},
                                                             "fields": {"resolution": {"name": "Done"}}}).status_code == 204
    issue = api(sim, "GET", f"issue/{key}", params={"expand": "changelog"}).json()
    assert issue["fields"]["status"]["statusCategory"]["key"] == "done" and issue["fields"]["resolution"]["name"] == "Done"
    assert issue["fields"]["updated"] > before
    assert [item["toString"] for h in issue["changelog"]["histories"] for item in h["items"]] == [
        "In Progress", "Resolved", "Done"]
    sim.desk_transition(key, "Reopen")
    assert sim.issue(key)["fields"]["resolution"] is None and sim.issue(key)["fields"]["status"]["name"] == "To Do"
    with pytest.raises(BadRequest):
        sim.desk_transition(key, "Close")


def test_comments_are_public_unless_internal_and_move_updated(sim: JsmSimulator, clock: Clock) -> None:
    key = create(sim)
    clock.advance(60)
    internal = api(sim, "POST", f"issue/{key}/comment", json={
        "body": "bridge note", "properties": [{"key": "sd.public.comment", "value": {"internal": True}}]})
    assert internal.status_code == 201 and internal.json()["jsdPublic"] is False
    sim.desk_comment(key, "Customer informed")
    page = api(sim, "GET", f"issue/{key}/comment").json()
    assert [(c["body"], c["jsdPublic"]) for c in page["comments"]] == [("bridge note", False), ("Customer informed", True)]
    assert page["comments"][1]["author"]["emailAddress"] == AGENT
    assert sim.issue(key)["fields"]["updated"] == page["comments"][1]["created"]


def test_entity_properties_and_remote_links(sim: JsmSimulator) -> None:
    key = create(sim)
    assert api(sim, "GET", f"issue/{key}/properties/itsm-bridge").status_code == 404
    assert api(sim, "PUT", f"issue/{key}/properties/itsm-bridge", json={"correlation_id": "pd:Q1"}).status_code == 201
    assert api(sim, "PUT", f"issue/{key}/properties/itsm-bridge", json={"correlation_id": "pd:Q1"}).status_code == 200
    assert api(sim, "GET", f"issue/{key}/properties/itsm-bridge").json() == {"key": "itsm-bridge",
                                                                             "value": {"correlation_id": "pd:Q1"}}
    assert [i["key"] for i in sim.find_by_correlation("pd:Q1")] == [key]
    link = {"globalId": "pd:Q1", "object": {"url": "https://pd.example/incidents/Q1", "title": "PD Q1"}}
    assert api(sim, "POST", f"issue/{key}/remotelink", json=link).status_code == 201
    assert api(sim, "POST", f"issue/{key}/remotelink", json=link).status_code == 200
    assert len(sim.remote_links(key)) == 1
    assert api(sim, "POST", f"issue/{key}/remotelink", json={"object": {"url": "x"}}).status_code == 400


def test_jql_subset_and_token_pagination(sim: JsmSimulator, clock: Clock) -> None:
    keys = [create(sim, labels=["itsm-bridge", f"n{i}"]) for i in range(3)]
    clock.advance(120)
    create(sim, labels=["other"])
    sim.desk_comment(keys[0], "touch")  # moves OPS-1 to the end by updated
    assert search(sim, "project = OPS AND labels = itsm-bridge ORDER BY updated ASC") == ["OPS-2", "OPS-3", "OPS-1"]
    assert search(sim, 'labels in (n1, "n2") OR key = OPS-4 ORDER BY key DESC') == ["OPS-4", "OPS-3", "OPS-2"]
    assert search(sim, 'updated >= "2025-03-14 09:01" AND NOT (labels = other)') == ["OPS-1"]
    first = api(sim, "GET", "search/jql", params={"jql": "project = OPS ORDER BY key ASC", "maxResults": 3}).json()
    assert [i["key"] for i in first["issues"]] == ["OPS-1", "OPS-2", "OPS-3"] and first["isLast"] is False
    second = api(sim, "POST", "search/jql", json={"jql": "project = OPS ORDER BY key ASC", "maxResults": 3,
                                                  "nextPageToken": first["nextPageToken"]}).json()
    assert [i["key"] for i in second["issues"]] == ["OPS-4"] and second["isLast"] and "nextPageToken" not in second
    bad = api(sim, "GET", "search/jql", params={"jql": "project = OPS AND summary ~ x"})
    assert bad.status_code == 400 and bad.json()["errorMessages"]
    assert api(sim, "GET", "search", params={"jql": "project = OPS"}).status_code == 410


def test_search_lag_hides_young_issues_from_jql_only(sim: JsmSimulator, clock: Clock) -> None:
    sim.search_lag_seconds = 30
    key = create(sim)
    api(sim, "PUT", f"issue/{key}/properties/itsm-bridge", json={"correlation_id": "pd:Q7"})
    assert search(sim, 'issue.property[itsm-bridge].correlation_id = "pd:Q7"') == []
    assert api(sim, "GET", f"issue/{key}").status_code == 200 and sim.find_by_correlation("pd:Q7")
    clock.advance(31)
    assert search(sim, 'issue.property[itsm-bridge].correlation_id = "pd:Q7"') == [key]


def test_v3_renders_bodies_as_adf(sim: JsmSimulator) -> None:
    key = create(sim)
    sim.desk_comment(key, "hello")
    issue = api(sim, "GET", f"issue/{key}", version=3).json()["fields"]
    assert issue["description"]["type"] == "doc" and issue["comment"]["comments"][0]["body"]["type"] == "doc"


def test_rate_limits_carry_retry_after_and_jira_headers(clock: Clock) -> None:
    sim = JsmSimulator(clock=clock, faults=Faults(rate_limit_rate=1.0, retry_after=3, seed=1)).start()
    try:
        limited = api(sim, "GET", "myself")
    finally:
        sim.stop()
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert limited.headers["X-RateLimit-Remaining"] == "0" and limited.headers["RateLimit-Reason"] == "jira-burst-based"
    assert "X-RateLimit-Reset" in limited.headers and limited.json()["errorMessages"]
