"""The mapping engine: compile once, apply as a pure function, explain for `mappings preview`."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import MappingError
from bridge.model import Incident, Ticket, TimelineEntry
from mappings.engine import (
    HARD_LIMIT, FieldExplanation, apply, compile_mapping, explain, render_back_note, render_note, walk,
)
from mappings.schema import MappingSpec

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=timezone.utc)


def incident(**changes: Any) -> Incident:
    values: dict[str, Any] = dict(
        source="pagerduty", id="Q1ABC", title="Checkout returns 500", status="triggered", created_at=T0,
        updated_at=T0, number="4711", urgency="high", priority="P2", service="Checkout Web",
        assignees=("Ana Ops", "Bo Byte"), url="https://acme.pagerduty.com/incidents/Q1ABC",
        raw={"escalation_policy": {"summary": "Web on-call"}, "teams": [{"summary": "Storefront"}]},
    )
    values.update(changes)
    return Incident(**values)


def mapping(fields: dict[str, Any], *, route: str = "pd-to-snow", **extra: Any):
    spec = MappingSpec.model_validate({"source": "pagerduty", "target": "servicenow", "fields": fields, **extra})
    return compile_mapping(route, spec)


IMPACT = {"from": "incident.urgency", "map": {"high": "1", "low": "3"}, "default": "2"}
STATE = {"from": "incident.status", "map": {"triggered": "1", "acknowledged": "2", "resolved": "6"}}


# -- value maps and defaults -------------------------------------------------------------------------
def test_value_map_hits() -> None:
    result = apply(mapping({"impact": IMPACT, "state": STATE}), incident(urgency="low"), creating=True)
    assert result.fields == {"impact": "3", "state": "1"}
    assert result.warnings == []


@pytest.mark.parametrize("urgency", [None, "medium"])
def test_default_when_missing_or_unmapped(urgency: str | None) -> None:
    assert apply(mapping({"impact": IMPACT}), incident(urgency=urgency), creating=True).fields == {"impact": "2"}


def test_unmapped_value_without_default_names_route_field_and_value() -> None:
    with pytest.raises(MappingError) as info:
        apply(mapping({"state": STATE}), incident(status="snoozed"), creating=False)
    error = info.value
    assert (error.route, error.field, error.value) == ("pd-to-snow", "state", "snoozed")
    assert "'triggered'" in str(error) and "add it to map or give the rule a default" in str(error)


def test_missing_value_without_default_is_an_error_too() -> None:
    with pytest.raises(MappingError) as info:
        apply(mapping({"urgency": {"from": "incident.priority", "map": {"P1": "1"}}}), incident(priority=None),
              creating=True)
    assert info.value.field == "urgency" and info.value.value is None


def test_map_keys_compare_as_strings() -> None:
    rule = {"from": "incident.escalation_level", "map": {"1": "Tier 1", "2": "Tier 2"}}
    assert apply(mapping({"tier": rule}), incident(escalation_level=2), creating=True).fields == {"tier": "Tier 2"}


def test_plain_from_without_value_gives_empty_or_default() -> None:
    fields = {"cmdb_ci": {"from": "incident.service"},
              "group": {"from": "incident.service", "default": "Service Desk"}}
    assert apply(mapping(fields), incident(service=None), creating=True).fields == \
        {"cmdb_ci": "", "group": "Service Desk"}


def test_required_empty_value_is_an_error() -> None:
    with pytest.raises(MappingError) as info:
        apply(mapping({"cmdb_ci": {"from": "incident.service", "required": True}}), incident(service=None),
              creating=True)
    assert info.value.field == "cmdb_ci" and "required" in str(info.value)


# -- paths, transforms, raw --------------------------------------------------------------------------
def test_from_path_walks_raw_dicts_and_lists() -> None:
    fields = {"policy": {"from": "incident.raw.escalation_policy.summary"},
              "team": {"from": "incident.raw.teams.0.summary"},
              "missing": {"from": "incident.raw.conference_bridge.conference_url", "default": "none"}}
    assert apply(mapping(fields), incident(), creating=True).fields == \
        {"policy": "Web on-call", "team": "Storefront", "missing": "none"}


def test_walk_never_reads_private_attributes_or_methods() -> None:
    context = {"incident": incident()}
    assert walk(context, "incident._private") is None
    assert walk(context, "incident.to_dict") is None
    assert walk(context, "incident.assignees.7") is None
    assert walk(context, "incident.title") == "Checkout returns 500"


def test_transforms_run_before_the_map() -> None:
    fields = {"owner": {"from": "incident.assignees", "transform": ["first", "lower"]},
              "all": {"from": "incident.assignees", "transform": "join"},
              "urgency": {"from": "incident.priority", "transform": "digits", "map": {"1": "1", "2": "1"},
                          "default": "3"},
              "opened": {"from": "incident.created_at", "transform": "desk_time"},
              "short": {"from": "incident.title", "transform": "truncate:10"}}
    assert apply(mapping(fields), incident(), creating=True).fields == {
        "owner": "ana ops", "all": "Ana Ops, Bo Byte", "urgency": "1", "opened": "2025-03-14 09:00:00",
        "short": "Checkout …"}


def test_empty_list_counts_as_missing() -> None:
    rule = {"from": "incident.assignees", "transform": "first", "default": "unassigned"}
    assert apply(mapping({"who": rule}), incident(assignees=()), creating=True).fields == {"who": "unassigned"}


def test_lists_become_comma_separated_text() -> None:
    assert apply(mapping({"who": {"from": "incident.assignees"}}), incident(), creating=True).fields == \
        {"who": "Ana Ops, Bo Byte"}


def test_templates_reach_raw_and_get_desk_filters() -> None:
    fields = {"policy": {"template": "{{ incident.raw.escalation_policy.summary }} / {{ route }}"},
              "opened": {"template": "{{ incident.created_at | desk_time }}"}}
    assert apply(mapping(fields), incident(), creating=True).fields == \
        {"policy": "Web on-call / pd-to-snow", "opened": "2025-03-14 09:00:00"}


def test_template_with_unknown_attribute_is_a_mapping_error() -> None:
    template = "{{ incident.raw.nope.summary }}"
    with pytest.raises(MappingError) as info:
        apply(mapping({"policy": {"template": template}}), incident(), creating=True)
    assert (info.value.field, info.value.value) == ("policy", template)
    assert "mappings preview" in str(info.value)


# -- when and owner ----------------------------------------------------------------------------------
def test_when_false_omits_the_field() -> None:
    fields = {"close_code": {"value": "Solution provided", "when": "incident.status == 'resolved'"}}
    assert apply(mapping(fields), incident(), creating=True).fields == {}
    assert apply(mapping(fields), incident(status="resolved"), creating=False).fields == \
        {"close_code": "Solution provided"}


def test_when_that_fails_names_the_expression() -> None:
    with pytest.raises(MappingError) as info:
        apply(mapping({"x": {"value": "1", "when": "incident.nope == 1"}}), incident(), creating=True)
    assert (info.value.field, info.value.value) == ("x", "incident.nope == 1")


def test_owner_target_only_on_create() -> None:
    compiled = mapping({"caller_id": {"value": "itsm.bridge", "owner": "target"}, "state": STATE,
                        "both": {"value": "b", "owner": "both"}})
    assert apply(compiled, incident(), creating=True).fields == \
        {"caller_id": "itsm.bridge", "state": "1", "both": "b"}
    assert apply(compiled, incident(), creating=False).fields == {"state": "1", "both": "b"}
    assert compiled.owner("caller_id") == "target" and compiled.owner("state") == "source"
    assert compiled.field_names == ("caller_id", "state", "both")


# -- safety ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("template", [
    "{{ incident.__class__.__mro__ }}",
    "{{ incident.to_dict.__globals__ }}",
    "{{ ''.__class__.__subclasses__() }}",
    "{{ incident.raw.update({'hacked': 1}) }}",
    "{{ 'x' * 100000000 }}",
    "{{ 2 ** 100000000 }}",
    "{% for i in range(10000000) %}x{% endfor %}",
])
def test_sandbox_refuses_escapes_and_bombs(template: str) -> None:
    subject = incident()
    with pytest.raises(MappingError) as info:
        apply(mapping({"x": {"template": template}}), subject, creating=True)
    assert info.value.field == "x" and info.value.value == template
    assert "hacked" not in subject.raw


def test_syntax_error_is_reported_at_compile_time_with_the_field() -> None:
    template = "{{ incident.title "
    with pytest.raises(MappingError) as info:
        mapping({"ok": {"value": "1"}, "short_description": {"template": template}})
    assert (info.value.route, info.value.field, info.value.value) == ("pd-to-snow", "short_description", template)
    assert "line 1" in str(info.value)


def test_unknown_filter_is_a_compile_error() -> None:
    with pytest.raises(MappingError, match="nosuch"):
        mapping({"x": {"template": "{{ incident.title | nosuch }}"}})


def test_syntax_errors_in_when_and_notes_are_compile_errors() -> None:
    with pytest.raises(MappingError) as info:
        mapping({"x": {"value": "1", "when": "incident.status =="}})
    assert info.value.field == "x"
    with pytest.raises(MappingError) as info:
        mapping({}, notes={"template": "{% if %}"})
    assert info.value.field == "notes.template"
    with pytest.raises(MappingError) as info:
        mapping({}, back={"note_template": "{{ }"})
    assert info.value.field == "back.note_template"


def test_max_length_truncates_with_ellipsis_and_warns() -> None:
    compiled = mapping({"short_description": {"template": "{{ incident.title }}", "max_length": 12}})
    result = apply(compiled, incident(title="A" * 50), creating=True)
    assert result.fields["short_description"] == "A" * 11 + "…"
    assert len(result.warnings) == 1 and "'short_description'" in result.warnings[0] and "12" in result.warnings[0]


def test_hard_limit_applies_without_max_length() -> None:
    result = apply(mapping({"d": {"from": "incident.description"}}), incident(description="x" * (HARD_LIMIT + 5)),
                   creating=True)
    assert len(result.fields["d"]) == HARD_LIMIT and result.warnings


def test_apply_is_pure() -> None:
    compiled = mapping({"impact": IMPACT, "x": {"template": "{{ incident.raw.teams|length }}"}})
    subject = incident()
    before = subject.to_dict()
    assert apply(compiled, subject, creating=True) == apply(compiled, subject, creating=True)
    assert subject.to_dict() == before


# -- explain, notes ----------------------------------------------------------------------------------
def test_explain_says_which_rule_decided() -> None:
    compiled = mapping({
        "impact": IMPACT, "urgency": {"from": "incident.priority", "map": {"P1": "1"}, "default": "2"},
        "short": {"template": "{{ incident.title }}", "max_length": 5},
        "category": {"value": "software", "owner": "target"},
        "close_code": {"value": "x", "when": "incident.status == 'resolved'"},
        "cmdb_ci": {"from": "incident.service"},
    })
    rows = explain(compiled, incident(priority=None), creating=False)
    assert [(r.field, r.value, r.rule) for r in rows] == [
        ("impact", "1", "map incident.urgency='high' -> '1'"),
        ("urgency", "2", "default (incident.priority=None not in map)"),
        ("short", "Chec…", "template, truncated to 5"),
        ("category", None, "skipped: owner=target"),
        ("close_code", None, "skipped: when false"),
        ("cmdb_ci", "Checkout Web", "from incident.service"),
    ]
    assert rows[3] == FieldExplanation("category", None, "skipped: owner=target", "target")
    assert explain(compiled, incident(), creating=True)[3].rule == "value"


def test_explain_agrees_with_apply() -> None:
    compiled = mapping({"impact": IMPACT, "state": STATE, "c": {"value": "v", "owner": "target"}})
    for creating in (True, False):
        shown = {r.field: r.value for r in explain(compiled, incident(), creating=creating) if r.value is not None}
        assert shown == apply(compiled, incident(), creating=creating).fields


def test_render_note_and_back_note() -> None:
    note = "[PD] {{ entry.text }}{% if entry.author %} ({{ entry.author }}){% endif %}"
    compiled = mapping({}, notes={"template": note}, back={"notes": "comments"})
    entry = TimelineEntry(id="n1", at=T0, kind="comment", text="Rolled back deploy", author="Ana Ops")
    assert render_note(compiled, incident(), entry) == "[PD] Rolled back deploy (Ana Ops)"
    ticket = Ticket(connection="snow", id="abc", number="INC0010001", url="https://x/inc", fields={}, updated_at=T0)
    assert render_back_note(compiled, ticket, entry) == "INC0010001 Ana Ops (comment): Rolled back deploy"
    anonymous = TimelineEntry(id="n2", at=T0, kind="comment", text="hi")
    assert render_back_note(compiled, ticket, anonymous) == "INC0010001 (comment): hi"
    assert compiled.back.notes == "comments"


def test_note_template_runtime_error_names_notes() -> None:
    compiled = mapping({}, notes={"template": "{{ entry.nope }}"})
    with pytest.raises(MappingError) as info:
        render_note(compiled, incident(), TimelineEntry(id="n", at=T0, kind="note", text="x"))
    assert info.value.field == "notes.template"


# -- properties --------------------------------------------------------------------------------------
PRESET_LIKE = mapping({
    "short_description": {"template": "[{{ incident.service or 'PagerDuty' }}] {{ incident.title }}",
                          "max_length": 160},
    "impact": IMPACT, "state": STATE,
    "group": {"from": "incident.service", "map": {"Search": "Search Platform"}, "default": "Service Desk"},
    "first": {"from": "incident.assignees", "transform": ["first", "upper", "truncate:20"]},
    "notes": {"template": "{{ incident.description|truncate(50) }} {{ incident.raw.get('k', '') }}"},
    "close": {"template": "{{ incident.assignees|join(', ') }}", "when": "incident.status == 'resolved'"},
})

text = st.text(max_size=300)
optional = st.none() | text


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(title=text, status=text, urgency=optional, priority=optional, service=optional, description=text,
       assignees=st.lists(text, max_size=4), raw=st.dictionaries(text, text | st.integers(), max_size=4),
       creating=st.booleans())
def test_apply_raises_nothing_but_mapping_error(title: str, status: str, urgency: str | None,
                                                priority: str | None, service: str | None, description: str,
                                                assignees: list[str], raw: dict, creating: bool) -> None:
    subject = incident(title=title, status=status, urgency=urgency, priority=priority, service=service,
                       description=description, assignees=tuple(assignees), raw=raw)
    try:
        result = apply(PRESET_LIKE, subject, creating=creating)
    except MappingError as error:
        assert error.route == "pd-to-snow" and error.field == "state"
        return
    assert all(isinstance(value, str) for value in result.fields.values())
    assert len(result.fields["short_description"]) <= 160


@settings(max_examples=300)
@given(source=st.text(alphabet=st.sampled_from(list("{}%#()[]|.'\" _-+*~ab1incdet")), max_size=40))
def test_any_template_source_compiles_or_fails_as_mapping_error(source: str) -> None:
    if not source.strip():
        return
    try:
        compiled = mapping({"x": {"template": source}})
    except MappingError as error:
        assert error.field == "x" and error.value == source
        return
    try:
        apply(compiled, incident(), creating=True)
    except MappingError as error:
        assert error.field == "x"
