"""The DORA report deadlines of one incident (RTS 2025/301 Art. 5), computed once for rules, clock and HTML.

- initial (T1): 4 h after classification as major, and no later than 24 h after becoming aware; when
  classification itself came after those 24 h, 4 h after classification (Art. 5(1)(a), 5(2));
- intermediate (T2): 72 h after the initial notification was submitted (Art. 5(1)(b));
- final (T4): one calendar month after the latest intermediate report (Art. 5(1)(c));
each then moved by the weekend/holiday rule unless the entity type is excluded (`calendar.adjust`).
A deadline only exists once its starting event happened: no intermediate deadline before an initial
report was submitted. After a report reclassifying the incident as non-major, later stages are not due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from compliance.calendar import Adjusted, add_calendar_month, adjust, zone_of
from compliance.settings import ComplianceSettings
from compliance.timeline import Report, Timeline

#: Which stage each timing rule watches, and the events its evidence rests on.
STAGE_RULES = {"initial": "DORA-T1", "intermediate": "DORA-T2", "final": "DORA-T4"}
EVIDENCE = {"initial": ("detected", "classified_major", "report_initial", "delay_notice"),
            "intermediate": ("report_initial", "report_intermediate", "delay_notice"),
            "final": ("report_intermediate", "report_final", "delay_notice")}


@dataclass(frozen=True)
class Deadline:
    """One report deadline: the raw limit, what binds after the calendar rule, and what actually happened."""

    stage: str
    rule_id: str
    basis: str
    adjusted: Adjusted
    submitted: datetime | None
    notice: Report | None
    waived: bool = False

    @property
    def due(self) -> datetime:
        return self.adjusted.due

    def late_by(self, now: datetime) -> timedelta | None:
        """How late (positive) the report is or was; None when on time or not yet due."""
        moment = self.submitted or now
        return moment - self.due if moment > self.due else None


def _adjust(limit: datetime, stage: str, settings: ComplianceSettings) -> Adjusted:
    entity = settings.entity
    return adjust(limit, member_state=entity.member_state, stage=stage, entity_type=entity.type,
                  nis2=entity.nis2, ca_excluded=entity.weekend_rule_excluded, subdivision=entity.subdivision)


def initial_limit(classified: datetime, aware: datetime | None) -> tuple[datetime, str]:
    """The raw T1 limit and the words that explain which bound applied."""
    after_class = classified + timedelta(hours=4)
    if aware is None or classified > aware + timedelta(hours=24):
        return after_class, "4 h after classification as major"
    cap = aware + timedelta(hours=24)
    if cap < after_class:
        return cap, "24 h after becoming aware, which came before 4 h after classification"
    return after_class, "4 h after classification as major"


def dora_deadlines(timeline: Timeline, settings: ComplianceSettings) -> list[Deadline]:
    """Deadlines of every report stage whose starting event has happened (empty if not classified major)."""
    cls = timeline.classified_major_at
    if cls is None or not timeline.classified_major:
        return []
    reclassified = timeline.reports_of("reclassified")
    waived_after = reclassified[0].submitted_at if reclassified else None
    out: list[Deadline] = []

    def add(stage: str, limit: datetime, basis: str) -> None:
        submitted = timeline.reports_of(stage)
        first = submitted[0].submitted_at if submitted else None
        waived = first is None and waived_after is not None
        out.append(Deadline(stage, STAGE_RULES[stage], basis, _adjust(limit, stage, settings), first,
                            timeline.notice_for(stage), waived))

    limit, basis = initial_limit(cls, timeline.aware_at)
    add("initial", limit, basis)
    initial = timeline.reports_of("initial")
    if initial:
        add("intermediate", initial[0].submitted_at + timedelta(hours=72),  # type: ignore[operator]
            "72 h after the initial notification")
    finals = timeline.reports_of("final")
    intermediates = [r.submitted_at for r in timeline.reports_of("intermediate")
                     if not finals or r.submitted_at <= finals[0].submitted_at]  # type: ignore[operator]
    if intermediates:
        latest = max(intermediates)  # type: ignore[type-var]
        month_end = add_calendar_month(latest, zone=zone_of(settings.entity.member_state),  # type: ignore[arg-type]
                                       rule=settings.month_rule)
        add("final", month_end, "one calendar month after the latest intermediate report")
    return out
