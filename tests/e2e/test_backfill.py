"""`itsm-bridge backfill`: a period's incidents that happened before the bridge are brought to the desk,
once, linking tickets that already exist, resumably, and a dry run that writes nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from bridge.backfill import backfill
from bridge.cli import main
from bridge.model import utcnow
from tests.e2e.conftest import World

pytestmark = pytest.mark.e2e


def _incidents_before_the_bridge(world: World) -> tuple[list[str], dict[str, str]]:
    """Three incidents nobody told the bridge about, one of which a desk agent already ticketed by hand
    (with the correlation id an earlier bridge install would have stamped)."""
    ids = [world.pd.trigger("Payments API", f"Card declines {n}", user="alice") for n in range(3)]
    world.pd.resolve(ids[2], user="bob")
    existing = world.sn.state.insert({"short_description": "Card declines 0 (typed by the desk)",
                                      "correlation_id": f"pagerduty:{ids[0]}"}, user="jane.doe")
    return ids, existing


def test_dry_run_reports_each_incident_and_writes_nothing(world: World) -> None:
    ids, existing = _incidents_before_the_bridge(world)
    before = len(world.sn.records())
    result = CliRunner().invoke(main, ["backfill", "--config", str(world.config_path), "--since", "1d", "--dry-run",
                                       "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    outcomes = {row["incident"]: (row["outcome"], row["ticket"]) for row in report["rows"]}
    numbers = {world.pd.incident(i)["incident_number"]: i for i in ids}
    assert len(outcomes) == 3
    for number, incident in numbers.items():
        expected = ("would link the existing ticket", existing["number"]) if incident == ids[0] \
            else ("would create a ticket", None)
        assert outcomes[str(number)] == expected
    assert len(world.sn.records()) == before  # nothing written on the desk
    assert report["stored"] == 0


def test_backfill_tickets_each_incident_once_links_the_existing_one_and_is_idempotent(world: World) -> None:
    ids, existing = _incidents_before_the_bridge(world)
    args = ["backfill", "--config", str(world.config_path), "--since", "1d", "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    for incident in ids:
        assert len(world.tickets(incident)) == 1
    assert world.tickets(ids[0])[0]["sys_id"] == existing["sys_id"]  # linked, not duplicated
    assert world.tickets(ids[2])[0]["state"] == "6"  # the resolved incident arrives resolved
    records = world.sn.records()
    journal = {record["sys_id"]: len(world.sn.journal(record["sys_id"])) for record in records}
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    again = json.loads(second.output)
    assert again["routes"]["pagerduty-to-servicenow"]["already_linked"] == 3
    # The second run reads the incidents again (they changed: the bridge noted the ticket links on them)
    # and writes nothing: no ticket, no field, no note.
    assert world.sn.records() == records
    assert {sys_id: len(world.sn.journal(sys_id)) for sys_id in journal} == journal


def test_an_interrupted_backfill_resumes_where_it_stopped(world: World) -> None:
    ids, _ = _incidents_before_the_bridge(world)
    runtime = world.runtime()
    now = utcnow()
    since = now - timedelta(days=3)  # PagerDuty is read a day at a time: three batches

    def interrupt_after_first_batch(what: str, done: int, total: int | None) -> None:
        if what.startswith("reading"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backfill(runtime, since=since, until=now, progress=interrupt_after_first_batch)
    report = backfill(runtime, since=since, until=now)
    assert report.resumed_from["pagerduty"] == (since + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    for incident in ids:
        assert len(world.tickets(incident)) == 1
    runtime.store.dispose()


def test_backfill_names_an_unknown_route(world: World) -> None:
    result = CliRunner().invoke(main, ["backfill", "--config", str(world.config_path), "--since", "1d",
                                       "--route", "nope"])
    assert result.exit_code == 2 and "nope" in result.output and "pagerduty-to-servicenow" in result.output
