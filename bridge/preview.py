"""`mappings preview`: what a payload becomes on a route, computed without credentials or writes."""

from __future__ import annotations

from typing import Any

import requests

from bridge.config import Config
from bridge.errors import BridgeError
from bridge.registry import connector_class
from bridge.routing import compile_routes
from mappings.engine import explain, render_note


def preview_payload(config: Config, route_name: str, body: bytes, *, creating: bool = True) -> dict[str, Any]:
    """Parse `body` with the route's source connector and explain every target field it would produce."""
    route = next((r for r in compile_routes(config) if r.name == route_name), None)
    if route is None:
        known = ", ".join(r.name for r in config.routes) or "none"
        raise BridgeError(f"no route named {route_name!r} in config (routes: {known})")
    connection = config.connections[route.source]
    settings = connection.model_dump()  # secret references stay unresolved: parsing needs none
    connector = connector_class(connection.type)(route.source, settings, session=requests.Session())
    changes = connector.parse_webhook(body, {})
    change = next((c for c in changes if c.incident is not None), None)
    if change is None or change.incident is None:
        kinds = ", ".join(c.event_type for c in changes) or "nothing"
        raise BridgeError(f"the payload holds no incident to map (it is: {kinds}); "
                          "preview a payload such as incident.triggered")
    incident = change.incident
    rows = [{"field": row.field, "value": row.value, "rule": row.rule, "owner": row.owner}
            for row in explain(route.mapping, incident, creating=creating)]
    note = "\n".join(render_note(route.mapping, incident, entry) for entry in change.entries)
    return {"route": route.name, "source": route.source, "target": route.target, "event_type": change.event_type,
            "incident": {"id": incident.id, "title": incident.title, "status": incident.status},
            "matches": route.matches(incident), "fields": rows, "note": note,
            "warnings": [], "creating": creating}
