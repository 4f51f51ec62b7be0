"""The server assembled: a runtime, the recursion, the scheduler, the API, under uvicorn on a socket the command
has bound. SIGTERM (or Ctrl-C) stops accepting connections and drains: the accepted requests are answered while the
batch can still finish by the drain's deadline, those still queued then get 503, and it returns by the deadline."""

from __future__ import annotations

import signal
import socket
import sys
import time
from typing import Any

from trm_edge.errors import TrmEdgeError

BATCHING = ("continuous", "whole")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads so that a taken port fails at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise TrmEdgeError(f"--host {host!r}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise TrmEdgeError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(2048)
    return sock


def serve(runtime: Any, sock: socket.socket, *, batching: str, max_batch: int, max_queue: int, timeout: float | None,
          max_body: int, max_steps: int | None, halt: bool, threshold: float | None, drain_timeout: float) -> None:
    """Serve until SIGTERM or Ctrl-C, then drain for at most ``drain_timeout`` seconds; raises TrmEdgeError when the
    model fails to load or verify."""
    import uvicorn

    from trm_edge.runtimes.recursion import Recursion
    from trm_edge.serve.app import Service, create_app
    from trm_edge.serve.metrics import Metrics
    from trm_edge.serve.scheduler import RequestFeed, Scheduler
    from trm_edge.serve.work import Reader

    whole = batching == "whole"  # a fixed batch through every step; answers still at each puzzle's halting step
    recursion = Recursion(runtime, batch_size=max_batch, max_steps=max_steps, halt=halt and not whole,
                          threshold=threshold, refill=not whole)
    feed = RequestFeed(max_queue)
    reader = Reader(runtime, max_puzzles=max_queue)
    model: dict[str, Any] = {"model": runtime.source.label, "task": runtime.task, "batching": batching,
                             "max_batch": max_batch, "max_steps": recursion.max_steps, "halt": halt,
                             "threshold": recursion.threshold}
    metrics = Metrics(capacity=max_batch, max_steps=recursion.max_steps, queued=lambda: feed.queued,
                      in_flight=lambda: feed.in_flight)

    def prepare() -> None:
        runtime.load()
        model["runtime"] = runtime.name
        model["max_batch"] = recursion.capacity
        metrics.capacity = recursion.capacity
        reader.load()
        model["verification"] = verify(runtime)

    scheduler = Scheduler(recursion, feed, prepare=prepare, on_step=metrics.on_step, answer_halted=whole and halt)
    config = uvicorn.Config(None, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=30)
    server = draining_server(config, scheduler, drain_timeout)
    service = Service(scheduler, feed, reader, metrics, model, max_body, timeout,
                      on_failure=lambda error: setattr(server, "should_exit", True))
    config.app = create_app(service)
    host, port = sock.getsockname()[:2]
    print(f"trm-edge serve: {runtime.source.label} on http://{host}:{port} ({batching} batching, up to "
          f"{max_batch} rows); ready once loaded and verified (GET /ready)", file=sys.stderr, flush=True)
    # uvicorn re-raises the signal that stopped it once it has drained; after a clean drain that is the end, not an
    # error: exit 0 on SIGTERM (Ctrl-C still exits 130)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        scheduler.drain(time.monotonic() + drain_timeout)  # after a forced exit too (the deadline of a drain holds)
        scheduler.stop(scheduler.time_left())  # the runtime closes only after this
    if scheduler.failure is not None:
        failure = scheduler.failure
        raise failure if isinstance(failure, TrmEdgeError) else TrmEdgeError(f"the model failed to load: {failure}")


def draining_server(config: Any, scheduler: Any, drain_timeout: float) -> Any:
    """A uvicorn server whose shutdown begins with the scheduler's drain, its deadline counted from the signal."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        signalled: float | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.signalled is None:
                self.signalled = time.monotonic()
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets: Any = None) -> None:
            scheduler.drain((self.signalled or time.monotonic()) + drain_timeout)
            # uvicorn's own deadline for the handlers, a last resort: the scheduler answers them all before it
            self.config.timeout_graceful_shutdown = scheduler.time_left()
            await super().shutdown(sockets)

    return DrainingServer(config)


def verify(runtime: Any) -> dict[str, Any] | None:
    """A bundle's golden I/O through the loaded runtime, before the server is ready (None without golden I/O)."""
    from trm_edge.runtimes.verify import verify_golden

    source = runtime.source
    golden = source.bundle.golden() if source.kind == "bundle" and source.bundle.manifest.golden else None
    if not golden:
        return None
    result = verify_golden(runtime, golden, precision=source.precision)
    result.raise_if_failed(what=f"{source.label} on {runtime.name}")
    return {"ok": result.ok, "cases": result.cases, "worst_error_ratio": result.worst.ratio}
