"""The trainer: the paper's recipe (deep supervision with the ACT carry, stablemax CE + halting BCE,
AdamATan2, sign-SGD puzzle embeddings, EMA), single process or data-parallel under torchrun.

Run directory::

    RUN_DIR/model/          trm-edge checkpoint of the EMA weights (``trm_edge.load_model(RUN_DIR/model)``)
    RUN_DIR/state/          everything to resume exactly: trainer.safetensors (weights, EMA, optimiser
                            moments, ACT carry, RNG states) + trainer.json (step, configs, sampler positions)
    RUN_DIR/metrics.jsonl   one JSON object per line: {"kind": "train"|"eval", "step": ..., ...}

One training step = one supervision step on every batch slot: a slot whose sample halted (its halting
head said so, after a random minimum number of steps with probability ``halt_exploration_prob``) or
reached ``halt_max_steps`` takes a fresh sample and a fresh state; the others carry their state
(detached) into the next step. ``model.step`` is the only place the network's math lives.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from trm_edge.bundle.contract import halts
from trm_edge.config import TrainConfig, TRMConfig
from trm_edge.errors import ConfigError, OutputExistsError, TrainingError
from trm_edge.io import Staging, claim_output, clear_litter, staged_directory
from trm_edge.puzzles.dataset import read_split
from trm_edge.trm.checkpoint import RUN_MODEL_DIR, save_checkpoint
from trm_edge.trm.data import FreshSamples, augmentation_for, check_split, meta
from trm_edge.trm.distributed import Dist, barrier, default_device, init_distributed, set_cpu_threads
from trm_edge.trm.evaluation import evaluate_by_step
from trm_edge.trm.losses import IGNORE_LABEL_ID, TRAIN_HALT_THRESHOLD, act_loss
from trm_edge.trm.model import TRM, build_model
from trm_edge.trm.optim import EMA, AdamATan2, lr_at, sign_sgd_rows_
from trm_edge.trm.run_config import configs_for_dataset, identifier_names
from trm_edge.trm.train_state import (
    STATE_DIR,
    STATE_FORMAT,
    check_resume_compatible,
    data_fingerprint,
    read_state,
    write_state,
)

MODEL_DIR, METRICS_FILE = RUN_MODEL_DIR, "metrics.jsonl"


# -- results ---------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    run_dir: Path
    step: int
    train_history: list[dict[str, Any]] = field(default_factory=list)  # train records of this process
    last_eval: dict[str, Any] | None = None
    seconds: float = 0.0


def _json_line(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of RUN_DIR/metrics.jsonl."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- the trainer -----------------------------------------------------------------------------------

class Trainer:
    """Holds the model, optimisers, EMA, ACT carry and data stream of one rank."""

    def __init__(self, model_config: TRMConfig, train_config: TrainConfig, train_split: Any, test_split: Any | None,
                 *, task: str, d: Dist, device: torch.device) -> None:
        tc = train_config
        self.mc, self.tc, self.task, self.d, self.device = model_config, tc, task, d, device
        if tc.global_batch_size % d.world_size:
            raise ConfigError(f"global_batch_size={tc.global_batch_size} is not divisible by the "
                              f"{d.world_size} ranks")
        self.batch = tc.global_batch_size // d.world_size
        self.model = build_model(model_config, seed=tc.seed).to(device).train()
        self.table = self.model.puzzle_emb.weights if model_config.puzzle_emb_ndim > 0 else None
        self.dense = [p for name, p in self.model.named_parameters() if not name.startswith("puzzle_emb.")]
        self.optimizer = AdamATan2(self.dense, lr=0.0, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay)
        self.ema = EMA(self.dense, tc.ema_rate) if tc.ema else None
        augment = augmentation_for(task, model_config.seq_len) if tc.augment else None
        self.data = FreshSamples(train_split, seed=tc.seed, rank=d.rank, world_size=d.world_size, augment=augment)
        self.test_split = test_split
        self.explore = torch.Generator().manual_seed(tc.seed * 7919 + d.rank + 1)
        self.step = 0
        self.elapsed = 0.0  # training seconds before this process (resumed runs)
        b, s, t, h = self.batch, model_config.seq_len, model_config.total_len, model_config.hidden_size
        self.carry = {
            "z_H": torch.zeros(b, t, h, device=device), "z_L": torch.zeros(b, t, h, device=device),
            "steps": torch.zeros(b, dtype=torch.long, device=device),
            "halted": torch.ones(b, dtype=torch.bool, device=device),
            "inputs": torch.zeros(b, s, dtype=torch.long, device=device),
            "labels": torch.full((b, s), IGNORE_LABEL_ID, dtype=torch.long, device=device),
            "ids": torch.zeros(b, dtype=torch.long, device=device),
        }
        on_gpu = device.type == "cuda"
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_gpu and tc.bf16 else nullcontext
        self.step_fn = self.model.step_embedded
        if on_gpu and tc.compile:
            self.step_fn = torch.compile(self.model.step_embedded)
        self._eval_model: TRM | None = None

    # -- one optimiser step ------------------------------------------------------------------------

    def _refill(self) -> int:
        c = self.carry
        slots = c["halted"].nonzero().squeeze(1)
        n = int(slots.numel())
        if n:
            inputs, labels, ids = self.data.take(n)
            dev = self.device
            c["inputs"][slots] = torch.from_numpy(inputs).to(dev)
            c["labels"][slots] = torch.from_numpy(labels).to(dev)
            c["ids"][slots] = torch.from_numpy(ids).to(dev)
            c["z_H"][slots] = self.model.H_init.to(c["z_H"].dtype)
            c["z_L"][slots] = self.model.L_init.to(c["z_L"].dtype)
            c["steps"][slots] = 0
        return n

    def train_step(self) -> dict[str, float]:
        """One supervision step on every slot, one optimiser update. Returns the step's scalars."""
        tc, mc, c = self.tc, self.mc, self.carry
        fresh = self._refill()
        rows = None
        if self.table is not None:
            rows = self.table.detach()[c["ids"]].clone().requires_grad_(True)  # [B, puzzle_emb_ndim]
        with self.autocast():
            z_H, z_L, logits, q_halt = self._forward(c["inputs"], c["z_H"], c["z_L"], rows)
        out = act_loss(logits, q_halt, c["labels"])
        loss = float(out.loss.detach())
        if not math.isfinite(loss):
            raise TrainingError(f"loss is {loss} at step {self.step + 1}; stopped (the last good checkpoint, if "
                                "any, is kept)")
        out.loss.backward()
        self._sync_gradients(rows)
        self.step += 1
        lr = lr_at(self.step, tc.lr, warmup_steps=tc.lr_warmup_steps, total_steps=tc.train_steps,
                   min_ratio=tc.lr_min_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if rows is not None:
            emb_lr = lr_at(self.step, tc.puzzle_emb_lr, warmup_steps=tc.lr_warmup_steps,
                           total_steps=tc.train_steps, min_ratio=tc.lr_min_ratio)
            sign_sgd_rows_(self.table.data, self._ids_all, self._rows_grad_all, emb_lr, tc.puzzle_emb_weight_decay)
        if self.ema is not None:
            self.ema.update(self.dense)
        with torch.no_grad():  # the ACT carry for the next step
            c["z_H"], c["z_L"] = z_H.float(), z_L.float()
            c["steps"] += 1
            halted = c["steps"] >= mc.halt_max_steps
            if mc.halt_max_steps > 1:
                halted |= halts(q_halt.detach(), TRAIN_HALT_THRESHOLD)
                explore = torch.rand(self.batch, generator=self.explore) < mc.halt_exploration_prob
                minimum = explore * torch.randint(2, mc.halt_max_steps + 1, (self.batch,), generator=self.explore)
                halted &= c["steps"] >= minimum.to(self.device)
            c["halted"] = halted
            done = halted & out.has_labels
            stats = torch.stack([done.sum(), (done & out.seq_is_correct).sum(), (c["steps"] * done).sum()]).tolist()
        return {"loss": loss, "lm_loss": float(out.lm_loss), "q_halt_loss": float(out.q_halt_loss), "lr": lr,
                "fresh": fresh, "halted": stats[0], "halted_correct": stats[1], "halted_steps": stats[2]}

    def _forward(self, *args: Any) -> tuple[torch.Tensor, ...]:
        """The supervision step, compiled when asked; a compilation failure falls back to eager mode."""
        if self.step_fn == self.model.step_embedded:
            return self.step_fn(*args)
        try:
            return self.step_fn(*args)
        except Exception as error:  # torch.compile raises many types; eager mode is always correct
            warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error)[:200]}); training in eager "
                          "mode", stacklevel=2)
            self.step_fn = self.model.step_embedded
            return self.step_fn(*args)

    def _sync_gradients(self, rows: torch.Tensor | None) -> None:
        """Average dense gradients over ranks (one flat all-reduce); gather the puzzle-row gradients."""
        ids = self.carry["ids"]
        rows_grad = rows.grad if rows is not None else None
        if self.d.joined:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.dense]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.d.world_size
            offset = 0
            for p, g in zip(self.dense, grads, strict=True):
                p.grad = flat[offset:offset + g.numel()].view_as(p)
                offset += g.numel()
            if rows_grad is not None:
                all_ids = [torch.empty_like(ids) for _ in range(self.d.world_size)]
                all_rows = [torch.empty_like(rows_grad) for _ in range(self.d.world_size)]
                dist.all_gather(all_ids, ids)
                dist.all_gather(all_rows, rows_grad.contiguous())
                ids, rows_grad = torch.cat(all_ids), torch.cat(all_rows)
        self._ids_all, self._rows_grad_all = ids, rows_grad

    # -- evaluation --------------------------------------------------------------------------------

    def eval_model(self) -> TRM:
        """A copy of the model carrying the EMA weights (the current puzzle table, as the official code)."""
        if self._eval_model is None:
            self._eval_model = copy.deepcopy(self.model).eval()
            for p in self._eval_model.parameters():
                p.requires_grad_(False)
        model = self._eval_model
        with torch.no_grad():
            for dst, src in zip(model.parameters(), self.model.parameters(), strict=True):
                dst.copy_(src)
            if self.ema is not None:
                self.ema.copy_to([p for n, p in model.named_parameters() if not n.startswith("puzzle_emb.")])
        return model

    def evaluate(self) -> dict[str, Any]:
        """The test split's accuracy by supervision step and with halting (``evaluation.evaluate_by_step``)."""
        return evaluate_by_step(self.eval_model(), self.test_split, d=self.d, batch=self.batch,
                                max_examples=self.tc.eval_max_examples, device=self.device, autocast=self.autocast)

    # -- resume state (safetensors + JSON, no pickle) ---------------------------------------------

    def _gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        if not self.d.joined:
            return [tensor]
        parts = [torch.empty_like(tensor) for _ in range(self.d.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return parts

    def _gather_object(self, obj: Any) -> list[Any]:
        if not self.d.joined:
            return [obj]
        parts: list[Any] = [None] * self.d.world_size
        dist.all_gather_object(parts, obj)
        return parts

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The complete resume state (collective under DDP: every rank must call it)."""
        tensors: dict[str, torch.Tensor] = {}
        for name, value in self.model.state_dict().items():
            tensors[f"model.{name}"] = value
        if self.ema is not None:
            for i, value in enumerate(self.ema.shadow):
                tensors[f"ema.{i}"] = value
        for key, value in self.optimizer.state_tensors().items():
            tensors[f"optimizer.{key}"] = value
        for key, value in self.carry.items():
            as_int = value.to(torch.uint8) if value.dtype == torch.bool else value
            for rank, part in enumerate(self._gather(as_int)):
                tensors[f"carry.{rank}.{key}"] = part
        for rank, part in enumerate(self._gather(self.explore.get_state().to(self.device))):
            tensors[f"rng.explore.{rank}"] = part
        tensors["rng.torch"] = torch.get_rng_state()
        info = {"format": STATE_FORMAT, "step": self.step, "optimizer_step_count": self.optimizer.step_count,
                "world_size": self.d.world_size, "samplers": self._gather_object(self.data.sampler.state()),
                "elapsed_s": self.elapsed}
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, info

    def load_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        with torch.no_grad():
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            if self.ema is not None:
                for i, shadow in enumerate(self.ema.shadow):
                    shadow.copy_(tensors[f"ema.{i}"])
        self.optimizer.load_state_tensors({k[10:]: v for k, v in tensors.items() if k.startswith("optimizer.")},
                                          info["optimizer_step_count"])
        self.step, self.elapsed = int(info["step"]), float(info.get("elapsed_s", 0.0))
        torch.set_rng_state(tensors["rng.torch"])
        if info["world_size"] == self.d.world_size:  # exact continuation
            r = self.d.rank
            for key, value in self.carry.items():
                saved = tensors[f"carry.{r}.{key}"].to(self.device)
                self.carry[key] = saved.bool() if value.dtype == torch.bool else saved.to(value.dtype)
            self.explore.set_state(tensors[f"rng.explore.{r}"].cpu())
            self.data.sampler.load_state(info["samplers"][r])
        else:  # a different number of ranks: fresh slots from the next epoch (not bit-identical)
            epoch = max(int(s["epoch"]) for s in info["samplers"]) + 1
            self.data.sampler.load_state({"epoch": epoch, "position": 0})

    def all_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())


# -- writing a run ----------------------------------------------------------------------------------

def train(model_config: TRMConfig, train_config: TrainConfig, train_split: Any, test_split: Any | None,
          run_dir: str | os.PathLike, *, task: str = "sudoku", preset: str | None = None,
          data_recipe: dict[str, Any] | None = None, data_dir: str | None = None, resume: bool = False,
          force: bool = False, progress: bool = True, device: torch.device | str | None = None,
          threads: int | None = None,
          on_step: Callable[[Trainer, dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``model_config`` on ``train_split`` into ``run_dir`` (see the module docstring for the layout).

    ``resume=True`` continues from RUN_DIR/state when it exists (and starts fresh when RUN_DIR does not);
    ``force=True`` replaces an existing RUN_DIR (or a symbolic link there) at the new run's first checkpoint, so that
    a run that fails before it leaves the old one. Under torchrun every rank calls this function.
    """
    d = init_distributed()
    # The run directory is this run's alone: a second trainer of it is refused (its lock, held by rank 0).
    with claim_output(run_dir, force=True) if d.is_main else nullcontext(), ExitStack() as stack:
        run_dir = Path(run_dir)
        check_split(train_split, "train")
        _check_data_fits(model_config, train_split, "train")
        if test_split is not None:
            check_split(test_split, "test")
            _check_data_fits(model_config, test_split, "test")
        tc = train_config
        fingerprint = data_fingerprint(train_split)
        saved, replacing = _open_run(run_dir, d, model_config, tc, fingerprint, resume=resume, force=force)
        device = torch.device(device) if device is not None else default_device(d)
        if device.type == "cpu":
            set_cpu_threads(d, threads)
        else:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        trainer = Trainer(model_config, tc, train_split, test_split, task=task, d=d, device=device)
        if saved is not None:
            trainer.load_state(*saved)
        first_step = trainer.step
        barrier(d)
        # A run that replaces another is written beside it and takes its place at its first checkpoint: a run that
        # fails before that (a full disk, Ctrl-C) leaves the old one as it was. Others are written where they are.
        place = stack.enter_context(staged_directory(run_dir, force=True)) if replacing and d.is_main \
            else Staging(run_dir)
        if d.is_main:
            place.where.mkdir(parents=True, exist_ok=True)
            metrics = [r for r in read_metrics(run_dir) if r.get("step", 0) <= trainer.step] if saved else []
            (place.where / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in metrics))
        barrier(d)
        meta_info = {"model": model_config.to_dict(), "train": tc.to_dict(), "task": task, "preset": preset,
                     "data": fingerprint, "data_dir": data_dir, "data_recipe": data_recipe}
        result = TrainResult(run_dir, trainer.step)
        last_eval: dict[str, Any] | None = None
        window: dict[str, float] = {}
        window_start = time.perf_counter()
        started = time.perf_counter() - trainer.elapsed
        session_start = time.perf_counter()
        bar = _progress_bar(enabled=progress and d.is_main)
        task_id = bar.add_task("training", total=tc.train_steps, completed=trainer.step, status="")

        names = identifier_names(data_dir, model_config)

        def checkpoint() -> None:
            if not trainer.all_finite():
                raise TrainingError(f"non-finite weights at step {trainer.step}; stopped (the last good checkpoint "
                                    "is kept)")
            trainer.elapsed = time.perf_counter() - started
            # model/ first: a run killed between the two has a model whenever it has a state to resume
            tensors, info = trainer.state()  # collective: every rank takes part
            if d.is_main:
                metadata = {"preset": preset, "data_recipe": data_recipe, "data_dir": data_dir,
                            "training": {"step": trainer.step, "train": tc.to_dict(),
                                         "seconds": round(trainer.elapsed, 1), "world_size": d.world_size,
                                         "ema": tc.ema, "last_eval": last_eval}}
                save_checkpoint(trainer.eval_model(), place.where / MODEL_DIR, task=task, force=True,
                                identifiers=names, metadata=metadata)
                write_state(place.where, tensors, {**info, **meta_info})
                place.place()  # a run replacing another takes its place here, at its first checkpoint

        with bar:
            while trainer.step < tc.train_steps:
                scalars = trainer.train_step()
                if on_step is not None:
                    on_step(trainer, scalars)
                for key, value in scalars.items():
                    window[key] = window.get(key, 0.0) + value
                window["n"] = window.get("n", 0) + 1
                step = trainer.step
                if step % tc.log_interval == 0 or step == tc.train_steps:
                    now = time.perf_counter()
                    n = window.pop("n")
                    record = {"kind": "train", "step": step, "lr": scalars["lr"],
                              **{k: window[k] / n for k in ("loss", "lm_loss", "q_halt_loss")},
                              "train_exact_accuracy": window["halted_correct"] / max(window["halted"], 1),
                              "train_mean_steps": window["halted_steps"] / max(window["halted"], 1),
                              "steps_per_s": n / (now - window_start),
                              "samples_per_s": window["fresh"] * d.world_size / (now - window_start),
                              "elapsed_s": round(now - started, 2)}
                    result.train_history.append(record)
                    if d.is_main:
                        _json_line(place.where / METRICS_FILE, record)
                    bar.update(task_id, status=f"loss {record['loss']:.3f} exact {record['train_exact_accuracy']:.2f} "
                                               f"{record['steps_per_s']:.2f} it/s")
                    window, window_start = {}, time.perf_counter()
                pause = time.perf_counter()  # evaluation and checkpoints do not count in steps_per_s
                if test_split is not None and (step % tc.eval_interval == 0 or step == tc.train_steps):
                    last_eval = {"kind": "eval", "step": step, **trainer.evaluate()}
                    if d.is_main:
                        _json_line(place.where / METRICS_FILE, last_eval)
                    if d.is_main and progress:
                        bar.console.print(f"step {step}: exact {last_eval['exact_accuracy']:.3f} (after 1 step "
                                          f"{last_eval['exact_accuracy_by_step'][0]:.3f}), with halting "
                                          f"{last_eval['halt_exact_accuracy']:.3f} in "
                                          f"{last_eval['halt_mean_steps']:.1f} steps")
                if step % tc.checkpoint_interval == 0 or step == tc.train_steps:
                    checkpoint()
                    if d.is_main and progress and not bar.console.is_terminal and result.train_history:
                        last = result.train_history[-1]  # no live bar in a log file: one line per checkpoint
                        rate = (step - first_step) / max(time.perf_counter() - session_start, 1e-9)
                        bar.console.print(f"step {step}/{tc.train_steps} loss {last['loss']:.4f} train exact "
                                          f"{last['train_exact_accuracy']:.3f} {last['steps_per_s']:.2f} steps/s, "
                                          f"ETA {(tc.train_steps - step) / max(rate, 1e-9) / 60:.0f} min")
                window_start += time.perf_counter() - pause
                bar.update(task_id, completed=step)
        if trainer.step == first_step:  # nothing to do (a resume of a finished run): make sure model/ is there
            checkpoint()
        result.step, result.last_eval = trainer.step, last_eval
        result.seconds = time.perf_counter() - started
        return result


def _open_run(run_dir: Path, d: Dist, model_config: TRMConfig, tc: TrainConfig, fingerprint: dict[str, Any], *,
              resume: bool, force: bool) -> tuple[Any, bool]:
    """Whether ``run_dir`` is resumed, replaced or written afresh: the saved state to resume (or None), and whether
    an existing output is replaced. A symbolic link is an output of its own, replaced by ``--force`` (its target
    untouched); ``--resume`` continues the run it leads to."""
    if d.is_main:  # a writer killed mid-swap: its litter goes, an interrupted swap is undone
        clear_litter(run_dir)
        if resume and run_dir.is_dir():
            for name in (STATE_DIR, MODEL_DIR):
                clear_litter(run_dir / name)
    barrier(d)
    if resume and (run_dir / STATE_DIR).is_dir():
        saved = read_state(run_dir)
        check_resume_compatible(saved[1], model_config, tc, fingerprint, run_dir / STATE_DIR)
        return saved, False
    # A link, a file or a non-empty directory is an output that exists; an empty directory is written into.
    exists = run_dir.is_symlink() or (run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())))
    if exists and resume:
        raise TrainingError(f"cannot resume: {str(run_dir)!r} exists but has no {STATE_DIR}/ to resume from")
    if exists and not force:
        raise OutputExistsError(f"output {str(run_dir)!r} exists; pass --resume to continue it or --force to "
                                "replace it")
    return None, exists


def _check_data_fits(config: TRMConfig, split: Any, name: str) -> None:
    seq_len, vocab = int(split.inputs.shape[1]), config.vocab_size
    if seq_len != config.seq_len:
        raise TrainingError(f"the {name} split has seq_len={seq_len} but the model expects {config.seq_len}")
    top = int(max(split.inputs.max(), meta(split, "vocab_size", 0) - 1))
    if top >= vocab:
        raise TrainingError(f"the {name} split uses token {top} but the model's vocab_size is {vocab}")
    ids = np.asarray(split.puzzle_identifiers)
    if config.puzzle_emb_ndim > 0 and ids.size and int(ids.max()) >= config.num_puzzle_identifiers:
        raise TrainingError(f"the {name} split has puzzle identifier {int(ids.max())} but the model has "
                            f"num_puzzle_identifiers={config.num_puzzle_identifiers}")


def _progress_bar(*, enabled: bool):
    from rich.progress import TextColumn

    from trm_edge.progress import progress

    return progress(TextColumn("{task.fields[status]}"), disable=not enabled, transient=False, lines=False)


# -- from the command line ---------------------------------------------------------------------------

def train_from_directory(*, preset: str, data: str | os.PathLike, output: str | os.PathLike,
                         overrides: list[str] | None = None, train_steps: int | None = None, resume: bool = False,
                         force: bool = False, progress: bool = True, threads: int | None = None) -> TrainResult:
    """What ``trm-edge train`` does: read the dataset directory, resolve the configs, train."""
    model_config, train_config, task, recipe = configs_for_dataset(preset, data, overrides, train_steps)
    data = Path(data)
    train_split = read_split(data, "train")
    test_split = read_split(data, "test") if (data / "test").exists() else None
    return train(model_config, train_config, train_split, test_split, output, task=task, preset=preset,
                 data_recipe=recipe, data_dir=str(data), resume=resume, force=force, progress=progress,
                 threads=threads)
