"""Opsgenie alerts as a source: outgoing webhooks in, Alert API v2 catch-up polls, and the way back.

Verified in the official API description (opsgenie/opsgenie-python-sdk ``docs/AlertApi.md``, generated
from ``opsgenie-oas.json``): ``POST /v2/alerts/{id}/{acknowledge|unacknowledge|close|notes}`` with
``{user, source, note}``, ``PUT /v2/alerts/{id}/priority`` with ``{priority: P1..P5}``, ``GET
/v2/alerts`` sortable by ``updatedAt``, ``GET /v2/alerts/{id}/notes`` returning ``{note, owner,
createdAt, offset}`` (no note id). Writes are asynchronous: they answer 202 ``{result, took,
requestId}`` and are applied shortly after, so a read straight after a write may not show it yet.

Opsgenie cannot reopen a closed alert (the same alias opens a new one), so ``transition(id,
"triggered")`` on a closed alert is a `PermanentError`; on an acknowledged one it unacknowledges.
The ``updatedAt>`` epoch-millisecond query syntax is [!] (documented for ``createdAt``).

Outgoing webhooks carry no alert status, so a webhook for a field action (UpdatePriority, UpdateMessage,
UpdateDescription, AddTags, RemoveTags, AssignOwnership, TakeOwnership) is completed by re-reading the
alert (``GET /v2/alerts/{id}``): the change then carries the full incident and reaches the desk at once
instead of at the next poll. Should the read lag the webhook (writes are asynchronous), the field the
action changed is taken from the webhook. A status webhook (Create, Acknowledge, UnAcknowledge, Close)
is read from its payload, unless the payload lacks what the incident is built from (Opsgenie's own
samples have no priority nor owner; see `webhooks.missing_keys`): it is then re-read the same way, the
status (and the fields the payload has) taken from the webhook when the read lags it. A failed read
leaves the change as its timeline line only (logged), never an incident with fields it did not read;
the next poll brings the state.

The poll lists what changed (``GET /v2/alerts``), but list items are ``BaseAlert``s: no ``entity``,
``description``, ``details`` nor ``actions`` (only ``GET /v2/alerts/{id}`` has them; SDK
``docs/BaseAlert.md`` vs ``docs/Alert.md``). An incident built from them would blank the service and the
alert text on the desk until the next webhook put them back, so each listed alert is re-read (one GET per
alert changed since the cursor, next to the one for its notes).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

import requests

from bridge.errors import ConnectorError, NotFoundError, PermanentError
from bridge.http import call
from bridge.model import Change, Incident, TimelineEntry, format_time, parse_time
from connectors.base import CheckResult, Connector, PollResult
from connectors.opsgenie.webhooks import (
    PRIORITIES,
    REREAD_ACTIONS,
    STATUS_ACTIONS,
    alert_url,
    missing_keys,
    note_id,
    parse_payload,
    verify_token,
)

__all__ = ["OpsgenieConnector", "complete_change", "incident_from_rest", "note_entry", "rest_status"]

log = logging.getLogger(__name__)

PAGE_LIMIT = 100
MAX_WINDOW = 20_000  # offset + limit beyond this is refused [!]; the poll restarts from the last updatedAt
POLL_OVERLAP = timedelta(seconds=5)  # re-read a little before the cursor; the inbox de-duplicates
SOURCE = "itsm-bridge"
#: The alert key each re-read action changes (the same name in the webhook's alert and the REST alert).
CHANGED_KEY: dict[str, str] = {
    "UpdatePriority": "priority", "UpdateMessage": "message", "UpdateDescription": "description",
    "AddTags": "tags", "RemoveTags": "tags", "AssignOwnership": "owner", "TakeOwnership": "owner",
}
#: The keys a status webhook's alert shares with the REST alert: taken from the webhook (where it has
#: them) when the re-read is older than the webhook.
SHARED_KEYS = ("message", "entity", "tags", "owner", "priority", "description", "details")


def rest_status(alert: Mapping[str, Any]) -> str:
    """Canonical status: closed -> resolved, open and acknowledged -> acknowledged, else triggered."""
    if alert.get("status") == "closed":
        return "resolved"
    return "acknowledged" if alert.get("acknowledged") else "triggered"


def incident_from_rest(alert: Mapping[str, Any], *, source: str, web_url: str | None = None) -> Incident:
    """The canonical `Incident` from a REST alert (``GET /v2/alerts`` item or ``/v2/alerts/{id}`` data)."""
    created = parse_time(alert.get("createdAt"))
    report = alert.get("report") if isinstance(alert.get("report"), Mapping) else {}
    status = rest_status(alert)
    close_time = report.get("closeTime") if status == "resolved" else None
    owner = alert.get("owner")
    return Incident(
        source=source, id=str(alert["id"]), title=str(alert.get("message") or ""), status=status,
        created_at=created,  # type: ignore[arg-type]
        updated_at=parse_time(alert.get("updatedAt")) or created,  # type: ignore[arg-type]
        number=str(alert["tinyId"]) if alert.get("tinyId") is not None else None,
        priority=alert.get("priority") or None,
        service=alert.get("entity") or None,
        assignees=(str(owner),) if owner else (),
        url=alert_url(web_url, str(alert["id"])),
        resolved_at=created + timedelta(milliseconds=close_time) if close_time and created else None,
        raw=dict(alert),
    )


def note_entry(alert_id: str, note: Mapping[str, Any]) -> TimelineEntry:
    """One REST alert note as a timeline entry (same id as the AddNote webhook's)."""
    text, owner = str(note.get("note") or ""), note.get("owner") or None
    return TimelineEntry(id=note_id(alert_id, owner, text), at=parse_time(note.get("createdAt")),  # type: ignore[arg-type]
                         kind="note", text=text, author=owner)


def complete_change(change: Change, alert: Mapping[str, Any], rest: Mapping[str, Any], *,
                    web_url: str | None = None) -> Change:
    """A re-read action's `change` (its timeline line) with the incident of `rest`, the alert re-read.

    When the read is older than the webhook (Opsgenie applies changes asynchronously), the key the action
    changed is taken from the webhook's `alert` (for a status action: the status, and the `SHARED_KEYS`
    the payload has), and the incident is as of the webhook. The change's time is the later of the
    webhook's and the read's: the state it carries holds at least from then.
    """
    action = change.event_type.removeprefix("alert.")
    data = dict(rest)
    read_at = parse_time(rest.get("updatedAt"))
    webhook_ms = change.occurred_at.replace(microsecond=change.occurred_at.microsecond // 1000 * 1000)
    behind = read_at is None or read_at < webhook_ms
    key = CHANGED_KEY.get(action)
    if behind and key:
        if key in alert:
            data[key] = alert[key]
        elif action == "TakeOwnership" and alert.get("username"):
            data[key] = alert["username"]
    status = STATUS_ACTIONS.get(action)
    if behind and status:
        data.update({name: alert[name] for name in SHARED_KEYS if name in alert})
        if alert.get("priority") not in PRIORITIES:  # the Create sample's 3: keep the read's
            data["priority"] = rest.get("priority")
    incident = incident_from_rest(data, source=change.connection, web_url=web_url)
    if behind:
        incident = replace(incident, updated_at=change.occurred_at)
        if status:
            incident = replace(incident, status=status,
                               resolved_at=change.occurred_at if status == "resolved" else None)
    return replace(change, incident=incident, occurred_at=max(change.occurred_at, incident.updated_at))


def _version(incident: Incident, notes: int) -> str:
    text = json.dumps([incident.tracked(), notes], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class OpsgenieConnector(Connector):
    """Opsgenie Alert API v2 + outgoing webhooks. Settings: ``api_url``, ``api_key``, ``webhook_secret``,
    ``user`` (the display name every action is made as), ``web_url`` and ``catch_up_hours``."""

    slug: ClassVar[str] = "opsgenie"
    roles: ClassVar[frozenset[str]] = frozenset({"source"})

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        super().__init__(name, settings, session=session)
        self.api_url = str(settings.get("api_url") or "https://api.opsgenie.com").rstrip("/")
        self.user = str(settings.get("user") or SOURCE)
        self.web_url = settings.get("web_url") or None
        self.catch_up = timedelta(hours=int(settings.get("catch_up_hours") or 168))

    def __repr__(self) -> str:  # never the settings: they hold the key
        return f"OpsgenieConnector({self.name!r}, api_url={self.api_url!r})"

    def _call(self, method: str, path: str, *, what: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"GenieKey {self.settings['api_key']}", "Accept": "application/json",
                   "Content-Type": "application/json"}
        return call(self.session, method, f"{self.api_url}{path}", connection=self.name, what=what,
                    headers=headers, **kwargs)

    # -- webhooks -------------------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: datetime) -> None:
        """A shared secret in ``X-Itsm-Bridge-Token``; nothing is signed, so `now` is unused."""
        verify_token(headers, self.settings.get("webhook_secret"), connection=self.name)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[Change]:
        """The webhook's `Change`; a field action's, and a status action's whose payload lacks what the
        incident is built from, is completed with the alert re-read (see the module)."""
        changes = parse_payload(body, connection=self.name, web_url=self.web_url)
        alert = json.loads(body)["alert"]  # parse_payload checked it is an object
        return [self._reread(change, alert) if self._needs_read(change, alert) else change for change in changes]

    @staticmethod
    def _needs_read(change: Change, alert: Mapping[str, Any]) -> bool:
        action = change.event_type.removeprefix("alert.")
        return action in REREAD_ACTIONS or (action in STATUS_ACTIONS and bool(missing_keys(alert)))

    def _reread(self, change: Change, alert: Mapping[str, Any]) -> Change:
        try:
            rest = self._get_alert(change.record_id)
        except (ConnectorError, ValueError, KeyError) as exc:  # ValueError/KeyError: a body without data
            log.warning("%s: could not re-read alert %s after its %s webhook (%s); the timeline line goes "
                        "now, the alert's state with the next poll", self.name, change.record_id,
                        change.event_type, exc)
            return replace(change, incident=None)  # never an incident with fields the payload lacked
        return complete_change(change, alert, rest, web_url=self.web_url)

    # -- catch-up poll --------------------------------------------------------------------------------
    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Every alert updated since `cursor` (oldest first), re-read in full (list items lack entity,
        description and details), with its notes, as ``alert.polled`` changes. The next cursor is the
        newest ``updatedAt`` listed (the previous cursor when nothing changed): not a re-read's, which may
        be later than changes to other alerts the listing did not see yet."""
        since = parse_time(cursor) - POLL_OVERLAP if cursor else now - self.catch_up
        changes, newest = [], parse_time(cursor) if cursor else since
        for listed in self._list_alerts(since):
            newest = max(newest, parse_time(listed.get("updatedAt")) or newest)  # type: ignore[type-var]
            try:
                alert = self._get_alert(str(listed["id"]))
            except NotFoundError:
                log.info("%s: alert %s was deleted after it was listed; skipped", self.name, listed["id"])
                continue
            canonical = incident_from_rest(alert, source=self.name, web_url=self.web_url)
            entries = tuple(self.list_notes(canonical.id))
            changes.append(Change(
                connection=self.name, event_type="alert.polled", record_id=canonical.id,
                event_id=f"poll:{canonical.id}:{alert.get('updatedAt')}:{_version(canonical, len(entries))}",
                occurred_at=canonical.updated_at, incident=canonical, entries=entries, via="poll"))
        return PollResult(changes=changes, cursor=format_time(newest))

    def _list_alerts(self, since: datetime) -> list[Mapping[str, Any]]:
        alerts: list[Mapping[str, Any]] = []
        floor, offset, seen = since, 0, set()
        while True:
            params = {"query": f"updatedAt>={int(floor.timestamp() * 1000)}", "sort": "updatedAt",
                      "order": "asc", "limit": str(PAGE_LIMIT), "offset": str(offset)}
            page = self._call("GET", "/v2/alerts", what="list alerts", params=params).json()
            data = page.get("data") or []
            for alert in data:
                if alert.get("id") not in seen:
                    seen.add(alert.get("id"))
                    alerts.append(alert)
            if len(data) < PAGE_LIMIT or not (page.get("paging") or {}).get("next"):
                return alerts
            offset += PAGE_LIMIT
            if offset + PAGE_LIMIT > MAX_WINDOW:  # restart the window from the newest alert read
                floor, offset = parse_time(data[-1].get("updatedAt")) or floor, 0

    # -- the way back ---------------------------------------------------------------------------------
    def _action(self, record_id: str, action: str, *, what: str, **extra: str) -> None:
        self._call("POST", f"/v2/alerts/{record_id}/{action}", what=what, params={"identifierType": "id"},
                   json={"user": self.user, "source": SOURCE, **extra})

    def transition(self, record_id: str, status: str) -> None:
        """Acknowledge, close, or (on an acknowledged alert) unacknowledge. The alert is read first, so
        asking for the state it is already in is a no-op; Opsgenie cannot reopen a closed alert."""
        current = rest_status(self._get_alert(record_id))
        if current == status:
            log.info("%s: alert %s already %s", self.name, record_id, status)
            return
        what = f"set alert {record_id} to {status}"
        if status == "resolved":
            self._action(record_id, "close", what=what)
        elif current == "resolved":
            raise PermanentError(f"{self.name}: cannot {what}: the alert is closed and Opsgenie cannot "
                                 "reopen a closed alert (a new alert with the same alias would be created)",
                                 connection=self.name)
        elif status == "acknowledged":
            self._action(record_id, "acknowledge", what=what)
        elif status == "triggered":
            self._action(record_id, "unacknowledge", what=what)
        else:
            raise PermanentError(f"{self.name}: unknown status {status!r} (triggered, acknowledged, resolved)",
                                 connection=self.name)

    def update(self, record_id: str, fields: Mapping[str, str]) -> None:
        """Set ``priority`` (P1..P5), ``title`` (the alert message) or ``description``."""
        paths = {"priority": "priority", "title": "message", "description": "description"}
        for name in fields:
            if name not in paths:
                raise PermanentError(f"{self.name}: cannot set {name!r} on an Opsgenie alert "
                                     "(priority, title and description can be set)", connection=self.name)
        if "priority" in fields and fields["priority"] not in PRIORITIES:
            raise PermanentError(f"{self.name}: Opsgenie priorities are P1..P5, not {fields['priority']!r}",
                                 connection=self.name)
        for name, value in fields.items():
            key = paths[name]
            self._call("PUT", f"/v2/alerts/{record_id}/{key}", what=f"set the {key} of alert {record_id}",
                       params={"identifierType": "id"}, json={key: value})

    def add_note(self, record_id: str, text: str) -> None:
        self._action(record_id, "notes", what=f"add a note to alert {record_id}", note=text)

    def has_note(self, record_id: str, tag: str) -> bool:
        return any(tag in entry.text for entry in self.list_notes(record_id))

    def list_notes(self, record_id: str) -> list[TimelineEntry]:
        """The alert's notes, oldest first (``order=asc``, following ``paging.next`` offsets)."""
        entries: list[TimelineEntry] = []
        params = {"identifierType": "id", "order": "asc", "direction": "next", "limit": str(PAGE_LIMIT)}
        while True:
            page = self._call("GET", f"/v2/alerts/{record_id}/notes", what=f"list notes of alert {record_id}",
                              params=params).json()
            data = page.get("data") or []
            entries += [note_entry(record_id, note) for note in data]
            if len(data) < PAGE_LIMIT or not (page.get("paging") or {}).get("next"):
                return entries
            params = {**params, "offset": str(data[-1].get("offset"))}

    def _get_alert(self, record_id: str) -> Mapping[str, Any]:
        return self._call("GET", f"/v2/alerts/{record_id}", what=f"read alert {record_id}",
                          params={"identifierType": "id"}).json()["data"]

    def get_incident(self, record_id: str) -> Incident:
        return incident_from_rest(self._get_alert(record_id), source=self.name, web_url=self.web_url)

    def check(self) -> CheckResult:
        """One authenticated read (``GET /v2/alerts?limit=1``): is the key accepted with read access?"""
        try:
            self._call("GET", "/v2/alerts", what="list alerts", params={"limit": "1"})
        except ConnectorError as exc:
            kind = "API key refused" if exc.status in (401, 403) else "unreachable"
            return CheckResult(ok=False, message=f"Opsgenie {kind}: {exc}", details={"status": exc.status})
        return CheckResult(ok=True, message=f"API key accepted; actions are made as {self.user!r}")
