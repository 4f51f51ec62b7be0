"""Symbolic links as outputs (docs/reliability.md, "Symbolic links as outputs"): ``--force`` replaces the link
itself, as ``mv`` does; its target is never written, moved or deleted. After a success the output is a real
directory or file at the path the user named, with no temporary left beside it; dangling links included, directory
and file outputs alike. ``train --resume`` continues the run a link leads to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import assert_refused, cli, siblings
from tests.reliability.test_disk import QUANTIZE, contents
from tests.reliability.test_faults import file_writers, train_command
from trm_edge import io
from trm_edge.errors import OutputExistsError


@pytest.fixture
def target(tmp_path):
    """A directory a link points to, with something in it that must stay."""
    path = tmp_path / "target"
    path.mkdir()
    (path / "precious.txt").write_text("precious")
    return path


def link(tmp_path: Path, to: Path) -> Path:
    path = tmp_path / "out"
    path.symlink_to(to)
    return path


def write_dir(path, text: str) -> None:
    with io.atomic_directory(path, force=True) as tmp:
        (tmp / "a.txt").write_text(text)


# -- the rule, in trm_edge.io -------------------------------------------------------------------------------------

@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
@pytest.mark.parametrize("dangling", [False, True], ids=["link to a directory", "dangling link"])
def test_a_directory_output_replaces_the_link_itself(tmp_path, target, monkeypatch, exchange, dangling):
    if not exchange:
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    out = link(tmp_path, tmp_path / "nowhere" if dangling else target)
    write_dir(out, "new")
    assert not out.is_symlink() and (out / "a.txt").read_text() == "new"
    assert contents(target) == {"precious.txt": io.sha256_file(target / "precious.txt")}
    assert siblings(out) == ["out"]


@pytest.mark.parametrize("dangling", [False, True], ids=["link to a file", "dangling link"])
def test_a_file_output_replaces_the_link_itself(tmp_path, target, dangling):
    out = link(tmp_path, tmp_path / "nowhere" if dangling else target / "precious.txt")
    io.write_json_atomic(out, {"new": True})
    assert not out.is_symlink() and json.loads(out.read_text()) == {"new": True}
    assert (target / "precious.txt").read_text() == "precious"
    assert siblings(out) == ["out"]


@pytest.mark.parametrize("dangling", [False, True], ids=["link to a directory", "dangling link"])
def test_a_link_is_an_existing_output_without_force(tmp_path, target, dangling):
    out = link(tmp_path, tmp_path / "nowhere" if dangling else target)
    with pytest.raises(OutputExistsError, match="--force"):
        io.check_output(out, force=False)
    with pytest.raises(OutputExistsError, match="--force"), io.atomic_file(out) as tmp:
        tmp.write_text("new")
    assert out.is_symlink()


# -- the commands ---------------------------------------------------------------------------------------------------

def directory_command(writer: str, checkpoint, bundle, data, out) -> list[str]:
    """Each command that writes a directory, as a command line writing ``out``."""
    return {
        "export": ["export", str(checkpoint), "--target", "cpu", "-o", str(out)],
        "quantize": ["quantize", str(bundle), *QUANTIZE, "-o", str(out)],
        "data build": ["data", "build", "sudoku", "--train", "4", "--test", "2", "-o", str(out)],
        "init": ["init", "--preset", "sudoku-mini", "-o", str(out)],
        "train": train_command(data, out, 2),
    }[writer]


WRITERS = ["export", "quantize", "data build", "init", "train"]
WHAT_IS_WRITTEN = {"export": "manifest.json", "quantize": "manifest.json", "data build": "recipe.json",
                   "init": "config.json", "train": "state/trainer.json"}


@pytest.mark.slow
@pytest.mark.parametrize("dangling", [False, True], ids=["link to a directory", "dangling link"])
@pytest.mark.parametrize("writer", WRITERS)
def test_force_into_a_link_writes_the_output_there_and_leaves_its_target(writer, dangling, checkpoint, bundle,
                                                                          sudoku_data, tmp_path, target):
    out = link(tmp_path, tmp_path / "nowhere" if dangling else target)
    before = contents(target)
    result = cli(*directory_command(writer, checkpoint, bundle, sudoku_data, out), "--force")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.is_symlink() and (out / WHAT_IS_WRITTEN[writer]).is_file()
    assert contents(target) == before
    assert siblings(out) == ["out"]
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.slow
@pytest.mark.parametrize("dangling", [False, True], ids=["link to a file", "dangling link"])
def test_eval_save_preds_force_into_a_link_writes_the_predictions_there(dangling, bundle, sudoku_data, tmp_path,
                                                                       target):
    out = tmp_path / "preds.npy"
    out.symlink_to(tmp_path / "nowhere.npy" if dangling else target / "precious.txt")
    result = cli(*file_writers(bundle, sudoku_data)["eval --save-preds"], str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert not out.is_symlink() and np.load(out).shape == (2, 81)
    assert (target / "precious.txt").read_text() == "precious"
    assert siblings(out) == ["preds.npy"]


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["export", "eval --save-preds"])
def test_a_dangling_link_is_not_replaced_without_force(writer, checkpoint, bundle, sudoku_data, tmp_path):
    out = link(tmp_path, tmp_path / "nowhere")
    command = directory_command(writer, checkpoint, bundle, sudoku_data, out) if writer == "export" else \
        [*file_writers(bundle, sudoku_data)[writer], str(out)]
    assert_refused(cli(*command), "exists", "--force")
    assert out.is_symlink() and siblings(out) == ["out"]


@pytest.mark.slow
def test_train_resume_through_a_link_continues_the_run_it_leads_to(sudoku_data, tmp_path):
    run = tmp_path / "run"
    assert cli(*train_command(sudoku_data, run, 2)).returncode == 0
    out = link(tmp_path, run)
    resumed = cli(*train_command(sudoku_data, out, 4, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert out.is_symlink()
    assert json.loads((run / "state" / "trainer.json").read_text())["step"] == 4
    assert siblings(out) == ["out"] and siblings(run) == ["run"]
