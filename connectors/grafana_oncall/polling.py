"""Catch-up polls of Grafana OnCall alert groups, an API with no "updated since" filter.

``GET /api/v1/alert_groups/`` filters on ``started_at`` only and its items carry no ``updated_at``, so
each poll reads every alert group started in the catch-up window (every page) and tells the changed
ones by a version: a digest of the state-bearing fields (state, the acknowledge / silence / resolve
stamps and users, title, labels) and of the resolution notes. The versions of the last poll travel in
the cursor, which is the bridge's opaque, durable poll position committed together with the changes:
``{"at": <iso>, "seen": {<alert group id>: <version>}}``. A group is emitted when its version differs
from the one remembered, with event id ``poll:<id>:<previous>><current>``: a replayed poll repeats the
ids (the inbox absorbs them), while a group going back to an earlier state (firing, acknowledged,
firing again) gets a new id each time, because acknowledge / resolve / silence stamps make every
intermediate version unique.

Resolution notes fire no webhook, so they are read here: one request per alert group that is still
open, changed since the last poll, or resolved less than `NOTES_GRACE` before it. [!] A note added to
a group resolved longer ago than that is not seen until the group changes again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bridge.model import Change, TimelineEntry, format_time, parse_time
from connectors.base import PollResult
from connectors.grafana_oncall.webhooks import normalise_labels

if TYPE_CHECKING:
    from connectors.grafana_oncall.connector import GrafanaOncallConnector

log = logging.getLogger(__name__)

NOTES_GRACE = timedelta(hours=1)
#: The window's end lies this far after `now`: the filter has one-second resolution and OnCall's clock
#: may run ahead of ours; a group "from the future" would otherwise wait for the next poll.
AHEAD = timedelta(minutes=5)
#: Fields whose change is news. alerts_count and last_alert are left out: a noisy group gets new alerts
#: all the time, and the bridge tracks none of that.
VERSION_FIELDS = ("state", "created_at", "acknowledged_at", "acknowledged_by", "silenced_at", "resolved_at",
                  "resolved_by", "title", "integration_id")


def started_at_range(start: datetime, end: datetime) -> str:
    """The ``started_at`` filter value: two UTC times ``%Y-%m-%dT%H:%M:%S`` joined by ``_``."""
    utc = [moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") for moment in (start, end)]
    return "_".join(utc)


@dataclass
class PollMemory:
    """What the previous poll saw: when it ran and each alert group's version."""

    at: datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, cursor: str | None) -> PollMemory:
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            if isinstance(data, dict):
                seen = data.get("seen") if isinstance(data.get("seen"), dict) else {}
                return cls(parse_time(data.get("at")), {str(k): str(v) for k, v in seen.items()})
            return cls(parse_time(cursor))
        except ValueError:
            log.warning("unreadable Grafana OnCall poll cursor; re-reading the whole catch-up window")
            return cls()

    def dump(self) -> str:
        return json.dumps({"at": format_time(self.at), "seen": self.seen}, sort_keys=True, separators=(",", ":"))


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def base_version(group: Mapping[str, Any]) -> str:
    return _digest([[group.get(name) for name in VERSION_FIELDS], normalise_labels(group.get("labels"))])


def notes_version(entries: Sequence[TimelineEntry]) -> str:
    return _digest(sorted((entry.id, entry.text) for entry in entries))


def _needs_notes(group: Mapping[str, Any], *, changed: bool, memory: PollMemory) -> bool:
    if changed or memory.at is None or group.get("state") != "resolved":
        return True
    resolved = parse_time(group.get("resolved_at")) if isinstance(group.get("resolved_at"), str) else None
    return resolved is None or resolved >= memory.at - NOTES_GRACE


def poll_alert_groups(connector: GrafanaOncallConnector, cursor: str | None, *, now: datetime) -> PollResult:
    """Alert groups started since ``now - catch_up`` whose version moved since `cursor`, oldest first."""
    memory = PollMemory.load(cursor)
    window = started_at_range(now - connector.catch_up, now + AHEAD)
    listed = connector.list_pages("/api/v1/alert_groups/", {"started_at": window}, what="list alert groups")
    groups = {str(group.get("id")): group for group in listed}  # a group shifted across pages counts once
    seen: dict[str, str] = {}
    changes: list[Change] = []
    for record_id, group in sorted(groups.items(), key=lambda item: str(item[1].get("created_at"))):
        previous = memory.seen.get(record_id)
        base = base_version(group)
        previous_base, _, previous_notes = (previous or "").partition(".")
        entries: tuple[TimelineEntry, ...] = ()
        notes = previous_notes
        if _needs_notes(group, changed=base != previous_base, memory=memory):
            entries = tuple(connector.list_notes(record_id))
            notes = notes_version(entries)
        version = seen[record_id] = f"{base}.{notes}"
        if version == previous:
            continue
        incident = connector.incident_from_rest(group)
        changes.append(Change(
            connection=connector.name, event_type="alert_group.polled", record_id=record_id,
            event_id=f"poll:{record_id}:{previous or 'new'}>{version}", occurred_at=incident.updated_at,
            incident=incident, entries=entries, via="poll"))
    return PollResult(changes=changes, cursor=PollMemory(now, seen).dump())
