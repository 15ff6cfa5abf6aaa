"""The compliance timeline of one incident: what happened when, as the rules need it.

One `Timeline` per incident the bridge syncs (key like ``pagerduty:P123``), built from source and desk
events by the lead's wiring and from `compliance record` for what happens outside any tool (a report
submitted on the authority's portal, management informed by phone). The same shape is the JSON Lines
import/export format, one incident per line.

Decision: unknown fields are **refused** (``extra="forbid"``), not kept. A typo such as
``detcted_at`` would otherwise be silently ignored and the incident would look as if it had never been
detected; refusing it names the line and field and suggests the closest known name. Times must carry a
zone (naive times are ambiguous across Member States) and are normalised to UTC.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from compliance import vocab


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


Time = Annotated[AwareDatetime, AfterValidator(_utc)]
Stage = Literal["initial", "intermediate", "final", "reclassified"]
Nis2Stage = Literal["early_warning", "notification", "intermediate", "progress", "final"]

#: ServiceNow incident states (names and the numeric values its API returns) -> our names.
STATES: dict[str, str] = {
    "1": "new", "2": "in_progress", "3": "on_hold", "6": "resolved", "7": "closed", "8": "canceled",
    "new": "new", "in_progress": "in_progress", "on_hold": "on_hold", "resolved": "resolved",
    "closed": "closed", "canceled": "canceled", "cancelled": "canceled",
}


def _in(vocabulary: tuple[str, ...] | dict[str, str], what: str) -> Any:
    def check(values: Any) -> Any:
        items = values if isinstance(values, list) else [values]
        for item in items:
            if item is not None and item not in vocabulary:
                close = difflib.get_close_matches(str(item), list(vocabulary), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(vocabulary)}"
                raise ValueError(f"{item!r} is not a valid {what}{hint}")
        return values
    return AfterValidator(check)


def _empty() -> Any:
    """An empty-list default made by a factory: pydantic would deep-copy a literal ``[]`` for every model."""
    return Field(default_factory=list)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Report(_Model):
    """One regulatory report (or the notice that it will be late, before it exists)."""

    stage: Stage
    submitted_at: Time | None = None
    ref: str | None = None
    delay_notice_at: Time | None = Field(None, description="RTS 2025/301 Art. 5(3): CA told the limit will be missed")
    delay_reason: str | None = None


class Nis2Report(_Model):
    stage: Nis2Stage
    submitted_at: Time
    ref: str | None = None


class StateChange(_Model):
    """A desk state change, so lifecycle (ITIL-I3) and on-hold pauses (ITIL-I4) can be checked."""

    state: str
    at: Time

    _norm = field_validator("state", mode="before")(lambda cls, v: _normal_state(v))


class Classification(_Model):
    """The inputs of the RTS 2024/1772 major-incident test (Arts. 6 and 9); estimates are allowed."""

    critical_services: bool | None = None
    malicious_access_data_loss: bool = Field(False, description="Art. 9(5)(b)")
    clients_affected: int | None = Field(None, ge=0)
    clients_affected_pct: float | None = Field(None, ge=0, le=100)
    counterparts_affected: int | None = Field(None, ge=0)
    counterparts_affected_pct: float | None = Field(None, ge=0, le=100)
    transactions_affected: int | None = Field(None, ge=0)
    transactions_affected_pct: float | None = Field(None, ge=0, le=100)
    transactions_value: float | None = Field(None, ge=0)
    transactions_value_pct: float | None = Field(None, ge=0, le=100)
    relevant_clients_affected: bool = False
    reputational_impact: Annotated[list[str], _in(vocab.REPUTATIONAL_IMPACT, "reputational impact")] = _empty()
    duration_hours: float | None = Field(None, ge=0)
    downtime_hours: float | None = Field(None, ge=0)
    member_states: Annotated[list[str], _in(vocab.MEMBER_STATES, "Member State code")] = _empty()
    data_loss: bool = Field(False, description="Art. 9(5)(a)")
    data_loss_types: Annotated[list[str], _in(vocab.DATA_LOSS_TYPES, "data loss type")] = _empty()
    economic_impact_eur: float | None = Field(None, ge=0)


class DoraDetails(_Model):
    """Report content that has no other home in the timeline (ITS 2025/302 Annex I field in each comment)."""

    reference_code: str | None = None  # 2.1 (default: the incident id)
    discovery: Annotated[str | None, _in(vocab.DISCOVERY, "discovery (2.7)")] = None
    third_party_origin: str | None = None  # 2.8
    bcp_activated: bool | None = None  # 2.9
    other_information: str | None = None  # 2.10
    competent_authority_code: str | None = None  # 3.1
    figures_basis: Annotated[list[str], _in(vocab.FIGURES_BASIS, "figures basis (3.12)")] = _empty()
    reputational_description: str | None = None  # 3.14
    duration_basis: Annotated[str | None, _in(vocab.DURATION_BASIS, "duration basis (3.17)")] = None
    member_state_impact_types: Annotated[list[str], _in(vocab.MEMBER_STATE_IMPACT_TYPES,
                                                        "impact type (3.18)")] = _empty()
    member_state_impact_description: str | None = None  # 3.19
    data_loss_description: str | None = None  # 3.21
    critical_services_description: str | None = None  # 3.22
    incident_types: Annotated[list[str], _in(vocab.INCIDENT_TYPES, "incident type (3.23)")] = _empty()
    other_incident_type: str | None = None  # 3.24
    threat_techniques: Annotated[list[str], _in(vocab.THREAT_TECHNIQUES, "threat technique (3.25)")] = _empty()
    other_threat_techniques: str | None = None  # 3.26
    functions_affected: str | None = None  # 3.27
    infrastructure_affected: Annotated[str | None, _in(vocab.YES_NO_NA, "answer (3.28)")] = None
    infrastructure_description: str | None = None  # 3.29
    financial_interest_impact: Annotated[str | None, _in(vocab.YES_NO_NA, "answer (3.30)")] = None
    other_authorities: Annotated[list[str], _in(vocab.OTHER_AUTHORITIES, "authority (3.31)")] = _empty()
    other_authorities_other: str | None = None  # 3.32
    temporary_measures: bool | None = None  # 3.33
    temporary_measures_description: str | None = None  # 3.34
    indicators_of_compromise: str | None = None  # 3.35
    root_cause_categories: Annotated[list[str], _in(vocab.ROOT_CAUSE_CATEGORIES, "root cause (4.1)")] = _empty()
    root_cause_details: Annotated[list[str], _in(vocab.ROOT_CAUSE_DETAILS, "detailed root cause (4.2)")] = _empty()
    root_cause_additional: Annotated[list[str], _in(vocab.ROOT_CAUSE_ADDITIONAL,
                                                    "additional root cause (4.3)")] = _empty()
    root_cause_other: str | None = None  # 4.4
    resolution_summary: str | None = None  # 4.6
    root_cause_addressed_at: Time | None = None  # 4.7
    resolution_vs_planned: str | None = None  # 4.9
    risk_to_critical_functions: str | None = None  # 4.10
    resolution_authority_information: str | None = None  # 4.11
    gross_costs: float | None = Field(None, ge=0)  # 4.13, in the entity's currency
    financial_recoveries: float | None = Field(None, ge=0)  # 4.14
    recurring_since: Time | None = None  # 4.16 first occurrence of the recurring incidents


def _normal_state(value: Any) -> Any:
    if value is None:
        return None
    key = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    if key not in STATES:
        raise ValueError(f"unknown state {value!r}; use new, in_progress, on_hold, resolved, closed or canceled "
                         "(or ServiceNow's 1, 2, 3, 6, 7, 8)")
    return STATES[key]


_SUBMITTED_AT = attrgetter("submitted_at")


class Timeline(_Model):
    """Everything the rule packs read about one incident. Optional almost everywhere: rules say what is missing."""

    id: str = Field(min_length=1)
    title: str | None = None
    description: str | None = None
    source: str | None = None
    opened_at: Time | None = None
    detected_at: Time | None = None
    occurred_at: Time | None = None
    acknowledged_at: Time | None = None
    classified_at: Time | None = None
    classified_major_at: Time | None = None
    recovered_at: Time | None = None
    resolved_at: Time | None = None
    closed_at: Time | None = None
    state: str | None = None
    priority: int | None = Field(None, ge=1, le=5)
    impact: int | None = Field(None, ge=1, le=3)
    urgency: int | None = Field(None, ge=1, le=3)
    category: str | None = None
    assignment_group: str | None = None
    close_code: str | None = None
    close_notes: str | None = None
    major: bool | None = None
    root_cause: str | None = None
    problem_id: str | None = None
    problem_linked_at: Time | None = None
    pir_at: Time | None = None
    client_notified_at: Time | None = None
    management_informed_at: Time | None = None
    reports: list[Report] = _empty()
    nis2_reports: list[Nis2Report] = _empty()
    nis2_significant: bool | None = None
    classification: Classification | None = None
    dora: DoraDetails = Field(default_factory=DoraDetails)
    state_history: list[StateChange] = _empty()
    recurring_incidents: list[str] = Field(default_factory=list,
                                           description="4.15: non-major incidents this report aggregates")
    thresholds_never_met: bool | None = Field(None, description="ITS Art. 5 assessment before reclassifying")
    reclassification_assessed_at: Time | None = None
    desk_record: str | None = Field(None, description="desk ticket number (DORA-REC1)")
    audit_events: int | None = Field(None, ge=0, description="audit entries about this incident (DORA-REC1)")
    evidence: dict[str, list[str]] = Field(default_factory=dict,
                                           description="event name -> audit refs ('audit#42 sha256:...')")

    _norm = field_validator("state", mode="before")(lambda cls, v: _normal_state(v))

    @property
    def classified_major(self) -> bool:
        """The entity treats it as major (flag set or a classification time recorded)."""
        return bool(self.major) or self.classified_major_at is not None

    @property
    def aware_at(self) -> datetime | None:
        """Field 2.2 (became aware); the desk record's creation is the latest possible moment otherwise."""
        return self.detected_at or self.opened_at

    def reports_of(self, stage: str) -> list[Report]:
        """Submitted reports of one stage, earliest first."""
        done = [r for r in self.reports if r.stage == stage and r.submitted_at is not None]
        done.sort(key=_SUBMITTED_AT)  # some ten calls per incident in a check
        return done

    def notice_for(self, stage: str) -> Report | None:
        """The report entry of `stage` carrying a delay notice, if any."""
        return next((r for r in self.reports if r.stage == stage and r.delay_notice_at is not None), None)

    def refs(self, *events: str) -> list[str]:
        """Audit references for the named events, in the order given, without repeats."""
        out: list[str] = []
        for event in events:
            refs = self.evidence.get(event)
            if refs:  # most events have none: called some 20 times per incident in a check
                out += [ref for ref in refs if ref not in out]
        return out


# -- events recorded by `compliance record` -----------------------------------------------------------
_TIME_EVENTS = {
    "detected": "detected_at", "occurred": "occurred_at", "acknowledged": "acknowledged_at",
    "classified": "classified_at", "recovered": "recovered_at", "resolved": "resolved_at",
    "closed": "closed_at", "pir": "pir_at", "client_notified": "client_notified_at",
    "management_informed": "management_informed_at",
}
_REPORT_EVENTS = {f"report_{stage}": stage for stage in ("initial", "intermediate", "final", "reclassified")}
_NIS2_EVENTS = {f"nis2_{stage}": stage for stage in ("early_warning", "notification", "intermediate", "progress",
                                                      "final")}
#: Names accepted by `compliance record --event`, with what --ref means for each.
EVENTS: dict[str, str] = {
    **{name: "" for name in _TIME_EVENTS},
    "classified_major": "",
    **{name: f"the authority's reference of the {stage} report (required)" for name, stage in _REPORT_EVENTS.items()},
    "delay_notice": "the stage whose limit will be missed, optionally with the reason: 'initial: portal down'",
    "root_cause": "the root cause in words (required)",
    "problem": "the problem record number (required)",
    "reclassification_assessed": "optional note; records that the thresholds were at no time met",
    **{name: f"reference of the NIS2 {stage.replace('_', ' ')}" for name, stage in _NIS2_EVENTS.items()},
}
_REF_REQUIRED = {*_REPORT_EVENTS, "delay_notice", "root_cause", "problem"}


class EventError(ValueError):
    """An event cannot be recorded as given (unknown name, missing --ref)."""


def apply_event(timeline: Timeline, name: str, at: datetime, ref: str | None = None) -> Timeline:
    """Return a new timeline with one event applied; the input is not changed (pure)."""
    if name not in EVENTS:
        close = difflib.get_close_matches(name, list(EVENTS), n=1)
        raise EventError(f"unknown event {name!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                      f"; known events: {', '.join(EVENTS)}"))
    if at.tzinfo is None:
        raise EventError("the time has no zone: write it like 2026-03-14T09:30:00+01:00 or 2026-03-14T08:30:00Z")
    if name in _REF_REQUIRED and not (ref or "").strip():
        raise EventError(f"event {name!r} needs --ref: {EVENTS[name]}")
    at = at.astimezone(timezone.utc)
    data = timeline.model_dump()
    if name in _TIME_EVENTS:
        data[_TIME_EVENTS[name]] = at
    elif name == "classified_major":
        data.update(classified_major_at=at, major=True)
    elif name in _REPORT_EVENTS:
        data["reports"] = _with_report(timeline.reports, _REPORT_EVENTS[name], at, ref)
    elif name == "delay_notice":
        data["reports"] = _with_notice(timeline.reports, at, ref or "")
    elif name == "root_cause":
        data["root_cause"] = ref
    elif name == "problem":
        data.update(problem_id=ref, problem_linked_at=at)
    elif name == "reclassification_assessed":
        data.update(thresholds_never_met=True, reclassification_assessed_at=at)
    else:
        data["nis2_reports"] = [*data["nis2_reports"], {"stage": _NIS2_EVENTS[name], "submitted_at": at, "ref": ref}]
    return Timeline.model_validate(data)


def _with_report(reports: list[Report], stage: str, at: datetime, ref: str | None) -> list[dict[str, Any]]:
    """Fill the placeholder a delay notice left for this stage, or add the report."""
    out = [r.model_dump() for r in reports]
    for item in out:
        if item["stage"] == stage and item["submitted_at"] is None:
            item.update(submitted_at=at, ref=ref)
            return out
    return [*out, {"stage": stage, "submitted_at": at, "ref": ref}]


def _with_notice(reports: list[Report], at: datetime, ref: str) -> list[dict[str, Any]]:
    stage, _, reason = ref.partition(":")
    stage = stage.strip()
    if stage not in ("initial", "intermediate", "final"):
        raise EventError("delay_notice needs --ref naming the stage: initial, intermediate or final "
                         "(optionally 'initial: reason')")
    out = [r.model_dump() for r in reports]
    pending = [item for item in out if item["stage"] == stage and item["submitted_at"] is None]
    if pending:
        pending[-1].update(delay_notice_at=at, delay_reason=reason.strip() or None)
        return out
    return [*out, {"stage": stage, "delay_notice_at": at, "delay_reason": reason.strip() or None}]


# -- JSON Lines ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineError:
    """One problem in an import file: line number (1-based), field path and what is wrong."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.field}: {self.message}"


def read_jsonl(path: Path) -> tuple[list[Timeline], list[LineError]]:
    """Every valid timeline in the file, and every problem found; one bad line never hides the others."""
    timelines: list[Timeline] = []
    errors: list[LineError] = []
    first_line: dict[str, int] = {}
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            timeline, problems = parse_line(line, number)
            errors += problems
            if timeline is None:
                continue
            if timeline.id in first_line:
                errors.append(LineError(number, "id", f"incident {timeline.id!r} already appears on line "
                                                      f"{first_line[timeline.id]}; this line was skipped"))
                continue
            first_line[timeline.id] = number
            timelines.append(timeline)
    return timelines, errors


def parse_line(line: str, number: int) -> tuple[Timeline | None, list[LineError]]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, [LineError(number, "(line)", f"not valid JSON: {exc.msg} at column {exc.colno}")]
    if not isinstance(data, dict):
        return None, [LineError(number, "(line)", "expected one JSON object per line")]
    try:
        return Timeline.model_validate(data), []
    except ValidationError as exc:
        return None, [_line_error(number, error) for error in exc.errors()]


def _line_error(number: int, error: Any) -> LineError:
    loc = error["loc"]
    field = "".join(f"[{part}]" if isinstance(part, int) else (f".{part}" if i else str(part))
                    for i, part in enumerate(loc)) or "(line)"
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _known_fields(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return LineError(number, field, "unknown field" + (f"; did you mean {close[0]!r}?" if close else
                                                           " (fields are listed in the compliance docs)"))
    if kind == "timezone_aware":
        return LineError(number, field, f"time {error.get('input')!r} has no zone; write it like "
                                        "2026-03-14T09:30:00+01:00 or 2026-03-14T08:30:00Z")
    message = error["msg"].removeprefix("Value error, ")
    if kind == "missing":
        message = "required field is missing"
    return LineError(number, field, message)


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Timeline
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation if str(part) in model.model_fields else None
        inner = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        nested = next((a for a in inner if issubclass(a, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def dump_line(timeline: Timeline) -> str:
    """One JSON line; unset fields are left out so a line stays readable."""
    return json.dumps(timeline.model_dump(mode="json", exclude_defaults=True), ensure_ascii=False, sort_keys=True)


def write_jsonl(timelines: list[Timeline], path: Path) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for timeline in timelines:
            handle.write(dump_line(timeline) + "\n")
