"""The ``[connections.<name>]`` schema of a Grafana OnCall connection (``type = "grafana_oncall"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from bridge.config_limits import ConnectionLimits
from bridge.secrets import require_secret_ref as _secret_ref

#: Config keys holding secret references (resolved when the connector is built).
SECRET_KEYS = ("api_token", "webhook_secret")


class GrafanaOncallConnection(ConnectionLimits):
    """A Grafana OnCall stack (OSS or Grafana Cloud).

    `api_url` is the OnCall API base shown on OnCall's Settings > API page (Grafana Cloud:
    ``https://oncall-prod-<region>.grafana.net/oncall``; OSS: the engine's URL); the bridge appends
    ``/api/v1/...``. `api_token` is an OnCall API token, sent as ``Authorization: <token>`` with no
    scheme. OnCall's outgoing webhooks sign nothing: `webhook_secret` is the value the admin puts in the
    webhook's "Authorization Header" field (bare, or as ``Bearer <secret>``); without it every webhook is
    refused. Alert groups have no priority of their own: `severity_label` names the alert group label (or
    alert payload label) read as the canonical priority. `escalation_users` are the OnCall user ids paged
    when the desk asks for escalation (``[back] reassignment = "escalate"``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["grafana_oncall"]
    api_url: str = Field(min_length=1, description="OnCall API base URL (Settings > API), without /api/v1")
    api_token: str
    webhook_secret: str | None = None
    poll_interval: float = Field(60.0, gt=0, description="seconds between catch-up polls")
    catch_up_hours: int = Field(24, ge=1, le=720, description="alert groups started this far back are polled")
    page_size: int = Field(50, ge=1, le=100, description="perpage of list requests (OnCall allows 100)")
    severity_label: str = Field("severity", min_length=1, description="label read as the canonical priority")
    escalation_users: list[str] = Field(default_factory=list, description="OnCall user ids paged on escalate")
    escalation_important: bool = Field(False, description="page them with their 'important' notification rules")

    _check_secrets = field_validator("api_token", "webhook_secret")(_secret_ref)
