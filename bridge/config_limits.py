"""The rate-limit and circuit-breaker keys every ``[connections.<name>]`` table accepts.

Every connection model (in `bridge.config` and in ``connectors/<slug>/config.py``) inherits
`ConnectionLimits`, so the keys are the same everywhere and a new connection type gets them by adding
one base class::

    rate_limit_per_minute = 300        # requests per minute, all requests of this connection together
    rate_limit_burst = 15              # optional; default: DEFAULT_BURST_SECONDS worth of requests
    [connections.<name>.breaker]
    failure_threshold = 5              # consecutive transient failures (5xx, 429, resets, timeouts)
    open_seconds = 60                  # how long the connection rests before one probe is let through

Left out, the rate is the connection type's default from `DEFAULT_RATE_PER_MINUTE`. The defaults come
from what each vendor documents (../shared/research/api-facts.md); where a vendor documents no figure
the default is deliberately low (`FALLBACK_RATE_PER_MINUTE`), because being throttled by the vendor
costs more (429s, Retry-After pauses, a tripped breaker) than pacing a little below what it would take.

This module is pure pydantic: the connectors' config modules import it without importing the engine.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

#: Documented defaults, requests per minute, per connection type (api-facts.md unless noted).
DEFAULT_RATE_PER_MINUTE: dict[str, float] = {
    # 960/min per account key, user or app+account (api-facts §1).
    "pagerduty": 960,
    # No limit unless an admin defines rate-limit rules, which count per hour (api-facts §2): 10/s.
    # Set rate_limit_per_minute to your rule's hourly figure / 60 when your instance has one.
    "servicenow": 600,
    # Jira Cloud publishes no fixed figure for API-token traffic, only per-second burst limits per
    # endpoint and 429 + Retry-After (api-facts §3): 10/s, well under a burst limit.
    "jsm": 600,
    # Token buckets per domain, per minute and per second; the figures depend on the plan and are not
    # in the facts (api-facts §4): a conservative 5/s.
    "opsgenie": 300,
    # 1200/min per key (api-facts §5).
    "incidentio": 1200,
    # About 3000 GET and 3000 writes per minute per key (api-facts §6); one bucket for both.
    "rootly": 3000,
    # The public API throttles 300 requests a minute per user token (grafana/oncall
    # engine/apps/public_api/throttlers/user_throttle.py: rate = "300/1m"); 429 with Retry-After.
    "grafana_oncall": 300,
    # No published figure.
    "squadcast": 300,
    # Slack limits each Web API method on its own (tiers of 20+, 50+, 100+ a minute; chat.postMessage about
    # one a second per channel, api-facts §8); one bucket for all methods at 300 keeps a busy incident
    # channel's lookups and posts flowing, and Slack's own 429s pause the connection when it disagrees.
    "slack": 300,
    # Teams publishes no fixed figure for bots and Workflows webhooks and asks clients to back off on
    # 429; one message a second is what chat tools tolerate per conversation.
    "teams": 60,
}
#: For a connection type with no entry above (a third-party connector).
FALLBACK_RATE_PER_MINUTE = 300.0
#: The default burst: this many seconds' worth of requests may go at once after a quiet spell.
DEFAULT_BURST_SECONDS = 3.0


class BreakerConfig(BaseModel):
    """``[connections.<name>.breaker]``: when to stop calling a failing system, and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_threshold: int = Field(5, ge=1, le=1000, description="consecutive transient failures (5xx, 429, "
                                                                   "connection resets, timeouts) that open it")
    open_seconds: float = Field(60.0, gt=0, le=86400, description="seconds the connection rests before one "
                                                                  "probe is let through (half-open)")


class ConnectionLimits(BaseModel):
    """Base of every connection model: the optional `rate_limit_*` keys and the `breaker` table."""

    rate_limit_per_minute: float | None = Field(
        None, gt=0, le=1_000_000, description="requests per minute for this connection (default: the type's "
                                              "documented limit, see DEFAULT_RATE_PER_MINUTE)")
    rate_limit_burst: int | None = Field(
        None, ge=1, le=100_000, description="requests that may go at once (default: "
                                            f"{DEFAULT_BURST_SECONDS:g} seconds' worth)")
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)

    def effective_rate_per_minute(self) -> float:
        """The configured rate, else the documented default of this connection's type."""
        if self.rate_limit_per_minute is not None:
            return float(self.rate_limit_per_minute)
        return float(DEFAULT_RATE_PER_MINUTE.get(str(getattr(self, "type", "")), FALLBACK_RATE_PER_MINUTE))

    def effective_burst(self) -> int:
        """The configured burst, else a few seconds' worth of the rate (at least one request)."""
        if self.rate_limit_burst is not None:
            return int(self.rate_limit_burst)
        return max(1, math.floor(self.effective_rate_per_minute() / 60.0 * DEFAULT_BURST_SECONDS))


def limits_of(connection: object) -> tuple[float, int, BreakerConfig]:
    """(rate per minute, burst, breaker config) of any connection model, with defaults for a model that
    does not (yet) inherit `ConnectionLimits` (a third-party or half-written one)."""
    if isinstance(connection, ConnectionLimits):
        return connection.effective_rate_per_minute(), connection.effective_burst(), connection.breaker
    rate = float(DEFAULT_RATE_PER_MINUTE.get(str(getattr(connection, "type", "")), FALLBACK_RATE_PER_MINUTE))
    return rate, max(1, math.floor(rate / 60.0 * DEFAULT_BURST_SECONDS)), BreakerConfig()
