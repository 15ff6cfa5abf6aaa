"""What Slack sends to the Request URL: signature verification, then the three kinds of request.

Slack lets one Request URL serve Event Subscriptions, Interactivity and slash commands; the body tells
them apart: a JSON document with ``type`` (``url_verification``, ``event_callback``, ``app_rate_limited``)
is the Events API, a form with ``payload=<JSON>`` is an interaction (here: the "Open a ticket" message
shortcut, ``type: message_action``), a form with ``command=`` is a slash command.

Signing (api.slack.com/authentication/verifying-requests-from-slack, slack_sdk.signature): the header
``X-Slack-Signature: v0=<hex>`` is HMAC-SHA256 under the app's signing secret of
``v0:{X-Slack-Request-Timestamp}:{raw body}``; requests whose timestamp is more than five minutes away
are refused as replays (`signature_tolerance_seconds`). Verification runs on the raw bytes before any
parsing, with a constant-time compare, and errors never show the secret or the expected signature.

Slash commands are not retried by Slack (the user sees an error instead), so their change's event id is
the invocation's ``trigger_id``; events are retried up to three times (``X-Slack-Retry-Num``) and their
event ids come from the message (see `connectors.slack.messages`), never from Slack's ``event_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from bridge.errors import WebhookError
from bridge.model import Change, Incident, TimelineEntry
from connectors.slack.messages import plain_text, ts_time

SIGNATURE_HEADER = "x-slack-signature"
TIMESTAMP_HEADER = "x-slack-request-timestamp"
VERSION = "v0"
#: Ticket numbers ``/itsm link`` accepts: ServiceNow (INC0012345), Jira/JSM keys (OPS-42).
TICKET_NUMBER = re.compile(r"^[A-Z][A-Z0-9_]*-?\d+$")
TITLE_LIMIT = 160


# -- signatures --------------------------------------------------------------------------------------
def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """``v0=<hex HMAC-SHA256(secret, "v0:{timestamp}:{body}")>``: the value of X-Slack-Signature."""
    base = f"{VERSION}:{timestamp}:".encode("ascii") + body
    return f"{VERSION}=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in (headers or {}).items()}


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str | None, *, connection: str,
                     now: datetime, tolerance: int = 300) -> None:
    """Raise `WebhookError(status=401)` unless X-Slack-Signature signs `body` and X-Slack-Request-Timestamp
    with `secret` and that timestamp lies within `tolerance` seconds of `now` (0: no time check)."""
    if not secret:
        raise WebhookError(f"no signing_secret configured for connection {connection}; refusing unsigned "
                           "requests (set signing_secret to the Slack app's Signing Secret)", status=401)
    lowered = lower_headers(headers)
    signature, stamp = lowered.get(SIGNATURE_HEADER, "").strip(), lowered.get(TIMESTAMP_HEADER, "").strip()
    if not signature:
        raise WebhookError(f"{connection}: missing X-Slack-Signature header", status=401)
    if not stamp.isdigit():
        raise WebhookError(f"{connection}: X-Slack-Request-Timestamp must be unix seconds, got "
                           f"{stamp[:20]!r}", status=401)
    expected = sign(secret, stamp, body).encode("ascii")
    if not hmac.compare_digest(signature.encode("utf-8", "replace"), expected):
        raise WebhookError(f"{connection}: X-Slack-Signature does not match the body; wrong signing secret "
                           "or altered body", status=401)
    skew = abs(now.timestamp() - int(stamp))
    if tolerance and skew > tolerance:
        raise WebhookError(f"{connection}: X-Slack-Request-Timestamp is {int(skew)}s away from our clock "
                           f"(tolerance {tolerance}s); stale or replayed request, or clocks out of sync",
                           status=401)


def request_time(headers: Mapping[str, str]) -> datetime:
    """When Slack sent the request (the signed X-Slack-Request-Timestamp): a slash command's event time."""
    stamp = lower_headers(headers).get(TIMESTAMP_HEADER, "")
    if not stamp.isdigit():
        raise WebhookError(f"X-Slack-Request-Timestamp must be unix seconds, got {stamp[:20]!r}", status=400)
    return datetime.fromtimestamp(int(stamp), tz=UTC)


# -- which kind of request ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Inbound:
    """One request to the Request URL: ``event`` (the JSON document), ``command`` (the form fields),
    ``interaction`` (the decoded ``payload``) or ``ssl_check`` (nothing to do but answer 200)."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


def read_request(body: bytes) -> Inbound:
    """Tell the Events API, a slash command and an interaction apart by the body (400 if none fits)."""
    stripped = body.lstrip()
    if stripped.startswith(b"{"):
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookError(f"body looks like JSON but does not parse ({exc}); expected a Slack event",
                               status=400) from exc
        if not isinstance(document.get("type"), str):
            raise WebhookError(f"Slack event body needs a string 'type', got {document.get('type')!r:.60}",
                               status=400)
        return Inbound("event", document)
    try:
        form = {key: values[0] for key, values in
                parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False).items()}
    except UnicodeDecodeError as exc:
        raise WebhookError(f"body is neither JSON nor a UTF-8 form ({exc})", status=400) from exc
    if "payload" in form:
        try:
            payload = json.loads(form["payload"])
        except ValueError as exc:
            raise WebhookError(f"interaction field 'payload' is not JSON ({exc})", status=400) from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise WebhookError(f"interaction payload needs a string 'type', got {str(payload)[:60]!r}", status=400)
        return Inbound("interaction", payload)
    if "command" in form:
        return Inbound("command", form)
    if form.get("ssl_check") == "1":  # Slack checking the certificate of a slash command's URL
        return Inbound("ssl_check", form)
    raise WebhookError("body is not a Slack event (JSON with 'type'), slash command (form with 'command') "
                       f"or interaction (form with 'payload'); got {body[:60]!r}", status=400)


def required(data: Mapping[str, Any], name: str, where: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise WebhookError(f"{where} field {name!r} must be a non-empty string, got {value!r:.60}", status=400)
    return value.strip()


# -- slash commands ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """A parsed ``/itsm <action> <argument>``. `action` is open, link, help, unknown (subcommand), other
    (another slash command on this URL) or direct (run outside a channel)."""

    action: str
    argument: str
    form: Mapping[str, str]


def parse_command(form: Mapping[str, str], *, command: str) -> Command:
    """Read a slash command's form fields (command, text, channel_id, user_id, team_id, trigger_id...)."""
    for name in ("channel_id", "user_id", "team_id"):
        required(form, name, "slash command")
    if form.get("command", "").strip().lower() != command:
        return Command("other", "", form)
    if form["channel_id"].startswith("D") or form.get("channel_name") == "directmessage":
        return Command("direct", "", form)
    word, _, rest = plain_text(form.get("text")).strip().partition(" ")  # Slack escapes & < > in it
    action = word.lower() or "help"
    if action not in ("open", "link", "help"):
        return Command("unknown", word, form)
    return Command(action, rest.strip(), form)


def ticket_number(argument: str) -> str | None:
    """The ticket number of ``/itsm link <number>``, upper-cased; None when it does not look like one."""
    word = argument.split()[0].upper() if argument.split() else ""
    return word if TICKET_NUMBER.match(word) else None


def channel_url(team_id: str | None, domain: str | None, channel: str) -> str:
    """A browser link to the channel: the workspace's archive URL, or the app.slack.com client."""
    if domain:
        return f"https://{domain}.slack.com/archives/{channel}"
    return f"https://app.slack.com/client/{team_id or ''}/{channel}"


def first_line(text: str, limit: int = TITLE_LIMIT) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def chat_incident(connection: str, *, channel: Mapping[str, str], user: Mapping[str, str],
                  team: Mapping[str, str | None], title: str, at: datetime, command: str, via: str,
                  link_ticket: str | None = None, message: Mapping[str, Any] | None = None) -> Incident:
    """The incident one channel is: id = channel id, opened now by `user` from `via`."""
    url = channel_url(team.get("id"), team.get("domain"), channel["id"])
    how = {"slash_command": f"with {command} {'link ' + link_ticket if link_ticket else 'open'}",
           "message_shortcut": "from a message (shortcut \"Open a ticket\")"}[via]
    who = user.get("name") or user["id"]
    description = f"Opened in Slack by {who} in #{channel['name']} {how}.\nChannel: {url}"
    if message is not None:
        description += f"\nMessage: {message.get('text', '')}"
    raw: dict[str, Any] = {"command": "link" if link_ticket else "open", "via": via, "channel": dict(channel),
                           "user": dict(user), "team": dict(team)}
    if link_ticket:
        raw["link_ticket"] = link_ticket
    if message is not None:
        raw["message"] = dict(message)
    return Incident(source=connection, id=channel["id"], title=title, status="triggered", created_at=at,
                    updated_at=at, description=description, url=url, raw=raw)


def command_change(connection: str, cmd: Command, *, at: datetime, channel_name: str, user_name: str,
                   command: str) -> Change | None:
    """The change ``/itsm open`` or ``/itsm link`` describes; None for help and anything refused."""
    form = cmd.form
    number = ticket_number(cmd.argument) if cmd.action == "link" else None
    if cmd.action not in ("open", "link") or (cmd.action == "link" and number is None):
        return None
    channel = {"id": form["channel_id"], "name": channel_name}
    title = cmd.argument if cmd.action == "open" else " ".join(cmd.argument.split()[1:])
    incident = chat_incident(
        connection, channel=channel, user={"id": form["user_id"], "name": user_name},
        team={"id": form["team_id"], "domain": form.get("team_domain")}, at=at, command=command,
        title=first_line(title) or f"Incident in #{channel_name}", via="slash_command", link_ticket=number)
    trigger = form.get("trigger_id") or hashlib.sha256(json.dumps(sorted(form.items())).encode()).hexdigest()[:32]
    return Change(connection=connection, event_id=f"slack:command:{trigger}",
                  event_type="chat.link" if number else "chat.open", record_id=channel["id"], occurred_at=at,
                  incident=incident, actor=user_name)


CAPTURE_HELP = {
    "reaction": "React with :{emoji}: to a message to copy it into the ticket's work notes.",
    "pinned": "Pin a message to copy it into the ticket's work notes.",
    "mentions": "Mention the app in a message to copy it into the ticket's work notes.",
    "all": "Every message in a linked channel is copied into the ticket's work notes.",
    "none": "Messages are not copied to the ticket; use the \"Open a ticket\" shortcut on a message.",
}


def usage(command: str, capture: str, emoji: str) -> str:
    return (f"*{command} open <title>* opens a service desk ticket for this channel.\n"
            f"*{command} link <ticket number>* links this channel to an existing ticket "
            "(INC0012345, OPS-42).\n"
            f"*{command} help* shows this.\n" + CAPTURE_HELP[capture].format(emoji=emoji) +
            " Updates from the desk are posted in the channel.")


def command_reply(cmd: Command, *, command: str, capture: str, emoji: str, channel_name: str) -> dict[str, Any]:
    """The ephemeral answer the user sees at once (the ticket link follows in the channel)."""
    if cmd.action == "open":
        title = first_line(cmd.argument) or f"Incident in #{channel_name}"
        text = (f"Opening a ticket for #{channel_name}: \"{title}\". The ticket number and link will be "
                "posted in this channel.")
    elif cmd.action == "link" and ticket_number(cmd.argument):
        text = (f"Linking #{channel_name} to {ticket_number(cmd.argument)}. A confirmation with the link will "
                "be posted in this channel.")
    elif cmd.action == "link":
        shown = cmd.argument.split()[0] if cmd.argument.split() else ""
        text = (f"\"{shown}\" does not look like a ticket number. " if shown else "Which ticket? ") + \
            f"Write it like *{command} link INC0012345* or *{command} link OPS-42*."
    elif cmd.action == "unknown":
        text = f"Unknown subcommand \"{cmd.argument}\".\n" + usage(command, capture, emoji)
    elif cmd.action == "direct":
        text = f"Run {command} in the incident's channel, not in a direct message."
    elif cmd.action == "other":
        text = f"This app answers {command} only."
    else:
        text = usage(command, capture, emoji)
    return {"response_type": "ephemeral", "text": text}


# -- the message shortcut ----------------------------------------------------------------------------
def shortcut_change(connection: str, payload: Mapping[str, Any], *, callback_id: str, entry: TimelineEntry | None,
                    user_name: str, author: str | None) -> Change | None:
    """"Open a ticket" on a message: a ticket titled by its first line, that message as the first note.
    None for other interactions (block actions, other shortcuts)."""
    if payload.get("type") != "message_action" or payload.get("callback_id") != callback_id:
        return None
    channel, user, team = (payload.get(key) if isinstance(payload.get(key), Mapping) else {}
                           for key in ("channel", "user", "team"))
    message = payload.get("message") if isinstance(payload.get("message"), Mapping) else {}
    channel_id, user_id = required(channel, "id", "shortcut channel"), required(user, "id", "shortcut user")
    trigger = required(payload, "trigger_id", "shortcut")
    at = ts_time(payload.get("action_ts"), field="action_ts")
    text = plain_text(message.get("text"))
    incident = chat_incident(
        connection, channel={"id": channel_id, "name": str(channel.get("name") or channel_id)},
        user={"id": user_id, "name": user_name}, team={"id": team.get("id"), "domain": team.get("domain")},
        title=first_line(text) or f"Incident in #{channel.get('name') or channel_id}", at=at, command="",
        via="message_shortcut", message={"ts": message.get("ts"), "text": text, "user": message.get("user"),
                                         "author": author})
    return Change(connection=connection, event_id=f"slack:shortcut:{trigger}", event_type="chat.open",
                  record_id=channel_id, occurred_at=at, incident=incident,
                  entries=(entry,) if entry is not None else (), actor=user_name)
