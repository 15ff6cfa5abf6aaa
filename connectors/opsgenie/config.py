"""The ``[connections.<name>]`` schema of an Opsgenie connection (``type = "opsgenie"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from bridge.config_limits import ConnectionLimits
from bridge.secrets import require_secret_ref as _secret_ref

#: Keys holding secret references (``env:NAME`` / ``file:PATH``), resolved when the connector is built.
SECRET_KEYS = ("api_key", "webhook_secret")


class OpsgenieConnection(ConnectionLimits):
    """Opsgenie (Alert API v2). `api_url` is ``https://api.eu.opsgenie.com`` for EU accounts.

    `webhook_secret` is the value the outgoing-webhook integration sends in its custom header
    ``X-Itsm-Bridge-Token`` (Opsgenie signs nothing); without it every webhook is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["opsgenie"]
    api_url: str = "https://api.opsgenie.com"
    api_key: str
    webhook_secret: str | None = None
    user: str = Field("itsm-bridge", description="display name written as `user` on every action")
    web_url: str | None = Field(None, description="e.g. https://acme.app.opsgenie.com, for alert links")
    poll_interval: float = Field(60.0, gt=0, description="seconds between catch-up polls")
    catch_up_hours: int = Field(168, ge=1, le=4320)

    _check_secrets = field_validator("api_key", "webhook_secret")(_secret_ref)
