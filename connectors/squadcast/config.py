"""The ``[connections.<name>]`` schema of a Squadcast connection (``type = "squadcast"``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from bridge.config_limits import ConnectionLimits
from bridge.secrets import require_secret_ref as _secret_ref

#: Config keys holding secret references (resolved when the connector is built).
SECRET_KEYS = ("refresh_token", "webhook_secret")

_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
ASSIGNEE_TYPES = ("escalationpolicy", "squad", "user")


class SquadcastConnection(ConnectionLimits):
    """A Squadcast organisation (API v3). `api_url` is ``https://api.eu.squadcast.com`` for EU accounts.

    `refresh_token` is the API refresh token (Profile > API Refresh Token); the connector exchanges it
    for short-lived access tokens at `auth_url`. `webhook_secret` is the value the outgoing webhook sends
    in its additional header `webhook_header` (Squadcast signs nothing); without it every webhook is
    refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["squadcast"]
    api_url: str = "https://api.squadcast.com"
    auth_url: str | None = Field(None, description="token endpoint host; default: api.X -> auth.X "
                                                   "(https://auth.squadcast.com), else the api_url itself")
    refresh_token: str
    webhook_secret: str | None = None
    webhook_header: str = Field("X-Itsm-Bridge-Token", description="the additional header the outgoing "
                                                                  "webhook carries the shared secret in")
    web_url: str = Field("https://app.squadcast.com", description="for incident links (EU: https://app.eu.squadcast.com)")
    team_id: str | None = Field(None, description="the team (owner_id) whose incidents are polled; "
                                                  "None: every team the token can read")
    resolution_message: str = Field("Resolved from the service desk", min_length=1,
                                    description="resolution reason sent when the desk resolves an incident")
    escalate_to: str | None = Field(None, description="'<type>:<id>' the incident is reassigned to when the "
                                                      "desk escalates (type: escalationpolicy, squad or user)")
    poll_interval: float = Field(60.0, gt=0, description="seconds between catch-up polls")
    catch_up_hours: int = Field(168, ge=1, le=4320, description="how far back (by creation time) polls read")
    export_window_hours: int = Field(24, ge=1, le=720, description="the export has no pagination: polls read "
                                                                   "it in windows (pages) of this many hours")

    _check_secrets = field_validator("refresh_token", "webhook_secret")(_secret_ref)

    @field_validator("webhook_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER_NAME.match(value):
            raise ValueError(f"{value!r} is not an HTTP header name (letters, digits and '-')")
        return value

    @field_validator("escalate_to")
    @classmethod
    def _assignee(cls, value: str | None) -> str | None:
        if value is None:
            return value
        kind, _, ident = value.partition(":")
        if kind not in ASSIGNEE_TYPES or not ident:
            raise ValueError(f"{value!r} must be '<type>:<id>' with type one of {', '.join(ASSIGNEE_TYPES)}")
        return value
