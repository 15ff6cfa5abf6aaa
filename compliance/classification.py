"""The "major incident" test of RTS 2024/1772, as a pure function over a `Classification`.

Art. 8(1): an incident is major when it affects **critical services** (Art. 6; a gate, never counted)
**and** either any successful, malicious, unauthorised access that may result in data losses
(Art. 9(5)(b)) or at least **two** of the other materiality thresholds of Art. 9(1)-(6) are met.
Thresholds are data (`THRESHOLDS`); "more than" is strict: exactly 10 % of clients is not over 10 %.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from compliance.timeline import Classification

#: Art. 9 thresholds. Each is exceeded only when the figure is strictly greater.
THRESHOLDS: dict[str, float] = {
    "clients_pct": 10.0,            # 9(1)(a) share of the service's clients
    "clients_number": 100_000,      # 9(1)(a) absolute number of clients
    "counterparts_pct": 30.0,       # 9(1)(b) share of financial counterparts
    "transactions_pct": 10.0,       # 9(1)(c) share of the daily average number of transactions
    "transactions_value_pct": 10.0,  # 9(1)(c) share of the daily average value of transactions
    "duration_hours": 24.0,         # 9(3) occurrence to resolution
    "downtime_hours": 2.0,          # 9(3) downtime of services supporting critical or important functions
    "member_states": 2,             # 9(4) two or more Member States (>= 2)
    "economic_eur": 100_000.0,      # 9(6) gross costs and losses
}

#: Criterion key -> (Art. 9 paragraph, IR-1.2.1 field 2.5 value, words for officers).
CRITERIA: dict[str, tuple[str, str, str]] = {
    "clients": ("9(1)", "clients_financial_counterparts_and_transactions_affected",
                "clients, counterparts or transactions affected"),
    "reputational": ("9(2)", "reputational_impact", "reputational impact"),
    "duration": ("9(3)", "duration_and_service_downtime", "duration or service downtime"),
    "geographical": ("9(4)", "geographical_spread", "two or more Member States"),
    "data_losses": ("9(5)(a)", "data_losses", "data losses"),
    "economic": ("9(6)", "economic_impact", "economic impact over EUR 100 000"),
}


@dataclass(frozen=True)
class Assessment:
    """Outcome of the test: which thresholds are met (with why), and whether the incident is major."""

    assessed: bool
    critical_services: bool
    malicious_access: bool
    met: dict[str, str] = field(default_factory=dict)

    @property
    def major(self) -> bool:
        return self.assessed and self.critical_services and (self.malicious_access or len(self.met) >= 2)

    def explain(self) -> str:
        """One sentence for officers: the gate, then what counted."""
        if not self.assessed:
            return "no classification data (critical services, thresholds) was recorded, so it cannot be assessed"
        met = "; ".join(f"{CRITERIA[key][0]} {why}" for key, why in self.met.items()) or "none"
        if not self.critical_services:
            return f"no critical service was affected, so it is not major whatever the thresholds (met: {met})"
        if self.malicious_access:
            return "critical services were affected and there was successful malicious unauthorised access " \
                   f"that may lead to data loss (Art. 9(5)(b)); other thresholds met: {met}"
        count = len(self.met)
        return (f"critical services were affected and {count} of the Art. 9 thresholds "
                f"{'were' if count != 1 else 'was'} met ({met}); {'two are needed' if count < 2 else 'two suffice'}")


def _over(value: float | None, limit: float) -> bool:
    return value is not None and value > limit


def assess(classification: Classification | None) -> Assessment:
    """Apply Art. 8(1) with the Art. 9 thresholds."""
    c = classification
    if c is None or c.critical_services is None:
        return Assessment(False, False, bool(c and c.malicious_access_data_loss))
    t = THRESHOLDS
    met: dict[str, str] = {}
    clients = [
        (_over(c.clients_affected_pct, t["clients_pct"]), f"{c.clients_affected_pct} % of clients"),
        (_over(c.clients_affected, t["clients_number"]), f"{c.clients_affected} clients"),
        (_over(c.counterparts_affected_pct, t["counterparts_pct"]), f"{c.counterparts_affected_pct} % of counterparts"),
        (_over(c.transactions_affected_pct, t["transactions_pct"]), f"{c.transactions_affected_pct} % of transactions"),
        (_over(c.transactions_value_pct, t["transactions_value_pct"]),
         f"{c.transactions_value_pct} % of transaction value"),
        (c.relevant_clients_affected, "relevant clients or counterparts affected"),
    ]
    if any(hit for hit, _ in clients):
        met["clients"] = ", ".join(why for hit, why in clients if hit)
    if c.reputational_impact:
        met["reputational"] = ", ".join(c.reputational_impact)
    duration = [(_over(c.duration_hours, t["duration_hours"]), f"lasted {c.duration_hours} h"),
                (_over(c.downtime_hours, t["downtime_hours"]), f"{c.downtime_hours} h downtime")]
    if any(hit for hit, _ in duration):
        met["duration"] = ", ".join(why for hit, why in duration if hit)
    if len(set(c.member_states)) >= t["member_states"]:
        met["geographical"] = ", ".join(sorted(set(c.member_states)))
    if c.data_loss:
        met["data_losses"] = ", ".join(c.data_loss_types) or "data availability, authenticity, integrity or " \
                                                               "confidentiality affected"
    if _over(c.economic_impact_eur, t["economic_eur"]):
        met["economic"] = f"EUR {c.economic_impact_eur:,.0f}"
    return Assessment(True, c.critical_services, c.malicious_access_data_loss, met)


def aggregate(classifications: Iterable[Classification | None]) -> Classification | None:
    """Recurring incidents (Art. 8(2)(c)) are judged together: figures added, flags OR-ed, states united."""
    items = [c for c in classifications if c is not None]
    if not items:
        return None

    def total(name: str) -> float | None:
        values = [getattr(c, name) for c in items if getattr(c, name) is not None]
        return sum(values) if values else None

    pct = {name: min(100.0, total(name)) if total(name) is not None else None  # type: ignore[type-var]
           for name in ("clients_affected_pct", "counterparts_affected_pct", "transactions_affected_pct",
                        "transactions_value_pct")}
    criticals = [c.critical_services for c in items if c.critical_services is not None]
    clients = total("clients_affected")
    return Classification(
        critical_services=any(criticals) if criticals else None,
        malicious_access_data_loss=any(c.malicious_access_data_loss for c in items),
        clients_affected=int(clients) if clients is not None else None, **pct,
        relevant_clients_affected=any(c.relevant_clients_affected for c in items),
        reputational_impact=sorted({r for c in items for r in c.reputational_impact}),
        duration_hours=total("duration_hours"), downtime_hours=total("downtime_hours"),
        member_states=sorted({m for c in items for m in c.member_states}),
        data_loss=any(c.data_loss for c in items), economic_impact_eur=total("economic_impact_eur"),
    )
