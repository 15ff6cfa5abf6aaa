"""The `compliance` commands through click, on a config holding only [database] and [compliance]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from compliance_helpers import FIXTURES
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compliance.cli import compliance_group

NOW = ["--now", "2026-12-31T12:00:00Z"]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = Ed25519PrivateKey.generate()
    (tmp_path / "signing.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    text = (FIXTURES / "config.toml").read_text().replace('"env:ITSM_BRIDGE_EVIDENCE_KEY"', '"file:signing.pem"')
    from tests.conftest import database_url, fresh_store

    fresh_store(tmp_path).dispose()  # an empty schema (PostgreSQL keeps tables between tests)
    text = text.replace("sqlite:///compliance-test.db", database_url(tmp_path))
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def invoke(*args: str) -> object:
    return CliRunner().invoke(compliance_group, list(args), catch_exceptions=False)


def test_check_from_a_file_exits_1_on_failures_and_lists_rule_ids(config: Path) -> None:
    result = invoke("check", "--config", str(config), "--input", str(FIXTURES / "incidents.jsonl"), "--json", *NOW)
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["ok"] is False and data["incidents"] == 6
    late = [f for f in data["findings"] if f["rule_id"] == "DORA-T1" and f["verdict"] == "fail"]
    assert late[0]["incident_id"] == "pagerduty:PMAJ002"
    assert late[0]["message"].endswith("submitted 15:42: 42 minutes late.")
    assert late[0]["deadline"] == "2026-05-04T13:00:00Z" and late[0]["actual"] == "2026-05-04T13:42:00Z"


def test_check_one_pack_and_a_period(config: Path) -> None:
    result = invoke("check", "--config", str(config), "--input", str(FIXTURES / "incidents.jsonl"), "--pack", "itil",
                    "--from", "2026-03-01", "--to", "2026-03-31", "--json", *NOW)
    data = json.loads(result.output)
    assert data["incidents"] == 2  # PMAJ001 and PSLA005 were opened in March
    assert {f["rule_id"][:4] for f in data["findings"]} == {"ITIL"}
    assert result.exit_code == 1  # PSLA005 breached its SLAs


def test_check_table_output(config: Path) -> None:
    result = invoke("check", "--config", str(config), "--input", str(FIXTURES / "incidents.jsonl"), *NOW)
    assert "Checks by rule" in result.output and "DORA-T1" in result.output and "ITIL-I4" in result.output
    assert "6 incident(s):" in result.output


def _detail_verdicts(output: str) -> list[str]:
    """The verdict cell of each row of the findings table (a row folded over several lines counts once)."""
    title = "All findings" if "All findings" in output else "Findings needing attention"
    table = output.split(title, 1)[1].split("└", 1)[0]
    cells = [line.split("│") for line in table.splitlines() if line.startswith("│")]
    return [row[3].strip() for row in cells if row[3].strip()]


def test_check_table_shows_at_most_limit_rows_and_says_how_many_more(config: Path) -> None:
    check = ["check", "--config", str(config), "--input", str(FIXTURES / "incidents.jsonl"), *NOW]
    summary = json.loads(invoke(*check, "--json").output)["summary"]
    attention = summary["fail"] + summary["warn"]  # 14 in the fixture
    result = invoke(*check, "--limit", "3")
    assert result.exit_code == 1  # the cap changes what is shown, not the verdict
    assert _detail_verdicts(result.output) == ["fail", "fail", "fail"]
    assert (f"... and {attention - 3:,} more findings not shown: --limit 0 lists them all, --json prints every "
            "finding; or narrow the check with --from/--to/--pack.") in result.output
    assert "DORA-REC1" in result.output.split("Findings needing attention")[0]  # the summary by rule stays whole
    assert f"6 incident(s): {summary['fail']} failed" in result.output

    every = invoke(*check, "--limit", "0")
    assert sorted(_detail_verdicts(every.output)) == ["fail"] * summary["fail"] + ["warn"] * summary["warn"]
    assert "more finding" not in every.output and every.exit_code == 1
    assert len(_detail_verdicts(invoke(*check).output)) == attention  # fewer than the default 200: all shown

    everything = invoke(*check, "--all", "--limit", "5")
    assert len(_detail_verdicts(everything.output)) == 5
    assert f"... and {summary['total'] - 5:,} more findings not shown" in everything.output

    assert CliRunner().invoke(compliance_group, [*check, "--limit", "-1"]).exit_code == 2


def test_check_json_holds_every_finding_in_the_same_document(config: Path) -> None:
    result = invoke("check", "--config", str(config), "--input", str(FIXTURES / "incidents.jsonl"), "--json",
                    "--limit", "1", *NOW)  # --limit caps the table only
    data = json.loads(result.output)
    assert result.exit_code == 1
    assert set(data) == {"ok", "period", "incidents", "summary", "findings", "input_errors"}
    assert len(data["findings"]) == data["summary"]["total"] == 148
    assert sum(f["verdict"] == "fail" for f in data["findings"]) == data["summary"]["fail"]
    assert data["period"] == {"from": None, "to": None} and data["input_errors"] == []


def test_print_json_stream_prints_what_print_json_would(capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import datetime, timezone

    from bridge.cli_common import print_json, print_json_stream

    head = {"ok": False, "when": datetime(2026, 3, 1, tzinfo=timezone.utc), "a": {"z": 1, "b": [1, 2]}}
    for items in ([], [{"y": 1, "x": "é"}], [{"n": n} for n in range(2500)]):
        print_json_stream(head, "findings", iter(items), batch=1000)
        streamed = capsys.readouterr().out
        print_json({**head, "findings": items})
        assert json.loads(streamed) == json.loads(capsys.readouterr().out)
        assert streamed.count("\n") == len(items) + 2  # one item a line, never one giant line
    with pytest.raises(ValueError):
        print_json_stream({"findings": 1}, "findings", [])


def test_malformed_input_lines_are_reported_and_the_rest_checked(config: Path) -> None:
    result = invoke("check", "--config", str(config), "--input", str(FIXTURES / "malformed.jsonl"), "--json", *NOW)
    data = json.loads(result.output)
    assert result.exit_code == 1 and data["incidents"] == 2
    assert {"line": 2, "field": "detcted_at", "message": "unknown field; did you mean 'detected_at'?"} in \
        data["input_errors"]


def test_config_errors_name_the_option_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[compliance.entity]\nmember_state = "XX"\ntype = "bank"\n'
                    '[compliance.sla.1]\nrespons_minutes = 5\n')
    result = CliRunner().invoke(compliance_group, ["check", "--config", str(path)])
    assert result.exit_code == 2
    assert "compliance.entity.member_state" in result.output and "compliance.entity.type" in result.output
    assert "compliance.sla.1.respons_minutes: unrecognized option (hint: did you mean 'response_minutes'?)" in \
        result.output


def test_import_record_report_and_check_from_the_store(config: Path) -> None:
    assert invoke("import", "--config", str(config), str(FIXTURES / "incidents.jsonl")).exit_code == 0
    result = invoke("record", "--config", str(config), "pagerduty:PMAJ003", "--event", "report_intermediate",
                    "--at", "2026-12-30T10:00:00+01:00", "--ref", "BAFIN-IR-8120-2")
    assert result.exit_code == 0 and "as audit#7 sha256:" in result.output
    typo = CliRunner().invoke(compliance_group, ["record", "--config", str(config), "pagerduty:PMAJ003", "--event",
                                                 "report_intermedate", "--at", "now", "--ref", "x"])
    assert typo.exit_code == 2 and "did you mean 'report_intermediate'" in typo.output
    check = json.loads(invoke("check", "--config", str(config), "--json", *NOW).output)
    t2 = next(f for f in check["findings"] if f["rule_id"] == "DORA-T2" and f["incident_id"] == "pagerduty:PMAJ003")
    assert t2["verdict"] == "pass" and t2["evidence"][-1].startswith("audit#7 sha256:")
    aud = next(f for f in check["findings"] if f["rule_id"] == "AUD-1")
    assert aud["verdict"] == "pass" and "7 entries" in aud["message"]


def test_report_complete_and_incomplete(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "final.json"
    ok = invoke("report", "--config", str(config), "pagerduty:PMAJ001", "--stage", "final",
                "--input", str(FIXTURES / "incidents.jsonl"), "--out", str(out))
    assert ok.exit_code == 0 and json.loads(out.read_text())["incidentSubmission"] == "final_report"
    missing = invoke("report", "--config", str(config), "pagerduty:PMAJ003", "--stage", "intermediate",
                     "--input", str(FIXTURES / "incidents.jsonl"), "--json")
    data = json.loads(missing.output)
    assert missing.exit_code == 1 and data["report"] is None and "3.35 indicators of compromise" in data["missing"]


def test_export_then_verify_bundle_then_tamper(config: Path, tmp_path: Path) -> None:
    invoke("import", "--config", str(config), str(FIXTURES / "incidents.jsonl"))
    out = tmp_path / "evidence"
    result = invoke("export", "--config", str(config), "--from", "2026-01-01", "--to", "2026-12-31", "--out", str(out),
                    "--json", *NOW)
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)["files"]) == {"incidents.csv", "timelines.jsonl", "findings.json",
                                                      "findings.csv", "audit.jsonl", "audit-head.json", "report.html"}
    assert invoke("verify-bundle", str(out)).exit_code == 0
    (out / "report.html").write_text("<html>nothing to see</html>")
    bad = invoke("verify-bundle", str(out), "--json")
    assert bad.exit_code == 1 and json.loads(bad.output)["changed"] == ["report.html"]


def test_export_without_a_signing_key_is_a_config_error(config: Path) -> None:
    config.write_text(config.read_text().replace('signing_key = "file:signing.pem"\n', ""))
    result = CliRunner().invoke(compliance_group, ["export", "--config", str(config), "--from", "2026-01-01",
                                                   "--to", "2026-01-31", "--out", str(config.parent / "x")])
    assert result.exit_code == 2 and "compliance.signing_key: no signing key configured" in result.output
