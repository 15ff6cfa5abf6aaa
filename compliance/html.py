"""The self-contained HTML report of an evidence bundle: one file, inline CSS and SVG, no script, no fetch.

It must open years later on an auditor's air-gapped laptop, so nothing is loaded from anywhere. Each
incident gets an SVG time line: what happened (grey), each report deadline (dashed) and each report as
submitted (green on time, red late, with the overrun shaded). Summary, SLA attainment per priority and
MTTA/MTTR per priority follow the figures an ITIL practice review asks for. Times are the Member State's.
"""

from __future__ import annotations

from collections import defaultdict
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from statistics import mean
from typing import Any

from jinja2 import Environment

from compliance.calendar import fmt_local, human_delta, zone_of
from compliance.checker import summarize
from compliance.deadlines import dora_deadlines
from compliance.rules import Finding
from compliance.settings import ComplianceSettings
from compliance.timeline import Timeline

WIDTH, LEFT, RIGHT = 960, 24, 24


def sla_attainment(timelines: Sequence[Timeline], findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """Per priority: how many responses and resolutions met their SLA (from ITIL-I4 findings)."""
    priority = {t.id: t.priority for t in timelines}
    counts: dict[int, dict[str, list[int]]] = defaultdict(lambda: {"response": [0, 0], "resolution": [0, 0]})
    for f in findings:
        kind = f.details.get("kind") if f.rule_id == "ITIL-I4" else None
        p = priority.get(f.incident_id or "")
        if kind and p is not None:
            counts[p][kind][0] += bool(f.details.get("met"))
            counts[p][kind][1] += 1
    rows = []
    for p in sorted(counts):
        row: dict[str, Any] = {"priority": p}
        for kind, (met, total) in counts[p].items():
            row[kind] = f"{met}/{total} ({100 * met / total:.0f} %)" if total else "-"
        rows.append(row)
    return rows


def mean_times(timelines: Sequence[Timeline]) -> list[dict[str, Any]]:
    """Mean time to acknowledge and to resolve, from the desk record's opening, per priority."""
    by_priority: dict[int, dict[str, list[timedelta]]] = defaultdict(lambda: {"ack": [], "res": []})
    for t in timelines:
        if t.priority is None or t.opened_at is None:
            continue
        if t.acknowledged_at:
            by_priority[t.priority]["ack"].append(t.acknowledged_at - t.opened_at)
        if t.resolved_at:
            by_priority[t.priority]["res"].append(t.resolved_at - t.opened_at)

    def avg(values: list[timedelta]) -> str:
        return human_delta(timedelta(seconds=mean(v.total_seconds() for v in values))) if values else "-"

    return [{"priority": p, "incidents": sum(1 for t in timelines if t.priority == p),
             "mtta": avg(v["ack"]), "mttr": avg(v["res"])} for p, v in sorted(by_priority.items())]


def _marks(t: Timeline, settings: ComplianceSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events = [(label, at) for label, at in (
        ("occurred", t.occurred_at), ("detected", t.detected_at), ("opened", t.opened_at),
        ("acknowledged", t.acknowledged_at), ("classified major", t.classified_major_at),
        ("recovered", t.recovered_at), ("resolved", t.resolved_at), ("closed", t.closed_at)) if at]
    deadlines = []
    for d in dora_deadlines(t, settings):
        deadlines.append({"stage": d.stage, "due": d.due, "submitted": d.submitted,
                          "late": d.submitted is not None and d.submitted > d.due})
    for r in t.reports:
        if r.submitted_at and r.stage in ("intermediate", "reclassified") and \
                all(r.submitted_at != d["submitted"] for d in deadlines):
            deadlines.append({"stage": f"{r.stage} (update)", "due": None, "submitted": r.submitted_at, "late": False})
    return [{"label": label, "at": at} for label, at in events], deadlines


def _scale(times: list[datetime]) -> Callable[[datetime], float]:
    """Order-preserving x positions where each gap grows with the log of its length.

    Incidents mix minutes (detected, acknowledged) with weeks (final report); a linear axis would pile
    the first hours into one unreadable dot. Every distinct moment gets room for its label, longer gaps
    stay visibly longer, and before/after -- what an auditor compares -- is always exact.
    """
    moments = sorted(set(times))
    weights = [1.0 + math.log1p((b - a).total_seconds() / 60) for a, b in zip(moments, moments[1:])]
    total = sum(weights) or 1.0
    positions, cursor = {moments[0]: 0.0}, 0.0
    for moment, weight in zip(moments[1:], weights):
        cursor += weight
        positions[moment] = cursor
    usable = WIDTH - LEFT - RIGHT
    return lambda at: round(LEFT + positions[at] / total * usable, 1) if len(moments) > 1 else WIDTH / 2


def timeline_svg(t: Timeline, settings: ComplianceSettings) -> dict[str, Any]:
    """Coordinates for the incident's SVG: the template only draws what is computed here."""
    events, deadlines = _marks(t, settings)
    times = [e["at"] for e in events] + [d[k] for d in deadlines for k in ("due", "submitted") if d[k]]
    if not times:
        return {"events": [], "deadlines": [], "ticks": []}
    x = _scale(times)
    zone = zone_of(settings.entity.member_state)
    drawn_events = [{**e, "x": x(e["at"]), "y": 34 + 14 * (i % 3), "when": fmt_local(e["at"], zone)}
                    for i, e in enumerate(sorted(events, key=lambda e: e["at"]))]
    drawn = []
    for i, d in enumerate(deadlines):
        drawn.append({**d, "x_due": x(d["due"]) if d["due"] else None,
                      "x_sub": x(d["submitted"]) if d["submitted"] else None, "y": 110 + 12 * (i % 3),
                      "due_text": fmt_local(d["due"], zone), "sub_text": fmt_local(d["submitted"], zone)})
    lo, hi = min(times), max(times)
    ticks = [{"x": x(lo), "text": fmt_local(lo, zone)}, {"x": x(hi), "text": fmt_local(hi, zone)}]
    return {"events": drawn_events, "deadlines": drawn, "ticks": ticks}


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Compliance report {{ entity.name or "" }} {{ period_text }}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1040px;color:#1d2430}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d6dbe3}
h3{font-size:15px;margin:18px 0 4px}.muted{color:#5b6675}table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e6e9ee;vertical-align:top}th{background:#f4f6f9}
td:first-child,td.v{white-space:nowrap}
.cards{display:flex;gap:12px;margin:12px 0}.card{flex:1;border:1px solid #d6dbe3;border-radius:6px;padding:10px}
.card b{font-size:22px;display:block}.pass{color:#17733a}.fail{color:#b3261e}.warn{color:#9a6700}.na{color:#5b6675}
.v{font-weight:600;text-transform:uppercase;font-size:12px}code{font-size:12px;word-break:break-all}
svg{display:block;margin:6px 0;background:#fbfcfd;border:1px solid #e6e9ee}
</style></head><body>
<h1>Compliance report: {{ entity.name or "(entity name not configured)" }}</h1>
<div class="muted">LEI {{ entity.lei or "-" }} &middot; {{ entity.type or "-" }} &middot; {{ entity.member_state }}
 &middot; period {{ period_text }} &middot; generated {{ generated }}</div>
<div class="cards" id="summary">
{% for v, label in [("fail","failed"),("warn","warnings"),("pass","passed"),("n/a","not applicable")] %}
<div class="card"><b class="{{ 'na' if v == 'n/a' else v }}">{{ summary[v] }}</b>{{ label }}</div>{% endfor %}
<div class="card"><b>{{ timelines|length }}</b>incidents</div></div>
<p>Audit trail segment of the period: entries {{ audit_head.before.seq + 1 }}&ndash;{{ audit_head.after.seq }}
({{ audit_head.entries }} entries); chain head before <code>{{ audit_head.before.hash }}</code>, after
<code>{{ audit_head.after.hash }}</code>.</p>
<h2>Findings needing attention</h2>
{% if attention %}<table><tr><th>rule</th><th>incident</th><th>verdict</th><th>finding</th><th>evidence</th></tr>
{% for f in attention %}<tr><td>{{ f.rule_id }}</td><td>{{ f.incident_id or "(period)" }}</td>
<td class="v {{ f.verdict.value }}">{{ f.verdict.value }}</td><td>{{ f.message }}</td>
<td><code>{{ f.evidence|join(", ") }}</code></td></tr>{% endfor %}</table>
{% else %}<p class="pass">Every check passed.</p>{% endif %}
<h2>Checks by rule</h2><table><tr><th>rule</th><th>pass</th><th>fail</th><th>warn</th><th>n/a</th></tr>
{% for rule, c in summary.by_rule.items() %}<tr><td>{{ rule }}</td><td>{{ c.get("pass", 0) }}</td>
<td>{{ c.get("fail", 0) }}</td><td>{{ c.get("warn", 0) }}</td><td>{{ c.get("n/a", 0) }}</td></tr>{% endfor %}</table>
<h2>SLA attainment</h2>
{% if sla %}<table><tr><th>priority</th><th>response within SLA</th><th>resolution within SLA</th></tr>
{% for r in sla %}<tr><td>P{{ r.priority }}</td><td>{{ r.response }}</td><td>{{ r.resolution }}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">No SLA is configured or no incident reached one.</p>{% endif %}
<h2>Mean time to acknowledge and resolve</h2>
<table><tr><th>priority</th><th>incidents</th><th>MTTA</th><th>MTTR</th></tr>
{% for r in means %}<tr><td>P{{ r.priority }}</td><td>{{ r.incidents }}</td><td>{{ r.mtta }}</td><td>{{ r.mttr }}</td></tr>
{% endfor %}</table>
<h2>Incidents</h2>
{% for item in incidents %}{% set t = item.timeline %}{% set g = item.svg %}
<section id="{{ t.id }}"><h3>{{ t.id }} &mdash; {{ t.title or "" }}</h3>
<div class="muted">desk {{ t.desk_record or "-" }} &middot; P{{ t.priority or "-" }} &middot; {{ t.state or "-" }}
{% if t.classified_major %} &middot; <b>major (DORA)</b>{% endif %}</div>
{% if g.events or g.deadlines %}
<svg width="{{ width }}" height="186" viewBox="0 0 {{ width }} 186" role="img" aria-label="timeline of {{ t.id }}">
<line x1="{{ left }}" y1="90" x2="{{ width - right }}" y2="90" stroke="#8a94a3"/>
{% for e in g.events %}<circle cx="{{ e.x }}" cy="90" r="4" fill="#5b6675"><title>{{ e.label }} {{ e.when }}</title></circle>
<line x1="{{ e.x }}" y1="{{ e.y + 3 }}" x2="{{ e.x }}" y2="86" stroke="#c5ccd6"/>
<text x="{{ e.x }}" y="{{ e.y }}" font-size="10" text-anchor="middle" fill="#38414d">{{ e.label }}</text>{% endfor %}
<text x="{{ width - right }}" y="182" font-size="9" text-anchor="end" fill="#8a94a3">order exact; gaps compressed (log scale)</text>
{% for d in g.deadlines %}{% if d.x_due is not none %}
<line x1="{{ d.x_due }}" y1="60" x2="{{ d.x_due }}" y2="{{ d.y - 10 }}" stroke="#b3261e" stroke-dasharray="4 3"><title>{{ d.stage }} due {{ d.due_text }}</title></line>
<text x="{{ d.x_due }}" y="{{ d.y }}" font-size="10" text-anchor="middle" fill="#b3261e">{{ d.stage }} due</text>{% endif %}
{% if d.x_sub is not none %}{% if d.late %}<rect x="{{ d.x_due }}" y="84" width="{{ [d.x_sub - d.x_due, 1]|max }}" height="12" fill="#b3261e" opacity="0.25"/>{% endif %}
<rect x="{{ d.x_sub - 5 }}" y="85" width="10" height="10" fill="{{ '#b3261e' if d.late else '#17733a' }}"><title>{{ d.stage }} submitted {{ d.sub_text }}</title></rect>
<text x="{{ d.x_sub }}" y="{{ d.y + 36 }}" font-size="10" text-anchor="middle" fill="{{ '#b3261e' if d.late else '#17733a' }}">{{ d.stage }} sent</text>{% endif %}
{% endfor %}
{% for k in g.ticks %}<text x="{{ k.x }}" y="14" font-size="10" text-anchor="{{ 'start' if loop.first else 'end' }}" fill="#5b6675">{{ k.text }}</text>{% endfor %}
</svg>
{% if g.deadlines %}<table><tr><th>report</th><th>due</th><th>submitted</th></tr>
{% for d in g.deadlines %}<tr><td>{{ d.stage }}</td><td>{{ d.due_text }}</td>
<td class="{{ 'fail' if d.late else '' }}">{{ d.sub_text }}</td></tr>{% endfor %}</table>{% endif %}
{% endif %}
<table>{% for f in item.findings %}<tr><td>{{ f.rule_id }}</td><td class="v {{ 'na' if f.verdict.value == 'n/a' else f.verdict.value }}">{{ f.verdict.value }}</td>
<td>{{ f.message }}</td></tr>{% endfor %}</table></section>
{% endfor %}
<p class="muted">Produced by itsm-bridge. Verify this bundle with <code>itsm-bridge compliance verify-bundle DIR</code>:
manifest.json lists every file's SHA-256 and is signed with Ed25519.</p>
</body></html>
"""


def render_report(*, timelines: Sequence[Timeline], findings: Sequence[Finding], settings: ComplianceSettings,
                  period: tuple[datetime | None, datetime | None], now: datetime,
                  audit_head: dict[str, Any]) -> str:
    zone = zone_of(settings.entity.member_state)
    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    attention = [f for f in findings if f.verdict.value in ("fail", "warn")]
    attention.sort(key=lambda f: (f.verdict.value != "fail", f.incident_id or "", f.rule_id))
    incidents = [{"timeline": t, "svg": timeline_svg(t, settings),
                  "findings": [f for f in findings if f.incident_id == t.id and f.verdict.value != "n/a"]}
                 for t in timelines]
    period_text = f"{fmt_local(period[0], zone) if period[0] else 'start'} to " \
                  f"{fmt_local(period[1], zone) if period[1] else 'now'}"
    return env.from_string(TEMPLATE).render(
        entity=settings.entity, period_text=period_text, generated=fmt_local(now, zone), summary=summarize(findings),
        attention=attention, sla=sla_attainment(timelines, findings), means=mean_times(timelines),
        incidents=incidents, timelines=timelines, audit_head=audit_head, width=WIDTH, left=LEFT, right=RIGHT)
