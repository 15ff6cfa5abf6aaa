"""Grafana OnCall alert groups as a source: outgoing webhooks in, catch-up polls, and the way back.

Verified in grafana/oncall (OSS, archived 2026-03-24; Grafana Cloud IRM keeps the same public API):
``docs/sources/oncall-api-reference/{alertgroups,resolution_notes,escalation}.md``,
``engine/apps/public_api/views/{alert_groups,resolution_notes}.py``, ``serializers/{alert_groups,
resolution_notes}.py``, ``common/api_helpers/{paginators,filters}.py``, ``throttlers/user_throttle.py``:
- ``Authorization: <token>`` with no scheme; a bad token is refused with 403 ``{"detail": "Invalid
  token."}`` (the authenticator sends no challenge, so DRF answers 403, not 401).
- ``GET /api/v1/alert_groups/`` filters ``id, route_id, integration_id, team_id, label, state``
  (``new|acknowledged|resolved|silenced``; the serialized state calls new "firing") and
  ``started_at=<%Y-%m-%dT%H:%M:%S>_<%Y-%m-%dT%H:%M:%S>`` (UTC); newest first; pages ``page``/``perpage``
  (at most 100) answering ``{count, next, previous, results, page_size, current_page_number, total_pages}``.
  There is no updated-since filter: see `connectors.grafana_oncall.polling`.
- ``POST /api/v1/alert_groups/{id}/{acknowledge|unacknowledge|resolve|unresolve|silence|unsilence}``
  answer 200 with no body, or 400 ``{"detail": "Can't acknowledge an acknowledged alert group"}``;
  ``silence`` needs ``{"delay": seconds|-1}``. Unresolve also clears the acknowledgement (firing again).
- ``POST /api/v1/resolution_notes/`` ``{alert_group_id, text}`` -> 201 ``{id, alert_group_id, author,
  source, created_at, text}``; ``GET /api/v1/resolution_notes/?alert_group_id=`` pages the same way.
- ``POST /api/v1/escalation/`` ``{alert_group_id, users: [{id, important}]}`` pages users on an existing,
  unresolved alert group (direct paging).
- 300 requests per minute per token; 429 carries ``Retry-After``.

The way back: acknowledged -> ``acknowledge`` (after ``unresolve`` when resolved); resolved ->
``resolve``; triggered -> ``unresolve``/``unacknowledge``/``unsilence`` by the current state. The
alert group is read first, so asking for the state it is already in (canonically: silenced counts as
acknowledged) is a no-op. Notes are resolution notes. Alert groups have no priority or severity that
the API can set: `update` refuses every field, so a desk priority change cannot flow back.
The token travels per request, never on the shared session, and never appears in errors or logs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

import requests

from bridge.errors import ConnectorError, NotFoundError, PermanentError
from bridge.http import call
from bridge.model import Change, Incident, TimelineEntry, utcnow
from connectors.base import CheckResult, Connector, PollResult
from connectors.grafana_oncall.polling import poll_alert_groups
from connectors.grafana_oncall.webhooks import (
    STATE_MAP,
    incident_from_alert_group,
    note_entry,
    parse_payload,
    verify_token,
)

__all__ = ["GrafanaOncallConnector"]

log = logging.getLogger(__name__)

MAX_PAGES = 200
LABEL = "Grafana OnCall"


class GrafanaOncallConnector(Connector):
    """Grafana OnCall public API v1 + outgoing webhooks. Settings: ``api_url``, ``api_token``,
    ``webhook_secret``, ``catch_up_hours``, ``page_size``, ``severity_label``, ``escalation_users``,
    ``escalation_important``."""

    slug: ClassVar[str] = "grafana_oncall"
    roles: ClassVar[frozenset[str]] = frozenset({"source"})

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        super().__init__(name, settings, session=session)
        self.api_url = str(settings.get("api_url") or "").rstrip("/")
        self.catch_up = timedelta(hours=int(settings.get("catch_up_hours") or 24))
        self.page_size = int(settings.get("page_size") or 50)
        self.severity_label = str(settings.get("severity_label") or "severity")
        self.escalation_users = [str(user) for user in settings.get("escalation_users") or ()]
        self.escalation_important = bool(settings.get("escalation_important"))
        self._integrations: dict[str, str] = {}
        self._usernames: dict[str, str] = {}

    def __repr__(self) -> str:  # never the settings: they hold the token
        return f"GrafanaOncallConnector({self.name!r}, api_url={self.api_url!r})"

    # -- transport ------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, what: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": str(self.settings["api_token"]), "Accept": "application/json",
                   "Content-Type": "application/json"}
        return call(self.session, method, f"{self.api_url}{path}", connection=self.name, what=what,
                    headers=headers, **kwargs)

    def list_pages(self, path: str, params: Mapping[str, str], *, what: str) -> list[Mapping[str, Any]]:
        """Every ``results`` item of a paged list, following ``next`` by page number."""
        items: list[Mapping[str, Any]] = []
        number = 1
        while True:
            page = self._call("GET", path, what=what,
                              params={**params, "page": str(number), "perpage": str(self.page_size)}).json()
            items += page.get("results") or []
            if not page.get("next"):
                return items
            number += 1
            if number > MAX_PAGES:
                log.warning("%s: %s has more than %d pages; the rest is left to the next poll", self.name,
                            what, MAX_PAGES)
                return items

    # -- webhooks -------------------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: datetime) -> None:
        """The shared secret in ``Authorization``; OnCall signs nothing and sends no timestamp."""
        verify_token(headers, self.settings.get("webhook_secret"), connection=self.name)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[Change]:
        return parse_payload(body, connection=self.name, received_at=utcnow(), severity_label=self.severity_label)

    # -- catch-up poll --------------------------------------------------------------------------------
    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Alert groups started in the catch-up window that changed since the last poll, with their
        resolution notes, as ``alert_group.polled`` changes (see `poll_alert_groups`)."""
        return poll_alert_groups(self, cursor, now=now)

    def incident_from_rest(self, group: Mapping[str, Any]) -> Incident:
        """A REST alert group as an `Incident`, with the integration's name and the acknowledger's username
        looked up (cached) so it reads exactly like the same alert group from a webhook."""
        acknowledger = group.get("acknowledged_by")
        last_alert = group.get("last_alert") if isinstance(group.get("last_alert"), Mapping) else {}
        return incident_from_alert_group(
            group, source=self.name, severity_label=self.severity_label,
            service=self.integration_name(str(group.get("integration_id") or "")),
            acknowledged_by=self.username(str(acknowledger)) if acknowledger else None,
            payload=last_alert.get("payload"))

    def integration_name(self, integration_id: str) -> str | None:
        if not integration_id:
            return None
        if integration_id not in self._integrations:
            try:
                data = self._call("GET", f"/api/v1/integrations/{integration_id}/",
                                  what=f"read integration {integration_id}").json()
                self._integrations[integration_id] = str(data.get("name") or integration_id)
            except NotFoundError:  # deleted integration: its alert groups keep the id
                self._integrations[integration_id] = integration_id
        return self._integrations[integration_id]

    def username(self, user_id: str) -> str:
        if user_id not in self._usernames:
            try:
                data = self._call("GET", f"/api/v1/users/{user_id}/", what=f"read user {user_id}").json()
                self._usernames[user_id] = str(data.get("username") or user_id)
            except NotFoundError:
                self._usernames[user_id] = user_id
        return self._usernames[user_id]

    # -- the way back ---------------------------------------------------------------------------------
    def _action(self, record_id: str, action: str, *, what: str) -> None:
        self._call("POST", f"/api/v1/alert_groups/{record_id}/{action}", what=what, json={})

    def transition(self, record_id: str, status: str) -> None:
        """Acknowledge, resolve or reopen (``triggered``); a no-op when already there canonically."""
        if status not in ("triggered", "acknowledged", "resolved"):
            raise PermanentError(f"{self.name}: unknown status {status!r} (triggered, acknowledged, resolved)",
                                 connection=self.name)
        state = self._get_group(record_id).get("state")
        current = STATE_MAP.get(str(state))
        if current is None:
            raise PermanentError(f"{self.name}: alert group {record_id} is in an unknown state {state!r}",
                                 connection=self.name)
        what = f"set alert group {record_id} to {status}"
        if status == current:
            log.info("%s: alert group %s already %s (OnCall state %s)", self.name, record_id, status, state)
            return
        if status == "resolved":
            self._action(record_id, "resolve", what=what)
        elif status == "acknowledged":
            if state == "resolved":  # OnCall cannot acknowledge a resolved group: reopen it first
                self._action(record_id, "unresolve", what=what)
            self._action(record_id, "acknowledge", what=what)
        else:
            undo = {"resolved": "unresolve", "acknowledged": "unacknowledge", "silenced": "unsilence"}
            self._action(record_id, undo[str(state)], what=what)

    def update(self, record_id: str, fields: Mapping[str, str]) -> None:
        """Alert groups have no priority, severity, title or description the public API can set (the
        priority the bridge shows is read from a label), so a desk change of them cannot flow back."""
        if fields:
            raise PermanentError(f"{self.name}: cannot set {', '.join(sorted(fields))} on a Grafana OnCall alert "
                                 "group: the API sets none of them (priority is read from the "
                                 f"{self.severity_label!r} label); remove [back.fields] from the route",
                                 connection=self.name)

    def escalate(self, record_id: str) -> None:
        """Page the configured `escalation_users` on the alert group (direct paging)."""
        if not self.escalation_users:
            raise PermanentError(f"{self.name}: cannot escalate alert group {record_id}: set escalation_users "
                                 "(OnCall user ids) on the connection", connection=self.name)
        users = [{"id": user, "important": self.escalation_important} for user in self.escalation_users]
        self._call("POST", "/api/v1/escalation/", what=f"escalate alert group {record_id}",
                   json={"alert_group_id": record_id, "users": users})

    def add_note(self, record_id: str, text: str) -> None:
        self._call("POST", "/api/v1/resolution_notes/", what=f"add a resolution note to alert group {record_id}",
                   json={"alert_group_id": record_id, "text": text})

    def has_note(self, record_id: str, tag: str) -> bool:
        return any(tag in str(note.get("text") or "") for note in self._notes(record_id))

    def list_notes(self, record_id: str) -> list[TimelineEntry]:
        """The alert group's resolution notes, oldest first, authors as usernames."""
        entries = [note_entry(note, author=self.username(str(note["author"])) if note.get("author") else None)
                   for note in self._notes(record_id)]
        return sorted(entries, key=lambda entry: (entry.at, entry.id))

    def _notes(self, record_id: str) -> list[Mapping[str, Any]]:
        notes = self.list_pages("/api/v1/resolution_notes/", {"alert_group_id": record_id},
                                what=f"list resolution notes of alert group {record_id}")
        return [note for note in notes if str(note.get("alert_group_id") or record_id) == record_id]

    def _get_group(self, record_id: str) -> Mapping[str, Any]:
        return self._call("GET", f"/api/v1/alert_groups/{record_id}", what=f"read alert group {record_id}").json()

    def get_incident(self, record_id: str) -> Incident:
        return self.incident_from_rest(self._get_group(record_id))

    def check(self) -> CheckResult:
        """One authenticated read of one alert group."""
        try:
            page = self._call("GET", "/api/v1/alert_groups/", what="list alert groups",
                              params={"perpage": "1"}).json()
        except ConnectorError as exc:
            kind = "token refused" if exc.status in (401, 403) else "unreachable"
            return CheckResult(ok=False, message=f"{LABEL} {kind}: {exc}", details={"status": exc.status})
        return CheckResult(ok=True, message="token accepted; alert groups readable",
                           details={"total": page.get("count")})
