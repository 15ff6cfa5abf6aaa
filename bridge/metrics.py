"""Prometheus metrics of one bridge process (its own registry, so tests and the demo can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    """Counters the daemon updates as it works; gauges refreshed from the store when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_received = Counter("itsm_bridge_events_received_total", "Changes stored in the inbox",
                                       ["connection", "via"], registry=self.registry)
        self.events_duplicate = Counter("itsm_bridge_events_duplicate_total",
                                        "Redelivered changes recognised by event id", ["connection"],
                                        registry=self.registry)
        self.webhooks_rejected = Counter("itsm_bridge_webhooks_rejected_total", "Webhooks answered 4xx",
                                         ["connection", "status"], registry=self.registry)
        self.events_processed = Counter("itsm_bridge_events_processed_total", "Changes processed by decision",
                                        ["route", "decision"], registry=self.registry)
        self.ops_delivered = Counter("itsm_bridge_ops_delivered_total", "Writes delivered",
                                     ["connection", "op"], registry=self.registry)
        self.ops_failed = Counter("itsm_bridge_ops_failed_total", "Delivery attempts that failed",
                                  ["connection", "op", "error"], registry=self.registry)
        self.http_retries = Counter("itsm_bridge_http_retries_total", "HTTP requests retried in the transport",
                                    ["connection"], registry=self.registry)
        self.duplicates_prevented = Counter("itsm_bridge_duplicates_prevented_total",
                                            "Creates that found the ticket already there by correlation id",
                                            ["connection"], registry=self.registry)
        self.dead_letters = Counter("itsm_bridge_dead_letters_total", "Items dead-lettered", ["kind"],
                                    registry=self.registry)
        self.inbox_pending = Gauge("itsm_bridge_inbox_pending", "Changes waiting to be processed",
                                   registry=self.registry)
        self.outbox_pending = Gauge("itsm_bridge_outbox_pending", "Writes waiting to be delivered",
                                    registry=self.registry)
        self.dead_letter_open = Gauge("itsm_bridge_dead_letters_open", "Dead-letters not yet replayed",
                                      registry=self.registry)
        self.breaker_state = Gauge("itsm_bridge_breaker_state",
                                   "Circuit breaker per connection: 0 closed, 1 half-open, 2 open",
                                   ["connection"], registry=self.registry)
        self.breaker_failures = Gauge("itsm_bridge_breaker_failures", "Consecutive transient failures",
                                      ["connection"], registry=self.registry)
        self.breaker_transitions = Counter("itsm_bridge_breaker_transitions_total",
                                           "Circuit breaker state changes, by the state entered",
                                           ["connection", "state"], registry=self.registry)
        self.rate_limit = Gauge("itsm_bridge_rate_limit_per_minute", "Configured request rate per connection",
                                ["connection"], registry=self.registry)
        self.rate_limit_wait = Counter("itsm_bridge_rate_limit_wait_seconds_total",
                                       "Seconds requests waited for the connection's rate limit",
                                       ["connection"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def total(self, counter: Counter) -> float:
        """Sum of a counter over all its labels (for summaries)."""
        return sum(sample.value for metric in counter.collect() for sample in metric.samples
                   if sample.name.endswith("_total"))

    def by_label(self, counter: Counter, label: str) -> dict[str, float]:
        """A counter's totals grouped by one label, e.g. delivered ops by ``op``."""
        totals: dict[str, float] = {}
        for metric in counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = sample.labels[label]
                    totals[key] = totals.get(key, 0.0) + sample.value
        return totals
