"""The demo's people and its judge: responders in their tool (PagerDuty by default, any `DemoSource`),
agents on two desks, and the check that both desks and the tool agree, incident by incident (what the
demo's summary is measured from)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from bridge.demo_sources import DemoSource
from bridge.errors import MappingError
from bridge.runtime import Runtime
from bridge.status import queue_depths
from connectors.base import MARKER_PREFIX
from connectors.jsm.normalise import flat
from connectors.jsm.simulator import JsmSimulator
from connectors.servicenow.connector import raw_value
from connectors.servicenow.simulator import ServiceNowSimulator
from mappings.engine import CompiledMapping, compile_mapping, explain
from mappings.schema import MappingSpec, load_preset

SERVICES = ("Payments API", "Checkout Web", "Search", "Identity", "Data Platform")
TITLES = ("Error rate above 5% on {s}", "Latency p99 over SLO on {s}", "{s} health check failing",
          "Disk filling on {s} primary", "Elevated 5xx from {s} upstream", "Queue backlog growing in {s}")
RESPONDERS = ("alice", "bob", "carol", "dave")
SN_STATE = {"triggered": {"1"}, "acknowledged": {"2"}, "resolved": {"6", "7"}}
JSM_STATUS = {"triggered": {"To Do"}, "acknowledged": {"In Progress"}, "resolved": {"Resolved", "Done"}}
DESK_AGENT, JSM_AGENT = "jane.doe", "agent@example.com"
DESKS = ("servicenow", "jsm")  # the desks' connection names in the demo's (and the chaos bench's) config
#: Incident fields a desk's priority is mapped from (`from = ...`): the tool's priority, and its urgency,
#: which some tools derive from it (Rootly: the severity's level).
PRIORITY_PATHS = ("incident.priority", "incident.urgency")


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
    mappings = desk_mappings(world.source.slug, getattr(runtime, "routes", None) or ())
    for incident in scenario.incidents:
        problems += _incident_problems(world, scenario, incident, mappings)
    return problems


def desk_mappings(slug: str, routes: Any = ()) -> dict[str, CompiledMapping]:
    """Each desk's mapping for the tool: its route in the running config (`routes`), else the preset the
    demo and the chaos bench configure for it (``<slug>-servicenow``, ``<slug>-jsm``)."""
    mappings = {route.target: route.mapping for route in routes
                if route.source == slug and route.target in DESKS and route.enabled}
    return {desk: mappings.get(desk) or _preset_mapping(f"{slug}-{desk}", f"{slug}-to-{desk}") for desk in DESKS}


@cache
def _preset_mapping(preset: str, route: str) -> CompiledMapping:
    return compile_mapping(route, MappingSpec.model_validate(load_preset(preset)))


def _incident_problems(world: World, scenario: Scenario, incident: str,
                       mappings: dict[str, CompiledMapping] | None = None) -> list[str]:
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
    problems += _priority_problems(world, incident, ticket, issue, mappings or desk_mappings(world.source.slug))
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


def _priority_problems(world: World, incident: str, ticket: dict[str, Any], issue: dict[str, Any],
                       mappings: dict[str, CompiledMapping]) -> list[str]:
    """The tool's priority now, through each desk's mapping (the engine's own evaluation, as the daemon
    writes an update), against the desk's field. Only fields mapped from the priority (`PRIORITY_PATHS`)
    and still the source's after creation (owner=target fields are the desk's once created) are checked.
    Responders are the only ones changing priority in the demo, so the tool is the truth."""
    if not world.source.priorities:
        return []  # chat: no priority to pass on, the desk triages
    current = world.source.incident_of(world.src, incident)
    if current is None:
        return []
    label, problems = world.source.label, []
    sides = (("servicenow", ticket["number"], lambda name: raw_value(ticket.get(name))),
             ("jsm", issue["key"], lambda name: flat(issue["fields"].get(name))))
    for desk, number, read in sides:
        mapping = mappings[desk]
        try:
            rows = explain(mapping, current, creating=False)
        except MappingError as exc:
            problems.append(f"{incident}: its {label} priority {current.priority!r} does not map to {desk}: {exc}")
            continue
        for row in rows:
            if row.value is None or mapping.spec.fields[row.field].from_ not in PRIORITY_PATHS:
                continue
            if read(row.field) != row.value:
                problems.append(f"{incident}: {label} priority {current.priority!r} (urgency {current.urgency!r}) "
                                f"maps to {row.field} {row.value!r} but {number} has {read(row.field)!r}")
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
