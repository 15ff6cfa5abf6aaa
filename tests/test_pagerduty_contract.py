"""Contract tests against PagerDuty's published OpenAPI description (../shared/specs).

Three things must fit the operation's schema: what the simulator answers, what the connector sends
(captured on the wire while it talks to the simulator), and the recorded REST fixtures the unit tests
use. Requests are validated as if sent to the spec's server, https://api.pagerduty.com.

Known gaps in the published document, handled here and nowhere else:
- ``Incident.resolved_at`` and ``Incident.priority`` are not marked nullable, although the document's own
  description and example (``"resolved_at": null``) and the API return null for an open incident or one
  without priority: both are patched to nullable.
- ``PUT /incidents/{id}`` declares no 400, yet PagerDuty answers 400 with codes 1001/1002 (already
  resolved/acknowledged) and 2016 (no ``From``): such bodies are checked against the document's generic
  error schema instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.http import build_session
from bridge.model import format_time
from connectors.pagerduty.connector import PagerDutyConnector
from connectors.pagerduty.simulator import PagerDutySimulator

SPEC = Path(__file__).resolve().parents[2] / "shared" / "specs" / "pagerduty-rest-openapiv3.json"
FIXTURES = Path(__file__).parent / "fixtures" / "pagerduty"
SERVER = "https://api.pagerduty.com"
TOKEN = "contract-token"
READ = {"Authorization": f"Token token={TOKEN}", "Accept": "application/vnd.pagerduty+json;version=2",
        "Content-Type": "application/json"}
WRITE = {**READ, "From": "bridge@example.com"}

pytestmark = pytest.mark.skipif(not SPEC.exists(), reason=f"PagerDuty OpenAPI description not found at {SPEC}")


@pytest.fixture(scope="module")
def api() -> Any:
    openapi_core = pytest.importorskip("openapi_core")
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    props = spec["components"]["schemas"]["Incident"]["allOf"][1]["properties"]
    props["resolved_at"] = {**props["resolved_at"], "nullable": True}
    props["priority"] = {"anyOf": [props["priority"], {"type": "object", "nullable": True, "enum": [None]}]}
    return openapi_core.OpenAPI.from_dict(spec, config=openapi_core.Config(spec_validator_cls=None))


def _as_sent_to_pagerduty(prepared: requests.PreparedRequest) -> requests.PreparedRequest:
    copy = prepared.copy()
    _scheme, _, rest = (prepared.url or "").partition("://")
    copy.url = SERVER + "/" + rest.partition("/")[2]
    return copy


def _check_undeclared_error(response: requests.Response) -> None:
    from openapi_schema_validator import OAS30Validator

    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    schema = spec["components"]["responses"]["Conflict"]["content"]["application/json"]["schema"]
    errors = [e.message for e in OAS30Validator(schema).iter_errors(response.json())]
    assert not errors and isinstance(response.json()["error"]["code"], int), errors


def check(api: Any, response: requests.Response, *, request: bool = True) -> None:
    """Validate one exchange; the assertion message carries every schema error, not just the first."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    sent = RequestsOpenAPIRequest(_as_sent_to_pagerduty(response.request))
    what = f"{response.request.method} {response.request.path_url} -> {response.status_code}"
    try:
        if request:
            api.validate_request(sent)
        if response.status_code == 400 and response.request.method == "PUT":
            _check_undeclared_error(response)
        else:
            api.validate_response(sent, RequestsOpenAPIResponse(response))
    except Exception as exc:  # openapi-core's error tree: show the leaves
        cause = exc.__cause__ or exc
        details = [e.message for e in getattr(cause, "schema_errors", ())] or [str(cause)]
        pytest.fail(f"{what} does not match the OpenAPI description: {details}")


@pytest.fixture
def sim() -> Iterator[PagerDutySimulator]:
    sim = PagerDutySimulator(token=TOKEN).start()
    first = sim.trigger("Payments API", "Error rate above 5% on Payments API", user="alice")
    sim.acknowledge(first, user="alice")
    sim.add_note(first, "Rolled back the deploy", user="alice")
    sim.set_priority(first, "P1", user="alice")
    resolved = sim.trigger("Search", "Search health check failing", urgency="low", user="bob")
    sim.resolve(resolved, user="bob")
    sim.trigger("Identity", "Login failures", user="carol")
    yield sim
    sim.stop()


def test_simulator_answers_match_the_description(api: Any, sim: PagerDutySimulator) -> None:
    ids = [i["id"] for i in sim.incidents()]
    yesterday = format_time(datetime.now(timezone.utc) - timedelta(days=1))
    get = lambda path, **params: requests.get(f"{sim.url}{path}", headers=READ, params=params, timeout=5)  # noqa: E731
    exchanges = [
        get("/incidents"), get("/incidents", limit=1, offset=1, total="true"),
        requests.get(f"{sim.url}/incidents", headers=READ, timeout=5,
                     params=[("statuses[]", "triggered"), ("statuses[]", "resolved"), ("since", yesterday)]),
        *(get(f"/incidents/{i}") for i in ids), get(f"/incidents/{ids[0]}/notes"),
        get("/users", query="bridge"), get("/services"), get("/priorities"),
        requests.post(f"{sim.url}/incidents", headers=WRITE, timeout=5, json={"incident": {
            "type": "incident", "title": "Disk filling on Data Platform primary", "urgency": "low",
            "service": {"id": "PSVC005", "type": "service_reference"},
            "body": {"type": "incident_body", "details": "87%"}}}),
        requests.put(f"{sim.url}/incidents/{ids[2]}", headers=WRITE, timeout=5,
                     json={"incident": {"type": "incident_reference", "status": "acknowledged"}}),
        requests.post(f"{sim.url}/incidents/{ids[2]}/notes", headers=WRITE, timeout=5,
                      json={"note": {"content": "On it"}}),
    ]
    assert [r.status_code for r in exchanges] == [200] * (len(exchanges) - 3) + [201, 200, 200]
    create = exchanges[-3]
    for response in exchanges:
        # POST /incidents: the document's own request example fails its schema (references' id/type are
        # marked read-only, body.details is an object but the example sends text), so only the answer is
        # checked there. The connector never creates incidents.
        check(api, response, request=response is not create)


def test_simulator_errors_match_the_description(api: Any, sim: PagerDutySimulator) -> None:
    incident = sim.incidents()[1]["id"]
    already = requests.put(f"{sim.url}/incidents/{incident}", headers=WRITE, timeout=5,
                           json={"incident": {"type": "incident_reference", "status": "resolved"}})
    missing = requests.get(f"{sim.url}/incidents/QNOPE", headers=READ, timeout=5)
    too_deep = requests.get(f"{sim.url}/incidents", headers=READ, params={"offset": 9990, "limit": 20}, timeout=5)
    for response, status in ((already, 400), (missing, 404), (too_deep, 400)):
        assert response.status_code == status
        check(api, response)
    unauthorized = requests.get(f"{sim.url}/incidents", headers={**READ, "Authorization": "Token token=x"}, timeout=5)
    assert unauthorized.status_code == 401
    check(api, unauthorized, request=False)


def test_connector_requests_match_the_description(api: Any, sim: PagerDutySimulator) -> None:
    captured: list[requests.Response] = []
    session = build_session(attempts=1)
    session.hooks["response"].append(lambda response, *args, **kwargs: captured.append(response))
    pd = PagerDutyConnector("pagerduty", {"api_url": sim.url, "token": TOKEN, "webhook_secret": "s",
                                          "from_email": "bridge@example.com"}, session=session)
    result = pd.poll(None, now=datetime.now(timezone.utc))
    assert len(result.changes) == 3
    incident = result.changes[0].record_id
    pd.get_incident(incident)
    pd.add_note(incident, "Ticket INC0010001 opened [itsm-bridge:1]")
    assert pd.has_note(incident, "[itsm-bridge:1]")
    pd.transition(incident, "resolved")
    pd.transition(incident, "resolved")  # already resolved: a 400 the connector treats as done
    pd.transition(incident, "triggered")
    assert pd.check().ok
    operations = {(r.request.method, r.request.path_url.split("?")[0].replace(incident, "{id}")) for r in captured}
    assert operations >= {("GET", "/incidents"), ("GET", "/incidents/{id}"), ("GET", "/incidents/{id}/notes"),
                          ("POST", "/incidents/{id}/notes"), ("PUT", "/incidents/{id}"), ("GET", "/users")}
    for response in captured:
        check(api, response)


@pytest.mark.parametrize("fixture, method, path", [
    ("rest_incidents_page1.json", "GET", "/incidents"), ("rest_incidents_page2.json", "GET", "/incidents"),
    ("rest_incident.json", "GET", "/incidents/PGR0VU2"), ("rest_notes.json", "GET", "/incidents/PGR0VU2/notes"),
    ("rest_note_created.json", "POST", "/incidents/PGR0VU2/notes"), ("rest_users.json", "GET", "/users"),
    ("error_already_resolved.json", "PUT", "/incidents/PGR0VU2"),
])
def test_recorded_fixtures_match_the_description(api: Any, fixture: str, method: str, path: str) -> None:
    body = (FIXTURES / fixture).read_bytes()
    request = requests.Request(method, SERVER + path, headers=WRITE,
                               json={"note": {"content": "x"}} if method == "POST" else None).prepare()
    response = requests.Response()
    response.status_code = 400 if fixture.startswith("error") else 200
    response.headers["Content-Type"] = "application/json"
    response._content = body
    response.request = request
    check(api, response, request=False)
