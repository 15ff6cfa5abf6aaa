"""The webhook server over real HTTP: what a sender sees for good, bad, repeated and oversized requests."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bridge.config import load_config
from bridge.runtime import Runtime
from bridge.server import create_app
from bridge.store import DeadLetter, InboxEvent
from connectors.simulator import ServerThread
from tests.conftest import database_url, fresh_store
from tests.e2e.conftest import SECRET, write_config

FIXTURES = Path(__file__).parent / "fixtures" / "pagerduty"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    fresh_store(tmp_path).dispose()
    path = write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", port=0, db_url=database_url(tmp_path),
                        extra="")
    path.write_text(path.read_text().replace("[server]\n", "[server]\nmax_body_bytes = 4096\n"))
    runtime = Runtime.build(load_config(path))
    runtime.store.create_schema()
    thread = ServerThread(create_app(runtime)).start()
    try:
        yield thread.url, runtime
    finally:
        thread.stop()
        runtime.store.dispose()


def signed(body: bytes, *, secret: str = SECRET, webhook_id: str = "wh-1") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-PagerDuty-Signature": f"v1={digest}", "X-Webhook-Id": webhook_id}


def triggered_body() -> bytes:
    candidates = sorted(FIXTURES.glob("*triggered*.json"))
    assert candidates, "a PagerDuty incident.triggered webhook fixture is expected in tests/fixtures/pagerduty"
    return candidates[0].read_bytes()


def test_signed_webhook_is_stored_before_202_and_a_redelivery_is_200(server) -> None:  # type: ignore[no-untyped-def]
    url, runtime = server
    body = triggered_body()
    first = requests.post(f"{url}/webhooks/pagerduty", data=body, headers=signed(body), timeout=5)
    assert first.status_code == 202 and first.json() == {"accepted": 1, "duplicates": 0}
    assert runtime.store.count(InboxEvent) == 1  # committed by the time the sender saw 202
    again = requests.post(f"{url}/webhooks/pagerduty", data=body, headers=signed(body), timeout=5)
    assert again.status_code == 200 and again.json() == {"accepted": 0, "duplicates": 1}
    assert runtime.store.count(InboxEvent) == 1


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json"},
    {"X-PagerDuty-Signature": "v1=" + "0" * 64},
    {"X-PagerDuty-Signature": "v1=deadbeef, v0=abc"},
])
def test_unsigned_or_wrongly_signed_webhooks_are_refused_401(server, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    url, runtime = server
    response = requests.post(f"{url}/webhooks/pagerduty", data=triggered_body(), headers=headers, timeout=5)
    assert response.status_code == 401
    assert "signature" in response.json()["error"].lower()
    assert SECRET not in response.text
    assert runtime.store.count(InboxEvent) == 0


def test_body_signed_with_another_secret_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    url, _runtime = server
    body = triggered_body()
    response = requests.post(f"{url}/webhooks/pagerduty", data=body, headers=signed(body, secret="other"), timeout=5)
    assert response.status_code == 401


def test_signed_but_malformed_body_is_400_with_reason_and_kept(server) -> None:  # type: ignore[no-untyped-def]
    url, runtime = server
    body = json.dumps({"event": {"event_type": "incident.triggered"}}).encode()
    response = requests.post(f"{url}/webhooks/pagerduty", data=body, headers=signed(body), timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]
    assert runtime.store.count(DeadLetter, kind="webhook") == 1
    not_json = b"{not json"
    response = requests.post(f"{url}/webhooks/pagerduty", data=not_json, headers=signed(not_json), timeout=5)
    assert response.status_code == 400
    assert runtime.store.count(DeadLetter, kind="webhook") == 2


def test_oversized_body_is_413_and_unknown_connection_404(server) -> None:  # type: ignore[no-untyped-def]
    url, _runtime = server
    big = b"{" + b" " * 5000 + b"}"
    assert requests.post(f"{url}/webhooks/pagerduty", data=big, headers=signed(big), timeout=5).status_code == 413
    body = triggered_body()
    assert requests.post(f"{url}/webhooks/servicenow", data=body, headers=signed(body), timeout=5).status_code == 404
    assert requests.post(f"{url}/webhooks/nope", data=body, headers=signed(body), timeout=5).status_code == 404


def test_health_and_metrics_report_the_queues(server) -> None:  # type: ignore[no-untyped-def]
    url, _runtime = server
    body = triggered_body()
    requests.post(f"{url}/webhooks/pagerduty", data=body, headers=signed(body), timeout=5)
    health = requests.get(f"{url}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["inbox_pending"] == 1
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    assert "itsm_bridge_inbox_pending 1.0" in metrics
    assert 'itsm_bridge_events_received_total{connection="pagerduty",via="webhook"} 1.0' in metrics
