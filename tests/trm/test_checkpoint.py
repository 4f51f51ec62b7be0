"""trm-edge checkpoints and the import of official ones, including every error path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import TINY_CONFIGS
from tests.trm.official_fixture import write_official_checkpoint
from trm_edge.errors import CheckpointError, ConfigError
from trm_edge.trm.checkpoint import import_official, load_model, resolve_model_path, save_checkpoint

TASK_OF = {"mlp": "sudoku", "rope": "sudoku", "learned": "maze", "many-puzzles": "arc"}


def _seq_len(name):
    return TINY_CONFIGS[name].seq_len


def test_save_then_load_round_trips_exactly(tmp_path, tiny_model_factory):
    model = tiny_model_factory("many-puzzles")
    save_checkpoint(model, tmp_path / "ck", task="arc")
    loaded = load_model(tmp_path / "ck")
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_training_run_directory_means_its_model(tmp_path, tiny_model_factory):
    """``trm-edge eval runs/x`` (the directory ``trm-edge train -o runs/x`` wrote) uses ``runs/x/model``."""
    save_checkpoint(tiny_model_factory("mlp"), tmp_path / "run" / "model", task="sudoku")
    (tmp_path / "run" / "state").mkdir()
    assert resolve_model_path(tmp_path / "run") == tmp_path / "run" / "model"
    assert load_model(tmp_path / "run").config == TINY_CONFIGS["mlp"]
    proc = subprocess.run([sys.executable, "-m", "trm_edge", "info", str(tmp_path / "run"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(CheckpointError, match="not a trm-edge checkpoint"):
        resolve_model_path(tmp_path / "run" / "state")


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("prefix", ["_orig_mod.model.inner.", "model.inner.", "inner."])
def test_official_checkpoint_imports_and_steps_identically(tmp_path, tiny_model_factory, name, prefix):
    model = tiny_model_factory(name)
    path = write_official_checkpoint(model, tmp_path / "run", prefix=prefix, dtype=torch.float32)
    imported = import_official(path, task=TASK_OF[name], seq_len=_seq_len(name))
    assert imported.config == model.config.replace(forward_dtype="float32")
    inputs = torch.randint(0, model.config.vocab_size, (2, model.config.seq_len))
    ids = torch.tensor([0, model.config.num_puzzle_identifiers - 1])
    z_H, z_L = model.initial_state(2)
    with torch.no_grad():
        for a, b in zip(model.step(inputs, z_H, z_L, ids), imported.step(inputs, z_H, z_L, ids), strict=True):
            assert torch.equal(a, b)


def test_bf16_official_weights_become_float32(tmp_path, tiny_model_factory):
    model = tiny_model_factory("mlp")
    path = write_official_checkpoint(model, tmp_path / "run", dtype=torch.bfloat16)
    imported = import_official(path, task="sudoku")
    weight = imported.lm_head.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, model.lm_head.weight.to(torch.bfloat16).float())


def test_vocab_and_identifiers_come_from_the_weights(tmp_path, tiny_model_factory):
    model = tiny_model_factory("many-puzzles")
    path = write_official_checkpoint(model, tmp_path / "run")
    imported = import_official(path, task="arc", seq_len=64)
    assert imported.config.vocab_size == 12 and imported.config.num_puzzle_identifiers == 7


def test_missing_all_config_is_named(tmp_path, tiny_model_factory):
    path = write_official_checkpoint(tiny_model_factory("mlp"), tmp_path / "run")
    (tmp_path / "run" / "all_config.yaml").unlink()
    with pytest.raises(CheckpointError, match=r"all_config\.yaml"):
        import_official(path, task="sudoku")


def test_not_a_checkpoint_is_named(tmp_path, tiny_model_factory):
    write_official_checkpoint(tiny_model_factory("mlp"), tmp_path / "run")
    junk = tmp_path / "run" / "step_7"
    junk.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint"):
        import_official(junk, task="sudoku")


def test_pickled_objects_are_refused(tmp_path, tiny_model_factory):
    write_official_checkpoint(tiny_model_factory("mlp"), tmp_path / "run")
    evil = tmp_path / "run" / "step_9"
    torch.save({"inner.x": torch.zeros(1), "payload": object()}, evil)
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint"):
        import_official(evil, task="sudoku")


def test_missing_and_unexpected_keys_are_named(tmp_path, tiny_model_factory):
    path = write_official_checkpoint(tiny_model_factory("mlp"), tmp_path / "run")
    state = torch.load(path, weights_only=True)
    state.pop("_orig_mod.model.inner.lm_head.weight")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing key.*lm_head\.weight"):
        import_official(path, task="sudoku")
    state["_orig_mod.model.inner.lm_head.weight"] = torch.zeros(11, 32)
    state["_orig_mod.model.inner.extra.weight"] = torch.zeros(2)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"unexpected key.*extra\.weight"):
        import_official(path, task="sudoku")


def test_shape_mismatch_says_expected_and_found(tmp_path, tiny_model_factory):
    path = write_official_checkpoint(tiny_model_factory("mlp"), tmp_path / "run")
    state = torch.load(path, weights_only=True)
    state["_orig_mod.model.inner.L_level.layers.0.mlp.down_proj.weight"] = torch.zeros(32, 7)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"expected \(32, 256\), found \(32, 7\)"):
        import_official(path, task="sudoku")


def test_unknown_task_lists_valid_ones(tmp_path, tiny_model_factory):
    path = write_official_checkpoint(tiny_model_factory("mlp"), tmp_path / "run")
    with pytest.raises(CheckpointError, match="'sudoku', 'maze', 'arc'"):
        import_official(path, task="chess")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "trm_edge", *args], capture_output=True, text=True, timeout=120)


def test_cli_import_of_a_non_checkpoint_exits_2_with_one_line(tmp_path, tiny_model_factory):
    write_official_checkpoint(tiny_model_factory("mlp"), tmp_path / "run")
    junk = tmp_path / "run" / "step_2"
    junk.write_text("not a checkpoint")
    result = _cli("import", str(junk), "--task", "sudoku", "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_cli_import_writes_a_loadable_checkpoint(tmp_path, tiny_model_factory):
    model = tiny_model_factory("rope")
    path = write_official_checkpoint(model, tmp_path / "run")
    result = _cli("import", str(path), "--task", "sudoku", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "out" / "config.json").read_text())
    assert info["task"] == "sudoku" and info["model"]["pos_encodings"] == "rope"
    assert load_model(tmp_path / "out").config.hidden_size == 32


def test_cli_info_reports_official_parameter_counts():
    result = _cli("info", "--preset", "sudoku-extreme-att", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["params"] == 6_828_034 and report["flops_per_step"] > 0


def test_cli_info_unknown_preset_lists_presets():
    result = _cli("info", "--preset", "nope")
    assert result.returncode == 2 and "sudoku-extreme-mlp" in result.stderr and "Traceback" not in result.stderr


def test_cli_init_then_info_on_the_checkpoint(tmp_path):
    assert _cli("init", "--preset", "sudoku-mini", "-o", str(tmp_path / "m")).returncode == 0
    again = _cli("init", "--preset", "sudoku-mini", "-o", str(tmp_path / "m"))
    assert again.returncode == 2 and "exists" in again.stderr
    report = json.loads(_cli("info", str(tmp_path / "m"), "--json").stdout)
    assert report["config"]["hidden_size"] == 128


def test_cli_import_keeps_the_identifier_names_of_an_arc_model(tmp_path, tiny_model_factory):
    """An official ARC checkpoint knows its puzzle identifiers only by number; `import --identifiers` keeps the
    training set's names with it (for ARC solving), and a list of the wrong length is refused."""
    model = tiny_model_factory("many-puzzles")
    path = write_official_checkpoint(model, tmp_path / "run")
    names = ["<blank>", *(f"task{i}|||t{i}|||0123456789" for i in range(model.config.num_puzzle_identifiers - 1))]
    (tmp_path / "identifiers.json").write_text(json.dumps(names))
    seq = str(model.config.seq_len)
    result = _cli("import", str(path), "--task", "arc", "--seq-len", seq, "--identifiers",
                  str(tmp_path / "identifiers.json"), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / "identifiers.json").read_text()) == names
    (tmp_path / "short.json").write_text(json.dumps(names[:-1]))
    refused = _cli("import", str(path), "--task", "arc", "--seq-len", seq, "--identifiers",
                   str(tmp_path / "short.json"), "-o", str(tmp_path / "bad"))
    assert refused.returncode == 2 and "identifier names for a model with" in refused.stderr
    assert not (tmp_path / "bad").exists()


def test_no_act_continue_false_is_refused_by_name_never_ignored(tmp_path, tiny_model_factory):
    """The Q-continue head (no_ACT_continue: false) is not supported: import, and any config that asks for it
    (init, train --set, export of such a checkpoint), refuse it in one line instead of halting on q_halt alone."""
    model = tiny_model_factory("mlp")
    path = write_official_checkpoint(model, tmp_path / "run", dtype=torch.float32)
    config = yaml.safe_load((path.parent / "all_config.yaml").read_text())
    config["arch"]["no_ACT_continue"] = False
    (path.parent / "all_config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"no_ACT_continue=False .* is not supported"):
        import_official(path, task="sudoku")
    with pytest.raises(ConfigError, match="no_ACT_continue"):
        model.config.replace(no_ACT_continue=False)
