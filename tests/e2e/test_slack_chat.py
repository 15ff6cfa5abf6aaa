"""Slack as a chat source through the running daemon: a responder runs ``/itsm open`` in an incident channel,
the ticket opens once on ServiceNow, and the channel hears back (the ticket link, desk comments, desk state
changes as Block Kit); a reacted message becomes a work note; ``/itsm link`` attaches an existing ticket.

Everything goes over real HTTP: the Slack simulator verifies the Request URL with the url_verification
handshake, signs every request, retries events like Slack, and limits chat.postMessage to about one
message per second per channel (the outbox waits out the 429s)."""

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
from connectors.slack.simulator import SlackSimulator
from tests.conftest import database_url, fresh_store, wait_until

pytestmark = pytest.mark.e2e


@dataclass
class World:
    slack: SlackSimulator
    sn: ServiceNowSimulator
    runtime: Runtime
    daemon: Daemon


def write_config(tmp_path: Path, slack: SlackSimulator, sn_url: str, port: int) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in (("slack-token", slack.bot_token), ("slack-signing", slack.signing_secret),
                        ("sn-user", "itsm.bridge"), ("sn-pw", "sn-pw")):
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
max_attempts = 12
[connections.slack]
type = "slack"
api_url = "{slack.api_url}"
bot_token = "file:secrets/slack-token"
signing_secret = "file:secrets/slack-signing"
capture = "reaction"
poll_interval = 3600
rate_limit_per_minute = 300   # Slack's Web API tiers allow more than the conservative default of 60
[connections.servicenow]
type = "servicenow"
instance_url = "{sn_url}"
username = "file:secrets/sn-user"
password = "file:secrets/sn-pw"
poll_interval = 0.3
[[routes]]
name = "slack-to-servicenow"
source = "slack"
target = "servicenow"
preset = "slack-servicenow"
""")
    return path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    fresh_store(tmp_path).dispose()
    slack = SlackSimulator(post_rate_limit=True, retry_delays=(0.0, 0.2, 0.5)).start()
    sn = ServiceNowSimulator(users={"itsm.bridge": "sn-pw"}).start()
    port = free_port()
    runtime = Runtime.build(load_config(write_config(tmp_path, slack, sn.url, port)))
    runtime.store.create_schema()
    daemon = Daemon(runtime, host="127.0.0.1", port=port).start()
    try:
        slack.set_request_url(f"{daemon.url}/webhooks/slack")  # Slack's url_verification handshake
        yield World(slack, sn, runtime, daemon)
    finally:
        daemon.stop()
        slack.stop()
        sn.stop()
        runtime.store.dispose()


def posts(slack: SlackSimulator, channel: str, words: str) -> list[dict]:
    """The app's messages in `channel` whose text contains `words`."""
    return [m for m in slack.bot_messages(channel) if words in m["text"]]


def work_notes(sn: ServiceNowSimulator, sys_id: str, start: str) -> list[str]:
    return [j["value"] for j in sn.journal(sys_id) if j["element"] == "work_notes" and j["value"].startswith(start)]


def test_a_channel_opens_a_ticket_and_hears_the_desk_back(world: World) -> None:
    slack, sn = world.slack, world.sn
    channel = slack.create_channel("inc-2041-payments")
    reply = slack.slash_command(channel, "open Card payments failing in EU", "alice")
    assert reply["response_type"] == "ephemeral" and reply["text"].startswith("Opening a ticket for #inc-2041-payments")

    (ticket,) = wait_until(lambda: sn.find_by_correlation(f"slack:{channel}"), message="ticket on ServiceNow")
    assert ticket["short_description"] == "Card payments failing in EU"
    assert "Opened in Slack by Alice in #inc-2041-payments with /itsm open." in ticket["description"]
    number, sys_id = ticket["number"], ticket["sys_id"]
    (backlink,) = wait_until(lambda: posts(slack, channel, number), message="ticket link in the channel")
    assert backlink["text"].startswith(f"ServiceNow ticket {number} opened for this incident: ")
    assert sys_id in backlink["text"] and "[itsm-bridge:" in backlink["text"]
    assert "[itsm-bridge:" not in backlink["blocks"][0]["text"]["text"]  # people read it without the marker

    # a message reacted with :memo: (twice) becomes one work note; the bridge's own post never does
    ts = slack.post_message(channel, "Rolled back deploy 4411 &amp; error rate is falling", "bob")
    slack.add_reaction(channel, ts, "memo", "carol")
    slack.add_reaction(channel, ts, "memo", "alice")
    slack.add_reaction(channel, backlink["ts"], "memo", "alice")
    assert slack.wait_idle(10)
    note = "[Slack #inc-2041-payments] Bob: Rolled back deploy 4411 & error rate is falling\n[itsm-bridge:"
    wait_until(lambda: work_notes(sn, sys_id, note), message="work note")

    # a public desk comment is posted into the channel; a state change is announced in Block Kit
    sn.desk_comment(sys_id, "Customer confirmed payments are back", user="jane.doe")
    (comment,) = wait_until(lambda: posts(slack, channel, "Customer confirmed payments are back"),
                            message="desk comment in the channel")
    assert comment["text"].startswith(f":speech_balloon: {number} jane.doe: Customer confirmed payments are back")
    sn.desk_update(sys_id, {"state": "6", "close_code": "Solution provided", "close_notes": "Pool resized"},
                   user="jane.doe")
    (announced,) = wait_until(lambda: posts(slack, channel, f"ServiceNow {number} changed"), message="announcement")
    head, fields, context = announced["blocks"]
    assert head["text"]["text"] == f":ticket: *ServiceNow <{ticket_url(world, sys_id)}|{number}>* was updated"
    assert "*State*\nNew → Resolved" in [field["text"] for field in fields["fields"]]
    assert context["elements"][0]["text"].startswith("Changed by jane.doe in ServiceNow")

    world.daemon.stop()
    assert sync_once(world.runtime).ok  # one more full cycle (a Slack catch-up poll too): nothing echoes or doubles
    assert len(sn.find_by_correlation(f"slack:{channel}")) == 1
    assert len(work_notes(sn, sys_id, note)) == 1
    notes = [j["value"] for j in sn.journal(sys_id) if j["element"] == "work_notes"]
    assert not [n for n in notes if "opened for this incident" in n or "Customer confirmed" in n]  # no echoes
    assert len(posts(slack, channel, "Customer confirmed payments are back")) == 1
    assert len(posts(slack, channel, f"ServiceNow {number} changed")) == 1


def ticket_url(world: World, sys_id: str) -> str:
    return f"{world.sn.url}/nav_to.do?uri=incident.do?sys_id={sys_id}"


def group_id(sn: ServiceNowSimulator, name: str) -> str:
    """The sys_id of the instance's group `name` (what an agent's pick stores in assignment_group)."""
    return next(sys_id for sys_id, group in sn.state.refs["sys_user_group"].items() if group == name)


def test_a_desk_reassignment_is_announced_by_group_name_never_by_sys_id(world: World) -> None:
    slack, sn = world.slack, world.sn
    channel = slack.create_channel("inc-2044-dns")
    slack.slash_command(channel, "open DNS resolution failing in eu-west-1", "alice")
    (ticket,) = wait_until(lambda: sn.find_by_correlation(f"slack:{channel}"), message="ticket on ServiceNow")
    number, sys_id = ticket["number"], ticket["sys_id"]
    wait_until(lambda: posts(slack, channel, f"ServiceNow ticket {number} opened"), message="ticket link in the channel")

    sn.desk_update(sys_id, {"assignment_group": group_id(sn, "Network")}, user="jane.doe")
    (first,) = wait_until(lambda: posts(slack, channel, f"ServiceNow {number} changed"), message="reassignment")
    assert "*Assignment group*\nService Desk → Network" in [f["text"] for f in first["blocks"][1]["fields"]]
    # the ticket's own link carries its sys_id; nothing else in the message is one
    assert not re.findall(r"[0-9a-f]{32}", json.dumps(first).replace(sys_id, ""))

    sn.desk_update(sys_id, {"assignment_group": group_id(sn, "Payments")}, user="jane.doe")
    second = wait_until(lambda: posts(slack, channel, f"ServiceNow {number} changed")[1:], message="second reassignment")
    assert "*Assignment group*\nNetwork → Payments" in [f["text"] for f in second[0]["blocks"][1]["fields"]]
    assert not re.findall(r"[0-9a-f]{32}", json.dumps(second[0]).replace(sys_id, ""))

    world.daemon.stop()
    assert sync_once(world.runtime).ok  # nothing more to tell, nothing written back to the desk
    assert len(posts(slack, channel, f"ServiceNow {number} changed")) == 2
    assert sn.record(sys_id)["assignment_group"] == group_id(sn, "Payments")


def test_link_attaches_an_existing_ticket_and_the_shortcut_opens_one_from_a_message(world: World) -> None:
    slack, sn = world.slack, world.sn
    existing = sn.state.insert({"short_description": "Payments latency (raised by phone)", "state": "2"},
                               user="jane.doe")
    number, channel = existing["number"], slack.create_channel("inc-2042-latency")
    reply = slack.slash_command(channel, f"link {number.lower()}", "carol")
    assert f"Linking #inc-2042-latency to {number}" in reply["text"]
    wait_until(lambda: posts(slack, channel, f"ServiceNow ticket {number} linked to this incident"),
               message="link confirmation in the channel")
    wait_until(lambda: sn.record(existing["sys_id"])["correlation_id"] == f"slack:{channel}", message="ticket stamped")
    ts = slack.post_message(channel, "p99 back under 300 ms", "carol")
    slack.add_reaction(channel, ts, "memo", "bob")
    wait_until(lambda: work_notes(sn, existing["sys_id"], "[Slack #inc-2042-latency] Carol: p99 back under 300 ms"),
               message="note on the linked ticket")
    assert [r["number"] for r in sn.records()] == [number]  # nothing was created

    other = slack.create_channel("inc-2043-search")
    first = slack.post_message(other, "Search returns 500 for every query\nsince the 10:02 deploy", "alice")
    assert slack.message_shortcut(other, first, "bob") == {} and slack.last_status == 200
    (opened,) = wait_until(lambda: sn.find_by_correlation(f"slack:{other}"), message="ticket from the shortcut")
    assert opened["short_description"] == "Search returns 500 for every query"
    wait_until(lambda: work_notes(sn, opened["sys_id"], "[Slack #inc-2043-search] Alice: Search returns 500"),
               message="the message as the first work note")
    wait_until(lambda: posts(slack, other, f"ServiceNow ticket {opened['number']} opened"), message="link in channel")
