"""`itsm-bridge demo` and `itsm-bridge sandbox`: try the bridge without any real instance."""

from __future__ import annotations

import secrets
import signal
import sys
import threading
from pathlib import Path

import click
from rich.table import Table

from bridge.cli_common import console, err_console, kv_table, print_json
from bridge.demo_sources import SOURCES, source_names
from bridge.sandbox import sandbox_tools

SUMMARY_ROWS = ("incidents", "tickets", "updates", "notes", "resolved_from_desk", "desk_comments", "retries",
                "faults_injected", "dead_letters", "duplicates", "audit_entries", "audit_verified", "converged",
                "compliance_findings", "bundle_verified", "seconds")


@click.command()
@click.option("--source", "source", default="pagerduty", show_default=True, type=click.Choice(source_names()),
              help="The responders' tool to play the scenario in.")
@click.option("--incidents", default=24, show_default=True, type=click.IntRange(1, 500),
              help="How many incidents the responders open.")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the store and config (default: a new temporary folder).")
@click.option("--seed", default=7, show_default=True, help="Seed of the scenario and of the injected faults.")
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait at most for all three systems to agree (it stops as soon as they do).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def demo(source: str, incidents: int, workdir: Path | None, seed: int, timeout: float, as_json: bool) -> None:
    """Run a responder tool -> ServiceNow and Jira Service Management end to end on local simulators.

    \b
    The tool is PagerDuty unless --source names another:
      itsm-bridge demo --source opsgenie

    Starts the three simulators (with injected 5xx and 429 faults), a fresh SQLite store and the daemon,
    plays responders (trigger, acknowledge, notes, priority, reassign, resolve) and agents on both desks
    (comments, resolving tickets), waits for all three systems to agree, checks every pair, verifies the
    audit chain, runs the ITIL/DORA compliance check and writes a signed evidence bundle, and prints a
    summary. Exit 0 only if it converged with no duplicate ticket and the chain and bundle verify.
    The folder it names keeps the config, the store and the audit trail for you to inspect.
    """
    from bridge.demo import run_demo

    progress = (lambda _msg: None) if as_json else (lambda msg: err_console.print(f"[dim]{msg}[/]"))
    result = run_demo(incidents=incidents, workdir=workdir, seed=seed, timeout=timeout, source=source,
                      progress=progress)
    summary = result.summary
    if as_json:
        print_json(summary)
    else:
        console.print(kv_table(f"demo: {SOURCES[source].label} <-> ServiceNow + JSM",
                               {k: summary[k] for k in SUMMARY_ROWS}))
        desks = Table(title="per desk", title_justify="left")
        for column in ("desk", "tickets", "duplicates", "resolved from desk", "notes written"):
            desks.add_column(column)
        for name, counts in summary["desks"].items():
            desks.add_row(name, *(str(counts[key]) for key in ("tickets", "duplicates", "resolved_from_desk",
                                                                "notes_written")))
        console.print(desks)
        console.print(f"store, config and audit trail kept in {summary['workdir']}", soft_wrap=True)
        console.print(f"evidence bundle (signed): {summary['evidence_bundle']}", soft_wrap=True)
        console.print(f"try: itsm-bridge compliance check --config {summary['config']}", soft_wrap=True)
        console.print(f"     itsm-bridge compliance verify-bundle {summary['evidence_bundle']}", soft_wrap=True)
        for problem in result.problems[:20]:
            err_console.print(f"[red]not converged[/] {problem}")
    sys.exit(0 if result.ok else 1)


@click.command()
@click.argument("tools", nargs=-1, type=click.Choice(sandbox_tools()), metavar="[TOOL]...")
@click.option("--port", "ports", multiple=True, metavar="TOOL=PORT",
              help="Listen on this port for that tool (repeatable; default: any free port).")
@click.option("--pagerduty-port", type=int, help="Same as --port pagerduty=PORT.")
@click.option("--servicenow-port", type=int, help="Same as --port servicenow=PORT.")
@click.option("--jsm-port", type=int, help="Also run Jira Service Management, on this port (0: any free).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--webhook-url", help="Where the responder tool sends its webhooks, e.g. "
                                    "http://127.0.0.1:8080/webhooks/<connection>.")
@click.option("--user", default="itsm.bridge", show_default=True, help="Desk user (JSM: e-mail) to accept.")
@click.option("--password", help="Desk password / API token to accept (default: generated and printed).")
@click.option("--token", help="The responder tool's API token to accept (default: generated and printed).")
@click.option("--webhook-secret", help="The responder tool's webhook secret (default: generated and printed).")
def sandbox(tools: tuple[str, ...], ports: tuple[str, ...], pagerduty_port: int | None, servicenow_port: int | None,
            jsm_port: int | None, host: str, webhook_url: str | None, user: str, password: str | None,
            token: str | None, webhook_secret: str | None) -> None:
    """Run simulators of the real tools in the foreground to try a config against. Ctrl-C stops.

    \b
    With no TOOL: PagerDuty and ServiceNow. Name the ones you want, e.g.
      itsm-bridge sandbox opsgenie jsm
      itsm-bridge sandbox rootly servicenow --port servicenow=8081 --webhook-url http://127.0.0.1:8080/webhooks/rootly
    Tools: {tools}.

    \b
    The simulators speak the real APIs' paths, payloads, auth and errors; responder tools send signed
    webhooks for every change to --webhook-url. ServiceNow has a desk user jane.doe / sim-desk-password
    who can edit and comment like an agent; JSM (project OPS) has agent@example.com / sim-agent-token.
    Point a config's api_url / instance_url / url at the printed URLs and its secrets at the printed
    values (env:NAME or file:PATH), then run `itsm-bridge run --config ...`.
    """
    from bridge.sandbox import parse_ports, start_tools

    chosen = list(tools) or ["pagerduty", "servicenow"]
    if jsm_port is not None and "jsm" not in chosen:
        chosen.append("jsm")
    try:
        port_map = parse_ports(ports, pagerduty=pagerduty_port, servicenow=servicenow_port, jsm=jsm_port)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    running = start_tools(chosen, ports=port_map, host=host, webhook_url=webhook_url, user=user,
                          password=password or secrets.token_urlsafe(12), token=token or secrets.token_urlsafe(16),
                          webhook_secret=webhook_secret)
    for tool in running:
        for line in tool.lines:
            click.echo(line)
    click.echo("Ctrl-C to stop.")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        for tool in running:
            tool.simulator.stop()


sandbox.help = (sandbox.help or "").replace("{tools}", ", ".join(sandbox_tools()))
