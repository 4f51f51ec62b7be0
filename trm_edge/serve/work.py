"""What a request asks for, as rows for the scheduler, and its answer once they are solved: the same parsing,
messages and JSON as ``trm-edge solve`` (puzzles as text; ARC tasks voted over their augmented versions).

    {"puzzles": ["PUZZLE", ...]}                          ->  {"answers": [<one solve --json line>, ...]}
    {"tasks": {"NAME": {"train": [...], "test": [...]}},  ->  {"attempts": <the ARC Prize submission>}
     "augmentations": K}   (ARC models; K optional)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Dict

import numpy as np

from trm_edge import safe_json
from trm_edge.errors import PuzzleError
from trm_edge.runtimes.solver import SolveOutput, answers


@dataclass
class Work:
    """A request's puzzle rows and how their solved output becomes the response."""

    inputs: np.ndarray  # [n, seq_len] int32
    identifiers: np.ndarray  # [n] int64
    respond: Callable[[SolveOutput], Dict[str, Any]]


class Reader:
    """Parses request bodies for one model: its task's codec, or an ARC model's task embeddings."""

    def __init__(self, runtime: Any, *, max_puzzles: int) -> None:
        self.runtime = runtime
        self.max_puzzles = max_puzzles
        self.arc = runtime.task == "arc"
        self.codec: Any = None
        self.embeddings: Any = None

    def load(self) -> None:
        """What parsing needs from the model; called once the runtime is loaded."""
        if self.arc:
            from trm_edge.runtimes.arc_solve import TaskEmbeddings

            self.embeddings = TaskEmbeddings.of(self.runtime)
        else:
            from trm_edge.puzzles.codec import get_codec

            self.codec = get_codec(self.runtime.task)

    def read(self, body: bytes) -> Work:
        value = parse_json(body)
        work = self._arc(value) if self.arc else self._puzzles(value)
        self.check_rows(len(work.inputs))
        return work

    def check_rows(self, rows: int) -> None:
        if rows > self.max_puzzles:
            raise RequestTooLarge(f"the request holds {rows} puzzle rows; this server queues at most "
                                  f"{self.max_puzzles} (--max-queue)")

    def _puzzles(self, value: Any) -> Work:
        from trm_edge.puzzles.reading import first_error, read_puzzles

        texts = value.get("puzzles") if isinstance(value, dict) else None
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise PuzzleError(f"request body: expected {{\"puzzles\": [PUZZLE, ...]}}, one or more {self.runtime.task} "
                              "puzzles as text (as trm-edge solve takes them)")
        parsed, errors = read_puzzles(texts, None, self.codec, self.runtime.config.seq_len)
        if errors:
            raise first_error(errors)
        inputs = np.stack([tokens for _, tokens in parsed]).astype(np.int32)
        labels = [label for label, _ in parsed]

        def respond(out: SolveOutput) -> Dict[str, Any]:
            solved = answers(out, inputs, self.codec)
            return {"answers": [{"puzzle": label, **a.to_json()} for label, a in zip(labels, solved)]}  # noqa: B905

        return Work(inputs, np.zeros(len(inputs), np.int64), respond)

    def _arc(self, value: Any) -> Work:
        from trm_edge.puzzles import arc
        from trm_edge.runtimes.arc_solve import plan_tasks, vote

        tasks = value.get("tasks") if isinstance(value, dict) else None
        if not isinstance(tasks, dict) or not tasks:
            raise PuzzleError('request body: expected {"tasks": {NAME: {"train": [...], "test": [...]}}}, one or more '
                              "ARC tasks by name (a *_challenges.json object), and optionally \"augmentations\": K")
        augmentations = value.get("augmentations")
        if augmentations is not None and (type(augmentations) is not int or augmentations < 1):
            raise PuzzleError(f"request body: augmentations {augmentations!r} must be an integer, at least 1")
        parsed = [arc.task_from_json(task, str(name)) for name, task in tasks.items()]
        # rows counted before the canvases are built: a small body can name many test inputs
        self.check_rows(sum(len(t.test) * len(self.embeddings.versions(t.name, augmentations)) for t in parsed))
        plans = plan_tasks(self.embeddings, parsed, augmentations)
        bounds = np.cumsum([0, *(len(plan.identifiers) for plan in plans)])

        def respond(out: SolveOutput) -> Dict[str, Any]:
            outputs = [out.select(slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]  # noqa: B905
            return {"attempts": vote(self.embeddings, plans, outputs)}

        return Work(np.concatenate([plan.inputs for plan in plans]),
                    np.concatenate([plan.identifiers for plan in plans]), respond)


def parse_json(body: bytes) -> Any:
    """The body as JSON; whatever the parser refuses is a PuzzleError (HTTP 400)."""
    try:
        return safe_json.loads(body)
    except ValueError as error:
        raise PuzzleError(f"request body: {error}") from None


class RequestTooLarge(PuzzleError):
    """More puzzle rows in one request than the queue holds (HTTP 413)."""


# The request body, as the OpenAPI description shows it (parsing is Reader's: the CLI's messages).
REQUEST_SCHEMA = {
    "type": "object",
    "properties": {
        "puzzles": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                    "description": "Sudoku or maze models: puzzles as text, as trm-edge solve takes them."},
        "tasks": {"type": "object", "additionalProperties": {"type": "object"},
                  "description": "ARC models: tasks by name, each {train: [...], test: [...]}."},
        "augmentations": {"type": "integer", "minimum": 1,
                          "description": "ARC: vote over at most this many versions of each test input."},
    },
}
