"""NIS2 Art. 23 reporting limits (NIS2-N1..N3), for entities that report under NIS2.

Only an entity configured as NIS2 ``essential`` or ``important`` is checked; for other financial
entities DORA is the specific regime and these rules are "n/a". An incident is significant when
``nis2_significant`` says so, otherwise when it is treated as a DORA major incident. NIS2 clocks start
when the entity became aware; there is no weekend shift.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from compliance.calendar import add_calendar_month, human_delta
from compliance.rules import Context, Finding, Verdict, finding, incident_rule, timing
from compliance.timeline import Timeline


def _first(timeline: Timeline, stage: str) -> datetime | None:
    times = sorted(r.submitted_at for r in timeline.nis2_reports if r.stage == stage)
    return times[0] if times else None


def _applies(rule_id: str, timeline: Timeline, context: Context) -> Finding | None:
    if context.settings.entity.nis2 == "none":
        return finding(rule_id, timeline, Verdict.NA, "The entity is not configured as a NIS2 essential or "
                       "important entity (compliance.entity.nis2).")
    significant = timeline.nis2_significant if timeline.nis2_significant is not None else timeline.classified_major
    if not significant:
        return finding(rule_id, timeline, Verdict.NA, "Not a significant incident under NIS2 Art. 23(3).")
    if timeline.aware_at is None:
        return finding(rule_id, timeline, Verdict.WARN, "When the entity became aware is not recorded.")
    return None


def _limit(rule_id: str, timeline: Timeline, context: Context, *, what: str, due: datetime,
           actual: datetime | None, basis: str, event: str) -> list[Finding]:
    refs = timeline.refs("detected", event)
    if actual is not None:
        verdict = Verdict.FAIL if actual > due else Verdict.PASS
        return [finding(rule_id, timeline, verdict, timing(what, due, actual, context, basis), deadline=due,
                        actual=actual, evidence=refs)]
    if context.now > due:
        return [finding(rule_id, timeline, Verdict.FAIL, f"{what} was due {context.fmt(due)} ({basis}) and has not "
                        f"been submitted: {human_delta(context.now - due)} overdue.", deadline=due, evidence=refs)]
    return [finding(rule_id, timeline, Verdict.NA, f"{what} is due {context.fmt(due)} ({basis}).", deadline=due)]


@incident_rule("NIS2-N1", "Early warning within 24 h of becoming aware")
def early_warning(timeline: Timeline, context: Context) -> list[Finding]:
    skip = _applies("NIS2-N1", timeline, context)
    if skip:
        return [skip]
    aware = timeline.aware_at
    assert aware is not None  # _applies checked it
    return _limit("NIS2-N1", timeline, context, what="The NIS2 early warning",
                  due=aware + timedelta(hours=24), actual=_first(timeline, "early_warning"),
                  basis="24 h after becoming aware", event="nis2_early_warning")


@incident_rule("NIS2-N2", "Incident notification within 72 h of becoming aware")
def notification(timeline: Timeline, context: Context) -> list[Finding]:
    skip = _applies("NIS2-N2", timeline, context)
    if skip:
        return [skip]
    hours = context.settings.nis2_notification_hours
    aware = timeline.aware_at
    assert aware is not None  # _applies checked it
    return _limit("NIS2-N2", timeline, context, what="The NIS2 incident notification",
                  due=aware + timedelta(hours=hours), actual=_first(timeline, "notification"),
                  basis=f"{hours} h after becoming aware", event="nis2_notification")


@incident_rule("NIS2-N3", "Final report within one month of the notification, or a progress report")
def final_report(timeline: Timeline, context: Context) -> list[Finding]:
    skip = _applies("NIS2-N3", timeline, context)
    if skip:
        return [skip]
    notified = _first(timeline, "notification")
    if notified is None:
        return [finding("NIS2-N3", timeline, Verdict.NA, "Not due yet: the clock starts with the notification.")]
    due = add_calendar_month(notified, zone=context.zone, rule=context.settings.month_rule)
    final, progress = _first(timeline, "final"), _first(timeline, "progress")
    if final is None and progress is not None and progress <= due:
        # Art. 23(4)(e): still ongoing -> progress report now, final within a month of handling the incident.
        if timeline.resolved_at is None:
            return [finding("NIS2-N3", timeline, Verdict.PASS, f"A progress report was submitted "
                            f"{context.fmt(progress)} while the incident was ongoing; the final report is due one "
                            "month after it is handled.", deadline=due, actual=progress,
                            evidence=timeline.refs("nis2_progress"))]
        due = add_calendar_month(timeline.resolved_at, zone=context.zone, rule=context.settings.month_rule)
        return _limit("NIS2-N3", timeline, context, what="The NIS2 final report", due=due, actual=final,
                      basis="one month after the incident was handled", event="nis2_final")
    return _limit("NIS2-N3", timeline, context, what="The NIS2 final report", due=due, actual=final,
                  basis="one month after the notification", event="nis2_final")


RULES = [early_warning, notification, final_report]
