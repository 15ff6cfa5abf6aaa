"""The Opsgenie simulator's account: users and alerts with their notes, behind one lock.

Every change goes through `SimAccount`, whoever makes it (REST, including the bridge's own writes, or
the control API), and hands the outgoing-webhook payload real Opsgenie would send to `emit` while the
lock is held, so webhooks leave in the order of the changes. Writes over REST are asynchronous in
Opsgenie (202 + requestId); here they are applied before the 202 returns and their outcome is kept for
``GET /v2/alerts/requests/{requestId}``.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

DEFAULT_USERS = {  # handle: (full name, username)
    "alice": ("Alice Adams", "alice@example.com"), "bob": ("Bob Brown", "bob@example.com"),
    "carol": ("Carol Chen", "carol@example.com"), "dave": ("Dave Diaz", "dave@example.com"),
}
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
INTEGRATION = {"id": "4513b7ea-3b91-438f-b7e4-e3e54af9147c", "name": "Default API", "type": "API"}


class SimError(Exception):
    """An API error answered as Opsgenie does: ``{"message", "took", "requestId"}`` (+ ``errors`` on 422)."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors

    def body(self, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "took": 0.001, "requestId": request_id}
        if self.errors:
            body["errors"] = self.errors
        return body


def iso(moment: datetime) -> str:
    """REST times: ISO 8601 with milliseconds and Z (``2017-04-14T08:31:19.453Z``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class SimAlert:
    id: str
    tiny_id: int
    alias: str
    message: str
    created_at: datetime
    updated_at: datetime
    updated_ns: int
    priority: str = "P3"
    entity: str = ""
    description: str = ""
    source: str = ""
    status: str = "open"
    acknowledged: bool = False
    owner: str = ""
    tags: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)


class SimAccount:
    """The account's alerts and every operation on them. `emit(payload)` receives each webhook payload."""

    def __init__(self, *, emit: Callable[[dict[str, Any]], None], users: dict[str, tuple[str, str]] | None = None,
                 seed: int = 1, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.emit, self.clock, self.lock = emit, clock, threading.RLock()
        self._random = random.Random(seed)
        self.users = {h: {"name": n, "username": u, "id": self.new_uuid()} for h, (n, u) in (users or DEFAULT_USERS).items()}
        self.alerts: dict[str, SimAlert] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self._last_ns = 0

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def username(self, who: str) -> str:
        """A user's username from its handle (``alice``) or username; other names pass through as
        display names (the API's ``user`` field is free text, e.g. ``itsm-bridge``)."""
        return self.users[who]["username"] if who in self.users else who

    def user_id(self, username: str) -> str:
        return next((u["id"] for u in self.users.values() if u["username"] == username), "")

    def get(self, alert_id: str) -> SimAlert:
        alert = self.alerts.get(alert_id)
        if alert is None:
            raise SimError(404, "Alert does not exist")
        return alert

    def _touch(self, alert: SimAlert) -> None:
        now = self.clock()
        alert.updated_at = now
        self._last_ns = max(self._last_ns + 1, int(now.timestamp() * 1_000_000_000))
        alert.updated_ns = self._last_ns

    # -- renderings -----------------------------------------------------------------------------------
    def rest_alert(self, alert: SimAlert, *, full: bool = True) -> dict[str, Any]:
        """The REST alert (``GET /v2/alerts/{id}``). List results (`full` False) are Opsgenie's ``BaseAlert``:
        without entity, description, details and actions (opsgenie-oas ``BaseAlert`` vs ``Alert``)."""
        data: dict[str, Any] = {
            "id": alert.id, "tinyId": str(alert.tiny_id), "alias": alert.alias, "message": alert.message,
            "status": alert.status, "acknowledged": alert.acknowledged, "isSeen": alert.acknowledged,
            "tags": list(alert.tags), "snoozed": False, "count": 1, "lastOccurredAt": iso(alert.created_at),
            "createdAt": iso(alert.created_at), "updatedAt": iso(alert.updated_at), "source": alert.source,
            "owner": alert.owner, "priority": alert.priority, "responders": [], "integration": dict(INTEGRATION),
            "report": dict(alert.report),
        }
        if full:
            data.update(entity=alert.entity, description=alert.description, details={}, actions=[])
        return data

    def _webhook(self, action: str, alert: SimAlert, username: str, **extra: Any) -> None:
        payload_alert = {
            "alertId": alert.id, "message": alert.message, "tags": list(alert.tags), "tinyId": str(alert.tiny_id),
            "entity": alert.entity, "alias": alert.alias, "createdAt": epoch_ms(alert.created_at),
            "updatedAt": alert.updated_ns, "username": username, "userId": self.user_id(username),
            "priority": alert.priority, "owner": alert.owner, "description": alert.description, **extra,
        }
        payload = {"action": action, "alert": payload_alert,
                   "source": {"name": "", "type": "web" if self.user_id(username) else "api"},
                   "integrationName": "itsm-bridge", "integrationId": "8418d193-2dab-4490-b331-8c02cdd196b7",
                   "integrationType": "Webhook"}
        if action == "Escalate":
            payload["escalationName"] = "Default escalation"
        self.emit(payload)

    # -- operations -----------------------------------------------------------------------------------
    def create(self, *, message: str, username: str, priority: str | None = None, entity: str = "",
               alias: str | None = None, description: str = "", source: str = "") -> SimAlert:
        priority = priority or "P3"
        if priority not in PRIORITIES:
            raise SimError(422, "Request body is not processable. Please check the errors.",
                           {"priority": "should be one of [P1, P2, P3, P4, P5]"})
        with self.lock:
            if alias:
                existing = next((a for a in self.alerts.values() if a.alias == alias and a.status == "open"), None)
                if existing is not None:  # de-duplicated by alias, as Opsgenie does
                    return existing
            now, alert_id = self.clock(), self.new_uuid()
            alert = SimAlert(id=alert_id, tiny_id=len(self.alerts) + 1, alias=alias or alert_id, message=message,
                             created_at=now, updated_at=now, updated_ns=0, priority=priority, entity=entity,
                             description=description, source=source)
            self.alerts[alert.id] = alert
            self._touch(alert)
            self._webhook("Create", alert, username)
            return alert

    def act(self, alert_id: str, action: str, username: str, *, note: str | None = None,
            owner: str | None = None, priority: str | None = None) -> SimAlert:
        """One alert action (Acknowledge, UnAcknowledge, Close, AddNote, Escalate, AssignOwnership,
        TakeOwnership, UpdatePriority); `SimError` 400 where Opsgenie would refuse it."""
        with self.lock:
            alert = self.get(alert_id)
            closed = alert.status == "closed"
            if closed and action not in ("AddNote",):
                raise SimError(400, f"Alert is already closed; cannot {action}")
            elapsed = int((self.clock() - alert.created_at).total_seconds() * 1000)
            extra: dict[str, Any] = {}
            if action == "Acknowledge":
                alert.acknowledged, alert.owner = True, alert.owner or username
                alert.report.update(ackTime=elapsed, acknowledgedBy=username)
            elif action == "UnAcknowledge":
                alert.acknowledged = False
            elif action == "Close":
                alert.status = "closed"
                alert.report.update(closeTime=elapsed, closedBy=username)
            elif action == "AddNote":
                if not note:
                    raise SimError(422, "Request body is not processable. Please check the errors.",
                                   {"note": "must not be blank"})
                now = self.clock()
                offset = f"{epoch_ms(now)}_{len(alert.notes):04d}"
                alert.notes.append({"note": note, "owner": username, "createdAt": iso(now), "offset": offset})
                extra["note"] = note
            elif action in ("AssignOwnership", "TakeOwnership"):
                alert.owner = owner or username
                if action == "TakeOwnership":
                    alert.acknowledged = True
            elif action == "UpdatePriority":
                if priority not in PRIORITIES:
                    raise SimError(422, "Request body is not processable. Please check the errors.",
                                   {"priority": "should be one of [P1, P2, P3, P4, P5]"})
                extra["oldPriority"] = alert.priority  # the payload's priority is the new one
                alert.priority = priority  # type: ignore[assignment]
            elif action != "Escalate":
                raise SimError(400, f"Unknown action {action}")
            self._touch(alert)
            self._webhook(action, alert, username, **extra)
            return alert

    def record_request(self, request_id: str, action: str, alert: SimAlert | None, error: str | None) -> None:
        with self.lock:
            self.requests[request_id] = {
                "success": error is None, "action": action, "processedAt": iso(self.clock()),
                "integrationId": INTEGRATION["id"], "isSuccess": error is None,
                "status": error or f"{action} processed successfully", "alertId": alert.id if alert else "",
                "alias": alert.alias if alert else ""}
