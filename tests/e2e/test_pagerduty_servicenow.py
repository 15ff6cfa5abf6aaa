"""PagerDuty <-> ServiceNow over real HTTP: what the desk and the responders see."""

from __future__ import annotations

import json

import pytest
import requests

from bridge.daemon import sync_once
from bridge.status import queue_depths
from bridge.store import InboxEvent, OutboxOp
from tests.conftest import wait_until
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e


def value(field: object) -> object:
    return field.get("value") if isinstance(field, dict) else field


def journal_text(world: World, sys_id: str) -> str:
    return "\n".join(row["value"] for row in world.sn.journal(sys_id))


def settled(runtime) -> bool:  # type: ignore[no-untyped-def]
    depths = queue_depths(runtime.store)
    return depths["inbox_pending"] == 0 and depths["outbox_pending"] == 0


def one_ticket(world: World, incident: str) -> dict:
    wait_until(lambda: world.tickets(incident), message=f"a ticket for {incident}")
    tickets = world.tickets(incident)
    assert len(tickets) == 1
    return tickets[0]


def test_triggered_incident_becomes_a_well_formed_ticket_linked_both_ways(running) -> None:  # type: ignore[no-untyped-def]
    world, runtime, _daemon = running
    incident = world.pd.trigger("Payments API", "Error rate above 5%", urgency="high", user="alice")
    ticket = one_ticket(world, incident)
    assert ticket["short_description"] == "[Payments API] Error rate above 5%"
    assert ticket["impact"] == "1" and ticket["state"] == "1"
    assert value(ticket["assignment_group"]) == "Payments"
    assert ticket["correlation_id"] == f"pagerduty:{incident}"
    assert world.pd.incident(incident)["html_url"] in ticket["description"]
    # The responders get a note with the ticket number; it is the bridge's own and never echoes back.
    wait_until(lambda: any(ticket["number"] in n["content"] for n in world.pd.notes(incident)),
               message="backlink note in PagerDuty")
    wait_until(lambda: settled(runtime), message="bridge idle")
    assert journal_text(world, ticket["sys_id"]).count(ticket["number"]) == 0


def test_lifecycle_flows_to_the_desk_as_fields_and_work_notes(running) -> None:  # type: ignore[no-untyped-def]
    world, runtime, _daemon = running
    incident = world.pd.trigger("Search", "Latency p99 over SLO", urgency="low", user="bob")
    ticket = one_ticket(world, incident)
    world.pd.acknowledge(incident, user="bob")
    world.pd.add_note(incident, "Rolled back deploy 4711", user="bob")
    world.pd.set_priority(incident, "P1", user="bob")
    world.pd.reassign(incident, to_user="carol", user="bob")
    world.pd.resolve(incident, user="carol")
    assert world.pd.wait_idle(10)

    def resolved() -> bool:
        return world.sn.record(ticket["sys_id"])["state"] == "6"

    wait_until(resolved, message="ticket resolved")
    wait_until(lambda: settled(runtime), message="bridge idle")
    record = world.sn.record(ticket["sys_id"])
    assert record["urgency"] == "1"  # P1
    assert record["close_code"] and "Resolved in PagerDuty" in record["close_notes"]
    notes = journal_text(world, ticket["sys_id"])
    assert "Rolled back deploy 4711" in notes
    assert "Acknowledged" in notes
    assert len(world.tickets(incident)) == 1


def test_desk_resolve_and_comment_flow_back_without_echo(running) -> None:  # type: ignore[no-untyped-def]
    world, runtime, _daemon = running
    incident = world.pd.trigger("Identity", "Login failures", user="dave")
    ticket = one_ticket(world, incident)
    wait_until(lambda: settled(runtime), message="bridge idle")
    world.sn.desk_comment(ticket["sys_id"], "Customers cannot log in since 09:10", user="jane.doe")
    world.sn.desk_comment(ticket["sys_id"], "internal: vendor ticket 881", user="jane.doe", work_note=True)
    world.sn.desk_update(ticket["sys_id"], {"state": "6", "close_code": "Workaround provided",
                                            "close_notes": "Fixed by desk"}, user="jane.doe")
    wait_until(lambda: world.pd.incident(incident)["status"] == "resolved", message="PagerDuty resolved")
    wait_until(lambda: any("Customers cannot log in" in n["content"] for n in world.pd.notes(incident)),
               message="desk comment in PagerDuty")
    assert world.pd.wait_idle(10)
    wait_until(lambda: settled(runtime), message="bridge idle")
    # After the echo webhook and another poll of both sides, nothing more may be written anywhere.
    before_ops = runtime.store.count(OutboxOp)
    before_notes = len(world.pd.notes(incident))
    before_mod = world.sn.record(ticket["sys_id"])["sys_mod_count"]
    sync_once(runtime)  # one more poll of both sides, processed to the end
    assert runtime.store.count(OutboxOp) == before_ops
    assert len(world.pd.notes(incident)) == before_notes
    record = world.sn.record(ticket["sys_id"])
    assert record["sys_mod_count"] == before_mod
    assert record["close_code"] == "Workaround provided" and record["close_notes"] == "Fixed by desk"
    assert not any("vendor ticket 881" in n["content"] for n in world.pd.notes(incident))


def test_redelivered_webhook_is_stored_once(running) -> None:  # type: ignore[no-untyped-def]
    world, runtime, daemon = running
    incident = world.pd.trigger("Checkout Web", "Cart errors", user="alice")
    one_ticket(world, incident)
    row = _first_inbox_row(runtime)
    body = json.dumps({"event": {"id": "evt-1", "event_type": "incident.acknowledged", "resource_type": "incident",
                                 "occurred_at": "2026-11-23T10:00:00.000Z", "agent": None, "client": None,
                                 "data": json.loads(row)["incident"]["raw"]}}).encode()
    headers = _signed(body, "redelivered-1")
    first = requests.post(f"{daemon.url}/webhooks/pagerduty", data=body, headers=headers, timeout=5)
    again = requests.post(f"{daemon.url}/webhooks/pagerduty", data=body, headers=headers, timeout=5)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"accepted": 0, "duplicates": 1}


def test_missed_webhooks_are_caught_up_by_polling(world: World) -> None:
    incident = world.pd.trigger("Data Platform", "Backfill stuck", user="carol")  # no webhook URL: missed
    world.pd.acknowledge(incident, user="carol")
    runtime = world.runtime()
    report = sync_once(runtime)
    assert report.ok, report
    ticket = one_ticket(world, incident)
    assert ticket["state"] == "2"
    assert sync_once(runtime).ok
    assert len(world.tickets(incident)) == 1
    runtime.store.dispose()


def test_faults_on_both_sides_still_converge_without_duplicates(running) -> None:  # type: ignore[no-untyped-def]
    world, runtime, _daemon = running
    world.sn.faults.configure(server_error_rate=0.2, rate_limit_rate=0.1, retry_after=0)
    world.pd.faults.configure(server_error_rate=0.2, rate_limit_rate=0.1, retry_after=0)
    incidents = [world.pd.trigger(service, f"Fault test {n}", user="alice")
                 for n, service in enumerate(["Payments API", "Search", "Identity", "Checkout Web"] * 3)]
    for number, incident in enumerate(incidents):
        world.pd.acknowledge(incident, user="bob")
        world.pd.add_note(incident, f"note {number}", user="bob")
        if number % 2:
            world.pd.resolve(incident, user="bob")
    assert world.pd.wait_idle(30)

    def converged() -> bool:
        if not settled(runtime):
            return False
        for number, incident in enumerate(incidents):
            tickets = world.tickets(incident)
            if len(tickets) != 1 or tickets[0]["state"] != ("6" if number % 2 else "2"):
                return False
        return True

    wait_until(converged, timeout=60, message="convergence under 30% faults")
    assert sum(world.sn.faults.injected.values()) > 0
    assert runtime.store.count(InboxEvent, status="dead") == 0
    for number, incident in enumerate(incidents):
        assert f"note {number}" in journal_text(world, world.tickets(incident)[0]["sys_id"])
        backlinks = [n for n in world.pd.notes(incident) if world.tickets(incident)[0]["number"] in n["content"]]
        assert len(backlinks) == 1


def _first_inbox_row(runtime) -> str:  # type: ignore[no-untyped-def]
    from sqlmodel import Session, select

    with Session(runtime.store.engine) as session:
        return session.exec(select(InboxEvent.change).where(InboxEvent.event_type == "incident.triggered")).first()


def _signed(body: bytes, webhook_id: str) -> dict[str, str]:
    import hashlib
    import hmac

    from tests.e2e.conftest import SECRET

    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-PagerDuty-Signature": f"v1={signature}",
            "X-Webhook-Id": webhook_id}
