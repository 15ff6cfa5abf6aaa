"""The demo's convergence check (bridge/demo_scenario.py) on priority: the tool's priority now, through each
desk's mapping, must be on both desks, so "converged" proves a responder's priority change arrived."""

from __future__ import annotations


import pytest

from bridge.daemon import sync_once
from bridge.demo_scenario import (
    PRIORITY_PATHS,
    Scenario,
    convergence_problems,
    desk_mappings,
)
from tests.conftest import wait_until
from tests.e2e.conftest import QuietChaos

pytestmark = pytest.mark.e2e


def test_a_responders_priority_change_is_unconverged_until_both_desks_show_it(quiet_chaos: QuietChaos) -> None:
    world, runtime = quiet_chaos.world, quiet_chaos.runtime
    incident = world.source.open(world.src, "Payments API", "Checkout errors", "alice", True)
    scenario = Scenario(incidents=[incident])
    wait_until(lambda: sync_once(runtime).ok and not convergence_problems(world, runtime, scenario),
               timeout=30, message="the incident on both desks")
    ticket, issue = world.sn_tickets(incident)[0], world.jsm_issues(incident)[0]
    assert (ticket["urgency"], issue["fields"]["priority"]["name"]) == ("2", "Medium")  # no priority yet

    world.source.set_priority(world.src, incident, "P1", "alice")
    problems = convergence_problems(world, runtime, scenario)  # the bridge has not synced yet
    assert f"{incident}: PagerDuty priority 'P1' (urgency 'high') maps to urgency '1' but " \
           f"{ticket['number']} has '2'" in problems
    assert f"{incident}: PagerDuty priority 'P1' (urgency 'high') maps to priority 'Highest' but " \
           f"{issue['key']} has 'Medium'" in problems

    wait_until(lambda: sync_once(runtime).ok and not convergence_problems(world, runtime, scenario),
               timeout=30, message="the priority on both desks")
    ticket, issue = world.sn_tickets(incident)[0], world.jsm_issues(incident)[0]
    assert (ticket["impact"], ticket["urgency"], issue["fields"]["priority"]["name"]) == ("1", "1", "Highest")


def test_only_source_owned_fields_mapped_from_the_priority_are_checked() -> None:
    """The check reads the presets' mapping, not a table of its own: which desk fields carry the priority."""
    def checked(slug: str) -> dict[str, list[str]]:
        return {desk: [name for name, rule in mapping.spec.fields.items()
                       if rule.from_ in PRIORITY_PATHS and rule.owner != "target"]
                for desk, mapping in desk_mappings(slug).items()}

    assert checked("pagerduty") == {"servicenow": ["impact", "urgency"], "jsm": ["priority"]}
    # OnCall's JSM priority is owner = "target" (set on create, then the desk's): not the tool's to keep.
    assert checked("grafana_oncall") == {"servicenow": ["impact", "urgency"], "jsm": []}
    # Chat presets map no priority at all (fixed values the desk owns).
    assert checked("slack") == checked("teams") == {"servicenow": [], "jsm": []}
