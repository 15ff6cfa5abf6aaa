"""The desk's decisions guard: read a ticket before writing it, so a newer desk decision is not overwritten.

Last writer wins for the ticket's state and two-way fields. ServiceNow and Jira have no conditional write,
so the bridge reads the ticket right before writing it, and what the desk decided later is left out of the
write (`desk_newer`; `desk_decisions` for a ticket found rather than created). The write follows that read at
once (`prompt`), or a desk decision made meanwhile would be overwritten by a write decided on the older read.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from bridge.diff import whole_second
from bridge.model import Ticket, format_time, parse_time
from bridge.runtime import Runtime
from bridge.store import Link, OutboxOp
from connectors.base import Connector


def desk_newer(runtime: Runtime, connector: Connector, op: OutboxOp, link: Link,
               payload: dict[str, Any], fields: dict[str, str]) -> tuple[list[dict[str, Any]], Ticket | None]:
    """Last writer wins for the ticket's state and two-way fields: read the ticket before overwriting.

    The op was planned from a source change at ``payload["at"]``. A field the desk has changed since
    the bridge last wrote it, in a record updated later than that source change, keeps the desk's value:
    it is left out of this write, the ticket is read again afterwards so the decision flows back, and
    each such decision is returned for the audit trail, with the ticket as read (None when nothing was
    guarded and nothing read).
    """
    route = runtime.route(op.route)
    if route is None or not payload.get("at") or not link.target_id:
        return [], None
    guarded = guarded_fields(route, fields)
    source_at = parse_time(payload["at"])
    if not guarded or source_at is None:
        return [], None
    current = connector.get(link.target_id)
    written = link.load("target_written")  # what the bridge itself last put there (not what it last read)
    conflicts = []
    state_field = route.mapping.back.state_field
    desk_second, source_second = whole_second(current.updated_at), whole_second(source_at)
    for name in guarded:
        desk_value = current.fields.get(name)
        if desk_value in (written.get(name), fields[name]):
            continue  # the desk has not changed it since the bridge wrote it
        # Ties: a desk state decision always flows back (see [back]), so it must also stand here; for
        # two-way fields the source wins a tie, as it does on the way back (FieldTimes).
        if desk_second < source_second or (desk_second == source_second and name != state_field):
            continue
        conflicts.append({"field": name, "source_value": fields.pop(name), "desk_value": desk_value,
                          "winner": "desk", "source_at": format_time(source_at),
                          "desk_at": format_time(current.updated_at)})
    return conflicts, current


def desk_decisions(runtime: Runtime, connector: Connector, op: OutboxOp, record_id: str,
                   fields: dict[str, str]) -> list[dict[str, Any]]:
    """The state and two-way fields an existing ticket shows otherwise than this create would set them,
    taken out of `fields` so the create does not write over them, each as a decision for the audit trail.

    The ticket was found rather than created: an earlier try whose answer was lost, or one made before
    this store. Values count as the desk's only when someone else than the bridge changed the ticket
    last (a new JSM issue shows its workflow's initial status, which is no decision). A desk agent may
    have acted on it meanwhile, while the bridge could not yet tell the
    ticket was linked (so that desk change was not taken in); it stands, and the ticket is read again
    after the link is made (see `bridge.outbox._record_success`) so the decision flows back like any other.
    """
    route = runtime.route(op.route)
    if route is None:
        return []
    guarded = guarded_fields(route, fields)
    if not guarded:
        return []
    current = connector.get(record_id)
    integration_user = runtime.integration_user(op.connection)
    if integration_user is None or current.updated_by in (None, integration_user):
        return []  # the bridge wrote it last (a desk's initial status, its own moves): no desk decision
    return [{"field": name, "source_value": fields.pop(name), "desk_value": current.fields[name], "winner": "desk",
             "desk_at": format_time(current.updated_at), "reason": "the ticket was found, not created, and "
             "the desk had changed it"}
            for name in guarded if name in current.fields and current.fields[name] != fields[name]]


def guarded_fields(route: Any, fields: dict[str, str]) -> list[str]:
    """The fields of a write the desk may have decided otherwise: its state and the two-way fields."""
    return [name for name in fields if name == route.mapping.back.state_field
            or (name in route.mapping.field_names and route.mapping.owner(name) == "both")]


def prompt(session: Any) -> Any:
    """The session's no-wait mode for a write right after its guard's read (a plain session has none)."""
    prompt = getattr(session, "prompt", None)
    return prompt() if prompt is not None else nullcontext()
