"""Teams outgoing webhooks: HMAC verification and pure parsing of the Bot Framework activity they POST.

What Microsoft documents (learn.microsoft.com, "Create Outgoing Webhooks"; MicrosoftDocs/msteams-docs
``add-outgoing-webhook.md``):
- The webhook is delivered only when a user @mentions it in a channel (never in chats), as a Bot
  Framework ``message`` activity. The service must answer within 5 seconds; the answer (a message
  ``{"type": "message", "text": ...}`` or a card) appears as a reply in the same thread.
- ``Authorization: HMAC <base64 HMAC-SHA256(key, UTF-8 body)>`` where the key is the base64-decoded
  security token shown once when the webhook is created. No timestamp is signed: we refuse activities
  whose own ``timestamp`` is older than a window, and the inbox de-duplicates on the activity id.
- ``text`` is HTML with the mention as ``<at>Name</at>``. The channel is ``channelData.channel.id``
  (also ``channelData.teamsChannelId``); ``conversation.id`` is the channel id plus
  ``;messageid=<thread root>``. Teams user ids start with ``29:``, bot ids with ``28:`` [S].
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from bridge.errors import WebhookError
from bridge.model import Change, Incident, TimelineEntry, parse_time
from connectors.base import MARKER_PREFIX

AUTH_SCHEME = "HMAC"
#: A desk ticket number as a person types it: ServiceNow ``INC0012345``, a Jira key ``OPS-42``.
TICKET_NUMBER = re.compile(r"^(?:[A-Z]{2,10}\d{4,12}|[A-Z][A-Z0-9_]{0,19}-\d{1,9})$")
_MENTION = re.compile(r"<at\b[^>]*>(.*?)</at>", re.IGNORECASE | re.DOTALL)
_BREAK = re.compile(r"<br\s*/?>|</(?:p|div|li|tr|h[1-6])>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


# -- signatures ---------------------------------------------------------------------------------------
def signing_key(security_token: str) -> bytes:
    """The HMAC key: the security token Teams shows, base64-decoded. ValueError if it is not base64."""
    try:
        return base64.b64decode(security_token.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the security token is not base64; copy it exactly as Teams showed it") from exc


def sign(security_token: str, body: bytes) -> str:
    """The value Teams puts after ``HMAC `` for `body`: base64 of HMAC-SHA256 under the decoded token."""
    return base64.b64encode(hmac.new(signing_key(security_token), body, hashlib.sha256).digest()).decode("ascii")


def verify_signature(body: bytes, headers: Mapping[str, str], security_token: str | None, *, connection: str,
                     now: datetime, max_age: int = 300) -> None:
    """Raise `WebhookError(status=401)` unless ``Authorization: HMAC`` signs `body` with the token and the
    activity's ``timestamp`` is within `max_age` seconds of `now` (0: no age check). Constant-time compare;
    messages never contain the token or the expected signature."""
    if not security_token:
        raise WebhookError(f"no security_token configured for connection {connection}; refusing unsigned "
                           "requests (set security_token to the outgoing webhook's HMAC token)", status=401)
    header = next((str(v) for k, v in (headers or {}).items() if str(k).lower() == "authorization"), "").strip()
    scheme, _, provided = header.partition(" ")
    if not header:
        raise WebhookError(f"{connection}: missing Authorization header (Teams sends \"HMAC <signature>\")",
                           status=401)
    if scheme != AUTH_SCHEME or not provided.strip():
        raise WebhookError(f"{connection}: Authorization must be \"HMAC <base64 signature>\" "
                           f"(got scheme {scheme[:20]!r})", status=401)
    try:
        expected = sign(security_token, body)
    except ValueError as exc:
        raise WebhookError(f"{connection}: {exc} (security_token setting)", status=401) from None
    if not hmac.compare_digest(provided.strip().encode("utf-8", "replace"), expected.encode("ascii")):
        raise WebhookError(f"{connection}: HMAC signature does not match the body; wrong security token or "
                           "altered body", status=401)
    stamp = _timestamp_or_none(body)
    if max_age and stamp is not None:
        age = (now - stamp).total_seconds()
        if abs(age) > max_age:
            raise WebhookError(f"{connection}: activity timestamp is {int(abs(age))}s "
                               f"{'old' if age > 0 else 'in the future'} (limit {max_age}s); a replayed or "
                               "long-delayed delivery, or clocks out of sync", status=401)


def _timestamp_or_none(body: bytes) -> datetime | None:
    """The activity's timestamp if readable; an unreadable one is reported by `read_activity` as a 400."""
    try:
        document = json.loads(body)
        return parse_time(document.get("timestamp")) if isinstance(document, dict) else None
    except (ValueError, TypeError, AttributeError):
        return None


# -- reading an activity ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    """One @mention delivered by the outgoing webhook, in plain words: who, where, when, what was asked."""

    activity_id: str
    at: datetime
    channel_id: str
    channel_name: str | None
    team: Mapping[str, Any]
    tenant_id: str | None
    user: Mapping[str, Any]
    text: str                    # plain text with the webhook's own mention removed
    from_bot: bool
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def author(self) -> str:
        return str(self.user.get("name") or self.user.get("id") or "unknown")

    @property
    def command(self) -> tuple[str, str]:
        """(``open``|``link``|``help``|``message``, the rest): the first word decides."""
        word, _, rest = self.text.strip().partition(" ")
        word = word.lower()
        if word in ("", "help", "?"):
            return "help", ""
        if word in ("open", "link"):
            return word, rest.strip()
        return "message", self.text.strip()


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _obj(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def plain_text(text: str, *, mention: str | None) -> str:
    """Teams HTML as plain text: the webhook's own ``<at>`` mention removed (the one named `mention`, else
    the first), other mentions kept as the name, tags dropped, entities decoded, whitespace tidied."""
    names = [_mention_name(match.group(0)) for match in _MENTION.finditer(text)]
    ours = names.index(mention) if mention in names else 0
    count = iter(range(len(names)))
    text = _MENTION.sub(lambda match: " " if next(count) == ours else _mention_name(match.group(0)), text)
    text = _TAG.sub("", _BREAK.sub("\n", text))
    lines = (" ".join(html.unescape(line).replace("\xa0", " ").split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _mention_name(tag: str) -> str:
    """``<at>Ana&nbsp;Ops</at>`` -> ``Ana Ops``."""
    match = _MENTION.search(tag)
    inner = match.group(1) if match else tag
    return " ".join(html.unescape(_TAG.sub("", inner)).replace("\xa0", " ").split())


def _webhook_mention(activity: Mapping[str, Any]) -> str | None:
    """The name under which the webhook was mentioned: the mention entity naming the recipient, else the
    recipient's name; None when the activity says neither (the first ``<at>`` is then taken)."""
    recipient = _obj(activity.get("recipient"))
    for entity in activity.get("entities") or ():
        entity = _obj(entity)
        mentioned = _obj(entity.get("mentioned"))
        if entity.get("type") == "mention" and recipient.get("id") and mentioned.get("id") == recipient["id"]:
            return _mention_name(str(entity.get("text") or "")) or mentioned.get("name")
    return recipient.get("name") or None


def read_activity(body: bytes) -> Message:
    """The `Message` one verified request carries; `WebhookError(status=400)` naming the bad field."""
    try:
        activity = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(f"body is not JSON ({exc}); expected a Teams outgoing webhook activity", status=400) from exc
    if not isinstance(activity, dict):
        raise WebhookError(f"body must be a Bot Framework activity object, got {_short(activity)}", status=400)
    if activity.get("type") != "message":
        raise WebhookError(f"type must be \"message\" (outgoing webhooks send only messages), got "
                           f"{_short(activity.get('type'))}", status=400)
    activity_id = activity.get("id")
    if not isinstance(activity_id, str) or not activity_id:
        raise WebhookError(f"id must be a non-empty string, got {_short(activity_id)}", status=400)
    try:
        at = parse_time(activity.get("timestamp")) if isinstance(activity.get("timestamp"), str) else None
    except ValueError:
        at = None
    if at is None:
        raise WebhookError(f"timestamp must be an ISO 8601 time, got {_short(activity.get('timestamp'))}", status=400)
    data = _obj(activity.get("channelData"))
    conversation = _obj(activity.get("conversation"))
    channel_id = _obj(data.get("channel")).get("id") or data.get("teamsChannelId") \
        or str(conversation.get("id") or "").split(";messageid=")[0]
    if not isinstance(channel_id, str) or not channel_id:
        raise WebhookError("channelData.channel.id (or conversation.id) must name the channel; the activity "
                           "names none (outgoing webhooks work in team channels only)", status=400)
    text = activity.get("text")
    if not isinstance(text, str):
        raise WebhookError(f"text must be a string, got {_short(text)}", status=400)
    user = _obj(activity.get("from"))
    user_id = str(user.get("id") or "")
    return Message(
        activity_id=activity_id, at=at, channel_id=channel_id, channel_name=_obj(data.get("channel")).get("name"),
        team={**_obj(data.get("team")), **({"id": data["teamsTeamId"]} if data.get("teamsTeamId") else {})},
        tenant_id=_obj(data.get("tenant")).get("id") or conversation.get("tenantId"), user=dict(user),
        text=plain_text(text, mention=_webhook_mention(activity)),
        from_bot=user.get("role") == "bot" or user_id.startswith("28:") or MARKER_PREFIX in text, raw=activity)


# -- changes ------------------------------------------------------------------------------------------
def channel_link(message: Message, *, base: str = "https://teams.microsoft.com") -> str:
    """A deep link to the channel (``/l/channel/<id>/<name>?groupId=&tenantId=``) for the ticket."""
    name = quote(message.channel_name or "channel", safe="")
    query = "&".join(f"{key}={quote(str(value), safe='')}" for key, value in
                     (("groupId", message.team.get("aadGroupId")), ("tenantId", message.tenant_id)) if value)
    return f"{base.rstrip('/')}/l/channel/{quote(message.channel_id, safe='')}/{name}" + (f"?{query}" if query else "")


def _where(message: Message) -> str:
    channel = message.channel_name or message.channel_id
    team = message.team.get("name")
    return f"channel {channel}" + (f" of team {team}" if team else "")


def to_changes(message: Message, *, connection: str, teams_url: str = "https://teams.microsoft.com") -> list[Change]:
    """The `Change` one message describes: ``chat.open``/``chat.link`` (an incident whose id is the
    channel), ``chat.message`` (a note), or nothing (help, an incomplete command, the bridge's own post)."""
    if message.from_bot:
        return []
    command, rest = message.command
    base = {"connection": connection, "record_id": message.channel_id, "event_id": message.activity_id,
            "occurred_at": message.at, "via": "webhook"}
    if command == "message":
        entry = TimelineEntry(id=f"{message.channel_id}:{message.activity_id}", at=message.at, kind="note",
                              text=rest, author=message.author)
        return [Change(event_type="chat.message", entries=(entry,), **base)]
    if command == "help" or not rest or (command == "link" and not TICKET_NUMBER.match(_ticket(rest))):
        return []
    url = channel_link(message, base=teams_url)
    raw: dict[str, Any] = {
        "command": command, "channel": {"id": message.channel_id, "name": message.channel_name, "url": url},
        "team": {key: message.team.get(key) for key in ("id", "name", "aadGroupId")}, "tenant": message.tenant_id,
        "user": {key: message.user.get(key) for key in ("id", "name", "aadObjectId")},
        "message": {"id": message.activity_id, "text": message.text},
        "conversation": _obj(message.raw.get("conversation")).get("id"),
    }
    if command == "link":
        raw["link_ticket"] = _ticket(rest)
        title = f"Microsoft Teams {_where(message)}"
    else:
        title = rest
    incident = Incident(source=connection, id=message.channel_id, title=title, status="triggered",
                        created_at=message.at, updated_at=message.at, url=url, raw=raw,
                        description=f"{'Linked' if command == 'link' else 'Opened'} from Microsoft Teams by "
                                    f"{message.author} in {_where(message)}.")
    return [Change(event_type=f"chat.{command}", incident=incident, **base)]


def _ticket(rest: str) -> str:
    return rest.split()[0].strip(".,;:()[]<>").upper() if rest.split() else ""


# -- the synchronous answer ---------------------------------------------------------------------------
def usage(hint: str = "") -> str:
    """The help text (Teams renders the markdown subset: bold, italics, lists)."""
    commands = ("- **open** *title*: open a service desk ticket for this channel's incident\n"
                "- **link** *number*: link this channel to an existing ticket (INC0012345, OPS-42)\n"
                "- **help**: this list")
    parts = [hint] if hint else []
    parts += ["Mention me with a command:", commands, "Anything else you tell me is added to the ticket's work notes."]
    return "\n\n".join(parts)


def reply_text(message: Message) -> str | None:
    """What the user sees right after the mention (None for the bridge's own posts: nothing to say)."""
    if message.from_bot:
        return None
    command, rest = message.command
    if command == "message":
        return "Noted: this goes to the ticket's work notes (if this channel has no ticket yet, " \
               "mention me with **open** or **link** first)."
    if command == "open" and rest:
        return f"Opening a ticket for \"{rest}\". Its number and link will follow in this channel " \
               "(a channel that has a ticket already keeps it, retitled)."
    if command == "link" and TICKET_NUMBER.match(_ticket(rest)):
        return f"Linking this channel to {_ticket(rest)}. A confirmation with the link will follow here."
    if command == "open":
        return usage("**open** needs a title, e.g. \"open Checkout errors in eu-west-1\".")
    if command == "link":
        shown = f" ({_ticket(rest)!r} is not one)" if rest else ""
        return usage(f"**link** needs a ticket number like INC0012345 or OPS-42{shown}.")
    return usage()
