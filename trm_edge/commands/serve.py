"""CLI command: serve (the solver as an HTTP service: trm_edge/serve/, docs/serving.md)."""

from __future__ import annotations

import math
from typing import Any

import typer

from trm_edge.commands import common
from trm_edge.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add this command to the app."""
    app.command()(serve)


def _positive(flag: str) -> Any:
    """A typer callback: the option is a finite number of seconds above 0."""

    def check(value: float) -> float:
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{flag} {value} must be a finite number of seconds above 0")
        return value

    return check


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise ConfigError(f"--port {value} is out of range: choose 0..65535 (0: any free port)")
    return value


def serve(
    model: str = typer.Argument(None, help=common.MODEL_HELP),
    runtime: str = common.runtime_option(),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 for every interface (the "
                             "default, 127.0.0.1, takes only this machine's clients)."),
    port: int = typer.Option(8000, "--port", help="TCP port (0: any free port, printed at start).", callback=_port),
    max_batch: int = typer.Option(64, "--max-batch", help="Rows in the batch at most: puzzles of every request "
                                  "solved at once.", callback=common.at_least_one("--max-batch")),
    max_queue: int = typer.Option(1024, "--max-queue", help="Puzzles waiting for a row at most; a request that "
                                  "would overflow the queue gets 503 with Retry-After at once.",
                                  callback=common.at_least_one("--max-queue")),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds a request may take from arrival to answer; "
                                  "then 504 and its rows leave the batch.", callback=_positive("--timeout")),
    drain_timeout: float = typer.Option(20.0, "--drain-timeout", help="Seconds from SIGTERM (or Ctrl-C) to exit at "
                                        "most: accepted requests are answered while the batch can still finish in "
                                        "time, those still queued then get 503 with Retry-After.",
                                        callback=_positive("--drain-timeout")),
    max_body: int = typer.Option(4 << 20, "--max-body", help="Largest request body in bytes (413 beyond).",
                                 callback=common.at_least_one("--max-body")),
    batching: str = typer.Option("continuous", "--batching", help="continuous: a waiting puzzle takes a halted "
                                 "puzzle's row at the next step. whole: fixed batches through every step, new puzzles "
                                 "once the batch is done (what a generic model server does; the benchmark's baseline); "
                                 "the answers are the same."),
    max_steps: int = common.max_steps_option(),
    halt: bool = common.halt_option(),
    threshold: float = common.threshold_option(),
    threads: int = common.threads_option(),
) -> None:
    """Serve a model over HTTP: POST /v1/solve, GET /health, /ready, /metrics, /docs.

    One scheduler thread owns the runtime and batches puzzles from every request step by step: each puzzle leaves
    the batch at the step its halting head stops it, and a waiting one takes its row. Answers are those of
    `trm-edge solve`. SIGTERM stops accepting, answers the accepted requests within --drain-timeout (503 with
    Retry-After for those still queued then) and exits 0."""
    from trm_edge.serve.server import BATCHING, bind
    from trm_edge.serve.server import serve as run

    if batching not in BATCHING:
        raise ConfigError(f"--batching {batching!r}: choose {' or '.join(repr(b) for b in BATCHING)}")
    sock = bind(host, port)  # a taken port fails before any model work
    opened = common.open_model(common.resolve_model(model), runtime, threads=threads)  # loaded by the scheduler
    try:
        run(opened, sock, batching=batching, max_batch=max_batch, max_queue=max_queue, timeout=timeout,
            max_body=max_body, max_steps=max_steps, halt=halt, threshold=threshold, drain_timeout=drain_timeout)
    finally:
        opened.close()
