"""Routes: which source incidents go to which desk, through which mapping.

A route is compiled once from config (preset merged with the route's overrides, then every template
compiled), so a bad template is a config error at start-up, never a surprise at 3 a.m. Matching an
incident against a route's filter is a pure function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from pydantic import ValidationError

from bridge.errors import ConfigProblem, MappingError
from bridge.model import Incident
from mappings.engine import CompiledMapping, compile_mapping
from mappings.schema import MappingSpec, load_preset, merge

if TYPE_CHECKING:
    from bridge.config import RouteConfig


@dataclass(frozen=True)
class Route:
    """A compiled route: names, filter and mapping, ready for the engine."""

    name: str
    source: str
    target: str
    match: Mapping[str, list[str]]
    mapping: CompiledMapping
    enabled: bool = True
    raise_: Any = None  # bridge.config.RaiseConfig: desk tickets that open source incidents

    def raises(self, ticket_fields: Mapping[str, str]) -> bool:
        """Whether a desk ticket should open an incident in the source (desk-raised, e.g. priority 1)."""
        if self.raise_ is None:
            return False
        return all(str(ticket_fields.get(name, "")) in allowed for name, allowed in self.raise_.match.items())

    def matches(self, incident: Incident) -> bool:
        """Whether `incident` passes this route's `match` filter (every given key must match)."""
        for key, allowed in self.match.items():
            if key == "title_contains":
                if not any(word.lower() in incident.title.lower() for word in allowed):
                    return False
                continue
            value = getattr(incident, key, None)
            if value is None or str(value) not in allowed:
                return False
        return True


def compile_route(route: RouteConfig, *, index: int,
                  connections: Mapping[str, Any]) -> tuple[Route | None, list[ConfigProblem]]:
    """Merge preset and overrides, validate and compile; return the route or the problems found."""
    where = f"routes[{index}]"
    preset: dict[str, Any] = {}
    if route.preset:
        try:
            preset = load_preset(route.preset)
        except LookupError as exc:
            return None, [ConfigProblem(f"{where}.preset", str(exc).strip("'\""))]
    overrides = {"fields": route.fields, "notes": route.notes, "back": route.back}
    merged = merge(preset, overrides)
    if not preset:
        source = connections.get(route.source)
        target = connections.get(route.target)
        merged.setdefault("source", getattr(source, "type", route.source))
        merged.setdefault("target", getattr(target, "type", route.target))
    try:
        spec = MappingSpec.model_validate(merged)
    except ValidationError as exc:
        return None, [_mapping_problem(where, error) for error in exc.errors()]
    try:
        mapping = compile_mapping(route.name, spec)
    except MappingError as exc:
        section = exc.field if exc.field.startswith(("notes.", "back.")) else f"fields.{exc.field}"
        return None, [ConfigProblem(f"{where}.{section}", str(exc), "fix the template syntax")]
    if not mapping.field_names:
        return None, [ConfigProblem(f"{where}.fields", "the route maps no fields",
                                    "name a preset (preset = \"pagerduty-servicenow\") or add [routes.fields.*]")]
    compiled = Route(name=route.name, source=route.source, target=route.target, match=route.match,
                     mapping=mapping, enabled=route.enabled, raise_=route.raise_)
    return compiled, []


def _mapping_problem(where: str, error: dict[str, Any]) -> ConfigProblem:
    location = where + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    value = error.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, (dict, list)) else ""
    message = "unrecognized option" if error["type"] == "extra_forbidden" else error["msg"]
    return ConfigProblem(location, message.removeprefix("Value error, ") + shown)


def compile_routes(config: Any) -> list[Route]:
    """Compile every route of a validated config (validation already proved they compile)."""
    routes = []
    for index, route in enumerate(config.routes):
        compiled, problems = compile_route(route, index=index, connections=config.connections)
        if compiled is None:
            raise ValueError("; ".join(str(p) for p in problems))
        routes.append(compiled)
    return routes
