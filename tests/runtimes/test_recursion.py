"""The recursion core and its consumers: the solver, teacher-forced parity, calibration recording and the quantize
report see one trajectory and halt by one rule, on every tiny family (the registry: a new family is tested here
without a line changed)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.conftest import TINY_CONFIGS
from tests.runtimes.conftest import random_ids, random_tokens
from trm_edge.bundle.contract import halts
from trm_edge.puzzles.examples import Examples
from trm_edge.runtimes.accuracy import accuracy
from trm_edge.runtimes.parity import teacher_forced_run
from trm_edge.runtimes.recursion import DEFAULTS, Recursion
from trm_edge.runtimes.solver import Solver
from trm_edge.runtimes.sources import open_runtime


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_every_consumer_of_the_recursion_sees_one_trajectory_and_halts_by_one_rule(name, bundles):
    from trm_edge.quantize.calibration import record
    from trm_edge.quantize.report import parity

    _, path = bundles(name)
    cfg = TINY_CONFIGS[name]
    n = 6
    examples = Examples(random_tokens(cfg, n, seed=3), random_tokens(cfg, n, seed=4), random_ids(cfg, n), None)
    with open_runtime(path, "onnxruntime") as rt, open_runtime(path, "onnxruntime") as other:
        threshold = rt.source.halt_threshold
        every = Solver(rt, batch_size=n, halt=False).run(examples.inputs, examples.puzzle_identifiers,
                                                         record_steps=True)
        halting = Solver(rt, batch_size=n).run(examples.inputs, examples.puzzle_identifiers)  # the defaults
        forced = teacher_forced_run(rt, other, examples, steps=cfg.halt_max_steps, batch_size=n)
        report, _ = parity(rt, other, examples, batch_size=n)
        trajectories, _ = record(onnx.load(str(rt.source.bundle.step_graph_path)), rt.source.bundle, examples,
                                 halt=True, threshold=threshold, batch_size=n)

    # Teacher forcing's lead trajectory is the solver's all-steps run, and a graph agrees with itself.
    np.testing.assert_array_equal(forced.a_run.step_preds, every.step_preds)
    np.testing.assert_array_equal(forced.a_run.step_q, every.step_q)
    assert all(r.argmax_agreement == 1.0 and r.halt_agreement == 1.0 for r in forced.per_step)
    # One halting rule: the default solver, halting read off the all-steps run, the report and calibration agree.
    assert DEFAULTS.halt and halting.halted.any() and len(set(halting.steps)) > 1, "the model halts at varied steps"
    derived = every.halting(threshold)
    np.testing.assert_array_equal(halting.steps, derived.steps)
    np.testing.assert_array_equal(halting.preds, derived.preds)
    np.testing.assert_array_equal(halting.halted, halts(halting.q_halt_logits, threshold))
    assert report["halting"]["mean_steps"]["float"] == pytest.approx(float(halting.steps.mean()))
    exact = accuracy(halting.preds, examples.labels, examples.ignore_label_id)[0]
    assert report["halting"]["exact"]["float"] == pytest.approx(float(exact.mean()))
    in_flight = [int((halting.steps >= k + 1).sum()) for k in range(trajectories.steps)]
    assert [len(rows) for rows in trajectories.rows] == in_flight


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_followers_are_fed_the_leads_state_and_extra_outputs_stay_on_the_host(name, bundles):
    _, path = bundles(name)
    cfg = TINY_CONFIGS[name]
    tokens, ids = random_tokens(cfg, 5, seed=8), random_ids(cfg, 5)
    with open_runtime(path, "onnxruntime") as lead, open_runtime(path, "onnxruntime") as follower:
        recursion = Recursion(lead, batch_size=3, max_steps=3, halt=False, followers=[follower])
        seen = []
        for step in recursion.steps(tokens, ids):
            assert step.feeds is not None and set(step.outputs) >= {"z_H_next", "z_L_next", "logits", "q_halt_logits"}
            np.testing.assert_array_equal(step.follower_outputs[0]["logits"], step.outputs["logits"])
            np.testing.assert_array_equal(step.logits(), step.outputs["logits"])
            seen.append((step.puzzles.tolist(), step.steps.tolist()))
    # Refill: puzzles 3 and 4 take the rows of 0..2 as those reach max_steps; each puzzle runs exactly 3 steps.
    assert seen[0] == ([0, 1, 2], [1, 1, 1]) and sum(len(p) for p, _ in seen) == 5 * 3
