"""The responder tools the demo can play as its source (`itsm-bridge demo --source NAME`).

Each `DemoSource` knows how to start its tool's simulator with fresh credentials, the config block that
points a connection at it, and how the demo's responders act there (trigger, acknowledge, note, change
priority, reassign, resolve) and read the result back (canonical status, the notes the bridge wrote). The
scenario (bridge/demo_scenario.py) only talks to this interface, so every tool runs the same story.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.simulator import Faults


def _token() -> str:
    return secrets.token_urlsafe(20)


def _svix_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True)
class DemoSource:
    """One responder tool as the demo drives it. `simulator(token, secret, faults)` starts it."""

    slug: str
    label: str
    simulator: Callable[..., Any]         # (token, secret, faults, host=, port=, webhook_url=) -> not started
    connection: str                       # TOML lines under [connections.<slug>], {url} filled in
    status: Callable[[dict[str, Any]], str]
    priorities: tuple[str, ...]
    note_text: Callable[[dict[str, Any]], str] | None = None   # None: the tool keeps no notes from the bridge
    make_secret: Callable[[], str] = _token
    chat: bool = False
    trigger: Callable[..., str] | None = None   # (sim, service, title, user, urgent) -> id; default sim.trigger
    reassign: Callable[[Any, str, str, str], Any] | None = None

    def start(self, token: str, secret: str, faults: Faults | None = None, **where: Any) -> Any:
        """Start the simulator accepting `token` and signing with `secret` (`where`: host, port, webhook_url)."""
        return self.simulator(token, secret, faults or Faults(), **where).start()

    def open(self, sim: Any, service: str, title: str, user: str, urgent: bool) -> str:
        if self.trigger is not None:
            return self.trigger(sim, service, title, user, urgent)
        return sim.trigger(service, title, user=user, priority=self.priorities[0 if urgent else -1])

    def notes(self, sim: Any, incident: str) -> list[str]:
        return [self.note_text(note) for note in sim.notes(incident)] if self.note_text else []


def _pagerduty(token: str, secret: str, faults: Faults, **where: Any) -> Any:
    from connectors.pagerduty.simulator import PagerDutySimulator

    return PagerDutySimulator(token=token, webhook_secret=secret, faults=faults, **where)


def _opsgenie(token: str, secret: str, faults: Faults, **where: Any) -> Any:
    from connectors.opsgenie.simulator import OpsgenieSimulator

    return OpsgenieSimulator(api_key=token, webhook_secret=secret, faults=faults, **where)


def _rootly(token: str, secret: str, faults: Faults, **where: Any) -> Any:
    from connectors.rootly.simulator import RootlySimulator

    return RootlySimulator(api_token=token, webhook_secret=secret, faults=faults, **where)


def _incidentio(token: str, secret: str, faults: Faults, **where: Any) -> Any:
    from connectors.incidentio.simulator import IncidentioSimulator

    return IncidentioSimulator(api_key=token, webhook_secret=secret, faults=faults, **where)


def _opsgenie_status(alert: dict[str, Any]) -> str:
    from connectors.opsgenie.connector import rest_status

    return rest_status(alert)


def _rootly_status(incident: dict[str, Any]) -> str:
    from connectors.rootly.webhooks import STATUS_MAP

    return STATUS_MAP[incident["attributes"]["status"]]


def _incidentio_status(incident: dict[str, Any]) -> str:
    from connectors.incidentio.webhooks import canonical_status

    return canonical_status(incident)


_COMMON = 'webhook_secret = "file:secrets/source-webhook-secret"\napi_url = "{url}"\npoll_interval = 30\n'

SOURCES: dict[str, DemoSource] = {source.slug: source for source in (
    DemoSource("pagerduty", "PagerDuty", _pagerduty,
               'token = "file:secrets/source-token"\nfrom_email = "bridge@example.com"\n' + _COMMON,
               status=lambda incident: incident["status"], priorities=("P1", "P2", "P3"),
               note_text=lambda note: note["content"],
               trigger=lambda sim, service, title, user, urgent: sim.trigger(
                   service, title, urgency="high" if urgent else "low", user=user),
               reassign=lambda sim, incident, to, user: sim.reassign(incident, to_user=to, user=user)),
    DemoSource("opsgenie", "Opsgenie", _opsgenie, 'api_key = "file:secrets/source-token"\n' + _COMMON,
               status=_opsgenie_status, priorities=("P1", "P2", "P3"), note_text=lambda note: note["note"],
               reassign=lambda sim, incident, to, user: sim.assign(incident, to_user=to, user=user)),
    DemoSource("rootly", "Rootly", _rootly, 'api_token = "file:secrets/source-token"\n' + _COMMON,
               status=_rootly_status, priorities=("SEV1", "SEV2", "SEV3"),
               note_text=lambda event: event["attributes"]["event"]),
    DemoSource("incidentio", "incident.io", _incidentio, 'api_key = "file:secrets/source-token"\n' + _COMMON,
               status=_incidentio_status, priorities=("Critical", "Major", "Minor"), make_secret=_svix_secret),
)}

def source_names() -> list[str]:
    return sorted(SOURCES)
