"""One bad event never stalls the rest: it is kept with a message naming route, field and value, the
incident's later events wait behind it, every other incident flows, and a replay after the fix
releases the queue."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.daemon import sync_once
from bridge.store import InboxEvent
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e

BROKEN = """
[routes.fields.subcategory]
from = "incident.service"
map = { "Payments API" = "payments" }
"""


def test_mapping_error_is_dead_lettered_held_and_replayed_after_the_fix(world: World) -> None:
    text = world.config_path.read_text()
    world.config_path.write_text(text + BROKEN)
    good = world.pd.trigger("Payments API", "Fine", user="alice")
    bad = world.pd.trigger("Search", "Unmapped service", user="alice")
    world.pd.acknowledge(bad, user="alice")
    runtime = world.runtime()
    report = sync_once(runtime)
    assert not report.ok and report.dead_letters == 1
    assert len(world.tickets(good)) == 1 and world.tickets(bad) == []
    status = CliRunner().invoke(main, ["status", "--config", str(world.config_path)])
    assert status.exit_code == 1
    assert "route 'pagerduty-to-servicenow', field 'subcategory' (value 'Search')" in status.output
    listed = CliRunner().invoke(main, ["dead-letter", "list", "--config", str(world.config_path), "--json"])
    assert "subcategory" in listed.output
    # The same incident's later change waits behind it; it is not processed out of order.
    world.pd.add_note(bad, "still broken", user="alice")
    assert not sync_once(runtime).ok
    assert runtime.store.count(InboxEvent, status="pending") == 1
    held = CliRunner().invoke(main, ["status", "--config", str(world.config_path), "--json"])
    assert '"events_waiting_behind_dead_letters": 1' in held.output
    runtime.store.dispose()

    world.config_path.write_text(text + BROKEN.replace('map = { "Payments API" = "payments" }',
                                                       'map = { "Payments API" = "payments" }\ndefault = "other"'))
    replay = CliRunner().invoke(main, ["dead-letter", "replay", "--all", "--config", str(world.config_path)])
    assert replay.exit_code == 0, replay.output
    runtime = world.runtime()
    assert sync_once(runtime).ok
    tickets = world.tickets(bad)
    assert len(tickets) == 1 and tickets[0]["state"] == "2" and tickets[0]["subcategory"] == "other"
    assert "still broken" in "\n".join(row["value"] for row in world.sn.journal(tickets[0]["sys_id"]))
    runtime.store.dispose()


def test_show_and_discard_are_explained_and_audited(world: World) -> None:
    import json

    from bridge.store import AuditEntry

    world.config_path.write_text(world.config_path.read_text() + BROKEN)
    world.pd.trigger("Search", "Unmapped service", user="alice")
    runtime = world.runtime()
    assert sync_once(runtime).dead_letters == 1
    runtime.store.dispose()
    config = ["--config", str(world.config_path)]
    listed = json.loads(CliRunner().invoke(main, ["dead-letter", "list", *config, "--json"]).output)
    letter_id = str(listed[0]["id"])
    shown = CliRunner().invoke(main, ["dead-letter", "show", letter_id, *config, "--json"])
    assert shown.exit_code == 0 and "Unmapped service" in json.loads(shown.output)["payload"]
    discarded = CliRunner().invoke(main, ["dead-letter", "discard", letter_id, *config, "--reason", "test incident"])
    assert discarded.exit_code == 0, discarded.output
    assert json.loads(CliRunner().invoke(main, ["dead-letter", "list", *config, "--json"]).output) == []
    runtime = world.runtime()
    assert runtime.store.count(AuditEntry, kind="dead_letter.discarded") == 1
    again = CliRunner().invoke(main, ["dead-letter", "discard", letter_id, *config, "--reason", "twice"])
    assert again.exit_code == 1 and "no open dead-letter" in again.output
    runtime.store.dispose()
