"""Webhook fuzzing over real HTTP: whatever arrives, the server answers 4xx with a reason (never 5xx),
keeps running, and valid events sent in between are all stored."""

from __future__ import annotations

import itertools
import json

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.store import InboxEvent
from tests.test_server import server, signed, triggered_body  # noqa: F401 (fixture)

_DELIVERY = itertools.count()  # every delivery id unique across examples (hypothesis replays draws)
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                       max_leaves=12)


def mutate(body: bytes, data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["random", "json", "flip", "truncate", "huge", "event"]))
    if kind == "random":
        return data.draw(st.binary(max_size=512))
    if kind == "json":
        return json.dumps(data.draw(JSONISH)).encode()
    if kind == "flip" and body:
        index = data.draw(st.integers(0, len(body) - 1))
        return body[:index] + bytes([body[index] ^ 0xFF]) + body[index + 1:]
    if kind == "truncate":
        return body[: data.draw(st.integers(0, len(body)))]
    if kind == "huge":
        return b"{" + b" " * 5000 + b"}"
    event = json.loads(body)
    event["event"]["data"] = data.draw(JSONISH)
    return json.dumps(event).encode()


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_request_gets_a_5xx_and_valid_events_still_land(server, data) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    url, runtime = server
    original = triggered_body()
    body = mutate(original, data)
    how = data.draw(st.sampled_from(["signed", "unsigned", "wrong", "replayed", "garbage-header"]))
    headers = {"Content-Type": data.draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))}
    if how == "signed":
        headers.update(signed(body, webhook_id=f"fuzz-{next(_DELIVERY)}"))
    elif how == "wrong":
        headers.update(signed(body + b" ", webhook_id="fuzz-wrong"))
    elif how == "replayed":
        headers.update(signed(original, webhook_id="fuzz-replay"))  # a valid signature of another body
    elif how == "garbage-header":
        headers["X-PagerDuty-Signature"] = data.draw(st.text(max_size=80).filter(lambda t: "\n" not in t and "\r" not in t))
    try:
        response = requests.post(f"{url}/webhooks/pagerduty", data=body, headers=headers, timeout=10)
    except (requests.exceptions.InvalidHeader, UnicodeEncodeError, ValueError):
        return  # the client itself refused to send such a header: nothing reached the server
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        if response.headers.get("content-type", "").startswith("application/json"):
            assert response.json()["error"]  # our answer: the reason, in words
        else:  # refused by the HTTP layer itself (e.g. a control character in a header): still a reason
            assert response.status_code == 400 and response.text.strip()
    # A valid event sent right after is stored, whatever came before it.
    before = runtime.store.count(InboxEvent)
    good = signed(original, webhook_id=f"good-{next(_DELIVERY)}")
    assert requests.post(f"{url}/webhooks/pagerduty", data=original, headers=good, timeout=10).status_code == 202
    assert runtime.store.count(InboxEvent) == before + 1
