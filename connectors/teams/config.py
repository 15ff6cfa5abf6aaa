"""The ``[connections.<name>]`` schema of a Microsoft Teams connection (``type = "teams"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from bridge.config_limits import ConnectionLimits
from bridge.secrets import SECRET_HINT, is_secret_ref
from bridge.secrets import require_secret_ref as _secret_ref

#: Config keys holding secret references (resolved when the connector is built). `channel_urls` is a
#: table of references, one per channel: a Workflows URL carries its own ``sig=`` and is a secret.
SECRET_KEYS = ("security_token", "default_url", "channel_urls")

#: The capture modes chat tools offer; Teams outgoing webhooks can serve only the first.
CAPTURE_MODES = ("mentions", "reaction", "pinned", "all")


class TeamsConnection(ConnectionLimits):
    """A Teams team with an outgoing webhook (the inbound side) and Workflows webhooks (the way back).

    `security_token` is the HMAC token Teams shows once when the outgoing webhook is created (Manage
    team > Apps > Create an outgoing webhook). `channel_urls` maps a channel id (``19:...@thread.tacv2``)
    to the URL of that channel's "Post to a channel when a webhook request is received" workflow;
    `default_url` serves every channel not listed. `capture` is which channel messages become work
    notes: Teams delivers only messages that @mention the webhook, so ``mentions`` is the only mode.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["teams"]
    security_token: str
    channel_urls: dict[str, str] = Field(default_factory=dict,
                                         description="channel id -> secret reference to its Workflows URL")
    default_url: str | None = None
    capture: str = "mentions"
    activity_max_age_seconds: int = Field(
        300, ge=0, description="refuse activities whose timestamp is older (Teams signs no timestamp; this "
                               "bounds replays of a captured request; 0 disables the check)")
    teams_url: str = Field("https://teams.microsoft.com", description="base of the channel links put on tickets")
    poll_interval: float = Field(3600.0, gt=0, description="outgoing webhooks are push-only: the poll finds "
                                                           "nothing and only keeps the schedule uniform")

    _check_secrets = field_validator("security_token", "default_url")(_secret_ref)

    @field_validator("channel_urls")
    @classmethod
    def _channel_refs(cls, value: dict[str, str]) -> dict[str, str]:
        for channel, reference in value.items():
            if not channel.strip():
                raise ValueError("a channel id is empty; keys are channel ids like \"19:abc@thread.tacv2\"")
            if not isinstance(reference, str) or not is_secret_ref(reference):
                raise ValueError(f"the URL of channel {channel!r} must be a secret reference, got an inline "
                                 f"value (a Workflows URL carries its sig=; {SECRET_HINT})")
        return value

    @field_validator("capture")
    @classmethod
    def _capture_mode(cls, value: str) -> str:
        if value == "mentions":
            return value
        if value in CAPTURE_MODES:
            raise ValueError(f"capture = {value!r} is not possible with Microsoft Teams: outgoing webhooks only "
                             "deliver messages that @mention the webhook; use capture = \"mentions\"")
        raise ValueError(f"capture = {value!r} is unknown; Microsoft Teams supports capture = \"mentions\" "
                         "(messages that @mention the outgoing webhook)")
