"""`compliance report`, `record`, `import` and `assess-recurring`: the commands that read or write one timeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from bridge.cli_common import _config_option, _json_option, console, err_console, handle_errors, print_json
from compliance.timeline import EVENTS


def _find(config: Any, incident_id: str, input_path: Path | None) -> Any:
    from compliance.cli import _store
    from compliance.timeline import read_jsonl

    if input_path is not None:
        timelines, _errors = read_jsonl(input_path)
        known = {t.id: t for t in timelines}
    else:
        from compliance.store import load_timelines

        known = {t.id: t for t in load_timelines(_store(config))}
    if incident_id not in known:
        hint = ", ".join(sorted(known)[:8]) or "none"
        raise click.BadParameter(f"no timeline for {incident_id!r} (known: {hint})", param_hint="INCIDENT")
    return known[incident_id]


@click.command("report")
@_config_option
@click.argument("incident_id", metavar="INCIDENT")
@click.option("--stage", type=click.Choice(["initial", "intermediate", "final", "reclassified"]), required=True)
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the timeline from this JSON Lines file instead of the database.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report document (IR-1.2.1 JSON) here when it is complete.")
@_json_option
@handle_errors
def report_command(config_path: Path, incident_id: str, stage: str, input_path: Path | None, out_path: Path | None,
                   as_json: bool) -> None:
    """Draft the DORA major incident report (ITS 2025/302 Annex I) of one incident for one stage.

    The draft is only produced when every mandatory field is there; it then validates against the ESAs'
    IR-1.2.1 schema. Otherwise the missing fields are listed by number and the command exits 1.
    """
    from compliance.cli import _setup
    from compliance.report import LABELS, draft_report, field_values

    config, settings = _setup(config_path)
    timeline = _find(config, incident_id, input_path)
    document, missing = draft_report(timeline, settings, stage)
    values = field_values(timeline, settings, stage)
    if as_json:
        print_json({"ok": not missing, "incident": incident_id, "stage": stage, "missing": missing,
                    "fields": {n: v for n, v in values.items() if v not in (None, "", [])},
                    "report": document if not missing else None})
    else:
        table = Table(title=f"DORA {stage} report draft for {incident_id}", title_justify="left")
        for column in ("field", "", "value"):
            table.add_column(column, overflow="fold")
        section = {"initial": "12", "reclassified": "12", "intermediate": "123", "final": "1234"}[stage]
        missing_numbers = {item.split(" ", 1)[0] for item in missing}
        for number, value in values.items():
            if number[0] not in section:
                continue
            shown = "[bold red]MISSING[/]" if number in missing_numbers else escape(
                json.dumps(value, ensure_ascii=False) if isinstance(value, (list, bool)) else str(value or "-"))
            table.add_row(number, LABELS[number], shown)
        console.print(table)
        if missing:
            err_console.print(f"[bold red]{len(missing)} mandatory field(s) missing[/]; no report was produced:")
            for item in missing:
                err_console.print(f"  - {escape(item)}", highlight=False)
        else:
            console.print("[green]complete[/]: the draft validates against IR-1.2.1"
                          + (f"; written to {out_path}" if out_path else "; use --out FILE or --json to get it"))
    if out_path is not None and not missing:
        out_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    sys.exit(1 if missing else 0)


@click.command("record")
@_config_option
@click.argument("incident_id", metavar="INCIDENT")
@click.option("--event", "event", required=True, metavar="NAME", help="One of: " + ", ".join(EVENTS))
@click.option("--at", "at_text", required=True, metavar="TIME", help="ISO 8601 with zone, or 'now'.")
@click.option("--ref", "ref", help="Reference or value, depending on the event (report reference, root cause...).")
@click.option("--create", is_flag=True, help="Start a timeline if the incident has none yet.")
@_json_option
@handle_errors
def record_command(config_path: Path, incident_id: str, event: str, at_text: str, ref: str | None, create: bool,
                   as_json: bool) -> None:
    """Record something that happened outside any tool (a report submitted, management informed...).

    Each record is an audit entry; the finding that relies on it cites it.
    """
    from compliance.cli import _setup, _store, _time
    from compliance.store import UnknownIncident, record_event
    from compliance.timeline import EventError

    config, settings = _setup(config_path)
    at = _time(at_text, settings, name="--at")
    try:
        entry = record_event(_store(config), incident_id, event, at, ref, create=create)
    except EventError as exc:
        raise click.BadParameter(str(exc), param_hint="--event/--ref") from None
    except UnknownIncident:
        raise click.BadParameter(f"no timeline for {incident_id!r}; check the id (like pagerduty:P123) or pass "
                                 "--create", param_hint="INCIDENT") from None
    ref_text = f"audit#{entry['seq']} sha256:{entry['hash'][:16]}"
    if as_json:
        print_json({"ok": True, "incident": incident_id, "event": event, "audit": entry})
    else:
        console.print(f"recorded {event} for {escape(incident_id)} at {entry['data']['at']} as {ref_text}",
                      soft_wrap=True, highlight=False)


@click.command("import")
@_config_option
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_json_option
@handle_errors
def import_command(config_path: Path, path: Path, as_json: bool) -> None:
    """Import timelines from JSON Lines (one incident per line); each import is an audit entry.

    Bad lines are reported with their number and field and skipped; the rest are imported. Exit 1 if any.
    """
    from compliance.cli import _print_line_errors, _setup, _store
    from compliance.store import import_timelines
    from compliance.timeline import read_jsonl

    config, _settings = _setup(config_path)
    timelines, errors = read_jsonl(path)
    count = import_timelines(_store(config), timelines)
    if as_json:
        print_json({"ok": not errors, "imported": count,
                    "errors": [{"line": e.line, "field": e.field, "message": e.message} for e in errors]})
    else:
        console.print(f"imported {count} timeline(s) from {path}")
        _print_line_errors(errors)
    sys.exit(1 if errors else 0)


@click.command("assess-recurring")
@_config_option
@click.option("--month", required=True, metavar="YYYY-MM", help="The month assessed.")
@click.option("--at", "at_text", default="now", show_default=True, metavar="TIME")
@click.option("--note", help="What was concluded.")
@handle_errors
def assess_command(config_path: Path, month: str, at_text: str, note: str | None) -> None:
    """Record the monthly recurring-incident assessment (RTS 2024/1772 Art. 8(2)); DORA-R1 looks for it."""
    import re

    from compliance.cli import _setup, _store, _time
    from compliance.store import record_assessment

    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise click.BadParameter("write the month as YYYY-MM, e.g. 2026-03", param_hint="--month")
    config, settings = _setup(config_path)
    entry = record_assessment(_store(config), month, _time(at_text, settings, name="--at"), note)
    console.print(f"recorded the recurring-incident assessment for {month} as audit#{entry['seq']}")


def register(group: click.Group) -> None:
    for command in (report_command, record_command, import_command, assess_command):
        group.add_command(command)
