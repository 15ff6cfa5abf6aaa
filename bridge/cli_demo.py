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
@click.option("--timeout", default=45.0, show_default=True, help="Seconds to wait for both sides to agree.")
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
@click.option("--pagerduty-port", type=int, default=0, help="Port for the PagerDuty simulator (0: any free).")
@click.option("--servicenow-port", type=int, default=0, help="Port for the ServiceNow simulator (0: any free).")
@click.option("--jsm-port", type=int, help="Also run the Jira Service Management simulator on this port (0: any free).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--webhook-url", help="Send PagerDuty webhooks here, e.g. http://127.0.0.1:8080/webhooks/pagerduty.")
@click.option("--user", default="itsm.bridge", show_default=True, help="ServiceNow basic-auth user to accept.")
@click.option("--password", help="ServiceNow password to accept (default: generated and printed).")
@click.option("--token", help="PagerDuty API token to accept (default: generated and printed).")
@click.option("--webhook-secret", help="PagerDuty webhook signing secret (default: generated and printed).")
def sandbox(pagerduty_port: int, servicenow_port: int, jsm_port: int | None, host: str, webhook_url: str | None,
            user: str, password: str | None, token: str | None, webhook_secret: str | None) -> None:
    """Run the PagerDuty and ServiceNow simulators in the foreground to try a config. Ctrl-C stops.

    \b
    The simulators speak the real APIs' paths and payloads:
      PagerDuty:  GET/POST /incidents, PUT /incidents/{id}, /incidents/{id}/notes, with
                  "Authorization: Token token=<token>"; every change sends a signed v3 webhook.
      ServiceNow: /api/now/table/incident and /api/now/table/sys_journal_field, basic auth;
                  a desk user jane.doe / sim-desk-password can edit and comment like an agent.
      JSM:        (with --jsm-port) Jira Cloud REST v2/v3 for project OPS: issues, transitions,
                  comments, entity properties, remote links, JQL search; basic auth with
                  --user as the e-mail and --password as the API token;
                  an agent agent@example.com / sim-agent-token.
    Point a config's api_url / instance_url at the printed URLs and its secrets at the printed values
    (env:NAME or file:PATH), then run `itsm-bridge run --config ...`.
    """
    from connectors.pagerduty.simulator import PagerDutySimulator
    from connectors.servicenow.simulator import ServiceNowSimulator

    password = password or secrets.token_urlsafe(12)
    token = token or secrets.token_urlsafe(16)
    webhook_secret = webhook_secret or secrets.token_urlsafe(24)
    pd = PagerDutySimulator(token=token, webhook_secret=webhook_secret, webhook_url=webhook_url,
                            host=host, port=pagerduty_port).start()
    sn = ServiceNowSimulator(users={user: password}, host=host, port=servicenow_port).start()
    jsm = None
    if jsm_port is not None:
        from connectors.jsm.simulator import JsmSimulator

        jsm = JsmSimulator(users={user: password}, host=host, port=jsm_port).start()
    click.echo(f"PagerDuty simulator:  {pd.url}")
    click.echo(f"  API token:          {token}")
    click.echo(f"  webhook secret:     {webhook_secret}")
    click.echo(f"  webhooks to:        {webhook_url or '(none: pass --webhook-url)'}")
    click.echo(f"ServiceNow simulator: {sn.url}")
    click.echo(f"  user / password:    {user} / {password}")
    click.echo(f"  look at tickets:    curl -u '{user}:{password}' {sn.url}/api/now/table/incident")
    if jsm is not None:
        click.echo(f"JSM simulator:        {jsm.url}  (project OPS)")
        click.echo(f"  email / API token:  {user} / {password}")
    click.echo("Try it: curl -X POST -H 'Authorization: Token token=" + token + "' -H 'From: alice@example.com' "
               "-H 'Content-Type: application/json' " + pd.url + "/incidents -d "
               "'{\"incident\":{\"type\":\"incident\",\"title\":\"Disk full\",\"service\":{\"id\":\"PSVC001\","
               "\"type\":\"service_reference\"}}}'")
    click.echo("Ctrl-C to stop.")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        pd.stop()
        sn.stop()
        if jsm is not None:
            jsm.stop()
