"""Microsoft Teams through its simulator: an outgoing webhook signed ``Authorization: HMAC``, and one
Workflows URL per channel (its ``sig=`` is the credential) that takes Adaptive Cards."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from connectors.teams.connector import TeamsConnector
from connectors.teams.simulator import TeamsSimulator
from tests.contract.harness import ChatHarness

TOKEN = base64.b64encode(b"contract-teams-hmac-key-32-bytes").decode()
WRONG_SIG = "deadbeef" * 8


class TeamsHarness(ChatHarness):
    slug = "teams"
    connector_class = TeamsConnector
    unknown_id = "19:00000000000000000000000000000000@thread.tacv2"
    webhook_secret = TOKEN
    webhook_secret_key = "security_token"
    wrong_webhook_secret = base64.b64encode(b"contract-teams-wrong-key-32bytes").decode()

    def start_tool(self, webhook_url: str) -> None:
        self.channels: list[str] = []
        self.sim = TeamsSimulator(security_token=TOKEN, webhook_url=webhook_url, faults=self.faults).start()
        self.create_channel("Contract home")  # a connection is always configured with at least one channel

    def stop_tool(self) -> None:
        self.sim.stop()

    def _urls(self, sig: str | None = None) -> dict[str, str]:
        return {self.sim.channel_id(key): self.sim.workflow_url(key, sig=sig) for key in self.channels}

    def settings(self) -> dict[str, Any]:
        """The channels made so far, each with its Workflows URL (build the connector after making one)."""
        return {"security_token": TOKEN, "channel_urls": self._urls()}

    def wrong_credentials(self) -> dict[str, Any]:
        return {"security_token": self.wrong_webhook_secret, "channel_urls": self._urls(sig=WRONG_SIG)}

    def secrets(self) -> tuple[str, ...]:
        sigs = tuple(self.sim.tenant.channel(key).sig for key in self.channels)
        return (TOKEN, self.wrong_webhook_secret, WRONG_SIG, *sigs)

    def wait_idle(self) -> bool:
        return self.sim.wait_idle(10)  # outgoing webhooks are synchronous; this waits for the flow runs

    def create_channel(self, name: str) -> str:
        key = f"contract-{uuid.uuid4().hex[:8]}"
        self.sim.tenant.create_channel(key, name=name)
        self.channels.append(key)
        return self.sim.channel_id(key)

    def post_message(self, channel: str, text: str) -> None:
        self.sim.post_message(channel, text, user=self.responder)  # @mentions the webhook: it is delivered

    def open_command(self, channel: str, title: str) -> None:
        self.sim.post_message(channel, f"open {title}", user=self.responder)

    def channel_texts(self, channel: str) -> list[str]:
        return [m["text"] if m["card"] is None else json.dumps(m["card"], ensure_ascii=False)
                for m in self.sim.messages(channel)]
