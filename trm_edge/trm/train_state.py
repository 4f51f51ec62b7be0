"""A training run's resume state on disk: RUN_DIR/state/ holds trainer.safetensors (weights, EMA, optimiser
moments, ACT carry, RNG states) and trainer.json (step, configs, sampler positions, data fingerprint). No pickle:
safetensors and JSON only, written atomically (an interrupted write leaves the previous state)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trm_edge.config import TrainConfig, TRMConfig
from trm_edge.errors import TrainingError
from trm_edge.io import atomic_directory
from trm_edge.trm.checkpoint import write_tensors

STATE_FORMAT = "trm-edge-train-state/1"
STATE_DIR, STATE_TENSORS, STATE_JSON = "state", "trainer.safetensors", "trainer.json"
# Training fields a resumed run may change; any other difference makes the checkpoint incompatible.
RESUMABLE_CHANGES = ("train_steps", "eval_interval", "checkpoint_interval", "log_interval", "eval_max_examples")


def data_fingerprint(split: Any) -> dict[str, Any]:
    """Identifies a training split cheaply (shapes + a hash of about 1000 evenly spaced examples)."""
    n = len(split.inputs)
    stride = max(1, n // 1000)
    digest = hashlib.sha256()
    for array in (split.inputs[::stride], split.labels[::stride], split.puzzle_indices, split.group_indices):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return {"examples": n, "seq_len": int(split.inputs.shape[1]), "sha256": digest.hexdigest()}


def write_state(run_dir: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    with atomic_directory(run_dir / STATE_DIR, force=True) as tmp:
        write_tensors(tensors, tmp / STATE_TENSORS)
        (tmp / STATE_JSON).write_text(json.dumps(info, indent=2) + "\n")


def read_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state_dir = run_dir / STATE_DIR
    try:
        info = json.loads((state_dir / STATE_JSON).read_text())
        tensors = load_file(str(state_dir / STATE_TENSORS))
    except (OSError, json.JSONDecodeError, SafetensorError) as error:
        raise TrainingError(f"cannot resume from {str(state_dir)!r}: {error}") from None
    if info.get("format") != STATE_FORMAT:
        raise TrainingError(f"cannot resume from {str(state_dir)!r}: not a {STATE_FORMAT} state")
    return tensors, info


def check_resume_compatible(info: dict[str, Any], model_config: TRMConfig, train_config: TrainConfig,
                            fingerprint: dict[str, Any], state_dir: Path) -> None:
    """Raise TrainingError naming every difference that makes the saved state unusable for this run."""
    problems = []
    saved_model = info.get("model", {})
    for key, value in model_config.to_dict().items():
        if saved_model.get(key) != value:
            problems.append(f"model {key}={saved_model.get(key)!r} (now {value!r})")
    saved_train = info.get("train", {})
    for key, value in train_config.to_dict().items():
        if key not in RESUMABLE_CHANGES and saved_train.get(key) != value:
            problems.append(f"train {key}={saved_train.get(key)!r} (now {value!r})")
    if info.get("data") != fingerprint:
        problems.append("a different training set")
    if problems:
        raise TrainingError(f"cannot resume from {str(state_dir)!r}: it was trained with " + "; ".join(problems))
