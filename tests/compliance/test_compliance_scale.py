"""What makes a check of 100,000 incidents fast stays correct: R1 windows, counting, the collector pause, the bench."""

from __future__ import annotations

import gc
import importlib.util
from pathlib import Path
from typing import Any

from compliance_helpers import major, run

from compliance.checker import collector_paused, summarize
from compliance.rules import Finding, Verdict
from compliance.timeline import Timeline

BENCH = Path(__file__).resolve().parents[2] / "bench" / "compliance_check.py"


def _minor(incident: str, opened: str) -> Timeline:
    return Timeline.model_validate({"id": incident, "opened_at": opened, "occurred_at": opened, "major": False,
                                    "root_cause": "Disk full", "classification": {
                                        "critical_services": True, "clients_affected_pct": 6, "downtime_hours": 1.5}})


def test_r1_reports_each_six_month_window_not_inside_an_earlier_one(settings) -> None:
    a, b = _minor("pd:A", "2026-01-10T10:00:00Z"), _minor("pd:B", "2026-03-01T10:00:00Z")
    c, d = _minor("pd:C", "2026-06-01T10:00:00Z"), _minor("pd:D", "2026-08-20T10:00:00Z")
    other = Timeline.model_validate({**_minor("pd:E", "2026-03-02T10:00:00Z").model_dump(), "root_cause": "DNS"})
    reported = major(id="pd:M", recurring_incidents=["pd:D", "pd:C", "pd:B"],
                     reports=[{"stage": "initial", "submitted_at": "2026-08-21T10:00:00Z", "ref": "CA"}])
    findings = run("DORA-R1", None, settings, "2027-01-01T00:00:00Z", all_timelines=[d, other, c, reported, b, a])
    # A..C (A + 6 months is 10 July), B..D; C..D lies inside B..D; E alone has no partner
    assert [(f.verdict, f.message.split("(")[2].split(")")[0]) for f in findings] == [
        (Verdict.FAIL, "pd:A, pd:B, pd:C"), (Verdict.PASS, "pd:B, pd:C, pd:D")]
    assert "(pd:M)" in findings[1].message


def test_summarize_counts_by_rule_in_order_of_appearance() -> None:
    findings = [Finding("R2", "pd:1", Verdict.FAIL, ""), Finding("R1", "pd:1", Verdict.PASS, ""),
                Finding("R2", "pd:2", Verdict.NA, ""), Finding("R2", "pd:3", Verdict.FAIL, ""),
                Finding("R3", None, Verdict.WARN, ""), Finding("R3", "", Verdict.WARN, "")]
    summary = summarize(findings)
    assert summary == {"total": 6, "pass": 1, "fail": 2, "warn": 2, "n/a": 1, "incidents": 3,
                       "by_rule": {"R2": {"fail": 2, "n/a": 1}, "R1": {"pass": 1}, "R3": {"warn": 2}}}
    assert list(summary["by_rule"]["R2"]) == ["fail", "n/a"]


def test_collector_paused_restores_the_collector_and_leaves_nesting_to_the_outer_pause() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: stays off
    finally:
        gc.enable()


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("compliance_check_bench", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_times_what_the_check_command_runs(cstore: Any, tmp_path: Path) -> None:
    from compliance.service import check_store

    bench = _bench()
    timelines = bench.incidents(12)
    assert len({t.id for t in timelines}) == 12
    assert timelines[6].opened_at == timelines[0].opened_at - bench.STEP  # the second copy, 30 minutes earlier
    entries = bench.fill(cstore, timelines)
    assert entries == sum(t.audit_events or 1 for t in timelines)
    config = tmp_path / "bench.toml"
    bench.write_config(config, cstore.url)
    figures = bench.timed_check(config)
    assert figures["incidents"] == figures["stored"] == 12 and figures["chain_ok"] is True
    assert figures["audit_entries"] == entries and figures["seconds"] > 0 and figures["peak_rss_mb"] > 0
    from compliance.cli import _period
    from compliance.settings import settings_from

    bench_settings = settings_from(bench.SETTINGS)
    same = check_store(cstore, bench_settings, now=bench.NOW, period=_period(bench_settings, *bench.PERIOD))[1]
    assert figures["findings"] == len(same) and figures["fail"] == summarize(same)["fail"]
