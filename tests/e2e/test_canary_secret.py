"""A canary: the configured secrets never appear in logs, errors, the audit trail, status or exports,
even when the credentials are refused and everything is logged at debug level."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.daemon import sync_once
from tests.e2e.conftest import PASSWORD, SECRET, TOKEN, World

pytestmark = pytest.mark.e2e
CANARIES = (TOKEN, SECRET, PASSWORD)


def test_secrets_never_leak(world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world.pd.trigger("Payments API", "Canary", user="alice")
    runtime = world.runtime()
    assert sync_once(runtime).ok
    world.pd.trigger("Search", "Refused", user="alice")
    world.sn.users["itsm.bridge"] = "rotated-elsewhere"  # the desk now refuses our password
    report = sync_once(runtime)
    assert not report.ok
    runtime.store.dispose()
    config = ["--config", str(world.config_path)]
    outputs = [caplog.text]
    for args in (["status", "--json"], ["dead-letter", "list", "--all", "--json"], ["config", "validate"],
                 ["audit", "export", "--out", str(tmp_path / "audit.jsonl")],
                 ["compliance", "check", "--json"]):
        result = CliRunner().invoke(main, [*args, *config])
        outputs.append(result.output + (repr(result.exception) if result.exception else ""))
    outputs.append((tmp_path / "audit.jsonl").read_text())
    everything = "\n".join(outputs)
    assert "HTTP 401" in everything  # the refusal itself is reported...
    for canary in CANARIES:
        assert canary not in everything  # ...never the credentials
    assert json.loads(outputs[1])["retrying"] or json.loads(outputs[1])["open_dead_letters"]
