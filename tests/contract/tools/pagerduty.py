"""PagerDuty through its simulator: REST v2 with ``Token token=``, webhooks v3 signed with HMAC-SHA256."""

from __future__ import annotations

from typing import Any

from connectors.pagerduty.connector import PagerDutyConnector
from connectors.pagerduty.simulator import PagerDutySimulator
from tests.contract.harness import SourceHarness

TOKEN = "contract-pd-token-7f3a9c"


class PagerDutyHarness(SourceHarness):
    slug = "pagerduty"
    connector_class = PagerDutyConnector
    unknown_id = "PZZZZZZ"
    webhook_secret = "contract-pd-webhook-secret-41b2"
    wrong_webhook_secret = "contract-pd-webhook-secret-wrong"

    def start_tool(self, webhook_url: str) -> None:
        self.sim = PagerDutySimulator(token=TOKEN, webhook_secret=self.webhook_secret, webhook_url=webhook_url,
                                      faults=self.faults, webhook_backoff=0.01, webhook_max_backoff=0.05).start()

    def stop_tool(self) -> None:
        self.sim.stop()

    def settings(self) -> dict[str, Any]:
        return {"api_url": self.sim.url, "token": TOKEN, "webhook_secret": self.webhook_secret,
                "from_email": "bridge@example.com"}

    def wrong_credentials(self) -> dict[str, Any]:
        return {"token": "contract-pd-token-wrong"}

    def secrets(self) -> tuple[str, ...]:
        return (TOKEN, "contract-pd-token-wrong", self.webhook_secret, self.wrong_webhook_secret)

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
        return str(self.sim.incident(record_id)["status"])  # PagerDuty's own words are the canonical ones

    def tool_notes(self, record_id: str) -> list[str]:
        return [note["content"] for note in self.sim.notes(record_id)]
