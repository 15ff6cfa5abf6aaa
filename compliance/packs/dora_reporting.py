"""DORA reporting rules: time limits (DORA-T1..T7, RTS 2025/301 Art. 5) and content (DORA-F1..F4, ITS 2025/302).

A report not yet submitted whose deadline has not passed is "n/a" with the time left: the daemon's
deadline clock (`compliance.clock`) is what warns ahead of time; a check must not fail what is not late.
"""

from __future__ import annotations

from datetime import timedelta

from compliance.calendar import human_delta
from compliance.classification import assess
from compliance.deadlines import EVIDENCE, Deadline, dora_deadlines
from compliance.packs.dora import assessed
from compliance.report import missing_by_stage
from compliance.rules import Context, Finding, Verdict, finding, incident_rule, timing
from compliance.timeline import Timeline

NAMES = {"initial": "The initial notification", "intermediate": "The intermediate report",
         "final": "The final report"}
PREVIOUS = {"intermediate": "the initial notification", "final": "an intermediate report"}


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _deadlines(timeline: Timeline, context: Context) -> list[Deadline]:
    return context.cached("dora_deadlines", timeline, lambda: dora_deadlines(timeline, context.settings))


def _deadline(timeline: Timeline, context: Context, stage: str) -> Deadline | None:
    return next((d for d in _deadlines(timeline, context) if d.stage == stage), None)


def _timeliness(rule_id: str, stage: str, timeline: Timeline, context: Context) -> list[Finding]:
    if not timeline.classified_major:
        return [finding(rule_id, timeline, Verdict.NA, "Not classified as major: no DORA report is due.")]
    refs = timeline.refs(*EVIDENCE[stage])
    if timeline.classified_major_at is None:
        return [finding(rule_id, timeline, Verdict.WARN, "The incident is flagged major but the time of its "
                        "classification is not recorded, so report deadlines cannot be checked; record "
                        "'classified_major'.", evidence=refs)]
    deadline = _deadline(timeline, context, stage)
    if deadline is None:
        return [finding(rule_id, timeline, Verdict.NA, f"Not due yet: the clock starts when "
                        f"{PREVIOUS[stage]} is submitted.", evidence=refs)]
    what, shift = NAMES[stage], (f" {_sentence(deadline.adjusted.note)}." if deadline.adjusted.note else "")
    if deadline.waived:
        return [finding(rule_id, timeline, Verdict.NA, f"{what} is no longer due: the incident was reclassified "
                        "as non-major.", deadline=deadline.due, evidence=refs)]
    extra = {"deadline": deadline.due, "actual": deadline.submitted, "evidence": refs,
             "details": {"limit": deadline.adjusted.limit.isoformat(), "shifted": deadline.adjusted.shifted}}
    if deadline.submitted is not None:
        verdict = Verdict.FAIL if deadline.submitted > deadline.due else Verdict.PASS
        return [finding(rule_id, timeline, verdict, timing(what, deadline.due, deadline.submitted, context,
                                                           deadline.basis) + shift, **extra)]
    if context.now > deadline.due:
        return [finding(rule_id, timeline, Verdict.FAIL, f"{what} was due {context.fmt(deadline.due)} "
                        f"({deadline.basis}) and has not been submitted: "
                        f"{human_delta(context.now - deadline.due)} overdue.{shift}", **extra)]
    return [finding(rule_id, timeline, Verdict.NA, f"{what} is due {context.fmt(deadline.due)} ({deadline.basis}); "
                    f"not submitted yet, {human_delta(deadline.due - context.now)} left.{shift}", **extra)]


@incident_rule("DORA-T1", "Initial notification within 4 h of classification and 24 h of awareness")
def initial_in_time(timeline: Timeline, context: Context) -> list[Finding]:
    return _timeliness("DORA-T1", "initial", timeline, context)


@incident_rule("DORA-T2", "Intermediate report within 72 h of the initial notification")
def intermediate_in_time(timeline: Timeline, context: Context) -> list[Finding]:
    return _timeliness("DORA-T2", "intermediate", timeline, context)


@incident_rule("DORA-T3", "Updated intermediate report once regular activities are recovered")
def recovery_update(timeline: Timeline, context: Context) -> list[Finding]:
    rid, rec = "DORA-T3", timeline.recovered_at
    if not timeline.classified_major or rec is None:
        return [finding(rid, timeline, Verdict.NA, "Not a major incident with a recorded recovery.")]
    allowed = timedelta(hours=context.settings.undue_delay_hours)
    limit = rec + allowed
    refs = timeline.refs("recovered", "report_intermediate", "report_final")
    updates = sorted(r.submitted_at for r in timeline.reports  # type: ignore[type-var]
                     if r.stage in ("intermediate", "final") and r.submitted_at and r.submitted_at >= rec)
    base = (f"Regular activities were recovered {context.fmt(rec)}; an updated report is due without undue "
            f"delay (we allow {human_delta(allowed)}).")
    if updates:
        first = updates[0]
        verdict = Verdict.WARN if first > limit else Verdict.PASS
        tail = f" It came {context.fmt(first)}, {human_delta(first - rec)} after recovery" + (
            ": later than allowed." if verdict is Verdict.WARN else ".")
        return [finding(rid, timeline, verdict, base + tail, deadline=limit, actual=first, evidence=refs)]
    if context.now > limit:
        return [finding(rid, timeline, Verdict.FAIL, base + " No report has been submitted since.",
                        deadline=limit, evidence=refs)]
    return [finding(rid, timeline, Verdict.NA, base + f" Not submitted yet, {human_delta(limit - context.now)} left.",
                    deadline=limit, evidence=refs)]


@incident_rule("DORA-T4", "Final report within one month of the latest intermediate report")
def final_in_time(timeline: Timeline, context: Context) -> list[Finding]:
    return _timeliness("DORA-T4", "final", timeline, context)


@incident_rule("DORA-T5", "Weekend and bank-holiday rule applied with the Member State's calendar")
def calendar_applied(timeline: Timeline, context: Context) -> list[Finding]:
    notes = [f"{NAMES[d.stage]}: {d.adjusted.note}; due {context.fmt(d.due)}"
             for d in _deadlines(timeline, context) if d.adjusted.note]
    if not notes:
        return [finding("DORA-T5", timeline, Verdict.NA, "No report deadline fell on a weekend or public holiday "
                        f"in {context.settings.entity.member_state}.")]
    return [finding("DORA-T5", timeline, Verdict.PASS, ". ".join(notes) + ".")]


@incident_rule("DORA-T6", "Authority told in time when a report limit is missed")
def delay_notice(timeline: Timeline, context: Context) -> list[Finding]:
    out = []
    for d in _deadlines(timeline, context):
        if d.waived or d.late_by(context.now) is None:
            continue
        what, notice = NAMES[d.stage], d.notice
        refs = timeline.refs("delay_notice", *EVIDENCE[d.stage])
        if notice and notice.delay_notice_at and notice.delay_notice_at <= d.due:
            reason = f" (reason given: {notice.delay_reason})" if notice.delay_reason else ""
            verdict, text = Verdict.PASS, (f"{what} missed its limit of {context.fmt(d.due)}, but the authority was "
                                           f"told {context.fmt(notice.delay_notice_at)}, before the limit{reason}.")
        elif notice and notice.delay_notice_at:
            verdict, text = Verdict.FAIL, (f"{what} missed its limit of {context.fmt(d.due)}; the authority was only "
                                           f"told {context.fmt(notice.delay_notice_at)}, after the limit "
                                           "(RTS 2025/301 Art. 5(3) requires notice no later than the limit).")
        else:
            verdict, text = Verdict.FAIL, (f"{what} missed its limit of {context.fmt(d.due)} and no delay notice "
                                           "to the authority is recorded (RTS 2025/301 Art. 5(3)).")
        out.append(finding("DORA-T6", timeline, verdict, text, deadline=d.due,
                           actual=notice.delay_notice_at if notice else None, evidence=refs))
    return out or [finding("DORA-T6", timeline, Verdict.NA, "No report limit was missed.")]


@incident_rule("DORA-T7", "Reclassification to non-major only when thresholds were never met")
def reclassification(timeline: Timeline, context: Context) -> list[Finding]:
    reports = timeline.reports_of("reclassified")
    refs = timeline.refs("report_reclassified", "reclassification_assessed")
    if not reports:
        return [finding("DORA-T7", timeline, Verdict.NA, "The incident was not reclassified as non-major.")]
    assessment = assess(timeline.classification)
    if assessment.major:
        return [finding("DORA-T7", timeline, Verdict.FAIL, "The incident was reclassified as non-major although the "
                        f"recorded figures meet the major test ({assessment.explain()}); ITS 2025/302 Art. 5 allows "
                        "it only when the thresholds were at no time met.", evidence=refs)]
    if not timeline.thresholds_never_met:
        return [finding("DORA-T7", timeline, Verdict.FAIL, "The incident was reclassified as non-major but no "
                        "assessment that the thresholds were at no time met is recorded (record "
                        "'reclassification_assessed').", evidence=refs)]
    return [finding("DORA-T7", timeline, Verdict.PASS, "Reclassified as non-major with a recorded assessment "
                    f"({context.fmt(timeline.reclassification_assessed_at)}) that the thresholds were never met.",
                    actual=reports[0].submitted_at, evidence=refs)]


def _content(rule_id: str, stage: str, timeline: Timeline, context: Context) -> list[Finding]:
    if not timeline.classified_major:
        return [finding(rule_id, timeline, Verdict.NA, "Not classified as major: no DORA report is due.")]
    deadline = _deadline(timeline, context, stage)
    submitted = timeline.reports_of(stage)
    if deadline is None and not submitted:
        return [finding(rule_id, timeline, Verdict.NA, f"{NAMES[stage]} is not due yet.")]
    missing = context.cached("missing_fields", timeline, lambda: missing_by_stage(
        timeline, context.settings, list(NAMES), assessment=assessed(timeline, context)))[stage]
    refs = timeline.refs(f"report_{stage}")
    if not missing:
        return [finding(rule_id, timeline, Verdict.PASS, f"{NAMES[stage]} has every mandatory field.", evidence=refs)]
    overdue = submitted or (deadline is not None and context.now > deadline.due)
    text = (f"{NAMES[stage]} lacks {len(missing)} mandatory field{'s' if len(missing) != 1 else ''}: "
            + "; ".join(missing) + ".")
    return [finding(rule_id, timeline, Verdict.FAIL if overdue else Verdict.WARN, text, evidence=refs,
                    details={"missing": missing})]


@incident_rule("DORA-F1", "Initial notification content")
def initial_content(timeline: Timeline, context: Context) -> list[Finding]:
    return _content("DORA-F1", "initial", timeline, context)


@incident_rule("DORA-F2", "Intermediate report content")
def intermediate_content(timeline: Timeline, context: Context) -> list[Finding]:
    return _content("DORA-F2", "intermediate", timeline, context)


@incident_rule("DORA-F3", "Final report content")
def final_content(timeline: Timeline, context: Context) -> list[Finding]:
    return _content("DORA-F3", "final", timeline, context)


@incident_rule("DORA-F4", "Timeline order and stated duration")
def timeline_order(timeline: Timeline, context: Context) -> list[Finding]:
    t = timeline
    first = {stage: (t.reports_of(stage) or [None])[0] for stage in ("initial", "intermediate", "final")}
    chain = [("occurred", t.occurred_at), ("detected", t.detected_at), ("classified major", t.classified_major_at),
             *[(f"{s} report", r.submitted_at if r else None) for s, r in first.items()]]
    known = [(name, at) for name, at in chain if at is not None]
    problems = [f"{b} ({context.fmt(tb)}) is before {a} ({context.fmt(ta)})"
                for (a, ta), (b, tb) in zip(known, known[1:]) if tb < ta]
    for name, at in (("recovered", t.recovered_at), ("resolved", t.resolved_at)):
        if at and t.occurred_at and at < t.occurred_at:
            problems.append(f"{name} ({context.fmt(at)}) is before the occurrence ({context.fmt(t.occurred_at)})")
    refs = t.refs("occurred", "detected", "classified_major", "report_initial", "report_intermediate", "report_final")
    if len(known) < 2 and not problems:
        return [finding("DORA-F4", t, Verdict.NA, "Too few times recorded to check their order.")]
    if problems:
        return [finding("DORA-F4", t, Verdict.FAIL, "The recorded times are out of order: " + "; ".join(problems) + ".",
                        evidence=refs)]
    stated = t.classification.duration_hours if t.classification else None
    if stated is not None and t.occurred_at and t.resolved_at:
        actual = (t.resolved_at - t.occurred_at) / timedelta(hours=1)
        if abs(actual - stated) > max(1.0, 0.1 * actual):
            return [finding("DORA-F4", t, Verdict.WARN, f"The times are in order, but the stated duration "
                            f"({stated:g} h, field 3.15) differs from occurrence to resolution ({actual:.1f} h).",
                            evidence=refs)]
    return [finding("DORA-F4", t, Verdict.PASS, "The recorded times are in order.", evidence=refs)]


RULES = [initial_in_time, intermediate_in_time, recovery_update, final_in_time, calendar_applied, delay_notice,
         reclassification, initial_content, intermediate_content, final_content, timeline_order]
