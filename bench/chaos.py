"""Durability under faults, crashes and replicas: nothing lost, nothing doubled, the audit chain intact.

    python bench/chaos.py [--incidents 500] [--kills 10] [--replicas N] [--database-url URL] [--seed 7]
                          [--timeout 900] [--kill-gap S] [--reset] [--json] [--keep]

PagerDuty (the source), ServiceNow and JSM simulators run in this process with faults on their API paths:
20% 5xx, 5% 429 with Retry-After, 5% connection resets and 5% slow answers. The bridge runs as `--replicas`
``itsm-bridge run`` processes on one store (1 on SQLite, the default; 3 by default on PostgreSQL, each on
its own port behind a round-robin proxy that PagerDuty's webhooks go to). The demo's responders and desk
agents (bridge/demo_scenario.py) play `--incidents` full lifecycles in waves while a killer SIGKILLs a
random replica at random moments, `--kills` times, restarting it on its port after a short random pause.
Then the killing stops, the replicas run until all three systems agree (or `--timeout`), stop with
SIGTERM, and the judge (bench/chaos_judge.py) compares both sides record by record:

    lost=0 duplicates=0 diverged=0 audit=ok

plus a table of figures, and the details of anything that differs. Exit 1 on any difference (also on
dead letters, a replica that did not stop cleanly, or a run that did not converge), 0 otherwise, 2 on bad
options. On PostgreSQL give it a database of its own: it refuses one holding itsm-bridge tables unless
`--reset` (which drops them first).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos_fleet import Balancer, Killer, Replica  # bench/ is sys.path[0] when run
from chaos_judge import Verdict, differences, judge, without_tickets
from chaos_report import figures_of, print_report
from chaos_world import (
    CONFIG,
    FAULTS,
    RATE_LIMIT_PER_MINUTE,
    StoreNotEmpty,
    prepare_store,
    start_world,
    write_secrets,
)

from bridge.demo_scenario import (
    Scenario,
    World,
    convergence_problems,
    play_desks_and_resolutions,
    play_responders,
)
from bridge.demo_sources import SOURCES
from bridge.status import queue_depths
from bridge.store import Store
from connectors.simulator import free_port

#: Seconds without progress (idle, or behind dead letters) after which waiting for convergence stops.
STALLED = 45.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=500, help="full lifecycles to play (default 500)")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs during the run (default 10)")
    parser.add_argument("--replicas", type=int, help="daemon processes on the store (1 on SQLite; default 3 on "
                                                     "PostgreSQL)")
    parser.add_argument("--database-url", help="a PostgreSQL database of its own (default: SQLite in a temp folder)")
    parser.add_argument("--seed", type=int, default=7, help="seeds the scenario, the faults and the kills")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for tickets of a wave and, "
                                                                     "after the last kill, for convergence")
    parser.add_argument("--kill-gap", type=float, help="mean seconds between kills (default: 2 x incidents / "
                                                       "kills, 2 to 300)")
    parser.add_argument("--reset", action="store_true", help="drop itsm-bridge's tables in --database-url first")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (config, store, replica logs); "
                                                            "kept anyway when something differs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sqlite = not args.database_url or args.database_url.startswith("sqlite")
    args.replicas = args.replicas or (1 if sqlite else 3)
    if args.incidents < 1 or args.kills < 0 or args.replicas < 1 or (sqlite and args.replicas > 1):
        print("chaos: --incidents >= 1, --kills >= 0, --replicas >= 1; SQLite is single-process: one replica "
              "(several need --database-url postgresql+psycopg://...)", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="itsm-bridge-chaos-"))
    try:
        result = run(args, folder)
    except StoreNotEmpty as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        return 2
    clean = result["clean"]
    if args.keep or not clean:
        result["folder"] = str(folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 0 if clean else 1


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    started = time.monotonic()
    url = args.database_url or f"sqlite:///{(folder / 'itsm-bridge.db').as_posix()}"
    store = prepare_store(url, reset=args.reset)
    creds = write_secrets(folder)
    world = start_world(creds, args.seed)
    config_path = folder / "config.toml"
    ports = [free_port() for _ in range(args.replicas)]
    config_path.write_text(CONFIG.format(database_url=url, port=ports[0], rate=RATE_LIMIT_PER_MINUTE,
                                         source_block=SOURCES["pagerduty"].connection.format(url=world.src.url),
                                         sn_url=world.sn.url, jsm_url=world.jsm.url), encoding="utf-8")
    replicas = [Replica(index, port, config_path, folder) for index, port in enumerate(ports)]
    balancer = Balancer(replicas).start()
    killer = Killer(replicas, kills=args.kills, gap=args.kill_gap or kill_gap(args.incidents, args.kills),
                    seed=args.seed)
    scenario = Scenario()
    progress = _progress(started)
    try:
        for replica in replicas:
            replica.start()
        world.src.set_webhook_url(f"{balancer.url}/webhooks/pagerduty")
        progress(f"{args.replicas} replica(s) on {'SQLite' if store.is_sqlite else 'PostgreSQL'}, "
                 f"balancer {balancer.url}; folder {folder}")
        if args.kills:
            killer.start()
        play(world, scenario, args, progress)
        progress(f"scenario played; {killer.done_kills}/{args.kills} kills so far, letting the killer finish")
        killer.finished(timeout=args.timeout)
        killer.stop()
        progress(f"killing stopped after {killer.done_kills} kills; waiting for convergence")
        converged_at = wait_converged(world, store, scenario, timeout=args.timeout, progress=progress)
        unsettled = [] if converged_at is not None else \
            convergence_problems(world, _StoreOnly(store), scenario)  # type: ignore[arg-type]
        exits = [replica.terminate() for replica in replicas]
        progress("replicas stopped; judging")
        verdict = judge(world, scenario, store)
        figures = figures_of(world, store, scenario, balancer, killer, replicas, exits)
        figures.update(converged=converged_at is not None, unsettled=unsettled,
                       seconds=round(time.monotonic() - started, 1),
                       seconds_to_converge=converged_at, database="sqlite" if store.is_sqlite else "postgresql",
                       faults=FAULTS, rate_limit_per_minute=RATE_LIMIT_PER_MINUTE)
    finally:
        killer.stop()
        for replica in replicas:
            replica.terminate()
        balancer.stop()
        for simulator in world.simulators():
            simulator.stop()
        store.dispose()
    return outcome(verdict, figures, killer.errors)


def kill_gap(incidents: int, kills: int) -> float:
    """Mean seconds between kills when not given: spread over roughly the first third of a SQLite run
    (one worker under these faults needs some 10 s per incident's ops), 2 s at least, 5 minutes at most."""
    return min(300.0, max(2.0, incidents * 2.0 / max(kills, 1)))


def play(world: World, scenario: Scenario, args: argparse.Namespace, progress: Callable[[str], None]) -> None:
    """Responders open incidents in waves; desk agents act on each wave once its tickets are on both desks,
    while the next wave is already coming in (and the killer is at work)."""
    rng = random.Random(args.seed)
    waves = max(1, min(10, args.incidents // 4))
    sizes = [args.incidents // waves + (1 if n < args.incidents % waves else 0) for n in range(waves)]
    previous: Scenario | None = None
    for number, size in enumerate([*sizes, 0], start=1):
        wave = Scenario()
        if size:
            play_responders(world, wave, rng, size)
            scenario.incidents.extend(wave.incidents)
            scenario.responder_notes.update(wave.responder_notes)
        if previous is not None:
            waiting = wait_for(lambda p=previous: without_tickets(world, p.incidents), timeout=args.timeout)
            desk = Scenario(incidents=previous.incidents)
            play_desks_and_resolutions(world, desk, rng)
            scenario.resolved_on.update(desk.resolved_on)
            scenario.desk_comments.update(desk.desk_comments)
            progress(f"wave {number - 1}: desk agents acted on {len(previous.incidents)} incidents"
                     + (f" ({len(waiting)} not on both desks in time)" if waiting else ""))
        previous = wave if size else None


def wait_for(check: Callable[[], list[str]], *, timeout: float, interval: float = 0.5) -> list[str]:
    """Re-check until `check` reports nothing or `timeout` passes; the last report."""
    deadline = time.monotonic() + timeout
    problems = check()
    while problems and time.monotonic() < deadline:
        time.sleep(interval)
        problems = check()
    return problems


def wait_converged(world: World, store: Store, scenario: Scenario, *, timeout: float,
                   progress: Callable[[str], None] = lambda _message: None) -> float | None:
    """Seconds until the bridge is idle, PagerDuty has delivered every webhook and the three systems agree
    (`convergence_problems`); None when `timeout` ran out first, or when nothing has moved for `STALLED`
    seconds while the bridge is idle or writes are dead-lettered (then nothing changes by itself: the desks
    are polled every second, and what waits behind a dead letter waits for a person)."""
    started = time.monotonic()
    last: tuple[int, ...] = ()
    moved = told = started
    while time.monotonic() - started < timeout:
        depths = queue_depths(store)
        busy = depths["inbox_pending"] or depths["outbox_pending"] or world.src.webhooks.pending
        if busy:
            problems = ["busy"]
        elif not differences(world, scenario).clean:  # one pass over each desk: cheap enough every second
            problems = ["differs"]
        else:  # the demo's own judge agrees too (it scans the desks per incident: only once the cheap one does)
            problems = convergence_problems(world, _StoreOnly(store), scenario)  # type: ignore[arg-type]
        if not problems:
            return round(time.monotonic() - started, 1)
        state = (depths["inbox_pending"], depths["outbox_pending"], world.src.webhooks.pending, len(problems))
        if state != last:
            last, moved = state, time.monotonic()
        elif (depths["dead_letters"] or not busy) and time.monotonic() - moved > STALLED:
            return None  # idle but disagreeing, or held behind dead letters: nothing will change by itself
        if time.monotonic() - told > 30:
            told = time.monotonic()
            progress(f"{state[0]} inbox and {state[1]} outbox pending, {state[2]} webhooks to deliver, "
                     f"{depths['dead_letters']} dead letters")
        time.sleep(1.0)
    return None


class _StoreOnly:
    """`convergence_problems` reads only ``runtime.store``; the bench has a store, not a runtime."""

    def __init__(self, store: Store) -> None:
        self.store = store


def outcome(verdict: Verdict, figures: dict[str, Any], killer_errors: list[str]) -> dict[str, Any]:
    """The verdict line and the figures; anything besides the four figures that is off is named too."""
    line = verdict.line()
    extra = {"dead_letters": figures["dead_letters"], "unclean_stops": figures["unclean_stops"],
             "restart_failures": len(killer_errors)}
    line += "".join(f" {name}={count}" for name, count in extra.items() if count)
    if not figures["converged"]:
        line += " converged=no"
    clean = verdict.clean and not any(extra.values()) and figures["converged"]
    return {"verdict": line, "clean": clean, **verdict.as_dict(), "figures": figures,
            "restart_failures": killer_errors}


def _progress(started: float) -> Callable[[str], None]:
    """Progress on stderr (also with --json, whose one object goes to stdout): a long run shows it is alive."""
    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)
    return say


if __name__ == "__main__":
    sys.exit(main())
