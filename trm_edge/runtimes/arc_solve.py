"""Solving ARC tasks on the device, as the paper evaluates them (torch-free).

An ARC model has one puzzle embedding per augmented version of each task it was trained on, named
``task|||tK|||perm`` (the identity version is the plain task name). Each test input is shown to the model
under every augmentation the bundle has an embedding for, each prediction is mapped back through its
inverse augmentation, and the predictions vote as in the official evaluator (:class:`ArcVoter`): most votes
first, ties broken by the mean ``sigmoid(q_halt)``. The two best grids are the ARC Prize attempts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trm_edge.errors import PuzzleError, choices
from trm_edge.puzzles import arc
from trm_edge.puzzles.arc_eval import ArcVoter
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.solver import SolveOutput, Solver


@dataclass(frozen=True)
class TaskEmbeddings:
    """The puzzle identifiers a model carries (bundle or checkpoint), grouped by original task:
    ``task -> [(identifier, augmentation)]``."""

    by_task: dict[str, list[tuple[int, arc.Augmentation]]]
    names: list[str | None]  # index = identifier (what ArcVoter reads)

    @classmethod
    def of(cls, runtime: Runtime) -> TaskEmbeddings:
        known = runtime.source.identifiers()
        if not known or not any(known["names"]):
            raise PuzzleError(f"{runtime.source.label}: solving ARC tasks needs the names of the model's puzzle "
                              "identifiers, and it has none: give the checkpoint the training set's identifiers.json "
                              "(trm-edge import --identifiers), or export it with --identifiers")
        names: list[str | None] = [None] * (max(known["ids"]) + 1)
        by_task: dict[str, list[tuple[int, arc.Augmentation]]] = {}
        for ident, name in zip(known["ids"], known["names"]):  # noqa: B905
            names[int(ident)] = name
            if name and not name.startswith("<"):  # "<blank>": the official padding identifier
                task, augmentation = arc.inverse_augmentation(name)
                by_task.setdefault(task, []).append((int(ident), augmentation))
        for versions in by_task.values():
            versions.sort(key=lambda item: (not item[1].is_identity, item[0]))  # the original first
        return cls(by_task, names)

    def versions(self, task: str, limit: int | None = None) -> list[tuple[int, arc.Augmentation]]:
        found = self.by_task.get(task)
        if not found:
            known = sorted(self.by_task)
            raise PuzzleError(f"task {task!r}: this model has no puzzle embedding for it (it was not in its training "
                              f"data, or the bundle was exported without it); the bundle knows {len(known)} "
                              f"task(s): {choices(known[:8])}{' ...' if len(known) > 8 else ''}")
        return found[:limit]


@dataclass(frozen=True)
class TaskPlan:
    """One task's model runs: every test input under every version, in that order."""

    task: arc.ArcTask
    identifiers: np.ndarray  # [N] int64
    inputs: np.ndarray  # [N, 900] int32 canvas tokens


def plan_tasks(embeddings: TaskEmbeddings, tasks: Sequence[arc.ArcTask], max_augmentations: int | None = None
               ) -> list[TaskPlan]:
    """Every task checked (test inputs present, embeddings known) before any is run."""
    plans = []
    for task in tasks:
        if not task.test:
            raise PuzzleError(f"task {task.name!r} has no test inputs to solve")
        versions = embeddings.versions(task.name, max_augmentations)
        ids = [ident for _ in task.test for ident, _ in versions]
        tokens = [arc.encode_grid(augmentation.apply(example.input)) for example in task.test
                  for _, augmentation in versions]
        plans.append(TaskPlan(task, np.array(ids, dtype=np.int64), np.stack(tokens).astype(np.int32)))
    return plans


def solve_plans(solver: Solver, embeddings: TaskEmbeddings, plans: Sequence[TaskPlan], *, attempts: int = 2,
                on_progress: Callable[[int], Any] | None = None) -> dict[str, list[dict[str, list]]]:
    """The ARC Prize submission: ``{task: [{"attempt_1": grid, "attempt_2": grid}, ...]}``, one entry per test
    input, from the votes of its versions' predictions."""
    outputs = [solver.run(plan.inputs, plan.identifiers, on_progress=on_progress) for plan in plans]
    return vote(embeddings, plans, outputs, attempts=attempts)


def vote(embeddings: TaskEmbeddings, plans: Sequence[TaskPlan], outputs: Sequence[SolveOutput], *,
         attempts: int = 2) -> dict[str, list[dict[str, list]]]:
    """The submission from each plan's solved rows (``outputs[i]`` answers ``plans[i]``, row for row)."""
    voter = ArcVoter(embeddings.names, {}, blank_identifier_id=-1)  # no padding rows: every row votes
    submission: dict[str, list[dict[str, list]]] = {}
    for plan, out in zip(plans, outputs):  # noqa: B905
        voter.add(plan.identifiers, plan.inputs, out.preds, out.q_halt_logits)
        submission[plan.task.name] = [voter.attempts(plan.task.name, example.input, attempts)
                                      for example in plan.task.test]
    return submission
