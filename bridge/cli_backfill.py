"""`itsm-bridge backfill`: a period's existing incidents into the desk, with a progress bar."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bridge.cli_common import _config_option, _json_option, console, err_console, handle_errors, kv_table, load, print_json


def _moment(value: str) -> datetime:
    """``2026-11-01``, ``2026-11-01T08:00``, ``2026-11-01T08:00:00Z`` or ``7d``/``12h`` (ago), in UTC."""
    text = value.strip()
    if text[:-1].isdigit() and text[-1:] in ("d", "h"):
        amount = int(text[:-1])
        return datetime.now(timezone.utc) - (timedelta(days=amount) if text[-1] == "d" else timedelta(hours=amount))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (2026-11-01, 2026-11-01T08:00Z, 7d, 12h)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@click.command()
@_config_option
@click.option("--since", required=True, help="Start of the period: 2026-11-01, 2026-11-01T08:00Z, 7d or 12h ago.")
@click.option("--until", "until_", help="End of the period (default: now).")
@click.option("--route", help="Only this route (default: every enabled route whose source keeps history).")
@click.option("--dry-run", is_flag=True, help="Read and report what would happen; write nothing anywhere.")
@click.option("--restart", is_flag=True, help="Read the whole period again instead of resuming an interrupted run.")
@_json_option
@handle_errors
def backfill(config_path: Path, since: str, until_: str | None, route: str | None, dry_run: bool, restart: bool,
             as_json: bool) -> None:
    """Bring the incidents of a period from the source tool into the desk.

    \b
    Every incident created (or, for tools that list by update, changed) in the period gets its ticket;
    a ticket that already carries the incident's correlation id is linked instead of duplicated, and
    incidents already linked are only updated where they differ. Safe to run twice; an interrupted run
    resumes where it stopped (--restart reads the whole period again). Requests keep to each
    connection's rate limit.

    \b
      itsm-bridge backfill --since 2026-11-01 --dry-run     # what would happen, per incident
      itsm-bridge backfill --since 30d --route pagerduty-to-servicenow
    Exit 0 when everything landed, 1 when some ops are dead-lettered or still waiting, 2 on usage errors.
    """
    from bridge.backfill import backfill as run_backfill
    from bridge.backfill import select_routes
    from bridge.runtime import Runtime

    start, end = _moment(since), (_moment(until_) if until_ else datetime.now(timezone.utc))
    if start >= end:
        raise click.BadParameter(f"--since {since} is not before --until {until_ or 'now'}", param_hint="--since")
    runtime = Runtime.build(load(config_path))
    runtime.store.create_schema()
    try:
        select_routes(runtime, route)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--route") from exc
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, disable=as_json, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(what: str, done: int, total: int | None) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        report = run_backfill(runtime, since=start, until=end, route=route, dry_run=dry_run, restart=restart,
                              progress=progress)
    runtime.store.dispose()
    if as_json:
        print_json(report.to_dict())
    else:
        _print(report)
    sys.exit(1 if report.outbox_pending or report.dead_letters else 0)


def _print(report) -> None:  # type: ignore[no-untyped-def]
    title = f"backfill {report.since} .. {report.until}" + (" (dry run: nothing written)" if report.dry_run else "")
    summary = {"incidents read": report.incidents}
    if not report.dry_run:
        summary.update({"new to the inbox": report.stored, "already in the inbox": report.already_stored,
                        "ops still pending": report.outbox_pending, "dead-letters": report.dead_letters})
    for source, resume in report.resumed_from.items():
        summary[f"resumed {source} from"] = resume
    console.print(kv_table(title, summary))
    routes = Table(title="per route", title_justify="left")
    for column in ("route", "to create or link", "existing ticket found", "already linked", "filtered"):
        routes.add_column(column)
    for name, counts in report.routes.items():
        routes.add_row(name, str(counts["created_or_linked"]), str(counts["existing_ticket"]),
                       str(counts["already_linked"]), str(counts["filtered"]))
    console.print(routes)
    if report.rows:
        rows = Table(title="incidents", title_justify="left")
        for column in ("route", "incident", "status", "created", "title", "outcome", "ticket"):
            rows.add_column(column)
        for row in report.rows:
            rows.add_row(row["route"], row["incident"], row["status"], row["created"] or "", row["title"][:50],
                         row["outcome"], row["ticket"] or "")
        console.print(rows)
