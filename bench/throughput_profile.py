"""`itsm-bridge run` with pyinstrument on the delivery worker and on webhook ingest, for bench/throughput.py.

    python bench/throughput.py --incidents 500 --profile /tmp/profiles

writes ``worker.txt``, ``worker-flat.txt`` and ``worker.html`` (the thread that processes the inbox and delivers the outbox) and
``ingest.txt`` (every ``ingest_webhook`` call, merged) into the folder when the daemon stops. pyinstrument
samples one thread per profiler, hence one around the worker loop and one per ingest call. It is not a
project dependency: ``pip install pyinstrument`` into the dev venv first.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from pyinstrument.session import Session


def main(config: str, out: Path) -> None:
    import bridge.daemon
    import bridge.server
    from bridge.cli import main as cli

    out.mkdir(parents=True, exist_ok=True)
    work = bridge.daemon.Daemon._work
    ingest = bridge.server.ingest_webhook
    sessions: list[Session] = []
    lock = threading.Lock()

    def profiled_work(self: Any) -> None:
        profiler = Profiler(interval=0.002)
        profiler.start()
        try:
            work(self)
        finally:
            profiler.stop()
            (out / "worker.txt").write_text(profiler.output_text(unicode=True, show_all=False), encoding="utf-8")
            (out / "worker-flat.txt").write_text(profiler.output_text(flat=True, flat_time="total"), encoding="utf-8")
            (out / "worker.html").write_text(profiler.output_html(), encoding="utf-8")
            with lock:
                if sessions:
                    merged = sessions[0]
                    for session in sessions[1:]:
                        merged = Session.combine(merged, session)
                    (out / "ingest.txt").write_text(_render(merged), encoding="utf-8")

    def profiled_ingest(*args: Any, **kwargs: Any) -> Any:
        profiler = Profiler(interval=0.0005)
        profiler.start()
        try:
            return ingest(*args, **kwargs)
        finally:
            session = profiler.stop()
            with lock:
                sessions.append(session)

    bridge.daemon.Daemon._work = profiled_work  # type: ignore[method-assign]
    bridge.server.ingest_webhook = profiled_ingest  # type: ignore[assignment]
    sys.argv = ["itsm-bridge", "run", "--config", config]
    cli()


def _render(session: Session) -> str:
    from pyinstrument.renderers import ConsoleRenderer

    return ConsoleRenderer(unicode=True, show_all=False).render(session)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
