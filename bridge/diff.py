"""Planning: what one change means for the other side, as a list of ops. Pure functions, no I/O.

Source -> desk: the desk gets only the fields whose *mapped* value changed since the source's last seen
state (so a desk agent's edit to a field the source did not touch is never clobbered), plus the
responders' timeline as one work note. (What the desk showed when last read is no guide here: ops
still queued for the ticket may be about to change it.)

Desk -> source: state moves listed in the route's ``[back]`` rules become transitions, and new desk
journal entries become source notes, unless they are the bridge's own (marker or integration user).

Echoes: when the bridge changed the source itself (a desk resolve flowing back), the source's own
event announcing that change is recognised through the link's ``pending_echo`` and produces nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from bridge.errors import MappingError
from bridge.model import Incident, Ticket, TimelineEntry
from connectors.base import has_marker
from mappings.engine import CompiledMapping, apply, render_back_note, render_note


@dataclass(frozen=True)
class PlannedOp:
    """An op to queue: `side` says which connection receives it (the route's target or source)."""

    side: str
    op: str
    payload: Mapping[str, Any]


@dataclass
class Plan:
    """What to queue and how the link's memory changes. `decision` is audited as the reason."""

    decision: str
    ops: list[PlannedOp] = field(default_factory=list)
    echoes: int = 0
    warnings: list[str] = field(default_factory=list)
    seen_entries: list[str] = field(default_factory=list)


def plan_create(mapping: CompiledMapping, incident: Incident,
                entries: tuple[TimelineEntry, ...]) -> Plan:
    """A first change for an unlinked incident: one create op carrying every mapped field and the notes."""
    result = apply(mapping, incident, creating=True)
    notes, echoes = _notes(mapping, incident, entries, seen=())
    payload = {"fields": result.fields, "note": notes}
    return Plan("create", [PlannedOp("target", "create", payload)], echoes=echoes,
                warnings=list(result.warnings), seen_entries=[e.id for e in entries])


def plan_source_update(mapping: CompiledMapping, *, before: Incident, after: Incident,
                       entries: tuple[TimelineEntry, ...], seen_entries: tuple[str, ...] | list[str]) -> Plan:
    """A later change of a linked incident: changed mapped fields and new timeline lines, in one update."""
    new = apply(mapping, after, creating=False)
    try:
        old_fields = apply(mapping, before, creating=False).fields
    except MappingError:
        old_fields = {}  # the old state no longer maps (mapping edited): treat every field as changed
    changed = {name: value for name, value in new.fields.items() if old_fields.get(name) != value}
    notes, echoes = _notes(mapping, after, entries, seen=seen_entries)
    fresh = [e.id for e in entries if e.id not in seen_entries]
    if not changed and not notes:
        return Plan("echo" if echoes else "no-change", echoes=echoes, warnings=list(new.warnings),
                    seen_entries=fresh)
    payload = {"fields": changed, "note": notes}
    return Plan("update", [PlannedOp("target", "update", payload)], echoes=echoes,
                warnings=list(new.warnings), seen_entries=fresh)


def _notes(mapping: CompiledMapping, incident: Incident, entries: tuple[TimelineEntry, ...],
           *, seen: tuple[str, ...] | list[str]) -> tuple[str, int]:
    """The work note text for new timeline entries, and how many were the bridge's own echoes."""
    lines: list[str] = []
    echoes = 0
    for entry in entries:
        if entry.id in seen:
            continue
        if has_marker(entry.text):
            echoes += 1
            continue
        lines.append(render_note(mapping, incident, entry))
    return "\n".join(lines), echoes


def plan_desk_change(mapping: CompiledMapping, *, ticket: Ticket, entries: tuple[TimelineEntry, ...],
                     target_seen: Mapping[str, str], seen_entries: tuple[str, ...] | list[str],
                     source_status: str, integration_user: str | None, stale: bool = False) -> Plan:
    """What a desk change means for the source: transitions per ``[back]`` and desk notes as source notes.

    A `stale` snapshot (read before the bridge's own last write to the ticket) only contributes its
    journal entries: its state may predate that write and must not be read as a desk decision.
    """
    back = mapping.back
    ops: list[PlannedOp] = []
    state = ticket.fields.get("state")
    previous = target_seen.get("state")
    if state is not None and previous is not None and state != previous:
        if stale:
            # Maybe a desk decision, maybe the state before our own write: read the ticket again.
            ops.append(PlannedOp("target", "refresh", {"reason": f"state {state} read before the bridge's last write"}))
        else:
            status = _back_status(back, state=state, previous=previous, source_status=source_status)
            if status:
                ops.append(PlannedOp("source", "transition", {"status": status, "desk_state": state}))
    echoes = 0
    fresh: list[str] = []
    for entry in entries:
        if entry.id in seen_entries:
            continue
        fresh.append(entry.id)
        if has_marker(entry.text) or (integration_user and entry.author == integration_user):
            echoes += 1
            continue
        if _flows_back(back.notes, entry.kind):
            ops.append(PlannedOp("source", "note", {"text": render_back_note(mapping, ticket, entry),
                                                    "entry_id": entry.id}))
    decision = "back" if ops else ("echo" if echoes else "no-change")
    return Plan(decision, ops, echoes=echoes, seen_entries=fresh)


def _back_status(back: Any, *, state: str, previous: str, source_status: str) -> str | None:
    if state in back.resolve_states and source_status != "resolved":
        return "resolved"
    if back.reopen and state in back.reopen_states and previous in back.resolve_states \
            and source_status == "resolved":
        return "triggered"
    if state in back.acknowledge_states and source_status == "triggered":
        return "acknowledged"
    return None


def _flows_back(setting: str, kind: str) -> bool:
    if setting == "both":
        return kind in ("comment", "work_note")
    if setting == "comments":
        return kind == "comment"
    if setting == "work_notes":
        return kind == "work_note"
    return False


def observed_fields(mapping: CompiledMapping, ticket: Ticket) -> dict[str, str]:
    """The desk's current values of the fields this route maps (journal fields excluded)."""
    notes_field = mapping.spec.notes.field
    return {name: ticket.fields[name] for name in mapping.field_names
            if name in ticket.fields and name != notes_field and name not in ("work_notes", "comments")}
