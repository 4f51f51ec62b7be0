"""The trainer end to end on a tiny problem: learning, exact resume, NaN stop, bad input, 2-process DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import socket

import numpy as np
import pytest
import torch

import trm_edge
from trm_edge.bundle.contract import halts
from trm_edge.config import TrainConfig, TRMConfig
from trm_edge.errors import ConfigError, OutputExistsError, TrainingError
from trm_edge.trm.data import ArraySplit
from trm_edge.trm.distributed import Dist
from trm_edge.trm.losses import TRAIN_HALT_THRESHOLD
from trm_edge.trm.run_config import resolve_configs
from trm_edge.trm.train import Trainer, read_metrics, train
from trm_edge.trm.train_state import read_state

TINY = TRMConfig(seq_len=16, vocab_size=6, num_puzzle_identifiers=3, hidden_size=32, expansion=2.0, mlp_t=True,
                 pos_encodings="none", puzzle_emb_ndim=32, puzzle_emb_len=1, H_cycles=2, L_cycles=1,
                 halt_max_steps=3)
FAST = TrainConfig(global_batch_size=16, lr=1e-2, lr_warmup_steps=3, lr_min_ratio=0.1, weight_decay=0.01,
                   puzzle_emb_lr=1e-2, puzzle_emb_weight_decay=0.01, ema_rate=0.8, train_steps=12, eval_interval=6,
                   checkpoint_interval=4, log_interval=1, seed=0)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny models run fastest on one thread (and the machine is shared)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_split(n: int, seed: int) -> ArraySplit:
    """Cells 1..5; the answer of a cell is 6 - cell (0 is padding, ignored). Three puzzle identifiers."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(1, 6, size=(n, 16))
    inputs[:, -2:] = 0
    split = ArraySplit.one_example_per_puzzle(inputs, np.where(inputs > 0, 6 - inputs, 0), vocab_size=6)
    split.puzzle_identifiers[:] = np.arange(n) % 3
    split.metadata["num_puzzle_identifiers"] = 3
    return split


def run(tmp_path, name="run", train_config=FAST, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("task", "toy")
    return train(TINY, train_config, toy_split(64, 0), toy_split(20, 1), tmp_path / name, **kwargs)


def losses(records):
    return [r["loss"] for r in records if r["kind"] == "train"]


def test_loss_decreases_on_a_tiny_problem(tmp_path):
    result = run(tmp_path, train_config=dataclasses.replace(FAST, train_steps=60, eval_interval=60))
    seq = losses(result.train_history)
    assert len(seq) == 60
    assert np.mean(seq[-5:]) < 0.7 * np.mean(seq[:5])
    assert result.last_eval["cell_accuracy"] > 0.4  # chance is 0.2


def test_run_directory_layout_metrics_and_saved_ema_model(tmp_path):
    result = run(tmp_path, data_recipe={"task": "toy", "seed": 5}, preset="unit")
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 13))
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [6, 12]
    e = evals[-1]
    assert len(e["exact_accuracy_by_step"]) == TINY.halt_max_steps == len(e["cell_accuracy_by_step"])
    assert e["exact_accuracy"] == e["exact_accuracy_by_step"][-1] and e["count"] == 20
    assert 1 <= e["halt_mean_steps"] <= TINY.halt_max_steps and 0 <= e["q_halt_accuracy"] <= 1
    model = trm_edge.load_model(tmp_path / "run" / "model")
    info = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert info["data_recipe"] == {"task": "toy", "seed": 5} and info["preset"] == "unit"
    assert info["training"]["step"] == 12 and info["task"] == "toy"
    tensors, state = read_state(tmp_path / "run")
    assert state["step"] == 12 and result.step == 12
    # the saved model holds the EMA weights, not the raw ones
    saved = dict(model.named_parameters())
    raw = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    assert torch.equal(saved["puzzle_emb.weights"], raw["puzzle_emb.weights"])
    assert not torch.equal(saved["lm_head.weight"], raw["lm_head.weight"])
    names = [n for n, _ in model.named_parameters() if not n.startswith("puzzle_emb.")]
    assert torch.equal(saved["lm_head.weight"], tensors[f"ema.{names.index('lm_head.weight')}"])


class Killed(Exception):
    pass


def test_resume_continues_identically(tmp_path):
    full = run(tmp_path, "full")

    def kill_after_step_6(trainer, scalars):
        if trainer.step == 6:
            raise Killed

    with pytest.raises(Killed):  # killed after the step-4 checkpoint, before the step-8 one
        run(tmp_path, "resumed", on_step=kill_after_step_6)
    assert read_state(tmp_path / "resumed")[1]["step"] == 4
    resumed = run(tmp_path, "resumed", resume=True)
    assert losses(resumed.train_history) == losses(full.train_history)[4:]
    assert losses(read_metrics(tmp_path / "resumed")) == losses(read_metrics(tmp_path / "full"))
    a, b = read_state(tmp_path / "full")[0], read_state(tmp_path / "resumed")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(trainer, scalars):
        if trainer.step == 5:
            with torch.no_grad():
                trainer.model.lm_head.weight.fill_(float("nan"))

    with pytest.raises(TrainingError, match="at step 6"):
        run(tmp_path, on_step=poison)
    tensors, state = read_state(tmp_path / "run")
    assert state["step"] == 4 and all(torch.isfinite(v.float()).all() for k, v in tensors.items()
                                      if k.startswith("model."))
    assert torch.isfinite(trm_edge.load_model(tmp_path / "run" / "model").lm_head.weight).all()


def test_existing_output_needs_resume_or_force(tmp_path):
    run(tmp_path, train_config=dataclasses.replace(FAST, train_steps=2))
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(OutputExistsError):
        run(tmp_path)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
    run(tmp_path, train_config=dataclasses.replace(FAST, train_steps=3), force=True)
    assert read_state(tmp_path / "run")[1]["step"] == 3


def test_resume_from_an_incompatible_checkpoint_is_refused_and_nothing_changes(tmp_path):
    run(tmp_path, train_config=dataclasses.replace(FAST, train_steps=2))
    before = (tmp_path / "run" / "state" / "trainer.json").read_text()
    other = TINY.replace(hidden_size=64, puzzle_emb_ndim=64)
    with pytest.raises(TrainingError, match="hidden_size"):
        train(other, FAST, toy_split(64, 0), None, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(TrainingError, match="lr"):
        run(tmp_path, train_config=dataclasses.replace(FAST, lr=1.0), resume=True)
    with pytest.raises(TrainingError, match="training set"):
        train(TINY, FAST, toy_split(64, 9), None, tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run" / "state" / "trainer.json").read_text() == before


def test_data_that_does_not_fit_the_model_is_refused(tmp_path):
    with pytest.raises(TrainingError, match="vocab_size"):
        train(TINY.replace(vocab_size=4), FAST, toy_split(8, 0), None, tmp_path / "r", progress=False)
    with pytest.raises(TrainingError, match="puzzle identifier"):
        train(TINY.replace(num_puzzle_identifiers=2), FAST, toy_split(8, 0), None, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_act_carry_keeps_unhalted_slots_and_refills_halted_ones():
    trainer = Trainer(TINY, FAST, toy_split(64, 0), None, task="toy", d=Dist(), device=torch.device("cpu"))
    trainer.train_step()
    c = trainer.carry
    assert (c["steps"] == 1).all()
    first_inputs = c["inputs"].clone()
    for _ in range(TINY.halt_max_steps - 1):
        halted_before = c["halted"].clone()
        trainer.train_step()
        kept = ~halted_before
        assert torch.equal(c["inputs"][kept], first_inputs[kept])
    assert c["halted"].all() and (c["steps"] == TINY.halt_max_steps).all()  # q_halt starts at -5: nobody halts early


def test_resolve_configs_takes_data_fields_and_routes_overrides():
    model, train_config, task = resolve_configs(
        "sudoku-mini", ["hidden_size=64", "puzzle_emb_ndim=64", "lr=0.001", "ema=false"],
        {"seq_len": 81, "vocab_size": 11, "num_puzzle_identifiers": 5}, train_steps=7)
    assert (model.hidden_size, model.num_puzzle_identifiers, task) == (64, 5, "sudoku")
    assert (train_config.lr, train_config.ema, train_config.train_steps) == (0.001, False, 7)
    with pytest.raises(ConfigError, match=r"unknown --set field 'nope'.*'hidden_size'.*'lr'"):
        resolve_configs("sudoku-mini", ["nope=1"], {})
    with pytest.raises(ConfigError, match="available presets"):
        resolve_configs("no-such-preset", [], {})
    with pytest.raises(ConfigError, match="contradicts"):
        resolve_configs("sudoku-mini", ["seq_len=10"], {"seq_len": 81})


# -- data-parallel -----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    import torch.distributed as dist

    from tests.trm.test_train import FAST, TINY, toy_split

    train(TINY, dataclasses.replace(FAST, train_steps=6, checkpoint_interval=3, eval_interval=3),
          toy_split(64, 0), toy_split(20, 1), run_dir, task="toy", progress=False)
    dist.destroy_process_group()


@pytest.mark.slow
def test_one_process_under_torchrun_joins_a_process_group(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(1, _free_port(), str(tmp_path / "one")), nprocs=1, join=True)
    _, state = read_state(tmp_path / "one")
    assert state["world_size"] == 1 and state["step"] == 6 and len(state["samplers"]) == 1


@pytest.mark.slow
def test_two_process_gloo_ddp_trains_and_checkpoints(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    tensors, state = read_state(tmp_path / "ddp")
    assert state["world_size"] == 2 and state["step"] == 6 and len(state["samplers"]) == 2
    assert tensors["carry.0.z_H"].shape[0] == FAST.global_batch_size // 2
    assert not torch.equal(tensors["carry.0.inputs"], tensors["carry.1.inputs"])  # ranks see different data
    records = read_metrics(tmp_path / "ddp")
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6]
    assert [r for r in records if r["kind"] == "eval"][-1]["count"] == 20  # test set split over ranks, summed
    trm_edge.load_model(tmp_path / "ddp" / "model")


def test_a_failing_compiled_step_falls_back_to_eager_mode():
    trainer = Trainer(TINY, FAST, toy_split(64, 0), None, task="toy", d=Dist(), device=torch.device("cpu"))

    def broken(*args):
        raise RuntimeError("the compiler exploded")

    trainer.step_fn = broken
    with pytest.warns(UserWarning, match="torch.compile failed"):
        scalars = trainer.train_step()
    assert np.isfinite(scalars["loss"]) and trainer.step_fn == trainer.model.step_embedded


def test_evaluation_agrees_with_model_predict_on_the_ema_model():
    trainer = Trainer(TINY, FAST, toy_split(64, 0), toy_split(20, 1), task="toy", d=Dist(),
                      device=torch.device("cpu"))
    for _ in range(30):
        trainer.train_step()
    with torch.no_grad():
        trainer.model.q_head.bias.fill_(0.0)  # make halting happen at varied steps
        trainer.ema.shadow[[n for n, _ in trainer.model.named_parameters()
                            if not n.startswith("puzzle_emb.")].index("q_head.bias")].fill_(0.0)
    metrics = trainer.evaluate()
    test = toy_split(20, 1)
    model = trainer.eval_model()
    inputs = torch.from_numpy(test.inputs).long()
    ids = torch.from_numpy(test.puzzle_identifiers).long()
    labels = torch.from_numpy(test.labels).long()
    mask = labels != 0  # ignore_label_id 0

    def exact(preds):
        return ((preds == labels) | ~mask).all(-1).float().mean().item()

    for steps in range(1, TINY.halt_max_steps + 1):
        out = model.predict(inputs, ids, max_steps=steps)
        assert metrics["exact_accuracy_by_step"][steps - 1] == pytest.approx(exact(out["preds"]))
        cells = (((out["preds"] == labels) & mask).sum(-1) / mask.sum(-1)).mean().item()
        assert metrics["cell_accuracy_by_step"][steps - 1] == pytest.approx(cells)
        # the q_halt accuracy scores the halting decision the stop below takes: halts(q, TRAIN_HALT_THRESHOLD)
        solved = ((out["preds"] == labels) | ~mask).all(-1)
        agree = (halts(out["q_halt_logits"], TRAIN_HALT_THRESHOLD) == solved).float().mean().item()
        assert metrics["q_halt_accuracy_by_step"][steps - 1] == pytest.approx(agree)
    halted = model.predict(inputs, ids, halt=True, threshold=TRAIN_HALT_THRESHOLD)
    assert metrics["halt_exact_accuracy"] == pytest.approx(exact(halted["preds"]))
    assert metrics["halt_mean_steps"] == pytest.approx(halted["steps"].float().mean().item())


def test_evaluation_scores_q_halt_by_the_rule_it_stops_by():
    """A q_halt logit exactly at the threshold (0) does not halt: no sample stops early, and the q_halt accuracy
    counts "did not halt" as right exactly where the answer is not exact."""
    trainer = Trainer(TINY, FAST, toy_split(64, 0), toy_split(20, 1), task="toy", d=Dist(),
                      device=torch.device("cpu"))
    names = [n for n, _ in trainer.model.named_parameters() if not n.startswith("puzzle_emb.")]
    with torch.no_grad():
        for name in ("q_head.weight", "q_head.bias"):  # q_halt_logits == 0 at every step, in the EMA model too
            trainer.model.get_parameter(name).zero_()
            trainer.ema.shadow[names.index(name)].zero_()
    metrics = trainer.evaluate()
    assert TRAIN_HALT_THRESHOLD == 0.0
    assert metrics["halt_mean_steps"] == TINY.halt_max_steps
    assert metrics["halt_exact_accuracy"] == pytest.approx(metrics["exact_accuracy"])
    for q_right, solved in zip(metrics["q_halt_accuracy_by_step"], metrics["exact_accuracy_by_step"], strict=True):
        assert q_right == pytest.approx(1.0 - solved)


@pytest.mark.parametrize("item", ["eval_interval=0", "train_steps=0", "log_interval=-1", "checkpoint_interval=0"])
def test_intervals_and_steps_below_one_are_refused(item):
    with pytest.raises(ConfigError, match=item.split("=")[0] + r"=-?\d+ must be at least 1"):
        resolve_configs("sudoku-mini", [item], {})
