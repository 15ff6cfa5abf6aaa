"""DORA rules on classification and incident management (DORA Arts. 17-19, RTS 2024/1772).

DORA-C1..C3 (is it major, was it treated so, in time), R1 (recurring incidents), CL1 (clients told),
M1 (management told), RC1 (root cause), REC1 (every incident recorded). The timing and content rules
live in `dora_reporting`; both lists make up the ``dora`` pack.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from datetime import datetime, timedelta

from compliance.calendar import add_months, human_delta
from compliance.classification import Assessment, aggregate, assess
from compliance.rules import Context, Finding, Verdict, finding, incident_rule, period_rule
from compliance.timeline import Timeline


def is_major(timeline: Timeline, context: Context | None = None) -> bool:
    """Treated as major, or major by its own figures (then DORA-C2 also fails). With the check's
    context, the test of the figures is the one DORA-C1 made (done once per incident)."""
    if timeline.classified_major:
        return True
    return (assessed(timeline, context) if context else assess(timeline.classification)).major


def assessed(timeline: Timeline, context: Context) -> Assessment:
    """The major-incident test of the timeline's figures, made once per check and shared by the rules."""
    return context.cached("assess", timeline, lambda: assess(timeline.classification))


@incident_rule("DORA-C1", "Major incident test (RTS 2024/1772 Art. 8(1))")
def major_test(timeline: Timeline, context: Context) -> list[Finding]:
    result = assessed(timeline, context)
    refs = timeline.refs("classified", "classified_major")
    details = {"major": result.major if result.assessed else None, "thresholds_met": sorted(result.met)}
    if not result.assessed:
        return [finding("DORA-C1", timeline, Verdict.WARN, "Cannot tell whether this incident is major: "
                        + result.explain() + ". DORA Art. 18 requires every ICT incident to be classified.",
                        evidence=refs, details=details)]
    verdict_text = "Major" if result.major else "Not major"
    return [finding("DORA-C1", timeline, Verdict.PASS, f"{verdict_text} under RTS 2024/1772 Art. 8(1): "
                    f"{result.explain()}.", evidence=refs, details=details)]


@incident_rule("DORA-C2", "Classification consistent with the recorded figures")
def consistent(timeline: Timeline, context: Context) -> list[Finding]:
    result = assessed(timeline, context)
    if not result.assessed:
        return [finding("DORA-C2", timeline, Verdict.NA, "No classification figures to compare with.")]
    refs = timeline.refs("classified", "classified_major")
    if result.major and not timeline.classified_major:
        return [finding("DORA-C2", timeline, Verdict.FAIL, "The recorded figures make this a major incident "
                        f"({result.explain()}), but it was not classified as major, so no report went to the "
                        "authority.", evidence=refs)]
    if timeline.classified_major and not result.major:
        return [finding("DORA-C2", timeline, Verdict.WARN, "Classified as major although the recorded figures do not "
                        f"meet the test ({result.explain()}); check the figures or reclassify.", evidence=refs)]
    return [finding("DORA-C2", timeline, Verdict.PASS, "The classification matches the recorded figures.",
                    evidence=refs)]


@incident_rule("DORA-C3", "Classification within 24 h of becoming aware")
def classified_in_time(timeline: Timeline, context: Context) -> list[Finding]:
    cls, aware = timeline.classified_major_at, timeline.aware_at
    if cls is None or aware is None:
        return [finding("DORA-C3", timeline, Verdict.NA, "Not classified as major (or awareness time unknown).")]
    limit = aware + timedelta(hours=24)
    refs = timeline.refs("detected", "classified_major")
    if cls > limit:
        return [finding("DORA-C3", timeline, Verdict.WARN, f"Classified as major {context.fmt(cls)}, "
                        f"{human_delta(cls - aware)} after becoming aware ({context.fmt(aware)}): more than 24 h. "
                        "Expect the authority to ask why.", deadline=limit, actual=cls, evidence=refs)]
    return [finding("DORA-C3", timeline, Verdict.PASS, f"Classified as major {human_delta(cls - aware)} after "
                    "becoming aware.", deadline=limit, actual=cls, evidence=refs)]


def _when(timeline: Timeline) -> datetime | None:
    return timeline.occurred_at or timeline.detected_at or timeline.opened_at


def _clusters(timelines: list[Timeline], context: Context) -> list[list[Timeline]]:
    """Non-major incidents with the same root cause within 6 months of the first (each window that is
    not inside an earlier one), root cause by root cause, earliest first."""
    groups: dict[str, list[Timeline]] = defaultdict(list)
    for t in timelines:
        if t.root_cause and _when(t) and not is_major(t, context):
            groups[" ".join(t.root_cause.lower().split())].append(t)
    found: list[list[Timeline]] = []
    holding: dict[str, list[set[str]]] = defaultdict(list)  # incident id -> ids of each found window holding it
    for items in groups.values():
        items.sort(key=lambda t: _when(t))  # type: ignore[arg-type,return-value]
        times = [_when(t) for t in items]
        for i, start in enumerate(items):
            # sorted by time, so the incidents up to 6 months after `start` are the next ones in the list
            window = items[i:bisect_right(times, add_months(times[i], 6), lo=i)]  # type: ignore[arg-type,type-var]
            ids = {t.id for t in window}
            # a window inside an earlier one holds `start` too, so only those holding it need comparing
            if len(window) >= 2 and not any(ids <= earlier for earlier in holding[start.id]):
                found.append(window)
                for incident_id in ids:
                    holding[incident_id].append(ids)
    return found


def _months(context: Context) -> list[tuple[int, int]]:
    """Calendar months (in the Member State's time) of the checked period, for the monthly assessment."""
    start, end = context.period
    times = [w for w in (_when(t) for t in context.all_timelines) if w]
    start = start or (min(times) if times else None)
    last = (end - timedelta(seconds=1)) if end else context.now
    if start is None:
        return []
    first, last = start.astimezone(context.zone), last.astimezone(context.zone)
    months, cursor = [], (first.year, first.month)
    while cursor <= (last.year, last.month):
        months.append(cursor)
        cursor = (cursor[0] + 1, 1) if cursor[1] == 12 else (cursor[0], cursor[1] + 1)
    return months


@period_rule("DORA-R1", "Recurring non-major incidents (RTS 2024/1772 Art. 8(2))")
def recurring(context: Context) -> list[Finding]:
    entity = context.settings.entity
    if entity.microenterprise or entity.simplified_framework:
        return [Finding("DORA-R1", None, Verdict.NA, "Recurring-incident assessment does not apply to "
                        "microenterprises and DORA Art. 16(1) entities.")]
    out: list[Finding] = []
    start, end = context.period
    reporting: dict[str, list[Timeline]] = defaultdict(list)  # incident id -> reported incidents aggregating it
    for t in context.all_timelines:
        if t.reports:
            for incident_id in dict.fromkeys(t.recurring_incidents):
                reporting[incident_id].append(t)
    for cluster in _clusters(list(context.all_timelines), context):
        ids = [t.id for t in cluster]
        opened = [t.opened_at for t in cluster if t.opened_at]
        if opened and not any((start is None or at >= start) and (end is None or at < end) for at in opened):
            continue  # wholly outside the period checked
        result = assess(aggregate(t.classification for t in cluster))
        if not result.major:
            continue
        reported = [t for t in reporting.get(ids[0], []) if set(ids) <= set(t.recurring_incidents)]
        text = (f"{len(ids)} non-major incidents with the same root cause ({cluster[0].root_cause!r}) within 6 months "
                f"({', '.join(ids)}) together meet the major test: {result.explain()}.")
        if reported:
            out.append(Finding("DORA-R1", None, Verdict.PASS, text + f" Reported as one major incident "
                               f"({reported[0].id}).", evidence=reported[0].refs("report_initial")))
        else:
            out.append(Finding("DORA-R1", None, Verdict.FAIL, text + " They must be reported as one major incident; "
                               "no such report is recorded.", details={"incidents": ids}))
    if context.recurring_assessments is not None:
        done = {(at.year, at.month) for at in context.recurring_assessments}
        missing = [f"{y}-{m:02d}" for y, m in _months(context) if (y, m) not in done]
        if missing:
            out.append(Finding("DORA-R1", None, Verdict.FAIL, "The monthly recurring-incident assessment is not "
                               f"recorded for {', '.join(missing)}."))
    return out or [Finding("DORA-R1", None, Verdict.PASS, "No recurring non-major incidents that together "
                           "meet the major test.")]


def _told(rule_id: str, timeline: Timeline, context: Context, *, at: datetime | None, start: datetime,
          since: str, who: str, event: str) -> list[Finding]:
    """Shared shape of CL1 and M1: someone must be told without undue delay after `start`."""
    allowed = timedelta(hours=context.settings.undue_delay_hours)
    limit = start + allowed
    refs = timeline.refs(event, "classified_major", "detected")
    if at is not None:
        late = at > limit
        text = (f"{who} {'were' if who.endswith('s') else 'was'} informed {context.fmt(at)}, "
                f"{human_delta(at - start)} after {since}"
                + (f": later than the {human_delta(allowed)} we allow for 'without undue delay'." if late else "."))
        return [finding(rule_id, timeline, Verdict.WARN if late else Verdict.PASS, text, deadline=limit, actual=at,
                        evidence=refs)]
    if context.now > limit:
        return [finding(rule_id, timeline, Verdict.FAIL, f"{who} must be informed of this major incident; nothing is "
                        f"recorded {human_delta(context.now - start)} after {since} (record '{event}').",
                        deadline=limit,
                        evidence=refs)]
    return [finding(rule_id, timeline, Verdict.NA, f"{who} not informed yet; expected by {context.fmt(limit)}.",
                    deadline=limit, evidence=refs)]


@incident_rule("DORA-CL1", "Clients informed when their financial interests are affected (DORA Art. 19(3))")
def clients_informed(timeline: Timeline, context: Context) -> list[Finding]:
    if not is_major(timeline, context) or timeline.dora.financial_interest_impact != "yes":
        return [finding("DORA-CL1", timeline, Verdict.NA, "Not a major incident affecting clients' financial "
                        "interests (field 3.30).")]
    start = timeline.aware_at
    if start is None:
        return [finding("DORA-CL1", timeline, Verdict.WARN, "When the entity became aware is not recorded.")]
    return _told("DORA-CL1", timeline, context, at=timeline.client_notified_at, start=start, since="becoming aware",
                 who="Clients",
                 event="client_notified")


@incident_rule("DORA-M1", "Senior management and management body informed (DORA Art. 17(3)(e))")
def management_informed(timeline: Timeline, context: Context) -> list[Finding]:
    if not is_major(timeline, context):
        return [finding("DORA-M1", timeline, Verdict.NA, "Not a major incident.")]
    start = timeline.classified_major_at or timeline.aware_at
    since = "classification as major" if timeline.classified_major_at else "becoming aware"
    if start is None:
        return [finding("DORA-M1", timeline, Verdict.WARN, "Neither classification nor awareness time is recorded.")]
    return _told("DORA-M1", timeline, context, at=timeline.management_informed_at, start=start, since=since,
                 who="Management",
                 event="management_informed")


@incident_rule("DORA-RC1", "Closed incidents have a root cause or a problem record (DORA Art. 17(2))")
def root_cause(timeline: Timeline, context: Context) -> list[Finding]:
    if timeline.state != "closed" and timeline.closed_at is None:
        return [finding("DORA-RC1", timeline, Verdict.NA, "Not closed yet.")]
    refs = timeline.refs("root_cause", "problem", "closed")
    if timeline.root_cause or timeline.problem_id:
        what = f"root cause: {timeline.root_cause}" if timeline.root_cause else f"problem {timeline.problem_id}"
        return [finding("DORA-RC1", timeline, Verdict.PASS, f"Closed with a documented cause ({what}).",
                        evidence=refs)]
    return [finding("DORA-RC1", timeline, Verdict.FAIL, "Closed without a root cause or a linked problem record; "
                    "DORA Art. 17(2) requires root causes to be identified and documented.", evidence=refs)]


@incident_rule("DORA-REC1", "Every incident has a desk record and audit entries (DORA Art. 17(2))")
def recorded(timeline: Timeline, context: Context) -> list[Finding]:
    entries = timeline.audit_events if timeline.audit_events is not None else \
        len({ref for refs in timeline.evidence.values() for ref in refs})
    problems = []
    if not timeline.desk_record:
        problems.append("no service desk ticket")
    if entries == 0:
        problems.append("no audit entries")
    if problems:
        return [finding("DORA-REC1", timeline, Verdict.FAIL, f"The incident has {' and '.join(problems)}: it is not "
                        "recorded as DORA Art. 17(2) requires for all ICT-related incidents.")]
    return [finding("DORA-REC1", timeline, Verdict.PASS, f"Recorded as desk ticket {timeline.desk_record} with "
                    f"{entries} audit entr{'ies' if entries != 1 else 'y'}.", evidence=timeline.refs(
                        *timeline.evidence)[:5])]


RULES = [major_test, consistent, classified_in_time, recurring, clients_informed, management_informed, root_cause,
         recorded]
