"""Opsgenie through its simulator: ``GenieKey`` REST, outgoing webhooks with the bridge's token header."""

from __future__ import annotations

from typing import Any

from connectors.opsgenie.connector import OpsgenieConnector
from connectors.opsgenie.simulator import OpsgenieSimulator
from tests.contract.harness import SourceHarness

API_KEY = "contract-og-key-5d1e77"


class OpsgenieHarness(SourceHarness):
    slug = "opsgenie"
    connector_class = OpsgenieConnector
    unknown_id = "00000000-0000-4000-8000-00000000dead"
    webhook_secret = "contract-og-webhook-token-9a0c"
    wrong_webhook_secret = "contract-og-webhook-token-wrong"

    def start_tool(self, webhook_url: str) -> None:
        self.sim = OpsgenieSimulator(api_key=API_KEY, webhook_secret=self.webhook_secret, webhook_url=webhook_url,
                                     faults=self.faults, webhook_backoff=0.01, webhook_max_backoff=0.05).start()

    def stop_tool(self) -> None:
        self.sim.stop()

    def settings(self) -> dict[str, Any]:
        return {"api_url": self.sim.url, "api_key": API_KEY, "webhook_secret": self.webhook_secret,
                "user": "itsm-bridge"}

    def wrong_credentials(self) -> dict[str, Any]:
        return {"api_key": "contract-og-key-wrong"}

    def secrets(self) -> tuple[str, ...]:
        return (API_KEY, "contract-og-key-wrong", self.webhook_secret, self.wrong_webhook_secret)

    def wait_idle(self) -> bool:
        return self.sim.wait_idle(10)

    def trigger(self, title: str) -> str:
        return self.sim.trigger("Payments API", title, user=self.responder)

    def acknowledge(self, record_id: str) -> None:
        self.sim.acknowledge(record_id, self.responder)

    def resolve(self, record_id: str) -> None:
        self.sim.resolve(record_id, self.responder)

    def add_note(self, record_id: str, text: str) -> None:
        self.sim.add_note(record_id, text, self.responder)

    def tool_status(self, record_id: str) -> str:
        alert = self.sim.incident(record_id)  # Opsgenie: status open|closed plus an acknowledged flag
        if alert["status"] == "closed":
            return "resolved"
        return "acknowledged" if alert["acknowledged"] else "triggered"

    def tool_notes(self, record_id: str) -> list[str]:
        return [note["note"] for note in self.sim.notes(record_id)]
