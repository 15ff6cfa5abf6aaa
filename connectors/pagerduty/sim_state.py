"""The PagerDuty simulator's account: services, users, priorities, incidents and notes, behind one lock.

Every state change goes through `SimAccount` and produces the v3 webhook event(s) real PagerDuty would
send, whoever made it (a REST call, including the bridge's own, or the control API). Events are handed
to `emit` while the lock is held, so their order is exactly the order of the changes.

Two shapes are rendered from the same record on purpose: `rest_incident` (``incident_number``,
``assignments[].assignee``, ``priority.name``) and `webhook_incident` (``number``, ``assignees[]``,
``priority.summary``), because the connector must cope with both and the differences are where bugs hide.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

HTML_BASE = "https://acme.pagerduty.com"
DEFAULT_SERVICES = ("Payments API", "Checkout Web", "Search", "Identity", "Data Platform")
DEFAULT_USERS = {  # handle: (name, email)
    "alice": ("Alice Adams", "alice@example.com"), "bob": ("Bob Brown", "bob@example.com"),
    "carol": ("Carol Chen", "carol@example.com"), "dave": ("Dave Diaz", "dave@example.com"),
    "bridge": ("ITSM Bridge", "bridge@example.com"),
}
DEFAULT_PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
RESPONDERS = ("alice", "bob", "carol", "dave")


class SimError(Exception):
    """An API error answered as PagerDuty does: HTTP `status`, body ``{"error":{message,code,errors}}``."""

    def __init__(self, status: int, code: int, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            error["errors"] = self.errors
        return {"error": error}


def rest_time(moment: datetime | None) -> str | None:
    """REST times: seconds, UTC, ``Z`` (``2015-10-06T21:30:42Z``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def event_time(moment: datetime) -> str:
    """Webhook ``occurred_at``: milliseconds, UTC, ``Z`` (``2020-10-02T18:45:22.169Z``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class SimIncident:
    id: str
    number: int
    title: str
    service_id: str
    urgency: str
    created_at: datetime
    incident_key: str
    status: str = "triggered"
    priority_id: str | None = None
    assignee_ids: list[str] = field(default_factory=list)
    acknowledgements: list[tuple[str, datetime]] = field(default_factory=list)
    assigned_at: datetime | None = None
    updated_at: datetime | None = None
    last_status_change_at: datetime | None = None
    last_status_change_by: str | None = None
    resolved_at: datetime | None = None
    reopened_at: datetime | None = None
    escalation_level: int = 1
    details: Any = None
    notes: list[dict[str, Any]] = field(default_factory=list)


class SimAccount:
    """The account's data and every operation on it. `emit(event)` receives each v3 event envelope."""

    def __init__(self, *, api_url: str, emit: Callable[[dict[str, Any]], None],
                 services: tuple[str, ...] = DEFAULT_SERVICES, users: dict[str, tuple[str, str]] | None = None,
                 priorities: tuple[str, ...] = DEFAULT_PRIORITIES, seed: int = 1,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.api_url = api_url.rstrip("/")
        self.emit = emit
        self.clock = clock
        self.lock = threading.RLock()
        self._random = random.Random(seed)
        self.users = {f"PUSR{n:03d}": {"handle": h, "name": n_e[0], "email": n_e[1]}
                      for n, (h, n_e) in enumerate((users or DEFAULT_USERS).items(), start=1)}
        self.services = {f"PSVC{n:03d}": {"name": name, "policy": f"PEP{n:04d}",
                                          "on_call": RESPONDERS[(n - 1) % len(RESPONDERS)]}
                         for n, name in enumerate(services, start=1)}
        self.priorities = {f"PPRI{n:03d}": name for n, name in enumerate(priorities, start=1)}
        self.incidents: dict[str, SimIncident] = {}
        self.team = {"id": "PTEAM01", "type": "team_reference", "summary": "Site Reliability",
                     "self": f"{self.api_url}/teams/PTEAM01", "html_url": f"{HTML_BASE}/teams/PTEAM01"}

    # -- ids and lookups ------------------------------------------------------------------------------
    def _new_id(self, prefix: str, length: int) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return prefix + "".join(self._random.choice(alphabet) for _ in range(length - len(prefix)))

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def user_id(self, who: str) -> str:
        """A user's id from its handle (``alice``), e-mail or id; `SimError` 1008 when unknown."""
        for user_id, user in self.users.items():
            if who in (user_id, user["handle"]) or who.lower() == user["email"].lower():
                return user_id
        raise SimError(400, 1008, "Requester User Not Found", [f"No user found for {who!r}"])

    def service_id(self, name_or_id: str) -> str:
        for service_id, service in self.services.items():
            if name_or_id in (service_id, service["name"]):
                return service_id
        raise SimError(400, 2001, "Invalid Input Provided", [f"Service {name_or_id!r} not found"])

    def priority_id(self, value: Any) -> str | None:
        """A priority from a name (``P1``), a reference ``{id, type}``, or None (no priority)."""
        if value is None:
            return None
        wanted = value.get("id") if isinstance(value, dict) else value
        for priority_id, name in self.priorities.items():
            if wanted in (priority_id, name):
                return priority_id
        raise SimError(400, 2001, "Invalid Input Provided", [f"Priority {wanted!r} not found"])

    @staticmethod
    def check_urgency(urgency: object) -> str:
        if urgency not in ("high", "low"):
            raise SimError(400, 2001, "Invalid Input Provided", [f"Urgency must be high or low, not {urgency!r}"])
        return str(urgency)

    def get(self, incident_id: str) -> SimIncident:
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise SimError(404, 2100, "Not Found", [f"Incident {incident_id} not found"])
        return incident

    # -- references and renderings --------------------------------------------------------------------
    def ref(self, kind: str, object_id: str, summary: str, *, path: str | None = None) -> dict[str, Any]:
        path = path or f"{kind}s"
        return {"id": object_id, "type": f"{kind}_reference", "summary": summary,
                "self": f"{self.api_url}/{path}/{object_id}", "html_url": f"{HTML_BASE}/{path}/{object_id}"}

    def user_ref(self, user_id: str) -> dict[str, Any]:
        return self.ref("user", user_id, self.users[user_id]["name"])

    def service_ref(self, service_id: str) -> dict[str, Any]:
        return self.ref("service", service_id, self.services[service_id]["name"])

    def policy_ref(self, service_id: str) -> dict[str, Any]:
        service = self.services[service_id]
        return self.ref("escalation_policy", service["policy"], f"{service['name']} on-call",
                        path="escalation_policies")

    def rest_incident(self, inc: SimIncident, *, include_body: bool = False) -> dict[str, Any]:
        """The REST v2 incident (``GET /incidents/{id}``)."""
        data: dict[str, Any] = {
            "id": inc.id, "type": "incident", "summary": f"[#{inc.number}] {inc.title}",
            "self": f"{self.api_url}/incidents/{inc.id}", "html_url": f"{HTML_BASE}/incidents/{inc.id}",
            "incident_number": inc.number, "title": inc.title, "created_at": rest_time(inc.created_at),
            "updated_at": rest_time(inc.updated_at), "status": inc.status, "incident_key": inc.incident_key,
            "service": self.service_ref(inc.service_id),
            "assignments": [{"at": rest_time(inc.assigned_at), "assignee": self.user_ref(u)} for u in inc.assignee_ids],
            "assigned_via": "escalation_policy", "last_status_change_at": rest_time(inc.last_status_change_at),
            "resolved_at": rest_time(inc.resolved_at),
            "alert_counts": {"all": 0, "triggered": 0, "resolved": 0}, "is_mergeable": True,
            "incident_type": {"name": "incident_default"}, "escalation_policy": self.policy_ref(inc.service_id),
            "teams": [self.team], "pending_actions": [],
            "acknowledgements": [{"at": rest_time(at), "acknowledger": self.user_ref(u)}
                                 for u, at in inc.acknowledgements],
            "priority": self.rest_priority(inc.priority_id) if inc.priority_id else None,
            "urgency": inc.urgency,
        }
        if inc.last_status_change_by:
            data["last_status_change_by"] = self.user_ref(inc.last_status_change_by)
        if include_body:
            data["body"] = {"type": "incident_body", "details": inc.details or ""}
        return data

    def rest_priority(self, priority_id: str) -> dict[str, Any]:
        name = self.priorities[priority_id]
        return {"id": priority_id, "type": "priority", "summary": name, "name": name,
                "self": f"{self.api_url}/priorities/{priority_id}", "html_url": None,
                "description": f"{name} incidents", "color": "a8171c"}

    def webhook_incident(self, inc: SimIncident) -> dict[str, Any]:
        """The v3 webhook ``data`` for an incident event (not the REST shape)."""
        data: dict[str, Any] = {
            "id": inc.id, "type": "incident", "self": f"{self.api_url}/incidents/{inc.id}",
            "html_url": f"{HTML_BASE}/incidents/{inc.id}", "number": inc.number, "status": inc.status,
            "incident_key": inc.incident_key, "created_at": rest_time(inc.created_at), "title": inc.title,
            "incident_type": {"name": "incident_default"}, "service": self.service_ref(inc.service_id),
            "assignees": [self.user_ref(u) for u in inc.assignee_ids],
            "escalation_policy": self.policy_ref(inc.service_id), "teams": [self.team],
            "priority": ({**self.ref("priority", inc.priority_id, self.priorities[inc.priority_id], path="priorities"),
                          "html_url": f"{HTML_BASE}/account/incident_priorities"} if inc.priority_id else None),
            "urgency": inc.urgency, "conference_bridge": None, "resolve_reason": None,
        }
        if inc.reopened_at:
            data["reopened_at"] = rest_time(inc.reopened_at)
        return data

    def rest_note(self, note: dict[str, Any]) -> dict[str, Any]:
        return {"id": note["id"], "user": self.user_ref(note["user_id"]),
                "channel": {"summary": "The PagerDuty website or APIs"}, "content": note["content"],
                "created_at": rest_time(note["created_at"])}

    # -- events ---------------------------------------------------------------------------------------
    def _event(self, event_type: str, data: dict[str, Any], actor: str | None, at: datetime) -> None:
        self.emit({"event": {
            "id": self.new_uuid(), "event_type": event_type, "resource_type": "incident",
            "occurred_at": event_time(at), "agent": self.user_ref(actor) if actor else None,
            "client": {"name": "PagerDuty"}, "data": data}})

    def _touch(self, inc: SimIncident, actor: str | None, *, status: bool = False) -> datetime:
        now = self.clock()
        inc.updated_at = now
        if status:
            inc.last_status_change_at, inc.last_status_change_by = now, actor
        return now

    # -- operations (callers hold no lock; each takes it) ---------------------------------------------
    def create(self, *, service: str, title: str, actor: str, urgency: str = "high", priority: Any = None,
               incident_key: str | None = None, details: Any = None) -> SimIncident:
        with self.lock:
            service_id = self.service_id(service)
            key = incident_key or uuid.UUID(int=self._random.getrandbits(128)).hex
            if any(i.incident_key == key and i.service_id == service_id and i.status != "resolved"
                   for i in self.incidents.values()):
                raise SimError(400, 2001, "Invalid Input Provided",
                               ["Open incident with matching dedup key already exists on this service"])
            now = self.clock()
            inc = SimIncident(id=self._new_id("Q", 14), number=len(self.incidents) + 1, title=title,
                              service_id=service_id, urgency=self.check_urgency(urgency), created_at=now,
                              incident_key=key,
                              priority_id=self.priority_id(priority), details=details,
                              assignee_ids=[self.user_id(self.services[service_id]["on_call"])],
                              assigned_at=now, updated_at=now, last_status_change_at=now,
                              last_status_change_by=actor)
            self.incidents[inc.id] = inc
            self._event("incident.triggered", self.webhook_incident(inc), actor, now)
            return inc

    def set_status(self, incident_id: str, status: str, actor: str) -> SimIncident:
        """REST semantics: same state for resolved/acknowledged is 400 1001/1002; from resolved, triggered
        or acknowledged reopens; acknowledged -> triggered is only possible by unacknowledging."""
        with self.lock:
            inc = self.get(incident_id)
            if status not in ("triggered", "acknowledged", "resolved"):
                raise SimError(400, 2001, "Invalid Input Provided",
                               [f"Status must be triggered, acknowledged or resolved, not {status!r}"])
            if status == inc.status == "resolved":
                raise SimError(400, 1001, "Incident Already Resolved")
            if status == inc.status == "acknowledged":
                raise SimError(400, 1002, "Incident Already Acknowledged")
            if status == inc.status:
                return inc
            if inc.status == "resolved":
                self._reopen(inc, actor)
                if status == "triggered":
                    return inc
            if status == "acknowledged":
                now = self._touch(inc, actor, status=True)
                inc.status = "acknowledged"
                inc.acknowledgements.append((actor, now))
                self._event("incident.acknowledged", self.webhook_incident(inc), actor, now)
            elif status == "resolved":
                now = self._touch(inc, actor, status=True)
                inc.status, inc.resolved_at = "resolved", now
                inc.assignee_ids, inc.acknowledgements = [], []
                self._event("incident.resolved", self.webhook_incident(inc), actor, now)
            elif status == "triggered":
                raise SimError(400, 2001, "Invalid Input Provided",
                               [f"Incident status cannot be changed from {inc.status} to triggered"])
            return inc

    def _reopen(self, inc: SimIncident, actor: str) -> None:
        now = self._touch(inc, actor, status=True)
        inc.status, inc.resolved_at, inc.reopened_at, inc.escalation_level = "triggered", None, now, 1
        inc.assignee_ids, inc.assigned_at = [self.user_id(self.services[inc.service_id]["on_call"])], now
        self._event("incident.reopened", self.webhook_incident(inc), actor, now)

    def unacknowledge(self, incident_id: str, actor: str | None) -> SimIncident:
        with self.lock:
            inc = self.get(incident_id)
            if inc.status != "acknowledged":
                raise SimError(400, 2001, "Invalid Input Provided", ["Incident is not acknowledged"])
            now = self._touch(inc, actor, status=True)
            inc.status, inc.acknowledgements = "triggered", []
            self._event("incident.unacknowledged", self.webhook_incident(inc), actor, now)
            return inc

    def set_priority(self, incident_id: str, priority: Any, actor: str) -> SimIncident:
        with self.lock:
            inc = self.get(incident_id)
            priority_id = self.priority_id(priority)
            if priority_id != inc.priority_id:
                inc.priority_id = priority_id
                self._event("incident.priority_updated", self.webhook_incident(inc), actor, self._touch(inc, actor))
            return inc

    def reassign(self, incident_id: str, user_ids: list[str], actor: str) -> SimIncident:
        with self.lock:
            inc = self.get(incident_id)
            if inc.status == "resolved":
                raise SimError(400, 2001, "Invalid Input Provided", ["Incident is resolved"])
            now = self._touch(inc, actor)
            inc.assignee_ids, inc.assigned_at = list(user_ids), now
            if inc.status == "acknowledged":  # a new assignee has to acknowledge again
                inc.status, inc.acknowledgements, inc.last_status_change_at = "triggered", [], now
            self._event("incident.reassigned", self.webhook_incident(inc), actor, now)
            return inc

    def escalate(self, incident_id: str, actor: str, *, level: int | None = None) -> SimIncident:
        """Move to the next escalation level: the next responder in the rotation is assigned."""
        with self.lock:
            inc = self.get(incident_id)
            if inc.status == "resolved":
                raise SimError(400, 2001, "Invalid Input Provided", ["Incident is resolved"])
            inc.escalation_level = level or inc.escalation_level + 1
            first = RESPONDERS.index(self.services[inc.service_id]["on_call"])
            handle = RESPONDERS[(first + inc.escalation_level - 1) % len(RESPONDERS)]
            now = self._touch(inc, actor)
            inc.assignee_ids, inc.assigned_at = [self.user_id(handle)], now
            if inc.status == "acknowledged":
                inc.status, inc.acknowledgements, inc.last_status_change_at = "triggered", [], now
            self._event("incident.escalated", self.webhook_incident(inc), actor, now)
            return inc

    def add_note(self, incident_id: str, content: str, actor: str) -> dict[str, Any]:
        with self.lock:
            inc = self.get(incident_id)
            if not isinstance(content, str) or not content.strip():
                raise SimError(400, 2001, "Invalid Input Provided", ["Note content can't be blank"])
            if len(inc.notes) >= 2000:
                raise SimError(400, 2001, "Invalid Input Provided", ["Incident has the maximum of 2000 notes"])
            now = self._touch(inc, actor)  # [!] assumed: a note counts as a modification (updated_at)
            note = {"id": self._new_id("P", 7), "user_id": actor, "content": content, "created_at": now}
            inc.notes.append(note)
            self._event("incident.annotated", {
                "incident": self.ref("incident", inc.id, inc.title), "id": note["id"], "content": content,
                "trimmed": False, "type": "incident_note"}, actor, now)
            return note

    def update_fields(self, incident_id: str, changes: dict[str, Any], actor: str) -> SimIncident:
        """Apply a ``PUT /incidents/{id}`` body; each kind of change fires its own event."""
        with self.lock:
            inc = self.get(incident_id)
            if "title" in changes or "urgency" in changes:
                inc.title = str(changes.get("title") or inc.title)
                inc.urgency = self.check_urgency(changes.get("urgency") or inc.urgency)
                self._touch(inc, actor)
            if "priority" in changes:
                self.set_priority(incident_id, changes["priority"], actor)
            if changes.get("assignments"):
                users = [self.user_id(str((a.get("assignee") or {}).get("id"))) for a in changes["assignments"]]
                self.reassign(incident_id, users, actor)
            if changes.get("escalation_level"):
                self.escalate(incident_id, actor, level=int(changes["escalation_level"]))
            if changes.get("status"):
                self.set_status(incident_id, str(changes["status"]), actor)
            return inc
