"""The server's scheduler: one thread owns the runtime and runs the recursion core (runtimes/recursion.py) over a
queue that requests fill while it runs.

With continuous batching (``refill``) a waiting puzzle takes a row at the next step after a row halts, whichever
request either belongs to. ``whole`` batching is what a generic model server does with a looped model: a fixed
batch runs every step, and new puzzles wait until it is done; each puzzle is still answered at its halting step.

A cancelled request (its client gone, its deadline passed) leaves the queue at once and the batch before the next
step; a failed step fails the requests with rows in that step, and the loop starts again for the rest. A drain
(SIGTERM) goes on batching until the rows in flight could no longer finish by its deadline; then what is still queued
fails as unavailable (HTTP 503), and the batch finishes.

numpy only: no torch here (the device side).
"""

from __future__ import annotations

import collections
import itertools
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trm_edge.bundle.contract import halts
from trm_edge.errors import TrmEdgeError
from trm_edge.runtimes.recursion import Arrivals, Recursion, StepResult
from trm_edge.runtimes.solver import SolveOutput


class QueueFull(TrmEdgeError):
    """The queue holds ``--max-queue`` puzzles: the client should retry later (HTTP 503)."""


class NotAccepting(TrmEdgeError):
    """The server is loading its model or shutting down (HTTP 503)."""


@dataclass(eq=False)
class Job:
    """One request's puzzles through the scheduler. ``on_done(job)`` is called when every puzzle has its answer
    (``output``), from the scheduler's thread, or with ``error`` set when the job failed or was cancelled, from
    the thread that failed or cancelled it. A cancel can cross a last answer: ``on_done`` must be idempotent."""

    inputs: np.ndarray  # [n, seq_len] int32, checked
    identifiers: np.ndarray  # [n] int64
    on_done: Callable[[Job], Any]
    output: SolveOutput = field(init=False)
    error: str | None = None  # why the job failed or was cancelled
    unavailable: bool = False  # failed unsolved for want of time (a drain's deadline): the client may retry
    left: int = field(init=False)

    def __post_init__(self) -> None:
        n, seq_len = self.inputs.shape
        self.output = SolveOutput(np.zeros((n, seq_len), np.int32), np.zeros(n, np.int32), np.zeros(n, np.float32),
                                  np.zeros(n, bool))
        self.left = n


class RequestFeed:
    """The recursion's :class:`~trm_edge.runtimes.recursion.Feed` for a server: puzzles queue in request order;
    rows in flight are tracked by key so that a dropped or failed request loses exactly its rows."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self.lock = threading.Condition()
        self.queue: collections.deque[tuple[int, Job, int]] = collections.deque()  # (key, job, row)
        self.flight: dict[int, tuple[Job, int]] = {}
        self.keys = itertools.count()
        self.closed = False
        self.accepting = False

    @property
    def queued(self) -> int:
        return len(self.queue)

    @property
    def in_flight(self) -> int:
        return len(self.flight)

    def submit(self, job: Job) -> None:
        n = len(job.inputs)
        with self.lock:
            if not self.accepting or self.closed:
                raise NotAccepting("the server is " + ("shutting down" if self.closed else "loading its model"))
            if self.queued + n > self.max_queue:
                raise QueueFull(f"the queue holds {self.queued} puzzle(s) and takes at most {self.max_queue}; "
                                "retry later")
            self.queue.extend((next(self.keys), job, row) for row in range(n))
            self.lock.notify()

    def cancel(self, job: Job, reason: str) -> None:
        """The job's answers are no longer wanted: its queued puzzles leave now, its rows before the next step."""
        with self.lock:
            fail(job, reason)
            self._drop_failed()

    def shed(self, reason: str, *, in_flight: bool = False) -> int:
        """Fail as unavailable every job with a queued puzzle (with ``in_flight``, every job with a row in the batch
        too); their rows leave before the next step. Returns how many jobs."""
        with self.lock:
            jobs = {job for _, job, _ in self.queue}
            if in_flight:
                jobs.update(job for job, _ in self.flight.values())
            for job in jobs:
                fail(job, reason, unavailable=True)
            self._drop_failed()
        return len(jobs)

    def _drop_failed(self) -> None:
        self.queue = collections.deque(entry for entry in self.queue if entry[1].error is None)

    def close(self) -> None:
        """Take no more requests; the loop ends once the queued and in-flight puzzles are answered."""
        with self.lock:
            self.closed = True
            self.lock.notify()

    def take(self, limit: int, *, idle: bool) -> Arrivals | None:
        with self.lock:
            if idle and not self.queue and not self.closed:
                self.lock.wait(timeout=1.0)
            taken: list[tuple[int, Job, int]] = []
            while self.queue and len(taken) < limit:
                key, job, row = self.queue.popleft()
                if job.error is None:
                    taken.append((key, job, row))
            if not taken:
                return None if self.closed and not self.queue else Arrivals(*EMPTY)
            for key, job, row in taken:
                self.flight[key] = (job, row)
        keys = np.array([key for key, _, _ in taken], np.int64)
        inputs = np.stack([job.inputs[row] for _, job, row in taken])
        identifiers = np.array([job.identifiers[row] for _, job, row in taken], np.int64)
        return Arrivals(keys, inputs, identifiers)

    def withdrawn(self, keys: np.ndarray) -> np.ndarray:
        with self.lock:
            gone = np.array([self.flight[int(k)][0].error is not None for k in keys], bool)
            for k in keys[gone]:
                del self.flight[int(k)]
        return gone

    def entries(self, keys: np.ndarray) -> list[tuple[Job, int]]:
        """The (job, row) of each key in flight."""
        with self.lock:
            return [self.flight[int(k)] for k in keys]

    def release(self, keys: np.ndarray) -> None:
        """These rows have left the batch."""
        with self.lock:
            for k in keys:
                del self.flight[int(k)]

    def fail_in_flight(self, error: str) -> int:
        """Fail every job with a row in flight (a step failed): returns how many jobs."""
        with self.lock:
            jobs = {job for job, _ in self.flight.values()}
            self.flight.clear()
            for job in jobs:
                fail(job, error)
            self._drop_failed()  # their queued puzzles too
        return len(jobs)


RETRY_PAUSE_S = 1.0
DRAIN_MARGIN_S = 1.0  # of a drain's deadline, kept for the end: the last answers sent, the runtime closed, the exit
RECENT_STEPS = 32  # steps whose slowest one bounds the time of the steps to come
EMPTY = (np.zeros(0, np.int64), np.zeros((0, 0), np.int32), np.zeros(0, np.int64))


def fail(job: Job, error: str, *, unavailable: bool = False) -> None:
    if job.error is None and job.left:
        job.error, job.unavailable = error, unavailable
        job.on_done(job)


class Scheduler:
    """Runs ``recursion`` over a :class:`RequestFeed` in its own thread. ``on_step(step, steps)`` is called after
    every step with the steps of the puzzles answered at it (metrics); ``prepare()`` runs first in the same thread
    (loading the model, verifying it) and its exception, if any, is kept in ``failure`` and ends the thread.

    ``answer_halted``: the recursion keeps every row to its last step (whole batching: ``halt=False``, no refill),
    and each puzzle is answered at its first step that the halting rule stops, as it would leave the batch under
    continuous batching: the same answers, for the compute of every step."""

    def __init__(self, recursion: Recursion, feed: RequestFeed, *, prepare: Callable[[], Any] = lambda: None,
                 on_step: Callable[[StepResult, np.ndarray], Any] = lambda step, steps: None,
                 answer_halted: bool = False) -> None:
        self.recursion, self.feed, self.prepare, self.on_step = recursion, feed, prepare, on_step
        self.answer_halted = answer_halted
        self.failure: BaseException | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="trm-edge-scheduler", daemon=True)
        self.deadline: float | None = None  # of the drain (time.monotonic()), once one has begun
        self.recent: collections.deque[float] = collections.deque(maxlen=RECENT_STEPS)
        self.slowest = 0.0  # seconds, the slowest of the recent steps (read from any thread)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Accept nothing more, answer what was accepted, and end the thread."""
        self.feed.close()
        if self.thread.ident is not None:  # started
            self.thread.join(timeout)

    def drain(self, deadline: float) -> None:
        """Accept nothing more; answer what was accepted while the batch can still finish by ``deadline``
        (time.monotonic()), then fail the rest as unavailable. The first deadline holds."""
        if self.deadline is None:
            self.deadline = deadline
        self.feed.close()
        self._keep_deadline()

    def time_left(self) -> float | None:
        """Seconds to the drain's deadline (None before a drain)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def _keep_deadline(self) -> None:
        """During a drain, shed the queue once the batch could not otherwise finish in time: after this step it needs
        at most ``max_steps`` more, and one more if rows join at the next. Shed the batch too should a step overrun."""
        if self.deadline is None:
            return
        left = self.deadline - DRAIN_MARGIN_S - time.monotonic()
        reason = "the server is shutting down and had no time left for this request; retry"
        if left <= self.slowest:
            self.feed.shed(reason, in_flight=True)
        elif left <= (self.recursion.max_steps + 1) * self.slowest:
            self.feed.shed(reason)

    def _timed(self, step: StepResult) -> None:
        self.recent.append(step.seconds)
        self.slowest = max(self.recent)
        self._keep_deadline()

    def _main(self) -> None:
        try:
            self.prepare()
        except BaseException as error:  # kept for the server to report; the thread ends here
            self.failure = error
            self.ready.set()
            return
        with self.feed.lock:
            self.feed.accepting = True
        self.ready.set()
        while True:
            try:
                for step in self.recursion.run(self.feed):
                    self.on_step(step, self._answer(step))
                    self._timed(step)
                return
            except Exception as error:  # the step failed: only the requests it touched fail, the loop goes on
                message = " ".join(str(error).split()) or type(error).__name__
                failed = self.feed.fail_in_flight(f"the runtime failed: {message}")
                print(f"trm-edge serve: a step failed ({message}); {failed} request(s) failed, serving goes on",
                      file=sys.stderr)
                time.sleep(RETRY_PAUSE_S)  # a runtime that keeps failing is not retried in a tight loop

    def _answer(self, step: StepResult) -> np.ndarray:
        """Record the answers decided at ``step``; returns their steps."""
        halted = step.halted | (halts(step.q_halt_logits, self.recursion.threshold) if self.answer_halted else False)
        rows = np.flatnonzero(halted | step.done)
        answered = []
        if rows.size:
            preds = step.preds(rows)
            for k, (i, (job, row)) in enumerate(zip(rows, self.feed.entries(step.puzzles[rows]))):  # noqa: B905
                out = job.output
                if job.error is not None or out.steps[row]:  # dropped, or answered at an earlier step
                    continue
                out.preds[row] = preds[k]
                out.steps[row] = step.steps[i]
                out.q_halt_logits[row] = step.q_halt_logits[i]
                out.halted[row] = halted[i]
                answered.append(step.steps[i])
                job.left -= 1
                if not job.left:
                    job.on_done(job)
        self.feed.release(step.puzzles[step.done])
        return np.array(answered, np.int32)
