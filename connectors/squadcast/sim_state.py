"""The Squadcast simulator's organisation: users, teams, services, incidents and their warroom notes.

Every change goes through `SimOrg` under one lock, whoever makes it (REST calls, including the bridge's
own, or the control API), and hands the v2 outgoing-webhook payload real Squadcast sends to `emit`
while the lock is held, so webhooks leave in the order of the changes. Events fired: incident.triggered,
.acknowledged (the acknowledging user becomes the assignee, as in Squadcast), .resolved, .reassigned
and incident.incident_notes_created. A priority change fires none: Squadcast has no webhook event for
it; it shows as a log line, so polls see it. The resolution reason is kept as a warroom entry of type
``resolution_reason`` [!] and fires no note event. Errors are ``{"meta": {status, error_message}}``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

APP_BASE = "https://app.squadcast.com/incident"
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
DEFAULT_SERVICES = ("Payments API", "Checkout Web", "Search", "Identity", "Data Platform")
DEFAULT_USERS = {"alice": ("Alice", "Adams"), "bob": ("Bob", "Brown"), "carol": ("Carol", "Chen"),
                 "dave": ("Dave", "Diaz"), "bridge": ("ITSM", "Bridge")}
ALERT_SOURCE = {"id": "6077f7225fdc7075e371685f", "type": "Squadcast UI", "short_name": "squadcastui"}
OPEN = ("triggered", "acknowledged")


class SimError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def body(self) -> dict[str, Any]:
        return {"meta": {"status": self.status, "error_message": self.message}}


def iso(moment: datetime | None) -> str | None:
    """Squadcast's REST time format (UTC, milliseconds)."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_ns(moment: datetime) -> str:
    """The webhook event timestamp format (nanoseconds, as Go prints them)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


@dataclass
class SimNote:
    id: str
    text: str
    author: str  # user handle
    at: datetime
    type: str = "message"


@dataclass
class SimIncident:
    id: str
    number: int
    title: str
    description: str
    service: str
    created_at: datetime
    creator: str
    assignee: dict[str, str]  # {id, name, type}
    priority: str | None = None
    status: str = "triggered"
    updated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[SimNote] = field(default_factory=list)


class SimOrg:
    def __init__(self, *, emit: Callable[[dict[str, Any]], None], seed: int = 1,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.emit, self.clock, self.lock = emit, clock, threading.RLock()
        self._random = random.Random(seed)
        self.org = {"id": self.new_id(), "name": "Example Org"}
        self.team = {"id": self.new_id(), "name": "Default Team"}
        self.users = {handle: {"id": self.new_id(), "first_name": first, "last_name": last,
                               "email": f"{handle}@example.com"} for handle, (first, last) in DEFAULT_USERS.items()}
        self.services = {name: {"id": self.new_id(), "name": name, "slug": name.lower().replace(" ", "-"),
                                "escalation_policy": {"id": self.new_id(), "name": f"{name} on-call"}}
                         for name in DEFAULT_SERVICES}
        self.squads = {self.new_id(): "SRE Squad"}
        self.incidents: dict[str, SimIncident] = {}

    def new_id(self) -> str:
        return f"{self._random.getrandbits(96):024x}"  # Squadcast ids are Mongo ObjectIds

    # -- lookups --------------------------------------------------------------------------------------
    def user(self, handle: str) -> dict[str, str]:
        if handle not in self.users:
            raise SimError(400, f"unknown user {handle!r}")
        return self.users[handle]

    def user_name(self, handle: str) -> str:
        user = self.user(handle)
        return f"{user['first_name']} {user['last_name']}"

    def handle_of(self, user_id: str) -> str | None:
        return next((h for h, u in self.users.items() if u["id"] == user_id), None)

    def get(self, incident_id: str) -> SimIncident:
        if incident_id not in self.incidents:
            raise SimError(404, f"incident {incident_id} not found")
        return self.incidents[incident_id]

    def assignee(self, kind: str, ident: str) -> dict[str, str]:
        """A reassignment target as the webhook shows it; unknown ids are a 400."""
        if kind == "user" and self.handle_of(ident):
            return {"id": ident, "name": self.user_name(self.handle_of(ident) or ""), "type": "user"}
        policies = {s["escalation_policy"]["id"]: s["escalation_policy"]["name"] for s in self.services.values()}
        if kind == "escalationpolicy" and ident in policies:
            return {"id": ident, "name": policies[ident], "type": kind}
        if kind == "squad" and ident in self.squads:
            return {"id": ident, "name": self.squads[ident], "type": kind}
        raise SimError(400, f"reassign_to: no {kind} with id {ident!r}")

    # -- renderings -----------------------------------------------------------------------------------
    def webhook_incident(self, inc: SimIncident) -> dict[str, Any]:
        service, creator = self.services[inc.service], self.users[inc.creator]
        return {
            "id": inc.id, "message": inc.title, "description": inc.description, "url": f"{APP_BASE}/{inc.id}",
            "alert_source": dict(ALERT_SOURCE), "service": {k: service[k] for k in ("id", "name", "slug")},
            "status": inc.status, "created_at": iso(inc.created_at), "priority": inc.priority or "",
            "assigned_to": {**inc.assignee, "assigned_at": "0001-01-01T00:00:00Z"}, "tags": inc.tags or None,
            "event_payload": {"assignee": {"id": service["escalation_policy"]["id"], "type": "escalationpolicy"},
                              "attachments": [], "created_by": creator["id"], "description": inc.description,
                              "message": inc.title, "tags": inc.tags},
            "timeline": [{"action": log["action"], "assigned_to": log["target_type"], "name": log["name"],
                          "time": iso(log["time"])} for log in inc.logs if log["action"] in
                         ("triggered", "acknowledged", "resolved", "reassigned")],
            "event_count": 1, "owner": {**self.team, "type": "team"},
            "manually_created_by": {"id": creator["id"], "name": self.user_name(inc.creator), "email": creator["email"]},
        }

    def rest_incident(self, inc: SimIncident) -> dict[str, Any]:
        service = self.services[inc.service]
        return {
            "id": inc.id, "service_id": service["id"], "alert_source_id": ALERT_SOURCE["id"],
            "organization_id": self.org["id"], "incidentNumber": inc.number, "message": inc.title,
            "assignedTo": [{"id": inc.assignee["id"], "type": inc.assignee["type"],
                            "timeOfAssignment": iso(inc.updated_at), "reason": ""}],
            "additional_responders": [], "description": inc.description, "status": inc.status,
            "timeOfCreation": iso(inc.created_at), "updated_at": iso(inc.updated_at),
            "last_acknowledged_at": iso(inc.acknowledged_at), "tags": inc.tags,
            "logs": [{"action": log["action"], "time": iso(log["time"]), "reason": log["reason"], "id": log["id"],
                      "assignedTo": log["target_id"]} for log in inc.logs],
            "owner": {"id": self.team["id"], "type": "team"}, "deleted": False, "event_count": 1,
            "created_by": self.users[inc.creator]["id"], "has_priority": inc.priority is not None,
            **({"priority": inc.priority} if inc.priority else {}),
        }

    def export_item(self, inc: SimIncident) -> dict[str, Any]:
        created = inc.created_at
        tta = int((inc.acknowledged_at - created).total_seconds() * 1000) if inc.acknowledged_at else 0
        ttr = int((inc.resolved_at - created).total_seconds() * 1000) if inc.resolved_at else 0
        return {
            "id": inc.id, "title": inc.title, "description": inc.description, "status": inc.status,
            "service": inc.service, "alert_source": ALERT_SOURCE["type"], "assignee": inc.assignee["name"],
            "created_at": iso(created), "acknowledged_at": iso(inc.acknowledged_at),
            "resolved_at": iso(inc.resolved_at), "tags": inc.tags or None, "event_count": 1,
            "tta (ms)": tta, "ttr (ms)": ttr, "priority": inc.priority or "",
            "logs": [{"action": log["action"], "assignedTo": log["target_id"], "id": log["id"],
                      "time": iso(log["time"]), "reason": log["reason"], "additionalInfo": None} for log in inc.logs],
            "url": f"{APP_BASE}/{inc.id}",
        }

    def rest_note(self, inc: SimIncident, note: SimNote) -> dict[str, Any]:
        user = self.users[note.author]
        return {"id": note.id, "created_at": iso(note.at), "updated_at": iso(note.at),
                "organization_id": self.org["id"], "incident_id": inc.id, "user_id": user["id"],
                "message": note.text, "type": note.type, "attachments": [], "replaced_message": note.text,
                "user": {"id": user["id"], "first_name": user["first_name"], "last_name": user["last_name"],
                         "deleted": False}}

    # -- changes --------------------------------------------------------------------------------------
    def _fire(self, event_type: str, inc: SimIncident, at: datetime, resource: dict[str, Any] | None = None,
              resource_type: str = "incident") -> None:
        data: dict[str, Any] = {"resource_data": resource or self.webhook_incident(inc), "resource_type": resource_type,
                                "organization": dict(self.org), "team": dict(self.team)}
        if resource_type != "incident":
            data["incident"] = self.webhook_incident(inc)
        self.emit({"version": "v2", "event": {"id": self.new_id(), "type": event_type, "resource": resource_type,
                                              "timestamp": iso_ns(at)}, "data": data})

    def _log(self, inc: SimIncident, action: str, at: datetime, *, name: str, target: dict[str, str],
             reason: str) -> None:
        inc.logs.append({"id": self.new_id(), "action": action, "time": at, "reason": reason, "name": name,
                         "target_type": target["type"], "target_id": target["id"]})
        inc.updated_at = at

    def create(self, *, title: str, service: str, user: str, priority: str | None = None,
               description: str = "") -> SimIncident:
        with self.lock:
            if service not in self.services:
                raise SimError(400, f"service {service!r} not found")
            if priority not in (None, *PRIORITIES):
                raise SimError(400, f"priority must be one of {', '.join(PRIORITIES)}")
            self.user(user)
            now, policy = self.clock(), self.services[service]["escalation_policy"]
            target = {"id": policy["id"], "name": policy["name"], "type": "escalationpolicy"}
            inc = SimIncident(id=self.new_id(), number=len(self.incidents) + 1, title=title, description=description,
                              service=service, created_at=now, creator=user, assignee=target, priority=priority)
            self.incidents[inc.id] = inc
            self._log(inc, "triggered", now, name=policy["name"], target=target, reason="Incident triggered")
            self._fire("incident.triggered", inc, now)
            return inc

    def acknowledge(self, incident_id: str, user: str) -> SimIncident:
        with self.lock:
            inc = self.get(incident_id)
            if inc.status != "triggered":
                raise SimError(400, f"incident is already {inc.status}")
            now, person = self.clock(), {"id": self.user(user)["id"], "name": self.user_name(user), "type": "user"}
            inc.status, inc.acknowledged_at, inc.assignee = "acknowledged", now, person
            self._log(inc, "acknowledged", now, name=person["name"], target=person, reason=f"Acknowledged by {person['name']}")
            self._fire("incident.acknowledged", inc, now)
            return inc

    def resolve(self, incident_id: str, user: str, message: str | None = None) -> SimIncident:
        with self.lock:
            inc = self.get(incident_id)
            if inc.status not in OPEN:
                raise SimError(400, f"incident is already {inc.status}")
            now, name = self.clock(), self.user_name(user)
            inc.status, inc.resolved_at = "resolved", now
            if message:
                inc.notes.append(SimNote(self.new_id(), message, user, now, type="resolution_reason"))
            self._log(inc, "resolved", now, name=name, target={"id": self.user(user)["id"], "type": "user"},
                      reason=f"Resolved by {name}")
            self._fire("incident.resolved", inc, now)
            return inc

    def reassign(self, incident_id: str, kind: str, ident: str, user: str) -> SimIncident:
        with self.lock:
            inc = self.get(incident_id)
            if inc.status not in OPEN:
                raise SimError(400, f"incident is {inc.status}; only unresolved incidents can be reassigned")
            target, now = self.assignee(kind, ident), self.clock()
            inc.assignee = target
            self._log(inc, "reassigned", now, name=target["name"], target=target,
                      reason=f"Reassigned to {target['name']} by {self.user_name(user)}")
            self._fire("incident.reassigned", inc, now)
            return inc

    def set_priority(self, incident_id: str, value: str | None, user: str) -> SimIncident:
        with self.lock:
            inc = self.get(incident_id)
            if value not in (None, "UNSET", *PRIORITIES):
                raise SimError(400, f"priority must be one of {', '.join(PRIORITIES)} or UNSET")
            now, name = self.clock(), self.user_name(user)
            inc.priority = None if value in (None, "UNSET") else value
            self._log(inc, "priority_updated", now, name=name, target={"id": self.user(user)["id"], "type": "user"},
                      reason=f"Priority set to {inc.priority or 'UNSET'} by {name}")
            return inc

    def add_note(self, incident_id: str, text: Any, user: str) -> SimNote:
        with self.lock:
            inc = self.get(incident_id)
            if not isinstance(text, str) or not text.strip():
                raise SimError(400, "message is required")
            now, author = self.clock(), self.user(user)
            note = SimNote(self.new_id(), text, user, now)
            inc.notes.append(note)
            resource = {"id": note.id, "created_by": {"id": author["id"], "email_id": author["email"],
                                                      "name": self.user_name(user)},
                        "message": {"message": text, "raw_message": text}, "created_at": iso_ns(now),
                        "updated_at": iso_ns(now), "type": "message"}
            self._fire("incident.incident_notes_created", inc, now, resource, "incident_notes")
            return note
