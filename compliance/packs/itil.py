"""ITIL record-keeping and SLA rules (ITIL-I1..I5), with ServiceNow's incident model as the reference.

ITIL fixes no SLA numbers: response and resolution minutes per priority come from ``[compliance.sla.N]``
and a priority without an SLA is "n/a", not a failure. Response = opened -> acknowledged; resolution =
opened -> resolved, minus time On Hold when ``pause_on_hold`` is set (ServiceNow's SLA pause condition).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from compliance.calendar import human_delta
from compliance.packs.dora import is_major
from compliance.rules import Context, Finding, Verdict, finding, incident_rule
from compliance.timeline import Timeline

#: ServiceNow's incident lifecycle: where each state may go next (Closed only after Resolved).
TRANSITIONS: dict[str, set[str]] = {
    "new": {"in_progress", "on_hold", "resolved", "canceled"},
    "in_progress": {"on_hold", "resolved", "canceled"},
    "on_hold": {"in_progress", "resolved", "canceled"},
    "resolved": {"in_progress", "closed"},
    "closed": set(),
    "canceled": set(),
}
LABELS = {"id": "reference", "opened_at": "opened time", "category": "category", "impact": "impact",
          "urgency": "urgency", "priority": "priority", "assignment_group": "assignment group", "state": "state"}


@incident_rule("ITIL-I1", "Incident record complete")
def record_complete(timeline: Timeline, context: Context) -> list[Finding]:
    missing = [label for name, label in LABELS.items() if getattr(timeline, name) in (None, "")]
    if not (timeline.description or timeline.title):
        missing.append("description")
    if missing:
        return [finding("ITIL-I1", timeline, Verdict.FAIL, "The incident record lacks: " + ", ".join(missing) + ".",
                        details={"missing": missing})]
    return [finding("ITIL-I1", timeline, Verdict.PASS, "The incident record has every required field.")]


@incident_rule("ITIL-I2", "Priority follows the impact x urgency matrix")
def priority_matrix(timeline: Timeline, context: Context) -> list[Finding]:
    t = timeline
    if t.impact is None or t.urgency is None or t.priority is None:
        return [finding("ITIL-I2", t, Verdict.NA, "Impact, urgency or priority not recorded (see ITIL-I1).")]
    expected = context.settings.priority_for(t.impact, t.urgency)
    if expected != t.priority:
        return [finding("ITIL-I2", t, Verdict.FAIL, f"Priority is {t.priority}, but impact {t.impact} and urgency "
                        f"{t.urgency} give priority {expected} in the configured matrix.",
                        details={"expected": expected})]
    return [finding("ITIL-I2", t, Verdict.PASS,
                    f"Priority {t.priority} matches impact {t.impact} x urgency {t.urgency}.")]


@incident_rule("ITIL-I3", "Legal lifecycle and resolution fields")
def lifecycle(timeline: Timeline, context: Context) -> list[Finding]:
    t = timeline
    problems = []
    states = [change.state for change in sorted(t.state_history, key=lambda c: c.at)]
    for before, after in zip(states, states[1:]):
        if after != before and after not in TRANSITIONS.get(before, set()):
            problems.append(f"illegal transition {before} -> {after}")
    if t.state in ("resolved", "closed"):
        for name, label in (("close_code", "resolution code"), ("close_notes", "resolution notes"),
                            ("resolved_at", "resolved time")):
            if not getattr(t, name):
                problems.append(f"{t.state} without {label}")
    if t.state == "closed" and t.closed_at is None:
        problems.append("closed without a closed time")
    if t.closed_at and t.resolved_at and t.closed_at < t.resolved_at:
        problems.append(f"closed ({context.fmt(t.closed_at)}) before resolved ({context.fmt(t.resolved_at)})")
    if t.closed_at and t.resolved_at is None:
        problems.append("closed but never resolved")
    refs = t.refs("resolved", "closed")
    if problems:
        return [finding("ITIL-I3", t, Verdict.FAIL, "Lifecycle problem: " + "; ".join(problems) + ".", evidence=refs)]
    if t.state is None:
        return [finding("ITIL-I3", t, Verdict.NA, "No state recorded.")]
    return [finding("ITIL-I3", t, Verdict.PASS, f"State {t.state.replace('_', ' ')} reached through legal "
                    "transitions with its resolution fields.", evidence=refs)]


def on_hold_time(timeline: Timeline, until: datetime) -> timedelta:
    """Total time On Hold before `until`, from the state history."""
    changes = sorted(timeline.state_history, key=lambda c: c.at)
    total, held_since = timedelta(0), None
    for change in changes:
        if change.at > until:
            break
        if change.state == "on_hold" and held_since is None:
            held_since = change.at
        elif change.state != "on_hold" and held_since is not None:
            total += change.at - held_since
            held_since = None
    if held_since is not None:
        total += until - held_since
    return total


def _sla(rule: str, timeline: Timeline, context: Context, *, what: str, minutes: int | None,
         end: datetime | None, pause: bool) -> Finding:
    start = timeline.opened_at
    if minutes is None:
        return finding(rule, timeline, Verdict.NA, f"No {what} SLA configured for priority {timeline.priority}.")
    assert start is not None
    allowed = timedelta(minutes=minutes)
    held = on_hold_time(timeline, end or context.now) if pause else timedelta(0)
    deadline = start + allowed + held
    paused = f" (plus {human_delta(held)} On Hold)" if held else ""
    refs = timeline.refs("acknowledged" if what == "response" else "resolved")
    target = f"P{timeline.priority} {what} target {human_delta(allowed)}{paused}"
    if end is None:
        if context.now > deadline:
            return finding(rule, timeline, Verdict.FAIL, f"{target}: breached, still open "
                           f"{human_delta(context.now - deadline)} past {context.fmt(deadline)}.", deadline=deadline,
                           evidence=refs)
        return finding(rule, timeline, Verdict.NA, f"{target}: not reached yet, due {context.fmt(deadline)}.",
                       deadline=deadline)
    took = end - start - held
    if end > deadline:
        return finding(rule, timeline, Verdict.FAIL, f"{target}: took {human_delta(took)}, "
                       f"{human_delta(end - deadline)} over.", deadline=deadline, actual=end, evidence=refs,
                       details={"kind": what, "met": False, "minutes": took / timedelta(minutes=1)})
    return finding(rule, timeline, Verdict.PASS, f"{target}: met in {human_delta(took)}.", deadline=deadline,
                   actual=end, evidence=refs, details={"kind": what, "met": True,
                                                       "minutes": took / timedelta(minutes=1)})


@incident_rule("ITIL-I4", "Response and resolution within the SLA for the priority")
def sla(timeline: Timeline, context: Context) -> list[Finding]:
    t = timeline
    if t.priority is None or t.opened_at is None or t.state == "canceled":
        return [finding("ITIL-I4", t, Verdict.NA, "No priority or opened time, or the incident was canceled.")]
    target = context.settings.sla.get(t.priority)
    response = target.response_minutes if target else None
    resolution = target.resolution_minutes if target else None
    return [_sla("ITIL-I4", t, context, what="response", minutes=response, end=t.acknowledged_at, pause=False),
            _sla("ITIL-I4", t, context, what="resolution", minutes=resolution, end=t.resolved_at,
                 pause=context.settings.pause_on_hold)]


@incident_rule("ITIL-I5", "Major incident has a post-incident review and a problem record before closure")
def major_review(timeline: Timeline, context: Context) -> list[Finding]:
    t = timeline
    if not is_major(t, context):
        return [finding("ITIL-I5", t, Verdict.NA, "Not a major incident.")]
    refs = t.refs("pir", "problem", "closed")
    if t.closed_at is None:
        todo = [x for x, ok in (("a post-incident review", t.pir_at), ("a problem record", t.problem_id)) if not ok]
        text = ("Not closed yet; before closing it needs " + " and ".join(todo) + ".") if todo else \
            "Not closed yet; review and problem record are in place."
        return [finding("ITIL-I5", t, Verdict.NA, text, evidence=refs)]
    problems = []
    if t.pir_at is None:
        problems.append("no post-incident review")
    elif t.pir_at > t.closed_at:
        problems.append(f"the review ({context.fmt(t.pir_at)}) came after closure")
    if not t.problem_id:
        problems.append("no problem record")
    elif t.problem_linked_at and t.problem_linked_at > t.closed_at:
        problems.append(f"problem {t.problem_id} was linked after closure")
    if problems:
        return [finding("ITIL-I5", t, Verdict.FAIL, f"Major incident closed {context.fmt(t.closed_at)} with "
                        + " and ".join(problems) + ".", deadline=t.closed_at, evidence=refs)]
    return [finding("ITIL-I5", t, Verdict.PASS, f"Review held {context.fmt(t.pir_at)} and problem {t.problem_id} "
                    "linked before closure.", evidence=refs)]


RULES = [record_complete, priority_matrix, lifecycle, sla, major_review]
