"""Evidence bundles an auditor can verify on their own, offline, with nothing but the bundle.

A bundle is a directory: ``incidents.csv``, ``timelines.jsonl``, ``findings.json``, ``findings.csv``,
``audit.jsonl`` (the hash-chained audit entries of the period) with ``audit-head.json`` (the chain head
just before and at the end of that segment, so the segment can be re-chained and an auditor holding an
earlier head sees nothing was cut), ``report.html`` (self-contained), and ``manifest.json``: every file's
SHA-256, the period, the chain head and an Ed25519 signature over the canonical JSON of the manifest
without its signature (sorted keys, compact separators, UTF-8). The public key is in the manifest; an
auditor should compare it with the one the entity published, which `verify_bundle` accepts.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.audit import GENESIS, read_jsonl, verify_entries
from bridge.model import format_time
from compliance.checker import summarize
from compliance.rules import Finding
from compliance.settings import ComplianceSettings
from compliance.timeline import Timeline, dump_line

MANIFEST = "manifest.json"
Progress = Callable[[str, int, int], None]


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cell(value: Any) -> str:
    """CSV cell; text that a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    text = "" if value is None else (format_time(value) if isinstance(value, datetime) else str(value))
    return "'" + text if text[:1] in ("=", "+", "@", "\t", "\r") else text


def _csv(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue()


def incidents_csv(timelines: Sequence[Timeline], findings: Sequence[Finding]) -> str:
    header = ["id", "title", "source", "desk_record", "priority", "state", "major", "opened_at", "detected_at",
              "classified_major_at", "initial_report_at", "intermediate_report_at", "final_report_at",
              "recovered_at", "resolved_at", "closed_at", "fail", "warn"]
    rows = []
    for t in timelines:
        mine = [f for f in findings if f.incident_id == t.id]
        first = {s: (t.reports_of(s) or [None])[0] for s in ("initial", "intermediate", "final")}
        rows.append([t.id, t.title, t.source, t.desk_record, t.priority, t.state, t.classified_major, t.opened_at,
                     t.detected_at, t.classified_major_at,
                     *[r.submitted_at if r else None for r in first.values()], t.recovered_at, t.resolved_at,
                     t.closed_at, sum(f.verdict.value == "fail" for f in mine),
                     sum(f.verdict.value == "warn" for f in mine)])
    return _csv(rows, header)


def findings_csv(findings: Sequence[Finding]) -> str:
    return _csv(([f.rule_id, f.incident_id, f.verdict.value, f.message, f.deadline, f.actual, " ".join(f.evidence)]
                 for f in findings), ["rule_id", "incident_id", "verdict", "message", "deadline", "actual", "evidence"])


def audit_segment(entries: Iterable[dict[str, Any]], start: datetime | None,
                  end: datetime | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The contiguous entries written in [start, end), and the chain head before and after them."""
    lo, hi = format_time(start), format_time(end)
    before = {"seq": 0, "hash": GENESIS}
    segment: list[dict[str, Any]] = []
    for entry in entries:
        if lo and entry["at"] < lo:
            before = {"seq": entry["seq"], "hash": entry["hash"]}
            continue
        if hi and entry["at"] >= hi:
            break
        segment.append(entry)
    after = {"seq": segment[-1]["seq"], "hash": segment[-1]["hash"]} if segment else dict(before)
    return segment, {"before": before, "after": after}


def export_bundle(out: Path, *, timelines: Sequence[Timeline], findings: Sequence[Finding],
                  audit_entries: Iterable[dict[str, Any]], period: tuple[datetime | None, datetime | None],
                  settings: ComplianceSettings, signing_key: Any, now: datetime,
                  chain_head: dict[str, Any] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Write the bundle into `out` (created; must be empty) and return the signed manifest."""
    from compliance.html import render_report

    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; export into a new directory so no stale file is mixed in")
    steps = 8
    tick = progress or (lambda step, done, total: None)
    tick("incidents", 0, steps)
    (out / "incidents.csv").write_text(incidents_csv(timelines, findings), encoding="utf-8")
    tick("timelines", 1, steps)
    (out / "timelines.jsonl").write_text("".join(dump_line(t) + "\n" for t in timelines), encoding="utf-8")
    tick("findings", 2, steps)
    findings_doc = {"summary": summarize(findings), "findings": [f.to_dict() for f in findings]}
    (out / "findings.json").write_text(json.dumps(findings_doc, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "findings.csv").write_text(findings_csv(findings), encoding="utf-8")
    tick("audit trail", 3, steps)
    segment, head = audit_segment(audit_entries, *period)
    with (out / "audit.jsonl").open("w", encoding="utf-8") as handle:
        for entry in segment:
            handle.write(json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
    head["entries"] = len(segment)
    (out / "audit-head.json").write_text(json.dumps(head, indent=2), encoding="utf-8")
    tick("report", 5, steps)
    html = render_report(timelines=timelines, findings=findings, settings=settings, period=period, now=now,
                         audit_head=head)
    (out / "report.html").write_text(html, encoding="utf-8")
    tick("manifest", 6, steps)
    files = {path.name: sha256_file(path) for path in sorted(out.iterdir()) if path.name != MANIFEST}
    public = signing_key.public_key().public_bytes_raw()
    manifest: dict[str, Any] = {
        "version": 1, "created_at": format_time(now),
        "period": {"from": format_time(period[0]), "to": format_time(period[1])},
        "entity": {"name": settings.entity.name, "lei": settings.entity.lei},
        "chain_head": chain_head or head["after"], "segment": head, "files": files,
        "public_key": base64.b64encode(public).decode(), "algorithm": "Ed25519",
    }
    manifest["signature"] = base64.b64encode(signing_key.sign(canonical(manifest))).decode()
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    tick("done", steps, steps)
    return manifest


@dataclass
class BundleVerification:
    """What an auditor needs to know: is it intact, and if not, exactly which files differ."""

    ok: bool
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    signature_ok: bool = False
    audit_ok: bool | None = None
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "changed": self.changed, "added": self.added, "missing": self.missing,
                "signature_ok": self.signature_ok, "audit_ok": self.audit_ok, "messages": self.messages}


def parse_public_key(value: str | bytes | Path) -> bytes:
    """Raw 32-byte Ed25519 public key from raw bytes, base64 text, or a PEM/base64 file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(value, bytes) and len(value) == 32:
        return value
    text = value.read_text(encoding="utf-8") if isinstance(value, Path) else (
        value.decode() if isinstance(value, bytes) else value)
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM file does not hold an Ed25519 public key")
        return key.public_bytes_raw()
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (44 characters of base64)")
    return raw


def _signature_ok(manifest: dict[str, Any], expected: bytes | None, messages: list[str]) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        listed = base64.b64decode(manifest["public_key"], validate=True)
        signature = base64.b64decode(manifest["signature"], validate=True)
        body = {k: v for k, v in manifest.items() if k != "signature"}
        Ed25519PublicKey.from_public_bytes(listed).verify(signature, canonical(body))
    except (KeyError, ValueError, TypeError, InvalidSignature):
        messages.append("the manifest's signature does not verify: manifest.json was altered or not signed "
                        "with the key it names")
        return False
    if expected is not None and listed != expected:
        messages.append("the manifest is signed with a different key than the one you expect")
        return False
    return True


def verify_bundle(directory: Path, public_key: str | bytes | Path | None = None) -> BundleVerification:
    """Check a bundle offline: signature, every listed file's hash, unlisted files, and the audit segment."""
    directory = Path(directory)
    result = BundleVerification(ok=False)
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        files: dict[str, str] = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        result.missing.append(MANIFEST)
        result.messages.append("manifest.json is missing or unreadable: nothing in this directory can be trusted")
        return result
    expected = parse_public_key(public_key) if public_key is not None else None
    result.signature_ok = _signature_ok(manifest, expected, result.messages)
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {MANIFEST}
    for name, digest in sorted(files.items()):
        if name not in present:
            result.missing.append(name)
        elif sha256_file(directory / name) != digest:
            result.changed.append(name)
    result.added = sorted(present - set(files))
    for label, names in (("changed since signing", result.changed), ("added (not in the manifest)", result.added),
                         ("missing", result.missing)):
        if names:
            result.messages.append(f"{label}: {', '.join(names)}")
    result.audit_ok = _audit_ok(directory, manifest, result.messages)
    result.ok = result.signature_ok and not (result.changed or result.added or result.missing) and \
        result.audit_ok is not False
    return result


def _audit_ok(directory: Path, manifest: dict[str, Any], messages: list[str]) -> bool | None:
    """Re-chain the audit segment from the head before it; it must end at the head after it."""
    segment = manifest.get("segment")
    path = directory / "audit.jsonl"
    if not segment or not path.exists():
        return None
    before, after = segment["before"], segment["after"]
    check = verify_entries(read_jsonl(path), start_hash=before["hash"], start_seq=before["seq"] + 1)
    if not check.ok:
        messages.append(f"the audit segment does not chain: entry {check.bad_seq}: {check.reason}")
        return False
    if (check.head_seq, check.head_hash) != (after["seq"], after["hash"]):
        messages.append(f"the audit segment ends at entry {check.head_seq}, not at the recorded head {after['seq']}")
        return False
    return True
