"""The HTTP face of the daemon: webhooks in, health and metrics out.

``POST /webhooks/{connection}`` verifies the signature on the raw bytes, stores the changes and only then
answers 202; a redelivery is answered 200 with nothing stored twice. ``GET /healthz`` says whether the
store answers and how much work is queued; ``GET /metrics`` is Prometheus text.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from bridge.errors import WebhookError
from bridge.ingest import ingest_webhook
from bridge.runtime import Runtime
from bridge.status import queue_depths


def create_app(runtime: Runtime, *, on_ingest: Callable[[], None] = lambda: None) -> FastAPI:
    """The ASGI app; `on_ingest` wakes the worker as soon as something new is in the inbox."""
    app = FastAPI(title="itsm-bridge", docs_url=None, redoc_url=None, openapi_url=None)
    limit = runtime.config.server.max_body_bytes

    @app.post("/webhooks/{connection}")
    async def webhook(connection: str, request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return _refuse(runtime, connection, WebhookError(f"body of {declared} bytes is over the "
                                                             f"{limit}-byte limit", status=413))
        body = await request.body()
        if len(body) > limit:
            return _refuse(runtime, connection, WebhookError(f"body over the {limit}-byte limit", status=413))
        try:
            result = await run_in_threadpool(ingest_webhook, runtime, connection, body, request.headers)
        except WebhookError as exc:
            return _refuse(runtime, connection, exc)
        if result.accepted:
            on_ingest()
        if result.reply is not None:
            return JSONResponse(dict(result.reply.body), status_code=result.reply.status)
        status = 202 if result.accepted else 200
        return JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates}, status_code=status)

    @app.get("/healthz")
    async def healthz() -> Response:
        try:
            depths = await run_in_threadpool(_health, runtime)
        except Exception as exc:  # the store is down: say so, do not crash
            return JSONResponse({"status": "unhealthy", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", **depths})

    @app.get("/metrics")
    async def metrics() -> Response:
        depths = await run_in_threadpool(queue_depths, runtime.store)
        runtime.metrics.inbox_pending.set(depths["inbox_pending"])
        runtime.metrics.outbox_pending.set(depths["outbox_pending"])
        runtime.metrics.dead_letter_open.set(depths["dead_letters"])
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _health(runtime: Runtime) -> dict[str, int]:
    with runtime.store.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return queue_depths(runtime.store)


def _refuse(runtime: Runtime, connection: str, exc: WebhookError) -> Response:
    if exc.status == 413:
        runtime.metrics.webhooks_rejected.labels(connection, "413").inc()
    return JSONResponse({"error": str(exc)}, status_code=exc.status)
