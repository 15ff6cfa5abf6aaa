"""`itsm-bridge sandbox`: any of the simulators, started with known credentials, for trying a config.

Responder tools come from the demo's drivers (bridge/demo_sources.py), so every tool the demo can play is
also a sandbox; the two desks are started here. What each prints is what a config needs: its URL and the
credentials and secrets it accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bridge.demo_sources import SOURCES

DESKS = ("servicenow", "jsm")


def sandbox_tools() -> list[str]:
    return [*sorted(SOURCES), *DESKS]


@dataclass
class RunningTool:
    name: str
    simulator: Any
    lines: list[str]


def parse_ports(pairs: Iterable[str], **named: int | None) -> dict[str, int]:
    """``TOOL=PORT`` options (and the older ``--<tool>-port`` ones) as a map; ValueError names a bad one."""
    ports = {name: port for name, port in named.items() if port is not None}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not value.isdigit() or name not in sandbox_tools():
            raise ValueError(f"--port {pair!r}: expected TOOL=PORT with TOOL one of {', '.join(sandbox_tools())}")
        ports[name] = int(value)
    return ports


def start_tools(names: Iterable[str], *, ports: dict[str, int], host: str, webhook_url: str | None, user: str,
                password: str, token: str, webhook_secret: str | None) -> list[RunningTool]:
    """Start each named simulator; on a failure the ones already started are stopped again."""
    running: list[RunningTool] = []
    try:
        for name in dict.fromkeys(names):
            port = ports.get(name, 0)
            if name in SOURCES:
                running.append(_source(name, host=host, port=port, webhook_url=webhook_url, token=token,
                                       secret=webhook_secret))
            else:
                running.append(_desk(name, host=host, port=port, user=user, password=password))
    except Exception:
        for tool in running:
            tool.simulator.stop()
        raise
    return running


def _source(name: str, *, host: str, port: int, webhook_url: str | None, token: str, secret: str | None) -> RunningTool:
    source = SOURCES[name]
    secret = secret or source.make_secret()
    sim = source.start(token, secret, host=host, port=port, webhook_url=webhook_url)
    lines = [f"{source.label} simulator: {sim.url}",
             *([f"  API token:          {token}"] if source.takes_token else []),
             f"  webhook secret:     {secret}",
             f"  webhooks to:        {webhook_url or '(none: pass --webhook-url)'}", *source.sandbox_lines(sim)]
    if name == "pagerduty":
        lines.append("  try: curl -X POST -H 'Authorization: Token token=" + token + "' -H 'From: alice@example.com' "
                     "-H 'Content-Type: application/json' " + sim.url + "/incidents -d "
                     "'{\"incident\":{\"type\":\"incident\",\"title\":\"Disk full\",\"service\":{\"id\":\"PSVC001\","
                     "\"type\":\"service_reference\"}}}'")
    return RunningTool(name, sim, lines)


def _desk(name: str, *, host: str, port: int, user: str, password: str) -> RunningTool:
    if name == "servicenow":
        from connectors.servicenow.simulator import ServiceNowSimulator

        sim = ServiceNowSimulator(users={user: password}, host=host, port=port).start()
        return RunningTool(name, sim, [
            f"ServiceNow simulator: {sim.url}",
            f"  user / password:    {user} / {password}",
            f"  look at tickets:    curl -u '{user}:{password}' {sim.url}/api/now/table/incident"])
    from connectors.jsm.simulator import JsmSimulator

    sim = JsmSimulator(users={user: password}, host=host, port=port).start()
    return RunningTool(name, sim, [f"JSM simulator:        {sim.url}  (project OPS)",
                                   f"  email / API token:  {user} / {password}"])
