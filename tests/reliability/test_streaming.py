"""Long runs are not silent: solve streams its answers as they are decided (in input order), and progress off a
terminal is a line every few seconds."""

from __future__ import annotations

import io as text_io
import json
import time

import numpy as np
from rich.console import Console

from tests.reliability.conftest import start
from trm_edge.progress import LineProgress

EASY = "24.6.9..51..34.6.8...175.43.6....82...159.4.79..8.6......9..7..59826731...64.19.."


def test_an_answer_is_reported_when_it_and_those_before_it_are_decided():
    """Batch 1 on the shipped model: the easy first puzzle is emitted after its own steps, before the others run."""
    from trm_edge.commands.solve import InOrder
    from trm_edge.puzzles.codec import get_codec
    from trm_edge.runtimes.solver import Solver
    from trm_edge.runtimes.sources import default_model, open_runtime, open_source

    codec = get_codec("sudoku")
    inputs = np.stack([codec.parse(EASY)] * 3)
    emitted: list[tuple[int, int]] = []
    printer = InOrder(lambda i, out: emitted.append((i, len(out.step_seconds))), len(inputs))
    with open_runtime(open_source(default_model()), "onnxruntime") as rt:
        out = Solver(rt, batch_size=1).run(inputs, on_finished=printer.finished)
    assert [i for i, _ in emitted] == [0, 1, 2]
    assert emitted[0][1] == out.steps[0] < len(out.step_seconds)  # puzzle 1 printed while 2 and 3 were to run


def test_solve_json_lines_arrive_while_the_run_goes_on(tmp_path):
    puzzles = tmp_path / "puzzles.txt"
    puzzles.write_text("\n".join([EASY] * 600) + "\n")
    process = start("solve", "--file", str(puzzles), "--json", "--runtime", "onnxruntime", "--threads", "1")
    try:
        first = json.loads(process.stdout.readline())
        assert first["puzzle"].endswith(":1") and first["valid"]
        assert process.poll() is None  # the first answer came out before the run ended
        rest = process.stdout.read()  # the pipe's own reader: communicate() would skip what readline buffered
        err = process.stderr.read()  # a few progress lines: no pipe fills up meanwhile
        process.wait(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert len(rest.splitlines()) == 599
    assert "solving: " in err and "/600" in err  # a progress line on stderr, which is not a terminal here


def test_progress_off_a_terminal_is_a_line_with_rate_and_eta():
    buffer = text_io.StringIO()
    bar = LineProgress(Console(file=buffer, width=200), interval=0.0)
    with bar:
        task = bar.add_task("eval test", total=100)
        time.sleep(0.01)
        bar.advance(task, 25)
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("eval test: 25/100 (25%), ") and "/s, ETA " in lines[0]
    assert len(lines) == 1  # nothing new at the end: no repeated line
