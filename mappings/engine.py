"""Evaluating a mapping: a source incident in, desk field values out. Pure functions, no I/O.

`compile_mapping` compiles every template and ``when`` expression once, when the config is loaded, so a
syntax error is a config error at start-up. `apply` is then a pure function of the incident: the same
incident always gives the same fields, which is what lets the diff compare "before" and "after"
mappings and lets ``itsm-bridge mappings preview`` (`explain`) show an admin exactly what the daemon
would write. `apply` and `explain` share one evaluation, so the preview can never disagree with the daemon.

Templates are admin-written code, so they run in Jinja's immutable sandbox: no Python internals
(``incident.__class__``), no mutating the incident's ``raw`` dict, no multiplying a string into a
gigabyte. Every failure inside a template surfaces as `MappingError` naming route, field and template.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from bridge.errors import MappingError
from bridge.model import Incident, TimelineEntry
from mappings import transforms
from mappings.schema import BackRules, FieldRule, MappingSpec

#: No field value is longer than this, max_length or not (ServiceNow's own limits are far lower).
HARD_LIMIT = 100_000
#: Longest string or list a template may build with ``*`` (the sandbox already caps ``range``).
MAX_REPEAT = 100_000

NOTES_FIELD = "notes.template"
BACK_NOTE_FIELD = "back.note_template"


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus a cap on ``*`` and ``**`` so a template cannot exhaust memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) \
                        and len(sequence) * count > MAX_REPEAT:
                    raise OverflowError(f"'*' would build {len(sequence) * count} items "
                                        f"(the limit is {MAX_REPEAT})")
        if operator_name == "**" and isinstance(right, int) and abs(right) > 64:
            raise OverflowError(f"exponent {right} is too large (the limit is 64)")
        return super().call_binop(context, operator_name, left, right)


def _environment() -> _Environment:
    env = _Environment(undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)
    for name in transforms.TEMPLATE_FILTERS:
        env.filters[name] = transforms.filter_for(name)
    return env


@dataclass(frozen=True)
class _CompiledField:
    name: str
    rule: FieldRule
    template: Template | None
    when: Callable[..., Any] | None
    steps: tuple[Callable[[Any], Any], ...]


@dataclass(frozen=True)
class CompiledMapping:
    """A route's mapping with every template compiled: build once with `compile_mapping`, use often."""

    route: str
    spec: MappingSpec
    _fields: Mapping[str, _CompiledField] = field(repr=False)
    _note: Template = field(repr=False)
    _back_note: Template = field(repr=False)

    @property
    def field_names(self) -> tuple[str, ...]:
        """Desk fields this mapping can produce, in the order the TOML lists them."""
        return tuple(self._fields)

    def owner(self, name: str) -> str:
        """Who owns desk field `name` (``source``, ``target``, ``both``); KeyError if unmapped."""
        return self._fields[name].rule.owner

    @property
    def back(self) -> BackRules:
        """What flows from the desk back to the source."""
        return self.spec.back


@dataclass(frozen=True)
class MappingResult:
    """Desk field values (all strings) and warnings worth showing an admin (a value truncated...)."""

    fields: dict[str, str]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FieldExplanation:
    """One row of ``mappings preview``: the value (None when skipped) and the rule that produced it."""

    field: str
    value: str | None
    rule: str
    owner: str


@dataclass(frozen=True)
class _Outcome:
    value: str | None
    rule: str
    warning: str | None = None


# -- compiling ---------------------------------------------------------------------------------------
def compile_mapping(route: str, spec: MappingSpec) -> CompiledMapping:
    """Compile every template and ``when`` of `spec` once; a syntax error is a MappingError naming it."""
    env = _environment()
    fields = {name: _compile_field(env, route, name, rule) for name, rule in spec.fields.items()}
    note = _compile_template(env, route, NOTES_FIELD, spec.notes.template)
    back_note = _compile_template(env, route, BACK_NOTE_FIELD, spec.back.note_template)
    return CompiledMapping(route=route, spec=spec, _fields=fields, _note=note, _back_note=back_note)


def _compile_field(env: _Environment, route: str, name: str, rule: FieldRule) -> _CompiledField:
    template = _compile_template(env, route, name, rule.template) if rule.template is not None else None
    when = None
    if rule.when is not None:
        try:
            when = env.compile_expression(rule.when, undefined_to_none=False)
        except TemplateSyntaxError as exc:
            raise MappingError(f"syntax error in when expression: {exc.message}; write a Jinja expression "
                               "such as incident.status == 'resolved'",
                               route=route, field=name, value=rule.when) from None
    steps = tuple(transforms.resolve(spec) for spec in rule.transform_specs)
    return _CompiledField(name=name, rule=rule, template=template, when=when, steps=steps)


def _compile_template(env: _Environment, route: str, name: str, source: str) -> Template:
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise MappingError(f"template syntax error at line {exc.lineno}: {exc.message}; fix the template "
                           "(Jinja syntax: {{ incident.title }}, {% if ... %}...{% endif %})",
                           route=route, field=name, value=source) from None


# -- evaluating --------------------------------------------------------------------------------------
def apply(mapping: CompiledMapping, incident: Incident, *, creating: bool) -> MappingResult:
    """The desk fields for `incident`: owner=target fields only when `creating`; `when`-false omitted."""
    context = {"incident": incident, "route": mapping.route}
    fields: dict[str, str] = {}
    warnings: list[str] = []
    for compiled in mapping._fields.values():
        outcome = _evaluate(mapping.route, compiled, context, creating=creating)
        if outcome.value is not None:
            fields[compiled.name] = outcome.value
        if outcome.warning:
            warnings.append(outcome.warning)
    return MappingResult(fields=fields, warnings=warnings)


def explain(mapping: CompiledMapping, incident: Incident, *, creating: bool = True) -> list[FieldExplanation]:
    """Every mapped field with its value and the rule that decided it, for ``mappings preview``."""
    context = {"incident": incident, "route": mapping.route}
    rows = []
    for compiled in mapping._fields.values():
        outcome = _evaluate(mapping.route, compiled, context, creating=creating)
        rows.append(FieldExplanation(field=compiled.name, value=outcome.value, rule=outcome.rule,
                                     owner=compiled.rule.owner))
    return rows


def render_note(mapping: CompiledMapping, incident: Incident, entry: TimelineEntry) -> str:
    """A source timeline entry as the desk journal text (``[notes] template``)."""
    context = {"incident": incident, "entry": entry, "route": mapping.route}
    text = _render(mapping.route, NOTES_FIELD, mapping._note, mapping.spec.notes.template, context)
    return transforms.truncate_text(text, HARD_LIMIT)


def render_back_note(mapping: CompiledMapping, ticket: Any, entry: TimelineEntry) -> str:
    """A desk journal entry as a source note (``[back] note_template``); `ticket` has number, url, fields."""
    context = {"ticket": ticket, "entry": entry, "route": mapping.route}
    text = _render(mapping.route, BACK_NOTE_FIELD, mapping._back_note, mapping.spec.back.note_template, context)
    return transforms.truncate_text(text, HARD_LIMIT)


def _evaluate(route: str, compiled: _CompiledField, context: Mapping[str, Any], *, creating: bool) -> _Outcome:
    rule = compiled.rule
    if rule.owner == "target" and not creating:
        return _Outcome(None, "skipped: owner=target")
    if compiled.when is not None and not _when(route, compiled, context):
        return _Outcome(None, "skipped: when false")
    if compiled.template is not None:
        text, how = _render(route, compiled.name, compiled.template, rule.template or "", context), "template"
    elif rule.value is not None:
        text, how = rule.value, "value"
    else:
        text, how = _lookup(route, compiled, context)
    if rule.required and not text.strip():
        raise MappingError(f"required field is empty ({how}); give the rule a default, or make the "
                           "source fill it in", route=route, field=compiled.name, value=text)
    return _cap(route, compiled, text, how)


def _when(route: str, compiled: _CompiledField, context: Mapping[str, Any]) -> bool:
    assert compiled.when is not None
    try:
        return bool(compiled.when(**context))
    except Exception as exc:  # noqa: BLE001 - admin-written code: every failure is a mapping error
        raise MappingError(f"when expression failed: {_describe(exc)}", route=route, field=compiled.name,
                           value=compiled.rule.when) from None


def _render(route: str, name: str, template: Template, source: str, context: Mapping[str, Any]) -> str:
    try:
        return template.render(**context).strip()
    except Exception as exc:  # noqa: BLE001 - admin-written code: every failure is a mapping error
        raise MappingError(f"template failed: {_describe(exc)}", route=route, field=name, value=source) from None


def _describe(exc: Exception) -> str:
    """What went wrong in a template, and what to do about it, in an admin's words."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox ({text}); templates may only read incident data"
    if isinstance(exc, UndefinedError):
        return (f"{text}; check the name (itsm-bridge mappings preview shows the incident), or guard it: "
                "{{ incident.raw.get('key') }} or {{ value | default('') }}")
    return f"{type(exc).__name__}: {text}"


def _lookup(route: str, compiled: _CompiledField, context: Mapping[str, Any]) -> tuple[str, str]:
    """Walk the ``from`` path, apply transforms and the value map; return the text and how it was found."""
    rule = compiled.rule
    path = rule.from_ or ""
    label = path + "".join(f"|{spec}" for spec in rule.transform_specs)
    value = walk(context, path)
    for step in compiled.steps:
        try:
            value = step(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MappingError(f"transform failed on {label}: {exc}", route=route, field=compiled.name,
                               value=value) from None
    if isinstance(value, (list, tuple)) and not value:
        value = None  # an empty list (no assignees) is missing, so the default applies
    if rule.map is None:
        if value is not None:
            return transforms.as_text(value), f"from {label}"
        if rule.default is not None:
            return rule.default, f"default ({label}=None)"
        return "", f"from {label} (missing)"
    key = None if value is None else transforms.as_text(value)
    if key is not None and key in rule.map:
        return rule.map[key], f"map {label}={key!r} -> {rule.map[key]!r}"
    if rule.default is not None:
        return rule.default, f"default ({label}={key!r} not in map)"
    known = ", ".join(repr(k) for k in rule.map)
    raise MappingError(f"{label}={key!r} is not in the value map ({known}) and the rule has no default; "
                       "add it to map or give the rule a default", route=route, field=compiled.name, value=key)


def walk(context: Mapping[str, Any], path: str) -> Any:
    """Follow a dotted path through attributes and dict keys alike; any missing step gives None.

    List items are reached by index (``incident.assignees.0``). Private attributes and methods are
    never read: a path reads data, not code.
    """
    segments = path.split(".")
    value: Any = context.get(segments[0])
    for segment in segments[1:]:
        if value is None:
            return None
        if isinstance(value, Mapping):
            value = value.get(segment)
        elif isinstance(value, (list, tuple)):
            value = value[int(segment)] if segment.isdigit() and int(segment) < len(value) else None
        elif segment.startswith("_"):
            return None
        else:
            value = getattr(value, segment, None)
            if callable(value):
                return None
    return value


def _cap(route: str, compiled: _CompiledField, text: str, how: str) -> _Outcome:
    limit = min(compiled.rule.max_length or HARD_LIMIT, HARD_LIMIT)
    if len(text) <= limit:
        return _Outcome(text, how)
    warning = (f"route {route!r}, field {compiled.name!r}: value was {len(text)} characters, truncated to "
               f"{limit}" + ("" if compiled.rule.max_length else " (the bridge's hard limit)"))
    return _Outcome(transforms.truncate_text(text, limit), f"{how}, truncated to {limit}", warning)


__all__ = ["CompiledMapping", "FieldExplanation", "MappingResult", "apply", "compile_mapping", "explain",
           "render_back_note", "render_note", "walk"]
