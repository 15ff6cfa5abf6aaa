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

from dataclasses import dataclass, field, replace
from datetime import datetime
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
    conflicts: list[dict[str, Any]] = field(default_factory=list)


#: Key in a link's ``target_written`` holding the source time of the bridge's last write (never a field name:
#: desk field names cannot start with ``@``).
WRITTEN_SOURCE_AT = "@source_at"
#: ... and the state the desk showed before the bridge last wrote the state.
WRITTEN_STATE_BEFORE = "@state_before"
#: Key prefix in a link's ``target_seen`` for how the desk showed an announced field when last seen:
#: ``{"value": <raw>, "display": <name>}``, so a later change can name the value it replaced. Kept with
#: its raw value because ``target_seen[field]`` also moves on the bridge's own writes (as sent), and a
#: name is only good for the value it was read with.
SEEN_DISPLAY = "@display:"


def whole_second(moment: datetime) -> datetime:
    """Timestamps compared for last-writer-wins, at the precision every system has (ServiceNow and
    PagerDuty's REST API keep whole seconds); within one second the source wins."""
    return moment.replace(microsecond=0)


class FieldTimes:
    """When each side last changed a two-way field, and when it was last synced: last writer wins.

    Keys are desk field names. Times are the changes' own timestamps (the source event's time, the
    desk record's update time), kept in the link so the decision is the same whatever the order in
    which the bridge happens to read the two sides.
    """

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self.data: dict[str, str] = dict(data or {})

    def _get(self, key: str) -> datetime | None:
        value = self.data.get(key)
        return datetime.fromisoformat(value) if value else None

    def decide(self, name: str, *, side: str, at: datetime) -> dict[str, Any] | None:
        """None when nothing competes with this change of `name`; else the conflict and its winner.

        A change competes with the other side's change when that one is not synced yet, or was synced
        from a change at least as recent as this one. Ties go to the source: the responders' tool is
        where the incident is being worked.
        """
        other = "desk" if side == "source" else "source"
        theirs, synced = self._get(f"{other}:{name}"), self._get(f"sync:{name}")
        synced_by = self.data.get(f"sync_by:{name}")
        self.data[f"{side}:{name}"] = at.isoformat()
        if synced is not None and synced_by == other and (
                whole_second(at) < whole_second(synced)
                or (whole_second(at) == whole_second(synced) and other == "source")):
            rival = synced  # the other side's newer change already went through
        elif theirs is not None and (synced is None or theirs > synced):
            rival = theirs  # the other side changed it too and that is not synced yet
        else:
            return None
        mine, theirs_s = whole_second(at), whole_second(rival)
        mine_wins = mine > theirs_s or (mine == theirs_s and side == "source")
        return {"winner": side if mine_wins else other, f"{side}_at": at.isoformat(),
                f"{other}_at": rival.isoformat()}

    def synced(self, name: str, *, side: str, at: datetime) -> None:
        self.data[f"sync:{name}"] = at.isoformat()
        self.data[f"sync_by:{name}"] = side


def plan_create(mapping: CompiledMapping, incident: Incident,
                entries: tuple[TimelineEntry, ...]) -> Plan:
    """A first change for an unlinked incident: one create op carrying every mapped field and the notes."""
    result = apply(mapping, incident, creating=True)
    notes, echoes = _notes(mapping, incident, entries, seen=())
    payload = {"fields": result.fields, "note": notes}
    return Plan("create", [PlannedOp("target", "create", payload)], echoes=echoes,
                warnings=list(result.warnings), seen_entries=[e.id for e in entries])


def plan_source_update(mapping: CompiledMapping, *, before: Incident, after: Incident,
                       entries: tuple[TimelineEntry, ...], seen_entries: tuple[str, ...] | list[str],
                       times: FieldTimes | None = None, at: datetime | None = None,
                       desk_values: Mapping[str, str] | None = None) -> Plan:
    """A later change of a linked incident: changed mapped fields and new timeline lines, in one update.

    For ``owner = "both"`` fields the desk may have changed the field since it was last synced: then the
    later of the two changes wins (`times`, the change's own time `at`), and the decision is a conflict
    entry in the plan for the audit trail.
    """
    new = apply(mapping, after, creating=False)
    try:
        old_fields = apply(mapping, before, creating=False).fields
    except MappingError:
        old_fields = {}  # the old state no longer maps (mapping edited): treat every field as changed
    changed = {name: value for name, value in new.fields.items() if old_fields.get(name) != value}
    conflicts: list[dict[str, Any]] = []
    if times is not None and at is not None:
        for name in [n for n in changed if mapping.owner(n) == "both"]:
            verdict = times.decide(name, side="source", at=at)
            if verdict is not None:
                conflicts.append({"field": name, "source_value": changed[name],
                                  "desk_value": (desk_values or {}).get(name), **verdict})
                if verdict["winner"] == "desk":
                    del changed[name]
                    continue
            times.synced(name, side="source", at=at)
    notes, echoes = _notes(mapping, after, entries, seen=seen_entries)
    fresh = [e.id for e in entries if e.id not in seen_entries]
    if not changed and not notes:
        return Plan("echo" if echoes else "no-change", echoes=echoes, warnings=list(new.warnings),
                    seen_entries=fresh, conflicts=conflicts)
    payload: dict[str, Any] = {"fields": changed, "note": notes}
    if at is not None:
        payload["at"] = at.isoformat()  # the source change's own time: the desk may have changed since
    return Plan("update", [PlannedOp("target", "update", payload)], echoes=echoes,
                warnings=list(new.warnings), seen_entries=fresh, conflicts=conflicts)


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
                     source_status: str, integration_user: str | None, stale: bool = False,
                     source: Incident | None = None, times: FieldTimes | None = None,
                     written_at: datetime | None = None, target_written: Mapping[str, str] | None = None) -> Plan:
    """What a desk change means for the source: transitions per ``[back]`` and desk notes as source notes.

    A `stale` snapshot (read before the bridge's own last write to the ticket) only contributes its
    journal entries: its state may predate that write and must not be read as a desk decision, so the
    ticket is read again (a refresh) and that fresh read decides.
    """
    back = mapping.back
    ops: list[PlannedOp] = []
    conflicts: list[dict[str, Any]] = []
    state = ticket.fields.get(back.state_field)
    previous = target_seen.get(back.state_field)
    # The bridge's own write, seen after a desk decision was processed from an older snapshot (a late
    # source change overwrote it): last written by the integration user, holding what the bridge wrote.
    own_write = bool(integration_user) and ticket.updated_by == integration_user \
        and state == (target_written or {}).get(back.state_field)
    state_moved = state is not None and previous is not None and state != previous and not own_write
    if stale and (state_moved or _two_way_moved(back, ticket=ticket, target_seen=target_seen)):
        # Maybe a desk decision, maybe the value before our own write: read the ticket again. Even when
        # the bridge wrote last: a desk decision made just before that write shows in the same snapshot
        # with the bridge as its last writer, and the next poll may never read it again. The same holds
        # for a two-way field ([routes.back.fields]) the desk shows otherwise than the bridge last saw.
        what = f"state {state}" if state_moved else "a two-way field"
        ops.append(PlannedOp("target", "refresh", {"reason": f"{what} read before the bridge's last write"}))
    elif state_moved:
        status = _back_status(back, state=state, previous=previous, source_status=source_status)  # type: ignore[arg-type]
        if status:
            ops.append(PlannedOp("source", "transition", {"status": status, "desk_state": state}))
    if not stale:
        ops += _reassignment(back, ticket=ticket, target_seen=target_seen)
    if not stale and source is not None:
        updates, conflicts = _back_fields(back, ticket=ticket, target_seen=target_seen, source=source,
                                          times=times or FieldTimes(), written_at=written_at)
        if updates:
            ops.append(PlannedOp("source", "update", {"fields": updates}))
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
    return Plan(decision, ops, echoes=echoes, seen_entries=fresh, conflicts=conflicts)


def state_news_only(mapping: CompiledMapping, ticket: Ticket,
                    target_seen: Mapping[str, Any]) -> tuple[Ticket, PlannedOp | None]:
    """A snapshot whose state decision counts although it was read before the bridge's last write (a
    late desk decision), seen as only that decision: every other field is shown as the bridge last saw
    it. Its other values may be from before that write (a priority the bridge has just replaced) and
    must not flow back as desk edits; where they differ, the ticket is read again (the refresh returned)
    and that fresh read decides, as for a stale snapshot.
    """
    state_field = mapping.back.state_field
    held = {name: target_seen[name] for name, value in ticket.fields.items()
            if name != state_field and name in target_seen and isinstance(target_seen[name], str)
            and target_seen[name] != value}
    if not held:
        return ticket, None
    view = replace(ticket, fields={**ticket.fields, **held})
    reason = f"{', '.join(sorted(held))} read before the bridge's last write"
    return view, PlannedOp("target", "refresh", {"reason": reason})


def _reassignment(back: Any, *, ticket: Ticket, target_seen: Mapping[str, str]) -> list[PlannedOp]:
    """A desk reassignment told to the responders (a note) or escalating the incident, per ``[back]``."""
    value, previous = ticket.fields.get(back.assignment_field), target_seen.get(back.assignment_field)
    if back.reassignment == "none" or value is None or previous is None or value == previous:
        return []
    if back.reassignment == "escalate":
        return [PlannedOp("source", "escalate", {"desk_value": value})]
    shown = ticket.display.get(back.assignment_field) or value  # the group's name, not its sys_id
    return [PlannedOp("source", "note", {"text": f"{ticket.number} was reassigned on the desk to {shown or '(nobody)'}"})]


def _two_way_moved(back: Any, *, ticket: Ticket, target_seen: Mapping[str, str]) -> bool:
    """Whether a field that flows back (``[routes.back.fields]``) differs from what the bridge last saw."""
    for rule in back.fields.values():
        value, seen = ticket.fields.get(rule.from_), target_seen.get(rule.from_)
        if value is not None and seen is not None and value != seen:
            return True
    return False


def _back_fields(back: Any, *, ticket: Ticket, target_seen: Mapping[str, str], source: Incident,
                 times: FieldTimes, written_at: datetime | None) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Desk edits of two-way fields as source attribute updates, after the last-writer-wins check.

    A desk value that differs from what the bridge last wrote was set after that write, whatever the
    desk's (second-resolution) clock says: the edit's time is at least the bridge's last write.
    """
    changed_at = max(ticket.updated_at, written_at) if written_at else ticket.updated_at
    updates: dict[str, str] = {}
    conflicts: list[dict[str, Any]] = []
    for attribute, rule in back.fields.items():
        desk_field = rule.from_
        value = ticket.fields.get(desk_field)
        if value is None or target_seen.get(desk_field) in (None, value):
            continue  # unknown before, or unchanged since the bridge last saw or wrote it
        mapped = rule.map.get(value, rule.default if rule.map else value)
        if mapped is None:
            continue
        verdict = times.decide(desk_field, side="desk", at=changed_at)
        if verdict is not None:
            conflicts.append({"field": desk_field, "desk_value": value,
                              "source_value": str(getattr(source, attribute, None)), **verdict})
            if verdict["winner"] == "source":
                continue
        times.synced(desk_field, side="desk", at=changed_at)
        if str(getattr(source, attribute, None)) != mapped:
            updates[attribute] = mapped
    return updates, conflicts


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


def observed_fields(mapping: CompiledMapping, ticket: Ticket) -> dict[str, Any]:
    """The desk's current values of the fields this route maps (journal fields excluded), raw; plus, for
    the ``[back] announce`` fields the desk showed by another name, that name (`SEEN_DISPLAY`)."""
    notes_field = mapping.spec.notes.field
    names = [*mapping.field_names, *mapping.back.announce]
    seen: dict[str, Any] = {name: ticket.fields[name] for name in names
                            if name in ticket.fields and name != notes_field and name not in ("work_notes", "comments")}
    for name in mapping.back.announce:
        if name in seen and ticket.display.get(name):
            seen[f"{SEEN_DISPLAY}{name}"] = {"value": seen[name], "display": ticket.display[name]}
    return seen


def _seen_display(target_seen: Mapping[str, Any], name: str, value: str) -> str | None:
    """The name the desk showed for `value` of `name` when the bridge last saw it, if it was that value."""
    seen = target_seen.get(f"{SEEN_DISPLAY}{name}")
    if isinstance(seen, Mapping) and seen.get("value") == value and seen.get("display"):
        return str(seen["display"])
    return None


def plan_announcement(mapping: CompiledMapping, *, ticket: Ticket, target_seen: Mapping[str, Any],
                      target_written: Mapping[str, str]) -> PlannedOp | None:
    """A chat channel's view of a desk change: the ``[back] announce`` fields that changed, in words.

    A value the bridge itself wrote (it is in `target_written`) is not news to the channel; a field never
    seen before has no "before" to announce. Which fields changed is decided on raw values; the words
    are the route's ``[back.labels]``, else the desk's display value (a reference's name rather than its
    sys_id: the ticket's for the new value, the one seen with the old value for the old), else the raw
    value. A change nobody could see in those words (a name the bridge wrote by name, read back as the
    record it resolved to) is not announced.
    """
    back = mapping.back
    changes = []
    for name in back.announce:
        new, old = ticket.fields.get(name), target_seen.get(name)
        if new is None or old is None or new == old or target_written.get(name) == new:
            continue
        labels = back.labels.get(name, {})
        shown_new = labels[new] if new in labels else ticket.display.get(name) or new
        shown_old = labels[old] if old in labels else _seen_display(target_seen, name, old) or old
        if shown_new == shown_old or (shown_new != new and target_written.get(name) == shown_new):
            continue
        changes.append({"field": name, "label": name.replace("_", " ").capitalize(),
                        "old": shown_old, "new": shown_new})
    if not changes:
        return None
    return PlannedOp("source", "announce", {"number": ticket.number, "url": ticket.url, "changes": changes,
                                            "actor": ticket.updated_by})
