"""ServiceNow through its simulator: the Table API with basic auth, pysnow on the wire."""

from __future__ import annotations

from typing import Any

from connectors.servicenow.connector import ServiceNowConnector
from connectors.servicenow.simulator import ServiceNowSimulator
from tests.contract.harness import TargetHarness

USER, PASSWORD = "itsm.bridge", "contract-sn-password-3e8d"


class ServiceNowHarness(TargetHarness):
    slug = "servicenow"
    connector_class = ServiceNowConnector
    unknown_id = "0" * 31 + "1"  # a well-formed sys_id no record has
    title_field = "short_description"
    unknown_number = "INC9999999"

    def start(self) -> None:
        self.sim = ServiceNowSimulator(users={USER: PASSWORD}, faults=self.faults).start()

    def stop(self) -> None:
        self.sim.stop()

    def settings(self) -> dict[str, Any]:
        return {"instance_url": self.sim.url, "username": USER, "password": PASSWORD}

    def wrong_credentials(self) -> dict[str, Any]:
        return {"password": "contract-sn-password-wrong"}

    def secrets(self) -> tuple[str, ...]:
        return (PASSWORD, "contract-sn-password-wrong")

    def ticket_fields(self, title: str) -> dict[str, str]:
        return {"short_description": title, "description": "Opened by the contract suite", "urgency": "2",
                "impact": "2"}

    def desk_value(self, record_id: str, field: str) -> str:
        return self.sim.record(record_id)[field]

    def desk_edit(self, record_id: str, field: str, value: str) -> None:
        self.sim.desk_update(record_id, {field: value})
