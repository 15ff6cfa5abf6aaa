"""The demo's people and its judge: responders in their tool (PagerDuty by default, any `DemoSource`),
agents on two desks, and the check that both desks and the tool agree, incident by incident (what the
demo's summary is measured from)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from bridge.demo_sources import DemoSource
from bridge.runtime import Runtime
from bridge.status import queue_depths
from connectors.base import MARKER_PREFIX
from connectors.jsm.simulator import JsmSimulator
from connectors.servicenow.simulator import ServiceNowSimulator

SERVICES = ("Payments API", "Checkout Web", "Search", "Identity", "Data Platform")
TITLES = ("Error rate above 5% on {s}", "Latency p99 over SLO on {s}", "{s} health check failing",
          "Disk filling on {s} primary", "Elevated 5xx from {s} upstream", "Queue backlog growing in {s}")
RESPONDERS = ("alice", "bob", "carol", "dave")
SN_STATE = {"triggered": {"1"}, "acknowledged": {"2"}, "resolved": {"6", "7"}}
JSM_STATUS = {"triggered": {"To Do"}, "acknowledged": {"In Progress"}, "resolved": {"Resolved", "Done"}}
DESK_AGENT, JSM_AGENT = "jane.doe", "agent@example.com"


@dataclass
class Scenario:
    """What the people did, so convergence is checked against intent, not against the bridge's view."""

    incidents: list[str] = field(default_factory=list)
    resolved_on: dict[str, str] = field(default_factory=dict)  # incident -> "servicenow" | "jsm"
    desk_comments: dict[str, list[str]] = field(default_factory=dict)
    responder_notes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class World:
    """The three systems: the responders' tool (`source` drives its simulator `src`) and both desks.
    The tool's connection is named after its slug, so its tickets carry ``<slug>:<incident id>``."""

    source: DemoSource
    src: Any
    sn: ServiceNowSimulator
    jsm: JsmSimulator

    def sn_tickets(self, incident: str) -> list[dict]:
        return self.sn.find_by_correlation(f"{self.source.slug}:{incident}")

    def jsm_issues(self, incident: str) -> list[dict]:
        return self.jsm.find_by_correlation(f"{self.source.slug}:{incident}")

    def simulators(self) -> tuple[Any, ...]:
        return (self.src, self.sn, self.jsm)


def play_responders(world: World, scenario: Scenario, rng: random.Random, count: int) -> None:
    source, src = world.source, world.src
    for number in range(count):
        service = SERVICES[number % len(SERVICES)]
        who = rng.choice(RESPONDERS)
        incident = source.open(src, service, rng.choice(TITLES).format(s=service), who, rng.random() < 0.6)
        scenario.incidents.append(incident)
        if rng.random() < 0.8:
            source.acknowledge(src, incident, who)
        if rng.random() < 0.7:
            text = f"Investigating {service}: {rng.choice(('rolled back deploy', 'scaled out', 'failing over'))}"
            source.note(src, incident, text, who)
            scenario.responder_notes.setdefault(incident, []).append(text)
        if rng.random() < 0.5 and source.priorities:
            source.set_priority(src, incident, rng.choice(source.priorities), who)
        if rng.random() < 0.3 and source.reassign is not None:
            source.reassign(src, incident, rng.choice([r for r in RESPONDERS if r != who]), who)


def play_desks_and_resolutions(world: World, scenario: Scenario, rng: random.Random) -> None:
    for incident in scenario.incidents:
        tickets, issues = world.sn_tickets(incident), world.jsm_issues(incident)
        if not tickets or not issues:
            continue  # not on both desks yet: the convergence check will say so
        ticket, issue = tickets[0], issues[0]
        if rng.random() < 0.3:
            text = f"Customer reports checkout failures ({ticket['number']})"
            world.sn.desk_comment(ticket["sys_id"], text, user=DESK_AGENT)
            scenario.desk_comments.setdefault(incident, []).append(text)
        if rng.random() < 0.2:
            text = f"Product team: feature flag disabled ({issue['key']})"
            world.jsm.desk_comment(issue["key"], text, user=JSM_AGENT)
            scenario.desk_comments.setdefault(incident, []).append(text)
        roll = rng.random()
        if roll < 0.2:
            world.sn.desk_update(ticket["sys_id"], {"state": "6", "close_code": "Workaround provided",
                                                    "close_notes": "Resolved by the service desk"}, user=DESK_AGENT)
            scenario.resolved_on[incident] = "servicenow"
        elif roll < 0.35 and issue["fields"]["status"]["name"] in ("To Do", "In Progress"):
            world.jsm.desk_transition(issue["key"], "Resolve", user=JSM_AGENT)
            scenario.resolved_on[incident] = "jsm"
        elif roll < 0.8:
            world.source.resolve(world.src, incident, rng.choice(RESPONDERS))


def missing_tickets(world: World, scenario: Scenario) -> list[str]:
    return [f"{incident} not yet on both desks" for incident in scenario.incidents
            if not world.sn_tickets(incident) or not world.jsm_issues(incident)]


def convergence_problems(world: World, runtime: Runtime, scenario: Scenario) -> list[str]:
    """Everything that still disagrees; empty when all three systems tell the same story."""
    problems: list[str] = []
    depths = queue_depths(runtime.store)
    if depths["inbox_pending"] or depths["outbox_pending"]:
        problems.append(f"bridge still working: {depths['inbox_pending']} in inbox, "
                        f"{depths['outbox_pending']} in outbox")
    for incident in scenario.incidents:
        problems += _incident_problems(world, scenario, incident)
    return problems


def _incident_problems(world: World, scenario: Scenario, incident: str) -> list[str]:
    tickets, issues = world.sn_tickets(incident), world.jsm_issues(incident)
    if len(tickets) != 1 or len(issues) != 1:
        return [f"{incident}: {len(tickets)} ServiceNow tickets and {len(issues)} JSM issues"]
    ticket, issue = tickets[0], issues[0]
    label = world.source.label
    status = world.source.status_of(world.src, incident)
    problems = []
    if status is not None and incident in scenario.resolved_on and status != "resolved":
        problems.append(f"{incident}: resolved on {scenario.resolved_on[incident]} but {status} in {label}")
    # A chat channel has no status to pass on: each desk keeps its own decision.
    sn_status = status or ("resolved" if scenario.resolved_on.get(incident) == "servicenow" else "triggered")
    jsm_expected = status or ("resolved" if scenario.resolved_on.get(incident) == "jsm" else "triggered")
    if ticket["state"] not in SN_STATE[sn_status]:
        problems.append(f"{incident}: {label} {sn_status} but {ticket['number']} state {ticket['state']}")
    jsm_status = issue["fields"]["status"]["name"]
    if jsm_status not in JSM_STATUS[jsm_expected]:
        problems.append(f"{incident}: {label} {jsm_expected} but {issue['key']} is {jsm_status}")
    journal = " ".join(row["value"] for row in world.sn.journal(ticket["sys_id"]))
    comments = " ".join(comment["body"] for comment in world.jsm.comments(issue["key"]))
    for text in scenario.responder_notes.get(incident, []):
        if text not in journal or text not in comments:
            problems.append(f"{incident}: a responder note is missing on a desk")
    if world.source.note_text is None:
        return problems  # the tool takes no notes (incident.io): the desks link back through their fields
    notes = world.source.notes(world.src, incident)
    for text in scenario.desk_comments.get(incident, []):
        if not any(text in note for note in notes):
            problems.append(f"{incident}: desk comment {text!r} missing in {label}")
    for number in (ticket["number"], issue["key"]):
        if not any(number in note and MARKER_PREFIX in note for note in notes):
            problems.append(f"{incident}: no note in {label} linking {number}")
    resolved_on = scenario.resolved_on.get(incident)
    if world.source.chat and resolved_on:
        number = ticket["number"] if resolved_on == "servicenow" else issue["key"]
        if not any(number in note and ("Resolved" in note or "Done" in note) for note in notes):
            problems.append(f"{incident}: the resolve of {number} was not announced in the channel")
    return problems


def desk_counts(world: World, scenario: Scenario) -> dict[str, dict[str, int]]:
    """Per desk: tickets linked to the demo's incidents, duplicates, resolves and comments made there."""
    counts = {}
    for desk, find in (("servicenow", world.sn_tickets), ("jsm", world.jsm_issues)):
        found = [len(find(incident)) for incident in scenario.incidents]
        counts[desk] = {
            "tickets": sum(1 for n in found if n), "duplicates": sum(n - 1 for n in found if n > 1),
            "resolved_from_desk": sum(1 for where in scenario.resolved_on.values() if where == desk),
        }
    return counts
