"""The Slack simulator's workspace: users, the app's bot user, channels, messages (with ts), reactions, pins.

Every change goes through `SimWorkspace` under one lock and hands the Events API event Slack would send
to `emit` (only for channels the app is a member of, as Slack does; the app's own posts included, with
``bot_id``). Renderings follow the Web API's shapes: a message ``{type, user, text, ts, team, blocks,
client_msg_id | bot_id+app_id+bot_profile, thread_ts, reply_count, latest_reply, reactions, pinned_to}``,
a conversation ``{id, name, is_channel, is_group, is_private, is_archived, is_member, created, creator}``.
Errors are `SlackError` (rendered as HTTP 200 ``{"ok": false, "error": <code>}``).
"""

from __future__ import annotations

import random
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_USERS = {"alice": "Alice Adams", "bob": "Bob Brown", "carol": "Carol Chen", "dave": "Dave Diaz"}
BOT_HANDLE = "itsm-bridge"


class SlackError(Exception):
    """A Web API error: ``{"ok": false, "error": code, ...extra}`` with HTTP `status` (200 unless 429)."""

    def __init__(self, error: str, *, status: int = 200, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(error)
        self.error, self.status, self.headers, self.extra = error, status, headers or {}, extra

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, **self.extra}


@dataclass
class SimChannel:
    id: str
    name: str
    created: int
    creator: str
    private: bool = False
    archived: bool = False
    members: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)   # every message, in ts order
    pins: list[dict[str, Any]] = field(default_factory=list)        # {ts, created, created_by}


class SimWorkspace:
    def __init__(self, *, emit: Callable[[dict[str, Any]], None], seed: int = 1,
                 clock: Callable[[], float] = time.time) -> None:
        self.emit, self.clock, self.lock = emit, clock, threading.RLock()
        self._random = random.Random(seed)
        self._last_us = 0
        self.team = {"id": "T0" + self._code(8), "domain": "itsm-sim", "name": "ITSM Simulator"}
        self.app_id = "A0" + self._code(8)
        self.users: dict[str, dict[str, Any]] = {}
        for handle, name in DEFAULT_USERS.items():
            self.add_user(handle, name)
        self.bot_id = "B0" + self._code(8)
        self.bot = self.add_user(BOT_HANDLE, "ITSM Bridge", is_bot=True)
        self.channels: dict[str, SimChannel] = {}

    # -- ids and clocks -------------------------------------------------------------------------------
    def _code(self, length: int) -> str:
        return "".join(self._random.choice(string.ascii_uppercase + string.digits) for _ in range(length))

    def new_id(self, prefix: str, length: int = 9) -> str:
        return prefix + self._code(length)

    def next_ts(self) -> str:
        """A message ts: the clock in microseconds, strictly increasing (unique per workspace here)."""
        with self.lock:
            self._last_us = max(int(self.clock() * 1_000_000), self._last_us + 1)
            return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def trigger_id(self) -> str:
        return f"{self._random.randrange(10**12)}.{self._random.randrange(10**12)}.{uuid.UUID(int=self._random.getrandbits(128)).hex}"

    # -- people and channels --------------------------------------------------------------------------
    def add_user(self, handle: str, real_name: str, *, is_bot: bool = False) -> dict[str, Any]:
        with self.lock:
            user = {"id": "U0" + self._code(8), "name": handle, "real_name": real_name, "is_bot": is_bot,
                    "display_name": "" if is_bot else real_name.split()[0]}
            self.users[handle] = user
            return user

    def user(self, ref: str) -> dict[str, Any]:
        """A user by handle or id (SlackError user_not_found)."""
        found = self.users.get(ref) or next((u for u in self.users.values() if u["id"] == ref), None)
        if found is None:
            raise SlackError("user_not_found")
        return found

    def create_channel(self, name: str, *, creator: str = "alice", private: bool = False,
                       members: tuple[str, ...] = ("alice", "bob", "carol", "dave"), bot: bool = True) -> SimChannel:
        with self.lock:
            if any(c.name == name for c in self.channels.values()):
                raise SlackError("name_taken")
            channel = SimChannel(id=("G0" if private else "C0") + self._code(8), name=name, private=private,
                                 created=int(self.clock()), creator=self.user(creator)["id"],
                                 members={self.user(m)["id"] for m in (creator, *members)})
            if bot:
                channel.members.add(self.bot["id"])
            self.channels[channel.id] = channel
            return channel

    def channel(self, ref: Any, *, as_bot: bool = True) -> SimChannel:
        """A channel by id, name or #name. A private channel the app is not in does not exist for it."""
        text = str(ref or "").lstrip("#")
        found = self.channels.get(text) or next((c for c in self.channels.values() if c.name == text), None)
        if found is None or (as_bot and found.private and self.bot["id"] not in found.members):
            raise SlackError("channel_not_found")
        return found

    def readable(self, ref: Any) -> SimChannel:
        """A channel whose history the app may read: it must be a member (``not_in_channel``)."""
        channel = self.channel(ref)
        if self.bot["id"] not in channel.members:
            raise SlackError("not_in_channel")
        return channel

    def find(self, channel: SimChannel, ts: Any) -> dict[str, Any]:
        found = next((m for m in channel.messages if m["ts"] == ts), None)
        if found is None:
            raise SlackError("message_not_found")
        return found

    # -- renderings -----------------------------------------------------------------------------------
    def conversation(self, channel: SimChannel) -> dict[str, Any]:
        return {"id": channel.id, "name": channel.name, "name_normalized": channel.name,
                "is_channel": not channel.private, "is_group": False, "is_im": False, "is_mpim": False,
                "is_private": channel.private, "is_archived": channel.archived, "is_general": False,
                "is_shared": False, "is_ext_shared": False, "is_org_shared": False,
                "is_member": self.bot["id"] in channel.members, "created": channel.created,
                "creator": channel.creator, "unlinked": 0, "num_members": len(channel.members),
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0}}

    def message_view(self, channel: SimChannel, message: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in message.items() if not k.startswith("_") and v is not None}
        view["reactions"] = [{"name": name, "users": list(users), "count": len(users)}
                             for name, users in message["_reactions"].items()] or None
        if any(pin["ts"] == message["ts"] for pin in channel.pins):
            view["pinned_to"] = [channel.id]
        replies = [m for m in channel.messages if m.get("thread_ts") == message["ts"] and m["ts"] != message["ts"]]
        if replies:
            view.update(thread_ts=message["ts"], reply_count=len(replies), latest_reply=replies[-1]["ts"],
                        reply_users=sorted({r.get("user") for r in replies if r.get("user")}),
                        reply_users_count=len({r.get("user") for r in replies}), is_locked=False, subscribed=False)
        return {k: v for k, v in view.items() if v is not None}

    def user_view(self, user: dict[str, Any]) -> dict[str, Any]:
        profile = {"real_name": user["real_name"], "display_name": user["display_name"],
                   "real_name_normalized": user["real_name"], "display_name_normalized": user["display_name"]}
        if user["is_bot"]:
            profile.update(bot_id=self.bot_id, api_app_id=self.app_id, always_active=True)
        return {"id": user["id"], "team_id": self.team["id"], "name": user["name"], "deleted": False,
                "real_name": user["real_name"], "tz": "Europe/Berlin", "is_admin": False, "is_owner": False,
                "is_bot": user["is_bot"], "is_app_user": False, "updated": int(self.clock()), "profile": profile}

    # -- changes --------------------------------------------------------------------------------------
    def _event(self, channel: SimChannel, event: dict[str, Any]) -> None:
        if self.bot["id"] in channel.members:
            self.emit(event)

    def post(self, channel: SimChannel, *, text: str, user: dict[str, Any], blocks: list[Any] | None = None,
             thread_ts: str | None = None, files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A message by a person or (user is the bot) by the app; fires message (and app_mention) events."""
        with self.lock:
            if channel.archived:
                raise SlackError("is_archived")
            if thread_ts is not None:
                parent = self.find(channel, thread_ts)
                thread_ts = parent.get("thread_ts") or parent["ts"]
            ts = self.next_ts()
            message: dict[str, Any] = {"type": "message", "user": user["id"], "text": text, "ts": ts,
                                       "team": self.team["id"], "_reactions": {}}
            if user["is_bot"]:
                message.update(bot_id=self.bot_id, app_id=self.app_id, blocks=blocks or None, bot_profile={
                    "id": self.bot_id, "app_id": self.app_id, "name": user["real_name"], "deleted": False,
                    "team_id": self.team["id"], "updated": int(self.clock())})
            else:
                message.update(client_msg_id=str(uuid.UUID(int=self._random.getrandbits(128))), blocks=[
                    {"type": "rich_text", "block_id": self._code(5), "elements": [
                        {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}])
            if files:
                message.update(subtype="file_share", files=files, upload=True)
            if thread_ts is not None:
                message.update(thread_ts=thread_ts, parent_user_id=self.find(channel, thread_ts).get("user"))
            channel.messages.append(message)
            event = {**self.message_view(channel, message), "channel": channel.id, "event_ts": ts,
                     "channel_type": "group" if channel.private else "channel"}
            event.pop("reactions", None)
            self._event(channel, event)
            if f"<@{self.bot['id']}>" in text and not user["is_bot"]:
                self._event(channel, {**event, "type": "app_mention"})
            return message

    def react(self, channel: SimChannel, ts: str, name: str, user: dict[str, Any]) -> None:
        with self.lock:
            message = self.find(channel, ts)
            users = message["_reactions"].setdefault(name, [])
            if user["id"] in users:
                raise SlackError("already_reacted")
            users.append(user["id"])
            self._event(channel, {"type": "reaction_added", "user": user["id"], "reaction": name,
                                  "item_user": message.get("user"), "event_ts": self.next_ts(),
                                  "item": {"type": "message", "channel": channel.id, "ts": ts}})

    def pin(self, channel: SimChannel, ts: str, user: dict[str, Any]) -> None:
        with self.lock:
            message = self.find(channel, ts)
            if any(pin["ts"] == ts for pin in channel.pins):
                raise SlackError("already_pinned")
            now = int(self.clock())
            channel.pins.append({"ts": ts, "created": now, "created_by": user["id"]})
            self._event(channel, {
                "type": "pin_added", "user": user["id"], "channel_id": channel.id, "item_user": message.get("user"),
                "pin_count": str(len(channel.pins)), "event_ts": self.next_ts(),
                "pinned_info": {"channel": channel.id, "pinned_by": user["id"], "pinned_ts": now},
                "item": {"type": "message", "channel": channel.id, "created": now, "created_by": user["id"],
                         "message": {**self.message_view(channel, message), "permalink": self.permalink(channel, ts)}}})

    def permalink(self, channel: SimChannel, ts: str) -> str:
        return f"https://{self.team['domain']}.slack.com/archives/{channel.id}/p{ts.replace('.', '')}"
