"""The device-side commands: solve (torch-free), eval, bench, compare, verify; bad input; exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import maps_a_file
from trm_edge.cli import app

SUDOKU = "530070000600195000098000060800060003400803001700020006060000280000419005000080079"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sudoku_data(tmp_path_factory):
    from trm_edge.puzzles.build import build_dataset

    path = tmp_path_factory.mktemp("data") / "sudoku"
    build_dataset("sudoku", path, train=2, test=12, seed=0)
    return path


@pytest.fixture(scope="session")
def checkpoint(bundles, tmp_path_factory):
    from trm_edge.trm.checkpoint import save_checkpoint

    model, _ = bundles("mlp")
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "mlp", task="sudoku")


def cli(*args: str, shim: bool = False, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``trm-edge ARGS`` in a fresh process; ``shim`` makes the host side's packages (torch, onnx, onnxslim,
    safetensors, matplotlib) unimportable there, as in a device-only install."""
    env = dict(os.environ)
    if shim:
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests" / "runtimes" / "notorch"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "trm_edge", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, input=stdin, timeout=120)


def run(*args: str):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_solve_on_a_bundle_needs_no_torch(bundles):
    _, bundle = bundles("mlp")
    result = cli("solve", SUDOKU, SUDOKU.replace("53", "35", 1), "--model", str(bundle), "--json", shim=True)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["puzzle"] for line in lines] == ["puzzle 1", "puzzle 2"]
    for line in lines:
        assert set(line) == {"puzzle", "solution", "valid", "problem", "steps", "confidence", "halted"}
        assert len(line["solution"]) == 81 and line["valid"] is False  # random weights solve nothing
        assert isinstance(line["problem"], str) and line["problem"]
        assert 1 <= line["steps"] <= 4 and 0 < line["confidence"] < 1
    # ... and the shim really blocks torch:
    blocked = cli("solve", SUDOKU, "--model", str(bundle), "--runtime", "torch", shim=True)
    assert blocked.returncode == 2


SHIPPED_BUNDLE = ROOT / "trm_edge" / "models" / "default" / "bundle"
DEMO = "24.6.9..51..34.6.8...175.43.6....82...159.4.79..8.6......9..7..59826731...64.19.."  # the Makefile's


def test_the_shipped_bundle_solves_and_verifies_on_a_device_only_install():
    """No torch, onnx, onnxslim, safetensors or matplotlib: what `pip install trm-edge` (no [host]) gives."""
    solved = cli("solve", DEMO, "--model", str(SHIPPED_BUNDLE), "--json", shim=True)
    assert solved.returncode == 0, solved.stderr
    answer = json.loads(solved.stdout)
    assert answer["valid"] is True and len(answer["solution"]) == 81
    default = cli("solve", DEMO, shim=True)  # the packaged default model: its bundle, not its checkpoint
    assert default.returncode == 0 and answer["solution"] in default.stdout, default.stderr
    verified = cli("verify", str(SHIPPED_BUNDLE), shim=True)
    assert verified.returncode == 0 and "PASS" in verified.stdout, verified.stderr


@pytest.mark.parametrize(("args", "package"), [
    (("export", "default", "--target", "cpu", "-o", "{tmp}/bundle"), "onnx"),
    (("init", "--preset", "sudoku-mini", "-o", "{tmp}/model"), "torch"),
    (("bench", str(SHIPPED_BUNDLE), "--plot", "{tmp}/bench.png"), "matplotlib"),
    (("build-engine", str(SHIPPED_BUNDLE)), "onnx"),
], ids=["export", "init", "bench --plot", "build-engine"])
def test_host_commands_on_a_device_only_install_ask_for_the_host_extra(tmp_path, args, package):
    result = cli(*(a.format(tmp=tmp_path) for a in args), shim=True)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.splitlines() == [f"error: {package} is not installed here, and this command needs it (the "
                                          "host side: training, import, export, quantize, plots): pip install "
                                          "'trm-edge[host]'"]
    assert not list(tmp_path.iterdir())


MALFORMED = {
    "wrong length": SUDOKU[:-1],
    "foreign character": SUDOKU[:10] + "x" + SUDOKU[11:],
    "rule-breaking givens": "55" + SUDOKU[2:],
    "empty": "",
    "a 9-line grid with a short row": "\n".join(SUDOKU[i:i + 9] for i in range(0, 81, 9))[:-3],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_puzzles_get_one_line_and_exit_2(bundles, case):
    _, bundle = bundles("mlp")
    result = cli("solve", MALFORMED[case], "--model", str(bundle))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: puzzle 1: sudoku: ")
    assert "Traceback" not in result.stderr


def test_keep_going_solves_the_good_ones(bundles, tmp_path):
    _, bundle = bundles("mlp")
    file = tmp_path / "puzzles.txt"
    file.write_text(f"{SUDOKU}\n{'9' * 81}\n\n" + "\n".join(SUDOKU[i:i + 9] for i in range(0, 81, 9)) + "\n")
    result = cli("solve", "--file", str(file), "--model", str(bundle), "--json", "--keep-going")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {file}:2: sudoku: digit 9 appears twice in row 1 (at r1c1 and "
                                          "r1c2)"]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("error") is None for line in lines] == [False, True, True]
    assert lines[1]["puzzle"] == f"{file}:1" and lines[2]["puzzle"] == f"{file}:4"
    without = cli("solve", "--file", str(file), "--model", str(bundle))
    assert without.returncode == 2 and without.stdout == "" and len(without.stderr.splitlines()) == 1


def test_missing_runtime_tampered_bundle_and_no_model(bundles, tmp_path):
    _, original = bundles("mlp")
    result = cli("solve", SUDOKU, "--model", str(original), "--runtime", "tensorrt")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "pip install 'trm-edge[tensorrt]'" in result.stderr and "available runtimes: 'onnxruntime'" in result.stderr
    bundle = tmp_path / "bundle"
    shutil.copytree(original, bundle)
    data = bytearray((bundle / "step.onnx").read_bytes())
    data[-100] ^= 1
    (bundle / "step.onnx").write_bytes(bytes(data))
    for args in (("verify", str(bundle)), ("solve", SUDOKU, "--model", str(bundle))):
        result = cli(*args)
        assert result.returncode == 2 and "sha256" in result.stderr and len(result.stderr.splitlines()) == 1
    from trm_edge.runtimes.sources import default_model

    if default_model() is None:
        result = cli("solve", SUDOKU)
        assert result.returncode == 2 and "no --model given and no default model" in result.stderr


def test_solve_prints_grids(bundles):
    _, bundle = bundles("mlp")
    result = run("solve", SUDOKU, "--model", str(bundle), "--no-halt", "--max-steps", "2")
    assert "5 3 . | . 7 ." in result.output and "steps 2 (max steps)" in result.output
    assert "why: " in result.output  # random weights: the reason the answer is not valid


def test_a_puzzle_that_begins_with_a_dash_goes_after_double_dash(bundles):
    """'-' is a blank too; click would read a leading '-' as an option, so such a puzzle follows '--'."""
    _, bundle = bundles("mlp")
    dashed = "-" + SUDOKU[1:].replace("0", "-")
    result = run("solve", "--model", str(bundle), "--no-halt", "--max-steps", "1", "--", dashed)
    assert ". 3 . | . 7 ." in result.output
    assert "after '--'" in " ".join(run("solve", "--help").output.split())
    refused = CliRunner().invoke(app, ["solve", "--model", str(bundle), dashed])
    assert refused.exit_code == 2


def test_verify_passes_on_the_golden_io(bundles):
    _, bundle = bundles("many-puzzles")
    result = run("verify", str(bundle), "--json")
    report = json.loads(result.stdout)
    assert report["ok"] and report["checksums"] == "ok" and report["cases"] >= 1
    assert {c["output"] for c in report["checks"]} == {"z_H_next", "z_L_next", "logits", "q_halt_logits"}
    assert "PASS on onnxruntime" in run("verify", str(bundle)).output


def test_eval_reports_accuracy_steps_and_saves_predictions(bundles, sudoku_data, tmp_path):
    _, bundle = bundles("mlp")
    preds = tmp_path / "preds.npy"
    result = run("eval", str(bundle), "--data", str(sudoku_data), "--halt", "--by-step", "--save-preds", str(preds),
                 "--json")
    report = json.loads(result.stdout)
    assert report["count"] == 12 and 0 <= report["exact_accuracy"] <= report["cell_accuracy"] <= 1
    assert 1 <= report["mean_steps"] <= 4 and len(report["exact_accuracy_by_step"]) == 4
    assert sum(report["halting"]["steps_histogram"]) == 12 and "valid_fraction" in report
    assert np.load(preds).shape == (12, 81)
    assert "exact_accuracy" in run("eval", str(bundle), "--data", str(sudoku_data), "--limit", "3").output


def test_bench_json_and_plot(bundles, tmp_path):
    _, bundle = bundles("mlp")
    plot = tmp_path / "bench.png"
    result = run("bench", str(bundle), "--batch", "1", "--batch", "3", "--max-steps", "2", "--no-halt", "--repeats",
                 "2", "--warmup", "0", "--plot", str(plot), "--json")
    report = json.loads(result.stdout)
    (entry,) = report["models"]
    assert [r["batch"] for r in entry["results"]] == [1, 3] and report["baseline"] == entry["model"] == str(bundle)
    for r in entry["results"]:
        assert r["mean_steps"] == 2 and r["puzzles_per_s"] > 0 and r["step_ms_p95"] >= r["step_ms_p50"] > 0
        assert r["gflops"] > 0 and r["peak_rss_mb"] > 0 and r["speedup"] == 1.0 and r["repeats"] == 2
    assert plot.stat().st_size > 1000


def test_bench_several_models_side_by_side(bundles, checkpoint):
    _, bundle = bundles("mlp")
    result = run("bench", str(checkpoint), str(bundle), "--batch", "2", "--max-steps", "1", "--repeats", "3",
                 "--json")
    report = json.loads(result.stdout)
    torch_entry, ort_entry = report["models"]
    assert torch_entry["runtime"]["runtime"] == "torch" and ort_entry["runtime"]["runtime"] == "onnxruntime"
    (base,), (other,) = torch_entry["results"], ort_entry["results"]
    assert base["speedup"] == 1.0 and other["repeats"] == 3
    assert other["speedup"] == pytest.approx(other["puzzles_per_s"] / base["puzzles_per_s"])
    table = run("bench", str(checkpoint), str(bundle), "--batch", "2", "--max-steps", "1", "--repeats", "1").output
    assert "speedup" in table and "torch" in table and "onnxruntime" in table


def test_bench_every_installed_runtime_verifies_and_ranks_them(bundles, tmp_path):
    """--runtime all: every installed runtime that runs the bundles, each verified on the golden I/O first (an INT8
    bundle on OpenVINO against float32), ranked fastest first per batch size."""
    from trm_edge.quantize import QuantizeOptions, quantize_bundle

    _, bundle = bundles("mlp")
    int8 = quantize_bundle(bundle, tmp_path / "int8", QuantizeOptions(calib_task="sudoku", calib_n=16, eval_n=0,
                                                                      report=False)).output
    args = ("--runtime", "all", "--batch", "2", "--max-steps", "1", "--repeats", "1", "--warmup", "0", "--threads", "1")
    report = json.loads(run("bench", str(bundle), str(int8), *args, "--json").stdout)
    names = [(Path(e["model"]).name, e["runtime"]["runtime"]) for e in report["models"]]
    # no engine built here: no tensorrt; torch runs checkpoints
    assert names == [(bundle.name, "onnxruntime"), (bundle.name, "openvino"), ("int8", "onnxruntime"),
                     ("int8", "openvino")]
    assert all(e["parity"]["ok"] for e in report["models"]), [e["parity"] for e in report["models"]]
    ranked = report["ranking"]["2"]
    assert len(ranked) == 4 and [r["puzzles_per_s"] for r in ranked] == sorted((r["puzzles_per_s"] for r in ranked),
                                                                               reverse=True)
    assert "fastest at batch 2:" in run("bench", str(bundle), *args).output


def test_bench_runtime_count_must_match_models(bundles, checkpoint):
    _, bundle = bundles("mlp")
    result = cli("bench", str(checkpoint), str(bundle), str(bundle), "-r", "torch", "-r", "onnxruntime")
    assert result.returncode == 2 and result.stderr.strip() == ("error: --runtime is given 2 times for 3 models: "
                                                                "give it once for all, or once per model")


def test_compare_checkpoint_on_torch_with_bundle_on_onnxruntime(bundles, checkpoint, sudoku_data, tmp_path):
    _, bundle = bundles("mlp")
    plot = tmp_path / "compare.png"
    result = run("compare", str(checkpoint), str(bundle), "--data", str(sudoku_data), "--limit", "6",
                 "--max-steps", "2", "--no-halt", "--plot", str(plot), "--json")
    report = json.loads(result.stdout)
    assert report["a"]["runtime"] == "torch" and report["b"]["runtime"] == "onnxruntime"
    assert [r["step"] for r in report["teacher_forced"]] == [1, 2]
    assert all(r["logits_max_rel"] < 1e-4 and r["argmax_agreement"] == 1.0 for r in report["teacher_forced"])
    assert report["free_running"]["cell_agreement"] > 0.99 and "exact_accuracy_diff" in report["free_running"]
    assert plot.stat().st_size > 1000
    assert "teacher-forced" in run("compare", str(bundle), "--runtime-b", "onnxruntime", "--data",
                                   str(sudoku_data), "--limit", "2", "--max-steps", "1").output
    answers_only = json.loads(run("compare", str(checkpoint), str(bundle), "--data", str(sudoku_data), "--limit", "6",
                                  "--max-steps", "2", "--no-halt", "--teacher-forced-limit", "0", "--json").stdout)
    assert answers_only["teacher_forced"] == [] and answers_only["free_running"]["answer_agreement"] == 1.0
    assert answers_only["free_running"]["a_solved_kept"] is None  # a random model solves nothing to keep


def test_solve_eval_compare_and_bench_halt_alike_by_default(tmp_path):
    """One set of recursion defaults (trm_edge.runtimes.recursion.DEFAULTS) in every command that runs it: solve, eval,
    compare and bench halt by default at the model's calibrated threshold (3.0 for the shipped default model, not
    the 0 of an uncalibrated one), so the same puzzles stop at the same steps with the same answers in each; --halt
    is still accepted, and --no-halt runs every step."""
    from trm_edge.puzzles.codec import get_codec
    from trm_edge.puzzles.examples import read_examples
    from trm_edge.runtimes import Solver, open_runtime

    bundle, data = str(SHIPPED_BUNDLE), tmp_path / "fresh"
    run("data", "build", "--like", "default", "-o", str(data), "--train", "0", "--test", "8", "--seed", "5")
    codec = get_codec("sudoku")
    puzzles = [codec.decode(tokens) for tokens in read_examples(str(data), "test").inputs]
    solved = [json.loads(line) for line in run("solve", *puzzles, "--model", bundle, "--json").stdout.splitlines()]
    preds = tmp_path / "preds.npy"
    evaluated = json.loads(run("eval", bundle, "--data", str(data), "--save-preds", str(preds), "--json").stdout)
    compared = json.loads(run("compare", bundle, "--runtime-b", "onnxruntime", "--data", str(data),
                              "--teacher-forced-limit", "0", "--json").stdout)
    benched = json.loads(run("bench", bundle, "--data", str(data), "--batch", "8", "--halt", "--repeats", "1",
                             "--warmup", "0", "--json").stdout)
    steps = [answer["steps"] for answer in solved]
    assert min(steps) < 16 == max(steps)  # some halt early, some run every step: halting decides the answers
    assert evaluated["halt"] is compared["halt"] is benched["models"][0]["results"][0]["halt"] is True
    assert evaluated["halting"]["threshold"] == 3.0
    assert Solver(open_runtime(bundle)).threshold == 3.0  # the library's default too (runtimes' docstring example)
    assert [codec.decode(tokens) for tokens in np.load(preds)] == [answer["solution"] for answer in solved]
    assert evaluated["halting"]["steps_histogram"] == np.bincount(steps, minlength=17)[1:].tolist()
    assert compared["free_running"]["mean_steps"] == [evaluated["mean_steps"]] * 2 == [np.mean(steps)] * 2
    assert compared["free_running"]["exact_accuracy"] == [evaluated["exact_accuracy"]] * 2
    assert benched["models"][0]["results"][0]["mean_steps"] == evaluated["mean_steps"]
    every = json.loads(run("eval", bundle, "--data", str(data), "--no-halt", "--json").stdout)
    assert every["halt"] is False and every["mean_steps"] == 16 and every["halting"]["halted_fraction"] == 0


def test_eval_on_an_arc_dataset_votes_and_writes_the_submission(tmp_path):
    """The ARC test split gets the official metric (pass@K from votes over augmented versions), equal to the
    voter's on the same predictions, and --submission writes two attempts per test input of every task."""
    from tests.puzzles.test_arc import write_sources
    from trm_edge.config import TRMConfig
    from trm_edge.puzzles.arc_eval import PASS_KS, ArcVoter
    from trm_edge.puzzles.build import build_dataset
    from trm_edge.puzzles.dataset import read_identifiers
    from trm_edge.puzzles.examples import read_examples
    from trm_edge.trm.checkpoint import save_checkpoint
    from trm_edge.trm.model import build_model

    training, combined = write_sources(tmp_path)
    data = tmp_path / "arc"
    build_dataset("arc", data, source=[str(training), str(combined)], aug=3, seed=2)
    cfg = TRMConfig(seq_len=900, vocab_size=12, num_puzzle_identifiers=len(read_identifiers(data)), hidden_size=16,
                    num_heads=2, expansion=2.0, pos_encodings="rope", puzzle_emb_ndim=16, puzzle_emb_len=1,
                    H_cycles=1, L_cycles=1, L_layers=1, halt_max_steps=2)
    checkpoint = save_checkpoint(build_model(cfg, seed=0), tmp_path / "ckpt", task="arc")
    preds, submission = tmp_path / "preds.npy", tmp_path / "submission.json"
    result = run("eval", str(checkpoint), "--data", str(data), "--no-halt", "--json", "--save-preds", str(preds),
                 "--submission", str(submission))
    scores = json.loads(result.stdout)["arc"]
    assert [scores[f"ARC/pass@{k}"] for k in PASS_KS] == sorted(scores[f"ARC/pass@{k}"] for k in PASS_KS)
    assert scores["tasks"] == 2 and scores["tasks_without_prediction"] == []

    examples = read_examples(str(data), "test")
    voter = ArcVoter.from_dataset(data)
    # the training init's halting head is zero: every q_halt_logit is its bias, so votes alone rank
    voter.add(examples.puzzle_identifiers, examples.inputs, np.load(preds), np.full(len(examples), -5.0))
    expected = voter.result()
    assert {k: scores[f"ARC/{k}" if k.startswith("pass@") else k] for k in expected.metrics} == expected.metrics
    written = json.loads(submission.read_text())
    assert written == expected.submission and sorted(written) == ["eval0", "eval1"]
    assert all(set(attempt) == {"attempt_1", "attempt_2"} for task in written.values() for attempt in task)

    refused = cli("eval", str(checkpoint), "--data", str(data), "--split", "train", "--submission",
                  str(tmp_path / "no.json"))
    assert refused.returncode == 2 and "needs the test split of an ARC dataset" in refused.stderr
    assert not (tmp_path / "no.json").exists()


def test_solve_arc_tasks_on_the_device_equals_the_vote_of_eval(arc_bundle, tmp_path):
    """`solve` on the raw task file shows each test input under every augmentation the bundle has an embedding for
    and votes: the same attempts as `eval` on the dataset built from those tasks (which holds exactly those
    augmented test inputs), without torch."""
    bundle, data, _, combined = arc_bundle
    from_eval = tmp_path / "eval.json"
    run("eval", str(bundle), "--data", str(data), "--no-halt", "--submission", str(from_eval), "--json")
    from_solve = tmp_path / "solve.json"
    result = cli("solve", str(combined), "--model", str(bundle), "--no-halt", "--json", "--submission",
                 str(from_solve), shim=True)
    assert result.returncode == 0, result.stderr
    expected = json.loads(from_eval.read_text())
    assert json.loads(result.stdout) == expected == json.loads(from_solve.read_text())
    assert sorted(expected) == ["eval0", "eval1"]
    assert all(set(entry) == {"attempt_1", "attempt_2"} for entry in expected["eval0"])


def test_solve_and_eval_give_the_same_arc_attempts_by_default(arc_bundle, tmp_path):
    """`solve TASKS.json` and `eval --submission` halt alike by default: the same two attempts per test input."""
    bundle, data, _, combined = arc_bundle
    submission = tmp_path / "submission.json"
    halting = json.loads(run("eval", str(bundle), "--data", str(data), "--submission", str(submission),
                             "--json").stdout)["halting"]
    assert 0 < halting["halted_fraction"] < 1  # some versions halt at step 1, some run on: halting shapes the vote
    solved = json.loads(run("solve", str(combined), "--model", str(bundle), "--json").stdout)
    assert solved == json.loads(submission.read_text()) and sorted(solved) == ["eval0", "eval1"]


def test_solve_takes_an_arc_checkpoint_as_well_as_its_bundle(arc_bundle):
    """The checkpoint carries the dataset's identifier names (identifiers.json): solve on it (torch) votes over the
    same versions and gives the same attempts as on its bundle (onnxruntime)."""
    bundle, _, _, combined = arc_bundle
    on_bundle = json.loads(run("solve", str(combined), "--model", str(bundle), "--json").stdout)
    on_checkpoint = json.loads(run("solve", str(combined), "--model", str(bundle.parent / "ckpt"), "--json").stdout)
    assert on_checkpoint == on_bundle and sorted(on_bundle) == ["eval0", "eval1"]


@pytest.mark.parametrize("mismatch", ["too few identifiers", "other names"])
def test_eval_and_compare_refuse_a_dataset_whose_identifiers_the_model_lacks(arc_bundle, tmp_path, mismatch):
    """Looked up by number, another dataset's puzzles would get the wrong embeddings without a word."""
    import dataclasses

    from tests.conftest import random_trm
    from trm_edge.puzzles.dataset import read_identifiers
    from trm_edge.trm.checkpoint import load_model, save_checkpoint

    bundle, data, _, _ = arc_bundle
    names = read_identifiers(data)
    trained = load_model(bundle.parent / "ckpt")
    if mismatch == "too few identifiers":
        model = random_trm(dataclasses.replace(trained.config, num_puzzle_identifiers=2), seed=0)
        checkpoint = save_checkpoint(model, tmp_path / "small", task="arc")
    else:
        checkpoint = save_checkpoint(trained, tmp_path / "renamed", task="arc", identifiers=names[::-1])
    for command in (["eval", str(checkpoint), "--data", str(data)],
                    ["compare", str(checkpoint), "--data", str(data), "--limit", "2"]):
        result = cli(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "puzzle identifiers, and the model lacks identifier" in result.stderr


def test_init_sized_from_an_arc_dataset_evaluates_on_it(arc_bundle, tmp_path):
    """`init --data` gives the model a puzzle embedding per identifier of the dataset, with their names; without
    it, an arc-agi-1 model has one identifier and eval refuses the dataset."""
    from trm_edge.puzzles.dataset import read_identifiers
    from trm_edge.trm.checkpoint import read_checkpoint_info, read_identifier_names

    _, data, _, _ = arc_bundle
    sized = tmp_path / "sized"
    run("init", "--preset", "arc-agi-1", "--data", str(data), "-o", str(sized))
    names = read_identifiers(data)
    assert read_checkpoint_info(sized)["model"]["num_puzzle_identifiers"] == len(names)
    assert read_identifier_names(sized) == names
    run("init", "--preset", "arc-agi-1", "-o", str(tmp_path / "unsized"))
    refused = cli("eval", str(tmp_path / "unsized"), "--data", str(data))
    assert refused.returncode == 2 and "lacks identifier" in refused.stderr, refused.stderr


def test_eval_saves_what_redoing_the_arc_vote_needs(arc_bundle, tmp_path):
    """--save-preds FILE.npz keeps the inputs, identifiers and halting logits beside the predictions: the vote
    redone from that file alone gives the ARC/pass@K that eval reports (the official metric names)."""
    from trm_edge.puzzles.arc_eval import ArcVoter

    bundle, data, _, _ = arc_bundle
    saved = tmp_path / "preds.npz"
    report = json.loads(run("eval", str(bundle), "--data", str(data), "--json", "--save-preds", str(saved)).stdout)
    arrays = np.load(saved)
    voter = ArcVoter.from_dataset(data)
    voter.add(arrays["puzzle_identifiers"], arrays["inputs"], arrays["preds"], arrays["q_halt_logits"])
    redone = voter.result().metrics
    assert {f"ARC/{k}": v for k, v in redone.items() if k.startswith("pass@")} == \
        {k: v for k, v in report["arc"].items() if k.startswith("ARC/pass@")}
    assert len(arrays["steps"]) == report["count"] and 0 < arrays["steps"].max() <= 2


def test_an_arc_bundle_for_a_small_device_keeps_its_tasks_in_float16(arc_bundle, tmp_path):
    """`export --tasks FILE --table-dtype float16`: only the rows of the tasks in the file, stored in half the
    bytes, memory-mapped; solve on it gives the attempts of the float32 bundle of every task."""
    from trm_edge.bundle.store import load_bundle

    bundle, _, _, combined = arc_bundle
    one_task = tmp_path / "eval0.json"
    one_task.write_text(json.dumps(json.loads(combined.read_text())["eval0"]))
    small = tmp_path / "small"
    run("export", str(bundle.parent / "ckpt"), "--target", "cpu", "--tasks", str(one_task), "--table-dtype",
        "float16", "-o", str(small))
    full, kept = load_bundle(bundle), load_bundle(small)
    assert kept.puzzle_embeddings().dtype == np.float16 and maps_a_file(kept.puzzle_embeddings())
    assert kept.manifest.puzzle_embeddings["dtype"] == "float16"
    names = [n for n in kept.identifiers()["names"] if n]
    assert names and all(n.split("|||")[0] == "eval0" for n in names)
    assert len(names) < len([n for n in full.identifiers()["names"] if n and not n.startswith("<")])
    full_bytes, small_bytes = ((b.path / b.manifest.puzzle_embeddings["file"]).stat().st_size for b in (full, kept))
    assert small_bytes < full_bytes / 2
    on_full = json.loads(run("solve", str(combined), "--model", str(bundle), "--task", "eval0", "--json").stdout)
    on_small = json.loads(run("solve", str(one_task), "--model", str(small), "--json").stdout)
    assert on_small == on_full
    run("verify", str(small))


def test_solve_arc_selects_tasks_and_augmentations(arc_bundle):
    bundle, _, training, combined = arc_bundle
    one = json.loads(run("solve", str(combined), "--model", str(bundle), "--task", "eval1", "--json").stdout)
    assert list(one) == ["eval1"]
    # the identity version alone: one vote, so both attempts are its prediction
    single = json.loads(run("solve", str(training / "train0.json"), "--model", str(bundle), "--augmentations", "1",
                            "--json").stdout)
    assert [entry["attempt_1"] == entry["attempt_2"] for entry in single["train0"]] == [True]
    shown = run("solve", str(training / "train2.json"), "--model", str(bundle)).output
    assert "train2 test 0 (4 versions voted)" in shown and "attempt 2" in shown


def _task(test, train=None):
    return {"train": train or [{"input": [[1, 2]], "output": [[2, 1]]}], "test": test}


@pytest.mark.parametrize(("name", "content", "extra", "message"), [
    ("eval0.json", {"train": [{"input": [[1]], "output": [[1]]}]}, [], "not an ARC task"),
    ("eval0.json", _task([]), [], "has no test inputs"),
    ("eval0.json", _task([{"input": [[1] * 31]}]), [], "at most 30 fit"),
    ("unseen.json", _task([{"input": [[1, 2]]}]), [], "no puzzle embedding for it"),
    ("eval0.json", _task([{"input": [[1, 2]]}]), ["--task", "eval9"], "task 'eval9' is not in"),
    ("eval0.json", _task([{"input": [[1, 2]]}]), ["--augmentations", "0"], "must be at least 1"),
    ("eval0.json", "[[1, 2]", [], "invalid JSON"),
])
def test_solve_arc_bad_input_is_one_line_and_writes_nothing(arc_bundle, tmp_path, name, content, extra, message):
    bundle = arc_bundle[0]
    task = tmp_path / name
    task.write_text(content if isinstance(content, str) else json.dumps(content))
    submission = tmp_path / "submission.json"
    result = cli("solve", str(task), "--model", str(bundle), "--submission", str(submission), *extra)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not submission.exists()


def test_arc_options_are_refused_for_other_tasks(bundles):
    _, bundle = bundles("mlp")
    result = cli("solve", SUDOKU, "--model", str(bundle), "--task", "x")
    assert result.returncode == 2 and "--task: only for ARC models" in result.stderr


MAZE_ROWS = ["S #   #", "  # # #", "       ", "## ### ", "   #   ", " #   # ", "##### G"]  # row 3: all open


@pytest.fixture(scope="module")
def maze_bundle(tmp_path_factory):
    from tests.conftest import random_trm
    from trm_edge.config import TRMConfig
    from trm_edge.trm.checkpoint import save_checkpoint

    tmp = tmp_path_factory.mktemp("maze")
    cfg = TRMConfig(seq_len=49, vocab_size=6, hidden_size=16, num_heads=2, expansion=2.0, pos_encodings="rope",
                    puzzle_emb_ndim=16, puzzle_emb_len=1, H_cycles=1, L_cycles=1, L_layers=1, halt_max_steps=2)
    checkpoint = save_checkpoint(random_trm(cfg), tmp / "ckpt", task="maze")
    run("export", str(checkpoint), "--target", "cpu", "-o", str(tmp / "bundle"))
    return tmp / "bundle"


def test_solve_mazes_from_a_file_whose_rows_may_be_all_spaces(maze_bundle, tmp_path):
    """Mazes in a file are separated by empty lines: a row of open cells (spaces) stays a row. Each answer is
    checked as a path (the random model's are not), with the reason given; a maze of another size than the
    model's is refused with both sizes."""
    mazes = tmp_path / "mazes.txt"
    mazes.write_text("\n".join(MAZE_ROWS) + "\n\n" + "\n".join(reversed(MAZE_ROWS)) + "\n")
    result = cli("solve", "--model", str(maze_bundle), "--file", str(mazes), "--json", shim=True)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["puzzle"] for line in lines] == [f"{mazes}:1", f"{mazes}:9"]
    assert all(line["valid"] is False and line["problem"] for line in lines)
    shown = run("solve", "--model", str(maze_bundle), "--file", str(mazes)).output
    assert "not valid ✗" in shown and "why: " in shown
    big = tmp_path / "big.txt"
    big.write_text("S" + " " * 79 + "G\n")
    refused = cli("solve", "--model", str(maze_bundle), "--file", str(big))
    assert refused.returncode == 2
    assert "the puzzle is 9x9 (81 cells); this model solves 7x7 (49 cells)" in refused.stderr


def test_maze_answers_are_reported_valid_exactly_when_they_mark_a_shortest_path():
    """The solver's answer report on known answers: the shortest path is valid; a longer path, a broken one and one
    through a wall are not, each with its reason."""
    from trm_edge.puzzles import maze
    from trm_edge.puzzles.codec import get_codec
    from trm_edge.runtimes.solver import SolveOutput, answers

    puzzle = maze.parse("\n".join(MAZE_ROWS))
    best = maze.solve(puzzle)
    longer = maze.parse("\n".join(["S #ooo#", "o #o#o#", "oooo oo", "## ###o", "   #  o", " #   #o", "##### G"]),
                        check=False)  # a connected path with a detour through the top row
    broken = best.copy()
    broken[np.argwhere(best == maze.PATH)[3][0], np.argwhere(best == maze.PATH)[3][1]] = maze.OPEN
    walled = best.copy()
    walled[0, 2] = maze.PATH
    grids = [best, longer, broken, walled]
    tokens = np.stack([maze.to_tokens(g) for g in grids])
    out = SolveOutput(tokens, np.full(4, 2, np.int32), np.zeros(4, np.float32), np.zeros(4, bool))
    report = answers(out, np.stack([maze.to_tokens(puzzle)] * 4), get_codec("maze"))
    assert [a.valid for a in report] == [True, False, False, False]
    assert report[0].problem is None
    assert "shortest path" in report[1].problem and "moves" in report[1].problem
    assert "do not connect" in report[2].problem
    assert report[3].problem == "cell (0, 2) is 'o' in the answer but '#' in the maze"


def test_a_dataset_written_as_the_official_builder_writes_it_is_read_as_it_is(tmp_path):
    """An ARC dataset in the official builder's layout (tests/puzzles/oracle.py restates it: identifiers.json with
    "<blank>", test_puzzles.json, all__*.npy): `eval` reads it unchanged and its pass@K and submission equal the
    official evaluator's rules on the same predictions; the bundle exported with that identifiers.json solves the
    raw challenges on the device with the same attempts."""
    from tests.puzzles.oracle import official_arc_scores, write_official_arc_dataset
    from tests.puzzles.test_arc import flip_task
    from trm_edge.config import TRMConfig
    from trm_edge.puzzles.examples import read_examples
    from trm_edge.trm.checkpoint import save_checkpoint
    from trm_edge.trm.model import build_model

    tasks = {**{f"train{i}": flip_task(i) for i in range(2)}, **{f"eval{i}": flip_task(10 + i) for i in range(2)}}
    data = tmp_path / "official"
    write_official_arc_dataset(data, tasks, {"eval0", "eval1"}, num_aug=3, seed=0)
    names = json.loads((data / "identifiers.json").read_text())
    cfg = TRMConfig(seq_len=900, vocab_size=12, num_puzzle_identifiers=len(names), hidden_size=16, num_heads=2,
                    expansion=2.0, pos_encodings="rope", puzzle_emb_ndim=16, puzzle_emb_len=1, H_cycles=1,
                    L_cycles=1, L_layers=1, halt_max_steps=2)
    # the training init: a zero halting head, so every q_halt_logit is its bias and votes alone rank
    checkpoint = save_checkpoint(build_model(cfg, seed=4), tmp_path / "ckpt", task="arc")
    bundle = tmp_path / "bundle"
    run("export", str(checkpoint), "--target", "cpu", "--identifiers", str(data), "-o", str(bundle))
    preds, submission = tmp_path / "preds.npy", tmp_path / "submission.json"
    scores = json.loads(run("eval", str(bundle), "--data", str(data), "--no-halt", "--json", "--save-preds",
                            str(preds), "--submission", str(submission)).stdout)["arc"]
    examples = read_examples(str(data), "test")
    test_puzzles = json.loads((data / "test_puzzles.json").read_text())
    bias = float(build_model(cfg, seed=4).q_head.bias[0].detach())
    metrics, expected = official_arc_scores(names, test_puzzles, examples.puzzle_identifiers, examples.inputs,
                                            np.load(preds), np.full(len(examples), bias))
    assert {k: scores[f"ARC/{k}"] for k in metrics} == metrics and json.loads(submission.read_text()) == expected
    challenges = tmp_path / "arc-agi_evaluation_challenges.json"
    challenges.write_text(json.dumps({t: {"train": tasks[t]["train"], "test": [{"input": p["input"]}
                                                                              for p in tasks[t]["test"]]}
                                      for t in ("eval0", "eval1")}))
    solved = cli("solve", str(challenges), "--model", str(bundle), "--no-halt", "--json", shim=True)
    assert solved.returncode == 0, solved.stderr
    assert json.loads(solved.stdout) == expected
