"""Slack as a chat source: ``/itsm open|link`` and the "Open a ticket" shortcut open or link a desk ticket
for an incident channel; captured messages become work notes; the desk's replies and changes are posted
back into the channel.

Web API methods used (api.slack.com/methods), all through `connectors.slack.api.SlackApi`:
auth.test (check, the app's own bot user), chat.postMessage (notes and announcements, Block Kit plus a
``text`` fallback carrying the marker), conversations.history (has_note, a reacted message, the catch-up
poll), conversations.replies (thread replies), conversations.info (a private channel's name),
users.conversations (the channels the app is in), users.info (display names), pins.list (capture =
"pinned"). slack_sdk brings its own urllib transport: the injected `session` only lends the
connection's rate limiter, taken before every call.

Catch-up poll limits: it reads the history of every channel the app is a member of, since the cursor
(the newest ts seen) minus `poll_overlap_seconds`; for capture = "reaction" it looks back
`reaction_lookback_hours`, so a reaction added while the bridge was down to an older message is missed.
Apps distributed outside the Slack Marketplace created after 2025-05-29 get a much lower
conversations.history limit (api.slack.com/apis/rate-limits): keep `poll_interval` long there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

import requests

from bridge.errors import ConnectorError, PermanentError, TransientError, WebhookError
from bridge.model import Change
from connectors.base import (
    Announcement,
    ChatConnector,
    CheckResult,
    PollResult,
    WebhookReply,
)
from connectors.slack.api import SlackApi
from connectors.slack.blocks import announcement_message, note_message
from connectors.slack.messages import (
    is_capturable,
    mentions,
    message_change,
    message_entry,
    reacted_with,
    time_ts,
    ts_time,
)
from connectors.slack.webhooks import (
    command_change,
    command_reply,
    parse_command,
    read_request,
    request_time,
    required,
    shortcut_change,
    verify_signature,
)

__all__ = ["SlackConnector"]

log = logging.getLogger(__name__)

#: A name lookup (cosmetic) is skipped rather than wait longer than this for the rate limit: Slack wants
#: every request answered within 3 seconds.
LOOKUP_MAX_WAIT = 0.5


class SlackConnector(ChatConnector):
    """A Slack workspace through one app. Settings: see `connectors.slack.config.SlackConnection`."""

    slug: ClassVar[str] = "slack"
    roles: ClassVar[frozenset[str]] = frozenset({"source"})

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        super().__init__(name, settings, session=session)
        self.api_url = str(settings.get("api_url") or "https://slack.com/api").rstrip("/")
        self.api = SlackApi(connection=name, token=str(settings["bot_token"]), api_url=self.api_url,
                            timeout=int(settings.get("timeout_seconds") or 10), session=session)
        self.command = str(settings.get("command") or "/itsm")
        self.capture = str(settings.get("capture") or "reaction")
        self.emoji = str(settings.get("capture_emoji") or "memo").strip(":")
        self.callback_id = str(settings.get("shortcut_callback_id") or "itsm_open")
        self.resolve_names = settings.get("resolve_user_names", True) is not False
        tolerance = settings.get("signature_tolerance_seconds")
        self.tolerance = 300 if tolerance is None else int(tolerance)
        self.page_size = int(settings.get("page_size") or 200)
        self.catch_up = timedelta(hours=int(settings.get("catch_up_hours") or 24))
        self.overlap = timedelta(seconds=int(settings.get("poll_overlap_seconds", 120)))
        self.lookback = timedelta(hours=int(settings.get("reaction_lookback_hours", 24)))
        self.has_note_depth = int(settings.get("has_note_depth") or 200)
        self._names: dict[str, str] = {}
        self._channel_names: dict[str, str] = {}
        self._identity: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"SlackConnector({self.name!r}, api_url={self.api_url!r}, capture={self.capture!r})"

    # -- lookups (cached for the connector's life) ------------------------------------------------------
    def display_name(self, user_id: str | None, fallback: str | None = None) -> str | None:
        """A user's display name (users.info), else `fallback` (a handle Slack sent along), else the id."""
        if not user_id or not self.resolve_names:
            return fallback or user_id
        if user_id not in self._names:
            if self.api.backlog() > LOOKUP_MAX_WAIT:
                return fallback or user_id  # the 3-second answer to Slack comes first; ask next time
            try:
                user = self.api.call("users.info", what=f"read user {user_id}", user=user_id).get("user") or {}
            except TransientError:
                return fallback or user_id  # a name is cosmetic: try again next time
            except ConnectorError as exc:
                log.info("%s: no display name for %s (%s)", self.name, user_id, exc)
                user = {}
            profile = user.get("profile") or {}
            name = profile.get("display_name") or profile.get("real_name") or user.get("real_name") or user.get("name")
            self._names[user_id] = str(name or "")  # "": unreadable (no users:read), not asked again
        return self._names[user_id] or fallback or user_id

    def channel_name(self, channel: str, given: str | None = None) -> str:
        """The channel's name; slash commands in private channels say only "privategroup"."""
        if given and given not in ("privategroup", "directmessage"):
            return given
        if channel not in self._channel_names:
            if self.api.backlog() > LOOKUP_MAX_WAIT:
                return channel
            try:
                info = self.api.call("conversations.info", what=f"read channel {channel}", channel=channel)
            except ConnectorError as exc:  # a name is cosmetic: the command still works
                log.info("%s: no name for channel %s (%s)", self.name, channel, exc)
                return channel
            self._channel_names[channel] = str((info.get("channel") or {}).get("name") or channel)
        return self._channel_names[channel]

    def identity(self) -> dict[str, Any]:
        """auth.test: the workspace and the app's own bot user (whose mentions capture = "mentions" reads)."""
        if self._identity is None:
            self._identity = self.api.call("auth.test", what="check the bot token")
        return self._identity

    # -- webhooks -------------------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: datetime) -> None:
        verify_signature(body, headers, self.settings.get("signing_secret"), connection=self.name, now=now,
                         tolerance=self.tolerance)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[Change]:
        inbound = read_request(body)
        if inbound.kind == "command":
            cmd = parse_command(inbound.data, command=self.command)
            if cmd.action not in ("open", "link"):
                return []
            change = command_change(self.name, cmd, at=request_time(headers), command=self.command,
                                    channel_name=self.channel_name(cmd.form["channel_id"], cmd.form.get("channel_name")),
                                    user_name=self.display_name(cmd.form["user_id"], cmd.form.get("user_name")) or "")
            return [change] if change is not None else []
        if inbound.kind == "interaction":
            return self._shortcut(inbound.data)
        if inbound.kind == "ssl_check":
            return []
        return self._event(inbound.data)

    def webhook_reply(self, body: bytes, headers: Mapping[str, str]) -> WebhookReply | None:
        """url_verification: the challenge; a slash command: its ephemeral answer; an interaction: an empty
        200 (Slack wants the acknowledgement only); other events: the usual answer."""
        inbound = read_request(body)
        if inbound.kind == "event":
            if inbound.data.get("type") == "url_verification":
                return WebhookReply({"challenge": required(inbound.data, "challenge", "url_verification")})
            return None
        if inbound.kind in ("interaction", "ssl_check"):
            return WebhookReply({})
        cmd = parse_command(inbound.data, command=self.command)
        name = cmd.form.get("channel_name") or cmd.form["channel_id"]
        if cmd.action in ("open", "link"):
            name = self._channel_names.get(cmd.form["channel_id"], name)
        return WebhookReply(command_reply(cmd, command=self.command, capture=self.capture, emoji=self.emoji,
                                          channel_name=name))

    def _shortcut(self, payload: Mapping[str, Any]) -> list[Change]:
        if payload.get("type") != "message_action" or payload.get("callback_id") != self.callback_id:
            return []  # block actions, other apps' shortcuts: acknowledged, nothing to store
        message = payload.get("message") if isinstance(payload.get("message"), Mapping) else {}
        channel = (payload.get("channel") or {}).get("id") if isinstance(payload.get("channel"), Mapping) else None
        entry = None
        if isinstance(channel, str) and message and is_capturable(message):
            entry = message_entry(channel, message, author=self.display_name(message.get("user")),
                                  name_of=self.display_name)
        user = payload.get("user") if isinstance(payload.get("user"), Mapping) else {}
        user_name = self.display_name(user.get("id"), user.get("name") or user.get("username")) or ""
        change = shortcut_change(self.name, payload, callback_id=self.callback_id, entry=entry, user_name=user_name,
                                 author=entry.author if entry else None)
        return [change] if change is not None else []

    def _event(self, document: Mapping[str, Any]) -> list[Change]:
        kind = document.get("type")
        if kind == "url_verification":
            required(document, "challenge", "url_verification")
            return []
        if kind == "app_rate_limited":
            log.warning("%s: Slack dropped events for this app (app_rate_limited, minute %s); the catch-up poll "
                        "reads what was missed", self.name, document.get("minute_rate_limited"))
            return []
        event = document.get("event")
        if kind != "event_callback" or not isinstance(event, Mapping):
            raise WebhookError(f"expected an event_callback with an 'event' object, got type {kind!r:.40}",
                               status=400)
        etype = event.get("type")
        if (etype, self.capture) in (("message", "all"), ("app_mention", "mentions")):
            return self._captured(required(event, "channel", etype), event, via="webhook")
        if etype == "reaction_added" and self.capture == "reaction":
            item = event.get("item") if isinstance(event.get("item"), Mapping) else {}
            if str(event.get("reaction", "")).split("::")[0] != self.emoji or item.get("type") != "message":
                return []
            channel, ts = required(item, "channel", "reaction_added item"), required(item, "ts", "reaction_added item")
            ts_time(ts, field="item.ts")
            message = self.fetch_message(channel, ts)
            return self._captured(channel, message, via="webhook") if message is not None else []
        if etype == "pin_added" and self.capture == "pinned":
            item = event.get("item") if isinstance(event.get("item"), Mapping) else {}
            message = item.get("message")
            if item.get("type") != "message" or not isinstance(message, Mapping):
                return []
            channel = item.get("channel") or required(event, "channel_id", "pin_added")
            return self._captured(str(channel), message, via="webhook")
        return []

    def _captured(self, channel: str, message: Mapping[str, Any], *, via: str) -> list[Change]:
        if not is_capturable(message):
            return []
        ts_time(message.get("ts"), field="event.ts")
        return [message_change(self.name, channel, message, author=self.display_name(message.get("user")),
                               via=via, name_of=self.display_name)]

    def fetch_message(self, channel: str, ts: str) -> Mapping[str, Any] | None:
        """One message by channel and ts: the channel's history, else (a thread reply) its thread."""
        what = f"read message {ts} in {channel}"
        page = self.api.call("conversations.history", what=what, channel=channel, latest=ts, inclusive=True, limit=1)
        found = next((m for m in page.get("messages") or () if m.get("ts") == ts), None)
        if found is None:
            page = self.api.call("conversations.replies", what=what, channel=channel, ts=ts, oldest=ts,
                                 inclusive=True, limit=10)
            found = next((m for m in page.get("messages") or () if m.get("ts") == ts), None)
        if found is None:
            log.info("%s: message %s in %s is gone (deleted?); nothing to capture", self.name, ts, channel)
        return found

    # -- catch-up poll --------------------------------------------------------------------------------
    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Captured messages of the app's channels since `cursor` (the newest ts seen), oldest first, with the
        same event ids as the webhook path so the inbox stores each once."""
        if self.capture == "none":
            return PollResult(changes=[], cursor=cursor or time_ts(now))
        since = ts_time(cursor, field="cursor") - self.overlap if cursor else now - self.catch_up
        if self.capture == "reaction":
            since = min(since, now - self.lookback)
        oldest, newest, changes = time_ts(since), cursor, []
        for channel in self.member_channels():
            try:
                for seen_ts, message in self._recent(channel, oldest):
                    if newest is None or float(seen_ts) > float(newest):
                        newest = seen_ts
                    if self._wanted(message):
                        changes += self._captured(channel, message, via="poll")
            except PermanentError as exc:  # one channel gone or locked: the others still catch up
                log.warning("%s: skipped channel %s in the catch-up poll: %s", self.name, channel, exc)
        changes.sort(key=lambda change: change.occurred_at)
        return PollResult(changes=changes, cursor=newest or time_ts(now))

    def member_channels(self) -> list[str]:
        """Ids of the unarchived public and private channels the app is a member of."""
        return [str(c["id"]) for c in self.api.pages(
            "users.conversations", "channels", what="list the app's channels", types="public_channel,private_channel",
            exclude_archived=True, limit=self.page_size) if c.get("id")]

    def _recent(self, channel: str, oldest: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(cursor ts, message) since `oldest`: the channel's history and thread replies newer than it, or
        (capture = "pinned") the messages pinned since then, with the pin's time as their cursor ts."""
        if self.capture == "pinned":
            for item in self.api.call("pins.list", what=f"list pins of {channel}", channel=channel).get("items") or ():
                message, pinned = item.get("message"), float(item.get("created") or 0)
                if item.get("type") == "message" and isinstance(message, Mapping) and message.get("ts") \
                        and pinned >= float(oldest):
                    yield f"{pinned:.6f}", message
            return
        for message in self.api.pages("conversations.history", "messages", what=f"read the history of {channel}",
                                      channel=channel, oldest=oldest, limit=self.page_size):
            if not message.get("ts"):
                continue
            yield str(message["ts"]), message
            if message.get("reply_count") and float(message.get("latest_reply") or 0) > float(oldest):
                for reply in self.api.pages("conversations.replies", "messages", channel=channel, ts=message["ts"],
                                            what=f"read thread {message['ts']} in {channel}", oldest=oldest,
                                            limit=self.page_size):
                    if reply.get("ts") and reply.get("ts") != message.get("ts"):
                        yield str(reply["ts"]), reply

    def _wanted(self, message: Mapping[str, Any]) -> bool:
        if self.capture == "reaction":
            return reacted_with(message, self.emoji)
        if self.capture == "mentions":
            return mentions(message, self.identity().get("user_id"))
        return True  # "all"; "pinned" lists pinned messages only

    # -- the way back ---------------------------------------------------------------------------------
    def add_note(self, record_id: str, text: str) -> None:
        """Post `text` into channel `record_id`; the marker stays in the message's text."""
        self.api.call("chat.postMessage", what=f"post a note in channel {record_id}", channel=record_id,
                      unfurl_links=False, unfurl_media=False, **note_message(text))

    def has_note(self, record_id: str, tag: str) -> bool:
        """Whether one of the channel's last `has_note_depth` messages carries `tag` (Slack keeps the posted
        text; older posts are not searched, which is enough for the retry of a recent post)."""
        depth = self.has_note_depth
        history = self.api.pages("conversations.history", "messages", what=f"read the history of {record_id}",
                                 channel=record_id, limit=min(depth, self.page_size))
        for seen, message in enumerate(history, start=1):
            if tag in str(message.get("text") or ""):
                return True
            if seen >= depth:
                break
        return False

    def announce(self, record_id: str, announcement: Announcement) -> None:
        self.api.call("chat.postMessage", what=f"announce {announcement.number} in channel {record_id}",
                      channel=record_id, unfurl_links=False, unfurl_media=False,
                      **announcement_message(announcement))

    def check(self) -> CheckResult:
        """auth.test with the bot token, and whether Slack's requests can be verified."""
        try:
            who = self.api.call("auth.test", what="check the bot token")
        except ConnectorError as exc:
            kind = "token refused" if isinstance(exc, PermanentError) else "unreachable"
            return CheckResult(ok=False, message=f"Slack {kind}: {exc}", details={"status": exc.status})
        self._identity = who
        details = {key: who.get(key) for key in ("team", "team_id", "user", "user_id", "bot_id", "url")}
        if not self.settings.get("signing_secret"):
            return CheckResult(ok=False, message=f"token accepted for {who.get('team')}, but no signing_secret "
                                                  "is configured: every request from Slack will be refused",
                               details=details)
        return CheckResult(ok=True, message=f"token accepted for workspace {who.get('team')} as "
                                            f"{who.get('user')}", details=details)
