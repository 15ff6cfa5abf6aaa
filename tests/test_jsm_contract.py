"""Contract tests against Jira Cloud's published platform OpenAPI description (../shared/specs).

Three things must fit the operation's schema: what the simulator answers, what the connector sends
(captured on the wire while it talks to the simulator through the real `jira` client), and the recorded
fixtures the unit tests use. Exchanges are validated as if sent to the spec's server.

Known gaps, handled here and nowhere else:
- The document describes API v3 only; the connector speaks v2 (what pycontribs/jira uses), whose paths
  and JSON are the same apart from string (v2) versus ADF (v3) bodies, which the v3 schemas leave open
  (``Comment.body``, ``IssueBean.fields``). So ``/rest/api/2/...`` is checked against ``/rest/api/3/...``.
- The document predates ``/search/jql`` (2022-07): its pages are checked by hand (``issues``, ``isLast``,
  ``nextPageToken``) and each issue against the document's ``IssueBean`` schema.
- Error answers of operations that declare no error schema are checked against ``ErrorCollection``.
- Jira writes times as ``2025-03-14T09:02:15.204+0000`` (the document's own examples do), which is not
  RFC 3339 ``date-time``: every ``format: date-time`` is replaced by a pattern for exactly that form.
- ``ChangeDetails.from/to/fromString/toString`` are not marked nullable, yet Jira sends null for the side
  that has no value (a field set for the first time, a resolution cleared): patched to nullable.
- 204 answers (edit, transition) and property writes are declared with an open JSON body (``{}``);
  Jira sends none, so for them only "no body, and the document allows any" is checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.http import build_session
from connectors.jsm.connector import JsmConnector
from connectors.jsm.simulator import JsmSimulator

SPEC = Path(__file__).resolve().parents[2] / "shared" / "specs" / "jira-platform-openapi-v3.json"
FIXTURES = Path(__file__).parent / "fixtures" / "jsm"
SERVER = "https://your-domain.atlassian.net"
AUTH = ("bridge@example.com", "sim-jira-token")
JIRA_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{4}$"

pytestmark = pytest.mark.skipif(not SPEC.exists(), reason=f"Jira OpenAPI description not found at {SPEC}")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    spec = _jira_times(json.loads(SPEC.read_text(encoding="utf-8")))
    for prop in spec["components"]["schemas"]["ChangeDetails"]["properties"].values():
        prop["nullable"] = True
    return spec


def _jira_times(node: Any) -> Any:
    """The document with ``format: date-time`` replaced by Jira's actual time pattern (see module doc)."""
    if isinstance(node, dict):
        if node.get("format") == "date-time":
            node = {**{k: v for k, v in node.items() if k != "format"}, "pattern": JIRA_TIME}
        return {key: _jira_times(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_jira_times(item) for item in node]
    return node


@pytest.fixture(scope="module")
def api(document: dict[str, Any]) -> Any:
    openapi_core = pytest.importorskip("openapi_core")
    return openapi_core.OpenAPI.from_dict(document, config=openapi_core.Config(spec_validator_cls=None))


def schema_errors(document: dict[str, Any], name: str, value: Any) -> list[str]:
    """Every error of `value` against component schema `name` (references resolved in the document)."""
    from openapi_schema_validator import OAS30Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    registry = Registry().with_resource("urn:jira", Resource(contents=document, specification=DRAFT4))
    validator = OAS30Validator({"$ref": f"urn:jira#/components/schemas/{name}"}, registry=registry)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(value)]


def as_sent_to_jira(prepared: requests.PreparedRequest) -> requests.PreparedRequest:
    copy = prepared.copy()
    _scheme, _, rest = (prepared.url or "").partition("://")
    copy.url = SERVER + "/" + rest.partition("/")[2].replace("rest/api/2/", "rest/api/3/", 1)
    return copy


def check(api: Any, document: dict[str, Any], response: requests.Response) -> None:
    """Validate one exchange; the failure lists every schema error, not just the first."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    request = response.request
    what = f"{request.method} {request.path_url} -> {response.status_code}"
    if request.path_url.split("?")[0].endswith("/search/jql"):
        return check_search_page(document, response, what)
    sent = RequestsOpenAPIRequest(as_sent_to_jira(request))
    try:
        api.validate_request(sent)
        if response.status_code == 204:
            assert not response.content, f"{what}: a 204 answer has no body"
        elif response.status_code in (200, 201) and not response.content:
            assert _declares_body(api, sent, response.status_code, open_schema=True), f"{what}: body expected"
        elif response.status_code < 400 or _declares_body(api, sent, response.status_code):
            api.validate_response(sent, RequestsOpenAPIResponse(response))
    except Exception as exc:  # openapi-core's error tree: show the leaves
        cause = exc.__cause__ or exc
        details = [e.message for e in getattr(cause, "schema_errors", ())] or [str(cause)]
        pytest.fail(f"{what} does not match the OpenAPI description: {details}")
    if response.status_code >= 400:
        errors = schema_errors(document, "ErrorCollection", response.json())
        assert not errors, f"{what}: {errors}"


def _declares_body(api: Any, sent: Any, status: int, *, open_schema: bool = False) -> bool:
    """Whether the operation declares a body for `status` (with `open_schema`: one that is just ``{}``)."""
    path = sent.path.replace(SERVER, "")
    for template, item in api.spec["paths"].items():
        operation = item.get(sent.method.lower())
        if operation is not None and _path_matches(template, path):
            content = ((operation / "responses").get(str(status)) or {}).get("content")
            if not content:
                return False
            schema = (content.get("application/json") or {}).get("schema")
            return not open_schema or (schema is not None and not dict(schema.read_value()))
    return False


def _path_matches(template: str, path: str) -> bool:
    want, have = template.strip("/").split("/"), path.strip("/").split("/")
    return len(want) == len(have) and all(w.startswith("{") or w == h for w, h in zip(want, have))


def check_search_page(document: dict[str, Any], response: requests.Response, what: str) -> None:
    assert response.status_code == 200, what
    page = response.json()
    assert isinstance(page["issues"], list) and isinstance(page["isLast"], bool), what
    assert page["isLast"] == ("nextPageToken" not in page), what
    for issue in page["issues"]:
        errors = schema_errors(document, "IssueBean", issue)
        assert not errors, f"{what}: {errors}"


@pytest.fixture
def sim() -> Iterator[JsmSimulator]:
    simulator = JsmSimulator().start()
    yield simulator
    simulator.stop()


def test_simulator_answers_match_the_description(api: Any, document: dict[str, Any], sim: JsmSimulator) -> None:
    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{sim.url}/rest/api/2/{path}", auth=AUTH, timeout=5, **kwargs)

    fields = {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"}, "summary": "Checkout latency",
              "priority": {"name": "High"}, "labels": ["itsm-bridge"], "components": [{"name": "Payments"}]}
    exchanges = [call("GET", "serverInfo"), call("GET", "myself"), call("GET", "field"), call("GET", "priority"),
                 call("GET", "project/OPS"), call("POST", "issue", json={"fields": fields})]
    sim.desk_comment("OPS-1", "Looking", internal=True)
    sim.desk_transition("OPS-1", "Start progress")
    exchanges += [
        call("GET", "issue/OPS-1", params={"expand": "changelog"}),
        call("PUT", "issue/OPS-1", json={"fields": {"summary": "Checkout latency (EU)"}}),
        call("GET", "issue/OPS-1/transitions", params={"expand": "transitions.fields"}),
        call("POST", "issue/OPS-1/transitions", json={"transition": {"id": "761"},
                                                      "fields": {"resolution": {"name": "Done"}}}),
        call("POST", "issue/OPS-1/comment", json={"body": "Fixed"}), call("GET", "issue/OPS-1/comment"),
        call("PUT", "issue/OPS-1/properties/itsm-bridge", json={"correlation_id": "pd:Q1"}),
        call("GET", "issue/OPS-1/properties/itsm-bridge"),
        call("POST", "issue/OPS-1/remotelink", json={"globalId": "pd:Q1", "object": {"url": "https://x", "title": "Q1"}}),
        call("GET", "search/jql", params={"jql": "project = OPS", "fields": "*all", "expand": "changelog"}),
    ]
    errors = [call("GET", "issue/OPS-99"), call("POST", "issue", json={"fields": {**fields, "priority": {"name": "No"}}}),
              call("POST", "issue/OPS-1/transitions", json={"transition": {"id": "11"}})]
    assert [r.status_code for r in exchanges] == [200] * 5 + [201, 200, 204, 200, 204, 201, 200, 201, 200, 201, 200]
    assert [r.status_code for r in errors] == [404, 400, 400]
    for response in exchanges + errors:
        check(api, document, response)
    unauthorized = requests.get(f"{sim.url}/rest/api/2/myself", auth=("bridge@example.com", "x"), timeout=5)
    assert unauthorized.status_code == 401 and not schema_errors(document, "ErrorCollection", unauthorized.json())


def test_connector_requests_match_the_description(api: Any, document: dict[str, Any], sim: JsmSimulator) -> None:
    captured: list[requests.Response] = []
    session = build_session(attempts=1)
    session.hooks["response"].append(lambda response, *args, **kwargs: captured.append(response))
    jsm = JsmConnector("jsm", {"url": sim.url, "email": AUTH[0], "api_token": AUTH[1], "project": "OPS",
                               "transitions": {"In Progress": "Start progress", "Resolved": "Resolve"}},
                       session=session)
    assert jsm.check().ok and jsm.find("pagerduty:Q1") is None
    ref = jsm.create({"summary": "Checkout latency", "priority": "High", "components": "Payments",
                      "work_notes": "Opened [itsm-bridge:1]"}, correlation_id="pagerduty:Q1")
    jsm.update(ref.id, {"status": "In Progress", "labels": "payments", "comments": "On it"})
    jsm.update(ref.id, {"status": "Resolved"})
    jsm.add_remote_link(ref.id, "https://acme.pagerduty.com/incidents/Q1", "PagerDuty Q1")
    assert jsm.has_note(ref.id, "[itsm-bridge:1]") and jsm.get(ref.id).fields["status"] == "Resolved"
    assert jsm.poll(None, now=jsm.get(ref.id).updated_at).changes
    operations = {(r.request.method, r.request.path_url.split("?")[0].replace(ref.id, "{key}")) for r in captured}
    assert operations >= {("GET", "/rest/api/2/serverInfo"), ("POST", "/rest/api/2/issue"),
                          ("POST", "/rest/api/2/issue/{key}/comment"), ("PUT", "/rest/api/2/issue/{key}"),
                          ("GET", "/rest/api/2/issue/{key}/transitions"), ("POST", "/rest/api/2/issue/{key}/transitions"),
                          ("POST", "/rest/api/2/issue/{key}/remotelink"), ("GET", "/rest/api/2/search/jql"),
                          ("GET", "/rest/api/2/issue/{key}/comment"), ("GET", "/rest/api/2/myself")}
    for response in captured:
        if response.status_code != 404:  # the probe past the search index ends on a 404 by design
            check(api, document, response)


@pytest.mark.parametrize("fixture, schema", [
    ("issue.json", "IssueBean"), ("created.json", "CreatedIssue"), ("transitions.json", "Transitions"),
    ("comments.json", "PageOfComments"), ("myself.json", "User"), ("serverinfo.json", "ServerInformation"),
    ("error_priority.json", "ErrorCollection"), ("error_not_found.json", "ErrorCollection"),
    ("error_transition.json", "ErrorCollection"), ("error_unauthenticated.json", "ErrorCollection"),
])
def test_recorded_fixtures_match_the_description(document: dict[str, Any], fixture: str, schema: str) -> None:
    errors = schema_errors(document, schema, json.loads((FIXTURES / fixture).read_text()))
    assert not errors, errors


@pytest.mark.parametrize("fixture", ["search_page1.json", "search_page2.json"])
def test_recorded_search_pages_match_the_description(document: dict[str, Any], fixture: str) -> None:
    for issue in json.loads((FIXTURES / fixture).read_text())["issues"]:
        assert not schema_errors(document, "IssueBean", issue)
