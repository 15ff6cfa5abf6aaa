"""The `itsm-bridge` command. The only place that turns exceptions into messages and exit codes.

Exit codes: 0 ok; 1 findings (verification failed, work left undelivered, demo did not converge);
2 usage or config error. Humans get tables; every reporting command takes ``--json`` for machines.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from rich.markup import escape

from bridge.cli_common import (
    _config_option,
    _json_option,
    console,
    err_console,
    handle_errors,
    kv_table,
    load,
    print_json,
)

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="itsm-bridge")
def main(verbose: int) -> None:
    """Keep PagerDuty (and other responder tools) in step with ServiceNow, with an audit trail.

    \b
    Start here:
      itsm-bridge demo                         see it work end to end on simulators (about 30 s)
      itsm-bridge sandbox                      run the simulators to try your own config
      itsm-bridge config validate --config F   check a config before going live
      itsm-bridge run --config F               run the daemon (webhooks, polls, delivery)
      itsm-bridge compliance check --config F  check a period against ITIL and DORA
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A poll still running when its next run is due is skipped on purpose (max_instances=1): not news.
    logging.getLogger("apscheduler").setLevel(logging.ERROR if verbose < 2 else logging.DEBUG)


# -- run / sync -------------------------------------------------------------------------------------
@main.command()
@_config_option
@click.option("--host", help="Address to listen on (default: [server] host, 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: [server] port, 8080).")
@handle_errors
def run(config_path: Path, host: str | None, port: int | None) -> None:
    """Run the daemon: webhook server, scheduled polls and delivery, until SIGTERM.

    Webhooks go to POST /webhooks/<connection name>; GET /healthz and GET /metrics (Prometheus) are
    served on the same port. Unfinished work survives a stop or a crash and resumes on the next start.
    """
    from bridge.daemon import Daemon
    from bridge.runtime import Runtime

    config = load(config_path)
    runtime = Runtime.build(config)
    migrated = runtime.store.upgrade()  # before serving: a database a newer release wrote is refused (exit 2)
    if migrated.changed:
        err_console.print(f"itsm-bridge: {escape(migrated.describe())}", highlight=False)
    daemon = Daemon(runtime, host=host or config.server.host, port=port if port is not None else config.server.port)
    err_console.print(f"itsm-bridge: {len(runtime.routes)} route(s), listening on "
                      f"{host or config.server.host}:{port if port is not None else config.server.port}")
    daemon.run()


@main.command()
@_config_option
@click.option("--once", is_flag=True, required=True, help="Run one poll-and-deliver cycle and exit.")
@_json_option
@handle_errors
def sync(config_path: Path, once: bool, as_json: bool) -> None:
    """Poll every connection once, process and deliver everything due, then exit.

    Exits 1 if anything is left undelivered or dead-lettered, so a cron job or CI notices.
    """
    from bridge.daemon import sync_once
    from bridge.runtime import Runtime

    runtime = Runtime.build(load(config_path))
    runtime.store.create_schema()
    report = sync_once(runtime)
    data = {"ok": report.ok, "poll_errors": report.poll_errors, "inbox_pending": report.inbox_pending,
            "outbox_pending": report.outbox_pending, "dead_letters": report.dead_letters}
    if as_json:
        print_json(data)
    else:
        console.print(kv_table("sync --once", {k: v for k, v in data.items() if k != "poll_errors"}))
        for error in report.poll_errors:
            err_console.print(f"[red]{error}[/]")
        if report.outbox_pending:
            err_console.print("Some writes are waiting to retry: see itsm-bridge status.")
    sys.exit(0 if report.ok else 1)


@main.command()
@_config_option
@_json_option
@handle_errors
def status(config_path: Path, as_json: bool) -> None:
    """Queue depths, retrying writes, open dead-letters and, per connection, its queue, circuit breaker
    and rate limit. Exit 1 if anything is dead-lettered."""
    from bridge.status import status_report
    from bridge.store import Store

    config = load(config_path)
    store = Store(config.database.url, base_dir=config.base_dir)
    store.create_schema()
    report = status_report(store, config)
    if as_json:
        print_json(report)
    else:
        console.print(kv_table("itsm-bridge status", {k: v for k, v in report.items()
                                                        if not isinstance(v, (list, dict))}))
        _print_connections(report["connections"])
        if report["events_waiting_behind_dead_letters"]:
            err_console.print(f"[bold red]{report['events_waiting_behind_dead_letters']} event(s) are held back "
                              "behind dead-lettered events of the same incident: replay or discard them.[/]")
        for letter in report["open_dead_letters"]:
            err_console.print(f"[red]dead-letter {letter['id']}[/] ({letter['kind']}, {letter['connection']}): "
                              f"{escape(letter['error'])}", highlight=False, soft_wrap=True)
    sys.exit(1 if report["dead_letters"] else 0)


def _print_connections(connections: dict) -> None:  # type: ignore[type-arg]
    """One row per connection; an open breaker is also said in red, since its ops are not being tried."""
    from rich.table import Table

    table = Table(title="connections", title_justify="left")
    for column in ("connection", "pending", "oldest pending", "dead-letters", "breaker", "failures",
                   "reopens at", "rate/min"):
        table.add_column(column, overflow="fold")
    for name, item in connections.items():
        breaker = item["breaker"]
        age = item["oldest_pending_age_seconds"]
        table.add_row(name, str(item["outbox_pending"]), "-" if age is None else f"{age:.0f}s ago",
                      str(item["dead_letters"]), breaker["state"], str(breaker["failures"]),
                      breaker["reopens_at"] or "-", f"{item.get('rate_limit_per_minute', '-'):g}"
                      if "rate_limit_per_minute" in item else "-")
    console.print(table)
    for name, item in connections.items():
        breaker = item["breaker"]
        if breaker["state"] != "closed":
            err_console.print(f"[bold red]circuit breaker of {name} is {breaker['state']}[/] after "
                              f"{breaker['failures']} transient failure(s); next probe at "
                              f"{breaker['reopens_at'] or 'now'}; last error: {escape(breaker['last_error'] or '-')}",
                              highlight=False, soft_wrap=True)


def _register_subcommands() -> None:
    from bridge.cli_admin import audit_group, config_group, dead_letter_group, mappings_group
    from bridge.cli_backfill import backfill
    from bridge.cli_db import db_group
    from bridge.cli_demo import demo, sandbox
    from compliance.cli import compliance_group

    for command in (config_group, mappings_group, audit_group, dead_letter_group, compliance_group, backfill, demo,
                    sandbox):
        main.add_command(command)
    main.add_command(db_group)


_register_subcommands()
