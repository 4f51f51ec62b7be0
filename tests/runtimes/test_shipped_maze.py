"""The shipped maze model (trm_edge/models/maze): the figures of its card hold on fresh mazes of its recipe, on
the torch-free bundle, with halting as `solve` runs it."""

from __future__ import annotations

import numpy as np
import pytest

from trm_edge.runtimes import Solver, open_runtime, open_source
from trm_edge.trm.checkpoint import PACKAGED_MODELS


@pytest.mark.slow
def test_the_maze_model_solves_fresh_mazes_and_needs_its_recursion(tmp_path):
    bundle = PACKAGED_MODELS / "maze" / "bundle"
    if not bundle.is_dir():
        pytest.skip("no maze model shipped")
    from trm_edge.puzzles.build import build_from_recipe
    from trm_edge.puzzles.examples import read_examples
    from trm_edge.puzzles.maze import is_valid
    from trm_edge.runtimes.accuracy import accuracy
    from trm_edge.trm.checkpoint import read_checkpoint_info

    recipe = read_checkpoint_info("maze")["data_recipe"]
    build_from_recipe(recipe, tmp_path / "fresh", seed=20261129, train=0, test=300)
    source = open_source(bundle)
    examples = read_examples(str(tmp_path / "fresh"), "test", config=source.config)
    with open_runtime(source, "onnxruntime") as runtime:
        halting = Solver(runtime, batch_size=64, halt=True, threshold=source.halt_threshold).run(examples.inputs)
        one_step = Solver(runtime, batch_size=64, max_steps=1, halt=False).run(examples.inputs)
    exact = accuracy(halting.preds, examples.labels, examples.ignore_label_id)[0]
    assert exact.mean() >= 0.78, exact.mean()  # the card: 83.4% on 2,000 (300 resolve +-2.2 points)
    assert accuracy(one_step.preds, examples.labels, examples.ignore_label_id)[0].mean() <= 0.03
    assert halting.steps.mean() < 6
    valid = np.array([is_valid(p, a) for p, a in zip(examples.inputs, halting.preds)])  # noqa: B905
    np.testing.assert_array_equal(valid, exact)  # the path checker agrees with the labels
