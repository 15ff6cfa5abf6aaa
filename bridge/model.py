"""The canonical model every connector maps into and out of.

Sources describe their incidents as `Incident`; desks describe their tickets as `Ticket`; what happens on
either side arrives as one `Change`. The engine never sees a vendor payload, only these frozen values, so
mapping, diffing and compliance rules stay pure functions. Vendor fields stay reachable through `raw`.

Changes are stored in the inbox as JSON (`to_dict`/`from_dict`) so a crash between receipt and
processing loses nothing and replays the exact same input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any, Literal, Mapping

IncidentStatus = Literal["triggered", "acknowledged", "resolved"]
INCIDENT_STATUSES: tuple[str, ...] = ("triggered", "acknowledged", "resolved")

#: Canonical incident attributes compared to decide whether a source change is new or an echo.
TRACKED_ATTRIBUTES: tuple[str, ...] = (
    "title", "description", "status", "urgency", "priority", "service", "assignees", "escalation_level",
)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (the only clock the model knows)."""
    return datetime.now(timezone.utc)


def parse_time(value: str | datetime | None) -> datetime | None:
    """Parse an ISO 8601 time (``Z`` or offset) into an aware UTC datetime; naive input is taken as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def format_time(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix, the form used in the store, audit trail and exports."""
    if value is None:
        return None
    if value.tzinfo is None:  # the store hands back naive UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class TimelineEntry:
    """One line of an incident's story: a note, a status change, a desk comment.

    `kind` says what it is (``note``, ``status``, ``work_note``, ``comment``, ...). `author` is a
    person's display name or e-mail where the tool gives one. `marker` is the bridge's own tag when the
    bridge wrote the entry, which is how echoes are recognised on the way back.
    """

    id: str
    at: datetime
    kind: str
    text: str
    author: str | None = None
    public: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = format_time(self.at)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimelineEntry:
        return cls(**{**data, "at": parse_time(data["at"])})


@dataclass(frozen=True)
class Incident:
    """A responder tool's incident, in the bridge's own words.

    `status` is one of ``triggered``, ``acknowledged``, ``resolved``. `priority` keeps the tool's name
    (``P1``..``P5`` in PagerDuty); `urgency` is ``high`` or ``low``. `raw` is the vendor object as
    received, for custom mappings (``incident.raw.escalation_policy.summary`` in a template).
    """

    source: str
    id: str
    title: str
    status: str
    created_at: datetime
    updated_at: datetime
    number: str | None = None
    description: str = ""
    urgency: str | None = None
    priority: str | None = None
    service: str | None = None
    assignees: tuple[str, ...] = ()
    escalation_level: int | None = None
    url: str | None = None
    resolved_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    def tracked(self) -> dict[str, Any]:
        """The attributes whose change is news (see `TRACKED_ATTRIBUTES`), as plain JSON values."""
        values = {name: getattr(self, name) for name in TRACKED_ATTRIBUTES}
        values["assignees"] = list(self.assignees)
        return values

    def with_attributes(self, **changes: Any) -> Incident:
        """A copy with some attributes replaced (used when the bridge itself changed the source)."""
        if "assignees" in changes:
            changes["assignees"] = tuple(changes["assignees"])
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["assignees"] = list(self.assignees)
        data["raw"] = dict(self.raw)
        for name in ("created_at", "updated_at", "resolved_at"):
            data[name] = format_time(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Incident:
        values = dict(data)
        for name in ("created_at", "updated_at", "resolved_at"):
            values[name] = parse_time(values.get(name))
        values["assignees"] = tuple(values.get("assignees") or ())
        return cls(**values)


@dataclass(frozen=True)
class Ticket:
    """A desk record (ServiceNow incident, JSM issue) as last read.

    `fields` holds the desk's own raw field values as strings (``state = "6"``), references reduced to
    their value: everything the bridge compares (echoes, conflicts, what it last saw) compares these.
    `display` is how the desk shows a field, where the desk said so and it differs from the raw value
    (a reference's name such as ``assignment_group = "Network"``, a choice's label): words for people,
    never compared. `updated_by` is the desk user who made the last change: the integration user's own
    writes are recognised by it.
    """

    connection: str
    id: str
    number: str
    url: str
    fields: Mapping[str, str]
    updated_at: datetime
    updated_by: str | None = None
    display: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "connection": self.connection, "id": self.id, "number": self.number, "url": self.url,
            "fields": dict(self.fields), "updated_at": format_time(self.updated_at),
            "updated_by": self.updated_by,
        }
        if self.display:  # desks without display values keep the JSON they always had
            data["display"] = dict(self.display)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ticket:
        return cls(**{**data, "updated_at": parse_time(data["updated_at"])})


@dataclass(frozen=True)
class RecordRef:
    """Where a write landed: the desk or source record's id, human number and browser link."""

    id: str
    number: str
    url: str


@dataclass(frozen=True)
class Change:
    """One thing that happened on one side: the unit the inbox stores and the engine processes.

    `event_id` is stable across redeliveries (PagerDuty's ``X-Webhook-Id``, a poll's record version) and
    de-duplicates the inbox. `record_id` orders processing: changes of one record run in arrival order.
    A source change carries `incident`; a desk change carries `ticket`. `entries` are timeline lines
    that came with the change (a note, the desk's new journal entries).
    """

    connection: str
    event_id: str
    event_type: str
    record_id: str
    occurred_at: datetime
    incident: Incident | None = None
    ticket: Ticket | None = None
    entries: tuple[TimelineEntry, ...] = ()
    actor: str | None = None
    via: str = "webhook"

    def to_dict(self) -> dict[str, Any]:
        return {
            "connection": self.connection, "event_id": self.event_id, "event_type": self.event_type,
            "record_id": self.record_id, "occurred_at": format_time(self.occurred_at),
            "incident": self.incident.to_dict() if self.incident else None,
            "ticket": self.ticket.to_dict() if self.ticket else None,
            "entries": [entry.to_dict() for entry in self.entries],
            "actor": self.actor, "via": self.via,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            connection=data["connection"], event_id=data["event_id"], event_type=data["event_type"],
            record_id=data["record_id"], occurred_at=parse_time(data["occurred_at"]),
            incident=Incident.from_dict(data["incident"]) if data.get("incident") else None,
            ticket=Ticket.from_dict(data["ticket"]) if data.get("ticket") else None,
            entries=tuple(TimelineEntry.from_dict(e) for e in data.get("entries") or ()),
            actor=data.get("actor"), via=data.get("via", "webhook"),
        )
