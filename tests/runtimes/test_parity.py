"""Parity is the product: the bundle runtimes (onnxruntime, OpenVINO) reproduce the torch reference.

Random-weight TRM is chaotic (docs/design.md), so every step is compared teacher-forced (both runtimes fed
the torch trajectory's state); whole solver runs are compared over few steps only, and over a whole
trajectory only for a trained model (the slow test on the shipped ``default`` model).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TINY_CONFIGS
from tests.runtimes.conftest import random_ids, random_tokens
from trm_edge.puzzles.examples import Examples
from trm_edge.runtimes import Solver, open_runtime, open_source
from trm_edge.runtimes.ort import OnnxRuntime, OrtOptions
from trm_edge.runtimes.parity import free_running, teacher_forced, teacher_forced_run
from trm_edge.runtimes.torch_ref import TorchRuntime


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_bundle_runtimes_match_torch_step_by_step(bundles, name, runtime):
    model, bundle = bundles(name)
    cfg = model.config
    examples = Examples(random_tokens(cfg, 12), None, random_ids(cfg, 12))
    with TorchRuntime.from_model(model) as ref, open_runtime(bundle, runtime) as ort:
        records = teacher_forced(ref, ort, examples, steps=cfg.halt_max_steps, batch_size=5)
    assert len(records) == cfg.halt_max_steps
    for r in records:
        assert r.initial_state_max_abs == 0.0 and r.puzzle_embedding_max_abs == 0.0
        assert r.logits_max_rel < 1e-4, r
        assert r.argmax_agreement >= 0.999, r  # ties aside, the same predicted cell everywhere
        assert r.q_halt_max_abs < 1e-4, r
        assert r.halt_agreement == 1.0, r
        assert r.state_max_abs < 1e-3, r


@pytest.mark.parametrize("name", ["mlp", "many-puzzles"])
def test_solver_agrees_over_a_few_steps(bundles, name):
    model, bundle = bundles(name)
    cfg = model.config
    tokens, ids = random_tokens(cfg, 16, seed=3), random_ids(cfg, 16, seed=4)
    examples = Examples(tokens, None, ids)
    with TorchRuntime.from_model(model) as ref, open_runtime(bundle) as ort:
        runs = [Solver(rt, batch_size=6, max_steps=2, halt=True).run(tokens, ids) for rt in (ref, ort)]
    report = free_running(runs[0], runs[1], examples)
    assert report.cell_agreement > 0.995 and report.steps_agreement > 0.9, report


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_the_teacher_forced_reference_is_its_all_steps_solver_run(bundles, name):
    """The quantizer's report reads the float graph's all-steps answers off the teacher-forced pass instead of
    solving again: they must be the solver's, bit for bit, through the same batches."""
    model, bundle = bundles(name)
    cfg = model.config
    tokens, ids = random_tokens(cfg, 11, seed=3), random_ids(cfg, 11, seed=4)
    with open_runtime(bundle) as a, open_runtime(bundle) as b:
        run = teacher_forced_run(a, b, Examples(tokens, None, ids), steps=cfg.halt_max_steps, batch_size=4)
        solved = Solver(a, batch_size=4, halt=False).run(tokens, ids, record_steps=True)
    forced = run.a_run
    assert forced.step_rows == [rows for rows in (4, 4, 3) for _ in range(cfg.halt_max_steps)]
    assert len(forced.step_seconds) == len(run.b_step_seconds) == len(forced.step_rows)
    for field in ("preds", "steps", "q_halt_logits", "halted", "step_preds", "step_q"):
        np.testing.assert_array_equal(getattr(forced, field), getattr(solved, field), err_msg=field)


@pytest.mark.parametrize("options", [OrtOptions(intra_op_threads=1), OrtOptions(graph_optimization="disable"),
                                     OrtOptions(graph_optimization="basic", memory_arena=False),
                                     OrtOptions(memory_pattern=True, spinning=True, sequential=False)])
def test_session_options_do_not_change_the_answers(bundles, options):
    model, bundle = bundles("rope")
    cfg = model.config
    feeds = {"inputs": random_tokens(cfg, 3)}
    feeds["z_H"], feeds["z_L"] = (np.broadcast_to(s, (3, cfg.total_len, cfg.hidden_size)).copy()
                                  for s in (model.H_init.numpy(), model.L_init.numpy()))
    with open_runtime(bundle, "onnxruntime") as default:
        want = default.step(feeds)
    tuned = OnnxRuntime(default.source, options=options)
    with tuned:
        got = tuned.step(feeds)
        assert tuned.describe()["providers"] == ["CPUExecutionProvider"]
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)


def test_static_batch_bundle(bundles):
    model, bundle = bundles("learned", batch=4)
    cfg = model.config
    tokens = random_tokens(cfg, 6, seed=5)
    with open_runtime(bundle) as rt:
        assert rt.fixed_batch == 4
        out = Solver(rt, batch_size=16, max_steps=1, halt=False).run(tokens)
    with TorchRuntime.from_model(model) as ref:
        want = Solver(ref, batch_size=16, max_steps=1, halt=False).run(tokens)
    assert (out.preds == want.preds).mean() > 0.999


def test_unknown_provider_is_refused(bundles):
    from trm_edge.errors import RuntimeUnavailableError

    _, bundle = bundles("mlp")
    with pytest.raises(RuntimeUnavailableError, match="no CUDAExecutionProvider"):
        open_runtime(bundle, "onnxruntime:cuda").load()
    with pytest.raises(RuntimeUnavailableError, match="unknown onnxruntime device 'npu'"):
        open_runtime(bundle, "onnxruntime:npu").load()


@pytest.mark.slow
def test_default_model_whole_puzzles_agree(tmp_path):
    """The shipped default model on held-out puzzles of its own distribution: its bundle on onnxruntime and on
    OpenVINO gives the torch reference's answers (>= 99.5% of puzzles identical), and halting at the model's
    calibrated threshold lowers the mean steps while losing at most 1 point of exact accuracy."""
    from trm_edge.runtimes.sources import default_model

    shipped = default_model()
    if shipped is None:
        pytest.skip("no default model shipped yet")
    from trm_edge.puzzles.build import build_from_recipe
    from trm_edge.puzzles.examples import read_examples
    from trm_edge.runtimes.accuracy import accuracy
    from trm_edge.trm.checkpoint import load_model, read_checkpoint_info

    recipe = read_checkpoint_info("default").get("data_recipe")
    if not recipe:
        pytest.skip("the default model records no data recipe")
    build_from_recipe(recipe, tmp_path / "data", seed=20261125, train=0, test=200)
    model = load_model("default")
    examples = read_examples(str(tmp_path / "data"), "test", config=model.config)
    source = open_source(shipped)
    threshold = getattr(source, "halt_threshold", 0.0)
    exact = {}
    with TorchRuntime.from_model(model) as ref, open_runtime(source) as ort, \
            open_runtime(source, "openvino") as ov:
        assert ort.name == "onnxruntime"
        for halt in (False, True):
            runs = [Solver(rt, batch_size=32, halt=halt, threshold=threshold).run(examples.inputs)
                    for rt in (ref, ort, ov)]
            for run in runs[1:]:
                report = free_running(runs[0], run, examples)
                assert report.answer_agreement >= 0.995, report
            exact[halt] = (accuracy(runs[1].preds, examples.labels, examples.ignore_label_id)[0].mean(),
                           runs[1].steps.mean())
    assert exact[True][1] < exact[False][1], exact
    assert exact[True][0] >= exact[False][0] - 0.01, exact
