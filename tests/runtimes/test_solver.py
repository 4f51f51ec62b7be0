"""The host loop: halting, leaving the batch, refill, step limits, recording, decoding; against a scripted
numpy runtime (exact expectations) and against ``model.predict`` through the torch runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_CONFIGS
from trm_edge.errors import PuzzleError, TrmEdgeError
from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.model_source import ModelSource
from trm_edge.runtimes.solver import Solver, answers, sigmoid

CFG = TINY_CONFIGS["learned"]  # no puzzle embedding input, seq 36, vocab 6, 3 steps


class Scripted(Runtime):
    """Each step adds 1 to z_H; a puzzle "halts" once its step count reaches its first token; the
    logits predict token ``steps % vocab`` everywhere, so answers reveal the step they came from."""

    name = "scripted"
    runs = ("bundle",)

    def __init__(self, config=CFG, *, fixed: int | None = None, max_batch: int | None = None) -> None:
        super().__init__(ModelSource("bundle", Path("<scripted>"), config, "sudoku"))
        self.fixed, self.limit, self.batches = fixed, max_batch, []

    def _load(self) -> None:
        pass

    @property
    def fixed_batch(self):
        return self.fixed

    @property
    def max_batch(self):
        return self.limit or self.fixed

    def initial_state(self):
        return np.zeros(self.config.hidden_size, np.float32), np.zeros(self.config.hidden_size, np.float32)

    def _step(self, feeds):
        self.batches.append(len(feeds["inputs"]))
        z_H = feeds["z_H"] + 1
        steps = z_H[:, 0, 0].astype(int)
        logits = np.zeros((len(steps), self.config.seq_len, self.config.vocab_size), np.float32)
        logits[np.arange(len(steps)), :, steps % self.config.vocab_size] = 1.0
        q = np.where(steps >= feeds["inputs"][:, 0], 3.0, -3.0).astype(np.float32)
        return {"z_H_next": z_H, "z_L_next": feeds["z_L"], "logits": logits, "q_halt_logits": q}


def scripted_inputs(halt_at: list[int]) -> np.ndarray:
    inputs = np.ones((len(halt_at), CFG.seq_len), np.int32)
    inputs[:, 0] = halt_at
    return inputs


@pytest.mark.parametrize("refill", [True, False])
@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_halting_leaves_the_batch_and_answers_come_from_the_halting_step(refill, batch_size):
    halt_at = [1, 3, 5, 2, 5, 1, 4]  # 5 is beyond max_steps=3 (and one more than the vocab)
    runtime = Scripted()
    out = Solver(runtime, batch_size=batch_size, max_steps=3, halt=True, refill=refill).run(scripted_inputs(halt_at))
    expect_steps = np.minimum(halt_at, 3)
    np.testing.assert_array_equal(out.steps, expect_steps)
    np.testing.assert_array_equal(out.halted, np.array(halt_at) <= 3)
    np.testing.assert_array_equal(out.preds, np.repeat((expect_steps % CFG.vocab_size)[:, None], CFG.seq_len, 1))
    np.testing.assert_array_equal(out.q_halt_logits, np.where(np.array(halt_at) <= 3, 3.0, -3.0))
    np.testing.assert_allclose(out.confidence, sigmoid(out.q_halt_logits))
    assert sum(out.step_rows) == expect_steps.sum()  # a halted puzzle costs no further step
    assert max(runtime.batches) <= batch_size


def test_refill_keeps_the_batch_full_while_puzzles_wait():
    halt_at = [1] * 6 + [3] * 2
    no_refill = Solver(Scripted(), batch_size=4, max_steps=3, refill=False).run(scripted_inputs(halt_at))
    refill = Solver(Scripted(), batch_size=4, max_steps=3, refill=True).run(scripted_inputs(halt_at))
    assert no_refill.step_rows == [4, 4, 2, 2]  # waits for the whole batch to finish
    assert refill.step_rows == [4, 4, 2, 2] or len(refill.step_rows) <= len(no_refill.step_rows)
    np.testing.assert_array_equal(refill.steps, no_refill.steps)
    np.testing.assert_array_equal(refill.preds, no_refill.preds)


def test_no_halt_runs_every_step_and_records_each_step():
    out = Solver(Scripted(), batch_size=2, max_steps=3, halt=False).run(scripted_inputs([1, 2, 3]),
                                                                        record_steps=True)
    assert out.steps.tolist() == [3, 3, 3] and not out.halted.any()
    assert out.step_rows == [2, 2, 2, 1, 1, 1]
    for k in range(3):
        assert (out.step_preds[k] == (k + 1) % CFG.vocab_size).all()
    assert out.step_q[0].tolist() == [3.0, -3.0, -3.0]


def test_recorded_steps_hold_a_halted_answer():
    out = Solver(Scripted(), batch_size=4, max_steps=3, halt=True).run(scripted_inputs([1, 3]), record_steps=True)
    assert [int(out.step_preds[k, 0, 0]) for k in range(3)] == [1, 1, 1]
    assert [int(out.step_preds[k, 1, 0]) for k in range(3)] == [1, 2, 3]
    assert np.isnan(out.step_q[1, 0]) and out.step_q[2, 1] == 3.0


def test_threshold_is_on_the_logit():
    out = Solver(Scripted(), max_steps=3, threshold=5.0).run(scripted_inputs([1, 2]))
    assert out.steps.tolist() == [3, 3] and not out.halted.any()


def test_static_batch_graphs_get_padded_and_capped():
    runtime = Scripted(fixed=4)
    out = Solver(runtime, batch_size=16, max_steps=3).run(scripted_inputs([1, 2, 3, 1, 2, 3]))
    assert set(runtime.batches) == {4}  # padded: the graph always sees its static batch
    np.testing.assert_array_equal(out.steps, [1, 2, 3, 1, 2, 3])
    runtime = Scripted(max_batch=2)
    Solver(runtime, batch_size=16, max_steps=3).run(scripted_inputs([1, 2, 3]))
    assert max(runtime.batches) <= 2


def test_step_splits_feeds_beyond_the_batch_limit():
    runtime = Scripted(max_batch=2)
    z = np.zeros((5, CFG.total_len, CFG.hidden_size), np.float32)
    out = runtime.step({"inputs": scripted_inputs([1, 2, 3, 4, 5]), "z_H": z, "z_L": z})
    assert runtime.batches == [2, 2, 1] and out["logits"].shape[0] == 5


def test_empty_and_bad_inputs():
    solver = Solver(Scripted(), max_steps=2)
    assert len(solver.run(np.zeros((0, CFG.seq_len), np.int32))) == 0
    with pytest.raises(PuzzleError, match="shape"):
        solver.run(np.ones((2, CFG.seq_len + 1), np.int32))
    with pytest.raises(PuzzleError, match="vocabulary"):
        solver.run(np.full((1, CFG.seq_len), CFG.vocab_size, np.int32))
    with pytest.raises(PuzzleError, match="integers"):
        solver.run(np.ones((1, CFG.seq_len), np.float32))
    with pytest.raises(TrmEdgeError, match="batch size"):
        Solver(Scripted(), batch_size=0)
    with pytest.raises(TrmEdgeError, match="max_steps"):
        Solver(Scripted(), max_steps=0)
    with pytest.raises(TrmEdgeError, match="do not match"):
        Scripted().step({"inputs": np.ones((1, CFG.seq_len), np.int32)})


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("halt", [False, True])
def test_torch_runtime_solver_equals_model_predict(tiny_model_factory, name, halt):
    import torch

    from tests.runtimes.conftest import halting_model, random_ids, random_tokens
    from trm_edge.runtimes.torch_ref import TorchRuntime

    model = halting_model(tiny_model_factory, name)
    cfg = model.config
    tokens, ids = random_tokens(cfg, 10), random_ids(cfg, 10)
    out = Solver(TorchRuntime.from_model(model), batch_size=4, halt=halt).run(tokens, ids)
    ref = model.predict(torch.from_numpy(tokens), torch.from_numpy(ids), halt=halt)
    np.testing.assert_array_equal(out.steps, ref["steps"].numpy())
    assert (out.preds == ref["preds"].numpy()).mean() > 0.99  # batch composition: float rounding only
    np.testing.assert_allclose(out.q_halt_logits, ref["q_halt_logits"].numpy(), atol=1e-4)
    if halt:
        assert len(set(out.steps.tolist())) > 1, "the halting head should stop puzzles at different steps"


def test_identifiers_out_of_range(tiny_model_factory):
    from trm_edge.runtimes.torch_ref import TorchRuntime

    runtime = TorchRuntime.from_model(tiny_model_factory("many-puzzles"))
    tokens = np.ones((2, runtime.config.seq_len), np.int32)
    with pytest.raises(PuzzleError, match="identifiers"):
        Solver(runtime).run(tokens, np.array([0, 7]))
    with pytest.raises(PuzzleError, match="identifiers"):
        Solver(runtime).run(tokens, np.array([0]))


SUDOKU = "530070000600195000098000060800060003400803001700020006060000280000419005000080079"
SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


class Oracle(Scripted):
    """Predicts a fixed sudoku answer (tokens digit+1) at every step and halts at step 2."""

    def __init__(self, answer: str) -> None:
        super().__init__(TINY_CONFIGS["mlp"])
        self.answer = np.array([int(c) + 1 for c in answer])

    def _step(self, feeds):
        out = super()._step(feeds)
        logits = np.zeros_like(out["logits"])
        logits[:, np.arange(81), self.answer] = 1.0
        q = np.where(out["z_H_next"][:, 0, 0] >= 2, 1.0, -1.0).astype(np.float32)
        return {**out, "logits": logits, "q_halt_logits": q}


@pytest.mark.parametrize(("answer", "valid"), [(SOLUTION, True), (SOLUTION[:-2] + "97", False),
                                                (SUDOKU, False)])
def test_answers_decode_and_report_validity_truthfully(answer, valid):
    from trm_edge.puzzles.codec import get_codec

    codec = get_codec("sudoku")
    inputs = codec.parse(SUDOKU)[None]
    out = Solver(Oracle(answer), max_steps=4).run(inputs)
    (result,) = answers(out, inputs, codec)
    assert result.solution == answer.replace("0", ".")
    assert result.valid is valid
    assert result.steps == 2 and result.halted
    assert result.to_json() == {"solution": result.solution, "valid": valid, "problem": result.problem, "steps": 2,
                                "confidence": round(float(sigmoid(1.0)), 6), "halted": True}
    assert (result.problem is None) == valid


@pytest.mark.parametrize("threshold", [-1.0, 0.0, 1.0, 10.0])
def test_halting_read_from_an_all_steps_run_equals_a_halting_run(threshold):
    """The quantization report reads its halting figures from the all-steps run instead of a second pass; that
    reading must answer exactly what the halting solver answers (steps, answers, q, halted)."""
    halt_at = [1, 2, 3, 5, 2, 1, 3, 4]  # the scripted runtime's q jumps from -3 to 3 at these steps
    inputs = scripted_inputs(halt_at)
    recorded = Solver(Scripted(), batch_size=3, halt=False).run(inputs, record_steps=True)
    direct = Solver(Scripted(), batch_size=3, halt=True, threshold=threshold).run(inputs)
    derived = recorded.halting(threshold)
    assert np.array_equal(derived.steps, direct.steps) and np.array_equal(derived.preds, direct.preds)
    assert np.array_equal(derived.halted, direct.halted)
    assert np.array_equal(derived.q_halt_logits, direct.q_halt_logits)
    with pytest.raises(TrmEdgeError, match="record_steps"):
        Solver(Scripted(), batch_size=3, halt=False).run(inputs).halting(0.0)
