"""A full disk (docs/reliability.md, "A full disk"): every writer meets it on a small tmpfs of its own and says so in
one line (the path, what failed, the bytes needed where known, the free space), exit code 2; the old output is kept
byte for byte and no temporary is left. Outputs whose size is known before the work are refused before it, and a
training run that meets the full disk at a checkpoint keeps its last one and says how to resume."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import assert_refused, cli, siblings, tmpfs
from tests.reliability.test_faults import train_command
from trm_edge import io
from trm_edge.errors import OutputWriteError

pytestmark = pytest.mark.slow

QUANTIZE = ["--int8", "--calib-task", "sudoku", "--calib-n", "16", "--eval-n", "0", "--no-report"]


@pytest.fixture
def disk(tmp_path) -> Path:
    """A 16 MB file system of its own (tmpfs), to fill; skipped where it cannot be mounted."""
    path = tmp_path / "disk"
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system to fill needs root")
    with tmpfs(path, "size=16m", "a tmpfs"):
        yield path


def leave_free(disk: Path, free: int) -> None:
    """Fill ``disk`` with a filler file until about ``free`` bytes are left (tmpfs counts whole pages)."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    filler.write_bytes(bytes(max(0, io.free_bytes(disk) - free)))


def contents(path: Path) -> dict[str, str]:
    """Every file under ``path`` with its sha256: what must stay byte for byte."""
    return {p.relative_to(path).as_posix(): io.sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()}


def on_disk(disk: Path) -> list[str]:
    """What lies on the disk: outputs, the filler, and any temporary or lock left behind."""
    return sorted(p.name for p in disk.iterdir())


# -- export, quantize, data build: the size is known before the work ---------------------------------------------

def test_export_refuses_a_bundle_the_disk_cannot_hold_before_any_work(checkpoint, disk):
    leave_free(disk, 100_000)
    line = assert_refused(cli("export", str(checkpoint), "--target", "cpu", "-o", str(disk / "bundle")),
                          "not enough space", str(disk / "bundle"), "needs at least", "free in")
    assert "kB" in line
    assert on_disk(disk) == ["filler"]


@pytest.mark.parametrize("existing", [False, True], ids=["new path", "--force over a good bundle"])
def test_export_that_meets_a_full_disk_is_one_line_and_keeps_the_old_bundle(existing, checkpoint, bundle, disk):
    """800 kB pass the check before the work (the weights, 711 kB) but cannot hold the bundle (920 kB)."""
    out = disk / "bundle"
    if existing:
        shutil.copytree(bundle, out)
    before = contents(out) if existing else None
    leave_free(disk, 800_000)
    result = cli("export", str(checkpoint), "--target", "cpu", "-o", str(out), *(["--force"] if existing else []))
    assert_refused(result, f"cannot write {str(out)!r}", "no space left", "free in",
                   *([f"{str(out)!r} is unchanged"] if existing else []))
    assert (contents(out) if existing else None) == before
    assert on_disk(disk) == (["bundle", "filler"] if existing else ["filler"])


@pytest.mark.parametrize("free, words", [(100_000, "not enough space"), (400_000, "no space left")],
                         ids=["refused before the work", "meets the full disk"])
def test_quantize_on_a_full_disk_is_one_line_and_keeps_the_old_output(free, words, bundle, disk):
    """The INT8 bundle takes 510 kB; at least 311 kB (a quarter of the float step graph, and the rest) is known
    before calibrating."""
    out = disk / "int8"
    shutil.copytree(bundle, out)  # an old output to keep
    before = contents(out)
    leave_free(disk, free)
    assert_refused(cli("quantize", str(bundle), *QUANTIZE, "-o", str(out), "--force"), words, str(out), "free in")
    assert contents(out) == before
    assert on_disk(disk) == ["filler", "int8"]


@pytest.mark.parametrize("existing", [False, True], ids=["new path", "--force over a good dataset"])
def test_data_build_refuses_a_dataset_the_disk_cannot_hold_before_drawing_it(existing, sudoku_data, disk):
    """200,000 Sudoku puzzles are 32 MB at least, on a 16 MB disk: refused at once, not after minutes of drawing."""
    out = disk / "data"
    if existing:
        shutil.copytree(sudoku_data, out)
    before = contents(out) if existing else None
    started = time.perf_counter()
    result = cli("data", "build", "sudoku", "--train", "200000", "--test", "10", "-o", str(out),
                 *(["--force"] if existing else []))
    assert_refused(result, "not enough space", str(out), "needs at least 32.4 MB", "free in")
    assert time.perf_counter() - started < 60
    assert (contents(out) if existing else None) == before
    assert on_disk(disk) == (["data"] if existing else [])


def test_a_short_write_is_one_error_naming_the_output(disk):
    """numpy reports a full disk as a short write with no errno (``OSError: 1000000 requested and 192384 written``),
    safetensors as its own error: both become the one error the CLI prints in one line."""
    import torch

    from trm_edge.trm.checkpoint import write_tensors

    leave_free(disk, 200_000)
    with pytest.raises(OutputWriteError, match=r"cannot write .*out.*bytes were written \(the device is full\)"), \
            io.atomic_directory(disk / "out") as tmp:
        np.save(tmp / "a.npy", np.zeros(1_000_000, np.uint8))
    with pytest.raises(OutputWriteError, match="no space left"), io.atomic_directory(disk / "out") as tmp:
        write_tensors({"w": torch.zeros(1_000_000)}, tmp / "w.safetensors")
    assert on_disk(disk) == ["filler"]


def test_a_disk_with_no_room_for_the_lock_is_one_line(disk):
    leave_free(disk, 0)
    assert_refused(cli("init", "--preset", "sudoku-mini", "-o", str(disk / "model")), "no space left",
                   str(disk / "model"))
    assert on_disk(disk) == ["filler"]  # no output, no temporary, no lock file


# -- train: a full disk at a checkpoint ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def good_run(sudoku_data, tmp_path_factory) -> Path:
    """A run of 2 steps with its checkpoint (model/ 0.7 MB, state/ 3 MB)."""
    run = tmp_path_factory.mktemp("good") / "run"
    result = cli(*train_command(sudoku_data, run, 2))
    assert result.returncode == 0, result.stderr
    return run


def no_litter(run: Path) -> None:
    for path in (run, run / "model", run / "state"):
        assert siblings(path) in ([path.name], []), siblings(path)


def test_a_new_run_that_meets_a_full_disk_says_how_to_start_again(sudoku_data, disk):
    run = disk / "run"
    leave_free(disk, 400_000)  # not even model/ fits
    line = assert_refused(cli(*train_command(sudoku_data, run, 2)), f"cannot write {str(run / 'model')!r}",
                          "no space left", "no checkpoint of this run was kept", "start it again with:", "--force")
    assert "--resume" not in line
    assert on_disk(disk) == ["filler", "run"]
    no_litter(run)


def test_a_forced_run_that_meets_a_full_disk_keeps_the_old_run(sudoku_data, good_run, disk):
    """A run that replaces another takes its place at its first checkpoint, so one that fails before keeps it."""
    run = disk / "run"
    shutil.copytree(good_run, run)
    before = contents(run)
    leave_free(disk, 1_200_000)  # the new model/ fits, its state/ does not
    line = assert_refused(cli(*train_command(sudoku_data, run, 2, "--force")), f"cannot write {str(run)!r}",
                          "no space left", f"{str(run)!r} is unchanged", "no checkpoint of this run was kept")
    assert "--resume" not in line  # the checkpoint there is the old run's, which this command would not continue
    assert contents(run) == before
    assert on_disk(disk) == ["filler", "run"]
    no_litter(run)


def test_a_resumed_run_that_meets_a_full_disk_keeps_its_checkpoint_and_says_how_to_resume(sudoku_data, good_run,
                                                                                         disk):
    run = disk / "run"
    shutil.copytree(good_run, run)
    state = contents(run / "state")
    leave_free(disk, 1_200_000)  # model/ of step 4 fits, state/ does not
    line = assert_refused(cli(*train_command(sudoku_data, run, 4, "--resume")),
                          f"cannot write {str(run / 'state')!r}", "no space left",
                          f"the last checkpoint in {run} is kept", "continue with: trm-edge train")
    assert contents(run / "state") == state  # step 2, as it was
    no_litter(run)
    (disk / "filler").unlink()
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[0] == "trm-edge" and command[-1] == "--resume"
    resumed = cli(*command[1:])
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "state" / "trainer.json").read_text())["step"] == 4
    no_litter(run)
