"""The Grafana OnCall simulator's organisation: users, integrations, alert groups and resolution notes.

Every change goes through `SimOrg` under one lock, whoever makes it (REST, including the bridge's own
writes, or the control API), and hands the outgoing-webhook body OnCall would send ("Forward All") to
`emit`. State rules follow ``engine/apps/alerts/models/alert_group.py``: acknowledge and resolve clear a
silence; unacknowledge clears the acknowledgement and any silence; unresolve clears the resolution and
the acknowledgement (firing again); silencing a resolved or acknowledged group is refused by the API.
Resolution notes and label changes fire no webhook, as in OnCall. Errors are DRF's ``{"detail": ...}``
(or ``{field: [messages]}`` for validation).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ALPHABET = "ABCDEFGHIJKLMNPQRSTUVWXYZ123456789"
WEB_BASE = "https://oncall.example.com/a/grafana-oncall-app/alert-groups"
DEFAULT_INTEGRATIONS = ("Payments API", "Checkout Web", "Search", "Identity", "Data Platform")
DEFAULT_USERS = ("alice", "bob", "carol", "dave", "itsm-bridge")
STATE_FILTERS = {"new": "firing", "acknowledged": "acknowledged", "resolved": "resolved", "silenced": "silenced"}
TOKEN_USER = "itsm-bridge"  # the owner of the API token: REST actions are made as this user


class SimError(Exception):
    """An API error answered as OnCall (Django REST framework) does."""

    def __init__(self, status: int, detail: str | dict[str, list[str]]) -> None:
        super().__init__(str(detail))
        self.status, self.detail = status, detail

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail} if isinstance(self.detail, str) else dict(self.detail)


def iso_api(moment: datetime | None) -> str | None:
    """DRF DateTimeField: ``2020-05-19T12:37:01.430444Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None


def iso_event(moment: datetime | None) -> str | None:
    """Python's isoformat, as the webhook's event.time: ``2023-04-19T21:59:21.714058+00:00``."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds") if moment else None


@dataclass
class SimGroup:
    id: str
    integration: str
    route_id: str
    title: str
    created_at: datetime
    labels: dict[str, str]
    alerts: list[dict[str, Any]] = field(default_factory=list)
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    silenced_at: datetime | None = None
    silenced_until: datetime | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.resolved_at:
            return "resolved"
        if self.acknowledged_at:
            return "acknowledged"
        return "silenced" if self.silenced_at else "firing"


class SimOrg:
    """The organisation's alert groups and every operation on them. `emit(body)` receives each webhook."""

    def __init__(self, *, emit: Callable[[dict[str, Any]], None], seed: int = 1,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.emit, self.clock, self.lock = emit, clock, threading.RLock()
        self._random = random.Random(seed)
        self.team = {"id": self.new_key("T"), "name": "SRE"}
        self.users = {handle: {"id": self.new_key("U"), "email": f"{handle}@example.com", "username": handle,
                               "role": "admin"} for handle in DEFAULT_USERS}
        self.integrations: dict[str, dict[str, Any]] = {}
        for name in DEFAULT_INTEGRATIONS:
            self.integration(name)
        self.groups: dict[str, SimGroup] = {}
        self.note_index: dict[str, str] = {}  # note id -> alert group id

    def new_key(self, prefix: str) -> str:
        """A public primary key as OnCall makes them: one prefix letter and 12 characters."""
        return prefix + "".join(self._random.choice(ALPHABET) for _ in range(12))

    def user(self, handle: str) -> dict[str, Any]:
        if handle not in self.users:
            raise SimError(400, {"user": [f"unknown user {handle!r}"]})
        return self.users[handle]

    def handle_of(self, user_id: str) -> str | None:
        return next((h for h, u in self.users.items() if u["id"] == user_id), None)

    def integration(self, name: str) -> dict[str, Any]:
        """The integration called `name`, created on first use (an Alertmanager integration of team SRE)."""
        if name not in self.integrations:
            self.integrations[name] = {"id": self.new_key("C"), "name": name, "type": "alertmanager",
                                       "team_id": self.team["id"], "route_id": self.new_key("R")}
        return self.integrations[name]

    def get(self, group_id: str) -> SimGroup:
        if group_id not in self.groups:
            raise SimError(404, "Not found.")
        return self.groups[group_id]

    # -- renderings -----------------------------------------------------------------------------------
    def _user_ref(self, handle: str | None) -> dict[str, Any] | None:
        if handle is None:
            return None
        user = self.users[handle]
        return {"id": user["id"], "username": user["username"], "email": user["email"]}

    def rest(self, group: SimGroup) -> dict[str, Any]:
        """``AlertGroupSerializer`` (public API): labels as a list of ``{key: {id, name}, value: {id, name}}``."""
        last = group.alerts[-1]
        return {
            "id": group.id, "integration_id": self.integrations[group.integration]["id"],
            "team_id": self.team["id"], "route_id": group.route_id, "alerts_count": len(group.alerts),
            "state": group.state, "created_at": iso_api(group.created_at), "resolved_at": iso_api(group.resolved_at),
            "resolved_by": self.users[group.resolved_by]["id"] if group.resolved_by else None,
            "acknowledged_at": iso_api(group.acknowledged_at),
            "acknowledged_by": self.users[group.acknowledged_by]["id"] if group.acknowledged_by else None,
            "labels": [{"key": {"id": k, "name": k}, "value": {"id": v, "name": v}} for k, v in group.labels.items()],
            "title": group.title, "permalinks": self._permalinks(group), "silenced_at": iso_api(group.silenced_at),
            "last_alert": {"id": last["id"], "alert_group_id": group.id, "created_at": iso_api(last["created_at"]),
                           "payload": last["payload"]},
        }

    def _permalinks(self, group: SimGroup) -> dict[str, Any]:
        return {"slack": None, "slack_app": None, "telegram": None, "web": f"{WEB_BASE}/{group.id}"}

    def webhook_group(self, group: SimGroup) -> dict[str, Any]:
        """``IncidentSerializer`` plus labels as a dict: the ``alert_group`` of an outgoing webhook."""
        return {"id": group.id, "integration_id": self.integrations[group.integration]["id"],
                "route_id": group.route_id, "alerts_count": len(group.alerts), "state": group.state,
                "created_at": iso_api(group.created_at), "resolved_at": iso_api(group.resolved_at),
                "acknowledged_at": iso_api(group.acknowledged_at), "title": group.title,
                "permalinks": self._permalinks(group), "labels": dict(group.labels)}

    def note_rest(self, note: dict[str, Any]) -> dict[str, Any]:
        return {"id": note["id"], "alert_group_id": note["alert_group_id"],
                "author": self.users[note["author"]]["id"] if note["author"] else None, "source": note["source"],
                "created_at": iso_api(note["created_at"]), "text": note["text"]}

    def _fire(self, kind: str, group: SimGroup, handle: str | None, *, time: datetime | None = None,
              until: datetime | None = None, timed: bool = False) -> None:
        event: dict[str, Any] = {"type": kind}
        if timed:
            event["time"] = iso_event(time)
        if kind == "silence":
            event["until"] = iso_event(until)
        integration = self.integrations[group.integration]
        self.emit({
            "event": event, "user": self._user_ref(handle), "alert_group": self.webhook_group(group),
            "alert_group_id": group.id, "alert_payload": group.alerts[0]["payload"],
            "integration": {"id": integration["id"], "type": integration["type"], "name": integration["name"],
                            "team": self.team["name"], "labels": {}},
            "notified_users": [self._user_ref(h) for h in group.notified],
            "users_to_be_notified": [self._user_ref(h) for h in ("alice", "bob") if h not in group.notified],
            "alert_group_acknowledged_by": self._user_ref(group.acknowledged_by),
            "alert_group_resolved_by": self._user_ref(group.resolved_by), "responses": {},
            "webhook": {"id": "WHITSMBRIDGE1", "name": "itsm-bridge", "labels": {}},
        })

    # -- operations -----------------------------------------------------------------------------------
    def create(self, *, title: str, integration: str, labels: dict[str, str], payload: dict[str, Any]) -> SimGroup:
        with self.lock:
            now, source = self.clock(), self.integration(integration)
            group = SimGroup(id=self.new_key("I"), integration=integration, route_id=source["route_id"],
                             title=title, created_at=now, labels=dict(labels))
            group.alerts.append({"id": self.new_key("A"), "created_at": now, "payload": payload})
            self.groups[group.id] = group
            self._fire("alert group created", group, None, time=now, timed=True)
            return group

    def add_alert(self, group_id: str, payload: dict[str, Any], labels: dict[str, str]) -> SimGroup:
        """A new alert grouped into the group (its labels updated); OnCall sends no webhook for it."""
        with self.lock:
            group = self.get(group_id)
            group.alerts.append({"id": self.new_key("A"), "created_at": self.clock(), "payload": payload})
            group.labels.update(labels)
            return group

    def act(self, group_id: str, action: str, handle: str, *, delay: int | None = None) -> SimGroup:
        """One state action with the public API's refusals (400 ``{"detail": ...}``)."""
        with self.lock:
            group, now = self.get(group_id), self.clock()
            refusal = _refusal(group, action, delay)
            if refusal:
                raise SimError(400, refusal)
            if action == "acknowledge":
                group.silenced_at = group.silenced_until = None
                group.acknowledged_at, group.acknowledged_by = now, handle
            elif action == "resolve":
                group.silenced_at = group.silenced_until = None
                group.resolved_at, group.resolved_by = now, handle
            elif action in ("unacknowledge", "unresolve", "unsilence"):
                group.silenced_at = group.silenced_until = None
                group.acknowledged_at = group.acknowledged_by = None
                if action == "unresolve":
                    group.resolved_at = group.resolved_by = None
            elif action == "silence":
                group.silenced_at = now
                group.silenced_until = now + timedelta(seconds=delay) if delay and delay > 0 else None
            timed = action in ("acknowledge", "resolve", "silence")
            self._fire(action, group, handle, time=now, until=group.silenced_until, timed=timed)
            return group

    def add_note(self, group_id: str, text: Any, handle: str | None) -> dict[str, Any]:
        with self.lock:
            if not isinstance(text, str):
                raise SimError(400, {"text": ["This field is required."]})
            if not text.strip():
                raise SimError(400, {"text": ["This field may not be blank."]})
            if group_id not in self.groups:
                raise SimError(400, {"alert_group_id": [f'Invalid pk "{group_id}" - object does not exist.']})
            note = {"id": self.new_key("M"), "alert_group_id": group_id, "author": handle, "source": "web",
                    "created_at": self.clock(), "text": text}
            self.groups[group_id].notes.append(note)
            self.note_index[note["id"]] = group_id
            return note

    def escalation_step(self, group_id: str) -> SimGroup:
        """An escalation chain step that triggers the outgoing webhook (type ``escalation``)."""
        with self.lock:
            group = self.get(group_id)
            self._fire("escalation", group, None)
            return group

    def notify(self, group_id: str, handle: str) -> SimGroup:
        """A personal notification to `handle` (type ``personal notification``)."""
        with self.lock:
            group = self.get(group_id)
            self.user(handle)
            if handle not in group.notified:
                group.notified.append(handle)
            self._fire("personal notification", group, handle)
            return group

    def page(self, group_id: str, user_ids: list[str]) -> SimGroup:
        """``POST /api/v1/escalation/`` on an existing group: each user gets a personal notification."""
        with self.lock:
            group = self.get(group_id)
            if group.resolved_at:
                raise SimError(400, "Cannot add responders to a resolved alert group")
            handles = [self.handle_of(user_id) for user_id in user_ids]
            if not user_ids or None in handles:
                raise SimError(400, {"users": ["Invalid user(s) provided"]})
            for handle in handles:
                self.notify(group_id, str(handle))
            return group


def _refusal(group: SimGroup, action: str, delay: int | None) -> str | None:
    """Why the public API refuses `action` on `group` (``views/alert_groups.py``), or None."""
    state = group.state
    rules = {
        "acknowledge": [(state == "acknowledged", "Can't acknowledge an acknowledged alert group"),
                        (state == "resolved", "Can't acknowledge a resolved alert group")],
        "unacknowledge": [(state == "resolved", "Can't unacknowledge a resolved alert group"),
                          (state != "acknowledged", "Can't unacknowledge an unacknowledged alert group")],
        "resolve": [(state == "resolved", "Can't resolve a resolved alert group")],
        "unresolve": [(state != "resolved", "Can't unresolve an unresolved alert group")],
        "silence": [(delay is None, "delay is required"), (delay is not None and delay < -1, "invalid delay value"),
                    (state == "resolved", "Can't silence a resolved alert group"),
                    (state == "acknowledged", "Can't silence an acknowledged alert group")],
        "unsilence": [(state == "resolved", "Can't unsilence a resolved alert group"),
                      (state == "acknowledged", "Can't unsilence an acknowledged alert group"),
                      (state != "silenced", "Can't unsilence an unsilenced alert group")],
    }
    if action not in rules:
        raise SimError(404, "Not found.")
    return next((message for refused, message in rules[action] if refused), None)


def _started_at(value: str) -> tuple[datetime, datetime]:
    """``<start>_<end>``, each ``%Y-%m-%dT%H:%M:%S`` in UTC (``DateRangeFilterMixin``)."""
    parts = value.split("_")
    try:
        start, end = (datetime.strptime(part, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC) for part in parts)
    except ValueError:  # a bad time, or not exactly two parts
        raise SimError(400, "Invalid range value") from None
    if start > end:
        raise SimError(400, "Invalid range value")
    return start, end


def select(org: SimOrg, query: Any) -> list[SimGroup]:
    """The groups ``GET /api/v1/alert_groups/`` returns for `query` (``AlertGroupFilters``), newest first;
    a bad ``state`` or ``started_at`` is refused (400) whether or not any group exists."""
    state = (query.get("state") or "").lower()
    if state and state not in STATE_FILTERS:
        raise SimError(400, {"state": ["Must be one of the following: new, acknowledged, resolved, silenced"]})
    window = _started_at(query["started_at"]) if query.get("started_at") else None
    labels = [label.partition(":")[::2] for label in query.getlist("label")]
    found = []
    for group in org.groups.values():
        integration = org.integrations[group.integration]
        checks = [("id", group.id), ("route_id", group.route_id), ("integration_id", integration["id"]),
                  ("team_id", integration["team_id"])]
        if any(query.get(name) and query.get(name) != value for name, value in checks):
            continue
        if any(group.labels.get(key) != value for key, value in labels):
            continue
        if (state and group.state != STATE_FILTERS[state]) or (window and not window[0] <= group.created_at <= window[1]):
            continue
        found.append(group)
    return sorted(found, key=lambda g: g.created_at, reverse=True)
