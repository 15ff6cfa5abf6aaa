"""Every connector the contract suite runs, one harness each. A new connector joins by adding its
harness module under `tests/contract/tools/` and one line here."""

from __future__ import annotations

from tests.contract.harness import Harness
from tests.contract.tools.grafana_oncall import GrafanaOncallHarness
from tests.contract.tools.incidentio import IncidentioHarness
from tests.contract.tools.jsm import JsmHarness
from tests.contract.tools.opsgenie import OpsgenieHarness
from tests.contract.tools.pagerduty import PagerDutyHarness
from tests.contract.tools.rootly import RootlyHarness
from tests.contract.tools.servicenow import ServiceNowHarness
from tests.contract.tools.slack import SlackHarness
from tests.contract.tools.squadcast import SquadcastHarness
from tests.contract.tools.teams import TeamsHarness

HARNESSES: list[type[Harness]] = [
    PagerDutyHarness,
    OpsgenieHarness,
    IncidentioHarness,
    RootlyHarness,
    GrafanaOncallHarness,
    SquadcastHarness,
    ServiceNowHarness,
    JsmHarness,
    SlackHarness,
    TeamsHarness,
]
