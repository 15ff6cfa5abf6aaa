"""The Teams simulator's tenant: teams, channels, users, the messages of each channel, and flow runs.

Ids look like Teams' own: teams and channels ``19:<32 hex>@thread.tacv2``, users ``29:<opaque>`` with an
``aadObjectId``, the outgoing webhook ``28:<guid>``, message ids the post time in epoch milliseconds
(which is what Teams uses, and what ``conversation.id``'s ``;messageid=`` names). Everything changes under
one lock; `activity` renders a user's message as the Bot Framework activity an outgoing webhook POSTs.
"""

from __future__ import annotations

import html
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

DEFAULT_TEAMS = {"sre": "Site Reliability"}
DEFAULT_CHANNELS = {"general": ("General", "sre"), "inc-checkout": ("inc-checkout", "sre"),
                    "inc-payments": ("inc-payments", "sre")}
DEFAULT_USERS = {"alice": "Alice Adams", "bob": "Bob Brown", "carol": "Carol Chen", "dave": "Dave Diaz"}
SERVICE_URL = "https://smba.trafficmanager.net/emea/"


class SimError(Exception):
    """An error answered the way Logic Apps / Workflows answer: ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class SimChannel:
    key: str
    id: str
    name: str
    team: str
    sig: str                     # the sig= of this channel's workflow URL
    messages: list[dict[str, Any]] = field(default_factory=list)


def iso(moment: datetime, *, offset_hours: int = 0) -> str:
    """Bot Framework's time format: UTC with ``Z``, or local with an offset (``localTimestamp``)."""
    local = moment.astimezone(timezone(timedelta(hours=offset_hours)))
    text = local.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if offset_hours == 0 else text


class SimTenant:
    def __init__(self, *, seed: int = 1, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock, self.lock = clock, threading.RLock()
        self._random = random.Random(seed)
        self.tenant_id = self.guid()
        self.teams = {key: {"id": self.thread_id(), "name": name, "aadGroupId": self.guid()}
                      for key, name in DEFAULT_TEAMS.items()}
        self.users = {handle: {"id": f"29:1{self._random.getrandbits(160):040x}", "name": name,
                               "aadObjectId": self.guid()} for handle, name in DEFAULT_USERS.items()}
        self.channels: dict[str, SimChannel] = {}
        for key, (name, team) in DEFAULT_CHANNELS.items():
            self.create_channel(key, name=name, team=team)
        self._last_ms = 0

    def guid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def thread_id(self) -> str:
        return f"19:{self._random.getrandbits(128):032x}@thread.tacv2"

    def create_channel(self, key: str, *, name: str | None = None, team: str = "sre") -> SimChannel:
        with self.lock:
            if team not in self.teams:
                raise KeyError(f"no team {team!r} (known: {', '.join(self.teams)})")
            channel = SimChannel(key=key, id=self.thread_id(), name=name or key, team=team,
                                 sig=f"{self._random.getrandbits(256):064x}")
            self.channels[key] = channel
            return channel

    def channel(self, key_or_id: str) -> SimChannel:
        with self.lock:
            if key_or_id in self.channels:
                return self.channels[key_or_id]
            for channel in self.channels.values():
                if channel.id == key_or_id:
                    return channel
        raise KeyError(f"no channel {key_or_id!r} (known: {', '.join(self.channels)})")

    def user(self, handle: str) -> dict[str, str]:
        if handle not in self.users:
            raise KeyError(f"no user {handle!r} (known: {', '.join(self.users)})")
        return self.users[handle]

    def _message_id(self, now: datetime) -> str:
        """Epoch milliseconds, strictly increasing (two posts in one millisecond get distinct ids)."""
        ms = max(int(now.timestamp() * 1000), self._last_ms + 1)
        self._last_ms = ms
        return str(ms)

    # -- messages -----------------------------------------------------------------------------------
    def post(self, channel: SimChannel, *, kind: str, author: dict[str, Any], text: str | None = None,
             card: dict[str, Any] | None = None, root: str | None = None) -> dict[str, Any]:
        """Append a message: ``user`` (a person's post, HTML), ``reply`` (the webhook's answer, in the
        thread of `root`) or ``card`` (a workflow's Adaptive Card)."""
        with self.lock:
            now = self.clock()
            message = {"id": self._message_id(now), "at": now, "kind": kind, "from": author, "text": text,
                       "card": card, "root": root}
            message["root"] = root or message["id"]
            channel.messages.append(message)
            return message

    def activity(self, channel: SimChannel, message: dict[str, Any], *, webhook: dict[str, str],
                 mentioned: bool) -> dict[str, Any]:
        """The Bot Framework activity Teams POSTs to an outgoing webhook for `message`."""
        team = self.teams[channel.team]
        tag = f"<at>{html.escape(webhook['name'])}</at>"
        body = html.escape(message["text"] or "")
        text = f"{tag} {body}" if mentioned else body
        author = message["from"]
        return {
            "type": "message", "id": message["id"], "timestamp": iso(message["at"]),
            "localTimestamp": iso(message["at"], offset_hours=1), "serviceUrl": SERVICE_URL, "channelId": "msteams",
            "from": {"id": author["id"], "name": author["name"], "aadObjectId": author.get("aadObjectId")},
            "conversation": {"isGroup": True, "conversationType": "channel", "tenantId": self.tenant_id,
                             "id": f"{channel.id};messageid={message['root']}", "name": None},
            "recipient": {"id": webhook["id"], "name": webhook["name"]},
            "textFormat": "plain", "attachmentLayout": None, "membersAdded": [], "membersRemoved": [],
            "locale": "en-US", "text": text,
            "attachments": [{"contentType": "text/html", "contentUrl": None, "name": None, "thumbnailUrl": None,
                             "content": f"<div><div>{text}</div></div>"}],
            "entities": ([{"type": "mention", "text": tag, "mentioned": dict(webhook)}] if mentioned else [])
            + [{"type": "clientInfo", "locale": "en-US", "country": "GB", "platform": "Web", "timezone": "Europe/London"}],
            "channelData": {"teamsChannelId": channel.id, "teamsTeamId": team["id"],
                            "channel": {"id": channel.id, "name": channel.name},
                            "team": {"id": team["id"], "name": team["name"], "aadGroupId": team["aadGroupId"]},
                            "tenant": {"id": self.tenant_id}},
            "replyToId": None, "value": None, "name": None,
        }
