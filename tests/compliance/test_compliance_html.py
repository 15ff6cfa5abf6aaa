"""The HTML report renders in headless Chromium, self-contained, with deadlines drawn against actual times."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from compliance_helpers import FIXTURES, make_settings

from compliance.checker import check
from compliance.html import render_report
from compliance.timeline import read_jsonl

CHROMIUM = Path("/usr/bin/chromium")
NOW = datetime(2026, 12, 31, 12, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def html() -> str:
    timelines, _ = read_jsonl(FIXTURES / "incidents.jsonl")
    settings = make_settings()
    findings = check(timelines, settings, now=NOW)
    return render_report(timelines=timelines, findings=findings, settings=settings, period=(None, None), now=NOW,
                         audit_head={"before": {"seq": 0, "hash": "0" * 64}, "after": {"seq": 9, "hash": "ab" * 32},
                                     "entries": 9})


def test_report_is_self_contained_and_escapes_data(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<script" not in html
    assert "<svg" in html and "initial due" in html and "DORA-T1" in html


def test_incident_text_is_escaped_not_run() -> None:
    from compliance.timeline import Timeline

    hostile = Timeline(id="pd:<b>x</b>", title="<script>alert(1)</script>")
    page = render_report(timelines=[hostile], findings=[], settings=make_settings(), period=(None, None), now=NOW,
                         audit_head={"before": {"seq": 0, "hash": "0"}, "after": {"seq": 0, "hash": "0"},
                                     "entries": 0})
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_shows_sla_attainment_and_mean_times(html: str) -> None:
    assert "SLA attainment" in html and "MTTA" in html
    assert "0/1 (0 %)" in html  # PSLA005: P2 response and resolution both breached


def _chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed at /usr/bin/chromium "
                                                   "(apt-get install chromium)")
def test_report_renders_in_headless_chromium(html: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,900", page.as_uri(), tmp_path=tmp_path)
    assert shot.exists() and shot.stat().st_size > 20_000  # a blank page is a few KB
    dom = _chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path).stdout
    assert "Compliance report: Beispiel Zahlungsdienste GmbH" in dom
    assert "pagerduty:PMAJ002" in dom and "42 minutes late" in dom
    assert dom.count("<svg") >= 3
