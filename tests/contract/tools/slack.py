"""Slack through its simulator: the Web API with a Bearer bot token (`slack_sdk` on the wire), and one
Request URL for events and slash commands, signed ``v0=HMAC(signing_secret, "v0:{ts}:{body}")``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from connectors.slack.connector import SlackConnector
from connectors.slack.simulator import SlackSimulator
from tests.contract.harness import ChatHarness

TOKEN = "xoxb-contract-bot-token-61f0"


class SlackHarness(ChatHarness):
    slug = "slack"
    connector_class = SlackConnector
    unknown_id = "C0CONTRACT0"
    webhook_secret = "contract-slack-signing-secret-9d"
    webhook_secret_key = "signing_secret"
    wrong_webhook_secret = "contract-slack-signing-secret-wrong"

    def start_tool(self, webhook_url: str) -> None:
        self.sim = SlackSimulator(bot_token=TOKEN, signing_secret=self.webhook_secret, faults=self.faults,
                                  retry_delays=(0.0, 0.05, 0.1)).start()
        self.sim.set_request_url(webhook_url)  # the url_verification handshake, answered by `reply`

    def stop_tool(self) -> None:
        self.sim.stop()

    def reply(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]] | None:
        if headers.get("content-type", "").startswith("application/json"):
            payload = json.loads(body)
            if payload.get("type") == "url_verification":
                return 200, {"challenge": payload["challenge"]}
        return None

    def settings(self) -> dict[str, Any]:
        return {"api_url": self.sim.api_url, "bot_token": TOKEN, "signing_secret": self.webhook_secret,
                "capture": "all"}

    def wrong_credentials(self) -> dict[str, Any]:
        return {"bot_token": "xoxb-contract-bot-token-wrong"}

    def secrets(self) -> tuple[str, ...]:
        return (TOKEN, "xoxb-contract-bot-token-wrong", self.webhook_secret, self.wrong_webhook_secret)

    def wait_idle(self) -> bool:
        return self.sim.wait_idle(10)

    def create_channel(self, name: str) -> str:
        return self.sim.create_channel(f"contract-{uuid.uuid4().hex[:8]}")

    def post_message(self, channel: str, text: str) -> None:
        self.sim.post_message(channel, text, self.responder)

    def open_command(self, channel: str, title: str) -> None:
        self.sim.slash_command(channel, f"open {title}", self.responder)

    def channel_texts(self, channel: str) -> list[str]:
        return [f"{m.get('text') or ''} {json.dumps(m.get('blocks') or [], ensure_ascii=False)}"
                for m in self.sim.messages(channel)]
