"""The server's Prometheus metrics (prometheus-client), in a registry of its own: requests by outcome, queue depth,
rows in flight, batch occupancy at each step, supervision steps per puzzle, request latency."""

from __future__ import annotations

from typing import Any


class Metrics:
    def __init__(self, *, capacity: int, max_steps: int, queued: Any, in_flight: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.capacity = capacity
        self.requests = Counter("trm_edge_requests", "Solve requests by outcome.", ["outcome"],
                                registry=self.registry)
        self.latency = Histogram("trm_edge_request_seconds", "Time from a request's arrival to its answer.",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)
        self.steps = Histogram("trm_edge_puzzle_steps", "Supervision steps each puzzle ran before it left.",
                               buckets=tuple(range(1, max_steps + 1)), registry=self.registry)
        self.occupancy = Histogram("trm_edge_batch_occupancy", "Rows in flight at a step, as a fraction of the batch.",
                                   buckets=(0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0), registry=self.registry)
        self.step_seconds = Histogram("trm_edge_step_seconds", "Wall time of one supervision step of the batch.",
                                      registry=self.registry)
        Gauge("trm_edge_queue_depth", "Puzzles waiting for a row.", registry=self.registry).set_function(queued)
        Gauge("trm_edge_rows_in_flight", "Puzzles in the batch now.", registry=self.registry).set_function(in_flight)
        for outcome in OUTCOMES:  # every series exists from the start, at 0
            self.requests.labels(outcome)

    def on_step(self, step: Any, answered_steps: Any) -> None:
        self.occupancy.observe(step.rows / self.capacity)
        self.step_seconds.observe(step.seconds)
        for steps in answered_steps:
            self.steps.observe(int(steps))

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


OUTCOMES = ("ok", "bad_request", "too_large", "queue_full", "unavailable", "timeout", "disconnected", "error")
