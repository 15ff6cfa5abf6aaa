"""Pure normalisers: Jira issue, comment and webhook JSON -> the bridge's `Ticket`, `TimelineEntry`, `Change`.

Why the ticket fields look as they do: the mapping layer writes flat strings and the engine compares
what it wrote with what it reads back, so every value reads back in the form it is written:
``priority``/``status``/``resolution`` by name, ``assignee`` by account id (what Cloud accepts on
write), ``labels``/``components`` comma-joined, custom fields as strings. The bridge's own marker
labels (``itsm-bridge``, ``itsm-bridge-<id>``) are plumbing and are left out of ``labels``. ``state``
repeats ``status`` because the engine's back-path reads a desk's state from ``state``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from bridge.errors import WebhookError
from bridge.model import Change, Ticket, TimelineEntry

BRIDGE_LABEL = "itsm-bridge"
PROPERTY_KEY = "itsm-bridge"
_UNSAFE_LABEL = re.compile(r"[^A-Za-z0-9_.:\-]+")
WEBHOOK_EVENTS = {"jira:issue_created": "ticket.created", "jira:issue_updated": "ticket.updated",
                  "comment_created": "ticket.commented"}


def correlation_label(correlation_id: str) -> str:
    """``itsm-bridge-<id>`` with anything a label cannot hold (spaces, quotes, ...) replaced by ``_``."""
    return f"{BRIDGE_LABEL}-{_UNSAFE_LABEL.sub('_', correlation_id.strip())}"[:255]


def is_bridge_label(label: str) -> bool:
    return label == BRIDGE_LABEL or label.startswith(BRIDGE_LABEL + "-")


def format_jira_time(moment: datetime) -> str:
    """``2025-03-14T09:02:15.204+0000``: Jira's date-time format, in UTC."""
    moment = moment.astimezone(timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}+0000"


def parse_jira_time(value: str) -> datetime:
    """``2025-03-14T09:02:15.204+0000`` (or ISO with ``Z``/``+00:00``) as an aware UTC datetime."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def person(user: Any) -> str | None:
    """Who a Jira user object is, as the audit trail shows it: e-mail when visible, else display name."""
    if not isinstance(user, Mapping):
        return None
    return user.get("emailAddress") or user.get("displayName") or user.get("accountId") or None


def flat(value: Any) -> str:
    """A field value as the flat string the mapping layer writes and the engine compares."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return ",".join(flat(item) for item in value)
    if isinstance(value, Mapping):
        if "requestType" in value:  # JSM "Request Type" field
            return flat(value["requestType"].get("name"))
        if value.get("type") == "doc":  # ADF (v3): its text, one line per paragraph
            return "\n".join(_adf_text(block) for block in value.get("content") or [])
        for key in ("value", "name", "accountId", "key", "id"):
            if key in value:
                return flat(value[key])
    return json.dumps(value, sort_keys=True)


def _adf_text(node: Mapping[str, Any]) -> str:
    if node.get("type") == "text":
        return str(node.get("text", ""))
    return "".join(_adf_text(child) for child in node.get("content") or [])


def normalise_entry(comment: Mapping[str, Any]) -> TimelineEntry:
    """A comment as a timeline line: public (portal) comments are ``comment``, internal ones ``work_note``.

    Outside a service project Jira gives no ``jsdPublic``; every comment there is visible, so public.
    """
    public = bool(comment.get("jsdPublic", True))
    return TimelineEntry(id=str(comment["id"]), at=parse_jira_time(comment["created"]),
                         kind="comment" if public else "work_note", text=flat(comment.get("body")),
                         author=person(comment.get("author")), public=public)


def last_actor(issue: Mapping[str, Any]) -> str | None:
    """Who made the issue's latest change: the newer of the last changelog entry and the last comment."""
    candidates: list[tuple[datetime, str | None]] = []
    histories = (issue.get("changelog") or {}).get("histories") or []
    if histories:
        newest = max(histories, key=lambda h: parse_jira_time(h["created"]))
        candidates.append((parse_jira_time(newest["created"]), person(newest.get("author"))))
    comments = ((issue.get("fields") or {}).get("comment") or {}).get("comments") or []
    if comments:
        newest = max(comments, key=lambda c: parse_jira_time(c.get("updated") or c["created"]))
        candidates.append((parse_jira_time(newest.get("updated") or newest["created"]),
                           person(newest.get("updateAuthor") or newest.get("author"))))
    return max(candidates, key=lambda pair: pair[0])[1] if candidates else None


def normalise_ticket(issue: Mapping[str, Any], *, connection: str, site_url: str,
                     actor: str | None = None) -> Ticket:
    """An issue (v2 JSON, as GET, search or a webhook gives it) as a `Ticket`; absent fields are left out."""
    key = str(issue["key"])
    raw = issue.get("fields") or {}
    fields: dict[str, str] = {}
    for name in ("summary", "description", "priority", "assignee", "resolution"):
        if name in raw:
            fields[name] = flat(raw[name])
    if "status" in raw and isinstance(raw["status"], Mapping):
        fields["status"] = fields["state"] = flat(raw["status"].get("name"))
        fields["status_category"] = flat((raw["status"].get("statusCategory") or {}).get("key"))
    if "labels" in raw:
        fields["labels"] = ",".join(label for label in raw["labels"] or [] if not is_bridge_label(label))
    if "components" in raw:
        fields["components"] = ",".join(flat(c.get("name")) for c in raw["components"] or [])
    for name, value in raw.items():
        if name.startswith("customfield_"):
            fields[name] = flat(value)
    marker = (issue.get("properties") or {}).get(PROPERTY_KEY)
    if isinstance(marker, Mapping) and marker.get("correlation_id"):
        # Which incident the issue belongs to, when the read asked for the bridge's entity property: a desk
        # change seen before the bridge recorded its create then waits for that link instead of being lost.
        fields["correlation_id"] = flat(marker["correlation_id"])
    updated = raw.get("updated") or raw.get("created")
    if not updated:
        raise ValueError(f"issue {key} has no 'updated' time")
    return Ticket(connection=connection, id=key, number=key, url=f"{site_url}/browse/{key}", fields=fields,
                  updated_at=parse_jira_time(updated), updated_by=actor or last_actor(issue))


def normalise_poll_change(issue: Mapping[str, Any], *, connection: str, site_url: str) -> Change:
    """One polled issue version; the event id is stable per version (``updated`` at millisecond resolution)."""
    ticket = normalise_ticket(issue, connection=connection, site_url=site_url)
    comments = ((issue.get("fields") or {}).get("comment") or {}).get("comments") or []
    updated = str(issue["fields"]["updated"])
    return Change(connection=connection, event_id=f"poll:{ticket.id}:{updated}", event_type="ticket.updated",
                  record_id=ticket.id, occurred_at=ticket.updated_at, ticket=ticket,
                  entries=tuple(normalise_entry(c) for c in comments), actor=ticket.updated_by, via="poll")


def parse_webhook_payload(body: bytes, headers: Mapping[str, str], *, connection: str,
                          site_url: str) -> list[Change]:
    """The changes one Jira webhook describes; `WebhookError(400)` naming the field when malformed.

    Issue events carry the ticket (no entries: comment objects inside ``jira:issue_*`` are deprecated);
    ``comment_created`` carries the comment as its entry and a ticket built from the issue subset.
    Other events (deletions, worklogs, ...) are acknowledged and yield nothing.
    """
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookError(f"{connection}: webhook body is not JSON", status=400) from exc
    if not isinstance(payload, Mapping):
        raise WebhookError(f"{connection}: webhook body is not a JSON object", status=400)
    event = _required(payload, "webhookEvent", str, connection)
    if event not in WEBHOOK_EVENTS:
        return []
    issue = _required(payload, "issue", Mapping, connection)
    key = _required(issue, "key", str, connection, where="issue.key")
    _required(issue, "fields", Mapping, connection, where="issue.fields")
    timestamp = payload.get("timestamp")
    lowered = {name.lower(): value for name, value in headers.items()}
    event_id = lowered.get("x-atlassian-webhook-identifier") or f"{event}:{key}:{timestamp}"
    entries: tuple[TimelineEntry, ...] = ()
    actor = person(payload.get("user"))
    if event == "comment_created":
        comment = _required(payload, "comment", Mapping, connection)
        for name in ("id", "created"):
            _required(comment, name, (str, int), connection, where=f"comment.{name}")
        entries = (normalise_entry(comment),)
        actor = entries[0].author
    try:
        fields = dict(issue["fields"])
        if "updated" not in fields and not fields.get("created"):
            if not isinstance(timestamp, (int, float)):
                raise WebhookError(f"{connection}: webhook field 'timestamp' is missing and the issue has no "
                                   "'updated' time", status=400)
            fields["updated"] = datetime.fromtimestamp(timestamp / 1000, timezone.utc).isoformat()
        ticket = normalise_ticket({**issue, "fields": fields}, connection=connection, site_url=site_url, actor=actor)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise WebhookError(f"{connection}: webhook field 'issue.fields' is unreadable ({type(exc).__name__}: "
                           f"{exc})", status=400) from exc
    occurred = (datetime.fromtimestamp(timestamp / 1000, timezone.utc) if isinstance(timestamp, (int, float))
                else ticket.updated_at)
    return [Change(connection=connection, event_id=str(event_id), event_type=WEBHOOK_EVENTS[event], record_id=key,
                   occurred_at=occurred, ticket=ticket, entries=entries, actor=actor, via="webhook")]


def _required(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], connection: str, *,
              where: str | None = None) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or value == "":
        raise WebhookError(f"{connection}: webhook field '{where or name}' is missing or malformed", status=400)
    return value


def issue_changes_cursor(issues: Sequence[Mapping[str, Any]], cursor: str) -> str:
    """The newest ``updated`` seen (Jira's own string), or `cursor` when nothing newer came."""
    newest = cursor
    for issue in issues:
        updated = str(issue["fields"]["updated"])
        if parse_jira_time(updated) > parse_jira_time(newest):
            newest = updated
    return newest
