"""onnxruntime's in-place loop (BoundRecurrence) against its host loop: the same numbers, step by step."""

from __future__ import annotations

import numpy as np
import pytest

from tests.runtimes.conftest import random_ids, random_tokens
from trm_edge.errors import TrmEdgeError
from trm_edge.runtimes import Solver, open_runtime
from trm_edge.runtimes.interface import HostRecurrence, Runtime
from trm_edge.runtimes.ort import BoundRecurrence


@pytest.mark.parametrize("name", ["mlp", "many-puzzles"])
def test_bound_loop_equals_the_host_loop_through_halting_and_refill(bundles, name):
    _, bundle = bundles(name)
    with open_runtime(bundle, "onnxruntime") as ort:
        assert isinstance(ort.start(capacity=4), BoundRecurrence)
        cfg = ort.config
        tokens, ids = random_tokens(cfg, 13, seed=7), random_ids(cfg, 13, seed=8)
        bound = Solver(ort, batch_size=5, halt=True, refill=True).run(tokens, ids)
        ort.start = lambda *, capacity: Runtime.start(ort, capacity=capacity)  # the host loop, same session
        host = Solver(ort, batch_size=5, halt=True, refill=True).run(tokens, ids)
    assert len(set(bound.steps.tolist())) > 1, "halting should vary so that rows leave mid-batch"
    np.testing.assert_array_equal(bound.steps, host.steps)
    np.testing.assert_array_equal(bound.preds, host.preds)
    np.testing.assert_array_equal(bound.q_halt_logits, host.q_halt_logits)


def test_compaction_keeps_the_right_rows_state_and_logits(bundles):
    _, bundle = bundles("learned")
    with open_runtime(bundle, "onnxruntime") as ort:
        tokens = random_tokens(ort.config, 8, seed=9)
        bound, host = ort.start(capacity=8), HostRecurrence(ort, capacity=8)
        for r in (bound, host):
            r.add(tokens, None)
            r.step()
        for keep in ([1, 2, 3, 4, 5, 6, 7], [0, 1, 3], [0, 1], [1]):
            bound.keep(np.array(keep))
            host.keep(np.array(keep))
            np.testing.assert_array_equal(bound.logits(np.arange(bound.batch)), host.logits(np.arange(host.batch)))
            for got, want in zip(bound.state(), host.state(), strict=True):
                np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(bound.step(), host.step())
        bound.add(tokens[:2], None)  # refill after compaction starts from the initial state
        host.add(tokens[:2], None)
        np.testing.assert_array_equal(bound.step(), host.step())
        with pytest.raises(TrmEdgeError, match="ascending"):
            bound.keep(np.array([0, 0]))
