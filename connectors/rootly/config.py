"""The ``[connections.<name>]`` schema of a Rootly connection (``type = "rootly"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from bridge.config_limits import ConnectionLimits
from bridge.secrets import require_secret_ref as _secret_ref

#: Config keys holding secret references (resolved when the connector is built).
SECRET_KEYS = ("api_token", "webhook_secret")


class RootlyConnection(ConnectionLimits):
    """A Rootly organisation. `api_token` is an API key (Organization Settings > API Keys) sent as
    ``Authorization: Bearer``; `webhook_secret` is the secret shown on the webhook endpoint's page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["rootly"]
    api_url: str = "https://api.rootly.com"
    api_token: str
    webhook_secret: str | None = None
    poll_interval: float = Field(60.0, gt=0, description="seconds between catch-up polls")
    catch_up_hours: int = Field(24, ge=1, le=4320, description="how far back the first poll reads")
    page_size: int = Field(50, ge=1, le=100, description="page[size] of list requests")
    signature_tolerance_seconds: int = Field(
        300, ge=0, description="accepted skew of the t= timestamp of X-Rootly-Signature (Rootly documents "
                               "none; 0 disables the check)")

    refetch_on_webhook: bool = Field(
        False, description="re-read each webhook's incident (GET /v1/incidents/{id}?include=custom_field_selections) "
                           "instead of trusting the payload's form_field_selections")

    _check_secrets = field_validator("api_token", "webhook_secret")(_secret_ref)
