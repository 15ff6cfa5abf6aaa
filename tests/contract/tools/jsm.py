"""Jira Service Management through its simulator: Jira Cloud REST v2 with basic auth, `jira` on the wire."""

from __future__ import annotations

from typing import Any

from connectors.jsm.connector import JsmConnector
from connectors.jsm.simulator import JsmSimulator
from tests.contract.harness import TargetHarness

EMAIL, TOKEN = "bridge@example.com", "contract-jira-token-6c2f"


class JsmHarness(TargetHarness):
    slug = "jsm"
    connector_class = JsmConnector
    unknown_id = "OPS-99999"
    title_field = "summary"
    unknown_number = "OPS-99998"

    def start(self) -> None:
        self.sim = JsmSimulator(users={EMAIL: TOKEN}, faults=self.faults).start()

    def stop(self) -> None:
        self.sim.stop()

    def settings(self) -> dict[str, Any]:
        return {"url": self.sim.url, "email": EMAIL, "api_token": TOKEN, "project": "OPS",
                "transitions": {"In Progress": "Start progress", "Resolved": "Resolve"}}

    def wrong_credentials(self) -> dict[str, Any]:
        return {"api_token": "contract-jira-token-wrong"}

    def secrets(self) -> tuple[str, ...]:
        return (TOKEN, "contract-jira-token-wrong")

    def ticket_fields(self, title: str) -> dict[str, str]:
        return {"summary": title, "description": "Opened by the contract suite", "priority": "High"}

    def desk_value(self, record_id: str, field: str) -> str:
        return str(self.sim.issue(record_id)["fields"][field])

    def desk_edit(self, record_id: str, field: str, value: str) -> None:
        self.sim.desk_update(record_id, {field: value})
