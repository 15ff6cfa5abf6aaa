"""Rootly through its simulator: JSON:API with Bearer, webhooks signed ``t=<unix>,v1=<hex>``."""

from __future__ import annotations

from typing import Any

from connectors.rootly.connector import RootlyConnector
from connectors.rootly.simulator import RootlySimulator
from tests.contract.harness import SourceHarness

TOKEN = "contract-rootly-token-0b5e"
#: Rootly's incident statuses (the tool's words) and the canonical status each one means.
STATUS = {"in_triage": "triggered", "started": "triggered", "detected": "triggered", "scheduled": "triggered",
          "in_progress": "triggered", "acknowledged": "acknowledged", "mitigated": "acknowledged",
          "resolved": "resolved", "closed": "resolved", "cancelled": "resolved", "completed": "resolved"}


class RootlyHarness(SourceHarness):
    slug = "rootly"
    connector_class = RootlyConnector
    unknown_id = "00000000-0000-4000-8000-00000000dead"
    webhook_secret = "contract-rootly-webhook-secret-77"
    wrong_webhook_secret = "contract-rootly-webhook-secret-wrong"

    def start_tool(self, webhook_url: str) -> None:
        self.sim = RootlySimulator(api_token=TOKEN, webhook_secret=self.webhook_secret, webhook_url=webhook_url,
                                   faults=self.faults, webhook_backoff=0.01, webhook_max_backoff=0.05).start()

    def stop_tool(self) -> None:
        self.sim.stop()

    def settings(self) -> dict[str, Any]:
        return {"api_url": self.sim.url, "api_token": TOKEN, "webhook_secret": self.webhook_secret}

    def wrong_credentials(self) -> dict[str, Any]:
        return {"api_token": "contract-rootly-token-wrong"}

    def secrets(self) -> tuple[str, ...]:
        return (TOKEN, "contract-rootly-token-wrong", self.webhook_secret, self.wrong_webhook_secret)

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
        return STATUS[self.sim.incident(record_id)["attributes"]["status"]]

    def tool_notes(self, record_id: str) -> list[str]:
        return [event["attributes"]["event"] for event in self.sim.notes(record_id)]
