"""Faults injected into the commands as a user meets them (docs/reliability.md): existing and read-only outputs,
SIGKILL at every point of a directory swap, SIGTERM and Ctrl-C, two writers, a tampered manifest, a dataset of
another task, hostile numbers. No traceback reaches the user, and no existing output is lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.reliability.conftest import ROOT, SUDOKU, assert_refused, cli, siblings, start
from trm_edge.bundle.store import load_bundle
from trm_edge.locking import output_lock

pytestmark = pytest.mark.slow


# -- existing outputs ---------------------------------------------------------------------------------------------

def file_writers(bundle, data) -> dict[str, list[str]]:
    """Every command option that writes one file, as a command line that ends with the file's path."""
    return {
        "eval --save-preds": ["eval", str(bundle), "--data", str(data), "--limit", "2", "--save-preds"],
        "eval --submission": ["eval", str(bundle), "--data", str(data), "--submission"],
        "solve --submission": ["solve", SUDOKU, "--model", str(bundle), "--submission"],
        "bench --plot": ["bench", str(bundle), "-b", "1", "--repeats", "1", "--max-steps", "1", "--plot"],
        "compare --plot": ["compare", str(bundle), "--data", str(data), "--limit", "2", "--plot"],
    }


@pytest.mark.parametrize("writer", ["eval --save-preds", "eval --submission", "solve --submission", "bench --plot",
                                    "compare --plot"])
def test_an_existing_file_is_never_replaced_unasked(writer, bundle, sudoku_data, tmp_path):
    existing = tmp_path / "mine.out"
    existing.write_text("precious")
    assert_refused(cli(*file_writers(bundle, sudoku_data)[writer], str(existing)), "exists", "--force")
    assert existing.read_text() == "precious"


def test_force_replaces_a_file_atomically(bundle, sudoku_data, tmp_path):
    preds = tmp_path / "preds.npy"
    preds.write_text("old")
    result = cli(*file_writers(bundle, sudoku_data)["eval --save-preds"], str(preds), "--force")
    assert result.returncode == 0, result.stderr
    assert np.load(preds).shape == (2, 81)
    assert siblings(preds) == ["preds.npy"]


# -- locations that cannot be written -----------------------------------------------------------------------------

def directory_writers(checkpoint, bundle, data) -> dict[str, list[str]]:
    """Every command that writes a directory, as a command line that ends with ``-o``."""
    return {
        "export": ["export", str(checkpoint), "--target", "cpu", "-o"],
        "quantize": ["quantize", str(bundle), "--fp16", "-o"],
        "data build": ["data", "build", "sudoku", "--train", "4", "--test", "2", "-o"],
        "init": ["init", "--preset", "sudoku-mini", "-o"],
        "train": ["train", "--preset", "sudoku-mini", "--data", str(data), "--train-steps", "1", "-o"],
    }


WRITERS = ["export", "quantize", "data build", "init", "train"]


@pytest.mark.parametrize("writer", [*WRITERS, "eval --save-preds", "bench --plot"])
def test_a_read_only_location_is_one_line_before_any_work(writer, checkpoint, bundle, sudoku_data,
                                                          read_only_dir):
    started = time.perf_counter()
    command = {**directory_writers(checkpoint, bundle, sudoku_data), **file_writers(bundle, sudoku_data)}[writer]
    result = cli(*command, str(read_only_dir / "out"))
    assert_refused(result, "cannot write")
    assert time.perf_counter() - started < 60  # before calibration, export or training, not after


@pytest.mark.parametrize("writer", [*WRITERS, "eval --save-preds", "bench --plot"])
def test_an_output_under_a_file_is_one_line(writer, checkpoint, bundle, sudoku_data, tmp_path):
    (tmp_path / "file").write_text("x")
    command = {**directory_writers(checkpoint, bundle, sudoku_data), **file_writers(bundle, sudoku_data)}[writer]
    assert_refused(cli(*command, str(tmp_path / "file" / "out")), "is a file, not a directory")


def test_export_into_the_current_directory_is_refused(checkpoint, tmp_path):
    result = cli("export", str(checkpoint), "--target", "cpu", "-o", ".", "--force", cwd=tmp_path)
    assert_refused(result, "current directory")
    assert list(tmp_path.iterdir()) == []


# -- SIGKILL at every point of a directory swap -------------------------------------------------------------------

SWAP_POINTS = ["replace:before", "replace:exchanged"]


@pytest.mark.parametrize("point", SWAP_POINTS)
def test_export_force_killed_at_a_swap_point_leaves_a_whole_bundle(point, checkpoint, tmp_path):
    out = tmp_path / "bundle"
    assert cli("export", str(checkpoint), "--target", "cpu", "-o", str(out)).returncode == 0
    killed = cli("export", str(checkpoint), "--target", "cpu", "-o", str(out), "--force",
                 env={"TRM_EDGE_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    load_bundle(out)  # the old bundle or the new one, every checksum right
    again = cli("export", str(checkpoint), "--target", "cpu", "-o", str(out), "--force")
    assert again.returncode == 0, again.stderr
    load_bundle(out)
    assert siblings(out) == ["bundle"]  # the killed run's temporary copy is gone


KILLED_BETWEEN_RENAMES = textwrap.dedent("""
    import os, sys
    from trm_edge import io
    io._exchange = lambda a, b: False  # a platform without renameat2: the swap takes two renames
    os.environ["TRM_EDGE_FAULT"] = "replace:between-renames"
    with io.atomic_directory(sys.argv[1], force=True) as tmp:
        (tmp / "a.txt").write_text("new")
""")


def test_a_swap_killed_between_its_two_renames_is_undone_by_the_next_writer(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old")
    killed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(out)], cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists() and (tmp_path / ".out.old" / "a.txt").read_text() == "old"
    from trm_edge.io import atomic_directory

    with pytest.raises(RuntimeError), atomic_directory(out, force=True):
        raise RuntimeError("the next writer fails, and still the old output is back")
    assert (out / "a.txt").read_text() == "old"
    assert siblings(out) == ["out"]


TRAIN_SMALL = ["--set", "hidden_size=32", "--set", "puzzle_emb_ndim=32", "--set", "puzzle_emb_len=1",
               "--set", "expansion=2", "--set", "L_cycles=1", "--set", "halt_max_steps=2",
               "--set", "global_batch_size=8", "--set", "eval_max_examples=4", "--set", "checkpoint_interval=2",
               "--set", "eval_interval=100", "--no-progress"]


def train_command(data, run, steps: int, *extra: str) -> list[str]:
    return ["train", "--preset", "sudoku-mini", "--data", str(data), "-o", str(run), "--train-steps", str(steps),
            *TRAIN_SMALL, *extra]


def test_training_killed_while_swapping_its_state_resumes(sudoku_data, tmp_path):
    """Checkpoints at steps 2 and 4: the second replaces state/, and the run is killed in the middle of it."""
    run = tmp_path / "run"
    killed = cli(*train_command(sudoku_data, run, 4), env={"TRM_EDGE_FAULT": "replace:exchanged:state"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run / "model" / "config.json").is_file()
    info = json.loads((run / "state" / "trainer.json").read_text())
    assert info["step"] == 4  # the exchange happened: the new state is in place, the old one is litter
    resumed = cli(*train_command(sudoku_data, run, 6, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "state" / "trainer.json").read_text())["step"] == 6
    assert siblings(run / "state") == ["state"]


def test_a_run_killed_in_its_first_checkpoint_keeps_its_model(sudoku_data, tmp_path):
    """model/ is written before state/: killed just before the first state/ lands, the run still has its model."""
    run = tmp_path / "run"
    killed = cli(*train_command(sudoku_data, run, 2), env={"TRM_EDGE_FAULT": "replace:before:state"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run / "model" / "model.safetensors").is_file() and not (run / "state").exists()


# -- signals --------------------------------------------------------------------------------------------------------

def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def interrupted(args: list[str], ready, sig: int, *, settle: float = 0.0) -> tuple[int, str]:
    """Start ``trm-edge ARGS``, send ``sig`` once ``ready()`` holds (and ``settle`` seconds more): exit code, stderr."""
    process = start(*args)
    try:
        wait_for(ready)
        time.sleep(settle)
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, err


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    out = tmp_path / "data"
    # ready once it has claimed its output and is generating puzzles
    code, err = interrupted(["data", "build", "sudoku", "--train", "200000", "--test", "2", "-o", str(out)],
                            lambda: (tmp_path / ".data.lock").exists(), signal.SIGTERM, settle=1.0)
    assert code == 143, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no output, no temporary, no lock file


def test_ctrl_c_in_train_says_how_to_resume(sudoku_data, tmp_path):
    run = tmp_path / "run"
    code, err = interrupted(train_command(sudoku_data, run, 100000),
                            lambda: (run / "state" / "trainer.json").is_file(), signal.SIGINT)
    assert code == 130, err
    assert "Traceback" not in err
    assert "--resume" in err and str(run) in err


# -- two writers ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("writer", WRITERS)
def test_a_second_writer_of_a_path_is_refused_with_the_holders_pid(writer, checkpoint, bundle, sudoku_data,
                                                                   tmp_path):
    out = tmp_path / "out"
    with output_lock(out):  # this test process is the first writer
        result = cli(*directory_writers(checkpoint, bundle, sudoku_data)[writer], str(out))
    assert_refused(result, "being written by another trm-edge process", "PID")
    assert not out.exists()


def test_two_exports_into_one_new_path_never_both_succeed(checkpoint, tmp_path):
    out = tmp_path / "bundle"
    command = ["export", str(checkpoint), "--target", "cpu", "-o", str(out)]
    first, second = start(*command), start(*command)
    results = [(p.wait(timeout=300), p.stderr.read()) for p in (first, second)]
    assert sorted(code for code, _ in results) == [0, 2], results
    assert any("being written" in err or "exists" in err for _, err in results), results
    load_bundle(out)


# -- what would be silently wrong -----------------------------------------------------------------------------------

def test_a_hand_edited_manifest_is_refused(bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["loop"]["halt_threshold"] = 5.0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert_refused(cli("verify", str(copy)), "manifest_sha256")
    assert_refused(cli("solve", SUDOKU, "--model", str(copy)), "manifest_sha256")


@pytest.mark.parametrize("command", ["eval", "compare", "bench"])
def test_a_dataset_of_another_task_is_refused(command, bundle, maze_data):
    args = {"eval": ["eval", str(bundle), "--data", str(maze_data)],
            "compare": ["compare", str(bundle), "--data", str(maze_data), "--limit", "2"],
            "bench": ["bench", str(bundle), "--data", str(maze_data), "-b", "1", "--repeats", "1"]}[command]
    assert_refused(cli(*args), "holds maze puzzles", "solves sudoku")


HOSTILE = {
    "eval --limit -5": (["eval", "{bundle}", "--data", "{data}", "--limit", "-5"], "at least 1"),
    "eval --limit 0": (["eval", "{bundle}", "--data", "{data}", "--limit", "0"], "at least 1"),
    "compare --limit 0": (["compare", "{bundle}", "--data", "{data}", "--limit", "0"], "at least 1"),
    "solve --threads 5000": (["solve", SUDOKU, "--model", "{bundle}", "--threads", "5000"], "CPU cores"),
    "solve --threshold nan": (["solve", SUDOKU, "--model", "{bundle}", "--threshold", "nan"], "finite"),
    "solve --batch 0": (["solve", SUDOKU, "--model", "{bundle}", "--batch", "0"], "at least 1"),
    "solve --max-steps 0": (["solve", SUDOKU, "--model", "{bundle}", "--max-steps", "0"], "at least 1"),
    "train --set lr=-1": (["train", "--preset", "sudoku-mini", "--data", "{data}", "-o", "{out}", "--set", "lr=-1"],
                          "out of range"),
    "train --set beta2=1": (["train", "--preset", "sudoku-mini", "--data", "{data}", "-o", "{out}", "--set",
                             "beta2=1"], "out of range"),
    "train --set no_ACT_continue=false": (["train", "--preset", "sudoku-mini", "--data", "{data}", "-o", "{out}",
                                           "--set", "no_ACT_continue=false"], "is not supported"),
    "train --threads 5000": (["train", "--preset", "sudoku-mini", "--data", "{data}", "-o", "{out}", "--threads",
                              "5000"], "CPU cores"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_numbers_are_one_line_each(case, bundle, sudoku_data, tmp_path):
    args, words = HOSTILE[case]
    values = {"bundle": str(bundle), "data": str(sudoku_data), "out": str(tmp_path / "run")}
    assert_refused(cli(*(a.format(**values) for a in args)), words)
    assert not (tmp_path / "run").exists()
