"""Config validation: every problem reported at once, with its location, the bad value and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.config import load_config, parse_config
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
GOOD = (ROOT / "config.example.toml").read_text()
ENV = {"PAGERDUTY_TOKEN": "t", "PAGERDUTY_WEBHOOK_SECRET": "w", "SERVICENOW_USER": "u", "SERVICENOW_PASSWORD": "p",
       "JSM_EMAIL": "bridge@example.com", "JSM_API_TOKEN": "j"}


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return [str(problem) for problem in caught.value.problems]


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert set(config.connections) == {"pagerduty", "servicenow", "jsm"}
    assert [route.preset for route in config.routes] == ["pagerduty-servicenow", "pagerduty-jsm"]
    assert config.routes[0].preset == "pagerduty-servicenow"
    assert config.server.port == 8080


def test_misspelt_option_gets_a_did_you_mean() -> None:
    found = problems_of(GOOD.replace('from_email = "bridge@example.com"', 'from_mail = "bridge@example.com"'))
    assert any(p.startswith("connections.pagerduty.from_mail: unrecognized option") and "'from_email'" in p
               for p in found)
    assert any(p.startswith("connections.pagerduty.from_email: required option is missing") for p in found)


def test_inline_secret_is_refused_with_the_way_to_write_it() -> None:
    found = problems_of(GOOD.replace('token = "env:PAGERDUTY_TOKEN"', 'token = "u+abcdef123"'))
    assert len(found) == 1
    assert found[0].startswith("connections.pagerduty.token: must be a secret reference")
    assert "env:VARIABLE_NAME" in found[0] and "u+abcdef123" not in found[0]


def test_every_problem_is_reported_together() -> None:
    text = GOOD.replace('target = "servicenow"', 'target = "servicenw"').replace(
        'port = 8080', 'port = 99999').replace('preset = "pagerduty-servicenow"', 'preset = "pagerduty-snow"')
    found = problems_of(text)
    assert any(p.startswith("server.port:") and "99999" in p for p in found)
    # the route problems are only checked once the shape is valid: fix the port and look again
    found = problems_of(text.replace("port = 99999", "port = 8080"))
    assert any(p.startswith("routes[0].target: no connection named 'servicenw'") and "'servicenow'" in p
               for p in found)
    assert any(p.startswith("routes[0].preset:") and "pagerduty-snow" in p for p in found)


def test_bad_template_names_route_field_and_template() -> None:
    text = GOOD + '\n[routes.fields.short_description]\ntemplate = "{{ incident.title "\n'
    found = problems_of(text)
    assert any(p.startswith("routes[1].fields.short_description") for p in found)  # the last route in the file


def test_unknown_connection_type_lists_the_known_ones() -> None:
    found = problems_of(GOOD.replace('type = "servicenow"', 'type = "remedy"'))
    assert any("remedy" in p and "servicenow" in p for p in found)


def test_cli_validate_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    runner = CliRunner()
    result = runner.invoke(main, ["config", "validate", "--config", str(good)])
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("SERVICENOW_PASSWORD")
    result = runner.invoke(main, ["config", "validate", "--config", str(good)])
    assert result.exit_code == 2
    assert "connections.servicenow.password: environment variable SERVICENOW_PASSWORD is not set" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("[database]", "[databse]"))
    result = runner.invoke(main, ["config", "validate", "--config", str(bad), "--json"])
    assert result.exit_code == 2
    assert '"location": "databse"' in result.output and "did you mean 'database'" in result.output


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["config", "validate", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


RAISE = '\n[routes.raise]\nmatch = { priority = ["1"] }\nservice_id = "PSVC001"\n'
ROOTLY_ROUTE = ('\n[connections.incidents]\ntype = "rootly"\napi_token = "env:ROOTLY_API_TOKEN"\n'
                '\n[[routes]]\nname = "rootly-to-servicenow"\nsource = "incidents"\ntarget = "servicenow"\n'
                'preset = "pagerduty-servicenow"\n')


def test_desk_raised_incidents_from_a_pagerduty_source_are_accepted() -> None:
    config = parse_config(GOOD + RAISE)  # the last route in the file: pagerduty -> jsm
    assert config.routes[1].raise_ is not None and config.routes[1].raise_.service_id == "PSVC001"


def test_desk_raised_incidents_from_a_source_that_cannot_open_incidents_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = GOOD + ROOTLY_ROUTE + RAISE
    found = problems_of(text)
    raising = [p for p in found if p.startswith("routes[2].raise:")]
    assert len(raising) == 1, found
    assert ("route 'rootly-to-servicenow'" in raising[0] and "source connection 'incidents'" in raising[0]
            and "type 'rootly'" in raising[0] and "support it: pagerduty" in raising[0]), raising[0]
    assert parse_config(GOOD + ROOTLY_ROUTE)  # the same route without [routes.raise] is fine
    for key, value in {**ENV, "ROOTLY_API_TOKEN": "r"}.items():
        monkeypatch.setenv(key, value)
    bad = tmp_path / "raise.toml"
    bad.write_text(text)
    result = CliRunner().invoke(main, ["config", "validate", "--config", str(bad)])
    assert result.exit_code == 2
    assert "routes[2].raise: route 'rootly-to-servicenow'" in result.output
