"""Two desks and two-way sync: JSM with the real `jira` client, fan-out to ServiceNow and JSM without the
desks echoing into each other, field ownership with last-writer-wins, and every conflict audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from sqlmodel import Session, select

from bridge.config import load_config
from bridge.daemon import sync_once
from bridge.engine import process_inbox
from bridge.ingest import poll_connection
from bridge.runtime import Runtime
from bridge.store import AuditEntry, OutboxOp
from connectors.jsm.simulator import JsmSimulator
from connectors.pagerduty.simulator import PagerDutySimulator
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import Faults, free_port
from tests.conftest import database_url, fresh_store, wait_until
from tests.e2e.conftest import PASSWORD, SECRET, TOKEN, USER, write_config

pytestmark = pytest.mark.e2e
JIRA_USER, JIRA_TOKEN, AGENT = "bridge@example.com", "e2e-jira-token", "agent@example.com"

JSM = """
[connections.jsm]
type = "jsm"
url = "{url}"
email = "file:secrets/jira-email"
api_token = "file:secrets/jira-token"
project = "OPS"
poll_interval = 0.3
poll_overlap_seconds = 5
rate_limit_per_minute = 6000  # tests compress time: far above a real site's default pace of 600/min

[[routes]]
name = "pagerduty-to-jsm"
source = "pagerduty"
target = "jsm"
preset = "pagerduty-jsm"
"""

# ServiceNow urgency becomes two-way too: a desk change sets the PagerDuty priority.
SN_TWO_WAY = """
[routes.fields.urgency]
from = "incident.priority"
map = { P1 = "1", P2 = "1", P3 = "2", P4 = "3", P5 = "3" }
default = "2"
owner = "both"

[routes.back.fields.priority]
from = "urgency"
map = { "1" = "P1", "2" = "P3", "3" = "P5" }
"""


class SiteClock:
    """The JSM site's clock: real time, moved on by `ahead` to let a desk action happen "later" without
    sleeping (the bridge's own clock is not moved: the site is then that much ahead of it)."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@dataclass
class Desks:
    pd: PagerDutySimulator
    sn: ServiceNowSimulator
    jsm: JsmSimulator
    config_path: Path
    jsm_clock: SiteClock

    def runtime(self) -> Runtime:
        runtime = Runtime.build(load_config(self.config_path))
        runtime.store.create_schema()
        return runtime

    def issue(self, incident: str) -> dict:
        (issue,) = self.jsm.find_by_correlation(f"pagerduty:{incident}")
        return issue

    def ticket(self, incident: str) -> dict:
        (ticket,) = self.sn.find_by_correlation(f"pagerduty:{incident}")
        return ticket


@pytest.fixture
def desks(tmp_path: Path) -> Iterator[Desks]:
    fresh_store(tmp_path).dispose()
    pd = PagerDutySimulator(token=TOKEN, webhook_secret=SECRET, faults=Faults(seed=3), rate_limit=100_000).start()
    sn = ServiceNowSimulator(users={USER: PASSWORD}, faults=Faults(seed=4)).start()
    jsm_clock = SiteClock()
    jsm = JsmSimulator(users={JIRA_USER: JIRA_TOKEN}, faults=Faults(seed=5), clock=jsm_clock).start()
    path = write_config(tmp_path, pd.url, sn.url, port=free_port(), db_url=database_url(tmp_path),
                        extra=SN_TWO_WAY + JSM.format(url=jsm.url))
    (tmp_path / "secrets" / "jira-email").write_text(JIRA_USER)
    (tmp_path / "secrets" / "jira-token").write_text(JIRA_TOKEN)
    try:
        yield Desks(pd, sn, jsm, path, jsm_clock)
    finally:
        pd.stop()
        sn.stop()
        jsm.stop()


def settle(runtime: Runtime, rounds: int = 6) -> None:
    """Sync until a whole cycle queues nothing new (bounded)."""
    for _ in range(rounds):
        before = runtime.store.count(OutboxOp)
        assert sync_once(runtime).ok
        if runtime.store.count(OutboxOp) == before:
            return
    raise AssertionError("the bridge never went quiet: something echoes")


def comments_text(desks: Desks, key: str) -> str:
    return "\n".join(c["body"] for c in desks.jsm.comments(key))


def test_jsm_gets_the_incident_and_drives_it_back(desks: Desks) -> None:
    incident = desks.pd.trigger("Search", "Index lag", urgency="high", user="alice", priority="P2")
    runtime = desks.runtime()
    settle(runtime)
    issue = desks.issue(incident)
    assert issue["fields"]["summary"] == "[Search] Index lag"
    assert issue["fields"]["priority"]["name"] == "High"
    assert issue["fields"]["status"]["name"] == "To Do"
    links = desks.jsm.remote_links(issue["key"])
    assert [link["object"]["url"] for link in links] == [desks.pd.incident(incident)["html_url"]]
    desks.pd.acknowledge(incident, user="alice")
    desks.pd.add_note(incident, "Replica 3 is 40 min behind", user="alice")
    settle(runtime)
    issue = desks.issue(incident)
    assert issue["fields"]["status"]["name"] == "In Progress"
    internal = [c for c in desks.jsm.comments(issue["key"]) if c.get("jsdPublic") is False]
    assert any("Replica 3 is 40 min behind" in c["body"] for c in internal)

    desks.jsm.desk_comment(issue["key"], "Customers see stale search results", user=AGENT)
    desks.jsm.desk_update(issue["key"], {"priority": {"name": "Highest"}}, user=AGENT)
    settle(runtime)
    assert desks.pd.incident(incident)["priority"]["name"] == "P1"
    assert any("Customers see stale search results" in n["content"] for n in desks.pd.notes(incident))
    desks.jsm.desk_transition(issue["key"], "Resolve", user=AGENT)
    settle(runtime)
    assert desks.pd.incident(incident)["status"] == "resolved"
    # The resolve and the priority the bridge set in PagerDuty came back as webhooks/polls: no echo.
    assert desks.issue(incident)["fields"]["status"]["name"] == "Resolved"
    assert desks.ticket(incident)["state"] == "6"
    runtime.store.dispose()


def test_fan_out_feeds_both_desks_without_them_echoing_into_each_other(desks: Desks) -> None:
    incident = desks.pd.trigger("Payments API", "Refunds failing", user="bob")
    runtime = desks.runtime()
    settle(runtime)
    ticket, issue = desks.ticket(incident), desks.issue(incident)
    desks.sn.desk_comment(ticket["sys_id"], "Merchant escalation from ACME", user="jane.doe")
    desks.sn.desk_update(ticket["sys_id"], {"state": "6", "close_code": "Workaround provided",
                                            "close_notes": "Refunds re-queued"}, user="jane.doe")
    settle(runtime)
    # ServiceNow's resolve went to PagerDuty, and from there to JSM as a change of the incident.
    assert desks.pd.incident(incident)["status"] == "resolved"
    assert desks.issue(incident)["fields"]["status"]["name"] == "Resolved"
    # The desk comment reached the responders, but one desk never receives the other desk's chatter.
    assert any("Merchant escalation from ACME" in n["content"] for n in desks.pd.notes(incident))
    assert "Merchant escalation from ACME" not in comments_text(desks, issue["key"])
    notes_before = len(desks.pd.notes(incident))
    settle(runtime)
    assert len(desks.pd.notes(incident)) == notes_before
    assert len(desks.sn.find_by_correlation(f"pagerduty:{incident}")) == 1
    assert len(desks.jsm.find_by_correlation(f"pagerduty:{incident}")) == 1
    runtime.store.dispose()


def conflicts(runtime: Runtime) -> list[dict]:
    with Session(runtime.store.engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.kind == "conflict.decided")).all()
    return [json.loads(row.data) for row in rows]


def test_concurrent_edits_of_a_two_way_field_later_writer_wins_and_is_audited(desks: Desks) -> None:
    incident = desks.pd.trigger("Identity", "Token service slow", user="carol", priority="P3")
    runtime = desks.runtime()
    settle(runtime)
    ticket = desks.ticket(incident)
    assert ticket["urgency"] == "2"
    # Both sides change the same field before the bridge looks: the desk first, PagerDuty after.
    desks.sn.desk_update(ticket["sys_id"], {"urgency": "3"}, user="jane.doe")
    desks.pd.set_priority(incident, "P1", user="carol")
    settle(runtime)
    assert desks.pd.incident(incident)["priority"]["name"] == "P1"
    assert desks.sn.record(ticket["sys_id"])["urgency"] == "1"
    decided = [c for c in conflicts(runtime) if c["field"] == "urgency"]
    assert decided and decided[-1]["winner"] == "source"
    assert {"source_value", "desk_value", "source_at", "desk_at"} <= set(decided[-1])

    # Now PagerDuty first, the desk after: the desk's later edit wins and flows back.
    desks.pd.set_priority(incident, "P5", user="carol")
    desks.sn.desk_update(ticket["sys_id"], {"urgency": "1"}, user="jane.doe")
    settle(runtime)
    assert desks.sn.record(ticket["sys_id"])["urgency"] == desks.ticket(incident)["urgency"]
    final_urgency = desks.sn.record(ticket["sys_id"])["urgency"]
    final_priority = desks.pd.incident(incident)["priority"]["name"]
    assert {"1": "P1", "2": "P3", "3": "P5"}[final_urgency] == final_priority or \
        (final_urgency == "1" and final_priority in ("P1", "P2"))
    runtime.store.dispose()


def test_a_poll_read_before_a_bridge_write_flows_back_the_desk_resolve_but_not_its_old_priority(
        desks: Desks) -> None:
    """Found by bench/chaos.py (500 lifecycles, 3 replicas): a JSM poll read an issue just before the
    bridge wrote a new priority on it, and was processed after that write was recorded. The snapshot held
    an agent's resolve, made after the PagerDuty change the write carried: a desk decision that counts.
    It also held the priority from before the write, which flowed back to PagerDuty as if an agent had set
    it: PagerDuty went back to P3 while JSM kept High, and the two never converged again."""
    from bridge.daemon import safe_poll, work_until_idle
    from bridge.ingest import store_changes

    incident = desks.pd.trigger("Search", "Index lag", user="alice", priority="P3")
    runtime = desks.runtime()
    settle(runtime)
    issue = desks.issue(incident)
    assert issue["fields"]["priority"]["name"] == "Medium"
    desks.pd.set_priority(incident, "P2", user="alice")
    assert safe_poll(runtime, "pagerduty") is None  # the bridge has the change, not yet written to JSM
    desks.jsm_clock.ahead = timedelta(seconds=2)
    desks.jsm.desk_transition(issue["key"], "Resolve", user=AGENT)  # the agent decides 2 s after it

    read_at = datetime.now(UTC)  # a poll reads the resolved issue, still at Medium...
    (snapshot,) = [change for change in runtime.connectors["jsm"].poll(None, now=read_at).changes
                   if change.record_id == issue["key"]]
    work_until_idle(runtime)  # ...while the bridge writes High
    assert desks.issue(incident)["fields"]["priority"]["name"] == "High"
    store_changes(runtime, [snapshot], observed_at=read_at)  # and stores what it read after that write
    settle(runtime)

    assert desks.pd.incident(incident)["status"] == "resolved"  # the agent's decision flowed back
    assert desks.pd.incident(incident)["priority"]["name"] == "P2"  # the snapshot's old priority did not
    assert desks.issue(incident)["fields"]["priority"]["name"] == "High"
    assert desks.issue(incident)["fields"]["status"]["name"] == "Resolved"
    runtime.store.dispose()


class JsmAgentActsBeforeTheCreateIsRecorded(HTTPAdapter):
    """The issue is created; before the bridge has recorded it, an agent resolves it and a JSM poll is
    taken in and processed (the bridge has no link to the issue yet)."""

    def __init__(self, desks: Desks, runtime: Runtime) -> None:
        super().__init__()
        self.desks, self.runtime, self.done = desks, runtime, False

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, **kwargs)
        if request.method == "POST" and str(request.url).endswith("/remotelink") and not self.done:
            self.done = True  # the create's last call: the link back to the incident
            self.desks.jsm.desk_transition(str(request.url).split("/")[-2], "Resolve", user=AGENT)
            poll_connection(self.runtime, "jsm")
            process_inbox(self.runtime)
        return response


def test_a_jsm_change_seen_before_the_create_is_recorded_waits_for_the_link_and_flows_back(desks: Desks) -> None:
    """JSM issues carry their incident in the bridge's entity property, which polls and reads now ask for:
    such a change waits for the create to be recorded, instead of being dropped as "not linked" (the
    agent's resolve never reached PagerDuty)."""
    runtime = desks.runtime()
    wire = JsmAgentActsBeforeTheCreateIsRecorded(desks, runtime)
    runtime.connectors["jsm"].session.mount("http://", wire)  # type: ignore[attr-defined]
    incident = desks.pd.trigger("Search", "Index lag", user="alice", priority="P3")
    settle(runtime)
    assert wire.done
    assert desks.pd.incident(incident)["status"] == "resolved"
    assert desks.issue(incident)["fields"]["status"]["name"] == "Resolved"
    runtime.store.dispose()


def test_jsm_webhook_reaches_pagerduty_and_escalation_works(desks: Desks, tmp_path: Path) -> None:
    import hashlib
    import hmac

    import requests

    from bridge.server import create_app
    from connectors.simulator import ServerThread

    (tmp_path / "secrets" / "jira-hook").write_text("jira-hook-secret")
    text = desks.config_path.read_text().replace(
        'poll_overlap_seconds = 5\n', 'poll_overlap_seconds = 5\nwebhook_secret = "file:secrets/jira-hook"\n')
    text += '\n[routes.back]\nreassignment = "escalate"\n'  # applies to the last route in the file: JSM
    text = text.replace('[routes.back]\nreassignment = "escalate"', '[routes.back]\nreassignment = "escalate"\n'
                        'assignment_field = "assignee"')
    desks.config_path.write_text(text)
    incident = desks.pd.trigger("Search", "Shard rebalancing stuck", user="alice")
    runtime = desks.runtime()
    settle(runtime)
    issue = desks.issue(incident)
    server = ServerThread(create_app(runtime)).start()
    try:
        desks.jsm.desk_transition(issue["key"], "Resolve", user=AGENT)
        body = json.dumps({"timestamp": 1763900000000, "webhookEvent": "jira:issue_updated",
                           "issue_event_type_name": "issue_generic", "user": {"emailAddress": AGENT},
                           "issue": desks.jsm.issue(issue["key"]),
                           "changelog": {"id": "1", "items": [{"field": "status", "toString": "Resolved"}]}}).encode()
        signature = hmac.new(b"jira-hook-secret", body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature": f"sha256={signature}",
                   "X-Atlassian-Webhook-Identifier": "jira-delivery-1"}
        refused = requests.post(f"{server.url}/webhooks/jsm", data=body, timeout=5,
                                headers={**headers, "X-Hub-Signature": "sha256=" + "0" * 64})
        assert refused.status_code == 401
        accepted = requests.post(f"{server.url}/webhooks/jsm", data=body, headers=headers, timeout=5)
        assert accepted.status_code == 202
    finally:
        server.stop()
    from bridge.daemon import work_until_idle

    work_until_idle(runtime)  # no poll: the webhook alone carries the desk's resolve
    assert desks.pd.incident(incident)["status"] == "resolved"
    # The way a desk reassignment escalates (reassignment = "escalate"): one level up in PagerDuty.
    other = desks.pd.trigger("Search", "Another one", user="alice")
    runtime.connectors["pagerduty"].escalate(other)  # type: ignore[attr-defined]
    assert desks.pd.account.get(other).escalation_level == 2  # PagerDuty REST does not show the level
    runtime.store.dispose()


def test_a_found_jsm_issue_in_its_initial_status_is_moved_on_not_taken_for_a_desk_decision(desks: Desks) -> None:
    """The create's answer is lost and the retry finds the issue: its "To Do" is the workflow's initial
    status the bridge itself got, not an agent's decision, so the acknowledge still moves it on."""
    from tests.e2e.test_find_before_create import LosesTheFirstCreateAnswer

    runtime = desks.runtime()
    try:
        wire = LosesTheFirstCreateAnswer()
        runtime.connectors["jsm"].session.mount("http://", wire)
        incident = desks.pd.trigger("Search", "Index lag", urgency="high", user="alice")
        desks.pd.acknowledge(incident, user="alice")
        wait_until(lambda: sync_once(runtime).ok and wire.lost
                   and desks.issue(incident)["fields"]["status"]["name"] == "In Progress",
                   message="the found issue moved to In Progress")
        with Session(runtime.store.engine) as session:
            assert session.exec(select(AuditEntry).where(AuditEntry.kind == "conflict.decided")).all() == []
    finally:
        runtime.store.dispose()
