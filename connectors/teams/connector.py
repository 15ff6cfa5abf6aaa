"""Microsoft Teams as a chat source: outgoing-webhook @mentions in, Adaptive Cards out through Workflows.

Inbound (`connectors.teams.webhooks`): a user @mentions the outgoing webhook in an incident channel;
``open <title>`` and ``link <number>`` become ``chat.open``/``chat.link`` changes (an incident whose id is
the channel id), ``help`` only gets the usage reply, anything else is a captured note. The synchronous
answer (Teams waits 5 s) is a message activity returned by `webhook_reply`.

Outbound: Teams has retired Office 365 connector webhooks; a channel receives posts through a Workflows
"Post to a channel when a webhook request is received" URL, which takes Adaptive Cards only
(``{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive",...}]}``)
and answers 202 with no body: the flow runs afterwards [S: MicrosoftDocs/msteams-docs#11302,
idealista/prom2teams#351]. One URL per channel (`channel_urls`) or a `default_url`; the URLs carry a
``sig=`` and are secrets, kept out of errors and logs (`bridge.http.redact_url` masks ``sig``).

What Teams cannot do, said plainly: nothing can be read back through these webhooks, so `has_note` cannot
look (see its docstring), and `poll` has nothing to poll.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import requests

from bridge.errors import AuthError, ConnectorError, NotFoundError, PermanentError
from bridge.http import call
from bridge.model import Change
from connectors.base import (
    Announcement,
    ChatConnector,
    CheckResult,
    PollResult,
    WebhookReply,
)
from connectors.teams.webhooks import (
    read_activity,
    reply_text,
    signing_key,
    to_changes,
    verify_signature,
)

__all__ = ["CARD_TYPE", "TeamsConnector", "card_message"]

log = logging.getLogger(__name__)

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"


def card_message(body: list[dict[str, Any]], *, actions: list[dict[str, Any]] | None = None,
                 fallback: str | None = None) -> dict[str, Any]:
    """A Workflows webhook payload: one message carrying one Adaptive Card (1.4, full width)."""
    card: dict[str, Any] = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION, "body": body,
                            "msteams": {"width": "Full"}}
    if actions:
        card["actions"] = actions
    if fallback:
        card["fallbackText"] = fallback
    return {"type": "message",
            "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": card}]}


def announcement_card(announcement: Announcement) -> dict[str, Any]:
    """A desk change as a card: the ticket as a linked title, a FactSet ``label: old → new``, the actor,
    and an "Open <number>" button (Action.OpenUrl, the one action Teams allows from webhooks)."""
    facts = [{"title": change.label, "value": f"{change.old or '(none)'} → {change.new or '(none)'}"}
             for change in announcement.changes]
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True,
         "text": f"[{announcement.desk} {announcement.number}]({announcement.url}) changed"},
        {"type": "FactSet", "facts": facts},
    ]
    if announcement.actor:
        body.append({"type": "TextBlock", "isSubtle": True, "wrap": True, "spacing": "Small",
                     "text": f"Changed by {announcement.actor}"})
    actions = [{"type": "Action.OpenUrl", "title": f"Open {announcement.number}", "url": announcement.url}]
    return card_message(body, actions=actions, fallback=announcement.text())


class TeamsConnector(ChatConnector):
    """Teams outgoing webhook + Workflows webhooks. Settings: ``security_token``, ``channel_urls``,
    ``default_url``, ``capture`` (``mentions``), ``activity_max_age_seconds``, ``teams_url``."""

    slug: ClassVar[str] = "teams"

    def __init__(self, name: str, settings: Mapping[str, Any], *, session: requests.Session) -> None:
        super().__init__(name, settings, session=session)
        self.channel_urls: dict[str, str] = dict(settings.get("channel_urls") or {})
        self.default_url: str | None = settings.get("default_url")
        max_age = settings.get("activity_max_age_seconds")
        self.max_age = 300 if max_age is None else int(max_age)
        self.teams_url = str(settings.get("teams_url") or "https://teams.microsoft.com")

    def __repr__(self) -> str:  # never the URLs: they are secrets
        return f"TeamsConnector({self.name!r}, channels={len(self.channel_urls)}, default={bool(self.default_url)})"

    # -- inbound ------------------------------------------------------------------------------------
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: datetime) -> None:
        verify_signature(body, headers, self.settings.get("security_token"), connection=self.name, now=now,
                         max_age=self.max_age)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> list[Change]:
        return to_changes(read_activity(body), connection=self.name, teams_url=self.teams_url)

    def webhook_reply(self, body: bytes, headers: Mapping[str, str]) -> WebhookReply | None:
        """The message Teams shows in the thread at once (it waits 5 s for it)."""
        text = reply_text(read_activity(body))
        return None if text is None else WebhookReply({"type": "message", "text": text})

    def poll(self, cursor: str | None, *, now: datetime) -> PollResult:
        """Nothing: outgoing webhooks are push-only and Workflows URLs cannot be read. A message sent while
        the bridge was down got "did not respond" in Teams, and the responder sees it and can resend."""
        return PollResult(changes=[], cursor=None)

    # -- the way back -------------------------------------------------------------------------------
    def _url(self, channel: str) -> str:
        url = self.channel_urls.get(channel) or self.default_url
        if not url:
            raise PermanentError(f"{self.name}: no Workflows URL for channel {channel}; add it to channel_urls "
                                 "or set default_url", connection=self.name)
        return url

    def _post(self, channel: str, payload: Mapping[str, Any], *, what: str) -> None:
        """POST one card; 202 is success. Errors map through `bridge.http.call`: 429/5xx -> TransientError
        (Retry-After kept), 401/403 -> AuthError (the URL's sig is wrong or revoked), 404 -> NotFoundError
        (the workflow is gone), other 4xx -> PermanentError with the service's own message."""
        call(self.session, "POST", self._url(channel), connection=self.name, what=f"{what} in channel {channel}",
             json=payload)

    def add_note(self, record_id: str, text: str) -> None:
        """Post `text` (desk replies, the ticket link; it carries the bridge's marker, kept visible so a
        reader can tell the bridge's posts apart) as a wrapping TextBlock."""
        self._post(record_id, card_message([{"type": "TextBlock", "text": text, "wrap": True}], fallback=text),
                   what="post a note")

    def has_note(self, record_id: str, tag: str) -> bool:
        """Always False: Workflows and outgoing webhooks cannot read a channel back (that needs Graph's
        ChannelMessage.Read.All). Delivery is therefore at-least-once: the outbox records each attempt
        before the POST, so a post is repeated only if the bridge crashes between the POST and committing
        its outcome, and the repeat carries the same marker so a reader can see it is one."""
        return False

    def announce(self, record_id: str, announcement: Announcement) -> None:
        self._post(record_id, announcement_card(announcement), what=f"announce {announcement.number}")

    def check(self) -> CheckResult:
        """The security token must decode, and every Workflows URL must accept our requests.

        Each URL is probed with a message holding no card: the service checks the URL's signature before
        it runs the flow, so a wrong or revoked ``sig`` is refused (401/403) while a valid one is accepted
        and the flow run fails on the missing card without posting anything (Workflows keeps that failed
        run in its history; the simulator answers 400 at once). The token itself cannot be checked
        remotely: only Teams holds it, to sign what it sends us.
        """
        problems = []
        try:
            signing_key(str(self.settings.get("security_token") or ""))
        except ValueError as exc:
            problems.append(str(exc))
        if not self.settings.get("security_token"):
            problems.append("no security_token: @mentions cannot be verified")
        if not (self.channel_urls or self.default_url):
            problems.append("no channel_urls and no default_url: nothing can be posted back")
        targets = [(f"channel {channel}", url) for channel, url in self.channel_urls.items()]
        if self.default_url:
            targets.append(("default_url", self.default_url))
        for label, url in targets:
            try:
                call(self.session, "POST", url, connection=self.name, what=f"probe the Workflows URL of {label}",
                     json={"type": "message", "attachments": []})
            except AuthError:
                problems.append(f"the Workflows URL of {label} was refused (its sig is wrong or was revoked)")
            except NotFoundError:
                problems.append(f"the Workflows URL of {label} names no workflow (deleted?)")
            except PermanentError:
                pass  # the URL's signature was accepted; the cardless probe itself was refused, as expected
            except ConnectorError as exc:
                problems.append(f"the Workflows URL of {label} could not be reached: {type(exc).__name__}")
        if problems:
            return CheckResult(ok=False, message="; ".join(problems))
        return CheckResult(ok=True, message=f"security token readable; {len(targets)} Workflows URL(s) accept "
                                            "requests (probed without a card: nothing was posted)",
                           details={"channels": len(self.channel_urls), "default_url": bool(self.default_url)})
