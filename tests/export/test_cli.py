"""`trm-edge export` and `trm-edge targets` through the real console entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.export.conftest import make_model
from trm_edge.trm.checkpoint import save_checkpoint


def run(*args: str):
    return subprocess.run([sys.executable, "-m", "trm_edge", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(make_model("learned"), tmp_path_factory.mktemp("ckpt") / "learned", task="maze")


def assert_user_error(result, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[-1]


def test_targets_lists_profiles_as_json():
    listed = json.loads(run("targets", "--json").stdout)
    names = [t["name"] for t in listed["targets"]]
    assert names[:2] == ["jetson", "cpu"] and "x86-avx512" in names and "jetson-thor" in names
    one = json.loads(run("targets", "jetson", "--json").stdout)
    assert one["opset"] == 17 and one["op_list"] == "tensorrt-8.5" and one["engine_build_on_device"]
    assert_user_error(run("targets", "nope"), "unknown target 'nope'", "'jetson'")


def test_export_for_jetson_prints_checks_and_the_device_build_step(checkpoint, tmp_path):
    out = tmp_path / "bundle"
    result = run("export", str(checkpoint), "--target", "jetson", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert sum("✓" in line for line in result.stdout.splitlines()) == 4
    assert "trm-edge build-engine" in result.stdout and "on the device" in result.stdout.replace("\n", " ")
    assert (out / "manifest.json").is_file() and (out / "step.onnx").is_file()
    assert_user_error(run("export", str(checkpoint), "--target", "cpu", "-o", str(out)), "exists", "--force")


def test_bad_input_is_one_line_exit_2_and_nothing_written(checkpoint, tmp_path):
    out = tmp_path / "bundle"
    assert_user_error(run("export", str(checkpoint), "--target", "jetson-nano", "-o", str(out)),
                      "unknown target", "'jetson-orin-nano'")
    assert_user_error(run("export", str(tmp_path), "--target", "cpu", "-o", str(out)), "not a trm-edge checkpoint")
    assert_user_error(run("export", str(checkpoint), "--target", "cpu", "--graph", "loop", "-o", str(out)),
                      "unknown graph 'loop'")
    assert not out.exists()


def test_failed_validation_is_one_line_exit_2_and_nothing_written(tmp_path):
    broken = make_model("learned")
    with torch.no_grad():
        broken.L_level.layers[0].self_attn.o_proj.weight[0, 0] = float("nan")
    ckpt = save_checkpoint(broken, tmp_path / "broken", task="maze")
    out = tmp_path / "bundle"
    result = run("export", str(ckpt), "--target", "cpu", "-o", str(out))
    assert_user_error(result, "failed validation", "z_H_next")
    assert "✗" in result.stdout
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


@pytest.mark.slow
def test_export_json(checkpoint, tmp_path):
    result = run("export", str(checkpoint), "--target", "x86-avx512", "-o", str(tmp_path / "b"), "--batch", "2",
                 "--graph", "unrolled", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["validation"]["passed"] and set(report["graphs"]) == {"step", "unrolled"}
    assert report["graphs"]["step"]["batch"] == 2 and report["engine"] is None


@pytest.mark.slow
def test_export_puzzles_by_name_from_the_datasets_identifiers(tmp_path):
    ckpt = save_checkpoint(make_model("many-puzzles"), tmp_path / "arc", task="arc")
    names = ["<blank>"] + [f"task{i // 2}|||t{i % 2}|||0123456789" for i in range(6)]
    (tmp_path / "identifiers.json").write_text(json.dumps(names))
    out = tmp_path / "b"
    result = run("export", str(ckpt), "--target", "jetson-orin-nano", "-o", str(out), "--puzzles", "task1,5",
                 "--identifiers", str(tmp_path / "identifiers.json"))
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "identifiers.json").read_text())["ids"] == [3, 4, 5]
    assert_user_error(run("export", str(ckpt), "--target", "cpu", "-o", str(tmp_path / "c"), "--puzzles", "task9",
                          "--identifiers", str(tmp_path / "identifiers.json")), "matches no identifier")
