"""The verdict of bench/chaos.py: both sides compared record by record, every copy counted.

`convergence_problems` (bridge/demo_scenario.py) says whether the three systems tell the same story yet;
this judge is stricter and sorts what differs into the four figures of the verdict line:

- lost: an incident without a ticket on a desk, a responder note missing from a desk, a desk comment or a
  ticket's backlink note missing in the source, a desk resolve the source does not show;
- duplicates: every extra ticket for an incident on a desk, every extra copy of a note (a responder note
  must be in each desk's journal exactly once, a desk comment and a backlink exactly once in the source);
- diverged: a desk state that disagrees with the source's status;
- audit: `verify_store` over the shared store: ``ok`` or the first bad entry.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bridge.audit_verify import verify_store
from bridge.demo_scenario import JSM_STATUS, SN_STATE, Scenario, World
from bridge.store import Store
from connectors.base import MARKER_PREFIX


@dataclass
class Verdict:
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    audit: str = "ok"
    extra_copies: int = 0  # duplicates counts copies, not lines: 3 tickets for one incident are 2 duplicates

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicates or self.diverged) and self.audit == "ok"

    def line(self) -> str:
        return (f"lost={len(self.lost)} duplicates={self.extra_copies} diverged={len(self.diverged)} "
                f"audit={self.audit}")

    def as_dict(self) -> dict[str, Any]:
        return {"lost": len(self.lost), "duplicates": self.extra_copies, "diverged": len(self.diverged),
                "audit": self.audit, "details": {"lost": self.lost, "duplicates": self.duplicates,
                                                 "diverged": self.diverged}}


class Sides:
    """Both desks indexed by correlation id once: the simulators' own finders scan every record per call."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.tickets: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.issues: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in world.sn.records():
            self.tickets[record["correlation_id"]].append(record)
        for issue in world.jsm.issues():
            correlation = (issue.get("properties", {}).get("itsm-bridge") or {}).get("correlation_id")
            if correlation:
                self.issues[correlation].append(issue)

    def of(self, incident: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        key = f"{self.world.source.slug}:{incident}"
        return self.tickets.get(key, []), self.issues.get(key, [])


def judge(world: World, scenario: Scenario, store: Store) -> Verdict:
    """Compare every incident of `scenario` on all three systems, then verify the audit chain."""
    verdict = differences(world, scenario)
    checked = verify_store(store)
    if not checked.ok:
        verdict.audit = f"bad seq {checked.bad_seq} ({checked.reason})"
    return verdict


def differences(world: World, scenario: Scenario) -> Verdict:
    """What differs between the three systems, incident by incident (the audit chain not checked)."""
    verdict = Verdict()
    sides = Sides(world)
    for incident in scenario.incidents:
        _judge_incident(world, scenario, sides, incident, verdict)
    return verdict


def without_tickets(world: World, incidents: list[str]) -> list[str]:
    """The incidents not yet on both desks (what `missing_tickets` tells, in one pass over each desk)."""
    sides = Sides(world)
    return [incident for incident in incidents if not all(sides.of(incident))]


def _judge_incident(world: World, scenario: Scenario, sides: Sides, incident: str, verdict: Verdict) -> None:
    label = world.source.label
    tickets, issues = sides.of(incident)
    status = world.source.status(world.src.incident(incident))
    for desk, found in (("ServiceNow", tickets), ("JSM", issues)):
        if not found:
            verdict.lost.append(f"{incident}: no {desk} ticket")
        elif len(found) > 1:
            _duplicate(verdict, f"{incident}: {len(found)} {desk} tickets", len(found))
    if incident in scenario.resolved_on and status != "resolved":
        verdict.lost.append(f"{incident}: resolved on {scenario.resolved_on[incident]} but {status} in {label}")
    notes = world.source.notes(world.src, incident)
    if tickets:
        ticket = tickets[0]
        if ticket["state"] not in SN_STATE[status]:
            verdict.diverged.append(f"{incident}: {label} {status} but {ticket['number']} state {ticket['state']}")
        journal = [row["value"] for row in world.sn.journal(ticket["sys_id"])]
        _responder_notes(verdict, scenario, incident, f"{ticket['number']} journal", journal)
        _backlink(verdict, incident, ticket["number"], notes, label)
    if issues:
        issue = issues[0]
        jsm_status = issue["fields"]["status"]["name"]
        if jsm_status not in JSM_STATUS[status]:
            verdict.diverged.append(f"{incident}: {label} {status} but {issue['key']} is {jsm_status}")
        comments = [comment["body"] for comment in world.jsm.comments(issue["key"])]
        _responder_notes(verdict, scenario, incident, f"{issue['key']} comments", comments)
        _backlink(verdict, incident, issue["key"], notes, label)
    for text in scenario.desk_comments.get(incident, []):
        _exactly_once(verdict, f"{incident}: desk comment {text!r} in {label}", notes, text)


def _responder_notes(verdict: Verdict, scenario: Scenario, incident: str, where: str, entries: list[str]) -> None:
    for text in scenario.responder_notes.get(incident, []):
        _exactly_once(verdict, f"{incident}: responder note {text!r} in {where}", entries, text)


def _backlink(verdict: Verdict, incident: str, number: str, notes: list[str], label: str) -> None:
    """The note telling responders where the ticket is (bridge/outbox.py `_queue_backlink`): exactly one."""
    backlinks = [note for note in notes if f"ticket {number} " in note and "this incident" in note
                 and MARKER_PREFIX in note]
    if not backlinks:
        verdict.lost.append(f"{incident}: no backlink note for {number} in {label}")
    elif len(backlinks) > 1:
        _duplicate(verdict, f"{incident}: {len(backlinks)} backlink notes for {number} in {label}", len(backlinks))


def _exactly_once(verdict: Verdict, what: str, entries: list[str], text: str) -> None:
    copies = sum(entry.count(text) for entry in entries)
    if copies == 0:
        verdict.lost.append(f"{what}: missing")
    elif copies > 1:
        _duplicate(verdict, f"{what}: {copies} copies", copies)


def _duplicate(verdict: Verdict, what: str, copies: int) -> None:
    verdict.duplicates.append(what)
    verdict.extra_copies += copies - 1
