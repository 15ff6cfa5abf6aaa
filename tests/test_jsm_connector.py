"""JsmConnector against recorded Jira Cloud answers (`responses`): what goes on the wire, what comes back.

Fixtures in tests/fixtures/jsm are shaped as api-facts §3 describes Jira Cloud: v2 string bodies,
``2025-03-14T09:02:15.204+0000`` dates, ``jsdPublic`` on comments, ``{"errorMessages", "errors"}`` errors,
``/search/jql`` pages with ``nextPageToken``/``isLast``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.errors import AuthError, NotFoundError, PermanentError, TransientError, WebhookError
from bridge.http import build_session
from connectors.jsm.connector import JsmConnector
from connectors.jsm.normalise import correlation_label, normalise_poll_change, normalise_ticket

FIXTURES = Path(__file__).parent / "fixtures" / "jsm"
SITE = "https://acme.atlassian.net"
API = f"{SITE}/rest/api/2"
TOKEN = "ATATT3xFfGF0-s3cret-api-token"
NOW = datetime(2025, 3, 14, 10, 0, 0, tzinfo=timezone.utc)
TRANSITIONS = {"In Progress": "Start progress", "Resolved": "Resolve", "Reopened": "Reopen"}
FIELDS = [{"id": "summary", "clauseNames": ["summary"]}, {"id": "comment", "clauseNames": ["comment"]}]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def params(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query, keep_blank_values=True)


def sent(call: Any) -> Any:
    return json.loads(call.request.body)


def calls(site: responses.RequestsMock, method: str, path: str) -> list[Any]:
    return [c for c in site.calls if c.request.method == method and urlsplit(c.request.url).path == path]


@pytest.fixture
def site() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{API}/serverInfo", json=fixture("serverinfo.json"))
        mock.get(f"{API}/field", json=FIELDS)
        mock.get(f"{API}/myself", json=fixture("myself.json"))
        yield mock


def connector(**settings: Any) -> JsmConnector:
    return JsmConnector("jsm", {"url": SITE + "/", "email": "bridge@example.com", "api_token": TOKEN,
                                "project": "ops", "transitions": TRANSITIONS, **settings},
                        session=build_session(attempts=1))


# -- pure normalisers --------------------------------------------------------------------------------
def test_issue_becomes_flat_ticket_without_the_bridge_marker_labels() -> None:
    ticket = normalise_ticket(fixture("issue.json"), connection="jsm", site_url=SITE)
    assert (ticket.id, ticket.number, ticket.url) == ("OPS-1", "OPS-1", f"{SITE}/browse/OPS-1")
    assert ticket.fields["status"] == ticket.fields["state"] == "In Progress"
    assert ticket.fields["status_category"] == "indeterminate" and ticket.fields["priority"] == "High"
    assert ticket.fields["labels"] == "payments" and ticket.fields["components"] == "Payments"
    assert ticket.fields["customfield_10001"] == "Q1" and ticket.fields["assignee"] == ""
    assert ticket.updated_by == "agent@example.com"  # the last comment is newer than the last transition


def test_polled_issue_carries_internal_and_public_comments_apart() -> None:
    change = normalise_poll_change(fixture("issue.json"), connection="jsm", site_url=SITE)
    assert change.event_id == f"poll:OPS-1:{fixture('issue.json')['fields']['updated']}" and change.via == "poll"
    assert [(e.kind, e.public, e.author) for e in change.entries] == [
        ("work_note", False, "bridge@example.com"), ("comment", True, "agent@example.com")]


def test_correlation_label_has_no_spaces() -> None:
    assert correlation_label("pagerduty: Q1 \"x\"") == "itsm-bridge-pagerduty:_Q1_x_"


# -- writes ------------------------------------------------------------------------------------------
def test_create_stamps_property_and_labels_and_adds_the_note_as_internal_comment(site: Any) -> None:
    site.post(f"{API}/issue", json=fixture("created.json"), status=201)
    site.post(f"{API}/issue/OPS-1/comment", json=fixture("comments.json")["comments"][0], status=201)
    ref = connector(request_type="10").create(
        {"summary": "Checkout latency", "priority": "High", "labels": "payments", "components": "Payments,Network",
         "assignee": "5b10abc", "customfield_10001": "Q1", "work_notes": "Opened [itsm-bridge:1]"},
        correlation_id="pagerduty:Q1")
    assert (ref.id, ref.url) == ("OPS-1", f"{SITE}/browse/OPS-1")
    body = sent(calls(site, "POST", "/rest/api/2/issue")[0])
    assert body["fields"]["project"] == {"key": "OPS"} and body["fields"]["issuetype"] == {"name": "Incident"}
    assert body["fields"]["labels"] == ["payments", "itsm-bridge", "itsm-bridge-pagerduty:Q1"]
    assert body["fields"]["priority"] == {"name": "High"} and body["fields"]["assignee"] == {"accountId": "5b10abc"}
    assert body["fields"]["components"] == [{"name": "Payments"}, {"name": "Network"}]
    assert body["fields"]["customfield_10010"] == "10" and "work_notes" not in body["fields"]
    assert body["properties"] == [{"key": "itsm-bridge", "value": {"correlation_id": "pagerduty:Q1"}}]
    note = sent(calls(site, "POST", "/rest/api/2/issue/OPS-1/comment")[0])
    assert note == {"body": "Opened [itsm-bridge:1]",
                    "properties": [{"key": "sd.public.comment", "value": {"internal": True}}]}


def test_unknown_priority_is_permanent_and_names_the_value(site: Any) -> None:
    site.post(f"{API}/issue", json=fixture("error_priority.json"), status=400)
    with pytest.raises(PermanentError) as caught:
        connector().create({"summary": "x", "priority": "Urgent"}, correlation_id="pagerduty:Q1")
    assert "priority 'Urgent'" in str(caught.value) and caught.value.status == 400


def test_status_moves_by_transition_name_with_resolution_and_no_field_edit(site: Any) -> None:
    site.get(f"{API}/issue/OPS-1/transitions", json=fixture("transitions.json"))
    site.post(f"{API}/issue/OPS-1/transitions", status=204)
    connector(resolution="Won't Do").update("OPS-1", {"status": "Resolved"})
    assert params(calls(site, "GET", "/rest/api/2/issue/OPS-1/transitions")[0])["expand"] == ["transitions.fields"]
    assert sent(calls(site, "POST", "/rest/api/2/issue/OPS-1/transitions")[0]) == {
        "transition": {"id": "761"}, "fields": {"resolution": {"name": "Won't Do"}}}
    assert not calls(site, "PUT", "/rest/api/2/issue/OPS-1")


def test_move_to_the_status_it_already_has_is_a_no_op_and_an_impossible_one_names_the_options(site: Any) -> None:
    site.get(f"{API}/issue/OPS-1/transitions", json={"transitions": []})
    site.get(f"{API}/issue/OPS-1", json={"key": "OPS-1", "fields": {"status": {"name": "Resolved"}}})
    connector().update("OPS-1", {"status": "Resolved"})
    assert not calls(site, "POST", "/rest/api/2/issue/OPS-1/transitions")
    with pytest.raises(PermanentError, match="cannot move OPS-1 from 'Resolved' to 'In Progress'.*Start progress"):
        connector().update("OPS-1", {"status": "In Progress"})


def test_field_edit_is_one_put_keeping_marker_labels_and_comments_go_separately(site: Any) -> None:
    site.get(f"{API}/issue/OPS-1", json=fixture("issue.json"))
    site.put(f"{API}/issue/OPS-1", status=204)
    site.post(f"{API}/issue/OPS-1/comment", json=fixture("comments.json")["comments"][1], status=201)
    connector().update("ops-1", {"summary": "New", "labels": "p1", "comments": "Customer update"})
    puts = calls(site, "PUT", "/rest/api/2/issue/OPS-1")
    assert len(puts) == 1
    assert sent(puts[0]) == {"fields": {"summary": "New",
                                        "labels": ["p1", "itsm-bridge", "itsm-bridge-pagerduty_Q1"]}}
    assert sent(calls(site, "POST", "/rest/api/2/issue/OPS-1/comment")[0]) == {"body": "Customer update"}


def test_has_note_reads_all_comment_pages(site: Any) -> None:
    first = {"startAt": 0, "maxResults": 1, "total": 2, "comments": fixture("comments.json")["comments"][:1]}
    second = {"startAt": 1, "maxResults": 1, "total": 2, "comments": fixture("comments.json")["comments"][1:]}
    site.get(f"{API}/issue/OPS-1/comment", json=first)
    site.get(f"{API}/issue/OPS-1/comment", json=second)
    assert connector().has_note("OPS-1", "looking into")
    assert [params(c)["startAt"] for c in calls(site, "GET", "/rest/api/2/issue/OPS-1/comment")] == [["0"], ["1"]]


# -- reads -------------------------------------------------------------------------------------------
def test_poll_pages_with_next_page_token_in_the_users_time_zone(site: Any) -> None:
    site.replace(responses.GET, f"{API}/myself", json={**fixture("myself.json"), "timeZone": "Europe/Berlin"})
    site.get(f"{API}/search/jql", json=fixture("search_page1.json"))
    site.get(f"{API}/search/jql", json=fixture("search_page2.json"))
    result = connector(poll_overlap_seconds=0).poll("2025-03-14T09:02:00.000+0000", now=NOW)
    searches = calls(site, "GET", "/rest/api/2/search/jql")
    first, second = params(searches[0]), params(searches[1])
    assert first["jql"] == ['project = "OPS" AND updated >= "2025-03-14 10:02" AND (labels = itsm-bridge) '
                            "ORDER BY updated ASC"]
    assert first["expand"] == ["changelog"] and "nextPageToken" not in first
    assert second["nextPageToken"] == [fixture("search_page1.json")["nextPageToken"]]
    assert [c.record_id for c in result.changes] == ["OPS-1", "OPS-2"]
    assert result.cursor == fixture("search_page2.json")["issues"][0]["fields"]["updated"]


def test_find_searches_property_or_label_then_probes_past_the_index(site: Any) -> None:
    site.get(f"{API}/search/jql", json={"issues": [], "isLast": True})
    site.get(f"{API}/search/jql", json={"issues": [{"id": "10001", "key": "OPS-1"}], "isLast": True})
    site.get(f"{API}/issue/OPS-2", json={"key": "OPS-2", "fields": {"labels": []},
                                        "properties": {"itsm-bridge": {"correlation_id": "pagerduty:Q1"}}})
    assert connector().find("pagerduty:Q1").id == "OPS-2"
    jql = params(calls(site, "GET", "/rest/api/2/search/jql")[0])["jql"][0]
    assert jql == ('project = "OPS" AND (issue.property[itsm-bridge].correlation_id = "pagerduty:Q1" OR '
                   'labels = "itsm-bridge-pagerduty:Q1") ORDER BY created ASC')


@pytest.mark.parametrize("status, error", [(429, TransientError), (503, TransientError), (401, AuthError),
                                           (404, NotFoundError), (400, PermanentError)])
def test_failures_are_typed_by_status(site: Any, status: int, error: type[Exception]) -> None:
    site.get(f"{API}/issue/OPS-9", json={"errorMessages": ["nope"], "errors": {}}, status=status,
             headers={"Retry-After": "7"} if status == 429 else {})
    with pytest.raises(error) as caught:
        connector().get("OPS-9")
    assert caught.value.status == status and "read issue OPS-9" in str(caught.value)
    if status == 429:
        assert caught.value.retry_after == 7.0


def test_the_api_token_never_reaches_errors_or_logs(site: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    site.get(f"{API}/issue/OPS-9", json=fixture("error_unauthenticated.json"), status=401)
    site.post(f"{API}/issue", json=fixture("created.json"), status=201)
    jsm = connector()
    with pytest.raises(AuthError) as caught:
        jsm.get("OPS-9")
    jsm.create({"summary": "x"}, correlation_id="c")
    basic = base64.b64encode(f"bridge@example.com:{TOKEN}".encode()).decode()
    for text in (str(caught.value), repr(caught.value), caplog.text, repr(jsm.check())):
        assert TOKEN not in text and basic not in text
    assert caught.value.__cause__ is None  # jira's error (with request details) is not chained


# -- webhooks ----------------------------------------------------------------------------------------
def test_webhook_signature_is_checked_in_constant_time_and_unsigned_is_refused_by_default() -> None:
    body = json.dumps(fixture("webhook_issue_updated.json")).encode()
    good = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    jsm = connector(webhook_secret="hook-secret")
    jsm.verify_webhook(body, {"X-Hub-Signature": good}, now=NOW)
    for headers in ({"X-Hub-Signature": good.replace("sha256=", "sha1=")}, {"X-Hub-Signature": "sha256=00"}, {}):
        with pytest.raises(WebhookError) as caught:
            jsm.verify_webhook(body, headers, now=NOW)
        assert caught.value.status == 401 and "hook-secret" not in str(caught.value)
    with pytest.raises(WebhookError, match="no webhook_secret"):
        connector().verify_webhook(body, {}, now=NOW)
    connector(allow_unsigned_webhooks=True).verify_webhook(body, {}, now=NOW)


def test_issue_and_comment_webhooks_become_changes() -> None:
    jsm = connector()
    [updated] = jsm.parse_webhook(json.dumps(fixture("webhook_issue_updated.json")).encode(),
                                  {"X-Atlassian-Webhook-Identifier": "wh-1"})
    assert (updated.event_id, updated.event_type, updated.record_id) == ("wh-1", "ticket.updated", "OPS-1")
    assert updated.ticket.fields["status"] == "In Progress" and updated.entries == ()
    assert updated.actor == "agent@example.com"
    [commented] = jsm.parse_webhook(json.dumps(fixture("webhook_comment_created.json")).encode(), {})
    assert commented.event_id == "comment_created:OPS-1:1741943010000" and commented.ticket is not None
    assert [(e.kind, e.text) for e in commented.entries] == [("comment", "We are looking into it")]


@pytest.mark.parametrize("payload, field", [
    ({"webhookEvent": "jira:issue_updated"}, "issue"),
    ({"webhookEvent": "jira:issue_updated", "issue": {"fields": {}}}, "issue.key"),
    ({"webhookEvent": "comment_created", "issue": {"key": "OPS-1", "fields": {"updated": "2025-03-14T09:00:00.000+0000"}}},
     "comment"),
    ({"issue": {}}, "webhookEvent"),
])
def test_malformed_webhooks_are_refused_naming_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(WebhookError, match=f"'{field}'") as caught:
        connector().parse_webhook(json.dumps(payload).encode(), {})
    assert caught.value.status == 400
