"""Grafana OnCall through its simulator: ``Authorization: <token>`` REST, outgoing webhooks carrying the
configured Authorization header (OnCall signs nothing)."""

from __future__ import annotations

from typing import Any

from connectors.grafana_oncall.connector import GrafanaOncallConnector
from connectors.grafana_oncall.simulator import GrafanaOncallSimulator
from tests.contract.harness import SourceHarness

TOKEN = "contract-oncall-token-2d4f"
#: Alert group states (the tool's words) and the canonical status each one means.
STATE = {"firing": "triggered", "acknowledged": "acknowledged", "silenced": "acknowledged", "resolved": "resolved"}


class GrafanaOncallHarness(SourceHarness):
    slug = "grafana_oncall"
    connector_class = GrafanaOncallConnector
    unknown_id = "IZZZZZZZZZZZZ"
    webhook_secret = "contract-oncall-webhook-secret-5e"
    wrong_webhook_secret = "contract-oncall-webhook-secret-wrong"

    def start_tool(self, webhook_url: str) -> None:
        self.sim = GrafanaOncallSimulator(api_token=TOKEN, webhook_secret=self.webhook_secret, webhook_url=webhook_url,
                                          faults=self.faults, webhook_backoff=0.01, webhook_max_backoff=0.05).start()

    def stop_tool(self) -> None:
        self.sim.stop()

    def settings(self) -> dict[str, Any]:
        return {"api_url": self.sim.url, "api_token": TOKEN, "webhook_secret": self.webhook_secret}

    def wrong_credentials(self) -> dict[str, Any]:
        return {"api_token": "contract-oncall-token-wrong"}

    def secrets(self) -> tuple[str, ...]:
        return (TOKEN, "contract-oncall-token-wrong", self.webhook_secret, self.wrong_webhook_secret)

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
        return STATE[self.sim.incident(record_id)["state"]]

    def tool_notes(self, record_id: str) -> list[str]:
        return [note["text"] for note in self.sim.notes(record_id)]
