"""Microsoft Teams as a chat source through the running daemon: a responder @mentions the outgoing webhook
in an incident channel, the ticket opens once on ServiceNow, and the channel hears back through its
Workflows URL (the ticket link, desk comments, desk state changes as Adaptive Cards)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.daemon import Daemon, sync_once
from bridge.runtime import Runtime
from connectors.servicenow.simulator import ServiceNowSimulator
from connectors.simulator import free_port
from connectors.teams.simulator import TeamsSimulator
from tests.conftest import database_url, fresh_store, wait_until

pytestmark = pytest.mark.e2e


@dataclass
class World:
    teams: TeamsSimulator
    sn: ServiceNowSimulator
    runtime: Runtime
    daemon: Daemon


def write_config(tmp_path: Path, teams: TeamsSimulator, sn_url: str, port: int) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in (("teams-token", teams.security_token), ("checkout-url", teams.workflow_url("inc-checkout")),
                        ("default-url", teams.workflow_url("general")), ("sn-user", "itsm.bridge"),
                        ("sn-pw", "sn-pw")):
        (secrets / name).write_text(value)
    path = tmp_path / "config.toml"
    path.write_text(f"""
[database]
url = "{database_url(tmp_path)}"
[server]
port = {port}
[sync]
backoff_seconds = 0.05
max_backoff_seconds = 0.5
[connections.teams]
type = "teams"
security_token = "file:secrets/teams-token"
channel_urls = {{ "{teams.channel_id('inc-checkout')}" = "file:secrets/checkout-url" }}
default_url = "file:secrets/default-url"
[connections.servicenow]
type = "servicenow"
instance_url = "{sn_url}"
username = "file:secrets/sn-user"
password = "file:secrets/sn-pw"
poll_interval = 0.3
[[routes]]
name = "teams-to-servicenow"
source = "teams"
target = "servicenow"
preset = "teams-servicenow"
""")
    return path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    fresh_store(tmp_path).dispose()
    teams = TeamsSimulator().start()
    sn = ServiceNowSimulator(users={"itsm.bridge": "sn-pw"}).start()
    port = free_port()
    runtime = Runtime.build(load_config(write_config(tmp_path, teams, sn.url, port)))
    runtime.store.create_schema()
    daemon = Daemon(runtime, host="127.0.0.1", port=port).start()
    teams.set_webhook_url(f"{daemon.url}/webhooks/teams")
    try:
        yield World(teams, sn, runtime, daemon)
    finally:
        daemon.stop()
        teams.stop()
        sn.stop()
        runtime.store.dispose()


def texts(teams: TeamsSimulator, channel: str) -> list[str]:
    """The first TextBlock of every card the workflows posted into `channel`."""
    teams.wait_idle(5)
    return [card["body"][0]["text"] for card in teams.cards(channel)]


def test_a_channel_opens_a_ticket_and_hears_the_desk_back(world: World) -> None:
    teams, sn = world.teams, world.sn
    channel = teams.channel_id("inc-checkout")
    reply = teams.post_message("inc-checkout", "open Checkout 5xx above 5% in eu-west-1", user="alice")
    assert reply is not None and reply["text"].startswith("Opening a ticket for \"Checkout 5xx above 5% in eu-west-1\"")

    (ticket,) = wait_until(lambda: sn.find_by_correlation(f"teams:{channel}"), message="ticket on ServiceNow")
    assert ticket["short_description"] == "[Teams] Checkout 5xx above 5% in eu-west-1"
    assert "Opened from Microsoft Teams by Alice Adams in channel inc-checkout" in ticket["description"]
    number, sys_id = ticket["number"], ticket["sys_id"]
    backlink = wait_until(lambda: [t for t in texts(teams, "inc-checkout") if number in t], message="ticket link in channel")
    assert f"ServiceNow ticket {number} opened for this incident" in backlink[0] and sys_id in backlink[0]
    assert "[itsm-bridge:" in backlink[0]

    # a captured mention becomes a work note on the ticket
    assert "work notes" in teams.post_message("inc-checkout", "rolled back deploy 4411", user="bob")["text"]
    wait_until(lambda: [j for j in sn.journal(sys_id) if j["element"] == "work_notes"
                        and j["value"].startswith("[Teams] Bob Brown: rolled back deploy 4411\n[itsm-bridge:")],
               message="work note")

    # a public desk comment is posted into the channel; a state change is announced in words
    sn.desk_comment(sys_id, "Restarting the connection pool now", user="jane.doe")
    wait_until(lambda: [t for t in texts(teams, "inc-checkout") if "Restarting the connection pool now" in t],
               message="desk comment in channel")
    sn.desk_update(sys_id, {"state": "2"}, user="jane.doe")

    def announced() -> list[dict]:
        teams.wait_idle(5)
        return [card for card in teams.cards("inc-checkout") if card["body"][1:2] and card["body"][1]["type"] == "FactSet"]

    (card,) = wait_until(announced, message="state change announced")
    title, facts, actor = card["body"]
    assert title["text"].startswith(f"[ServiceNow {number}](") and sys_id in title["text"]
    assert title["text"].endswith(") changed") and actor["text"] == "Changed by jane.doe"
    assert {"title": "State", "value": "New → In Progress"} in facts["facts"]
    [action] = card["actions"]
    assert (action["type"], action["title"]) == ("Action.OpenUrl", f"Open {number}") and sys_id in action["url"]

    world.daemon.stop()
    assert sync_once(world.runtime).ok  # one more full cycle: nothing echoes, nothing doubles
    assert len(sn.find_by_correlation(f"teams:{channel}")) == 1
    work_notes = [j["value"] for j in sn.journal(sys_id) if j["element"] == "work_notes"]
    assert len([note for note in work_notes if note.startswith("[Teams] Bob Brown: rolled back deploy 4411")]) == 1
    assert not [j for j in sn.journal(sys_id) if "Restarting the connection pool" in j["value"] and j["element"] == "work_notes"]
    assert len(announced()) == 1


def group_id(sn: ServiceNowSimulator, name: str) -> str:
    """The sys_id of the instance's group `name` (what an agent's pick stores in assignment_group)."""
    return next(sys_id for sys_id, group in sn.state.refs["sys_user_group"].items() if group == name)


def test_a_desk_reassignment_is_announced_by_group_name_never_by_sys_id(world: World) -> None:
    teams, sn = world.teams, world.sn
    channel = teams.channel_id("inc-checkout")
    teams.post_message("inc-checkout", "open DNS resolution failing in eu-west-1", user="alice")
    (ticket,) = wait_until(lambda: sn.find_by_correlation(f"teams:{channel}"), message="ticket on ServiceNow")
    number, sys_id = ticket["number"], ticket["sys_id"]
    wait_until(lambda: [t for t in texts(teams, "inc-checkout") if number in t], message="ticket link in channel")

    def announced() -> list[dict]:
        teams.wait_idle(5)
        return [card for card in teams.cards("inc-checkout") if card["body"][1:2] and card["body"][1]["type"] == "FactSet"]

    sn.desk_update(sys_id, {"assignment_group": group_id(sn, "Network")}, user="jane.doe")
    (card,) = wait_until(announced, message="reassignment announced")
    assert {"title": "Assignment group", "value": "Service Desk → Network"} in card["body"][1]["facts"]
    # the ticket's own link carries its sys_id; nothing else on the card is one
    assert not re.findall(r"[0-9a-f]{32}", json.dumps(card).replace(sys_id, ""))

    sn.desk_update(sys_id, {"assignment_group": group_id(sn, "Payments")}, user="jane.doe")
    second = wait_until(lambda: announced()[1:], message="second reassignment announced")
    assert {"title": "Assignment group", "value": "Network → Payments"} in second[0]["body"][1]["facts"]
    assert not re.findall(r"[0-9a-f]{32}", json.dumps(second[0]).replace(sys_id, ""))

    world.daemon.stop()
    assert sync_once(world.runtime).ok  # nothing more to tell
    assert len(announced()) == 2


def test_link_attaches_an_existing_ticket_and_a_repeat_open_does_not_duplicate(world: World) -> None:
    teams, sn = world.teams, world.sn
    existing = sn.state.insert({"short_description": "Payments latency (raised by phone)", "state": "2"},
                               user="jane.doe")
    number = existing["number"]
    channel = teams.channel_id("inc-payments")
    reply = teams.post_message("inc-payments", f"link {number.lower()}", user="carol")
    assert reply is not None and f"Linking this channel to {number}" in reply["text"]

    # inc-payments has no channel_urls entry: its posts go through the default workflow
    linked = wait_until(lambda: [t for t in texts(teams, "general") if number in t], message="link confirmation")
    assert f"ServiceNow ticket {number} linked to this incident" in linked[0]
    wait_until(lambda: sn.record(existing["sys_id"])["correlation_id"] == f"teams:{channel}", message="ticket stamped")

    teams.post_message("inc-payments", "db failover done", user="carol")
    wait_until(lambda: [j for j in sn.journal(existing["sys_id"])
                        if j["value"].startswith("[Teams] Carol Chen: db failover done")], message="note on the linked ticket")
    assert [r["number"] for r in sn.records()] == [number]  # nothing was created
