"""incident.io through its simulator: Bearer REST, Svix-signed webhooks (id.timestamp.body)."""

from __future__ import annotations

import base64
from typing import Any

from connectors.incidentio.connector import IncidentioConnector
from connectors.incidentio.simulator import IncidentioSimulator
from tests.contract.harness import SourceHarness

API_KEY = "contract-iio-key-c0ffee"
#: incident.io's status categories (the tool's words) and the canonical status each one means.
CATEGORY = {"triage": "triggered", "live": "acknowledged", "paused": "acknowledged", "learning": "resolved",
            "closed": "resolved", "declined": "resolved", "merged": "resolved", "canceled": "resolved"}


class IncidentioHarness(SourceHarness):
    slug = "incidentio"
    connector_class = IncidentioConnector
    unknown_id = "01HZZZZZZZZZZZZZZZZZZZZZZZ"
    webhook_secret = "whsec_" + base64.b64encode(b"contract-incidentio-secret-32b!!").decode()
    wrong_webhook_secret = "whsec_" + base64.b64encode(b"contract-incidentio-wrong-32b!!!").decode()

    def start_tool(self, webhook_url: str) -> None:
        self.sim = IncidentioSimulator(api_key=API_KEY, webhook_secret=self.webhook_secret, webhook_url=webhook_url,
                                       faults=self.faults, webhook_backoff=0.01, webhook_max_backoff=0.05).start()

    def stop_tool(self) -> None:
        self.sim.stop()

    def settings(self) -> dict[str, Any]:
        return {"api_url": self.sim.url, "api_key": API_KEY, "webhook_secret": self.webhook_secret}

    def wrong_credentials(self) -> dict[str, Any]:
        return {"api_key": "contract-iio-key-wrong"}

    def secrets(self) -> tuple[str, ...]:
        return (API_KEY, "contract-iio-key-wrong", self.webhook_secret, self.wrong_webhook_secret)

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
        return CATEGORY[self.sim.incident(record_id)["incident_status"]["category"]]

    def tool_notes(self, record_id: str) -> list[str]:
        return [update["message"] for update in self.sim.notes(record_id)]
