"""The ``[connections.<name>]`` schema of a Slack connection (``type = "slack"``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from bridge.config_limits import ConnectionLimits
from bridge.secrets import require_secret_ref as _secret_ref

#: Config keys holding secret references (resolved when the connector is built).
SECRET_KEYS = ("bot_token", "signing_secret")

#: Which channel messages become desk work notes, and how a responder chooses them.
CAPTURE_MODES: dict[str, str] = {
    "reaction": "messages a responder reacts to with the capture emoji (reaction_added)",
    "pinned": "messages pinned in the channel (pin_added)",
    "mentions": "messages that @mention the app (app_mention)",
    "all": "every message posted in a linked channel (message.channels / message.groups)",
    "none": "no messages; only /itsm commands and the message shortcut",
}

_COMMAND = re.compile(r"^/[a-z0-9_\-]{1,31}$")
_EMOJI = re.compile(r"^[a-z0-9_+\-']{1,100}$")


class SlackConnection(ConnectionLimits):
    """A Slack workspace with the bridge's Slack app installed.

    `bot_token` is the app's Bot User OAuth Token (``xoxb-...``, OAuth & Permissions), sent as
    ``Authorization: Bearer``. `signing_secret` is the app's Signing Secret (Basic Information); every
    request Slack sends (events, slash commands, shortcuts) is refused without it. One Request URL,
    ``https://<bridge>/webhooks/<connection name>``, serves Event Subscriptions, Interactivity and the
    slash command. Scopes: chat:write, channels:history, groups:history, channels:read, groups:read,
    commands, reactions:read, pins:read, users:read (for display names).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["slack"]
    api_url: str = Field("https://slack.com/api", description="Web API base (the simulator's /api in tests)")
    bot_token: str
    signing_secret: str | None = None
    command: str = Field("/itsm", description="the slash command the app registers")
    shortcut_callback_id: str = Field("itsm_open", min_length=1,
                                      description="callback id of the \"Open a ticket\" message shortcut")
    capture: str = Field("reaction", description="which channel messages become work notes: "
                                                 + ", ".join(CAPTURE_MODES))
    capture_emoji: str = Field("memo", description="capture = \"reaction\": the emoji name, without colons")
    resolve_user_names: bool = Field(True, description="author notes by display name (users.info, cached)")
    poll_interval: float = Field(300.0, gt=0, description="seconds between catch-up reads of channel history")
    catch_up_hours: int = Field(24, ge=1, le=720, description="how far back the first poll reads")
    poll_overlap_seconds: int = Field(120, ge=0, description="history re-read before the cursor (the inbox "
                                                              "de-duplicates repeats)")
    reaction_lookback_hours: int = Field(24, ge=0, le=720, description="capture = \"reaction\": how far back "
                                                                       "a poll looks for newly reacted messages")
    page_size: int = Field(200, ge=1, le=999, description="limit of history and channel list requests")
    has_note_depth: int = Field(200, ge=1, le=1000, description="recent channel messages searched for a "
                                                                 "note's marker before a retried post")
    signature_tolerance_seconds: int = Field(
        300, ge=0, description="accepted skew of X-Slack-Request-Timestamp (Slack recommends 5 minutes; 0 "
                               "disables the check)")
    timeout_seconds: int = Field(10, ge=1, le=120, description="per Web API request")

    _check_secrets = field_validator("bot_token", "signing_secret")(_secret_ref)

    @field_validator("capture")
    @classmethod
    def _capture_mode(cls, value: str) -> str:
        if value not in CAPTURE_MODES:
            modes = "; ".join(f"{name!r}: {meaning}" for name, meaning in CAPTURE_MODES.items())
            raise ValueError(f"capture = {value!r} is unknown; Slack supports {modes}")
        return value

    @field_validator("command")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not _COMMAND.match(value):
            raise ValueError(f"command = {value!r} is not a slash command; write it like \"/itsm\" "
                             "(lowercase, at most 32 characters, as registered in the Slack app)")
        return value

    @field_validator("capture_emoji")
    @classmethod
    def _emoji(cls, value: str) -> str:
        name = value.strip().strip(":")
        if not _EMOJI.match(name):
            raise ValueError(f"capture_emoji = {value!r} is not an emoji name; write it like \"memo\" "
                             "(what Slack shows between the colons of :memo:)")
        return name
