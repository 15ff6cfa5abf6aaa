"""The responder tools the demo can play as its source (`itsm-bridge demo --source NAME`).

Each `DemoSource` knows how to start its tool's simulator with fresh credentials, the config block that
points a connection at it, and how the demo's responders act there (trigger, acknowledge, note, change
priority, reassign, resolve) and read the result back (canonical status, the notes the bridge wrote). The
scenario (bridge/demo_scenario.py) only talks to this interface, so every tool runs the same story.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.model import Incident
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
    status: Callable[[dict[str, Any]], str] | None
    priorities: tuple[str, ...]
    note_text: Callable[[dict[str, Any]], str] | None = None   # None: the tool keeps no notes from the bridge
    make_secret: Callable[[], str] = _token
    chat: bool = False
    trigger: Callable[..., str] | None = None   # (sim, service, title, user, urgent) -> id; default sim.trigger
    reassign: Callable[[Any, str, str, str], Any] | None = None
    #: (REST record as the simulator shows it, connection name) -> the canonical `Incident`, through the
    #: connector's own normaliser: what the mapping engine sees of the incident now (None: chat, no record).
    canonical: Callable[[dict[str, Any], str], Incident] | None = None

    @property
    def takes_token(self) -> bool:
        """Whether the bridge calls the tool with an API token (Teams takes none: it posts to Workflows URLs)."""
        return "file:secrets/source-token" in self.connection

    def start(self, token: str, secret: str, faults: Faults | None = None, **where: Any) -> Any:
        """Start the simulator accepting `token` and signing with `secret` (`where`: host, port, webhook_url)."""
        return self.simulator(token, secret, faults or Faults(), **where).start()

    def connection_block(self, sim: Any, secrets_dir: Path, incidents: int) -> str:
        """The TOML lines of the tool's connection, pointing at the running simulator."""
        return self.connection.format(url=sim.url)

    def sandbox_lines(self, sim: Any) -> list[str]:
        """What `itsm-bridge sandbox` prints about this tool beyond its URL and secrets."""
        return []

    # -- what the responders do ---------------------------------------------------------------------
    def open(self, sim: Any, service: str, title: str, user: str, urgent: bool) -> str:
        if self.trigger is not None:
            return self.trigger(sim, service, title, user, urgent)
        return sim.trigger(service, title, user=user, priority=self.priorities[0 if urgent else -1])

    def acknowledge(self, sim: Any, incident: str, user: str) -> None:
        sim.acknowledge(incident, user=user)

    def note(self, sim: Any, incident: str, text: str, user: str) -> None:
        sim.add_note(incident, text, user=user)

    def set_priority(self, sim: Any, incident: str, value: str, user: str) -> None:
        sim.set_priority(incident, value, user=user)

    def resolve(self, sim: Any, incident: str, user: str) -> None:
        sim.resolve(incident, user=user)

    # -- what the judge reads ---------------------------------------------------------------------------
    def status_of(self, sim: Any, incident: str) -> str | None:
        """The incident's canonical status in the tool (None: the tool has none, chat)."""
        return self.status(sim.incident(incident)) if self.status else None

    def notes(self, sim: Any, incident: str) -> list[str]:
        return [self.note_text(note) for note in sim.notes(incident)] if self.note_text else []

    def incident_of(self, sim: Any, incident: str) -> Incident | None:
        """The incident as the bridge's connector reads it from the tool now (no HTTP: the simulator's
        REST record, normalised as the connector normalises a read); None when the tool has no record."""
        return self.canonical(sim.incident(incident), self.slug) if self.canonical else None


@dataclass(frozen=True)
class ChatDemoSource(DemoSource):
    """A chat tool: each incident is a channel where a responder runs the open command, then talks.

    Chat has no incident status, priority or acknowledgement: those responder steps are skipped, a
    desk's resolve stays on that desk (and is announced in the channel), and the judge reads the channel.
    """

    chat: bool = True

    def acknowledge(self, sim: Any, incident: str, user: str) -> None:
        return None

    def set_priority(self, sim: Any, incident: str, value: str, user: str) -> None:
        return None

    def resolve(self, sim: Any, incident: str, user: str) -> None:
        return None


@dataclass(frozen=True)
class SlackDemo(ChatDemoSource):
    def connection_block(self, sim: Any, secrets_dir: Path, incidents: int) -> str:
        return self.connection.format(url=sim.api_url)

    def sandbox_lines(self, sim: Any) -> list[str]:
        channel = sim.create_channel("inc-sandbox")
        return [f"  Web API (api_url):  {sim.api_url}   (the API token is the bot token, the secret signs events)",
                f"  a channel:          #inc-sandbox {channel} (users alice, bob, carol, dave; the app is a member)"]

    def open(self, sim: Any, service: str, title: str, user: str, urgent: bool) -> str:
        channel = sim.create_channel(f"inc-{secrets.token_hex(3)}-{service.lower().replace(' ', '-')}")
        sim.slash_command(channel, f"open {title}", user)
        return channel

    def note(self, sim: Any, incident: str, text: str, user: str) -> None:
        sim.post_message(incident, text, user)

    def notes(self, sim: Any, incident: str) -> list[str]:
        return [message.get("text") or "" for message in sim.bot_messages(incident)]


@dataclass(frozen=True)
class TeamsDemo(ChatDemoSource):
    """Teams posts back through one Workflows URL per channel, so the channels exist before the config."""

    def connection_block(self, sim: Any, secrets_dir: Path, incidents: int) -> str:
        urls = []
        for number in range(incidents):
            key = f"inc-{number:03d}"
            sim.tenant.create_channel(key, name=f"Incident {number + 1}")
            (secrets_dir / f"teams-{key}").write_text(sim.workflow_url(key), encoding="utf-8")
            urls.append(f'"{sim.channel_id(key)}" = "file:secrets/teams-{key}"')
        return self.connection.format(url=sim.url) + f"channel_urls = {{ {', '.join(urls)} }}\n"

    def sandbox_lines(self, sim: Any) -> list[str]:
        sim.tenant.create_channel("inc-sandbox", name="Incident sandbox")
        return ["  (the webhook secret is the outgoing webhook's security token)",
                f"  a channel:          {sim.channel_id('inc-sandbox')}",
                f"  its Workflows URL:  {sim.workflow_url('inc-sandbox')}"]

    def open(self, sim: Any, service: str, title: str, user: str, urgent: bool) -> str:
        key = next(key for key in sorted(sim.tenant.channels) if key.startswith("inc-") and not sim.messages(key))
        sim.post_message(key, f"open {title}", user=user)
        return sim.channel_id(key)

    def note(self, sim: Any, incident: str, text: str, user: str) -> None:
        sim.post_message(incident, text, user=user)

    def notes(self, sim: Any, incident: str) -> list[str]:
        return [json.dumps(message["card"], ensure_ascii=False) if message.get("card") else message.get("text") or ""
                for message in sim.messages(incident) if message["kind"] in ("card", "reply")]


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


def _grafana_oncall(token: str, secret: str, faults: Faults, **where: Any) -> Any:
    from connectors.grafana_oncall.simulator import GrafanaOncallSimulator

    return GrafanaOncallSimulator(api_token=token, webhook_secret=secret, faults=faults, **where)


def _squadcast(token: str, secret: str, faults: Faults, **where: Any) -> Any:
    from connectors.squadcast.simulator import SquadcastSimulator

    return SquadcastSimulator(refresh_token=token, webhook_secret=secret, faults=faults, **where)


def _grafana_oncall_status(group: dict[str, Any]) -> str:
    from connectors.grafana_oncall.webhooks import STATE_MAP

    return STATE_MAP[group["state"]]


def _squadcast_status(incident: dict[str, Any]) -> str:
    from connectors.squadcast.webhooks import STATUS_MAP

    return STATUS_MAP[incident["status"]]


def _slack(token: str, secret: str, faults: Faults, **where: Any) -> Any:
    from connectors.slack.simulator import SlackSimulator

    webhook_url = where.pop("webhook_url", None)  # Slack's "Request URL" is a setting, not an argument
    sim = SlackSimulator(bot_token=token, signing_secret=secret, faults=faults, **where)
    sim.set_webhook_url(webhook_url)
    return sim


def _teams(token: str, secret: str, faults: Faults, **where: Any) -> Any:
    from connectors.teams.simulator import TeamsSimulator

    return TeamsSimulator(security_token=secret, faults=faults, **where)


def _teams_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _opsgenie_status(alert: dict[str, Any]) -> str:
    from connectors.opsgenie.connector import rest_status

    return rest_status(alert)


def _rootly_status(incident: dict[str, Any]) -> str:
    from connectors.rootly.webhooks import STATUS_MAP

    return STATUS_MAP[incident["attributes"]["status"]]


def _incidentio_status(incident: dict[str, Any]) -> str:
    from connectors.incidentio.webhooks import canonical_status

    return canonical_status(incident)


def _pagerduty_incident(record: dict[str, Any], name: str) -> Incident:
    from connectors.pagerduty.connector import incident_from_rest

    return incident_from_rest(record, source=name)


def _opsgenie_incident(record: dict[str, Any], name: str) -> Incident:
    from connectors.opsgenie.connector import incident_from_rest

    return incident_from_rest(record, source=name)


def _rootly_incident(record: dict[str, Any], name: str) -> Incident:
    from connectors.rootly.webhooks import incident_from_rootly

    return incident_from_rootly(record, source=name)


def _incidentio_incident(record: dict[str, Any], name: str) -> Incident:
    from connectors.incidentio.webhooks import incident_from_api

    return incident_from_api(record, source=name)


def _grafana_oncall_incident(record: dict[str, Any], name: str) -> Incident:
    from connectors.grafana_oncall.webhooks import incident_from_alert_group

    return incident_from_alert_group(record, source=name)  # the demo's connection keeps severity_label "severity"


def _squadcast_incident(record: dict[str, Any], name: str) -> Incident:
    from connectors.squadcast.records import incident_from_rest

    return incident_from_rest(record, source=name)


_COMMON = 'webhook_secret = "file:secrets/source-webhook-secret"\napi_url = "{url}"\npoll_interval = 30\n'

SOURCES: dict[str, DemoSource] = {source.slug: source for source in (
    DemoSource("pagerduty", "PagerDuty", _pagerduty,
               'token = "file:secrets/source-token"\nfrom_email = "bridge@example.com"\n' + _COMMON,
               status=lambda incident: incident["status"], priorities=("P1", "P2", "P3"),
               note_text=lambda note: note["content"],
               trigger=lambda sim, service, title, user, urgent: sim.trigger(
                   service, title, urgency="high" if urgent else "low", user=user),
               reassign=lambda sim, incident, to, user: sim.reassign(incident, to_user=to, user=user),
               canonical=_pagerduty_incident),
    DemoSource("opsgenie", "Opsgenie", _opsgenie, 'api_key = "file:secrets/source-token"\n' + _COMMON,
               status=_opsgenie_status, priorities=("P1", "P2", "P3"), note_text=lambda note: note["note"],
               reassign=lambda sim, incident, to, user: sim.assign(incident, to_user=to, user=user),
               canonical=_opsgenie_incident),
    DemoSource("rootly", "Rootly", _rootly, 'api_token = "file:secrets/source-token"\n' + _COMMON,
               status=_rootly_status, priorities=("SEV1", "SEV2", "SEV3"),
               note_text=lambda event: event["attributes"]["event"], canonical=_rootly_incident),
    DemoSource("incidentio", "incident.io", _incidentio, 'api_key = "file:secrets/source-token"\n' + _COMMON,
               status=_incidentio_status, priorities=("Critical", "Major", "Minor"), make_secret=_svix_secret,
               canonical=_incidentio_incident),
    DemoSource("grafana_oncall", "Grafana OnCall", _grafana_oncall,
               'api_token = "file:secrets/source-token"\n' + _COMMON, status=_grafana_oncall_status,
               priorities=("critical", "warning", "info"), note_text=lambda note: note["text"],
               canonical=_grafana_oncall_incident),
    DemoSource("squadcast", "Squadcast", _squadcast, 'refresh_token = "file:secrets/source-token"\n' + _COMMON,
               status=_squadcast_status, priorities=("P1", "P2", "P3"), note_text=lambda note: note["message"],
               reassign=lambda sim, incident, to, user: sim.reassign(incident, to_user=to, user=user),
               canonical=_squadcast_incident),
    SlackDemo("slack", "Slack", _slack,
              'bot_token = "file:secrets/source-token"\nsigning_secret = "file:secrets/source-webhook-secret"\n'
              'api_url = "{url}"\ncapture = "all"\npoll_interval = 30\nrate_limit_per_minute = 600\n',
              status=None, priorities=()),
    TeamsDemo("teams", "Microsoft Teams", _teams, 'security_token = "file:secrets/source-webhook-secret"\n',
              status=None, priorities=(), make_secret=_teams_secret),
)}

def source_names() -> list[str]:
    return sorted(SOURCES)
