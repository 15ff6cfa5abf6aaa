"""Evidence bundles: verified when intact; changed, added and missing files and bad signatures are caught."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from compliance_helpers import FIXTURES, at, make_settings
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bridge import audit
from compliance.checker import check
from compliance.evidence import export_bundle, verify_bundle
from compliance.store import import_timelines, record_event
from compliance.timeline import read_jsonl

NOW = datetime(2026, 12, 31, 12, tzinfo=timezone.utc)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def bundle(tmp_path: Path, cstore, key) -> Path:
    timelines, _ = read_jsonl(FIXTURES / "incidents.jsonl")
    import_timelines(cstore, timelines)
    record_event(cstore, "pagerduty:PMAJ003", "report_intermediate", at("2026-12-30T09:00:00Z"), "CA-2")
    settings = make_settings()
    findings = check(timelines, settings, now=NOW)
    steps: list[str] = []
    out = tmp_path / "bundle"
    export_bundle(out, timelines=timelines, findings=findings, audit_entries=audit.iter_entries(cstore),
                  period=(None, None), settings=settings, signing_key=key, now=NOW,
                  progress=lambda step, done, total: steps.append(step))
    assert steps[0] == "incidents" and steps[-1] == "done"
    return out


def test_an_intact_bundle_verifies(bundle: Path, key) -> None:
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["audit-head.json", "audit.jsonl", "findings.csv", "findings.json", "incidents.csv",
                     "manifest.json", "report.html", "timelines.jsonl"]
    result = verify_bundle(bundle, key.public_key().public_bytes_raw())
    assert result.ok and result.signature_ok and result.audit_ok, result.messages
    head = json.loads((bundle / "audit-head.json").read_text())
    assert head["before"]["seq"] == 0 and head["after"]["seq"] == 7 and head["entries"] == 7


def test_changed_added_and_missing_files_are_named(bundle: Path) -> None:
    with (bundle / "findings.csv").open("a") as handle:
        handle.write("DORA-T1,pagerduty:PMAJ002,pass,edited\n")
    (bundle / "notes.txt").write_text("added later")
    (bundle / "incidents.csv").unlink()
    result = verify_bundle(bundle)
    assert not result.ok and result.signature_ok
    assert (result.changed, result.added, result.missing) == (["findings.csv"], ["notes.txt"], ["incidents.csv"])
    assert "changed since signing: findings.csv" in result.messages


def test_a_manifest_edited_to_match_a_tampered_file_fails_the_signature(bundle: Path) -> None:
    from compliance.evidence import sha256_file

    (bundle / "findings.csv").write_text("rule_id\n")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["findings.csv"] = sha256_file(bundle / "findings.csv")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = verify_bundle(bundle)
    assert not result.ok and not result.signature_ok and result.changed == []


def test_a_bundle_re_signed_with_another_key_fails_when_the_key_is_known(bundle: Path, key) -> None:
    from compliance.evidence import canonical

    forger = Ed25519PrivateKey.generate()
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.pop("signature")
    manifest["public_key"] = base64.b64encode(forger.public_key().public_bytes_raw()).decode()
    manifest["signature"] = base64.b64encode(forger.sign(canonical(manifest))).decode()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert verify_bundle(bundle).ok  # self-consistent...
    result = verify_bundle(bundle, key.public_key().public_bytes_raw())
    assert not result.ok and "different key" in result.messages[0]  # ...but not the entity's key


def test_a_rewritten_audit_segment_is_caught_even_with_a_matching_manifest_hash(bundle: Path, tmp_path: Path,
                                                                               key) -> None:
    lines = (bundle / "audit.jsonl").read_text().splitlines()
    entry = json.loads(lines[2])
    entry["data"]["ref"] = "CA-FORGED"
    lines[2] = json.dumps(entry)
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    (copy / "audit.jsonl").write_text("\n".join(lines) + "\n")
    result = verify_bundle(copy)
    assert not result.ok and result.changed == ["audit.jsonl"] and result.audit_ok is False
    assert any("does not chain: entry 3" in m for m in result.messages)


def test_missing_manifest(tmp_path: Path) -> None:
    result = verify_bundle(tmp_path)
    assert not result.ok and result.missing == ["manifest.json"]


def test_export_refuses_a_non_empty_directory(tmp_path: Path, key) -> None:
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(FileExistsError):
        export_bundle(tmp_path, timelines=[], findings=[], audit_entries=[], period=(None, None),
                      settings=make_settings(), signing_key=key, now=NOW)


def test_audit_segment_of_a_period_carries_the_heads_around_it(cstore) -> None:
    from compliance.evidence import audit_segment

    timelines, _ = read_jsonl(FIXTURES / "incidents.jsonl")
    import_timelines(cstore, timelines[:2])
    entries = list(audit.iter_entries(cstore))
    segment, head = audit_segment(entries, at(entries[1]["at"]), None)
    assert [e["seq"] for e in segment][:1] in ([1], [2])  # same-second entries may share a timestamp
    before, after = head["before"], head["after"]
    assert audit.verify_entries(segment, start_hash=before["hash"], start_seq=before["seq"] + 1).ok
    assert after == {"seq": entries[-1]["seq"], "hash": entries[-1]["hash"]}
