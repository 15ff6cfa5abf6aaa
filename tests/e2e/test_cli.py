"""The commands as a user runs them: exit codes, what they print, what they leave behind."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sqlmodel import select

from bridge.cli import main
from bridge.daemon import sync_once
from bridge.demo_sources import source_names
from bridge.store import AuditEntry
from connectors.simulator import free_port
from tests.conftest import DATABASE_URL, wait_until
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pagerduty"
#: The demo always runs on a SQLite store of its own: the PostgreSQL run of the suite would repeat it.
demo_store_is_its_own = pytest.mark.skipif(bool(DATABASE_URL), reason="the demo always uses its own SQLite store: "
                                                                     "covered by the SQLite run")


@demo_store_is_its_own
def test_demo_converges_and_reports_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--incidents", "6", "--dir", str(tmp_path / "demo"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["incidents"] == 6 and summary["tickets"] == 12
    assert summary["desks"]["servicenow"]["tickets"] == 6 and summary["desks"]["jsm"]["tickets"] == 6
    assert summary["duplicates"] == 0 and summary["dead_letters"] == 0
    assert summary["converged"] is True and summary["audit_verified"] is True
    assert summary["bundle_verified"] is True and summary["compliance_timelines"] == 6
    assert summary["audit_entries"] > 6 * 3
    # What it leaves behind is usable with the other commands.
    verify = CliRunner().invoke(main, ["audit", "verify", "--config", summary["config"], "--json"])
    assert verify.exit_code == 0 and json.loads(verify.output)["entries"] == summary["audit_entries"]


@demo_store_is_its_own
@pytest.mark.parametrize("source", [name for name in source_names() if name != "pagerduty"])
def test_demo_runs_the_same_story_with_any_responder_tool_as_the_source(tmp_path: Path, source: str) -> None:
    result = CliRunner().invoke(main, ["demo", "--source", source, "--incidents", "4", "--seed", "3",
                                       "--dir", str(tmp_path / "demo"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["source"] == source and summary["incidents"] == 4 and summary["tickets"] == 8
    assert summary["converged"] is True and summary["duplicates"] == 0 and summary["audit_verified"] is True
    config = (tmp_path / "demo" / "config.toml").read_text()
    assert f'type = "{source}"' in config and f'preset = "{source}-servicenow"' in config


def test_preview_shows_fields_rules_and_the_work_note(world: World) -> None:
    payload = FIXTURES / "webhook_incident_triggered.json"
    result = CliRunner().invoke(main, ["mappings", "preview", "--config", str(world.config_path), "--route",
                                       "pagerduty-to-servicenow", "--payload", str(payload), "--json"])
    assert result.exit_code == 0, result.output
    preview = json.loads(result.output)
    fields = {row["field"]: row for row in preview["fields"]}
    incident = json.loads(payload.read_text())["event"]["data"]
    assert fields["short_description"]["value"].endswith(incident["title"][:40])
    assert fields["state"]["value"] == "1" and "map" in fields["state"]["rule"]
    assert preview["note"]
    unknown = CliRunner().invoke(main, ["mappings", "preview", "--config", str(world.config_path), "--route",
                                        "nope", "--payload", str(payload)])
    assert unknown.exit_code == 1 and "no route named 'nope'" in unknown.output


def test_audit_verify_names_the_first_altered_entry(world: World) -> None:
    world.pd.trigger("Search", "Audit me", user="alice")
    runtime = world.runtime()
    assert sync_once(runtime).ok
    with runtime.store.transaction() as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.seq == 3)).one()
        entry.subject = entry.subject + "x"
        session.add(entry)
    runtime.store.dispose()
    result = CliRunner().invoke(main, ["audit", "verify", "--config", str(world.config_path)])
    assert result.exit_code == 1
    assert "broken at entry 3" in result.output


def test_sync_once_exits_1_when_the_desk_refuses_and_status_says_why(world: World) -> None:
    world.pd.trigger("Identity", "Desk down", user="alice")
    world.sn.faults.configure(server_error_rate=1.0)
    result = CliRunner().invoke(main, ["sync", "--once", "--config", str(world.config_path), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["outbox_pending"] >= 1 or report["dead_letters"] >= 1
    status = CliRunner().invoke(main, ["status", "--config", str(world.config_path), "--json"])
    data = json.loads(status.output)
    assert data["retrying"] and "HTTP 5" in data["retrying"][0]["error"]


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def test_sandbox_serves_both_apis_with_the_given_credentials_and_signs_webhooks(tmp_path: Path) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    pd_port, sn_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sandbox", "--pagerduty-port", str(pd_port), "--servicenow-port",
         str(sn_port), "--jsm-port", "0", "--webhook-url", hook, "--user", "desk.api", "--password", "pw-123", "--token", "tok-456",
         "--webhook-secret", "whsec-789"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines: list[str] = []
        while not any(line.startswith("Ctrl-C") for line in lines):
            line = process.stdout.readline()  # type: ignore[union-attr]
            assert line, "".join(lines)
            lines.append(line)
        printed = "".join(lines)
        assert f"http://127.0.0.1:{pd_port}" in printed and f"http://127.0.0.1:{sn_port}" in printed
        table = f"http://127.0.0.1:{sn_port}/api/now/table/incident"
        assert requests.get(table, auth=("desk.api", "pw-123"), headers={"Accept": "application/json"},
                            timeout=5).json() == {"result": []}
        assert requests.get(table, auth=("desk.api", "wrong"), timeout=5).status_code == 401
        jsm_url = re.search(r"JSM simulator: +(\S+)", printed).group(1)  # type: ignore[union-attr]
        assert requests.get(f"{jsm_url}/rest/api/2/myself", auth=("desk.api", "pw-123"),
                            timeout=5).status_code == 200
        service = re.search(r'"id":"(\w+)"', printed).group(1)  # type: ignore[union-attr]
        created = requests.post(f"http://127.0.0.1:{pd_port}/incidents", timeout=5, json={
            "incident": {"type": "incident", "title": "Disk full", "service": {"id": service, "type": "service_reference"}}},
            headers={"Authorization": "Token token=tok-456", "From": "alice@example.com",
                     "Accept": "application/vnd.pagerduty+json;version=2"})
        assert created.status_code == 201
        wait_until(lambda: _Receiver.received, message="a webhook from the sandbox")
        headers, body = _Receiver.received[0]
        expected = hmac.new(b"whsec-789", body, hashlib.sha256).hexdigest()
        assert headers["X-PagerDuty-Signature"] == f"v1={expected}"
        assert json.loads(body)["event"]["event_type"] == "incident.triggered"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        receiver.shutdown()


SANDBOX_PROBES = {  # tool -> (its label, a path its API answers, the credential header for token "tok-456")
    "opsgenie": ("Opsgenie", "/v2/alerts", {"Authorization": "GenieKey tok-456"}),
    "rootly": ("Rootly", "/v1/incidents", {"Authorization": "Bearer tok-456"}),
    "incidentio": ("incident.io", "/v2/incidents", {"Authorization": "Bearer tok-456"}),
    "grafana_oncall": ("Grafana OnCall", "/api/v1/alert_groups/", {"Authorization": "tok-456"}),
    "squadcast": ("Squadcast", "/oauth/access-token", {"X-Refresh-Token": "tok-456"}),
}


def test_sandbox_starts_any_responder_tool_with_the_given_token() -> None:
    process = subprocess.Popen([sys.executable, "-m", "bridge", "sandbox", *SANDBOX_PROBES, "slack", "teams", "jsm",
                                "--token", "tok-456"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines: list[str] = []
        while not any(line.startswith("Ctrl-C") for line in lines):
            line = process.stdout.readline()  # type: ignore[union-attr]
            assert line, "".join(lines)
            lines.append(line)
        urls = dict(re.findall(r"^(.+?) simulator: +(\S+)", "".join(lines), flags=re.M))
        assert set(urls) == {label for label, _, _ in SANDBOX_PROBES.values()} | {"JSM", "Slack", "Microsoft Teams"}
        web_api = re.search(r"Web API \(api_url\): +(\S+)", "".join(lines)).group(1)  # type: ignore[union-attr]
        answer = requests.post(f"{web_api}/auth.test", headers={"Authorization": "Bearer tok-456"}, timeout=5).json()
        assert answer["ok"] is True
        assert requests.post(f"{web_api}/auth.test", timeout=5).json() == {"ok": False, "error": "not_authed"}
        # Teams is called with no API token (the bridge posts to each channel's Workflows URL): none shown.
        teams = "".join(lines).split("Microsoft Teams simulator:")[1].split(" simulator:")[0]
        assert "security token" in teams and "API token" not in teams
        for label, path, credential in SANDBOX_PROBES.values():
            assert requests.get(urls[label] + path, headers=credential, timeout=5).status_code == 200, label
            assert requests.get(urls[label] + path, timeout=5).status_code in (401, 403), label
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_sandbox_names_the_tools_it_knows_when_given_another() -> None:
    result = CliRunner().invoke(main, ["sandbox", "nagios"])
    assert result.exit_code == 2 and "opsgenie" in result.output and "servicenow" in result.output
