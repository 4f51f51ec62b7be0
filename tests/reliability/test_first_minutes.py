"""The first minutes of a new user: the puzzles the README and `make demo` show are ones the shipped model solves,
and `make demo` evaluates through the shipped bundle (onnxruntime), not the checkpoint on torch."""

from __future__ import annotations

import re

import numpy as np

from tests.reliability.conftest import ROOT


def shown_puzzles() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    return {"README solve": re.search(r"trm-edge solve --model \S+ ([0-9.]{81})", readme).group(1),
            "make demo": re.search(r"DEMO_PUZZLE := ([0-9.]{81})", makefile).group(1)}


def test_the_puzzles_shown_to_a_new_user_are_solved_by_the_shipped_model():
    from trm_edge.puzzles.codec import get_codec
    from trm_edge.runtimes.solver import Solver, answers
    from trm_edge.runtimes.sources import default_model, open_runtime, open_source

    codec = get_codec("sudoku")
    shown = shown_puzzles()
    inputs = [codec.parse(text) for text in shown.values()]
    with open_runtime(open_source(default_model()), "onnxruntime") as rt:
        out = Solver(rt).run(np.stack(inputs))
    for where, result in zip(shown, answers(out, np.stack(inputs), codec)):  # noqa: B905
        assert result.valid, (where, result.problem)


def test_make_demo_evaluates_through_the_shipped_bundle():
    demo = (ROOT / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    evals = [line for line in demo.splitlines() if " eval " in line]
    assert evals and all("trm_edge/models/default/bundle" in line for line in evals), evals
