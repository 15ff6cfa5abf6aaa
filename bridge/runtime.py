"""Everything a running bridge needs, built once from config: store, connectors, routes, metrics, clock.

The engine, the outbox, the webhook server and the CLI all take a `Runtime`, so there are no globals
and tests can build one around simulators and a throwaway database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.breakers import Breakers
from bridge.config import SECRET_KEYS, Config
from bridge.config_limits import limits_of
from bridge.errors import ConfigError, ConfigProblem
from bridge.group_commit import GroupCommit
from bridge.http import build_session
from bridge.metrics import Metrics
from bridge.model import Change, utcnow
from bridge.ratelimit import RateLimiter
from bridge.registry import build_connector
from bridge.routing import Route, compile_routes
from bridge.secrets import SecretResolutionError, resolve_secret
from bridge.store import Store
from compliance.settings import ComplianceSettings, settings_from
from connectors.base import Connector

if TYPE_CHECKING:
    from bridge.ingest import IngestResult

LABELS = {"servicenow": "ServiceNow", "pagerduty": "PagerDuty", "jsm": "Jira Service Management",
          "rootly": "Rootly", "incidentio": "incident.io", "opsgenie": "Opsgenie", "squadcast": "Squadcast",
          "grafana_oncall": "Grafana OnCall",
          "teams": "Microsoft Teams", "slack": "Slack"}


def connection_settings(config: Config, name: str) -> dict[str, Any]:
    """A connection's settings with secret references resolved; ConfigError names what is missing."""
    connection = config.connections[name]
    settings = connection.model_dump()
    problems = []
    for key in SECRET_KEYS.get(connection.type, ()):
        value = settings.get(key)
        # a table of references (Teams' channel_urls: channel id -> URL) resolves entry by entry
        entries = list(value.items()) if isinstance(value, dict) else [(None, value)]
        for entry, reference in entries:
            if reference is None:
                continue
            try:
                secret = resolve_secret(reference, base_dir=config.base_dir).get_secret_value()
            except SecretResolutionError as exc:
                where = f"connections.{name}.{key}" + (f"[{entry!r}]" if entry is not None else "")
                problems.append(ConfigProblem(where, str(exc), f"set it before starting, e.g. export {reference[4:]}=..."
                                              if reference.startswith("env:") else "check the file path"))
                continue
            if entry is None:
                settings[key] = secret
            else:
                settings[key][entry] = secret
    if problems:
        raise ConfigError("config", problems)
    return settings


def check_secrets(config: Config) -> list[ConfigProblem]:
    """Every secret reference that does not resolve, for `config validate`."""
    problems: list[ConfigProblem] = []
    for name in config.connections:
        try:
            connection_settings(config, name)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


@dataclass
class Runtime:
    config: Config
    store: Store
    connectors: dict[str, Connector]
    routes: list[Route]
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], datetime] = utcnow
    compliance: ComplianceSettings = field(default_factory=ComplianceSettings)
    #: Each connection's rate limiter (the one its session paces every request with).
    limiters: dict[str, RateLimiter] = field(default_factory=dict)
    #: Each connection's circuit breaker, asked before every op and poll (`bridge.breakers`).
    breakers: Breakers = field(init=False)
    #: Webhooks that arrive together are stored in one transaction (`bridge.ingest.ingest_webhook`).
    webhook_commits: GroupCommit[Sequence[Change], IngestResult] = field(default_factory=GroupCommit)

    def __post_init__(self) -> None:
        self.breakers = Breakers(self.store, configs={name: limits_of(connection)[2] for name, connection
                                                      in self.config.connections.items()},
                                 metrics=self.metrics, clock=self.clock)

    @classmethod
    def build(cls, config: Config, *, store: Store | None = None, metrics: Metrics | None = None,
              clock: Callable[[], datetime] = utcnow) -> Runtime:
        metrics = metrics or Metrics()
        store = store or Store(config.database.url, base_dir=config.base_dir)
        connectors: dict[str, Connector] = {}
        limiters: dict[str, RateLimiter] = {}
        for name, connection in config.connections.items():
            settings = connection_settings(config, name)
            rate, burst, _ = limits_of(connection)
            limiters[name] = RateLimiter(rate, burst, connection=name, max_wait=config.sync.http_max_wait_seconds,
                                         on_wait=lambda seconds, name=name: metrics.rate_limit_wait.labels(name).inc(seconds))
            metrics.rate_limit.labels(name).set(rate)

            def factory(name: str = name) -> Any:
                return build_session(attempts=config.sync.http_attempts,
                                     max_wait=config.sync.http_max_wait_seconds,
                                     on_retry=lambda _what: metrics.http_retries.labels(name).inc(),
                                     limiter=limiters[name])

            connectors[name] = build_connector(name, connection.type, settings, session_factory=factory)
        return cls(config=config, store=store, connectors=connectors, routes=compile_routes(config),
                   metrics=metrics, clock=clock, compliance=settings_from(config.compliance), limiters=limiters)

    def route(self, name: str) -> Route | None:
        return next((route for route in self.routes if route.name == name), None)

    def label(self, connection: str) -> str:
        """Human name of a connection's system ("ServiceNow") for notes written on the other side."""
        slug = self.config.connections[connection].type
        return LABELS.get(slug, slug)

    def integration_user(self, connection: str) -> str | None:
        """The identity the bridge writes as on `connection` (its own journal entries are echoes)."""
        connector = self.connectors.get(connection)
        settings = getattr(connector, "settings", {}) or {}
        return settings.get("username") or settings.get("email") or settings.get("from_email")

    def receives_webhooks(self, connection: str) -> bool:
        """Whether `connection` takes part in a route and its connector parses webhooks (PagerDuty, JSM)."""
        connector = self.connectors.get(connection)
        in_route = any(connection in (route.source, route.target) for route in self.routes)
        return connector is not None and in_route and type(connector).parse_webhook is not Connector.parse_webhook

    def is_source(self, connection: str) -> bool:
        return any(route.source == connection for route in self.routes)
