"""The ``[connections.<name>]`` settings of an incident.io connection (``type = "incidentio"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from bridge.config_limits import ConnectionLimits
from bridge.secrets import require_secret_ref as _secret_ref

#: Settings holding secrets: resolved from ``env:``/``file:`` references, never logged.
SECRET_KEYS = ("api_key", "webhook_secret")


class IncidentioConnection(ConnectionLimits):
    """An incident.io organisation reached with one API key (``Authorization: Bearer``).

    `webhook_secret` is the endpoint's signing secret (``whsec_...``) from Settings > Webhooks.
    `service_field` names the custom field whose first value is the incident's service (incident.io
    has no built-in service; most organisations use an "Affected services" catalog field).
    `resolve_category` is where the way back moves an incident the desk resolved: ``closed`` (skips
    the post-incident flow) or ``learning`` (the first post-incident status).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["incidentio"]
    api_url: str = "https://api.incident.io"
    api_key: str
    webhook_secret: str | None = None
    poll_interval: float = Field(60.0, gt=0, description="seconds between catch-up polls")
    catch_up_hours: int = Field(168, ge=1, le=4320)
    page_size: int = Field(100, ge=1, le=250, description="incidents per page (the docs allow 250)")
    service_field: str = "Affected services"
    resolve_category: Literal["closed", "learning"] = "closed"
    notify_incident_channel: bool = Field(False, description="post the bridge's edits in the Slack channel")
    refetch_on_webhook: bool = Field(False, description="re-read every incident a webhook names "
                                                        "(private_incident.* events are always re-read)")

    _check_secrets = field_validator("api_key", "webhook_secret")(_secret_ref)
