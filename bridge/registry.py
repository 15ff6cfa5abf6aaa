"""Connector lookup by type slug: the built-ins, plus any third-party package's entry points.

Built-ins are registered explicitly (no naming magic). A third party adds a connector by declaring an
entry point in the group ``itsm_bridge.connectors``; a broken plugin is logged and skipped so one bad
package never stops the daemon from starting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

import requests

from connectors.base import Connector

log = logging.getLogger(__name__)

BUILTIN: dict[str, str] = {
    "pagerduty": "connectors.pagerduty.connector:PagerDutyConnector",
    "servicenow": "connectors.servicenow.connector:ServiceNowConnector",
    "jsm": "connectors.jsm.connector:JsmConnector",
    "rootly": "connectors.rootly.connector:RootlyConnector",
    "incidentio": "connectors.incidentio.connector:IncidentioConnector",
    "opsgenie": "connectors.opsgenie.connector:OpsgenieConnector",
    "squadcast": "connectors.squadcast.connector:SquadcastConnector",
    "grafana_oncall": "connectors.grafana_oncall.connector:GrafanaOncallConnector",
    "teams": "connectors.teams.connector:TeamsConnector",
    "slack": "connectors.slack.connector:SlackConnector",
}

#: Roles each built-in type plays; known without importing the connector (config validation is cheap).
ROLES: dict[str, frozenset[str]] = {
    "pagerduty": frozenset({"source"}),
    "servicenow": frozenset({"target"}),
    "jsm": frozenset({"target"}),
    "rootly": frozenset({"source"}),
    "incidentio": frozenset({"source"}),
    "opsgenie": frozenset({"source"}),
    "squadcast": frozenset({"source"}),
    "grafana_oncall": frozenset({"source"}),
    "teams": frozenset({"source"}),
    "slack": frozenset({"source"}),
}


def roles_of(slug: str) -> frozenset[str]:
    if slug in ROLES:
        return ROLES[slug]
    return connector_class(slug).roles


def connector_class(slug: str) -> type[Connector]:
    """The connector class for a type slug; LookupError naming the known slugs when unknown."""
    target = BUILTIN.get(slug)
    if target is None:
        for entry in entry_points(group="itsm_bridge.connectors"):
            if entry.name == slug:
                target = entry.value
                break
    if target is None:
        raise LookupError(f"no connector of type {slug!r} (known: {', '.join(sorted(BUILTIN))})")
    module_name, _, attribute = target.partition(":")
    try:
        return getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        log.error("connector %s could not be loaded from %s: %s", slug, target, exc)
        raise LookupError(f"connector {slug!r} is installed but broken: {exc}") from exc


def build_connector(name: str, slug: str, settings: dict[str, Any], *,
                    session_factory: Callable[[], requests.Session]) -> Connector:
    """Instantiate the connector for connection `name` with its resolved settings and a fresh session."""
    return connector_class(slug)(name, settings, session=session_factory())
