"""Squadcast through its simulator: a refresh token exchanged for Bearer access tokens, outgoing webhooks
carrying the bridge's token header (Squadcast signs nothing)."""

from __future__ import annotations

from typing import Any

from connectors.squadcast.connector import SquadcastConnector
from connectors.squadcast.simulator import SquadcastSimulator
from tests.contract.harness import SourceHarness

REFRESH = "contract-squadcast-refresh-8b1c"
#: Squadcast's incident statuses (the tool's words) and the canonical status each one means.
STATUS = {"triggered": "triggered", "acknowledged": "acknowledged", "resolved": "resolved", "suppressed": "resolved"}


class SquadcastHarness(SourceHarness):
    slug = "squadcast"
    connector_class = SquadcastConnector
    unknown_id = "000000000000000000000dead"
    webhook_secret = "contract-squadcast-webhook-token-44"
    wrong_webhook_secret = "contract-squadcast-webhook-token-wrong"

    def start_tool(self, webhook_url: str) -> None:
        self.sim = SquadcastSimulator(refresh_token=REFRESH, webhook_secret=self.webhook_secret,
                                      webhook_url=webhook_url, faults=self.faults, webhook_backoff=0.01,
                                      webhook_max_backoff=0.05).start()

    def stop_tool(self) -> None:
        self.sim.stop()

    def settings(self) -> dict[str, Any]:
        return {"api_url": self.sim.url, "refresh_token": REFRESH, "webhook_secret": self.webhook_secret}

    def wrong_credentials(self) -> dict[str, Any]:
        return {"refresh_token": "contract-squadcast-refresh-wrong"}

    def secrets(self) -> tuple[str, ...]:
        issued = tuple(self.sim.tokens)  # the access tokens handed out are credentials too
        return (REFRESH, "contract-squadcast-refresh-wrong", self.webhook_secret, self.wrong_webhook_secret, *issued)

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
        return STATUS[self.sim.incident(record_id)["status"]]

    def tool_notes(self, record_id: str) -> list[str]:
        return [note["message"] for note in self.sim.notes(record_id)]
