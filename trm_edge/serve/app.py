"""The HTTP API (FastAPI on uvicorn): ``POST /v1/solve``, ``GET /health``, ``GET /ready``, ``GET /metrics``, and
the OpenAPI description FastAPI writes (``/openapi.json``, ``/docs``).

A request's body is read up to the size limit (413 beyond), parsed as ``trm-edge solve`` parses puzzles (400 with
the CLI's one-line message), queued (503 with Retry-After at once when the queue is full) and awaited together with
the client's connection and its deadline: a client that disconnects, or a request past ``--timeout`` (504), has its
puzzles dropped from the queue at once and its rows from the batch before the next step. A runtime failure on its
rows is a 500, and the server goes on. A request still queued when a drain's deadline nears is a 503 (Retry-After).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Dict, Optional

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from trm_edge.errors import TrmEdgeError
from trm_edge.serve.metrics import Metrics
from trm_edge.serve.scheduler import Job, NotAccepting, QueueFull, RequestFeed, Scheduler
from trm_edge.serve.work import REQUEST_SCHEMA, Reader, RequestTooLarge
from trm_edge.version import __version__

RETRY_AFTER_S = 1


@dataclass
class Service:
    """What the routes share: the scheduler and its feed, the request reader, the metrics and the limits."""

    scheduler: Scheduler
    feed: RequestFeed
    reader: Reader
    metrics: Metrics
    model: Dict[str, Any]  # what /ready reports: the model, the runtime, the golden verification
    max_body: int  # bytes
    timeout: Optional[float]  # seconds a request may take
    on_failure: Callable[[BaseException], Any]  # the model did not load or verify: stop the server


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.scheduler.start()
        watcher = asyncio.ensure_future(_watch_start(service))
        yield
        watcher.cancel()
        # uvicorn has drained the connections: the scheduler's thread ends with its batch, by the drain's deadline
        scheduler = service.scheduler
        await asyncio.get_running_loop().run_in_executor(None, lambda: scheduler.stop(scheduler.time_left()))

    app = FastAPI(title="trm-edge", version=__version__, lifespan=lifespan,
                  description="A Tiny Recursive Model solving puzzles, batched across requests step by step.")

    def read(body: bytes) -> Any:
        work = service.reader.read(body)
        service.scheduler.recursion.check_inputs(work.inputs)  # the loop takes a feed's rows as they come
        return work

    def error(status: int, outcome: str, message: str, **headers: str) -> Response:
        service.metrics.requests.labels(outcome).inc()
        return JSONResponse({"error": printable(message)}, status_code=status, headers=headers)

    @app.get("/health", summary="Liveness: the process answers.")
    async def health() -> Dict[str, str]:
        return {"status": "alive"}

    @app.get("/ready", summary="Readiness: the model is loaded and its golden I/O verified.")
    async def ready() -> Response:
        scheduler = service.scheduler
        if not scheduler.ready.is_set():
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        if scheduler.failure is not None:
            return JSONResponse({"status": "failed", "error": str(scheduler.failure)}, status_code=503)
        return JSONResponse({"status": "ready", **service.model})

    @app.get("/metrics", summary="Prometheus metrics.")
    async def metrics() -> Response:
        content, media_type = service.metrics.exposition()
        return Response(content, media_type=media_type)

    @app.post("/v1/solve", summary="Solve puzzles, or ARC tasks, with the served model.",
              openapi_extra={"requestBody": {"required": True,
                                             "content": {"application/json": {"schema": REQUEST_SCHEMA}}}},
              responses={400: {"description": "Malformed JSON or a bad puzzle (the CLI's message)."},
                         413: {"description": "A body or a puzzle count over the server's limit."},
                         503: {"description": "The queue is full, the model is not ready, or the server is "
                                             "shutting down (Retry-After)."},
                         504: {"description": "Not solved within the server's --timeout."}})
    async def solve(request: Request) -> Response:
        started = time.monotonic()
        if not service.scheduler.ready.is_set() or service.scheduler.failure is not None:
            return error(503, "unavailable", "the server is loading its model (GET /ready)",
                         **{"Retry-After": str(RETRY_AFTER_S)})
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > service.max_body:
            return error(413, "too_large", f"the request body is {declared} bytes; this server takes at most "
                                           f"{service.max_body} (--max-body)")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > service.max_body:
                    return error(413, "too_large", f"the request body exceeds {service.max_body} bytes (--max-body)")
        except ClientDisconnect:
            return error(499, "disconnected", "the client closed the connection")
        try:  # parsing (an ARC task's augmented canvases) runs beside the event loop, not on it
            work = await run_in_threadpool(read, bytes(body))
        except RequestTooLarge as failure:
            return error(413, "too_large", str(failure))
        except TrmEdgeError as failure:
            return error(400, "bad_request", str(failure))
        loop = asyncio.get_running_loop()
        answered: asyncio.Future = loop.create_future()

        def done(job: Job) -> None:
            loop.call_soon_threadsafe(lambda: answered.done() or answered.set_result(job))

        job = Job(work.inputs, work.identifiers, done)
        try:
            service.feed.submit(job)
        except QueueFull as failure:
            return error(503, "queue_full", str(failure), **{"Retry-After": str(RETRY_AFTER_S)})
        except NotAccepting as failure:
            return error(503, "unavailable", str(failure), **{"Retry-After": str(RETRY_AFTER_S)})
        gone = asyncio.ensure_future(_disconnected(request))
        left = None if service.timeout is None else max(0.0, started + service.timeout - time.monotonic())
        try:
            await asyncio.wait({answered, gone}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the handler itself was cancelled (a forced shutdown): its rows leave too
            service.feed.cancel(job, "cancelled")
            raise
        finally:
            gone.cancel()
        if not answered.done():  # its rows leave the batch before the next step
            if gone.done():
                service.feed.cancel(job, "the client closed the connection")
                return error(499, "disconnected", "the client closed the connection")
            service.feed.cancel(job, "timeout")
            return error(504, "timeout", f"not solved within {service.timeout:g} s (--timeout)")
        if job.unavailable:  # a drain's deadline came first
            return error(503, "unavailable", job.error or "", **{"Retry-After": str(RETRY_AFTER_S)})
        if job.error is not None:
            return error(500, "error", job.error)
        response = await run_in_threadpool(work.respond, job.output)
        service.metrics.requests.labels("ok").inc()
        service.metrics.latency.observe(time.monotonic() - started)
        return JSONResponse(response)

    return app


def printable(message: str) -> str:
    """One line that UTF-8 can carry: a message may quote the body, and a JSON string may hold a lone surrogate."""
    return " ".join(message.split()).encode("utf-8", "backslashreplace").decode("utf-8")


async def _disconnected(request: Request) -> None:
    """Returns when the client has closed the connection (the body was read: what comes now is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _watch_start(service: Service) -> None:
    """Stop the server when the model fails to load or verify (the scheduler reports it once, at start)."""
    scheduler = service.scheduler
    await asyncio.get_running_loop().run_in_executor(None, scheduler.ready.wait)
    if scheduler.failure is not None:
        service.on_failure(scheduler.failure)
