"""The mapping TOML, as pydantic models: what an admin may write in a preset or a route override.

Validation is strict (``extra="forbid"``) and precise because a mapping mistake found at start-up is a
config error an admin fixes in a minute, while the same mistake found by the daemon is a dead-lettered
ticket at 3 a.m. Every message says which rule is wrong and how to write it instead.

Presets are TOML files shipped in ``mappings/presets/``; a route names one and overrides pieces of it
(`merge`). Templates are *not* compiled here: `mappings.engine.compile_mapping` does that once.
"""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from importlib import resources
from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from mappings import transforms

Owner = Literal["source", "target", "both"]
NotesFlow = Literal["comments", "work_notes", "both", "none"]

#: Names a ``from`` path may start with (the template context also has ``entry``/``ticket`` for notes).
PATH_ROOTS: tuple[str, ...] = ("incident", "route")

_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _scalar_text(value: Any) -> Any:
    """Let admins write ``default = 2`` or ``resolve_states = [6, 7]``: desk values are strings anyway."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


#: A string in the TOML that may also be written as a bare number or boolean.
Text = Annotated[str, BeforeValidator(_scalar_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class FieldRule(_Strict):
    """How one desk field gets its value: exactly one of `template`, `from` (`from_`), `value`.

    `owner` decides who keeps the field afterwards: ``source`` (default) — the bridge keeps it in step
    on every update; ``target`` — set on create only, the desk owns it afterwards; ``both`` — reserved
    for two-way sync, sent like ``source`` for now.
    """

    template: str | None = None
    from_: str | None = Field(default=None, alias="from")
    map: dict[str, Text] | None = None
    default: Text | None = None
    transform: str | list[str] | None = None
    value: Text | None = None
    when: str | None = None
    owner: Owner = "source"
    max_length: int | None = Field(default=None, ge=1)
    required: bool = False

    @field_validator("from_")
    @classmethod
    def _check_path(cls, path: str | None) -> str | None:
        if path is None:
            return None
        segments = path.split(".")
        if any(not segment.strip() for segment in segments):
            raise ValueError(f"from path {path!r} has an empty segment; write it like 'incident.urgency'")
        if segments[0] not in PATH_ROOTS:
            raise ValueError(f"from path {path!r} must start with 'incident.' (or be 'route'), "
                             "e.g. 'incident.urgency' or 'incident.raw.escalation_policy.summary'")
        if any(segment.startswith("__") for segment in segments):
            raise ValueError(f"from path {path!r} reaches for Python internals; only data can be read")
        return path

    @field_validator("transform")
    @classmethod
    def _check_transforms(cls, value: str | list[str] | None) -> str | list[str] | None:
        for spec in [value] if isinstance(value, str) else value or []:
            transforms.check_spec(spec)
        return value

    @field_validator("template", "when")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty; remove the key instead")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> FieldRule:
        given = [name for name, present in (("template", self.template is not None),
                                            ("from", self.from_ is not None),
                                            ("value", self.value is not None)) if present]
        if len(given) != 1:
            has = f"this rule has {' and '.join(given)}" if given else "this rule has none"
            raise ValueError(f"give exactly one of template, from or value ({has})")
        extras = [name for name in ("map", "default", "transform") if getattr(self, name) is not None]
        if extras and given[0] != "from":
            raise ValueError(f"{', '.join(extras)} only apply to a from rule; this rule uses {given[0]} "
                             "(write the logic into the template, or use from = \"incident.<attribute>\")")
        return self

    @property
    def kind(self) -> str:
        """``template``, ``from`` or ``value``: which of the three the rule uses."""
        if self.template is not None:
            return "template"
        return "from" if self.from_ is not None else "value"

    @property
    def transform_specs(self) -> list[str]:
        """The transform chain as a list (a single name is a chain of one)."""
        if self.transform is None:
            return []
        return [self.transform] if isinstance(self.transform, str) else list(self.transform)


class NotesRule(_Strict):
    """How one source timeline entry becomes a desk journal line (`entry`, `incident`, `route` in scope)."""

    template: str = "{{ entry.text }}"
    field: str = "work_notes"


class BackFieldRule(_Strict):
    """A desk field that sets a source attribute when the desk changes it (e.g. urgency -> PagerDuty priority).

    The forward field of the same desk name should be ``owner = "both"``: then whichever side changed it
    last (by the change's own timestamp) wins, and every such decision is audited.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", min_length=1, description="the desk field read")
    map: dict[str, Text] = Field(default_factory=dict, description="desk value -> source value")
    default: Text | None = None


class BackRules(_Strict):
    """Which desk changes flow back to the source. Empty by default: nothing flows back unless asked."""

    state_field: str = Field("state", description="the desk field holding the ticket's state (JSM: status)")
    fields: dict[str, BackFieldRule] = Field(default_factory=dict,
                                            description="source attribute (priority, title, urgency) -> desk field rule")
    reassignment: Literal["none", "note", "escalate"] = Field(
        "none", description="a desk reassignment becomes a note on the incident, or escalates it")
    assignment_field: str = Field("assignment_group", description="the desk field holding the assignment")
    resolve_states: list[Text] = Field(default_factory=list)
    acknowledge_states: list[Text] = Field(default_factory=list)
    reopen_states: list[Text] = Field(default_factory=list)
    reopen: bool = False
    notes: NotesFlow = "none"
    announce: list[str] = Field(default_factory=list,
                                description="chat sources: desk fields whose changes are posted into the channel")
    labels: dict[str, dict[str, str]] = Field(default_factory=dict,
                                              description="desk field -> {desk value: words shown in chat}")
    note_template: str = ("{{ ticket.number }}{% if entry.author %} {{ entry.author }}{% endif %}"
                          " ({{ entry.kind }}): {{ entry.text }}")

    @field_validator("fields")
    @classmethod
    def _settable(cls, value: dict[str, BackFieldRule]) -> dict[str, BackFieldRule]:
        for name in value:
            if name not in ("priority", "title", "urgency"):
                raise ValueError(f"{name!r} cannot be set on the source from the desk; "
                                 "use priority, title or urgency")
        return value

    @model_validator(mode="after")
    def _states_mean_one_thing(self) -> BackRules:
        for other in ("acknowledge_states", "reopen_states"):
            both = sorted(set(self.resolve_states) & set(getattr(self, other)))
            if both:
                raise ValueError(f"desk state(s) {', '.join(map(repr, both))} are in both resolve_states "
                                 f"and {other}; a desk state can only mean one thing, remove it from one list")
        return self


class MappingSpec(_Strict):
    """A whole mapping: a preset, or a preset merged with a route's overrides (see `merge`)."""

    description: str = ""
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    fields: dict[str, FieldRule] = Field(default_factory=dict)
    notes: NotesRule = Field(default_factory=NotesRule)
    back: BackRules = Field(default_factory=BackRules)

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, FieldRule]) -> dict[str, FieldRule]:
        for name in value:
            if not _FIELD_NAME.match(name):
                raise ValueError(f"{name!r} is not a desk field name (letters, digits, '_', '.', '-'; "
                                 "e.g. short_description or customfield_10010)")
        return value


# -- presets -----------------------------------------------------------------------------------------
def _preset_dir() -> Any:
    return resources.files("mappings") / "presets"


def list_presets() -> list[str]:
    """Names of the built-in presets, sorted: what a route may write in ``preset = "..."``."""
    return sorted(entry.name.removesuffix(".toml") for entry in _preset_dir().iterdir()
                  if entry.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The raw TOML of built-in preset `name`, unvalidated (merge it with overrides, then validate).

    Raises LookupError naming the available presets when there is none by that name.
    """
    available = list_presets()
    if not _PRESET_NAME.match(name) or name not in available:
        close = difflib.get_close_matches(name, available, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise LookupError(f"no mapping preset named {name!r}; {hint}available: "
                          f"{', '.join(available) or 'none'} (itsm-bridge mappings list)")
    entry = _preset_dir() / f"{name}.toml"
    try:
        return tomllib.loads(entry.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:  # a broken shipped file is a packaging bug: say which
        raise ValueError(f"built-in mapping preset {name!r} is not valid TOML: {exc}") from exc


def merge(preset: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A route's mapping: `preset` with the route's `overrides` applied. Neither input is modified.

    - ``fields.X`` in the route replaces the preset's rule for X entirely (no key-by-key blending:
      a route switching X from ``template`` to ``from`` must not inherit the preset's template);
    - ``notes`` and ``back`` are overridden key by key (``reopen = false`` keeps the preset's states);
    - any other top-level key (``description``, ``source``, ``target``) replaces the preset's;
    - ``match`` decides routing, not mapping: it is dropped.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(preset))
    merged.pop("match", None)
    for key, value in overrides.items():
        if key == "match" or value is None:
            continue
        if key == "fields" and isinstance(value, Mapping):
            merged["fields"] = {**merged.get("fields", {}), **copy.deepcopy(dict(value))}
        elif key in ("notes", "back") and isinstance(value, Mapping):
            merged[key] = {**merged.get(key, {}), **copy.deepcopy(dict(value))}
        else:
            merged[key] = copy.deepcopy(value)
    return merged
