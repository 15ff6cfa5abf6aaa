"""The mapping TOML model: what admins may write, and how precisely mistakes are reported."""

from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from mappings.schema import BackRules, FieldRule, MappingSpec, list_presets, load_preset, merge


def _errors(data: dict, model: type = FieldRule) -> list[dict]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return info.value.errors()


def test_from_is_accepted_by_alias_and_by_name() -> None:
    by_alias = FieldRule.model_validate({"from": "incident.urgency", "map": {"high": "1"}, "default": "2"})
    by_name = FieldRule(from_="incident.urgency", map={"high": "1"}, default="2")
    assert by_alias == by_name
    assert by_alias.kind == "from" and by_alias.owner == "source"


def test_rule_with_template_and_value_names_both() -> None:
    errors = _errors({"template": "{{ incident.title }}", "value": "x"})
    assert len(errors) == 1
    assert "exactly one of template, from or value" in errors[0]["msg"]
    assert "template and value" in errors[0]["msg"]


def test_rule_with_nothing_says_so() -> None:
    errors = _errors({"owner": "target"})
    assert "this rule has none" in errors[0]["msg"]


def test_unknown_key_is_refused_where_it_is() -> None:
    errors = _errors({"value": "x", "defualt": "2"})
    assert errors[0]["type"] == "extra_forbidden"
    assert errors[0]["loc"] == ("defualt",)


def test_bad_owner_lists_the_choices() -> None:
    errors = _errors({"value": "x", "owner": "desk"})
    assert errors[0]["loc"] == ("owner",)
    assert "'source', 'target' or 'both'" in errors[0]["msg"]


def test_owner_both_is_accepted_for_two_way() -> None:
    assert FieldRule.model_validate({"value": "x", "owner": "both"}).owner == "both"


def test_map_only_applies_to_from_rules() -> None:
    errors = _errors({"template": "{{ incident.title }}", "map": {"a": "b"}})
    assert "map only apply to a from rule; this rule uses template" in errors[0]["msg"]


def test_unknown_transform_lists_the_known_ones() -> None:
    errors = _errors({"from": "incident.assignees", "transform": "frist"})
    assert errors[0]["loc"] == ("transform",)
    assert "unknown transform 'frist'" in errors[0]["msg"] and "first" in errors[0]["msg"]


@pytest.mark.parametrize("spec", ["truncate:0", "truncate:x", "lower:1"])
def test_transform_arguments_are_checked(spec: str) -> None:
    assert _errors({"from": "incident.title", "transform": spec})[0]["loc"] == ("transform",)


def test_transform_chain_is_accepted() -> None:
    rule = FieldRule.model_validate({"from": "incident.assignees", "transform": ["first", "lower"]})
    assert rule.transform_specs == ["first", "lower"]


@pytest.mark.parametrize("path", ["urgency", "incident..urgency", "incident.__class__", "ticket.number"])
def test_bad_from_paths_are_refused(path: str) -> None:
    errors = _errors({"from": path})
    assert errors[0]["loc"] == ("from",)
    assert repr(path) in errors[0]["msg"]


def test_numbers_in_toml_become_strings() -> None:
    rule = FieldRule.model_validate(tomllib.loads('from = "incident.urgency"\nmap = { high = 1 }\ndefault = 2'))
    assert rule.map == {"high": "1"} and rule.default == "2"
    back = BackRules.model_validate({"resolve_states": [6, 7]})
    assert back.resolve_states == ["6", "7"]


def test_blank_template_is_refused() -> None:
    assert "must not be empty" in _errors({"template": "  "})[0]["msg"]


def test_max_length_must_be_positive() -> None:
    assert _errors({"value": "x", "max_length": 0})[0]["loc"] == ("max_length",)


def test_back_states_cannot_mean_two_things() -> None:
    errors = _errors({"resolve_states": ["6"], "reopen_states": ["6", "1"]}, BackRules)
    assert "'6'" in errors[0]["msg"] and "reopen_states" in errors[0]["msg"]


def test_back_notes_choice_is_checked() -> None:
    assert _errors({"notes": "all"}, BackRules)[0]["loc"] == ("notes",)


def test_back_defaults_send_nothing_back() -> None:
    back = BackRules()
    assert (back.resolve_states, back.notes, back.reopen) == ([], "none", False)


def test_spec_locates_errors_by_field_name() -> None:
    errors = _errors({"source": "pagerduty", "target": "servicenow",
                      "fields": {"impact": {"from": "incident.urgency", "value": "1"}}}, MappingSpec)
    assert errors[0]["loc"] == ("fields", "impact")


def test_spec_refuses_odd_field_names() -> None:
    errors = _errors({"source": "a", "target": "b", "fields": {"short description": {"value": "x"}}},
                     MappingSpec)
    assert "not a desk field name" in errors[0]["msg"]


def test_spec_defaults_notes_and_back() -> None:
    spec = MappingSpec.model_validate({"source": "pagerduty", "target": "servicenow"})
    assert spec.notes.field == "work_notes" and spec.fields == {} and spec.description == ""


# -- presets and merge -------------------------------------------------------------------------------
def test_list_presets_includes_the_builtin_one() -> None:
    assert "pagerduty-servicenow" in list_presets()


def test_unknown_preset_lists_the_available_ones() -> None:
    with pytest.raises(LookupError) as info:
        load_preset("pagerduty-snow")
    message = str(info.value)
    assert "pagerduty-snow" in message and "pagerduty-servicenow" in message


@pytest.mark.parametrize("name", ["../schema", "/etc/passwd", ""])
def test_preset_names_cannot_escape_the_directory(name: str) -> None:
    with pytest.raises(LookupError):
        load_preset(name)


PRESET = {
    "description": "d", "source": "pagerduty", "target": "servicenow",
    "fields": {"impact": {"from": "incident.urgency", "map": {"high": "1"}, "default": "2"},
               "category": {"value": "software", "owner": "target"}},
    "notes": {"template": "{{ entry.text }}", "field": "work_notes"},
    "back": {"resolve_states": ["6", "7"], "reopen": True, "notes": "comments"},
}


def test_merge_replaces_a_field_rule_whole() -> None:
    merged = merge(PRESET, {"fields": {"impact": {"template": "{{ '1' }}"}}})
    assert merged["fields"]["impact"] == {"template": "{{ '1' }}"}  # no map/default inherited
    assert merged["fields"]["category"] == PRESET["fields"]["category"]
    MappingSpec.model_validate(merged)  # and the result is a valid rule


def test_merge_overrides_back_and_notes_key_by_key() -> None:
    merged = merge(PRESET, {"back": {"notes": "both"}, "notes": {"field": "comments"}})
    assert merged["back"] == {"resolve_states": ["6", "7"], "reopen": True, "notes": "both"}
    assert merged["notes"] == {"template": "{{ entry.text }}", "field": "comments"}


def test_merge_drops_match_and_leaves_inputs_alone() -> None:
    overrides = {"match": {"service": ["Search"]}, "fields": {"new_field": {"value": "x"}}, "notes": {}}
    merged = merge(PRESET, overrides)
    assert "match" not in merged
    assert "new_field" in merged["fields"] and "new_field" not in PRESET["fields"]
    merged["back"]["resolve_states"].append("8")
    assert PRESET["back"]["resolve_states"] == ["6", "7"]


def test_merge_without_preset_is_the_overrides() -> None:
    merged = merge({}, {"fields": {"x": {"value": "1"}}, "notes": {}, "back": {}})
    assert merged == {"fields": {"x": {"value": "1"}}, "notes": {}, "back": {}}
