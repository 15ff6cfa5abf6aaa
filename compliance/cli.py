"""`itsm-bridge compliance ...`: check, export, verify-bundle, report, record, import, assess-recurring.

Same conventions as the rest of the CLI: tables for people, ``--json`` for machines, exit 0 when all is
well, 1 when a check fails or a bundle does not verify, 2 for usage and config errors. A config holding
only ``[database]`` and ``[compliance]`` is enough. With ``--input FILE.jsonl`` timelines come from a
file instead of the database (no audit trail then, so AUD-1 is n/a).
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from bridge.cli_common import (_config_option, _json_option, console, err_console, handle_errors, load, print_json,
                               print_json_stream)
from compliance.checker import (PeriodError, check, collector_paused, has_failures, in_period, parse_bound,
                                summarize)
from compliance.rules import Context, Finding, Verdict
from compliance.settings import ComplianceSettings, settings_from
from compliance.timeline import LineError, Timeline, read_jsonl

compliance_group = click.Group("compliance", help="Check incidents against ITIL, DORA and NIS2; export evidence.")
COLOURS = {"pass": "green", "fail": "bold red", "warn": "yellow", "n/a": "dim"}
TABLE_LIMIT = 200  # rows of the findings table by default: 100,000 incidents give millions of findings


def _hidden_now(function: Any) -> Any:
    return click.option("--now", "now_text", hidden=True, help="Pretend it is this time (tests, replays).")(function)


def _input_option(function: Any) -> Any:
    return click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        help="Read timelines from this JSON Lines file instead of the database.")(function)


def _period_options(required: bool) -> Any:
    def wrap(function: Any) -> Any:
        function = click.option("--to", "end_text", required=required, metavar="DATE",
                                help="Last day of the period (inclusive), e.g. 2026-03-31.")(function)
        return click.option("--from", "start_text", required=required, metavar="DATE",
                            help="First day of the period, e.g. 2026-01-01 (incidents by opened time).")(function)
    return wrap


def _setup(config_path: Path) -> tuple[Any, ComplianceSettings]:
    config = load(config_path)
    return config, settings_from(config.compliance, source=str(config_path))


def _store(config: Any) -> Any:
    import compliance.store  # noqa: F401 - registers the incident_timeline table
    from bridge.store import Store

    store = Store(config.database.url, base_dir=config.base_dir)
    store.create_schema()
    return store


def _time(text: str | None, settings: ComplianceSettings, *, name: str) -> datetime:
    if not text or text == "now":
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time such as 2026-03-14T09:30:00+01:00",
                                 param_hint=name) from None
    if moment.tzinfo is None:
        raise click.BadParameter("give the time zone, e.g. 2026-03-14T09:30:00+01:00 or ...Z", param_hint=name)
    return moment.astimezone(timezone.utc)


def _period(settings: ComplianceSettings, start: str | None,
            end: str | None) -> tuple[datetime | None, datetime | None]:
    from compliance.calendar import zone_of

    zone = zone_of(settings.entity.member_state)
    try:
        return parse_bound(start, zone=zone, end=False), parse_bound(end, zone=zone, end=True)
    except PeriodError as exc:
        raise click.BadParameter(str(exc), param_hint="--from/--to") from None


def _gather(config: Any, settings: ComplianceSettings, input_path: Path | None, period: tuple[Any, Any],
            packs: list[str] | None, now: datetime) -> tuple[list[Timeline], list[Finding], list[LineError], Context]:
    """Timelines of the period and their findings, from a file or from the store (with the chain verified)."""
    with collector_paused(set_aside=True):  # the command prints them and exits
        if input_path is None:
            from compliance.service import check_store

            try:
                timelines, findings, context = check_store(_store(config), settings, now=now, period=period,
                                                           packs=packs)
            except PeriodError as exc:
                raise click.BadParameter(str(exc), param_hint="--pack") from None
            return timelines, findings, [], context
        everything, errors = read_jsonl(input_path)
        timelines = in_period(everything, *period)
        context = Context(settings=settings, now=now, audit_verification=None, all_timelines=everything,
                          period=period, recurring_assessments=None)
        try:
            findings = check(timelines, settings, packs=packs, context=context)
        except PeriodError as exc:
            raise click.BadParameter(str(exc), param_hint="--pack") from None
        return timelines, findings, errors, context


def _packs(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def _print_findings(findings: list[Finding], context: Context, summary: dict[str, Any], *, show_all: bool,
                    limit: int) -> None:
    """The summary by rule (always complete), then the findings needing attention (or all of them) up to
    `limit` rows (0: no cap) and how many more there are."""
    from compliance.packs import PACKS

    titles = {rule.rule_id: rule.title for rules in PACKS.values() for rule in rules}
    table = Table(title="Checks by rule", title_justify="left")
    for column in ("rule", "what it checks", "pass", "fail", "warn", "n/a"):
        table.add_column(column)
    for rule, counts in summary["by_rule"].items():
        table.add_row(rule, titles.get(rule, ""), *(f"[{COLOURS[v]}]{counts.get(v, 0)}[/]" if counts.get(v) else "0"
                                                   for v in ("pass", "fail", "warn", "n/a")))
    console.print(table)
    total = summary["total"] if show_all else summary["fail"] + summary["warn"]
    if not total:
        console.print("[green]Nothing needs attention.[/]")
        return
    shown = iter(findings) if show_all else (f for f in findings if f.verdict in (Verdict.FAIL, Verdict.WARN))
    if limit:
        shown = islice(shown, limit)
    detail = Table(title="All findings" if show_all else "Findings needing attention", title_justify="left")
    for column in ("incident", "rule", "verdict", "finding", "evidence"):
        detail.add_column(column, overflow="fold")
    for f in shown:
        verdict = f"[{COLOURS[f.verdict.value]}]{f.verdict.value}[/]"
        detail.add_row(escape(f.incident_id or "(period)"), f.rule_id, verdict,
                       escape(f.message), escape(" ".join(f.evidence)))
    console.print(detail)
    more = total - detail.row_count
    if more > 0:
        console.print(f"... and {more:,} more finding{'s' if more > 1 else ''} not shown: --limit 0 lists them all, "
                      "--json prints every finding; or narrow the check with --from/--to/--pack.", highlight=False,
                      soft_wrap=True)


def _print_line_errors(errors: list[LineError]) -> None:
    for error in errors:
        err_console.print(f"[red]input[/] {escape(str(error))}", highlight=False)


@compliance_group.command("check")
@_config_option
@_period_options(required=False)
@click.option("--pack", "pack_text", metavar="PACKS", help="Comma-separated packs (itil,dora,nis2,audit); "
              "default: compliance.packs.")
@_input_option
@click.option("--all", "show_all", is_flag=True, help="List passed and not-applicable findings too.")
@click.option("--limit", type=click.IntRange(min=0), default=TABLE_LIMIT, show_default=True, metavar="N",
              help="Show at most N rows in the findings table, then how many more there are (0: all). The "
                   "summary by rule always counts every finding, and --json prints every finding.")
@_json_option
@_hidden_now
@handle_errors
def check_command(config_path: Path, start_text: str | None, end_text: str | None, pack_text: str | None,
                  input_path: Path | None, show_all: bool, limit: int, as_json: bool, now_text: str | None) -> None:
    """Check every incident of the period against the rule packs. Exit 1 if any check fails.

    Each finding names its rule id (compliance-spec §7), the incident, the verdict, what it means, the
    deadline and the actual time where there is one, and the audit entries it rests on.
    """
    config, settings = _setup(config_path)
    period = _period(settings, start_text, end_text)
    now = _time(now_text, settings, name="--now")
    timelines, findings, errors, context = _gather(config, settings, input_path, period, _packs(pack_text), now)
    failed = has_failures(findings) or bool(errors)
    counts = summarize(findings)
    if as_json:  # streamed: millions of findings would be gigabytes as one string
        print_json_stream({"ok": not failed, "period": {"from": period[0], "to": period[1]},
                           "incidents": len(timelines), "summary": counts,
                           "input_errors": [{"line": e.line, "field": e.field, "message": e.message} for e in errors]},
                          "findings", (f.to_dict() for f in findings))
    else:
        _print_findings(findings, context, counts, show_all=show_all, limit=limit)
        _print_line_errors(errors)
        console.print(f"{len(timelines)} incident(s): {counts['fail']} failed, {counts['warn']} warning(s), "
                      f"{counts['pass']} passed" + (f"; {len(errors)} input line problem(s)" if errors else ""))
    sys.exit(1 if failed else 0)


@compliance_group.command("export")
@_config_option
@_period_options(required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="New directory for the evidence bundle.")
@click.option("--pack", "pack_text", metavar="PACKS", help="Comma-separated packs; default: compliance.packs.")
@_input_option
@_json_option
@_hidden_now
@handle_errors
def export_command(config_path: Path, start_text: str, end_text: str, out_dir: Path, pack_text: str | None,
                   input_path: Path | None, as_json: bool, now_text: str | None) -> None:
    """Write a signed evidence bundle for the period: CSV, JSON Lines, findings, audit segment, HTML report.

    manifest.json lists every file's SHA-256 and is signed with the Ed25519 key of compliance.signing_key;
    anyone can check the bundle offline with `itsm-bridge compliance verify-bundle DIR`.
    """
    from rich.progress import Progress

    from bridge.audit import iter_entries
    from compliance.evidence import export_bundle
    from compliance.settings import load_signing_key

    config, settings = _setup(config_path)
    key = load_signing_key(settings, base_dir=config.base_dir)
    period = _period(settings, start_text, end_text)
    now = _time(now_text, settings, name="--now")
    timelines, findings, errors, context = _gather(config, settings, input_path, period, _packs(pack_text), now)
    _print_line_errors(errors)
    entries = iter_entries(_store(config)) if input_path is None else iter([])
    head = context.audit_verification
    chain_head = {"seq": head.head_seq, "hash": head.head_hash} if head else None
    with Progress(console=err_console, transient=True, disable=as_json) as progress:
        task = progress.add_task("exporting", total=8)

        def tick(step: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=f"exporting {step}")
        try:
            manifest = export_bundle(out_dir, timelines=timelines, findings=findings, audit_entries=entries,
                                     period=period, settings=settings, signing_key=key, now=now,
                                     chain_head=chain_head, progress=tick)
        except FileExistsError as exc:
            raise click.UsageError(str(exc)) from None
    counts = summarize(findings)
    if as_json:
        print_json({"ok": True, "out": str(out_dir), "files": manifest["files"], "summary": counts,
                    "public_key": manifest["public_key"], "chain_head": manifest["chain_head"]})
    else:
        console.print(f"[green]wrote[/] {out_dir}: {len(timelines)} incident(s), {counts['fail']} failed and "
                      f"{counts['warn']} warning finding(s), {manifest['segment']['entries']} audit entries; "
                      f"{len(manifest['files'])} files signed (public key {manifest['public_key']}).", soft_wrap=True)


@compliance_group.command("verify-bundle")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--public-key", "public_key", help="Expected Ed25519 public key: base64, or a PEM/base64 file.")
@_json_option
def verify_bundle_command(directory: Path, public_key: str | None, as_json: bool) -> None:
    """Check an evidence bundle offline: signature, every file's hash, no file added or missing, audit chain.

    Exit 0 when intact, 1 naming each changed, added or missing file otherwise.
    """
    from compliance.evidence import parse_public_key, verify_bundle

    expected: Any = None
    if public_key:
        path = Path(public_key)
        try:
            expected = parse_public_key(path if path.is_file() else public_key)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--public-key") from None
    result = verify_bundle(directory, expected)
    if as_json:
        print_json(result.to_dict())
    elif result.ok:
        console.print(f"[green]bundle intact[/]: signature valid, every file matches the manifest, "
                      f"audit segment chains ({directory})")
    else:
        err_console.print(f"[bold red]bundle NOT intact[/] ({directory}):")
        for message in result.messages:
            err_console.print(f"  - {escape(message)}", highlight=False)
    sys.exit(0 if result.ok else 1)


from compliance import cli_records  # noqa: E402  (report, record, import, assess-recurring)

cli_records.register(compliance_group)
