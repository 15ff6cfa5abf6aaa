"""config.toml: read with tomllib, validated with pydantic (unknown keys are errors), every problem at once.

`load_config(path)` returns a `Config` or raises `ConfigError` listing each problem with its location
(``routes[0].fields.impact``), the bad value and a hint. Cross-references (a route naming a connection
that does not exist, a preset that does not exist, a mapping that does not compile) are checked here
too, so `itsm-bridge config validate` catches them before the daemon starts.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.config_limits import BreakerConfig, ConnectionLimits
from bridge.errors import ConfigError, ConfigProblem
from connectors.grafana_oncall.config import SECRET_KEYS as GRAFANA_ONCALL_SECRETS
from connectors.grafana_oncall.config import GrafanaOncallConnection
from connectors.incidentio.config import SECRET_KEYS as INCIDENTIO_SECRETS
from connectors.incidentio.config import IncidentioConnection
from connectors.opsgenie.config import SECRET_KEYS as OPSGENIE_SECRETS
from connectors.opsgenie.config import OpsgenieConnection
from connectors.rootly.config import SECRET_KEYS as ROOTLY_SECRETS
from connectors.rootly.config import RootlyConnection
from connectors.slack.config import SECRET_KEYS as SLACK_SECRETS
from connectors.slack.config import SlackConnection
from connectors.squadcast.config import SECRET_KEYS as SQUADCAST_SECRETS
from connectors.squadcast.config import SquadcastConnection
from connectors.teams.config import SECRET_KEYS as TEAMS_SECRETS
from connectors.teams.config import TeamsConnection
from bridge.secrets import require_secret_ref

MATCH_KEYS = ("service", "urgency", "priority", "status", "title_contains")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_secret_ref = require_secret_ref  # field validator for secret options (connectors' config models use it too)


class DatabaseConfig(_Strict):
    url: str = "sqlite:///itsm-bridge.db"


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(262_144, ge=1024, description="PagerDuty drops bodies over 256 KB")


class SyncConfig(_Strict):
    """Outbox policy: how long the bridge keeps trying before an op is dead-lettered."""

    max_attempts: int = Field(8, ge=1)
    backoff_seconds: float = Field(2.0, gt=0)
    max_backoff_seconds: float = Field(300.0, gt=0)
    http_attempts: int = Field(4, ge=1, description="tries per HTTP request before the outbox takes over")
    http_max_wait_seconds: float = Field(10.0, gt=0)
    claim_lease_seconds: float = Field(
        60.0, gt=0, description="PostgreSQL replicas: how long a claimed write stays invisible to the other "
                                "replicas (longer than a write can take); after a crash it is retried then")
    find_before_create: Literal["when-unsure", "always"] = Field(
        "when-unsure", description="ask the desk for a ticket carrying the incident's correlation id before "
                                   "creating one: when-unsure = on a retry and for polled or backfilled "
                                   "incidents (not for a first try of a live webhook); always = every create "
                                   "(for a while after restoring the store from a backup)")


class PagerDutyConnection(ConnectionLimits, _Strict):
    type: Literal["pagerduty"]
    api_url: str = "https://api.pagerduty.com"
    token: str
    webhook_secret: str | None = None
    from_email: str
    poll_interval: float = Field(60.0, gt=0, description="seconds between catch-up polls")
    catch_up_hours: int = Field(168, ge=1, le=4320)

    _check_token = field_validator("token", "webhook_secret")(_secret_ref)


class ServiceNowConnection(ConnectionLimits, _Strict):
    type: Literal["servicenow"]
    instance_url: str
    username: str
    password: str
    table: str = "incident"
    poll_interval: float = Field(15.0, gt=0, description="seconds between reads of desk changes")
    poll_query: str = "correlation_displaySTARTSWITHitsm-bridge"
    input_display_value: bool = Field(False, description="write reference fields by display name "
                                                         "(sysparm_input_display_value=true)")
    page_size: int = Field(1000, ge=1, le=10000)

    _check_secrets = field_validator("username", "password")(_secret_ref)


class JsmConnection(ConnectionLimits, _Strict):
    type: Literal["jsm"]
    url: str
    email: str
    api_token: str
    project: str = Field(min_length=1)
    issue_type: str = "Incident"
    request_type: str | None = None
    request_type_field: str = "customfield_10010"
    transitions: dict[str, str] = Field(default_factory=dict,
                                        description="desk state name -> the workflow's transition name (never "
                                                    "ids); unmapped states use the transition leading to them")
    resolution: str = "Done"
    poll_interval: float = Field(15.0, gt=0, description="seconds between JQL reads of desk changes")
    poll_query: str = "labels = itsm-bridge"
    page_size: int = Field(50, ge=1, le=100)
    poll_overlap_seconds: float = Field(120.0, ge=0)
    find_probe_limit: int = Field(25, ge=0)
    find_probe_misses: int = Field(2, ge=1)
    webhook_secret: str | None = None
    allow_unsigned_webhooks: bool = False

    _check_secrets = field_validator("email", "api_token", "webhook_secret")(_secret_ref)


Connection = Annotated[Union[PagerDutyConnection, ServiceNowConnection, JsmConnection, RootlyConnection,
                             IncidentioConnection, OpsgenieConnection, SquadcastConnection, TeamsConnection,
                             GrafanaOncallConnection, SlackConnection], Field(discriminator="type")]

#: Which config keys of each connection type hold secret references (resolved when building connectors).
SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "pagerduty": ("token", "webhook_secret"),
    "servicenow": ("username", "password"),
    "jsm": ("email", "api_token", "webhook_secret"),
    "rootly": ROOTLY_SECRETS,
    "teams": TEAMS_SECRETS,
    "slack": SLACK_SECRETS,
    "incidentio": INCIDENTIO_SECRETS,
    "opsgenie": OPSGENIE_SECRETS,
    "squadcast": SQUADCAST_SECRETS,
    "grafana_oncall": GRAFANA_ONCALL_SECRETS,
}


class RaiseConfig(_Strict):
    """Desk-raised incidents: a desk ticket matching `match` opens an incident in the source and pages."""

    match: dict[str, list[str]] = Field(min_length=1, description="desk field -> values that raise")
    service_id: str = Field(min_length=1, description="the source service paged (PagerDuty service id)")
    service_field: str = "assignment_group"
    service_map: dict[str, str] = Field(default_factory=dict, description="desk value -> service id")
    urgency: Literal["high", "low"] = "high"
    title_field: str = "short_description"


class RouteConfig(_Strict):
    name: str = Field(min_length=1)
    source: str
    target: str
    preset: str | None = None
    enabled: bool = True
    match: dict[str, list[str]] = Field(default_factory=dict)
    fields: dict[str, dict[str, Any]] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(default_factory=dict)
    back: dict[str, Any] = Field(default_factory=dict)
    raise_: RaiseConfig | None = Field(None, alias="raise", description="open source incidents from desk tickets")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("match")
    @classmethod
    def _known_match_keys(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key in value:
            if key not in MATCH_KEYS:
                raise ValueError(f"unknown match key {key!r}; use one of {', '.join(MATCH_KEYS)}")
        return value


class Config(_Strict):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    connections: dict[str, Connection] = Field(default_factory=dict)
    routes: list[RouteConfig] = Field(default_factory=list)
    compliance: dict[str, Any] = Field(default_factory=dict)
    #: Directory of the config file: relative ``file:`` secrets and SQLite paths resolve against it.
    base_dir: Path = Field(default=Path("."), exclude=True)

    def route(self, name: str) -> RouteConfig:
        for route in self.routes:
            if route.name == name:
                return route
        known = ", ".join(r.name for r in self.routes) or "none"
        raise KeyError(f"no route named {name!r} (routes: {known})")


def load_config(path: str | Path) -> Config:
    """Read, validate and cross-check a config file; `ConfigError` lists every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem("(file)", f"cannot read: {exc.strerror}",
                                                    "pass --config with the path of your config.toml")]) from None
    return parse_config(text, source=str(path), base_dir=path.resolve().parent)


def parse_config(text: str, *, source: str = "config.toml", base_dir: Path = Path(".")) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigProblem("(syntax)", str(exc), "check the TOML syntax at that line")]) from None
    try:
        config = Config.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(source, [_problem(error, data) for error in exc.errors()]) from None
    problems = check_references(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def check_references(config: Config) -> list[ConfigProblem]:
    """Problems pydantic cannot see: dangling names, duplicate routes, mappings that do not compile."""
    from bridge.registry import roles_of
    from bridge.routing import compile_route

    problems: list[ConfigProblem] = []
    seen: set[str] = set()
    for index, route in enumerate(config.routes):
        where = f"routes[{index}]"
        if route.name in seen:
            problems.append(ConfigProblem(f"{where}.name", f"duplicate route name {route.name!r}",
                                          "give every route its own name"))
        seen.add(route.name)
        for role, name in (("source", route.source), ("target", route.target)):
            connection = config.connections.get(name)
            if connection is None:
                problems.append(ConfigProblem(f"{where}.{role}", f"no connection named {name!r}",
                                              _did_you_mean(name, config.connections) or
                                              "add it under [connections.<name>]"))
            elif role not in roles_of(connection.type):
                problems.append(ConfigProblem(f"{where}.{role}",
                                              f"connection {name!r} ({connection.type}) cannot be a {role}"))
        source = config.connections.get(route.source)
        if route.raise_ is not None and source is not None and not _can_raise(source.type):
            supported = ", ".join(_raising_types()) or "none"
            problems.append(ConfigProblem(
                f"{where}.raise",
                f"route {route.name!r}: [routes.raise] opens incidents in its source, but source connection "
                f"{route.source!r} is of type {source.type!r}, which cannot open incidents "
                f"(its connector has no find_incident/create_incident); source types that support it: {supported}",
                f"remove [routes.raise] from route {route.name!r}, or raise from a route whose source is one of: "
                f"{supported}"))
        problems.extend(compile_route(route, index=index, connections=config.connections)[1])
    problems.extend(_compliance_problems(config))
    return problems


RAISE_METHODS = ("find_incident", "create_incident")


def _can_raise(slug: str) -> bool:
    """Whether the connector of type `slug` can open incidents (what desk-raised incidents call)."""
    from bridge.registry import connector_class

    try:
        cls = connector_class(slug)
    except LookupError:
        return False
    return all(callable(getattr(cls, method, None)) for method in RAISE_METHODS)


def _raising_types() -> list[str]:
    """The built-in connector types that can open incidents, for the error message."""
    from bridge.registry import BUILTIN

    return [slug for slug in sorted(BUILTIN) if _can_raise(slug)]


def _compliance_problems(config: Config) -> list[ConfigProblem]:
    from compliance.settings import settings_from

    try:
        settings_from(config.compliance)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _problem(error: dict[str, Any], data: dict[str, Any]) -> ConfigProblem:
    location = _location(error["loc"], data)
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        siblings = _siblings(error["loc"][:-1], data)
        return ConfigProblem(location, "unrecognized option", _did_you_mean(key, siblings) or "remove it")
    if kind == "missing":
        return ConfigProblem(location, "required option is missing")
    if kind == "union_tag_invalid":
        return ConfigProblem(location, f"unknown connection type {value!r}" if not isinstance(value, dict)
                             else f"unknown connection type {value.get('type')!r}",
                             "type must be one of: " + ", ".join(SECRET_KEYS))
    message = error["msg"].removeprefix("Value error, ")
    secret = any(str(error["loc"][-1]) in keys for keys in SECRET_KEYS.values())
    shown = f" (got {value!r})" if value is not None and not isinstance(value, (dict, list)) and not secret else ""
    return ConfigProblem(location, message + shown)


def _location(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """``('routes', 0, 'fields')`` -> ``routes[0].fields``; drops pydantic's union tag element."""
    parts: list[str] = []
    for position, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(f"[{part}]")
            continue
        if position == 2 and loc[0] == "connections" and part in SECRET_KEYS:
            continue  # the discriminator tag pydantic inserts for tagged unions
        parts.append(f".{part}" if parts else str(part))
    return "".join(parts) or "(top level)"


def _siblings(loc: tuple[Any, ...], data: dict[str, Any]) -> list[str]:
    """Option names allowed where a misspelt key stands, for the "did you mean" hint."""
    sections: dict[str, type[BaseModel]] = {
        "database": DatabaseConfig, "server": ServerConfig, "sync": SyncConfig,
    }
    model: type[BaseModel] | None = None
    if not loc:
        model = Config
    elif loc[0] in sections and len(loc) == 1:
        model = sections[loc[0]]
    elif loc[0] == "routes" and len(loc) == 2:
        model = RouteConfig
    elif loc[0] == "connections" and len(loc) == 3:
        model = {"pagerduty": PagerDutyConnection, "servicenow": ServiceNowConnection,
                 "jsm": JsmConnection, "rootly": RootlyConnection, "teams": TeamsConnection,
                 "slack": SlackConnection,
                 "incidentio": IncidentioConnection, "opsgenie": OpsgenieConnection,
                 "squadcast": SquadcastConnection,
                 "grafana_oncall": GrafanaOncallConnection}.get(str(loc[2]))
    elif loc[0] == "connections" and len(loc) == 4 and loc[3] == "breaker":
        model = BreakerConfig
    return [name for name in (model.model_fields if model else {}) if name != "base_dir"]


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean {close[0]!r}?" if close else ""
