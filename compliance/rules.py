"""What a rule is and what it returns: the vocabulary shared by every rule pack.

A rule is a pure function. Incident rules read one `Timeline` plus the `Context` (settings, the clock,
other incidents for cross-incident tests); period rules (the audit chain, the bundle, recurring
incidents) run once per check. Every rule returns `Finding`s carrying the rule id from
compliance-spec.md §7, the incident, a verdict, a sentence a non-engineer understands, the deadline and
the actual time where there is one, and the audit entries the finding rests on.

`PACKS` (``{"itil": [...], "dora": [...], "nis2": [...], "audit": [...]}``) is loaded lazily from
`compliance.packs` so the packs can import this module without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

from compliance.calendar import fmt_local, human_delta, zone_of
from compliance.settings import ComplianceSettings
from compliance.timeline import Timeline

T = TypeVar("T")

if TYPE_CHECKING:
    from bridge.audit import Verification


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    NA = "n/a"


@dataclass(slots=True)
class Finding:
    """One verdict of one rule about one incident (or about the period, when `incident_id` is None).

    Not a frozen dataclass: a check of 100,000 incidents makes 2.75 million findings, and a frozen
    one's ``__init__`` (``object.__setattr__`` per field) costs three times as much, some 3 s of 30.
    Treat findings as values all the same. Slots save ~100 bytes each.
    """

    rule_id: str
    incident_id: str | None
    verdict: Verdict
    message: str
    deadline: datetime | None = None
    actual: datetime | None = None
    evidence: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from bridge.model import format_time

        return {"rule_id": self.rule_id, "incident_id": self.incident_id, "verdict": self.verdict.value,
                "message": self.message, "deadline": format_time(self.deadline), "actual": format_time(self.actual),
                "evidence": list(self.evidence), "details": self.details}


@dataclass(frozen=True)
class Context:
    """What rules may read besides the incident. The clock is injected so results are reproducible."""

    settings: ComplianceSettings
    now: datetime
    audit_verification: Verification | None = None
    bundle_verification: Any = None
    all_timelines: Sequence[Timeline] = ()
    period: tuple[datetime | None, datetime | None] = (None, None)
    #: When the monthly recurring-incident assessments (RTS 2024/1772 Art. 8(2)) were recorded; None = unknown.
    recurring_assessments: Sequence[datetime] | None = None
    #: Results several rules of one check derive from the same incident (its DORA deadlines, its
    #: classification test), computed once per check: keyed by what and by the object's identity.
    memo: dict[tuple[str, int], Any] = field(default_factory=dict, repr=False, compare=False)

    def cached(self, what: str, of: object, compute: Callable[[], T]) -> T:
        key = (what, id(of))
        if key not in self.memo:
            self.memo[key] = (of, compute())  # keeps `of` alive: its id cannot be reused meanwhile
        return self.memo[key][1]

    @cached_property
    def zone(self) -> ZoneInfo:
        return zone_of(self.settings.entity.member_state)

    def fmt(self, moment: datetime | None) -> str:
        return fmt_local(moment, self.zone)


class Rule(Protocol):
    """A named check; `scope` says whether it is called per incident or once per period."""

    rule_id: str
    title: str
    scope: Literal["incident", "period"]

    def __call__(self, timeline: Timeline | None, context: Context) -> list[Finding]: ...


@dataclass(frozen=True)
class FunctionRule:
    rule_id: str
    title: str
    scope: Literal["incident", "period"]
    function: Callable[..., list[Finding]]

    def __call__(self, timeline: Timeline | None, context: Context) -> list[Finding]:
        if self.scope == "period":
            return self.function(context)
        return self.function(timeline, context)


def incident_rule(rule_id: str, title: str) -> Callable[[Callable[..., list[Finding]]], FunctionRule]:
    def wrap(function: Callable[..., list[Finding]]) -> FunctionRule:
        return FunctionRule(rule_id, title, "incident", function)
    return wrap


def period_rule(rule_id: str, title: str) -> Callable[[Callable[..., list[Finding]]], FunctionRule]:
    def wrap(function: Callable[..., list[Finding]]) -> FunctionRule:
        return FunctionRule(rule_id, title, "period", function)
    return wrap


def timing(what: str, due: datetime, actual: datetime, context: Context, basis: str = "") -> str:
    """'The initial report was due 2026-03-14 13:00 CET (4 h after classification) and was submitted
    13:42: 42 minutes late.' -- the sentence every deadline finding uses."""
    when = context.fmt(actual)
    if actual.astimezone(context.zone).date() == due.astimezone(context.zone).date():
        when = actual.astimezone(context.zone).strftime("%H:%M")
    head = f"{what} was due {context.fmt(due)}" + (f" ({basis})" if basis else "")
    delta: timedelta = actual - due
    if delta > timedelta(0):
        return f"{head} and was submitted {when}: {human_delta(delta)} late."
    return f"{head} and was submitted {when}, {human_delta(delta)} before the limit."


def finding(rule_id: str, timeline: Timeline | None, verdict: Verdict, message: str, **extra: Any) -> Finding:
    return Finding(rule_id, timeline.id if timeline else None, verdict, message, **extra)


def __getattr__(name: str) -> Any:
    if name == "PACKS":
        from compliance.packs import PACKS

        return PACKS
    raise AttributeError(name)
